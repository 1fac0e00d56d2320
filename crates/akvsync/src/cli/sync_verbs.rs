//! `akvsync once` and `akvsync status`: load and validate the settings, lock the state
//! directory, then sync (or read back) every certificate and print a table. `once` also
//! writes the metrics textfile when one is configured; `run` hands over to `service`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use super::table;
use super::{SyncArgs, exit};
use crate::settings::{self, Platform, SettingsError, Validated, render};
use crate::state::{self, StateDir, StateError};
use crate::sync::{Engine, Report, SyncResult};

/// A start-up warning: a plain stderr line for `once`, a log event for `run` (so that with
/// `AKVSYNC_LOG_FORMAT=json` every line the service prints is JSON).
fn warn(logged: bool, warning: &dyn std::fmt::Display) {
    if logged {
        tracing::warn!(%warning, "settings");
    } else {
        eprintln!("warning: {warning}");
    }
}

/// A fatal start-up error, printed like [`warn`].
fn fail(logged: bool, error: &dyn std::fmt::Display) {
    if logged {
        tracing::error!(%error, "cannot start");
    } else {
        eprintln!("error: {error}");
    }
}

/// Loads settings for this platform, printing errors (exit 2) and warnings.
fn load_settings(path: &std::path::Path, logged: bool) -> Result<Validated, ExitCode> {
    if !logged {
        return load_settings_quietly(path).inspect(|validated| {
            for warning in &validated.warnings {
                warn(false, warning);
            }
        });
    }
    match settings::load_file(path, Platform::current()) {
        Ok(validated) => {
            for warning in &validated.warnings {
                warn(true, warning);
            }
            Ok(validated)
        }
        Err(SettingsError::Invalid(diags)) => {
            for error in &diags.errors {
                fail(true, error);
            }
            Err(ExitCode::from(exit::INVALID))
        }
        Err(error) => {
            fail(true, &error);
            Err(ExitCode::from(exit::INVALID))
        }
    }
}

/// Loads settings for this platform, printing only errors (exit 2): for `status` and
/// `wait`, which would otherwise repeat `once`'s warnings at every call.
pub(crate) fn load_settings_quietly(path: &std::path::Path) -> Result<Validated, ExitCode> {
    match settings::load_file(path, Platform::current()) {
        Ok(validated) => Ok(validated),
        Err(SettingsError::Invalid(diags)) => {
            eprint!("{}", render::errors(&diags.errors));
            Err(ExitCode::from(exit::INVALID))
        }
        Err(error) => {
            eprintln!("error: {error}");
            Err(ExitCode::from(exit::INVALID))
        }
    }
}

fn open_state(dir: Option<&PathBuf>, logged: bool) -> Result<StateDir, ExitCode> {
    let dir = dir.cloned().unwrap_or_else(state::default_state_dir);
    StateDir::open(&dir).map_err(|error| {
        fail(logged, &error);
        ExitCode::from(if matches!(error, StateError::Locked(_)) {
            exit::LOCKED
        } else {
            exit::FAILURE
        })
    })
}

/// Builds the engine for validated settings.
#[cfg(feature = "demo")]
pub(crate) fn engine(
    settings: settings::Settings,
    state_dir: StateDir,
) -> Result<Arc<Engine>, String> {
    engine_logged(settings, state_dir, false)
}

fn engine_logged(
    settings: settings::Settings,
    state_dir: StateDir,
    logged: bool,
) -> Result<Arc<Engine>, String> {
    let vault = crate::vault::client_for(&settings)?;
    let (engine, warnings) = Engine::new(settings, vault, state_dir);
    for warning in warnings {
        warn(logged, &warning);
    }
    Ok(Arc::new(engine))
}

/// `once` and `run`: validated settings (exit 2), the locked state directory (exit 3),
/// the engine (exit 1), and the settings remembered for `status`.
fn start_engine(args: &SyncArgs, logged: bool) -> Result<Arc<Engine>, ExitCode> {
    let validated = load_settings(&args.settings, logged)?;
    // Least privilege (issue 16): before any network input, a service account keeps only
    // the capabilities these settings need.
    #[cfg(target_os = "linux")]
    for warning in crate::privilege::caps::narrow_for(&validated.settings) {
        warn(logged, &warning);
    }
    let state_dir = open_state(args.state_dir.as_ref(), logged)?;
    let engine = engine_logged(validated.settings, state_dir, logged).map_err(|message| {
        fail(logged, &message);
        ExitCode::from(exit::FAILURE)
    })?;
    engine.remember_settings(&args.settings);
    Ok(engine)
}

