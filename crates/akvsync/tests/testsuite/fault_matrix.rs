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

use std::collections::BTreeSet;
use std::fs;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use akvsync::backoff::Backoff;
use akvsync::sync::SyncResult;
use kvemu::{Emulator, Fault, FaultKind};

use crate::common::agent::{Agent, failure, link, linked_version, observe};
use crate::common::env::{Env, EnvConfig, VAULT};
use crate::common::faults::{FaultScope, always, status};
use crate::common::probe::RequestProbe;
use crate::common::service::Service;
use crate::common::store_view::snapshot;

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

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A new version of `secret`: an EC leaf uploaded as a PFX in Key Vault's own form.
fn new_version(emu: &Emulator, secret: &str) -> kvemu::Imported {
    let dns = format!("{secret}.example.test");
    let pki = emu.test_pki().unwrap();
    let leaf = kvemu::seed::LeafKey::EcP256;
    let issued = pki
        .issue(&dns, std::slice::from_ref(&dns), leaf, 365)
        .unwrap();
    let pfx = issued.pfx(kvemu::PfxForm::KeyVault).unwrap();
    emu.import_pfx(VAULT, secret, &pfx, None, kvemu::CT_PKCS12)
        .unwrap()
}

/// An environment observing `secrets`, each with a first version (returned, in order).
fn env_with(secrets: &[&str]) -> (Env, Vec<kvemu::Imported>) {
    let env = Env::start(EnvConfig::default());
    let first = secrets.iter().map(|s| new_version(&env.emu, s)).collect();
    observe(&env, secrets);
    (env, first)
}

/// The in-process agent for the settings [`env_with`] wrote, with `vault_retries` for the
/// vault.
fn agent(env: &Env, vault_retries: Backoff) -> Agent {
    let json = serde_json::from_slice(&fs::read(env.settings_file()).unwrap()).unwrap();
    Agent::new(env, &json, IDENTITY_RETRIES, vault_retries)
}

