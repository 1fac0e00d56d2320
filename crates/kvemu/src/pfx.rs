//! PKCS#12 for import and seeding, through the workspace's `akvsync-pkcs12`
//! crate: decode an uploaded PFX, encode Key Vault's form of the managed secret.
//!
//! The crate is being written concurrently; until it lands, the `pfx` feature
//! stays off and PFX import answers 400 (PEM import is unaffected).

use crate::certparse::KeyMaterial;

/// Certificates (file order) and private keys (PKCS#8) of a PFX.
#[derive(Debug)]
pub struct PfxParts {
    pub certs: Vec<Vec<u8>>,
    pub keys: Vec<KeyMaterial>,
}

/// Which PKCS#12 encoding to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PfxForm {
    /// What Key Vault serves: 3DES, SHA-1 MAC, zero-length password.
    KeyVault,
    /// OpenSSL 3 default: AES-256-CBC/PBKDF2, SHA-256 MAC, empty password.
    Modern,
}

/// Whether PFX support is linked.
pub const AVAILABLE: bool = cfg!(feature = "pfx");

#[cfg(feature = "pfx")]
mod imp {
    use super::{PfxForm, PfxParts};
    use crate::certparse::KeyMaterial;
    use akvsync_pkcs12 as p12;

    pub fn decode(der: &[u8], password: Option<&str>) -> Result<PfxParts, String> {
        let d = p12::decode(der, password).map_err(|e| e.to_string())?;
        Ok(PfxParts {
            certs: d.certificates.into_iter().map(|c| c.der).collect(),
            keys: d
                .keys
                .into_iter()
                .map(|k| KeyMaterial {
                    label: "PRIVATE KEY".into(),
                    der: k.pkcs8_der.to_vec(),
                })
                .collect(),
        })
    }

    pub fn encode(chain: &[Vec<u8>], key_pkcs8: &[u8], form: PfxForm) -> Result<Vec<u8>, String> {
        let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
        let opts = match form {
            PfxForm::KeyVault => p12::EncodeOptions::key_vault(),
            PfxForm::Modern => p12::EncodeOptions::openssl_modern(),
        };
        p12::encode(&refs, key_pkcs8, &opts).map_err(|e| e.to_string())
    }
}

#[cfg(not(feature = "pfx"))]
mod imp {
    use super::{PfxForm, PfxParts};

    const MISSING: &str = "PKCS#12 is not available in this build (akvsync-pkcs12 not yet linked)";

    pub fn decode(_der: &[u8], _password: Option<&str>) -> Result<PfxParts, String> {
        Err(MISSING.into())
    }

    pub fn encode(
        _chain: &[Vec<u8>],
        _key_pkcs8: &[u8],
        _form: PfxForm,
    ) -> Result<Vec<u8>, String> {
        Err(MISSING.into())
    }
}

/// Decodes a PFX with `password` (empty or absent: both encodings of the empty password).
pub fn decode(der: &[u8], password: Option<&str>) -> Result<PfxParts, String> {
    imp::decode(der, password)
}

/// Encodes `chain` (leaf first) and a PKCS#8 key.
pub fn encode(chain: &[Vec<u8>], key_pkcs8: &[u8], form: PfxForm) -> Result<Vec<u8>, String> {
    imp::encode(chain, key_pkcs8, form)
}
