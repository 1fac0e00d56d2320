//! The normalized, typed settings model that the rest of akvsync uses. Every schema
//! variant of the Microsoft extensions is reduced to this one shape; nothing outside
//! `settings` ever looks at raw JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::vault_url::SecretUrl;

/// The platform whose semantics the settings are read with: store locations are Windows
/// system stores on one and directories on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Windows,
    Linux,
}

impl Platform {
    /// The platform akvsync is running on.
    pub fn current() -> Self {
        if cfg!(windows) {
            Platform::Windows
        } else {
            Platform::Linux
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Platform::Windows => "windows",
            Platform::Linux => "linux",
        }
    }
}

/// Which of the input forms of SPEC §1.1 the settings came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SettingsForm {
    /// The Azure runtime settings file (`<n>.settings`), publicSettings inside.
    RuntimeSettings,
    /// The public settings object alone, as given to `az vm extension set --settings`.
    PublicSettings,
}

/// Polling interval when the settings give none (the Microsoft default).
pub const DEFAULT_POLLING_INTERVAL_S: u64 = 3600;
/// Lowest polling interval without the testing override: protects the vault's throttle budget.
pub const MIN_POLLING_INTERVAL_S: u64 = 60;
/// Highest polling interval accepted: a year, far beyond any certificate's renewal window.
pub const MAX_POLLING_INTERVAL_S: u64 = 365 * 24 * 3600;
/// The Azure instance metadata service's managed-identity token endpoint.
pub const DEFAULT_MSI_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// Store directory of KeyVaultForLinux when the settings name none.
pub const DEFAULT_LINUX_STORE: &str = "/var/lib/waagent/Microsoft.Azure.KeyVault.Store";
/// Versions kept per certificate by default: the current and the previous one (SPEC §10).
pub const DEFAULT_RETAIN_VERSIONS: u32 = 2;

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub platform: Platform,
    /// `None` when the settings file was empty (the agent's `0.settings` before any settings).
    pub form: Option<SettingsForm>,
    /// Effective polling interval, after the floor was applied.
    pub polling_interval_s: u64,
    pub require_initial_sync: bool,
    /// Windows only; always false on Linux.
    pub link_on_renewal: bool,
    pub identity: IdentitySettings,
    pub certificates: Vec<ObservedCertificate>,
    pub akvsync: AkvsyncSettings,
}

impl Settings {
    /// Every directory the agent writes in for these settings (Linux store directories,
    /// output directories, the metrics textfile's directory), sorted and without repeats:
    /// what a sandbox such as systemd's `ProtectSystem=strict` must leave writable (issue
    /// 16, finding 10) and what the service account must own.
    pub fn written_directories(&self) -> Vec<String> {
        let mut dirs: Vec<String> = self
            .certificates
            .iter()
            .filter_map(|c| match &c.target {
                Target::LinuxDirectory(t) => Some(t.directory.clone()),
                Target::WindowsStore(_) => None,
            })
            .collect();
        // An output set without a directory writes in each certificate's store directory,
        // already listed.
        dirs.extend(
            self.akvsync
                .outputs
                .iter()
                .filter_map(|set| set.directory.clone()),
        );
        if let Some(parent) = self
            .akvsync
            .metrics
            .textfile
            .as_deref()
            .and_then(|f| std::path::Path::new(f).parent())
        {
            dirs.push(parent.display().to_string());
        }
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// The chain validation in force: the settings' choice, else `serverAuth` on Windows
    /// (KeyVaultForWindows 4.0) and `off` on Linux (KeyVaultForLinux does not validate).
    pub fn chain_validation(&self) -> ChainValidation {
        self.akvsync
            .chain_validation
            .unwrap_or(match self.platform {
                Platform::Windows => ChainValidation::ServerAuth,
                Platform::Linux => ChainValidation::Off,
            })
    }

    /// Settings that observe nothing, as an empty settings file means.
    pub fn empty(platform: Platform, form: Option<SettingsForm>) -> Self {
        Settings {
            platform,
            form,
            polling_interval_s: DEFAULT_POLLING_INTERVAL_S,
            require_initial_sync: false,
            link_on_renewal: false,
            identity: IdentitySettings::default(),
            certificates: Vec::new(),
            akvsync: AkvsyncSettings::default(),
        }
    }
}

/// How akvsync obtains tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySettings {
    /// Full token URL (`…/metadata/identity/oauth2/token`), normalised from either form.
    pub endpoint: String,
    /// The user-assigned identity to ask for; `None` means the system-assigned one.
    pub user_assigned: Option<UserAssignedIdentity>,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            endpoint: DEFAULT_MSI_ENDPOINT.to_owned(),
            user_assigned: None,
        }
    }
}

