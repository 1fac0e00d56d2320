//! Least privilege (issue 16): the service runs as its own account, prepared by `akvsync
//! service install`, with exactly the capabilities the drop-in grants, and still installs,
//! rotates, writes outputs owned by another account and runs hooks — which start with no
//! capability and cannot read what root protects. The drop-in's capabilities are granted
//! here the way systemd would (`setpriv --ambient-caps`), parsed from the drop-in itself.
//! Needs root (CI runs as root): real accounts, real ownership, real capability sets.
#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::env::{Env, EnvConfig, VAULT};
use crate::common::service::Service;
use crate::common::store_view::{mode, owner};
use crate::common::users::{accounts_lock, ensure_user, sh_as, skip_unless_root};
use crate::common::{Scratch, wait_until};

const ACCOUNT: &str = "akvsync-lp";
const APP: &str = "akvsync-lp-app";

/// The `name:` line of `/proc/<pid>/status`.
fn proc_status(pid: u32, name: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

/// The environment (`certificates`, the `akvsync` section) of a test that installs the
/// service as root, and the root its systemd and polkit files go below; `None` (the test
/// skips) when not run as root.
fn root_env(
    certificates: &'static [&'static str],
    akvsync: Option<serde_json::Value>,
) -> Option<(Env, PathBuf)> {
    if skip_unless_root("least_privilege") {
        return None;
    }
    let env = Env::start(EnvConfig {
        certificates,
        akvsync,
        ..Default::default()
    });
    let sysroot = env.scratch.path("sysroot");
    Some((env, sysroot))
}

/// `akvsync service install` for `env`, writing its systemd and polkit files below `root`
/// (run it under [`accounts_lock`]: it may create the account).
fn install_command(env: &Env, root: &Path) -> crate::common::env::Cmd {
    env.cmd(&["service", "install", "--account", ACCOUNT, "--no-systemctl"])
        .arg("--settings")
        .arg(env.settings_file())
        .arg("--state-dir")
        .arg(env.scratch.state())
        .arg("--root")
        .arg(root)
}

/// [`install_command`], which must succeed; returns the drop-in.
fn service_install(env: &Env, root: &Path) -> String {
    let output = {
        let _accounts = accounts_lock();
        install_command(env, root).code(0).run()
    };
    println!("{}", String::from_utf8_lossy(&output.stdout));
    fs::read_to_string(root.join("etc/systemd/system/akvsync.service.d/50-akvsync-settings.conf"))
        .unwrap()
}

/// The `setpriv` prefix systemd's `User=`/`AmbientCapabilities=` amount to for `dropin`.
fn as_systemd_would(dropin: &str, extra_caps: &[&str]) -> Vec<String> {
    let account = ensure_user(ACCOUNT);
    let mut caps: Vec<String> = dropin
        .lines()
        .filter_map(|l| l.strip_prefix("AmbientCapabilities="))
        .flat_map(|l| l.split_whitespace())
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect();
    caps.extend(extra_caps.iter().map(|c| (*c).to_owned()));
    let mut prefix = vec![
        "setpriv".to_owned(),
        format!("--reuid={}", account.uid),
        format!("--regid={}", account.gid),
        "--init-groups".to_owned(),
    ];
    if !caps.is_empty() {
        let list: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
        prefix.push(format!("--inh-caps={}", list.join(",")));
        prefix.push(format!("--ambient-caps={}", list.join(",")));
    }
    prefix.push("--".to_owned());
    prefix
}

