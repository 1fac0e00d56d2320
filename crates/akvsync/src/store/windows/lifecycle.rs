//! The certificate lifecycle *replace* notification (`cfg(windows)`; issue 15): runs the
//! script of [`plan::lifecycle_script`] (`Switch-Certificate -NotifyOnly`) with Windows
//! PowerShell from `%SystemRoot%`, no window, a bounded time, and its error output kept for
//! the message. Windows then logs event 1001 in
//! `Microsoft-Windows-CertificateServicesClient-Lifecycle-System/Operational`, which IIS's
//! `IIS-AutoCertRebind` task and other subscribers act on.

use std::io::Read;
use std::os::windows::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::plan;
use crate::settings::StoreLocation;

/// `CREATE_NO_WINDOW`: a service has no console to show one on.
const CREATE_NO_WINDOW: u32 = 0x0800_0000;
/// Long enough for PowerShell's cold start and the PKI module.
const TIMEOUT: Duration = Duration::from_secs(120);

fn powershell() -> PathBuf {
    let root = std::env::var_os("SystemRoot").unwrap_or_else(|| "C:\\Windows".into());
    PathBuf::from(root)
        .join("System32")
        .join("WindowsPowerShell")
        .join("v1.0")
        .join("powershell.exe")
}

/// Raises the notification that `new` replaces `old` in `location\store_name`.
pub fn notify_replace(
    location: StoreLocation,
    store_name: &str,
    old: &str,
    new: &str,
) -> Result<(), String> {
    let script = plan::lifecycle_script(location, store_name, old, new);
    let program = powershell();
    let mut child = Command::new(&program)
        .args(plan::powershell_arguments(&script))
        .creation_flags(CREATE_NO_WINDOW)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: cannot start: {e}", program.display()))?;
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.take(16 * 1024).read_to_end(&mut text);
        }
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "Switch-Certificate: killed after {} s",
                    TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("Switch-Certificate: {e}")),
        }
    };
    let text = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&text);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(format!(
        "Switch-Certificate -NotifyOnly: {status}: {}",
        last.trim()
    ))
}
