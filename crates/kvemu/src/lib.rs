//! Azure Key Vault + managed-identity emulator for akvsync's tests, demo and
//! benchmarks (SPEC §9).
//!
//! It serves the Key Vault secrets and certificates APIs over HTTPS on
//! loopback (a CA generated at start; every `<vault>.vault.azure.net`-style
//! host, selected by Host header or SNI) and a managed-identity token endpoint
//! on plain HTTP (IMDS or Azure Arc style), with per-vault throttling, request
//! counters and scriptable faults.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kvemu::Error> {
//! let emu = kvemu::Emulator::start(kvemu::Config::default()).await?;
//! emu.set_secret("myvault", "s1", "hello", None);
//! println!("{} {} {}", emu.vault_addr(), emu.identity_endpoint(), emu.ca_file().display());
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

mod api_shared;
mod api_version;
mod auth;
mod certificates_api;
mod certparse;
mod config;
mod conn;
mod control;
mod counters;
mod deleted_api;
mod faults;
mod identity;
mod ids;
mod ops;
mod pfx;
mod respond;
pub mod seed;
mod state;
mod store;
mod throttle;
mod tls;
mod vault_api;
mod vault_host;

pub use api_version::accepted as api_version_accepted;
pub use auth::Identity;
pub use certificates_api::{CT_PEM, CT_PKCS12, Imported};
pub use config::{Config, IdentityMode, ThrottleConfig};
pub use counters::Counters;
pub use faults::{Fault, FaultKind, FaultTarget, Trigger};
pub use pfx::PfxForm;
pub use vault_host::SUFFIXES;

use serde_json::{Map, Value, json};
use state::{Shared, lock};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long a connection may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of starting the emulator or of its library operations.
#[derive(Debug)]
pub enum Error {
    Io(std::io::Error),
    Tls(String),
    /// A request the vault refused (status, Key Vault error code, message).
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    Seed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Tls(e) => write!(f, "TLS setup failed: {e}"),
            Error::Rejected {
                status,
                code,
                message,
            } => write!(f, "{status} {code}: {message}"),
            Error::Seed(e) => write!(f, "seeding failed: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<respond::Reply> for Error {
    fn from(r: respond::Reply) -> Self {
        let err = r.body.as_ref().and_then(|b| b.get("error"));
        let field = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Error::Rejected {
            status: r.status.as_u16(),
            code: field("code"),
            message: field("message"),
        }
    }
}

/// A secret version as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// `https://<vault>.vault.azure.net/secrets/<name>/<version>`
    pub id: String,
    pub version: String,
}

/// Options of [`Emulator::set_secret_with`].
#[derive(Clone, Default)]
pub struct SecretSpec {
    pub value: String,
    pub content_type: Option<String>,
    /// `None`: enabled.
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub tags: Option<Map<String, Value>>,
}

impl fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSpec")
            .field("value", &"<redacted>")
            .field("content_type", &self.content_type)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A running emulator. Dropping it stops the listeners (without waiting).
