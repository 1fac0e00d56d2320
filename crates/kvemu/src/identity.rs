//! The managed-identity token endpoint on plain HTTP, as Azure IMDS
//! (`Metadata: true`, `client_id`/`object_id`/`msi_res_id`) or as the Azure Arc
//! agent (Basic challenge with a key file), with its faults.

use crate::auth::{Identity, normalize_resource};
use crate::config::IdentityMode;
use crate::conn::ConnCtl;
use crate::faults::{FaultKind, RequestKey};
use crate::ids::{hex_lower, now_unix, secure_bytes};
use crate::state::{Shared, lock};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// The token path (IMDS, Arc, and `azure-identity` with `AZURE_POD_IDENTITY_AUTHORITY_HOST`).
pub const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";
/// Arc's key files are at most this long (the agent's own limit, SPEC §2).
const ARC_KEY_BYTES: usize = 64;
/// Unused Arc key files remembered at once.
const MAX_ARC_KEYS: usize = 1024;

fn imds_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        header::SERVER,
        HeaderValue::from_static("IMDS/150.870.65.1325"),
    );
    r
}

fn count(sh: &Shared, status: StatusCode) {
    *lock(&sh.counters)
        .identity_status
        .entry(status.as_u16())
        .or_default() += 1;
}

/// Handler for [`TOKEN_PATH`].
pub async fn token(State(sh): State<Arc<Shared>>, req: axum::extract::Request) -> Response {
    lock(&sh.counters).identity += 1;
    let r = answer(&sh, req).await;
    count(&sh, r.status());
    r
}

async fn answer(sh: &Shared, req: axum::extract::Request) -> Response {
    let (parts, _) = req.into_parts();
    let key = RequestKey {
        identity: true,
        vault: None,
        object: None,
        path: parts.uri.path(),
    };
    let mut skew = 0i64;
    let fault = lock(&sh.faults).take(key, false);
    match fault {
        Some(FaultKind::Status {
            status,
            retry_after,
        }) => {
            let st = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let desc = match status {
                404 => "Identity not found or IMDS is updating.",
                410 => "IMDS is being upgraded; retry within 70 seconds.",
                429 => "Too many requests.",
                _ => "Internal error.",
            };
            let mut r = imds_error(st, "unknown_error", desc);
            if let Some(s) = retry_after
                && let Ok(v) = HeaderValue::from_str(&s.to_string())
            {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        Some(FaultKind::Hang) => {
            sh.until_shutdown().await;
            return imds_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unknown_error",
                "shutting down",
            );
        }
        Some(FaultKind::Reset) => {
            if let Some(ctl) = parts.extensions.get::<Arc<ConnCtl>>() {
                ctl.reset();
            }
            return Response::new(Body::empty());
        }
        Some(FaultKind::Redirect { status, location }) => {
            let st = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
            let mut r = Response::new(Body::empty());
            *r.status_mut() = st;
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        _ => {}
    }
    // Body faults: a skewed `expires_on`, or a truncated, oversize or slow-drip body.
    let mut body_fault = None;
    match lock(&sh.faults).take(key, true) {
        Some(FaultKind::ExpiresOnSkew(s)) => skew = s,
        other => body_fault = other,
    }

    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let q = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let mode = *lock(&sh.identity_mode);
    let metadata_ok = parts
        .headers
        .get("metadata")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));

    // IMDS refuses requests that came through a proxy.
    if parts.headers.contains_key("x-forwarded-for") {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Request has an X-Forwarded-For header: requests through a proxy are not accepted",
        );
    }
    let Some(api) = q("api-version") else {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    };
    let api_ok = match mode {
        IdentityMode::Imds => api.len() == 10 && api >= "2018-02-01",
        IdentityMode::Arc => api == "2019-11-01" || api == "2020-06-01",
    };
    if !api_ok {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid API version",
        );
    }
    if !metadata_ok {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    let Some(resource) = q("resource").filter(|r| !r.is_empty()) else {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required audience not specified",
        );
    };

    if mode == IdentityMode::Arc {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .map(|v| v.trim().to_string());
        let valid = presented.is_some_and(|p| lock(&sh.arc_keys).remove(&p));
        if !valid {
            return arc_challenge(sh);
        }
    }

    let selectors = [
        q("client_id"),
        q("object_id"),
        q("msi_res_id").or(q("mi_res_id")),
    ];
    if selectors.iter().filter(|s| s.is_some()).count() > 1 {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Only one of client_id, object_id or msi_res_id may be specified",
        );
    }
    let identity: Option<Identity> = {
        let auth = lock(&sh.auth);
        match selectors {
            [Some(c), _, _] => auth.by_client_id(c).cloned(),
            [_, Some(o), _] => auth.by_object_id(o).cloned(),
            [_, _, Some(r)] => auth.by_res_id(r).cloned(),
            _ => Some(auth.system().clone()),
        }
    };
    let Some(identity) = identity else {
        return imds_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found",
        );
    };

    let now = now_unix();
    let lifetime = sh
        .token_lifetime_secs
        .load(std::sync::atomic::Ordering::Relaxed) as i64;
    let resource_out = normalize_resource(resource);
    let token = lock(&sh.auth).issue(&identity, &sh.tenant_id, &resource_out, now, lifetime);
    *lock(&sh.counters)
        .tokens_issued
        .entry(identity.client_id.clone())
        .or_default() += 1;
    let body = json!({
        "access_token": token,
        "client_id": identity.client_id,
        "expires_in": lifetime.to_string(),
        "expires_on": (now + lifetime + skew).to_string(),
        "ext_expires_in": lifetime.to_string(),
        "not_before": now.to_string(),
        "resource": resource,
        "token_type": "Bearer",
    });
    let bytes = body.to_string().into_bytes();
    if let Some((faulty, length)) = body_fault
        .as_ref()
        .and_then(|kind| crate::respond::streamed_fault(kind, bytes.clone()))
    {
        let mut r = Response::new(faulty);
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if let Some(n) = length {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        return r;
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        bytes,
    )
        .into_response()
}

/// Writes a fresh key file and answers 401 `Basic realm=<path>`.
fn arc_challenge(sh: &Shared) -> Response {
    let secret = hex_lower(&secure_bytes(ARC_KEY_BYTES / 2));
    let path = sh.arc_dir.join(format!("{}.key", sh.guid()));
    if let Err(e) =
        std::fs::create_dir_all(&sh.arc_dir).and_then(|_| std::fs::write(&path, &secret))
    {
        return imds_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unknown_error",
            &format!("cannot write key file: {e}"),
        );
    }
    {
        let mut keys = lock(&sh.arc_keys);
        if keys.len() >= MAX_ARC_KEYS {
            keys.clear();
        }
        keys.insert(secret);
    }
    let mut r = imds_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized_client",
        "Authorization header with a Basic challenge response is required",
    );
    if let Ok(v) = HeaderValue::from_str(&format!("Basic realm={}", path.display())) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}
