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

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use akvsync::settings::{self, Platform, SettingsError};

use crate::common::Scratch;
use crate::common::env::{Env, EnvConfig, VAULT, akvsync};
use crate::common::guest_agent::HANDLER;
use crate::common::store_view::{Entry, snapshot};

/// The rendered errors of settings that must be invalid.
fn errors_of(json: &serde_json::Value) -> String {
    match settings::parse_bytes(json.to_string().as_bytes(), Platform::Linux) {
        Ok(v) => panic!("accepted: {json}\n{:?}", v.settings.certificates),
        Err(SettingsError::Invalid(diags)) => settings::render::errors(&diags.errors),
        Err(other) => panic!("{other}"),
    }
}

/// Where a hostile name goes in the settings.
#[derive(Debug, Clone, Copy)]
enum At {
    /// The vault name in the certificate's URL.
    Vault,
    /// The secret name in the certificate's URL.
    Secret,
    CustomLink,
    /// The certificate's own `certificateStoreLocation`.
    Location,
}

impl At {
    /// One certificate observed with `name` at this place.
    fn settings(self, name: &str) -> serde_json::Value {
        let web = format!("https://{VAULT}.vault.azure.net/secrets/web");
        let certificate = match self {
            At::Vault => {
                serde_json::json!({"url": format!("https://{name}.vault.azure.net/secrets/web")})
            }
            At::Secret => {
                serde_json::json!({"url": format!("https://{VAULT}.vault.azure.net/secrets/{name}")})
            }
            At::CustomLink => serde_json::json!({"url": web, "customSymbolicLinkName": name}),
            At::Location => serde_json::json!({"url": web, "certificateStoreLocation": name}),
        };
        serde_json::json!({"secretsManagementSettings": {
            "pollingIntervalInS": "3600",
            "certificateStoreLocation": "/var/lib/waagent/Microsoft.Azure.KeyVault.Store",
            "observedCertificates": [certificate],
        }})
    }

    /// The field the error must name.
    fn field(self) -> &'static str {
        match self {
            At::Vault | At::Secret => "observedCertificates[0].url:",
            At::CustomLink => "observedCertificates[0].customSymbolicLinkName:",
            At::Location => "certificateStoreLocation:",
        }
    }
}

#[test]
fn names_that_could_leave_the_store_are_refused_naming_the_field() {
    use At::*;
    let long = "a".repeat(256);
    let longer = "b".repeat(4096);
    let dots = "must not be \".\" or \"..\"";
    // Where, the hostile names, and what the error must say besides the field.
    let rows: [(At, &[&str], &str); 9] = [
        (
            Vault,
            &[
                "..",
                "kv/..",
                "kv%2f..",
                "kv\u{0}x",
                "kv\u{2215}x",
                "ｋｖｋｖ",
                "kv\u{ff0e}x",
                &long,
            ],
            "",
        ),
        (
            Secret,
            &[
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
                &long,
                &longer,
            ],
            "",
        ),
        (CustomLink, &["..", "."], dots),
        (
            CustomLink,
            &["../escape", "/etc/passwd", "a/b"],
            "without \"/\"",
        ),
        (CustomLink, &["x\u{0}y", "x\ny"], "control characters"),
        (CustomLink, &[&long], "at most 255 bytes"),
        (CustomLink, &[".akvsync-tmp-1"], "reserves"),
        (CustomLink, &["", "  "], ""),
        (
            Location,
            &["/var/../etc", "relative/store", "/x/\u{0}/y", ""],
            "",
        ),
    ];
    let mut cases = 0;
    for (at, names, why) in rows {
        for name in names {
            let errors = errors_of(&at.settings(name));
            assert!(
                errors.contains(at.field()) && errors.contains(why),
                "{at:?} {name:?}: {errors}"
            );
            cases += 1;
        }
    }
    assert_eq!(cases, 37);
}

/// Every path under `root` with what it is (file content, link target, directory).
fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut entries = BTreeMap::new();
    for (name, entry) in snapshot(root) {
        let path = root.join(name);
        if entry == Entry::Dir {
            entries.extend(tree(&path));
        }
        entries.insert(path, entry);
    }
    entries
}

