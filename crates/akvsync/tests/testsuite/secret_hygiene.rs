//! Secret hygiene (issue 8, SPEC §10): runs the real agent against the emulator in every
//! mode that produces output — `once` (text and JSON logs), `run` through a rotation,
//! `status`, `status --json`, `handler enable`/`disable` with its service, and the failure
//! paths (403, 401 from the vault and from the identity endpoint, corrupt PFX, corrupt
//! base64, invalid settings) — all at `AKVSYNC_LOG=trace`, then collects everything the runs
//! produced (stdout, stderr, every file under the scratch directory: state, handler status
//! and logs, settings, link targets) and scans it for every token the emulator issued, for
//! the private keys of every certificate involved (the key's secret numbers raw, in hex,
//! and inside any base64 or PEM run, at any alignment; the whole PKCS#8 DER and its base64)
//! and for the PFX base64 of every secret value. Only the store's version files may hold a
//! key, and the scan must find the key there (so the needles are known to work). Also:
//! `Debug` of every type that holds a token or key is redacted.
#![cfg(target_os = "linux")]

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use der::Decode as _;
use kvemu::{Emulator, Fault, FaultKind};
use serde_json::json;

use crate::common::agent::parse;
use crate::common::env::{Cmd, Env, EnvConfig, VAULT, akvsync};
use crate::common::faults;
use crate::common::guest_agent::HandlerDir;
use crate::common::service::Service;
use crate::common::store_view::{self, StoreView};
use crate::common::users::{as_user, ensure_user, skip_unless_root};
use crate::common::wait_until;

/// Key Vault's PFX, OpenSSL's PFX and a PEM secret (seeded), plus a rotating PEM
/// certificate.
const SECRETS: &[&str] = &["seed-rsa-pfx", "seed-ec-pfx", "seed-rsa-pem", "rot"];
/// Protected settings the guest agent would hand over (base64 of
/// `secret-protected-settings-marker-987654321`): reported as present, never echoed.
const PROTECTED: &str = "c2VjcmV0LXByb3RlY3RlZC1zZXR0aW5ncy1tYXJrZXItOTg3NjU0MzIx";

/// `cmd` at trace level, JSON logs when `json`.
fn trace(cmd: Cmd, json: bool) -> Cmd {
    let cmd = cmd.env("AKVSYNC_LOG", "trace");
    if json {
        cmd.env("AKVSYNC_LOG_FORMAT", "json")
    } else {
        cmd
    }
}

/// One thing a run produced.
struct Artifact {
    what: String,
    bytes: Vec<u8>,
}

/// Every output of the runs.
#[derive(Default)]
struct Outputs(Vec<Artifact>);

impl Outputs {
    /// Runs `cmd` (with its expectations) and keeps its stdout and stderr.
    fn run(&mut self, what: &str, cmd: Cmd) -> Output {
        let output = cmd.run();
        for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            let what = format!("{what}: {stream}");
            self.0.push(Artifact {
                what,
                bytes: bytes.clone(),
            });
        }
        output
    }
}

/// A store version file `<vault>.<secret>.<32 hex>` (the only place a key may be).
fn is_version_file(stores: &[PathBuf], path: &Path) -> bool {
    path.parent().is_some_and(|p| stores.iter().any(|s| s == p))
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit_once('.'))
            .is_some_and(|(_, v)| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Every file under `dir`: its bytes (symlinks: their target), except the store's version
/// files, which go to `keys`.
fn collect(dir: &Path, stores: &[PathBuf], outputs: &mut Outputs, keys: &mut Outputs) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let kind = fs::symlink_metadata(&path).unwrap().file_type();
        let what = path.display().to_string();
        if kind.is_symlink() {
            let target = fs::read_link(&path).unwrap();
            outputs.0.push(Artifact {
                what,
                bytes: target.to_string_lossy().into_owned().into_bytes(),
            });
        } else if kind.is_dir() {
            collect(&path, stores, outputs, keys);
        } else if kind.is_file() {
            let bytes = fs::read(&path).unwrap();
            let sink = if is_version_file(stores, &path) {
                &mut *keys
            } else {
                &mut *outputs
            };
            sink.0.push(Artifact { what, bytes });
        } else {
            assert!(kind.is_socket() || kind.is_fifo(), "{what}: {kind:?}");
        }
    }
}

