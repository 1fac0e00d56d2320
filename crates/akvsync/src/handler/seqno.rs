//! Sequence numbers (SPEC §7): which `<n>.settings` is current, and which one was last
//! processed. The Linux agent passes `ConfigSequenceNumber`; otherwise the most recently
//! modified `<n>.settings` wins (the highest `n` on a tie). The last processed number is
//! kept in the `mrseq` file in the handler directory on Linux, and in the registry value
//! `HKLM\Software\Microsoft\Windows Azure\HandlerState\<name>_<version>\SequenceNumber` on
//! Windows.

use std::path::Path;
use std::time::SystemTime;

/// The environment variable the Linux guest agent sets for every command.
pub const ENV_VAR: &str = "ConfigSequenceNumber";
/// The file that remembers the last processed sequence number (Linux).
pub const MRSEQ_FILE: &str = "mrseq";

/// The sequence number in `ConfigSequenceNumber`'s value, if it is one.
pub fn from_env_value(value: Option<&str>) -> Option<u64> {
    value.and_then(|v| v.trim().parse().ok())
}

/// `n` for a file named `<n>.settings`.
pub fn settings_number(file_name: &str) -> Option<u64> {
    let digits = file_name.strip_suffix(".settings")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The most recently modified settings file's number; the highest number on a tie.
pub fn pick(candidates: &[(u64, SystemTime)]) -> Option<u64> {
    candidates
        .iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)))
        .map(|(n, _)| *n)
}

/// The most recently modified `<n>.settings` in `config_folder`.
pub fn latest_settings(config_folder: &Path) -> std::io::Result<Option<u64>> {
    let mut candidates = Vec::new();
    for entry in std::fs::read_dir(config_folder)? {
        let entry = entry?;
        let Some(n) = entry.file_name().to_str().and_then(settings_number) else {
            continue;
        };
        let modified = entry.metadata()?.modified()?;
        candidates.push((n, modified));
    }
    Ok(pick(&candidates))
}

/// The current sequence number: `ConfigSequenceNumber`, else the newest settings file.
pub fn current(config_folder: &Path) -> Result<Option<u64>, String> {
    if let Some(n) = from_env_value(std::env::var(ENV_VAR).ok().as_deref()) {
        return Ok(Some(n));
    }
    latest_settings(config_folder).map_err(|e| format!("{}: {e}", config_folder.display()))
}

/// An `mrseq` file holds one number; anything longer is not one (read no further).
const MAX_MRSEQ_BYTES: u64 = 64;

/// The number in an `mrseq` file's bytes (surrounding whitespace allowed), if it is one.
pub fn parse_mrseq(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// The last processed sequence number recorded in `<handler_dir>/mrseq`.
pub fn read_mrseq(handler_dir: &Path) -> Option<u64> {
    use std::io::Read;
    let file = std::fs::File::open(handler_dir.join(MRSEQ_FILE)).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_MRSEQ_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > MAX_MRSEQ_BYTES {
        return None;
    }
    parse_mrseq(&bytes)
}

/// Records `n` as the last processed sequence number.
pub fn write_mrseq(handler_dir: &Path, n: u64) -> std::io::Result<()> {
    super::config::write_atomic(&handler_dir.join(MRSEQ_FILE), n.to_string().as_bytes())
}

/// The Windows guest agent's HandlerState key for a handler (below `HKLM`).
pub fn registry_key(name: &str, version: &str) -> String {
    format!(r"SOFTWARE\Microsoft\Windows Azure\HandlerState\{name}_{version}")
}

/// The `SequenceNumber` value in `reg query <key> /v SequenceNumber` output
/// (`    SequenceNumber    REG_SZ    3`, or `REG_DWORD    0x3`).
pub fn parse_reg_query(output: &str) -> Option<u64> {
    output.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if !fields.next()?.eq_ignore_ascii_case("SequenceNumber") {
            return None;
        }
        let kind = fields.next()?;
        let value = fields.next()?;
        match kind {
            "REG_DWORD" | "REG_QWORD" => {
                u64::from_str_radix(value.trim_start_matches("0x"), 16).ok()
            }
            _ => value.parse().ok(),
        }
    })
}

/// Reads and writes the HandlerState sequence number through `reg.exe`, which every
/// Windows (and Wine) has; the guest agent itself also writes this value.
#[cfg(windows)]
pub mod registry {
    use std::process::Command;

    /// The last processed sequence number of this handler, if recorded.
    pub fn read(name: &str, version: &str) -> Option<u64> {
        let key = format!(r"HKLM\{}", super::registry_key(name, version));
        let output = Command::new("reg")
            .args(["query", &key, "/v", "SequenceNumber"])
            .output()
            .ok()?;
        super::parse_reg_query(&String::from_utf8_lossy(&output.stdout))
    }

    /// Records `n` as the last processed sequence number.
    pub fn write(name: &str, version: &str, n: u64) -> Result<(), String> {
        let key = format!(r"HKLM\{}", super::registry_key(name, version));
        let status = Command::new("reg")
            .args(["add", &key, "/v", "SequenceNumber", "/t", "REG_SZ", "/d"])
            .arg(n.to_string())
            .arg("/f")
            .status()
            .map_err(|e| format!("reg add: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("reg add {key}: {status}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn settings_file_names() {
        assert_eq!(settings_number("0.settings"), Some(0));
        assert_eq!(settings_number("12.settings"), Some(12));
        assert_eq!(settings_number("x.settings"), None);
        assert_eq!(settings_number(".settings"), None);
        assert_eq!(settings_number("3.settings.tmp"), None);
        assert_eq!(settings_number("-1.settings"), None);
    }

    #[test]
    fn newest_wins_and_highest_on_a_tie() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let later = t + Duration::from_secs(5);
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&[(1, t), (0, later), (2, t)]), Some(0));
        assert_eq!(pick(&[(1, t), (3, t), (2, t)]), Some(3));
    }

    #[test]
    fn mrseq_contents() {
        assert_eq!(parse_mrseq(b"3"), Some(3));
        assert_eq!(parse_mrseq(b" 12\n"), Some(12));
        assert_eq!(parse_mrseq(b""), None);
        assert_eq!(parse_mrseq(b"-1"), None);
        assert_eq!(parse_mrseq(b"\xff3"), None);
        assert_eq!(parse_mrseq(b"99999999999999999999999"), None);
    }

    #[test]
    fn environment_value() {
        assert_eq!(from_env_value(Some("7")), Some(7));
        assert_eq!(from_env_value(Some(" 7\n")), Some(7));
        assert_eq!(from_env_value(Some("")), None);
        assert_eq!(from_env_value(None), None);
    }

    #[test]
    fn registry_value_forms() {
        assert_eq!(
            registry_key("Akvsync.KeyVault", "1.2.3"),
            r"SOFTWARE\Microsoft\Windows Azure\HandlerState\Akvsync.KeyVault_1.2.3"
        );
        let sz = "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\...\r\n    SequenceNumber    REG_SZ    3\r\n";
        assert_eq!(parse_reg_query(sz), Some(3));
        let dword = "    SequenceNumber    REG_DWORD    0x1a\n";
        assert_eq!(parse_reg_query(dword), Some(26));
        assert_eq!(parse_reg_query("ERROR: not found"), None);
    }
}
