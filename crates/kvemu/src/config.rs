//! Emulator configuration: listeners, identities, token lifetime, paging,
//! throttling and the seed of the reproducible random source.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the identity endpoint authenticates token requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentityMode {
    /// Azure VM IMDS: `Metadata: true`, api-version 2018-02-01 (and later dates).
    #[default]
    Imds,
    /// Azure Arc agent: a first request gets `401` with `WWW-Authenticate: Basic
    /// realm=<key file>`, the retry carries `Authorization: Basic <file content>`;
    /// api-version 2019-11-01.
    Arc,
}

/// Key Vault's request limits (defined with the throttle, which the fleet simulation
/// compiles unchanged).
pub use crate::throttle::ThrottleConfig;

/// Everything an [`crate::Emulator`] is started with.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTPS listener for every vault host (port 0: any free port).
    pub vault_listen: SocketAddr,
    /// Plain-HTTP listener of the identity endpoint (port 0: any free port).
    pub identity_listen: SocketAddr,
    /// Where the CA file (and Arc key files) go; `None`: a fresh temporary
    /// directory, removed at shutdown.
    pub state_dir: Option<PathBuf>,
    /// Client ids of user-assigned identities (the system-assigned one always exists).
    pub identities: Vec<String>,
    /// Lifetime of issued tokens (IMDS: about 24 h; tests use seconds).
    pub token_lifetime: Duration,
    /// Default page size of list operations (the service's is 25; `maxresults` overrides).
    pub page_size: usize,
    pub throttle: ThrottleConfig,
    /// Seed of the PRNG behind versions, request ids and fault probabilities.
    pub seed: u64,
    pub identity_mode: IdentityMode,
    /// Tenant named in the `authorization` parameter of the bearer challenge.
    pub tenant_id: String,
    /// Value of `x-ms-keyvault-region`.
    pub region: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            vault_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            identity_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            identities: Vec::new(),
            token_lifetime: Duration::from_secs(24 * 3600),
            page_size: 25,
            throttle: ThrottleConfig::default(),
            seed: 0x006b_7665_6d75,
            identity_mode: IdentityMode::Imds,
            tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".to_string(),
            region: "westus".to_string(),
        }
    }
}
