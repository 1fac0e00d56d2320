//! Decoding what Key Vault serves (SPEC §4): a secret value of content type
//! `application/x-pkcs12` (base64 PFX, empty password) or `application/x-pem-file`
//! (PEM with key and chain) into the leaf, its ordered chain and the private key.
//! Every input is untrusted: sizes are bounded and nothing panics.

mod certificate;
mod hex;
mod key;
mod pem;

use base64::Engine;
use zeroize::Zeroizing;

pub use akvsync_pkcs12::MAX_ITERATIONS;
pub use certificate::CertificateInfo;
pub use hex::{decode as hex_decode, upper as hex_upper};
pub use key::PrivateKey;

/// Largest secret value decoded: Key Vault's own limit on a secret is 25 KiB; the HTTP
/// layer caps bodies at 1 MiB.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

pub const CONTENT_TYPE_PKCS12: &str = "application/x-pkcs12";
pub const CONTENT_TYPE_PEM: &str = "application/x-pem-file";

/// Why a secret value is not a usable certificate; the installed one stays.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the secret value is {0} bytes; at most {MAX_VALUE_BYTES} are decoded")]
    TooLarge(usize),
    #[error("the secret value is not valid base64 PKCS#12: {0}")]
    Base64(String),
    #[error("the PKCS#12 data does not decode: {0}")]
    Pkcs12(String),
    #[error("the PEM data does not decode: {0}")]
    Pem(String),
    #[error("a certificate does not decode: {0}")]
    Certificate(String),
    #[error("the private key does not decode: {0}")]
    Key(String),
    #[error("the secret holds no private key (a certificate without its key cannot be installed)")]
    NoPrivateKey,
    #[error("the secret holds no certificate")]
    NoCertificate,
    #[error("no certificate in the secret matches its private key")]
    KeyMatchesNoCertificate,
    #[error(
        "content type {0:?} is not a certificate (expected {CONTENT_TYPE_PKCS12} or {CONTENT_TYPE_PEM})"
    )]
    ContentType(String),
}

/// A decoded certificate with its key: the leaf, the chain above it in order, the key.
#[derive(Debug)]
pub struct Bundle {
    pub leaf: CertificateInfo,
    /// Intermediates (each certifying the previous), then the root if present.
    pub chain: Vec<CertificateInfo>,
    pub key: PrivateKey,
    /// Certificates in the secret that are not part of the leaf's chain (not installed).
    pub unrelated: usize,
    /// The PFX key bag's CSP name (1.3.6.1.4.1.311.17.1): Windows imports with CAPI1 then.
    pub csp_name: Option<String>,
}

impl Bundle {
    /// The KeyVaultForLinux file layout: leaf, intermediates, root, then the private key.
    pub fn to_pem(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        for cert in std::iter::once(&self.leaf).chain(&self.chain) {
            push_pem(&mut out, "CERTIFICATE", &cert.der);
        }
        push_pem(&mut out, "PRIVATE KEY", self.key.pkcs8_der());
        out
    }
}

/// Appends one PEM block (64-column base64).
pub fn push_pem(out: &mut Zeroizing<Vec<u8>>, label: &str, der: &[u8]) {
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    out.extend_from_slice(format!("-----BEGIN {label}-----\n").as_bytes());
    for line in encoded.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("-----END {label}-----\n").as_bytes());
}

/// Decodes a secret value by its content type. A missing or unknown content type is
/// sniffed (PEM text or base64 PFX), since secrets set by hand often lack one.
pub fn decode_secret(content_type: Option<&str>, value: &str) -> Result<Bundle, DecodeError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(DecodeError::TooLarge(value.len()));
    }
    let content_type = content_type.map(|c| c.trim().to_ascii_lowercase());
    match content_type.as_deref() {
        Some(CONTENT_TYPE_PEM) => decode_pem(value),
        Some(CONTENT_TYPE_PKCS12) => decode_pfx_base64(value),
        _ if value.trim_start().starts_with("-----BEGIN") => decode_pem(value),
        None | Some("") => decode_pfx_base64(value),
        Some(other) => Err(DecodeError::ContentType(other.to_owned())),
    }
}

/// Decodes PEM text: certificates and a private key, in any order.
pub fn decode_pem(text: &str) -> Result<Bundle, DecodeError> {
    let contents = pem::parse(text)?;
    assemble(contents.certificates, contents.keys, None)
}

fn decode_pfx_base64(value: &str) -> Result<Bundle, DecodeError> {
    let compact: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|e| DecodeError::Base64(e.to_string()))?,
    );
    decode_pfx(&der)
}

/// Decodes a PFX with the empty password (both encodings of it), through the workspace's
/// `akvsync-pkcs12` crate.
pub fn decode_pfx(der: &[u8]) -> Result<Bundle, DecodeError> {
    let decoded =
        akvsync_pkcs12::decode(der, None).map_err(|e| DecodeError::Pkcs12(e.to_string()))?;
    let csp_name = decoded.keys.iter().find_map(|k| k.csp_name.clone());
    let keys = decoded
        .keys
        .iter()
        .map(|k| PrivateKey::from_pkcs8(&k.pkcs8_der))
        .collect::<Result<Vec<_>, _>>()?;
    let certificates = decoded.certificates.into_iter().map(|c| c.der).collect();
    assemble(certificates, keys, csp_name)
}

/// Finds the leaf (the certificate whose public key is the private key's) and orders
/// the chain above it by issuer → subject.
fn assemble(
    certificates: Vec<Vec<u8>>,
    keys: Vec<PrivateKey>,
    csp_name: Option<String>,
) -> Result<Bundle, DecodeError> {
    if keys.is_empty() {
        return Err(DecodeError::NoPrivateKey);
    }
    if certificates.is_empty() {
        return Err(DecodeError::NoCertificate);
    }
    let mut infos = certificates
        .iter()
        .map(|der| CertificateInfo::parse(der))
        .collect::<Result<Vec<_>, _>>()?;
    let (key, leaf_index) = keys
        .into_iter()
        .find_map(|key| {
            let index = infos
                .iter()
                .position(|c| c.public_key == key.public_key())?;
            Some((key, index))
        })
        .ok_or(DecodeError::KeyMatchesNoCertificate)?;
    let leaf = infos.remove(leaf_index);
    let mut chain: Vec<CertificateInfo> = Vec::new();
    let mut current = &leaf;
    while !current.is_self_issued() {
        let Some(position) = infos
            .iter()
            .position(|c| c.subject_der == current.issuer_der)
        else {
            break;
        };
        chain.push(infos.remove(position));
        current = chain.last().unwrap_or(&leaf);
    }
    Ok(Bundle {
        leaf,
        chain,
        key,
        unrelated: infos.len(),
        csp_name,
    })
}
