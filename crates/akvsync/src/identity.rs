//! Managed-identity tokens (SPEC §2): `GET {msiEndpoint}?api-version=2018-02-01&resource=…`
//! with `Metadata: true`, never through a proxy; `client_id` or `msi_res_id` for a
//! user-assigned identity; the Azure Arc Basic challenge; retries with backoff on
//! 404/410/429/5xx/timeouts; one cached token per resource, refreshed ahead of expiry,
//! fetched by one task at a time so that a hundred certificates cause one request.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;
use zeroize::Zeroizing;

use crate::backoff::{self, Backoff};
use crate::fnv::FnvMap;
use crate::http;
use crate::settings::{IdentitySettings, UserAssignedIdentity};

const API_VERSION: &str = "2018-02-01";
const ARC_API_VERSION: &str = "2019-11-01";
/// Identity responses are a few KiB; anything bigger is not a token.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;
/// Arc key files are small; the agent writes a few dozen bytes (SPEC §2).
const MAX_ARC_KEY_BYTES: u64 = 4096;
/// Longest wait a 429's Retry-After can impose on one identity request.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The Azure Connected Machine agent's token directory.
pub fn default_arc_token_dir() -> PathBuf {
    if cfg!(windows) {
        let program_data =
            std::env::var_os("ProgramData").unwrap_or_else(|| "C:\\ProgramData".into());
        Path::new(&program_data)
            .join("AzureConnectedMachineAgent")
            .join("Tokens")
    } else {
        PathBuf::from("/var/opt/azcmagent/tokens")
    }
}

/// A bearer token. Its value never appears in `Debug` or errors.
#[derive(Clone)]
pub struct AccessToken {
    secret: Zeroizing<String>,
    /// Unix seconds.
    pub expires_on: u64,
    /// When we got it (unix seconds), for the refresh-ahead rule.
    pub obtained_at: u64,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"<redacted>")
            .field("expires_on", &self.expires_on)
            .finish()
    }
}

impl AccessToken {
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Fresh enough to use: refreshed 5 minutes before expiry, or at half-life for
    /// tokens shorter than 10 minutes.
    fn is_fresh(&self, now: u64) -> bool {
        let lifetime = self.expires_on.saturating_sub(self.obtained_at);
        let margin =
            crate::schedule::token_refresh_margin(std::time::Duration::from_secs(lifetime))
                .as_secs();
        now + margin < self.expires_on
    }

    /// Still usable when a refresh failed: at least [`MIN_REMAINING_AFTER_FAILED_REFRESH`]
    /// seconds to live.
    fn is_usable(&self, now: u64) -> bool {
        now + MIN_REMAINING_AFTER_FAILED_REFRESH < self.expires_on
    }
}

/// A token past its refresh point is still used, while it has this many seconds left, when
/// its refresh fails: an identity endpoint outage during the refresh window (the last
/// 5 minutes of a token) must not fail polls that a valid token can still serve.
const MIN_REMAINING_AFTER_FAILED_REFRESH: u64 = 5;

/// Why no token could be obtained.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity endpoint {endpoint} answered {status}: {message}")]
    Refused {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("identity endpoint {endpoint} unreachable: {}", http::error_chain(.source))]
    Transport {
        endpoint: String,
        source: reqwest::Error,
    },
    #[error("identity endpoint {endpoint} gave an unusable response: {reason}")]
    BadResponse { endpoint: String, reason: String },
    #[error("Azure Arc challenge refused: {0}")]
    Arc(String),
    /// The failure of a fetch (with all its retries) that this caller waited for, shared
    /// by every caller that queued behind it.
    #[error(transparent)]
    Shared(std::sync::Arc<IdentityError>),
}

impl IdentityError {
    /// Whether a later attempt may succeed without a change of configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            IdentityError::Refused { status, .. } => is_retryable(*status),
            IdentityError::Transport { .. } | IdentityError::BadResponse { .. } => true,
            IdentityError::Arc(_) => false,
            IdentityError::Shared(error) => error.is_transient(),
        }
    }
}

fn is_retryable(status: u16) -> bool {
    matches!(status, 404 | 408 | 410 | 429) || status >= 500
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Zeroizing<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    expires_on: Option<u64>,
    #[serde(default, deserialize_with = "string_or_number")]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: Option<String>,
    error_description: Option<String>,
}

