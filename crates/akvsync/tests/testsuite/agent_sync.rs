//! The agent against the emulator over real HTTPS on loopback: first sync, no-op polls,
//! rotation, pinned versions, isolation of failures, refused redirects, and the
//! `once`/`status` commands. Throttling, identity outages, corrupt blobs and every other
//! injected fault are in `fault_matrix.rs`. Real-shaped vault URLs
//! (`https://<vault>.vault.azure.net/…`) with the testing `connectTo`; URL validation,
//! challenge verification and the token-to-vault-host rule stay on.
#![cfg(target_os = "linux")]

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akvsync::backoff::Backoff;
use akvsync::identity::Credential;
use akvsync::sync::SyncResult;
use kvemu::{Fault, FaultKind};
use nix::sys::signal::Signal;

use crate::common::agent::{Agent, failure, link, linked_version, observe, parse, report};
use crate::common::env::{Env, EnvConfig, VAULT, akvsync};
use crate::common::faults::FaultScope;
use crate::common::probe::RequestProbe;
use crate::common::service::{Service, alive};
use crate::common::wait_until;

/// Fast retries so that outage tests take seconds, not minutes.
const FAST: Backoff = Backoff {
    initial: Duration::from_millis(50),
    max: Duration::from_millis(200),
    attempts: 5,
};

/// An environment and the agent observing `secrets` in it.
fn agent_env(secrets: &[&str]) -> (Env, Agent) {
    let env = Env::start(EnvConfig::default());
    let agent = Agent::new(&env, &observe(&env, secrets), FAST, FAST);
    (env, agent)
}

/// An agent that installed the first version of `secret`, and a second version in the vault
/// that it has not seen yet.
fn installed_then_rotated(secret: &str) -> (Env, Agent, kvemu::Imported, kvemu::Imported) {
    let (env, agent) = agent_env(&[secret]);
    let v1 = rotate(&env, secret);
    assert_eq!(agent.sync()[0].result, SyncResult::Installed);
    let v2 = rotate(&env, secret);
    (env, agent, v1, v2)
}

fn rotate(env: &Env, secret: &str) -> kvemu::Imported {
    env.emu.rotate_certificate(VAULT, secret).unwrap()
}

fn version(env: &Env, secret: &str) -> String {
    linked_version(env, secret).unwrap_or_else(|| panic!("{secret} is not installed"))
}

fn mtime(path: &Path) -> std::time::SystemTime {
    fs::symlink_metadata(path).unwrap().modified().unwrap()
}

