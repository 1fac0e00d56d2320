//! `akvsync service install|uninstall` on Linux (issues 16 and 17): makes a machine ready to
//! run the service as its own account. Install creates the account when it is missing, gives
//! it the state directory and every directory the settings write (creating missing ones;
//! taking over root-owned ones together with akvsync's own entries in them; refusing one
//! another account owns), writes the unit drop-in with exactly those paths writable and
//! exactly the capabilities the settings need ([`super::dropin`]), the polkit rule for the
//! units hooks reload ([`super::polkit_rule`]), the unit itself when no package installed one,
//! and reloads systemd. Run again after every settings change; the packages run it at install
//! and upgrade. Uninstall removes what install wrote and keeps the account, the state and
//! the certificates.

use std::path::{Path, PathBuf};

use nix::unistd::{Group, User, getgrouplist};

use super::{Account, caps::Nss};
use crate::safefs::{self, FileSpec, Prepared};
use crate::settings::Settings;
use crate::store::linux::acl;

/// The shipped unit, written to `/etc/systemd/system` when no package installed one.
const SHIPPED_UNIT: &str = include_str!("../../../../packaging/linux/akvsync.service");
/// Marks files written by this module (uninstall removes only those).
const MARK: &str = "akvsync service install";
pub const DROPIN: &str = "etc/systemd/system/akvsync.service.d/50-akvsync-settings.conf";
pub const POLKIT_RULE: &str = "etc/polkit-1/rules.d/50-akvsync.rules";
pub const ETC_UNIT: &str = "etc/systemd/system/akvsync.service";
/// Where packages put the unit.
const PACKAGED_UNITS: [&str; 2] = [
    "usr/lib/systemd/system/akvsync.service",
    "lib/systemd/system/akvsync.service",
];

#[derive(Debug, Clone)]
pub struct Options {
    pub settings_path: PathBuf,
    pub state_dir: PathBuf,
    pub account: String,
    /// Where the systemd and polkit files go (`/`; a scratch root in tests and packaging).
    pub root: PathBuf,
    /// Run `systemctl daemon-reload` when systemd is the init system.
    pub systemctl: bool,
    /// This executable (the `ExecStart` of a unit written here).
    pub exe: PathBuf,
}

/// Prepares the machine; returns one line per thing done.
pub fn install(settings: &Settings, options: &Options) -> Result<Vec<String>, String> {
    let mut report = Vec::new();
    let account = ensure_account(&options.account, &options.state_dir, &mut report)?;
    let gid = account.gids.first().copied().unwrap_or(account.uid);
    let state = options.state_dir.display().to_string();
    prepare(
        &options.state_dir,
        &account,
        gid,
        0o700,
        &|_| true,
        &mut report,
    )?;
    search_ancestors(&options.state_dir, &account, &mut report)?;
    let plan = super::plan(settings, &account, &Nss);
    for dir in &plan.writable {
        refuse_system_directory(dir)?;
        let ours = |name: &str| name.starts_with(".akvsync-");
        // The store's own mode for a store directory (KeyVaultForLinux's 0700), 0755 else.
        let store = settings.certificates.iter().any(|c| {
            matches!(&c.target, crate::settings::Target::LinuxDirectory(t) if t.directory == *dir)
        });
        let mode = if store { 0o700 } else { 0o755 };
        prepare(Path::new(dir), &account, gid, mode, &ours, &mut report)?;
        search_ancestors(Path::new(dir), &account, &mut report)?;
    }
    let settings_path = options.settings_path.display().to_string();
    let dropin = super::dropin(&plan, &account.name, &settings_path, &state);
    write(&options.root.join(DROPIN), &dropin, &mut report)?;
    for (capability, why) in &plan.capabilities {
        report.push(format!("grants {} ({why})", capability.name()));
    }
    let rule_path = options.root.join(POLKIT_RULE);
    match super::polkit_rule(&plan, &account.name, &settings_path) {
        Some(rule) => write(&rule_path, &rule, &mut report).map_err(|e| {
            format!(
                "{e}\nthe rule (write it yourself if polkit's directory is not root's):\n{rule}"
            )
        })?,
        None => remove_ours(&rule_path, &mut report)?,
    }
    if plan.command_hooks > 0 {
        report.push(format!(
            "{} command hook(s) run as {} without capabilities (use reloadUnit/restartUnit for what needs root)",
            plan.command_hooks, account.name
        ));
    }
    if !PACKAGED_UNITS
        .iter()
        .any(|unit| options.root.join(unit).exists())
    {
        let unit = unit_for(&options.exe, &options.settings_path, &options.state_dir);
        write(&options.root.join(ETC_UNIT), &unit, &mut report)?;
    }
    daemon_reload(options, &mut report)?;
    Ok(report)
}