/// What must never appear: (description, bytes).
#[derive(Default)]
struct Needles(Vec<(String, Vec<u8>)>);

impl Needles {
    fn add(&mut self, what: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        let bytes = bytes.into();
        assert!(
            bytes.len() >= 16,
            "a needle this short could match by chance"
        );
        self.0.push((what.into(), bytes));
    }

    /// Every token the emulator issued, whole and its signature alone.
    fn tokens(&mut self, tokens: &[String]) {
        for (index, token) in tokens.iter().enumerate() {
            self.add(format!("token #{index}"), token.as_bytes());
            // The random signature alone: a token cut or split in a log line.
            let signature = token.rsplit('.').next().unwrap();
            self.add(format!("token #{index} signature"), signature.as_bytes());
        }
    }

    /// A private key (PKCS#8 DER): its secret numbers raw and in hex, the DER and its base64.
    fn key(&mut self, what: &str, pkcs8: &[u8]) {
        let info = pkcs8::PrivateKeyInfo::from_der(pkcs8).unwrap();
        let mut secrets: Vec<(&str, Vec<u8>)> = Vec::new();
        if let Ok(rsa) = pkcs1::RsaPrivateKey::from_der(info.private_key) {
            secrets.push(("private exponent", rsa.private_exponent.as_bytes().to_vec()));
            secrets.push(("prime 1", rsa.prime1.as_bytes().to_vec()));
            secrets.push(("prime 2", rsa.prime2.as_bytes().to_vec()));
        } else {
            let ec = sec1::EcPrivateKey::from_der(info.private_key).unwrap();
            secrets.push(("EC scalar", ec.private_key.to_vec()));
        }
        for (name, bytes) in secrets {
            self.add(format!("{what}: {name} (hex)"), hex(&bytes, false));
            self.add(format!("{what}: {name} (HEX)"), hex(&bytes, true));
            self.add(format!("{what}: {name}"), bytes);
        }
        self.add(format!("{what}: PKCS#8 DER"), pkcs8);
        self.add(format!("{what}: PKCS#8 base64"), STANDARD.encode(pkcs8));
    }

    /// A PFX secret value (base64): three 64-character windows from its middle (its start is
    /// the same ASN.1 header in every PFX), and the same spans of the decoded bytes.
    fn pfx_value(&mut self, what: &str, value: &str) {
        let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        for quarter in 1..=3 {
            let at = compact.len() * quarter / 4 / 4 * 4;
            self.add(
                format!("{what}: PFX base64 window {quarter}"),
                &compact.as_bytes()[at..at + 64],
            );
            let der = STANDARD.decode(&compact).unwrap();
            let at = at / 4 * 3;
            self.add(
                format!("{what}: PFX bytes window {quarter}"),
                &der[at..at + 48],
            );
        }
    }
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

/// Needles indexed by their first 8 bytes, so that an artifact is scanned in one pass.
struct Index<'a> {
    by_prefix: HashMap<[u8; 8], Vec<&'a (String, Vec<u8>)>>,
}

impl<'a> Index<'a> {
    fn new(needles: &'a Needles) -> Self {
        let mut by_prefix: HashMap<[u8; 8], Vec<_>> = HashMap::new();
        for needle in &needles.0 {
            by_prefix
                .entry(needle.1[..8].try_into().unwrap())
                .or_default()
                .push(needle);
        }
        Index { by_prefix }
    }