/// `akvsync status --json` for the environment: (lastError, installed version).
fn status_json(env: &Env) -> (Option<String>, Option<String>) {
    let out = env.cmd(&["status", "--json"]).run();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = &json["certificates"][0];
    let last_error = entry["lastError"].as_str().map(str::to_owned);
    let version = entry["installed"]["version"].as_str().map(str::to_owned);
    // SPEC §10: exit 1 while the certificate is not installed or its last check failed.
    let served = last_error.is_none() && version.is_some();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(if served { 0 } else { 1 }),
        "{stderr}"
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

/// One row of a table: name, fault, how many requests it hits (`None`: all), expectation.
type Row = (&'static str, FaultKind, Option<u32>, Expect);

/// The cells of a table whose faults are all on `on`.
fn cells(on: On, rows: Vec<Row>) -> Vec<Cell> {
    let cell = |(name, kind, times, expect)| Cell {
        name,
        on,
        kind,
        times,
        expect,
        vault_retries: VAULT_RETRIES,
    };
    rows.into_iter().map(cell).collect()
}

impl Cell {
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
            always(fault)
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

    /// Requests to the faulted endpoint since `probe` was taken.
    fn requests(&self, probe: &RequestProbe) -> u64 {
        match self.on {
            On::Identity => probe.identity(),
            On::Vault => probe.object(VAULT, SECRET),
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

fn absorbed(requests: RangeInclusive<u64>, at_least: Duration) -> Expect {
    Expect::Absorbed { requests, at_least }
}

fn oversize(declare_length: bool) -> FaultKind {
    FaultKind::Oversize {
        bytes: GIB,
        declare_length,
    }
}

/// Runs one cell of the matrix in `phase` on its own environment; panics naming the cell.
fn run_cell(cell: &Cell, phase: Phase) {
    let label = format!("{} on {:?} at {:?}", cell.name, cell.on, phase);
    let (env, first) = env_with(&[SECRET]);
    let v1 = &first[0];
    let agent = agent(&env, cell.vault_retries);
    let mut newest = v1.version.clone();
    if phase == Phase::Steady {
        if cell.on == On::Identity {
            // Short tokens, so that the faulted poll needs a new one: the token expires
            // mid-run and the fault is on its refresh.
            env.emu.set_token_lifetime(secs(2));
        }
        let reports = agent.sync();
        let result = &reports[0].result;
        assert_eq!(result, &SyncResult::Installed, "{label}: {reports:?}");
        newest = new_version(&env.emu, SECRET).version;
        if cell.on == On::Identity {
            // Past the refresh point of the 2 s token (half its lifetime, second resolution).
            std::thread::sleep(Duration::from_millis(1100));
        }
    }
    let before = snapshot(&env.scratch.store());
    let probe = RequestProbe::new(&env.emu);
    let fault = FaultScope::new(&env.emu).inject(cell.fault(&env.emu));

    let started = Instant::now();
    let reports = agent.sync();
    let elapsed = started.elapsed();
    let report = &reports[0];
    let requests = cell.requests(&probe);
    let unknown_host = env.emu.counters().unknown_host;
    assert_eq!(unknown_host, 0, "{label}: a request left for another host");
    if cell.on == On::Vault {
        // A cached token is reused; a first sync asks for exactly one; no fault (401
        // without a challenge, a foreign challenge) makes the agent ask for another.
        let expected = u64::from(phase == Phase::FirstSync);
        assert_eq!(probe.identity(), expected, "{label}: token requests");
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
            let named = cause.iter().any(|c| message.contains(c));
            assert!(
                named,
                "{label}: the error does not name its cause {cause:?}: {message}"
            );
            let counted = expected.contains(&requests);
            assert!(
                counted,
                "{label}: {requests} requests, expected {expected:?} ({message})"
            );
            if requests > 1 {
                let spaced = elapsed >= min_backoff(cell.retries());
                assert!(
                    spaced,
                    "{label}: {requests} requests in {elapsed:?}: no backoff"
                );
            }
            if cell.on == On::Identity {
                let vault = probe.object(VAULT, SECRET);
                assert_eq!(vault, 0, "{label}: no vault request without a token");
            }
            // Nothing was written: the old certificate byte for byte, the link unchanged;
            // at the first sync, nothing at all (no half-installed file, no temporary).
            let after = snapshot(&env.scratch.store());
            assert_eq!(after, before, "{label}: the store changed");
            let expected_installed = (phase == Phase::Steady).then(|| v1.version.clone());
            match phase {
                Phase::FirstSync => assert!(before.is_empty(), "{label}: {before:?}"),
                Phase::Steady => {
                    let linked = linked_version(&env, SECRET);
                    assert_eq!(linked, expected_installed, "{label}");
                    let reported = report.version.as_deref();
                    let what = "the report names the installed version";
                    assert_eq!(reported, Some(v1.version.as_str()), "{label}: {what}");
                }
            }
            // The error and the installed version as `status --json` shows them.
            let (last_error, installed) = status_json(&env);
            assert_eq!(last_error.as_deref(), Some(message.as_str()), "{label}");
            assert_eq!(installed, expected_installed, "{label}");

            // The fault clears: the next poll installs the newest version.
            fault.clear();
            let reports = agent.sync();
            let result = &reports[0].result;
            assert_eq!(
                result,
                &SyncResult::Installed,
                "{label}: no recovery: {reports:?}"
            );
        }
        Expect::Absorbed {
            requests: expected,
            at_least,
        } => {
            let result = &report.result;
            let what = "the fault was not ridden out";
            assert_eq!(
                result,
                &SyncResult::Installed,
                "{label}: {what}: {report:?}"
            );
            let counted = expected.contains(&requests);
            assert!(
                counted,
                "{label}: {requests} requests, expected {expected:?}"
            );
            assert!(elapsed >= *at_least, "{label}: {elapsed:?} < {at_least:?}");
        }
    }
    let linked = linked_version(&env, SECRET);
    let what = "the newest version is installed after the fault";
    assert_eq!(linked.as_deref(), Some(newest.as_str()), "{label}: {what}");
    let pem = fs::read_to_string(link(&env, SECRET)).unwrap();
    akvsync::decode::decode_pem(&pem).unwrap_or_else(|e| panic!("{label}: {e}"));
    if cell.on == On::Identity && phase == Phase::FirstSync {
        let asked = probe.identity() > 0;
        assert!(asked, "{label}: the identity endpoint was asked");
    }
}

/// Every cell in both phases at once (each on its own environment and thread), so that a
/// row of the matrix costs its slowest cell.
fn run_cells(cells: Vec<Cell>) {
    // No cell may hang: three request timeouts is more than any cell needs.
    let limit = REQUEST_TIMEOUT * 3;
    let deadline = Instant::now() + limit;
    let (done, finished) = std::sync::mpsc::channel();
    let mut running = BTreeSet::new();
    for cell in cells {
        for phase in [Phase::FirstSync, Phase::Steady] {
            let label = format!("{} at {phase:?}", cell.name);
            running.insert(label.clone());
            let (cell, done) = (cell.clone(), done.clone());
            std::thread::spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| run_cell(&cell, phase));
                let failure = std::panic::catch_unwind(run).err().map(|panic| {
                    let text = panic.downcast_ref::<String>().cloned();
                    let text = text.or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                    text.unwrap_or_default()
                });
                let _ = done.send((label, failure));
            });
        }
    }
    let mut failures = Vec::new();
    while !running.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((label, failure)) = finished.recv_timeout(left) else {
            let late = running
                .iter()
                .map(|l| format!("{l}: still running after {limit:?}"));
            failures.extend(late);
            break;
        };
        running.remove(&label);
        failures.extend(failure);
    }
    let count = failures.len();
    assert!(
        failures.is_empty(),
        "{count} cell(s) failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn vault_status_codes() {
    use On::Vault;
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("v400", status(400, None), None, permanent(&["answered 400 BadParameter"])),
        ("v401", status(401, None), None, permanent(&["401 without WWW-Authenticate"])),
        ("v403", status(403, None), None, permanent(&["answered 403 Forbidden"])),
        ("v404", status(404, None), None, permanent(&["answered 404 NotFound"])),
        ("v408", status(408, None), None, transient(&["answered 408"], Vault)),
        ("v429", status(429, None), None, transient(&["answered 429"], Vault)),
        // Retry-After is honoured: every retry waits for it, not for the short backoff.
        ("v429-retry-after", status(429, Some(1)), Some(2), absorbed(3..=3, secs(2))),
        ("v500", status(500, None), None, transient(&["answered 500"], Vault)),
        ("v502", status(502, None), None, transient(&["answered 502"], Vault)),
        ("v503", status(503, None), None, transient(&["answered 503"], Vault)),
        ("v503-retry-after", status(503, Some(1)), Some(2), absorbed(3..=3, secs(2))),
        ("v504", status(504, None), None, transient(&["answered 504"], Vault)),
    ];
    run_cells(cells(Vault, rows));
}

