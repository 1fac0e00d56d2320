//! Chain validation before install (issue 15; KeyVaultForWindows 4.0's rule,
//! `akvsync.chainValidation`): a certificate the policy covers is installed only when its
//! chain, built from the bundle's own intermediates, ends at a root the machine trusts and is
//! valid now for the certificate's usage. A failure keeps the installed version and names the
//! chain error.
//!
//! One implementation on every platform: `rustls-webpki` (the verifier the agent's own TLS
//! already uses) against the machine's roots as `rustls-native-certs` reads them (the Windows
//! `ROOT` store through CryptoAPI; on Linux the distribution's bundle; `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` override both). Differences from Windows' own chain engine, by design: no
//! AIA fetching (intermediates must be in the bundle, as Key Vault bundles are), no
//! revocation check (4.0 documents none), name constraints enforced.

use std::sync::OnceLock;

use der::Decode as _;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use x509_cert::Certificate;
use x509_cert::ext::pkix::ExtendedKeyUsage;

use crate::decode::Bundle;
use crate::settings::ChainValidation;

/// TLS Web Server Authentication (RFC 5280 id-kp-serverAuth).
pub const SERVER_AUTH: &str = "1.3.6.1.5.5.7.3.1";
const EKU_EXTENSION: &str = "2.5.29.37";

/// Key purposes a chain can be validated for (DER contents of the OIDs, for webpki).
const KNOWN_USAGES: [(&str, &[u8]); 6] = [
    (
        SERVER_AUTH,
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01],
    ),
    (
        "1.3.6.1.5.5.7.3.2",
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02],
    ),
    (
        "1.3.6.1.5.5.7.3.3",
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03],
    ),
    (
        "1.3.6.1.5.5.7.3.4",
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x04],
    ),
    (
        "1.3.6.1.5.5.7.3.8",
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08],
    ),
    (
        "1.3.6.1.5.5.7.3.9",
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09],
    ),
];

/// The extended key usages of a certificate (dotted OIDs); empty when it has none (any use).
pub fn ekus(der: &[u8]) -> Vec<String> {
    let Ok(cert) = Certificate::from_der(der) else {
        return Vec::new();
    };
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|ext| ext.extn_id.to_string() == EKU_EXTENSION)
        .filter_map(|ext| ExtendedKeyUsage::from_der(ext.extn_value.as_bytes()).ok())
        .flat_map(|eku| eku.0.into_iter().map(|oid| oid.to_string()))
        .collect()
}

/// Whether `policy` covers a certificate with these EKUs.
pub fn applies(policy: ChainValidation, leaf_ekus: &[String]) -> bool {
    match policy {
        ChainValidation::Off => false,
        ChainValidation::All => true,
        ChainValidation::ServerAuth => leaf_ekus.iter().any(|e| e == SERVER_AUTH),
    }
}

/// The usage the chain is validated for: server authentication when the leaf has it (or no
/// EKU at all), else the first purpose of the leaf webpki knows.
fn usage_for(leaf_ekus: &[String]) -> Result<webpki::KeyUsage, String> {
    if leaf_ekus.is_empty() || leaf_ekus.iter().any(|e| e == SERVER_AUTH) {
        return Ok(webpki::KeyUsage::required_if_present(KNOWN_USAGES[0].1));
    }
    leaf_ekus
        .iter()
        .find_map(|eku| KNOWN_USAGES.iter().find(|(oid, _)| oid == eku))
        .map(|(_, der)| webpki::KeyUsage::required(der))
        .ok_or_else(|| {
            format!(
                "its extended key usages ({}) are none a chain can be validated for; set \
                 akvsync.chainValidation to \"serverAuth\" or \"off\"",
                leaf_ekus.join(", ")
            )
        })
}

/// The machine's trusted roots, read once per process.
pub fn system_anchors() -> Result<&'static [TrustAnchor<'static>], String> {
    static ANCHORS: OnceLock<Result<Vec<TrustAnchor<'static>>, String>> = OnceLock::new();
    ANCHORS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let anchors: Vec<TrustAnchor<'static>> = loaded
                .certs
                .iter()
                .filter_map(|der| webpki::anchor_from_trusted_cert(der).ok())
                .map(|anchor| anchor.to_owned())
                .collect();
            if anchors.is_empty() {
                let why = loaded
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_owned(), ToString::to_string);
                return Err(format!("the machine's trusted roots cannot be read: {why}"));
            }
            Ok(anchors)
        })
        .as_ref()
        .map(Vec::as_slice)
        .map_err(Clone::clone)
}

