//! Property tests: no input, however malformed, panics the settings parser, and every
//! URL the strict grammar accepts maps to a Key Vault host and a safe file name.

use std::fs;

use akvsync::settings::{self, Platform};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

const KEYS: &[&str] = &[
    "runtimeSettings",
    "handlerSettings",
    "publicSettings",
    "protectedSettings",
    "secretsManagementSettings",
    "pollingIntervalInS",
    "requireInitialSync",
    "linkOnRenewal",
    "certificateStoreName",
    "certificateStoreLocation",
    "aclEnabled",
    "observedCertificates",
    "url",
    "keyExportable",
    "accounts",
    "customSymbolicLinkName",
    "acls",
    "user",
    "group",
    "authenticationSettings",
    "msiEndpoint",
    "msiClientId",
    "loggingSettings",
    "akvsync",
    "retainVersions",
    "initialSyncMaxAttempts",
    "initialSyncSpreadInS",
    "testing",
    "caFile",
    "connectTo",
    "minPollingIntervalInS",
    "windowsImportCompat",
    "myvault.vault.azure.net",
    "x",
];

const STRINGS: &[&str] = &[
    "",
    "true",
    "False",
    "3600",
    "0",
    "-1",
    "LocalMachine",
    "CurrentUser",
    "MY",
    "/",
    "/a/../b",
    "https://myvault.vault.azure.net/secrets/c1",
    "https://myvault.vault.azure.net/secrets/c1/0123456789abcdef0123456789abcdef",
    "https://evil.example.com/secrets/c1",
    "http://169.254.169.254/metadata/identity",
    "c7373ae5-91c2-4165-8ab6-7381d6e75619",
    "127.0.0.1:8443",
    "\u{0}",
    "é",
    "a:b",
];

/// JSON documents built from the schema's own vocabulary, so that the generator reaches
/// deep into the validator instead of failing at the first field.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|n| serde_json::json!(n)),
        prop::sample::select(STRINGS).prop_map(|s| serde_json::json!(s)),
        ".{0,40}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(8, 128, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|members| {
                serde_json::Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    })
}

fn corpus_files() -> Vec<Vec<u8>> {
    ["valid", "invalid"]
        .into_iter()
        .flat_map(crate::common::settings_corpus)
        .map(|path| fs::read(path).unwrap())
        .collect()
}

#[test]
fn url_property_reaches_accepted_urls() {
    // Well-formed URLs from a deterministic generator are all accepted with their vault name.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (
        "[a-z0-9-]{3,24}",
        prop::sample::select(&["secrets", "certificates"][..]),
        "[a-zA-Z0-9-]{1,20}",
    );
    let mut accepted = 0;
    for _ in 0..200 {
        let (label, collection, name) = strategy.new_tree(&mut runner).unwrap().current();
        let url = format!("https://{label}.vault.azure.net/{collection}/{name}");
        let secret = settings::parse_secret_url(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(secret.vault_name, label);
        accepted += 1;
    }
    assert_eq!(accepted, 200);
}

fn both_platforms(bytes: &[u8]) {
    for platform in [Platform::Windows, Platform::Linux] {
        let _ = settings::parse_bytes(bytes, platform);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        both_platforms(&bytes);
    }

    #[test]
    fn schema_shaped_documents_never_panic(value in json_value()) {
        both_platforms(value.to_string().as_bytes());
        let wrapped = serde_json::json!({"runtimeSettings": [{"handlerSettings": {"publicSettings": value}}]});
        both_platforms(wrapped.to_string().as_bytes());
    }

    #[test]
    fn mutated_corpus_files_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let files = corpus_files();
        let mut bytes = pick.get(&files).clone();
        if !bytes.is_empty() {
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        both_platforms(&bytes);
    }

    #[test]
    fn accepted_urls_name_a_vault_and_a_safe_file(
        scheme in "(https?|HTTPS)",
        label in "[a-zA-Z0-9.<>@_-]{0,30}",
        suffix in prop::sample::select(&["vault.azure.net", "VAULT.azure.cn", "vault.usgovcloudapi.net", "vault.azure.net.evil.com", "example.com", "vault.azure.net:443", "vault.azure.net:80"][..]),
        collection in prop::sample::select(&["secrets", "Secrets", "certificates", "keys", "..", ""][..]),
        rest in "(/[a-zA-Z0-9._%-]{0,40}){0,3}/?[?#]?",
    ) {
        let url = format!("{scheme}://{label}.{suffix}/{collection}{rest}");
        let accepted = settings::parse_secret_url(&url);
        if let Ok(secret) = accepted {
            let host = secret.vault_host();
            let known = settings::Cloud::ALL.iter().any(|c| host.ends_with(&(".".to_owned() + c.suffix())));
            prop_assert!(known, "{} is not under a known suffix", host);
            prop_assert_eq!(host.matches('.').count(), secret.cloud.suffix().matches('.').count() + 1);
            let file_name = format!("{}.{}", secret.vault_name, secret.secret_name);
            prop_assert!(!file_name.contains('/') && !file_name.starts_with('.'));
            prop_assert!(!url.contains('?') && !url.contains('#') && !url.contains('@'));
        }
    }

    #[test]
    fn polling_interval_is_never_below_the_floor(seconds in 1u64..100_000) {
        let doc = serde_json::json!({"secretsManagementSettings": {"pollingIntervalInS": seconds.to_string(), "observedCertificates": []}});
        let validated = settings::parse_bytes(doc.to_string().as_bytes(), Platform::Linux).unwrap();
        prop_assert_eq!(validated.settings.polling_interval_s, seconds.max(settings::MIN_POLLING_INTERVAL_S));
    }
}
