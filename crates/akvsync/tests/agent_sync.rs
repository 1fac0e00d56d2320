//! The agent against the emulator over real HTTPS on loopback: first sync, no-op polls,
//! rotation, pinned versions, isolation of failures, refused redirects, and the
//! `once`/`status` commands. Throttling, identity outages, corrupt blobs and every other
//! injected fault are in `fault_matrix.rs`. Real-shaped vault URLs
//! (`https://<vault>.vault.azure.net/…`) with the testing `connectTo`; URL validation,
//! challenge verification and the token-to-vault-host rule stay on.
#![cfg(target_os = "linux")]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use akvsync::backoff::Backoff;
use akvsync::identity::Credential;
use akvsync::settings::{self, Platform, Settings};
use akvsync::state::StateDir;
use akvsync::sync::{Engine, Report, SyncResult};
use akvsync::vault::{VaultClient, VaultOptions};
use kvemu::{Config, Emulator};
use kvemu::{Fault, FaultKind};

use common::Scratch;

const VAULT: &str = "agentkv";

/// Settings JSON for `urls`, pointed at the emulator through the testing overrides.
fn settings_json(emu: &Emulator, scratch: &Scratch, urls: &[String]) -> serde_json::Value {
    serde_json::json!({
        "secretsManagementSettings": {
            "pollingIntervalInS": "1",
            "certificateStoreLocation": scratch.store().to_str().unwrap(),
            "observedCertificates": urls,
        },
        "authenticationSettings": {"msiEndpoint": emu.identity_endpoint()},
        "akvsync": {"testing": {
            "caFile": emu.ca_file().to_str().unwrap(),
            "connectTo": {format!("{VAULT}.vault.azure.net"): emu.vault_addr().to_string()},
            "minPollingIntervalInS": 1,
        }},
    })
}

fn url(secret: &str) -> String {
    format!("https://{VAULT}.vault.azure.net/secrets/{secret}")
}

fn parse(json: &serde_json::Value) -> Settings {
    settings::parse_bytes(json.to_string().as_bytes(), Platform::Linux)
        .unwrap()
        .settings
}

/// Fast retries so that outage tests take seconds, not minutes.
const FAST: Backoff = Backoff {
    initial: Duration::from_millis(50),
    max: Duration::from_millis(200),
    attempts: 5,
};

struct Agent {
    engine: Arc<Engine>,
    credential: Arc<Credential>,
    vault: Arc<VaultClient>,
}

fn agent(settings: Settings, scratch: &Scratch) -> Agent {
    let credential =
        Arc::new(Credential::new(&settings.identity, scratch.0.join("arc"), FAST).unwrap());
    let mut options = VaultOptions::from_settings(&settings).unwrap();
    options.backoff = Some(FAST);
    let vault = Arc::new(VaultClient::new(Arc::clone(&credential), &options).unwrap());
    let state = StateDir::open(&scratch.0.join("state")).unwrap();
    let (engine, warnings) = Engine::new(settings, Arc::clone(&vault), state);
    assert!(warnings.is_empty(), "{warnings:?}");
    Agent {
        engine: Arc::new(engine),
        credential,
        vault,
    }
}

async fn emulator() -> Emulator {
    Emulator::start(Config::default()).await.unwrap()
}

fn link(scratch: &Scratch, secret: &str) -> PathBuf {
    scratch.store().join(format!("{VAULT}.{secret}"))
}

fn linked_version(scratch: &Scratch, secret: &str) -> String {
    let target = fs::read_link(link(scratch, secret)).unwrap();
    target
        .file_name()
        .unwrap()
        .to_string_lossy()
        .rsplit('.')
        .next()
        .unwrap()
        .to_owned()
}

fn mtime(path: &Path) -> std::time::SystemTime {
    fs::symlink_metadata(path).unwrap().modified().unwrap()
}

fn result_of<'a>(reports: &'a [Report], name: &str) -> &'a Report {
    reports
        .iter()
        .find(|r| r.name == format!("{VAULT}/{name}"))
        .unwrap()
}

