//! One test environment: the emulator (HTTPS on loopback), a scratch directory with the
//! store, the state directory and the settings file, and must-run commands of the real
//! `akvsync` binary with a clean environment ([`akvsync`] for the verbs without one).
//!
//! ```ignore
//! let env = Env::start(EnvConfig { certificates: &["web"], ..Default::default() });
//! env.cmd(&["once"]).code(0).stdout_has("web").run();
//! ```

use std::path::PathBuf;
use std::process::{Command, Output};

use kvemu::{BlockingEmulator, Config};

use super::Scratch;

/// The vault every environment's certificates live in.
pub const VAULT: &str = "harnesskv";

/// What an environment starts with.
#[derive(Debug, Default)]
pub struct EnvConfig {
    /// Certificates (secret names) created in the vault and observed by the settings.
    pub certificates: &'static [&'static str],
    /// Merged into the settings' `akvsync` object (beside the testing overrides).
    pub akvsync: Option<serde_json::Value>,
    /// Merged into `secretsManagementSettings`.
    pub secrets_management: Option<serde_json::Value>,
    /// Seed the vault first (`seed-rsa-pfx`, `seed-ec-pfx`, `seed-rsa-pem`); seeded names
    /// in `certificates` are observed as they are.
    pub seed: bool,
}

/// A running emulator, a scratch directory and a settings file.
pub struct Env {
    pub emu: BlockingEmulator,
    pub scratch: Scratch,
    config: EnvConfig,
    /// The `akvsync` binary its commands run (see [`Env::use_binary_copy`]).
    binary: PathBuf,
}

/// Merges the object `extra` into `target` (top-level keys replace).
fn merge(target: &mut serde_json::Value, extra: &Option<serde_json::Value>) {
    if let (Some(target), Some(serde_json::Value::Object(extra))) = (target.as_object_mut(), extra)
    {
        for (key, value) in extra {
            target.insert(key.clone(), value.clone());
        }
    }
}

impl Env {
    pub fn start(config: EnvConfig) -> Env {
        let emu = BlockingEmulator::start(Config::default()).unwrap();
        let seeded: Vec<String> = if config.seed {
            emu.seed(VAULT)
                .unwrap()
                .into_iter()
                .map(|i| i.name)
                .collect()
        } else {
            Vec::new()
        };
        for name in config.certificates {
            if !seeded.iter().any(|s| s == name) {
                emu.rotate_certificate(VAULT, name).unwrap();
            }
        }
        let scratch = Scratch::new("env");
        let env = Env {
            emu,
            scratch,
            config,
            binary: PathBuf::from(env!("CARGO_BIN_EXE_akvsync")),
        };
        env.write_settings(&env.settings_json());
        env
    }

    /// `https://harnesskv.vault.azure.net/secrets/<secret>`.
    pub fn url(&self, secret: &str) -> String {
        format!("https://{VAULT}.vault.azure.net/secrets/{secret}")
    }

    /// The settings this environment was configured with.
    pub fn settings_json(&self) -> serde_json::Value {
        let urls: Vec<String> = self
            .config
            .certificates
            .iter()
            .map(|c| self.url(c))
            .collect();
        let mut secrets = serde_json::json!({
            "pollingIntervalInS": "1",
            "certificateStoreLocation": self.scratch.store().to_str().unwrap(),
            "observedCertificates": urls,
        });
        #[cfg(windows)]
        {
            // A Windows target is a system store, not a directory.
            secrets["certificateStoreLocation"] = "LocalMachine".into();
        }
        merge(&mut secrets, &self.config.secrets_management);
        let mut akvsync = serde_json::json!({"testing": {
            "caFile": self.emu.ca_file().to_str().unwrap(),
            "connectTo": {format!("{VAULT}.vault.azure.net"): self.emu.vault_addr().to_string()},
            "minPollingIntervalInS": 1,
        }});
        #[cfg(windows)]
        {
            akvsync["testing"]["windowsImportCompat"] = super::win_store::wine_compat().into();
        }
        merge(&mut akvsync, &self.config.akvsync);
        serde_json::json!({
            "secretsManagementSettings": secrets,
            "authenticationSettings": {"msiEndpoint": self.emu.identity_endpoint()},
            "akvsync": akvsync,
        })
    }

    /// Replaces the settings file.
    pub fn write_settings(&self, json: &serde_json::Value) {
        std::fs::write(
            self.settings_file(),
            serde_json::to_vec_pretty(json).unwrap(),
        )
        .unwrap();
    }

    pub fn settings_file(&self) -> PathBuf {
        self.scratch.settings_file()
    }

    /// Runs a copy of the binary in the scratch directory (mode 0755) from now on: another
    /// account may not be able to traverse the build directory (a clone in a 0700
    /// temporary directory).
    pub fn use_binary_copy(&mut self) {
        let copy = self.scratch.path("akvsync");
        std::fs::copy(&self.binary, &copy).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        self.binary = copy;
    }

    /// `akvsync <args…> --settings <file> --state-dir <state>` for the verbs that take
    /// them (`once`, `run`, `status`, `wait`), plain `akvsync <args…>` otherwise.
    pub fn cmd(&self, args: &[&str]) -> Cmd {
        Cmd::new(self.command(args))
    }

