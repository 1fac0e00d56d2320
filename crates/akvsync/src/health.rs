//! Whether each observed certificate is *served*, not just installed (issue 14): installed,
//! its last check succeeded, its outputs show the installed version, and its hooks did
//! not fail. Read-only (no state lock, no network), so that `status`, `wait` and a
//! health check can run beside the service.

use serde::Serialize;

use crate::settings::{ObservedCertificate, Settings};
use crate::state::{HookState, State, TargetState};
use crate::store::{self, InstalledCertificate};
use crate::{outputs, sync};

/// One certificate's health.
#[derive(Debug)]
pub struct CertificateHealth {
    /// `<vault>/<secret>`.
    pub name: String,
    pub target: String,
    /// The store's stable names (Linux: the link and `customSymbolicLinkName`).
    pub links: Vec<String>,
    pub installed: Result<Option<InstalledCertificate>, String>,
    pub record: Option<TargetState>,
    /// Stable paths of its output files, and the version they show.
    pub outputs: Vec<String>,
    pub outputs_version: Option<String>,
    /// Why it is not served; `None` when it is.
    pub problem: Option<String>,
}

impl CertificateHealth {
    pub fn hook(&self) -> Option<&HookState> {
        self.record.as_ref().and_then(|r| r.hook.as_ref())
    }
}

/// The first line of a message, at most `max` characters (for one-line reasons).
pub fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Why a certificate is not served, from what is on disk and in the state.
fn problem(
    installed: &Result<Option<InstalledCertificate>, String>,
    record: Option<&TargetState>,
    has_outputs: bool,
    outputs_version: Option<&str>,
) -> Option<String> {
    let installed = match installed {
        Err(error) => return Some(format!("cannot read the installed certificate: {error}")),
        Ok(None) if record.is_none() => return Some("nothing synced yet".to_owned()),
        Ok(None) => {
            return Some(match record.and_then(|r| r.last_error.as_deref()) {
                Some(error) => format!("not installed: {error}"),
                None => "not installed".to_owned(),
            });
        }
        Ok(Some(installed)) => installed,
    };
    if let Some(error) = record.and_then(|r| r.last_error.as_deref()) {
        return Some(if error.starts_with("installed, ") {
            error.to_owned()
        } else {
            format!("last check failed: {error}")
        });
    }
    if let Some(hook) = record.and_then(|r| r.hook.as_ref())
        && !hook.ok
    {
        return Some(format!(
            "installed, hook failing: {}",
            hook.message.as_deref().unwrap_or("failed")
        ));
    }
    if has_outputs && outputs_version != installed.version.as_deref() {
        return Some(match outputs_version {
            Some(v) => format!("outputs show version {v}, not the installed one"),
            None => "outputs not written yet".to_owned(),
        });
    }
    None
}

/// Every observed certificate's health, in settings order.
pub fn evaluate(settings: &Settings, state: &State) -> Vec<CertificateHealth> {
    settings
        .certificates
        .iter()
        .map(|certificate| evaluate_one(settings, state, certificate))
        .collect()
}

fn evaluate_one(
    settings: &Settings,
    state: &State,
    certificate: &ObservedCertificate,
) -> CertificateHealth {
    let (target, installed, record) = match store::for_target(&certificate.target) {
        Ok(store) => (
            store.describe(certificate),
            store.installed(certificate).map_err(|e| e.to_string()),
            state.targets.get(&store.target_key(certificate)).cloned(),
        ),
        Err(message) => (String::new(), Err(message), None),
    };
    let plans = outputs::plan(settings, certificate);
    let outputs_version = if plans.is_empty() {
        None
    } else {
        outputs::current_version(&plans, certificate)
    };
    let problem = problem(
        &installed,
        record.as_ref(),
        !plans.is_empty(),
        outputs_version.as_deref(),
    );
    CertificateHealth {
        name: sync::substatus_name(certificate),
        target,
        links: store::link_paths(certificate),
        installed,
        record,
        outputs: outputs::paths(&plans)
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        outputs_version,
        problem,
    }
}

/// A summary for JSON consumers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub served: usize,
    pub not_served: usize,
}

pub fn summary(all: &[CertificateHealth]) -> Summary {
    let not_served = all.iter().filter(|h| h.problem.is_some()).count();
    Summary {
        served: all.len() - not_served,
        not_served,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lines_are_cut() {
        assert_eq!(first_line("a\nb", 10), "a");
        assert_eq!(first_line("abcdef", 4), "abc…");
        assert_eq!(first_line("", 4), "");
    }

    #[test]
    fn problems() {
        let record = TargetState::default();
        assert_eq!(
            problem(&Ok(None), None, false, None).as_deref(),
            Some("nothing synced yet")
        );
        assert_eq!(
            problem(&Ok(None), Some(&record), false, None).as_deref(),
            Some("not installed")
        );
        assert_eq!(
            problem(&Err("gone".into()), None, false, None).as_deref(),
            Some("cannot read the installed certificate: gone")
        );
    }
}
