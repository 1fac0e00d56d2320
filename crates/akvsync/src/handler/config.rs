//! The hand-off from `enable` to the service: `enable` validates `<n>.settings`, copies it
//! to `<state>/handler/settings.json` and records in `<state>/handler/handler.json` which
//! sequence number it is and where its status file goes; then it starts the service or
//! sends it SIGHUP. The service reads both files at start and on every reload, so plain
//! `akvsync run` is unchanged. Also the state directory's `owner` file (SPEC §10) and the
//! atomic file write every handler file uses.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::safefs::{self, Dir, FileSpec};

/// Sub-directory of the state directory that holds the handler's files.
pub const DIR: &str = "handler";
const CONFIG_FILE: &str = "handler.json";
const SETTINGS_FILE: &str = "settings.json";
/// The handler version that owns the service (SPEC §10).
pub const OWNER_FILE: &str = "owner";
/// A handler config is a few hundred bytes.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// What the service needs to report for the settings it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandlerConfig {
    pub handler_name: String,
    pub handler_version: String,
    pub seq_no: u64,
    /// `<statusFolder>/<n>.status`.
    pub status_file: PathBuf,
    /// Written only when `report_heartbeat` (from `HandlerManifest.json`).
    pub heartbeat_file: Option<PathBuf>,
    pub report_heartbeat: bool,
    pub log_folder: PathBuf,
}

/// `<state>/handler/handler.json`.
pub fn config_path(state_dir: &Path) -> PathBuf {
    state_dir.join(DIR).join(CONFIG_FILE)
}

/// `<state>/handler/settings.json`: the last valid settings handed to the service.
pub fn settings_path(state_dir: &Path) -> PathBuf {
    state_dir.join(DIR).join(SETTINGS_FILE)
}

/// Reads the handler config the last `enable` wrote.
pub fn read(state_dir: &Path) -> Result<HandlerConfig, String> {
    let path = config_path(state_dir);
    let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!("{}: too large", path.display()));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Hands settings (their bytes, already validated) and `config` to the service.
pub fn write(state_dir: &Path, config: &HandlerConfig, settings: &[u8]) -> std::io::Result<()> {
    let dir = Dir::create(&state_dir.join(DIR), 0o700)?;
    // Settings first: a service reloading between the two writes sees new settings with
    // the old sequence number, and reports them at its next round under the new one.
    // Readable by root only: they may carry `protectedSettings`.
    dir.write_file(SETTINGS_FILE, settings, FileSpec::PRIVATE)?;
    let json = serde_json::to_vec_pretty(config).expect("the config always serializes");
    dir.write_file(CONFIG_FILE, &json, FileSpec::PUBLIC)
}

/// The handler version recorded as owning the service, if any.
pub fn owner(state_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state_dir.join(OWNER_FILE)).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Records `version` as owning the service.
pub fn set_owner(state_dir: &Path, version: &str) -> std::io::Result<()> {
    Dir::create(state_dir, 0o700)?.write_file(OWNER_FILE, version.as_bytes(), FileSpec::PUBLIC)
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsynced and
/// renamed, so that a reader sees the old file or the new one, never a partial one
/// ([`crate::safefs`]: never through a symlink, never in a directory another account can
/// write).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    safefs::write_file_at(path, bytes, FileSpec::PUBLIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_owner() {
        let dir = std::env::temp_dir().join(format!("akvsync-hcfg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = HandlerConfig {
            handler_name: "n".into(),
            handler_version: "1.0.0".into(),
            seq_no: 4,
            status_file: dir.join("4.status"),
            heartbeat_file: None,
            report_heartbeat: false,
            log_folder: dir.join("log"),
        };
        write(&dir, &config, b"{}").unwrap();
        assert_eq!(read(&dir).unwrap(), config);
        assert_eq!(std::fs::read(settings_path(&dir)).unwrap(), b"{}");
        assert_eq!(owner(&dir), None);
        set_owner(&dir, "1.0.0").unwrap();
        assert_eq!(owner(&dir).as_deref(), Some("1.0.0"));
        let leftovers: Vec<_> = std::fs::read_dir(dir.join(DIR))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("akvsync-tmp"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
