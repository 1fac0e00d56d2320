//! Log settings shared by every way akvsync runs (CLI service, handler service, Windows
//! service): the level comes from `AKVSYNC_LOG` (error, warn, info, debug, trace), and
//! [`init`] installs the output beside the Windows event log ([`crate::eventlog`]).

use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs `output` (a `fmt` layer) at `level`, plus, on Windows, the Application event
/// log for warnings and errors, as this process's subscriber (once; later calls are no-ops).
pub fn init<L>(output: L, level: tracing::Level)
where
    L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    let level = tracing_subscriber::filter::LevelFilter::from_level(level);
    let events =
        crate::eventlog::layer().with_filter(tracing_subscriber::filter::LevelFilter::WARN);
    let _ = tracing_subscriber::registry()
        .with(output.with_filter(level))
        .with(events)
        .try_init();
}

/// The level `AKVSYNC_LOG` asks for; info when unset or unknown.
pub fn level_from_env() -> tracing::Level {
    match std::env::var("AKVSYNC_LOG")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    }
}
