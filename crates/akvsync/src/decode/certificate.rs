//! X.509 certificate facts: thumbprints, names, SAN DNS names, validity and key type,
//! read with RustCrypto's `x509-cert`.

use der::{Decode, Encode};
use serde::Serialize;
use sha1::Digest;
use x509_cert::Certificate;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use super::DecodeError;
use super::hex;

const OID_SUBJECT_ALT_NAME: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.17");
pub(crate) const OID_RSA: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
pub(crate) const OID_EC: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// What akvsync reports and matches on for one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateInfo {
    #[serde(skip)]
    pub der: Vec<u8>,
    /// SHA-1 of the DER, 40 uppercase hex digits (what Windows shows).
    pub thumbprint: String,
    /// SHA-256 of the DER, 64 uppercase hex digits.
    pub sha256: String,
    pub subject: String,
    pub issuer: String,
    pub dns_names: Vec<String>,
    /// Unix seconds.
    pub not_before: u64,
    pub not_after: u64,
    /// e.g. "RSA 2048", "EC P-256".
    pub key: String,
    #[serde(skip)]
    pub(crate) subject_der: Vec<u8>,
    #[serde(skip)]
    pub(crate) issuer_der: Vec<u8>,
    /// The subjectPublicKey bits, for matching the private key.
    #[serde(skip)]
    pub(crate) public_key: Vec<u8>,
}

impl CertificateInfo {
    /// Issued by itself (subject = issuer): a root, which chain outputs leave out.
    pub fn is_self_signed(&self) -> bool {
        self.subject_der == self.issuer_der
    }

    pub fn parse(der: &[u8]) -> Result<Self, DecodeError> {
        let cert =
            Certificate::from_der(der).map_err(|e| DecodeError::Certificate(e.to_string()))?;
        let tbs = &cert.tbs_certificate;
        let encode = |name: &x509_cert::name::Name| {
            name.to_der()
                .map_err(|e| DecodeError::Certificate(e.to_string()))
        };
        let spki = &tbs.subject_public_key_info;
        let public_key = spki.subject_public_key.raw_bytes().to_vec();
        Ok(CertificateInfo {
            der: der.to_vec(),
            thumbprint: hex::upper(&sha1::Sha1::digest(der)),
            sha256: hex::upper(&sha2::Sha256::digest(der)),
            subject: tbs.subject.to_string(),
            issuer: tbs.issuer.to_string(),
            dns_names: dns_names(&cert),
            not_before: tbs.validity.not_before.to_unix_duration().as_secs(),
            not_after: tbs.validity.not_after.to_unix_duration().as_secs(),
            key: describe_key(&spki.algorithm, &public_key),
            subject_der: encode(&tbs.subject)?,
            issuer_der: encode(&tbs.issuer)?,
            public_key,
        })
    }

    /// Self-issued (subject = issuer): a root, never installed into a Windows store.
    pub fn is_self_issued(&self) -> bool {
        self.subject_der == self.issuer_der
    }
}

fn dns_names(cert: &Certificate) -> Vec<String> {
    let Some(extensions) = &cert.tbs_certificate.extensions else {
        return Vec::new();
    };
    extensions
        .iter()
        .filter(|ext| ext.extn_id == OID_SUBJECT_ALT_NAME)
        .filter_map(|ext| SubjectAltName::from_der(ext.extn_value.as_bytes()).ok())
        .flat_map(|san| san.0)
        .filter_map(|name| match name {
            GeneralName::DnsName(dns) => Some(dns.as_str().to_owned()),
            _ => None,
        })
        .collect()
}

fn describe_key(algorithm: &spki::AlgorithmIdentifierOwned, public_key: &[u8]) -> String {
    if algorithm.oid == OID_RSA {
        match pkcs1::RsaPublicKey::from_der(public_key) {
            Ok(key) => {
                let modulus = key.modulus.as_bytes();
                let leading = modulus.first().map_or(0, |b| b.leading_zeros() as usize);
                format!("RSA {}", modulus.len() * 8 - leading)
            }
            Err(_) => "RSA".to_owned(),
        }
    } else if algorithm.oid == OID_EC {
        let curve = algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
            .map(|oid| curve_name(&oid))
            .unwrap_or_else(|| "unknown curve".to_owned());
        format!("EC {curve}")
    } else {
        format!("algorithm {}", algorithm.oid)
    }
}

pub(crate) fn curve_name(oid: &der::asn1::ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.10045.3.1.7" => "P-256".to_owned(),
        "1.3.132.0.34" => "P-384".to_owned(),
        "1.3.132.0.35" => "P-521".to_owned(),
        "1.3.132.0.10" => "secp256k1".to_owned(),
        other => other.to_owned(),
    }
}
