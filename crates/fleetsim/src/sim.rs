//! The discrete-event simulation of a fleet of agents sharing one vault: a virtual clock
//! (integer microseconds), one priority queue of every agent's next action, the agent's
//! real scheduling and retry decisions (`akvsync::schedule`, `akvsync::backoff`,
//! `akvsync::sync::CONCURRENCY`) and the emulator's per-vault token bucket
//! (`kvemu`'s `throttle.rs`). Owns the model; `main.rs` owns the scenarios and the table.
//!
//! One agent = one `akvsync run` process: a round syncs every certificate with at most
//! `CONCURRENCY` tasks at once; a task is `VaultClient::get_secret`: wait for the vault's
//! push-back, take the cached token (a token request when it is no longer fresh), send one
//! GET; on 429 record the push-back (`Retry-After` + jitter) and follow
//! `Backoff::VAULT.after_failure`. When every task is done the round ends and the next one
//! is scheduled as the service does: `schedule::initial_retry` while `requireInitialSync`
//! waits for a fully successful round, `schedule::next_poll` afterwards.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use akvsync::backoff::{self, Backoff, Retry};
use akvsync::schedule::{self, Phase};
use akvsync::sync::CONCURRENCY;

use crate::kvemu_config::ThrottleConfig;
use crate::throttle::Throttle;

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

/// How the vault limits GETs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleModel {
    /// The emulator's token bucket (`kvemu`'s `throttle.rs`, run unchanged): a burst of
    /// `requests`, refilled at `requests / window`; up to twice `requests` can pass in one
    /// window.
    Bucket,
    /// A strict sliding window: a GET is refused when `requests` GETs were accepted in the
    /// last `window` (Key Vault's documented "4,000 GETs per 10 s", read literally).
    Window,
}

/// A strict sliding-window limit: at most `limit` accepted requests in any `width`.
#[derive(Debug)]
pub struct StrictWindow {
    accepted: std::collections::VecDeque<Micros>,
    limit: usize,
    width: Micros,
}

impl StrictWindow {
    pub fn new(config: ThrottleConfig) -> Self {
        StrictWindow {
            accepted: std::collections::VecDeque::new(),
            limit: config.requests.max(1) as usize,
            width: micros(config.window),
        }
    }

    /// Accepts a request at `t` (non-decreasing), or says how long until one would be.
    pub fn take(&mut self, t: Micros) -> Result<(), Duration> {
        while self.accepted.front().is_some_and(|&s| s + self.width <= t) {
            self.accepted.pop_front();
        }
        if self.accepted.len() < self.limit {
            self.accepted.push_back(t);
            return Ok(());
        }
        let oldest = self.accepted.front().copied().unwrap_or(t);
        Err(Duration::from_micros(oldest + self.width - t))
    }
}

/// One run's inputs.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub agents: usize,
    pub certificates: usize,
    pub interval: Duration,
    pub token_lifetime: Duration,
    pub require_initial_sync: bool,
    pub jitter: Jitter,
    pub boot: Boot,
    pub throttle: ThrottleConfig,
    pub model: ThrottleModel,
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
    pub token_requests: u64,
    /// Most GETs received in any 10 s (sliding window, exact).
    pub peak_per_10s: u64,
    pub steady_throttled: u64,
    pub steady_peak_per_10s: u64,
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
    Round { agent: u32 },
    Attempt { agent: u32, cert: u32, attempt: u32 },
    Done { agent: u32, cert: u32, ok: bool },
}