/// A user-assigned managed identity, as `msiClientId` names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UserAssignedIdentity {
    /// A client ID (GUID), sent as `client_id`.
    ClientId(String),
    /// An Azure resource ID of the identity, sent as `msi_res_id`.
    ResourceId(String),
}

impl UserAssignedIdentity {
    /// The identity endpoint's query parameter name and value.
    pub fn query_parameter(&self) -> (&'static str, &str) {
        match self {
            UserAssignedIdentity::ClientId(id) => ("client_id", id),
            UserAssignedIdentity::ResourceId(id) => ("msi_res_id", id),
        }
    }
}

/// One observed certificate and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedCertificate {
    /// Position in `observedCertificates`, for messages.
    pub index: usize,
    /// The URL as the settings wrote it.
    pub url: String,
    /// `<vault>.<suffix>`, lowercase: the only host a token for this certificate goes to.
    pub vault_host: String,
    #[serde(flatten)]
    pub secret: SecretUrl,
    pub target: Target,
}

/// Where a certificate is installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Target {
    WindowsStore(WindowsTarget),
    LinuxDirectory(LinuxTarget),
}

/// A Windows system certificate store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsTarget {
    pub store_location: StoreLocation,
    /// System store name (`MY`, `TrustedPeople`, `WebHosting`, custom).
    pub store_name: String,
    /// Accounts given read access to the private key.
    pub accounts: Vec<String>,
    pub key_exportable: bool,
}

/// `certificateStoreLocation` on Windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StoreLocation {
    LocalMachine,
    CurrentUser,
}

impl StoreLocation {
    pub fn name(self) -> &'static str {
        match self {
            StoreLocation::LocalMachine => "LocalMachine",
            StoreLocation::CurrentUser => "CurrentUser",
        }
    }
}

/// A KeyVaultForLinux-compatible directory store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinuxTarget {
    /// Absolute, lexically normalised directory.
    pub directory: String,
    /// The stable link `<vault>.<secret>`.
    pub link_name: String,
    /// `customSymbolicLinkName`, a second link to the same version.
    pub custom_link_name: Option<String>,
    /// Read access for users/groups (empty unless `aclEnabled`).
    pub acls: Vec<AclEntry>,
}

/// One `acls` entry: a user, a group, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AclEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// akvsync's own settings, under the top-level `akvsync` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AkvsyncSettings {
    /// Versions kept per certificate, the current one included.
    pub retain_versions: u32,
    /// With `requireInitialSync`, give up after this many attempts (`None`: never).
    pub initial_sync_max_attempts: Option<u32>,
    /// `initialSyncSpreadInS`: the service's first round starts after a random delay of
    /// 0..=this many seconds (0: at once), so that a scale set booting together does not
    /// reach its vault in one burst.
    pub initial_sync_spread_s: u64,
    /// Commands run after a new version is installed.
    pub hooks: Vec<Hook>,
    /// Warn this many days before a certificate expires; 0: only once it has expired.
    pub expiry_warning_days: u32,
    /// Prometheus metrics (`akvsync.metrics`); off unless given.
    pub metrics: MetricsSettings,
    /// Files in the forms applications read (`akvsync.outputs`), besides the store.
    pub outputs: Vec<OutputSet>,
    /// `akvsync.chainValidation`; `None`: the platform's default ([`Settings::chain_validation`]).
    pub chain_validation: Option<ChainValidation>,
    /// `akvsync.windows`: what happens around a Windows install.
    pub windows: WindowsOptions,
    pub testing: TestingOverrides,
}

