//! The long-running service (`akvsync run`, SPEC §6, §8): after an optional random
//! start-up delay (`akvsync.initialSyncSpreadInS`), sync everything, then poll every
//! `pollingIntervalInS` ± 10 %; with `requireInitialSync`, retry from 5 s with backoff
//! until every certificate is installed once (or the attempt limit), and only then tell
//! systemd READY; without it, a certificate never installed that failed transiently is
//! still retried on that schedule (`schedule::next_round`); reload the settings on SIGHUP
//! (an invalid file keeps the last good settings); stop promptly on SIGTERM/SIGINT (or the
//! Windows service's stop).
//! With `akvsync.metrics`, serve the metrics endpoint and rewrite the textfile after each
//! round; log an expiry warning once per certificate per day, not at every poll.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::eventlog::ids;
use crate::metrics::Exporter;
use crate::notify::notify;
use crate::schedule;
use crate::schedule::InitialSyncEnd;
use crate::settings::{self, Platform, SettingsError};
use crate::sync::{Engine, Report, SyncResult};

/// The agent's runtime, the same for `once`, `run`, the extension's service and the Windows
/// service: one thread for the network, a few short-lived blocking threads for decode and
/// store work.
pub fn runtime() -> tokio::runtime::Runtime {
    one_malloc_arena();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Decode and store work runs on blocking threads: several, so that the fsyncs of
        // concurrent installs overlap (the filesystem commits them together); idle ones
        // exit quickly so that a polling agent stays small.
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build()
        .expect("a current-thread runtime needs no resources that can fail")
}

/// Blocking threads for decode and store work (benchmarks: docs/benchmarks.md).
const BLOCKING_THREADS: usize = 4;

/// Every thread allocates from glibc's main arena: a blocking thread would otherwise keep
/// an arena of its own resident after a round, which the 8 MiB budget cannot afford.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets one of glibc's allocator tunables; it takes no pointers.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}

/// Builds an engine for new settings sharing the running engine's state (used on reload).
pub type Rebuild = dyn Fn(&Engine, settings::Settings) -> Result<Engine, String> + Send + Sync;

pub use crate::schedule::Phase;

/// Told about every sync round and reload; the extension handler writes its status
/// files from these (`handler::reporter`). Plain `run` observes nothing.
pub trait Observer {
    /// A sync round ended; `phase` is the phase after it.
    fn round(&self, phase: Phase, settings: &settings::Settings, reports: &[Report]);
    /// A SIGHUP reload ended; `false` when the service keeps its last good settings.
    fn reloaded(&self, applied: bool);
}

impl Observer for () {
    fn round(&self, _: Phase, _: &settings::Settings, _: &[Report]) {}
    fn reloaded(&self, _: bool) {}
}

/// Runs until `shutdown` completes. `reload` fires on SIGHUP (or never).
pub async fn run(
    engine: Arc<Engine>,
    settings_path: PathBuf,
    rebuild: &Rebuild,
    reload: impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    shutdown: impl Future<Output = ()>,
) {
    run_observed(engine, settings_path, rebuild, reload, shutdown, &()).await;
}