#[test]
fn as_its_own_account_the_service_installs_rotates_writes_owned_outputs_and_runs_hooks() {
    if skip_unless_root("least_privilege") {
        return;
    }
    let app = ensure_user(APP);
    let outside = Scratch::new("lp-outside");
    let out = outside.path("out");
    let hook_dir = outside.path("hook");
    let secret = outside.path("root-only");
    fs::write(&secret, "root's secret\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let hook = format!(
        "id -u > {h}/uid; grep -E '^Cap(Eff|Prm|Amb)' /proc/self/status > {h}/caps; \
         cat {s} > {h}/stolen 2>/dev/null; echo ran >> {h}/runs",
        h = hook_dir.display(),
        s = secret.display()
    );
    let env = Env::start(EnvConfig {
        certificates: &["web"],
        akvsync: Some(serde_json::json!({
            "outputs": [{"directory": out, "files": {"fullchain": "{secret}.fullchain.pem",
                          "key": "{secret}.key"}, "owner": APP, "mode": "0640"}],
            "hooks": [{"command": ["/bin/sh", "-c", hook]}],
        })),
        ..Default::default()
    });
    let sysroot = outside.path("sysroot");
    // A private ancestor (as /var/lib/waagent is on Azure images): install lets the account
    // through it with a named `--x` entry and nothing more.
    fs::set_permissions(&outside.0, fs::Permissions::from_mode(0o700)).unwrap();
    let dropin = service_install(&env, &sysroot);
    let account = ensure_user(ACCOUNT);
    let acl = std::process::Command::new("getfacl")
        .args(["--omit-header", "--numeric"])
        .arg(&outside.0)
        .output()
        .unwrap();
    let acl = String::from_utf8_lossy(&acl.stdout);
    assert!(acl.contains(&format!("user:{}:--x", account.uid)), "{acl}");
    assert!(
        acl.contains("group::---") && acl.contains("other::---"),
        "{acl}"
    );

    // What install prepared: the drop-in grants exactly CAP_CHOWN (the outputs' owner) and
    // makes exactly the settings' directories writable; the account owns them.
    assert!(
        dropin.contains("\nUser=akvsync-lp\nGroup=akvsync-lp\n"),
        "{dropin}"
    );
    assert!(
        dropin.contains("# CAP_CHOWN: akvsync.outputs[0].owner = akvsync-lp-app\n"),
        "{dropin}"
    );
    assert!(
        dropin.contains("\nAmbientCapabilities=CAP_CHOWN\n"),
        "{dropin}"
    );
    let mut dirs = [
        out.display().to_string(),
        env.scratch.store().display().to_string(),
    ];
    dirs.sort();
    let writable = format!("\nReadWritePaths={}\n", dirs.join(" "));
    assert!(dropin.contains(&writable), "{dropin}");
    for dir in [&out, &env.scratch.store(), &env.scratch.state()] {
        assert_eq!(owner(dir).0, account.uid.as_raw(), "{}", dir.display());
    }
    assert_eq!(mode(&env.scratch.state()), 0o700);
    assert!(
        !sysroot
            .join("etc/polkit-1/rules.d/50-akvsync.rules")
            .exists(),
        "no unit hook, no polkit rule"
    );
    fs::create_dir(&hook_dir).unwrap();
    std::os::unix::fs::chown(&hook_dir, Some(account.uid.as_raw()), None).unwrap();

    let mut service = Service::spawn(env.run_command(&as_systemd_would(&dropin, &[])));
    service.wait_log("akvsync started", Duration::from_secs(20));
    env.cmd(&["wait", "--timeout", "60s"]).code(0).run();

    // The process: the account, CAP_CHOWN only, nothing for children, no new privileges.
    let pid = service.pid();
    let uids = proc_status(pid, "Uid");
    assert!(
        uids.split_whitespace()
            .all(|u| u == account.uid.to_string()),
        "{uids}"
    );
    assert_eq!(proc_status(pid, "CapEff"), "0000000000000001");
    assert_eq!(proc_status(pid, "CapPrm"), "0000000000000001");
    assert_eq!(proc_status(pid, "CapInh"), "0000000000000000");
    assert_eq!(proc_status(pid, "CapAmb"), "0000000000000000");
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");

    // The store: the account's files, private; the outputs: the application's, 0640.
    let pem = fs::canonicalize(env.scratch.store().join(format!("{VAULT}.web"))).unwrap();
    assert_eq!(owner(&pem).0, account.uid.as_raw());
    assert_eq!(mode(&pem), 0o600);
    let key = out.join("web.key");
    assert_eq!(owner(&key).0, app.uid.as_raw());
    assert_eq!(mode(&key), 0o640);
    assert!(fs::read_to_string(&key).unwrap().contains("PRIVATE KEY"));

    // The hook ran as the account, with no capability, and could not read root's file.
    let hook_file = |name: &str| fs::read_to_string(hook_dir.join(name)).unwrap_or_default();
    wait_until(Duration::from_secs(20), "the hook's record", || {
        (!hook_file("caps").is_empty())
            .then_some(())
            .ok_or("no record yet".to_owned())
    });
    assert_eq!(hook_file("uid").trim(), account.uid.to_string());
    for line in hook_file("caps").lines() {
        assert!(
            line.ends_with("0000000000000000"),
            "hook capability: {line}"
        );
    }
    assert_eq!(hook_file("stolen"), "", "the hook read a root-only file");
    assert!(!sh_as(
        &account,
        &format!("cat {} >/dev/null 2>&1", secret.display())
    ));
    assert!(!sh_as(&account, "cat /etc/shadow >/dev/null 2>&1"));

    // A renewal is installed and written the same way.
    let before = fs::read_to_string(out.join("web.fullchain.pem")).unwrap();
    env.emu.rotate_certificate(VAULT, "web").unwrap();
    wait_until(Duration::from_secs(30), "the renewed outputs", || {
        let now = fs::read_to_string(out.join("web.fullchain.pem")).map_err(|e| e.to_string())?;
        (now != before)
            .then_some(())
            .ok_or("still the first version".to_owned())
    });
    env.cmd(&["wait", "--timeout", "60s"]).code(0).run();
    let key = out.join("web.key");
    assert_eq!(owner(&key).0, app.uid.as_raw());
    // `wait` returns at once (v1 was served all along): the renewal's hook may still run.
    wait_until(
        Duration::from_secs(30),
        "the hook ran for the renewal",
        || {
            let runs = hook_file("runs").lines().count();
            (runs >= 2).then_some(()).ok_or(format!("{runs} runs"))
        },
    );
    assert!(service.stop().success());

    // Uninstall removes the drop-in it wrote; the account's directories stay.
    env.cmd(&["service", "uninstall", "--no-systemctl"])
        .arg("--root")
        .arg(&sysroot)
        .code(0)
        .run();
    assert!(
        !sysroot
            .join("etc/systemd/system/akvsync.service.d/50-akvsync-settings.conf")
            .exists()
    );
    assert!(pem.exists());
}

