//! The Windows certificate store against real crypt32 (issue 6): these tests exist only
//! for Windows targets and run in CI under Wine (`scripts/wine/setup.sh`, `.ci/run`). They
//! import Key Vault's recorded PFX (CAPI1 CSP) and OpenSSL PFX/PEM (CNG by the rule; Wine
//! imports both into CAPI under `windowsImportCompat`) into LocalMachine and CurrentUser
//! stores (one row of [`INSTALLS`] each), then read back thumbprint, version, private key,
//! friendly name, the chain in `CA`, no root, the private key's exact DACL; then an account
//! that does not resolve, `linkOnRenewal`'s property and pruning.
#![cfg(windows)]

use crate::common::agent::parse;
use crate::common::fixtures::{self, thumbprint};
use crate::common::win_store::{
    clear, keys_turn, prime_user_keyset, renewals, sha1_upper, thumbprints_in, wine_compat,
};
use akvsync::decode::{self, Bundle};
use akvsync::settings::{ObservedCertificate, StoreLocation, Target, WindowsTarget};
use akvsync::store;
use akvsync::store::windows::plan::{self, KEY_FULL_CONTROL, KEY_READ, Provider};
use akvsync::store::windows::sys::Store;
use akvsync::store::windows::{self as win, Options};

/// Every install in this process grants the same readers (spelled differently), so every
/// key ends with the same DACL ([`dacl`]): Wine keeps all keys in one CAPI container and
/// enforces that container's registry DACL within a wineserver session, so a different DACL
/// could not be written over it (docs/windows.md).
const READERS: [&str; 2] = ["Network Service", "Local Service"];

const V1: &str = "11111111111111111111111111111111";
const V2: &str = "22222222222222222222222222222222";

/// One observed certificate parsed from Windows settings, as the agent would see it.
fn observed(
    secret: &str,
    location: StoreLocation,
    store_name: &str,
    accounts: &[&str],
    exportable: bool,
) -> ObservedCertificate {
    let json = serde_json::json!({"secretsManagementSettings": {
        "pollingIntervalInS": "3600",
        "observedCertificates": [{
            "url": format!("https://wintest.vault.azure.net/secrets/{secret}"),
            "certificateStoreName": store_name,
            "certificateStoreLocation": location.name(),
            "accounts": accounts,
            "keyExportable": exportable,
        }],
    }});
    parse(&json).certificates[0].clone()
}

fn target(c: &ObservedCertificate) -> &WindowsTarget {
    match &c.target {
        Target::WindowsStore(t) => t,
        Target::LinuxDirectory(_) => unreachable!(),
    }
}

/// Without `linkOnRenewal`, with Wine's import flags where they apply.
fn compat() {
    win::set_options(Options {
        link_on_renewal: false,
        import_compat: wine_compat(),
        ..Options::default()
    });
}

/// The ACEs of the key of the certificate `thumbprint` in `c`'s store.
fn aces(c: &ObservedCertificate, thumbprint: &str) -> Vec<plan::Ace> {
    plan::parse_dacl_aces(&win::key_dacl_of(target(c), thumbprint).unwrap())
}

/// The DACL every key of this process ends with: Administrators and SYSTEM full control,
/// then [`READERS`] (Network Service, Local Service) read, in that order.
fn dacl() -> Vec<plan::Ace> {
    let ace = |access, sid: &str| (access, sid.to_owned());
    vec![
        ace(KEY_FULL_CONTROL, "S-1-5-32-544"),
        ace(KEY_FULL_CONTROL, "S-1-5-18"),
        ace(KEY_READ, "S-1-5-20"),
        ace(KEY_READ, "S-1-5-19"),
    ]
}

/// A certificate secret as the agent gets it.
#[derive(Debug, Clone, Copy)]
enum Fixture {
    /// Key Vault's recorded PFX (it names a CAPI CSP).
    KeyVaultPfx,
    /// OpenSSL 3's PFX (no CSP name): the test PKI's leaf, intermediate and root.
    OpensslPfx,
    /// A PEM (PKCS#1 key last) with the test PKI's leaf and intermediate, converted to a PFX.
    Pem,
}

impl Fixture {
    fn bundle(self) -> Bundle {
        match self {
            Fixture::KeyVaultPfx => fixtures::recorded_key_vault_bundle(),
            Fixture::OpensslPfx => {
                decode::decode_pfx(&fixtures::bytes("rsa-openssl3-aes-empty.p12")).unwrap()
            }
            Fixture::Pem => decode::decode_pem(&fixtures::text("rsa-pkcs1-key-last.pem")).unwrap(),
        }
    }

    fn leaf(self) -> String {
        match self {
            Fixture::KeyVaultPfx => fixtures::RECORDED_LEAF.to_owned(),
            Fixture::OpensslPfx | Fixture::Pem => thumbprint("leaf"),
        }
    }
}

/// One import into a system store, and what must be found there afterwards.
struct Install {
    fixture: Fixture,
    /// The provider the fixture's key goes to by the rule (`plan::provider_for`).
    provider: Provider,
    secret: &'static str,
    location: StoreLocation,
    store: &'static str,
    /// [`READERS`], spelled another way.
    accounts: &'static [&'static str],
    exportable: bool,
    /// The chain certificate (`thumbprints.txt`) that must land in `CA` of `location`.
    intermediate: Option<&'static str>,
}

