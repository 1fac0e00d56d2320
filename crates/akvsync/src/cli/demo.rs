//! `akvsync demo`: the whole job end to end on this machine, against the built-in Key
//! Vault + identity emulator (started in-process over real HTTPS on loopback). It seeds
//! certificates, syncs them into `./akvsync-demo/store` through the production code path
//! (settings validation, identity, challenge, TLS, decode, atomic store), rotates one
//! certificate in the emulator and shows the next poll installing the new version.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::exit;
use super::sync_verbs::{engine, sync_table};
use crate::settings::{self, Platform};
use crate::state::StateDir;
use crate::sync::{Report, SyncResult};

const DEMO_DIR: &str = "akvsync-demo";
const VAULT: &str = "demo";
/// Marks a directory as the demo's own, so that a re-run may clear it.
const MARKER: &str = ".akvsync-demo";

pub(crate) fn demo() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(run_demo(Path::new(DEMO_DIR))) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(message) => {
            eprintln!("demo failed: {message}");
            ExitCode::from(exit::FAILURE)
        }
    }
}

fn prepare(dir: &Path) -> Result<PathBuf, String> {
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            return Err(format!(
                "{} exists and is not a demo directory; move it away",
                dir.display()
            ));
        }
        crate::safefs::remove_tree_at(dir)
            .map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    crate::safefs::Dir::create(dir, 0o755)
        .and_then(|d| {
            d.write_file(
                MARKER,
                b"created by `akvsync demo`; safe to delete\n",
                crate::safefs::FileSpec::PUBLIC,
            )
        })
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::canonicalize(dir).map_err(|e| e.to_string())
}

async fn run_demo(dir: &Path) -> Result<(), String> {
    let dir = prepare(dir)?;
    println!("== starting the Key Vault + managed-identity emulator (HTTPS on loopback)");
    let emulator = kvemu::Emulator::start(kvemu::Config::default())
        .await
        .map_err(|e| e.to_string())?;
    let seeded = emulator.seed(VAULT).map_err(|e| e.to_string())?;
    for imported in &seeded {
        println!(
            "   vault {VAULT}: {} ({}), version {}",
            imported.name, imported.content_type, imported.version
        );
    }
    let urls: Vec<String> = seeded
        .iter()
        .map(|i| format!("https://{VAULT}.vault.azure.net/secrets/{}", i.name))
        .collect();
    let store = dir.join("store");
    let settings_json = serde_json::json!({
        "secretsManagementSettings": {
            "pollingIntervalInS": "1",
            "requireInitialSync": true,
            "certificateStoreLocation": store.to_string_lossy(),
            "observedCertificates": urls,
        },
        "authenticationSettings": {"msiEndpoint": emulator.identity_endpoint()},
        "akvsync": {"testing": {
            "caFile": emulator.ca_file().to_string_lossy(),
            "connectTo": {format!("{VAULT}.vault.azure.net"): emulator.vault_addr().to_string()},
            "minPollingIntervalInS": 1,
        }},
    });
    let settings_path = dir.join("settings.json");
    let text = serde_json::to_string_pretty(&settings_json).map_err(|e| e.to_string())?;
    crate::safefs::write_file_at(
        &settings_path,
        text.as_bytes(),
        crate::safefs::FileSpec::PUBLIC,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "\n== settings ({}), validated like any user's:",
        settings_path.display()
    );
    let validated =
        settings::load_file(&settings_path, Platform::current()).map_err(|e| e.to_string())?;
    print!("{}", settings::render::report(&validated));

    let state_dir = StateDir::open(&dir.join("state")).map_err(|e| e.to_string())?;
    let engine = engine(validated.settings, state_dir)?;
    println!("\n== first sync");
    let first = engine.sync_all().await;
    print!("{}", sync_table(&first));
    check(&first, |r| r.result == SyncResult::Installed, "installed")?;
    list_store(&store);

    println!("\n== polling again: nothing changed, nothing is written");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = engine.sync_all().await;
    print!("{}", sync_table(&second));
    check(&second, |r| r.result == SyncResult::Unchanged, "unchanged")?;

    let rotated_name = &seeded.last().ok_or("nothing was seeded")?.name;
    let rotated = emulator
        .rotate_certificate(VAULT, rotated_name)
        .map_err(|e| e.to_string())?;
    println!(
        "\n== rotated {rotated_name} in the vault: new version {}",
        rotated.version
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let third = engine.sync_all().await;
    print!("{}", sync_table(&third));
    let fresh = third
        .iter()
        .find(|r| r.name.ends_with(&format!("/{rotated_name}")));
    if fresh.and_then(|r| r.version.as_deref()) != Some(rotated.version.as_str()) {
        return Err(format!(
            "the rotated version of {rotated_name} was not installed"
        ));
    }
    list_store(&store);
    println!(
        "\nThe store is {}; `akvsync status --settings {} --state-dir {}` reads it back.",
        store.display(),
        settings_path.display(),
        dir.join("state").display()
    );
    let engine = Arc::into_inner(engine);
    drop(engine);
    emulator.shutdown().await;
    Ok(())
}

fn check(reports: &[Report], ok: impl Fn(&Report) -> bool, what: &str) -> Result<(), String> {
    match reports.iter().find(|r| !ok(r)) {
        None => Ok(()),
        Some(report) => Err(format!(
            "{} is not {what}: {:?}",
            report.name, report.result
        )),
    }
}

fn list_store(store: &Path) {
    let Ok(entries) = std::fs::read_dir(store) else {
        return;
    };
    let mut lines: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|entry| {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            match std::fs::read_link(&path) {
                Ok(target) => format!("   {name} -> {}", target.display()),
                Err(_) => format!("   {name}{}", mode_suffix(&path)),
            }
        })
        .collect();
    lines.sort();
    println!("   {}:", store.display());
    for line in lines {
        println!("{line}");
    }
}

#[cfg(unix)]
fn mode_suffix(path: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| format!("  (mode {:o})", m.permissions().mode() & 0o777))
        .unwrap_or_default()
}

#[cfg(not(unix))]
fn mode_suffix(_path: &Path) -> String {
    String::new()
}
