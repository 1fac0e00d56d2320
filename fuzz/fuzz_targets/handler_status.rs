//! Status files (`<n>.status`): any bytes through `handler::status::parse` (never panics);
//! and a report built from the bytes (names, messages, many certificates) rendered by
//! `status::render` stays within the agent's limits (≤ 128 KiB, messages ≤ 1024
//! characters) and parses back to the same report, minus what the limits cut.
#![no_main]
use std::time::{Duration, SystemTime};

use akvsync::handler::status::{
    self, MAX_FILE_BYTES, MAX_MESSAGE_CHARS, Status, StatusReport, Substatus,
};
use libfuzzer_sys::fuzz_target;

const STATUSES: [Status; 4] = [
    Status::Transitioning,
    Status::Success,
    Status::Error,
    Status::Warning,
];

fn report_from(data: &[u8]) -> Option<(StatusReport, SystemTime)> {
    let (&count, rest) = data.split_first()?;
    let (secs, rest) = rest.split_at_checked(8)?;
    let time = SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(u64::from_le_bytes(
            secs.try_into().ok()?,
        )))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut fields = rest.split(|&b| b == 0xff).map(String::from_utf8_lossy);
    let handler_name = fields.next()?.into_owned();
    let operation = fields.next().unwrap_or_default().into_owned();
    let message = fields.next().unwrap_or_default().into_owned();
    let parts: Vec<String> = fields.map(|f| f.into_owned()).collect();
    // Up to 15 certificates (the size limit's arithmetic with hundreds is unit-tested;
    // here a render must stay cheap), each message repeated up to 8 times, so that long
    // and escaped messages can still reach the limit.
    let entries = usize::from(count % 16);
    // Names and messages cycle through the remaining fields.
    let substatus = (0..entries)
        .map(|i| Substatus {
            name: parts
                .get(i % parts.len().max(1))
                .cloned()
                .unwrap_or_default(),
            status: STATUSES[i % 4],
            code: i as i32 - 3,
            message: parts
                .get((i + 1) % parts.len().max(1))
                .map(|m| m.repeat(1 + i % 8))
                .unwrap_or_default(),
        })
        .collect();
    Some((
        StatusReport {
            handler_name,
            operation,
            status: STATUSES[usize::from(count) % 4],
            code: i32::from(count),
            message,
            substatus,
        },
        time,
    ))
}

fn cut(message: &str) -> String {
    status::cut_message(message)
}

fuzz_target!(|data: &[u8]| {
    let _ = status::parse(data);

    let Some((report, time)) = report_from(data) else {
        return;
    };
    let bytes = status::render(&report, time);
    // Names are not cut; only a file whose names alone are near the limit may exceed it
    // (the handler's name comes from a ≤ 64 KiB HandlerEnvironment.json).
    let names: usize = report.handler_name.len() + report.operation.len();
    if names < 32 * 1024 {
        assert!(bytes.len() <= MAX_FILE_BYTES, "{} bytes", bytes.len());
    }
    let parsed = status::parse(&bytes).expect("what render writes parses");
    assert_eq!(parsed.handler_name, report.handler_name);
    assert_eq!(parsed.operation, report.operation);
    assert_eq!(parsed.status, report.status);
    assert_eq!(parsed.code, report.code);
    assert!(parsed.message.chars().count() <= MAX_MESSAGE_CHARS);
    if parsed.substatus.len() == report.substatus.len() {
        assert_eq!(parsed.message, cut(&report.message));
    } else {
        assert!(parsed.substatus.len() < report.substatus.len());
    }
    for (got, want) in parsed.substatus.iter().zip(&report.substatus) {
        assert_eq!(got.name, want.name);
        assert_eq!(got.status, want.status);
        assert_eq!(got.code, want.code);
        assert_eq!(got.message, cut(&want.message));
    }
    let stamp = status::rfc3339(time);
    assert!(stamp.ends_with('Z') && stamp.contains('T'), "{stamp}");
});
