//! The Windows certificate store backend (SPEC §5.1, issue 6): PFX import into a system
//! store with the key-set flags of its location, `keyExportable`, the CAPI1-vs-CNG rule,
//! intermediates to `CA`, roots never, the private-key DACL, `linkOnRenewal`, reading what
//! is installed back from the store, and pruning of the versions akvsync installed.
//!
//! `plan` holds the pure decisions and is compiled and tested everywhere; `sys` (Win32,
//! `cfg(windows)`) performs them. Options that come from settings rather than the target
//! (`linkOnRenewal`, `akvsync.testing.windowsImportCompat`) are set once per settings load
//! with [`configure`].

#[cfg(windows)]
pub mod httpsys;
#[cfg(windows)]
pub mod lifecycle;
pub mod plan;
#[cfg(windows)]
pub mod sys;

use std::sync::RwLock;

use crate::settings::{ObservedCertificate, Settings, Target, WindowsTarget};

/// Store options taken from the settings rather than the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `linkOnRenewal`: set `CERT_RENEWAL_PROP_ID` on older certificates with a common SAN.
    pub link_on_renewal: bool,
    /// `akvsync.testing.windowsImportCompat`: import with only the flags Wine implements.
    pub import_compat: bool,
    /// `akvsync.windows.lifecycleNotifications`: event 1001 for each replaced certificate.
    pub lifecycle_notifications: bool,
    /// `akvsync.windows.updateHttpSysBindings`: move HTTP.sys bindings to the new version.
    pub update_http_sys_bindings: bool,
}

static OPTIONS: RwLock<Options> = RwLock::new(Options {
    link_on_renewal: false,
    import_compat: false,
    lifecycle_notifications: true,
    update_http_sys_bindings: false,
});

/// Takes the store options from `settings`; called by the engine for every settings load.
pub fn configure(settings: &Settings) {
    set_options(Options {
        link_on_renewal: settings.link_on_renewal,
        import_compat: settings.akvsync.testing.windows_import_compat,
        lifecycle_notifications: settings.akvsync.windows.lifecycle_notifications,
        update_http_sys_bindings: settings.akvsync.windows.update_http_sys_bindings,
    });
}

/// Sets the store options directly (tests).
pub fn set_options(options: Options) {
    let mut current = OPTIONS.write().unwrap_or_else(|e| e.into_inner());
    if options.import_compat && !current.import_compat {
        tracing::warn!(
            "akvsync.testing.windowsImportCompat is set: PFX import leaves out PKCS12_PREFER_CNG_KSP and PKCS12_ALLOW_OVERWRITE_KEY (for Wine); never use this in production"
        );
    }
    *current = options;
}

/// The options in force.
pub fn options() -> Options {
    *OPTIONS.read().unwrap_or_else(|e| e.into_inner())
}

/// The Windows system certificate store as a [`super::CertificateStore`].
#[derive(Debug, Clone, Copy)]
pub struct SystemStore;

fn windows_target(certificate: &ObservedCertificate) -> Option<&WindowsTarget> {
    match &certificate.target {
        Target::WindowsStore(t) => Some(t),
        Target::LinuxDirectory(_) => None,
    }
}

/// `<location>\<store>`, e.g. `LocalMachine\MY`.
pub fn store_path(target: &WindowsTarget) -> String {
    format!("{}\\{}", target.store_location.name(), target.store_name)
}

/// The owner mark akvsync writes on what it installs: `<vault host>/<secret>`.
pub fn owner(certificate: &ObservedCertificate) -> String {
    format!(
        "{}/{}",
        certificate.vault_host, certificate.secret.secret_name
    )
}

/// Stable identity of a Windows target: `<location>\<store>\<vault host>/<secret>`.
pub fn target_key(certificate: &ObservedCertificate) -> String {
    match windows_target(certificate) {
        Some(t) => format!("{}\\{}", store_path(t), owner(certificate)),
        None => String::new(),
    }
}

#[cfg(windows)]
mod install;
#[cfg(windows)]
pub use install::{
    Reach, WindowsStoreError, install as install_version, installed_in, key_dacl_of, pfx_for,
    resolve_accounts,
};

#[cfg(windows)]
impl super::CertificateStore for SystemStore {
    fn target_key(&self, certificate: &ObservedCertificate) -> String {
        target_key(certificate)
    }

    fn describe(&self, certificate: &ObservedCertificate) -> String {
        match windows_target(certificate) {
            Some(t) => format!(
                "{} ({})",
                store_path(t),
                plan::friendly_name(&certificate.secret.secret_name, "<version>")
            ),
            None => String::new(),
        }
    }

    fn current_version(&self, certificate: &ObservedCertificate) -> Option<String> {
        let target = windows_target(certificate)?;
        install::current(target, certificate)
            .ok()
            .flatten()
            .map(|(v, _)| v)
    }

    fn install(
        &self,
        certificate: &ObservedCertificate,
        version: &str,
        bundle: &crate::decode::Bundle,
    ) -> Result<(), super::StoreFailure> {
        let target = windows_target(certificate).ok_or("not a Windows store target")?;
        install::install(target, certificate, version, bundle, options())?;
        Ok(())
    }

    fn installed(
        &self,
        certificate: &ObservedCertificate,
    ) -> Result<Option<super::InstalledCertificate>, super::StoreFailure> {
        let target = windows_target(certificate).ok_or("not a Windows store target")?;
        Ok(install::current(target, certificate)?.map(|(_, installed)| installed))
    }

    fn prune(
        &self,
        certificate: &ObservedCertificate,
        owned: &[String],
        keep: &[&str],
    ) -> Result<Vec<String>, super::StoreFailure> {
        let target = windows_target(certificate).ok_or("not a Windows store target")?;
        Ok(install::prune(target, certificate, owned, keep)?)
    }
}
