//! The extension handler played as the Linux guest agent plays it: a handler directory
//! ([`HandlerDir`]) in a scratch directory, the real `akvsync handler …` binary run in it
//! with the agent's environment variables, the service as a detached process (no systemd
//! here), the emulator as Key Vault. Asserts on the status files at each step.
#![cfg(target_os = "linux")]

use std::fs;
use std::time::{Duration, Instant};

use crate::common::env::{Env, EnvConfig, VAULT, akvsync};
use crate::common::guest_agent::{HANDLER, HandlerDir};
use crate::common::probe::RequestProbe;
use crate::common::service::alive;
use crate::common::store_view::{StoreView, mode};
use crate::common::{Scratch, wait_until};

/// A handler directory beside the environment's store, with its state directory.
fn handler_in(scratch: &Scratch) -> HandlerDir {
    HandlerDir::create(&scratch.0, scratch.state())
}

/// An environment with the certificate `web`, and a handler directory in it.
fn web_handler() -> (Env, HandlerDir) {
    let env = Env::start(EnvConfig {
        certificates: &["web"],
        ..Default::default()
    });
    let h = handler_in(&env.scratch);
    (env, h)
}

/// The environment's settings observing `secrets`.
fn public(env: &Env, secrets: &[&str], require_initial_sync: bool) -> serde_json::Value {
    let mut settings = env.settings_json();
    let urls: Vec<String> = secrets.iter().map(|s| env.url(s)).collect();
    settings["secretsManagementSettings"]["observedCertificates"] = urls.into();
    settings["secretsManagementSettings"]["requireInitialSync"] = require_initial_sync.into();
    settings
}

fn substatus<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["substatus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == format!("{VAULT}/{name}"))
        .unwrap_or_else(|| panic!("no substatus {name}: {status:#}"))
}

fn is_success(s: &serde_json::Value) -> bool {
    s["status"] == "success"
}