#[test]
fn capabilities_the_settings_do_not_need_are_dropped_at_start() {
    let Some((env, sysroot)) = root_env(&["plain"], None) else {
        return;
    };
    let dropin = service_install(&env, &sysroot);
    assert!(
        dropin.contains("\nCapabilityBoundingSet=\nAmbientCapabilities=\n"),
        "{dropin}"
    );
    assert!(!dropin.contains("CAP_"), "nothing to grant: {dropin}");
    // A unit that grants too much (an administrator's edit, an old drop-in).
    let prefix = as_systemd_would(&dropin, &["chown", "fowner", "dac_override"]);
    let mut service = Service::spawn(env.run_command(&prefix));
    service.wait_log("capabilities narrowed", Duration::from_secs(20));
    assert!(service.log().contains("dropped=3"), "{}", service.log());
    env.cmd(&["wait", "--timeout", "60s"]).code(0).run();
    let pid = service.pid();
    for set in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(proc_status(pid, set), "0000000000000000", "{set}");
    }
    assert!(service.stop().success());
}

#[test]
fn hook_units_get_an_exact_polkit_rule_that_goes_when_the_hooks_go() {
    let Some((env, sysroot)) = root_env(
        &["web"],
        Some(serde_json::json!({"hooks": [{"reloadUnit": "nginx"},
                                          {"restartUnit": "app@blue.service"}]})),
    ) else {
        return;
    };
    service_install(&env, &sysroot);
    let rule_path = sysroot.join("etc/polkit-1/rules.d/50-akvsync.rules");
    let rule = fs::read_to_string(&rule_path).unwrap();
    assert!(rule.contains("subject.user == \"akvsync-lp\""), "{rule}");
    assert!(
        rule.contains("(unit == \"nginx.service\" && verb == \"reload-or-try-restart\")"),
        "{rule}"
    );
    assert!(
        rule.contains("(unit == \"app@blue.service\" && verb == \"restart\")"),
        "{rule}"
    );
    assert_eq!(rule.matches("polkit.Result.YES").count(), 1);
    let mut settings = env.settings_json();
    settings["akvsync"].as_object_mut().unwrap().remove("hooks");
    env.write_settings(&settings);
    service_install(&env, &sysroot);
    assert!(!rule_path.exists(), "no unit hook left, no rule left");
}

