//! Sync rounds → status files (SPEC §7): `transitioning` while `requireInitialSync` is not
//! complete, then `success`; without it `success` as soon as polling starts; one substatus
//! per certificate (`<vault>/<secret>`) naming the version, thumbprint and expiry, or the
//! cause of its failure; `warning` when it expires within `akvsync.expiryWarningDays`
//! (or another warning applies). The last status is rewritten with a fresh timestamp by
//! [`Reporter::refresh`] so that a `transitioning` status is never older than 2 minutes.

use std::path::PathBuf;
use std::sync::Mutex;

use super::config::{self, HandlerConfig};
use super::status::{self, Status, StatusReport, Substatus};
use crate::service::{Observer, Phase};
use crate::settings::Settings;
use crate::sync::{Report, SyncResult};

/// Writes the status (and heartbeat) files of the settings the service runs on.
#[derive(Debug)]
pub struct Reporter {
    state_dir: PathBuf,
    config: Mutex<HandlerConfig>,
    last: Mutex<Option<StatusReport>>,
}

impl Reporter {
    pub fn new(state_dir: PathBuf, config: HandlerConfig) -> Self {
        Reporter {
            state_dir,
            config: Mutex::new(config),
            last: Mutex::new(None),
        }
    }

    fn config(&self) -> HandlerConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Writes `report` as the current status (and remembers it for refreshes).
    pub fn publish(&self, report: StatusReport) {
        let config = self.config();
        if let Err(error) = status::write(&config.status_file, &report) {
            tracing::error!(file = %config.status_file.display(), %error, "cannot write the status file");
        }
        if config.report_heartbeat
            && let Some(heartbeat) = &config.heartbeat_file
            && let Err(error) = status::write_heartbeat(heartbeat, report.status, &report.message)
        {
            tracing::warn!(file = %heartbeat.display(), %error, "cannot write the heartbeat file");
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
    }

    /// The status before the first round ends.
    pub fn starting(&self, settings: &Settings) {
        let message = if settings.require_initial_sync {
            format!(
                "akvsync service started; initial sync of {} certificates in progress (requireInitialSync)",
                settings.certificates.len()
            )
        } else {
            "akvsync service started; first sync in progress".to_owned()
        };
        self.publish(self.report(Status::Transitioning, message, Vec::new()));
    }

    /// Rewrites the last status with a fresh timestamp (and the heartbeat).
    pub fn refresh(&self) {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(report) = last {
            self.publish(report);
        }
    }

    fn report(&self, status: Status, message: String, substatus: Vec<Substatus>) -> StatusReport {
        StatusReport {
            handler_name: self.config().handler_name,
            operation: "Enable".to_owned(),
            status,
            code: i32::from(status == Status::Error),
            message,
            substatus,
        }
    }
}

/// A certificate's substatus.
pub fn substatus(report: &Report) -> Substatus {
    let installed = match (&report.version, &report.thumbprint) {
        (Some(version), Some(thumbprint)) => {
            let expires = report
                .not_after
                .map(|t| status::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)))
                .unwrap_or_else(|| "unknown".to_owned());
            Some(format!(
                "version {version}, thumbprint {thumbprint}, expires {expires}"
            ))
        }
        _ => None,
    };
    // The expiry warning (`expiryWarningDays`) comes last, after any other warning.
    let warnings: Vec<&str> = report.all_warnings().collect();
    let warnings = if warnings.is_empty() {
        String::new()
    } else {
        format!("; warning: {}", warnings.join("; "))
    };
    let (status, code, message) = match &report.result {
        SyncResult::Failed(cause) => {
            // "installed, hook failing: …" / "installed, but outputs not written: …": the
            // new version is in place; what fails is the last step.
            let kept = match installed {
                Some(i) if cause.starts_with("installed, ") => format!(" ({i})"),
                Some(i) => format!("; keeping the installed {i}"),
                None => "; nothing installed".to_owned(),
            };
            (
                Status::Error,
                1,
                format!("{}: {cause}{kept}{warnings}", report.name),
            )
        }
        SyncResult::Installed | SyncResult::Unchanged => (
            if warnings.is_empty() {
                Status::Success
            } else {
                Status::Warning
            },
            0,
            format!(
                "{}{warnings}",
                installed.unwrap_or_else(|| "installed".to_owned())
            ),
        ),
    };
    Substatus {
        name: report.name.clone(),
        status,
        code,
        message,
    }
}

/// The top-level status after a round.
pub fn round_status(phase: Phase, settings: &Settings, reports: &[Report]) -> (Status, String) {
    let total = reports.len();
    let current = reports.iter().filter(|r| r.is_current()).count();
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.is_current())
        .map(|r| r.name.as_str())
        .collect();
    match phase {
        Phase::InitialSync { attempt } => (
            Status::Transitioning,
            format!(
                "initial sync (requireInitialSync): {current} of {total} certificates installed after {attempt} attempts; waiting for {}",
                failed.join(", ")
            ),
        ),
        Phase::Polling if failed.is_empty() => (
            Status::Success,
            if total == 0 {
                "no certificates observed; nothing to do".to_owned()
            } else {
                format!(
                    "{total} certificates current; polling every {} s",
                    settings.polling_interval_s
                )
            },
        ),
        Phase::Polling if settings.require_initial_sync && current == 0 && total > 0 => (
            Status::Error,
            format!(
                "initial sync gave up: no certificate could be installed ({})",
                failed.join(", ")
            ),
        ),
        Phase::Polling => (
            Status::Success,
            format!(
                "polling every {} s; {current} of {total} certificates current; not current: {}",
                settings.polling_interval_s,
                failed.join(", ")
            ),
        ),
    }
}