#[test]
fn first_sync_installs_then_polls_write_nothing_and_cost_one_get() {
    let env = Env::start(EnvConfig::default());
    let rsa = rotate(&env, "web-rsa");
    let dns = "api-ec.example.test";
    let issued = env.emu.test_pki().unwrap();
    let issued = issued
        .issue(dns, &[dns.to_owned()], kvemu::seed::LeafKey::EcP256, 365)
        .unwrap();
    let ec = env
        .emu
        .import_pem(VAULT, "api-ec", &issued.pem_key_first(), kvemu::CT_PEM)
        .unwrap();
    let agent = Agent::new(&env, &observe(&env, &["web-rsa", "api-ec"]), FAST, FAST);

    let reports = agent.sync();
    for (name, imported) in [("web-rsa", &rsa), ("api-ec", &ec)] {
        let report = report(&reports, name);
        assert_eq!(report.result, SyncResult::Installed, "{report:?}");
        assert_eq!(report.version.as_deref(), Some(imported.version.as_str()));
        let thumbprint = Some(imported.thumbprint.as_str());
        assert_eq!(report.thumbprint.as_deref(), thumbprint);
        assert_eq!(version(&env, name), imported.version);
        let pem = fs::read_to_string(link(&env, name)).unwrap();
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
    let tokens = agent.credential.request_count();
    assert_eq!(tokens, 1, "one token for both certificates");

    let files: Vec<_> = fs::read_dir(env.scratch.store())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let before: Vec<_> = files.iter().map(|p| mtime(p)).collect();
    let vault_before = agent.vault.request_count();
    let probe = RequestProbe::new(&env.emu);
    std::thread::sleep(Duration::from_millis(20));

    let reports = agent.sync();
    let unchanged = reports.iter().all(|r| r.result == SyncResult::Unchanged);
    assert!(unchanged, "{reports:?}");
    let gets = agent.vault.request_count() - vault_before;
    assert_eq!(gets, 2, "one GET per certificate");
    let tokens = probe.identity();
    assert_eq!(tokens, 0, "no token request while the token is valid");
    let after: Vec<_> = files.iter().map(|p| mtime(p)).collect();
    assert_eq!(before, after, "nothing written when nothing changed");
}

#[test]
fn rotation_is_installed_and_the_previous_version_kept_then_pruned() {
    let (env, agent, v1, v2) = installed_then_rotated("rot");
    assert_eq!(agent.sync()[0].result, SyncResult::Installed);
    assert_eq!(version(&env, "rot"), v2.version);
    let kept = |v: &kvemu::Imported| link(&env, &format!("rot.{}", v.version)).exists();
    assert!(kept(&v1), "previous kept");
    let v3 = rotate(&env, "rot");
    agent.sync();
    assert_eq!(version(&env, "rot"), v3.version);
    assert!(!kept(&v1), "pruned past 2 versions");
    assert!(kept(&v2));
}

#[test]
fn a_pinned_version_never_moves() {
    let env = Env::start(EnvConfig::default());
    let v1 = rotate(&env, "pinned");
    rotate(&env, "pinned");
    let pinned = format!("pinned/{}", v1.version);
    let agent = Agent::new(&env, &observe(&env, &[&pinned]), FAST, FAST);
    assert_eq!(agent.sync()[0].result, SyncResult::Installed);
    assert_eq!(version(&env, "pinned"), v1.version);
    rotate(&env, "pinned");
    assert_eq!(agent.sync()[0].result, SyncResult::Unchanged);
    assert_eq!(version(&env, "pinned"), v1.version);
}

#[test]
fn one_bad_certificate_does_not_block_the_others_and_redirects_are_refused() {
    let (env, agent) = agent_env(&["good", "missing", "redirected"]);
    rotate(&env, "good");
    rotate(&env, "redirected");
    let location = "https://evil.example.com/steal".into();
    let redirect = FaultKind::Redirect {
        status: 302,
        location,
    };
    let _faults =
        FaultScope::new(&env.emu).inject(Fault::object(VAULT, "redirected", redirect, 10));
    let probe = RequestProbe::new(&env.emu);
    let reports = agent.sync();
    assert_eq!(report(&reports, "good").result, SyncResult::Installed);
    let missing = failure(report(&reports, "missing"));
    let named = missing.contains("404") && missing.contains("SecretNotFound");
    assert!(named, "{missing}");
    let redirect = failure(report(&reports, "redirected"));
    assert!(redirect.contains("redirects are refused"), "{redirect}");
    assert_eq!(probe.unknown_host(), 0, "nothing followed the redirect");
    assert!(!link(&env, "redirected").exists());
}

#[test]
fn once_and_status_commands() {
    let env = Env::start(EnvConfig::default());
    let imported = rotate(&env, "cli");
    observe(&env, &["cli"]);
    env.cmd(&["once"])
        .code(0)
        .stdout_has(&imported.thumbprint)
        .stdout_has("installed")
        .run();

    let out = env.cmd(&["status", "--json"]).code(0).run();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let installed = &json["certificates"][0]["installed"];
    assert_eq!(installed["thumbprint"], imported.thumbprint.as_str());
    assert_eq!(installed["version"], imported.version.as_str());
    assert_eq!(installed["dnsNames"][0], "cli.example.test");

    // Without --settings, status reads the settings `once` last used from the state directory.
    let out = akvsync(&["status", "--json", "--state-dir"])
        .arg(env.scratch.state())
        .code(0)
        .run();
    let remembered: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        remembered["certificates"][0]["installed"]["thumbprint"],
        imported.thumbprint.as_str()
    );

    // A certificate that cannot be fetched makes `once` exit 1.
    observe(&env, &["cli", "absent"]);
    env.cmd(&["once"]).code(1).run();
}