/// Where a followed redirect would land: the emulator's own listener under a host that
/// is not a vault, which it counts as `unknown_host`.
const REDIRECT_TARGET: &str = "https://localhost:{port}/secrets/web?api-version=7.4";

fn redirect(status: u16) -> FaultKind {
    let location = REDIRECT_TARGET.to_owned();
    FaultKind::Redirect { status, location }
}

#[test]
fn vault_transport_and_body_faults() {
    use On::Vault;
    let pem = FaultKind::WrongContentType(kvemu::CT_PEM.to_owned());
    let resource = "https://vault.azure.net.evil.example.com".to_owned();
    let foreign = FaultKind::Challenge { resource };
    let truncated = transient(&["reading the response body failed"], Vault);
    let too_big = || permanent(&["exceeds 1048576 bytes"]);
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("v-reset", FaultKind::Reset, None, transient(&["reset", "closed"], Vault)),
        ("v-delay", FaultKind::Delay(secs(1)), Some(1), absorbed(1..=1, secs(1))),
        ("v-truncate", FaultKind::TruncateBody, None, truncated),
        ("v-corrupt-base64", FaultKind::CorruptBase64, None, permanent(&["base64"])),
        ("v-bad-pfx", FaultKind::BadPfx, None, permanent(&["PKCS#12"])),
        // The PFX's base64 read as PEM text finds no PEM block, hence no key.
        ("v-wrong-content-type", pem, None, permanent(&["no private key"])),
        ("v-oversize-chunked", oversize(false), None, too_big()),
        ("v-oversize-declared", oversize(true), None, too_big()),
        ("v-redirect", redirect(307), None, permanent(&["redirects are refused"])),
        ("v-foreign-challenge", foreign, None, permanent(&["does not cover"])),
    ];
    run_cells(cells(Vault, rows));
}