/// Removes what [`install`] wrote (never the account, the state or the certificates).
pub fn uninstall(options: &Options) -> Result<Vec<String>, String> {
    let mut report = Vec::new();
    for file in [DROPIN, POLKIT_RULE, ETC_UNIT] {
        remove_ours(&options.root.join(file), &mut report)?;
    }
    daemon_reload(options, &mut report)?;
    Ok(report)
}

/// The shipped unit with this executable, settings file and state directory.
fn unit_for(exe: &Path, settings: &Path, state_dir: &Path) -> String {
    let exec = format!(
        "ExecStart={} run --settings {} --state-dir {}",
        super::unit_word(&exe.display().to_string()),
        super::unit_word(&settings.display().to_string()),
        super::unit_word(&state_dir.display().to_string())
    );
    let body: Vec<String> = SHIPPED_UNIT
        .lines()
        .map(|line| {
            if line.starts_with("ExecStart=") {
                exec.clone()
            } else {
                line.to_owned()
            }
        })
        .collect();
    format!(
        "# Written by `{MARK}` (no package installed a unit).\n{}\n",
        body.join("\n")
    )
}

/// Looks the account up, creating a system account (no login, home = the state directory)
/// when it is missing.
fn ensure_account(name: &str, home: &Path, report: &mut Vec<String>) -> Result<Account, String> {
    let lookup = || User::from_name(name).map_err(|e| format!("looking up account {name}: {e}"));
    let user = match lookup()? {
        Some(user) => user,
        None => {
            let status = std::process::Command::new("useradd")
                .args(["--system", "--user-group", "--no-create-home", "--home-dir"])
                .arg(home)
                .args(["--shell", "/usr/sbin/nologin", name])
                .status()
                .map_err(|e| format!("useradd: {e}"))?;
            if !status.success() {
                return Err(format!("useradd {name}: {status}"));
            }
            report.push(format!("created system account {name}"));
            lookup()?.ok_or_else(|| format!("useradd created no account {name}"))?
        }
    };
    let c_name = std::ffi::CString::new(name).map_err(|_| format!("{name:?}: not a name"))?;
    let mut gids: Vec<u32> = getgrouplist(&c_name, user.gid)
        .unwrap_or_else(|_| vec![user.gid])
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    // The primary group first: it owns what install creates.
    gids.retain(|g| *g != user.gid.as_raw());
    gids.insert(0, user.gid.as_raw());
    let group = Group::from_gid(user.gid)
        .ok()
        .flatten()
        .map_or_else(|| user.gid.to_string(), |g| g.name);
    report.push(format!(
        "service account {name} (uid {}, group {group})",
        user.uid
    ));
    Ok(Account {
        name: name.to_owned(),
        uid: user.uid.as_raw(),
        gids,
    })
}

fn prepare(
    dir: &Path,
    account: &Account,
    gid: u32,
    mode: u32,
    take: &dyn Fn(&str) -> bool,
    report: &mut Vec<String>,
) -> Result<(), String> {
    match safefs::prepare_for_account(dir, account.uid, gid, mode, take) {
        Ok(Prepared::Created) => report.push(format!(
            "created {} owned by {} ({mode:04o})",
            dir.display(),
            account.name
        )),
        Ok(Prepared::Owned) => {}
        Ok(Prepared::TookOver) => report.push(format!(
            "{}: owner root → {} (with akvsync's entries in it)",
            dir.display(),
            account.name
        )),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    }
    Ok(())
}

