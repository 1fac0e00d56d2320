//! The one type the emulator's throttle (`crates/kvemu/src/throttle.rs`, compiled here
//! unchanged through `#[path]`) takes from `kvemu::config`, with the same fields, so that
//! the simulation runs the emulator's own throttle code without linking the emulator.

use std::time::Duration;

/// Per-vault token bucket for GET requests (as `kvemu::ThrottleConfig`).
#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Requests allowed per `window` (Key Vault: about 4,000 secret GETs per 10 s).
    pub requests: u32,
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            requests: 4000,
            window: Duration::from_secs(10),
        }
    }
}
