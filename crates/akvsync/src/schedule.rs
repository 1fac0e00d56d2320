//! When to poll (SPEC §6, §10): the polling interval with ±10 % jitter so that a scale set
//! does not hit its vault in lock-step, and the initial-sync retry delays (from 5 s, doubling,
//! capped at min(pollingIntervalInS, 300 s)) used while `requireInitialSync` waits for every
//! certificate, the service's phase after a round, which round comes next (a certificate
//! never installed that failed transiently is retried on the initial-sync schedule even
//! without `requireInitialSync`: [`next_round`]), the start-up spread
//! (`akvsync.initialSyncSpreadInS`) and when a cached token stops being fresh. Pure
//! functions of their inputs, so that the fleet simulation runs the very same rules with a
//! virtual clock.

use std::time::Duration;

use crate::backoff;

/// Jitter around the polling interval, as a fraction.
pub const POLL_JITTER: f64 = 0.10;
/// First retry of a failed initial sync.
pub const INITIAL_RETRY: Duration = Duration::from_secs(5);
/// Cap of the initial-sync retry delay.
pub const INITIAL_RETRY_CAP: Duration = Duration::from_secs(300);

/// The delay until the next poll: `interval` ± 10 %.
pub fn next_poll(interval: Duration) -> Duration {
    let (low, high) = next_poll_bounds(interval);
    backoff::jitter_between(low, high)
}

/// The interval [`next_poll`] draws from.
pub fn next_poll_bounds(interval: Duration) -> (Duration, Duration) {
    let spread = interval.mul_f64(POLL_JITTER);
    (interval.saturating_sub(spread), interval + spread)
}

/// The delay before initial-sync attempt `attempt + 1` (attempt ≥ 1).
pub fn initial_retry(attempt: u32, interval: Duration) -> Duration {
    let (low, high) = initial_retry_bounds(attempt, interval);
    backoff::jitter_between(low, high)
}

/// The interval [`initial_retry`] draws from: 80–100 % of 5 s · 2^(attempt-1), capped.
pub fn initial_retry_bounds(attempt: u32, interval: Duration) -> (Duration, Duration) {
    let cap = interval.min(INITIAL_RETRY_CAP).max(Duration::from_secs(1));
    let base = INITIAL_RETRY
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(cap);
    (base.mul_f64(0.8).min(cap), base)
}

/// Where the service is in its start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `requireInitialSync`: not every certificate has been installed yet.
    InitialSync { attempt: u32 },
    /// Polling (READY has been sent).
    Polling,
}

/// How a round ended the initial sync (the caller logs it and sends READY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialSyncEnd {
    /// Every certificate is installed, after this many attempts.
    Complete { attempts: u32 },
    /// `initialSyncMaxAttempts` reached; polling goes on.
    GaveUp { attempts: u32 },
}

/// The phase after a round: an initial sync ends when every certificate is current or the
/// attempt limit is reached; polling stays polling.
pub fn next_phase(
    phase: Phase,
    all_current: bool,
    max_attempts: Option<u32>,
) -> (Phase, Option<InitialSyncEnd>) {
    let Phase::InitialSync { attempt } = phase else {
        return (Phase::Polling, None);
    };
    let attempts = attempt + 1;
    if all_current {
        (Phase::Polling, Some(InitialSyncEnd::Complete { attempts }))
    } else if max_attempts.is_some_and(|max| attempts >= max) {
        (Phase::Polling, Some(InitialSyncEnd::GaveUp { attempts }))
    } else {
        (Phase::InitialSync { attempt: attempts }, None)
    }
}

/// What the service does after a round: when, and which certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextRound {
    /// Every certificate after [`next_poll`].
    Poll,
    /// `requireInitialSync`: every certificate after [`initial_retry`]`(attempt)`.
    InitialSync { attempt: u32 },
    /// Only the certificates never installed whose last attempt failed transiently, after
    /// [`initial_retry`]`(attempt)`: the `attempt`-th such round in a row.
    CatchUp { attempt: u32 },
}

impl NextRound {
    /// Whether the round syncs only the certificates waiting for their first install.
    pub fn only_waiting(self) -> bool {
        matches!(self, NextRound::CatchUp { .. })
    }

    /// The interval the delay before the round is drawn from.
    pub fn delay_bounds(self, interval: Duration) -> (Duration, Duration) {
        match self {
            NextRound::Poll => next_poll_bounds(interval),
            NextRound::InitialSync { attempt } | NextRound::CatchUp { attempt } => {
                initial_retry_bounds(attempt, interval)
            }
        }
    }

    /// The delay before the round, drawn from [`NextRound::delay_bounds`].
    pub fn delay(self, interval: Duration) -> Duration {
        let (low, high) = self.delay_bounds(interval);
        backoff::jitter_between(low, high)
    }
}

