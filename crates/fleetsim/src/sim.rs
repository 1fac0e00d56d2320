//! The discrete-event simulation of a fleet of agents sharing one or more vaults of one
//! subscription: a virtual clock (integer microseconds), one priority queue of every agent's
//! next action, the agent's real scheduling and retry decisions (`akvsync::schedule`,
//! `akvsync::backoff`, `akvsync::sync::CONCURRENCY`) and the emulator's throttle (`kvemu`'s
//! `throttle.rs`: Key Vault's per-vault and subscription-wide sliding windows and its
//! `Retry-After`, or none). Owns the model; `main.rs` owns the scenarios and the tables.
//!
//! One agent = one `akvsync run` process: its first round starts after
//! `schedule::start_delay` (`initialSyncSpreadInS`); a round syncs every certificate (or,
//! in a catch-up round, only those never installed) with at most `CONCURRENCY` tasks at
//! once; a task is `VaultClient::get_secret`: wait for the vault's push-back, take the
//! cached token (a token request when it is no longer fresh), send one GET; when a 429
//! arrives, update the vault's push-back (`backoff::VaultPushBack::throttled`: its
//! `Retry-After` + jitter, or without one Key Vault's window + Microsoft's growing step +
//! jitter) and follow `Backoff::VAULT.after_failure`. Agent `i` observes its certificates in
//! vault `i mod vaults` (a scale set per vault). When every task is done the round ends and
//! the next one is scheduled as the service does: `schedule::next_phase`, then
//! `schedule::next_round` (initial-sync retries while `requireInitialSync` waits for a
//! fully successful round, catch-up rounds while a certificate never installed failed, the
//! polling interval otherwise).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use akvsync::backoff::{Backoff, Retry, ThrottlePushBack, VaultPushBack};
use akvsync::schedule::{self, NextRound, Phase};
use akvsync::sync::CONCURRENCY;

use crate::throttle::{self, Scope, Throttle, ThrottleConfig};

/// Virtual time in microseconds since the simulation started.
pub type Micros = u64;

#[cfg(test)]
const SECOND: Micros = 1_000_000;
/// One GET's round trip (the answer arrives this long after the vault counted it).
const GET_LATENCY: Micros = 20_000;
/// Longest `Retry-After` the agent honours (`vault::MAX_RETRY_AFTER`).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

fn micros(d: Duration) -> Micros {
    d.as_micros().min(u128::from(u64::MAX)) as Micros
}

/// Whether the agents draw their delays at random (akvsync) or take the nominal value
/// (a fleet without jitter: exactly the interval, the backoff's upper bound, the bare
/// `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    Akvsync,
    None,
}

/// When the agents start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// Every agent at t = 0 (a scale-out of the whole set).
    AllAtOnce,
    /// Uniformly over the first `Duration`.
    Spread(Duration),
}

/// One run's inputs.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub agents: usize,
    /// Vaults of the one subscription; agent `i` uses vault `i mod vaults`.
    pub vaults: usize,
    pub certificates: usize,
    pub interval: Duration,
    pub token_lifetime: Duration,
    pub require_initial_sync: bool,
    /// `akvsync.initialSyncSpreadInS`: each agent's first round starts this much later at
    /// most (`schedule::start_delay`).
    pub initial_sync_spread: Duration,
    pub jitter: Jitter,
    pub boot: Boot,
    pub throttle: ThrottleConfig,
    /// Certificate 0 gets a new version at this instant.
    pub rotation_at: Duration,
    pub duration: Duration,
    pub seed: u64,
}

/// One run's outputs.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// GETs the vault received (answered 200 or 429).
    pub gets: u64,
    pub throttled: u64,
    /// 429s given by the subscription-wide limit (the rest: a vault's).
    pub throttled_subscription: u64,
    /// When the last agent had every certificate installed (whatever its phase).
    pub converged_at: Option<Micros>,
    /// GETs and 429s up to `converged_at`.
    pub gets_to_converge: u64,
    pub throttled_to_converge: u64,
    pub token_requests: u64,
    /// Most GETs received in any 10 s (sliding window, exact), all vaults together.
    pub peak_per_10s: u64,
    pub steady_throttled: u64,
    pub steady_peak_per_10s: u64,
    /// The busiest vault's most GETs in any 10 s, over the run and in steady state.
    pub vault_peak_per_10s: u64,
    pub steady_vault_peak_per_10s: u64,
    /// When the last agent finished its first fully successful round; steady state is
    /// everything from then on.
    pub all_installed_at: Option<Micros>,
    /// From the rotation until the last agent had the new version.
    pub convergence: Option<Micros>,
    /// Median agent's time from the rotation to the new version.
    pub convergence_median: Option<Micros>,
    /// GETs and 429s per 30 s over the first 5 minutes.
    pub first_minutes: Vec<(u64, u64)>,
}

