//! Certificate stores: where installed certificates live, behind one interface that the
//! sync engine uses: the Linux directory store (`linux`) and the Windows system certificate
//! store (`windows`; its pure decisions compile everywhere, its Win32 side on Windows).

#[cfg(unix)]
pub mod linux;
pub mod windows;

use crate::decode::{Bundle, CertificateInfo};
use crate::settings::{ObservedCertificate, Target};

/// Errors of any store, with a message that names the path or store concerned.
pub type StoreFailure = Box<dyn std::error::Error + Send + Sync>;

/// One kind of store. Implementations must replace an installed certificate only by a
/// complete new one, and must never touch what they did not install.
pub trait CertificateStore: Send + Sync {
    /// Stable identity of the certificate's place in the store, for state and duplicates.
    fn target_key(&self, certificate: &ObservedCertificate) -> String;
    /// Where the certificate goes, for people.
    fn describe(&self, certificate: &ObservedCertificate) -> String;
    /// The version installed behind the stable name, read back from the store itself.
    fn current_version(&self, certificate: &ObservedCertificate) -> Option<String>;
    /// Installs `bundle` as `version` and makes it the current one.
    fn install(
        &self,
        certificate: &ObservedCertificate,
        version: &str,
        bundle: &Bundle,
    ) -> Result<(), StoreFailure>;
    /// What is installed behind the stable name, read back and parsed from the store.
    fn installed(
        &self,
        certificate: &ObservedCertificate,
    ) -> Result<Option<InstalledCertificate>, StoreFailure>;
    /// Removes owned versions outside `keep`; returns those removed.
    fn prune(
        &self,
        certificate: &ObservedCertificate,
        owned: &[String],
        keep: &[&str],
    ) -> Result<Vec<String>, StoreFailure>;
    /// Removes a stable name akvsync made for this certificate that the settings no longer
    /// name (a renamed or removed `customSymbolicLinkName`), if it is still akvsync's link
    /// to one of the certificate's versions; `Ok(false)` when there is nothing to remove.
    fn forget_link(
        &self,
        _certificate: &ObservedCertificate,
        _name: &str,
    ) -> Result<bool, StoreFailure> {
        Ok(false)
    }
}

/// A certificate as found in a store.
#[derive(Debug, Clone)]
pub struct InstalledCertificate {
    pub version: Option<String>,
    pub leaf: CertificateInfo,
    pub has_private_key: bool,
    /// The file or store entry it was read from.
    pub location: String,
}

/// The store for a target on this platform, or why there is none.
pub fn for_target(target: &Target) -> Result<&'static dyn CertificateStore, String> {
    match target {
        #[cfg(unix)]
        Target::LinuxDirectory(_) => Ok(&linux::DirectoryStore),
        #[cfg(not(unix))]
        Target::LinuxDirectory(_) => Err("directory stores exist only on Linux".to_owned()),
        #[cfg(windows)]
        Target::WindowsStore(_) => Ok(&windows::SystemStore),
        #[cfg(not(windows))]
        Target::WindowsStore(_) => {
            Err("the Windows certificate store exists only on Windows".to_owned())
        }
    }
}

/// The stable names a certificate is reached by (Linux: its link and
/// `customSymbolicLinkName`; none on Windows, where the store is the name).
pub fn link_paths(certificate: &ObservedCertificate) -> Vec<String> {
    match &certificate.target {
        Target::LinuxDirectory(t) => std::iter::once(&t.link_name)
            .chain(t.custom_link_name.as_ref())
            .map(|link| {
                std::path::Path::new(&t.directory)
                    .join(link)
                    .display()
                    .to_string()
            })
            .collect(),
        Target::WindowsStore(_) => Vec::new(),
    }
}
