//! The sync engine (SPEC §6): for each observed certificate, fetch the secret, compare
//! its version with what is installed (read back from the store), decode and install a
//! new version, prune past the retention count, and record the outcome. One task per
//! certificate with bounded concurrency: one certificate's failure never blocks another,
//! and a failure never removes what is installed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};

use crate::decode;
use crate::hooks::{self, HookContext};
use crate::settings::{ObservedCertificate, Settings};
use crate::state::{State, StateDir, TargetState};
use crate::store::{self, CertificateStore};
use crate::vault::VaultClient;

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
    /// Warnings that do not make the certificate "not current" (expired, near expiry…).
    pub warnings: Vec<String>,
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
        let engine = Engine {
            settings,
            vault,
            state_dir: Arc::new(state_dir),
            state: Arc::new(Mutex::new(state)),
        };
        (engine, warnings)
    }

    /// The same state directory and state with new settings (a reload): nothing installed
    /// is removed, certificates no longer observed are simply no longer polled.
    pub fn reconfigured(&self, settings: Settings, vault: Arc<VaultClient>) -> Engine {
        store::windows::configure(&settings);
        Engine {
            settings,
            vault,
            state_dir: Arc::clone(&self.state_dir),
            state: Arc::clone(&self.state),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Records the settings file in use, for `status` without `--settings`.
    pub fn remember_settings(&self, path: &std::path::Path) {
        if let Err(e) = self.state_dir.remember_settings(path) {
            tracing::warn!(error = %e, "settings not remembered for status");
        }
    }

    /// Syncs every certificate once; reports in settings order.
    pub async fn sync_all(self: &Arc<Self>) -> Vec<Report> {
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..self.settings.certificates.len() {
            let engine = Arc::clone(self);
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits.acquire().await;
                (
                    index,
                    engine.sync_one(&engine.settings.certificates[index]).await,
                )
            });
        }
        let mut reports: Vec<Option<Report>> = vec![None; self.settings.certificates.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((index, report)) = joined {
                reports[index] = Some(report);
            }
        }
        // One state write per round: a crash before it loses only records of installs,
        // which the next round recovers from the stores themselves.
        let saved = self.state_dir.save(&*self.state.lock().await);
        let mut reports: Vec<Report> = reports
            .into_iter()
            .zip(&self.settings.certificates)
            .map(|(report, certificate)| {
                report.unwrap_or_else(|| {
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
        reports
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
        }
    }

    /// One certificate: fetch, compare, decode, install, prune, record (in memory).
    async fn sync_one(&self, certificate: &ObservedCertificate) -> Report {
        let store = match store::for_target(&certificate.target) {
            Ok(store) => store,
            Err(message) => return self.failed(certificate, message, None),
        };
        let key = store.target_key(certificate);
        let previous = self.state.lock().await.targets.get(&key).cloned();
        let outcome = self
            .fetch_and_install(certificate, store, previous.as_ref())
            .await;
        let mut state = self.state.lock().await;
        let entry = state.targets.entry(key).or_insert_with(|| TargetState {
            vault_host: certificate.vault_host.clone(),
            secret_name: certificate.secret.secret_name.clone(),
            ..TargetState::default()
        });
        entry.last_check = Some(now());
        let report = match outcome {
            Ok(mut report) => {
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
                if report.result == SyncResult::Installed {
                    self.prune(store, certificate, entry, &mut report);
                }
                report
            }
            Err(message) => {
                entry.last_error = Some(message.clone());
                self.failed(certificate, message, Some(entry))
            }
        };
        let mut report = report;
        drop(state);
        if report.result == SyncResult::Installed {
            self.run_hooks(certificate, &mut report).await;
        }
        report
    }

    /// Runs the hooks that match a newly installed certificate, once each.
    async fn run_hooks(&self, certificate: &ObservedCertificate, report: &mut Report) {
        let context = HookContext {
            name: report.name.clone(),
            vault: certificate.vault_host.clone(),
            secret: certificate.secret.secret_name.clone(),
            version: report.version.clone().unwrap_or_default(),
            thumbprint: report.thumbprint.clone().unwrap_or_default(),
            not_after: report.not_after.unwrap_or_default(),
            target: report.target.clone(),
        };
        for hook in hooks::matching(&self.settings.akvsync.hooks, &report.name) {
            if let Err(failure) = hooks::run(hook, &context).await {
                report.warnings.push(format!("hook failed: {failure}"));
            }
        }
    }

    fn prune(
        &self,
        store: &dyn CertificateStore,
        certificate: &ObservedCertificate,
        entry: &mut TargetState,
        report: &mut Report,
    ) {
        let retain = self.settings.akvsync.retain_versions as usize;
        let keep: Vec<&str> = entry
            .owned_versions
            .iter()
            .rev()
            .take(retain)
            .map(String::as_str)
            .collect();
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
        previous: Option<&TargetState>,
    ) -> Result<Report, String> {
        let secret = self
            .vault
            .get_secret(&certificate.secret)
            .await
            .map_err(|e| e.to_string())?;
        let now = now() as i64;
        if !secret.enabled {
            return Err(format!(
                "version {} is disabled in Key Vault",
                secret.version
            ));
        }
        if secret.not_before.is_some_and(|nbf| nbf > now) {
            return Err(format!(
                "version {} is not yet valid in Key Vault (nbf)",
                secret.version
            ));
        }
        if secret.expires.is_some_and(|exp| exp <= now) {
            return Err(format!(
                "version {} is expired in Key Vault (exp)",
                secret.version
            ));
        }
        let mut report = Report {
            name: substatus_name(certificate),
            target: store.describe(certificate),
            result: SyncResult::Unchanged,
            version: Some(secret.version.clone()),
            thumbprint: previous.and_then(|p| p.thumbprint.clone()),
            not_after: previous.and_then(|p| p.not_after),
            warnings: Vec::new(),
        };
        let installed = store.current_version(certificate);
        let recorded = previous.and_then(|p| p.installed_version.as_deref());
        let already_installed = installed.as_deref() == Some(secret.version.as_str());
        if already_installed && recorded == installed.as_deref() {
            add_expiry_warnings(&mut report, now);
            return Ok(report);
        }
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
        let bundle = tokio::task::spawn_blocking(move || -> Result<decode::Bundle, String> {
            let bundle = decode::decode_secret(content_type.as_deref(), &value)
                .map_err(|e| e.to_string())?;
            if install {
                store
                    .install(&certificate_owned, &version, &bundle)
                    .map_err(|e| e.to_string())?;
            }
            Ok(bundle)
        })
        .await
        .map_err(|e| format!("internal error: the install task failed: {e}"))??;
        if already_installed {
            // Installed but not recorded (a crash between the link switch and the state
            // write): record it without writing anything.
            report.thumbprint = Some(bundle.leaf.thumbprint.clone());
            report.not_after = Some(bundle.leaf.not_after);
            add_expiry_warnings(&mut report, now);
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
        add_expiry_warnings(&mut report, now);
        Ok(report)
    }
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

/// Expired or soon-expiring certificates are installed (the vault is the source of truth)
/// but reported.
fn add_expiry_warnings(report: &mut Report, now: i64) {
    if let Some(not_after) = report.not_after {
        let left = not_after as i64 - now;
        if left <= 0 {
            report
                .warnings
                .push("the certificate has expired".to_owned());
        } else if left < 14 * 24 * 3600 {
            report
                .warnings
                .push(format!("the certificate expires in {} days", left / 86400));
        }
    }
}

/// `<vault>/<secret>`, the name of a certificate in status files and tables.
pub fn substatus_name(certificate: &ObservedCertificate) -> String {
    format!(
        "{}/{}",
        certificate.secret.vault_name, certificate.secret.secret_name
    )
}