/// [`run`], telling `observer` about every round and reload.
pub async fn run_observed(
    mut engine: Arc<Engine>,
    settings_path: PathBuf,
    rebuild: &Rebuild,
    mut reload: impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    shutdown: impl Future<Output = ()>,
    observer: &dyn Observer,
) {
    tokio::pin!(shutdown);
    let mut phase = if engine.settings().require_initial_sync {
        notify("STATUS=initial sync");
        Phase::InitialSync { attempt: 0 }
    } else {
        notify("READY=1");
        Phase::Polling
    };
    let mut exporter = Exporter::default();
    exporter
        .configure(&engine.settings().akvsync.metrics, engine.metrics())
        .await;
    let mut expiry_log = ExpiryLog::default();
    let spread = Duration::from_secs(engine.settings().akvsync.initial_sync_spread_s);
    if !spread.is_zero() {
        let delay = schedule::start_delay(spread);
        tracing::info!(
            delay_s = delay.as_secs(),
            "first sync delayed (initialSyncSpreadInS)"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut shutdown => {
                notify("STOPPING=1");
                tracing::info!("stopped");
                return;
            }
        }
    }
    // What the next round is, and the last round's reports (a catch-up round carries the
    // installed certificates' reports over).
    let mut next = schedule::NextRound::Poll;
    let mut last: Vec<Report> = Vec::new();
    loop {
        let round = async {
            if next.only_waiting() {
                engine.sync_waiting(&last).await
            } else {
                engine.sync_all().await
            }
        };
        let reports = tokio::select! {
            reports = round => reports,
            () = &mut shutdown => break,
        };
        log_reports(&reports, &mut expiry_log, now());
        let _ = Exporter::round_done(&engine.settings().akvsync.metrics, engine.metrics());
        exporter
            .configure(&engine.settings().akvsync.metrics, engine.metrics())
            .await;
        crate::memory::release_freed_memory();
        phase = next_phase(
            phase,
            &reports,
            engine.settings().akvsync.initial_sync_max_attempts,
        );
        observer.round(phase, engine.settings(), &reports);
        let interval = Duration::from_secs(engine.settings().polling_interval_s);
        let waiting = reports.iter().any(Report::waits_for_first_install);
        next = schedule::next_round(phase, next, waiting);
        last = reports;
        let delay = next.delay(interval);
        tracing::debug!(?phase, ?next, ?delay, "next sync");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = reload() => {
                notify("RELOADING=1");
                let new = reload_settings(&engine, &settings_path, rebuild);
                observer.reloaded(new.is_some());
                // Other settings: the next round syncs every certificate.
                next = schedule::NextRound::Poll;
                if let Some(new) = new {
                    engine = Arc::new(new);
                    exporter
                        .configure(&engine.settings().akvsync.metrics, engine.metrics())
                        .await;
                }
                notify("READY=1");
            }
            () = &mut shutdown => break,
        }
    }
    notify("STOPPING=1");
    tracing::info!("stopped");
}

/// The phase after a sync round; sends READY when the initial sync completes or gives up.
fn next_phase(phase: Phase, reports: &[Report], max_attempts: Option<u32>) -> Phase {
    let all_current = reports.iter().all(Report::is_current);
    let (next, ended) = crate::schedule::next_phase(phase, all_current, max_attempts);
    match ended {
        Some(InitialSyncEnd::Complete { attempts }) => {
            tracing::info!(
                attempts,
                "initial sync complete: every certificate is installed"
            );
            notify("READY=1\nSTATUS=polling");
        }
        Some(InitialSyncEnd::GaveUp { attempts }) => {
            tracing::error!(attempts, "initial sync gave up; polling continues");
            notify("READY=1\nSTATUS=initial sync failed; polling");
        }
        None => {}
    }
    next
}

