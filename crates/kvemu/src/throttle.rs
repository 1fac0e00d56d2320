//! Key Vault's documented request limits, enforced per vault and across every vault of the
//! emulator, answering how long until a refused request would be accepted.
//!
//! What Microsoft documents (sources in `docs/benchmarks.md`, "Key Vault's limits"): secret
//! GETs ("all other transactions") are limited to 4,000 per 10 seconds per vault per region;
//! a subscription-wide limit for all transaction types is five times the per-vault limit;
//! a request over the limit fails with 429 and error code `Throttled`, and failed (429)
//! requests do not count towards the limits. What it does not document, and this file
//! assumes: the window slides (at most `requests` accepted in *any* `window`), every vault
//! the emulator serves belongs to one subscription in one region, and the 429 carries
//! `Retry-After` with the seconds until the window has room again (switchable off: one
//! captured answer of the real service had no `Retry-After`).
//!
//! The fleet simulation (`crates/fleetsim`) compiles this file unchanged through `#[path]`,
//! so the simulated vaults and the emulator share one rule and one set of constants.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Secret GETs one vault accepts per [`WINDOW`] (Key Vault: "all other transactions").
pub const VAULT_REQUESTS: u32 = 4000;
/// The window Key Vault's limits are stated for.
pub const WINDOW: Duration = Duration::from_secs(10);
/// The subscription-wide limit as a multiple of the per-vault limit.
pub const SUBSCRIPTION_MULTIPLE: u32 = 5;

/// How GET requests are limited (`kvemu::ThrottleConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Requests one vault accepts in any `window`.
    pub requests: u32,
    pub window: Duration,
    /// Requests every vault together accepts in any `window`, as a multiple of
    /// `requests`; 0: no limit across vaults.
    pub subscription_multiple: u32,
    /// Whether a 429 carries `Retry-After` (whole seconds until the window has room).
    pub retry_after: bool,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            requests: VAULT_REQUESTS,
            window: WINDOW,
            subscription_multiple: SUBSCRIPTION_MULTIPLE,
            retry_after: true,
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Vault,
    Subscription,
}

impl Scope {
    /// The `Reason:` of the 429's message. The vault's is the real service's (a captured
    /// answer); the subscription's is the emulator's own wording (not documented).
    pub fn reason(self) -> &'static str {
        match self {
            Scope::Vault => "VaultRequestTypeLimitReached",
            Scope::Subscription => "SubscriptionRequestTypeLimitReached",
        }
    }
}

/// A refused request: the limit that refused it and how long until that limit (and any
/// other that is also full) has room again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub scope: Scope,
    pub wait: Duration,
}

/// `Retry-After` for a refusal that frees up in `wait`: whole seconds, rounded up, at
/// least 1 (the header has no fractions).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// The accepted requests of the last window, oldest first.
#[derive(Debug, Default)]
struct Log {
    accepted: VecDeque<Instant>,
}

impl Log {
    fn expire(&mut self, now: Instant, window: Duration) {
        while self.accepted.front().is_some_and(|&t| t + window <= now) {
            self.accepted.pop_front();
        }
    }

    /// `None` while below `limit`; otherwise how long until one more request fits.
    fn full(&self, limit: u32, now: Instant, window: Duration) -> Option<Duration> {
        let limit = limit.max(1) as usize;
        let excess = self.accepted.len().checked_sub(limit)?;
        let frees = self.accepted.get(excess).copied().unwrap_or(now) + window;
        Some(frees.saturating_duration_since(now))
    }
}