pub struct Emulator {
    shared: Arc<Shared>,
    vault_addr: SocketAddr,
    identity_addr: SocketAddr,
    ca_pem: String,
    ca_file: PathBuf,
    state_dir: PathBuf,
    owns_state_dir: bool,
    handles: Vec<axum_server::Handle<SocketAddr>>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("vault_addr", &self.vault_addr)
            .field("identity_endpoint", &self.identity_endpoint())
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

fn temp_state_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "kvemu-{}-{}-{}",
        std::process::id(),
        ids::now_unix(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Emulator {
    /// Binds both listeners, generates the CA, writes `ca.pem` and starts serving.
    /// Must run inside a tokio runtime.
    pub async fn start(cfg: Config) -> Result<Emulator, Error> {
        let (state_dir, owns_state_dir) = match &cfg.state_dir {
            Some(d) => (d.clone(), false),
            None => (temp_state_dir(), true),
        };
        std::fs::create_dir_all(&state_dir)?;
        let state_dir = std::path::absolute(&state_dir)?;
        let server_tls = tls::generate()?;
        let ca_file = state_dir.join("ca.pem");
        write_atomically(&ca_file, server_tls.ca_pem.as_bytes())?;

        let shared = Arc::new(Shared::new(&cfg, state_dir.join("arc-tokens")));
        let vault_listener = std::net::TcpListener::bind(cfg.vault_listen)?;
        let identity_listener = std::net::TcpListener::bind(cfg.identity_listen)?;
        let vault_addr = vault_listener.local_addr()?;
        let identity_addr = identity_listener.local_addr()?;

        let vault_app = axum::Router::new()
            .fallback(vault_api::handle)
            .with_state(shared.clone());
        let identity_app = axum::Router::new()
            .route(identity::TOKEN_PATH, axum::routing::get(identity::token))
            .merge(control::routes())
            .with_state(shared.clone());

        let vh = axum_server::Handle::new();
        let ih = axum_server::Handle::new();
        let rustls = axum_server::tls_rustls::RustlsConfig::from_config(server_tls.config);
        let mut vault_server = axum_server::tls_rustls::from_tcp_rustls(vault_listener, rustls)?
            .map(|a| a.acceptor(conn::ResetAcceptor))
            .handle(vh.clone());
        let mut identity_server = axum_server::from_tcp(identity_listener)?
            .acceptor(conn::ResetAcceptor)
            .handle(ih.clone());
        // A client that never finishes its request head is dropped after this
        // long (the service's own front end is stricter; tests never need more).
        vault_server
            .http_builder()
            .http1()
            .header_read_timeout(Some(HEADER_READ_TIMEOUT));
        identity_server
            .http_builder()
            .http1()
            .header_read_timeout(Some(HEADER_READ_TIMEOUT));
        let tasks = vec![
            tokio::spawn(vault_server.serve(vault_app.into_make_service())),
            tokio::spawn(identity_server.serve(identity_app.into_make_service())),
        ];
        for h in [&vh, &ih] {
            if h.listening().await.is_none() {
                return Err(Error::Io(std::io::Error::other("listener failed to start")));
            }
        }
        Ok(Emulator {
            shared,
            vault_addr,
            identity_addr,
            ca_pem: server_tls.ca_pem,
            ca_file,
            state_dir,
            owns_state_dir,
            handles: vec![vh, ih],
            tasks,
        })
    }

    /// The ip:port serving every vault host (connect here, keep the real host for TLS).
    pub fn vault_addr(&self) -> SocketAddr {
        self.vault_addr
    }

    pub fn identity_addr(&self) -> SocketAddr {
        self.identity_addr
    }

    /// `http://127.0.0.1:<port>/metadata/identity/oauth2/token`
    pub fn identity_endpoint(&self) -> String {
        format!("http://{}{}", self.identity_addr, identity::TOKEN_PATH)
    }

    /// `http://127.0.0.1:<port>/kvemu`: the control endpoint (counters, faults,
    /// secrets, rotation, identities, settings) for other processes.
    pub fn control_endpoint(&self) -> String {
        format!("http://{}{}", self.identity_addr, control::PREFIX)
    }

    /// `http://127.0.0.1:<port>`: the value for `AZURE_POD_IDENTITY_AUTHORITY_HOST`.
    pub fn identity_authority(&self) -> String {
        format!("http://{}", self.identity_addr)
    }

    /// The CA to trust (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Absolute path of the CA file.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Where Arc challenge key files are written.
    pub fn arc_token_dir(&self) -> &Path {
        &self.shared.arc_dir
    }

    /// `https://<vault>.vault.azure.net:<port>` (resolve the host to [`Self::vault_addr`]).
    pub fn vault_url(&self, vault: &str) -> String {
        format!(
            "https://{}.vault.azure.net:{}",
            vault.to_ascii_lowercase(),
            self.vault_addr.port()
        )
    }

    /// `endpoints.json` content (SPEC §9/§10).
    pub fn endpoints_json(&self) -> Value {
        json!({
            "vault_addr": self.vault_addr.to_string(),
            "identity_endpoint": self.identity_endpoint(),
            "ca_file": self.ca_file.display().to_string(),
            "arc_token_dir": self.shared.arc_dir.display().to_string(),
            "control_endpoint": self.control_endpoint(),
            "system_identity": self.system_identity().client_id,
        })
    }

    /// Writes `dir/endpoints.json` by rename.
    pub fn write_endpoints(&self, dir: &Path) -> Result<PathBuf, Error> {
        let path = dir.join("endpoints.json");
        let text = serde_json::to_string_pretty(&self.endpoints_json()).expect("json");
        write_atomically(&path, text.as_bytes())?;
        Ok(path)
    }

    /// Sets a secret (new version); panics on an invalid vault or secret name.
    pub fn set_secret(
        &self,
        vault: &str,
        name: &str,
        value: &str,
        content_type: Option<&str>,
    ) -> SecretRef {
        self.set_secret_with(
            vault,
            name,
            SecretSpec {
                value: value.to_string(),
                content_type: content_type.map(str::to_string),
                ..Default::default()
            },
        )
        .expect("valid vault and secret names")
    }

    /// Sets a secret with attributes and tags.
    pub fn set_secret_with(
        &self,
        vault: &str,
        name: &str,
        spec: SecretSpec,
    ) -> Result<SecretRef, Error> {
        ops::set_secret_with(&self.shared, vault, name, spec)
    }

    /// Enables or disables a secret version (`None`: the latest).
    pub fn set_secret_enabled(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        enabled: bool,
    ) -> bool {
        let mut st = lock(&self.shared.store);
        let Some(e) = st.vault(vault).secrets.get_mut(&name.to_ascii_lowercase()) else {
            return false;
        };
        let v = match version {
            None => e.versions.last_mut(),
            Some(ver) => e
                .versions
                .iter_mut()
                .find(|s| s.version.eq_ignore_ascii_case(ver)),
        };
        match v {
            Some(s) => {
                s.enabled = enabled;
                s.updated = ids::now_unix();
                true
            }
            None => false,
        }
    }

    /// Deletes a secret (all versions); false if absent.
    pub fn delete_secret(&self, vault: &str, name: &str) -> bool {
        lock(&self.shared.store)
            .vault(vault)
            .secrets
            .remove(&name.to_ascii_lowercase())
            .is_some()
    }

    /// Versions of a secret, oldest first.
    pub fn secret_versions(&self, vault: &str, name: &str) -> Vec<String> {
        lock(&self.shared.store)
            .vault(vault)
            .secrets
            .get(&name.to_ascii_lowercase())
            .map(|e| e.versions.iter().map(|v| v.version.clone()).collect())
            .unwrap_or_default()
    }

    /// The values of every version of a secret, oldest first (tests scan outputs for them).
    pub fn secret_values(&self, vault: &str, name: &str) -> Vec<String> {
        lock(&self.shared.store)
            .vault(vault)
            .secrets
            .get(&name.to_ascii_lowercase())
            .map(|e| e.versions.iter().map(|v| v.value.clone()).collect())
            .unwrap_or_default()
    }

    /// Imports a certificate through the same code as `POST /certificates/{name}/import`;
    /// `body` is that request's JSON (`value`, `pwd`, `policy`, `attributes`, `tags`).
    pub fn import_certificate_json(
        &self,
        vault: &str,
        name: &str,
        body: &Value,
    ) -> Result<Imported, Error> {
        ops::import_certificate_json(&self.shared, vault, name, body)
    }

    /// Imports PEM text (key and certificates, any order), served as `content_type`.
    pub fn import_pem(
        &self,
        vault: &str,
        name: &str,
        pem: &str,
        content_type: &str,
    ) -> Result<Imported, Error> {
        ops::import_pem(&self.shared, vault, name, pem, content_type)
    }

    /// Imports a PFX (DER) with an optional password, served as `content_type`.
    pub fn import_pfx(
        &self,
        vault: &str,
        name: &str,
        pfx_der: &[u8],
        password: Option<&str>,
        content_type: &str,
    ) -> Result<Imported, Error> {
        ops::import_pfx(&self.shared, vault, name, pfx_der, password, content_type)
    }

    /// The test PKI (root → intermediate) used by seeding and rotation.
    pub fn test_pki(&self) -> Result<&seed::TestPki, Error> {
        ops::test_pki(&self.shared)
    }

    /// Imports the certificates of [`seed::SEEDED`] into `vault`.
    pub fn seed(&self, vault: &str) -> Result<Vec<Imported>, Error> {
        ops::seed(&self.shared, vault)
    }

    /// Imports a freshly issued certificate as a new version of `name`, of the
    /// same key type and served content type as its current version (RSA-2048
    /// PEM if it does not exist yet).
    pub fn rotate_certificate(&self, vault: &str, name: &str) -> Result<Imported, Error> {
        ops::rotate_certificate(&self.shared, vault, name)
    }

    /// Scripts a fault.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).add(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Scripted faults not yet used up.
    pub fn pending_faults(&self) -> usize {
        lock(&self.shared.faults).pending()
    }

    /// A snapshot of the request counters.
    pub fn counters(&self) -> Counters {
        lock(&self.shared.counters).clone()
    }

    pub fn reset_counters(&self) {
        *lock(&self.shared.counters) = Counters::default();
    }

    /// Adds a user-assigned identity (idempotent).
    pub fn add_identity(&self, client_id: &str) -> Identity {
        let mut rng = lock(&self.shared.rng);
        lock(&self.shared.auth).add(&mut rng, client_id)
    }

    pub fn identities(&self) -> Vec<Identity> {
        lock(&self.shared.auth).identities().to_vec()
    }

    pub fn system_identity(&self) -> Identity {
        lock(&self.shared.auth).system().clone()
    }

    /// Refuses `client_id` on `vault` with 403 `Forbidden`.
    pub fn deny_identity(&self, vault: &str, client_id: &str) {
        lock(&self.shared.store)
            .vault(vault)
            .denied
            .insert(client_id.to_ascii_lowercase());
    }

    pub fn allow_identity(&self, vault: &str, client_id: &str) {
        lock(&self.shared.store)
            .vault(vault)
            .denied
            .remove(&client_id.to_ascii_lowercase());
    }

    /// Issues a token directly (as the identity endpoint would), for tests.
    pub fn issue_token(&self, client_id: &str, resource: &str) -> Option<String> {
        let lifetime = self.shared.token_lifetime_secs.load(Ordering::Relaxed) as i64;
        let mut auth = lock(&self.shared.auth);
        let id = auth.by_client_id(client_id)?.clone();
        Some(auth.issue(
            &id,
            &self.shared.tenant_id,
            resource,
            ids::now_unix(),
            lifetime,
        ))
    }

    /// Every bearer token the emulator has issued and still accepts or remembers (up to
    /// its bound of 100,000), for tests that scan outputs for leaked tokens.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.shared.auth).issued()
    }

    pub fn set_token_lifetime(&self, d: Duration) {
        self.shared
            .token_lifetime_secs
            .store(d.as_secs().max(1), Ordering::Relaxed);
    }

    /// Default page size of list operations (1–25).
    pub fn set_page_size(&self, n: usize) {
        self.shared
            .page_size
            .store(n.clamp(1, 25), Ordering::Relaxed);
    }

    pub fn set_throttle(&self, t: ThrottleConfig) {
        lock(&self.shared.throttle).set_config(t);
    }

    pub fn set_identity_mode(&self, mode: IdentityMode) {
        *lock(&self.shared.identity_mode) = mode;
    }

    /// Stops both listeners, releases hung requests, waits for the servers and
    /// removes a temporary state directory.
    pub async fn shutdown(mut self) {
        self.stop();
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        if self.owns_state_dir {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }

    fn stop(&self) {
        let _ = self.shared.shutdown.send(true);
        for h in &self.handles {
            h.shutdown();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
        if self.owns_state_dir && self.tasks.is_empty() {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}

/// Writes a file via a temporary name and rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// A synchronous wrapper owning its own runtime, for tests without `#[tokio::test]`.
#[derive(Debug)]
pub struct BlockingEmulator {
    rt: tokio::runtime::Runtime,
    emu: Option<Emulator>,
}

impl BlockingEmulator {
    pub fn start(cfg: Config) -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let emu = rt.block_on(Emulator::start(cfg))?;
        Ok(BlockingEmulator { rt, emu: Some(emu) })
    }

    pub fn shutdown(mut self) {
        if let Some(e) = self.emu.take() {
            self.rt.block_on(e.shutdown());
        }
    }
}

impl std::ops::Deref for BlockingEmulator {
    type Target = Emulator;
    fn deref(&self) -> &Emulator {
        self.emu.as_ref().expect("running")
    }
}
