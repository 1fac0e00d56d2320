//! Issue 16's findings replayed as attacks by another local account (`akvsync-mallory`,
//! a real user; root only, as in CI): each attack ran against the agent before the fix
//! and must now do no harm. The agent is the real binary running as root against the
//! emulator; the attacker's moves are made with its own uid through `setpriv`.
#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::env::{Env, EnvConfig};
use crate::common::store_view::{mode, owner};
use crate::common::users::{self, chown_tree, ensure_user, sh_as, skip_unless_root};

const MALLORY: &str = "akvsync-mallory";

/// The attacker's account and an environment with one certificate; `None` (skipped, with
/// the reason printed) when not root.
fn attack(test: &str) -> Option<(nix::unistd::User, Env)> {
    if skip_unless_root(test) {
        return None;
    }
    let mallory = ensure_user(MALLORY);
    let env = Env::start(EnvConfig {
        certificates: &["web"],
        ..Default::default()
    });
    Some((mallory, env))
}

/// A file only root may read or write, which the attacks aim at.
fn victim(env: &Env) -> std::path::PathBuf {
    let victim = env.scratch.path("victim");
    fs::write(&victim, "root's secret\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    victim
}

fn assert_untouched(victim: &Path) {
    assert_eq!(fs::read_to_string(victim).unwrap(), "root's secret\n");
    assert_eq!(mode(victim), 0o600, "mode changed");
    assert_eq!(owner(victim), (0, 0), "owner changed");
}

/// Finding 1: the metrics textfile's directory belongs to another account, which plants
/// symlinks at the textfile's name and at every temporary name it can guess. Before: root
/// followed the planted temporary link, overwrote the victim and made it 0644.
#[test]
fn a_textfile_directory_of_another_account_is_refused_and_nothing_is_followed() {
    let Some((mallory, env)) = attack("textfile") else {
        return;
    };
    let victim = victim(&env);
    let textdir = env.scratch.path("textfile");
    fs::create_dir(&textdir).unwrap();
    chown_tree(&textdir, mallory.uid.as_raw(), mallory.gid.as_raw());
    // The attacker's links: the final name and the old predictable temporaries.
    let plant = format!(
        "cd {dir} && ln -s {v} akvsync.prom && for p in $(seq 1 4096); do ln -s {v} .akvsync.prom.akvsync-tmp-$p; done",
        dir = textdir.display(),
        v = victim.display()
    );
    assert!(sh_as(&mallory, &plant), "mallory plants links");
    let mut json = env.settings_json();
    json["akvsync"]["metrics"] = serde_json::json!({"textfile": textdir.join("akvsync.prom")});
    env.write_settings(&json);

    env.cmd(&["once"])
        .code(1)
        .stderr_has("cannot write the metrics textfile")
        .stderr_has("refusing to write under")
        .stderr_has(&format!("uid {}", mallory.uid))
        .run();
    assert_untouched(&victim);
    // The certificate itself was installed: one refused output does not stop the sync.
    assert!(crate::common::agent::link(&env, "web").exists());
}

/// Finding 2: another account owns a parent of the store directory and swaps the store
/// for a link to a root-only directory. Before: root wrote the PEMs there and granted the
/// account `--x` on it.
#[test]
fn a_store_below_a_directory_of_another_account_is_refused() {
    let Some((mallory, env)) = attack("store parent") else {
        return;
    };
    let rootonly = env.scratch.path("rootonly");
    fs::create_dir(&rootonly).unwrap();
    fs::set_permissions(&rootonly, fs::Permissions::from_mode(0o700)).unwrap();
    let parent = env.scratch.path("mallorys");
    fs::create_dir(&parent).unwrap();
    chown_tree(&parent, mallory.uid.as_raw(), mallory.gid.as_raw());
    assert!(sh_as(
        &mallory,
        &format!("ln -s {} {}/certs", rootonly.display(), parent.display())
    ));
    let mut json = env.settings_json();
    json["secretsManagementSettings"]["certificateStoreLocation"] =
        serde_json::json!(parent.join("certs"));
    json["secretsManagementSettings"]["aclEnabled"] = serde_json::json!(true);
    json["secretsManagementSettings"]["observedCertificates"] = serde_json::json!([{
        "url": env.url("web"),
        "certificateStoreLocation": parent.join("certs"),
        "acls": [{"user": MALLORY}],
    }]);
    env.write_settings(&json);

    env.cmd(&["once"])
        .code(1)
        .stderr_has("refusing to write under")
        .stderr_has(&format!("uid {}", mallory.uid))
        .run();
    assert_eq!(
        fs::read_dir(&rootonly).unwrap().count(),
        0,
        "nothing written there"
    );
    assert!(
        xattr::get(&rootonly, "system.posix_acl_access")
            .unwrap()
            .is_none(),
        "no ACL added to the root-only directory"
    );
}

/// Findings 3 and 9: a state directory that another account owns, or that every account
/// can write, is refused (the account could plant links at the lock and state files).
#[test]
fn a_state_directory_another_account_controls_is_refused() {
    let Some((mallory, env)) = attack("state dir") else {
        return;
    };
    let victim = victim(&env);
    let state = env.scratch.state();
    fs::create_dir(&state).unwrap();
    chown_tree(&state, mallory.uid.as_raw(), mallory.gid.as_raw());
    assert!(sh_as(
        &mallory,
        &format!(
            "cd {} && ln -s {v} lock && ln -s {v} state.json && ln -s {v} .state.json.tmp",
            state.display(),
            v = victim.display()
        )
    ));
    env.cmd(&["once"])
        .code(1)
        .stderr_has("refusing to write under")
        .run();
    assert_untouched(&victim);

    // Root's directory, but writable by everyone: refused too.
    chown_tree(&state, 0, 0);
    for name in ["lock", "state.json", ".state.json.tmp"] {
        fs::remove_file(state.join(name)).unwrap();
    }
    fs::set_permissions(&state, fs::Permissions::from_mode(0o777)).unwrap();
    env.cmd(&["once"])
        .code(1)
        .stderr_has("lets other accounts create or replace entries")
        .run();
    // Fixed by the operator: it works.
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    env.cmd(&["once"]).code(0).run();
}

/// Finding 4: a stale pid file whose pid now belongs to another account's process that
/// happens to have `handler service` in its command line. Before: `enable` took it for the
/// service, "reloaded" it and started nothing.
#[test]
fn a_reused_pid_is_not_taken_for_the_service() {
    if skip_unless_root("pid reuse") {
        return;
    }
    let mallory = ensure_user(MALLORY);
    let scratch = crate::common::Scratch::new("pid");
    let state = scratch.state();
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let mut impostor = users::as_user(&mallory, "sh")
        .args(["-c", "sleep 30", "handler", "service"])
        .spawn()
        .unwrap();
    fs::write(state.join("akvsync.pid"), impostor.id().to_string()).unwrap();
    let found = akvsync::handler::manager::running_pid(&state);
    let _ = impostor.kill();
    let _ = impostor.wait();
    assert_eq!(found, None, "a pid file nobody holds names no service");

    // The real claim: held by this process, read back; released (and removed) on drop.
    let claim = akvsync::handler::manager::PidClaim::claim(&state).unwrap();
    assert_eq!(
        fs::read_to_string(state.join("akvsync.pid")).unwrap(),
        std::process::id().to_string()
    );
    assert!(
        akvsync::handler::manager::PidClaim::claim(&state).is_err(),
        "a second service cannot claim it"
    );
    drop(claim);
    assert!(!state.join("akvsync.pid").exists());
}
