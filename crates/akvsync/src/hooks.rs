//! Post-install hooks (SPEC §6, issue 14): after a new version is installed, run each
//! matching `akvsync.hooks` command, with a timeout and the certificate's facts in
//! environment variables. The outcome (exit code, the end of its stderr, duration) goes to
//! the engine, which records it in the state and runs a failing hook again at every later
//! poll until it succeeds (never more often than the poll interval).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::settings::Hook;

/// How much of a failing hook's stderr is kept for the report.
const STDERR_TAIL: usize = 512;

/// What a hook is told about the installed certificate.
#[derive(Debug, Clone)]
pub struct HookContext {
    /// `<vault>/<secret>`.
    pub name: String,
    pub vault: String,
    pub secret: String,
    pub version: String,
    pub thumbprint: String,
    pub not_after: u64,
    /// Where the certificate is (the stable link on Linux, the store on Windows).
    pub target: String,
}

impl HookContext {
    fn environment(&self) -> [(&'static str, String); 7] {
        [
            ("AKVSYNC_CERTIFICATE", self.name.clone()),
            ("AKVSYNC_VAULT", self.vault.clone()),
            ("AKVSYNC_SECRET", self.secret.clone()),
            ("AKVSYNC_VERSION", self.version.clone()),
            ("AKVSYNC_THUMBPRINT", self.thumbprint.clone()),
            ("AKVSYNC_NOT_AFTER", self.not_after.to_string()),
            ("AKVSYNC_TARGET", self.target.clone()),
        ]
    }
}

/// The hooks that apply to `name` (`<vault>/<secret>`): one hash lookup per hook.
pub fn matching<'a>(hooks: &'a [Hook], name: &str) -> impl Iterator<Item = &'a Hook> {
    let name = name.to_ascii_lowercase();
    hooks.iter().filter(move |h| h.applies_to(&name))
}

/// How one hook run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    /// The program (the first argument), for messages.
    pub program: String,
    /// `None` when it succeeded; the failure otherwise.
    pub failure: Option<String>,
    /// The exit code, when it exited.
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
}

/// Runs one hook.
pub async fn run(hook: &Hook, context: &HookContext) -> HookRun {
    let started = std::time::Instant::now();
    let program = match &hook.restart_service {
        Some(service) => format!("restartService {service}"),
        None => hook.command.first().cloned().unwrap_or_default(),
    };
    let outcome = match &hook.restart_service {
        Some(service) => restart_service(service, hook.timeout_s).await,
        None => run_inner(hook, context).await,
    };
    let (failure, exit_code) = match outcome {
        Ok(()) => (None, Some(0)),
        Err((message, code)) => (Some(message), code),
    };
    HookRun {
        program,
        failure,
        exit_code,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// `restartService`: stop and start a Windows service through the service control manager,
/// each step within the hook's timeout.
#[cfg(windows)]
async fn restart_service(service: &str, timeout_s: u64) -> Result<(), (String, Option<i32>)> {
    let service = service.to_owned();
    tokio::task::spawn_blocking(move || {
        crate::winservice::restart_named(&service, Duration::from_secs(timeout_s))
    })
    .await
    .map_err(|e| (format!("restartService: {e}"), None))?
    .map_err(|message| (message, None))
}

#[cfg(not(windows))]
async fn restart_service(service: &str, _timeout_s: u64) -> Result<(), (String, Option<i32>)> {
    // Refused by validation on Linux; kept total for the type.
    Err((
        format!("restartService {service}: Windows services exist only on Windows"),
        None,
    ))
}

async fn run_inner(hook: &Hook, context: &HookContext) -> Result<(), (String, Option<i32>)> {
    let Some((program, args)) = hook.command.split_first() else {
        return Err(("empty command".to_owned(), None));
    };
    let mut command = tokio::process::Command::new(program);
    // A hook never inherits a capability the service holds (least privilege, issue 16).
    #[cfg(target_os = "linux")]
    // SAFETY: the closure makes one async-signal-safe call (prctl) between fork and exec.
    unsafe {
        command.pre_exec(crate::privilege::caps::clear_ambient);
    }
    let mut child = command
        .args(args)
        .envs(context.environment())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| (format!("{program}: cannot start: {e}"), None))?;
    let mut stderr = child.stderr.take();
    let timeout = Duration::from_secs(hook.timeout_s);
    let waited = tokio::time::timeout(timeout, async {
        let mut output = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            // Bounded: a chatty hook cannot make us hold more than 64 KiB.
            let _ = stderr.take(64 * 1024).read_to_end(&mut output).await;
        }
        (child.wait().await, output)
    })
    .await;
    match waited {
        Err(_) => Err((
            format!("{program}: killed after {} s", hook.timeout_s),
            None,
        )),
        Ok((Err(e), _)) => Err((format!("{program}: {e}"), None)),
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(status), output)) => {
            let text = String::from_utf8_lossy(&output);
            let text = text.trim();
            let tail: String = text
                .chars()
                .rev()
                .take(STDERR_TAIL)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Err((
                format!(
                    "{program}: {status}{}{tail}",
                    if tail.is_empty() { "" } else { ": " }
                ),
                status.code(),
            ))
        }
    }
}
