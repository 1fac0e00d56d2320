//! `cargo run --release -p fleetsim [-- --quick] [--agents N] [--vaults V] [--certificates C]
//! [--seed S]`: the fleet simulation of issues 9 and 19 (SPEC §10). Prints three markdown
//! tables: the issue 9 scenarios (akvsync's jitter vs none, boots spread over an hour vs a
//! scale-out storm, `requireInitialSync` on and off, each with a rotation); a scale set of N
//! VMs booting in the same instant against one vault, with and without `Retry-After`, with
//! the default settings and with `akvsync.initialSyncSpreadInS` (targets: converged within
//! 10 minutes, under 1 % of GETs throttled); and N × V VMs on V
//! vaults of one subscription (target: nothing throttled in steady state). The vaults are
//! the emulator's throttle (`crates/kvemu/src/throttle.rs`, compiled here unchanged); the
//! model is in `sim.rs` and documented in `docs/benchmarks.md`.

mod sim;
#[path = "../../kvemu/src/throttle.rs"]
#[allow(dead_code)] // the emulator-only parts (the 429 wording, reconfiguration)
mod throttle;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sim::{Boot, Jitter, Micros, Outcome, Scenario};
use throttle::ThrottleConfig;

const HOUR: Duration = Duration::from_secs(3600);
/// Issue 19's convergence target for a scale set booting at once.
const CONVERGE_TARGET: Duration = Duration::from_secs(600);
/// Issue 19's bound on the share of GETs throttled while it converges.
const THROTTLED_TARGET: f64 = 0.01;

struct Row {
    name: &'static str,
    jitter: Jitter,
    boot: Boot,
    require_initial_sync: bool,
    retry_after: bool,
    /// `akvsync.initialSyncSpreadInS`.
    spread: Duration,
}

const fn row(name: &'static str, boot: Boot, require_initial_sync: bool) -> Row {
    Row {
        name,
        jitter: Jitter::Akvsync,
        boot,
        require_initial_sync,
        retry_after: true,
        spread: Duration::ZERO,
    }
}

/// A storm row with `initialSyncSpreadInS` = `spread_s` (requireInitialSync off).
const fn spread(name: &'static str, spread_s: u64, retry_after: bool) -> Row {
    Row {
        retry_after,
        spread: Duration::from_secs(spread_s),
        ..row(name, Boot::AllAtOnce, false)
    }
}

const ISSUE_9: [Row; 6] = [
    row(
        "boots spread over 1 h, akvsync jitter",
        Boot::Spread(HOUR),
        true,
    ),
    Row {
        jitter: Jitter::None,
        ..row("boots spread over 1 h, no jitter", Boot::Spread(HOUR), true)
    },
    row(
        "scale-out storm (all at t=0), akvsync jitter",
        Boot::AllAtOnce,
        true,
    ),
    row(
        "scale-out storm, akvsync jitter, requireInitialSync off",
        Boot::AllAtOnce,
        false,
    ),
    row(
        "scale-out over 5 minutes, akvsync jitter",
        Boot::Spread(Duration::from_secs(300)),
        true,
    ),
    Row {
        jitter: Jitter::None,
        ..row("scale-out storm, no jitter", Boot::AllAtOnce, true)
    },
];

const STORM: [Row; 10] = [
    row(
        "default settings (requireInitialSync off, no spread), Retry-After",
        Boot::AllAtOnce,
        false,
    ),
    Row {
        retry_after: false,
        ..row("default settings, no Retry-After", Boot::AllAtOnce, false)
    },
    row("requireInitialSync on, Retry-After", Boot::AllAtOnce, true),
    Row {
        retry_after: false,
        ..row(
            "requireInitialSync on, no Retry-After",
            Boot::AllAtOnce,
            true,
        )
    },
    spread("initialSyncSpreadInS 120, Retry-After", 120, true),
    spread("initialSyncSpreadInS 120, no Retry-After", 120, false),
    spread(
        "for sizing: initialSyncSpreadInS 60, no Retry-After",
        60,
        false,
    ),
    spread(
        "for sizing: initialSyncSpreadInS 75, no Retry-After",
        75,
        false,
    ),
    spread(
        "for sizing: initialSyncSpreadInS 90, no Retry-After",
        90,
        false,
    ),
    spread(
        "for sizing: initialSyncSpreadInS 180, no Retry-After",
        180,
        false,
    ),
];

const FLEET: [Row; 3] = [
    row(
        "boots spread over 1 h, requireInitialSync off",
        Boot::Spread(HOUR),
        false,
    ),
    row(
        "every VM boots at t=0, requireInitialSync on, Retry-After",
        Boot::AllAtOnce,
        true,
    ),
    Row {
        retry_after: false,
        ..row(
            "every VM boots at t=0, requireInitialSync on, no Retry-After",
            Boot::AllAtOnce,
            true,
        )
    },
];

fn seconds(t: Option<Micros>) -> String {
    t.map_or_else(
        || "never".to_owned(),
        |t| format!("{:.0} s", t as f64 / 1e6),
    )
}

fn percent(part: u64, whole: u64) -> String {
    format!("{:.1} %", 100.0 * part as f64 / whole.max(1) as f64)
}

struct Args {
    agents: usize,
    vaults: usize,
    certificates: usize,
    seed: u64,
}

fn scenario(args: &Args, agents: usize, vaults: usize, row: &Row, duration: Duration) -> Scenario {
    Scenario {
        agents,
        vaults,
        certificates: args.certificates,
        interval: HOUR,
        token_lifetime: 24 * HOUR,
        require_initial_sync: row.require_initial_sync,
        initial_sync_spread: row.spread,
        jitter: row.jitter,
        boot: row.boot,
        throttle: ThrottleConfig {
            retry_after: row.retry_after,
            ..ThrottleConfig::default()
        },
        rotation_at: 3 * HOUR + HOUR / 2,
        duration,
        seed: args.seed,
    }
}

