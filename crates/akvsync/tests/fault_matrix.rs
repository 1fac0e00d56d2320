//! The fault matrix (issue 8): every fault kind of the emulator, injected on the identity
//! endpoint and on the vault, at the first sync (nothing installed yet) and during
//! steady-state polling (a good certificate installed, a newer version waiting, then the
//! fault starts). For each cell: the last good certificate is kept byte for byte (first
//! sync: nothing at all is written), the error names its cause (in the sync report and in
//! `akvsync status --json`), the faulted endpoint sees a bounded number of requests spaced
//! by backoff (emulator counters over the poll), and the next poll after the fault clears
//! installs the newest version.
//!
//! The matrix cells run the real engine in-process with the product's attempt counts and
//! shortened delays (so that a cell takes seconds); the product's real delays are checked
//! through the binary: `once` (exit code, message, request counts against the real vault
//! backoff), and `run` (request windows during an outage, token refresh ahead of expiry,
//! skewed `expires_on`, peak RSS while 1 GiB bodies are refused). The table is in
//! docs/reliability.md, section "Fault matrix".
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akvsync::backoff::Backoff;
use akvsync::identity::Credential;
use akvsync::settings::{self, Platform, Settings};
use akvsync::state::StateDir;
use akvsync::sync::{Engine, Report, SyncResult};
use akvsync::vault::{VaultClient, VaultOptions};
use kvemu::{Config, Emulator, Fault, FaultKind};

use common::Scratch;

const VAULT: &str = "faultkv";
const SECRET: &str = "web";
const GIB: u64 = 1 << 30;
/// The agent's whole-request timeout (`http::REQUEST_TIMEOUT`): hangs and slow drips are
/// cut here.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The product's attempt counts with short delays, so that a cell takes seconds.
const VAULT_RETRIES: Backoff = Backoff {
    initial: Duration::from_millis(50),
    max: Duration::from_millis(200),
    attempts: Backoff::VAULT.attempts,
};
const IDENTITY_RETRIES: Backoff = Backoff {
    initial: Duration::from_millis(50),
    max: Duration::from_millis(400),
    attempts: Backoff::IDENTITY.attempts,
};

/// The shortest total wait a full series of retries can take (full jitter keeps each
/// delay in `[base/2, base]`).
fn min_backoff(backoff: Backoff) -> Duration {
    (1..backoff.attempts)
        .map(|retry| (backoff.initial * 2u32.pow(retry - 1)).min(backoff.max) / 2)
        .sum()
}

fn url(secret: &str) -> String {
    format!("https://{VAULT}.vault.azure.net/secrets/{secret}")
}

/// Settings for `secrets`, pointed at the emulator through the testing overrides, also
/// written to the scratch directory for the CLI.
fn settings_json(emu: &Emulator, scratch: &Scratch, secrets: &[&str]) -> serde_json::Value {
    let urls: Vec<String> = secrets.iter().map(|s| url(s)).collect();
    let json = serde_json::json!({
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
    });
    fs::write(scratch.settings_file(), json.to_string()).unwrap();
    json
}

fn parse(json: &serde_json::Value) -> Settings {
    settings::parse_bytes(json.to_string().as_bytes(), Platform::Linux)
        .unwrap()
        .settings
}

/// The real engine, credential and vault client, with `vault_retries` for the vault.
fn engine(
    emu: &Emulator,
    scratch: &Scratch,
    secrets: &[&str],
    vault_retries: Backoff,
) -> Arc<Engine> {
    let settings = parse(&settings_json(emu, scratch, secrets));
    let credential = Arc::new(
        Credential::new(&settings.identity, scratch.0.join("arc"), IDENTITY_RETRIES).unwrap(),
    );
    let mut options = VaultOptions::from_settings(&settings).unwrap();
    options.backoff = Some(vault_retries);
    let vault = Arc::new(VaultClient::new(credential, &options).unwrap());
    let (engine, warnings) =
        Engine::new(settings, vault, StateDir::open(&scratch.state()).unwrap());
    assert!(warnings.is_empty(), "{warnings:?}");
    Arc::new(engine)
}

async fn emulator() -> Emulator {
    Emulator::start(Config::default()).await.unwrap()
}

/// A new version of `secret`: an EC leaf uploaded as a PFX in Key Vault's own form.
fn new_version(emu: &Emulator, secret: &str) -> kvemu::Imported {
    let dns = format!("{secret}.example.test");
    let issued = emu
        .test_pki()
        .unwrap()
        .issue(
            &dns,
            std::slice::from_ref(&dns),
            kvemu::seed::LeafKey::EcP256,
            365,
        )
        .unwrap();
    emu.import_pfx(
        VAULT,
        secret,
        &issued.pfx(kvemu::PfxForm::KeyVault).unwrap(),
        None,
        kvemu::CT_PKCS12,
    )
    .unwrap()
}

/// Every entry of the store directory: file contents, or link targets.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    File(Vec<u8>),
    Link(PathBuf),
    Other,
}