#[tokio::test]
async fn first_sync_installs_then_polls_write_nothing_and_cost_one_get() {
    let emu = emulator().await;
    let rsa = emu.rotate_certificate(VAULT, "web-rsa").unwrap();
    let issued = emu
        .test_pki()
        .unwrap()
        .issue(
            "api-ec.example.test",
            &["api-ec.example.test".to_owned()],
            kvemu::seed::LeafKey::EcP256,
            365,
        )
        .unwrap();
    let ec = emu
        .import_pem(VAULT, "api-ec", &issued.pem_key_first(), kvemu::CT_PEM)
        .unwrap();
    let scratch = Scratch::new("first");
    let agent = agent(
        parse(&settings_json(
            &emu,
            &scratch,
            &[url("web-rsa"), url("api-ec")],
        )),
        &scratch,
    );

    let reports = agent.engine.sync_all().await;
    for (name, imported) in [("web-rsa", &rsa), ("api-ec", &ec)] {
        let report = result_of(&reports, name);
        assert_eq!(report.result, SyncResult::Installed, "{report:?}");
        assert_eq!(report.version.as_deref(), Some(imported.version.as_str()));
        assert_eq!(
            report.thumbprint.as_deref(),
            Some(imported.thumbprint.as_str())
        );
        assert_eq!(linked_version(&scratch, name), imported.version);
        let pem = fs::read_to_string(link(&scratch, name)).unwrap();
        let bundle = akvsync::decode::decode_pem(&pem).unwrap();
        assert_eq!(bundle.leaf.thumbprint, imported.thumbprint);
        assert_eq!(
            bundle.chain.len(),
            2,
            "intermediate and root follow the leaf"
        );
        assert!(
            pem.trim_end().ends_with("-----END PRIVATE KEY-----"),
            "key last"
        );
    }
    assert_eq!(
        agent.credential.request_count(),
        1,
        "one token for both certificates"
    );

    let files: Vec<_> = fs::read_dir(scratch.store())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let before: Vec<_> = files.iter().map(|p| mtime(p)).collect();
    let vault_before = agent.vault.request_count();
    emu.reset_counters();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let reports = agent.engine.sync_all().await;
    assert!(
        reports.iter().all(|r| r.result == SyncResult::Unchanged),
        "{reports:?}"
    );
    assert_eq!(
        agent.vault.request_count() - vault_before,
        2,
        "one GET per certificate"
    );
    assert_eq!(
        emu.counters().identity,
        0,
        "no token request while the token is valid"
    );
    let after: Vec<_> = files.iter().map(|p| mtime(p)).collect();
    assert_eq!(before, after, "nothing written when nothing changed");
    emu.shutdown().await;
}