#[test]
fn run_polls_picks_up_rotation_reloads_on_sighup_and_stops_on_sigterm() {
    let env = Env::start(EnvConfig::default());
    rotate(&env, "svc");
    rotate(&env, "added");
    observe(&env, &["svc"]);
    let mut service = Service::spawn(env.run_command(&[]));
    let limit = Duration::from_secs(10);
    let exists = |secret: &str| {
        link(&env, secret)
            .exists()
            .then_some(())
            .ok_or_else(|| "absent".to_owned())
    };
    wait_until(limit, "first sync", || exists("svc"));
    let v2 = rotate(&env, "svc");
    wait_until(limit, "rotation installed on a later poll", || {
        let linked = linked_version(&env, "svc");
        (linked.as_ref() == Some(&v2.version))
            .then_some(())
            .ok_or(format!("{linked:?}"))
    });

    // A broken settings file on SIGHUP keeps the last good settings running.
    fs::write(env.settings_file(), "{ not json").unwrap();
    service.signal(Signal::SIGHUP);
    service.wait_log("settings are invalid", limit);
    assert!(
        alive(service.pid()),
        "still running after an invalid reload"
    );
    // A valid one takes effect.
    observe(&env, &["svc", "added"]);
    service.signal(Signal::SIGHUP);
    wait_until(limit, "reloaded settings", || exists("added"));

    let stopping = Instant::now();
    service.signal(Signal::SIGTERM);
    wait_until(Duration::from_secs(5), "stops promptly", || {
        (!alive(service.pid()))
            .then_some(())
            .ok_or_else(|| "running".to_owned())
    });
    // Its last words reach the log after the exit.
    wait_until(Duration::from_secs(5), "the log ends", || {
        let log = service.log();
        log.contains("stopped").then_some(()).ok_or(log)
    });
    let log = service.log();
    let status = service.stop();
    assert!(status.success(), "{status:?}");
    let elapsed = stopping.elapsed();
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert!(log.contains("installed"), "{log}");
}

#[test]
fn hooks_run_once_per_change_with_the_certificate_in_their_environment() {
    let env = Env::start(EnvConfig::default());
    let v1 = rotate(&env, "hooked");
    rotate(&env, "other");
    let log = env.scratch.path("hook.log");
    let mut json = observe(&env, &["hooked", "other"]);
    let echo = "echo \"$AKVSYNC_CERTIFICATE $AKVSYNC_VERSION $AKVSYNC_THUMBPRINT $AKVSYNC_TARGET\"";
    json["akvsync"]["hooks"] = serde_json::json!([
        {"command": ["/bin/sh", "-c", format!("{echo} >> {}", log.display())],
         "certificates": [format!("{VAULT}/hooked")]},
        {"command": "echo broken >&2; exit 3", "certificates": [format!("{VAULT}/other")]},
        {"command": ["sleep", "30"], "certificates": [format!("{VAULT}/other")], "timeoutInS": 1},
    ]);
    let agent = Agent::new(&env, &json, FAST, FAST);

    let reports = agent.sync();
    let lines = || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        text.lines().map(str::to_owned).collect::<Vec<_>>()
    };
    let target = link(&env, "hooked");
    let expected = format!(
        "{VAULT}/hooked {} {} {}",
        v1.version,
        v1.thumbprint,
        target.display()
    );
    assert_eq!(lines(), vec![expected]);
    let other = report(&reports, "other");
    assert_eq!(
        other.result,
        SyncResult::Failed("installed, hook failing: /bin/sh: exit status: 3: broken".to_owned()),
        "installed, but not served while a hook fails"
    );
    let installed = other.version.is_some() && other.thumbprint.is_some();
    assert!(installed, "a failing hook does not undo the install");
    let warnings = &other.warnings;
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let first = warnings[0].contains("exit status: 3") && warnings[0].contains("broken");
    assert!(first, "{warnings:?}");
    assert!(warnings[1].contains("killed after 1 s"), "{warnings:?}");

    let reports = agent.sync();
    let hooks_run = lines().len();
    assert_eq!(
        hooks_run, 1,
        "no hook when nothing changed and it succeeded"
    );
    let other = report(&reports, "other");
    let warnings = &other.warnings;
    assert_eq!(
        warnings.len(),
        2,
        "failing hooks are retried at the next poll: {warnings:?}"
    );
    assert!(!other.is_current());

    let v2 = rotate(&env, "hooked");
    agent.sync();
    let lines = lines();
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains(&v2.version));
}

