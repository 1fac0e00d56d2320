//! `akvsync.outputs` (issue 14) end to end: the real binary against the emulator writes
//! every output kind, read back with an independent parser (`openssl`); PFX with and
//! without a password; owners, groups and modes as real accounts see them; rotations
//! switch whole sets and prune them; refused settings and runtime failures are named and
//! keep the previous set; a reader pairing cert and key during hundreds of rotations
//! never keeps a mismatched pair.
#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::env::{Env, EnvConfig, VAULT};
use crate::common::store_view::{StoreView, mode, owner, pem_blocks};

/// `openssl <args>` must succeed; its stdout.
fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl pkcs12 -in <pfx> -passin pass:<password> <extra…>`: whether it succeeded, its
/// stdout and its stderr.
fn pkcs12(pfx: &Path, password: &str, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new("openssl")
        .args(["pkcs12", "-in", pfx.to_str().unwrap()])
        .args(["-passin", &format!("pass:{password}")])
        .args(extra)
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn sha1(path: &Path) -> String {
    let out = openssl(&[
        "x509",
        "-in",
        path.to_str().unwrap(),
        "-noout",
        "-fingerprint",
        "-sha1",
    ]);
    out.trim().rsplit('=').next().unwrap().replace(':', "")
}

fn subject(path: &Path) -> String {
    openssl(&["x509", "-in", path.to_str().unwrap(), "-noout", "-subject"])
}

/// One output set with every kind, in its own directory.
fn all_kinds(dir: &Path, extra: serde_json::Value) -> serde_json::Value {
    let mut set = serde_json::json!({
        "directory": dir,
        "files": {"cert": "{secret}.crt", "chain": "{secret}.chain.pem",
                  "fullchain": "{secret}.fullchain.pem", "key": "{secret}.key",
                  "pem": "{secret}.pem", "pfx": "{secret}.pfx"},
    });
    for (k, v) in extra.as_object().unwrap() {
        set[k] = v.clone();
    }
    serde_json::json!({"outputs": [set]})
}

fn env_with(certificates: &'static [&'static str], akvsync: serde_json::Value) -> Env {
    Env::start(EnvConfig {
        certificates,
        akvsync: Some(akvsync),
        seed: true,
        ..Default::default()
    })
}

#[test]
fn every_kind_holds_what_its_name_says() {
    let scratch = crate::common::Scratch::new("outputs-dir");
    let out = scratch.path("out");
    let env = env_with(
        &["seed-rsa-pem", "seed-ec-pfx"],
        all_kinds(&out, serde_json::json!({})),
    );
    env.cmd(&["once"]).code(0).stdout_has("installed").run();
    for secret in ["seed-rsa-pem", "seed-ec-pfx"] {
        assert_eq!(env.emu.secret_versions(VAULT, secret).len(), 1);
        let path = |ext: &str| out.join(format!("{secret}.{ext}"));
        // Each file's blocks: (file, certificates, private keys). cert: the leaf only;
        // chain: the intermediate, never the root; fullchain: leaf then intermediate;
        // key: PKCS#8; pem: leaf, intermediate, key, no root.
        #[rustfmt::skip]
        let kinds = [
            ("crt", 1, 0),
            ("chain.pem", 1, 0),
            ("fullchain.pem", 2, 0),
            ("key", 0, 1),
            ("pem", 2, 1),
        ];
        for (ext, certificates, keys) in kinds {
            let file = path(ext);
            assert_eq!(
                pem_blocks(&file, "CERTIFICATE"),
                certificates,
                "{secret}.{ext}"
            );
            assert_eq!(pem_blocks(&file, "PRIVATE KEY"), keys, "{secret}.{ext}");
        }
        // The leaf is the one the store holds.
        let store_file =
            fs::canonicalize(StoreView::new(env.scratch.store()).link(VAULT, secret)).unwrap();
        assert_eq!(sha1(&path("crt")), sha1(&store_file), "{secret}: leaf");
        assert!(
            subject(&path("crt")).contains(secret),
            "{}",
            subject(&path("crt"))
        );
        assert!(subject(&path("chain.pem")).contains("Issuing CA"));
        assert_eq!(sha1(&path("fullchain.pem")), sha1(&path("crt")));
        // The key is the leaf's.
        let key_pub = openssl(&["pkey", "-in", path("key").to_str().unwrap(), "-pubout"]);
        let cert_pub = openssl(&[
            "x509",
            "-in",
            path("crt").to_str().unwrap(),
            "-noout",
            "-pubkey",
        ]);
        assert_eq!(key_pub, cert_pub, "{secret}: key matches leaf");
        // pfx: empty password, opened by OpenSSL 3 without -legacy.
        let (opened, pfx, errors) = pkcs12(&path("pfx"), "", &["-nodes"]);
        assert!(opened, "{secret}.pfx: {errors}");
        assert_eq!(
            pfx.matches("-----BEGIN CERTIFICATE-----").count(),
            2,
            "{secret}"
        );
        assert_eq!(
            pfx.matches("-----BEGIN PRIVATE KEY-----").count(),
            1,
            "{secret}"
        );
        assert!(
            !pfx.lines()
                .any(|l| l.starts_with("subject=") && l.contains("Root CA")),
            "{secret}: no root in the PFX"
        );
        // Stable names are links into the current set; the files are 0600 root.
        for ext in ["crt", "chain.pem", "fullchain.pem", "key", "pem", "pfx"] {
            let link = fs::read_link(path(ext)).unwrap();
            assert_eq!(
                link,
                Path::new(&format!(".akvsync-current.{VAULT}.{secret}"))
                    .join(format!("{secret}.{ext}"))
            );
            assert_eq!(mode(&path(ext)), 0o600, "{secret}.{ext}");
        }
    }
    // `status --json` names the output paths.
    let status = env.cmd(&["status", "--json"]).code(0).run();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(&out.join("seed-ec-pfx.pfx").display().to_string()),
        "{status}"
    );
}

#[test]
fn pfx_passwords_come_from_a_private_file_or_a_secret() {
    let scratch = crate::common::Scratch::new("outputs-pfx");
    let out = scratch.path("out");
    let pass_file = scratch.path("pfx.pass");
    fs::write(&pass_file, "file-password\nignored second line\n").unwrap();
    fs::set_permissions(&pass_file, fs::Permissions::from_mode(0o600)).unwrap();
    let env = env_with(
        &["seed-rsa-pem", "seed-ec-pfx"],
        serde_json::json!({"outputs": [
            {"certificates": ["harnesskv/seed-rsa-pem"], "directory": out,
             "files": {"pfx": "{secret}.pfx"}, "pfxPassword": {"file": pass_file}},
            {"certificates": ["harnesskv.vault.azure.net/seed-ec-pfx"], "directory": out,
             "files": {"pfx": "{secret}.pfx"},
             "pfxPassword": {"secret": format!("https://{VAULT}.vault.azure.net/secrets/pfx-pass")}},
        ]}),
    );
    env.emu
        .set_secret(VAULT, "pfx-pass", "secret-password", None);
    let out_cmd = env.cmd(&["once"]).code(0).run();
    for text in [&out_cmd.stdout, &out_cmd.stderr] {
        let text = String::from_utf8_lossy(text);
        assert!(
            !text.contains("file-password") && !text.contains("secret-password"),
            "{text}"
        );
    }
    for (secret, password) in [
        ("seed-rsa-pem", "file-password"),
        ("seed-ec-pfx", "secret-password"),
    ] {
        let pfx = out.join(format!("{secret}.pfx"));
        let (opened, text, errors) = pkcs12(&pfx, password, &["-nodes"]);
        assert!(opened, "{secret}.pfx: {errors}");
        assert_eq!(text.matches("-----BEGIN PRIVATE KEY-----").count(), 1);
        assert!(!pkcs12(&pfx, "wrong", &["-nodes"]).0, "a wrong password");
        assert!(!pkcs12(&pfx, "", &["-nodes"]).0, "no password");
        // AES-256 with PBKDF2 (OpenSSL 3's default form) when a password is set.
        let (_, _, info) = pkcs12(&pfx, password, &["-info", "-noout"]);
        assert!(
            info.contains("AES-256-CBC") || info.contains("aes-256-cbc"),
            "{info}"
        );
    }

    // A password file other accounts can read is refused; the previous set stays.
    let before = fs::read(out.join("seed-rsa-pem.pfx")).unwrap();
    fs::set_permissions(&pass_file, fs::Permissions::from_mode(0o644)).unwrap();
    env.emu.rotate_certificate(VAULT, "seed-rsa-pem").unwrap();
    env.cmd(&["once"])
        .code(1)
        .stdout_has("outputs[0]: pfxPassword")
        .stdout_has("mode 0644")
        .run();
    assert_eq!(
        fs::read(out.join("seed-rsa-pem.pfx")).unwrap(),
        before,
        "previous set kept"
    );
    env.cmd(&["status"]).stdout_has("outputs not written").run();
    fs::set_permissions(&pass_file, fs::Permissions::from_mode(0o600)).unwrap();
    env.cmd(&["once"]).code(0).run();
    assert_ne!(
        fs::read(out.join("seed-rsa-pem.pfx")).unwrap(),
        before,
        "retried and written"
    );
}

#[test]
fn owners_groups_and_modes_are_what_accounts_see() {
    if crate::common::users::skip_unless_root("owners") {
        return;
    }
    let app = crate::common::users::ensure_user("akvsync-app");
    let mallory = crate::common::users::ensure_user("akvsync-mallory");
    let scratch = crate::common::Scratch::new("outputs-owner");
    let out = scratch.path("out");
    fs::create_dir(&out).unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o750)).unwrap();
    let env = env_with(
        &["seed-rsa-pem"],
        serde_json::json!({"outputs": [
            {"directory": out, "files": {"cert": "{secret}.crt", "key": "{secret}.key"},
             "owner": "root", "group": "akvsync-app", "mode": "0640"},
        ]}),
    );
    env.cmd(&["once"]).code(0).run();
    for name in ["seed-rsa-pem.crt", "seed-rsa-pem.key"] {
        assert_eq!(owner(&out.join(name)), (0, app.gid.as_raw()), "{name}");
        assert_eq!(mode(&out.join(name)), 0o640, "{name}");
    }
    let key = out.join("seed-rsa-pem.key");
    // The group's account reads through the 0750 directory (akvsync granted it traverse).
    assert!(crate::common::users::sh_as(
        &app,
        &format!("cat {} >/dev/null", key.display())
    ));
    assert!(!crate::common::users::sh_as(
        &mallory,
        &format!("cat {} >/dev/null", key.display())
    ));

    // An owner that does not exist: that certificate's outputs fail, named; the store
    // still moves; the previous set stays.
    let before = fs::read(&key).unwrap();
    let mut json = env.settings_json();
    json["akvsync"]["outputs"][0]["group"] = serde_json::json!("no-such-group-akv");
    env.write_settings(&json);
    env.emu.rotate_certificate(VAULT, "seed-rsa-pem").unwrap();
    env.cmd(&["once"])
        .code(1)
        .stdout_has("outputs[0]: group \"no-such-group-akv\" does not exist")
        .run();
    assert_eq!(fs::read(&key).unwrap(), before);
    let versions = env.emu.secret_versions(VAULT, "seed-rsa-pem");
    assert_eq!(
        StoreView::new(env.scratch.store()).linked_version(VAULT, "seed-rsa-pem"),
        versions.last().cloned(),
        "store moved"
    );
}

/// The data directories of a certificate's outputs in `dir`, sorted.
fn data_dirs(dir: &Path, secret: &str) -> Vec<String> {
    let prefix = format!(".akvsync-data.{VAULT}.{secret}.");
    StoreView::new(dir)
        .snapshot()
        .into_keys()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn rotations_switch_whole_sets_and_prune_past_the_retention() {
    let scratch = crate::common::Scratch::new("outputs-rotate");
    let out = scratch.path("out");
    let mut akvsync = all_kinds(&out, serde_json::json!({}));
    akvsync["retainVersions"] = serde_json::json!(2);
    let env = env_with(&["seed-ec-pfx"], akvsync);
    let view = StoreView::new(&out);
    let current = format!(".akvsync-current.{VAULT}.seed-ec-pfx");
    env.cmd(&["once"]).code(0).run();
    for _ in 0..3 {
        let new = env.emu.rotate_certificate(VAULT, "seed-ec-pfx").unwrap();
        env.cmd(&["once"]).code(0).stdout_has("installed").run();
        let crt = out.join("seed-ec-pfx.crt");
        assert_eq!(sha1(&crt), new.thumbprint, "the set shows the new version");
        assert_eq!(view.link_version(&current), Some(new.version.clone()));
        let dirs = data_dirs(&out, "seed-ec-pfx");
        assert!(dirs.len() <= 2, "retention: {dirs:?}");
        assert!(dirs.iter().any(|d| d.ends_with(&new.version)));
    }
    // A file dropped from the settings: its stable link goes, nothing dangles.
    let mut json = env.settings_json();
    json["akvsync"]["outputs"][0]["files"] = serde_json::json!({"cert": "{secret}.crt"});
    env.write_settings(&json);
    env.emu.rotate_certificate(VAULT, "seed-ec-pfx").unwrap();
    env.cmd(&["once"]).code(0).run();
    assert!(!view.has("seed-ec-pfx.key"), "stale link removed");
    assert_eq!(view.dangling(), Vec::<String>::new(), "dangling links");
    // Unchanged poll: nothing rewritten.
    let inode = || fs::symlink_metadata(out.join(&current)).unwrap().ino();
    let before = inode();
    env.cmd(&["once"]).code(0).stdout_has("current").run();
    assert_eq!(before, inode());
}

/// Settings that `validate` refuses, each with the path and message it must name.
#[test]
fn bad_outputs_settings_are_refused_naming_the_field() {
    let env = env_with(&["seed-rsa-pem"], serde_json::json!({}));
    // (outputs, the field under `akvsync.outputs[0]` it must name, its message)
    #[rustfmt::skip]
    let rows: &[(&str, &str, &str)] = &[
        (r#"{"directory": "/srv/x", "files": {"key": "k"}, "mode": "0644"}"#, ".mode", "lets every account read"),
        (r#"{"directory": "/srv/x", "files": {"cert": "{name}.crt"}}"#, ".files.cert", "unknown placeholder {name}"),
        (r#"{"directory": "/srv/x", "files": {"cert": "../{secret}.crt"}}"#, ".files.cert", "not a path"),
        (r#"{"directory": "/srv/x", "files": {"cert": ".{secret}"}}"#, ".files.cert", "hidden"),
        (r#"{"directory": "/srv/x", "files": {}}"#, ".files", "at least one of"),
        (r#"{"directory": "srv/x", "files": {"cert": "c"}}"#, ".directory", "absolute"),
        (r#"{"directory": "/srv/x", "files": {"cert": "same.pem", "key": "same.pem"}}"#, ".files.key", "already"),
        (r#"{"certificates": ["harnesskv/nope"], "directory": "/srv/x", "files": {"cert": "c"}}"#, ".certificates[0]", "names no observed certificate"),
        (r#"{"directory": "/srv/x", "files": {"pfx": "p"}, "pfxPassword": {"file": "/a", "secret": "https://x.vault.azure.net/secrets/y"}}"#, ".pfxPassword", "exactly one of"),
        (r#"{"directory": "/srv/x", "files": {"pfx": "p"}, "pfxPassword": {"secret": "https://evil.example.com/secrets/y"}}"#, ".pfxPassword.secret", ""),
        (r#"{"files": {"cert": "{vault}.{secret}"}}"#, ".files.cert", "the store's own link"),
        (r#"{"directory": "/srv/x", "files": {"cert": "c"}, "owner": "-rf"}"#, ".owner", "not an account name"),
    ];
    assert_eq!(rows.len(), 12);
    for (output, field, message) in rows {
        let mut json = env.settings_json();
        json["akvsync"]["outputs"] =
            serde_json::json!([serde_json::from_str::<serde_json::Value>(output).unwrap()]);
        env.write_settings(&json);
        env.cmd(&["validate"])
            .arg(env.settings_file())
            .code(2)
            .stderr_has(&format!("akvsync.outputs[0]{field}"))
            .stderr_has(message)
            .run();
    }
}

/// Set atomicity: a reader opens the stable cert and key paths one after the other, over
/// and over, while the set is rotated. A pair may straddle a switch only in the instant
/// between the two opens: an immediate re-read must match; no file is ever partial.
#[test]
fn a_racing_reader_never_keeps_a_mismatched_pair() {
    let rotations: usize = crate::common::knob("AKVSYNC_OUTPUT_ROTATIONS").unwrap_or(150);
    let scratch = crate::common::Scratch::new("outputs-race");
    let out = scratch.path("out");
    let env = env_with(
        &["seed-ec-pfx"],
        serde_json::json!({"retainVersions": 2, "outputs": [
            {"directory": out, "files": {"cert": "tls.crt", "key": "tls.key"}},
        ]}),
    );
    env.cmd(&["once"]).code(0).run();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = std::sync::Arc::clone(&stop);
        let (crt, key): (PathBuf, PathBuf) = (out.join("tls.crt"), out.join("tls.key"));
        std::thread::spawn(move || {
            let (mut pairs, mut straddled, mut torn, mut persistent) = (0u64, 0u64, 0u64, 0u64);
            let read_pair = || -> Result<bool, String> {
                let cert = fs::read_to_string(&crt).map_err(|e| e.to_string())?;
                let key = fs::read_to_string(&key).map_err(|e| e.to_string())?;
                if !cert.trim_end().ends_with("-----END CERTIFICATE-----")
                    || !key.trim_end().ends_with("-----END PRIVATE KEY-----")
                {
                    return Err("partial file".to_owned());
                }
                Ok(akvsync::decode::decode_pem(&format!("{cert}{key}")).is_ok())
            };
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match read_pair() {
                    Ok(true) => {}
                    Ok(false) => {
                        straddled += 1;
                        if read_pair() != Ok(true) {
                            persistent += 1;
                        }
                    }
                    Err(_) => torn += 1,
                }
                pairs += 1;
            }
            (pairs, straddled, torn, persistent)
        })
    };
    for _ in 0..rotations {
        env.emu.rotate_certificate(VAULT, "seed-ec-pfx").unwrap();
        env.cmd(&["once"]).code(0).run();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (pairs, straddled, torn, persistent) = reader.join().unwrap();
    eprintln!(
        "racing reader: {pairs} pairs over {rotations} rotations, {straddled} straddled a switch \
         (matched on re-read), {torn} torn, {persistent} mismatched on re-read"
    );
    assert!(pairs >= 1000, "the reader ran: {pairs} pairs");
    assert_eq!(torn, 0, "no partial file is ever visible");
    assert_eq!(persistent, 0, "no mismatched pair survives a re-read");
}