/// IMDS sends every value as a string; some endpoints send numbers. Accept both.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Number(u64),
        Text(String),
    }
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => Some(n),
        Some(Value::Text(t)) => t.trim().parse().ok(),
        None => None,
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Per resource: the token, and the last failed fetch (with the instant it ended).
#[derive(Debug, Default)]
struct Cache {
    tokens: FnvMap<String, AccessToken>,
    failures: FnvMap<String, (tokio::time::Instant, std::sync::Arc<IdentityError>)>,
}

impl Cache {
    /// After a failed refresh: the cached token if it is still usable, else the failure.
    fn current_or(
        &self,
        resource: &str,
        error: std::sync::Arc<IdentityError>,
    ) -> Result<AccessToken, IdentityError> {
        match self.tokens.get(resource) {
            Some(token) if token.is_usable(now()) => Ok(token.clone()),
            _ => Err(IdentityError::Shared(error)),
        }
    }
}

/// Tokens from the managed-identity endpoint, cached per resource.
#[derive(Debug)]
pub struct Credential {
    http: reqwest::Client,
    endpoint: Url,
    user_assigned: Option<UserAssignedIdentity>,
    arc_token_dir: PathBuf,
    backoff: Backoff,
    cache: Mutex<Cache>,
    requests: std::sync::atomic::AtomicU64,
    /// Learnt: the endpoint is an Azure Arc agent (api-version 2019-11-01, Basic challenge).
    arc: std::sync::atomic::AtomicBool,
}

