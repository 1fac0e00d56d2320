//! The five commands the guest agent runs (SPEC §7, §10), each idempotent:
//! - `install`: creates the state directory and records this version as the owner if
//!   nothing owns it yet.
//! - `enable`: validates the current `<n>.settings`; invalid → `enable` itself writes
//!   `<n>.status` = error naming the JSON paths and leaves the running service on its last
//!   good settings; valid → hands the settings to the service (`config`) and starts or
//!   reloads it, which then owns `<n>.status`. Returns within seconds.
//! - `disable`: stops the service (polling stops), reports `success` for the operation.
//! - `uninstall`: by the owner, removes the service and the state directory, never an
//!   installed certificate; by another version (the old one during an update), only its
//!   own handler files.
//! - `update`: runs in the new version after the old one's `disable`: takes ownership of
//!   the state directory (the state itself is version-independent).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::config::{self, HandlerConfig};
use super::environment::{self, HandlerEnvironment};
use super::manager::{self, Manager};
use super::seqno;
use super::status::{self, Status, StatusReport};
use crate::exit;
use crate::settings::{self, Platform, SettingsError, render};
use crate::state;

/// The guest agent's variables (WALinuxAgent `exthandlers.py`).
const ENV_EXTENSION_PATH: &str = "AZURE_GUEST_AGENT_EXTENSION_PATH";
const ENV_EXTENSION_VERSION: &str = "AZURE_GUEST_AGENT_EXTENSION_VERSION";
/// Set for `update`: the version being replaced.
const ENV_UPDATING_FROM: &str = "AZURE_GUEST_AGENT_UPDATING_FROM_VERSION";

/// Everything a command needs to know about where it runs.
#[derive(Debug, Clone)]
pub struct Context {
    pub handler_dir: PathBuf,
    pub environment: HandlerEnvironment,
    pub version: String,
    pub state_dir: PathBuf,
    pub manager: Manager,
    pub exe: PathBuf,
    pub report_heartbeat: bool,
}

impl Context {
    /// The context of a command started by the agent: the handler directory is
    /// `AZURE_GUEST_AGENT_EXTENSION_PATH`, else the working directory.
    pub fn from_agent(state_dir: Option<PathBuf>) -> Result<Self, String> {
        let handler_dir = match std::env::var_os(ENV_EXTENSION_PATH) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => std::env::current_dir().map_err(|e| format!("working directory: {e}"))?,
        };
        let environment = environment::read(&handler_dir)?;
        let version = std::env::var(ENV_EXTENSION_VERSION)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| version_from_dir(&handler_dir))
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        Ok(Context {
            report_heartbeat: report_heartbeat(&handler_dir),
            handler_dir,
            environment,
            version,
            state_dir: state_dir.unwrap_or_else(state::default_state_dir),
            manager: Manager::detect(),
            exe,
        })
    }

    fn status_file(&self, seq: u64) -> PathBuf {
        self.environment.status_folder.join(format!("{seq}.status"))
    }

    fn write_status(&self, seq: u64, operation: &str, status: Status, message: String) {
        let report = StatusReport {
            handler_name: self.environment.name.clone(),
            operation: operation.to_owned(),
            status,
            code: i32::from(status == Status::Error),
            message,
            substatus: Vec::new(),
        };
        let path = self.status_file(seq);
        if let Err(error) = status::write(&path, &report) {
            tracing::error!(file = %path.display(), %error, "cannot write the status file");
        }
    }
}

/// `1.2.3` from a handler directory named `<publisher>.<type>-1.2.3`.
pub fn version_from_dir(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    let (_, version) = name.rsplit_once('-')?;
    let valid = !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && version.bytes().any(|b| b.is_ascii_digit());
    valid.then(|| version.to_owned())
}

