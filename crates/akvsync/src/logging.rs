//! Log settings shared by every way akvsync runs (CLI service, handler service, Windows
//! service): the level comes from `AKVSYNC_LOG` (error, warn, info, debug, trace).

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
