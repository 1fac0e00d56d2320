//! End to end under Wine (issue 6): the emulator runs in this test process, the real
//! `akvsync.exe once` runs as a second Wine process against it over loopback HTTPS, and
//! installs RSA certificates into `LocalMachine` and `CurrentUser` stores; a rotation with
//! `linkOnRenewal` sets the renewal property on the old certificate; a third process
//! (`akvsync.exe status --json`) sees what is installed. Chain validation: refused against
//! Wine's `Root` store (the emulator's root is not in it), installed once the roots file
//! (`SSL_CERT_FILE`) holds that root. A `restartService` hook restarts the akvsync service
//! under Wine's service control manager after the first install.
#![cfg(windows)]

use std::fs;
use std::path::PathBuf;

use akvsync::decode;
use akvsync::settings::StoreLocation;
use akvsync::store::windows::plan;
use akvsync::store::windows::sys::Store;
use kvemu::{Config, Emulator};

const VAULT: &str = "winkv";

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("akvsync-win-e2e-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn clear(location: StoreLocation, name: &str) {
    let store = Store::open_system(location, name, true).unwrap();
    for cert in store.certificates() {
        cert.delete().unwrap();
    }
    let _ = store.commit();
}

/// (thumbprint, renewal hash) of every certificate in a store, read by this process.
fn read_store(location: StoreLocation, name: &str) -> Vec<(String, Option<String>)> {
    let store = Store::open_system(location, name, false).unwrap();
    store
        .certificates()
        .iter()
        .map(|c| {
            (
                decode::CertificateInfo::parse(&c.der()).unwrap().thumbprint,
                c.property(64).map(|h| decode::hex_upper(&h)),
            )
        })
        .collect()
}