const INSTALLS: [Install; 3] = [
    Install {
        fixture: Fixture::KeyVaultPfx,
        provider: Provider::Capi,
        secret: "kvcert",
        location: StoreLocation::LocalMachine,
        store: "AkvsyncKv",
        accounts: &READERS,
        exportable: false,
        intermediate: None,
    },
    Install {
        fixture: Fixture::OpensslPfx,
        provider: Provider::Cng,
        secret: "ossl",
        location: StoreLocation::CurrentUser,
        store: "AkvsyncOssl",
        accounts: &[
            "S-1-5-20",
            "NT AUTHORITY\\LOCAL SERVICE",
            "NT AUTHORITY\\SYSTEM",
        ],
        exportable: true,
        intermediate: Some("int"),
    },
    Install {
        fixture: Fixture::Pem,
        provider: Provider::Cng,
        secret: "pem",
        location: StoreLocation::LocalMachine,
        store: "AkvsyncPem",
        accounts: &["network service", "S-1-5-19"],
        exportable: true,
        intermediate: Some("int"),
    },
];

#[test]
fn each_secret_form_is_imported_with_its_chain_in_ca_no_root_and_the_exact_key_acl() {
    let _turn = keys_turn();
    compat();
    prime_user_keyset();
    let root = thumbprint("root");
    for row in &INSTALLS {
        let what = format!(
            "{:?} into {}\\{}",
            row.fixture,
            row.location.name(),
            row.store
        );
        let bundle = row.fixture.bundle();
        assert_eq!(
            plan::provider_for(bundle.csp_name.as_deref()),
            row.provider,
            "{what}"
        );
        let c = observed(
            row.secret,
            row.location,
            row.store,
            row.accounts,
            row.exportable,
        );
        clear(row.location, row.store);
        let store = store::for_target(&c.target).unwrap();
        assert_eq!(store.current_version(&c), None, "{what}");

        store.install(&c, V1, &bundle).unwrap();

        let leaf = row.fixture.leaf();
        assert_eq!(store.current_version(&c).as_deref(), Some(V1), "{what}");
        let installed = store.installed(&c).unwrap().unwrap();
        assert_eq!(installed.leaf.thumbprint, leaf, "{what}");
        assert!(installed.has_private_key, "{what}");
        assert_eq!(installed.version.as_deref(), Some(V1), "{what}");
        assert_eq!(
            installed.location,
            format!("{}\\{}\\{leaf}", row.location.name(), row.store),
            "{what}"
        );
        let listed = win::installed_in(target(&c)).unwrap();
        assert_eq!(listed.len(), 1, "{what}");
        assert_eq!(
            listed[0].version.as_deref(),
            Some(&*format!("{} {V1}", row.secret)),
            "{what}: friendly name"
        );
        assert_eq!(
            thumbprints_in(row.location, row.store),
            vec![leaf.clone()],
            "{what}: only the leaf in the named store"
        );
        if let Some(intermediate) = row.intermediate {
            assert!(
                thumbprints_in(row.location, "CA").contains(&thumbprint(intermediate)),
                "{what}: intermediate in CA"
            );
        }
        for location in [StoreLocation::CurrentUser, StoreLocation::LocalMachine] {
            for name in ["CA", "Root", row.store] {
                assert!(
                    !thumbprints_in(location, name).contains(&root),
                    "{what}: root installed in {}\\{name}",
                    location.name()
                );
            }
        }
        assert_eq!(aces(&c, &leaf), dacl(), "{what}");
    }
}

#[test]
fn an_account_that_does_not_resolve_fails_that_certificate_before_anything_changes() {
    let _turn = keys_turn();
    compat();
    prime_user_keyset();
    let c = observed(
        "noacct",
        StoreLocation::LocalMachine,
        "AkvsyncNoAcct",
        &["Network Service", "NoSuchDomain\\akvsync-nobody"],
        false,
    );
    clear(StoreLocation::LocalMachine, "AkvsyncNoAcct");
    let store = store::for_target(&c.target).unwrap();
    let err = store
        .install(&c, V1, &Fixture::OpensslPfx.bundle())
        .unwrap_err()
        .to_string();
    assert!(err.contains("NoSuchDomain\\\\akvsync-nobody"), "{err}");
    assert!(thumbprints_in(StoreLocation::LocalMachine, "AkvsyncNoAcct").is_empty());
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
    let _turn = keys_turn();
    prime_user_keyset();
    let options = Options {
        link_on_renewal: true,
        import_compat: wine_compat(),
        lifecycle_notifications: true,
        update_http_sys_bindings: true,
    };
    win::set_options(options);
    let lm = StoreLocation::LocalMachine;
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
    let other_c = observed("someone-else", lm, "AkvsyncRenew", &[], false);
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

    let c = observed("web", lm, "AkvsyncRenew", &READERS, false);
    let store = store::for_target(&c.target).unwrap();
    store.install(&c, V1, &old).unwrap();
    let target = target(&c);
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

    let renewal = renewals(lm, "AkvsyncRenew");
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