/// Gives the account search (`--x`, a named ACL entry) on every ancestor of `dir` it could
/// not otherwise traverse (e.g. `/var/lib/waagent`, 0700 on Azure images).
fn search_ancestors(dir: &Path, account: &Account, report: &mut Vec<String>) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let grants = acl::Grants {
        users: vec![account.uid],
        groups: Vec::new(),
    };
    let ancestors: Vec<&Path> = dir.ancestors().skip(1).collect();
    for ancestor in ancestors.into_iter().rev() {
        let meta = std::fs::symlink_metadata(ancestor)
            .map_err(|e| format!("{}: {e}", ancestor.display()))?;
        let mode = meta.mode();
        let searchable = mode & 0o001 != 0
            || (meta.uid() == account.uid && mode & 0o100 != 0)
            || (account.gids.contains(&meta.gid()) && mode & 0o010 != 0);
        if searchable || !meta.is_dir() {
            continue;
        }
        let handle = safefs::open_read_nofollow(ancestor)
            .map_err(|e| format!("{}: {e}", ancestor.display()))?;
        acl::add_to(&handle, &grants, acl::EXECUTE)
            .map_err(|e| format!("{}: {e}", ancestor.display()))?;
        report.push(format!(
            "{}: {} may now traverse it (ACL user:{}:--x)",
            ancestor.display(),
            account.name,
            account.name
        ));
    }
    Ok(())
}

/// Directories that belong to the system: handing one to the service account would let it
/// replace what other programs trust there.
fn refuse_system_directory(dir: &str) -> Result<(), String> {
    const SYSTEM: [&str; 22] = [
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib64",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/usr/local",
        "/var",
        "/var/lib",
        "/var/log",
        "/var/tmp",
    ];
    let trimmed = dir.trim_end_matches('/');
    let normalized = if trimmed.is_empty() { "/" } else { trimmed };
    if SYSTEM.contains(&normalized) {
        return Err(format!(
            "{dir}: a system directory; the service account would own it (give the \
             certificates a directory of their own, e.g. {normalized}/akvsync)"
        ));
    }
    Ok(())
}

/// Writes one of our files (0644, parents created root-owned 0755), when it changed.
fn write(path: &Path, text: &str, report: &mut Vec<String>) -> Result<(), String> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    safefs::Dir::create(parent, 0o755)
        .and_then(|dir| dir.write_file(name, text.as_bytes(), FileSpec::PUBLIC))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    report.push(format!("wrote {}", path.display()));
    Ok(())
}

/// Removes `path` if this module wrote it.
fn remove_ours(path: &Path, report: &mut Vec<String>) -> Result<(), String> {
    let ours = std::fs::read_to_string(path).is_ok_and(|text| text.contains(MARK));
    if ours {
        safefs::remove_file_at(path).map_err(|e| format!("{}: {e}", path.display()))?;
        report.push(format!("removed {}", path.display()));
    }
    Ok(())
}

fn daemon_reload(options: &Options, report: &mut Vec<String>) -> Result<(), String> {
    if !options.systemctl || !Path::new("/run/systemd/system").is_dir() {
        return Ok(());
    }
    let status = std::process::Command::new("systemctl")
        .arg("daemon-reload")
        .status()
        .map_err(|e| format!("systemctl daemon-reload: {e}"))?;
    if !status.success() {
        return Err(format!("systemctl daemon-reload: {status}"));
    }
    report.push("systemctl daemon-reload".to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_directories_are_refused_and_their_subdirectories_are_not() {
        assert!(refuse_system_directory("/etc").is_err());
        assert!(refuse_system_directory("/var/lib/").is_err());
        assert!(refuse_system_directory("/").is_err());
        assert!(refuse_system_directory("/etc/nginx/tls").is_ok());
        assert!(refuse_system_directory("/var/lib/waagent/Microsoft.Azure.KeyVault.Store").is_ok());
    }

    #[test]
    fn the_written_unit_runs_this_executable_and_is_marked() {
        let unit = unit_for(
            Path::new("/opt/akv sync/akvsync"),
            Path::new("/etc/akvsync/settings.json"),
            Path::new("/var/lib/akvsync"),
        );
        assert!(unit.starts_with("# Written by `akvsync service install`"));
        assert!(unit.contains(
            "\nExecStart=\"/opt/akv sync/akvsync\" run --settings /etc/akvsync/settings.json --state-dir /var/lib/akvsync\n"
        ));
        assert!(unit.contains("\nUser=akvsync\n"));
        assert_eq!(unit.matches("ExecStart=").count(), 1);
    }
}
