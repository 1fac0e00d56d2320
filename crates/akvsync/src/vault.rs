//! The Key Vault client (SPEC §3): the only code that sends a bearer token, and only to
//! a host that passed settings validation, over TLS 1.2+, with redirects refused.
//!
//! `GET https://<vault>/secrets/<name>[/<version>]?api-version=7.4` with a token for the
//! Key Vault resource of the vault's cloud (`https://vault.azure.net` for
//! `<name>.vault.azure.net`, …); a 401's challenge is accepted only when it names exactly
//! that resource (no user information, no port but 443, no path, query or fragment: stricter
//! than the official SDKs' rule of same scheme and port with the vault host under the
//! resource host), so that no challenge gets a token meant for another audience
//! ([`accept_challenge_resource`]), and the token is then renewed once; a 429/503 pushes
//! back every request to that vault (its `Retry-After`, or without one Key Vault's 10 s
//! window plus a backoff growing while the vault keeps refusing: `backoff::VaultPushBack`);
//! other transient errors are retried with backoff within one call; bodies are capped at
//! 1 MiB; `HTTPS_PROXY`/`NO_PROXY` apply to vault traffic only.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::backoff::{Backoff, Retry, ThrottlePushBack, VaultPushBack};
use crate::fnv::FnvMap;
use crate::http;
use crate::identity::{Credential, IdentityError};
use crate::settings::SecretUrl;
use crate::wipe::SecretBytes;

/// The data-plane API version: GA in every cloud, including the sovereign ones.
pub const API_VERSION: &str = "7.4";
/// Longest push-back a vault's `Retry-After` can impose; beyond it the next poll retries.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A secret as Key Vault returned it. The value is zeroed on drop and never printed.
pub struct SecretBundle {
    pub value: SecretValue,
    pub content_type: Option<String>,
    /// 32 lowercase hex digits, from the response's id (checked to name this secret).
    pub version: String,
    pub managed: bool,
    pub enabled: bool,
    pub not_before: Option<i64>,
    pub expires: Option<i64>,
}

impl std::fmt::Debug for SecretBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBundle")
            .field("version", &self.version)
            .field("content_type", &self.content_type)
            .field("value", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Why a secret could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "{host} answered {status} (throttled or unavailable){}",
        .retry_after.map(|d| format!("; Retry-After {} s", d.as_secs())).unwrap_or_default()
    )]
    Throttled {
        host: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("{host} answered {status} {code}: {message}")]
    Status {
        host: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{host} is unreachable: {}", http::error_chain(.source))]
    Transport {
        host: String,
        source: reqwest::Error,
    },
    #[error("{host} redirected to {location:?}; redirects are refused (no token follows them)")]
    Redirect { host: String, location: String },
    #[error("{host} sent an unacceptable authentication challenge: {reason}")]
    Challenge { host: String, reason: String },
    /// The body could not be read to its end (connection lost, timeout): transient.
    #[error("{host} gave an unusable response: {reason}")]
    BadResponse { host: String, reason: String },
    /// A body over the cap, or one that is not a secret of this vault: undecodable data,
    /// permanent within the poll (SPEC §10).
    #[error("{host} gave an unusable response: {reason}")]
    Undecodable { host: String, reason: String },
    #[error("no token for {host}: {source}")]
    Identity { host: String, source: IdentityError },
    #[error("cannot set up the HTTPS client: {0}")]
    Setup(String),
}

impl VaultError {
    /// Transient: connection, timeout, 408, 429, 5xx (SPEC §10). Everything else waits
    /// for the next poll.
    pub fn is_transient(&self) -> bool {
        match self {
            VaultError::Throttled { .. } | VaultError::Transport { .. } => true,
            VaultError::Status { status, .. } => *status == 408 || *status >= 500,
            VaultError::Identity { source, .. } => source.is_transient(),
            VaultError::BadResponse { .. } => true,
            VaultError::Redirect { .. }
            | VaultError::Challenge { .. }
            | VaultError::Undecodable { .. }
            | VaultError::Setup(_) => false,
        }
    }

