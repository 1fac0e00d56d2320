//! Helpers shared by the integration tests: fixture paths, PEM, the test
//! chains and the recorded Key Vault response.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(data_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// DER of every PEM block in the file, in order.
pub fn pem_blocks(name: &str) -> Vec<Vec<u8>> {
    let text = String::from_utf8(read(name)).unwrap();
    let mut out = Vec::new();
    let mut b64 = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("-----BEGIN") {
            inside = true;
            b64.clear();
        } else if line.starts_with("-----END") {
            inside = false;
            out.push(STANDARD.decode(&b64).unwrap());
        } else if inside {
            b64.push_str(line.trim());
        }
    }
    out
}

pub fn pem(name: &str) -> Vec<u8> {
    pem_blocks(name).remove(0)
}

/// A test chain (leaf, intermediate, root) and the leaf's PKCS#8 key.
pub struct Chain {
    pub certs: Vec<Vec<u8>>,
    pub key: Vec<u8>,
}

/// The chain of `tests/data/{prefix}-*.pem` (`rsa` or `ec`).
pub fn chain(prefix: &str) -> Chain {
    let pem_of = |n: &str| pem(&format!("{prefix}-{n}.pem"));
    let certs = ["leaf", "int", "root"].map(pem_of).to_vec();
    Chain {
        certs,
        key: pem_of("leaf.p8"),
    }
}

/// The PFX of the recorded Key Vault `GET /secrets/{name}` response.
pub fn keyvault_pfx() -> Vec<u8> {
    let json = String::from_utf8(read("keyvault-get-secret-pkcs12.json")).unwrap();
    let start = json.find("\"value\": \"").unwrap() + "\"value\": \"".len();
    let end = start + json[start..].find('"').unwrap();
    STANDARD.decode(&json[start..end]).unwrap()
}

pub fn sha1_hex(der: &[u8]) -> String {
    Sha1::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

pub fn sha1(der: &[u8]) -> Vec<u8> {
    Sha1::digest(der).to_vec()
}
