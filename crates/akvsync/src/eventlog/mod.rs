//! The Windows Application event log (issue 15): errors and warnings of the service (`run`,
//! the Windows service, the extension's service) also go to the event log under the source
//! `akvsync`, with stable event IDs ([`ids`]) that monitoring can alert on.
//!
//! The source is registered by `akvsync service install` and by the MSI with
//! `EventMessageFile = %SystemRoot%\System32\EventCreate.exe`, the message file Windows
//! itself uses for custom sources (`eventcreate /so`): it renders every ID from 1 to 1000 as
//! the event's own text, so akvsync needs no message-table resource of its own. The pure
//! parts (IDs, the text of an event) are tested everywhere; the Win32 calls are
//! `cfg(windows)`.

use std::fmt::Write as _;

/// The source name (SPEC §10: akvsync's own, never the Microsoft extension's).
pub const SOURCE: &str = "akvsync";
/// The registry key of the source under `HKEY_LOCAL_MACHINE`.
pub const SOURCE_KEY: &str = "SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\akvsync";
/// What renders the events' text.
pub const MESSAGE_FILE: &str = "%SystemRoot%\\System32\\EventCreate.exe";

/// Stable event IDs (documented in docs/windows.md). All within 1..=1000, the range
/// EventCreate.exe's message table covers.
pub mod ids {
    /// A certificate is not current: fetching, decoding or installing it failed (the
    /// installed version, if any, stays).
    pub const CERTIFICATE_FAILED: u32 = 100;
    /// A new version was refused by chain validation (`akvsync.chainValidation`).
    pub const CHAIN_REFUSED: u32 = 101;
    /// A post-install hook failed (it is run again at every poll).
    pub const HOOK_FAILED: u32 = 102;
    /// A certificate expires soon or has expired.
    pub const EXPIRY: u32 = 103;
    /// A renewal's lifecycle notification or HTTP.sys binding move failed.
    pub const RENEWAL_REACH: u32 = 104;
    /// The settings are invalid (at start or at a reload: the last good ones stay).
    pub const SETTINGS: u32 = 110;
    /// Any other warning.
    pub const OTHER_WARNING: u32 = 900;
    /// Any other error.
    pub const OTHER_ERROR: u32 = 901;
}

/// The ID of an event: the `event_id` field its call site gives (1..=1000), else by level.
pub fn event_id(is_error: bool, field: Option<u64>) -> u32 {
    match field {
        Some(id @ 1..=1000) => id as u32,
        _ if is_error => ids::OTHER_ERROR,
        _ => ids::OTHER_WARNING,
    }
}

/// The event's text: the message, then each other field as `name: value` on its own line
/// (bounded: the event log keeps 31,839 characters per string).
pub fn text(message: &str, fields: &[(&str, String)]) -> String {
    let mut out = message.to_owned();
    for (name, value) in fields {
        if *name == "event_id" {
            continue;
        }
        let _ = write!(out, "\r\n{name}: {value}");
    }
    if out.len() > 31_000 {
        let mut cut = 31_000;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(windows)]
mod sys;
#[cfg(windows)]
pub use sys::{Layer, layer, register_source, remove_source};

/// Off the Windows event log: no layer.
#[cfg(not(windows))]
pub fn layer() -> Option<tracing_subscriber::layer::Identity> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_call_site_else_the_level() {
        assert_eq!(event_id(false, Some(102)), ids::HOOK_FAILED);
        assert_eq!(event_id(true, None), ids::OTHER_ERROR);
        assert_eq!(event_id(false, None), ids::OTHER_WARNING);
        // Outside EventCreate.exe's range: by level.
        assert_eq!(event_id(true, Some(0)), ids::OTHER_ERROR);
        assert_eq!(event_id(false, Some(70_000)), ids::OTHER_WARNING);
    }

    #[test]
    fn the_text_is_the_message_then_the_fields_without_the_id() {
        let text = text(
            "not current",
            &[
                ("event_id", "100".into()),
                ("certificate", "kv/web".into()),
                ("error", "untrusted chain".into()),
            ],
        );
        assert_eq!(
            text,
            "not current\r\ncertificate: kv/web\r\nerror: untrusted chain"
        );
        let long = super::text(&"é".repeat(20_000), &[]);
        assert!(long.len() <= 31_004 && long.ends_with('…'));
    }
}
