//! The service control manager side of the Windows service (`cfg(windows)`, through the
//! `windows-service` crate): install (or re-point), start, stop, uninstall, console
//! detection, the dispatcher and the control handler that turns stop/shutdown into the run
//! loop's stop.

use std::ffi::OsString;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use super::{DESCRIPTION, DISPLAY_NAME, SERVICE_NAME, STOP_WAIT_HINT_S};

/// What the service runs: the `run` loop, ending when the given future completes; returns
/// the exit code.
pub type Runner = Box<dyn FnOnce(Pin<Box<dyn Future<Output = ()> + Send>>) -> u8 + Send>;

static RUNNER: OnceLock<Mutex<Option<Runner>>> = OnceLock::new();

/// Whether this process has a console window (started by a person, not by the SCM).
pub fn is_console() -> bool {
    // SAFETY: GetConsoleWindow takes no arguments and only reports a handle (or null).
    !unsafe { windows_sys::Win32::System::Console::GetConsoleWindow() }.is_null()
}

fn service_info(exe: &Path, arguments: Vec<OsString>) -> ServiceInfo {
    ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.to_owned(),
        launch_arguments: arguments,
        dependencies: Vec::new(),
        account_name: None,
        account_password: None,
    }
}

/// Registers the service (automatic start, LocalSystem) to run `exe` with `arguments`.
pub fn install(exe: &Path, arguments: Vec<OsString>) -> Result<(), windows_service::Error> {
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )?;
    let service =
        manager.create_service(&service_info(exe, arguments), ServiceAccess::CHANGE_CONFIG)?;
    service.set_description(DESCRIPTION)?;
    Ok(())
}

/// Registers the service, or points the registered one at `exe` with `arguments` (an
/// extension update moves the executable to the new handler directory).
pub fn install_or_update(
    exe: &Path,
    arguments: Vec<OsString>,
) -> Result<(), windows_service::Error> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
    match manager.open_service(SERVICE_NAME, ServiceAccess::CHANGE_CONFIG) {
        Ok(service) => service.change_config(&service_info(exe, arguments)),
        Err(_) => install(exe, arguments),
    }
}

/// Whether the service is registered and running (or starting).
pub fn is_running() -> bool {
    let state = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .and_then(|m| m.open_service(SERVICE_NAME, ServiceAccess::QUERY_STATUS))
        .and_then(|s| s.query_status())
        .map(|s| s.current_state);
    matches!(
        state,
        Ok(ServiceState::Running | ServiceState::StartPending)
    )
}

/// Waits until the service reports `wanted`, up to `limit`.
fn wait_for(
    service: &windows_service::service::Service,
    wanted: ServiceState,
    limit: Duration,
) -> Result<bool, windows_service::Error> {
    let started = std::time::Instant::now();
    loop {
        if service.query_status()?.current_state == wanted {
            return Ok(true);
        }
        if started.elapsed() > limit {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the registered service and waits until it runs.
pub fn start() -> Result<(), String> {
    start_named(SERVICE_NAME, Duration::from_secs(STOP_WAIT_HINT_S))
}

/// Stops the service and waits until it has stopped; `Ok(false)` when it is not
/// registered or was not running.
pub fn stop() -> Result<bool, String> {
    stop_named(SERVICE_NAME, Duration::from_secs(STOP_WAIT_HINT_S * 2))
}

/// An SCM error with the Windows error behind it (`windows_service` prints only "IO error in
/// winapi call").
fn describe(e: &windows_service::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

/// Starts service `name` and waits up to `limit` until it reports RUNNING.
pub fn start_named(name: &str, limit: Duration) -> Result<(), String> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| format!("the service control manager: {}", describe(&e)))?;
    let service = manager
        .open_service(name, ServiceAccess::START | ServiceAccess::QUERY_STATUS)
        .map_err(|e| format!("service {name}: {}", describe(&e)))?;
    service
        .start::<&str>(&[])
        .map_err(|e| format!("starting service {name}: {}", describe(&e)))?;
    match wait_for(&service, ServiceState::Running, limit) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("service {name} did not reach RUNNING in time")),
        Err(e) => Err(format!(
            "waiting for service {name} to run: {}",
            describe(&e)
        )),
    }
}

/// Stops service `name` and waits up to `limit` until it has stopped; `Ok(false)` when it
/// is not registered or was not running.
pub fn stop_named(name: &str, limit: Duration) -> Result<bool, String> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| format!("the service control manager: {}", describe(&e)))?;
    let Ok(service) = manager.open_service(name, ServiceAccess::STOP | ServiceAccess::QUERY_STATUS)
    else {
        return Ok(false);
    };
    let state = service
        .query_status()
        .map_err(|e| format!("querying service {name}: {}", describe(&e)))?
        .current_state;
    if state == ServiceState::Stopped {
        return Ok(false);
    }
    service
        .stop()
        .map_err(|e| format!("stopping service {name}: {}", describe(&e)))?;
    match wait_for(&service, ServiceState::Stopped, limit) {
        Ok(true) => Ok(true),
        Ok(false) => Err(format!("service {name} did not stop in time")),
        Err(e) => Err(format!(
            "waiting for service {name} to stop: {}",
            describe(&e)
        )),
    }
}

/// A `restartService` hook: stop (if running) and start service `name`, each within
/// `limit`, so that a service that caches its certificate loads the new one.
pub fn restart_named(name: &str, limit: Duration) -> Result<(), String> {
    stop_named(name, limit)?;
    start_named(name, limit)
}

/// Stops (waiting up to the stop hint) and deletes the service.
pub fn uninstall() -> Result<(), windows_service::Error> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
    let service = manager.open_service(
        SERVICE_NAME,
        ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
    )?;
    if service.query_status()?.current_state != ServiceState::Stopped {
        let _ = service.stop();
        for _ in 0..(STOP_WAIT_HINT_S * 4) {
            if service.query_status()?.current_state == ServiceState::Stopped {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    service.delete()
}

/// Hands the process to the SCM's dispatcher, which calls `runner` on the service thread.
pub fn run_dispatcher(runner: Runner) -> Result<(), windows_service::Error> {
    *RUNNER
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(runner);
    service_dispatcher::start(SERVICE_NAME, ffi_service_main)
}

define_windows_service!(ffi_service_main, service_main);

fn service_main(_arguments: Vec<OsString>) {
    if let Err(e) = serve() {
        tracing::error!(error = %e, "the service failed");
    }
}

fn status(state: ServiceState, accept: ServiceControlAccept, exit: u32) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: accept,
        exit_code: ServiceExitCode::Win32(exit),
        checkpoint: 0,
        wait_hint: Duration::from_secs(STOP_WAIT_HINT_S),
        process_id: None,
    }
}

fn serve() -> Result<(), windows_service::Error> {
    let stop = Arc::new(tokio::sync::Notify::new());
    let on_stop = Arc::clone(&stop);
    let handle = service_control_handler::register(SERVICE_NAME, move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            tracing::info!("stop requested by the service control manager");
            on_stop.notify_one();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })?;
    handle.set_service_status(status(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        0,
    ))?;
    let runner = RUNNER
        .get()
        .and_then(|r| r.lock().unwrap_or_else(|e| e.into_inner()).take());
    let code = match runner {
        Some(run) => run(Box::pin(async move { stop.notified().await })),
        None => 1,
    };
    handle.set_service_status(status(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        u32::from(code),
    ))?;
    Ok(())
}
