//! The control endpoint of `kvemu serve` (plain HTTP on the identity
//! listener, under `/kvemu/`): what the library API offers in-process, for
//! tests and scripts in other processes: counters, faults, secrets, rotation,
//! identities, denial and settings. No authentication: loopback only.

use crate::auth::Identity;
use crate::certificates_api::Imported;
use crate::config::{IdentityMode, ThrottleConfig};
use crate::faults::Fault;
use crate::state::{Shared, lock};
use crate::{SecretSpec, ops};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Path prefix of the control endpoint.
pub const PREFIX: &str = "/kvemu";
/// Largest control request body (fault lists, secret values).
const MAX_CONTROL_BODY: usize = 256 * 1024;

type Sh = State<Arc<Shared>>;

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn bad(msg: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": msg.to_string()})),
    )
        .into_response()
}

async fn body_json(body: axum::body::Body) -> Result<Value, Response> {
    let bytes = axum::body::to_bytes(body, MAX_CONTROL_BODY)
        .await
        .map_err(|_| bad("body too large"))?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON: {e}")))
}

fn imported(i: &Imported) -> Value {
    json!({"name": i.name, "version": i.version, "x5t": i.x5t, "thumbprint": i.thumbprint, "content_type": i.content_type})
}

fn identity(i: &Identity) -> Value {
    json!({"client_id": i.client_id, "object_id": i.object_id, "msi_res_id": i.msi_res_id, "system": i.system})
}

/// The control routes, to merge into the identity listener's router.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/kvemu/counters", get(counters).delete(reset_counters))
        .route("/kvemu/faults", post(add_faults).delete(clear_faults))
        .route("/kvemu/vaults/{vault}/secrets/{name}", put(set_secret))
        .route(
            "/kvemu/vaults/{vault}/certificates/{name}/rotate",
            post(rotate),
        )
        .route("/kvemu/vaults/{vault}/seed", post(seed))
        .route(
            "/kvemu/vaults/{vault}/denied/{client_id}",
            put(deny).delete(allow),
        )
        .route("/kvemu/identities", get(identities))
        .route("/kvemu/identities/{client_id}", put(add_identity))
        .route("/kvemu/settings", put(settings))
}

async fn counters(State(sh): Sh) -> Response {
    ok(lock(&sh.counters).to_json())
}

async fn reset_counters(State(sh): Sh) -> Response {
    *lock(&sh.counters) = Default::default();
    ok(json!({}))
}

async fn add_faults(State(sh): Sh, body: axum::body::Body) -> Response {
    let v = match body_json(body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let items = match v {
        Value::Array(a) => a,
        other => vec![other],
    };
    let mut parsed = Vec::new();
    for item in &items {
        match Fault::from_json(item) {
            Ok(f) => parsed.push(f),
            Err(e) => return bad(e),
        }
    }
    let mut faults = lock(&sh.faults);
    for f in parsed {
        faults.add(f);
    }
    ok(json!({"pending": faults.pending()}))
}

async fn clear_faults(State(sh): Sh) -> Response {
    lock(&sh.faults).clear();
    ok(json!({"pending": 0}))
}

async fn set_secret(
    State(sh): Sh,
    Path((vault, name)): Path<(String, String)>,
    body: axum::body::Body,
) -> Response {
    let v = match body_json(body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(value) = v.get("value").and_then(Value::as_str) else {
        return bad("value is required");
    };
    let spec = SecretSpec {
        value: value.to_string(),
        content_type: v
            .get("contentType")
            .and_then(Value::as_str)
            .map(str::to_string),
        enabled: v.get("enabled").and_then(Value::as_bool),
        nbf: v.get("nbf").and_then(Value::as_i64),
        exp: v.get("exp").and_then(Value::as_i64),
        tags: v.get("tags").and_then(Value::as_object).cloned(),
    };
    match ops::set_secret_with(&sh, &vault, &name, spec) {
        Ok(r) => ok(json!({"id": r.id, "version": r.version})),
        Err(e) => bad(e),
    }
}

async fn rotate(State(sh): Sh, Path((vault, name)): Path<(String, String)>) -> Response {
    match ops::rotate_certificate(&sh, &vault, &name) {
        Ok(i) => ok(imported(&i)),
        Err(e) => bad(e),
    }
}

async fn seed(State(sh): Sh, Path(vault): Path<String>) -> Response {
    match ops::seed(&sh, &vault) {
        Ok(list) => ok(Value::Array(list.iter().map(imported).collect())),
        Err(e) => bad(e),
    }
}

async fn deny(State(sh): Sh, Path((vault, client_id)): Path<(String, String)>) -> Response {
    lock(&sh.store)
        .vault(&vault)
        .denied
        .insert(client_id.to_ascii_lowercase());
    ok(json!({}))
}

async fn allow(State(sh): Sh, Path((vault, client_id)): Path<(String, String)>) -> Response {
    lock(&sh.store)
        .vault(&vault)
        .denied
        .remove(&client_id.to_ascii_lowercase());
    ok(json!({}))
}

async fn identities(State(sh): Sh) -> Response {
    ok(Value::Array(
        lock(&sh.auth).identities().iter().map(identity).collect(),
    ))
}

async fn add_identity(State(sh): Sh, Path(client_id): Path<String>) -> Response {
    let mut rng = lock(&sh.rng);
    let id = lock(&sh.auth).add(&mut rng, &client_id);
    ok(identity(&id))
}

async fn settings(State(sh): Sh, body: axum::body::Body) -> Response {
    let v = match body_json(body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(s) = v.get("token_lifetime_secs").and_then(Value::as_u64) {
        sh.token_lifetime_secs.store(s.max(1), Ordering::Relaxed);
    }
    if let Some(n) = v.get("page_size").and_then(Value::as_u64) {
        sh.page_size
            .store((n as usize).clamp(1, 25), Ordering::Relaxed);
    }
    if let Some(t) = v.get("throttle") {
        let defaults = ThrottleConfig::default();
        let requests = t
            .get("requests")
            .and_then(Value::as_u64)
            .unwrap_or(u64::from(defaults.requests));
        let window = t
            .get("window_secs")
            .and_then(Value::as_f64)
            .unwrap_or(defaults.window.as_secs_f64());
        if !(0.001..=86400.0).contains(&window) {
            return bad("throttle.window_secs out of range");
        }
        let multiple = t
            .get("subscription_multiple")
            .and_then(Value::as_u64)
            .unwrap_or(u64::from(defaults.subscription_multiple));
        let retry_after = t
            .get("retry_after")
            .and_then(Value::as_bool)
            .unwrap_or(defaults.retry_after);
        lock(&sh.throttle).set_config(ThrottleConfig {
            requests: u32::try_from(requests).unwrap_or(u32::MAX),
            window: Duration::from_secs_f64(window),
            subscription_multiple: u32::try_from(multiple).unwrap_or(u32::MAX),
            retry_after,
        });
    }
    match v.get("identity_mode").and_then(Value::as_str) {
        None => {}
        Some("imds") => *lock(&sh.identity_mode) = IdentityMode::Imds,
        Some("arc") => *lock(&sh.identity_mode) = IdentityMode::Arc,
        Some(other) => return bad(format!("unknown identity_mode {other}")),
    }
    ok(json!({}))
}
