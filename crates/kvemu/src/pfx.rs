//! PKCS#12 for import and seeding, through the workspace's `akvsync-pkcs12`
//! crate: decode an uploaded PFX, encode Key Vault's form of the managed
//! secret (and OpenSSL's modern form for seeding).

use crate::certparse::KeyMaterial;
use akvsync_pkcs12 as p12;

/// Certificates (file order) and private keys (PKCS#8) of a PFX.
#[derive(Debug)]
pub struct PfxParts {
    pub certs: Vec<Vec<u8>>,
    pub keys: Vec<KeyMaterial>,
}

/// Which PKCS#12 encoding to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PfxForm {
    /// What Key Vault serves: 3DES, SHA-1 MAC, zero-length password, 2000
    /// iterations, localKeyId 01 00 00 00, a GUID friendly name, and for RSA
    /// keys the CSP name "Microsoft Enhanced RSA and AES Cryptographic Provider".
    KeyVault,
    /// OpenSSL 3 default: AES-256-CBC/PBKDF2, SHA-256 MAC, empty password as `00 00`.
    Modern,
}

/// Decodes a PFX with `password` (empty or absent: both encodings of the empty password).
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

/// rsaEncryption (1.2.840.113549.1.1.1) as it appears in a PKCS#8 AlgorithmIdentifier.
const RSA_OID: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

fn is_rsa(pkcs8: &[u8]) -> bool {
    // The AlgorithmIdentifier sits in the first few dozen bytes.
    pkcs8[..pkcs8.len().min(32)]
        .windows(RSA_OID.len())
        .any(|w| w == RSA_OID)
}

fn guid() -> String {
    let b = crate::ids::secure_bytes(16);
    let h = crate::ids::hex_lower(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Encodes `chain` (leaf first) and a PKCS#8 key.
pub fn encode(chain: &[Vec<u8>], key_pkcs8: &[u8], form: PfxForm) -> Result<Vec<u8>, String> {
    let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    let opts = match form {
        PfxForm::KeyVault => {
            let mut o = p12::EncodeOptions::key_vault();
            o.friendly_name = Some(guid());
            if !is_rsa(key_pkcs8) {
                o.csp_name = None;
            }
            o
        }
        PfxForm::Modern => p12::EncodeOptions::openssl_modern(),
    };
    p12::encode(&refs, key_pkcs8, &opts).map_err(|e| e.to_string())
}
