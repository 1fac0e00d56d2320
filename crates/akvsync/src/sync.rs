//! The sync engine (SPEC §6): for each observed certificate, fetch the secret, compare
//! its version with what is installed (read back from the store), decode and install a
//! new version, prune past the retention count, and record the outcome. One task per
//! certificate with bounded concurrency: one certificate's failure never blocks another,
//! and a failure never removes what is installed. With metrics configured, each round
//! also updates the [`Metrics`] (failures by kind, throttles, token requests, duration,
//! per-certificate state); expiry warnings follow `akvsync.expiryWarningDays`.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};

use crate::decode;
use crate::hooks::{self, HookContext};
use crate::metrics::{CertificateSample, FetchErrorKind, Metrics};
use crate::outputs;
use crate::settings::{ObservedCertificate, Settings};
use crate::state::{State, StateDir, TargetState};
use crate::store::{self, CertificateStore};
use crate::vault::{VaultClient, VaultError};

/// Certificates fetched and installed at the same time; enough to sync a thousand
/// certificates quickly, few enough to stay far below Key Vault's throttle.
pub const CONCURRENCY: usize = 8;

/// The outcome of one certificate's sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `<vault>/<secret>` (SPEC §7 substatus name).
    pub name: String,
    pub target: String,
    pub result: SyncResult,
    /// The installed version after this sync (the previous one when it failed).
    pub version: Option<String>,
    pub thumbprint: Option<String>,
    pub not_after: Option<u64>,
    /// Warnings that do not make the certificate "not current" (a failed hook, pruning…).
    pub warnings: Vec<String>,
    /// The installed certificate has expired or expires within `expiryWarningDays`.
    pub expiry_warning: Option<String>,
    /// The stable paths of the certificate's `akvsync.outputs` files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Why the outputs were not written (the store install itself succeeded); folded into
    /// `result` by the engine.
    #[serde(skip)]
    pub outputs_error: Option<String>,
    /// The failure was transient (throttled, unreachable, timeout, 408, 5xx): worth
    /// retrying before the next poll when nothing is installed yet.
    #[serde(skip)]
    pub transient: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "message")]
pub enum SyncResult {
    /// A new version was installed.
    Installed,
    /// The newest version was already installed; nothing was written.
    Unchanged,
    /// The certificate is not current; what was installed stays.
    Failed(String),
}

impl Report {
    pub fn is_current(&self) -> bool {
        !matches!(self.result, SyncResult::Failed(_))
    }

    /// Never installed, and the last attempt failed transiently: the service retries it on
    /// the initial-sync schedule (`schedule::next_round`), not at the next poll.
    pub fn waits_for_first_install(&self) -> bool {
        !self.is_current() && self.transient && self.version.is_none()
    }

    /// Every warning, the expiry warning last.
    pub fn all_warnings(&self) -> impl Iterator<Item = &str> {
        self.warnings
            .iter()
            .map(String::as_str)
            .chain(self.expiry_warning.as_deref())
    }
}

/// Why one certificate's sync failed: the message for reports, the kind for metrics.
#[derive(Debug)]
struct Failure {
    kind: FetchErrorKind,
    message: String,
    /// `VaultError::is_transient` (everything that is not a vault error is not).
    transient: bool,
}

impl Failure {
    fn new(kind: FetchErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            transient: false,
        }
    }
}