fn snapshot(dir: &Path) -> BTreeMap<String, Entry> {
    let Ok(entries) = fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| {
            let e = e.unwrap();
            let kind = e.file_type().unwrap();
            let entry = if kind.is_symlink() {
                Entry::Link(fs::read_link(e.path()).unwrap())
            } else if kind.is_file() {
                Entry::File(fs::read(e.path()).unwrap())
            } else {
                Entry::Other
            };
            (e.file_name().to_string_lossy().into_owned(), entry)
        })
        .collect()
}

fn link(scratch: &Scratch, secret: &str) -> PathBuf {
    scratch.store().join(format!("{VAULT}.{secret}"))
}

fn linked_version(scratch: &Scratch, secret: &str) -> Option<String> {
    let target = fs::read_link(link(scratch, secret)).ok()?;
    Some(
        target
            .file_name()?
            .to_string_lossy()
            .rsplit('.')
            .next()?
            .to_owned(),
    )
}

/// `akvsync status --json` for the scratch settings: (lastError, installed version).
async fn status(scratch: &Scratch) -> (Option<String>, Option<String>) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .args(["status", "--json", "--settings"])
        .arg(scratch.settings_file())
        .arg("--state-dir")
        .arg(scratch.state())
        .output()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = &json["certificates"][0];
    let last_error = entry["lastError"].as_str().map(str::to_owned);
    let version = entry["installed"]["version"].as_str().map(str::to_owned);
    // SPEC §10: exit 1 while the certificate is not installed or its last check failed.
    let served = last_error.is_none() && version.is_some();
    assert_eq!(
        out.status.code(),
        Some(if served { 0 } else { 1 }),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (last_error, version)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Identity,
    Vault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing installed yet.
    FirstSync,
    /// A good certificate installed and a newer version in the vault when the fault starts.
    Steady,
}

#[derive(Debug, Clone)]
enum Expect {
    /// The poll fails; the error contains one of `cause`; the faulted endpoint saw
    /// `requests`, spaced by at least the minimum backoff when more than one.
    Fails {
        cause: &'static [&'static str],
        requests: RangeInclusive<u64>,
    },
    /// The fault is ridden out within the poll (a retry or a wait succeeds) after
    /// `requests` to the faulted endpoint, taking at least `at_least`.
    Absorbed {
        requests: RangeInclusive<u64>,
        at_least: Duration,
    },
}

#[derive(Debug, Clone)]
struct Cell {
    name: &'static str,
    on: On,
    kind: FaultKind,
    /// The next N requests; `None`: every request until the fault is cleared.
    times: Option<u32>,
    expect: Expect,
    /// Vault retries of the agent under test (the product's count unless a cell needs one
    /// attempt to show the error of a timeout without waiting for three).
    vault_retries: Backoff,
}

impl Cell {
    fn new(
        name: &'static str,
        on: On,
        kind: FaultKind,
        times: Option<u32>,
        expect: Expect,
    ) -> Self {
        Cell {
            name,
            on,
            kind,
            times,
            expect,
            vault_retries: VAULT_RETRIES,
        }
    }

    /// The fault to inject into `emu` (a redirect's `{port}` is the emulator's).
    fn fault(&self, emu: &Emulator) -> Fault {
        let n = self.times.unwrap_or(1);
        let kind = match &self.kind {
            FaultKind::Redirect { status, location } => FaultKind::Redirect {
                status: *status,
                location: location.replace("{port}", &emu.vault_addr().port().to_string()),
            },
            other => other.clone(),
        };
        let fault = match self.on {
            On::Identity => Fault::identity(kind, n),
            On::Vault => Fault::object(VAULT, SECRET, kind, n),
        };
        if self.times.is_none() {
            fault.with_probability(1.0)
        } else {
            fault
        }
    }

    fn retries(&self) -> Backoff {
        match self.on {
            On::Identity => IDENTITY_RETRIES,
            On::Vault => self.vault_retries,
        }
    }
}

/// A persistent transient fault: every attempt of the product's retry series.
fn transient(cause: &'static [&'static str], on: On) -> Expect {
    let attempts = match on {
        On::Identity => Backoff::IDENTITY.attempts,
        On::Vault => Backoff::VAULT.attempts,
    };
    Expect::Fails {
        cause,
        requests: u64::from(attempts)..=u64::from(attempts),
    }
}

/// A permanent fault: one request, no retry within the poll (SPEC §10).
fn permanent(cause: &'static [&'static str]) -> Expect {
    Expect::Fails {
        cause,
        requests: 1..=1,
    }
}

fn requests_to(emu: &Emulator, on: On) -> u64 {
    let counters = emu.counters();
    match on {
        On::Identity => counters.identity,
        On::Vault => counters.object_requests(VAULT, SECRET),
    }
}

