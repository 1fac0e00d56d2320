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
        fs::write(self.dir.join(format!("config/{seq}.settings")), text).unwrap();
    }

    /// `akvsync handler <op> --state-dir <state>` in the handler directory, as the agent
    /// runs it for sequence number `seq`.
    pub fn cmd(&self, op: &str, seq: u64) -> Cmd {
        let mut command = Command::new(env!("CARGO_BIN_EXE_akvsync"));
        command
            .args(["handler", op, "--state-dir"])
            .arg(&self.state)
            .current_dir(&self.dir);
        Cmd::new(command)
            .env("AZURE_GUEST_AGENT_EXTENSION_VERSION", "1.0.0")
            .env("ConfigSequenceNumber", seq.to_string())
    }

    /// The `status` object of `status/<seq>.status`, once it is there and parses.
    pub fn status(&self, seq: u64) -> Option<serde_json::Value> {
        let bytes = fs::read(self.dir.join(format!("status/{seq}.status"))).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        Some(value[0]["status"].clone())
    }
}

impl Drop for HandlerDir {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(pid) = fs::read_to_string(self.state.join("akvsync.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}