/// Counts per `width` bucket of sorted times, for the first `buckets` buckets.
pub fn histogram(times: &[Micros], width: Duration, buckets: usize) -> Vec<u64> {
    let mut counts = vec![0; buckets];
    for &t in times {
        match counts.get_mut((t / micros(width).max(1)) as usize) {
            Some(count) => *count += 1,
            None => break,
        }
    }
    counts
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Round {
        agent: u32,
    },
    Attempt {
        agent: u32,
        cert: u32,
        attempt: u32,
    },
    /// The answer to a GET sent at `sent` arrives: accepted, or a 429 with its
    /// `Retry-After` (`Some(None)`: none).
    Answer {
        agent: u32,
        cert: u32,
        attempt: u32,
        sent: Micros,
        throttled: Option<Option<Duration>>,
    },
    Done {
        agent: u32,
        cert: u32,
        ok: bool,
    },
}

#[derive(Debug)]
struct Agent {
    vault: u32,
    phase: Phase,
    /// The cached token is fresh until then.
    token_fresh_until: Option<Micros>,
    /// The vault's push-back as the agent's client keeps it (updated when an answer
    /// arrives: requests sent before do not know of it, the agent's tasks run at once).
    push_back: VaultPushBack,
    /// The round under way (or the next one).
    next: NextRound,
    unstarted: Vec<u32>,
    running: u32,
    round_ok: bool,
    /// A certificate never installed failed in this round.
    round_waiting: bool,
    first_success: Option<Micros>,
    has_rotation: Option<Micros>,
    /// Certificates installed at least once (bit per certificate).
    installed: u64,
    all_installed: Option<Micros>,
}

/// Requests counted in a sliding window.
#[derive(Debug, Default)]
pub struct Window {
    times: std::collections::VecDeque<Micros>,
    width: Micros,
    pub peak: u64,
}

impl Window {
    pub fn new(width: Duration) -> Self {
        Window {
            width: micros(width),
            ..Window::default()
        }
    }

    /// Counts a request at `t` (non-decreasing); returns how many fell in `(t - width, t]`.
    pub fn record(&mut self, t: Micros) -> u64 {
        while self.times.front().is_some_and(|&s| s + self.width <= t) {
            self.times.pop_front();
        }
        self.times.push_back(t);
        let now = self.times.len() as u64;
        self.peak = self.peak.max(now);
        now
    }
}

/// The peak of a sliding window over sorted request times, from `from` on.
pub fn peak_in_window(times: &[Micros], width: Duration, from: Micros) -> u64 {
    let mut window = Window::new(width);
    for &t in times.iter().filter(|&&t| t >= from) {
        window.record(t);
    }
    window.peak
}

/// The agent's token-freshness rule (`schedule::token_refresh_margin`, which
/// `identity::AccessToken::is_fresh` uses), as the instant a token obtained at `now` stops
/// being fresh.
fn token_refresh_at(now: Micros, lifetime: Duration) -> Micros {
    now + micros(lifetime) - micros(schedule::token_refresh_margin(lifetime))
}

struct Sim<'a> {
    s: &'a Scenario,
    now: Micros,
    seq: u64,
    queue: BinaryHeap<Reverse<(Micros, u64, Event)>>,
    agents: Vec<Agent>,
    throttle: Throttle,
    vault_names: Vec<String>,
    epoch: Instant,
    get_times: Vec<Micros>,
    /// The vault of each GET in `get_times`.
    get_vaults: Vec<u32>,
    throttled_times: Vec<Micros>,
    throttled_subscription: u64,
    token_requests: u64,
}