    /// Whether `get_secret` retries this error itself. An identity failure is not: the
    /// credential has already retried the identity endpoint with its own backoff, and
    /// retrying here would multiply the two series of requests.
    fn retried_within_call(&self) -> bool {
        self.is_transient() && !matches!(self, VaultError::Identity { .. })
    }

    /// `Some(Retry-After)` for a 429/503 (`Some(None)`: without the header).
    fn throttled(&self) -> Option<Option<Duration>> {
        match self {
            VaultError::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// How the HTTPS client is built.
#[derive(Debug, Clone, Default)]
pub struct VaultOptions {
    /// Extra trusted CA certificates, PEM (the testing `caFile`).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Vault host → `host:port` to connect to (the testing `connectTo`).
    pub connect_to: BTreeMap<String, String>,
    pub backoff: Option<Backoff>,
    /// The push-back of a 429/503 without `Retry-After` (default
    /// [`ThrottlePushBack::KEY_VAULT`]; tests shorten it).
    pub throttle_push_back: Option<ThrottlePushBack>,
}

impl VaultOptions {
    /// The options the settings' testing overrides ask for (none in production).
    pub fn from_settings(settings: &crate::settings::Settings) -> Result<Self, String> {
        let testing = &settings.akvsync.testing;
        let extra_ca_pem = match &testing.ca_file {
            None => None,
            Some(path) => {
                let file =
                    std::fs::File::open(path).map_err(|e| format!("caFile {path:?}: {e}"))?;
                let mut pem = Vec::new();
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(file, http::MAX_BODY_BYTES as u64),
                    &mut pem,
                )
                .map_err(|e| format!("caFile {path:?}: {e}"))?;
                Some(pem)
            }
        };
        Ok(VaultOptions {
            extra_ca_pem,
            connect_to: testing.connect_to.clone(),
            backoff: None,
            throttle_push_back: None,
        })
    }
}

/// The production client for validated settings: the managed-identity credential of
/// `authenticationSettings` (Arc key files from the platform's Arc token directory) and the
/// testing overrides, if any.
pub fn client_for(settings: &crate::settings::Settings) -> Result<Arc<VaultClient>, String> {
    let credential = Credential::new(
        &settings.identity,
        crate::identity::default_arc_token_dir(),
        Backoff::IDENTITY,
    )
    .map_err(|e| e.to_string())?;
    let options = VaultOptions::from_settings(settings)?;
    let vault = VaultClient::new(Arc::new(credential), &options).map_err(|e| e.to_string())?;
    Ok(Arc::new(vault))
}

/// The secret's value: a range of the response body that holds it (the usual case: no
/// copy is made, and most polls never read it), or its unescaped copy when the JSON string
/// had escapes. Either is wiped on drop. Its bytes are read raw (a JSON string's content is
/// found with a vectorised search instead of being validated byte by byte: a third of an
/// unchanged poll's CPU), so [`SecretValue::text`] checks UTF-8 when the value is used.
pub enum SecretValue {
    InBody {
        body: SecretBytes,
        range: std::ops::Range<usize>,
    },
    Unescaped(Zeroizing<Vec<u8>>),
}

impl SecretValue {
    /// The value as text; an error names what is wrong with it.
    pub fn text(&self) -> Result<&str, String> {
        let bytes = match self {
            SecretValue::InBody { body, range } => &body[range.clone()],
            SecretValue::Unescaped(value) => value,
        };
        std::str::from_utf8(bytes).map_err(|e| {
            format!(
                "the secret's value is not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            )
        })
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Deserialize)]
struct SecretResponse<'a> {
    #[serde(borrow)]
    value: Option<InPlace<'a>>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    managed: bool,
    #[serde(default)]
    attributes: Attributes,
}

/// A JSON string's raw bytes, borrowed from the body when it has no escapes.
struct InPlace<'a>(Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for InPlace<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = InPlace<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(InPlace(Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(InPlace(Cow::Owned(v.to_owned())))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(InPlace(Cow::Owned(v)))
            }
        }
        // serde_json hands a string's bytes to `deserialize_bytes` without UTF-8 checks,
        // unescaped only when the string has escapes.
        deserializer.deserialize_bytes(Visitor(std::marker::PhantomData))
    }
}