fn settings(emu: &Emulator) -> serde_json::Value {
    let url = |s: &str| format!("https://{VAULT}.vault.azure.net/secrets/{s}");
    serde_json::json!({
        "secretsManagementSettings": {
            "pollingIntervalInS": "3600",
            "linkOnRenewal": true,
            "observedCertificates": [
                {"url": url("iis"), "certificateStoreName": "AkvsyncE2E",
                 "certificateStoreLocation": "LocalMachine",
                 "accounts": ["Network Service", "Local Service"]},
                {"url": url("user"), "certificateStoreName": "AkvsyncE2EUser",
                 "certificateStoreLocation": "CurrentUser",
                 "accounts": ["Network Service", "Local Service"]},
            ],
        },
        "authenticationSettings": {"msiEndpoint": emu.identity_endpoint()},
        "akvsync": {
          // The `restartService` hook (issue 14) against Wine's service control manager: the
          // akvsync service itself, registered by the test, is stopped and started again.
          "hooks": [{"restartService": "akvsync", "certificates": ["winkv/iis"], "timeoutInS": 60}],
          "testing": {
            "caFile": emu.ca_file().to_str().unwrap(),
            "connectTo": {format!("{VAULT}.vault.azure.net"): emu.vault_addr().to_string()},
            // Wine's import flags, except on a real Windows (the workflow).
            "windowsImportCompat": std::env::var_os("AKVSYNC_REAL_WINDOWS").is_none(),
        }},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_installs_into_local_machine_and_current_user_and_links_on_renewal() {
    let dir = scratch();
    // Wine acquires every key from the user keyset: create its container first (see
    // windows_store.rs and docs/windows.md).
    let pki = kvemu::seed::TestPki::generate().unwrap();
    let primer = pki
        .issue(
            "primer",
            &["primer.test".to_owned()],
            kvemu::seed::LeafKey::Rsa2048,
            5,
        )
        .unwrap();
    let primer = decode::decode_pem(&primer.pem_key_first()).unwrap();
    drop(
        Store::import_pfx(
            &akvsync::store::windows::pfx_for(&primer).unwrap(),
            plan::CRYPT_USER_KEYSET,
        )
        .unwrap(),
    );
    clear(StoreLocation::LocalMachine, "AkvsyncE2E");
    clear(StoreLocation::CurrentUser, "AkvsyncE2EUser");

    let emu = Emulator::start(Config::default()).await.unwrap();
    let first = emu.rotate_certificate(VAULT, "iis").unwrap();
    let user = emu.rotate_certificate(VAULT, "user").unwrap();
    let settings_file = dir.join("settings.json");
    fs::write(&settings_file, settings(&emu).to_string()).unwrap();
    let state = dir.join("state");
    // The machine's roots for chain validation: Wine's `Root` store is built from the host's
    // CA bundle and cannot take the emulator's root, so the runs after the refusal name a
    // roots file (`SSL_CERT_FILE`, read by the same loader on every platform).
    let roots_file = dir.join("roots.pem");
    let roots: std::cell::Cell<Option<&std::path::Path>> = std::cell::Cell::new(None);
    let run = |args: &'static [&'static str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"));
        command
            .args(args)
            .arg("--settings")
            .arg(&settings_file)
            .arg("--state-dir")
            .arg(&state);
        match roots.get() {
            Some(file) => command.env("SSL_CERT_FILE", file),
            None => command.env_remove("SSL_CERT_FILE"),
        };
        command.output()
    };

    // Chain validation (issue 15; `serverAuth` by default on Windows, as in
    // KeyVaultForWindows 4.0): the emulator's root is not among the machine's roots (Wine's
    // `Root` store, read through CryptoAPI), so its TLS server certificates are refused by
    // name and nothing is installed.
    let out = run(&["once"]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("untrusted chain"), "{text}");
    assert!(read_store(StoreLocation::LocalMachine, "AkvsyncE2E").is_empty());
    let root = emu.test_pki().unwrap().root_der().to_vec();
    let pem =
        pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, &root).unwrap();
    fs::write(&roots_file, pem).unwrap();
    roots.set(Some(&roots_file));

    // The service the hook restarts: akvsync itself, with settings that observe nothing.
    let idle = dir.join("idle.json");
    fs::write(
        &idle,
        r#"{"secretsManagementSettings":{"pollingIntervalInS":"3600","observedCertificates":[]}}"#,
    )
    .unwrap();
    let service = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
            .arg("service")
            .args(args)
            .output()
            .unwrap()
    };
    let sc = |args: &[&str]| {
        let out = std::process::Command::new("sc")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A registration left by an earlier run goes first, and is gone once its process exits.
    let _ = service(&["uninstall"]);
    for _ in 0..80 {
        if !sc(&["query", "akvsync"]).contains("akvsync") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let installed = service(&["install", "--settings", idle.to_str().unwrap()]);
    assert!(installed.status.success(), "{installed:?}");
    sc(&["start", "akvsync"]);
    let running = || sc(&["query", "akvsync"]).contains("RUNNING");
    for _ in 0..80 {
        if running() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(
        running(),
        "the hook's service did not start: {}",
        sc(&["query", "akvsync"])
    );
    let service_log = || {
        ["ProgramData", "ALLUSERSPROFILE", "PUBLIC"]
            .iter()
            .filter_map(std::env::var_os)
            .map(|d| {
                std::path::PathBuf::from(d)
                    .join("akvsync")
                    .join("akvsync.log")
            })
            .find_map(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    let stops_before = service_log()
        .matches("stop requested by the service control manager")
        .count();

    let out = run(&["once"]).await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(
        read_store(StoreLocation::LocalMachine, "AkvsyncE2E"),
        vec![(first.thumbprint.clone(), None)]
    );
    // The hook stopped the service (one more stop request in its log) and started it again.
    let stops_after = service_log()
        .matches("stop requested by the service control manager")
        .count();
    assert_eq!(stops_after, stops_before + 1, "{}", service_log());
    assert!(running(), "restarted: {}", sc(&["query", "akvsync"]));
    assert!(
        read_store(StoreLocation::CurrentUser, "AkvsyncE2EUser")
            .iter()
            .any(|(t, _)| *t == user.thumbprint)
    );

    // Rotation: the new version is installed beside the old one, which now points at it.
    // "Older" is decided by notBefore, which has one-second resolution: issue the renewal
    // in a later second than the first certificate, as a real renewal always is.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = emu.rotate_certificate(VAULT, "iis").unwrap();
    let out = run(&["once"]).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The renewal restarted the service again.
    let stops_renewal = service_log()
        .matches("stop requested by the service control manager")
        .count();
    assert_eq!(stops_renewal, stops_before + 2, "{}", service_log());
    let removed = service(&["uninstall"]);
    assert!(removed.status.success(), "{removed:?}");
    let after = read_store(StoreLocation::LocalMachine, "AkvsyncE2E");
    assert!(
        after.contains(&(first.thumbprint.clone(), Some(second.thumbprint.clone()))),
        "{after:?}"
    );
    assert!(
        after.contains(&(second.thumbprint.clone(), None)),
        "{after:?}"
    );

    // A third process reads the store back.
    let out = run(&["status", "--json"]).await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let thumbprints: Vec<&str> = json["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["installed"]["thumbprint"].as_str())
        .collect();
    assert!(thumbprints.contains(&second.thumbprint.as_str()), "{json}");
    assert!(thumbprints.contains(&user.thumbprint.as_str()), "{json}");
    emu.shutdown().await;
    let _ = fs::remove_dir_all(&dir);
}