#[test]
fn identity_status_codes() {
    use On::Identity;
    // The vault table's rows again, on purpose: the identity endpoint's own codes and wording.
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("i400", status(400, None), None, permanent(&["answered 400"])),
        ("i403", status(403, None), None, permanent(&["answered 403"])),
        // IMDS is updating (404) or being upgraded (410): retried per Azure's guidance.
        ("i404", status(404, None), None, transient(&["answered 404"], Identity)),
        ("i410", status(410, None), None, transient(&["answered 410"], Identity)),
        ("i429", status(429, None), None, transient(&["answered 429"], Identity)),
        ("i429-retry-after", status(429, Some(1)), Some(2), absorbed(3..=3, secs(2))),
        ("i500", status(500, None), None, transient(&["answered 500"], Identity)),
        ("i503", status(503, None), None, transient(&["answered 503"], Identity)),
    ];
    run_cells(cells(Identity, rows));
}

#[test]
fn identity_transport_and_body_faults() {
    use On::Identity;
    let skew = FaultKind::ExpiresOnSkew;
    let truncated = transient(&["reading the response body failed"], Identity);
    let too_big = || transient(&["exceeds 65536 bytes"], Identity);
    let expired = transient(&["already expired"], Identity);
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("i-reset", FaultKind::Reset, None, transient(&["reset", "closed"], Identity)),
        ("i-delay", FaultKind::Delay(secs(1)), Some(1), absorbed(1..=1, secs(1))),
        ("i-truncate", FaultKind::TruncateBody, None, truncated),
        ("i-oversize-chunked", oversize(false), None, too_big()),
        ("i-oversize-declared", oversize(true), None, too_big()),
        ("i-redirect", redirect(302), None, permanent(&["answered 302"])),
        // A token that is already expired by its `expires_on` (the endpoint's clock is
        // behind): refused, retried with backoff like any unusable answer, never a loop.
        ("i-expired-on-arrival", skew(-2 * 86_400), None, expired),
        ("i-expired-on-arrival-once", skew(-2 * 86_400), Some(1), absorbed(2..=2, secs(0))),
        // `expires_on` far in the future (the endpoint's clock is ahead): the token is
        // used, bounded by `expires_in` (see the `run` test for its refresh).
        ("i-expires-late", skew(30 * 86_400), None, absorbed(1..=1, secs(0))),
    ];
    run_cells(cells(Identity, rows));
}

/// Hangs and slow drips are cut at the agent's 30 s request timeout: with one attempt the
/// poll fails naming the timeout; with the product's attempts the retry succeeds.
#[test]
fn hangs_and_slow_drips_time_out() {
    // 8 bytes a second: a token answer (~1 KiB) or a secret (~3 KiB) would take minutes.
    let slow_drip = FaultKind::SlowDrip {
        interval: secs(1),
        chunk: 8,
    };
    let ridden_out = absorbed(2..=2, REQUEST_TIMEOUT);
    let mut all = Vec::new();
    for (name, kind) in [("hang", FaultKind::Hang), ("slow-drip", slow_drip)] {
        for on in [On::Vault, On::Identity] {
            let name: &'static str = Box::leak(format!("{name}-{on:?}").into_boxed_str());
            all.extend(cells(
                on,
                vec![(name, kind.clone(), Some(1), ridden_out.clone())],
            ));
        }
        let name: &'static str = Box::leak(format!("{name}-vault-one-attempt").into_boxed_str());
        let timeout = permanent(&["timed out", "timeout"]);
        let mut one_attempt = cells(On::Vault, vec![(name, kind, None, timeout)]);
        one_attempt[0].vault_retries.attempts = 1;
        all.extend(one_attempt);
    }
    run_cells(all);
}

