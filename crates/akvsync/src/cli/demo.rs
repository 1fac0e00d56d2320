//! `akvsync demo`: the whole job end to end on this machine, against the built-in Key
//! Vault + identity emulator (started in-process over real HTTPS on loopback). It seeds
//! certificates, syncs them into `./akvsync-demo/store` through the production code path
//! (settings validation, identity, challenge, TLS, decode, atomic store) with an output set
//! in the forms servers read (`./akvsync-demo/tls`), shows a poll that changes nothing, then
//! starts the real `akvsync run` service, rotates a certificate in the emulator and shows
//! the service installing it and running the reload hook. The settings file it leaves
//! names a copy of the emulator's CA, so it still validates after the demo.

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
    // A copy of the emulator's CA beside the settings: the file keeps validating after the
    // emulator (and its temporary directory) are gone.
    let ca = dir.join("emulator-ca.pem");
    crate::safefs::write_file_at(
        &ca,
        emulator.ca_pem().as_bytes(),
        crate::safefs::FileSpec::PUBLIC,
    )
    .map_err(|e| e.to_string())?;
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut akvsync = serde_json::json!({"testing": {
        "caFile": ca.to_string_lossy(),
        "connectTo": {format!("{VAULT}.vault.azure.net"): emulator.vault_addr().to_string()},
        "minPollingIntervalInS": 1,
    }});
    #[cfg(unix)]
    {
        // What a web server reads, and the reload it needs (here: a line in hook.log).
        akvsync["outputs"] = serde_json::json!([{
            "directory": dir.join("tls").to_string_lossy(),
            "files": {"fullchain": "{secret}.fullchain.pem", "key": "{secret}.key"},
        }]);
        akvsync["hooks"] = serde_json::json!([{
            "command": format!(
                "echo \"reloaded the web server for $AKVSYNC_CERTIFICATE version $AKVSYNC_VERSION\" >> '{}'",
                dir.join("hook.log").display()
            ),
        }]);
    }
    let settings_json = serde_json::json!({
        "secretsManagementSettings": {
            "pollingIntervalInS": "1",
            "requireInitialSync": true,
            "certificateStoreLocation": store.to_string_lossy(),
            "observedCertificates": urls,
        },
        "authenticationSettings": {"msiEndpoint": emulator.identity_endpoint()},
        "akvsync": akvsync,
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

    #[cfg(unix)]
    list_store(&dir.join("tls"));
    let engine = Arc::into_inner(engine);
    drop(engine); // releases the state directory for the service

    println!(
        "\n== starting the service: akvsync run --settings {} (polls every second)",
        settings_path.display()
    );
    let mut service = Service::start(&settings_path, &dir.join("state"))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rotated_name = &seeded.last().ok_or("nothing was seeded")?.name;
    let rotated = emulator
        .rotate_certificate(VAULT, rotated_name)
        .map_err(|e| e.to_string())?;
    println!(
        "\n== rotated {rotated_name} in the vault: new version {}",
        rotated.version
    );
    let link = store.join(format!("{VAULT}.{rotated_name}"));
    let started = std::time::Instant::now();
    while !std::fs::read_link(&link).is_ok_and(|t| t.to_string_lossy().ends_with(&rotated.version))
    {
        if started.elapsed() > Duration::from_secs(30) {
            service.stop();
            return Err(format!(
                "the service did not install {rotated_name}'s new version"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    service.stop();
    println!("   the service's log:");
    for line in service.log() {
        println!("   | {line}");
    }
    list_store(&store);
    #[cfg(unix)]
    if let Ok(hooks) = std::fs::read_to_string(dir.join("hook.log")) {
        println!("   hook.log:");
        for line in hooks.lines() {
            println!("   | {line}");
        }
    }
    println!(
        "\nThe store is {}; `akvsync status --settings {} --state-dir {}` reads it back.\n\
         The settings stay as a template; they point at the emulator, which stops with the demo.",
        store.display(),
        settings_path.display(),
        dir.join("state").display()
    );
    emulator.shutdown().await;
    Ok(())
}

/// `akvsync run` as a child process, its log collected.
struct Service {
    child: std::process::Child,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Service {
    fn start(settings: &Path, state_dir: &Path) -> Result<Service, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new(exe)
            .arg("run")
            .arg("--settings")
            .arg(settings)
            .arg("--state-dir")
            .arg(state_dir)
            .env_remove("AKVSYNC_LOG_FORMAT")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start akvsync run: {e}"))?;
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let stderr = child.stderr.take();
        std::thread::spawn(move || {
            let Some(stderr) = stderr else { return };
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let Ok(line) = line else { break };
                if let Ok(mut log) = sink.lock() {
                    log.push(line);
                }
            }
        });
        Ok(Service { child, log })
    }

    fn stop(&mut self) {
        #[cfg(unix)]
        {
            // SIGTERM: the service's own prompt stop.
            let pid = i32::try_from(self.child.id()).unwrap_or(0);
            // SAFETY: kill(2) with plain integers; the pid is our own child's.
            let _ = unsafe { nix::libc::kill(pid, nix::libc::SIGTERM) };
            let started = std::time::Instant::now();
            while started.elapsed() < Duration::from_secs(5) {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The log lines worth showing (the testing overrides' warnings are left out).
    fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|log| {
                log.iter()
                    .filter(|l| !l.contains("testing override"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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
