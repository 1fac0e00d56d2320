//! Status files (SPEC §7): `<statusFolder>/<n>.status` exactly as the guest agent parses
//! it (a JSON array whose element 0 holds the status; one of four values; `lang` and
//! `message`; at most 128 KiB; messages at most 1024 characters), written atomically so
//! that the agent, which polls every 5 s, never reads half a file. Also the heartbeat file,
//! and [`parse`], which reads a status file back as the agent does (tests and fuzzing check
//! everything [`render`] writes with it).

use std::path::Path;
use std::time::SystemTime;

use serde_json::json;

/// The agent refuses a larger status file.
pub const MAX_FILE_BYTES: usize = 128 * 1024;
/// The agent cuts longer messages; we cut them ourselves, on a character boundary.
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// The four values the agent knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Transitioning,
    Success,
    Error,
    Warning,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Transitioning => "transitioning",
            Status::Success => "success",
            Status::Error => "error",
            Status::Warning => "warning",
        }
    }

    /// The value for one of the four names the agent knows (case-insensitive, as it reads them).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Status::Transitioning,
            Status::Success,
            Status::Error,
            Status::Warning,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }
}

/// One certificate's line (`name` is `<vault>/<secret>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substatus {
    pub name: String,
    pub status: Status,
    pub code: i32,
    pub message: String,
}

/// A whole status file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub handler_name: String,
    /// `Enable`, `Disable`, …
    pub operation: String,
    pub status: Status,
    pub code: i32,
    pub message: String,
    pub substatus: Vec<Substatus>,
}

/// `message` cut to [`MAX_MESSAGE_CHARS`] characters (the last one an ellipsis).
pub fn cut_message(message: &str) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message.to_owned();
    }
    let mut cut: String = message.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// `2026-01-01T00:00:00Z` for a time.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn document(report: &StatusReport, substatus: &[Substatus], extra: &str, time: &str) -> Vec<u8> {
    let subs: Vec<serde_json::Value> = substatus
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "status": s.status.as_str(),
                "code": s.code,
                "formattedMessage": {"lang": "en-US", "message": cut_message(&s.message)},
            })
        })
        .collect();
    let value = json!([{
        "version": 1.0,
        "timestampUTC": time,
        "status": {
            "name": report.handler_name,
            "operation": report.operation,
            "status": report.status.as_str(),
            "code": report.code,
            "formattedMessage": {"lang": "en-US", "message": cut_message(&format!("{}{extra}", report.message))},
            "substatus": subs,
        }
    }]);
    serde_json::to_vec(&value).expect("a JSON value always serializes")
}

/// The file's bytes: every message cut to 1024 characters; if the file would exceed
/// 128 KiB, trailing substatus entries are left out and the message says how many.
pub fn render(report: &StatusReport, time: SystemTime) -> Vec<u8> {
    let time = rfc3339(time);
    let mut kept = report.substatus.len();
    loop {
        let extra = if kept < report.substatus.len() {
            format!(
                " ({} more certificates not listed: status file size limit)",
                report.substatus.len() - kept
            )
        } else {
            String::new()
        };
        let bytes = document(report, &report.substatus[..kept], &extra, &time);
        if bytes.len() <= MAX_FILE_BYTES || kept == 0 {
            return bytes;
        }
        // Each entry is at most a few KiB: shrink proportionally, at least by one.
        let over = bytes.len() - MAX_FILE_BYTES;
        let per_entry = bytes.len() / kept.max(1);
        kept = kept.saturating_sub((over / per_entry.max(1)).max(1));
    }
}