#[test]
fn install_refuses_directories_it_must_not_hand_to_the_account() {
    let Some((env, sysroot)) = root_env(&["web"], None) else {
        return;
    };
    let mallory = ensure_user("akvsync-mallory");
    // Another account's directory: never taken over.
    fs::create_dir(env.scratch.store()).unwrap();
    std::os::unix::fs::chown(env.scratch.store(), Some(mallory.uid.as_raw()), None).unwrap();
    let _accounts = accounts_lock();
    install_command(&env, &sysroot)
        .code(1)
        .stderr_has(&format!("owned by uid {}", mallory.uid))
        .run();
    assert_eq!(owner(&env.scratch.store()).0, mallory.uid.as_raw());
    // A system directory: refused by name.
    let mut settings = env.settings_json();
    settings["secretsManagementSettings"]["certificateStoreLocation"] = "/etc".into();
    env.write_settings(&settings);
    install_command(&env, &sysroot)
        .code(1)
        .stderr_has("/etc: a system directory")
        .run();
    assert_eq!(owner(Path::new("/etc")).0, 0);
}

#[test]
fn a_capability_the_settings_need_and_the_process_lacks_is_named_and_nothing_is_lost() {
    let Some((env, sysroot)) = root_env(
        &["web"],
        Some(
            serde_json::json!({"outputs": [{"files": {"key": "{secret}.key"},
                                            "owner": APP, "mode": "0600"}]}),
        ),
    ) else {
        return;
    };
    ensure_user(APP);
    let dropin = service_install(&env, &sysroot);
    assert!(
        dropin.contains("\nAmbientCapabilities=CAP_CHOWN\n"),
        "{dropin}"
    );
    // Started without the drop-in's grant (an old unit): `once` names what is missing,
    // the certificate is still installed in the store, the output fails by name.
    let without: Vec<String> = as_systemd_would("", &[]);
    let output = crate::common::env::Cmd::new(env.command_under(&without, &["once"]))
        .code(1)
        .stderr_has("the settings need CAP_CHOWN (akvsync.outputs[0].owner = akvsync-lp-app)")
        .stderr_has("akvsync service install")
        .run();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("web"), "{stdout}");
    let pem = fs::canonicalize(env.scratch.store().join(format!("{VAULT}.web"))).unwrap();
    assert!(fs::read_to_string(pem).unwrap().contains("PRIVATE KEY"));
    assert!(
        stdout.contains("FAILED") && stdout.contains("Operation not permitted"),
        "{stdout}"
    );
    // No key file handed out with the wrong owner: the set was refused as a whole.
    let key = env.scratch.store().join("web.key");
    assert!(
        fs::symlink_metadata(&key).is_err(),
        "{} exists",
        key.display()
    );
}
