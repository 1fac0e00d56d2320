//! Human-readable rendering of validated settings, as `akvsync validate` prints them.

use std::fmt::Write;

use super::model::{
    AclEntry, ChainValidation, DEFAULT_EXPIRY_WARNING_DAYS, ObservedCertificate, Platform,
    Settings, SettingsForm, Target, WindowsOptions,
};
use super::{Diagnostic, Validated};

/// The validation report: a summary line, the identity, one line per certificate
/// (vault, secret, version or "latest", target), then the warnings.
pub fn report(validated: &Validated) -> String {
    let settings = &validated.settings;
    let mut out = String::new();
    let form = match settings.form {
        Some(SettingsForm::RuntimeSettings) => "runtime settings file",
        Some(SettingsForm::PublicSettings) => "public settings",
        None => "empty settings file",
    };
    let _ = writeln!(
        out,
        "valid {form} for {}: {} certificate{}, polling every {} s, requireInitialSync {}, linkOnRenewal {}",
        settings.platform.name(),
        settings.certificates.len(),
        if settings.certificates.len() == 1 {
            ""
        } else {
            "s"
        },
        settings.polling_interval_s,
        on_off(settings.require_initial_sync),
        on_off(settings.link_on_renewal),
    );
    let _ = writeln!(out, "identity: {}", identity(settings));
    let ours = &settings.akvsync;
    let _ = writeln!(
        out,
        "akvsync: keeps {} version{} per certificate, initial sync attempts {}",
        ours.retain_versions,
        if ours.retain_versions == 1 { "" } else { "s" },
        ours.initial_sync_max_attempts
            .map_or("unlimited".to_owned(), |n| n.to_string()),
    );
    // Lines for akvsync's optional features appear only when they differ from the default.
    if ours.initial_sync_spread_s != 0 {
        let _ = writeln!(
            out,
            "start-up spread: the first sync starts within {} s (at random)",
            ours.initial_sync_spread_s
        );
    }
    if ours.expiry_warning_days != DEFAULT_EXPIRY_WARNING_DAYS {
        let _ = writeln!(
            out,
            "expiry warnings: {}",
            match ours.expiry_warning_days {
                0 => "only once a certificate has expired".to_owned(),
                days => format!("{days} days ahead"),
            }
        );
    }
    if ours.chain_validation.is_some() {
        let _ = writeln!(
            out,
            "chain validation: {}",
            match settings.chain_validation() {
                ChainValidation::ServerAuth =>
                    "certificates with the TLS server EKU, against the machine's roots",
                ChainValidation::All => "every certificate, against the machine's roots",
                ChainValidation::Off => "off",
            }
        );
    }
    if ours.windows != WindowsOptions::default() && settings.platform == Platform::Windows {
        let _ = writeln!(
            out,
            "renewals: lifecycle notification (event 1001) {}, HTTP.sys bindings {}",
            on_off(ours.windows.lifecycle_notifications),
            if ours.windows.update_http_sys_bindings {
                "moved to the new certificate"
            } else {
                "left as they are"
            }
        );
    }
    if ours.metrics.enabled() {
        let mut outputs = Vec::new();
        if let Some(listen) = ours.metrics.listen {
            outputs.push(format!("http://{listen}/metrics"));
        }
        if let Some(textfile) = &ours.metrics.textfile {
            outputs.push(format!("textfile {textfile}"));
        }
        let _ = writeln!(out, "metrics: {}", outputs.join(", "));
    }
    for certificate in &settings.certificates {
        let _ = writeln!(out, "{}", certificate_line(certificate));
    }
    for hook in &ours.hooks {
        let scope = if hook.certificates.is_empty() {
            "every certificate".to_owned()
        } else {
            hook.certificates.join(", ")
        };
        let _ = writeln!(
            out,
            "hook: {} (after a new version of {scope}; timeout {} s)",
            match &hook.restart_service {
                Some(service) => format!("restart Windows service {service}"),
                None => hook.command.join(" "),
            },
            hook.timeout_s
        );
    }
    for set in &ours.outputs {
        let scope = if set.certificates.is_empty() {
            "every certificate".to_owned()
        } else {
            set.certificates.join(", ")
        };
        let files: Vec<String> = set
            .files
            .iter()
            .map(|(kind, template)| format!("{} {template}", kind.name()))
            .collect();
        let mut how = vec![format!("mode {:04o}", set.mode)];
        if let Some(owner) = &set.owner {
            how.push(format!("owner {owner}"));
        }
        if let Some(group) = &set.group {
            how.push(format!("group {group}"));
        }
        match &set.pfx_password {
            Some(super::PfxPassword::File(path)) => how.push(format!("PFX password from {path}")),
            Some(super::PfxPassword::Secret(url)) => how.push(format!("PFX password from {url}")),
            None => {}
        }
        let _ = writeln!(
            out,
            "outputs: {} in {} (for {scope}; {})",
            files.join(", "),
            set.directory.as_deref().unwrap_or("the store directory"),
            how.join(", ")
        );
    }
    for warning in &validated.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}

/// Error lines, one per problem.
pub fn errors(errors: &[Diagnostic]) -> String {
    errors.iter().map(|e| format!("error: {e}\n")).collect()
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

fn identity(settings: &Settings) -> String {
    match &settings.identity.user_assigned {
        None => format!("system-assigned, from {}", settings.identity.endpoint),
        Some(id) => {
            let (parameter, value) = id.query_parameter();
            format!("{parameter} {value}, from {}", settings.identity.endpoint)
        }
    }
}

/// `vault  secret  version|latest  -> target`
pub fn certificate_line(certificate: &ObservedCertificate) -> String {
    let version = certificate.secret.version.as_deref().unwrap_or("latest");
    let target = match &certificate.target {
        Target::WindowsStore(t) => {
            let mut line = format!("{}\\{}", t.store_location.name(), t.store_name);
            if !t.accounts.is_empty() {
                let _ = write!(line, " (key readable by {})", t.accounts.join(", "));
            }
            if t.key_exportable {
                line.push_str(" (key exportable)");
            }
            line
        }
        Target::LinuxDirectory(t) => {
            let mut line = format!("{}/{}", t.directory.trim_end_matches('/'), t.link_name);
            if let Some(link) = &t.custom_link_name {
                let _ = write!(line, " (also linked as {link})");
            }
            if !t.acls.is_empty() {
                let entries: Vec<String> = t.acls.iter().map(acl).collect();
                let _ = write!(line, " (readable by {})", entries.join(", "));
            }
            line
        }
    };
    format!(
        "{}  {}  {version}  -> {target}",
        certificate.vault_host, certificate.secret.secret_name
    )
}

fn acl(entry: &AclEntry) -> String {
    match (&entry.user, &entry.group) {
        (Some(user), Some(group)) => format!("user {user} and group {group}"),
        (Some(user), None) => format!("user {user}"),
        (None, Some(group)) => format!("group {group}"),
        (None, None) => String::new(),
    }
}
