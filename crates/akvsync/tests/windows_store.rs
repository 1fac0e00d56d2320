//! The Windows certificate store against real crypt32 (issue 6): these tests exist only
//! for Windows targets and run in CI under Wine (`scripts/wine/setup.sh`, `.ci/run`). They
//! import Key Vault's recorded PFX (CAPI1 CSP) and OpenSSL PFX/PEM (CNG by the rule; Wine
//! imports both into CAPI under `windowsImportCompat`) into LocalMachine and CurrentUser
//! stores, then read back thumbprint, private key, friendly name, the chain in `CA`, no
//! root, the private key's exact DACL, `linkOnRenewal`'s property and pruning.
#![cfg(windows)]

use std::path::Path;
use std::sync::Mutex;

use akvsync::decode::{self, Bundle};
use akvsync::settings::{self, ObservedCertificate, Platform, Target, WindowsTarget};
use akvsync::store;
use akvsync::store::windows::plan::{self, KEY_FULL_CONTROL, KEY_READ};
use akvsync::store::windows::sys::Store;
use akvsync::store::windows::{self as win, Options};

/// Every install in this process grants the same readers (spelled differently), so every
/// key ends with the same DACL: Wine keeps all keys in one CAPI container and enforces that
/// container's registry DACL within a wineserver session, so a different DACL could not be
/// written over it (docs/windows.md).
const READERS: [&str; 2] = ["Network Service", "Local Service"];

/// Wine keeps every imported key in one CAPI container, so key read-backs of tests running
/// at once would see each other's keys: the tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

const V1: &str = "11111111111111111111111111111111";
const V2: &str = "22222222222222222222222222222222";