fn identity_outage() -> Fault {
    always(Fault::identity(status(503, None), 1))
}

/// During an identity outage, eight certificates cost one series of identity retries
/// (they share the failure of the fetch they queued behind), and the vault client does
/// not retry the identity failure again on top of the credential's own retries.
#[test]
fn an_identity_outage_costs_one_retry_series_for_all_certificates() {
    let (env, _) = env_with(&["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"]);
    let agent = agent(&env, VAULT_RETRIES);
    let outage = FaultScope::new(&env.emu).inject(identity_outage());
    for report in &agent.sync() {
        let message = failure(report);
        assert!(message.contains("answered 503"), "{message}");
    }
    let attempts = u64::from(Backoff::IDENTITY.attempts);
    let tokens = env.emu.counters().identity;
    assert_eq!(
        tokens, attempts,
        "one series of retries for eight certificates"
    );
    assert_eq!(env.emu.counters().vault_requests(VAULT), 0);
    outage.clear();
    let reports = agent.sync();
    let installed = reports.iter().all(|r| r.result == SyncResult::Installed);
    assert!(installed, "{reports:?}");
    let tokens = env.emu.counters().identity;
    assert_eq!(tokens, attempts + 1, "one token for all after recovery");
}

/// The identity endpoint fails while the cached token is past its refresh point but still
/// valid: the refresh is tried (one retry series), the valid token keeps serving, and the
/// certificate is installed; once the token is about to expire, the poll fails with the
/// endpoint's error.
#[test]
fn a_failed_refresh_keeps_using_the_still_valid_token() {
    let (env, _) = env_with(&[SECRET]);
    // A 20 s token is refreshed from half-life (10 s) and usable until 5 s before expiry.
    env.emu.set_token_lifetime(secs(20));
    let agent = agent(&env, VAULT_RETRIES);
    let first = Instant::now();
    assert_eq!(agent.sync()[0].result, SyncResult::Installed);
    let v2 = new_version(&env.emu, SECRET);
    std::thread::sleep(Duration::from_millis(10_050).saturating_sub(first.elapsed()));
    let _outage = FaultScope::new(&env.emu).inject(identity_outage());
    let reports = agent.sync();
    assert_eq!(reports[0].result, SyncResult::Installed, "{reports:?}");
    assert_eq!(linked_version(&env, SECRET), Some(v2.version));
    let attempts = u64::from(Backoff::IDENTITY.attempts);
    let tokens = env.emu.counters().identity;
    assert_eq!(tokens, 1 + attempts, "the refresh was tried");
    assert_eq!(env.emu.counters().status_count(VAULT, 401), 0);

    std::thread::sleep(secs(16).saturating_sub(first.elapsed()));
    new_version(&env.emu, SECRET);
    let reports = agent.sync();
    let message = failure(&reports[0]);
    assert!(message.contains("answered 503"), "{message}");
    assert_eq!(env.emu.counters().identity, 1 + 2 * attempts);
}

