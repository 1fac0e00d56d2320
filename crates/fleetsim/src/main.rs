//! `cargo run --release -p fleetsim [-- --quick] [--agents N] [--certificates C] [--seed S]`:
//! the fleet simulation of issue 9 (SPEC §10). Runs the scenarios (akvsync's jitter vs none,
//! boots spread over an hour vs a scale-out storm, `requireInitialSync` on and off), each
//! with a rotation, and prints one markdown table. The model is in `sim.rs` and documented
//! in `docs/benchmarks.md`.

mod kvemu_config;
mod sim;
#[path = "../../kvemu/src/throttle.rs"]
#[allow(dead_code)]
mod throttle;

// `throttle.rs` names its configuration `crate::config::ThrottleConfig`, as in the emulator.
mod config {
    pub use crate::kvemu_config::ThrottleConfig;
}

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sim::{Boot, Jitter, Micros, Scenario, ThrottleModel};

const HOUR: Duration = Duration::from_secs(3600);

struct Row {
    name: &'static str,
    jitter: Jitter,
    boot: Boot,
    require_initial_sync: bool,
}

const ROWS: [Row; 6] = [
    Row {
        name: "boots spread over 1 h, akvsync jitter",
        jitter: Jitter::Akvsync,
        boot: Boot::Spread(HOUR),
        require_initial_sync: true,
    },
    Row {
        name: "boots spread over 1 h, no jitter",
        jitter: Jitter::None,
        boot: Boot::Spread(HOUR),
        require_initial_sync: true,
    },
    Row {
        name: "scale-out storm (all at t=0), akvsync jitter",
        jitter: Jitter::Akvsync,
        boot: Boot::AllAtOnce,
        require_initial_sync: true,
    },
    Row {
        name: "scale-out storm, akvsync jitter, requireInitialSync off",
        jitter: Jitter::Akvsync,
        boot: Boot::AllAtOnce,
        require_initial_sync: false,
    },
    Row {
        name: "scale-out over 5 minutes, akvsync jitter",
        jitter: Jitter::Akvsync,
        boot: Boot::Spread(Duration::from_secs(300)),
        require_initial_sync: true,
    },
    Row {
        name: "scale-out storm, no jitter",
        jitter: Jitter::None,
        boot: Boot::AllAtOnce,
        require_initial_sync: true,
    },
];

fn seconds(t: Option<Micros>) -> String {
    t.map_or_else(
        || "never".to_owned(),
        |t| format!("{:.0} s", t as f64 / 1e6),
    )
}

fn main() -> ExitCode {
    let mut agents = 10_000usize;
    let mut certificates = 3usize;
    let mut seed = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        let parsed = match arg.as_str() {
            "--quick" => {
                agents = 1000;
                Ok(())
            }
            "--agents" => value("--agents").map(|v| agents = v as usize),
            "--certificates" => value("--certificates").map(|v| certificates = v as usize),
            "--seed" => value("--seed").map(|v| seed = v),
            _ => Err(format!("unknown argument {arg:?}")),
        };
        if let Err(message) = parsed {
            eprintln!(
                "fleetsim: {message}\nusage: fleetsim [--quick] [--agents N] [--certificates C] [--seed S]"
            );
            return ExitCode::from(2);
        }
    }
    let started = Instant::now();
    println!(
        "Fleet: {agents} agents × {certificates} certificates, one vault limited to 4,000 GETs / 10 s, \
         pollingIntervalInS 3600, token lifetime 24 h, certificate 0 rotated at t = 3.5 h, \
         6 h simulated, seed {seed}.\n"
    );
    println!(
        "| scenario | vault limit | GETs | peak GETs / 10 s (all; steady) | 429s total | 429s in steady state | every agent installed at | rotation: every agent (median) | token requests |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let models = [
        (ThrottleModel::Bucket, "emulator's bucket"),
        (ThrottleModel::Window, "strict 10 s window"),
    ];
    let mut timelines = Vec::new();
    for (row, (model, model_name)) in ROWS
        .iter()
        .flat_map(|row| models.iter().map(move |m| (row, *m)))
    {
        let scenario = Scenario {
            agents,
            certificates,
            interval: HOUR,
            token_lifetime: 24 * HOUR,
            require_initial_sync: row.require_initial_sync,
            jitter: row.jitter,
            boot: row.boot,
            throttle: kvemu_config::ThrottleConfig::default(),
            model,
            rotation_at: 3 * HOUR + HOUR / 2,
            duration: 6 * HOUR,
            seed,
        };
        let out = sim::run(&scenario);
        println!(
            "| {} | {} | {} | {}; {} | {} | {} | {} | {} ({}) | {} |",
            row.name,
            model_name,
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
            timelines.push((model_name, out.first_minutes));
        }
    }
    println!(
        "\nThe storm with akvsync's jitter, first 5 minutes (GETs / 429s per 30 s; the vault serves at most ~12,000 per 30 s):\n"
    );
    println!(
        "| vault limit | {} |",
        (0..10)
            .map(|i| format!("{}–{} s", i * 30, i * 30 + 30))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---:|".repeat(10));
    for (name, buckets) in timelines {
        println!(
            "| {name} | {} |",
            buckets
                .iter()
                .map(|(gets, throttled)| format!("{gets} / {throttled}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    println!(
        "\nSteady state: from the moment the last agent finished its first fully successful round. \
         Simulated in {:.1} s wall.",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
