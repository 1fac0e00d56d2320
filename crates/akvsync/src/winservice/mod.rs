//! The Windows service (issue 6, SPEC §8): `akvsync service install|uninstall` registers
//! or removes the `akvsync` service with the service control manager, and `akvsync service
//! run` is what the SCM starts: it refuses to call the dispatcher from a console (where the
//! dispatcher would hang ~10 s and fail with error 1063), logs to a rotated file under
//! `%ProgramData%\akvsync`, and honours stop/shutdown within seconds by ending the `run`
//! loop. The pure parts (command line, log path and rotation) compile and are tested on
//! every platform; the SCM calls are `cfg(windows)`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The service name (SPEC §10: never `akvvm_service`, so both can run during a migration).
pub const SERVICE_NAME: &str = "akvsync";
pub const DISPLAY_NAME: &str = "akvsync (Azure Key Vault certificates)";
pub const DESCRIPTION: &str =
    "Keeps Azure Key Vault certificates installed and current in the Windows certificate store.";

/// How long the SCM is told to wait for a stop; the run loop ends well within it.
pub const STOP_WAIT_HINT_S: u64 = 10;

/// The log file is rotated when it reaches this size at start-up.
pub const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated logs kept (`akvsync.log.1` … `.N`).
pub const KEPT_LOGS: usize = 3;

/// The arguments the SCM starts the executable with.
pub fn service_arguments(settings: &Path, state_dir: Option<&Path>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "service".into(),
        "run".into(),
        "--settings".into(),
        settings.as_os_str().to_owned(),
    ];
    if let Some(dir) = state_dir {
        args.push("--state-dir".into());
        args.push(dir.as_os_str().to_owned());
    }
    args
}

/// `%ProgramData%\akvsync\akvsync.log`.
pub fn log_path(program_data: &Path) -> PathBuf {
    program_data.join("akvsync").join("akvsync.log")
}

/// The renames that rotate `log` (oldest first, so none overwrites a kept one), or none
/// when it is below [`MAX_LOG_BYTES`].
pub fn rotation(log: &Path, size: u64) -> Vec<(PathBuf, PathBuf)> {
    if size < MAX_LOG_BYTES {
        return Vec::new();
    }
    let numbered = |n: usize| {
        let mut name = log.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    let mut renames: Vec<(PathBuf, PathBuf)> = (1..KEPT_LOGS)
        .rev()
        .map(|n| (numbered(n), numbered(n + 1)))
        .collect();
    renames.push((log.to_owned(), numbered(1)));
    renames
}

/// Rotates the log if it is too large; errors are ignored (logging must not stop the
/// service).
pub fn rotate(log: &Path) {
    let size = std::fs::metadata(log).map_or(0, |m| m.len());
    let Some(dir) = log.parent().and_then(|d| crate::safefs::Dir::open(d).ok()) else {
        return;
    };
    for (from, to) in rotation(log, size) {
        if let (Some(from), Some(to)) = (
            from.file_name().and_then(|n| n.to_str()),
            to.file_name().and_then(|n| n.to_str()),
        ) {
            let _ = dir.rename(from, to);
        }
    }
}

/// Logs to `log` (appending, after rotation) instead of stderr: a service has no console.
pub fn init_file_logging(log: &Path) {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let Ok(dir) = crate::safefs::Dir::create(dir, 0o700) else {
        return;
    };
    rotate(log);
    if let Ok(file) = dir.open_append(name, crate::safefs::FileSpec::PUBLIC) {
        crate::logging::init(
            tracing_subscriber::fmt::layer()
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false),
            tracing::Level::INFO,
        );
    }
}

/// `%ProgramData%` (default `C:\ProgramData`).
pub fn program_data() -> PathBuf {
    std::env::var_os("ProgramData").map_or_else(|| PathBuf::from("C:\\ProgramData"), PathBuf::from)
}

/// The arguments of the extension-mode service (`akvsync handler service`) that
/// `handler enable` registers on Windows.
pub fn handler_service_arguments(state_dir: &Path) -> Vec<OsString> {
    vec![
        "handler".into(),
        "service".into(),
        "--state-dir".into(),
        state_dir.as_os_str().to_owned(),
    ]
}

#[cfg(windows)]
mod scm;
#[cfg(windows)]
pub use scm::{
    Runner, install, install_or_update, is_console, is_running, restart_named, run_dispatcher,
    start, stop, uninstall,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_service_runs_handler_service_on_its_state_dir() {
        let args = handler_service_arguments(Path::new("C:\\ProgramData\\akvsync"));
        let args: Vec<_> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "handler",
                "service",
                "--state-dir",
                "C:\\ProgramData\\akvsync"
            ]
        );
    }

    #[test]
    fn the_scm_starts_service_run_with_the_settings_and_state_dir() {
        let args = service_arguments(Path::new("C:\\akv\\settings.json"), None);
        assert_eq!(
            args,
            ["service", "run", "--settings", "C:\\akv\\settings.json"]
        );
        let args = service_arguments(Path::new("s.json"), Some(Path::new("D:\\state")));
        assert_eq!(args[4..], ["--state-dir", "D:\\state"]);
    }

    #[test]
    fn logs_live_under_program_data_and_rotate_oldest_first() {
        let log = log_path(Path::new("/pd"));
        assert_eq!(log, Path::new("/pd/akvsync/akvsync.log"));
        assert!(rotation(&log, MAX_LOG_BYTES - 1).is_empty());
        let renames = rotation(&log, MAX_LOG_BYTES);
        let names: Vec<(String, String)> = renames
            .iter()
            .map(|(a, b)| (a.display().to_string(), b.display().to_string()))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "/pd/akvsync/akvsync.log.2".into(),
                    "/pd/akvsync/akvsync.log.3".into()
                ),
                (
                    "/pd/akvsync/akvsync.log.1".into(),
                    "/pd/akvsync/akvsync.log.2".into()
                ),
                (
                    "/pd/akvsync/akvsync.log".into(),
                    "/pd/akvsync/akvsync.log.1".into()
                ),
            ]
        );
    }

    #[test]
    fn rotation_on_disk_keeps_three() {
        let dir = std::env::temp_dir().join(format!("akvsync-logrot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("akvsync.log");
        for round in 0..5u8 {
            std::fs::write(&log, vec![round; MAX_LOG_BYTES as usize]).unwrap();
            rotate(&log);
        }
        assert!(!log.exists());
        for (n, round) in [(1, 4u8), (2, 3), (3, 2)] {
            let kept = std::fs::read(dir.join(format!("akvsync.log.{n}"))).unwrap();
            assert_eq!(kept[0], round);
        }
        assert!(!dir.join("akvsync.log.4").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