/// `akvsync once` against the product's real vault backoff: exit code 1, the cause in the
/// printed table, and the requests the emulator saw. (The outage is a 500: a 429/503
/// without `Retry-After` pushes the vault back for Key Vault's 10 s window instead, see
/// [`run_installs_a_throttled_new_certificate_long_before_the_next_poll`].)
#[test]
fn once_reports_the_cause_and_backs_off_with_the_product_delays() {
    let (env, _) = env_with(&[SECRET]);
    let vault_fault = |code| always(Fault::object(VAULT, SECRET, status(code, None), 1));

    // First sync during a vault outage: three attempts spaced by the real backoff
    // (0.5–1 s, then 1–2 s), exit 1, nothing written.
    let outage = FaultScope::new(&env.emu).inject(vault_fault(500));
    let started = Instant::now();
    let once = env
        .cmd(&["once"])
        .code(1)
        .stdout_has("FAILED")
        .stdout_has("500");
    let stdout = String::from_utf8_lossy(&once.run().stdout).into_owned();
    let elapsed = started.elapsed();
    let requests = env.emu.counters().object_requests(VAULT, SECRET);
    assert_eq!(requests, u64::from(Backoff::VAULT.attempts), "{stdout}");
    assert!(elapsed >= min_backoff(Backoff::VAULT), "{elapsed:?}");
    assert!(snapshot(&env.scratch.store()).is_empty());
    outage.clear();
    env.cmd(&["once"]).code(0).run();
    let installed = snapshot(&env.scratch.store());

    // Steady state, a newer version waiting, access revoked (403): one request, exit 1,
    // the error in `status --json`, the old certificate byte for byte.
    new_version(&env.emu, SECRET);
    let probe = RequestProbe::new(&env.emu);
    let revoked = FaultScope::new(&env.emu).inject(vault_fault(403));
    env.cmd(&["once"]).code(1).stdout_has("403 Forbidden").run();
    assert_eq!(probe.object(VAULT, SECRET), 1, "not retried");
    assert_eq!(snapshot(&env.scratch.store()), installed);
    let (last_error, _) = status_json(&env);
    assert!(last_error.is_some_and(|e| e.contains("403")));
    revoked.clear();

    // The identity endpoint refuses for good (400): one request, exit 1, the endpoint's
    // own error text reported.
    let (fresh, _) = env_with(&[SECRET]);
    let refusal = always(Fault::identity(status(400, None), 1));
    let _refused = FaultScope::new(&fresh.emu).inject(refusal);
    fresh
        .cmd(&["once"])
        .code(1)
        .stdout_has("answered 400")
        .run();
    assert_eq!(fresh.emu.counters().identity, 1);
    assert_eq!(fresh.emu.counters().vault_requests(VAULT), 0);
    assert!(snapshot(&fresh.scratch.store()).is_empty());
}

/// Lines of `log` containing every one of `parts`.
fn lines_with(log: &str, parts: &[&str]) -> usize {
    let all = |line: &&str| parts.iter().all(|p| line.contains(p));
    log.lines().filter(all).count()
}

/// Peak resident set size (VmHWM) of `pid` in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak = status.lines().find_map(|l| l.strip_prefix("VmHWM:"));
    peak.and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `akvsync run` for the environment, once `version` of [`SECRET`] is installed.
fn service_installed(env: &Env, version: &str) -> Service {
    let service = Service::spawn(env.run_command(&[]));
    wait_installed(env, &service, version, secs(20), "first sync");
    service
}

/// Waits until [`SECRET`]'s link points at `version` (panics with the service's log).
fn wait_installed(env: &Env, service: &Service, version: &str, limit: Duration, what: &str) {
    service.wait_for(limit, what, || {
        linked_version(env, SECRET).as_deref() == Some(version)
    });
}

