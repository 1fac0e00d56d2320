//! The files of `tests/data` (see `make-fixtures.sh`): bytes and text, the thumbprints of
//! the test PKI's certificates (`thumbprints.txt`), and the recorded Key Vault PFX secret
//! decoded as the agent decodes it.

use akvsync::decode::{self, Bundle};

/// The leaf thumbprint of the recorded Key Vault secret (`keyvault-get-secret-pkcs12.json`).
pub const RECORDED_LEAF: &str = "ABF46F114F26E918C38DA656FD858044C5676BE4";

/// A fixture's bytes.
pub fn bytes(name: &str) -> Vec<u8> {
    let path = super::crate_path("tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A text fixture.
pub fn text(name: &str) -> String {
    String::from_utf8(bytes(name)).unwrap()
}

/// The thumbprint `thumbprints.txt` gives the test PKI's certificate `name` (`leaf`, `ec`,
/// `int`, `root`).
pub fn thumbprint(name: &str) -> String {
    text("thumbprints.txt")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no thumbprint for {name}"))
}

/// The recorded Key Vault secret (a CAPI PFX with the zero-length password), decoded.
pub fn recorded_key_vault_bundle() -> Bundle {
    let recorded: serde_json::Value =
        serde_json::from_slice(&bytes("keyvault-get-secret-pkcs12.json")).unwrap();
    decode::decode_secret(
        recorded["contentType"].as_str(),
        recorded["value"].as_str().unwrap(),
    )
    .unwrap()
}
