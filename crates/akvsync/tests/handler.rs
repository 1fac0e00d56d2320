//! The extension handler played as the Linux guest agent plays it: a handler directory
//! with `HandlerEnvironment.json` and config/status/log folders in a temporary directory,
//! the real `akvsync handler …` binary run in it with the agent's environment variables,
//! the service as a detached process (no systemd here), the emulator as Key Vault. Asserts
//! on the status files at each step.
#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kvemu::{BlockingEmulator, Config};

const VAULT: &str = "handlerkv";
const NAME: &str = "Akvsync.KeyVault";

struct Harness {
    root: PathBuf,
    handler_dir: PathBuf,
}

impl Harness {
    fn new(test: &str) -> Self {
        let root =
            std::env::temp_dir().join(format!("akvsync-handler-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let handler_dir = root.join(format!("{NAME}-1.0.0"));
        for dir in ["config", "status"] {
            fs::create_dir_all(handler_dir.join(dir)).unwrap();
        }
        fs::create_dir_all(root.join("log")).unwrap();
        let env = serde_json::json!([{
            "name": NAME,
            "version": 1.0,
            "handlerEnvironment": {
                "logFolder": root.join("log"),
                "configFolder": handler_dir.join("config"),
                "statusFolder": handler_dir.join("status"),
                "heartbeatFile": handler_dir.join("heartbeat.log"),
            }
        }]);
        fs::write(handler_dir.join("HandlerEnvironment.json"), env.to_string()).unwrap();
        Harness { root, handler_dir }
    }

    fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    fn write_settings(&self, seq: u64, public: &serde_json::Value) {
        let runtime = serde_json::json!({"runtimeSettings": [{"handlerSettings": {
            "publicSettings": public, "protectedSettings": null, "protectedSettingsCertThumbprint": null,
        }}]});
        fs::write(self.config_file(seq), runtime.to_string()).unwrap();
    }

    fn config_file(&self, seq: u64) -> PathBuf {
        self.handler_dir
            .join("config")
            .join(format!("{seq}.settings"))
    }

    fn status_file(&self, seq: u64) -> PathBuf {
        self.handler_dir
            .join("status")
            .join(format!("{seq}.status"))
    }

    /// Runs `akvsync handler <op>` as the agent does (handler directory as working
    /// directory, its environment variables).
    fn run(&self, op: &str, seq: Option<u64>, version: &str) -> Output {
        self.run_in(&self.handler_dir, op, seq, version, &[])
    }

    /// Runs `akvsync handler <op>` in `dir` with the agent's variables and `extra` ones.
    fn run_in(
        &self,
        dir: &Path,
        op: &str,
        seq: Option<u64>,
        version: &str,
        extra: &[(&str, &str)],
    ) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_akvsync"));
        cmd.args(["handler", op, "--state-dir"])
            .arg(self.state())
            .current_dir(dir)
            .env("AZURE_GUEST_AGENT_EXTENSION_VERSION", version)
            .env_remove("AZURE_GUEST_AGENT_EXTENSION_PATH")
            .env_remove("AZURE_GUEST_AGENT_UPDATING_FROM_VERSION")
            .env_remove("ConfigSequenceNumber")
            .envs(extra.iter().copied());
        if let Some(seq) = seq {
            cmd.env("ConfigSequenceNumber", seq.to_string());
        }
        cmd.output().unwrap()
    }

    fn status(&self, seq: u64) -> Option<serde_json::Value> {
        let bytes = fs::read(self.status_file(seq)).ok()?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).expect("a status file is always complete JSON");
        Some(value[0]["status"].clone())
    }