#[tokio::test]
async fn rotation_is_installed_and_the_previous_version_kept_then_pruned() {
    let emu = emulator().await;
    let v1 = emu.rotate_certificate(VAULT, "rot").unwrap();
    let scratch = Scratch::new("rotate");
    let agent = agent_for(&emu, &scratch, &["rot"]);
    agent.engine.sync_all().await;
    let v2 = emu.rotate_certificate(VAULT, "rot").unwrap();
    let reports = agent.engine.sync_all().await;
    assert_eq!(reports[0].result, SyncResult::Installed);
    assert_eq!(linked_version(&scratch, "rot"), v2.version);
    assert!(
        scratch
            .store()
            .join(format!("{VAULT}.rot.{}", v1.version))
            .exists(),
        "previous kept"
    );
    let v3 = emu.rotate_certificate(VAULT, "rot").unwrap();
    agent.engine.sync_all().await;
    assert_eq!(linked_version(&scratch, "rot"), v3.version);
    assert!(
        !scratch
            .store()
            .join(format!("{VAULT}.rot.{}", v1.version))
            .exists(),
        "pruned past 2 versions"
    );
    assert!(
        scratch
            .store()
            .join(format!("{VAULT}.rot.{}", v2.version))
            .exists()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_pinned_version_never_moves() {
    let emu = emulator().await;
    let v1 = emu.rotate_certificate(VAULT, "pinned").unwrap();
    emu.rotate_certificate(VAULT, "pinned").unwrap();
    let scratch = Scratch::new("pinned");
    let pinned_url = format!("{}/{}", url("pinned"), v1.version);
    let agent = agent(
        parse(&settings_json(&emu, &scratch, &[pinned_url])),
        &scratch,
    );
    let reports = agent.engine.sync_all().await;
    assert_eq!(reports[0].result, SyncResult::Installed);
    assert_eq!(linked_version(&scratch, "pinned"), v1.version);
    emu.rotate_certificate(VAULT, "pinned").unwrap();
    let reports = agent.engine.sync_all().await;
    assert_eq!(reports[0].result, SyncResult::Unchanged);
    assert_eq!(linked_version(&scratch, "pinned"), v1.version);
    emu.shutdown().await;
}

/// An agent observing `secrets` of the test vault, with its state under `scratch`.
fn agent_for(emu: &Emulator, scratch: &Scratch, secrets: &[&str]) -> Agent {
    let urls: Vec<String> = secrets.iter().map(|s| url(s)).collect();
    agent(parse(&settings_json(emu, scratch, &urls)), scratch)
}

#[tokio::test]
async fn one_bad_certificate_does_not_block_the_others_and_redirects_are_refused() {
    let emu = emulator().await;
    emu.rotate_certificate(VAULT, "good").unwrap();
    emu.rotate_certificate(VAULT, "redirected").unwrap();
    let scratch = Scratch::new("isolation");
    let urls = [url("good"), url("missing"), url("redirected")];
    let agent = agent(parse(&settings_json(&emu, &scratch, &urls)), &scratch);
    emu.inject(Fault::object(
        VAULT,
        "redirected",
        FaultKind::Redirect {
            status: 302,
            location: "https://evil.example.com/steal".into(),
        },
        10,
    ));
    let reports = agent.engine.sync_all().await;
    assert_eq!(result_of(&reports, "good").result, SyncResult::Installed);
    let SyncResult::Failed(missing) = &result_of(&reports, "missing").result else {
        panic!()
    };
    assert!(
        missing.contains("404") && missing.contains("SecretNotFound"),
        "{missing}"
    );
    let SyncResult::Failed(redirect) = &result_of(&reports, "redirected").result else {
        panic!()
    };
    assert!(redirect.contains("redirects are refused"), "{redirect}");
    assert_eq!(
        emu.counters().unknown_host,
        0,
        "nothing followed the redirect"
    );
    assert!(!link(&scratch, "redirected").exists());
    emu.shutdown().await;
}

#[tokio::test]
async fn once_and_status_commands() {
    let emu = emulator().await;
    let imported = emu.rotate_certificate(VAULT, "cli").unwrap();
    let scratch = Scratch::new("cli");
    let settings_file = scratch.0.join("settings.json");
    fs::write(
        &settings_file,
        settings_json(&emu, &scratch, &[url("cli")]).to_string(),
    )
    .unwrap();
    let state = scratch.0.join("state");
    let run = |args: &[&str]| {
        let exe = env!("CARGO_BIN_EXE_akvsync");
        let mut command = tokio::process::Command::new(exe);
        command
            .args(args)
            .arg("--settings")
            .arg(&settings_file)
            .arg("--state-dir")
            .arg(&state);
        command.output()
    };
    let out = run(&["once"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&imported.thumbprint) && stdout.contains("installed"),
        "{stdout}"
    );

    let out = run(&["status", "--json"]).await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let installed = &json["certificates"][0]["installed"];
    assert_eq!(installed["thumbprint"], imported.thumbprint.as_str());
    assert_eq!(installed["version"], imported.version.as_str());
    assert_eq!(installed["dnsNames"][0], "cli.example.test");

    // Without --settings, status reads the settings `once` last used from the state directory.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .args(["status", "--json", "--state-dir"])
        .arg(&state)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let remembered: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        remembered["certificates"][0]["installed"]["thumbprint"],
        imported.thumbprint.as_str()
    );

    // A certificate that cannot be fetched makes `once` exit 1.
    fs::write(
        &settings_file,
        settings_json(&emu, &scratch, &[url("cli"), url("absent")]).to_string(),
    )
    .unwrap();
    let out = run(&["once"]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    emu.shutdown().await;
}

/// Waits until `check` holds, polling every 50 ms, for at most `limit`.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

#[tokio::test]
async fn run_polls_picks_up_rotation_reloads_on_sighup_and_stops_on_sigterm() {
    let emu = emulator().await;
    emu.rotate_certificate(VAULT, "svc").unwrap();
    emu.rotate_certificate(VAULT, "added").unwrap();
    let scratch = Scratch::new("run");
    let settings_file = scratch.0.join("settings.json");
    fs::write(
        &settings_file,
        settings_json(&emu, &scratch, &[url("svc")]).to_string(),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .arg("run")
        .arg("--settings")
        .arg(&settings_file)
        .arg("--state-dir")
        .arg(scratch.0.join("state"))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    // Collect the service's log as it is written, to wait on what it reports.
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let sink = Arc::clone(&log);
    let reader = tokio::spawn(async move {
        let mut line = String::new();
        while tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut line)
            .await
            .unwrap_or(0)
            > 0
        {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    let logged = |text: &'static str| {
        let log = Arc::clone(&log);
        move || log.lock().unwrap().contains(text)
    };

    assert!(
        eventually(Duration::from_secs(10), || link(&scratch, "svc").exists()).await,
        "first sync"
    );
    let v2 = emu.rotate_certificate(VAULT, "svc").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || linked_version(&scratch, "svc")
            == v2.version)
        .await,
        "rotation installed on a later poll"
    );

    // A broken settings file on SIGHUP keeps the last good settings running.
    fs::write(&settings_file, "{ not json").unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        eventually(Duration::from_secs(10), logged("settings are invalid")).await,
        "the invalid reload is reported"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running after an invalid reload"
    );
    // A valid one takes effect.
    fs::write(
        &settings_file,
        settings_json(&emu, &scratch, &[url("svc"), url("added")]).to_string(),
    )
    .unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || link(&scratch, "added").exists()).await,
        "reloaded settings"
    );

    let stopping = std::time::Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("stops promptly")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopping.elapsed()
    );
    reader.await.unwrap();
    let log = log.lock().unwrap().clone();
    assert!(log.contains("installed"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    emu.shutdown().await;
}

#[tokio::test]
async fn hooks_run_once_per_change_with_the_certificate_in_their_environment() {
    let emu = emulator().await;
    let v1 = emu.rotate_certificate(VAULT, "hooked").unwrap();
    emu.rotate_certificate(VAULT, "other").unwrap();
    let scratch = Scratch::new("hooks");
    let log = scratch.0.join("hook.log");
    let mut json = settings_json(&emu, &scratch, &[url("hooked"), url("other")]);
    json["akvsync"]["hooks"] = serde_json::json!([
        {"command": ["/bin/sh", "-c", format!("echo \"$AKVSYNC_CERTIFICATE $AKVSYNC_VERSION $AKVSYNC_THUMBPRINT $AKVSYNC_TARGET\" >> {}", log.display())],
         "certificates": [format!("{VAULT}/hooked")]},
        {"command": "echo broken >&2; exit 3", "certificates": [format!("{VAULT}/other")]},
        {"command": ["sleep", "30"], "certificates": [format!("{VAULT}/other")], "timeoutInS": 1},
    ]);
    let agent = agent(parse(&json), &scratch);

    let reports = agent.engine.sync_all().await;
    let lines = || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        lines(),
        vec![format!(
            "{VAULT}/hooked {} {} {}",
            v1.version,
            v1.thumbprint,
            link(&scratch, "hooked").display()
        )]
    );
    let other = result_of(&reports, "other");
    assert_eq!(
        other.result,
        SyncResult::Failed("installed, hook failing: /bin/sh: exit status: 3: broken".to_owned()),
        "installed, but not served while a hook fails"
    );
    assert!(
        other.version.is_some() && other.thumbprint.is_some(),
        "a failing hook does not undo the install"
    );
    assert_eq!(other.warnings.len(), 2, "{:?}", other.warnings);
    assert!(
        other.warnings[0].contains("exit status: 3") && other.warnings[0].contains("broken"),
        "{:?}",
        other.warnings
    );
    assert!(
        other.warnings[1].contains("killed after 1 s"),
        "{:?}",
        other.warnings
    );

    let reports = agent.engine.sync_all().await;
    assert_eq!(
        lines().len(),
        1,
        "no hook when nothing changed and it succeeded"
    );
    let other = result_of(&reports, "other");
    assert_eq!(
        other.warnings.len(),
        2,
        "failing hooks are retried at the next poll: {:?}",
        other.warnings
    );
    assert!(!other.is_current());

    let v2 = emu.rotate_certificate(VAULT, "hooked").unwrap();
    agent.engine.sync_all().await;
    let lines = lines();
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains(&v2.version));
    emu.shutdown().await;
}

