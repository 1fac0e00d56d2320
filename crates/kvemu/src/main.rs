//! `kvemu serve`: runs the emulator until SIGTERM/SIGINT (SPEC §9).

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "kvemu", about = "Azure Key Vault + managed-identity emulator")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve every `<vault>.vault.azure.net` (and the other clouds' suffixes) and the identity endpoint.
    Serve {
        /// HTTPS listener for all vault hosts.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Plain-HTTP listener of the identity endpoint.
        #[arg(long, default_value = "127.0.0.1:0")]
        identity_listen: SocketAddr,
        /// Where ca.pem, endpoints.json and Arc key files go.
        #[arg(long)]
        state_dir: PathBuf,
        /// Client id of a user-assigned identity (repeatable).
        #[arg(long = "identity")]
        identities: Vec<String>,
        /// Import the test certificates of `kvemu::seed::SEEDED` into the vault `--seed-vault`.
        #[arg(long)]
        seed: bool,
        #[arg(long, default_value = kvemu::seed::DEFAULT_VAULT)]
        seed_vault: String,
        /// Answer as the Azure Arc agent (Basic challenge) instead of IMDS.
        #[arg(long)]
        arc: bool,
        /// Lifetime of issued tokens, seconds.
        #[arg(long, default_value_t = 86400)]
        token_lifetime: u64,
        /// Default page size of list operations (1–25).
        #[arg(long, default_value_t = 25)]
        page_size: usize,
        /// GET requests per vault per 10 s before 429.
        #[arg(long, default_value_t = 4000)]
        throttle: u32,
        /// GET requests across every vault per 10 s, as a multiple of `--throttle` (Key
        /// Vault's subscription-wide limit); 0: none.
        #[arg(long, default_value_t = 5)]
        throttle_subscription_multiple: u32,
        /// Answer 429 without `Retry-After`.
        #[arg(long)]
        no_retry_after: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kvemu: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvemu: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<(), kvemu::Error> {
    let Cmd::Serve {
        listen,
        identity_listen,
        state_dir,
        identities,
        seed,
        seed_vault,
        arc,
        token_lifetime,
        page_size,
        throttle,
        throttle_subscription_multiple,
        no_retry_after,
    } = cli.cmd;
    std::fs::create_dir_all(&state_dir)?;
    let cfg = kvemu::Config {
        vault_listen: listen,
        identity_listen,
        state_dir: Some(state_dir.clone()),
        identities,
        token_lifetime: Duration::from_secs(token_lifetime),
        page_size,
        throttle: kvemu::ThrottleConfig {
            requests: throttle,
            subscription_multiple: throttle_subscription_multiple,
            retry_after: !no_retry_after,
            ..kvemu::ThrottleConfig::default()
        },
        identity_mode: if arc {
            kvemu::IdentityMode::Arc
        } else {
            kvemu::IdentityMode::Imds
        },
        ..Default::default()
    };
    let emu = kvemu::Emulator::start(cfg).await?;
    if seed {
        for i in emu.seed(&seed_vault)? {
            eprintln!(
                "kvemu: seeded {}/{} version {} thumbprint {} ({})",
                seed_vault, i.name, i.version, i.thumbprint, i.content_type
            );
        }
    }
    let path = emu.write_endpoints(&state_dir)?;
    eprintln!(
        "kvemu: vault_addr {} identity_endpoint {} ca_file {} ({})",
        emu.vault_addr(),
        emu.identity_endpoint(),
        emu.ca_file().display(),
        path.display()
    );
    wait_for_signal().await;
    eprintln!("kvemu: stopping");
    emu.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let term_fut = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term_fut => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
