//! The last step, visible (issue 14): a failing hook is retried at every poll until it
//! succeeds and shows in `once`, `status`, `status --json` and the metrics; `status` and
//! `wait` exit 1 while anything is not served and 0 once everything is; `wait` works while
//! the service runs; a renamed `customSymbolicLinkName` leaves no link behind.
#![cfg(target_os = "linux")]

use std::fs;
use std::time::Duration;

use crate::common::agent::observe;
use crate::common::env::{Env, EnvConfig, VAULT, akvsync};
use crate::common::service::Service;
use crate::common::store_view::StoreView;
use crate::common::wait_until;

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

fn lines(path: &std::path::Path) -> usize {
    fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn a_failing_hook_is_retried_until_it_succeeds_and_shows_everywhere() {
    let scratch = crate::common::Scratch::new("hook-retry");
    let log = scratch.path("hook.log");
    let flag = scratch.path("reload-works");
    let textfile = scratch.path("akvsync.prom");
    let env = Env::start(EnvConfig {
        certificates: &["web"],
        akvsync: Some(serde_json::json!({
            "hooks": [{"command": format!("echo run >> {}; test -e {}", log.display(), flag.display()),
                       "certificates": [format!("{VAULT}.vault.azure.net/web")]}],
            "metrics": {"textfile": textfile},
        })),
        ..Default::default()
    });
    env.cmd(&["once"])
        .code(1)
        .stdout_has("installed, hook failing: /bin/sh: exit status: 1")
        .run();
    assert_eq!(lines(&log), 1);
    assert!(
        fs::read_to_string(&textfile)
            .unwrap()
            .contains("akvsync_hook_runs_total{result=\"failure\"} 1")
    );
    env.cmd(&["status"])
        .code(1)
        .stdout_has("installed, hook failing")
        .run();
    let status = json(&env.cmd(&["status", "--json"]).code(1).run());
    let web = &status["certificates"][0];
    assert_eq!(web["hook"]["result"], "failure");
    assert_eq!(web["hook"]["exitCode"], 1);
    assert!(web["hook"]["at"].as_u64().unwrap() > 0);
    assert_eq!(web["served"], false);
    assert!(
        web["installed"]["version"].is_string(),
        "installed all the same"
    );

    // No new version: the hook runs again at the next poll.
    env.cmd(&["once"]).code(1).stdout_has("hook failing").run();
    assert_eq!(lines(&log), 2);

    // Fixed: the next poll runs it, it succeeds, everything says so; then it rests.
    fs::write(&flag, "").unwrap();
    env.cmd(&["once"]).code(0).run();
    assert_eq!(lines(&log), 3);
    assert!(
        fs::read_to_string(&textfile)
            .unwrap()
            .contains("akvsync_hook_runs_total{result=\"success\"} 1")
    );
    let status = json(&env.cmd(&["status", "--json"]).code(0).run());
    assert_eq!(status["certificates"][0]["hook"]["result"], "success");
    assert_eq!(
        status["certificates"][0]["lastError"],
        serde_json::Value::Null
    );
    env.cmd(&["once"]).code(0).run();
    assert_eq!(
        lines(&log),
        3,
        "a succeeded hook is not run again without a change"
    );
}

#[test]
fn status_and_wait_exit_codes_follow_what_is_served() {
    let env = Env::start(EnvConfig {
        certificates: &["web"],
        ..Default::default()
    });
    // Before any sync, without --settings: said plainly, not a missing-file error.
    let state = env.scratch.state();
    akvsync(&["status", "--state-dir"])
        .arg(&state)
        .code(1)
        .stderr_has("nothing synced yet")
        .run();
    env.cmd(&["wait", "--timeout", "1s"])
        .code(1)
        .stderr_has("harnesskv/web: nothing synced yet")
        .run();

    env.cmd(&["once"]).code(0).run();
    env.cmd(&["status"]).code(0).stdout_has("ok").run();
    env.cmd(&["wait", "--timeout", "5s"]).code(0).run();
    // The testing overrides' warnings are `once`'s, not repeated by every `status`.
    let out = env.cmd(&["status"]).code(0).run();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("testing override"));

    // A certificate whose check fails (404): status and wait say so and exit 1.
    observe(&env, &["web", "missing"]);
    env.cmd(&["once"]).code(1).run();
    env.cmd(&["status"])
        .code(1)
        .stdout_has("harnesskv/missing")
        .stdout_has("not installed")
        .run();
    env.cmd(&["wait", "--timeout", "1s"])
        .code(1)
        .stderr_has("harnesskv/missing: not installed")
        .run();
}

#[test]
fn wait_returns_once_the_running_service_has_installed_everything() {
    let env = Env::start(EnvConfig {
        certificates: &["web"],
        ..Default::default()
    });
    observe(&env, &["web", "late"]);
    let _service = Service::spawn(env.run_command(&[]));
    let mut wait = Service::spawn(env.command(&["wait", "--timeout", "60s"]));
    // The service holds the state lock; wait does not need it.
    std::thread::sleep(Duration::from_secs(2));
    assert!(wait.try_wait().is_none(), "waits while `late` is missing");
    env.emu.rotate_certificate(VAULT, "late").unwrap();
    let status = wait_until(Duration::from_secs(30), "wait exits", || {
        wait.try_wait().ok_or_else(|| "still waiting".to_owned())
    });
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_renamed_custom_link_is_removed_not_left_dangling() {
    let env = Env::start(EnvConfig {
        certificates: &["web"],
        akvsync: Some(serde_json::json!({"retainVersions": 1})),
        ..Default::default()
    });
    let store = StoreView::new(env.scratch.store());
    let with_link = |name: &str| {
        let mut json = env.settings_json();
        json["secretsManagementSettings"]["observedCertificates"] =
            serde_json::json!([{"url": env.url("web"), "customSymbolicLinkName": name}]);
        env.write_settings(&json);
    };
    with_link("web-current");
    env.cmd(&["once"]).code(0).run();
    assert!(store.dir.join("web-current").exists());
    with_link("web-now");
    env.emu.rotate_certificate(VAULT, "web").unwrap();
    env.cmd(&["once"]).code(0).run();
    assert!(!store.has("web-current"), "the old custom link is gone");
    let new = env
        .emu
        .secret_versions(VAULT, "web")
        .last()
        .unwrap()
        .clone();
    assert_eq!(store.link_version("web-now"), Some(new));
    assert_eq!(store.dangling(), Vec::<String>::new(), "dangling links");
    // Removed from the settings entirely: gone too, at the next poll.
    env.write_settings(&env.settings_json());
    env.cmd(&["once"]).code(0).run();
    assert!(!store.has("web-now"));
}

#[test]
fn with_json_logs_every_line_run_prints_is_json_warnings_included() {
    let env = Env::start(EnvConfig {
        certificates: &["web"],
        ..Default::default()
    });
    let mut run = env.run_command(&[]);
    run.env("AKVSYNC_LOG_FORMAT", "json");
    let mut service = Service::spawn(run);
    service.wait_log("harnesskv/web", Duration::from_secs(30));
    // Stopped and read to its end: whole lines only, the shutdown's included.
    let (_, log) = service.stop_with_log();
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("testing override")),
        "the start-up warnings are there: {lines:?}"
    );
    for line in lines {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
}