#[tokio::test]
async fn azure_arc_basic_challenge_is_answered_only_from_the_token_directory() {
    let emu = emulator().await;
    emu.set_identity_mode(kvemu::IdentityMode::Arc);
    emu.rotate_certificate(VAULT, "arc").unwrap();
    let scratch = Scratch::new("arc");
    let settings = parse(&settings_json(&emu, &scratch, &[url("arc")]));

    // The key file lies outside the directory this credential trusts: refused.
    let wrong = Arc::new(Credential::new(&settings.identity, scratch.0.clone(), FAST).unwrap());
    let err = wrong.token("https://vault.azure.net").await.unwrap_err();
    assert!(err.to_string().contains("is not a .key file in"), "{err}");

    let trusted =
        Credential::new(&settings.identity, emu.arc_token_dir().to_owned(), FAST).unwrap();
    let token = trusted.token("https://vault.azure.net").await.unwrap();
    assert!(token.expires_on > 0);
    assert_eq!(
        trusted.request_count(),
        3,
        "IMDS api-version refused, Arc challenge, answer"
    );
    trusted.token("https://vault.azure.cn").await.unwrap();
    assert_eq!(
        trusted.request_count(),
        5,
        "Arc is remembered: challenge and answer only"
    );
    emu.shutdown().await;
}