    /// What [`Env::cmd`] runs, as a plain `Command` with the clean environment (for a
    /// process the test starts in the background, e.g. with [`super::service::Service`]).
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_under(&[], args)
    }

    /// `akvsync run --settings <file> --state-dir <state>` with the clean environment, for
    /// [`super::service::Service::spawn`] (or to be wrapped, e.g. by `setpriv`: `prefix`
    /// is the program and arguments that run it).
    pub fn run_command(&self, prefix: &[String]) -> Command {
        self.command_under(prefix, &["run"])
    }

    /// `akvsync <args…>` (run by `prefix` when given: a program and its arguments, e.g.
    /// [`super::users::setpriv`]), with `--settings` and `--state-dir` for the verbs that
    /// take them, and the clean environment.
    pub fn command_under(&self, prefix: &[String], args: &[&str]) -> Command {
        let binary = &self.binary;
        let mut command = match prefix.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command.args(args);
        if matches!(args.first(), Some(&("once" | "run" | "status" | "wait"))) {
            command
                .arg("--settings")
                .arg(self.settings_file())
                .arg("--state-dir")
                .arg(self.scratch.state());
        }
        clean(&mut command);
        command
    }
}

/// `akvsync <args…>` with the clean environment and no emulator (`validate`, `--help`).
pub fn akvsync(args: &[&str]) -> Cmd {
    let mut command = Command::new(env!("CARGO_BIN_EXE_akvsync"));
    command.args(args);
    Cmd::new(command)
}

/// The variables a command of the binary inherits from the machine: `PATH`, and on Windows
/// the system's folders (Winsock and CryptoAPI find their providers through `SystemRoot`;
/// the service's log lives in `ProgramData`).
#[cfg(not(windows))]
const INHERITED: &[&str] = &["PATH"];
#[cfg(windows)]
const INHERITED: &[&str] = &[
    "PATH",
    "SystemRoot",
    "SystemDrive",
    "windir",
    "ProgramData",
    "ALLUSERSPROFILE",
    "TEMP",
    "TMP",
];

/// The environment a command of the binary sees: nothing inherited from the machine but
/// [`INHERITED`] (no `AKVSYNC_*`, proxy, `SSL_CERT_FILE` or guest-agent variables).
pub fn clean(command: &mut Command) -> &mut Command {
    command.env_clear();
    for name in INHERITED {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
}

/// A command that must be run: dropping it unrun panics (a test that builds a check and
/// forgets to run it would otherwise pass silently).
#[must_use = "a Cmd does nothing until .run()"]
pub struct Cmd {
    command: Command,
    code: Option<i32>,
    stdout_has: Vec<String>,
    stderr_has: Vec<String>,
    stdout_is: Option<String>,
    stderr_is: Option<String>,
    ran: bool,
}

impl Cmd {
    pub fn new(mut command: Command) -> Cmd {
        clean(&mut command);
        Cmd {
            command,
            code: None,
            stdout_has: Vec::new(),
            stderr_has: Vec::new(),
            stdout_is: None,
            stderr_is: None,
            ran: false,
        }
    }

    /// The exit code it must end with.
    pub fn code(mut self, code: i32) -> Self {
        self.code = Some(code);
        self
    }

    pub fn stdout_has(mut self, text: &str) -> Self {
        self.stdout_has.push(text.to_owned());
        self
    }

    pub fn stderr_has(mut self, text: &str) -> Self {
        self.stderr_has.push(text.to_owned());
        self
    }

    /// Its whole stdout must be `text` (`""` for nothing).
    pub fn stdout_is(mut self, text: &str) -> Self {
        self.stdout_is = Some(text.to_owned());
        self
    }

    /// Its whole stderr must be `text` (`""` for nothing).
    pub fn stderr_is(mut self, text: &str) -> Self {
        self.stderr_is = Some(text.to_owned());
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    /// Runs it to completion and checks every expectation; returns the output.
    pub fn run(mut self) -> Output {
        self.ran = true;
        let output = self.command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let describe = || format!("{:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", self.command);
        if let Some(code) = self.code {
            assert_eq!(output.status.code(), Some(code), "{}", describe());
        }
        for text in &self.stdout_has {
            assert!(
                stdout.contains(text.as_str()),
                "stdout lacks {text:?}: {}",
                describe()
            );
        }
        if let Some(text) = &self.stdout_is {
            assert_eq!(stdout, text.as_str(), "stdout: {}", describe());
        }
        if let Some(text) = &self.stderr_is {
            assert_eq!(stderr, text.as_str(), "stderr: {}", describe());
        }
        for text in &self.stderr_has {
            assert!(
                stderr.contains(text.as_str()),
                "stderr lacks {text:?}: {}",
                describe()
            );
        }
        output
    }
}

impl Drop for Cmd {
    fn drop(&mut self) {
        if !self.ran && !std::thread::panicking() {
            panic!("a Cmd was built and never run: {:?}", self.command);
        }
    }
}