#[test]
fn azure_arc_basic_challenge_is_answered_only_from_the_token_directory() {
    let env = Env::start(EnvConfig::default());
    env.emu.set_identity_mode(kvemu::IdentityMode::Arc);
    rotate(&env, "arc");
    observe(&env, &["arc"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let settings = parse(&env.settings_json());
    let credential = |dir: &Path| Credential::new(&settings.identity, dir.to_owned(), FAST);
    let vault = "https://vault.azure.net";

    // The key file lies outside the directory this credential trusts: refused.
    let wrong = Arc::new(credential(&env.scratch.0).unwrap());
    let err = rt.block_on(wrong.token(vault)).unwrap_err();
    assert!(err.to_string().contains("is not a .key file in"), "{err}");

    let trusted = credential(env.emu.arc_token_dir()).unwrap();
    let token = rt.block_on(trusted.token(vault)).unwrap();
    assert!(token.expires_on > 0);
    let requests = trusted.request_count();
    assert_eq!(
        requests, 3,
        "IMDS api-version refused, Arc challenge, answer"
    );
    rt.block_on(trusted.token("https://vault.azure.cn"))
        .unwrap();
    let requests = trusted.request_count();
    assert_eq!(requests, 5, "Arc is remembered: challenge and answer only");
}

/// A CONNECT proxy on loopback that tunnels every vault host to the emulator and records
/// what it was asked for.
async fn connect_proxy(
    vault_addr: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
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

#[test]
fn vault_traffic_goes_through_https_proxy_and_identity_never_does() {
    let env = Env::start(EnvConfig::default());
    let imported = rotate(&env, "proxied");
    observe(&env, &["proxied"]);
    // The proxy runs on a runtime of its own while `once` runs.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (proxy, seen) = rt.block_on(connect_proxy(env.emu.vault_addr()));
    let proxy = format!("http://{proxy}");
    env.cmd(&["once"])
        .env("HTTPS_PROXY", &proxy)
        .env("HTTP_PROXY", &proxy)
        .env("ALL_PROXY", &proxy)
        .code(0)
        .run();
    assert_eq!(version(&env, "proxied"), imported.version);
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the vault request went through the proxy");
    let connect = format!("CONNECT {VAULT}.vault.azure.net:443 HTTP/1.1");
    assert!(seen.iter().all(|line| line == &connect), "{seen:?}");
    let identity = env.emu.counters().identity;
    assert!(identity >= 1, "the identity endpoint was reached directly");
}

#[test]
fn require_initial_sync_holds_readiness_until_every_certificate_is_installed() {
    let env = Env::start(EnvConfig {
        secrets_management: Some(serde_json::json!({"requireInitialSync": true})),
        ..Default::default()
    });
    rotate(&env, "present");
    observe(&env, &["present", "later"]);
    let socket_path = env.scratch.path("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    let mut run = env.run_command(&[]);
    run.env("NOTIFY_SOCKET", &socket_path);
    let service = Service::spawn(run);
    // Every message that arrives before `deadline`, until one contains READY=1.
    let receive = |deadline: Instant| {
        let mut messages = Vec::new();
        let mut buffer = [0u8; 512];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            notify
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok(n) = notify.recv(&mut buffer) else {
                break;
            };
            messages.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
            if messages.last().unwrap().contains("READY=1") {
                break;
            }
        }
        messages
    };
    // The first retry comes after ~5 s; in the first 3 s only "present" can be installed.
    let messages = receive(Instant::now() + Duration::from_secs(3));
    assert!(link(&env, "present").exists());
    let ready = messages.iter().any(|m| m.contains("READY=1"));
    assert!(!ready, "READY before every certificate: {messages:?}");

    let later = rotate(&env, "later");
    let messages = receive(Instant::now() + Duration::from_secs(15));
    let ready = messages.iter().find(|m| m.contains("READY=1"));
    let ready = ready.expect("READY once the missing certificate appears");
    assert!(ready.contains("STATUS=polling"), "{ready}");
    assert_eq!(version(&env, "later"), later.version);
    service.stop();
}

#[test]
fn pfx_in_key_vaults_form_and_openssls_form_and_pem_all_install() {
    let env = Env::start(EnvConfig::default());
    let seeded = env.emu.seed(VAULT).unwrap();
    let forms: Vec<&str> = seeded.iter().map(|i| i.content_type.as_str()).collect();
    let pfx = "application/x-pkcs12";
    assert_eq!(forms, [pfx, pfx, "application/x-pem-file"]);
    let names: Vec<&str> = seeded.iter().map(|i| i.name.as_str()).collect();
    let agent = Agent::new(&env, &observe(&env, &names), FAST, FAST);
    let reports = agent.sync();
    for imported in &seeded {
        let name = &imported.name;
        let report = report(&reports, name);
        assert_eq!(report.result, SyncResult::Installed, "{report:?}");
        let thumbprint = Some(imported.thumbprint.as_str());
        assert_eq!(report.thumbprint.as_deref(), thumbprint, "{name}");
        let pem = fs::read_to_string(link(&env, name)).unwrap();
        let bundle = akvsync::decode::decode_pem(&pem).unwrap();
        assert_eq!(bundle.leaf.thumbprint, imported.thumbprint);
        assert_eq!(bundle.chain.len(), 2, "{name}: intermediate and root");
    }
    // A PFX rotation keeps its form and is picked up like any other.
    let first = seeded[0].name.as_str();
    let rotated = rotate(&env, first);
    assert_eq!(rotated.content_type, pfx);
    agent.sync();
    assert_eq!(version(&env, first), rotated.version);
    // A PFX that does not decode keeps the installed one.
    rotate(&env, first);
    let _bad = FaultScope::new(&env.emu).inject(Fault::object(VAULT, first, FaultKind::BadPfx, 10));
    let reports = agent.sync();
    let message = failure(report(&reports, first));
    assert!(message.contains("PKCS#12"), "{message}");
    assert_eq!(version(&env, first), rotated.version);
}

#[test]
fn a_disabled_or_expired_secret_version_is_reported_and_the_installed_one_stays() {
    let (env, agent, v1, v2) = installed_then_rotated("lifecycle");
    let enable = |on| {
        env.emu
            .set_secret_enabled(VAULT, "lifecycle", Some(&v2.version), on)
    };
    assert!(enable(false));
    let reports = agent.sync();
    let failed = matches!(reports[0].result, SyncResult::Failed(_));
    assert!(failed, "{reports:?}");
    assert_eq!(
        version(&env, "lifecycle"),
        v1.version,
        "installed version stays"
    );
    assert!(enable(true));
    assert_eq!(agent.sync()[0].result, SyncResult::Installed);
    assert_eq!(version(&env, "lifecycle"), v2.version);
}