/// The round after one that ended in `phase` (the phase after it), `last` being the round
/// that just ran and `waiting` whether a certificate that has never been installed failed
/// transiently in it (throttled, unreachable, 5xx).
///
/// A deliberate refinement of SPEC §10 ("Retries"): without `requireInitialSync` such a
/// certificate is retried on the initial-sync schedule (from 5 s, doubling, capped at
/// min(`pollingIntervalInS`, 300 s)) rather than at the next poll — a booting machine is
/// waiting for exactly these certificates, and a fleet booting together against one vault
/// would otherwise leave every certificate its first attempts lost to throttling for a
/// whole polling interval (docs/benchmarks.md, fleet simulation). Those rounds fetch only
/// the waiting certificates; installed ones keep the polling schedule, and a permanent
/// error (403, 404) still waits for the next poll.
pub fn next_round(phase: Phase, last: NextRound, waiting: bool) -> NextRound {
    match phase {
        Phase::InitialSync { attempt } => NextRound::InitialSync { attempt },
        Phase::Polling if waiting => NextRound::CatchUp {
            attempt: match last {
                NextRound::CatchUp { attempt } => attempt.saturating_add(1),
                _ => 1,
            },
        },
        Phase::Polling => NextRound::Poll,
    }
}

/// The delay before a process's first round with `akvsync.initialSyncSpreadInS` = `spread`:
/// uniformly random in `[0, spread]`, so that a scale set booting at once reaches its vault
/// spread over `spread` instead of in one burst.
pub fn start_delay(spread: Duration) -> Duration {
    backoff::jitter_between(Duration::ZERO, spread)
}

/// How long before its expiry a token of `lifetime` is refreshed: 5 minutes, or half its
/// life for tokens shorter than 10 minutes.
pub fn token_refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 2).min(Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_jitter_stays_within_ten_percent() {
        let hour = Duration::from_secs(3600);
        for _ in 0..1000 {
            let d = next_poll(hour);
            assert!(
                d >= Duration::from_secs(3240) && d <= Duration::from_secs(3960),
                "{d:?}"
            );
        }
    }

    #[test]
    fn initial_retries_grow_from_five_seconds_to_the_cap() {
        let hour = Duration::from_secs(3600);
        assert!(initial_retry(1, hour) <= Duration::from_secs(5));
        assert!(initial_retry(1, hour) >= Duration::from_secs(4));
        assert!(initial_retry(20, hour) <= INITIAL_RETRY_CAP);
        assert!(initial_retry(20, hour) >= Duration::from_secs(240));
        assert!(initial_retry(20, Duration::from_secs(60)) <= Duration::from_secs(60));
    }

    #[test]
    fn a_certificate_never_installed_is_retried_on_the_initial_sync_schedule() {
        let hour = Duration::from_secs(3600);
        let secs = Duration::from_secs;
        // Polling, a waiting certificate: catch-up rounds from 5 s, doubling, capped at 300 s.
        let first = next_round(Phase::Polling, NextRound::Poll, true);
        assert_eq!(first, NextRound::CatchUp { attempt: 1 });
        assert!(first.only_waiting());
        assert_eq!(first.delay_bounds(hour), (secs(4), secs(5)));
        let second = next_round(Phase::Polling, first, true);
        assert_eq!(second, NextRound::CatchUp { attempt: 2 });
        assert_eq!(second.delay_bounds(hour), (secs(8), secs(10)));
        let mut round = second;
        for _ in 0..20 {
            round = next_round(Phase::Polling, round, true);
        }
        assert_eq!(round.delay_bounds(hour), (secs(240), secs(300)));
        let d = round.delay(hour);
        assert!(d >= secs(240) && d <= secs(300), "{d:?}");
        // Capped by a shorter polling interval.
        assert_eq!(round.delay_bounds(secs(120)).1, secs(120));
        // Once nothing waits (installed, or a permanent error): the normal poll, every
        // certificate; a later wait starts again from 5 s.
        let poll = next_round(Phase::Polling, round, false);
        assert_eq!(poll, NextRound::Poll);
        assert!(!poll.only_waiting());
        assert_eq!(poll.delay_bounds(hour), (secs(3240), secs(3960)));
        assert_eq!(
            next_round(Phase::Polling, poll, true),
            NextRound::CatchUp { attempt: 1 }
        );
        // requireInitialSync keeps its own rounds of every certificate.
        let initial = next_round(Phase::InitialSync { attempt: 3 }, NextRound::Poll, true);
        assert_eq!(initial, NextRound::InitialSync { attempt: 3 });
        assert!(!initial.only_waiting());
        assert_eq!(initial.delay_bounds(hour), (secs(16), secs(20)));
    }

    #[test]
    fn the_start_up_spread_is_uniform_within_its_bound() {
        assert_eq!(start_delay(Duration::ZERO), Duration::ZERO);
        let spread = Duration::from_secs(120);
        let draws: Vec<Duration> = (0..1000).map(|_| start_delay(spread)).collect();
        assert!(draws.iter().all(|d| *d <= spread));
        let early = draws.iter().filter(|d| **d < spread / 2).count();
        assert!(
            (350..=650).contains(&early),
            "{early} of 1000 in the first half"
        );
    }
}
