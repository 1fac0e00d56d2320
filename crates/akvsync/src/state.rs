//! Persisted agent state (SPEC §6): per store target, what akvsync installed (versions,
//! thumbprint, expiry) and when it last checked. Lives in the state directory, never in a
//! store directory; written crash-safely (temp file, fsync, rename, fsync directory); a
//! corrupt file is set aside, not trusted, and never fatal. The directory is guarded by
//! an exclusive lock so that two agents never share it (exit code 3). Every write goes
//! through [`crate::safefs`]: a state directory that another account owns or can write is
//! refused, and no file in it is opened through a symlink.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::safefs::{Dir, FileSpec};

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
/// The last settings `once`/`run` used, for `status` without `--settings` (SPEC §10).
pub const LAST_SETTINGS_FILE: &str = "last-settings.json";
/// A state file of thousands of certificates is well under this.
const MAX_STATE_BYTES: u64 = 16 * 1024 * 1024;

/// Default state directory of the platform.
pub fn default_state_dir() -> PathBuf {
    if cfg!(windows) {
        let program_data =
            std::env::var_os("ProgramData").unwrap_or_else(|| "C:\\ProgramData".into());
        Path::new(&program_data).join("akvsync")
    } else {
        PathBuf::from("/var/lib/akvsync")
    }
}

/// What akvsync knows about one store target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetState {
    pub vault_host: String,
    pub secret_name: String,
    /// The version installed behind the stable name.
    pub installed_version: Option<String>,
    pub thumbprint: Option<String>,
    pub not_after: Option<u64>,
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// Versions akvsync wrote for this target, oldest first; only these are ever pruned.
    #[serde(default)]
    pub owned_versions: Vec<String>,
    pub last_check: Option<u64>,
    pub last_success: Option<u64>,
    pub last_error: Option<String>,
    /// `customSymbolicLinkName`s akvsync made for this target; one the settings no longer
    /// name is removed, so that no link akvsync made outlives its version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_links: Vec<String>,
    /// The last run of the certificate's hooks; a failed one is run again at every poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookState>,
}

/// The outcome of the last hook run of a target (all its matching hooks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookState {
    /// Every matching hook succeeded.
    pub ok: bool,
    /// The first failing hook's failure.
    pub message: Option<String>,
    pub exit_code: Option<i32>,
    /// Unix seconds.
    pub at: u64,
    /// The version the hooks ran for.
    pub version: Option<String>,
}

/// The whole state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    #[serde(default)]
    pub targets: BTreeMap<String, TargetState>,
}

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("another akvsync process holds the lock on {}", .0.display())]
    Locked(PathBuf),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// The locked state directory. The lock is released when this is dropped.
#[derive(Debug)]
pub struct StateDir {
    dir: Dir,
    _lock: File,
}

impl StateDir {
    /// Creates (0700) and locks the directory.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let handle = create_private_dir(dir).map_err(io_err("open", dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = handle
            .open_lock(LOCK_FILE, FileSpec::PRIVATE)
            .map_err(io_err("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => Ok(StateDir {
                dir: handle,
                _lock: lock,
            }),
            Err(fs::TryLockError::WouldBlock) => Err(StateError::Locked(dir.to_owned())),
            Err(fs::TryLockError::Error(e)) => Err(io_err("lock", &lock_path)(e)),
        }
    }

    /// Reads the state without locking or creating anything (for `status`, which may run
    /// beside the service); anything unreadable reads as empty.
    pub fn peek(dir: &Path) -> State {
        fs::File::open(dir.join(STATE_FILE))
            .ok()
            .and_then(|file| {
                let mut bytes = Vec::new();
                file.take(MAX_STATE_BYTES).read_to_end(&mut bytes).ok()?;
                serde_json::from_slice(&bytes).ok()
            })
            .unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Loads the state; a missing file is an empty state, a corrupt one is renamed to
    /// `state.json.corrupt` and replaced by an empty state (returned as the warning).
    pub fn load(&self) -> (State, Option<String>) {
        let path = self.dir.path().join(STATE_FILE);
        let read = || -> io::Result<Vec<u8>> {
            let file = File::open(&path)?;
            let mut bytes = Vec::new();
            file.take(MAX_STATE_BYTES + 1).read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        match read() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => (State::default(), None),
            Err(e) => (
                State::default(),
                Some(format!(
                    "cannot read {}: {e}; starting afresh",
                    path.display()
                )),
            ),
            Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
                Ok(state) if bytes.len() as u64 <= MAX_STATE_BYTES => (state, None),
                _ => {
                    let aside_name = format!("{STATE_FILE}.corrupt");
                    let aside = self.dir.path().join(&aside_name);
                    let _ = self.dir.rename(STATE_FILE, &aside_name);
                    let warning = format!(
                        "{} was corrupt; kept as {} and starting afresh",
                        path.display(),
                        aside.display()
                    );
                    (State::default(), Some(warning))
                }
            },
        }
    }

    /// Keeps a copy of validated settings (atomically) for `status` without `--settings`.
    pub fn remember_settings(&self, settings_file: &Path) -> Result<(), StateError> {
        let mut bytes = Vec::new();
        File::open(settings_file)
            .and_then(|f| f.take(MAX_STATE_BYTES).read_to_end(&mut bytes))
            .map_err(io_err("read", settings_file))?;
        self.write_atomically(LAST_SETTINGS_FILE, &bytes)
    }

    /// Writes the state atomically.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let path = self.dir.path().join(STATE_FILE);
        // Compact: it is rewritten at every poll (each certificate's last check), and the
        // indentation was a third of the encoding's cost; `jq . state.json` reads it.
        let json =
            serde_json::to_vec(state).map_err(|e| io_err("encode", &path)(io::Error::other(e)))?;
        self.write_atomically(STATE_FILE, &json)
    }

    /// Temp file (0600), fsync, rename over `name`, fsync the directory.
    fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.dir.path().join(name);
        self.dir
            .write_file(name, bytes, FileSpec::PRIVATE)
            .map_err(io_err("replace", &path))
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError + use<> {
    let path = path.to_owned();
    move |source| StateError::Io {
        action,
        path,
        source,
    }
}

/// Opens `dir` through [`crate::safefs`], creating it (and missing parents) readable by its
/// owner only (0700 on Unix): the state directory holds the settings handed to the service,
/// which may contain protected settings. A directory that another account owns or can
/// write (or one below such a directory) is refused.
pub fn create_private_dir(dir: &Path) -> io::Result<Dir> {
    Dir::create(dir, 0o700)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("akvsync-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn round_trips_and_locks() {
        let dir = temp_dir("roundtrip");
        let state_dir = StateDir::open(&dir).unwrap();
        assert!(matches!(StateDir::open(&dir), Err(StateError::Locked(_))));
        let mut state = State::default();
        state.targets.insert(
            "t".into(),
            TargetState {
                installed_version: Some("v".into()),
                ..Default::default()
            },
        );
        state_dir.save(&state).unwrap();
        assert_eq!(state_dir.load(), (state, None));
        drop(state_dir);
        assert!(StateDir::open(&dir).is_ok(), "lock released on drop");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_state_is_set_aside() {
        let dir = temp_dir("corrupt");
        let state_dir = StateDir::open(&dir).unwrap();
        fs::write(dir.join(STATE_FILE), b"{not json").unwrap();
        let (state, warning) = state_dir.load();
        assert_eq!(state, State::default());
        assert!(warning.unwrap().contains("was corrupt"));
        assert_eq!(
            fs::read(dir.join("state.json.corrupt")).unwrap(),
            b"{not json"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