/// Reads a status file's bytes as the guest agent does: at most [`MAX_FILE_BYTES`], a JSON
/// array whose element 0 has `status` with `name`, `operation`, one of the four `status`
/// values, an integer `code` and `formattedMessage.message`; `substatus` entries likewise.
pub fn parse(bytes: &[u8]) -> Result<StatusReport, String> {
    use serde_json::Value;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(format!(
            "status file larger than {MAX_FILE_BYTES} bytes ({})",
            bytes.len()
        ));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("status file is not JSON: {e}"))?;
    let top = value
        .as_array()
        .and_then(|a| a.first())
        .and_then(|first| first.get("status"))
        .ok_or("status file: expected [{\"status\": {…}}]")?;
    fn text(v: &Value, path: &str, key: &str) -> Result<String, String> {
        v.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("status file: {path}.{key} is missing or not a string"))
    }
    fn entry(v: &Value, path: &str) -> Result<(Status, i32, String), String> {
        let name = text(v, path, "status")?;
        let status = Status::from_name(&name)
            .ok_or_else(|| format!("status file: {path}.status {name:?} is not a status"))?;
        let code = match v.get("code") {
            None => 0,
            Some(c) => c
                .as_i64()
                .and_then(|c| i32::try_from(c).ok())
                .ok_or_else(|| format!("status file: {path}.code is not a 32-bit integer"))?,
        };
        let message = v
            .get("formattedMessage")
            .map(|m| text(m, &format!("{path}.formattedMessage"), "message"))
            .transpose()?
            .unwrap_or_default();
        Ok((status, code, message))
    }
    let (status, code, message) = entry(top, "[0].status")?;
    let mut substatus = Vec::new();
    if let Some(subs) = top.get("substatus").filter(|s| !s.is_null()) {
        let subs = subs
            .as_array()
            .ok_or("status file: [0].status.substatus is not an array")?;
        for (i, sub) in subs.iter().enumerate() {
            let path = format!("[0].status.substatus[{i}]");
            let (status, code, message) = entry(sub, &path)?;
            substatus.push(Substatus {
                name: text(sub, &path, "name")?,
                status,
                code,
                message,
            });
        }
    }
    Ok(StatusReport {
        handler_name: text(top, "[0].status", "name")?,
        operation: text(top, "[0].status", "operation")?,
        status,
        code,
        message,
        substatus,
    })
}

/// Writes `report` to `path` atomically (temp file, fsync, rename).
pub fn write(path: &Path, report: &StatusReport) -> std::io::Result<()> {
    super::config::write_atomic(path, &render(report, SystemTime::now()))
}

/// Writes the heartbeat file (`reportHeartbeat`): the Linux agent's format.
pub fn write_heartbeat(path: &Path, status: Status, message: &str) -> std::io::Result<()> {
    let state = match status {
        Status::Error => "NotReady",
        _ => "Ready",
    };
    let value = json!([{
        "version": 1.0,
        "heartbeat": {"status": state, "code": 0, "formattedMessage": {"lang": "en-US", "message": cut_message(message)}},
    }]);
    super::config::write_atomic(path, value.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn report(subs: usize, message: &str) -> StatusReport {
        StatusReport {
            handler_name: "Akvsync.KeyVault".into(),
            operation: "Enable".into(),
            status: Status::Success,
            code: 0,
            message: message.into(),
            substatus: (0..subs)
                .map(|i| Substatus {
                    name: format!("kv/cert{i}"),
                    status: Status::Error,
                    code: 1,
                    message: "x".repeat(2000),
                })
                .collect(),
        }
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 3661);
        assert_eq!(rfc3339(t), "2026-01-01T01:01:01Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn shape_and_message_cut() {
        let bytes = render(&report(1, &"é".repeat(3000)), SystemTime::UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let status = &v[0]["status"];
        assert_eq!(v[0]["version"], 1.0);
        assert_eq!(status["status"], "success");
        assert_eq!(status["formattedMessage"]["lang"], "en-US");
        let message = status["formattedMessage"]["message"].as_str().unwrap();
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
        let sub = status["substatus"][0]["formattedMessage"]["message"]
            .as_str()
            .unwrap();
        assert_eq!(sub.chars().count(), MAX_MESSAGE_CHARS);
    }

    #[test]
    fn what_is_rendered_parses_back() {
        let original = report(3, "all good");
        let parsed = parse(&render(&original, SystemTime::UNIX_EPOCH)).unwrap();
        assert_eq!(parsed.handler_name, original.handler_name);
        assert_eq!(parsed.status, Status::Success);
        assert_eq!(parsed.message, "all good");
        assert_eq!(parsed.substatus.len(), 3);
        assert_eq!(parsed.substatus[2].name, "kv/cert2");
        assert_eq!(
            parsed.substatus[0].message.chars().count(),
            MAX_MESSAGE_CHARS
        );
        assert!(parse(b"[]").is_err());
        let bad = br#"[{"status":{"name":"n","operation":"Enable","status":"fine"}}]"#;
        assert!(parse(bad).unwrap_err().contains("[0].status.status"));
        assert!(parse(&vec![b' '; MAX_FILE_BYTES + 1]).is_err());
    }

    #[test]
    fn file_stays_under_the_limit() {
        let bytes = render(&report(500, "ok"), SystemTime::UNIX_EPOCH);
        assert!(bytes.len() <= MAX_FILE_BYTES, "{}", bytes.len());
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let kept = v[0]["status"]["substatus"].as_array().unwrap().len();
        assert!(kept > 50 && kept < 500, "{kept}");
        let message = v[0]["status"]["formattedMessage"]["message"]
            .as_str()
            .unwrap();
        assert!(
            message.contains(&format!("{} more certificates", 500 - kept)),
            "{message}"
        );
    }
}
