//! Status files on disk: the limits of SPEC §7 (a message cut at 1024 characters, the file
//! at most 128 KiB) and atomic replacement (a reader polling as the agent does never sees
//! a partial file).

use std::time::Duration;

use akvsync::handler::status::{
    self, MAX_FILE_BYTES, MAX_MESSAGE_CHARS, Status, StatusReport, Substatus,
};

fn report(certificates: usize, message_len: usize) -> StatusReport {
    StatusReport {
        handler_name: "Akvsync.KeyVault".into(),
        operation: "Enable".into(),
        status: Status::Success,
        code: 0,
        message: "m".repeat(message_len),
        substatus: (0..certificates)
            .map(|i| Substatus {
                name: format!("kv/certificate-{i}"),
                status: Status::Warning,
                code: 0,
                message: format!("version {i:032x}, {}", "w".repeat(1500)),
            })
            .collect(),
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("akvsync-status-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn limits_hold_on_disk() {
    let dir = scratch("limits");
    let path = dir.join("0.status");
    status::write(&path, &report(1000, 5000)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() <= MAX_FILE_BYTES, "{} bytes", bytes.len());
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let top = &value[0]["status"];
    assert_eq!(
        top["formattedMessage"]["message"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        MAX_MESSAGE_CHARS
    );
    for sub in top["substatus"].as_array().unwrap() {
        assert!(
            sub["formattedMessage"]["message"]
                .as_str()
                .unwrap()
                .chars()
                .count()
                <= MAX_MESSAGE_CHARS
        );
        assert_eq!(sub["formattedMessage"]["lang"], "en-US");
    }
    assert!(value[0]["timestampUTC"].as_str().unwrap().ends_with('Z'));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn readers_never_see_a_partial_file() {
    let dir = scratch("atomic");
    let path = dir.join("0.status");
    status::write(&path, &report(1, 10)).unwrap();
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            for i in 0..300 {
                status::write(&path, &report(i % 60, 10 + i)).unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        let bytes = std::fs::read(&path).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("complete JSON");
        assert!(value[0]["status"]["status"].is_string());
        reads += 1;
        std::thread::sleep(Duration::from_micros(200));
    }
    writer.join().unwrap();
    assert!(reads > 10, "{reads}");
    let leftovers = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary files left");
    std::fs::remove_dir_all(&dir).unwrap();
}