/// `run` polling every second through a vault outage: the real backoff within each poll
/// and the poll interval between them bound the requests (no tight loop); every failed
/// poll is logged with its cause; the first poll after the outage installs the rotation.
/// (A 500 outage: a 503 without `Retry-After` is a throttle, pushed back 11–36 s.)
#[test]
fn run_backs_off_through_a_vault_outage_and_recovers() {
    let (env, first) = env_with(&[SECRET]);
    let service = service_installed(&env, &first[0].version);
    let installed = snapshot(&env.scratch.store());
    let v2 = new_version(&env.emu, SECRET);
    let outage = always(Fault::object(VAULT, SECRET, status(500, None), 1));
    let outage = FaultScope::new(&env.emu).inject(outage);
    let probe = RequestProbe::new(&env.emu);
    let window = secs(8);
    std::thread::sleep(window);
    let requests = probe.object(VAULT, SECRET);
    // Each poll: 3 attempts over ≥ 1.5 s, then ≥ 0.9 s to the next poll: at most
    // 4 polls in 8 s, i.e. 12 requests, 13 if one was under way (a loop makes thousands).
    let bounded = (3..=13).contains(&requests);
    assert!(bounded, "{requests} vault requests in {window:?}");
    let log = service.log();
    assert!(lines_with(&log, &["not current", "500"]) >= 1, "{log}");
    let after = snapshot(&env.scratch.store());
    assert_eq!(after, installed, "the old certificate stays");
    outage.clear();
    wait_installed(&env, &service, &v2.version, secs(15), "recovery");
    service.stop_within(secs(10));
}

/// Issue 19: `run` with `requireInitialSync` off (the default) and an hour's polling
/// interval, a certificate never installed, and the vault's first answer a 429 without
/// `Retry-After`, then two 500s: the 429 pushes the vault back for Key Vault's window
/// (≥ 11 s, not the 0.5–1 s transient backoff), the 500s spend the round's three attempts,
/// and the certificate — never installed — is retried on the initial-sync schedule (about
/// 5 s later), not at the next poll an hour later. Four requests in all.
#[test]
fn run_installs_a_throttled_new_certificate_long_before_the_next_poll() {
    let env = Env::start(EnvConfig {
        secrets_management: Some(serde_json::json!({"pollingIntervalInS": "3600"})),
        ..Default::default()
    });
    let v1 = new_version(&env.emu, SECRET);
    observe(&env, &[SECRET]);
    let throttled = Fault::object(VAULT, SECRET, status(429, None), 1);
    let failing = Fault::object(VAULT, SECRET, status(500, None), 2);
    let _faults = FaultScope::new(&env.emu).inject(throttled).inject(failing);
    let probe = RequestProbe::new(&env.emu);
    let started = Instant::now();
    let service = Service::spawn(env.run_command(&[]));
    // Expected after 16–28 s (push-back 11–21 s, backoff 1–2 s, catch-up 4–5 s); the next
    // poll would come after 54 minutes. Generous for a loaded machine.
    wait_installed(&env, &service, &v1.version, secs(150), "catch-up install");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= secs(11),
        "the push-back was not honoured: {elapsed:?}"
    );
    let requests = probe.object(VAULT, SECRET);
    assert_eq!(requests, 4, "429, 500, 500, then the catch-up round's 200");
    let log = service.log();
    assert!(lines_with(&log, &["not current", "500"]) >= 1, "{log}");
    service.stop_within(secs(10));
}

/// Tokens expire mid-run and are refreshed ahead of expiry (half-life for short tokens):
/// no request ever reaches the vault with an expired token (no 401), tokens are reused
/// across polls while valid, and an `expires_on` skewed far into the future does not
/// extend a token past `expires_in`.
#[test]
fn run_refreshes_expiring_tokens_ahead_of_time_despite_skew() {
    let (env, first) = env_with(&[SECRET]);
    env.emu.set_token_lifetime(secs(10));
    let skew = always(Fault::identity(FaultKind::ExpiresOnSkew(30 * 86_400), 1));
    let _skew = FaultScope::new(&env.emu).inject(skew);
    let service = service_installed(&env, &first[0].version);
    // While the token is valid (a 10 s token is used for its first 4–5 s), polls cost no
    // token request.
    let probe = RequestProbe::new(&env.emu);
    let polls = || probe.object(VAULT, SECRET) >= 2;
    service.wait_for(secs(3), "two more polls", polls);
    let tokens = env.emu.counters().identity;
    assert_eq!(tokens, 1, "a token request while the token was valid");
    let window = secs(14);
    std::thread::sleep(window);
    let counters = env.emu.counters();
    let gets = counters.object_requests(VAULT, SECRET);
    let tokens = counters.identity;
    // Refreshed every 4–6 s (half-life, second resolution, one-second polls): 3 to 5 tokens
    // by the end of the window; trusting the skewed `expires_on` would mean 1.
    let refreshed = (3..=5).contains(&tokens);
    assert!(
        refreshed,
        "{tokens} token requests, {gets} GETs in {window:?}"
    );
    let reused = gets > tokens;
    assert!(
        reused,
        "tokens are reused across polls: {tokens} token requests, {gets} GETs"
    );
    let expired = counters.status_count(VAULT, 401);
    assert_eq!(expired, 0, "a request carried an expired token");
    service.stop_within(secs(10));
}

