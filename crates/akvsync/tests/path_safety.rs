//! Path and input safety (issue 8, SPEC §5.2, §10): names that try to leave the store
//! directory (`..`, `/`, NUL, names of 256 bytes and more, Unicode look-alikes of `/` and
//! `.`) in vault names, secret names, `customSymbolicLinkName` and the store location are
//! refused with an error naming the field, or — for look-alikes that are plain file names —
//! installed as exactly that name inside the store, with nothing written anywhere else;
//! symlink attacks in the store directory (a symlink planted at a version file's name, at
//! a link's name, at a temporary's name, pointing outside) never make akvsync write,
//! truncate or delete outside the store; settings that are huge, nested deeper than any
//! stack, or not UTF-8 are refused by every verb with exit 2 and a clear error, never a
//! panic.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use akvsync::settings::{self, Platform, SettingsError};
use kvemu::{BlockingEmulator, Config};

use common::Scratch;

const VAULT: &str = "pathkv";

/// The rendered errors of settings that must be invalid.
fn errors_of(json: &serde_json::Value) -> String {
    match settings::parse_bytes(json.to_string().as_bytes(), Platform::Linux) {
        Ok(v) => panic!("accepted: {json}\n{:?}", v.settings.certificates),
        Err(SettingsError::Invalid(diags)) => settings::render::errors(&diags.errors),
        Err(other) => panic!("{other}"),
    }
}

fn one_certificate(certificate: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "secretsManagementSettings": {
            "pollingIntervalInS": "3600",
            "certificateStoreLocation": "/var/lib/waagent/Microsoft.Azure.KeyVault.Store",
            "observedCertificates": [certificate],
        }
    })
}

#[test]
fn names_that_could_leave_the_store_are_refused_naming_the_field() {
    let long = "a".repeat(256);
    let longer = "b".repeat(4096);
    let vault_names = [
        "..",
        "kv/..",
        "kv%2f..",
        "kv\u{0}x",
        "kv\u{2215}x",
        "ｋｖｋｖ",
        "kv\u{ff0e}x",
        long.as_str(),
    ];
    for vault in vault_names {
        let url = format!("https://{vault}.vault.azure.net/secrets/web");
        let errors = errors_of(&one_certificate(serde_json::json!({ "url": url })));
        assert!(
            errors.contains("observedCertificates[0].url:"),
            "{vault:?}: {errors}"
        );
    }
    let secret_names = [
        "..",
        ".",
        "../../etc/passwd",
        "a/../../b",
        "%2e%2e",
        "%2F",
        "web\u{0}",
        "web%00",
        "web\u{2215}..\u{2215}x",
        "\u{ff0e}\u{ff0e}",
        "web\u{2024}pem",
        "ｗｅｂ",
        long.as_str(),
        longer.as_str(),
    ];
    for secret in secret_names {
        let url = format!("https://{VAULT}.vault.azure.net/secrets/{secret}");
        let errors = errors_of(&one_certificate(serde_json::json!({ "url": url })));
        assert!(
            errors.contains("observedCertificates[0].url:"),
            "{secret:?}: {errors}"
        );
    }
    let links = [
        ("..", "must not be \".\" or \"..\""),
        (".", "must not be \".\" or \"..\""),
        ("../escape", "without \"/\""),
        ("/etc/passwd", "without \"/\""),
        ("a/b", "without \"/\""),
        ("x\u{0}y", "control characters"),
        ("x\ny", "control characters"),
        (long.as_str(), "at most 255 bytes"),
        (".akvsync-tmp-1", "reserves"),
        ("", ""),
        ("  ", ""),
    ];
    for (link, why) in links {
        let errors = errors_of(&one_certificate(serde_json::json!({
            "url": format!("https://{VAULT}.vault.azure.net/secrets/web"),
            "customSymbolicLinkName": link,
        })));
        assert!(
            errors.contains("observedCertificates[0].customSymbolicLinkName:")
                && errors.contains(why),
            "{link:?}: {errors}"
        );
    }
    for location in ["/var/../etc", "relative/store", "/x/\u{0}/y", ""] {
        let errors = errors_of(&one_certificate(serde_json::json!({
            "url": format!("https://{VAULT}.vault.azure.net/secrets/web"),
            "certificateStoreLocation": location,
        })));
        assert!(
            errors.contains("certificateStoreLocation:"),
            "{location:?}: {errors}"
        );
    }
}