    /// Descriptions of the needles in `haystack`.
    fn find(&self, haystack: &[u8], found: &mut BTreeSet<&'a str>) {
        for (i, window) in haystack.windows(8).enumerate() {
            if let Some(candidates) = self.by_prefix.get(window) {
                for (what, needle) in candidates {
                    if haystack[i..].starts_with(needle) {
                        found.insert(what);
                    }
                }
            }
        }
    }
}

/// The bytes behind every base64 run in `text` (PEM bodies, JSON strings with `\n`
/// escapes, plain base64), decoded at each of the four alignments, so that key material
/// is found in any base64 or PEM form, whole or in part.
fn decoded_base64_runs(text: &[u8]) -> Vec<Vec<u8>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    let mut i = 0;
    let mut flush = |current: &mut Vec<u8>| {
        if current.len() >= 40 {
            for offset in 0..4 {
                let usable = (current.len() - offset) / 4 * 4;
                if let Ok(bytes) = STANDARD_NO_PAD.decode(&current[offset..offset + usable]) {
                    runs.push(bytes);
                }
            }
        }
        current.clear();
    };
    while i < text.len() {
        let b = text[i];
        if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' {
            current.push(b);
        } else if b == b'\n' || b == b'\r' {
            // PEM line breaks continue a run.
        } else if b == b'\\' && matches!(text.get(i + 1), Some(b'n' | b'r')) {
            i += 1; // an escaped line break in JSON
        } else {
            flush(&mut current);
        }
        i += 1;
    }
    flush(&mut current);
    runs
}

/// Which needles an artifact contains (descriptions only: a report never prints a secret).
fn leaks(artifact: &Artifact, index: &Index<'_>) -> Vec<String> {
    let mut found = BTreeSet::new();
    index.find(&artifact.bytes, &mut found);
    for decoded in decoded_base64_runs(&artifact.bytes) {
        index.find(&decoded, &mut found);
    }
    found
        .into_iter()
        .map(|what| format!("{}: {what}", artifact.what))
        .collect()
}

/// Key material for every version of every secret the emulator holds.
fn needles_for_secrets(emu: &Emulator, names: &[&str], needles: &mut Needles) -> usize {
    let mut keys = 0;
    for name in names {
        for (i, value) in emu.secret_values(VAULT, name).iter().enumerate() {
            let what = format!("{name} version #{i}");
            let bundle = if value.trim_start().starts_with("-----BEGIN") {
                akvsync::decode::decode_secret(Some("application/x-pem-file"), value).unwrap()
            } else {
                needles.pfx_value(&what, value);
                akvsync::decode::decode_secret(Some("application/x-pkcs12"), value).unwrap()
            };
            needles.key(&what, bundle.key.pkcs8_der());
            keys += 1;
        }
    }
    keys
}