#[test]
fn full_lifecycle_install_enable_reconfigure_disable_uninstall() {
    let (env, h) = web_handler();
    let state = env.scratch.state();
    let store = StoreView::new(env.scratch.store());

    // install
    h.cmd("install", 0).code(0).run();
    assert_eq!(fs::read_to_string(state.join("owner")).unwrap(), "1.0.0");
    // The state directory will hold the handed-over settings (protected settings included).
    assert_eq!(mode(&state) & 0o777, 0o700, "state directory mode");

    // enable with requireInitialSync and one certificate not yet in the vault: transitioning.
    h.write_settings(0, &public(&env, &["web", "api"], true), None);
    let started = Instant::now();
    h.cmd("enable", 0).code(0).run();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "enable took {:?}",
        started.elapsed()
    );
    let pid = h
        .service_pid()
        .expect("the service runs as a detached process");
    let status = h.wait_status(0, "transitioning with substatus", |s| {
        s["status"] == "transitioning" && s["substatus"].as_array().is_some_and(|a| a.len() == 2)
    });
    assert_eq!(substatus(&status, "web")["status"], "success");
    let api = substatus(&status, "api");
    assert_eq!(api["status"], "error");
    let api_message = api["formattedMessage"]["message"].as_str().unwrap();
    assert!(api_message.contains(&format!("{VAULT}/api")), "{api:#}");
    let message = status["formattedMessage"]["message"].as_str().unwrap();
    assert!(message.contains("waiting for"), "{status:#}");
    // Dependent extensions stay held: nothing terminal while a certificate is missing.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(h.status(0).unwrap()["status"], "transitioning");

    // The certificate appears: success, every certificate installed.
    env.emu.rotate_certificate(VAULT, "api").unwrap();
    let status = h.wait_status(0, "success", is_success);
    for name in ["web", "api"] {
        let sub = substatus(&status, name);
        assert_eq!(sub["status"], "success", "{sub:#}");
        let message = sub["formattedMessage"]["message"].as_str().unwrap();
        assert!(
            message.contains("thumbprint") && message.contains("expires"),
            "{message}"
        );
        assert!(store.link(VAULT, name).exists());
    }
    assert_eq!(status["operation"], "Enable");
    assert_eq!(status["name"], HANDLER);
    assert_eq!(fs::read_to_string(h.dir.join("mrseq")).unwrap(), "0");

    // enable again (a reboot, the agent retrying): idempotent, same service.
    h.cmd("enable", 0).code(0).run();
    assert_eq!(h.service_pid(), Some(pid));

    // Invalid new settings: enable reports the field, the service keeps polling on the old ones.
    let mut bad = public(&env, &["web"], false);
    bad["secretsManagementSettings"]["observedCertificates"][0] =
        "https://evil.example.com/secrets/web".into();
    h.write_settings(1, &bad, None);
    h.cmd("enable", 1).code(2).run();
    let status = h.status(1).expect("enable writes the error status itself");
    assert_eq!(status["status"], "error");
    let message = status["formattedMessage"]["message"].as_str().unwrap();
    assert!(
        message.contains("secretsManagementSettings.observedCertificates[0]: host"),
        "{message}"
    );
    assert!(message.contains("evil.example.com"), "{message}");
    assert_eq!(h.service_pid(), Some(pid), "the service keeps running");
    let probe = RequestProbe::new(&env.emu);
    std::thread::sleep(Duration::from_secs(3));
    assert!(probe.vault(VAULT) > 0, "the service keeps polling");
    assert_eq!(h.status(0).unwrap()["status"], "success");
    assert_eq!(
        h.status(1).unwrap()["status"],
        "error",
        "the service never marks bad settings success"
    );

    // Valid new settings: the running service reloads and reports under the new number.
    env.emu.rotate_certificate(VAULT, "extra").unwrap();
    h.write_settings(2, &public(&env, &["web", "api", "extra"], false), None);
    h.cmd("enable", 2).code(0).run();
    assert_eq!(h.service_pid(), Some(pid), "reconfigured, not restarted");
    let status = h.wait_status(2, "success with 3 certificates", |s| {
        is_success(s) && s["substatus"].as_array().is_some_and(|a| a.len() == 3)
    });
    assert_eq!(substatus(&status, "extra")["status"], "success");
    assert!(store.link(VAULT, "extra").exists());

    // disable: the service stops, polling stops.
    h.cmd("disable", 2).code(0).run();
    assert!(!alive(pid), "the service stopped");
    let probe = RequestProbe::new(&env.emu);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(probe.vault(VAULT), 0, "no polling after disable");
    assert_eq!(h.status(2).unwrap()["operation"], "Disable");

    // uninstall: service and state gone, certificates stay.
    h.cmd("uninstall", 2).code(0).run();
    assert!(!state.exists(), "state removed");
    for name in ["web", "api", "extra"] {
        assert!(
            fs::metadata(store.link(VAULT, name)).is_ok_and(|m| m.len() > 0),
            "{name} stays installed"
        );
    }
    let logs: Vec<_> = fs::read_dir(h.dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(logs.iter().any(|n| n == "akvsync-handler.log"), "{logs:?}");
    assert!(logs.iter().any(|n| n == "akvsync-service.log"), "{logs:?}");
    let service_log = fs::read_to_string(h.dir.join("log/akvsync-service.log")).unwrap();
    assert!(!service_log.contains("eyJ"), "no token in the log");
}

#[test]
fn update_sequence_keeps_the_service_with_its_owner() {
    let (env, h) = web_handler();
    let state = env.scratch.state();
    h.write_settings(0, &public(&env, &["web"], false), None);
    h.cmd("install", 0).code(0).run();
    h.cmd("enable", 0).code(0).run();
    h.wait_status(0, "success", is_success);

    // The agent's order: old disable → new update → old uninstall → new enable.
    h.cmd("disable", 0).code(0).run();
    assert!(h.service_pid().is_none());
    h.cmd_as("update", Some(0), "2.0.0").code(0).run();
    assert_eq!(fs::read_to_string(state.join("owner")).unwrap(), "2.0.0");
    h.cmd("uninstall", 0).code(0).run();
    assert!(
        state.join("owner").exists(),
        "a non-owner uninstall leaves the state"
    );
    assert!(state.join("state.json").exists() || state.join("handler").exists());
    h.cmd_as("enable", Some(0), "2.0.0").code(0).run();
    assert!(h.service_pid().is_some());
    h.wait_status(0, "success", is_success);
    h.cmd_as("uninstall", Some(0), "2.0.0").code(0).run();
    assert!(h.service_pid().is_none() && !state.exists());
    assert!(
        StoreView::new(env.scratch.store())
            .link(VAULT, "web")
            .exists()
    );
}