fn reload_settings(engine: &Engine, path: &std::path::Path, rebuild: &Rebuild) -> Option<Engine> {
    match settings::load_file(path, Platform::current()) {
        Ok(validated) => {
            for warning in &validated.warnings {
                tracing::warn!(%warning, "settings");
            }
            match rebuild(engine, validated.settings) {
                Ok(new) => {
                    new.remember_settings(path);
                    tracing::info!(path = %path.display(), "settings reloaded");
                    Some(new)
                }
                Err(error) => {
                    tracing::error!(event_id = ids::SETTINGS, %error, "reload failed; keeping the last good settings");
                    None
                }
            }
        }
        Err(SettingsError::Invalid(diags)) => {
            for error in &diags.errors {
                tracing::error!(event_id = ids::SETTINGS, %error, "new settings are invalid; keeping the last good settings");
            }
            None
        }
        Err(error) => {
            tracing::error!(event_id = ids::SETTINGS, %error, "keeping the last good settings");
            None
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// When each certificate's expiry warning was last logged: polls are often more frequent
/// than a day, and the same warning every poll would drown the log.
#[derive(Debug, Default)]
struct ExpiryLog {
    logged: HashMap<String, u64>,
}

impl ExpiryLog {
    const PERIOD_S: u64 = 24 * 3600;

    /// Whether to log `report`'s expiry warning at `now`; forgets certificates whose
    /// warning went away (renewed), so that a later one is logged at once.
    fn due(&mut self, report: &Report, now: u64) -> bool {
        if report.expiry_warning.is_none() {
            self.logged.remove(&report.name);
            return false;
        }
        match self.logged.get(&report.name) {
            Some(last) if now.saturating_sub(*last) < Self::PERIOD_S => false,
            _ => {
                self.logged.insert(report.name.clone(), now);
                true
            }
        }
    }
}

fn log_reports(reports: &[Report], expiry_log: &mut ExpiryLog, now: u64) {
    for report in reports {
        let version = report.version.as_deref().unwrap_or("-");
        let thumbprint = report.thumbprint.as_deref().unwrap_or("-");
        match &report.result {
            SyncResult::Installed => {
                tracing::info!(certificate = %report.name, version, thumbprint, target = %report.target, "installed")
            }
            SyncResult::Unchanged => {
                tracing::debug!(certificate = %report.name, version, "current")
            }
            SyncResult::Failed(error) => {
                let event_id = if error.starts_with("chain validation") {
                    ids::CHAIN_REFUSED
                } else {
                    ids::CERTIFICATE_FAILED
                };
                tracing::warn!(event_id, certificate = %report.name, %error, "not current")
            }
        }
        for warning in &report.warnings {
            let event_id = if warning.starts_with("hook failed") {
                ids::HOOK_FAILED
            } else {
                ids::OTHER_WARNING
            };
            tracing::warn!(event_id, certificate = %report.name, %warning);
        }
        if expiry_log.due(report, now)
            && let Some(warning) = &report.expiry_warning
        {
            let not_after = report.not_after.unwrap_or_default();
            tracing::warn!(event_id = ids::EXPIRY, certificate = %report.name, not_after, %warning, "certificate expiry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(result: SyncResult) -> Report {
        Report {
            name: "v/s".into(),
            target: String::new(),
            result,
            version: None,
            thumbprint: None,
            not_after: None,
            warnings: Vec::new(),
            expiry_warning: None,
            outputs: Vec::new(),
            outputs_error: None,
            transient: false,
        }
    }

    #[test]
    fn initial_sync_ends_when_all_are_current_or_the_attempt_limit_is_reached() {
        let failed = [
            report(SyncResult::Failed("403".into())),
            report(SyncResult::Installed),
        ];
        let done = [report(SyncResult::Unchanged), report(SyncResult::Installed)];
        let start = Phase::InitialSync { attempt: 0 };
        assert_eq!(
            next_phase(start, &failed, None),
            Phase::InitialSync { attempt: 1 }
        );
        assert_eq!(
            next_phase(Phase::InitialSync { attempt: 99 }, &failed, None),
            Phase::InitialSync { attempt: 100 }
        );
        assert_eq!(next_phase(start, &done, None), Phase::Polling);
        assert_eq!(
            next_phase(Phase::InitialSync { attempt: 24 }, &failed, Some(25)),
            Phase::Polling,
            "25th attempt gives up"
        );
        assert_eq!(
            next_phase(Phase::InitialSync { attempt: 23 }, &failed, Some(25)),
            Phase::InitialSync { attempt: 24 }
        );
        assert_eq!(
            next_phase(Phase::Polling, &failed, Some(1)),
            Phase::Polling,
            "failures after start never go back"
        );
    }

    #[test]
    fn only_a_transient_failure_of_a_certificate_never_installed_waits_for_a_catch_up() {
        let mut throttled = report(SyncResult::Failed("answered 429".into()));
        throttled.transient = true;
        assert!(throttled.waits_for_first_install());
        let mut installed_before = throttled.clone();
        installed_before.version = Some("0123456789abcdef0123456789abcdef".into());
        assert!(
            !installed_before.waits_for_first_install(),
            "keeps the poll"
        );
        let forbidden = report(SyncResult::Failed("answered 403 Forbidden".into()));
        assert!(!forbidden.waits_for_first_install(), "permanent: next poll");
        assert!(!report(SyncResult::Installed).waits_for_first_install());
    }

    #[test]
    fn an_expiry_warning_is_logged_once_a_day_and_again_after_a_renewal() {
        let mut log = ExpiryLog::default();
        let mut expiring = report(SyncResult::Unchanged);
        expiring.expiry_warning = Some("the certificate expires in 3 days".into());
        let t = 1_000_000;
        assert!(log.due(&expiring, t));
        assert!(!log.due(&expiring, t + 3600), "not at every poll");
        assert!(!log.due(&expiring, t + 86_399));
        assert!(log.due(&expiring, t + 86_400), "again a day later");
        let renewed = report(SyncResult::Installed);
        assert!(!log.due(&renewed, t + 86_500));
        assert!(
            log.due(&expiring, t + 86_600),
            "a new warning after a renewal"
        );
    }
}
