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
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use der::Decode as _;
use kvemu::{BlockingEmulator, Config, Fault, FaultKind};

const VAULT: &str = "hygienekv";
const HANDLER: &str = "Akvsync.KeyVault";
/// Protected settings the guest agent would hand over (base64 of
/// `secret-protected-settings-marker-987654321`): reported as present, never echoed.
const PROTECTED: &str = "c2VjcmV0LXByb3RlY3RlZC1zZXR0aW5ncy1tYXJrZXItOTg3NjU0MzIx";

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("akvsync-hygiene-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn store(&self) -> PathBuf {
        self.0.join("store")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Never leave a handler service behind.
        if let Ok(pid) = fs::read_to_string(self.0.join("hstate").join("akvsync.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn url(secret: &str) -> String {
    format!("https://{VAULT}.vault.azure.net/secrets/{secret}")
}

fn settings_json(emu: &BlockingEmulator, store: &Path, secrets: &[String]) -> serde_json::Value {
    let urls: Vec<String> = secrets.iter().map(|s| url(s)).collect();
    serde_json::json!({
        "secretsManagementSettings": {
            "pollingIntervalInS": "1",
            "certificateStoreLocation": store,
            "observedCertificates": urls,
        },
        "authenticationSettings": {"msiEndpoint": emu.identity_endpoint()},
        "akvsync": {"testing": {
            "caFile": emu.ca_file(),
            "connectTo": {format!("{VAULT}.vault.azure.net"): emu.vault_addr().to_string()},
            "minPollingIntervalInS": 1,
        }},
    })
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
    fn add_output(&mut self, what: &str, output: &Output) {
        self.0.push(Artifact {
            what: format!("{what}: stdout"),
            bytes: output.stdout.clone(),
        });
        self.0.push(Artifact {
            what: format!("{what}: stderr"),
            bytes: output.stderr.clone(),
        });
    }
}

/// `akvsync <args>` at trace level, JSON logs when `json`.
fn akvsync(args: &[&str], json: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_akvsync"));
    command.args(args).env("AKVSYNC_LOG", "trace");
    if json {
        command.env("AKVSYNC_LOG_FORMAT", "json");
    } else {
        command.env_remove("AKVSYNC_LOG_FORMAT");
    }
    command
}

fn run(outputs: &mut Outputs, what: &str, command: &mut Command) -> Output {
    let output = command.output().unwrap();
    outputs.add_output(what, &output);
    output
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

fn linked_version(store: &Path, secret: &str) -> Option<String> {
    let target = fs::read_link(store.join(format!("{VAULT}.{secret}"))).ok()?;
    Some(target.to_string_lossy().rsplit('.').next()?.to_owned())
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

    fn token(&mut self, index: usize, token: &str) {
        self.add(format!("token #{index}"), token.as_bytes());
        // The random signature alone: a token cut or split in a log line.
        let signature = token.rsplit('.').next().unwrap();
        self.add(format!("token #{index} signature"), signature.as_bytes());
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
fn needles_for_secrets(emu: &BlockingEmulator, names: &[String], needles: &mut Needles) -> usize {
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

fn write_handler_environment(scratch: &Scratch) -> PathBuf {
    let handler_dir = scratch.0.join(format!("waagent/{HANDLER}-1.0.0"));
    for dir in ["config", "status"] {
        fs::create_dir_all(handler_dir.join(dir)).unwrap();
    }
    let log = scratch.0.join("waagent/log");
    fs::create_dir_all(&log).unwrap();
    let env = serde_json::json!([{
        "name": HANDLER,
        "version": 1.0,
        "handlerEnvironment": {
            "logFolder": log,
            "configFolder": handler_dir.join("config"),
            "statusFolder": handler_dir.join("status"),
            "heartbeatFile": handler_dir.join("heartbeat.log"),
        }
    }]);
    fs::write(handler_dir.join("HandlerEnvironment.json"), env.to_string()).unwrap();
    handler_dir
}

fn handler(handler_dir: &Path, state: &Path, op: &str, seq: u64) -> Command {
    let mut command = akvsync(&["handler", op, "--state-dir"], false);
    command
        .arg(state)
        .current_dir(handler_dir)
        .env("AZURE_GUEST_AGENT_EXTENSION_VERSION", "1.0.0")
        .env("ConfigSequenceNumber", seq.to_string())
        .env_remove("AZURE_GUEST_AGENT_EXTENSION_PATH")
        .env_remove("AZURE_GUEST_AGENT_UPDATING_FROM_VERSION");
    command
}

fn status_of(handler_dir: &Path, seq: u64) -> Option<serde_json::Value> {
    let bytes = fs::read(handler_dir.join(format!("status/{seq}.status"))).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(value[0]["status"].clone())
}

#[test]
fn nothing_any_mode_writes_contains_a_token_or_key_material() {
    let emu = BlockingEmulator::start(Config::default()).unwrap();
    let scratch = Scratch::new("scan");
    let store = scratch.store();
    let state = scratch.0.join("state");
    let mut outputs = Outputs::default();

    // Key Vault's PFX, OpenSSL's PFX and a PEM secret, plus a rotating PEM certificate.
    let mut names: Vec<String> = emu
        .seed(VAULT)
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    emu.rotate_certificate(VAULT, "rot").unwrap();
    names.push("rot".into());
    let pfx = names[0].clone();
    let settings_file = scratch.0.join("settings.json");
    fs::write(
        &settings_file,
        settings_json(&emu, &store, &names).to_string(),
    )
    .unwrap();
    let cmd = |verb: &str, json: bool| {
        let mut command = akvsync(&[verb, "--settings"], json);
        command.arg(&settings_file).arg("--state-dir").arg(&state);
        command
    };

    // once: text logs, then a rotation with JSON logs.
    let out = run(&mut outputs, "once", &mut cmd("once", false));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    emu.rotate_certificate(VAULT, "rot").unwrap();
    let out = run(&mut outputs, "once (json)", &mut cmd("once", true));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        code(&run(&mut outputs, "status", &mut cmd("status", false))),
        0
    );
    let mut status_json = cmd("status", true);
    status_json.arg("--json");
    assert_eq!(
        code(&run(&mut outputs, "status --json", &mut status_json)),
        0
    );

    // run through a rotation of a PFX secret, JSON logs to a file (`once` does not log).
    let log_path = scratch.0.join("run.log");
    let mut child = cmd("run", true)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let before = linked_version(&store, &pfx);
    let rotated = emu.rotate_certificate(VAULT, &pfx).unwrap();
    let picked_up = wait_for(Duration::from_secs(30), || {
        linked_version(&store, &pfx).as_deref() == Some(rotated.version.as_str())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = child.wait().unwrap();
    assert!(picked_up, "run installed the rotation (was {before:?})");
    assert!(exit.success(), "{exit:?}");
    let log = fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "AKVSYNC_LOG=trace reached the JSON log: {log}"
    );

    // Failure paths, each with a pending rotation so that the agent fetches.
    let system = emu.system_identity().client_id;
    emu.rotate_certificate(VAULT, "rot").unwrap();
    emu.deny_identity(VAULT, &system);
    let out = run(&mut outputs, "once, 403", &mut cmd("once", false));
    assert_eq!(code(&out), 1);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("403"), "{said}");
    emu.allow_identity(VAULT, &system);
    for (what, fault) in [
        (
            "once, 401 from the vault",
            Fault::object(
                VAULT,
                "rot",
                FaultKind::Status {
                    status: 401,
                    retry_after: None,
                },
                100,
            ),
        ),
        (
            "once, corrupt PFX",
            Fault::object(VAULT, &pfx, FaultKind::BadPfx, 100),
        ),
        (
            "once, corrupt base64",
            Fault::object(VAULT, &pfx, FaultKind::CorruptBase64, 100),
        ),
        (
            "once, 401 from the identity endpoint",
            Fault::identity(
                FaultKind::Status {
                    status: 401,
                    retry_after: None,
                },
                100,
            ),
        ),
    ] {
        emu.rotate_certificate(VAULT, &pfx).unwrap();
        emu.inject(fault);
        let out = run(&mut outputs, what, &mut cmd("once", true));
        assert_eq!(
            code(&out),
            1,
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        emu.clear_faults();
    }
    // Invalid settings: not JSON, and a bad URL.
    for (what, text) in [
        ("not JSON", "{ \"secretsManagementSettings\": ".to_owned()),
        (
            "bad URL",
            settings_json(&emu, &store, &["a/b".to_owned()])
                .to_string()
                .replace("/secrets/a/b", "/keys/a?x=1"),
        ),
    ] {
        let bad = scratch
            .0
            .join(format!("bad-{}.json", what.replace(' ', "-")));
        fs::write(&bad, text).unwrap();
        let mut once = akvsync(&["once", "--settings"], false);
        once.arg(&bad).arg("--state-dir").arg(&state);
        assert_eq!(code(&run(&mut outputs, what, &mut once)), 2, "{what}");
        let mut validate = akvsync(&["validate", "--json"], false);
        validate.arg(&bad);
        assert_eq!(code(&run(&mut outputs, what, &mut validate)), 2, "{what}");
    }

    // The extension handler: enable starts the service, which writes 0.status; disable.
    let handler_dir = write_handler_environment(&scratch);
    let hstate = scratch.0.join("hstate");
    let mut public = settings_json(&emu, &scratch.0.join("hstore"), &names);
    public["secretsManagementSettings"]["requireInitialSync"] = serde_json::json!(true);
    let runtime = serde_json::json!({"runtimeSettings": [{"handlerSettings": {
        "publicSettings": public, "protectedSettings": PROTECTED,
        "protectedSettingsCertThumbprint": "5F2C3C6C00000000000000000000000000000000",
    }}]});
    fs::write(handler_dir.join("config/0.settings"), runtime.to_string()).unwrap();
    let out = run(
        &mut outputs,
        "handler enable",
        &mut handler(&handler_dir, &hstate, "enable", 0),
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        wait_for(Duration::from_secs(60), || {
            status_of(&handler_dir, 0).is_some_and(|s| s["status"] == "success")
        }),
        "0.status: {:?}",
        status_of(&handler_dir, 0)
    );
    let out = run(
        &mut outputs,
        "handler disable",
        &mut handler(&handler_dir, &hstate, "disable", 0),
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    // Invalid settings 1: enable writes 1.status itself.
    fs::write(
        handler_dir.join("config/1.settings"),
        "{\"runtimeSettings\": 3}",
    )
    .unwrap();
    let out = run(
        &mut outputs,
        "handler enable, invalid",
        &mut handler(&handler_dir, &hstate, "enable", 1),
    );
    assert_eq!(code(&out), 2);
    assert_eq!(status_of(&handler_dir, 1).unwrap()["status"], "error");

    // Collect and scan.
    let mut keys = Outputs::default();
    let stores = [store.clone(), scratch.0.join("hstore")];
    collect(&scratch.0, &stores, &mut outputs, &mut keys);
    let mut needles = Needles::default();
    let tokens = emu.issued_tokens();
    assert!(
        tokens.len() >= 6,
        "each process got its own token: {}",
        tokens.len()
    );
    for (i, token) in tokens.iter().enumerate() {
        needles.token(i, token);
    }
    let key_count = needles_for_secrets(&emu, &names, &mut needles);
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
            let mode = fs::metadata(&artifact.what).unwrap().permissions().mode();
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
    emu.shutdown();
}

#[test]
fn debug_output_of_tokens_keys_and_secrets_is_redacted() {
    let emu = BlockingEmulator::start(Config::default()).unwrap();
    let seeded = emu.seed(VAULT).unwrap();
    let scratch = Scratch::new("debug");
    let names: Vec<String> = seeded.iter().map(|i| i.name.clone()).collect();
    let settings = akvsync::settings::parse_bytes(
        settings_json(&emu, &scratch.store(), &names)
            .to_string()
            .as_bytes(),
        akvsync::settings::Platform::Linux,
    )
    .unwrap()
    .settings;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let vault = akvsync::vault::client_for(&settings).unwrap();
    let certificate = &settings.certificates[0];
    let secret = rt.block_on(vault.get_secret(&certificate.secret)).unwrap();
    let tokens = emu.issued_tokens();
    assert!(!tokens.is_empty());

    let mut needles = Needles::default();
    for (i, token) in tokens.iter().enumerate() {
        needles.token(i, token);
    }
    needles_for_secrets(&emu, &names, &mut needles);
    let index = Index::new(&needles);
    let bundle =
        akvsync::decode::decode_secret(secret.content_type.as_deref(), &secret.value).unwrap();
    let pem = bundle.to_pem();
    let new_version = akvsync::store::linux::NewVersion {
        vault_name: VAULT,
        secret_name: &names[0],
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
    emu.shutdown();
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

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Creates a system user (idempotent); root only.
fn ensure_user(name: &str) -> nix::unistd::User {
    if nix::unistd::User::from_name(name).unwrap().is_none() {
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", name])
            .status()
            .unwrap();
        assert!(status.success(), "useradd {name}");
    }
    nix::unistd::User::from_name(name).unwrap().unwrap()
}

/// Starts the racing reader as `user`, privileges dropped with `setpriv`.
fn spawn_reader(user: &nix::unistd::User, dir: &Path, stop: &Path) -> std::process::Child {
    Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--clear-groups")
        .args(["/bin/sh", "-c", READER, "reader"])
        .arg(dir)
        .arg(stop)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

struct ReaderResult {
    attempts: u64,
    temps: u64,
    /// (file name, first line) of every successful open.
    opened: Vec<(String, String)>,
}

fn finish_reader(child: std::process::Child) -> ReaderResult {
    let output = child.wait_with_output().unwrap();
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
#[test]
fn racing_readers_never_open_a_key_file_they_are_not_granted() {
    if !is_root() {
        eprintln!(
            "SKIPPED racing_readers_never_open_a_key_file_they_are_not_granted: needs root (CI runs it as root)"
        );
        return;
    }
    let other = ensure_user("akvsync-race-other");
    let granted = ensure_user("akvsync-race-granted");
    let scratch = Scratch::new("race");
    fs::set_permissions(&scratch.0, fs::Permissions::from_mode(0o755)).unwrap();
    let stop = scratch.0.join("stop");

    // Phase 1: the agent, against the emulator.
    let emu = BlockingEmulator::start(Config::default()).unwrap();
    let agent_store = scratch.0.join("agent-store");
    fs::create_dir(&agent_store).unwrap();
    fs::set_permissions(&agent_store, fs::Permissions::from_mode(0o755)).unwrap();
    emu.rotate_certificate(VAULT, "granted").unwrap();
    emu.rotate_certificate(VAULT, "private").unwrap();
    let mut json = settings_json(&emu, &agent_store, &[]);
    json["secretsManagementSettings"]["aclEnabled"] = serde_json::json!(true);
    json["secretsManagementSettings"]["observedCertificates"] = serde_json::json!([
        {"url": url("granted"), "acls": [{"user": "akvsync-race-granted"}]},
        {"url": url("private")},
    ]);
    let settings_file = scratch.0.join("settings.json");
    fs::write(&settings_file, json.to_string()).unwrap();
    let_listed_user_list(&agent_store);
    let readers = [
        spawn_reader(&other, &agent_store, &stop),
        spawn_reader(&granted, &agent_store, &stop),
    ];
    const AGENT_ROUNDS: usize = 6;
    for _ in 0..AGENT_ROUNDS {
        emu.rotate_certificate(VAULT, "granted").unwrap();
        emu.rotate_certificate(VAULT, "private").unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_akvsync"))
            .args(["once", "--settings"])
            .arg(&settings_file)
            .arg("--state-dir")
            .arg(scratch.0.join("state"))
            .output()
            .unwrap();
        assert_eq!(
            code(&out),
            0,
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::write(&stop, "").unwrap();
    let [other_reader, granted_reader] = readers.map(finish_reader);
    eprintln!(
        "agent phase: unlisted reader {} opens ({} of temporaries), listed reader {} opens, {} succeeded",
        other_reader.attempts,
        other_reader.temps,
        granted_reader.attempts,
        granted_reader.opened.len()
    );
    assert!(
        other_reader.attempts >= 500,
        "the reader raced: {}",
        other_reader.attempts
    );
    assert!(
        other_reader.opened.is_empty(),
        "an unlisted user opened {:?}",
        other_reader.opened
    );
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
    fs::remove_file(&stop).unwrap();
    emu.shutdown();

    // Phase 2: hundreds of rotations through the store's install path, with content that
    // names its certificate so that every open, temporaries included, is attributed.
    use akvsync::settings::{AclEntry, LinuxTarget};
    use akvsync::store::linux::{self, NewVersion};
    let store = scratch.0.join("store");
    fs::create_dir(&store).unwrap();
    fs::set_permissions(&store, fs::Permissions::from_mode(0o755)).unwrap();
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
    let readers = [
        spawn_reader(&other, &store, &stop),
        spawn_reader(&granted, &store, &stop),
    ];
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
    fs::write(&stop, "").unwrap();
    let [other_reader, granted_reader] = readers.map(finish_reader);
    eprintln!(
        "store phase ({ROTATIONS} rotations × 2): unlisted reader {} opens ({} of temporaries), listed reader {} opens ({} of temporaries), {} succeeded",
        other_reader.attempts,
        other_reader.temps,
        granted_reader.attempts,
        granted_reader.temps,
        granted_reader.opened.len()
    );
    assert!(
        other_reader.attempts >= 1000,
        "the reader raced: {}",
        other_reader.attempts
    );
    assert!(
        other_reader.opened.is_empty(),
        "an unlisted user opened {:?}",
        other_reader.opened
    );
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
