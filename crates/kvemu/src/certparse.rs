//! Reading certificate material for import: PEM blocks (key and certificates
//! in any order), which certificate is the leaf (the one whose public key
//! matches the private key), chain order, and the fields the service reports
//! (`cer`, `x5t`, validity, subject, SANs, key type).

use base64::Engine as _;
use sha1::{Digest, Sha1};
use x509_parser::prelude::*;

/// A private key as found (PEM label and DER).
#[derive(Clone)]
pub struct KeyMaterial {
    pub label: String,
    pub der: Vec<u8>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyMaterial({}, <redacted>)", self.label)
    }
}

/// Certificates (file order) and the private key of a PEM file.
#[derive(Debug)]
pub struct PemParts {
    pub certs: Vec<Vec<u8>>,
    pub key: Option<KeyMaterial>,
}

/// Splits PEM text into certificates and at most one private key.
pub fn parse_pem(text: &str) -> Result<PemParts, String> {
    let blocks = ::pem::parse_many(text).map_err(|e| format!("invalid PEM: {e}"))?;
    let mut parts = PemParts {
        certs: Vec::new(),
        key: None,
    };
    for b in blocks {
        match b.tag() {
            "CERTIFICATE" => parts.certs.push(b.contents().to_vec()),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                if parts.key.is_some() {
                    return Err("more than one private key".into());
                }
                parts.key = Some(KeyMaterial {
                    label: b.tag().to_string(),
                    der: b.contents().to_vec(),
                });
            }
            _ => {}
        }
    }
    Ok(parts)
}

/// The public key bytes (SPKI bit string content) of a private key, where ring can read it.
pub fn public_key_of(key: &KeyMaterial) -> Option<Vec<u8>> {
    use ring::signature::{self, KeyPair};
    match key.label.as_str() {
        "RSA PRIVATE KEY" => signature::RsaKeyPair::from_der(&key.der)
            .ok()
            .map(|k| k.public_key().as_ref().to_vec()),
        "PRIVATE KEY" => {
            if let Ok(k) = signature::RsaKeyPair::from_pkcs8(&key.der) {
                return Some(k.public_key().as_ref().to_vec());
            }
            let rng = ring::rand::SystemRandom::new();
            for alg in [
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            ] {
                if let Ok(k) = signature::EcdsaKeyPair::from_pkcs8(alg, &key.der, &rng) {
                    return Some(k.public_key().as_ref().to_vec());
                }
            }
            None
        }
        _ => None,
    }
}