impl Credential {
    /// A credential for `settings`; Arc key files are accepted only inside `arc_token_dir`
    /// (production: [`default_arc_token_dir`]).
    pub fn new(
        settings: &IdentitySettings,
        arc_token_dir: PathBuf,
        backoff: Backoff,
    ) -> Result<Self, IdentityError> {
        let endpoint = Url::parse(&settings.endpoint).map_err(|e| IdentityError::BadResponse {
            endpoint: settings.endpoint.clone(),
            reason: format!("not a URL: {e}"),
        })?;
        let http = reqwest::Client::builder()
            // A plain-HTTP endpoint (IMDS, Arc) needs no trust store: not loading the
            // system's CA bundle a second time saves resident memory.
            .tls_built_in_root_certs(endpoint.scheme() == "https")
            .no_proxy() // SPEC §2: never through a proxy.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(http::CONNECT_TIMEOUT)
            .timeout(http::REQUEST_TIMEOUT)
            .build()
            .map_err(|source| IdentityError::Transport {
                endpoint: settings.endpoint.clone(),
                source,
            })?;
        Ok(Credential {
            http,
            endpoint,
            user_assigned: settings.user_assigned.clone(),
            arc_token_dir,
            backoff,
            cache: Mutex::new(Cache::default()),
            requests: std::sync::atomic::AtomicU64::new(0),
            arc: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Requests sent to the identity endpoint so far (for tests and metrics).
    pub fn request_count(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A token for `resource`, from the cache while it is fresh.
    ///
    /// Holding the lock across the fetch makes concurrent callers wait for one request
    /// series; callers that queued while that series failed get its error instead of
    /// starting their own (a hundred certificates during an endpoint outage cost one
    /// series of retries, not a hundred).
    pub async fn token(&self, resource: &str) -> Result<AccessToken, IdentityError> {
        let asked = tokio::time::Instant::now();
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.tokens.get(resource)
            && token.is_fresh(now())
        {
            return Ok(token.clone());
        }
        if let Some((failed_at, error)) = cache.failures.get(resource)
            && *failed_at >= asked
        {
            return cache.current_or(resource, std::sync::Arc::clone(error));
        }
        match self.fetch_with_retries(resource).await {
            Ok(token) => {
                cache.failures.remove(resource);
                cache.tokens.insert(resource.to_owned(), token.clone());
                Ok(token)
            }
            Err(error) => {
                let error = std::sync::Arc::new(error);
                cache.failures.insert(
                    resource.to_owned(),
                    (tokio::time::Instant::now(), std::sync::Arc::clone(&error)),
                );
                let result = cache.current_or(resource, error);
                if result.is_ok() {
                    tracing::warn!(
                        resource,
                        "token refresh failed; the current token is used until it expires"
                    );
                }
                result
            }
        }
    }

    /// Drops a cached token the vault refused, so that the next call fetches a new one.
    pub async fn invalidate(&self, resource: &str) {
        self.cache.lock().await.tokens.remove(resource);
    }

    async fn fetch_with_retries(&self, resource: &str) -> Result<AccessToken, IdentityError> {
        let mut attempt = 1;
        loop {
            match self.fetch(resource).await {
                Ok(token) => return Ok(token),
                Err((error, retry_after))
                    if error.is_transient() && attempt < self.backoff.attempts =>
                {
                    let delay = retry_after.unwrap_or_else(|| self.backoff.delay(attempt));
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    fn url(&self, resource: &str, api_version: &str) -> Url {
        let mut url = self.endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("api-version", api_version)
                .append_pair("resource", resource);
            if let Some(id) = &self.user_assigned {
                let (name, value) = id.query_parameter();
                query.append_pair(name, value);
            }
        }
        url
    }

    async fn send(
        &self,
        url: Url,
        basic: Option<&str>,
    ) -> Result<reqwest::Response, IdentityError> {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut request = self.http.get(url).header("Metadata", "true");
        if let Some(secret) = basic {
            request = request.header(reqwest::header::AUTHORIZATION, format!("Basic {secret}"));
        }
        request
            .send()
            .await
            .map_err(|source| IdentityError::Transport {
                endpoint: self.endpoint_name(),
                // The endpoint is already named; the query adds nothing but noise.
                source: source.without_url(),
            })
    }

    fn endpoint_name(&self) -> String {
        let mut shown = self.endpoint.clone();
        shown.set_query(None);
        shown.to_string()
    }

    /// One attempt (plus the Arc round trip); the error carries a server-requested delay.
    async fn fetch(
        &self,
        resource: &str,
    ) -> Result<AccessToken, (IdentityError, Option<Duration>)> {
        let arc = self.arc.load(std::sync::atomic::Ordering::Relaxed);
        let first_version = if arc { ARC_API_VERSION } else { API_VERSION };
        let mut response = self
            .send(self.url(resource, first_version), None)
            .await
            .map_err(|e| (e, None))?;
        if !arc && response.status() == StatusCode::BAD_REQUEST {
            // The Azure Arc agent refuses IMDS's api-version; ask again as Arc does, and
            // remember, so that later tokens cost no extra request.
            let (again, body) = self
                .retry_as_arc(response, resource)
                .await
                .map_err(|e| (e, None))?;
            match again {
                Some(arc_response) => response = arc_response,
                None => return Err((self.refused(StatusCode::BAD_REQUEST, &body), None)),
            }
        }
        if response.status() == StatusCode::UNAUTHORIZED
            && let Some(realm) = basic_realm(&response)
        {
            let secret = self.read_arc_key(&realm).map_err(|e| (e, None))?;
            response = self
                .send(self.url(resource, ARC_API_VERSION), Some(&secret))
                .await
                .map_err(|e| (e, None))?;
        }
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| backoff::parse_retry_after(v, MAX_RETRY_AFTER));
        let body = http::read_capped(response, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| {
                (
                    IdentityError::BadResponse {
                        endpoint: self.endpoint_name(),
                        reason: e.to_string(),
                    },
                    None,
                )
            })?;
        if !status.is_success() {
            return Err((self.refused(status, &body), retry_after));
        }
        parse_token_response(&body, now()).map_err(|reason| {
            (
                IdentityError::BadResponse {
                    endpoint: self.endpoint_name(),
                    reason,
                },
                None,
            )
        })
    }

    /// After a 400: if it was about the api-version, the endpoint is an Arc agent; returns
    /// its answer to a request with Arc's api-version, or the 400's body to report.
    async fn retry_as_arc(
        &self,
        response: reqwest::Response,
        resource: &str,
    ) -> Result<(Option<reqwest::Response>, crate::wipe::SecretBytes), IdentityError> {
        let body = http::read_capped(response, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| IdentityError::BadResponse {
                endpoint: self.endpoint_name(),
                reason: e.to_string(),
            })?;
        let about_version = String::from_utf8_lossy(&body)
            .to_ascii_lowercase()
            .contains("api version")
            || String::from_utf8_lossy(&body)
                .to_ascii_lowercase()
                .contains("api-version");
        if !about_version {
            return Ok((None, body));
        }
        let again = self.send(self.url(resource, ARC_API_VERSION), None).await?;
        if again.status() == StatusCode::UNAUTHORIZED && basic_realm(&again).is_some() {
            self.arc.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok((Some(again), body))
    }

    fn refused(&self, status: StatusCode, body: &[u8]) -> IdentityError {
        let message = match serde_json::from_slice::<ErrorResponse>(body) {
            Ok(ErrorResponse {
                error: Some(code),
                error_description,
            }) => {
                format!("{code}: {}", error_description.unwrap_or_default())
            }
            _ => status.canonical_reason().unwrap_or("error").to_owned(),
        };
        IdentityError::Refused {
            endpoint: self.endpoint_name(),
            status: status.as_u16(),
            message,
        }
    }

    /// The Arc agent names a key file in its challenge; only a `.key` file of at most
    /// 4096 bytes directly inside its token directory is read.
    fn read_arc_key(&self, realm: &str) -> Result<String, IdentityError> {
        let path = Path::new(realm);
        let parent_ok = path
            .parent()
            .is_some_and(|p| same_dir(p, &self.arc_token_dir));
        let name_ok = path.extension().is_some_and(|e| e == "key")
            && path
                .file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'));
        if !parent_ok || !name_ok {
            return Err(IdentityError::Arc(format!(
                "key file {realm:?} is not a .key file in {}",
                self.arc_token_dir.display()
            )));
        }
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| IdentityError::Arc(format!("{realm:?}: {e}")))?;
        if !meta.is_file() || meta.len() > MAX_ARC_KEY_BYTES {
            return Err(IdentityError::Arc(format!(
                "{realm:?} is not a regular file of at most {MAX_ARC_KEY_BYTES} bytes"
            )));
        }
        let content = std::fs::read_to_string(path)
            .map_err(|e| IdentityError::Arc(format!("{realm:?}: {e}")))?;
        Ok(content.trim().to_owned())
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `WWW-Authenticate: Basic realm=<path>` (quoted or not).
fn basic_realm(response: &reqwest::Response) -> Option<String> {
    let value = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)?
        .to_str()
        .ok()?;
    let rest = value.trim().strip_prefix("Basic")?.trim_start();
    let realm = rest.strip_prefix("realm=")?;
    Some(realm.trim().trim_matches('"').to_owned())
}

/// Parses an identity endpoint's 200 response (untrusted input) into a token obtained `now`.
pub fn parse_token_response(body: &[u8], now: u64) -> Result<AccessToken, String> {
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not a token response (JSON error at line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    token_from(parsed, now)
}

/// Expiry from `expires_on`, bounded by `expires_in` when the two disagree (a skewed
/// clock on either side must not make us use an expired token).
fn token_from(parsed: TokenResponse, now: u64) -> Result<AccessToken, String> {
    if parsed.access_token.trim().is_empty() {
        return Err("empty access_token".to_owned());
    }
    let by_lifetime = parsed.expires_in.map(|s| now.saturating_add(s));
    let expires_on = match (parsed.expires_on, by_lifetime) {
        (Some(on), Some(by_in)) => on.min(by_in),
        (Some(on), None) => on,
        (None, Some(by_in)) => by_in,
        (None, None) => return Err("neither expires_on nor expires_in".to_owned()),
    };
    if expires_on <= now {
        return Err("the token is already expired".to_owned());
    }
    Ok(AccessToken {
        secret: parsed.access_token,
        expires_on,
        obtained_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(on: Option<u64>, r#in: Option<u64>) -> TokenResponse {
        TokenResponse {
            access_token: Zeroizing::new("t".into()),
            expires_on: on,
            expires_in: r#in,
        }
    }

    #[test]
    fn expiry_takes_the_earlier_of_expires_on_and_expires_in() {
        assert_eq!(
            token_from(response(Some(5000), Some(3600)), 1000)
                .unwrap()
                .expires_on,
            4600
        );
        assert_eq!(
            token_from(response(Some(2000), Some(3600)), 1000)
                .unwrap()
                .expires_on,
            2000
        );
        assert!(token_from(response(Some(900), None), 1000).is_err());
    }

    #[test]
    fn refresh_ahead_of_expiry() {
        let hour = AccessToken {
            secret: Zeroizing::new("t".into()),
            expires_on: 3600,
            obtained_at: 0,
        };
        assert!(hour.is_fresh(3299));
        assert!(!hour.is_fresh(3300));
        let short = AccessToken {
            secret: Zeroizing::new("t".into()),
            expires_on: 60,
            obtained_at: 0,
        };
        assert!(short.is_fresh(29));
        assert!(!short.is_fresh(30));
        // Past its refresh point, a token still serves while a refresh fails, until 5 s
        // before it expires.
        assert!(hour.is_usable(3594) && !hour.is_usable(3595));
        assert!(short.is_usable(54) && !short.is_usable(55));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = AccessToken {
            secret: Zeroizing::new("eyJsecret".into()),
            expires_on: 1,
            obtained_at: 0,
        };
        assert!(!format!("{token:?}").contains("eyJsecret"));
    }
}
