//! Starting, reloading and stopping the long-running service (SPEC §10): a systemd unit
//! named `akvsync` when `/run/systemd/system` exists, otherwise a detached
//! `akvsync handler service` process whose pid file (`<state>/akvsync.pid`, written by the
//! service once its signal handlers are installed) lets later commands reload (SIGHUP) and
//! stop (SIGTERM) it. The service holds an exclusive lock on its pid file for its whole
//! life, so a pid is trusted only while that lock is held (a stale file whose pid was
//! reused by another process is never signalled, issue 16 finding 4). On Windows the "process" is the `akvsync` Windows service running
//! `akvsync handler service`: registered (or re-pointed at the new executable) and started
//! through the service control manager; a reload is a restart, since Windows has no SIGHUP.

use std::path::{Path, PathBuf};
#[cfg(unix)]
use std::time::{Duration, Instant};

/// The unit (and service) name; never `akvvm_service`, so both can run during a migration.
pub const UNIT_NAME: &str = "akvsync";
/// Where `handler install`/`enable` put the unit.
pub const UNIT_PATH: &str = "/etc/systemd/system/akvsync.service";
/// The pid file in the state directory (process mode).
pub const PID_FILE: &str = "akvsync.pid";
/// How long a freshly spawned service may take to install its signal handlers and write
/// its pid file; it does so before any network work, so this is generous.
#[cfg(unix)]
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The service stops within a second of SIGTERM; wait longer before giving up.
#[cfg(unix)]
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How the service is managed on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    Process,
}

impl Manager {
    /// systemd only if it is running (SPEC §10); containers and CI get a process.
    pub fn detect() -> Self {
        if cfg!(target_os = "linux") && Path::new("/run/systemd/system").exists() {
            Manager::Systemd
        } else {
            Manager::Process
        }
    }
}

/// The systemd unit for `exe` with `state_dir`, able to write `writable` (the store
/// directories, the status and log folders) under `ProtectSystem=strict`. The guest agent
/// runs the handler as root; the service still drops what it does not need (issue 16):
/// `bound` is the capability bounding set the settings need (`None` when a `command` hook
/// may need anything root can do; then the system-call filter is left off too).
pub fn unit_file(
    exe: &Path,
    state_dir: &Path,
    writable: &[PathBuf],
    bound: Option<&[&str]>,
) -> String {
    let mut paths: Vec<String> = vec![state_dir.display().to_string()];
    for path in writable {
        let path = path.display().to_string();
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    let rw: String = paths.iter().map(|p| format!(" -{}", quote(p))).collect();
    let confined = bound.map_or_else(String::new, |caps| {
        format!(
            "CapabilityBoundingSet={}\nSystemCallFilter=@system-service\nSystemCallErrorNumber=EPERM\n",
            caps.join(" ")
        )
    });
    format!(
        "# Written by `akvsync handler enable`; rewritten at every enable.\n\
[Unit]\n\
Description=akvsync: keeps Azure Key Vault certificates installed and current\n\
Wants=network-online.target\n\
After=network-online.target\n\
\n\
[Service]\n\
Type=notify\n\
ExecStart={} handler service --state-dir {}\n\
ExecReload=/bin/kill -HUP $MAINPID\n\
Restart=on-failure\n\
RestartSec=5\n\
TimeoutStopSec=30\n\
NoNewPrivileges=yes\n\
PrivateTmp=yes\n\
ProtectSystem=strict\n\
ProtectHome=read-only\n\
ProtectKernelTunables=yes\n\
ProtectKernelModules=yes\n\
ProtectControlGroups=yes\n\
RestrictSUIDSGID=yes\n\
LockPersonality=yes\n\
PrivateDevices=yes\n\
ProtectKernelLogs=yes\n\
ProtectClock=yes\n\
ProtectHostname=yes\n\
RestrictNamespaces=yes\n\
RestrictRealtime=yes\n\
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n\
SystemCallArchitectures=native\n\
{}ReadWritePaths={}\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n",
        quote(&exe.display().to_string()),
        quote(&state_dir.display().to_string()),
        confined,
        rw.trim_start(),
    )
}

/// systemd's quoting for a path with spaces.
fn quote(path: &str) -> String {
    crate::privilege::unit_word(path)
}

fn systemctl(args: &[&str]) -> Result<(), String> {
    let status = std::process::Command::new("systemctl")
        .args(args)
        .status()
        .map_err(|e| format!("systemctl {}: {e}", args.join(" ")))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("systemctl {}: {status}", args.join(" ")))
    }
}