fn parse_args() -> Result<Args, String> {
    let mut parsed = Args {
        agents: 10_000,
        vaults: 10,
        certificates: 3,
        seed: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| format!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--quick" => parsed.agents = 1000,
            "--agents" => parsed.agents = value("--agents")? as usize,
            "--vaults" => parsed.vaults = value("--vaults")? as usize,
            "--certificates" => parsed.certificates = value("--certificates")?.min(64) as usize,
            "--seed" => parsed.seed = value("--seed")?,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!(
                "fleetsim: {message}\nusage: fleetsim [--quick] [--agents N] [--vaults V] [--certificates C] [--seed S]"
            );
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let Args {
        agents,
        vaults,
        certificates,
        seed,
    } = args;
    let limit = ThrottleConfig::default();
    println!(
        "Vaults: Key Vault's documented limits as the emulator enforces them (`kvemu` throttle.rs): \
         {} GETs per vault and {} across the subscription's vaults in any {} s (sliding window; \
         429s not counted); Retry-After = seconds until the window has room, or none. \
         pollingIntervalInS 3600, token lifetime 24 h, {certificates} certificates per VM, seed {seed}.\n",
        limit.requests,
        limit.requests * limit.subscription_multiple,
        limit.window.as_secs(),
    );

    println!(
        "#### Issue 9: {agents} agents, one vault, certificate 0 rotated at t = 3.5 h, 6 h simulated\n"
    );
    println!(
        "| scenario | GETs | peak GETs / 10 s (all; steady) | 429s total | 429s in steady state | every agent installed at | rotation: every agent (median) | token requests |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut timeline = Vec::new();
    for row in &ISSUE_9 {
        let out = sim::run(&scenario(&args, agents, 1, row, 6 * HOUR));
        println!(
            "| {} | {} | {}; {} | {} | {} | {} | {} ({}) | {} |",
            row.name,
            out.gets,
            out.peak_per_10s,
            out.steady_peak_per_10s,
            out.throttled,
            out.steady_throttled,
            seconds(out.all_installed_at),
            seconds(out.convergence),
            seconds(out.convergence_median),
            out.token_requests,
        );
        if row.boot == Boot::AllAtOnce && row.jitter == Jitter::Akvsync && row.require_initial_sync
        {
            timeline = out.first_minutes;
        }
    }
    println!(
        "\nThe storm with akvsync's jitter, first 5 minutes (GETs / 429s per 30 s; the vault accepts at most {} per 30 s):\n",
        3 * limit.requests
    );
    println!(
        "| {} |",
        (0..10)
            .map(|i| format!("{}–{} s", i * 30, i * 30 + 30))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|{}", "---:|".repeat(10));
    println!(
        "| {} |",
        timeline
            .iter()
            .map(|(gets, throttled)| format!("{gets} / {throttled}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );

    println!(
        "\n#### Issue 19 (a): a scale set of {agents} VMs booting in the same instant, one vault, 2 h simulated\n"
    );
    println!(
        "Targets: every VM has every certificate within {} s; under {:.0} % of GETs throttled until then.\n",
        CONVERGE_TARGET.as_secs(),
        THROTTLED_TARGET * 100.0
    );
    println!(
        "| scenario | every VM has every certificate at | GETs until then | 429s until then | throttled | peak GETs / 10 s | targets |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    for row in &STORM {
        let out = sim::run(&scenario(&args, agents, 1, row, 2 * HOUR));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.name,
            seconds(out.converged_at),
            out.gets_to_converge,
            out.throttled_to_converge,
            percent(out.throttled_to_converge, out.gets_to_converge),
            out.peak_per_10s,
            verdict(&out),
        );
    }

    let fleet = agents * vaults;
    println!(
        "\n#### Issue 19 (b): {fleet} VMs on {vaults} vaults of one subscription ({agents} per vault), 6 h simulated\n"
    );
    println!(
        "| scenario | GETs | 429s total (subscription's) | 429s in steady state | steady state from | peak GETs / 10 s, busiest vault (all; steady) | peak GETs / 10 s, subscription (all; steady) | every VM has every certificate at |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &FLEET {
        let out = sim::run(&scenario(&args, fleet, vaults, row, 6 * HOUR));
        println!(
            "| {} | {} | {} ({}) | {} | {} | {}; {} | {}; {} | {} |",
            row.name,
            out.gets,
            out.throttled,
            out.throttled_subscription,
            out.steady_throttled,
            seconds(out.all_installed_at),
            out.vault_peak_per_10s,
            out.steady_vault_peak_per_10s,
            out.peak_per_10s,
            out.steady_peak_per_10s,
            seconds(out.converged_at),
        );
    }
    println!(
        "\nSteady state: from the moment the last VM finished its first fully successful round. \
         Simulated in {:.1} s wall.",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// Whether a storm met issue 19's targets.
fn verdict(out: &Outcome) -> String {
    let converged = out
        .converged_at
        .is_some_and(|t| t <= CONVERGE_TARGET.as_micros() as Micros);
    let share = out.throttled_to_converge as f64 / out.gets_to_converge.max(1) as f64;
    match (converged, share < THROTTLED_TARGET) {
        (true, true) => "both met".to_owned(),
        (true, false) => "converged; too many throttled".to_owned(),
        (false, true) => "too slow; few throttled".to_owned(),
        (false, false) => "neither met".to_owned(),
    }
}