impl Sim<'_> {
    fn at(&mut self, t: Micros, event: Event) {
        if t <= micros(self.s.duration) {
            self.seq += 1;
            self.queue.push(Reverse((t, self.seq, event)));
        }
    }

    fn round_delay(&self, next: NextRound) -> Duration {
        match (self.s.jitter, next) {
            (Jitter::Akvsync, _) => next.delay(self.s.interval),
            (Jitter::None, NextRound::Poll) => self.s.interval,
            (Jitter::None, _) => next.delay_bounds(self.s.interval).1,
        }
    }

    /// The vault's push-back after a 429 sent at `sent` arrived now: the agent's rule
    /// (`VaultPushBack::throttled`), or with no jitter its nominal values (the bare
    /// `Retry-After`; the window + step).
    fn throttled(
        &self,
        state: VaultPushBack,
        sent: Micros,
        retry_after: Option<Duration>,
    ) -> VaultPushBack {
        let (sent, now) = (Duration::from_micros(sent), Duration::from_micros(self.now));
        let rule = ThrottlePushBack::KEY_VAULT;
        match self.s.jitter {
            Jitter::Akvsync => state.throttled(sent, now, retry_after, &rule),
            Jitter::None => match (retry_after, state.counts(sent, now)) {
                (Some(delay), _) => state.push(now, delay, state.in_row),
                (None, Some(n)) => state.push(now, rule.bounds(n).0, n),
                (None, None) => state,
            },
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Round { agent } => {
                let a = &mut self.agents[agent as usize];
                let only_waiting = a.next.only_waiting();
                let installed = a.installed;
                a.unstarted = (0..self.s.certificates as u32)
                    .rev()
                    .filter(|c| !only_waiting || installed & (1 << c) == 0)
                    .collect();
                if a.unstarted.is_empty() {
                    // (Not reached: a catch-up round follows a failure of a certificate
                    // never installed.) Every certificate, as a poll.
                    a.unstarted = (0..self.s.certificates as u32).rev().collect();
                }
                a.round_ok = true;
                a.round_waiting = false;
                let mut first = Vec::new();
                while a.running < CONCURRENCY as u32 {
                    let Some(cert) = a.unstarted.pop() else { break };
                    a.running += 1;
                    first.push(cert);
                }
                for cert in first {
                    let t = self.now;
                    self.at(
                        t,
                        Event::Attempt {
                            agent,
                            cert,
                            attempt: 1,
                        },
                    );
                }
            }
            Event::Attempt {
                agent,
                cert,
                attempt,
            } => {
                let now = self.now;
                let a = &mut self.agents[agent as usize];
                let until = micros(a.push_back.until);
                if now < until {
                    self.at(
                        until,
                        Event::Attempt {
                            agent,
                            cert,
                            attempt,
                        },
                    );
                    return;
                }
                if a.token_fresh_until.is_none_or(|until| now >= until) {
                    a.token_fresh_until = Some(token_refresh_at(now, self.s.token_lifetime));
                    self.token_requests += 1;
                }
                self.get_times.push(now);
                self.get_vaults.push(a.vault);
                let vault = &self.vault_names[a.vault as usize];
                let taken = self
                    .throttle
                    .take(vault, self.epoch + Duration::from_micros(now));
                let throttled = match taken {
                    Ok(()) => None,
                    Err(refused) => {
                        self.throttled_times.push(now);
                        if refused.scope == Scope::Subscription {
                            self.throttled_subscription += 1;
                        }
                        // The header as the emulator writes it, capped as `vault` reads it.
                        Some(self.s.throttle.retry_after.then(|| {
                            Duration::from_secs(throttle::retry_after_secs(refused.wait))
                                .min(MAX_RETRY_AFTER)
                        }))
                    }
                };
                self.at(
                    now + GET_LATENCY,
                    Event::Answer {
                        agent,
                        cert,
                        attempt,
                        sent: now,
                        throttled,
                    },
                );
            }
            Event::Answer {
                agent,
                cert,
                attempt,
                sent,
                throttled,
            } => {
                let now = self.now;
                let state = self.agents[agent as usize].push_back;
                let next = match throttled {
                    None => {
                        let a = &mut self.agents[agent as usize];
                        a.push_back = state.answered();
                        a.installed |= 1 << cert;
                        if a.all_installed.is_none()
                            && a.installed.count_ones() as usize == self.s.certificates
                        {
                            a.all_installed = Some(now);
                        }
                        if cert == 0
                            && sent >= micros(self.s.rotation_at)
                            && a.has_rotation.is_none()
                        {
                            a.has_rotation = Some(now);
                        }
                        Event::Done {
                            agent,
                            cert,
                            ok: true,
                        }
                    }
                    Some(retry_after) => {
                        let pushed = self.throttled(state, sent, retry_after);
                        self.agents[agent as usize].push_back = pushed;
                        match Backoff::VAULT.after_failure(attempt, true, true) {
                            Retry::GiveUp => Event::Done {
                                agent,
                                cert,
                                ok: false,
                            },
                            // A 429 is never retried after the short backoff.
                            Retry::AfterPushBack | Retry::Sleep => Event::Attempt {
                                agent,
                                cert,
                                attempt: attempt + 1,
                            },
                        }
                    }
                };
                self.at(now, next);
            }
            Event::Done { agent, cert, ok } => {
                let now = self.now;
                let a = &mut self.agents[agent as usize];
                a.round_ok &= ok;
                // Every failure here is a 429: transient.
                a.round_waiting |= !ok && a.installed & (1 << cert) == 0;
                if let Some(cert) = a.unstarted.pop() {
                    self.at(
                        now,
                        Event::Attempt {
                            agent,
                            cert,
                            attempt: 1,
                        },
                    );
                    return;
                }
                a.running -= 1;
                if a.running > 0 {
                    return;
                }
                // The round is over: `service::next_phase`, then the service's delay.
                if a.round_ok && a.first_success.is_none() {
                    a.first_success = Some(now);
                }
                // The agent's own rules (`schedule::next_phase`, `schedule::next_round`);
                // the simulated agents have no attempt limit.
                a.phase = schedule::next_phase(a.phase, a.round_ok, None).0;
                a.next = schedule::next_round(a.phase, a.next, a.round_waiting);
                let next = a.next;
                let delay = self.round_delay(next);
                self.at(now + micros(delay), Event::Round { agent });
            }
        }
    }
}