pub(crate) fn once(args: &SyncArgs) -> ExitCode {
    let engine = match start_engine(args, false) {
        Ok(engine) => engine,
        Err(code) => return code,
    };
    let reports = crate::service::runtime().block_on(engine.sync_all());
    let textfile_error =
        crate::metrics::Exporter::round_done(&engine.settings().akvsync.metrics, engine.metrics());
    print!("{}", sync_table(&reports));
    for report in &reports {
        for warning in report.all_warnings() {
            eprintln!("warning: {}: {warning}", report.name);
        }
    }
    if let Some(error) = &textfile_error {
        eprintln!("error: {error}");
    }
    if textfile_error.is_none() && reports.iter().all(Report::is_current) {
        ExitCode::from(exit::OK)
    } else {
        ExitCode::from(exit::FAILURE)
    }
}

/// One row per certificate: name, result, version, thumbprint, expiry, target.
pub(crate) fn sync_table(reports: &[Report]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let result = match &r.result {
                SyncResult::Installed => "installed".to_owned(),
                SyncResult::Unchanged => "current".to_owned(),
                SyncResult::Failed(message) => format!("FAILED: {message}"),
            };
            vec![
                r.name.clone(),
                r.version.clone().unwrap_or_else(|| "-".to_owned()),
                r.thumbprint.clone().unwrap_or_else(|| "-".to_owned()),
                r.not_after.map_or_else(|| "-".to_owned(), table::date),
                r.target.clone(),
                result,
            ]
        })
        .collect();
    table::render(
        &[
            "CERTIFICATE",
            "VERSION",
            "THUMBPRINT",
            "EXPIRES",
            "TARGET",
            "RESULT",
        ],
        &rows,
    )
}

/// Logs go to stderr (the journal under systemd): human-readable by default, JSON with
/// `AKVSYNC_LOG_FORMAT=json`; level from `AKVSYNC_LOG` (error, warn, info, debug, trace).
fn init_logging() {
    let level = crate::logging::level_from_env();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    if std::env::var("AKVSYNC_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        crate::logging::init(layer.json(), level);
    } else {
        crate::logging::init(layer.with_ansi(false), level);
    }
}

pub(crate) fn run(args: &SyncArgs) -> ExitCode {
    init_logging();
    run_until(args, std::future::pending())
}

/// `run` that also stops when `stop` completes (the Windows service's stop request).
pub(crate) fn run_until(args: &SyncArgs, stop: impl std::future::Future<Output = ()>) -> ExitCode {
    let engine = match start_engine(args, true) {
        Ok(engine) => engine,
        Err(code) => return code,
    };
    let rebuild = |current: &Engine, settings: settings::Settings| -> Result<Engine, String> {
        // Reloaded settings: what they no longer need is dropped too; what they need and
        // the process gave up at start is named (only a restart grants it again).
        #[cfg(target_os = "linux")]
        for warning in crate::privilege::caps::narrow_for(&settings) {
            tracing::warn!("{warning}");
        }
        let vault = crate::vault::client_for(&settings)?;
        Ok(current.reconfigured(settings, vault))
    };
    crate::service::runtime().block_on(async move {
        let reload = Arc::new(tokio::sync::Notify::new());
        let signal = shutdown_signal(Arc::clone(&reload));
        let shutdown = async move {
            tokio::select! {
                () = signal => {}
                () = stop => tracing::info!("stop requested: stopping"),
            }
        };
        let reload_wait = move || {
            let reload = Arc::clone(&reload);
            Box::pin(async move { reload.notified().await })
                as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        };
        tracing::info!(
            certificates = engine.settings().certificates.len(),
            "akvsync started"
        );
        crate::service::run(
            engine,
            args.settings.clone(),
            &rebuild,
            reload_wait,
            shutdown,
        )
        .await;
    });
    ExitCode::from(exit::OK)
}

/// Completes on SIGTERM or SIGINT (Ctrl-C on Windows); SIGHUP wakes `reload`.
async fn shutdown_signal(reload: Arc<tokio::sync::Notify>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                reload.notify_one();
            }
        });
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reload;
        let _ = tokio::signal::ctrl_c().await;
    }
}
