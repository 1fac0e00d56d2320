//! `akvsync service …`: on Linux, `install`/`uninstall` prepare the machine to run the
//! systemd unit as the service account (src/privilege/install.rs); on Windows, the Windows
//! service (src/winservice) is registered, removed and run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[cfg(windows)]
use super::sync_verbs;
use super::{SyncArgs, exit};

#[derive(Debug, clap::Args)]
pub(super) struct ServiceArgs {
    #[command(subcommand)]
    action: ServiceAction,
}

#[derive(Debug, Subcommand)]
enum ServiceAction {
    /// Linux: create the service account, give it the directories the settings write, write
    /// the unit drop-in (exactly those paths writable, only the capabilities the settings
    /// need) and the polkit rule for hook units; run again after editing the settings.
    /// Windows: register the `akvsync` service (automatic start) with these settings.
    Install(InstallArgs),
    /// Linux: remove what `install` wrote (the account, the state and the certificates stay).
    /// Windows: stop and remove the `akvsync` service.
    Uninstall(UninstallArgs),
    /// Windows: run under the service control manager (refused from a console: use `run`).
    Run(SyncArgs),
}

#[derive(Debug, clap::Args)]
struct InstallArgs {
    /// Settings file (Linux default: /etc/akvsync/settings.json).
    #[arg(long)]
    settings: Option<PathBuf>,
    /// The service's state directory (default: /var/lib/akvsync, %ProgramData%\akvsync).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Linux: the account the service runs as (created when missing).
    #[arg(long, default_value = "akvsync")]
    account: String,
    #[command(flatten)]
    system: SystemArgs,
}

#[derive(Debug, clap::Args)]
struct UninstallArgs {
    #[command(flatten)]
    system: SystemArgs,
}

#[derive(Debug, clap::Args)]
struct SystemArgs {
    /// Linux: write the systemd and polkit files below this directory instead of / (packaging,
    /// tests).
    #[arg(long, hide = true, default_value = "/")]
    root: PathBuf,
    /// Linux: do not run `systemctl daemon-reload`.
    #[arg(long)]
    no_systemctl: bool,
}

/// `akvsync service install|uninstall` on Linux.
#[cfg(target_os = "linux")]
pub(super) fn service(args: ServiceArgs) -> ExitCode {
    use crate::privilege::install;
    use crate::settings::{self, Platform};
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/bin/akvsync"));
    let options = |system: &SystemArgs, settings_path: PathBuf, state_dir: PathBuf, account| {
        install::Options {
            settings_path,
            state_dir,
            account,
            root: system.root.clone(),
            systemctl: !system.no_systemctl,
            exe: exe.clone(),
        }
    };
    let result = match args.action {
        ServiceAction::Install(args) => {
            let settings_path = args
                .settings
                .unwrap_or_else(|| PathBuf::from("/etc/akvsync/settings.json"));
            let validated = match settings::load_file(&settings_path, Platform::Linux) {
                Ok(validated) => validated,
                Err(settings::SettingsError::Invalid(diags)) => {
                    eprint!("{}", settings::render::errors(&diags.errors));
                    eprintln!(
                        "error: {} is not valid; nothing was changed",
                        settings_path.display()
                    );
                    return ExitCode::from(exit::INVALID);
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(exit::INVALID);
                }
            };
            let state_dir = args
                .state_dir
                .unwrap_or_else(crate::state::default_state_dir);
            let options = options(&args.system, settings_path, state_dir, args.account);
            install::install(&validated.settings, &options)
        }
        ServiceAction::Uninstall(args) => {
            let options = options(
                &args.system,
                PathBuf::new(),
                crate::state::default_state_dir(),
                String::new(),
            );
            install::uninstall(&options)
        }
        ServiceAction::Run(_) => {
            eprintln!(
                "error: `service run` is the Windows service; on Linux systemd runs `akvsync run`"
            );
            return ExitCode::from(exit::INVALID);
        }
    };
    match result {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::from(exit::OK)
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// `akvsync service …` where there is neither systemd nor the Windows SCM.
#[cfg(not(any(windows, target_os = "linux")))]
pub(super) fn service(_: ServiceArgs) -> ExitCode {
    eprintln!("error: `akvsync service` exists on Linux (systemd) and Windows only");
    ExitCode::from(exit::INVALID)
}

/// `akvsync service install|uninstall|run` on Windows.
#[cfg(windows)]
pub(super) fn service(args: ServiceArgs) -> ExitCode {
    use crate::winservice;
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("error: {what}: {e}");
        ExitCode::from(exit::FAILURE)
    };
    match args.action {
        ServiceAction::Install(install) => {
            let Some(settings) = &install.settings else {
                eprintln!("error: --settings is required on Windows");
                return ExitCode::from(exit::INVALID);
            };
            let settings = match std::fs::canonicalize(settings) {
                Ok(path) => path,
                Err(e) => return failed(&format!("{}", settings.display()), &e),
            };
            let exe = match std::env::current_exe() {
                Ok(exe) => exe,
                Err(e) => return failed("finding akvsync.exe", &e),
            };
            let arguments = winservice::service_arguments(&settings, install.state_dir.as_deref());
            match winservice::install(&exe, arguments) {
                Ok(()) => {
                    println!("installed service {}", winservice::SERVICE_NAME);
                    match crate::eventlog::register_source() {
                        Ok(()) => println!(
                            "registered event log source {} (Application log)",
                            crate::eventlog::SOURCE
                        ),
                        Err(e) => eprintln!("warning: event log source: {e}"),
                    }
                    ExitCode::from(exit::OK)
                }
                Err(e) => failed("installing the service", &e),
            }
        }
        ServiceAction::Uninstall(_) => match winservice::uninstall() {
            Ok(()) => {
                println!("removed service {}", winservice::SERVICE_NAME);
                if let Err(e) = crate::eventlog::remove_source() {
                    eprintln!("warning: event log source: {e}");
                }
                ExitCode::from(exit::OK)
            }
            Err(e) => failed("removing the service", &e),
        },
        ServiceAction::Run(sync) => {
            if winservice::is_console() {
                eprintln!(
                    "error: `akvsync service run` is started by the service control manager; from a console use `akvsync run`"
                );
                return ExitCode::from(exit::INVALID);
            }
            winservice::init_file_logging(&winservice::log_path(&winservice::program_data()));
            let runner: winservice::Runner = Box::new(move |stop| {
                if sync_verbs::run_until(&sync, stop) == ExitCode::from(exit::OK) {
                    exit::OK
                } else {
                    exit::FAILURE
                }
            });
            match winservice::run_dispatcher(runner) {
                Ok(()) => ExitCode::from(exit::OK),
                Err(e) => failed("starting the service dispatcher", &e),
            }
        }
    }
}
