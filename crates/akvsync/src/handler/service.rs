//! The agent in extension mode (`akvsync handler service --state-dir DIR`, what the unit or
//! the detached process runs): the same engine and `service::run` loop as `akvsync run`,
//! on the settings `enable` handed over (`config`), logging to `logFolder`, with the
//! `reporter` writing the status files. Signal handlers are installed before the pid file
//! is written, so that `enable`'s SIGHUP can never kill a service that is starting.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::config;
use super::manager::PidClaim;
use super::reporter::Reporter;
use super::status::{Status, StatusReport};
use crate::exit;
use crate::settings::{self, Platform, SettingsError, render};
use crate::state::{StateDir, StateError};
use crate::sync::Engine;

/// Rewrites the status this often: SPEC §7 wants a `transitioning` status refreshed at
/// least every 2 minutes (an initial-sync retry can wait up to 300 s).
const REFRESH: Duration = Duration::from_secs(60);

/// Runs the service until SIGTERM/SIGINT.
pub fn run(state_dir: &Path) -> ExitCode {
    ExitCode::from(run_until(state_dir, None))
}

/// A stop request from outside the process (the Windows service control manager).
pub type StopRequest = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs the service until SIGTERM/SIGINT or `stop`; returns the exit code.
pub fn run_until(state_dir: &Path, stop: Option<StopRequest>) -> u8 {
    let handler = match config::read(state_dir) {
        Ok(c) => c,
        Err(error) => {
            eprintln!("error: {error} (run `akvsync handler enable` first)");
            return exit::INVALID;
        }
    };
    super::logs::init(&handler.log_folder, "akvsync-service.log");
    let reporter = Arc::new(Reporter::new(state_dir.to_path_buf(), handler.clone()));
    let fail = |status: Status, message: String, code: u8| {
        tracing::error!("{message}");
        reporter.publish(StatusReport {
            handler_name: handler.handler_name.clone(),
            operation: "Enable".to_owned(),
            status,
            code: 1,
            message,
            substatus: Vec::new(),
        });
        code
    };
    let settings_path = config::settings_path(state_dir);
    let validated = match settings::load_file(&settings_path, Platform::current()) {
        Ok(v) => v,
        Err(SettingsError::Invalid(diags)) => {
            return fail(Status::Error, render::errors(&diags.errors), exit::INVALID);
        }
        Err(error) => return fail(Status::Error, error.to_string(), exit::INVALID),
    };
    for warning in &validated.warnings {
        tracing::warn!(%warning, "settings");
    }
    let state = match StateDir::open(state_dir) {
        Ok(s) => s,
        Err(error @ StateError::Locked(_)) => {
            // Another service already runs on this state: it reports, not us.
            tracing::error!(%error, "another akvsync holds the state directory");
            return exit::LOCKED;
        }
        Err(error) => return fail(Status::Error, error.to_string(), exit::FAILURE),
    };
    let engine = match crate::vault::client_for(&validated.settings) {
        Ok(vault) => {
            let (engine, warnings) = Engine::new(validated.settings, vault, state);
            for warning in warnings {
                tracing::warn!(%warning);
            }
            Arc::new(engine)
        }
        Err(error) => return fail(Status::Error, error, exit::FAILURE),
    };
    engine.remember_settings(&settings_path);
    let rebuild = |current: &Engine, settings: settings::Settings| -> Result<Engine, String> {
        let vault = crate::vault::client_for(&settings)?;
        Ok(current.reconfigured(settings, vault))
    };
    let runtime = crate::service::runtime();
    runtime.block_on(async {
        let reload = Arc::new(tokio::sync::Notify::new());
        let shutdown = match signals(Arc::clone(&reload)) {
            Ok(signalled) => async move {
                match stop {
                    Some(stop) => tokio::select! {
                        _ = signalled => {}
                        _ = stop => tracing::info!("stop requested by the service control manager"),
                    },
                    None => signalled.await,
                }
            },
            Err(error) => {
                tracing::error!(%error, "cannot install signal handlers");
                return;
            }
        };
        // Signal handlers are in place: now `enable` may find us and send SIGHUP.
        let pid_claim = match PidClaim::claim(state_dir) {
            Ok(claim) => Some(claim),
            Err(error) => {
                tracing::error!(%error, "cannot write the pid file");
                None
            }
        };
        reporter.starting(engine.settings());
        let ticker = {
            let reporter = Arc::clone(&reporter);
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(REFRESH);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    reporter.refresh();
                }
            })
        };
        tracing::info!(
            seq = handler.seq_no,
            certificates = engine.settings().certificates.len(),
            "akvsync extension service started"
        );
        let reload_wait = move || {
            let reload = Arc::clone(&reload);
            Box::pin(async move { reload.notified().await })
                as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        };
        crate::service::run_observed(
            engine,
            settings_path.clone(),
            &rebuild,
            reload_wait,
            shutdown,
            &*reporter,
        )
        .await;
        ticker.abort();
        drop(pid_claim);
    });
    exit::OK
}

/// SIGHUP wakes `reload`; the returned future completes on SIGTERM or SIGINT.
#[cfg(unix)]
fn signals(
    reload: Arc<tokio::sync::Notify>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the settings");
            reload.notify_one();
        }
    });
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    })
}

/// Windows: Ctrl-C from a console; under the service control manager the stop arrives as
/// `run_until`'s `stop`, and a reload is a restart (`manager`).
#[cfg(not(unix))]
fn signals(
    reload: Arc<tokio::sync::Notify>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let _ = reload;
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
