//! The Linux guest agent's side of the extension: a handler directory laid out as the
//! agent lays it out (`HandlerEnvironment.json`, `config/`, `status/`, `log/`), the
//! `<seq>.settings` it hands over, `akvsync handler <op>` run in it as the agent runs it
//! (with the harness's clean environment plus the agent's variables), and the
//! `<seq>.status` it reads back. The service `enable` starts is stopped when the
//! directory is dropped, so no test leaves one behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::env::Cmd;
use super::service::alive;

pub const HANDLER: &str = "Akvsync.KeyVault";

pub struct HandlerDir {
    pub dir: PathBuf,
    /// The `--state-dir` of every handler command (where the service's pid file is).
    pub state: PathBuf,
}

impl HandlerDir {
    /// `<parent>/Akvsync.KeyVault-1.0.0` with its environment file and folders.
    pub fn create(parent: &Path, state: PathBuf) -> HandlerDir {
        let dir = parent.join(format!("{HANDLER}-1.0.0"));
        for sub in ["config", "status", "log"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let environment = serde_json::json!([{
            "name": HANDLER,
            "version": 1.0,
            "handlerEnvironment": {
                "logFolder": dir.join("log"),
                "configFolder": dir.join("config"),
                "statusFolder": dir.join("status"),
                "heartbeatFile": dir.join("heartbeat.log"),
            }
        }]);
        fs::write(dir.join("HandlerEnvironment.json"), environment.to_string()).unwrap();
        HandlerDir { dir, state }
    }

    /// `config/<seq>.settings` with `public` settings and, optionally, protected settings
    /// and the thumbprint of the certificate they are encrypted to.
    pub fn write_settings(
        &self,
        seq: u64,
        public: &serde_json::Value,
        protected: Option<(&str, &str)>,
    ) {
        let (protected, thumbprint) = protected.unzip();
        let runtime = serde_json::json!({"runtimeSettings": [{"handlerSettings": {
            "publicSettings": public, "protectedSettings": protected,
            "protectedSettingsCertThumbprint": thumbprint,
        }}]});
        self.write_raw_settings(seq, &runtime.to_string());
    }

    /// `config/<seq>.settings` with exactly `text`.
    pub fn write_raw_settings(&self, seq: u64, text: &str) {
        fs::write(self.settings_file(seq), text).unwrap();
    }

    /// `config/<seq>.settings`.
    pub fn settings_file(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("config/{seq}.settings"))
    }

    /// `status/<seq>.status`.
    pub fn status_file(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("status/{seq}.status"))
    }

    /// `akvsync handler <op> --state-dir <state>` in the handler directory, as the agent
    /// runs it for sequence number `seq`.
    pub fn cmd(&self, op: &str, seq: u64) -> Cmd {
        self.cmd_as(op, Some(seq), "1.0.0")
    }

    /// [`HandlerDir::cmd`] as the agent runs extension `version`, with
    /// `ConfigSequenceNumber` only when `seq` is given.
    pub fn cmd_as(&self, op: &str, seq: Option<u64>, version: &str) -> Cmd {
        let mut command = Command::new(env!("CARGO_BIN_EXE_akvsync"));
        command
            .args(["handler", op, "--state-dir"])
            .arg(&self.state)
            .current_dir(&self.dir);
        let cmd = Cmd::new(command).env("AZURE_GUEST_AGENT_EXTENSION_VERSION", version);
        match seq {
            Some(seq) => cmd.env("ConfigSequenceNumber", seq.to_string()),
            None => cmd,
        }
    }

    /// The `status` object of `status/<seq>.status` once it is there; a status file is
    /// always complete JSON (written through a temporary), so one that does not parse panics.
    pub fn status(&self, seq: u64) -> Option<serde_json::Value> {
        let bytes = fs::read(self.status_file(seq)).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{seq}.status is not complete JSON: {e}"));
        Some(value[0]["status"].clone())
    }

    /// Waits (at most 60 s) until `<seq>.status` satisfies `ok`; panics with the last one.
    pub fn wait_status(
        &self,
        seq: u64,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let what = format!("{seq}.status {what}");
        super::wait_until(std::time::Duration::from_secs(60), &what, || {
            match self.status(seq) {
                Some(s) if ok(&s) => Ok(s),
                other => Err(format!("{other:#?}")),
            }
        })
    }

    /// The pid of the service `enable` started, while it is alive.
    pub fn service_pid(&self) -> Option<u32> {
        let pid = fs::read_to_string(self.state.join("akvsync.pid")).ok()?;
        let pid: u32 = pid.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }
}

impl Drop for HandlerDir {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.service_pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}
