//! `HandlerEnvironment.json` (SPEC §7): where the guest agent wants our logs, where it
//! puts settings files and where it reads status files. The agent may be writing the file
//! when a command starts, so reads are retried briefly.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file's name in the handler directory.
pub const FILE: &str = "HandlerEnvironment.json";
/// A real file is a few hundred bytes; anything larger is not one.
const MAX_BYTES: u64 = 64 * 1024;
/// Attempts × delay = 3 s: long enough for the agent to finish writing a small file,
/// short against the agent's 300 s limit for `enable`.
const READ_ATTEMPTS: u32 = 15;
const READ_DELAY: Duration = Duration::from_millis(200);

/// The parts of `HandlerEnvironment.json` the handler uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerEnvironment {
    /// The handler's name (`<publisher>.<type>`), used in status files.
    pub name: String,
    pub log_folder: PathBuf,
    pub config_folder: PathBuf,
    pub status_folder: PathBuf,
    pub heartbeat_file: Option<PathBuf>,
}

/// Parses the file's content: `[{"name", "version", "handlerEnvironment": {...}}]`.
pub fn parse(bytes: &[u8]) -> Result<HandlerEnvironment, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("{FILE} is not JSON: {e}"))?;
    let first = value
        .as_array()
        .and_then(|a| a.first())
        .ok_or_else(|| format!("{FILE}: expected a non-empty array"))?;
    let env = first
        .get("handlerEnvironment")
        .ok_or_else(|| format!("{FILE}: [0].handlerEnvironment is missing"))?;
    let folder = |key: &str| -> Result<PathBuf, String> {
        env.get(key)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| format!("{FILE}: [0].handlerEnvironment.{key} is missing"))
    };
    Ok(HandlerEnvironment {
        name: first
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("akvsync")
            .to_owned(),
        log_folder: folder("logFolder")?,
        config_folder: folder("configFolder")?,
        status_folder: folder("statusFolder")?,
        heartbeat_file: folder("heartbeatFile").ok(),
    })
}

/// Reads `<handler_dir>/HandlerEnvironment.json`, retrying while it is missing or
/// incomplete.
pub fn read(handler_dir: &Path) -> Result<HandlerEnvironment, String> {
    let path = handler_dir.join(FILE);
    let mut last = String::new();
    for attempt in 0..READ_ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(READ_DELAY);
        }
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > MAX_BYTES => {
                return Err(format!("{}: larger than {MAX_BYTES} bytes", path.display()));
            }
            Ok(_) => {}
            Err(e) => {
                last = format!("{}: {e}", path.display());
                continue;
            }
        }
        match std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display())) {
            Ok(bytes) => match parse(&bytes) {
                Ok(env) => return Ok(env),
                Err(e) => last = e,
            },
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_agents_file() {
        let env = parse(br#"[{"name":"Akvsync.KeyVault","version":1.0,"handlerEnvironment":{"logFolder":"/var/log/azure/x","configFolder":"/h/config","statusFolder":"/h/status","heartbeatFile":"/h/heartbeat.log"}}]"#).unwrap();
        assert_eq!(env.name, "Akvsync.KeyVault");
        assert_eq!(env.config_folder, PathBuf::from("/h/config"));
        assert_eq!(env.heartbeat_file, Some(PathBuf::from("/h/heartbeat.log")));
    }

    #[test]
    fn names_what_is_missing() {
        let err =
            parse(br#"[{"name":"x","handlerEnvironment":{"logFolder":"/l","configFolder":"/c"}}]"#)
                .unwrap_err();
        assert!(err.contains("statusFolder"), "{err}");
        assert!(parse(b"[]").is_err());
        assert!(parse(b"[{\"name\":").is_err());
    }
}