/// `reportHeartbeat` from the `HandlerManifest.json` beside us (false if unreadable).
fn report_heartbeat(handler_dir: &Path) -> bool {
    std::fs::read(handler_dir.join("HandlerManifest.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|v| v[0]["handlerManifest"]["reportHeartbeat"].as_bool())
        .unwrap_or(false)
}

pub fn install(ctx: &Context) -> ExitCode {
    if let Err(error) = state::create_private_dir(&ctx.state_dir) {
        tracing::error!(dir = %ctx.state_dir.display(), %error, "install failed");
        return ExitCode::from(exit::FAILURE);
    }
    if config::owner(&ctx.state_dir).is_none()
        && let Err(error) = config::set_owner(&ctx.state_dir, &ctx.version)
    {
        tracing::error!(%error, "install failed");
        return ExitCode::from(exit::FAILURE);
    }
    tracing::info!(version = %ctx.version, state = %ctx.state_dir.display(), "installed");
    ExitCode::from(exit::OK)
}

pub fn enable(ctx: &Context) -> ExitCode {
    let config_folder = &ctx.environment.config_folder;
    let seq = match seqno::current(config_folder) {
        Ok(Some(seq)) => seq,
        Ok(None) => {
            tracing::info!("no settings file yet; nothing to do");
            return ExitCode::from(exit::OK);
        }
        Err(error) => {
            tracing::error!(%error, "cannot find the settings");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let settings_file = config_folder.join(format!("{seq}.settings"));
    tracing::info!(seq, file = %settings_file.display(), "enable");
    let validated = match settings::load_file(&settings_file, Platform::current()) {
        Ok(v) => v,
        Err(error) => {
            let details = match &error {
                SettingsError::Invalid(diags) => render::errors(&diags.errors),
                other => format!("error: {other}"),
            };
            for line in details.lines() {
                tracing::error!("{line}");
            }
            let running =
                manager::is_running(ctx.manager, &ctx.state_dir) || ctx.manager == Manager::Systemd;
            let keep = if running {
                "; the service keeps running on its last good settings"
            } else {
                ""
            };
            ctx.write_status(
                seq,
                "Enable",
                Status::Error,
                format!(
                    "invalid settings in {seq}.settings{keep}:\n{}",
                    details.trim_end()
                ),
            );
            return ExitCode::from(exit::INVALID);
        }
    };
    for warning in &validated.warnings {
        tracing::warn!(%warning, "settings");
    }
    let bytes = match std::fs::read(&settings_file) {
        Ok(b) => b,
        Err(error) => {
            tracing::error!(%error, "cannot read the settings");
            return ExitCode::from(exit::FAILURE);
        }
    };
    if let Err(error) = state::create_private_dir(&ctx.state_dir) {
        tracing::error!(%error, "cannot create the state directory");
        return ExitCode::from(exit::FAILURE);
    }
    if config::owner(&ctx.state_dir).is_none() {
        let _ = config::set_owner(&ctx.state_dir, &ctx.version);
    }
    let handler = HandlerConfig {
        handler_name: ctx.environment.name.clone(),
        handler_version: ctx.version.clone(),
        seq_no: seq,
        status_file: ctx.status_file(seq),
        heartbeat_file: ctx.environment.heartbeat_file.clone(),
        report_heartbeat: ctx.report_heartbeat,
        log_folder: ctx.environment.log_folder.clone(),
    };
    // Idempotent: the same settings already handed to a running service need nothing.
    let unchanged = config::read(&ctx.state_dir).is_ok_and(|c| c == handler)
        && std::fs::read(config::settings_path(&ctx.state_dir)).is_ok_and(|b| b == bytes);
    if unchanged && manager::is_running(ctx.manager, &ctx.state_dir) {
        tracing::info!(seq, "already enabled with these settings");
        return ExitCode::from(exit::OK);
    }
    if let Err(error) = config::write(&ctx.state_dir, &handler, &bytes) {
        tracing::error!(%error, "cannot hand the settings to the service");
        ctx.write_status(
            seq,
            "Enable",
            Status::Error,
            format!("cannot hand settings {seq} to the service: {error}"),
        );
        return ExitCode::from(exit::FAILURE);
    }
    let started = (|| {
        if ctx.manager == Manager::Systemd {
            let bound = capability_bound(&validated.settings);
            let unit = manager::unit_file(
                &ctx.exe,
                &ctx.state_dir,
                &writable_paths(ctx, &validated.settings),
                bound.as_deref(),
            );
            if manager::install_unit(&unit)? {
                // A changed unit (new binary or paths) needs a restart, not a reload.
                let _ = manager::stop(Manager::Systemd, &ctx.state_dir);
            }
        }
        manager::start_or_reload(ctx.manager, &ctx.exe, &ctx.state_dir)
    })();
    match started {
        Ok(message) => {
            tracing::info!(seq, "{message}");
            if let Err(error) = write_seqno(ctx, seq) {
                tracing::warn!(%error, "cannot record the sequence number");
            }
            ExitCode::from(exit::OK)
        }
        Err(error) => {
            tracing::error!(%error, "cannot start the service");
            ctx.write_status(
                seq,
                "Enable",
                Status::Error,
                format!("cannot start the akvsync service: {error}"),
            );
            ExitCode::from(exit::FAILURE)
        }
    }
}

fn write_seqno(ctx: &Context, seq: u64) -> Result<(), String> {
    #[cfg(windows)]
    {
        seqno::registry::write(&ctx.environment.name, &ctx.version, seq)
    }
    #[cfg(not(windows))]
    {
        seqno::write_mrseq(&ctx.handler_dir, seq).map_err(|e| e.to_string())
    }
}

/// The capabilities the service (root, under the guest agent) keeps: what the settings need
/// as root; `None` (no bound) when a `command` hook may need anything.
#[cfg(target_os = "linux")]
fn capability_bound(settings: &settings::Settings) -> Option<Vec<&'static str>> {
    use crate::privilege::{self, Account};
    let root = Account {
        name: "root".to_owned(),
        uid: 0,
        gids: vec![0],
    };
    let plan = privilege::plan(settings, &root, &privilege::caps::Nss);
    (plan.command_hooks == 0).then(|| plan.capabilities.iter().map(|(c, _)| c.name()).collect())
}

#[cfg(not(target_os = "linux"))]
fn capability_bound(_: &settings::Settings) -> Option<Vec<&'static str>> {
    None
}

/// What the service writes under `ProtectSystem=strict`.
fn writable_paths(ctx: &Context, settings: &settings::Settings) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = settings
        .written_directories()
        .into_iter()
        .map(PathBuf::from)
        .collect();
    paths.push(ctx.environment.status_folder.clone());
    paths.push(ctx.environment.log_folder.clone());
    if let Some(parent) = ctx
        .environment
        .heartbeat_file
        .as_ref()
        .and_then(|h| h.parent())
    {
        paths.push(parent.to_path_buf());
    }
    paths
}

/// The sequence number to report an operation under: the current one, else the last.
fn report_seq(ctx: &Context) -> Option<u64> {
    seqno::current(&ctx.environment.config_folder)
        .ok()
        .flatten()
        .or_else(|| seqno::read_mrseq(&ctx.handler_dir))
}

pub fn disable(ctx: &Context) -> ExitCode {
    match manager::stop(ctx.manager, &ctx.state_dir) {
        Ok(was_running) => {
            tracing::info!(
                was_running,
                "disabled: the service is stopped; installed certificates stay"
            );
            if let Some(seq) = report_seq(ctx) {
                ctx.write_status(
                    seq,
                    "Disable",
                    Status::Success,
                    "akvsync disabled: polling stopped; installed certificates stay".to_owned(),
                );
            }
            ExitCode::from(exit::OK)
        }
        Err(error) => {
            tracing::error!(%error, "disable failed");
            ExitCode::from(exit::FAILURE)
        }
    }
}

pub fn uninstall(ctx: &Context) -> ExitCode {
    if let Some(owner) = config::owner(&ctx.state_dir)
        && owner != ctx.version
    {
        tracing::info!(%owner, version = %ctx.version, "not the owner: leaving the service and the state to it");
        let _ = crate::safefs::remove_file_at(&ctx.handler_dir.join(seqno::MRSEQ_FILE));
        return ExitCode::from(exit::OK);
    }
    if let Err(error) = manager::remove(ctx.manager, &ctx.state_dir) {
        tracing::error!(%error, "uninstall failed");
        return ExitCode::from(exit::FAILURE);
    }
    match crate::safefs::remove_tree_at(&ctx.state_dir) {
        Ok(()) => {}
        Err(error) => {
            tracing::error!(%error, "cannot remove the state directory");
            return ExitCode::from(exit::FAILURE);
        }
    }
    let _ = crate::safefs::remove_file_at(&ctx.handler_dir.join(seqno::MRSEQ_FILE));
    tracing::info!("uninstalled: service and state removed; installed certificates stay");
    ExitCode::from(exit::OK)
}

/// The old version's handler directory: ours with its version replaced by `old`.
pub fn previous_handler_dir(handler_dir: &Path, old: &str) -> Option<PathBuf> {
    let name = handler_dir.file_name()?.to_str()?;
    let (prefix, _) = name.rsplit_once('-')?;
    Some(handler_dir.with_file_name(format!("{prefix}-{old}")))
}

pub fn update(ctx: &Context) -> ExitCode {
    // The service's state lives outside the versioned handler directories; only the
    // last processed sequence number (`mrseq`) moves from the old directory.
    if let Some(old) = std::env::var(ENV_UPDATING_FROM)
        .ok()
        .filter(|v| !v.is_empty())
        && let Some(old_dir) = previous_handler_dir(&ctx.handler_dir, &old)
        && seqno::read_mrseq(&ctx.handler_dir).is_none()
        && let Some(seq) = seqno::read_mrseq(&old_dir)
    {
        match seqno::write_mrseq(&ctx.handler_dir, seq) {
            Ok(()) => {
                tracing::info!(from = %old_dir.display(), seq, "sequence number carried over")
            }
            Err(error) => tracing::warn!(%error, "cannot carry over the sequence number"),
        }
    }
    let previous = config::owner(&ctx.state_dir);
    if let Err(error) = config::set_owner(&ctx.state_dir, &ctx.version) {
        tracing::error!(%error, "update failed");
        return ExitCode::from(exit::FAILURE);
    }
    tracing::info!(from = previous.as_deref().unwrap_or("none"), to = %ctx.version, "updated: this version owns the service and the state");
    ExitCode::from(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_handler_directory_names() {
        let v = |s: &str| version_from_dir(Path::new(s));
        assert_eq!(
            v("/var/lib/waagent/Akvsync.KeyVault-1.2.3").as_deref(),
            Some("1.2.3")
        );
        assert_eq!(
            v("/x/Microsoft.Azure.KeyVault.KeyVaultForLinux-3.5.3041.185").as_deref(),
            Some("3.5.3041.185")
        );
        assert_eq!(v("/x/handler"), None);
        assert_eq!(v("/x/a-b"), None);
    }

    #[test]
    fn previous_version_directory() {
        assert_eq!(
            previous_handler_dir(
                Path::new("/var/lib/waagent/Akvsync.KeyVault-2.0.0"),
                "1.0.0"
            ),
            Some(PathBuf::from("/var/lib/waagent/Akvsync.KeyVault-1.0.0"))
        );
        assert_eq!(previous_handler_dir(Path::new("/x/handler"), "1"), None);
    }
}