/// One `akvsync.outputs[]` entry: files written for each certificate it applies to, as one
/// set that switches to a new version atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputSet {
    /// `<vault>/<secret>` names (lowercase) it applies to; empty: every certificate.
    pub certificates: Vec<String>,
    /// The same names, for constant-time matching (a cold sync asks for every certificate).
    #[serde(skip)]
    pub certificate_set: std::collections::HashSet<String>,
    /// Absolute directory; `None`: the certificate's store directory (Linux).
    pub directory: Option<String>,
    /// File name templates by kind (`{vault}`, `{secret}`), in the order of [`OutputKind::ALL`].
    pub files: Vec<(OutputKind, String)>,
    pub pfx_password: Option<PfxPassword>,
    /// Account and group names (or numeric ids) owning the files (Linux).
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Permission bits of the files.
    pub mode: u32,
    /// Accounts given read access (Windows).
    pub accounts: Vec<String>,
}

impl OutputSet {
    /// Whether it applies to the certificate named `<vault>/<secret>` (lowercase).
    pub fn applies_to(&self, name: &str) -> bool {
        self.certificates.is_empty() || self.certificate_set.contains(name)
    }

    /// Whether any of its files holds the private key.
    pub fn holds_key(&self) -> bool {
        self.files.iter().any(|(kind, _)| kind.holds_key())
    }
}

/// What one output file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OutputKind {
    /// The leaf certificate (PEM).
    Cert,
    /// The intermediates, never the root (PEM).
    Chain,
    /// Leaf and intermediates (PEM).
    Fullchain,
    /// The private key, PKCS#8 PEM, unencrypted.
    Key,
    /// Leaf, intermediates and key (PEM); no root.
    Pem,
    /// PKCS#12 with leaf, intermediates and key.
    Pfx,
}

impl OutputKind {
    pub const ALL: [OutputKind; 6] = [
        OutputKind::Cert,
        OutputKind::Chain,
        OutputKind::Fullchain,
        OutputKind::Key,
        OutputKind::Pem,
        OutputKind::Pfx,
    ];

    /// The name used in the settings' `files` object.
    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Cert => "cert",
            OutputKind::Chain => "chain",
            OutputKind::Fullchain => "fullchain",
            OutputKind::Key => "key",
            OutputKind::Pem => "pem",
            OutputKind::Pfx => "pfx",
        }
    }

    pub fn holds_key(self) -> bool {
        matches!(self, OutputKind::Key | OutputKind::Pem | OutputKind::Pfx)
    }
}

/// Where a PFX output's password comes from; never logged, never in status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PfxPassword {
    /// The first line of this file (which no other account may read).
    File(String),
    /// A Key Vault secret, fetched with the certificates' identity.
    Secret(SecretUrl),
}

/// Default of `expiryWarningDays`.
pub const DEFAULT_EXPIRY_WARNING_DAYS: u32 = 30;
/// Upper bound of `expiryWarningDays`: ten years.
pub const MAX_EXPIRY_WARNING_DAYS: u32 = 3650;
/// Upper bound of `initialSyncSpreadInS`: an hour, the default polling interval (a longer
/// spread delays a machine's first certificate more than waiting for a poll would).
pub const MAX_INITIAL_SYNC_SPREAD_S: u64 = 3600;

/// `akvsync.metrics`: where the Prometheus text exposition goes. Both off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSettings {
    /// A loopback address and port for `GET /metrics`.
    pub listen: Option<std::net::SocketAddr>,
    /// An absolute path rewritten after every sync round (node_exporter's textfile collector).
    pub textfile: Option<String>,
}

impl MetricsSettings {
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || self.textfile.is_some()
    }
}

