//! Per-vault token buckets for GET requests, answering how long to wait when empty.

use crate::config::ThrottleConfig;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// One token bucket per vault.
#[derive(Debug)]
pub struct Throttle {
    cfg: ThrottleConfig,
    buckets: HashMap<String, Bucket>,
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        Throttle {
            cfg,
            buckets: HashMap::new(),
        }
    }

    pub fn set_config(&mut self, cfg: ThrottleConfig) {
        self.cfg = cfg;
        self.buckets.clear();
    }

    /// Takes one token for `vault`; `Err(wait)` when the bucket is empty.
    pub fn take(&mut self, vault: &str, now: Instant) -> Result<(), Duration> {
        let cap = f64::from(self.cfg.requests.max(1));
        let rate = cap / self.cfg.window.as_secs_f64().max(0.001);
        let b = self.buckets.entry(vault.to_string()).or_insert(Bucket {
            tokens: cap,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(cap);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_refills() {
        let mut t = Throttle::new(ThrottleConfig {
            requests: 3,
            window: Duration::from_secs(3),
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(t.take("v", t0).is_ok());
        }
        let wait = t.take("v", t0).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        assert!(t.take("other", t0).is_ok());
        assert!(t.take("v", t0 + Duration::from_secs(1)).is_ok());
    }
}