/// Installs (or rewrites) the unit; returns whether it changed.
pub fn install_unit(unit: &str) -> Result<bool, String> {
    if std::fs::read_to_string(UNIT_PATH).is_ok_and(|old| old == unit) {
        return Ok(false);
    }
    super::config::write_atomic(Path::new(UNIT_PATH), unit.as_bytes())
        .map_err(|e| format!("{UNIT_PATH}: {e}"))?;
    systemctl(&["daemon-reload"])?;
    Ok(true)
}

/// Whether the service runs now.
pub fn is_running(manager: Manager, state_dir: &Path) -> bool {
    match manager {
        Manager::Systemd => std::process::Command::new("systemctl")
            .args(["is-active", "--quiet", UNIT_NAME])
            .status()
            .is_ok_and(|s| s.success()),
        Manager::Process => process_running(state_dir),
    }
}

#[cfg(unix)]
fn process_running(state_dir: &Path) -> bool {
    running_pid(state_dir).is_some()
}

#[cfg(windows)]
fn process_running(_state_dir: &Path) -> bool {
    crate::winservice::is_running()
}

/// The running service's claim on its pid file: an exclusive lock held until the service
/// exits (the kernel drops it even on SIGKILL).
#[derive(Debug)]
pub struct PidClaim {
    dir: crate::safefs::Dir,
    _file: std::fs::File,
}

impl PidClaim {
    /// Locks `<state>/akvsync.pid` and writes this process's id into it; fails while
    /// another service holds it.
    pub fn claim(state_dir: &Path) -> std::io::Result<PidClaim> {
        use std::io::{Seek, Write};
        let dir = crate::safefs::Dir::open(state_dir)?;
        let mut file = dir.open_lock(PID_FILE, crate::safefs::FileSpec::PUBLIC)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::other("another service holds the pid file"));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(std::process::id().to_string().as_bytes())?;
        file.sync_all()?;
        Ok(PidClaim { dir, _file: file })
    }
}

impl Drop for PidClaim {
    fn drop(&mut self) {
        // Removed while still locked: nobody can mistake the file for a live service.
        let _ = self.dir.remove_file(PID_FILE);
    }
}

/// The pid in the pid file if a live service holds the file's lock (and that process is
/// an akvsync service); a stale file, whatever its pid, names nothing.
pub fn running_pid(state_dir: &Path) -> Option<u32> {
    let file = crate::safefs::open_read_nofollow(&state_dir.join(PID_FILE)).ok()?;
    match file.try_lock_shared() {
        // Nobody holds it: whoever wrote it is gone.
        Ok(()) => return None,
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(_)) => return None,
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(&file, 32), &mut text).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    is_our_service(pid).then_some(pid)
}

#[cfg(target_os = "linux")]
fn is_our_service(pid: u32) -> bool {
    // Besides the lock: the process must be an `akvsync handler service`, not a zombie.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.windows(2)
            .any(|w| w[0] == b"handler" && w[1] == b"service")
    }) && !is_zombie(pid)
}

/// Whether `pid` still names a process that has not exited (a zombie has).
#[cfg(target_os = "linux")]
fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

#[cfg(all(unix, not(target_os = "linux")))]
fn process_exists(_pid: u32) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

#[cfg(not(target_os = "linux"))]
fn is_our_service(_pid: u32) -> bool {
    false
}

#[cfg(unix)]
fn signal(pid: u32, signal: nix::libc::c_int) -> Result<(), String> {
    let pid = nix::libc::pid_t::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { nix::libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("kill {pid}: {}", std::io::Error::last_os_error()))
    }
}

/// Starts the service, or makes the running one reload its settings.
pub fn start_or_reload(manager: Manager, exe: &Path, state_dir: &Path) -> Result<String, String> {
    match manager {
        Manager::Systemd => {
            systemctl(&["enable", UNIT_NAME])?;
            systemctl(&["reload-or-restart", UNIT_NAME])?;
            Ok(format!("systemd unit {UNIT_NAME} started or reloaded"))
        }
        Manager::Process => start_or_reload_process(exe, state_dir),
    }
}

