//! The state shared by both listeners and the library handle.

use crate::auth::Auth;
use crate::config::{Config, IdentityMode};
use crate::counters::Counters;
use crate::faults::Faults;
use crate::ids::Rng;
use crate::store::Store;
use crate::throttle::Throttle;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Mutex, MutexGuard};

/// Locks ignoring poisoning: a panicking handler must not wedge the emulator.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Shared {
    pub tenant_id: String,
    pub region: String,
    pub store: Mutex<Store>,
    pub auth: Mutex<Auth>,
    pub faults: Mutex<Faults>,
    pub counters: Mutex<Counters>,
    pub throttle: Mutex<Throttle>,
    pub rng: Mutex<Rng>,
    pub page_size: AtomicUsize,
    pub token_lifetime_secs: AtomicU64,
    pub identity_mode: Mutex<IdentityMode>,
    /// Directory where Arc challenge key files are written.
    pub arc_dir: PathBuf,
    /// Contents of Arc key files not yet used.
    pub arc_keys: Mutex<HashSet<String>>,
    /// Flips to true at shutdown (releases hung requests).
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// Test PKI for seeding and rotation, generated on first use.
    pub pki: std::sync::OnceLock<crate::seed::TestPki>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the Arc key files' contents or tokens.
        f.debug_struct("Shared")
            .field("tenant_id", &self.tenant_id)
            .field("region", &self.region)
            .field("auth", &self.auth)
            .field("arc_dir", &self.arc_dir)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(cfg: &Config, arc_dir: PathBuf) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let mut auth = Auth::new(&mut rng);
        for id in &cfg.identities {
            auth.add(&mut rng, id);
        }
        Shared {
            tenant_id: cfg.tenant_id.clone(),
            region: cfg.region.clone(),
            store: Mutex::new(Store::default()),
            auth: Mutex::new(auth),
            faults: Mutex::new(Faults::new(cfg.seed)),
            counters: Mutex::new(Counters::default()),
            throttle: Mutex::new(Throttle::new(cfg.throttle)),
            rng: Mutex::new(rng),
            page_size: AtomicUsize::new(cfg.page_size.clamp(1, 25)),
            token_lifetime_secs: AtomicU64::new(cfg.token_lifetime.as_secs().max(1)),
            identity_mode: Mutex::new(cfg.identity_mode),
            arc_dir,
            arc_keys: Mutex::new(HashSet::new()),
            shutdown: tokio::sync::watch::channel(false).0,
            pki: std::sync::OnceLock::new(),
        }
    }

    pub fn guid(&self) -> String {
        lock(&self.rng).guid()
    }

    pub fn version(&self) -> String {
        lock(&self.rng).version()
    }

    /// Waits until shutdown (the "hung connection" fault).
    pub async fn until_shutdown(&self) {
        let mut rx = self.shutdown.subscribe();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                break;
            }
        }
    }
}
