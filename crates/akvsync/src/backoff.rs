//! Exponential backoff with full jitter, shared by the identity and vault clients and
//! the initial-sync retries, so that a fleet of agents never retries in lock-step; and a
//! vault's push-back after a throttled answer ([`VaultPushBack`]): the vault's
//! `Retry-After`, or without one Key Vault's 10 s window plus Microsoft's growing backoff
//! ([`ThrottlePushBack`]). Pure decisions, so that the fleet simulation runs them too.

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
    /// a throttled answer (429/503, with or without `Retry-After`) retries as soon as the
    /// vault's push-back ([`VaultPushBack`]) has passed; any other retryable error retries
    /// after [`Backoff::delay`]. (`vault::VaultClient::get_secret` follows this decision.)
    pub fn after_failure(&self, attempt: u32, retryable: bool, throttled: bool) -> Retry {
        if !retryable || attempt >= self.attempts {
            Retry::GiveUp
        } else if throttled {
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
    /// Try again once the vault's push-back has passed.
    AfterPushBack,
}

/// How long a vault that answered 429/503 **without** `Retry-After` is left alone (SPEC §3:
/// "otherwise exponential backoff with jitter, per vault"). Key Vault counts requests in a
/// 10 s window and does not count the ones it refuses, so a retry within the window is
/// refused again: the push-back after the `n`-th such answer in a row is the window plus
/// Microsoft's backoff `step · 2^(n-1)` (1, 2, 4, 8, 16 s: its throttling guidance), capped
/// at `max_step`, plus up to one more window of jitter, so that the certificates of a
/// vault and the machines of a fleet come back spread over a window instead of together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePushBack {
    /// Key Vault's throttling window.
    pub window: Duration,
    /// Microsoft's first backoff step, doubled per throttled answer in a row.
    pub step: Duration,
    /// The largest step.
    pub max_step: Duration,
}

impl ThrottlePushBack {
    /// Key Vault's documented window (10 s) and Microsoft's 1, 2, 4, 8, 16 s.
    pub const KEY_VAULT: ThrottlePushBack = ThrottlePushBack {
        window: Duration::from_secs(10),
        step: Duration::from_secs(1),
        max_step: Duration::from_secs(16),
    };

    /// The interval [`ThrottlePushBack::delay`] draws from after the `in_row`-th throttled
    /// answer in a row (≥ 1): `[window + step_n, 2·window + step_n]`.
    pub fn bounds(&self, in_row: u32) -> (Duration, Duration) {
        let factor = 2u32.saturating_pow(in_row.saturating_sub(1));
        let step = self.step.saturating_mul(factor).min(self.max_step);
        let low = self.window.saturating_add(step);
        (low, low.saturating_add(self.window))
    }

    /// A push-back drawn uniformly from [`ThrottlePushBack::bounds`].
    pub fn delay(&self, in_row: u32) -> Duration {
        let (low, high) = self.bounds(in_row);
        jitter_between(low, high)
    }
}

/// One vault's push-back as a client keeps it: no request before `until`. Instants are
/// durations since the client's own epoch (the agent's start, the simulation's t = 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VaultPushBack {
    /// No request to the vault before this instant.
    pub until: Duration,
    /// When the latest throttled answer arrived.
    pub since: Duration,
    /// Throttled answers without `Retry-After` in a row (a burst counted once).
    pub in_row: u32,
}

impl VaultPushBack {
    /// After the vault answered 429/503 to a request sent at `sent`, the answer arriving at
    /// `now`: with `Retry-After`, [`retry_after_push_back`] (what the vault asks for);
    /// without, `rule`'s push-back for one more throttled answer in a row — unless the
    /// request was sent before the latest throttled answer arrived while its push-back still
    /// lasts: the concurrent requests of one burst are one refusal, not several (they would
    /// otherwise grow the push-back at once). A push-back is never shortened.
    pub fn throttled(
        self,
        sent: Duration,
        now: Duration,
        retry_after: Option<Duration>,
        rule: &ThrottlePushBack,
    ) -> VaultPushBack {
        match (retry_after, self.counts(sent, now)) {
            (Some(delay), _) => self.push(now, retry_after_push_back(delay), self.in_row),
            (None, Some(in_row)) => self.push(now, rule.delay(in_row), in_row),
            (None, None) => self,
        }
    }

