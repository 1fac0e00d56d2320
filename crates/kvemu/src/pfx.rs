//! PKCS#12 for import and seeding, through the workspace's `akvsync-pkcs12`
//! crate: decode an uploaded PFX, encode Key Vault's form of the managed secret.

use crate::certparse::KeyMaterial;

/// Certificates (file order) and private keys (PKCS#8) of a PFX.
#[derive(Debug)]
pub struct PfxParts {
    pub certs: Vec<Vec<u8>>,
    pub keys: Vec<KeyMaterial>,
}

/// Decodes a PFX with `password` (empty or absent: both encodings of the empty password).
pub fn decode(der: &[u8], password: Option<&str>) -> Result<PfxParts, String> {
    let _ = (der, password);
    Err("PKCS#12 import is not available in this build (akvsync-pkcs12 not yet linked)".into())
}

/// Which PKCS#12 encoding to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PfxForm {
    /// What Key Vault serves: 3DES, SHA-1 MAC, zero-length password.
    KeyVault,
    /// OpenSSL 3 default: AES-256-CBC/PBKDF2, SHA-256 MAC, empty password.
    Modern,
}

/// Encodes `chain` (leaf first) and a PKCS#8 key.
pub fn encode(chain: &[Vec<u8>], key_pkcs8: &[u8], form: PfxForm) -> Result<Vec<u8>, String> {
    let _ = (chain, key_pkcs8, form);
    Err("PKCS#12 encoding is not available in this build (akvsync-pkcs12 not yet linked)".into())
}

/// Whether PFX support is linked.
pub const AVAILABLE: bool = false;