/// A CONNECT proxy on loopback that tunnels every vault host to the emulator and records
/// what it was asked for.
async fn connect_proxy(
    vault_addr: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                let mut request_line = String::new();
                client.read_line(&mut request_line).await.unwrap();
                loop {
                    let mut header = String::new();
                    client.read_line(&mut header).await.unwrap();
                    if header.trim().is_empty() {
                        break;
                    }
                }
                log.lock().unwrap().push(request_line.trim().to_owned());
                let mut upstream = tokio::net::TcpStream::connect(vault_addr).await.unwrap();
                let mut client = client.into_inner();
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (address, seen)
}

#[tokio::test]
async fn vault_traffic_goes_through_https_proxy_and_identity_never_does() {
    let emu = emulator().await;
    let imported = emu.rotate_certificate(VAULT, "proxied").unwrap();
    let (proxy, seen) = connect_proxy(emu.vault_addr()).await;
    let scratch = Scratch::new("proxy");
    let settings_file = scratch.0.join("settings.json");
    fs::write(
        &settings_file,
        settings_json(&emu, &scratch, &[url("proxied")]).to_string(),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .args(["once", "--settings"])
        .arg(&settings_file)
        .arg("--state-dir")
        .arg(scratch.0.join("state"))
        .env("HTTPS_PROXY", format!("http://{proxy}"))
        .env("HTTP_PROXY", format!("http://{proxy}"))
        .env("ALL_PROXY", format!("http://{proxy}"))
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(linked_version(&scratch, "proxied"), imported.version);
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the vault request went through the proxy");
    assert!(
        seen.iter()
            .all(|line| line == &format!("CONNECT {VAULT}.vault.azure.net:443 HTTP/1.1")),
        "{seen:?}"
    );
    assert!(
        emu.counters().identity >= 1,
        "the identity endpoint was reached directly"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn require_initial_sync_holds_readiness_until_every_certificate_is_installed() {
    let emu = emulator().await;
    emu.rotate_certificate(VAULT, "present").unwrap();
    let scratch = Scratch::new("ready");
    let socket_path = scratch.0.join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let mut json = settings_json(&emu, &scratch, &[url("present"), url("later")]);
    json["secretsManagementSettings"]["requireInitialSync"] = serde_json::json!(true);
    let settings_file = scratch.0.join("settings.json");
    fs::write(&settings_file, json.to_string()).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .args(["run", "--settings"])
        .arg(&settings_file)
        .arg("--state-dir")
        .arg(scratch.0.join("state"))
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut messages = Vec::new();
    let mut buffer = [0u8; 512];
    // The first retry comes after ~5 s; in the first 3 s only "present" can be installed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, notify.recv(&mut buffer)).await {
        messages.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
    }
    assert!(link(&scratch, "present").exists());
    assert!(
        !messages.iter().any(|m| m.contains("READY=1")),
        "READY before every certificate: {messages:?}"
    );

    let later = emu.rotate_certificate(VAULT, "later").unwrap();
    let ready = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let n = notify.recv(&mut buffer).await.unwrap();
            let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
            if message.contains("READY=1") {
                return message;
            }
        }
    })
    .await
    .expect("READY once the missing certificate appears");
    assert!(ready.contains("STATUS=polling"), "{ready}");
    assert_eq!(linked_version(&scratch, "later"), later.version);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn pfx_in_key_vaults_form_and_openssls_form_and_pem_all_install() {
    let emu = emulator().await;
    let seeded = emu.seed(VAULT).unwrap();
    let forms: Vec<&str> = seeded.iter().map(|i| i.content_type.as_str()).collect();
    assert_eq!(
        forms,
        [
            "application/x-pkcs12",
            "application/x-pkcs12",
            "application/x-pem-file"
        ]
    );
    let scratch = Scratch::new("forms");
    let urls: Vec<String> = seeded.iter().map(|i| url(&i.name)).collect();
    let agent = agent(parse(&settings_json(&emu, &scratch, &urls)), &scratch);
    let reports = agent.engine.sync_all().await;
    for imported in &seeded {
        let report = result_of(&reports, &imported.name);
        assert_eq!(report.result, SyncResult::Installed, "{report:?}");
        assert_eq!(
            report.thumbprint.as_deref(),
            Some(imported.thumbprint.as_str()),
            "{}",
            imported.name
        );
        let pem = fs::read_to_string(link(&scratch, &imported.name)).unwrap();
        let bundle = akvsync::decode::decode_pem(&pem).unwrap();
        assert_eq!(bundle.leaf.thumbprint, imported.thumbprint);
        assert_eq!(
            bundle.chain.len(),
            2,
            "{}: intermediate and root",
            imported.name
        );
    }
    // A PFX rotation keeps its form and is picked up like any other.
    let rotated = emu.rotate_certificate(VAULT, &seeded[0].name).unwrap();
    assert_eq!(rotated.content_type, "application/x-pkcs12");
    agent.engine.sync_all().await;
    assert_eq!(linked_version(&scratch, &seeded[0].name), rotated.version);
    // A PFX that does not decode keeps the installed one.
    emu.rotate_certificate(VAULT, &seeded[0].name).unwrap();
    emu.inject(Fault::object(VAULT, &seeded[0].name, FaultKind::BadPfx, 10));
    let reports = agent.engine.sync_all().await;
    let SyncResult::Failed(message) = &result_of(&reports, &seeded[0].name).result else {
        panic!("{reports:?}")
    };
    assert!(message.contains("PKCS#12"), "{message}");
    assert_eq!(linked_version(&scratch, &seeded[0].name), rotated.version);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_disabled_or_expired_secret_version_is_reported_and_the_installed_one_stays() {
    let emu = emulator().await;
    let v1 = emu.rotate_certificate(VAULT, "lifecycle").unwrap();
    let scratch = Scratch::new("lifecycle");
    let agent = agent_for(&emu, &scratch, &["lifecycle"]);
    agent.engine.sync_all().await;
    let v2 = emu.rotate_certificate(VAULT, "lifecycle").unwrap();
    assert!(emu.set_secret_enabled(VAULT, "lifecycle", Some(&v2.version), false));
    let reports = agent.engine.sync_all().await;
    assert!(
        matches!(reports[0].result, SyncResult::Failed(_)),
        "{reports:?}"
    );
    assert_eq!(
        linked_version(&scratch, "lifecycle"),
        v1.version,
        "installed version stays"
    );
    assert!(emu.set_secret_enabled(VAULT, "lifecycle", Some(&v2.version), true));
    let reports = agent.engine.sync_all().await;
    assert_eq!(reports[0].result, SyncResult::Installed);
    assert_eq!(linked_version(&scratch, "lifecycle"), v2.version);
    emu.shutdown().await;
}