/// Runs one scenario to its end.
pub fn run(s: &Scenario) -> Outcome {
    // The agent's jitter comes from fastrand's thread-local generator: seed it.
    fastrand::seed(s.seed);
    let mut rng = fastrand::Rng::with_seed(s.seed ^ 0x5eed);
    let vaults = s.vaults.max(1);
    let agents = (0..s.agents)
        .map(|i| Agent {
            vault: (i % vaults) as u32,
            phase: if s.require_initial_sync {
                Phase::InitialSync { attempt: 0 }
            } else {
                Phase::Polling
            },
            token_fresh_until: None,
            push_back: VaultPushBack::default(),
            next: NextRound::Poll,
            unstarted: Vec::new(),
            running: 0,
            round_ok: true,
            round_waiting: false,
            first_success: None,
            has_rotation: None,
            installed: 0,
            all_installed: None,
        })
        .collect();
    let mut sim = Sim {
        s,
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        agents,
        throttle: Throttle::new(s.throttle),
        vault_names: (0..vaults).map(|v| format!("vault{v}")).collect(),
        epoch: Instant::now(),
        get_times: Vec::new(),
        get_vaults: Vec::new(),
        throttled_times: Vec::new(),
        throttled_subscription: 0,
        token_requests: 0,
    };
    for agent in 0..s.agents as u32 {
        let boot = match s.boot {
            Boot::AllAtOnce => 0,
            Boot::Spread(over) => rng.u64(0..micros(over).max(1)),
        };
        let spread = micros(schedule::start_delay(s.initial_sync_spread));
        sim.at(boot + spread, Event::Round { agent });
    }
    while let Some(Reverse((t, _, event))) = sim.queue.pop() {
        sim.now = t;
        sim.handle(event);
    }
    outcome(&sim)
}

