//! Exponential backoff with full jitter, shared by the identity and vault clients and
//! the initial-sync retries, so that a fleet of agents never retries in lock-step.

use std::time::Duration;

/// How often and how long to retry transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Upper bound of any single delay.
    pub max: Duration,
    /// Attempts in total, the first included.
    pub attempts: u32,
}

impl Backoff {
    /// Azure's guidance for the identity endpoint: about 0, 2, 6, 14, 30 s (five retries),
    /// enough to ride out a 410 "available within 70 s".
    pub const IDENTITY: Backoff = Backoff {
        initial: Duration::from_secs(2),
        max: Duration::from_secs(32),
        attempts: 6,
    };
    /// Transient vault errors within one poll: three attempts, then wait for the next poll.
    pub const VAULT: Backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(30),
        attempts: 3,
    };

    /// Delay before retry number `retry` (1-based): uniformly random in
    /// `[base/2, base]` with `base = initial · 2^(retry-1)`, capped at `max`.
    pub fn delay(&self, retry: u32) -> Duration {
        let (low, high) = self.delay_bounds(retry);
        jitter_between(low, high)
    }

    /// The interval [`Backoff::delay`] draws from: `(base/2, base)`.
    pub fn delay_bounds(&self, retry: u32) -> (Duration, Duration) {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let base = self.initial.saturating_mul(factor).min(self.max);
        (base / 2, base)
    }

    /// What a client does after attempt `attempt` (1-based) failed (SPEC §10): an error it
    /// does not retry itself (permanent), or the last attempt, gives up until the next poll;
    /// a throttled answer with `Retry-After` retries as soon as the vault's push-back
    /// ([`retry_after_push_back`]) has passed; any other retryable error retries after
    /// [`Backoff::delay`]. (`vault::VaultClient::get_secret` follows this decision.)
    pub fn after_failure(
        &self,
        attempt: u32,
        retryable: bool,
        retry_after: Option<Duration>,
    ) -> Retry {
        if !retryable || attempt >= self.attempts {
            Retry::GiveUp
        } else if retry_after.is_some() {
            Retry::AfterPushBack
        } else {
            Retry::Sleep
        }
    }
}

/// The decision of [`Backoff::after_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Report the failure; the next poll tries again.
    GiveUp,
    /// Sleep [`Backoff::delay`]`(attempt)`, then try again.
    Sleep,
    /// Try again once the vault's `Retry-After` push-back has passed.
    AfterPushBack,
}

/// How long every request to a vault waits after it answered `Retry-After: delay`: the delay
/// plus up to 10 % jitter, so that the certificates (and machines) it throttled do not all
/// return at the same instant.
pub fn retry_after_push_back(delay: Duration) -> Duration {
    jitter_between(delay, delay + delay / 10)
}

/// A random duration in `[low, high]`.
pub fn jitter_between(low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let span = (high - low).as_millis().min(u128::from(u64::MAX)) as u64;
    low + Duration::from_millis(fastrand::u64(0..=span))
}

/// `Retry-After` as seconds or an HTTP date; bounded so that a hostile value cannot park
/// a certificate for days.
pub fn parse_retry_after(value: &str, cap: Duration) -> Option<Duration> {
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_bounds() {
        let backoff = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(8),
            attempts: 10,
        };
        for _ in 0..100 {
            let first = backoff.delay(1);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let tenth = backoff.delay(10);
            assert!(tenth >= Duration::from_secs(4) && tenth <= Duration::from_secs(8));
        }
    }

    #[test]
    fn failures_retry_transient_errors_until_the_last_attempt() {
        let backoff = Backoff::VAULT;
        let seven = Some(Duration::from_secs(7));
        assert_eq!(backoff.after_failure(1, true, None), Retry::Sleep);
        assert_eq!(backoff.after_failure(2, true, seven), Retry::AfterPushBack);
        assert_eq!(backoff.after_failure(3, true, seven), Retry::GiveUp);
        assert_eq!(backoff.after_failure(1, false, None), Retry::GiveUp);
        for _ in 0..100 {
            let d = retry_after_push_back(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(10) && d <= Duration::from_secs(11));
        }
    }

    #[test]
    fn retry_after_is_capped() {
        assert_eq!(
            parse_retry_after("7", Duration::from_secs(60)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("999999", Duration::from_secs(60)),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", Duration::from_secs(60)), None);
    }
}
