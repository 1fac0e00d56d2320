//! End to end under Wine (issue 6): the emulator runs in this test process, the real
//! `akvsync.exe once` runs as a second Wine process against it over loopback HTTPS, and
//! installs RSA certificates into `LocalMachine` and `CurrentUser` stores; a rotation with
//! `linkOnRenewal` sets the renewal property on the old certificate; a third process
//! (`akvsync.exe status --json`) sees what is installed. Chain validation: refused against
//! Wine's `Root` store (the emulator's root is not in it), installed once the roots file
//! (`SSL_CERT_FILE`) holds that root. A `restartService` hook restarts the akvsync service
//! under Wine's service control manager after the first install.
#![cfg(windows)]

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::env::{Env, EnvConfig, VAULT};
use crate::common::wait_until;
use crate::common::win_store::{clear, keys_turn, prime_user_keyset, renewals};
use akvsync::settings::StoreLocation;

/// The line the service logs for each stop the service control manager asks for.
const STOP_REQUESTED: &str = "stop requested by the service control manager";

/// How long Wine's service control manager may take to start or forget a service.
const SCM_LIMIT: Duration = Duration::from_secs(20);

/// `sc <args…>` (Wine's service control tool), its stdout.
fn sc(args: &[&str]) -> String {
    let out = std::process::Command::new("sc")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The installed service's log (`%ProgramData%\akvsync\akvsync.log`), empty before it has one.
fn service_log() -> String {
    ["ProgramData", "ALLUSERSPROFILE", "PUBLIC"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|d| {
            std::path::PathBuf::from(d)
                .join("akvsync")
                .join("akvsync.log")
        })
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

fn stops_requested() -> usize {
    service_log().matches(STOP_REQUESTED).count()
}

#[test]
fn once_installs_into_local_machine_and_current_user_and_links_on_renewal() {
    let _turn = keys_turn();
    // Wine acquires every key from the user keyset: create its container first
    // (docs/windows.md).
    prime_user_keyset();
    clear(StoreLocation::LocalMachine, "AkvsyncE2E");
    clear(StoreLocation::CurrentUser, "AkvsyncE2EUser");

    let readers = ["Network Service", "Local Service"];
    let env = Env::start(EnvConfig {
        secrets_management: Some(serde_json::json!({
            "pollingIntervalInS": "3600",
            "linkOnRenewal": true,
            "observedCertificates": [
                {"url": format!("https://{VAULT}.vault.azure.net/secrets/iis"),
                 "certificateStoreName": "AkvsyncE2E",
                 "certificateStoreLocation": "LocalMachine", "accounts": readers},
                {"url": format!("https://{VAULT}.vault.azure.net/secrets/user"),
                 "certificateStoreName": "AkvsyncE2EUser",
                 "certificateStoreLocation": "CurrentUser", "accounts": readers},
            ],
        })),
        // The `restartService` hook (issue 14) against Wine's service control manager: the
        // akvsync service itself, registered by the test, is stopped and started again.
        akvsync: Some(serde_json::json!({"hooks": [{
            "restartService": "akvsync",
            "certificates": [format!("{VAULT}/iis")],
            "timeoutInS": 60,
        }]})),
        ..Default::default()
    });
    let first = env.emu.rotate_certificate(VAULT, "iis").unwrap();
    let user = env.emu.rotate_certificate(VAULT, "user").unwrap();
    let lm_store = || renewals(StoreLocation::LocalMachine, "AkvsyncE2E");

    // Chain validation (issue 15; `serverAuth` by default on Windows, as in
    // KeyVaultForWindows 4.0): the emulator's root is not among the machine's roots (Wine's
    // `Root` store, read through CryptoAPI), so its TLS server certificates are refused by
    // name and nothing is installed.
    env.cmd(&["once"])
        .code(1)
        .stdout_has("untrusted chain")
        .run();
    assert!(lm_store().is_empty());
    // The machine's roots for chain validation: Wine's `Root` store is built from the host's
    // CA bundle and cannot take the emulator's root, so the runs after the refusal name a
    // roots file (`SSL_CERT_FILE`, read by the same loader on every platform).
    let roots_file = env.scratch.path("roots.pem");
    let root = env.emu.test_pki().unwrap().root_der().to_vec();
    let pem =
        pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, &root).unwrap();
    std::fs::write(&roots_file, pem).unwrap();
    let once = || env.cmd(&["once"]).env("SSL_CERT_FILE", &roots_file);

    // The service the hook restarts: akvsync itself, with settings that observe nothing.
    let idle = env.scratch.path("idle.json");
    std::fs::write(
        &idle,
        r#"{"secretsManagementSettings":{"pollingIntervalInS":"3600","observedCertificates":[]}}"#,
    )
    .unwrap();
    // A registration left by an earlier run goes first, and is gone once its process exits.
    env.cmd(&["service", "uninstall"]).run();
    wait_until(SCM_LIMIT, "the old registration gone", || {
        let query = sc(&["query", "akvsync"]);
        if query.contains("akvsync") {
            Err(query)
        } else {
            Ok(())
        }
    });
    env.cmd(&["service", "install", "--settings"])
        .arg(&idle)
        .code(0)
        .run();
    sc(&["start", "akvsync"]);
    let running = || {
        let query = sc(&["query", "akvsync"]);
        if query.contains("RUNNING") {
            Ok(())
        } else {
            Err(query)
        }
    };
    wait_until(SCM_LIMIT, "the hook's service started", running);
    let stops_before = stops_requested();

    once().code(0).run();
    assert_eq!(
        lm_store(),
        BTreeMap::from([(first.thumbprint.clone(), None)])
    );
    // The hook stopped the service (one more stop request in its log) and started it again.
    assert_eq!(stops_requested(), stops_before + 1, "{}", service_log());
    if let Err(query) = running() {
        panic!("restarted: {query}");
    }
    assert!(renewals(StoreLocation::CurrentUser, "AkvsyncE2EUser").contains_key(&user.thumbprint));

    // Rotation: the new version is installed beside the old one, which now points at it.
    // "Older" is decided by notBefore, which has one-second resolution: issue the renewal
    // in a later second than the first certificate, as a real renewal always is.
    std::thread::sleep(Duration::from_millis(1100));
    let second = env.emu.rotate_certificate(VAULT, "iis").unwrap();
    once().code(0).run();
    // The renewal restarted the service again.
    assert_eq!(stops_requested(), stops_before + 2, "{}", service_log());
    env.cmd(&["service", "uninstall"]).code(0).run();
    let after = lm_store();
    assert_eq!(
        after.get(&first.thumbprint),
        Some(&Some(second.thumbprint.clone())),
        "{after:?}"
    );
    assert_eq!(after.get(&second.thumbprint), Some(&None), "{after:?}");

    // A third process reads the store back.
    let out = env.cmd(&["status", "--json"]).code(0).run();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let thumbprints: Vec<&str> = json["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["installed"]["thumbprint"].as_str())
        .collect();
    assert!(thumbprints.contains(&second.thumbprint.as_str()), "{json}");
    assert!(thumbprints.contains(&user.thumbprint.as_str()), "{json}");
}