    /// The count in a row a throttled answer without `Retry-After` makes, or `None` when it
    /// belongs to the burst the current push-back already answers (see
    /// [`VaultPushBack::throttled`]).
    pub fn counts(&self, sent: Duration, now: Duration) -> Option<u32> {
        let same_burst = sent < self.since && now < self.until;
        (!same_burst).then(|| self.in_row.saturating_add(1))
    }

    /// No request before `now + delay` (or the current push-back, if later); `in_row`
    /// throttled answers in a row.
    pub fn push(self, now: Duration, delay: Duration, in_row: u32) -> VaultPushBack {
        VaultPushBack {
            until: self.until.max(now.saturating_add(delay)),
            since: now,
            in_row,
        }
    }

    /// The vault answered something other than 429/503: the next throttled answer starts a
    /// new series (the push-back in force, if any, still applies).
    pub fn answered(self) -> VaultPushBack {
        VaultPushBack { in_row: 0, ..self }
    }
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
        assert_eq!(backoff.after_failure(1, true, false), Retry::Sleep);
        assert_eq!(backoff.after_failure(2, true, true), Retry::AfterPushBack);
        assert_eq!(backoff.after_failure(3, true, true), Retry::GiveUp);
        assert_eq!(backoff.after_failure(1, false, false), Retry::GiveUp);
        for _ in 0..100 {
            let d = retry_after_push_back(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(10) && d <= Duration::from_secs(11));
        }
        // With Retry-After the vault decides (plus up to 10 %), whatever the series.
        let vault = VaultPushBack::default().throttled(
            Duration::ZERO,
            secs(1),
            seven,
            &ThrottlePushBack::KEY_VAULT,
        );
        assert!(vault.until >= secs(8) && vault.until <= Duration::from_millis(8700));
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_throttle_without_retry_after_pushes_back_a_window_and_more_capped() {
        let rule = ThrottlePushBack::KEY_VAULT;
        let expected = [(11, 21), (12, 22), (14, 24), (18, 28), (26, 36), (26, 36)];
        for (n, (low, high)) in (1..).zip(expected) {
            assert_eq!(
                rule.bounds(n),
                (secs(low), secs(high)),
                "answer {n} in a row"
            );
        }
        assert_eq!(rule.bounds(u32::MAX), (secs(26), secs(36)));
        // Jittered over a whole window: the draws spread, within the bounds.
        let draws: Vec<Duration> = (0..1000).map(|_| rule.delay(1)).collect();
        assert!(draws.iter().all(|d| *d >= secs(11) && *d <= secs(21)));
        let early = draws.iter().filter(|d| **d < secs(16)).count();
        assert!(
            (300..=700).contains(&early),
            "{early} of 1000 in the first half"
        );
    }

    #[test]
    fn a_vaults_push_back_grows_per_series_not_per_concurrent_request() {
        let rule = ThrottlePushBack::KEY_VAULT;
        let start = VaultPushBack::default();
        // Three requests sent at t = 0 all refused; their answers arrive at 0.1 s.
        let t = Duration::from_millis(100);
        let first = start.throttled(Duration::ZERO, t, None, &rule);
        assert_eq!(first.in_row, 1);
        assert!(first.until >= t + secs(11) && first.until <= t + secs(21));
        let second = first.throttled(Duration::ZERO, t, None, &rule);
        assert_eq!(second, first, "the same burst: no growth, no new draw");
        // The retry after the push-back is refused again: the series grows.
        let retry = first.until;
        let again = first.throttled(retry, retry + t, None, &rule);
        assert_eq!(again.in_row, 2);
        assert!(again.until >= retry + t + secs(12) && again.until <= retry + t + secs(22));
        // An answer that is not a throttle ends the series; the push-back in force stays.
        let ok = again.answered();
        assert_eq!((ok.in_row, ok.until), (0, again.until));
        let later = ok.until + secs(60);
        assert_eq!(ok.throttled(later, later, None, &rule).in_row, 1);
        // A push-back is never shortened.
        let long = start.push(Duration::ZERO, secs(100), 1);
        assert_eq!(long.push(secs(1), secs(1), 2).until, secs(100));
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