#[test]
fn nothing_any_mode_writes_contains_a_token_or_key_material() {
    let env = Env::start(EnvConfig {
        certificates: SECRETS,
        seed: true,
        ..Default::default()
    });
    let store = StoreView::new(env.scratch.store());
    let mut outputs = Outputs::default();
    let pfx = SECRETS[0];

    // once: text logs, then a rotation with JSON logs; status in both forms.
    for (what, args, json, rotate) in [
        ("once", &["once"][..], false, false),
        ("once (json)", &["once"], true, true),
        ("status", &["status"], false, false),
        ("status --json", &["status", "--json"], true, false),
    ] {
        if rotate {
            env.emu.rotate_certificate(VAULT, "rot").unwrap();
        }
        outputs.run(what, trace(env.cmd(args), json).code(0));
    }

    // run through a rotation of a PFX secret, JSON logs (`once` does not log).
    let mut run = env.run_command(&[]);
    run.env("AKVSYNC_LOG", "trace")
        .env("AKVSYNC_LOG_FORMAT", "json");
    let service = Service::spawn(run);
    let before = store.linked_version(VAULT, pfx);
    let rotated = env.emu.rotate_certificate(VAULT, pfx).unwrap();
    let what = format!("run installed the rotation (was {before:?})");
    wait_until(Duration::from_secs(30), &what, || {
        let linked = store.linked_version(VAULT, pfx);
        (linked.as_deref() == Some(rotated.version.as_str()))
            .then_some(())
            .ok_or(format!("{linked:?}"))
    });
    let log = service.stop_within(Duration::from_secs(10));
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "AKVSYNC_LOG=trace reached the JSON log: {log}"
    );
    outputs.0.push(Artifact {
        what: "run: stderr".into(),
        bytes: log.into_bytes(),
    });

    // Failure paths, each with a pending rotation so that the agent fetches. No fault: the
    // vault denies the identity (403).
    let system = env.emu.system_identity().client_id;
    let object = |secret, kind| Some(Fault::object(VAULT, secret, kind, 100));
    for (what, rotate, fault, json, says) in [
        ("once, 403", "rot", None, false, "403"),
        (
            "once, 401 from the vault",
            pfx,
            object("rot", faults::status(401, None)),
            true,
            "",
        ),
        (
            "once, corrupt PFX",
            pfx,
            object(pfx, FaultKind::BadPfx),
            true,
            "",
        ),
        (
            "once, corrupt base64",
            pfx,
            object(pfx, FaultKind::CorruptBase64),
            true,
            "",
        ),
        (
            "once, 401 from the identity endpoint",
            pfx,
            Some(Fault::identity(faults::status(401, None), 100)),
            true,
            "",
        ),
    ] {
        env.emu.rotate_certificate(VAULT, rotate).unwrap();
        match fault {
            Some(fault) => env.emu.inject(fault),
            None => env.emu.deny_identity(VAULT, &system),
        }
        let out = outputs.run(what, trace(env.cmd(&["once"]), json).code(1));
        let said = [out.stdout, out.stderr].concat();
        let said = String::from_utf8_lossy(&said);
        assert!(said.contains(says), "{what}: {said}");
        env.emu.allow_identity(VAULT, &system);
        env.emu.clear_faults();
    }
    // Invalid settings: not JSON, and a bad URL.
    let mut bad_url = env.settings_json();
    bad_url["secretsManagementSettings"]["observedCertificates"] = json!([env.url("a/b")]);
    let bad_url = bad_url.to_string().replace("/secrets/a/b", "/keys/a?x=1");
    for (what, text) in [
        ("not JSON", "{ \"secretsManagementSettings\": "),
        ("bad URL", &bad_url),
    ] {
        let bad = env
            .scratch
            .path(&format!("bad-{}.json", what.replace(' ', "-")));
        fs::write(&bad, text).unwrap();
        let once = akvsync(&["once", "--settings"])
            .arg(&bad)
            .arg("--state-dir")
            .arg(env.scratch.state());
        outputs.run(what, trace(once, false).code(2));
        let validate = env.cmd(&["validate", "--json"]).arg(&bad);
        outputs.run(what, trace(validate, false).code(2));
    }

    // The extension handler: enable starts the service, which writes 0.status; disable.
    let hstore = env.scratch.path("hstore");
    let handler = HandlerDir::create(&env.scratch.path("waagent"), env.scratch.path("hstate"));
    let mut public = env.settings_json();
    public["secretsManagementSettings"]["certificateStoreLocation"] = json!(hstore);
    public["secretsManagementSettings"]["requireInitialSync"] = json!(true);
    let thumbprint = "5F2C3C6C00000000000000000000000000000000";
    handler.write_settings(0, &public, Some((PROTECTED, thumbprint)));
    outputs.run(
        "handler enable",
        trace(handler.cmd("enable", 0), false).code(0),
    );
    wait_until(Duration::from_secs(60), "0.status success", || {
        let status = handler.status(0);
        let success = status.as_ref().is_some_and(|s| s["status"] == "success");
        success.then_some(()).ok_or(format!("{status:?}"))
    });
    outputs.run(
        "handler disable",
        trace(handler.cmd("disable", 0), false).code(0),
    );
    // Invalid settings 1: enable writes 1.status itself.
    handler.write_raw_settings(1, "{\"runtimeSettings\": 3}");
    let enable = trace(handler.cmd("enable", 1), false).code(2);
    outputs.run("handler enable, invalid", enable);
    assert_eq!(handler.status(1).unwrap()["status"], "error");

    // Collect and scan.
    let mut keys = Outputs::default();
    let stores = [env.scratch.store(), hstore];
    collect(&env.scratch.0, &stores, &mut outputs, &mut keys);
    let mut needles = Needles::default();
    let tokens = env.emu.issued_tokens();
    assert!(
        tokens.len() >= 6,
        "each process got its own token: {}",
        tokens.len()
    );
    needles.tokens(&tokens);
    let key_count = needles_for_secrets(&env.emu, SECRETS, &mut needles);
    assert!(key_count >= 10, "{key_count} keys");
    let index = Index::new(&needles);
    let mut protected = Needles::default();
    protected.add("protected settings", PROTECTED);
    protected.add(
        "protected settings (decoded)",
        "secret-protected-settings-marker",
    );
    let protected = Index::new(&protected);

    let bytes: usize = outputs.0.iter().map(|a| a.bytes.len()).sum();
    assert!(
        outputs.0.len() > 30 && bytes > 20_000,
        "trace logs, status and state were collected: {} artifacts, {bytes} bytes",
        outputs.0.len()
    );
    eprintln!(
        "scanned {} artifacts ({bytes} bytes) for {} needles ({} tokens, {key_count} keys)",
        outputs.0.len(),
        needles.0.len(),
        tokens.len()
    );
    let mut found: Vec<String> = outputs.0.iter().flat_map(|a| leaks(a, &index)).collect();
    // Protected settings: nowhere but in the settings files themselves and the copies the
    // agent keeps to reload them, which must be private to root.
    for artifact in &outputs.0 {
        let copy = ["settings.json", "last-settings.json"]
            .iter()
            .any(|name| artifact.what.ends_with(&format!("/{name}")))
            || artifact.what.ends_with(".settings");
        if copy {
            // The agent's own copies are private to root; the inputs are the test's.
            let own = artifact.what.contains("/hstate/") || artifact.what.contains("/state/");
            let mode = store_view::mode(Path::new(&artifact.what));
            assert!(
                !own || mode & 0o077 == 0,
                "{}: mode {mode:o}, a copy of settings with protectedSettings",
                artifact.what
            );
        } else {
            found.extend(leaks(artifact, &protected));
        }
    }
    assert!(
        found.is_empty(),
        "secrets found in outputs:\n{}",
        found.join("\n")
    );

    // The scan does find keys where they belong: every version file holds its key's
    // secret numbers, found in the decoded PEM body.
    assert!(keys.0.len() >= 8, "{} version files", keys.0.len());
    for version_file in &keys.0 {
        let hits = leaks(version_file, &index);
        assert!(
            hits.iter()
                .any(|h| h.ends_with("private exponent") || h.ends_with("EC scalar")),
            "{}: {hits:?}",
            version_file.what
        );
    }
}