/// Every path under `root` with what it is (file content, link target, directory).
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut entries = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else {
                format!("{} bytes: {:?}", meta.len(), fs::read(&path).unwrap())
            };
            entries.insert(path, what);
        }
    }
    entries
}

fn settings_json(emu: &BlockingEmulator, store: &Path, certificates: serde_json::Value) -> String {
    serde_json::json!({
        "secretsManagementSettings": {
            "pollingIntervalInS": "3600",
            "certificateStoreLocation": store,
            "observedCertificates": certificates,
        },
        "authenticationSettings": {"msiEndpoint": emu.identity_endpoint()},
        "akvsync": {"testing": {
            "caFile": emu.ca_file(),
            "connectTo": {format!("{VAULT}.vault.azure.net"): emu.vault_addr().to_string()},
        }},
    })
    .to_string()
}

fn once(settings_file: &Path, state: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .args(["once", "--settings"])
        .arg(settings_file)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap()
}

fn url(secret: &str) -> String {
    format!("https://{VAULT}.vault.azure.net/secrets/{secret}")
}

#[test]
fn look_alike_link_names_are_plain_names_inside_the_store() {
    let emu = BlockingEmulator::start(Config::default()).unwrap();
    let scratch = Scratch::new("lookalike");
    // What looks like a path or a parent directory but is one file name.
    let links = [
        "\u{2215}etc\u{2215}passwd",
        "\u{ff0e}\u{ff0e}",
        "\u{2025}",
        "web\u{202e}mep.crt",
        "caf\u{e9}.pem",
        &"\u{e9}".repeat(127),
    ];
    let mut certificates = Vec::new();
    for (i, link) in links.iter().enumerate() {
        let secret = format!("look{i}");
        emu.rotate_certificate(VAULT, &secret).unwrap();
        certificates.push(serde_json::json!({"url": url(&secret), "customSymbolicLinkName": link}));
    }
    let settings_file = scratch.0.join("settings.json");
    fs::write(
        &settings_file,
        settings_json(&emu, &scratch.store(), certificates.into()),
    )
    .unwrap();
    let before = tree(&scratch.0);
    let out = once(&settings_file, &scratch.0.join("state"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let store = scratch.store();
    for link in links {
        let target = fs::read_link(store.join(link)).unwrap();
        assert_eq!(target.parent(), Some(store.as_path()), "{link}");
    }
    // Everything new is inside the store or the state directory.
    let after = tree(&scratch.0);
    for (path, what) in &after {
        if before.get(path) != Some(what) {
            assert!(
                path.starts_with(&store) || path.starts_with(scratch.0.join("state")),
                "written outside the store: {}",
                path.display()
            );
        }
    }
    let in_store = after.keys().filter(|p| p.parent() == Some(&store)).count();
    assert_eq!(
        in_store,
        links.len() * 3,
        "version file, link, custom link each"
    );
    emu.shutdown();
}

#[test]
fn planted_symlinks_are_replaced_never_followed() {
    let emu = BlockingEmulator::start(Config::default()).unwrap();
    let scratch = Scratch::new("symlinks");
    let store = scratch.store();
    fs::create_dir_all(&store).unwrap();
    let outside = scratch.0.join("outside");
    fs::create_dir_all(&outside).unwrap();
    let victim = |name: &str| {
        let path = outside.join(name);
        fs::write(&path, format!("precious {name}")).unwrap();
        path
    };
    let version_victim = victim("version-victim");
    let link_victim = victim("link-victim");
    let temp_victim = victim("temp-victim");
    let outside_dir = scratch.0.join("outside-dir");
    fs::create_dir_all(&outside_dir).unwrap();

    let imported = emu.rotate_certificate(VAULT, "web").unwrap();
    // At the version file's name (the attacker knows the version from the vault), at the
    // stable link name, at the custom link name (a directory outside), and at a temporary
    // name (removed at start, as stale).
    symlink(
        &version_victim,
        store.join(format!("{VAULT}.web.{}", imported.version)),
    )
    .unwrap();
    symlink(&link_victim, store.join(format!("{VAULT}.web"))).unwrap();
    symlink(&outside_dir, store.join("web.pem")).unwrap();
    symlink(&temp_victim, store.join(".akvsync-tmp-planted")).unwrap();
    let settings_file = scratch.0.join("settings.json");
    fs::write(
        &settings_file,
        settings_json(
            &emu,
            &store,
            serde_json::json!([{"url": url("web"), "customSymbolicLinkName": "web.pem"}]),
        ),
    )
    .unwrap();
    let outside_before = tree(&outside);
    let out = once(&settings_file, &scratch.0.join("state"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tree(&outside), outside_before, "nothing outside changed");
    assert!(
        fs::read_dir(&outside_dir).unwrap().next().is_none(),
        "nothing written into the directory a planted link pointed at"
    );
    let version_file = store.join(format!("{VAULT}.web.{}", imported.version));
    let meta = fs::symlink_metadata(&version_file).unwrap();
    assert!(
        meta.is_file(),
        "the planted symlink was replaced by the file"
    );
    let pem = fs::read_to_string(&version_file).unwrap();
    let bundle = akvsync::decode::decode_pem(&pem).unwrap();
    assert_eq!(bundle.leaf.thumbprint, imported.thumbprint);
    for link in [format!("{VAULT}.web"), "web.pem".to_owned()] {
        assert_eq!(
            fs::read_link(store.join(&link)).unwrap(),
            version_file,
            "{link} now points at the version file"
        );
    }
    assert!(
        fs::symlink_metadata(store.join(".akvsync-tmp-planted")).is_err(),
        "the planted temporary name was removed (the link, not its target)"
    );

    // Pruning an owned version whose name an attacker turned into a symlink removes
    // nothing outside: three rotations push the first version out of retention.
    let first = version_file.clone();
    fs::remove_file(&first).unwrap();
    symlink(&version_victim, &first).unwrap();
    for _ in 0..3 {
        emu.rotate_certificate(VAULT, "web").unwrap();
        let out = once(&settings_file, &scratch.0.join("state"));
        assert_eq!(out.status.code(), Some(0));
    }
    assert_eq!(tree(&outside), outside_before, "nothing outside changed");
    emu.shutdown();
}

/// A settings file of `len` bytes: one observed certificate, then padding inside a string.
fn huge_settings(len: usize) -> Vec<u8> {
    let head = br#"{"secretsManagementSettings":{"observedCertificates":["https://pathkv.vault.azure.net/secrets/web"]},"pad":""#;
    let mut bytes = head.to_vec();
    bytes.resize(len - 2, b'x');
    bytes.extend_from_slice(b"\"}");
    bytes
}

#[test]
fn huge_deep_and_non_utf8_settings_are_refused_by_every_verb_without_a_panic() {
    let scratch = Scratch::new("inputs");
    let deep_arrays = "[".repeat(200_000);
    let deep_objects = "{\"a\":".repeat(100_000);
    let mut not_utf8 = br#"{"secretsManagementSettings":{"observedCertificates":["https://pathkv.vault.azure.net/secrets/"#.to_vec();
    not_utf8.extend_from_slice(b"\xff\xfe\xc0\xaf\"]}}");
    let mut utf16_bad = vec![0xff, 0xfe];
    for unit in [0x7bu16, 0xd800, 0x7d] {
        utf16_bad.extend_from_slice(&unit.to_le_bytes());
    }
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("huge", huge_settings(8 << 20), "at most 1048576 bytes"),
        (
            "just-over",
            huge_settings((1 << 20) + 1),
            "at most 1048576 bytes",
        ),
        ("deep-arrays", deep_arrays.into_bytes(), "nest"),
        ("deep-objects", deep_objects.into_bytes(), "nest"),
        ("not-utf8", not_utf8, "UTF-8"),
        ("utf16-lone-surrogate", utf16_bad, "UTF-16"),
    ];
    let state = scratch.0.join("state");
    for (name, bytes, expected) in cases {
        let file = scratch.0.join(format!("{name}.json"));
        fs::write(&file, &bytes).unwrap();
        let runs: [Vec<&std::ffi::OsStr>; 3] = [
            vec!["validate".as_ref(), file.as_os_str()],
            vec![
                "once".as_ref(),
                "--settings".as_ref(),
                file.as_os_str(),
                "--state-dir".as_ref(),
                state.as_os_str(),
            ],
            vec![
                "run".as_ref(),
                "--settings".as_ref(),
                file.as_os_str(),
                "--state-dir".as_ref(),
                state.as_os_str(),
            ],
        ];
        for args in runs {
            let out = Command::new(env!("CARGO_BIN_EXE_akvsync"))
                .args(&args)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let verb = args[0].to_string_lossy();
            assert_eq!(out.status.code(), Some(2), "{name} {verb}: {stderr}");
            assert!(!stderr.contains("panicked"), "{name} {verb}: {stderr}");
            assert!(
                stderr.to_lowercase().contains(&expected.to_lowercase()),
                "{name} {verb}: {stderr}"
            );
            assert!(
                stderr.len() < 4096,
                "{name} {verb}: a short error, {} bytes",
                stderr.len()
            );
        }
    }
}

/// The handler's files (`<n>.status`, the heartbeat, `mrseq`, the hand-off in the state
/// directory) were written through a temporary name that was predictable (it held the
/// process id): a symlink planted there must not be followed. Temporaries are now random
/// names created exclusively (safefs); the planted links stay as they were.
#[test]
fn handler_files_never_follow_a_symlink_planted_at_their_temporary_name() {
    use akvsync::handler::status::{self, Status, StatusReport};
    let scratch = Scratch::new("handler-temp");
    let status_dir = scratch.0.join("status");
    fs::create_dir_all(&status_dir).unwrap();
    let victim = scratch.0.join("victim");
    fs::write(&victim, "precious").unwrap();
    let pid = std::process::id();
    for name in ["0.status", "heartbeat.log", "mrseq"] {
        symlink(
            &victim,
            status_dir.join(format!(".{name}.akvsync-tmp-{pid}")),
        )
        .unwrap();
    }
    let report = StatusReport {
        handler_name: "Akvsync.KeyVault".into(),
        operation: "Enable".into(),
        status: Status::Success,
        code: 0,
        message: "ok".into(),
        substatus: Vec::new(),
    };
    status::write(&status_dir.join("0.status"), &report).unwrap();
    status::write_heartbeat(&status_dir.join("heartbeat.log"), Status::Success, "ok").unwrap();
    akvsync::handler::seqno::write_mrseq(&status_dir, 7).unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    let written = status::parse(&fs::read(status_dir.join("0.status")).unwrap()).unwrap();
    assert_eq!(written.message, "ok");
    assert_eq!(akvsync::handler::seqno::read_mrseq(&status_dir), Some(7));
    let mut left: Vec<_> = fs::read_dir(&status_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("akvsync-tmp"))
        .collect();
    left.sort();
    let mut planted: Vec<_> = ["0.status", "heartbeat.log", "mrseq"]
        .iter()
        .map(|name| format!(".{name}.akvsync-tmp-{pid}"))
        .collect();
    planted.sort();
    assert_eq!(left, planted, "only the planted links, none of ours");
    for name in &planted {
        assert_eq!(fs::read_link(status_dir.join(name)).unwrap(), victim);
    }
}