/// Orders certificates leaf first, then each issuer of the previous one, then
/// the rest. The leaf matches `key_public` if given; otherwise the first
/// non-CA certificate; otherwise the first.
pub fn order_chain(certs: &[Vec<u8>], key_public: Option<&[u8]>) -> Result<Vec<Vec<u8>>, String> {
    if certs.is_empty() {
        return Err("no certificate found".into());
    }
    let parsed: Vec<X509Certificate<'_>> = certs
        .iter()
        .map(|c| {
            X509Certificate::from_der(c)
                .map(|(_, x)| x)
                .map_err(|e| format!("invalid certificate: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let by_key = key_public.and_then(|pk| {
        parsed.iter().position(|x| {
            x.tbs_certificate
                .subject_pki
                .subject_public_key
                .data
                .as_ref()
                == pk
        })
    });
    if key_public.is_some() && by_key.is_none() {
        return Err("no certificate matches the private key".into());
    }
    let leaf = by_key
        .or_else(|| parsed.iter().position(|x| !x.is_ca()))
        .unwrap_or(0);
    let mut order = vec![leaf];
    loop {
        let last = &parsed[*order.last().expect("non-empty")];
        if last.subject() == last.issuer() {
            break;
        }
        match (0..parsed.len())
            .find(|i| !order.contains(i) && parsed[*i].subject() == last.issuer())
        {
            Some(i) => order.push(i),
            None => break,
        }
    }
    for i in 0..parsed.len() {
        if !order.contains(&i) {
            order.push(i);
        }
    }
    Ok(order.into_iter().map(|i| certs[i].clone()).collect())
}

/// What the service reports about a certificate.
#[derive(Debug, Clone)]
pub struct LeafInfo {
    pub x5t: String,
    pub sha1_hex: String,
    pub nbf: i64,
    pub exp: i64,
    pub subject: String,
    pub dns_names: Vec<String>,
    pub key_type: String,
    pub key_size: Option<u32>,
    pub curve: Option<String>,
    /// Extended key usages as OIDs (the policy's `x509_props.ekus`).
    pub ekus: Vec<String>,
    /// Key usages by the service's names (`x509_props.key_usage`).
    pub key_usage: Vec<String>,
}

fn ekus_of(x: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(e)) = x.extended_key_usage() else {
        return Vec::new();
    };
    let e = e.value;
    let mut out: Vec<String> = [
        (e.server_auth, "1.3.6.1.5.5.7.3.1"),
        (e.client_auth, "1.3.6.1.5.5.7.3.2"),
        (e.code_signing, "1.3.6.1.5.5.7.3.3"),
        (e.email_protection, "1.3.6.1.5.5.7.3.4"),
        (e.time_stamping, "1.3.6.1.5.5.7.3.8"),
        (e.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, oid)| oid.to_string())
    .collect();
    out.extend(e.other.iter().map(|o| o.to_id_string()));
    out
}

fn key_usage_of(x: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(k)) = x.key_usage() else {
        return Vec::new();
    };
    let k = k.value;
    [
        (k.digital_signature(), "digitalSignature"),
        (k.non_repudiation(), "nonRepudiation"),
        (k.key_encipherment(), "keyEncipherment"),
        (k.data_encipherment(), "dataEncipherment"),
        (k.key_agreement(), "keyAgreement"),
        (k.key_cert_sign(), "keyCertSign"),
        (k.crl_sign(), "cRLSign"),
        (k.encipher_only(), "encipherOnly"),
        (k.decipher_only(), "decipherOnly"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| n.to_string())
    .collect()
}

pub fn leaf_info(der: &[u8]) -> Result<LeafInfo, String> {
    let (_, x) = X509Certificate::from_der(der).map_err(|e| format!("invalid certificate: {e}"))?;
    let sha1 = Sha1::digest(der);
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                dns_names.push(d.to_string());
            }
        }
    }
    let (key_type, key_size, curve) = match x.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(r)) => ("RSA", Some(r.key_size() as u32), None),
        Ok(x509_parser::public_key::PublicKey::EC(p)) => {
            let crv = match p.key_size() {
                256 => "P-256",
                384 => "P-384",
                521 => "P-521",
                _ => "P-256K",
            };
            ("EC", Some(p.key_size() as u32), Some(crv.to_string()))
        }
        _ => ("RSA", None, None),
    };
    Ok(LeafInfo {
        x5t: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1),
        sha1_hex: crate::ids::hex_upper(&sha1),
        nbf: x.validity().not_before.timestamp(),
        exp: x.validity().not_after.timestamp(),
        subject: x.subject().to_string(),
        dns_names,
        key_type: key_type.to_string(),
        key_size: if key_type == "EC" { None } else { key_size },
        curve,
        ekus: ekus_of(&x),
        key_usage: key_usage_of(&x),
    })
}

fn der_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        vec![n as u8]
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        let mut v = vec![0x80 | bytes.len() as u8];
        v.extend(bytes);
        v
    }
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(der_len(content.len()));
    v.extend_from_slice(content);
    v
}

/// A key as PKCS#8 DER where possible (PKCS#1 RSA keys are wrapped; SEC1 EC keys
/// are returned as they are, with their label).
pub fn to_pkcs8(key: &KeyMaterial) -> KeyMaterial {
    if key.label == "RSA PRIVATE KEY" {
        // rsaEncryption OID 1.2.840.113549.1.1.1 with NULL parameters.
        let alg = der_tlv(
            0x30,
            &[
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
            ],
        );
        let mut body = vec![0x02, 0x01, 0x00];
        body.extend(alg);
        body.extend(der_tlv(0x04, &key.der));
        return KeyMaterial {
            label: "PRIVATE KEY".into(),
            der: der_tlv(0x30, &body),
        };
    }
    key.clone()
}

/// Key Vault's PEM form: the private key first, then the certificates.
pub fn key_vault_pem(key: &KeyMaterial, chain: &[Vec<u8>]) -> String {
    let key = to_pkcs8(key);
    let cfg = ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF);
    let mut out = ::pem::encode_config(&::pem::Pem::new(key.label.clone(), key.der.clone()), cfg);
    for c in chain {
        out.push_str(&::pem::encode_config(
            &::pem::Pem::new("CERTIFICATE", c.clone()),
            cfg,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs1_wrapping_is_readable_by_ring() {
        let pem_text = include_str!("testkeys/rsa2048-1.pk8.pem");
        let parts = parse_pem(pem_text).unwrap();
        let key = parts.key.unwrap();
        let pk8 = public_key_of(&key).unwrap();
        // Unwrap the PKCS#8 to PKCS#1 by parsing with ring indirectly: re-wrap must round trip.
        let rsa = ring::signature::RsaKeyPair::from_pkcs8(&key.der).unwrap();
        assert_eq!(
            ring::signature::KeyPair::public_key(&rsa).as_ref(),
            &pk8[..]
        );
        let _ = to_pkcs8(&key);
        assert!(der_len(300) == vec![0x82, 0x01, 0x2c]);
    }
}
