//! The agent in-process, for tests that need its reports or its exact retry settings: the
//! real engine, credential and vault client over an [`Env`]'s settings, driven by a
//! runtime of its own ([`Agent::sync`] blocks), and what it installed in the store. The
//! push-back of a 429/503 without `Retry-After` is [`THROTTLE_PUSH_BACK`], Key Vault's
//! 10 s window and Microsoft's 1–16 s steps scaled down 100 times (the product's own delays
//! are checked through the binary).
//!
//! ```ignore
//! let env = Env::start(EnvConfig::default());
//! let v1 = env.emu.rotate_certificate(VAULT, "web").unwrap();
//! let agent = Agent::new(&env, &observe(&env, &["web"]), FAST, FAST);
//! assert_eq!(agent.sync()[0].result, SyncResult::Installed);
//! assert_eq!(linked_version(&env, "web").as_deref(), Some(v1.version.as_str()));
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use akvsync::backoff::{Backoff, ThrottlePushBack};
use akvsync::identity::Credential;
use akvsync::settings::{self, Platform, Settings};
use akvsync::state::StateDir;
use akvsync::sync::{Engine, Report, SyncResult};
use akvsync::vault::{VaultClient, VaultOptions};

use super::env::{Env, VAULT};
use super::store_view::StoreView;

/// `ThrottlePushBack::KEY_VAULT` scaled down 100 times.
pub const THROTTLE_PUSH_BACK: ThrottlePushBack = ThrottlePushBack {
    window: std::time::Duration::from_millis(100),
    step: std::time::Duration::from_millis(10),
    max_step: std::time::Duration::from_millis(160),
};

pub struct Agent {
    rt: tokio::runtime::Runtime,
    pub engine: Arc<Engine>,
    pub credential: Arc<Credential>,
    pub vault: Arc<VaultClient>,
}

impl Agent {
    /// The agent for `json` (see [`observe`]) with its state in the environment's state
    /// directory, retrying the identity endpoint with `identity` and the vault with `vault`.
    pub fn new(env: &Env, json: &serde_json::Value, identity: Backoff, vault: Backoff) -> Agent {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let entered = rt.enter();
        let settings = parse(json);
        let arc_dir = env.scratch.path("arc");
        let credential = Arc::new(Credential::new(&settings.identity, arc_dir, identity).unwrap());
        let mut options = VaultOptions::from_settings(&settings).unwrap();
        options.backoff = Some(vault);
        options.throttle_push_back = Some(THROTTLE_PUSH_BACK);
        let client = Arc::new(VaultClient::new(Arc::clone(&credential), &options).unwrap());
        let state = StateDir::open(&env.scratch.state()).unwrap();
        let (engine, warnings) = Engine::new(settings, Arc::clone(&client), state);
        assert!(warnings.is_empty(), "{warnings:?}");
        drop(entered);
        Agent {
            rt,
            engine: Arc::new(engine),
            credential,
            vault: client,
        }
    }

    /// One poll of every certificate.
    pub fn sync(&self) -> Vec<Report> {
        self.rt.block_on(self.engine.sync_all())
    }
}

/// The report of `secret` among `reports`.
pub fn report<'a>(reports: &'a [Report], secret: &str) -> &'a Report {
    let name = format!("{VAULT}/{secret}");
    reports
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no report for {name}: {reports:?}"))
}

/// Why `report` failed (panics, showing it, when it did not).
pub fn failure(report: &Report) -> &str {
    match &report.result {
        SyncResult::Failed(message) => message,
        _ => panic!("expected a failure: {report:?}"),
    }
}

/// The environment's settings observing `secrets` (names, or `name/version` to pin),
/// written to its settings file for the commands too.
pub fn observe(env: &Env, secrets: &[&str]) -> serde_json::Value {
    let mut json = env.settings_json();
    let urls: Vec<String> = secrets.iter().map(|s| env.url(s)).collect();
    json["secretsManagementSettings"]["observedCertificates"] = serde_json::json!(urls);
    env.write_settings(&json);
    json
}

pub fn parse(json: &serde_json::Value) -> Settings {
    let platform = if cfg!(windows) {
        Platform::Windows
    } else {
        Platform::Linux
    };
    settings::parse_bytes(json.to_string().as_bytes(), platform)
        .unwrap()
        .settings
}

/// The store's link for `secret` (`<store>/<vault>.<secret>`).
pub fn link(env: &Env, secret: &str) -> PathBuf {
    StoreView::new(env.scratch.store()).link(VAULT, secret)
}

/// The version the link of `secret` points at, if there is one.
pub fn linked_version(env: &Env, secret: &str) -> Option<String> {
    StoreView::new(env.scratch.store()).linked_version(VAULT, secret)
}