#[cfg(unix)]
fn start_or_reload_process(exe: &Path, state_dir: &Path) -> Result<String, String> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    if let Some(pid) = running_pid(state_dir) {
        signal(pid, nix::libc::SIGHUP)?;
        return Ok(format!("service (pid {pid}) reloading its settings"));
    }
    let mut child = Command::new(exe)
        .arg("handler")
        .arg("service")
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: the agent may kill enable's group when enable returns.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the service exited at start ({status}); see its log"
            ));
        }
        if running_pid(state_dir) == Some(child.id()) {
            return Ok(format!("service started (pid {})", child.id()));
        }
        if started.elapsed() > START_TIMEOUT {
            return Err("the service did not start in time; see its log".to_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(windows)]
fn start_or_reload_process(exe: &Path, state_dir: &Path) -> Result<String, String> {
    use crate::winservice;
    let arguments = winservice::handler_service_arguments(state_dir);
    winservice::install_or_update(exe, arguments)
        .map_err(|e| format!("registering service {UNIT_NAME}: {e}"))?;
    // No SIGHUP on Windows: the service reads the handed-over settings when it starts.
    let restarted = winservice::stop()?;
    winservice::start()?;
    Ok(if restarted {
        format!("service {UNIT_NAME} restarted with the new settings")
    } else {
        format!("service {UNIT_NAME} started")
    })
}

/// Stops the service; `Ok(false)` when it was not running.
pub fn stop(manager: Manager, state_dir: &Path) -> Result<bool, String> {
    match manager {
        Manager::Systemd => {
            systemctl(&["stop", UNIT_NAME])?;
            Ok(true)
        }
        Manager::Process => stop_process(state_dir),
    }
}

#[cfg(unix)]
fn stop_process(state_dir: &Path) -> Result<bool, String> {
    let Some(pid) = running_pid(state_dir) else {
        // A stale pid file names nothing; the next service replaces it.
        return Ok(false);
    };
    signal(pid, nix::libc::SIGTERM)?;
    let started = Instant::now();
    // Stopped means gone, not only its lock released: the process still tears its runtime
    // down after that, and a caller (disable, update) may count on it having exited.
    while running_pid(state_dir) == Some(pid) || process_exists(pid) {
        if started.elapsed() > STOP_TIMEOUT {
            return Err(format!("the service (pid {pid}) did not stop in time"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(true)
}

#[cfg(windows)]
fn stop_process(_state_dir: &Path) -> Result<bool, String> {
    crate::winservice::stop()
}

/// Stops the service and removes what registers it (the unit, the pid file).
pub fn remove(manager: Manager, state_dir: &Path) -> Result<(), String> {
    stop(manager, state_dir)?;
    if manager == Manager::Systemd {
        let _ = systemctl(&["disable", UNIT_NAME]);
        match crate::safefs::remove_file_at(Path::new(UNIT_PATH)) {
            Ok(true) => systemctl(&["daemon-reload"])?,
            Ok(false) => {}
            Err(e) => return Err(format!("{UNIT_PATH}: {e}")),
        }
    }
    #[cfg(windows)]
    if let Err(e) = crate::winservice::uninstall() {
        // Not registered is what `remove` wants; anything else is worth a line.
        tracing::debug!(error = %e, "removing the service registration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_has_the_hardening_and_the_writable_paths() {
        let unit = unit_file(
            Path::new("/var/lib/waagent/Akvsync-1.0/bin/akvsync"),
            Path::new("/var/lib/akvsync"),
            &[
                PathBuf::from("/var/lib/waagent/Microsoft.Azure.KeyVault.Store"),
                PathBuf::from("/etc/my certs"),
                PathBuf::from("/var/lib/akvsync"),
            ],
            Some(&["CAP_CHOWN"]),
        );
        assert!(
            unit.contains("\nCapabilityBoundingSet=CAP_CHOWN\nSystemCallFilter=@system-service\n")
        );
        let open = unit_file(Path::new("/a"), Path::new("/s"), &[], None);
        assert!(!open.contains("CapabilityBoundingSet") && !open.contains("SystemCallFilter"));
        assert!(unit.contains("Type=notify\n"));
        assert!(unit.contains("ExecStart=/var/lib/waagent/Akvsync-1.0/bin/akvsync handler service --state-dir /var/lib/akvsync\n"));
        assert!(unit.contains("ProtectSystem=strict\n"));
        assert!(unit.contains("NoNewPrivileges=yes\n"));
        assert!(unit.contains("Restart=on-failure\n"));
        assert!(unit.contains(
            "ReadWritePaths=-/var/lib/akvsync -/var/lib/waagent/Microsoft.Azure.KeyVault.Store -\"/etc/my certs\"\n"
        ));
    }
}