#[derive(Deserialize, Default)]
struct Attributes {
    enabled: Option<bool>,
    nbf: Option<i64>,
    exp: Option<i64>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
}

/// The Key Vault client; one per process, shared by every certificate task.
#[derive(Debug)]
pub struct VaultClient {
    http: reqwest::Client,
    credential: Arc<Credential>,
    backoff: Backoff,
    throttle_push_back: ThrottlePushBack,
    /// Vault host → token resource learnt from its challenge.
    resources: std::sync::Mutex<FnvMap<String, String>>,
    /// Vault host → its push-back after 429/503 (instants since `epoch`).
    push_backs: std::sync::Mutex<FnvMap<String, VaultPushBack>>,
    epoch: Instant,
    /// Each secret's request URL, parsed once (a parse per request was ~5 % of a poll).
    urls: std::sync::Mutex<FnvMap<SecretUrl, reqwest::Url>>,
    requests: AtomicU64,
    /// 429/503 answers received (for metrics).
    throttled: AtomicU64,
}

impl VaultClient {
    pub fn new(credential: Arc<Credential>, options: &VaultOptions) -> Result<Self, VaultError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .min_tls_version(reqwest::tls::Version::TLS_1_2)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(http::CONNECT_TIMEOUT)
            .timeout(http::REQUEST_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90));
        if let Some(pem) = &options.extra_ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| VaultError::Setup(format!("caFile: {e}")))?;
            if certificates.is_empty() {
                return Err(VaultError::Setup("caFile holds no certificate".to_owned()));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        for (host, address) in &options.connect_to {
            let resolved = address
                .to_socket_addrs()
                .map_err(|e| VaultError::Setup(format!("connectTo {host}: {address}: {e}")))?
                .next()
                .ok_or_else(|| {
                    VaultError::Setup(format!("connectTo {host}: {address} resolves to nothing"))
                })?;
            builder = builder.resolve(host, resolved);
        }
        let http = builder
            .build()
            .map_err(|e| VaultError::Setup(e.to_string()))?;
        Ok(VaultClient {
            http,
            credential,
            backoff: options.backoff.unwrap_or(Backoff::VAULT),
            throttle_push_back: options
                .throttle_push_back
                .unwrap_or(ThrottlePushBack::KEY_VAULT),
            resources: std::sync::Mutex::new(FnvMap::default()),
            push_backs: std::sync::Mutex::new(FnvMap::default()),
            epoch: Instant::now(),
            urls: std::sync::Mutex::new(FnvMap::default()),
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        })
    }

    /// Requests sent to vaults so far (for tests and metrics).
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// 429/503 answers received so far, retried ones included (for metrics).
    pub fn throttled_count(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Requests sent to the managed-identity endpoint so far (for metrics).
    pub fn token_request_count(&self) -> u64 {
        self.credential.request_count()
    }

    /// The latest (or pinned) version of a secret, retrying transient errors.
    pub async fn get_secret(&self, secret: &SecretUrl) -> Result<SecretBundle, VaultError> {
        let host = secret.vault_host();
        let mut attempt = 1;
        loop {
            self.wait_for(&host).await;
            let sent = self.epoch.elapsed();
            let result = self.get_once(secret, &host).await;
            let throttled = result.as_ref().err().and_then(VaultError::throttled);
            if !matches!(result, Err(VaultError::Identity { .. })) {
                self.answered(&host, sent, throttled);
            }
            if let Err(error) = &result {
                // The decision is a pure function so that the fleet simulation runs it too.
                match self.backoff.after_failure(
                    attempt,
                    error.retried_within_call(),
                    throttled.is_some(),
                ) {
                    Retry::GiveUp => {}
                    Retry::Sleep => {
                        tokio::time::sleep(self.backoff.delay(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    Retry::AfterPushBack => {
                        attempt += 1;
                        continue;
                    }
                }
            }
            return result;
        }
    }

    async fn wait_for(&self, host: &str) {
        let until = self
            .push_backs
            .lock()
            .map(|m| m.get(host).map(|p| p.until))
            .unwrap_or(None);
        if let Some(until) = until.filter(|until| *until > self.epoch.elapsed()) {
            tokio::time::sleep_until(self.epoch + until).await;
        }
    }

    /// Records `host`'s answer to a request sent at `sent`: a 429/503 (`throttled`, with its
    /// `Retry-After` if any) pushes back every later request to the vault
    /// ([`VaultPushBack::throttled`]); any other answer ends a series of throttles.
    fn answered(&self, host: &str, sent: Duration, throttled: Option<Option<Duration>>) {
        let now = self.epoch.elapsed();
        if let Ok(mut map) = self.push_backs.lock() {
            // A vault that never throttled needs no entry (and its name no copy) per answer.
            let state = match (map.get_mut(host), throttled) {
                (Some(state), _) => state,
                (None, None) => return,
                (None, Some(_)) => map.entry(host.to_owned()).or_default(),
            };
            *state = match throttled {
                Some(retry_after) => {
                    state.throttled(sent, now, retry_after, &self.throttle_push_back)
                }
                None => state.answered(),
            };
        }
    }

    fn request_url(&self, secret: &SecretUrl) -> Result<reqwest::Url, VaultError> {
        let mut urls = self.urls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(url) = urls.get(secret) {
            return Ok(url.clone());
        }
        let text = format!("{}?api-version={API_VERSION}", secret.secret_url());
        let url =
            reqwest::Url::parse(&text).map_err(|e| VaultError::Setup(format!("{text}: {e}")))?;
        urls.insert(secret.clone(), url.clone());
        Ok(url)
    }

    fn resource_for(&self, secret: &SecretUrl, host: &str) -> String {
        self.resources
            .lock()
            .ok()
            .and_then(|m| m.get(host).cloned())
            .unwrap_or_else(|| secret.cloud.resource())
    }

    async fn get_once(&self, secret: &SecretUrl, host: &str) -> Result<SecretBundle, VaultError> {
        let url = self.request_url(secret)?;
        let mut resource = self.resource_for(secret, host);
        let mut refreshed = false;
        loop {
            let token =
                self.credential
                    .token(&resource)
                    .await
                    .map_err(|source| VaultError::Identity {
                        host: host.to_owned(),
                        source,
                    })?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let response = self
                .http
                .get(url.clone())
                .bearer_auth(token.secret())
                .send()
                .await
                .map_err(|source| VaultError::Transport {
                    host: host.to_owned(),
                    source: source.without_url(),
                })?;
            if response.status() != StatusCode::UNAUTHORIZED || refreshed {
                return self.handle(response, secret, host).await;
            }
            // 401: learn the resource from the challenge, or refresh a rejected token, once.
            let challenged = challenge_resource(&response, host)?;
            if challenged != resource {
                if let Ok(mut map) = self.resources.lock() {
                    map.insert(host.to_owned(), challenged.clone());
                }
                resource = challenged;
            } else {
                self.credential.invalidate(&resource).await;
            }
            refreshed = true;
        }
    }

    async fn handle(
        &self,
        response: reqwest::Response,
        secret: &SecretUrl,
        host: &str,
    ) -> Result<SecretBundle, VaultError> {
        let status = response.status();
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if status.is_redirection() {
            let location = header(reqwest::header::LOCATION).unwrap_or_default();
            return Err(VaultError::Redirect {
                host: host.to_owned(),
                location,
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            let retry_after = header(reqwest::header::RETRY_AFTER)
                .and_then(|v| crate::backoff::parse_retry_after(&v, MAX_RETRY_AFTER));
            return Err(VaultError::Throttled {
                host: host.to_owned(),
                status: status.as_u16(),
                retry_after,
            });
        }
        let bad = |reason: String| VaultError::Undecodable {
            host: host.to_owned(),
            reason,
        };
        let body = http::read_capped(response, http::MAX_BODY_BYTES)
            .await
            .map_err(|e| match e {
                http::BodyError::TooLarge(_) => bad(e.to_string()),
                http::BodyError::Transport(_) => VaultError::BadResponse {
                    host: host.to_owned(),
                    reason: e.to_string(),
                },
            })?;
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ErrorResponse>(&body) {
                Ok(ErrorResponse { error }) => (
                    error.code.unwrap_or_default(),
                    error.message.unwrap_or_default(),
                ),
                Err(_) => (
                    String::new(),
                    status.canonical_reason().unwrap_or("error").to_owned(),
                ),
            };
            return Err(VaultError::Status {
                host: host.to_owned(),
                status: status.as_u16(),
                code,
                message,
            });
        }
        parse_secret_response_from(body, secret, host).map_err(bad)
    }
}

/// Parses a 200 response of `GET /secrets/…` for `secret` (untrusted input: the id must be
/// this vault's secret of this name, and the pinned version if one was asked for).
pub fn parse_secret_response(
    body: SecretBytes,
    secret: &SecretUrl,
) -> Result<SecretBundle, String> {
    parse_secret_response_from(body, secret, &secret.vault_host())
}

/// [`parse_secret_response`] for a response from `host` (the secret's vault host).
fn parse_secret_response_from(
    body: SecretBytes,
    secret: &SecretUrl,
    host: &str,
) -> Result<SecretBundle, String> {
    let parsed: SecretResponse = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "not a secret (JSON error at line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let version = version_from_id(&parsed.id, secret, host)?;
    let value = match parsed
        .value
        .ok_or_else(|| "the secret has no value".to_owned())?
        .0
    {
        Cow::Borrowed(value) => {
            let start = value.as_ptr() as usize - body.as_ptr() as usize;
            Err(start..start + value.len())
        }
        Cow::Owned(value) => Ok(Zeroizing::new(value)),
    };
    let content_type = parsed.content_type;
    let (managed, attributes) = (parsed.managed, parsed.attributes);
    let value = match value {
        Ok(unescaped) => SecretValue::Unescaped(unescaped),
        Err(range) => SecretValue::InBody { body, range },
    };
    Ok(SecretBundle {
        value,
        content_type,
        version,
        managed,
        enabled: attributes.enabled.unwrap_or(true),
        not_before: attributes.nbf,
        expires: attributes.exp,
    })
}

/// The version in `id`, checked to be this vault's secret of this name (and the pinned
/// version, if one was asked for).
fn version_from_id(id: &str, secret: &SecretUrl, host: &str) -> Result<String, String> {
    // `https://<host>/secrets/`, compared without building it (ASCII case-insensitively).
    fn strip<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.get(..prefix.len())
            .filter(|p| p.eq_ignore_ascii_case(prefix))
            .and_then(|_| text.get(prefix.len()..))
    }
    let rest = strip(id, "https://")
        .and_then(|rest| strip(rest, host))
        .and_then(|rest| strip(rest, "/secrets/"))
        .ok_or_else(|| format!("id {id:?} is not a secret of {host}"))?;
    let (name, version) = rest
        .split_once('/')
        .ok_or_else(|| format!("id {id:?} has no version"))?;
    if !name.eq_ignore_ascii_case(&secret.secret_name) {
        return Err(format!("id {id:?} names another secret"));
    }
    let version = version.trim_end_matches('/').to_ascii_lowercase();
    if version.len() != 32 || !version.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("id {id:?} has no 32-hex-digit version"));
    }
    if secret
        .version
        .as_ref()
        .is_some_and(|pinned| *pinned != version)
    {
        return Err(format!(
            "asked for version {:?}, got {version}",
            secret.version
        ));
    }
    Ok(version)
}

/// The resource of the 401's `Bearer` challenge, refused unless acceptable for `host`.
fn challenge_resource(response: &reqwest::Response, host: &str) -> Result<String, VaultError> {
    let refuse = |reason: String| VaultError::Challenge {
        host: host.to_owned(),
        reason,
    };
    let header = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refuse("401 without WWW-Authenticate".to_owned()))?;
    parse_challenge(header, host).map_err(refuse)
}

