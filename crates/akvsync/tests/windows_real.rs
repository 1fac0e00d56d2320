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

use std::fs;
use std::process::Command;

use akvsync::settings::StoreLocation;
use akvsync::store::windows::sys::Store;
use kvemu::{Config, Emulator};

const VAULT: &str = "realkv";
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_reaches_http_sys_and_the_lifecycle_log_on_real_windows() {
    if !real_windows() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("akvsync-real-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let emu = Emulator::start(Config::default()).await.unwrap();
    let root_file = dir.join("root.cer");
    fs::write(&root_file, emu.test_pki().unwrap().root_der()).unwrap();
    powershell(&format!(
        "Import-Certificate -FilePath '{}' -CertStoreLocation Cert:\\LocalMachine\\Root | Out-Null",
        root_file.display()
    ));
    let first = emu.rotate_certificate(VAULT, "iis").unwrap();
    let settings = serde_json::json!({
        "secretsManagementSettings": {
            "pollingIntervalInS": "3600",
            "observedCertificates": [{"url": format!("https://{VAULT}.vault.azure.net/secrets/iis"),
                "certificateStoreName": STORE, "certificateStoreLocation": "LocalMachine"}],
        },
        "authenticationSettings": {"msiEndpoint": emu.identity_endpoint()},
        "akvsync": {
            "retainVersions": 1,
            "windows": {"updateHttpSysBindings": true},
            "testing": {"caFile": emu.ca_file().to_str().unwrap(),
                        "connectTo": {format!("{VAULT}.vault.azure.net"): emu.vault_addr().to_string()}},
        },
    });
    let settings_file = dir.join("settings.json");
    fs::write(&settings_file, settings.to_string()).unwrap();
    let once = || {
        let settings_file = settings_file.clone();
        let state = dir.join("state");
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
                .args(["once", "--settings"])
                .arg(&settings_file)
                .arg("--state-dir")
                .arg(&state)
                .output()
                .await
                .unwrap()
        }
    };
    let out = once().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

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

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = emu.rotate_certificate(VAULT, "iis").unwrap();
    let out = once().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

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
        akvsync::decode::CertificateInfo::parse(emu.test_pki().unwrap().root_der())
            .unwrap()
            .thumbprint;
    powershell(&format!(
        "Remove-Item -LiteralPath Cert:\\LocalMachine\\Root\\{root_thumbprint}"
    ));
    emu.shutdown().await;
    let _ = fs::remove_dir_all(&dir);
}