/// Validates the bundle's chain against `anchors` at `now`, for the usage `leaf_ekus` (the
/// leaf's, [`ekus`]) declare.
pub fn validate(
    bundle: &Bundle,
    leaf_ekus: &[String],
    anchors: &[TrustAnchor<'_>],
    now: UnixTime,
) -> Result<(), String> {
    let usage = usage_for(leaf_ekus)?;
    let leaf_der = CertificateDer::from(bundle.leaf.der.as_slice());
    let leaf = webpki::EndEntityCert::try_from(&leaf_der)
        .map_err(|e| format!("the certificate cannot be parsed for validation: {e:?}"))?;
    let intermediates: Vec<CertificateDer<'_>> = bundle
        .chain
        .iter()
        .map(|c| CertificateDer::from(c.der.as_slice()))
        .collect();
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        anchors,
        &intermediates,
        now,
        usage,
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| explain(&e, bundle))
}

fn explain(error: &webpki::Error, bundle: &Bundle) -> String {
    let last = bundle.chain.last().unwrap_or(&bundle.leaf);
    match error {
        webpki::Error::UnknownIssuer => format!(
            "untrusted chain: no root the machine trusts issued {:?} (the chain has {} \
             certificate(s) after the leaf)",
            last.issuer,
            bundle.chain.len()
        ),
        webpki::Error::CertExpired { .. } => "a certificate of the chain has expired".to_owned(),
        webpki::Error::CertNotValidYet { .. } => {
            "a certificate of the chain is not valid yet".to_owned()
        }
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "a certificate of the chain does not allow the leaf's key usage (EKU)".to_owned()
        }
        webpki::Error::NameConstraintViolation => {
            "the chain violates an issuer's name constraints".to_owned()
        }
        other => format!("invalid chain: {other:?}"),
    }
}

/// The policy applied to one bundle before install: `Ok(true)` validated, `Ok(false)` not
/// covered by the policy, `Err` with the reason the version must not be installed.
pub fn check(policy: ChainValidation, bundle: &Bundle) -> Result<bool, String> {
    if policy == ChainValidation::Off {
        return Ok(false);
    }
    let leaf_ekus = ekus(&bundle.leaf.der);
    if !applies(policy, &leaf_ekus) {
        return Ok(false);
    }
    let anchors = system_anchors()?;
    validate(bundle, &leaf_ekus, anchors, UnixTime::now())
        .map(|()| true)
        .map_err(|e| format!("chain validation ({policy:?}): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_covers_server_auth_leaves_all_or_none() {
        let server = vec![SERVER_AUTH.to_owned(), "1.3.6.1.5.5.7.3.2".to_owned()];
        let client = vec!["1.3.6.1.5.5.7.3.2".to_owned()];
        assert!(applies(ChainValidation::ServerAuth, &server));
        assert!(!applies(ChainValidation::ServerAuth, &client));
        assert!(!applies(ChainValidation::ServerAuth, &[]));
        assert!(applies(ChainValidation::All, &client));
        assert!(applies(ChainValidation::All, &[]));
        assert!(!applies(ChainValidation::Off, &server));
    }

    #[test]
    fn an_unknown_purpose_is_named_instead_of_guessed() {
        assert!(usage_for(&[]).is_ok());
        assert!(usage_for(&["1.3.6.1.5.5.7.3.2".to_owned()]).is_ok());
        let err = usage_for(&["1.2.3.4".to_owned()]).err().unwrap();
        assert!(err.contains("1.2.3.4"), "{err}");
    }

    #[test]
    fn known_usage_oids_match_their_der() {
        for (dotted, der) in KNOWN_USAGES {
            let oid = der::asn1::ObjectIdentifier::new(dotted).unwrap();
            assert_eq!(oid.as_bytes(), der, "{dotted}");
        }
    }
}