impl Observer for Reporter {
    fn round(&self, phase: Phase, settings: &Settings, reports: &[Report]) {
        let (status, message) = round_status(phase, settings, reports);
        let substatus = reports.iter().map(substatus).collect();
        self.publish(self.report(status, message, substatus));
    }

    fn reloaded(&self, applied: bool) {
        match config::read(&self.state_dir) {
            Ok(new) if applied => {
                tracing::info!(seq = new.seq_no, "reporting for new settings");
                *self.config.lock().unwrap_or_else(|e| e.into_inner()) = new;
            }
            Ok(new) => {
                // The new settings are not in use: say so in their status file, keep
                // reporting the old ones in theirs.
                let report = StatusReport {
                    handler_name: new.handler_name.clone(),
                    operation: "Enable".to_owned(),
                    status: Status::Error,
                    code: 1,
                    message: format!(
                        "settings {} could not be applied; the service keeps its last good settings (see {})",
                        new.seq_no,
                        new.log_folder.display()
                    ),
                    substatus: Vec::new(),
                };
                if let Err(error) = status::write(&new.status_file, &report) {
                    tracing::error!(%error, "cannot write the status file");
                }
            }
            Err(error) => tracing::error!(%error, "cannot read the handler config"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Platform;

    fn report(name: &str, result: SyncResult) -> Report {
        Report {
            name: format!("kv/{name}"),
            target: String::new(),
            result,
            version: Some("0123456789abcdef0123456789abcdef".into()),
            thumbprint: Some("AB".repeat(20)),
            not_after: Some(1_767_225_600),
            warnings: Vec::new(),
            expiry_warning: None,
            outputs: Vec::new(),
            outputs_error: None,
            transient: false,
        }
    }

    #[test]
    fn phases_map_to_the_agents_statuses() {
        let mut settings = Settings::empty(Platform::Linux, None);
        let ok = report("a", SyncResult::Installed);
        let bad = report("b", SyncResult::Failed("SecretNotFound".into()));
        let both = [ok.clone(), bad.clone()];
        let (s, m) = round_status(Phase::InitialSync { attempt: 2 }, &settings, &both);
        assert_eq!(s, Status::Transitioning);
        assert!(m.contains("1 of 2") && m.contains("kv/b"), "{m}");
        assert_eq!(
            round_status(Phase::Polling, &settings, &both).0,
            Status::Success
        );
        assert_eq!(
            round_status(Phase::Polling, &settings, &[]).0,
            Status::Success
        );
        settings.require_initial_sync = true;
        let (s, m) = round_status(Phase::Polling, &settings, std::slice::from_ref(&bad));
        assert_eq!(s, Status::Error, "{m}");
    }

    #[test]
    fn a_failing_hook_is_an_error_substatus_that_says_the_version_is_installed() {
        let hook = substatus(&report(
            "h",
            SyncResult::Failed("installed, hook failing: /bin/sh: exit status: 1".into()),
        ));
        assert_eq!((hook.status, hook.code), (Status::Error, 1));
        assert!(
            hook.message.starts_with(
                "kv/h: installed, hook failing: /bin/sh: exit status: 1 (version 0123456789abcdef0123456789abcdef"
            ),
            "{}",
            hook.message
        );
    }

    #[test]
    fn substatus_names_the_certificate_and_the_cause() {
        let ok = substatus(&report("a", SyncResult::Unchanged));
        assert_eq!(ok.status, Status::Success);
        assert_eq!(
            ok.message,
            format!(
                "version 0123456789abcdef0123456789abcdef, thumbprint {}, expires 2026-01-01T00:00:00Z",
                "AB".repeat(20)
            )
        );
        let bad = substatus(&report("b", SyncResult::Failed("403 Forbidden".into())));
        assert_eq!((bad.status, bad.code), (Status::Error, 1));
        assert!(
            bad.message
                .starts_with("kv/b: 403 Forbidden; keeping the installed version"),
            "{}",
            bad.message
        );
        let mut warned = report("c", SyncResult::Unchanged);
        warned.warnings.push("hook failed: exit status: 1".into());
        assert_eq!(substatus(&warned).status, Status::Warning);
        let mut expiring = report("d", SyncResult::Unchanged);
        expiring.expiry_warning = Some("the certificate expires in 3 days".into());
        let expiring = substatus(&expiring);
        assert_eq!(expiring.status, Status::Warning);
        assert!(
            expiring
                .message
                .ends_with("; warning: the certificate expires in 3 days"),
            "{}",
            expiring.message
        );
        let mut failing = report("e", SyncResult::Failed("403 Forbidden".into()));
        failing.expiry_warning = Some("the certificate has expired".into());
        let failing = substatus(&failing);
        assert_eq!(failing.status, Status::Error);
        assert!(
            failing.message.contains("the certificate has expired"),
            "{}",
            failing.message
        );
    }

    #[test]
    fn refresh_rewrites_with_a_new_timestamp() {
        let dir = std::env::temp_dir().join(format!("akvsync-reporter-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = HandlerConfig {
            handler_name: "n".into(),
            handler_version: "1".into(),
            seq_no: 0,
            status_file: dir.join("0.status"),
            heartbeat_file: Some(dir.join("heartbeat.log")),
            report_heartbeat: true,
            log_folder: dir.clone(),
        };
        let reporter = Reporter::new(dir.clone(), config);
        let stamp = || {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("0.status")).unwrap()).unwrap();
            v[0]["timestampUTC"].as_str().unwrap().to_owned()
        };
        reporter.starting(&Settings::empty(crate::settings::Platform::Linux, None));
        let first = stamp();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        reporter.refresh();
        assert_ne!(stamp(), first);
        let heartbeat: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("heartbeat.log")).unwrap()).unwrap();
        assert_eq!(heartbeat[0]["heartbeat"]["status"], "Ready");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