#[test]
fn debug_output_of_tokens_keys_and_secrets_is_redacted() {
    let env = Env::start(EnvConfig {
        certificates: &SECRETS[..3],
        seed: true,
        ..Default::default()
    });
    let settings = parse(&env.settings_json());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let vault = akvsync::vault::client_for(&settings).unwrap();
    let certificate = &settings.certificates[0];
    let secret = rt.block_on(vault.get_secret(&certificate.secret)).unwrap();
    let tokens = env.emu.issued_tokens();
    assert!(!tokens.is_empty());

    let mut needles = Needles::default();
    needles.tokens(&tokens);
    needles_for_secrets(&env.emu, &SECRETS[..3], &mut needles);
    let index = Index::new(&needles);
    let bundle = akvsync::decode::decode_secret(
        secret.content_type.as_deref(),
        secret.value.text().unwrap(),
    )
    .unwrap();
    let pem = bundle.to_pem();
    let new_version = akvsync::store::linux::NewVersion {
        vault_name: VAULT,
        secret_name: SECRETS[0],
        version: &secret.version,
        pem: &pem,
    };
    let token = akvsync::identity::parse_token_response(
        serde_json::json!({"access_token": tokens[0], "expires_in": "3600", "expires_on": "4000000000",
            "resource": "https://vault.azure.net", "token_type": "Bearer"})
        .to_string()
        .as_bytes(),
        1_800_000_000,
    )
    .unwrap();
    assert_eq!(token.secret(), tokens[0]);
    let printed = [
        (
            "VaultClient (holds the credential and its token cache)",
            format!("{vault:?}"),
        ),
        ("SecretBundle", format!("{secret:?}")),
        ("Bundle", format!("{bundle:?}")),
        ("PrivateKey", format!("{:?}", bundle.key)),
        ("NewVersion", format!("{new_version:?}")),
        ("AccessToken", format!("{token:?}")),
        ("pretty Bundle", format!("{bundle:#?}")),
    ];
    for (what, text) in printed {
        let found = leaks(
            &Artifact {
                what: what.into(),
                bytes: text.clone().into_bytes(),
            },
            &index,
        );
        assert!(found.is_empty(), "{found:?}");
        // Debug of a byte vector prints decimals: the key DER must not appear that way.
        let decimals = format!("{:?}", &bundle.key.pkcs8_der()[..24]);
        assert!(!text.contains(decimals.trim_matches(['[', ']'])), "{what}");
    }
    // The scanner itself finds a token in a header line and a key in JSON-escaped PEM.
    let header = format!("Authorization: Bearer {}\n", tokens[0]);
    let escaped = serde_json::to_string(&String::from_utf8_lossy(&pem)).unwrap();
    for (what, text) in [("header", header), ("escaped PEM", escaped)] {
        let artifact = Artifact {
            what: what.into(),
            bytes: text.into_bytes(),
        };
        assert!(!leaks(&artifact, &index).is_empty(), "{what} not detected");
    }
    assert!(
        format!("{vault:?}").contains("<redacted>"),
        "a token is cached and redacted"
    );
}