impl From<VaultError> for Failure {
    fn from(error: VaultError) -> Self {
        let kind = match &error {
            VaultError::Identity { .. } => FetchErrorKind::Identity,
            VaultError::Throttled { .. } => FetchErrorKind::Throttled,
            VaultError::Transport { source, .. } if source.is_timeout() => FetchErrorKind::Timeout,
            VaultError::Transport { .. } => FetchErrorKind::Transport,
            VaultError::Status { status, .. } if *status >= 500 => FetchErrorKind::Http5xx,
            VaultError::Status { .. } => FetchErrorKind::Http4xx,
            VaultError::Redirect { .. } => FetchErrorKind::Redirect,
            VaultError::Challenge { .. } => FetchErrorKind::Challenge,
            VaultError::Setup(_) => FetchErrorKind::Other,
            // Unusable responses (truncated, too large, not a secret of this vault).
            _ => FetchErrorKind::Response,
        };
        Failure {
            transient: error.is_transient(),
            ..Failure::new(kind, error.to_string())
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Keeps one settings' certificates installed.
#[derive(Debug)]
pub struct Engine {
    settings: Settings,
    vault: Arc<VaultClient>,
    state_dir: Arc<StateDir>,
    state: Arc<Mutex<State>>,
    /// `Some` only when the settings configure metrics: off, nothing is recorded.
    metrics: Option<Arc<Metrics>>,
    /// Each certificate's store and its names there, in the settings' order (built once: a
    /// poll would otherwise format both names for every certificate), or why no store
    /// serves it on this platform (`sync_one` reports that).
    targets: Vec<Result<TargetNames, String>>,
}

/// A certificate's store, its state key and its description there.
struct TargetNames {
    store: &'static dyn CertificateStore,
    key: String,
    description: String,
}

impl std::fmt::Debug for TargetNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetNames")
            .field("key", &self.key)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

fn target_names(settings: &Settings) -> Vec<Result<TargetNames, String>> {
    settings
        .certificates
        .iter()
        .map(|c| {
            let store = store::for_target(&c.target)?;
            let (key, description) = (store.target_key(c), store.describe(c));
            Ok(TargetNames {
                store,
                key,
                description,
            })
        })
        .collect()
}

impl Engine {
    /// Loads the state and removes temporaries an interrupted run left in the stores.
    pub fn new(
        settings: Settings,
        vault: Arc<VaultClient>,
        state_dir: StateDir,
    ) -> (Self, Vec<String>) {
        store::windows::configure(&settings);
        let (state, warning) = state_dir.load();
        let mut warnings: Vec<String> = warning.into_iter().collect();
        warnings.extend(clean_store_temporaries(&settings));
        warnings.extend(clean_output_temporaries(&settings));
        let metrics = settings
            .akvsync
            .metrics
            .enabled()
            .then(|| Arc::new(Metrics::new()));
        let engine = Engine {
            targets: target_names(&settings),
            settings,
            vault,
            state_dir: Arc::new(state_dir),
            state: Arc::new(Mutex::new(state)),
            metrics,
        };
        (engine, warnings)
    }

    /// The same state directory and state with new settings (a reload): nothing installed
    /// is removed, certificates no longer observed are simply no longer polled. The metrics
    /// carry on (counters never go back) unless the new settings turn them off.
    pub fn reconfigured(&self, settings: Settings, vault: Arc<VaultClient>) -> Engine {
        store::windows::configure(&settings);
        let metrics = settings.akvsync.metrics.enabled().then(|| {
            self.metrics
                .clone()
                .unwrap_or_else(|| Arc::new(Metrics::new()))
        });
        Engine {
            targets: target_names(&settings),
            settings,
            vault,
            state_dir: Arc::clone(&self.state_dir),
            state: Arc::clone(&self.state),
            metrics,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The metrics this engine records, when the settings configure any.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// Records the settings file in use, for `status` without `--settings`.
    pub fn remember_settings(&self, path: &std::path::Path) {
        if let Err(e) = self.state_dir.remember_settings(path) {
            tracing::warn!(error = %e, "settings not remembered for status");
        }
    }

    /// Syncs every certificate once; reports in settings order.
    pub async fn sync_all(self: &Arc<Self>) -> Vec<Report> {
        self.sync_round(None).await
    }

    /// Syncs only the certificates of `previous` (the last round's reports, in settings
    /// order) that wait for their first install ([`Report::waits_for_first_install`]); the
    /// others' reports are carried over as they were. Reports in settings order, as
    /// [`Engine::sync_all`]; a `previous` of another length (other settings) syncs every
    /// certificate.
    pub async fn sync_waiting(self: &Arc<Self>, previous: &[Report]) -> Vec<Report> {
        self.sync_round(Some(previous)).await
    }

    async fn sync_round(self: &Arc<Self>, previous: Option<&[Report]>) -> Vec<Report> {
        let previous = previous.filter(|p| p.len() == self.settings.certificates.len());
        let started = Instant::now();
        let vault_counts = (
            self.vault.throttled_count(),
            self.vault.token_request_count(),
        );
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        let mut reports: Vec<Option<Report>> = vec![None; self.settings.certificates.len()];
        for index in 0..self.settings.certificates.len() {
            if let Some(carried) = previous
                .map(|p| &p[index])
                .filter(|r| !r.waits_for_first_install())
            {
                reports[index] = Some(carried.clone());
                continue;
            }
            let engine = Arc::clone(self);
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits.acquire().await;
                (index, engine.sync_one(index).await)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok((index, report)) = joined {
                reports[index] = Some(report);
            }
        }
        // One state write per round: a crash before it loses only records of installs,
        // which the next round recovers from the stores themselves.
        let state = self.state.lock().await;
        let saved = self.state_dir.save(&state);
        let mut reports: Vec<Report> = reports
            .into_iter()
            .zip(&self.settings.certificates)
            .map(|(report, certificate)| {
                report.unwrap_or_else(|| {
                    self.count_failure(FetchErrorKind::Other);
                    self.failed(
                        certificate,
                        "internal error: the sync task panicked".to_owned(),
                        None,
                    )
                })
            })
            .collect();
        if let Err(e) = saved {
            tracing::warn!(error = %e, "state not saved");
            for report in &mut reports {
                report.warnings.push(format!("state not saved: {e}"));
            }
        }
        if let Some(metrics) = &self.metrics {
            self.record_round(metrics, &reports, &state, started, vault_counts);
            metrics.set_readiness(
                reports.iter().filter(|r| !r.is_current()).count(),
                reports.len(),
            );
        }
        reports
    }

    fn count_failure(&self, kind: FetchErrorKind) {
        if let Some(metrics) = &self.metrics {
            metrics.count_fetch_error(kind);
        }
    }

    /// The round's duration, vault counters and every certificate's state, into the metrics.
    fn record_round(
        &self,
        metrics: &Metrics,
        reports: &[Report],
        state: &State,
        started: Instant,
        (throttled_before, tokens_before): (u64, u64),
    ) {
        metrics.add_vault_counts(
            self.vault
                .throttled_count()
                .saturating_sub(throttled_before),
            self.vault
                .token_request_count()
                .saturating_sub(tokens_before),
        );
        let samples = reports
            .iter()
            .zip(&self.settings.certificates)
            .zip(&self.targets)
            .map(|((report, certificate), names)| {
                let last_success = names
                    .as_ref()
                    .ok()
                    .and_then(|names| state.targets.get(&names.key))
                    .and_then(|t| t.last_success);
                let installed = report.thumbprint.is_some();
                CertificateSample {
                    vault: certificate.secret.vault_name.clone(),
                    secret: certificate.secret.secret_name.clone(),
                    version: report.version.clone().filter(|_| installed),
                    thumbprint: report.thumbprint.clone(),
                    target: report.target.clone(),
                    not_after: report.not_after,
                    last_success,
                }
            })
            .collect();
        metrics.record_round(started.elapsed().as_secs_f64(), samples);
    }

    fn failed(
        &self,
        certificate: &ObservedCertificate,
        message: String,
        previous: Option<&TargetState>,
    ) -> Report {
        Report {
            name: substatus_name(certificate),
            target: store::for_target(&certificate.target)
                .map_or_else(|_| String::new(), |s| s.describe(certificate)),
            result: SyncResult::Failed(message),
            version: previous.and_then(|p| p.installed_version.clone()),
            thumbprint: previous.and_then(|p| p.thumbprint.clone()),
            not_after: previous.and_then(|p| p.not_after),
            warnings: Vec::new(),
            expiry_warning: None,
            outputs: output_paths(&self.settings, certificate),
            outputs_error: None,
            transient: false,
        }
    }

    /// One certificate: fetch, compare, decode, install, prune, record (in memory).
    async fn sync_one(&self, index: usize) -> Report {
        let certificate = &self.settings.certificates[index];
        let TargetNames {
            store,
            key,
            description,
        } = match &self.targets[index] {
            Ok(names) => names,
            Err(message) => {
                self.count_failure(FetchErrorKind::Store);
                return self.failed(certificate, message.clone(), None);
            }
        };
        let (store, key) = (*store, key.as_str());
        let outcome = self
            .fetch_and_install(certificate, store, description, key)
            .await;
        let mut state = self.state.lock().await;
        let entry = state
            .targets
            .entry(key.to_owned())
            .or_insert_with(|| TargetState {
                vault_host: certificate.vault_host.clone(),
                secret_name: certificate.secret.secret_name.clone(),
                ..TargetState::default()
            });
        entry.last_check = Some(now());
        let report = match outcome {
            Ok(mut report) => {
                // Installed now, or found installed but not recorded (a crash between the
                // link switch and the state write): either way, prune past the retention.
                let newly_recorded = entry.installed_version != report.version;
                entry.last_success = entry.last_check;
                entry.last_error = None;
                entry.installed_version.clone_from(&report.version);
                entry.thumbprint.clone_from(&report.thumbprint);
                entry.not_after = report.not_after;
                if let Some(version) = &report.version {
                    if report.result == SyncResult::Installed {
                        entry.owned_versions.retain(|v| v != version);
                    }
                    if !entry.owned_versions.contains(version) {
                        entry.owned_versions.push(version.clone());
                    }
                }
                self.forget_custom_links(store, certificate, entry, &mut report);
                if report.result == SyncResult::Installed || newly_recorded {
                    self.prune(store, certificate, entry, &mut report);
                }
                if let Some(error) = report.outputs_error.take() {
                    // Installed in the store, but the application's files are not current:
                    // not current, retried at the next poll.
                    self.count_failure(FetchErrorKind::Store);
                    let message = format!("installed, but outputs not written: {error}");
                    entry.last_error = Some(message.clone());
                    report.result = SyncResult::Failed(message);
                }
                report
            }
            Err(Failure {
                kind,
                message,
                transient,
            }) => {
                self.count_failure(kind);
                entry.last_error = Some(message.clone());
                Report {
                    transient,
                    ..self.failed(certificate, message, Some(entry))
                }
            }
        };
        let mut report = report;
        let hook_failed_before = hook_failed(entry);
        drop(state);
        // Also when the sync failed: an expiring certificate that cannot be renewed is
        // exactly what the warning is for.
        report.expiry_warning = report
            .not_after
            .and_then(|t| expiry_warning(t, now(), self.settings.akvsync.expiry_warning_days));
        // Hooks run after a change, and again at every poll while they fail.
        let due = report.result == SyncResult::Installed
            || (report.result == SyncResult::Unchanged && hook_failed_before);
        if due {
            self.run_hooks(certificate, key, &mut report, hook_failed_before)
                .await;
        }
        report
    }

    /// Runs the hooks that match the certificate, records the outcome in the state, and
    /// marks the report "installed, hook failing" while any of them fails.
    async fn run_hooks(
        &self,
        certificate: &ObservedCertificate,
        key: &str,
        report: &mut Report,
        failed_before: bool,
    ) {
        let hooks: Vec<_> = hooks::matching(&self.settings.akvsync.hooks, &report.name).collect();
        if hooks.is_empty() {
            // The failing hook was removed from the settings: nothing is failing any more.
            if let Some(entry) = self.state.lock().await.targets.get_mut(key) {
                entry.hook = None;
            }
            return;
        }
        let context = HookContext {
            name: report.name.clone(),
            vault: certificate.vault_host.clone(),
            secret: certificate.secret.secret_name.clone(),
            version: report.version.clone().unwrap_or_default(),
            thumbprint: report.thumbprint.clone().unwrap_or_default(),
            not_after: report.not_after.unwrap_or_default(),
            target: report.target.clone(),
        };
        let mut first_failure: Option<hooks::HookRun> = None;
        for hook in hooks {
            let run = hooks::run(hook, &context).await;
            if let Some(metrics) = &self.metrics {
                metrics.count_hook_run(run.failure.is_none());
            }
            match &run.failure {
                None => tracing::info!(
                    certificate = %report.name,
                    hook = %run.program,
                    duration_ms = run.duration_ms,
                    "hook succeeded"
                ),
                // Logged once per change of outcome; repeats at debug.
                Some(failure) if !failed_before => tracing::warn!(
                    event_id = crate::eventlog::ids::HOOK_FAILED,
                    certificate = %report.name,
                    hook = %run.program,
                    %failure,
                    "hook failed; it is run again at every poll until it succeeds"
                ),
                Some(failure) => tracing::debug!(
                    certificate = %report.name,
                    hook = %run.program,
                    %failure,
                    "hook still failing"
                ),
            }
            if let Some(failure) = &run.failure {
                report.warnings.push(format!("hook failed: {failure}"));
                if first_failure.is_none() {
                    first_failure = Some(run);
                }
            }
        }
        if failed_before && first_failure.is_none() {
            tracing::info!(certificate = %report.name, "hooks succeed again");
        }
        let mut state = self.state.lock().await;
        let Some(entry) = state.targets.get_mut(key) else {
            return;
        };
        entry.hook = Some(crate::state::HookState {
            ok: first_failure.is_none(),
            message: first_failure.as_ref().and_then(|f| f.failure.clone()),
            exit_code: first_failure.as_ref().and_then(|f| f.exit_code),
            at: now(),
            version: report.version.clone(),
        });
        if let Some(failure) = first_failure.and_then(|f| f.failure) {
            let message = format!("installed, hook failing: {failure}");
            entry.last_error = Some(message.clone());
            report.result = SyncResult::Failed(message);
        }
    }

    /// Passwords of the certificate's PFX outputs that come from Key Vault secrets,
    /// fetched with the same identity and rules as certificates.
    async fn output_passwords(
        &self,
        certificate: &ObservedCertificate,
    ) -> Result<outputs::Passwords, Failure> {
        let name = crate::settings::outputs::filter_name(certificate);
        let mut passwords = outputs::Passwords::new();
        for (index, set) in self.settings.akvsync.outputs.iter().enumerate() {
            if let (true, Some(crate::settings::PfxPassword::Secret(url))) =
                (set.applies_to(&name), &set.pfx_password)
            {
                let secret = self.vault.get_secret(url).await.map_err(|e| {
                    let failure = Failure::from(e);
                    let message = format!("outputs[{index}].pfxPassword: {}", failure.message);
                    Failure { message, ..failure }
                })?;
                let password = secret.value.text().map_err(|e| {
                    Failure::new(
                        FetchErrorKind::Decode,
                        format!("outputs[{index}].pfxPassword: {e}"),
                    )
                })?;
                passwords.insert(index, zeroize::Zeroizing::new(password.to_owned()));
            }
        }
        Ok(passwords)
    }

    /// The versions to keep after installing `version`: it and the newest others recorded,
    /// `retainVersions` in all.
    fn keep_with(&self, previous: Option<&TargetState>, version: &str) -> Vec<String> {
        let mut owned: Vec<String> = previous.map_or_else(Vec::new, |p| p.owned_versions.clone());
        owned.retain(|v| v != version);
        owned.push(version.to_owned());
        self.keep(&owned).into_iter().map(str::to_owned).collect()
    }

    /// The newest `retainVersions` of `owned` (oldest first): what pruning keeps.
    fn keep<'a>(&self, owned: &'a [String]) -> Vec<&'a str> {
        let retain = self.settings.akvsync.retain_versions as usize;
        owned
            .iter()
            .rev()
            .take(retain)
            .map(String::as_str)
            .collect()
    }

    /// Records the target's current custom link, and removes those akvsync made that the
    /// settings no longer name (before pruning, so none is ever left pointing at a removed
    /// version).
    fn forget_custom_links(
        &self,
        store: &dyn CertificateStore,
        certificate: &ObservedCertificate,
        entry: &mut TargetState,
        report: &mut Report,
    ) {
        let current = match &certificate.target {
            crate::settings::Target::LinuxDirectory(t) => t.custom_link_name.clone(),
            crate::settings::Target::WindowsStore(_) => None,
        };
        let mut kept = Vec::new();
        for name in std::mem::take(&mut entry.custom_links) {
            if Some(&name) == current.as_ref() {
                continue;
            }
            match store.forget_link(certificate, &name) {
                Ok(_) => {}
                Err(e) => {
                    report
                        .warnings
                        .push(format!("old custom link {name} not removed: {e}"));
                    kept.push(name);
                }
            }
        }
        kept.extend(current);
        entry.custom_links = kept;
    }

    fn prune(
        &self,
        store: &dyn CertificateStore,
        certificate: &ObservedCertificate,
        entry: &mut TargetState,
        report: &mut Report,
    ) {
        let keep = self.keep(&entry.owned_versions);
        match store.prune(certificate, &entry.owned_versions, &keep) {
            Ok(removed) => entry.owned_versions.retain(|v| !removed.contains(v)),
            Err(e) => report
                .warnings
                .push(format!("old versions not pruned: {e}")),
        }
    }

    async fn fetch_and_install(
        &self,
        certificate: &ObservedCertificate,
        store: &'static dyn CertificateStore,
        description: &str,
        key: &str,
    ) -> Result<Report, Failure> {
        let secret = self.vault.get_secret(&certificate.secret).await?;
        let now = now() as i64;
        let unusable = |message: String| Failure::new(FetchErrorKind::SecretState, message);
        if !secret.enabled {
            return Err(unusable(format!(
                "version {} is disabled in Key Vault",
                secret.version
            )));
        }
        if secret.not_before.is_some_and(|nbf| nbf > now) {
            return Err(unusable(format!(
                "version {} is not yet valid in Key Vault (nbf)",
                secret.version
            )));
        }
        if secret.expires.is_some_and(|exp| exp <= now) {
            return Err(unusable(format!(
                "version {} is expired in Key Vault (exp)",
                secret.version
            )));
        }
        // The recorded state is read in place: an unchanged certificate (almost every one,
        // at almost every poll) copies nothing out of it.
        let state = self.state.lock().await;
        let previous = state.targets.get(key);
        let mut report = Report {
            name: substatus_name(certificate),
            target: description.to_owned(),
            result: SyncResult::Unchanged,
            version: Some(secret.version.clone()),
            thumbprint: previous.and_then(|p| p.thumbprint.clone()),
            not_after: previous.and_then(|p| p.not_after),
            warnings: Vec::new(),
            expiry_warning: None,
            outputs: Vec::new(),
            outputs_error: None,
            transient: false,
        };
        let plans = outputs::plan(&self.settings, certificate);
        report.outputs = outputs::paths(&plans)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let installed = store.current_version(certificate);
        let recorded = previous.and_then(|p| p.installed_version.as_deref());
        let already_installed = installed.as_deref() == Some(secret.version.as_str());
        let outputs_current = plans.is_empty()
            || outputs::current_version(&plans, certificate).as_deref()
                == Some(secret.version.as_str());
        if already_installed && recorded == installed.as_deref() && outputs_current {
            return Ok(report);
        }
        let previous = previous.cloned();
        drop(state);
        let previous = previous.as_ref();
        let passwords = if outputs_current {
            outputs::Passwords::new()
        } else {
            self.output_passwords(certificate).await?
        };
        let keep = self.keep_with(previous, &secret.version);
        if !already_installed
            && let (Some(installed), Some(pinned)) = (&installed, &certificate.secret.version)
            && installed != pinned
        {
            report.warnings.push(format!(
                "moving to pinned version {pinned} from {installed}"
            ));
        }
        // Decoding (PKCS#12 KDFs) and the store write (fsyncs) block: run them off the
        // runtime thread so that certificates overlap their disk waits.
        let certificate_owned = certificate.clone();
        let version = secret.version.clone();
        let content_type = secret.content_type.clone();
        let value = secret.value;
        let install = !already_installed;
        let settings = self.settings.clone();
        let (bundle, outputs_result, prune_error) =
            tokio::task::spawn_blocking(move || -> Result<_, Failure> {
                let text = value
                    .text()
                    .map_err(|e| Failure::new(FetchErrorKind::Decode, e))?;
                let bundle = decode::decode_secret(content_type.as_deref(), text)
                    .map_err(|e| Failure::new(FetchErrorKind::Decode, e.to_string()))?;
                // Before anything is written: a version whose chain the settings' policy
                // refuses is never installed; the installed one stays (issue 15).
                if install || !outputs_current {
                    crate::chain::check(settings.chain_validation(), &bundle)
                        .map_err(|e| Failure::new(FetchErrorKind::Chain, e))?;
                }
                // The outputs' files are written before the store installs and made current
                // after it: the store's fsyncs carry them (fewer journal commits), the store
                // leads, and an output failure never holds the store back.
                let prepared = (!outputs_current).then(|| {
                    outputs::prepare(
                        &settings,
                        &certificate_owned,
                        &plans,
                        &version,
                        &bundle,
                        &passwords,
                    )
                });
                if install {
                    store
                        .install(&certificate_owned, &version, &bundle)
                        .map_err(|e| Failure::new(FetchErrorKind::Store, e.to_string()))?;
                }
                let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
                let mut prune_error = None;
                let outputs_result = match prepared {
                    Some(prepared) => Some(
                        prepared
                            .and_then(|prepared| prepared.finish(&keep))
                            .map_err(|e| e.to_string()),
                    ),
                    None => {
                        // Current but not recorded (a crash after the switch): what the
                        // crash kept the write from pruning.
                        if !plans.is_empty() {
                            prune_error =
                                outputs::prune(&certificate_owned, &plans, &version, &keep).err();
                        }
                        None
                    }
                };
                Ok((bundle, outputs_result, prune_error))
            })
            .await
            .map_err(|e| {
                Failure::new(
                    FetchErrorKind::Other,
                    format!("internal error: the install task failed: {e}"),
                )
            })??;
        if let Some(e) = prune_error {
            report.warnings.push(format!("old outputs not pruned: {e}"));
        }
        let outputs_written = matches!(outputs_result, Some(Ok(())));
        report.outputs_error = match outputs_result {
            Some(Err(message)) => Some(message),
            _ => None,
        };
        if already_installed && !outputs_written {
            // Installed but not recorded (a crash between the link switch and the state
            // write): record it without writing anything.
            report.thumbprint = Some(bundle.leaf.thumbprint.clone());
            report.not_after = Some(bundle.leaf.not_after);
            return Ok(report);
        }
        report.result = SyncResult::Installed;
        report.thumbprint = Some(bundle.leaf.thumbprint.clone());
        report.not_after = Some(bundle.leaf.not_after);
        if bundle.unrelated > 0 {
            report.warnings.push(format!(
                "{} certificate(s) in the secret are not in the leaf's chain; not installed",
                bundle.unrelated
            ));
        }
        if bundle.leaf.not_before as i64 > now {
            report
                .warnings
                .push("the certificate is not valid yet (notBefore is in the future)".to_owned());
        }
        Ok(report)
    }
}

/// Whether the target's hooks failed for the version installed now.
fn hook_failed(entry: &TargetState) -> bool {
    entry
        .hook
        .as_ref()
        .is_some_and(|h| !h.ok && h.version == entry.installed_version)
}

/// The stable paths of a certificate's output files.
fn output_paths(settings: &Settings, certificate: &ObservedCertificate) -> Vec<String> {
    if settings.akvsync.outputs.is_empty() {
        return Vec::new();
    }
    outputs::paths(&outputs::plan(settings, certificate))
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

/// Removes the temporaries an interrupted run left in the directory stores.
#[cfg(unix)]
fn clean_store_temporaries(settings: &Settings) -> Vec<String> {
    let mut dirs: Vec<&str> = settings
        .certificates
        .iter()
        .filter_map(|c| match &c.target {
            crate::settings::Target::LinuxDirectory(t) => Some(t.directory.as_str()),
            crate::settings::Target::WindowsStore(_) => None,
        })
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    dirs.into_iter()
        .filter_map(|dir| {
            store::linux::remove_stale_temps(std::path::Path::new(dir))
                .err()
                .map(|e| format!("cannot clean temporary files in {dir}: {e}"))
        })
        .collect()
}

#[cfg(not(unix))]
fn clean_store_temporaries(_settings: &Settings) -> Vec<String> {
    Vec::new()
}

/// Removes the temporaries an interrupted run left in the output directories (a link
/// switch or a file write cut short): nothing else ever removes them.
fn clean_output_temporaries(settings: &Settings) -> Vec<String> {
    if settings.akvsync.outputs.is_empty() {
        return Vec::new();
    }
    let mut dirs: Vec<std::path::PathBuf> = settings
        .certificates
        .iter()
        .flat_map(|c| outputs::plan(settings, c))
        .map(|plan| plan.directory)
        .collect();
    dirs.sort_unstable();
    dirs.dedup();
    dirs.into_iter()
        .filter_map(|dir| {
            outputs::remove_stale_temps(&dir)
                .err()
                .map(|e| format!("cannot clean temporary files in {}: {e}", dir.display()))
        })
        .collect()
}

/// Expired or soon-expiring certificates are installed (the vault is the source of truth)
/// but reported: expired always, soon-expiring when `not_after` is less than
/// `warning_days` days after `now` (`expiryWarningDays`; 0 turns this warning off).
pub fn expiry_warning(not_after: u64, now: u64, warning_days: u32) -> Option<String> {
    let left = not_after as i64 - now as i64;
    if left <= 0 {
        Some("the certificate has expired".to_owned())
    } else if left < i64::from(warning_days) * 86_400 {
        Some(match left / 86_400 {
            0 => "the certificate expires in less than a day".to_owned(),
            1 => "the certificate expires in 1 day".to_owned(),
            days => format!("the certificate expires in {days} days"),
        })
    } else {
        None
    }
}

/// `<vault>/<secret>`, the name of a certificate in status files and tables.
pub fn substatus_name(certificate: &ObservedCertificate) -> String {
    let (vault, secret) = (
        &certificate.secret.vault_name,
        &certificate.secret.secret_name,
    );
    // Built by hand: `format!` costs a few times more, at every poll of every certificate.
    let mut name = String::with_capacity(vault.len() + 1 + secret.len());
    name.push_str(vault);
    name.push('/');
    name.push_str(secret);
    name
}

#[cfg(test)]
mod tests {
    use super::expiry_warning;

    #[test]
    fn expiry_warnings_follow_the_threshold() {
        let day = 86_400;
        let now = 1_000 * day;
        assert_eq!(
            expiry_warning(now, now, 30).as_deref(),
            Some("the certificate has expired")
        );
        assert_eq!(
            expiry_warning(now - 1, now, 0).as_deref(),
            Some("the certificate has expired"),
            "expired is reported even with the early warning off"
        );
        assert_eq!(
            expiry_warning(now + 29 * day + 5, now, 30).as_deref(),
            Some("the certificate expires in 29 days")
        );
        assert_eq!(
            expiry_warning(now + day + 5, now, 30).as_deref(),
            Some("the certificate expires in 1 day")
        );
        assert_eq!(
            expiry_warning(now + 5, now, 30).as_deref(),
            Some("the certificate expires in less than a day")
        );
        assert_eq!(expiry_warning(now + 30 * day, now, 30), None);
        assert_eq!(expiry_warning(now + 5, now, 0), None);
        assert!(expiry_warning(now + 3000 * day, now, 3650).is_some());
    }
}