fn data(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn thumbprint(name: &str) -> String {
    String::from_utf8(data("thumbprints.txt"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
        .unwrap()
}

/// One observed certificate parsed from Windows settings, as the agent would see it.
fn observed(
    secret: &str,
    location: &str,
    store_name: &str,
    accounts: &[&str],
    exportable: bool,
) -> ObservedCertificate {
    let json = serde_json::json!({"secretsManagementSettings": {
        "pollingIntervalInS": "3600",
        "observedCertificates": [{
            "url": format!("https://wintest.vault.azure.net/secrets/{secret}"),
            "certificateStoreName": store_name,
            "certificateStoreLocation": location,
            "accounts": accounts,
            "keyExportable": exportable,
        }],
    }});
    let validated = settings::parse_bytes(json.to_string().as_bytes(), Platform::Windows).unwrap();
    validated.settings.certificates[0].clone()
}

fn target(c: &ObservedCertificate) -> &WindowsTarget {
    match &c.target {
        Target::WindowsStore(t) => t,
        Target::LinuxDirectory(_) => unreachable!(),
    }
}

/// Empties a test store left from an earlier run (the Wine prefix persists).
fn clear(location: settings::StoreLocation, name: &str) {
    let store = Store::open_system(location, name, true).unwrap();
    for cert in store.certificates() {
        cert.delete().unwrap();
    }
    let _ = store.commit();
}

fn thumbprints_in(location: settings::StoreLocation, name: &str) -> Vec<String> {
    match Store::open_system(location, name, false) {
        Ok(store) => store
            .certificates()
            .iter()
            .map(|c| decode::CertificateInfo::parse(&c.der()).unwrap().thumbprint)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Wine's import flags, except on a real Windows (the workflow sets `AKVSYNC_REAL_WINDOWS`):
/// there the real CNG import runs.
fn wine_compat() -> bool {
    std::env::var_os("AKVSYNC_REAL_WINDOWS").is_none()
}

fn compat() {
    win::set_options(Options {
        link_on_renewal: false,
        import_compat: wine_compat(),
        ..Options::default()
    });
}

fn aces(c: &ObservedCertificate, thumbprint: &str) -> Vec<plan::Ace> {
    plan::parse_dacl_aces(&win::key_dacl_of(target(c), thumbprint).unwrap())
}

/// Wine acquires every certificate's key from the *user* keyset (it ignores the key
/// association's `CRYPT_MACHINE_KEYSET`), and keeps every key in one container named after
/// the user; a LocalMachine key is found only once that user container exists. Importing
/// any PFX into the user keyset first creates it (docs/windows.md).
fn wine_user_keyset() {
    let pfx = win::pfx_for(&openssl_bundle()).unwrap();
    drop(Store::import_pfx(&pfx, plan::CRYPT_USER_KEYSET).unwrap());
}

fn full(sid: &str) -> plan::Ace {
    (KEY_FULL_CONTROL, sid.to_owned())
}

fn read(sid: &str) -> plan::Ace {
    (KEY_READ, sid.to_owned())
}

#[test]
fn key_vault_pfx_goes_to_local_machine_via_capi_with_the_exact_key_acl() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    compat();
    wine_user_keyset();
    let recorded: serde_json::Value =
        serde_json::from_slice(&data("keyvault-get-secret-pkcs12.json")).unwrap();
    let bundle = decode::decode_secret(
        recorded["contentType"].as_str(),
        recorded["value"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(
        plan::provider_for(bundle.csp_name.as_deref()),
        plan::Provider::Capi
    );
    let c = observed(
        "kvcert",
        "LocalMachine",
        "AkvsyncKv",
        &["Network Service", "Local Service"],
        false,
    );
    clear(settings::StoreLocation::LocalMachine, "AkvsyncKv");
    let store = store::for_target(&c.target).unwrap();
    assert_eq!(store.current_version(&c), None);

    store.install(&c, V1, &bundle).unwrap();

    assert_eq!(store.current_version(&c).as_deref(), Some(V1));
    let installed = store.installed(&c).unwrap().unwrap();
    assert_eq!(
        installed.leaf.thumbprint,
        "ABF46F114F26E918C38DA656FD858044C5676BE4"
    );
    assert!(installed.has_private_key);
    assert_eq!(installed.version.as_deref(), Some(V1));
    assert_eq!(
        installed.location,
        "LocalMachine\\AkvsyncKv\\ABF46F114F26E918C38DA656FD858044C5676BE4"
    );
    let listed = win::installed_in(target(&c)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].version.as_deref(),
        Some(&*format!("kvcert {V1}")),
        "friendly name"
    );
    assert_eq!(
        aces(&c, &installed.leaf.thumbprint),
        vec![
            full("S-1-5-32-544"),
            full("S-1-5-18"),
            read("S-1-5-20"),
            read("S-1-5-19")
        ]
    );
}

fn openssl_bundle() -> Bundle {
    decode::decode_pfx(&data("rsa-openssl3-aes-empty.p12")).unwrap()
}

#[test]
fn openssl_pfx_goes_to_current_user_with_its_intermediate_in_ca_and_no_root() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    compat();
    wine_user_keyset();
    let bundle = openssl_bundle();
    assert_eq!(
        plan::provider_for(bundle.csp_name.as_deref()),
        plan::Provider::Cng
    );
    let c = observed(
        "ossl",
        "CurrentUser",
        "AkvsyncOssl",
        &[
            "S-1-5-20",
            "NT AUTHORITY\\LOCAL SERVICE",
            "NT AUTHORITY\\SYSTEM",
        ],
        true,
    );
    let cu = settings::StoreLocation::CurrentUser;
    clear(cu, "AkvsyncOssl");
    let store = store::for_target(&c.target).unwrap();
    store.install(&c, V1, &bundle).unwrap();

    let leaf = thumbprint("leaf");
    let installed = store.installed(&c).unwrap().unwrap();
    assert_eq!(installed.leaf.thumbprint, leaf);
    assert!(installed.has_private_key);
    assert_eq!(
        thumbprints_in(cu, "AkvsyncOssl"),
        vec![leaf.clone()],
        "only the leaf in the named store"
    );
    assert!(
        thumbprints_in(cu, "CA").contains(&thumbprint("int")),
        "intermediate in CA"
    );
    let root = thumbprint("root");
    for name in ["CA", "Root", "AkvsyncOssl"] {
        assert!(
            !thumbprints_in(cu, name).contains(&root),
            "root installed in {name}"
        );
        assert!(!thumbprints_in(settings::StoreLocation::LocalMachine, name).contains(&root));
    }
    assert_eq!(
        aces(&c, &leaf),
        vec![
            full("S-1-5-32-544"),
            full("S-1-5-18"),
            read("S-1-5-20"),
            read("S-1-5-19")
        ]
    );
}

#[test]
fn pem_is_converted_to_a_pfx_and_imported_the_same_way() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    compat();
    wine_user_keyset();
    let pem = String::from_utf8(data("rsa-pkcs1-key-last.pem")).unwrap();
    let bundle = decode::decode_pem(&pem).unwrap();
    let c = observed(
        "pem",
        "LocalMachine",
        "AkvsyncPem",
        &["network service", "S-1-5-19"],
        true,
    );
    clear(settings::StoreLocation::LocalMachine, "AkvsyncPem");
    let store = store::for_target(&c.target).unwrap();
    store.install(&c, V1, &bundle).unwrap();
    let installed = store.installed(&c).unwrap().unwrap();
    assert_eq!(installed.leaf.thumbprint, bundle.leaf.thumbprint);
    assert!(installed.has_private_key);
    assert_eq!(
        aces(&c, &bundle.leaf.thumbprint),
        vec![
            full("S-1-5-32-544"),
            full("S-1-5-18"),
            read("S-1-5-20"),
            read("S-1-5-19")
        ]
    );
}

#[test]
fn an_account_that_does_not_resolve_fails_that_certificate_before_anything_changes() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    compat();
    wine_user_keyset();
    let c = observed(
        "noacct",
        "LocalMachine",
        "AkvsyncNoAcct",
        &["Network Service", "NoSuchDomain\\akvsync-nobody"],
        false,
    );
    clear(settings::StoreLocation::LocalMachine, "AkvsyncNoAcct");
    let store = store::for_target(&c.target).unwrap();
    let err = store
        .install(&c, V1, &openssl_bundle())
        .unwrap_err()
        .to_string();
    assert!(err.contains("NoSuchDomain\\\\akvsync-nobody"), "{err}");
    assert!(thumbprints_in(settings::StoreLocation::LocalMachine, "AkvsyncNoAcct").is_empty());
    assert_eq!(store.current_version(&c), None);
}

#[test]
fn well_known_accounts_resolve_by_sid_and_names_resolve_with_lookup() {
    let sids = win::resolve_accounts(&[
        "Network Service".into(),
        "local service".into(),
        "SYSTEM".into(),
        "Administrators".into(),
        "S-1-5-32-545".into(),
    ])
    .unwrap();
    assert_eq!(
        sids,
        [
            "S-1-5-20",
            "S-1-5-19",
            "S-1-5-18",
            "S-1-5-32-544",
            "S-1-5-32-545"
        ]
    );
    // Through LookupAccountNameW (a name Wine knows).
    let looked_up = akvsync::store::windows::sys::lookup_account("NETWORK SERVICE").unwrap();
    assert_eq!(looked_up, "S-1-5-20");
}

#[test]
fn rotation_links_on_renewal_keeps_the_current_and_prunes_only_what_akvsync_installed() {
    use windows_cert_props::*;
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    wine_user_keyset();
    let options = Options {
        link_on_renewal: true,
        import_compat: wine_compat(),
        lifecycle_notifications: true,
        update_http_sys_bindings: true,
    };
    win::set_options(options);
    let lm = settings::StoreLocation::LocalMachine;
    clear(lm, "AkvsyncRenew");
    let pki = kvemu::seed::TestPki::generate().unwrap();
    let names = vec!["www.renew.test".to_owned()];
    let issue = |days: i64, names: &[String]| {
        let issued = pki
            .issue("renew", names, kvemu::seed::LeafKey::Rsa2048, days)
            .unwrap();
        let pem = issued.pem_key_first();
        decode::decode_pem(&pem).unwrap()
    };
    let old = issue(30, &names);
    let foreign = issue(20, &names);
    let unrelated = issue(10, &["other.renew.test".to_owned()]);
    let new = issue(60, &names);

    // Someone else's older certificate with the same SAN, and one with another SAN.
    let other_c = observed("someone-else", "LocalMachine", "AkvsyncRenew", &[], false);
    let plain = Store::open_system(lm, "AkvsyncRenew", true).unwrap();
    for b in [&foreign, &unrelated] {
        let imported =
            Store::import_pfx(&win::pfx_for(b).unwrap(), plan::CRYPT_MACHINE_KEYSET).unwrap();
        for cert in imported.certificates() {
            if cert.der() == b.leaf.der {
                plain.add(&cert, 3).unwrap();
            }
        }
    }
    plain.commit().unwrap();
    drop(plain);

    let c = observed("web", "LocalMachine", "AkvsyncRenew", &READERS, false);
    let store = store::for_target(&c.target).unwrap();
    store.install(&c, V1, &old).unwrap();
    let settings::Target::WindowsStore(target) = &c.target else {
        unreachable!()
    };
    // The renewal's reach (issue 15): it replaces our old version and the foreign one with
    // the same SAN; a lifecycle notification per replaced certificate (Wine's powershell.exe
    // runs and exits 0); no HTTP.sys binding moves (Wine's HTTP.sys has none).
    let reach = win::install_version(target, &c, V2, &new, options).unwrap();
    let mut replaced = reach.replaced.clone();
    replaced.sort();
    let mut expected = vec![old.leaf.thumbprint.clone(), foreign.leaf.thumbprint.clone()];
    expected.sort();
    assert_eq!(replaced, expected);
    assert_eq!(reach.notified, reach.replaced, "{:?}", reach.problems);
    assert!(
        reach.moved.is_empty() && reach.problems.is_empty(),
        "{reach:?}"
    );
    assert_eq!(store.current_version(&c).as_deref(), Some(V2));
    assert_eq!(
        store.installed(&c).unwrap().unwrap().leaf.thumbprint,
        new.leaf.thumbprint
    );
    assert_eq!(
        store.current_version(&other_c),
        None,
        "foreign certificates are not ours"
    );

    let renewal = renewal_of(lm, "AkvsyncRenew");
    let new_hash = sha1_upper(&new.leaf.der);
    assert_eq!(
        renewal.get(&old.leaf.thumbprint),
        Some(&Some(new_hash.clone()))
    );
    assert_eq!(renewal.get(&foreign.leaf.thumbprint), Some(&Some(new_hash)));
    assert_eq!(renewal.get(&unrelated.leaf.thumbprint), Some(&None));
    assert_eq!(renewal.get(&new.leaf.thumbprint), Some(&None));

    // Key cleanup (issue 15): Wine keeps every imported key in one container, which V2
    // still uses, so V1's own key is made a dedicated container first: pruning V1 must
    // delete that one and leave the shared one (V2 keeps its private key).
    keys::create_container(keys::PRUNE_CONTAINER);
    assert!(keys::container_exists(keys::PRUNE_CONTAINER));
    let renew_store = Store::open_system(lm, "AkvsyncRenew", false).unwrap();
    let v1_cert = renew_store
        .certificates()
        .into_iter()
        .find(|cert| cert.der() == old.leaf.der)
        .unwrap();
    v1_cert
        .set_key_prov_info(&akvsync::store::windows::sys::KeyProvInfo {
            container: keys::PRUNE_CONTAINER.to_owned(),
            provider: keys::PROVIDER.to_owned(),
            provider_type: 1, // PROV_RSA_FULL
            flags: 0x20,      // CRYPT_MACHINE_KEYSET
            key_spec: 1,      // AT_KEYEXCHANGE
        })
        .unwrap();
    drop(v1_cert);
    renew_store.commit().unwrap();
    drop(renew_store);
    let removed = store
        .prune(&c, &[V1.to_owned(), V2.to_owned()], &[V2])
        .unwrap();
    assert_eq!(removed, vec![V1.to_owned()]);
    assert!(
        !keys::container_exists(keys::PRUNE_CONTAINER),
        "the pruned version's own key container is deleted"
    );
    assert!(
        store.installed(&c).unwrap().unwrap().has_private_key,
        "the shared key the current version uses is kept"
    );
    let left = thumbprints_in(lm, "AkvsyncRenew");
    assert!(!left.contains(&old.leaf.thumbprint));
    for kept in [&new, &foreign, &unrelated] {
        assert!(left.contains(&kept.leaf.thumbprint));
    }
    assert_eq!(store.current_version(&c).as_deref(), Some(V2));
}

/// Reads `CERT_RENEWAL_PROP_ID` back, through a fresh store handle.
mod windows_cert_props {
    use std::collections::BTreeMap;

    use super::*;

    pub const CERT_RENEWAL_PROP_ID: u32 = 64;

    pub fn sha1_upper(der: &[u8]) -> String {
        use sha1::Digest;
        decode::hex_upper(&sha1::Sha1::digest(der))
    }

    pub fn renewal_of(
        location: settings::StoreLocation,
        name: &str,
    ) -> BTreeMap<String, Option<String>> {
        let store = Store::open_system(location, name, false).unwrap();
        store
            .certificates()
            .iter()
            .map(|c| {
                (
                    decode::CertificateInfo::parse(&c.der()).unwrap().thumbprint,
                    c.property(CERT_RENEWAL_PROP_ID)
                        .map(|h| decode::hex_upper(&h)),
                )
            })
            .collect()
    }
}

/// Dedicated CAPI key containers in Wine's machine keyset (its `HKLM\Software\Wine\Crypto\RSA`).
mod keys {
    use windows_sys::Win32::Security::Cryptography::{CryptAcquireContextW, CryptReleaseContext};

    pub const PRUNE_CONTAINER: &str = "akvsync-prune-test";
    pub const PROVIDER: &str = "Microsoft Enhanced Cryptographic Provider v1.0";
    const PROV_RSA_FULL: u32 = 1;
    const CRYPT_NEWKEYSET: u32 = 0x8;
    const CRYPT_MACHINE_KEYSET: u32 = 0x20;

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    fn acquire(name: &str, flags: u32) -> bool {
        let (name, provider) = (wide(name), wide(PROVIDER));
        let mut handle = 0usize;
        // SAFETY: NUL-terminated names; the handle is released when acquired.
        unsafe {
            let ok = CryptAcquireContextW(
                &mut handle,
                name.as_ptr(),
                provider.as_ptr(),
                PROV_RSA_FULL,
                flags | CRYPT_MACHINE_KEYSET,
            );
            if ok != 0 {
                CryptReleaseContext(handle, 0);
            }
            ok != 0
        }
    }

    pub fn create_container(name: &str) {
        if !container_exists(name) {
            assert!(
                acquire(name, CRYPT_NEWKEYSET),
                "creating key container {name}"
            );
        }
    }

    pub fn container_exists(name: &str) -> bool {
        acquire(name, 0)
    }
}