fn outcome(sim: &Sim<'_>) -> Outcome {
    let ten = Duration::from_secs(10);
    let firsts: Option<Vec<Micros>> = sim.agents.iter().map(|a| a.first_success).collect();
    let all_installed_at = firsts.and_then(|f| f.into_iter().max());
    let steady_from = all_installed_at;
    let rotation = micros(sim.s.rotation_at);
    let mut took: Vec<Option<Micros>> = sim
        .agents
        .iter()
        .map(|a| a.has_rotation.map(|t| t - rotation))
        .collect();
    let converged = took.iter().all(Option::is_some);
    took.sort_unstable();
    let alls: Option<Vec<Micros>> = sim.agents.iter().map(|a| a.all_installed).collect();
    let converged_at = alls.and_then(|f| f.into_iter().max());
    let until = converged_at.unwrap_or(Micros::MAX);
    let vault_peak = |from: Micros| {
        (0..sim.vault_names.len() as u32)
            .map(|v| {
                let mut window = Window::new(ten);
                for (&t, _) in sim
                    .get_times
                    .iter()
                    .zip(&sim.get_vaults)
                    .filter(|&(&t, &gv)| gv == v && t >= from)
                {
                    window.record(t);
                }
                window.peak
            })
            .max()
            .unwrap_or(0)
    };
    Outcome {
        gets: sim.get_times.len() as u64,
        throttled: sim.throttled_times.len() as u64,
        throttled_subscription: sim.throttled_subscription,
        converged_at,
        gets_to_converge: sim.get_times.iter().filter(|&&t| t <= until).count() as u64,
        throttled_to_converge: sim.throttled_times.iter().filter(|&&t| t <= until).count() as u64,
        vault_peak_per_10s: vault_peak(0),
        steady_vault_peak_per_10s: steady_from.map_or(0, vault_peak),
        token_requests: sim.token_requests,
        peak_per_10s: peak_in_window(&sim.get_times, ten, 0),
        steady_throttled: steady_from.map_or(0, |from| {
            sim.throttled_times.iter().filter(|&&t| t >= from).count() as u64
        }),
        steady_peak_per_10s: steady_from
            .map_or(0, |from| peak_in_window(&sim.get_times, ten, from)),
        all_installed_at,
        convergence: if converged {
            took.last().copied().flatten()
        } else {
            None
        },
        convergence_median: took.get(took.len() / 2).copied().flatten(),
        first_minutes: histogram(&sim.get_times, Duration::from_secs(30), 10)
            .into_iter()
            .zip(histogram(&sim.throttled_times, Duration::from_secs(30), 10))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(agents: usize) -> Scenario {
        Scenario {
            agents,
            vaults: 1,
            certificates: 3,
            interval: Duration::from_secs(3600),
            token_lifetime: Duration::from_secs(24 * 3600),
            require_initial_sync: true,
            initial_sync_spread: Duration::ZERO,
            jitter: Jitter::Akvsync,
            boot: Boot::Spread(Duration::from_secs(3600)),
            throttle: ThrottleConfig::default(),
            rotation_at: Duration::from_secs(2 * 3600),
            duration: Duration::from_secs(4 * 3600),
            seed: 7,
        }
    }

    #[test]
    fn sliding_window_counts_only_the_last_ten_seconds() {
        let mut w = Window::new(Duration::from_secs(10));
        assert_eq!(w.record(0), 1);
        assert_eq!(w.record(5 * SECOND), 2);
        assert_eq!(w.record(10 * SECOND - 1), 3);
        // The request at 0 leaves the window (0, 10 s] exactly at 10 s.
        assert_eq!(w.record(10 * SECOND), 3);
        assert_eq!(w.record(25 * SECOND), 1);
        assert_eq!(w.peak, 3);
        let times = [0, SECOND, 2 * SECOND, 30 * SECOND, 31 * SECOND];
        assert_eq!(histogram(&times, Duration::from_secs(30), 3), vec![3, 2, 0]);
        assert_eq!(peak_in_window(&times, Duration::from_secs(10), 0), 3);
        assert_eq!(
            peak_in_window(&times, Duration::from_secs(10), 30 * SECOND),
            2
        );
    }

    #[test]
    fn token_refresh_follows_the_agent() {
        assert_eq!(
            token_refresh_at(0, Duration::from_secs(3600)),
            3300 * SECOND
        );
        assert_eq!(token_refresh_at(0, Duration::from_secs(60)), 30 * SECOND);
    }

    #[test]
    fn a_spread_fleet_polls_once_per_certificate_and_never_throttles() {
        let s = scenario(200);
        let out = run(&s);
        assert_eq!(out.throttled, 0);
        // Every agent polls at least 3 and at most 5 times in 4 h (boot within the first
        // hour, then every 54–66 min): one GET per certificate per poll, one token each.
        assert!(
            out.gets >= 200 * 3 * 3 && out.gets <= 200 * 3 * 5,
            "{out:?}"
        );
        assert_eq!(out.token_requests, 200);
        let convergence = out.convergence.expect("every agent gets the rotation");
        assert!(convergence <= 3960 * SECOND + GET_LATENCY, "{convergence}");
    }

    /// 100 agents booting at once against 100 GETs per 10 s, with or without `Retry-After`.
    fn storm(retry_after: bool) -> Scenario {
        let mut s = scenario(100);
        s.boot = Boot::AllAtOnce;
        s.throttle = ThrottleConfig {
            requests: 100,
            retry_after,
            ..ThrottleConfig::default()
        };
        s
    }

    #[test]
    fn a_storm_over_the_limit_is_throttled_and_still_installs_everywhere() {
        // 300 GETs at t = 0 (an agent's three tasks go out before the first answer)
        // against 100 per 10 s.
        let s = storm(true);
        let out = run(&s);
        assert!(out.throttled >= 200, "{out:?}");
        assert_eq!(out.throttled_subscription, 0);
        assert!(out.peak_per_10s >= 300, "{out:?}");
        let installed = out.all_installed_at.expect("every agent installs");
        // 300 GETs at 10 per second need at least 20 s after the first 100.
        assert!(installed >= 20 * SECOND, "{installed}");
        assert_eq!(out.steady_throttled, 0, "{out:?}");
    }

    #[test]
    fn without_retry_after_a_storm_still_installs_everywhere() {
        let s = storm(false);
        let out = run(&s);
        assert!(out.throttled >= 200, "{out:?}");
        let converged = out.converged_at.expect("every agent installs");
        assert!(converged >= 20 * SECOND, "{converged}");
        assert!(out.all_installed_at.is_some());
        assert_eq!(out.steady_throttled, 0, "{out:?}");
    }

    #[test]
    fn without_require_initial_sync_a_storm_converges_in_catch_up_rounds_not_at_the_next_poll() {
        let mut s = storm(false);
        s.require_initial_sync = false;
        let out = run(&s);
        assert!(out.throttled >= 200, "{out:?}");
        // 300 GETs at 100 per 10 s; the next poll would be 54 minutes away.
        let converged = out.converged_at.expect("every agent installs");
        assert!(converged >= 20 * SECOND, "{converged}");
        assert!(converged <= 300 * SECOND, "{converged}");
        assert_eq!(out.steady_throttled, 0, "{out:?}");
    }

    #[test]
    fn a_start_up_spread_keeps_a_storm_under_the_limit() {
        let mut s = storm(false);
        s.require_initial_sync = false;
        // 300 GETs against 100 per 10 s: spread over 60 s, about 50 per 10 s.
        s.initial_sync_spread = Duration::from_secs(60);
        let out = run(&s);
        assert_eq!(out.throttled, 0, "{out:?}");
        let converged = out.converged_at.expect("every agent installs");
        assert!(converged <= 61 * SECOND, "{converged}");
    }

    #[test]
    fn the_subscription_limit_binds_across_vaults() {
        // 3 vaults of 100 GETs / 10 s each but 200 together: 300 agents × 1 certificate at
        // t = 0 are refused by the subscription beyond the first 200.
        let mut s = scenario(300);
        s.vaults = 3;
        s.certificates = 1;
        s.boot = Boot::AllAtOnce;
        s.throttle = ThrottleConfig {
            requests: 100,
            subscription_multiple: 2,
            ..ThrottleConfig::default()
        };
        let out = run(&s);
        assert!(out.throttled_subscription >= 100, "{out:?}");
        assert!(out.vault_peak_per_10s >= 100, "{out:?}");
        assert!(out.converged_at.is_some(), "{out:?}");
        assert_eq!(out.steady_throttled, 0, "{out:?}");
    }
}
