//! The Windows system stores as the Windows-target tests read them, through the crate's own
//! crypt32 bindings: emptying a test store left by an earlier run (a Wine prefix persists),
//! the thumbprints in a store and the renewal property of each, and Wine's quirks: its
//! import flags ([`wine_compat`]) and its per-user key container ([`prime_user_keyset`]).

use std::collections::BTreeMap;

use akvsync::decode::{self, CertificateInfo};
use akvsync::settings::StoreLocation;
use akvsync::store::windows::plan;
use akvsync::store::windows::sys::Store;

/// A turn for a test that imports keys: Wine keeps every imported key in one CAPI container,
/// so key read-backs of tests running at once would see each other's keys.
pub fn keys_turn() -> std::sync::MutexGuard<'static, ()> {
    static KEYS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    KEYS.lock().unwrap_or_else(|e| e.into_inner())
}

/// `CERT_RENEWAL_PROP_ID`: the SHA-1 hash of the certificate that renews this one.
pub const CERT_RENEWAL_PROP_ID: u32 = 64;

/// Deletes every certificate of the system store `name`.
pub fn clear(location: StoreLocation, name: &str) {
    let store = Store::open_system(location, name, true).unwrap();
    for cert in store.certificates() {
        cert.delete().unwrap();
    }
    let _ = store.commit();
}

/// The thumbprints in the system store `name`; empty when it does not exist.
pub fn thumbprints_in(location: StoreLocation, name: &str) -> Vec<String> {
    match Store::open_system(location, name, false) {
        Ok(_) => renewals(location, name).into_keys().collect(),
        Err(_) => Vec::new(),
    }
}

/// Every certificate of the system store `name` (thumbprint → the renewal property's hash,
/// if set), read through a fresh store handle.
pub fn renewals(location: StoreLocation, name: &str) -> BTreeMap<String, Option<String>> {
    let store = Store::open_system(location, name, false).unwrap();
    store
        .certificates()
        .iter()
        .map(|c| {
            (
                CertificateInfo::parse(&c.der()).unwrap().thumbprint,
                c.property(CERT_RENEWAL_PROP_ID)
                    .map(|h| decode::hex_upper(&h)),
            )
        })
        .collect()
}

/// The upper-case hex SHA-1 of `der` (a thumbprint, as the renewal property holds it).
pub fn sha1_upper(der: &[u8]) -> String {
    use sha1::Digest;
    decode::hex_upper(&sha1::Sha1::digest(der))
}

/// Wine's import flags (`akvsync.testing.windowsImportCompat`), except on a real Windows
/// (the workflow sets `AKVSYNC_REAL_WINDOWS`): there the real CNG import runs.
pub fn wine_compat() -> bool {
    std::env::var_os("AKVSYNC_REAL_WINDOWS").is_none()
}

/// Wine acquires every certificate's key from the *user* keyset (it ignores the key
/// association's `CRYPT_MACHINE_KEYSET`), and keeps every key in one container named after
/// the user; a LocalMachine key is found only once that user container exists. Importing
/// any PFX into the user keyset first creates it (docs/windows.md).
pub fn prime_user_keyset() {
    let bundle = decode::decode_pfx(&super::fixtures::bytes("rsa-openssl3-aes-empty.p12")).unwrap();
    let pfx = akvsync::store::windows::pfx_for(&bundle).unwrap();
    drop(Store::import_pfx(&pfx, plan::CRYPT_USER_KEYSET).unwrap());
}
