//! A long-running process of the real binary (`akvsync run`, possibly wrapped by `setpriv`):
//! its stderr is collected for [`Service::wait_log`], it is stopped with SIGTERM by
//! [`Service::stop`] and killed when dropped, so no test leaves one behind.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Service {
    child: Child,
    log: Arc<Mutex<String>>,
    pump: Option<std::thread::JoinHandle<()>>,
}

impl Service {
    /// Starts `command` (with the harness's clean environment applied by the caller).
    pub fn spawn(mut command: Command) -> Service {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        let pump = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Service {
            child,
            log,
            pump: Some(pump),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until its log contains `text` (panics with the log otherwise, or when the
    /// process ended first).
    pub fn wait_log(&mut self, text: &str, limit: Duration) {
        let started = Instant::now();
        loop {
            if self.log().contains(text) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Its last lines may still be in the pump: read the log to its end first.
                if let Some(pump) = self.pump.take() {
                    let _ = pump.join();
                }
                if self.log().contains(text) {
                    return;
                }
                panic!("exited ({status}) before logging {text:?}:\n{}", self.log());
            }
            if started.elapsed() > limit {
                panic!("no {text:?} in the log within {limit:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `holds`, for at most `limit` (panics with `what` and the log otherwise).
    pub fn wait_for(&self, limit: Duration, what: &str, mut holds: impl FnMut() -> bool) {
        super::wait_until(limit, what, || {
            holds().then_some(()).ok_or_else(|| self.log())
        });
    }

    /// Its exit status if it has ended, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Sends a signal (`nix::sys::signal::Signal::SIGHUP`, …).
    #[cfg(unix)]
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// SIGKILL now (a crash), then its exit status.
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill().unwrap();
        self.child.wait().unwrap()
    }

    /// SIGTERM, then waits for the exit (at most 30 s, then kills).
    pub fn stop(self) -> ExitStatus {
        self.stop_with_log().0
    }

    /// [`Service::stop`], then the whole log (read to its end once the process exited).
    pub fn stop_with_log(mut self) -> (ExitStatus, String) {
        let status = self.terminate();
        if let Some(pump) = self.pump.take() {
            let _ = pump.join();
        }
        (status, self.log())
    }

    /// SIGTERM: it must say "stopped" and exit successfully within `limit`. Its whole log.
    pub fn stop_within(self, limit: Duration) -> String {
        let asked = Instant::now();
        let (status, log) = self.stop_with_log();
        assert!(
            asked.elapsed() < limit,
            "stopped after {:?}:\n{log}",
            asked.elapsed()
        );
        assert!(status.success(), "{status:?}\n{log}");
        assert!(log.contains("stopped"), "no \"stopped\" in the log:\n{log}");
        log
    }

    fn terminate(&mut self) -> ExitStatus {
        #[cfg(unix)]
        self.signal(nix::sys::signal::Signal::SIGTERM);
        #[cfg(not(unix))]
        let _ = self.child.kill();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("did not stop within 30 s of SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The process is alive and not a zombie (Linux: read from `/proc`).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}