/// Which certificates have their chain validated before they are installed (issue 15, the
/// rule of KeyVaultForWindows 4.0): a failure keeps the previous version and names the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ChainValidation {
    /// Certificates with the TLS Server Authentication EKU (1.3.6.1.5.5.7.3.1).
    ServerAuth,
    /// Every certificate.
    All,
    Off,
}

/// `akvsync.windows`: the renewal's reach beyond the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsOptions {
    /// Raise the certificate lifecycle *replace* notification (event 1001) when a version
    /// replaces an older certificate with a DNS name in common (default on, as in 4.0).
    pub lifecycle_notifications: bool,
    /// Re-point HTTP.sys SSL bindings of a replaced certificate at the new one.
    pub update_http_sys_bindings: bool,
}

impl Default for WindowsOptions {
    fn default() -> Self {
        WindowsOptions {
            lifecycle_notifications: true,
            update_http_sys_bindings: false,
        }
    }
}

/// A post-install hook (`akvsync.hooks[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    /// The program and its arguments (no shell unless the settings gave a string); empty
    /// for a `restartService` hook.
    pub command: Vec<String>,
    /// `restartService` (Windows): the service restarted through the service control
    /// manager.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_service: Option<String>,
    /// Where it came from (`command`, `reloadUnit`, `restartUnit`, `restartService`), for
    /// the platform check.
    #[serde(skip)]
    pub kind: &'static str,
    /// `<vault>/<secret>` names it runs for; empty: every certificate.
    pub certificates: Vec<String>,
    /// The same names, for constant-time matching.
    #[serde(skip)]
    pub certificate_set: std::collections::HashSet<String>,
    pub timeout_s: u64,
}

impl Hook {
    /// Whether it runs for the certificate named `<vault>/<secret>` (lowercase).
    pub fn applies_to(&self, name: &str) -> bool {
        self.certificates.is_empty() || self.certificate_set.contains(name)
    }
}

/// Default hook timeout: long enough for a service reload, short enough that a hung
/// hook cannot hold a certificate's task for long.
pub const DEFAULT_HOOK_TIMEOUT_S: u64 = 60;

impl Default for AkvsyncSettings {
    fn default() -> Self {
        AkvsyncSettings {
            retain_versions: DEFAULT_RETAIN_VERSIONS,
            initial_sync_max_attempts: None,
            initial_sync_spread_s: 0,
            hooks: Vec::new(),
            expiry_warning_days: DEFAULT_EXPIRY_WARNING_DAYS,
            metrics: MetricsSettings::default(),
            outputs: Vec::new(),
            chain_validation: None,
            windows: WindowsOptions::default(),
            testing: TestingOverrides::default(),
        }
    }
}

/// Overrides for tests, the demo and emulator runs (SPEC §1.2). None has a default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestingOverrides {
    /// A CA trusted in addition to the system roots.
    pub ca_file: Option<String>,
    /// Vault host → `host:port` to connect to; TLS and validation still use the vault host.
    pub connect_to: BTreeMap<String, String>,
    pub min_polling_interval_s: Option<u64>,
    pub windows_import_compat: bool,
}

#[cfg(test)]
mod tests {
    #[test]
    fn written_directories_cover_every_store_and_the_textfile() {
        let json = serde_json::json!({
            "secretsManagementSettings": {
                "certificateStoreLocation": "/var/lib/certs",
                "observedCertificates": [
                    "https://kvtest.vault.azure.net/secrets/a",
                    {"url": "https://kvtest.vault.azure.net/secrets/b", "certificateStoreLocation": "/etc/ssl/b"},
                    {"url": "https://kvtest.vault.azure.net/secrets/c", "certificateStoreLocation": "/var/lib/certs"},
                ],
            },
            "akvsync": {"metrics": {"textfile": "/var/lib/node_exporter/textfile/akvsync.prom"}},
        });
        let settings =
            super::super::parse_bytes(json.to_string().as_bytes(), super::Platform::Linux)
                .unwrap()
                .settings;
        assert_eq!(
            settings.written_directories(),
            [
                "/etc/ssl/b",
                "/var/lib/certs",
                "/var/lib/node_exporter/textfile"
            ]
        );
    }
}