    /// Waits until `<seq>.status` satisfies `ok`; panics with the last status after 60 s.
    fn wait_status(
        &self,
        seq: u64,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let status = self.status(seq);
            if let Some(s) = &status
                && ok(s)
            {
                return s.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{seq}.status never {what}: {status:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.state().join("akvsync.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Never leave a service behind, even when an assertion failed.
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

fn url(secret: &str) -> String {
    format!("https://{VAULT}.vault.azure.net/secrets/{secret}")
}

fn public_settings(
    emu: &BlockingEmulator,
    store: &Path,
    secrets: &[&str],
    require_initial_sync: bool,
) -> serde_json::Value {
    let urls: Vec<String> = secrets.iter().map(|s| url(s)).collect();
    serde_json::json!({
        "secretsManagementSettings": {
            "pollingIntervalInS": "1",
            "requireInitialSync": require_initial_sync,
            "certificateStoreLocation": store,
            "observedCertificates": urls,
        },
        "authenticationSettings": {"msiEndpoint": emu.identity_endpoint()},
        "akvsync": {"testing": {
            "caFile": emu.ca_file(),
            "connectTo": {format!("{VAULT}.vault.azure.net"): emu.vault_addr().to_string()},
            "minPollingIntervalInS": 1,
        }},
    })
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn vault_requests(emu: &BlockingEmulator) -> u64 {
    emu.counters().vault.get(VAULT).copied().unwrap_or(0)
}

fn substatus<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["substatus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == format!("{VAULT}/{name}"))
        .unwrap_or_else(|| panic!("no substatus {name}: {status:#}"))
}

#[test]
fn full_lifecycle_install_enable_reconfigure_disable_uninstall() {
    let emu = BlockingEmulator::start(Config::default()).unwrap();
    let h = Harness::new("lifecycle");
    emu.rotate_certificate(VAULT, "web").unwrap();

    // install
    let out = h.run("install", Some(0), "1.0.0");
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        fs::read_to_string(h.state().join("owner")).unwrap(),
        "1.0.0"
    );
    // The state directory will hold the handed-over settings (protected settings included).
    let mode = fs::metadata(h.state()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "state directory mode {mode:o}");

    // enable with requireInitialSync and one certificate not yet in the vault: transitioning.
    h.write_settings(0, &public_settings(&emu, &h.store(), &["web", "api"], true));
    let started = Instant::now();
    let out = h.run("enable", Some(0), "1.0.0");
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "enable took {:?}",
        started.elapsed()
    );
    let pid = h.pid().expect("the service runs as a detached process");
    let status = h.wait_status(0, "transitioning with substatus", |s| {
        s["status"] == "transitioning" && s["substatus"].as_array().is_some_and(|a| a.len() == 2)
    });
    assert_eq!(substatus(&status, "web")["status"], "success");
    let api = substatus(&status, "api");
    assert_eq!(api["status"], "error");
    assert!(
        api["formattedMessage"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{VAULT}/api")),
        "{api:#}"
    );
    assert!(
        status["formattedMessage"]["message"]
            .as_str()
            .unwrap()
            .contains("waiting for"),
        "{status:#}"
    );
    // Dependent extensions stay held: nothing terminal while a certificate is missing.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(h.status(0).unwrap()["status"], "transitioning");

    // The certificate appears: success, every certificate installed.
    emu.rotate_certificate(VAULT, "api").unwrap();
    let status = h.wait_status(0, "success", |s| s["status"] == "success");
    for name in ["web", "api"] {
        let sub = substatus(&status, name);
        assert_eq!(sub["status"], "success", "{sub:#}");
        let message = sub["formattedMessage"]["message"].as_str().unwrap();
        assert!(
            message.contains("thumbprint") && message.contains("expires"),
            "{message}"
        );
        assert!(h.store().join(format!("{VAULT}.{name}")).exists());
    }
    assert_eq!(status["operation"], "Enable");
    assert_eq!(status["name"], NAME);
    assert_eq!(
        fs::read_to_string(h.handler_dir.join("mrseq")).unwrap(),
        "0"
    );

    // enable again (a reboot, the agent retrying): idempotent, same service.
    let out = h.run("enable", Some(0), "1.0.0");
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(h.pid(), Some(pid));

    // Invalid new settings: enable reports the field, the service keeps polling on the old ones.
    let mut bad = public_settings(&emu, &h.store(), &["web"], false);
    bad["secretsManagementSettings"]["observedCertificates"][0] =
        "https://evil.example.com/secrets/web".into();
    h.write_settings(1, &bad);
    let out = h.run("enable", Some(1), "1.0.0");
    assert_eq!(code(&out), 2, "{out:?}");
    let status = h.status(1).expect("enable writes the error status itself");
    assert_eq!(status["status"], "error");
    let message = status["formattedMessage"]["message"].as_str().unwrap();
    assert!(
        message.contains("secretsManagementSettings.observedCertificates[0]: host"),
        "{message}"
    );
    assert!(message.contains("evil.example.com"), "{message}");
    assert_eq!(h.pid(), Some(pid), "the service keeps running");
    let before = vault_requests(&emu);
    std::thread::sleep(Duration::from_secs(3));
    assert!(vault_requests(&emu) > before, "the service keeps polling");
    assert_eq!(h.status(0).unwrap()["status"], "success");
    assert_eq!(
        h.status(1).unwrap()["status"],
        "error",
        "the service never marks bad settings success"
    );

    // Valid new settings: the running service reloads and reports under the new number.
    emu.rotate_certificate(VAULT, "extra").unwrap();
    h.write_settings(
        2,
        &public_settings(&emu, &h.store(), &["web", "api", "extra"], false),
    );
    let out = h.run("enable", Some(2), "1.0.0");
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(h.pid(), Some(pid), "reconfigured, not restarted");
    let status = h.wait_status(2, "success with 3 certificates", |s| {
        s["status"] == "success" && s["substatus"].as_array().is_some_and(|a| a.len() == 3)
    });
    assert_eq!(substatus(&status, "extra")["status"], "success");
    assert!(h.store().join(format!("{VAULT}.extra")).exists());

    // disable: the service stops, polling stops.
    let out = h.run("disable", Some(2), "1.0.0");
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(!alive(pid), "the service stopped");
    let before = vault_requests(&emu);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(vault_requests(&emu), before, "no polling after disable");
    assert_eq!(h.status(2).unwrap()["operation"], "Disable");

    // uninstall: service and state gone, certificates stay.
    let out = h.run("uninstall", Some(2), "1.0.0");
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(!h.state().exists(), "state removed");
    for name in ["web", "api", "extra"] {
        let link = h.store().join(format!("{VAULT}.{name}"));
        assert!(
            fs::metadata(&link).is_ok_and(|m| m.len() > 0),
            "{name} stays installed"
        );
    }
    let logs: Vec<_> = fs::read_dir(h.root.join("log"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(logs.iter().any(|n| n == "akvsync-handler.log"), "{logs:?}");
    assert!(logs.iter().any(|n| n == "akvsync-service.log"), "{logs:?}");
    let service_log = fs::read_to_string(h.root.join("log").join("akvsync-service.log")).unwrap();
    assert!(!service_log.contains("eyJ"), "no token in the log");
    emu.shutdown();
}

#[test]
fn update_sequence_keeps_the_service_with_its_owner() {
    let emu = BlockingEmulator::start(Config::default()).unwrap();
    let h = Harness::new("update");
    emu.rotate_certificate(VAULT, "web").unwrap();
    h.write_settings(0, &public_settings(&emu, &h.store(), &["web"], false));
    assert_eq!(code(&h.run("install", Some(0), "1.0.0")), 0);
    assert_eq!(code(&h.run("enable", Some(0), "1.0.0")), 0);
    h.wait_status(0, "success", |s| s["status"] == "success");

    // The agent's order: old disable → new update → old uninstall → new enable.
    assert_eq!(code(&h.run("disable", Some(0), "1.0.0")), 0);
    assert!(h.pid().is_none());
    assert_eq!(code(&h.run("update", Some(0), "2.0.0")), 0);
    assert_eq!(
        fs::read_to_string(h.state().join("owner")).unwrap(),
        "2.0.0"
    );
    assert_eq!(code(&h.run("uninstall", Some(0), "1.0.0")), 0);
    assert!(
        h.state().join("owner").exists(),
        "a non-owner uninstall leaves the state"
    );
    assert!(h.state().join("state.json").exists() || h.state().join("handler").exists());
    assert_eq!(code(&h.run("enable", Some(0), "2.0.0")), 0);
    assert!(h.pid().is_some());
    h.wait_status(0, "success", |s| s["status"] == "success");
    assert_eq!(code(&h.run("uninstall", Some(0), "2.0.0")), 0);
    assert!(h.pid().is_none() && !h.state().exists());
    assert!(h.store().join(format!("{VAULT}.web")).exists());
    emu.shutdown();
}

#[test]
fn empty_zero_settings_means_nothing_to_do() {
    let h = Harness::new("empty");
    fs::write(h.config_file(0), b"").unwrap();
    let out = h.run("enable", Some(0), "1.0.0");
    assert_eq!(code(&out), 0, "{out:?}");
    let status = h.wait_status(0, "success", |s| s["status"] == "success");
    assert!(
        status["formattedMessage"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing to do"),
        "{status:#}"
    );
    assert_eq!(status["substatus"].as_array().unwrap().len(), 0);
    assert_eq!(code(&h.run("disable", Some(0), "1.0.0")), 0);
    assert!(h.pid().is_none());
}

#[test]
fn invalid_first_settings_report_every_field_and_start_nothing() {
    let h = Harness::new("invalid");
    let bad = serde_json::json!({"secretsManagementSettings": {
        "pollingIntervalInS": "abc",
        "observedCertificates": ["https://kv.vault.azure.net/secrets/a", "http://kv.vault.azure.net/secrets/b"],
    }});
    h.write_settings(0, &bad);
    let out = h.run("enable", Some(0), "1.0.0");
    assert_eq!(code(&out), 2, "{out:?}");
    assert!(h.pid().is_none());
    let status = h.status(0).unwrap();
    assert_eq!(status["status"], "error");
    assert_eq!(status["code"], 1);
    let message = status["formattedMessage"]["message"].as_str().unwrap();
    // The same lines as `akvsync validate`.
    let validate = Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .arg("validate")
        .arg(h.config_file(0))
        .arg("--platform")
        .arg("linux")
        .output()
        .unwrap();
    let expected = String::from_utf8(validate.stderr).unwrap();
    for line in expected.lines().filter(|l| l.starts_with("error:")) {
        assert!(message.contains(line), "{line:?} not in {message:?}");
    }
    assert!(message.contains("observedCertificates[1]"), "{message}");
}

#[test]
fn sequence_number_from_the_environment_else_the_newest_settings_file() {
    let h = Harness::new("seqno");
    let bad = serde_json::json!({"secretsManagementSettings": {"observedCertificates": "x"}});
    for seq in [3, 5] {
        h.write_settings(seq, &bad);
    }
    // ConfigSequenceNumber wins over the newest file.
    assert_eq!(code(&h.run("enable", Some(3), "1.0.0")), 2);
    assert!(h.status_file(3).exists() && !h.status_file(5).exists());
    fs::remove_file(h.status_file(3)).unwrap();

    // Without it: the most recently modified file, even with a lower number.
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    let new = std::time::SystemTime::now() - Duration::from_secs(60);
    let set = |seq: u64, t| {
        fs::File::options()
            .write(true)
            .open(h.config_file(seq))
            .unwrap()
            .set_modified(t)
            .unwrap()
    };
    set(5, old);
    set(3, new);
    assert_eq!(code(&h.run("enable", None, "1.0.0")), 2);
    assert!(h.status_file(3).exists() && !h.status_file(5).exists());
    fs::remove_file(h.status_file(3)).unwrap();

    // A tie: the highest number.
    set(5, new);
    assert_eq!(code(&h.run("enable", None, "1.0.0")), 2);
    assert!(h.status_file(5).exists() && !h.status_file(3).exists());
    assert_eq!(
        akvsync::handler::seqno::latest_settings(&h.handler_dir.join("config")).unwrap(),
        Some(5)
    );
}

#[test]
fn handler_environment_written_late_is_waited_for() {
    let h = Harness::new("lateenv");
    let env_file = h.handler_dir.join("HandlerEnvironment.json");
    let content = fs::read(&env_file).unwrap();
    fs::write(&env_file, &content[..content.len() / 2]).unwrap();
    fs::write(h.config_file(0), b"").unwrap();
    let writer = {
        let env_file = env_file.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            fs::write(env_file, content).unwrap();
        })
    };
    let out = h.run("install", Some(0), "1.0.0");
    writer.join().unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
}

#[test]
fn heartbeat_file_when_the_manifest_asks_for_it() {
    let h = Harness::new("heartbeat");
    let manifest =
        serde_json::json!([{"version": 1.0, "handlerManifest": {"reportHeartbeat": true}}]);
    fs::write(
        h.handler_dir.join("HandlerManifest.json"),
        manifest.to_string(),
    )
    .unwrap();
    fs::write(h.config_file(0), b"").unwrap();
    assert_eq!(code(&h.run("enable", Some(0), "1.0.0")), 0);
    h.wait_status(0, "success", |s| s["status"] == "success");
    let start = Instant::now();
    let heartbeat = loop {
        if let Ok(bytes) = fs::read(h.handler_dir.join("heartbeat.log")) {
            break serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no heartbeat file"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(heartbeat[0]["heartbeat"]["status"], "Ready");
    assert_eq!(code(&h.run("disable", Some(0), "1.0.0")), 0);
}
