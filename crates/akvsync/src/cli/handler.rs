//! `akvsync handler <install|enable|disable|uninstall|update>`: the commands of
//! `HandlerManifest.json`, run by the Azure guest agent in the handler directory, and the
//! hidden `handler service` that the unit or the detached process runs. Parsing only; the
//! work is in `crate::handler`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::exit;
use crate::handler::{lifecycle, logs, service};

#[derive(Debug, clap::Args)]
pub(crate) struct HandlerArgs {
    #[command(subcommand)]
    command: HandlerCommand,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Op {
    Install,
    Enable,
    Disable,
    Uninstall,
    Update,
}

#[derive(Debug, clap::Subcommand)]
enum HandlerCommand {
    /// Prepare the state directory (the agent's install command).
    Install(OpArgs),
    /// Validate the current settings and start or reconfigure the service.
    Enable(OpArgs),
    /// Stop the service; installed certificates stay.
    Disable(OpArgs),
    /// Remove the service and its state; installed certificates stay.
    Uninstall(OpArgs),
    /// Take over the service from the previous version.
    Update(OpArgs),
    /// Run the service in extension mode (what the unit or the detached process runs).
    #[command(hide = true)]
    Service(OpArgs),
}

#[derive(Debug, clap::Args)]
struct OpArgs {
    /// Where akvsync keeps its state (default: /var/lib/akvsync, %ProgramData%\akvsync).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

pub(crate) fn handler(args: &HandlerArgs) -> ExitCode {
    let (op, op_args) = match &args.command {
        HandlerCommand::Service(a) => {
            let dir = a
                .state_dir
                .clone()
                .unwrap_or_else(crate::state::default_state_dir);
            return extension_service(&dir);
        }
        HandlerCommand::Install(a) => (Op::Install, a),
        HandlerCommand::Enable(a) => (Op::Enable, a),
        HandlerCommand::Disable(a) => (Op::Disable, a),
        HandlerCommand::Uninstall(a) => (Op::Uninstall, a),
        HandlerCommand::Update(a) => (Op::Update, a),
    };
    let ctx = match lifecycle::Context::from_agent(op_args.state_dir.clone()) {
        Ok(ctx) => ctx,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    logs::init(&ctx.environment.log_folder, "akvsync-handler.log");
    tracing::info!(?op, version = %ctx.version, manager = ?ctx.manager, "handler command");
    match op {
        Op::Install => lifecycle::install(&ctx),
        Op::Enable => lifecycle::enable(&ctx),
        Op::Disable => lifecycle::disable(&ctx),
        Op::Uninstall => lifecycle::uninstall(&ctx),
        Op::Update => lifecycle::update(&ctx),
    }
}

/// `handler service` from a console or the Linux unit/process: the run loop with signals.
#[cfg(not(windows))]
fn extension_service(state_dir: &std::path::Path) -> ExitCode {
    service::run(state_dir)
}

/// `handler service` on Windows: under the service control manager (what `handler enable`
/// registers) the dispatcher's stop ends the loop; from a console, Ctrl-C does.
#[cfg(windows)]
fn extension_service(state_dir: &std::path::Path) -> ExitCode {
    use crate::winservice;
    if winservice::is_console() {
        return service::run(state_dir);
    }
    let dir = state_dir.to_path_buf();
    let runner: winservice::Runner = Box::new(move |stop| service::run_until(&dir, Some(stop)));
    match winservice::run_dispatcher(runner) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(error) => {
            eprintln!("error: starting the service dispatcher: {error}");
            ExitCode::from(exit::FAILURE)
        }
    }
}