/// The token resource a `WWW-Authenticate: Bearer …` challenge of `vault_host` asks for
/// (`resource="…"`, or `scope="…"` without its `/.default` suffix), if
/// [`accept_challenge_resource`] accepts it; the error says why not. Untrusted input.
pub fn parse_challenge(header: &str, vault_host: &str) -> Result<String, String> {
    let header = header.trim();
    let (scheme, params) = header
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((header, ""));
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Err(format!("not a Bearer challenge: {}", shown(header)));
    }
    let resource = bearer_param(params, "resource")
        .or_else(|| {
            bearer_param(params, "scope").map(|scope| match scope.strip_suffix("/.default") {
                Some(resource) => resource.to_owned(),
                None => scope,
            })
        })
        .ok_or_else(|| "no resource or scope".to_owned())?;
    accept_challenge_resource(&resource, vault_host)
}

/// Whether a challenge's `resource` may be the audience of the token sent to `vault_host`
/// (issue 16): only `https://` + the Key Vault resource host of the cloud `vault_host`
/// belongs to (the host's parent domain on a label boundary, never a bare suffix such as
/// `net`), with no user information, no port but 443, a path of at most `/`, no query and
/// no fragment. Returns the resource in its canonical form, `https://vault.azure.net`.
pub fn accept_challenge_resource(resource: &str, vault_host: &str) -> Result<String, String> {
    let refuse = |why: &str| Err(format!("resource {} {why}", shown(resource)));
    if resource
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return refuse("contains spaces, control characters or backslashes");
    }
    let Some((scheme, rest)) = resource.split_once("://") else {
        return refuse("is not an absolute URL");
    };
    if !scheme.eq_ignore_ascii_case("https") {
        return refuse("is not an https URL");
    }
    if rest.contains('?') {
        return refuse("has a query");
    }
    if rest.contains('#') {
        return refuse("has a fragment");
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return refuse("has user information");
    }
    if !(path.is_empty() || path == "/") {
        return refuse("has a path");
    }
    let host = match authority.rsplit_once(':') {
        None => authority,
        Some((host, "443")) if !host.contains(':') => host,
        Some(_) => return refuse("names a port other than 443"),
    };
    let vault_host = vault_host.to_ascii_lowercase();
    let cloud = crate::settings::Cloud::ALL.into_iter().find(|cloud| {
        vault_host
            .strip_suffix(cloud.suffix())
            .is_some_and(|label| label.len() > 1 && label.ends_with('.'))
    });
    match cloud {
        Some(cloud) if host.eq_ignore_ascii_case(cloud.suffix()) => Ok(cloud.resource()),
        Some(cloud) => refuse(&format!(
            "does not cover {vault_host} (only {} does)",
            cloud.resource()
        )),
        None => refuse(&format!("does not cover {vault_host}")),
    }
}