/// The environment's settings (polling hourly) observing `certificates`.
fn observe(env: &Env, certificates: serde_json::Value) {
    let mut settings = env.settings_json();
    settings["secretsManagementSettings"]["pollingIntervalInS"] = "3600".into();
    settings["secretsManagementSettings"]["observedCertificates"] = certificates;
    env.write_settings(&settings);
}

#[test]
fn look_alike_link_names_are_plain_names_inside_the_store() {
    let env = Env::start(EnvConfig::default());
    let root = &env.scratch.0;
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
        env.emu.rotate_certificate(VAULT, &secret).unwrap();
        certificates
            .push(serde_json::json!({"url": env.url(&secret), "customSymbolicLinkName": link}));
    }
    observe(&env, certificates.into());
    let before = tree(root);
    env.cmd(&["once"]).code(0).run();
    let store = env.scratch.store();
    for link in links {
        let target = fs::read_link(store.join(link)).unwrap();
        assert_eq!(target.parent(), Some(store.as_path()), "{link}");
    }
    // Everything new is inside the store or the state directory.
    let after = tree(root);
    for (path, what) in &after {
        if before.get(path) != Some(what) {
            assert!(
                path.starts_with(&store) || path.starts_with(env.scratch.state()),
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
}

#[test]
fn planted_symlinks_are_replaced_never_followed() {
    let env = Env::start(EnvConfig::default());
    let store = env.scratch.store();
    fs::create_dir_all(&store).unwrap();
    let outside = env.scratch.path("outside");
    fs::create_dir_all(&outside).unwrap();
    let victim = |name: &str| {
        let path = outside.join(name);
        fs::write(&path, format!("precious {name}")).unwrap();
        path
    };
    let version_victim = victim("version-victim");
    let link_victim = victim("link-victim");
    let temp_victim = victim("temp-victim");
    let outside_dir = env.scratch.path("outside-dir");
    fs::create_dir_all(&outside_dir).unwrap();

    let imported = env.emu.rotate_certificate(VAULT, "web").unwrap();
    // At the version file's name (the attacker knows the version from the vault), at the
    // stable link name, at the custom link name (a directory outside), and at a temporary
    // name (removed at start, as stale).
    let version_file = store.join(format!("{VAULT}.web.{}", imported.version));
    symlink(&version_victim, &version_file).unwrap();
    symlink(&link_victim, store.join(format!("{VAULT}.web"))).unwrap();
    symlink(&outside_dir, store.join("web.pem")).unwrap();
    symlink(&temp_victim, store.join(".akvsync-tmp-planted")).unwrap();
    observe(
        &env,
        serde_json::json!([{"url": env.url("web"), "customSymbolicLinkName": "web.pem"}]),
    );
    let outside_before = tree(&outside);
    env.cmd(&["once"]).code(0).run();
    assert_eq!(tree(&outside), outside_before, "nothing outside changed");
    assert!(
        fs::read_dir(&outside_dir).unwrap().next().is_none(),
        "nothing written into the directory a planted link pointed at"
    );
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
    fs::remove_file(&version_file).unwrap();
    symlink(&version_victim, &version_file).unwrap();
    for _ in 0..3 {
        env.emu.rotate_certificate(VAULT, "web").unwrap();
        env.cmd(&["once"]).code(0).run();
    }
    assert_eq!(tree(&outside), outside_before, "nothing outside changed");
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
    let state = scratch.state();
    for (name, bytes, expected) in cases {
        let file = scratch.path(&format!("{name}.json"));
        fs::write(&file, &bytes).unwrap();
        for verb in ["validate", "once", "run"] {
            let command = akvsync(&[verb]);
            let command = if verb == "validate" {
                command.arg(&file)
            } else {
                command
                    .arg("--settings")
                    .arg(&file)
                    .arg("--state-dir")
                    .arg(&state)
            };
            let out = command.code(2).run();
            let stderr = String::from_utf8_lossy(&out.stderr);
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
    let mut planted: Vec<_> = ["0.status", "heartbeat.log", "mrseq"]
        .iter()
        .map(|name| format!(".{name}.akvsync-tmp-{pid}"))
        .collect();
    planted.sort();
    for name in &planted {
        symlink(&victim, status_dir.join(name)).unwrap();
    }
    let report = StatusReport {
        handler_name: HANDLER.into(),
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
    assert_eq!(left, planted, "only the planted links, none of ours");
    for name in &planted {
        assert_eq!(fs::read_link(status_dir.join(name)).unwrap(), victim);
    }
}
