//! What only a real Windows can show (issue 15), run by `.github/workflows/windows.yml` on
//! GitHub's Windows runners with `AKVSYNC_REAL_WINDOWS=1` (as an administrator); under Wine
//! and elsewhere it says why it skips. Against the in-process emulator over loopback HTTPS:
//! the emulator's root goes to `LocalMachine\Root` (chain validation against the real chain
//! engine's store), an HTTP.sys binding (`netsh http add sslcert`) serves the first version,
//! `akvsync.exe once` installs a renewal without `windowsImportCompat` (real CNG import), and
//! then: the binding serves the new certificate with its other fields unchanged, event 1001
//! names both thumbprints in the lifecycle log, the old certificate (no longer bound) is
//! pruned with its key, the new key is a CNG key.
#![cfg(windows)]

use std::process::Command;

use crate::common::env::{Env, EnvConfig, VAULT};
use akvsync::settings::StoreLocation;
use akvsync::store::windows::sys::Store;

const STORE: &str = "AkvsyncReal";
const ENDPOINT: &str = "0.0.0.0:44343";
const APP_ID: &str = "{4dc3e181-e14b-4a21-b022-59fc669b0914}";

fn real_windows() -> bool {
    if std::env::var_os("AKVSYNC_REAL_WINDOWS").is_some() {
        return true;
    }
    eprintln!(
        "windows_real: skipped: set AKVSYNC_REAL_WINDOWS=1 on a real Windows (administrator); \
         Wine has no HTTP.sys, lifecycle log or CNG (docs/windows.md)"
    );
    false
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?}: {text}");
    text
}

fn powershell(script: &str) -> String {
    run(
        "powershell.exe",
        &["-NoProfile", "-NonInteractive", "-Command", script],
    )
}

#[test]
fn renewal_reaches_http_sys_and_the_lifecycle_log_on_real_windows() {
    if !real_windows() {
        return;
    }
    let env = Env::start(EnvConfig {
        secrets_management: Some(serde_json::json!({
            "pollingIntervalInS": "3600",
            "observedCertificates": [{"url": format!("https://{VAULT}.vault.azure.net/secrets/iis"),
                "certificateStoreName": STORE, "certificateStoreLocation": "LocalMachine"}],
        })),
        akvsync: Some(serde_json::json!({
            "retainVersions": 1,
            "windows": {"updateHttpSysBindings": true},
        })),
        ..Default::default()
    });
    let root_file = env.scratch.path("root.cer");
    std::fs::write(&root_file, env.emu.test_pki().unwrap().root_der()).unwrap();
    powershell(&format!(
        "Import-Certificate -FilePath '{}' -CertStoreLocation Cert:\\LocalMachine\\Root | Out-Null",
        root_file.display()
    ));
    let first = env.emu.rotate_certificate(VAULT, "iis").unwrap();
    env.cmd(&["once"]).code(0).run();

    let _ = Command::new("netsh")
        .args(["http", "delete", "sslcert", &format!("ipport={ENDPOINT}")])
        .output();
    run(
        "netsh",
        &[
            "http",
            "add",
            "sslcert",
            &format!("ipport={ENDPOINT}"),
            &format!("certhash={}", first.thumbprint),
            &format!("appid={APP_ID}"),
            &format!("certstorename={STORE}"),
            "verifyclientcertrevocation=disable",
        ],
    );

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = env.emu.rotate_certificate(VAULT, "iis").unwrap();
    env.cmd(&["once"]).code(0).run();

    // HTTP.sys: the binding serves the renewal, its other fields kept.
    let shown = run(
        "netsh",
        &["http", "show", "sslcert", &format!("ipport={ENDPOINT}")],
    );
    assert!(
        shown
            .to_ascii_lowercase()
            .contains(&second.thumbprint.to_ascii_lowercase()),
        "{shown}"
    );
    assert!(shown.contains(APP_ID), "{shown}");
    assert!(shown.contains(STORE), "{shown}");

    // Event 1001 names both certificates.
    let events = powershell(
        "Get-WinEvent -LogName 'Microsoft-Windows-CertificateServicesClient-Lifecycle-System/Operational' \
         -MaxEvents 20 | Where-Object Id -eq 1001 | ForEach-Object { $_.ToXml() }",
    );
    assert!(events.contains(&first.thumbprint), "{events}");
    assert!(events.contains(&second.thumbprint), "{events}");

    // The new key went through CNG (no import compatibility on real Windows).
    let store = Store::open_system(StoreLocation::LocalMachine, STORE, false).unwrap();
    let new_cert = store
        .certificates()
        .into_iter()
        .find(|c| {
            akvsync::decode::CertificateInfo::parse(&c.der())
                .is_ok_and(|i| i.thumbprint == second.thumbprint)
        })
        .unwrap();
    assert_eq!(
        new_cert.key_prov_info().unwrap().provider_type,
        0,
        "a CNG key"
    );

    let _ = Command::new("netsh")
        .args(["http", "delete", "sslcert", &format!("ipport={ENDPOINT}")])
        .output();
    let root_thumbprint =
        akvsync::decode::CertificateInfo::parse(env.emu.test_pki().unwrap().root_der())
            .unwrap()
            .thumbprint;
    powershell(&format!(
        "Remove-Item -LiteralPath Cert:\\LocalMachine\\Root\\{root_thumbprint}"
    ));
}