/// Runs one cell of the matrix in `phase` on its own emulator; panics naming the cell.
async fn run_cell(cell: Cell, phase: Phase) {
    let label = format!("{} on {:?} at {:?}", cell.name, cell.on, phase);
    let emu = emulator().await;
    let scratch = Scratch::new(cell.name);
    let v1 = new_version(&emu, SECRET);
    let engine = engine(&emu, &scratch, &[SECRET], cell.vault_retries);
    let mut newest = v1.version.clone();
    if phase == Phase::Steady {
        if cell.on == On::Identity {
            // Short tokens, so that the faulted poll needs a new one: the token expires
            // mid-run and the fault is on its refresh.
            emu.set_token_lifetime(Duration::from_secs(2));
        }
        let reports = engine.sync_all().await;
        assert_eq!(
            reports[0].result,
            SyncResult::Installed,
            "{label}: {reports:?}"
        );
        newest = new_version(&emu, SECRET).version;
        if cell.on == On::Identity {
            // Past the refresh point of the 2 s token (half its lifetime, second resolution).
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    let before = snapshot(&scratch.store());
    let identity_before = emu.counters().identity;
    let faulted_before = requests_to(&emu, cell.on);
    let vault_before = emu.counters().object_requests(VAULT, SECRET);
    emu.inject(cell.fault(&emu));

    let started = Instant::now();
    let reports = engine.sync_all().await;
    let elapsed = started.elapsed();
    let report: &Report = &reports[0];
    let requests = requests_to(&emu, cell.on) - faulted_before;
    let counters = emu.counters();
    assert_eq!(
        counters.unknown_host, 0,
        "{label}: a request left for another host"
    );
    if cell.on == On::Vault {
        // A cached token is reused; a first sync asks for exactly one; no fault (401
        // without a challenge, a foreign challenge) makes the agent ask for another.
        let expected = u64::from(phase == Phase::FirstSync);
        assert_eq!(
            counters.identity - identity_before,
            expected,
            "{label}: token requests"
        );
    }

    match &cell.expect {
        Expect::Fails {
            cause,
            requests: expected,
        } => {
            let SyncResult::Failed(message) = &report.result else {
                panic!("{label}: expected a failure, got {report:?}")
            };
            eprintln!("{label}: {requests} request(s) in {elapsed:?}: {message}");
            assert!(
                cause.iter().any(|c| message.contains(c)),
                "{label}: the error does not name its cause {cause:?}: {message}"
            );
            assert!(
                expected.contains(&requests),
                "{label}: {requests} requests, expected {expected:?} ({message})"
            );
            if requests > 1 {
                assert!(
                    elapsed >= min_backoff(cell.retries()),
                    "{label}: {requests} requests in {elapsed:?}: no backoff"
                );
            }
            if cell.on == On::Identity {
                assert_eq!(
                    counters.object_requests(VAULT, SECRET),
                    vault_before,
                    "{label}: no vault request without a token"
                );
            }
            // Nothing was written: the old certificate byte for byte, the link unchanged;
            // at the first sync, nothing at all (no half-installed file, no temporary).
            assert_eq!(
                snapshot(&scratch.store()),
                before,
                "{label}: the store changed"
            );
            match phase {
                Phase::FirstSync => assert!(before.is_empty(), "{label}: {before:?}"),
                Phase::Steady => {
                    assert_eq!(
                        linked_version(&scratch, SECRET).as_deref(),
                        Some(v1.version.as_str()),
                        "{label}"
                    );
                    assert_eq!(
                        report.version.as_deref(),
                        Some(v1.version.as_str()),
                        "{label}: the report names the installed version"
                    );
                }
            }
            // The error and the installed version as `status --json` shows them.
            let (last_error, installed) = status(&scratch).await;
            assert_eq!(last_error.as_deref(), Some(message.as_str()), "{label}");
            let expected_installed = (phase == Phase::Steady).then(|| v1.version.clone());
            assert_eq!(installed, expected_installed, "{label}");

            // The fault clears: the next poll installs the newest version.
            emu.clear_faults();
            let reports = engine.sync_all().await;
            assert_eq!(
                reports[0].result,
                SyncResult::Installed,
                "{label}: no recovery: {reports:?}"
            );
        }
        Expect::Absorbed {
            requests: expected,
            at_least,
        } => {
            assert_eq!(
                report.result,
                SyncResult::Installed,
                "{label}: the fault was not ridden out: {report:?}"
            );
            assert!(
                expected.contains(&requests),
                "{label}: {requests} requests, expected {expected:?}"
            );
            assert!(elapsed >= *at_least, "{label}: {elapsed:?} < {at_least:?}");
        }
    }
    assert_eq!(
        linked_version(&scratch, SECRET).as_deref(),
        Some(newest.as_str()),
        "{label}: the newest version is installed after the fault"
    );
    let pem = fs::read_to_string(link(&scratch, SECRET)).unwrap();
    akvsync::decode::decode_pem(&pem).unwrap_or_else(|e| panic!("{label}: {e}"));
    if cell.on == On::Identity && phase == Phase::FirstSync {
        assert!(
            emu.counters().identity > identity_before,
            "{label}: the identity endpoint was asked"
        );
    }
    emu.shutdown().await;
}

/// Every cell in both phases at once (each on its own emulator), so that a row of the
/// matrix costs its slowest cell.
async fn run_cells(cells: Vec<Cell>) {
    let mut tasks = tokio::task::JoinSet::new();
    for cell in cells {
        for phase in [Phase::FirstSync, Phase::Steady] {
            let label = format!("{} at {phase:?}", cell.name);
            let cell = cell.clone();
            tasks.spawn(async move {
                // No cell may hang: three request timeouts is more than any cell needs.
                if tokio::time::timeout(REQUEST_TIMEOUT * 3, run_cell(cell, phase))
                    .await
                    .is_err()
                {
                    panic!("{label}: still running after {:?}", REQUEST_TIMEOUT * 3);
                }
            });
        }
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            failures.push(match e.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default(),
                Err(e) => e.to_string(),
            });
        }
    }
    assert!(
        failures.is_empty(),
        "{} cell(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn status_fault(status: u16, retry_after: Option<u64>) -> FaultKind {
    FaultKind::Status {
        status,
        retry_after,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_status_codes() {
    use On::Vault;
    run_cells(vec![
        Cell::new(
            "v400",
            Vault,
            status_fault(400, None),
            None,
            permanent(&["answered 400 BadParameter"]),
        ),
        Cell::new(
            "v401",
            Vault,
            status_fault(401, None),
            None,
            permanent(&["401 without WWW-Authenticate"]),
        ),
        Cell::new(
            "v403",
            Vault,
            status_fault(403, None),
            None,
            permanent(&["answered 403 Forbidden"]),
        ),
        Cell::new(
            "v404",
            Vault,
            status_fault(404, None),
            None,
            permanent(&["answered 404 NotFound"]),
        ),
        Cell::new(
            "v408",
            Vault,
            status_fault(408, None),
            None,
            transient(&["answered 408"], Vault),
        ),
        Cell::new(
            "v429",
            Vault,
            status_fault(429, None),
            None,
            transient(&["answered 429"], Vault),
        ),
        // Retry-After is honoured: every retry waits for it, not for the short backoff.
        Cell::new(
            "v429-retry-after",
            Vault,
            status_fault(429, Some(1)),
            Some(2),
            Expect::Absorbed {
                requests: 3..=3,
                at_least: Duration::from_secs(2),
            },
        ),
        Cell::new(
            "v500",
            Vault,
            status_fault(500, None),
            None,
            transient(&["answered 500"], Vault),
        ),
        Cell::new(
            "v502",
            Vault,
            status_fault(502, None),
            None,
            transient(&["answered 502"], Vault),
        ),
        Cell::new(
            "v503",
            Vault,
            status_fault(503, None),
            None,
            transient(&["answered 503"], Vault),
        ),
        Cell::new(
            "v503-retry-after",
            Vault,
            status_fault(503, Some(1)),
            Some(2),
            Expect::Absorbed {
                requests: 3..=3,
                at_least: Duration::from_secs(2),
            },
        ),
        Cell::new(
            "v504",
            Vault,
            status_fault(504, None),
            None,
            transient(&["answered 504"], Vault),
        ),
    ])
    .await;
}

/// Where a followed redirect would land: the emulator's own listener under a host that
/// is not a vault, which it counts as `unknown_host`.
const REDIRECT_TARGET: &str = "https://localhost:{port}/secrets/web?api-version=7.4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_transport_and_body_faults() {
    use On::Vault;
    run_cells(vec![
        Cell::new(
            "v-reset",
            Vault,
            FaultKind::Reset,
            None,
            transient(&["reset", "closed"], Vault),
        ),
        Cell::new(
            "v-delay",
            Vault,
            FaultKind::Delay(Duration::from_secs(1)),
            Some(1),
            Expect::Absorbed {
                requests: 1..=1,
                at_least: Duration::from_secs(1),
            },
        ),
        Cell::new(
            "v-truncate",
            Vault,
            FaultKind::TruncateBody,
            None,
            transient(&["reading the response body failed"], Vault),
        ),
        Cell::new(
            "v-corrupt-base64",
            Vault,
            FaultKind::CorruptBase64,
            None,
            permanent(&["base64"]),
        ),
        Cell::new(
            "v-bad-pfx",
            Vault,
            FaultKind::BadPfx,
            None,
            permanent(&["PKCS#12"]),
        ),
        Cell::new(
            "v-wrong-content-type",
            Vault,
            FaultKind::WrongContentType(kvemu::CT_PEM.to_owned()),
            None,
            // The PFX's base64 read as PEM text finds no PEM block, hence no key.
            permanent(&["no private key"]),
        ),
        Cell::new(
            "v-oversize-chunked",
            Vault,
            FaultKind::Oversize {
                bytes: GIB,
                declare_length: false,
            },
            None,
            permanent(&["exceeds 1048576 bytes"]),
        ),
        Cell::new(
            "v-oversize-declared",
            Vault,
            FaultKind::Oversize {
                bytes: GIB,
                declare_length: true,
            },
            None,
            permanent(&["exceeds 1048576 bytes"]),
        ),
        Cell::new(
            "v-redirect",
            Vault,
            FaultKind::Redirect {
                status: 307,
                location: REDIRECT_TARGET.to_owned(),
            },
            None,
            permanent(&["redirects are refused"]),
        ),
        Cell::new(
            "v-foreign-challenge",
            Vault,
            FaultKind::Challenge {
                resource: "https://vault.azure.net.evil.example.com".to_owned(),
            },
            None,
            permanent(&["does not cover"]),
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_status_codes() {
    use On::Identity;
    run_cells(vec![
        Cell::new(
            "i400",
            Identity,
            status_fault(400, None),
            None,
            permanent(&["answered 400"]),
        ),
        Cell::new(
            "i403",
            Identity,
            status_fault(403, None),
            None,
            permanent(&["answered 403"]),
        ),
        // IMDS is updating (404) or being upgraded (410): retried per Azure's guidance.
        Cell::new(
            "i404",
            Identity,
            status_fault(404, None),
            None,
            transient(&["answered 404"], Identity),
        ),
        Cell::new(
            "i410",
            Identity,
            status_fault(410, None),
            None,
            transient(&["answered 410"], Identity),
        ),
        Cell::new(
            "i429",
            Identity,
            status_fault(429, None),
            None,
            transient(&["answered 429"], Identity),
        ),
        Cell::new(
            "i429-retry-after",
            Identity,
            status_fault(429, Some(1)),
            Some(2),
            Expect::Absorbed {
                requests: 3..=3,
                at_least: Duration::from_secs(2),
            },
        ),
        Cell::new(
            "i500",
            Identity,
            status_fault(500, None),
            None,
            transient(&["answered 500"], Identity),
        ),
        Cell::new(
            "i503",
            Identity,
            status_fault(503, None),
            None,
            transient(&["answered 503"], Identity),
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_transport_and_body_faults() {
    use On::Identity;
    run_cells(vec![
        Cell::new(
            "i-reset",
            Identity,
            FaultKind::Reset,
            None,
            transient(&["reset", "closed"], Identity),
        ),
        Cell::new(
            "i-delay",
            Identity,
            FaultKind::Delay(Duration::from_secs(1)),
            Some(1),
            Expect::Absorbed {
                requests: 1..=1,
                at_least: Duration::from_secs(1),
            },
        ),
        Cell::new(
            "i-truncate",
            Identity,
            FaultKind::TruncateBody,
            None,
            transient(&["reading the response body failed"], Identity),
        ),
        Cell::new(
            "i-oversize-chunked",
            Identity,
            FaultKind::Oversize {
                bytes: GIB,
                declare_length: false,
            },
            None,
            transient(&["exceeds 65536 bytes"], Identity),
        ),
        Cell::new(
            "i-oversize-declared",
            Identity,
            FaultKind::Oversize {
                bytes: GIB,
                declare_length: true,
            },
            None,
            transient(&["exceeds 65536 bytes"], Identity),
        ),
        Cell::new(
            "i-redirect",
            Identity,
            FaultKind::Redirect {
                status: 302,
                location: REDIRECT_TARGET.to_owned(),
            },
            None,
            permanent(&["answered 302"]),
        ),
        // A token that is already expired by its `expires_on` (the endpoint's clock is
        // behind): refused, retried with backoff like any unusable answer, never a loop.
        Cell::new(
            "i-expired-on-arrival",
            Identity,
            FaultKind::ExpiresOnSkew(-2 * 86_400),
            None,
            transient(&["already expired"], Identity),
        ),
        Cell::new(
            "i-expired-on-arrival-once",
            Identity,
            FaultKind::ExpiresOnSkew(-2 * 86_400),
            Some(1),
            Expect::Absorbed {
                requests: 2..=2,
                at_least: Duration::ZERO,
            },
        ),
        // `expires_on` far in the future (the endpoint's clock is ahead): the token is
        // used, bounded by `expires_in` (see the `run` test for its refresh).
        Cell::new(
            "i-expires-late",
            Identity,
            FaultKind::ExpiresOnSkew(30 * 86_400),
            None,
            Expect::Absorbed {
                requests: 1..=1,
                at_least: Duration::ZERO,
            },
        ),
    ])
    .await;
}

/// Hangs and slow drips are cut at the agent's 30 s request timeout: with one attempt the
/// poll fails naming the timeout; with the product's attempts the retry succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangs_and_slow_drips_time_out() {
    // 8 bytes a second: a token answer (~1 KiB) or a secret (~3 KiB) would take minutes.
    let slow_drip = FaultKind::SlowDrip {
        interval: Duration::from_secs(1),
        chunk: 8,
    };
    let ridden_out = Expect::Absorbed {
        requests: 2..=2,
        at_least: REQUEST_TIMEOUT,
    };
    let mut cells = Vec::new();
    for (name, kind) in [("hang", FaultKind::Hang), ("slow-drip", slow_drip)] {
        for on in [On::Vault, On::Identity] {
            let name: &'static str = Box::leak(format!("{name}-{on:?}").into_boxed_str());
            cells.push(Cell::new(
                name,
                on,
                kind.clone(),
                Some(1),
                ridden_out.clone(),
            ));
        }
        let name: &'static str = Box::leak(format!("{name}-vault-one-attempt").into_boxed_str());
        let mut cell = Cell::new(
            name,
            On::Vault,
            kind.clone(),
            None,
            permanent(&["timed out", "timeout"]),
        );
        cell.vault_retries.attempts = 1;
        cells.push(cell);
    }
    run_cells(cells).await;
}

/// During an identity outage, eight certificates cost one series of identity retries
/// (they share the failure of the fetch they queued behind), and the vault client does
/// not retry the identity failure again on top of the credential's own retries.
#[tokio::test]
async fn an_identity_outage_costs_one_retry_series_for_all_certificates() {
    let emu = emulator().await;
    let secrets = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"];
    for secret in secrets {
        new_version(&emu, secret);
    }
    let scratch = Scratch::new("outage");
    let engine = engine(&emu, &scratch, &secrets, VAULT_RETRIES);
    emu.inject(Fault::identity(status_fault(503, None), 1).with_probability(1.0));
    let reports = engine.sync_all().await;
    for report in &reports {
        let SyncResult::Failed(message) = &report.result else {
            panic!("{report:?}")
        };
        assert!(message.contains("answered 503"), "{message}");
    }
    assert_eq!(
        emu.counters().identity,
        u64::from(Backoff::IDENTITY.attempts),
        "one series of retries for eight certificates"
    );
    assert_eq!(emu.counters().vault_requests(VAULT), 0);
    emu.clear_faults();
    let reports = engine.sync_all().await;
    assert!(
        reports.iter().all(|r| r.result == SyncResult::Installed),
        "{reports:?}"
    );
    assert_eq!(
        emu.counters().identity,
        u64::from(Backoff::IDENTITY.attempts) + 1,
        "one token for all after recovery"
    );
    emu.shutdown().await;
}

/// The identity endpoint fails while the cached token is past its refresh point but still
/// valid: the refresh is tried (one retry series), the valid token keeps serving, and the
/// certificate is installed; once the token is about to expire, the poll fails with the
/// endpoint's error.
#[tokio::test]
async fn a_failed_refresh_keeps_using_the_still_valid_token() {
    let emu = emulator().await;
    // A 20 s token is refreshed from half-life (10 s) and usable until 5 s before expiry.
    emu.set_token_lifetime(Duration::from_secs(20));
    new_version(&emu, SECRET);
    let scratch = Scratch::new("refresh");
    let engine = engine(&emu, &scratch, &[SECRET], VAULT_RETRIES);
    let first = Instant::now();
    assert_eq!(engine.sync_all().await[0].result, SyncResult::Installed);
    let v2 = new_version(&emu, SECRET);
    tokio::time::sleep(Duration::from_millis(10_050).saturating_sub(first.elapsed())).await;
    emu.inject(Fault::identity(status_fault(503, None), 1).with_probability(1.0));
    let reports = engine.sync_all().await;
    assert_eq!(reports[0].result, SyncResult::Installed, "{reports:?}");
    assert_eq!(linked_version(&scratch, SECRET), Some(v2.version));
    let attempts = u64::from(Backoff::IDENTITY.attempts);
    assert_eq!(
        emu.counters().identity,
        1 + attempts,
        "the refresh was tried"
    );
    assert_eq!(emu.counters().status_count(VAULT, 401), 0);

    tokio::time::sleep(Duration::from_secs(16).saturating_sub(first.elapsed())).await;
    new_version(&emu, SECRET);
    let reports = engine.sync_all().await;
    let SyncResult::Failed(message) = &reports[0].result else {
        panic!("{reports:?}")
    };
    assert!(message.contains("answered 503"), "{message}");
    assert_eq!(emu.counters().identity, 1 + 2 * attempts);
    emu.shutdown().await;
}

/// `akvsync once` against the product's real vault backoff: exit code 1, the cause in the
/// printed table, and the requests the emulator saw.
#[tokio::test]
async fn once_reports_the_cause_and_backs_off_with_the_product_delays() {
    let emu = emulator().await;
    let scratch = Scratch::new("once");
    new_version(&emu, SECRET);
    settings_json(&emu, &scratch, &[SECRET]);
    let once = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
            .args(["once", "--settings"])
            .arg(scratch.settings_file())
            .arg("--state-dir")
            .arg(scratch.state())
            .output()
    };

    // First sync during a vault outage: three attempts spaced by the real backoff
    // (0.5–1 s, then 1–2 s), exit 1, nothing written.
    emu.inject(Fault::object(VAULT, SECRET, status_fault(503, None), 1).with_probability(1.0));
    let started = Instant::now();
    let out = once().await.unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAILED") && stdout.contains("503"),
        "{stdout}"
    );
    let requests = emu.counters().object_requests(VAULT, SECRET);
    assert_eq!(requests, u64::from(Backoff::VAULT.attempts), "{stdout}");
    assert!(elapsed >= min_backoff(Backoff::VAULT), "{elapsed:?}");
    assert!(snapshot(&scratch.store()).is_empty());
    emu.clear_faults();
    let out = once().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let installed = snapshot(&scratch.store());

    // Steady state, a newer version waiting, access revoked (403): one request, exit 1,
    // the error in `status --json`, the old certificate byte for byte.
    new_version(&emu, SECRET);
    emu.reset_counters();
    emu.inject(Fault::object(VAULT, SECRET, status_fault(403, None), 1).with_probability(1.0));
    let out = once().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("403 Forbidden"), "{stdout}");
    assert_eq!(
        emu.counters().object_requests(VAULT, SECRET),
        1,
        "not retried"
    );
    assert_eq!(snapshot(&scratch.store()), installed);
    let (last_error, _) = status(&scratch).await;
    assert!(last_error.is_some_and(|e| e.contains("403")));

    // The identity endpoint refuses for good (400): one request, exit 1, the endpoint's
    // own error text reported.
    emu.clear_faults();
    emu.reset_counters();
    let fresh = Scratch::new("once-identity");
    settings_json(&emu, &fresh, &[SECRET]);
    emu.inject(Fault::identity(status_fault(400, None), 1).with_probability(1.0));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .args(["once", "--settings"])
        .arg(fresh.settings_file())
        .arg("--state-dir")
        .arg(fresh.state())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("answered 400"), "{stdout}");
    assert_eq!(emu.counters().identity, 1);
    assert_eq!(emu.counters().vault_requests(VAULT), 0);
    assert!(snapshot(&fresh.store()).is_empty());
    emu.shutdown().await;
}

/// A running `akvsync run` and its log.
struct Service {
    child: tokio::process::Child,
    log: Arc<std::sync::Mutex<String>>,
}

impl Service {
    fn start(scratch: &Scratch) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
            .args(["run", "--settings"])
            .arg(scratch.settings_file())
            .arg("--state-dir")
            .arg(scratch.state())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
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
        Service { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Log lines containing every one of `parts`.
    fn lines_with(&self, parts: &[&str]) -> usize {
        self.log()
            .lines()
            .filter(|line| parts.iter().all(|p| line.contains(p)))
            .count()
    }

    /// Peak resident set size (VmHWM) in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.id().unwrap();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    async fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("stops")
            .unwrap();
        assert!(status.success(), "{status:?}\n{}", self.log());
    }
}

/// Waits until `check` holds, polling every 50 ms, for at most `limit`.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

/// `run` polling every second through a vault outage: the real backoff within each poll
/// and the poll interval between them bound the requests (no tight loop); every failed
/// poll is logged with its cause; the first poll after the outage installs the rotation.
#[tokio::test]
async fn run_backs_off_through_a_vault_outage_and_recovers() {
    let emu = emulator().await;
    let scratch = Scratch::new("run-outage");
    let v1 = new_version(&emu, SECRET);
    settings_json(&emu, &scratch, &[SECRET]);
    let service = Service::start(&scratch);
    assert!(
        eventually(Duration::from_secs(20), || linked_version(&scratch, SECRET)
            == Some(v1.version.clone()))
        .await,
        "first sync: {}",
        service.log()
    );
    let installed = snapshot(&scratch.store());
    let v2 = new_version(&emu, SECRET);
    emu.inject(Fault::object(VAULT, SECRET, status_fault(503, None), 1).with_probability(1.0));
    let before = emu.counters().object_requests(VAULT, SECRET);
    let window = Duration::from_secs(8);
    tokio::time::sleep(window).await;
    let requests = emu.counters().object_requests(VAULT, SECRET) - before;
    // Each poll: 3 attempts over ≥ 1.5 s, then ≥ 0.9 s to the next poll: at most
    // 4 polls in 8 s, i.e. 12 requests, 13 if one was under way (a loop makes thousands).
    assert!(
        (3..=13).contains(&requests),
        "{requests} vault requests in {window:?}"
    );
    assert!(
        service.lines_with(&["not current", "503"]) >= 1,
        "{}",
        service.log()
    );
    assert_eq!(
        snapshot(&scratch.store()),
        installed,
        "the old certificate stays"
    );
    emu.clear_faults();
    assert!(
        eventually(Duration::from_secs(15), || linked_version(&scratch, SECRET)
            == Some(v2.version.clone()))
        .await,
        "recovery: {}",
        service.log()
    );
    service.stop().await;
    emu.shutdown().await;
}

/// Tokens expire mid-run and are refreshed ahead of expiry (half-life for short tokens):
/// no request ever reaches the vault with an expired token (no 401), tokens are reused
/// across polls while valid, and an `expires_on` skewed far into the future does not
/// extend a token past `expires_in`.
#[tokio::test]
async fn run_refreshes_expiring_tokens_ahead_of_time_despite_skew() {
    let emu = emulator().await;
    emu.set_token_lifetime(Duration::from_secs(10));
    emu.inject(Fault::identity(FaultKind::ExpiresOnSkew(30 * 86_400), 1).with_probability(1.0));
    let scratch = Scratch::new("run-tokens");
    let v1 = new_version(&emu, SECRET);
    settings_json(&emu, &scratch, &[SECRET]);
    let service = Service::start(&scratch);
    assert!(
        eventually(Duration::from_secs(20), || linked_version(&scratch, SECRET)
            == Some(v1.version.clone()))
        .await,
        "first sync: {}",
        service.log()
    );
    // While the token is valid (a 10 s token is used for its first 4–5 s), polls cost no
    // token request.
    let gets = emu.counters().object_requests(VAULT, SECRET);
    assert!(
        eventually(Duration::from_secs(3), || emu
            .counters()
            .object_requests(VAULT, SECRET)
            >= gets + 2)
        .await,
        "two more polls: {}",
        service.log()
    );
    assert_eq!(
        emu.counters().identity,
        1,
        "a token request while the token was valid"
    );
    let window = Duration::from_secs(14);
    tokio::time::sleep(window).await;
    let counters = emu.counters();
    let gets = counters.object_requests(VAULT, SECRET);
    // Refreshed every 4–6 s (half-life, second resolution, one-second polls): 3 to 5 tokens
    // by the end of the window; trusting the skewed `expires_on` would mean 1.
    assert!(
        (3..=5).contains(&counters.identity),
        "{} token requests, {gets} GETs in {window:?}",
        counters.identity
    );
    assert!(
        gets > counters.identity,
        "tokens are reused across polls: {} token requests, {gets} GETs",
        counters.identity
    );
    assert_eq!(
        counters.status_count(VAULT, 401),
        0,
        "a request carried an expired token"
    );
    service.stop().await;
    emu.shutdown().await;
}

/// An `expires_on` already in the past (the endpoint's clock far behind) on every token:
/// refused, and retried with the real identity backoff (0, 1–2 s, 3–6 s…), not in a loop;
/// once tokens are sane again the rotation is installed.
#[tokio::test]
async fn run_does_not_loop_on_tokens_expired_on_arrival() {
    let emu = emulator().await;
    let scratch = Scratch::new("run-skew");
    let v1 = new_version(&emu, SECRET);
    settings_json(&emu, &scratch, &[SECRET]);
    emu.inject(Fault::identity(FaultKind::ExpiresOnSkew(-2 * 86_400), 1).with_probability(1.0));
    let service = Service::start(&scratch);
    assert!(
        eventually(Duration::from_secs(20), || emu.counters().identity >= 1).await,
        "no token request: {}",
        service.log()
    );
    // From the first request: retries at 1–2 s and 3–6 s fall in the window, the next
    // one (7–14 s) does not.
    let window = Duration::from_secs(5);
    tokio::time::sleep(window).await;
    let requests = emu.counters().identity;
    assert!(
        (2..=3).contains(&requests),
        "{requests} token requests in {window:?}"
    );
    assert_eq!(
        emu.counters().vault_requests(VAULT),
        0,
        "no vault request without a token"
    );
    assert!(snapshot(&scratch.store()).is_empty(), "nothing installed");
    emu.clear_faults();
    assert!(
        eventually(Duration::from_secs(20), || linked_version(&scratch, SECRET)
            == Some(v1.version.clone()))
        .await,
        "recovery: {}",
        service.log()
    );
    service.stop().await;
    emu.shutdown().await;
}

/// 1 GiB answers, chunked and with a declared length, from the vault and from the identity
/// endpoint: each is cut at its cap (1 MiB, 64 KiB) and the agent's peak RSS stays far
/// below what buffering them would cost.
#[tokio::test]
async fn run_refuses_1_gib_bodies_with_bounded_memory() {
    let emu = emulator().await;
    // Short tokens, so that the agent asks the identity endpoint every few polls.
    emu.set_token_lifetime(Duration::from_secs(2));
    let scratch = Scratch::new("run-oversize");
    let v1 = new_version(&emu, SECRET);
    settings_json(&emu, &scratch, &[SECRET]);
    let service = Service::start(&scratch);
    assert!(
        eventually(Duration::from_secs(20), || linked_version(&scratch, SECRET)
            == Some(v1.version.clone()))
        .await,
        "first sync: {}",
        service.log()
    );
    let installed = snapshot(&scratch.store());
    new_version(&emu, SECRET);
    for declare_length in [false, true] {
        emu.clear_faults();
        let logged = service.lines_with(&["not current", "exceeds 1048576 bytes"]);
        emu.inject(
            Fault::object(
                VAULT,
                SECRET,
                FaultKind::Oversize {
                    bytes: GIB,
                    declare_length,
                },
                1,
            )
            .with_probability(1.0),
        );
        assert!(
            eventually(Duration::from_secs(20), || service
                .lines_with(&["not current", "exceeds 1048576 bytes"])
                >= logged + 2)
            .await,
            "declare_length {declare_length}: {}",
            service.log()
        );
    }
    // The identity endpoint (its cap is 64 KiB).
    emu.clear_faults();
    emu.inject(
        Fault::identity(
            FaultKind::Oversize {
                bytes: GIB,
                declare_length: false,
            },
            1,
        )
        .with_probability(1.0),
    );
    let identity_before = emu.counters().identity;
    assert!(
        eventually(Duration::from_secs(30), || emu.counters().identity
            >= identity_before + 3)
        .await,
        "the identity endpoint was asked through the fault"
    );
    assert_eq!(
        snapshot(&scratch.store()),
        installed,
        "the old certificate stays"
    );
    let peak_kib = service.peak_rss_kib();
    eprintln!("peak RSS (VmHWM) of `akvsync run` after 1 GiB bodies: {peak_kib} KiB");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");
    service.stop().await;
    emu.shutdown().await;
}