/// The racing reader, run as an unprivileged user under `/bin/sh` (world-executable, no
/// fork per open): loops over every entry of the store directory, temporaries included,
/// opening each for reading; prints each successful open with the file's first line, and
/// the number of attempts at the end.
const READER: &str = r#"
dir=$1; stop=$2; attempts=0; temps=0
while [ ! -e "$stop" ]; do
  for f in "$dir"/* "$dir"/.akvsync-tmp-*; do
    case "$f" in *'*') continue ;; esac
    attempts=$((attempts + 1))
    case "$f" in */.akvsync-tmp-*) temps=$((temps + 1)) ;; esac
    line=__closed__
    { read -r line < "$f"; } 2>/dev/null
    [ "$line" = __closed__ ] || echo "OPENED ${f##*/} $line"
  done
done
echo "ATTEMPTS $attempts TEMPS $temps"
"#;

/// The racing reader as `user` (privileges dropped with `setpriv`), killed if the test ends
/// before it is finished.
struct Reader(Option<Child>);

impl Reader {
    fn spawn(user: &nix::unistd::User, dir: &Path, stop: &Path) -> Reader {
        let mut command = as_user(user, "/bin/sh");
        command.args(["-c", READER, "reader"]).arg(dir).arg(stop);
        let child = command.stdout(Stdio::piped()).stderr(Stdio::piped());
        Reader(Some(child.spawn().unwrap()))
    }

