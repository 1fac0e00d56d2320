//! The emulator's integration-test harness: `env` starts one emulator and a
//! client that trusts its CA and routes real-shaped vault hosts to it;
//! `reply` sends a request and reads the answer (status, headers, JSON, Key
//! Vault error code); `faults` runs a table of fault kinds against one URL.
//! Everything goes over real HTTPS on loopback to the real emulator.

pub mod env;
pub mod faults;
pub mod reply;

pub use env::*;
pub use reply::*;
pub use reqwest::Method;
pub use serde_json::{Value, json};

/// Base64 (standard alphabet, padded), as Key Vault carries PFX files.
pub fn b64(b: impl AsRef<[u8]>) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The inverse of [`b64`]; panics on bad input.
pub fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}
