//! The command line: verbs, flags and exit codes (SPEC §8, §10). Each verb is a thin
//! layer over the library; this module owns only argument parsing and printing.

#[cfg(feature = "demo")]
mod demo;
mod handler;
mod service;
mod status;
mod sync_verbs;
mod table;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::settings::{self, Platform, SettingsError, render};

/// Exit codes shared by every verb (SPEC §10); they live below `cli` and `handler` alike.
pub use crate::exit;

#[derive(Debug, Parser)]
#[command(
    name = "akvsync",
    version,
    about = "Keeps Azure Key Vault certificates installed and current"
)]
#[cfg_attr(
    feature = "demo",
    command(after_help = "Where to start:\n  \
      1. akvsync demo                          the whole job against a built-in Key Vault emulator\n  \
      2. akvsync validate settings.json        check your settings (the KeyVaultForLinux/Windows JSON)\n  \
      3. akvsync once --settings settings.json install every certificate once\n  \
      then run it as a service (`akvsync run`), and check it with `akvsync status` or\n  \
      `akvsync wait` (exit 0 once every certificate is installed, its outputs written and\n  \
      its hooks succeeded).")
)]
#[cfg_attr(
    not(feature = "demo"),
    command(after_help = "Where to start (the packaged service):\n  \
      1. edit /etc/akvsync/settings.json (the KeyVaultForLinux/Windows JSON), then\n     \
         akvsync validate /etc/akvsync/settings.json\n  \
      2. sudo akvsync service install     (Linux: the service account, its directories and\n     \
         privileges; again after every settings edit), then sudo systemctl restart akvsync\n  \
      3. akvsync wait --settings /etc/akvsync/settings.json --timeout 5m\n     \
         (exit 0 once every certificate is installed, its outputs written and its hooks\n     \
         succeeded); akvsync status --settings … shows each certificate.")
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a settings file and print what it means, without touching anything.
    Validate(ValidateArgs),
    /// Sync every certificate once; exit 0 only if every certificate is current.
    Once(SyncArgs),
    /// Keep the certificates current: sync, then poll (the service).
    Run(SyncArgs),
    /// Show what is installed for each certificate, read back from the stores; exit 1
    /// when any is not served (not installed, last check failed, outputs or hook failing).
    Status(status::StatusArgs),
    /// Wait until every certificate is installed and current, its outputs written and its
    /// hooks succeeded (exit 0), or the timeout passes (exit 1). Works beside the service.
    Wait(status::WaitArgs),
    /// Run the whole job against the built-in Key Vault emulator, in ./akvsync-demo.
    #[cfg(feature = "demo")]
    Demo,
    /// The Azure VM extension commands (run by the guest agent in the handler directory).
    Handler(handler::HandlerArgs),
    /// The service: on Linux, prepare the machine to run the systemd unit as its own account
    /// (`install`, again after editing the settings) or undo that (`uninstall`); on Windows,
    /// register, remove or run (what the service control manager starts) the Windows service.
    Service(service::ServiceArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct SyncArgs {
    /// Settings file: the Azure runtime settings file or the public settings JSON.
    #[arg(long)]
    pub settings: PathBuf,
    /// Where akvsync keeps its state and lock (default: /var/lib/akvsync, %ProgramData%\akvsync).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ValidateArgs {
    /// Settings file: the Azure runtime settings file or the public settings JSON.
    file: PathBuf,
    /// Read the settings with this platform's semantics (default: the one running).
    #[arg(long, value_enum)]
    platform: Option<PlatformArg>,
    /// Print the normalized model (or the errors) as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PlatformArg {
    Windows,
    Linux,
}

impl From<PlatformArg> for Platform {
    fn from(arg: PlatformArg) -> Self {
        match arg {
            PlatformArg::Windows => Platform::Windows,
            PlatformArg::Linux => Platform::Linux,
        }
    }
}

/// Runs the command line given by `args` (program name first).
pub fn main_with(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout with exit 0; usage errors to stderr with 2.
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            });
        }
    };
    match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Once(args) => sync_verbs::once(&args),
        Command::Run(args) => sync_verbs::run(&args),
        Command::Status(args) => status::status(&args),
        Command::Wait(args) => status::wait(&args),
        #[cfg(feature = "demo")]
        Command::Demo => demo::demo(),
        Command::Handler(args) => handler::handler(&args),
        Command::Service(args) => service::service(args),
    }
}

fn validate(args: &ValidateArgs) -> ExitCode {
    let platform = args.platform.map_or_else(Platform::current, Platform::from);
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    match settings::load_file(&args.file, platform) {
        Ok(validated) => {
            let _ = if args.json {
                let json = serde_json::json!({
                    "valid": true,
                    "settings": validated.settings,
                    "warnings": validated.warnings,
                });
                writeln!(stdout, "{json:#}")
            } else {
                write!(stdout, "{}", render::report(&validated))
            };
            ExitCode::from(exit::OK)
        }
        Err(SettingsError::Invalid(diags)) => {
            if args.json {
                let json = serde_json::json!({
                    "valid": false,
                    "errors": diags.errors,
                    "warnings": diags.warnings,
                });
                // JSON only: a tool reading stdout gets one document, and nothing repeats it.
                let _ = writeln!(stdout, "{json:#}");
                return ExitCode::from(exit::INVALID);
            }
            let _ = write!(stderr, "{}", render::errors(&diags.errors));
            for warning in &diags.warnings {
                let _ = writeln!(stderr, "warning: {warning}");
            }
            ExitCode::from(exit::INVALID)
        }
        Err(error @ SettingsError::Io { .. }) => {
            let _ = writeln!(stderr, "error: {error}");
            ExitCode::from(exit::INVALID)
        }
    }
}