    fn finish(mut self) -> ReaderResult {
        let output = self.0.take().unwrap().wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "reader: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut result = ReaderResult {
            attempts: 0,
            temps: 0,
            opened: Vec::new(),
        };
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("OPENED ") {
                let (name, first) = rest.split_once(' ').unwrap_or((rest, ""));
                result.opened.push((name.to_owned(), first.to_owned()));
            } else if let Some(rest) = line.strip_prefix("ATTEMPTS ") {
                let fields: Vec<&str> = rest.split(' ').collect();
                result.attempts = fields[0].parse().unwrap();
                result.temps = fields[2].parse().unwrap();
            }
        }
        result
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct ReaderResult {
    attempts: u64,
    temps: u64,
    /// (file name, first line) of every successful open.
    opened: Vec<(String, String)>,
}

/// An unlisted and a listed reader racing on one directory until `finish`.
struct Race {
    readers: [Reader; 2],
    stop: PathBuf,
}

impl Race {
    fn start(users: [&nix::unistd::User; 2], dir: &Path, stop: &Path) -> Race {
        let readers = users.map(|user| Reader::spawn(user, dir, stop));
        let stop = stop.to_owned();
        Race { readers, stop }
    }

    /// Stops both: the unlisted reader raced at least `min_attempts` times and opened
    /// nothing. What the listed reader opened.
    fn finish(self, phase: &str, min_attempts: u64) -> ReaderResult {
        fs::write(&self.stop, "").unwrap();
        let [other, granted] = self.readers.map(Reader::finish);
        fs::remove_file(&self.stop).unwrap();
        eprintln!(
            "{phase}: unlisted reader {} opens ({} of temporaries), listed reader {} opens ({} of temporaries), {} succeeded",
            other.attempts,
            other.temps,
            granted.attempts,
            granted.temps,
            granted.opened.len()
        );
        assert!(
            other.attempts >= min_attempts,
            "the reader raced: {}",
            other.attempts
        );
        assert!(
            other.opened.is_empty(),
            "an unlisted user opened {:?}",
            other.opened
        );
        granted
    }
}

/// The store grants a listed user traverse only on its directory, and that named ACL entry
/// hides the directory's listing from them even when it is world-listable; an
/// administrator who wants them to list it grants read too (kept by the store's
/// read-modify-write of the directory ACL), as done here so that the listed reader races.
fn let_listed_user_list(dir: &Path) {
    use akvsync::store::linux::acl;
    let grants = acl::resolve(&[akvsync::settings::AclEntry {
        user: Some("akvsync-race-granted".into()),
        group: None,
    }])
    .unwrap();
    acl::add_to(
        &fs::File::open(dir).unwrap(),
        &grants,
        acl::READ | acl::EXECUTE,
    )
    .unwrap();
}