/// A sliding window per vault and one across every vault.
#[derive(Debug)]
pub struct Throttle {
    cfg: ThrottleConfig,
    vaults: HashMap<String, Log>,
    subscription: Log,
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        Throttle {
            cfg,
            vaults: HashMap::new(),
            subscription: Log::default(),
        }
    }

    pub fn config(&self) -> ThrottleConfig {
        self.cfg
    }

    /// A new configuration starts with empty windows.
    pub fn set_config(&mut self, cfg: ThrottleConfig) {
        self.cfg = cfg;
        self.vaults.clear();
        self.subscription = Log::default();
    }

    /// Counts one GET to `vault` at `now` (non-decreasing), or refuses it without
    /// counting it.
    pub fn take(&mut self, vault: &str, now: Instant) -> Result<(), Throttled> {
        let window = self.cfg.window;
        if !self.vaults.contains_key(vault) {
            self.vaults.insert(vault.to_owned(), Log::default());
        }
        let log = self.vaults.get_mut(vault).expect("inserted above");
        log.expire(now, window);
        let vault_full = log.full(self.cfg.requests, now, window);
        let subscription_full = match self.cfg.subscription_multiple {
            0 => None,
            multiple => {
                self.subscription.expire(now, window);
                let limit = self.cfg.requests.saturating_mul(multiple);
                self.subscription.full(limit, now, window)
            }
        };
        let refusal = match (vault_full, subscription_full) {
            (None, None) => {
                log.accepted.push_back(now);
                if self.cfg.subscription_multiple > 0 {
                    self.subscription.accepted.push_back(now);
                }
                return Ok(());
            }
            (Some(wait), None) => Throttled {
                scope: Scope::Vault,
                wait,
            },
            (None, Some(wait)) => Throttled {
                scope: Scope::Subscription,
                wait,
            },
            (Some(v), Some(s)) => Throttled {
                scope: if s > v {
                    Scope::Subscription
                } else {
                    Scope::Vault
                },
                wait: v.max(s),
            },
        };
        Err(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn config(requests: u32, subscription_multiple: u32) -> ThrottleConfig {
        ThrottleConfig {
            requests,
            window: 10 * S,
            subscription_multiple,
            ..ThrottleConfig::default()
        }
    }

    #[test]
    fn the_window_slides_and_refusals_do_not_count() {
        let mut t = Throttle::new(config(2, 0));
        let t0 = Instant::now();
        assert!(t.take("v", t0).is_ok());
        assert!(t.take("v", t0 + 4 * S).is_ok());
        let refused = t.take("v", t0 + 5 * S).unwrap_err();
        assert_eq!(refused.scope, Scope::Vault);
        assert_eq!(refused.wait, 5 * S);
        // Refused requests are not counted: at 10 s the first one has left the window.
        assert!(t.take("v", t0 + 10 * S).is_ok());
        assert_eq!(t.take("v", t0 + 10 * S).unwrap_err().wait, 4 * S);
        assert!(t.take("v", t0 + 14 * S).is_ok());
        // Another vault has its own window.
        assert!(t.take("w", t0 + 14 * S).is_ok());
    }

    #[test]
    fn the_subscription_limit_spans_vaults() {
        let mut t = Throttle::new(config(2, 2));
        let t0 = Instant::now();
        for (i, vault) in ["a", "a", "b", "b"].iter().enumerate() {
            assert!(t.take(vault, t0 + S * i as u32).is_ok(), "{i}");
        }
        // Vault c is empty, the subscription (2 × 2) is full until the first leaves.
        let refused = t.take("c", t0 + 5 * S).unwrap_err();
        assert_eq!(refused.scope, Scope::Subscription);
        assert_eq!(refused.wait, 5 * S);
        // Vault a is full too; the later of the two decides.
        let refused = t.take("a", t0 + 5 * S).unwrap_err();
        assert_eq!(refused.wait, 5 * S);
        assert!(t.take("c", t0 + 10 * S).is_ok());
    }

    #[test]
    fn a_new_configuration_empties_the_windows_and_retry_after_rounds_up() {
        let mut t = Throttle::new(config(1, 0));
        let t0 = Instant::now();
        assert!(t.take("v", t0).is_ok());
        assert!(t.take("v", t0).is_err());
        t.set_config(config(1, 0));
        assert!(t.take("v", t0).is_ok());
        assert_eq!(retry_after_secs(Duration::from_millis(3)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2100)), 3);
        assert_eq!(retry_after_secs(10 * S), 10);
        assert_eq!(ThrottleConfig::default().requests, 4000);
    }
}
