//! What the extension handler reads from files and variables the guest agent controls:
//! `mrseq` contents, `ConfigSequenceNumber` values, `<n>.settings` file names, `reg query`
//! output (Windows HandlerState), `HandlerEnvironment.json`, the handler hand-off file
//! (`<state>/handler/handler.json`), handler directory names, and the newest-settings pick;
//! never panics, and what is accepted satisfies the documented rules.
#![no_main]
use std::path::Path;
use std::time::{Duration, SystemTime};

use akvsync::handler::{config::HandlerConfig, environment, lifecycle, seqno};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Some(n) = seqno::parse_mrseq(data) {
        assert_eq!(seqno::parse_mrseq(n.to_string().as_bytes()), Some(n));
    }
    let _ = seqno::from_env_value(Some(&text));
    if let Some(n) = seqno::settings_number(&text) {
        assert!(text.ends_with(".settings"), "{text:?}");
        assert_eq!(seqno::settings_number(&format!("{n}.settings")), Some(n));
    }
    let _ = seqno::parse_reg_query(&text);

    if let Ok(env) = environment::parse(data) {
        for folder in [&env.log_folder, &env.config_folder, &env.status_folder] {
            assert!(!folder.as_os_str().is_empty());
        }
    }
    if let Ok(config) = serde_json::from_slice::<HandlerConfig>(data) {
        let again = serde_json::to_vec(&config).unwrap();
        assert_eq!(
            serde_json::from_slice::<HandlerConfig>(&again).unwrap(),
            config
        );
    }
    if let Some(version) = lifecycle::version_from_dir(Path::new(&*text)) {
        assert!(version.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    }
    let _ = lifecycle::previous_handler_dir(Path::new(&*text), "1.0.0");

    // The newest settings file wins, the highest number on a tie.
    let candidates: Vec<(u64, SystemTime)> = data
        .chunks_exact(9)
        .map(|c| {
            let n = u64::from(c[0]);
            let secs = u64::from_le_bytes(c[1..9].try_into().unwrap()) % (1 << 40);
            (n, SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        })
        .collect();
    match seqno::pick(&candidates) {
        None => assert!(candidates.is_empty()),
        Some(n) => {
            let (_, newest) = candidates.iter().max_by_key(|c| c.1).unwrap();
            assert!(candidates.iter().any(|c| c.0 == n && c.1 == *newest));
            assert!(candidates.iter().all(|c| c.1 < *newest || c.0 <= n));
        }
    }
});