/// An `expires_on` already in the past (the endpoint's clock far behind) on every token:
/// refused, and retried with the real identity backoff (0, 1–2 s, 3–6 s…), not in a loop;
/// once tokens are sane again the rotation is installed.
#[test]
fn run_does_not_loop_on_tokens_expired_on_arrival() {
    let (env, first) = env_with(&[SECRET]);
    let skew = always(Fault::identity(FaultKind::ExpiresOnSkew(-2 * 86_400), 1));
    let skew = FaultScope::new(&env.emu).inject(skew);
    let service = Service::spawn(env.run_command(&[]));
    let asked = || env.emu.counters().identity >= 1;
    service.wait_for(secs(20), "no token request", asked);
    // From the first request: retries at 1–2 s and 3–6 s fall in the window, the next
    // one (7–14 s) does not.
    let window = secs(5);
    std::thread::sleep(window);
    let requests = env.emu.counters().identity;
    let retried = (2..=3).contains(&requests);
    assert!(retried, "{requests} token requests in {window:?}");
    let vault = env.emu.counters().vault_requests(VAULT);
    assert_eq!(vault, 0, "no vault request without a token");
    assert!(
        snapshot(&env.scratch.store()).is_empty(),
        "nothing installed"
    );
    skew.clear();
    wait_installed(&env, &service, &first[0].version, secs(20), "recovery");
    service.stop_within(secs(10));
}

/// 1 GiB answers, chunked and with a declared length, from the vault and from the identity
/// endpoint: each is cut at its cap (1 MiB, 64 KiB) and the agent's peak RSS stays far
/// below what buffering them would cost.
#[test]
fn run_refuses_1_gib_bodies_with_bounded_memory() {
    let (env, first) = env_with(&[SECRET]);
    // Short tokens, so that the agent asks the identity endpoint every few polls.
    env.emu.set_token_lifetime(secs(2));
    let service = service_installed(&env, &first[0].version);
    let installed = snapshot(&env.scratch.store());
    new_version(&env.emu, SECRET);
    let refused = || lines_with(&service.log(), &["not current", "exceeds 1048576 bytes"]);
    let mut faults = None;
    for declare_length in [false, true] {
        drop(faults.take());
        let logged = refused();
        let fault = always(Fault::object(VAULT, SECRET, oversize(declare_length), 1));
        faults = Some(FaultScope::new(&env.emu).inject(fault));
        let what = format!("declare_length {declare_length}");
        service.wait_for(secs(20), &what, || refused() >= logged + 2);
    }
    // The identity endpoint (its cap is 64 KiB). The vault's fault stays: a token still
    // valid when the identity fault starts would otherwise fetch the newer version.
    let fault = always(Fault::identity(oversize(false), 1));
    let _faults = faults.take().unwrap().inject(fault);
    let probe = RequestProbe::new(&env.emu);
    let what = "the identity endpoint was asked through the fault";
    service.wait_for(secs(30), what, || probe.identity() >= 3);
    let after = snapshot(&env.scratch.store());
    assert_eq!(after, installed, "the old certificate stays");
    let peak_kib = peak_rss_kib(service.pid());
    eprintln!("peak RSS (VmHWM) of `akvsync run` after 1 GiB bodies: {peak_kib} KiB");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");
    service.stop_within(secs(10));
}