#[test]
fn empty_zero_settings_means_nothing_to_do() {
    let scratch = Scratch::new("handler-empty");
    let h = handler_in(&scratch);
    h.write_raw_settings(0, "");
    h.cmd("enable", 0).code(0).run();
    let status = h.wait_status(0, "success", is_success);
    let message = status["formattedMessage"]["message"].as_str().unwrap();
    assert!(message.contains("nothing to do"), "{status:#}");
    assert_eq!(status["substatus"].as_array().unwrap().len(), 0);
    h.cmd("disable", 0).code(0).run();
    assert!(h.service_pid().is_none());
}

#[test]
fn invalid_first_settings_report_every_field_and_start_nothing() {
    let scratch = Scratch::new("handler-invalid");
    let h = handler_in(&scratch);
    let bad = serde_json::json!({"secretsManagementSettings": {
        "pollingIntervalInS": "abc",
        "observedCertificates": ["https://kv.vault.azure.net/secrets/a", "http://kv.vault.azure.net/secrets/b"],
    }});
    h.write_settings(0, &bad, None);
    h.cmd("enable", 0).code(2).run();
    assert!(h.service_pid().is_none());
    let status = h.status(0).unwrap();
    assert_eq!(status["status"], "error");
    assert_eq!(status["code"], 1);
    let message = status["formattedMessage"]["message"].as_str().unwrap();
    // The same lines as `akvsync validate`.
    let validate = akvsync(&["validate"])
        .arg(h.settings_file(0))
        .arg("--platform")
        .arg("linux")
        .run();
    let expected = String::from_utf8(validate.stderr).unwrap();
    for line in expected.lines().filter(|l| l.starts_with("error:")) {
        assert!(message.contains(line), "{line:?} not in {message:?}");
    }
    assert!(message.contains("observedCertificates[1]"), "{message}");
}

#[test]
fn sequence_number_from_the_environment_else_the_newest_settings_file() {
    let scratch = Scratch::new("handler-seqno");
    let h = handler_in(&scratch);
    let bad = serde_json::json!({"secretsManagementSettings": {"observedCertificates": "x"}});
    for seq in [3, 5] {
        h.write_settings(seq, &bad, None);
    }
    let has_status = |seq| h.status_file(seq).exists();
    // ConfigSequenceNumber wins over the newest file.
    h.cmd("enable", 3).code(2).run();
    assert!(has_status(3) && !has_status(5));
    fs::remove_file(h.status_file(3)).unwrap();

    // Without it: the most recently modified file, even with a lower number.
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    let new = std::time::SystemTime::now() - Duration::from_secs(60);
    let set = |seq: u64, t| {
        fs::File::options()
            .write(true)
            .open(h.settings_file(seq))
            .unwrap()
            .set_modified(t)
            .unwrap()
    };
    set(5, old);
    set(3, new);
    h.cmd_as("enable", None, "1.0.0").code(2).run();
    assert!(has_status(3) && !has_status(5));
    fs::remove_file(h.status_file(3)).unwrap();

    // A tie: the highest number.
    set(5, new);
    h.cmd_as("enable", None, "1.0.0").code(2).run();
    assert!(has_status(5) && !has_status(3));
    assert_eq!(
        akvsync::handler::seqno::latest_settings(&h.dir.join("config")).unwrap(),
        Some(5)
    );
}

#[test]
fn handler_environment_written_late_is_waited_for() {
    let scratch = Scratch::new("handler-lateenv");
    let h = handler_in(&scratch);
    let env_file = h.dir.join("HandlerEnvironment.json");
    let content = fs::read(&env_file).unwrap();
    fs::write(&env_file, &content[..content.len() / 2]).unwrap();
    h.write_raw_settings(0, "");
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        fs::write(env_file, content).unwrap();
    });
    h.cmd("install", 0).code(0).run();
    writer.join().unwrap();
}

#[test]
fn heartbeat_file_when_the_manifest_asks_for_it() {
    let scratch = Scratch::new("handler-heartbeat");
    let h = handler_in(&scratch);
    let manifest =
        serde_json::json!([{"version": 1.0, "handlerManifest": {"reportHeartbeat": true}}]);
    fs::write(h.dir.join("HandlerManifest.json"), manifest.to_string()).unwrap();
    h.write_raw_settings(0, "");
    h.cmd("enable", 0).code(0).run();
    h.wait_status(0, "success", is_success);
    let heartbeat = wait_until(Duration::from_secs(30), "a heartbeat file", || {
        let bytes = fs::read(h.dir.join("heartbeat.log")).map_err(|e| e.to_string())?;
        Ok(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap())
    });
    assert_eq!(heartbeat[0]["heartbeat"]["status"], "Ready");
    h.cmd("disable", 0).code(0).run();
}