/// SPEC §10: key files are never readable by others at any instant. While certificates
/// are installed and rotated — first by the agent (`akvsync once` against the emulator,
/// one certificate with `acls`), then hundreds of times through the store's install path
/// — two unprivileged readers loop opening every entry of the store directory, which is
/// world-listable on purpose (the worst directory mode an administrator could leave): one
/// user is not listed anywhere and must never open anything; the other is listed in one
/// certificate's `acls` and must open only that certificate's files (never the other's,
/// not even its temporaries). Needs root (CI runs it as root); the readers run under
/// `setpriv`.
/// A new directory, mode 0755: world-listable on purpose.
fn world_listable_dir(dir: PathBuf) -> PathBuf {
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn racing_readers_never_open_a_key_file_they_are_not_granted() {
    if skip_unless_root("racing_readers_never_open_a_key_file_they_are_not_granted") {
        return;
    }
    let other = ensure_user("akvsync-race-other");
    let granted = ensure_user("akvsync-race-granted");

    // Phase 1: the agent, against the emulator.
    let env = Env::start(EnvConfig {
        certificates: &["granted", "private"],
        ..Default::default()
    });
    let stop = env.scratch.path("stop");
    let agent_store = world_listable_dir(env.scratch.store());
    let mut json = env.settings_json();
    json["secretsManagementSettings"]["aclEnabled"] = json!(true);
    json["secretsManagementSettings"]["observedCertificates"] = json!([
        {"url": env.url("granted"), "acls": [{"user": "akvsync-race-granted"}]},
        {"url": env.url("private")},
    ]);
    env.write_settings(&json);
    let_listed_user_list(&agent_store);
    let race = Race::start([&other, &granted], &agent_store, &stop);
    const AGENT_ROUNDS: usize = 6;
    for _ in 0..AGENT_ROUNDS {
        env.emu.rotate_certificate(VAULT, "granted").unwrap();
        env.emu.rotate_certificate(VAULT, "private").unwrap();
        env.cmd(&["once"]).code(0).run();
    }
    let granted_reader = race.finish("agent phase", 500);
    let granted_prefix = format!("{VAULT}.granted");
    assert!(
        granted_reader
            .opened
            .iter()
            .any(|(name, _)| name.starts_with(&granted_prefix)),
        "the listed user reads its certificate (so the readers can open what they may): {:?}",
        granted_reader.opened
    );
    for (name, _) in &granted_reader.opened {
        assert!(
            name.starts_with(&granted_prefix) || name.starts_with(".akvsync-tmp-"),
            "the listed user opened {name}"
        );
    }

    // Phase 2: hundreds of rotations through the store's install path, with content that
    // names its certificate so that every open, temporaries included, is attributed.
    use akvsync::settings::{AclEntry, LinuxTarget};
    use akvsync::store::linux::{self, NewVersion};
    let store = world_listable_dir(env.scratch.path("install-store"));
    let targets = [
        LinuxTarget {
            directory: store.to_str().unwrap().to_owned(),
            link_name: "racekv.granted".into(),
            custom_link_name: Some("granted.pem".into()),
            acls: vec![AclEntry {
                user: Some("akvsync-race-granted".into()),
                group: None,
            }],
        },
        LinuxTarget {
            directory: store.to_str().unwrap().to_owned(),
            link_name: "racekv.private".into(),
            custom_link_name: Some("private.pem".into()),
            acls: vec![],
        },
    ];
    let_listed_user_list(&store);
    let race = Race::start([&other, &granted], &store, &stop);
    const ROTATIONS: usize = 250;
    let filler = "A".repeat(64 * 100);
    let mut owned: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for i in 1..=ROTATIONS {
        for (t, target) in targets.iter().enumerate() {
            let secret = if t == 0 { "granted" } else { "private" };
            let version = format!("{i:032x}");
            let pem = format!(
                "{secret}-{i}\n-----BEGIN CERTIFICATE-----\n{filler}\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n{filler}\n-----END PRIVATE KEY-----\n"
            );
            linux::install(
                target,
                &NewVersion {
                    vault_name: "racekv",
                    secret_name: secret,
                    version: &version,
                    pem: pem.as_bytes(),
                },
            )
            .unwrap();
            owned[t].push(version);
            let keep = [
                owned[t][owned[t].len() - 1].clone(),
                owned[t][owned[t].len().saturating_sub(2)].clone(),
            ];
            let removed = linux::prune(target, &owned[t], &[&keep[0], &keep[1]]).unwrap();
            owned[t].retain(|v| !removed.contains(v));
        }
    }
    let granted_reader = race.finish(&format!("store phase ({ROTATIONS} rotations × 2)"), 1000);
    assert!(
        granted_reader
            .opened
            .iter()
            .any(|(name, _)| name.starts_with("racekv.granted.")),
        "the listed user reads its version files"
    );
    for (name, first) in &granted_reader.opened {
        assert!(
            first.starts_with("granted-"),
            "the listed user opened {name} whose first line is {first:?}"
        );
    }
}