/// Untrusted text for a message: debug-quoted, at most 100 characters of it.
fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 100;
    let mut cut: String = text.chars().take(MAX_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// `name="value"` from a comma-separated challenge parameter list.
fn bearer_param(params: &str, name: &str) -> Option<String> {
    params.split(',').find_map(|part| {
        let (key, value) = part.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::parse_secret_url;

    #[test]
    fn the_value_is_read_in_place_or_unescaped() {
        let secret = parse_secret_url("https://vlt.vault.azure.net/secrets/web").unwrap();
        let id = "https://vlt.vault.azure.net/secrets/web/0123456789abcdef0123456789abcdef";
        let body = |value: &str| -> SecretBytes {
            format!(r#"{{"value":"{value}","id":"{id}","attributes":{{"enabled":false}}}}"#)
                .into_bytes()
                .into()
        };
        let plain = parse_secret_response(body("TUlJQw+/="), &secret).unwrap();
        assert!(matches!(plain.value, SecretValue::InBody { .. }));
        assert_eq!(plain.value.text().unwrap(), "TUlJQw+/=");
        assert!(!plain.enabled);
        let escaped = parse_secret_response(body(r"TUlJ\/Qw\u002b"), &secret).unwrap();
        assert!(matches!(escaped.value, SecretValue::Unescaped(_)));
        assert_eq!(escaped.value.text().unwrap(), "TUlJ/Qw+");
        assert_eq!(format!("{:?}", escaped.value), "<redacted>");
        let none =
            br#"{"id":"https://vlt.vault.azure.net/secrets/web/0123456789abcdef0123456789abcdef"}"#;
        let error = parse_secret_response(none.to_vec().into(), &secret).unwrap_err();
        assert_eq!(error, "the secret has no value");
    }

    #[test]
    fn version_comes_from_a_matching_id() {
        let secret = parse_secret_url("https://myvault.vault.azure.net/secrets/web").unwrap();
        let host = "myvault.vault.azure.net";
        let id = "https://myvault.vault.azure.net/secrets/web/0123456789ABCDEF0123456789abcdef";
        assert_eq!(
            version_from_id(id, &secret, host).unwrap(),
            "0123456789abcdef0123456789abcdef"
        );
        assert!(
            version_from_id(
                "https://other.vault.azure.net/secrets/web/0123456789abcdef0123456789abcdef",
                &secret,
                host
            )
            .is_err()
        );
        assert!(
            version_from_id(
                "https://myvault.vault.azure.net/secrets/api/0123456789abcdef0123456789abcdef",
                &secret,
                host
            )
            .is_err()
        );
        assert!(
            version_from_id("https://myvault.vault.azure.net/secrets/web", &secret, host).is_err()
        );
    }

    const PUBLIC: &str = "myvault.vault.azure.net";

    /// Issue 16, finding 7: the resource decision, attack strings and legitimate forms.
    #[test]
    fn challenge_resources() {
        let ok = |resource| Ok::<_, String>(String::from(resource));
        for (resource, host, expected) in [
            // What Key Vault sends, in every cloud.
            ("https://vault.azure.net", PUBLIC, ok("https://vault.azure.net")),
            ("https://vault.azure.net/", PUBLIC, ok("https://vault.azure.net")),
            ("HTTPS://Vault.Azure.NET", PUBLIC, ok("https://vault.azure.net")),
            ("https://vault.azure.net:443/", PUBLIC, ok("https://vault.azure.net")),
            ("https://vault.azure.net", "MyVault.Vault.Azure.Net", ok("https://vault.azure.net")),
            ("https://vault.azure.cn", "myvault.vault.azure.cn", ok("https://vault.azure.cn")),
            (
                "https://vault.usgovcloudapi.net",
                "myvault.vault.usgovcloudapi.net",
                ok("https://vault.usgovcloudapi.net"),
            ),
            (
                "https://vault.microsoftazure.de/",
                "myvault.vault.microsoftazure.de",
                ok("https://vault.microsoftazure.de"),
            ),
            // The review's three: a bare TLD, user information, a port with path and query.
            (
                "https://net",
                PUBLIC,
                Err("resource \"https://net\" does not cover myvault.vault.azure.net (only https://vault.azure.net does)".to_owned()),
            ),
            (
                "https://evil.com@vault.azure.net",
                PUBLIC,
                Err("resource \"https://evil.com@vault.azure.net\" has user information".to_owned()),
            ),
            (
                "https://vault.azure.net:8443/x?y=1",
                PUBLIC,
                Err("resource \"https://vault.azure.net:8443/x?y=1\" has a query".to_owned()),
            ),
            (
                "https://vault.azure.net:8443",
                PUBLIC,
                Err("resource \"https://vault.azure.net:8443\" names a port other than 443".to_owned()),
            ),
            (
                "https://vault.azure.net/x",
                PUBLIC,
                Err("resource \"https://vault.azure.net/x\" has a path".to_owned()),
            ),
        ] {
            assert_eq!(accept_challenge_resource(resource, host), expected, "{resource}");
        }
        for (resource, host) in [
            ("https://azure.net", PUBLIC),
            ("https://ault.azure.net", PUBLIC),
            ("https://vault.azure.net.evil.example.com", PUBLIC),
            ("https://myvault.vault.azure.net", PUBLIC),
            ("https://management.azure.com", PUBLIC),
            ("https://vault.azure.cn", PUBLIC),
            ("https://vault.azure.net", "myvault.vault.azure.cn"),
            ("https://vault.azure.net", "vault.azure.net"),
            ("https://vault.azure.net", "evil.example.com"),
            ("https://vault.azure.net.", PUBLIC),
            ("https://vault.azure.net:", PUBLIC),
            ("https://vault.azure.net:80", PUBLIC),
            ("https://[::1]:443", PUBLIC),
            ("https://@vault.azure.net", PUBLIC),
            ("https://vault.azure.net#f", PUBLIC),
            ("https://vault.azure.net/.default", PUBLIC),
            ("https://vault.azure.net\\@evil.com", PUBLIC),
            ("https://vault.azure.net /", PUBLIC),
            ("http://vault.azure.net", PUBLIC),
            ("vault.azure.net", PUBLIC),
            ("https://", PUBLIC),
            ("", PUBLIC),
        ] {
            assert!(
                accept_challenge_resource(resource, host).is_err(),
                "{resource} for {host}"
            );
        }
    }

    #[test]
    fn challenge_headers() {
        let auth = r#"authorization="https://login.windows.net/72f988bf""#;
        for header in [
            format!(r#"Bearer {auth}, resource="https://vault.azure.net""#),
            format!(r#"Bearer {auth}, scope="https://vault.azure.net/.default""#),
            r#"bearer resource="https://vault.azure.net/""#.to_owned(),
            r#"  Bearer scope=https://vault.azure.net"#.to_owned(),
        ] {
            assert_eq!(
                parse_challenge(&header, PUBLIC).as_deref(),
                Ok("https://vault.azure.net"),
                "{header}"
            );
        }
        for (header, reason) in [
            (r#"Bearer resource="https://net""#, "does not cover"),
            (
                r#"Bearer scope="https://evil.com@vault.azure.net/.default""#,
                "has user information",
            ),
            (
                r#"Bearer resource="https://vault.azure.net:8443/x?y=1""#,
                "has a query",
            ),
            (
                r#"Bearer scope="https://vault.azure.net/.default/.default""#,
                "has a path",
            ),
            // The resource wins over the scope, as in the SDKs.
            (
                r#"Bearer scope="https://vault.azure.net/.default", resource="https://net""#,
                "does not cover",
            ),
            (r#"Basic realm="x""#, "not a Bearer challenge"),
            (
                r#"Bearerresource="https://vault.azure.net""#,
                "not a Bearer challenge",
            ),
            ("Bearer", "no resource or scope"),
            (
                r#"Bearer authorization="https://login.windows.net/x""#,
                "no resource or scope",
            ),
        ] {
            let error = parse_challenge(header, PUBLIC).unwrap_err();
            assert!(error.contains(reason), "{header}: {error}");
        }
        let long = format!("Bearer resource=\"https://{}\"", "a".repeat(10_000));
        assert!(parse_challenge(&long, PUBLIC).unwrap_err().len() < 200);
    }

    #[test]
    fn challenge_parameters() {
        let params = r#" authorization="https://login.windows.net/72f988bf", resource="https://vault.azure.net""#;
        assert_eq!(
            bearer_param(params, "resource").as_deref(),
            Some("https://vault.azure.net")
        );
        assert_eq!(bearer_param(params, "scope"), None);
    }
}
