//! Real accounts for tests of ownership and of a hostile local user (root only; CI runs as
//! root): `ensure_user` creates a system account once, `as_user` runs a command with the
//! account's uid/gid through `setpriv` (`setpriv` is that prefix for `Env::command_under`), so the kernel enforces every check.

use std::process::Command;

/// Whether this test process may create users and drop privileges.
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Skips the calling test (returns `true`) with a printed reason when not root.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("{test}: skipped: needs root to create users and drop privileges (CI runs as root)");
    true
}

/// Held while accounts may be created (`ensure_user`, `akvsync service install`): tests run
/// in parallel threads, and a second `useradd` fails while the first holds the lock of
/// `/etc/passwd`.
pub fn accounts_lock() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A system account (created if missing, under [`accounts_lock`]), with its uid and gid.
pub fn ensure_user(name: &str) -> nix::unistd::User {
    let _held = accounts_lock();
    let lookup = || nix::unistd::User::from_name(name).unwrap();
    lookup().unwrap_or_else(|| {
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", "--user-group", name])
            .status()
            .unwrap();
        lookup().unwrap_or_else(|| panic!("useradd {name}: {status}"))
    })
}

/// `setpriv` and its arguments that run a program as `user` (uid, gid, no supplementary
/// groups): a prefix for [`super::env::Env::command_under`].
pub fn setpriv(user: &nix::unistd::User) -> Vec<String> {
    vec![
        "setpriv".to_owned(),
        format!("--reuid={}", user.uid),
        format!("--regid={}", user.gid),
        "--clear-groups".to_owned(),
        "--".to_owned(),
    ]
}

/// A command that runs `program` as `user` through [`setpriv`].
pub fn as_user(user: &nix::unistd::User, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let prefix = setpriv(user);
    let mut command = Command::new(&prefix[0]);
    command.args(&prefix[1..]).arg(program);
    command
}

/// Runs `sh -c script` as `user`; returns whether it exited 0.
pub fn sh_as(user: &nix::unistd::User, script: &str) -> bool {
    as_user(user, "sh")
        .args(["-c", script])
        .status()
        .unwrap()
        .success()
}

/// `chown -R` without following links.
pub fn chown_tree(path: &std::path::Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if std::fs::symlink_metadata(path).unwrap().is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}