#[derive(Debug)]
struct Agent {
    phase: Phase,
    /// The cached token is fresh until then.
    token_fresh_until: Option<Micros>,
    /// No request to the vault before then (`Retry-After` push-back).
    not_before: Micros,
    unstarted: Vec<u32>,
    running: u32,
    round_ok: bool,
    first_success: Option<Micros>,
    has_rotation: Option<Micros>,
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

/// The emulator's `Retry-After` for a bucket that is `wait` from its next token
/// (`vault_api.rs`: whole seconds, rounded up, at least 1).
fn retry_after_header(wait: Duration) -> Duration {
    Duration::from_secs(wait.as_secs_f64().ceil().max(1.0) as u64)
}

struct Sim<'a> {
    s: &'a Scenario,
    now: Micros,
    seq: u64,
    queue: BinaryHeap<Reverse<(Micros, u64, Event)>>,
    agents: Vec<Agent>,
    throttle: Throttle,
    window: StrictWindow,
    epoch: Instant,
    get_times: Vec<Micros>,
    throttled_times: Vec<Micros>,
    token_requests: u64,
}

impl Sim<'_> {
    fn at(&mut self, t: Micros, event: Event) {
        if t <= micros(self.s.duration) {
            self.seq += 1;
            self.queue.push(Reverse((t, self.seq, event)));
        }
    }

    fn poll_delay(&self) -> Duration {
        match self.s.jitter {
            Jitter::Akvsync => schedule::next_poll(self.s.interval),
            Jitter::None => self.s.interval,
        }
    }

    fn initial_retry_delay(&self, attempt: u32) -> Duration {
        match self.s.jitter {
            Jitter::Akvsync => schedule::initial_retry(attempt, self.s.interval),
            Jitter::None => schedule::initial_retry_bounds(attempt, self.s.interval).1,
        }
    }

    fn push_back(&self, retry_after: Duration) -> Duration {
        match self.s.jitter {
            Jitter::Akvsync => backoff::retry_after_push_back(retry_after),
            Jitter::None => retry_after,
        }
    }

    fn backoff_delay(&self, attempt: u32) -> Duration {
        match self.s.jitter {
            Jitter::Akvsync => Backoff::VAULT.delay(attempt),
            Jitter::None => Backoff::VAULT.delay_bounds(attempt).1,
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Round { agent } => {
                let a = &mut self.agents[agent as usize];
                a.unstarted = (0..self.s.certificates as u32).rev().collect();
                a.round_ok = true;
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
                if now < a.not_before {
                    let t = a.not_before;
                    self.at(
                        t,
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
                let answered = now + GET_LATENCY;
                let taken = match self.s.model {
                    ThrottleModel::Bucket => self
                        .throttle
                        .take("vault", self.epoch + Duration::from_micros(now)),
                    ThrottleModel::Window => self.window.take(now),
                };
                let next = match taken {
                    Ok(()) => {
                        let a = &mut self.agents[agent as usize];
                        if cert == 0
                            && now >= micros(self.s.rotation_at)
                            && a.has_rotation.is_none()
                        {
                            a.has_rotation = Some(answered);
                        }
                        Event::Done {
                            agent,
                            cert,
                            ok: true,
                        }
                    }
                    Err(wait) => {
                        self.throttled_times.push(now);
                        let retry_after = retry_after_header(wait).min(MAX_RETRY_AFTER);
                        let until = answered + micros(self.push_back(retry_after));
                        let a = &mut self.agents[agent as usize];
                        a.not_before = a.not_before.max(until);
                        match Backoff::VAULT.after_failure(attempt, true, Some(retry_after)) {
                            Retry::GiveUp => Event::Done {
                                agent,
                                cert,
                                ok: false,
                            },
                            Retry::AfterPushBack => Event::Attempt {
                                agent,
                                cert,
                                attempt: attempt + 1,
                            },
                            Retry::Sleep => {
                                // Not reached for a 429 with Retry-After; kept for a
                                // model without the header.
                                let delay = micros(self.backoff_delay(attempt));
                                self.at(
                                    answered + delay,
                                    Event::Attempt {
                                        agent,
                                        cert,
                                        attempt: attempt + 1,
                                    },
                                );
                                return;
                            }
                        }
                    }
                };
                self.at(answered, next);
            }
            Event::Done { agent, cert: _, ok } => {
                let now = self.now;
                let a = &mut self.agents[agent as usize];
                a.round_ok &= ok;
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
                // The agent's own rule (`schedule::next_phase`); the simulated agents have
                // no attempt limit.
                a.phase = schedule::next_phase(a.phase, a.round_ok, None).0;
                let phase = a.phase;
                let delay = match phase {
                    Phase::InitialSync { attempt } => self.initial_retry_delay(attempt),
                    Phase::Polling => self.poll_delay(),
                };
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
    let agents = (0..s.agents)
        .map(|_| Agent {
            phase: if s.require_initial_sync {
                Phase::InitialSync { attempt: 0 }
            } else {
                Phase::Polling
            },
            token_fresh_until: None,
            not_before: 0,
            unstarted: Vec::new(),
            running: 0,
            round_ok: true,
            first_success: None,
            has_rotation: None,
        })
        .collect();
    let mut sim = Sim {
        s,
        now: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        agents,
        throttle: Throttle::new(s.throttle),
        window: StrictWindow::new(s.throttle),
        epoch: Instant::now(),
        get_times: Vec::new(),
        throttled_times: Vec::new(),
        token_requests: 0,
    };
    for agent in 0..s.agents as u32 {
        let boot = match s.boot {
            Boot::AllAtOnce => 0,
            Boot::Spread(over) => rng.u64(0..micros(over).max(1)),
        };
        sim.at(boot, Event::Round { agent });
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
    Outcome {
        gets: sim.get_times.len() as u64,
        throttled: sim.throttled_times.len() as u64,
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
            certificates: 3,
            interval: Duration::from_secs(3600),
            token_lifetime: Duration::from_secs(24 * 3600),
            require_initial_sync: true,
            jitter: Jitter::Akvsync,
            boot: Boot::Spread(Duration::from_secs(3600)),
            throttle: ThrottleConfig::default(),
            model: ThrottleModel::Bucket,
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
    fn strict_window_refuses_the_excess_until_the_oldest_leaves() {
        let mut w = StrictWindow::new(ThrottleConfig {
            requests: 2,
            window: Duration::from_secs(10),
        });
        assert!(w.take(0).is_ok());
        assert!(w.take(4 * SECOND).is_ok());
        assert_eq!(w.take(5 * SECOND), Err(Duration::from_secs(5)));
        // Refused requests do not count: at 10 s the first one has left.
        assert!(w.take(10 * SECOND).is_ok());
        assert_eq!(w.take(10 * SECOND), Err(Duration::from_secs(4)));
        assert!(w.take(14 * SECOND).is_ok());
    }

    #[test]
    fn token_refresh_and_retry_after_follow_the_agent_and_the_emulator() {
        assert_eq!(
            token_refresh_at(0, Duration::from_secs(3600)),
            3300 * SECOND
        );
        assert_eq!(token_refresh_at(0, Duration::from_secs(60)), 30 * SECOND);
        assert_eq!(
            retry_after_header(Duration::from_millis(3)),
            Duration::from_secs(1)
        );
        assert_eq!(
            retry_after_header(Duration::from_millis(2100)),
            Duration::from_secs(3)
        );
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

    #[test]
    fn a_storm_over_the_bucket_is_throttled_and_still_installs_everywhere() {
        let mut s = scenario(100);
        s.boot = Boot::AllAtOnce;
        // 300 GETs at t = 0 against a bucket of 100 per 10 s.
        s.throttle = ThrottleConfig {
            requests: 100,
            window: Duration::from_secs(10),
        };
        let out = run(&s);
        assert!(out.throttled >= 200, "{out:?}");
        assert!(out.peak_per_10s >= 300, "{out:?}");
        let installed = out.all_installed_at.expect("every agent installs");
        // 300 GETs at 10 per second need at least 20 s after the first 100.
        assert!(installed >= 20 * SECOND, "{installed}");
        assert_eq!(out.steady_throttled, 0, "{out:?}");
    }
}
