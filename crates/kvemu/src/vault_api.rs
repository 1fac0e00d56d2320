//! The vault listener's request pipeline (count → api-version → bearer
//! challenge/validation → access → faults → throttle → operation → body
//! faults) and the secrets operations: set, get, list, list versions, delete.

use crate::api_shared::{Ctx, bad, insert_secret, json_body, paged, parse_meta};
use crate::api_version;
use crate::auth::Check;
use crate::certificates_api;
use crate::conn::ConnCtl;
use crate::deleted_api;
use crate::faults::{FaultKind, RequestKey};
use crate::ids::now_unix;
use crate::respond::{Common, Reply, code_for_status, finish, kv_error, kv_error_inner};
use crate::state::{Shared, lock};
use crate::store::{self, SecretVersion, secret_bundle, secret_item};
use crate::throttle;
use crate::vault_host::{self, VaultHost};
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use axum_server::tls::TlsInfo;

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// Largest request body accepted (a certificate import with a long chain fits
/// comfortably; the service's own limits are lower).
pub const MAX_BODY: usize = 1024 * 1024;
/// The service's limit on a secret value (25 KiB).
pub const MAX_SECRET_VALUE: usize = 25 * 1024;
/// Vaults created on first use, at most (a flood of random host names cannot
/// grow the store without bound).
pub const MAX_VAULTS: usize = 10_000;

/// A parsed request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    SecretsList,
    SecretSet(String),
    SecretGet(String, Option<String>),
    SecretVersions(String),
    SecretDelete(String),
    CertList,
    CertImport(String),
    CertGet(String, Option<String>),
    CertVersions(String),
    DeletedList,
    DeletedGet(String),
    DeletedPurge(String),
    DeletedRecover(String),
    NotFound,
    MethodNotAllowed,
}

impl Route {
    pub fn parse(method: &Method, path: &str) -> Route {
        let mut segs: Vec<&str> = path.split('/').skip(1).collect();
        if segs.len() > 1 && segs.last() == Some(&"") {
            segs.pop();
        }
        let m = |want: Method, r: Route| {
            if *method == want {
                r
            } else {
                Route::MethodNotAllowed
            }
        };
        match segs.as_slice() {
            ["secrets"] => m(Method::GET, Route::SecretsList),
            ["secrets", name] => match *method {
                Method::GET => Route::SecretGet(name.to_string(), None),
                Method::PUT => Route::SecretSet(name.to_string()),
                Method::DELETE => Route::SecretDelete(name.to_string()),
                _ => Route::MethodNotAllowed,
            },
            ["secrets", name, "versions"] => {
                m(Method::GET, Route::SecretVersions(name.to_string()))
            }
            ["secrets", name, version] => m(
                Method::GET,
                Route::SecretGet(name.to_string(), Some(version.to_string())),
            ),
            ["deletedsecrets"] => m(Method::GET, Route::DeletedList),
            ["deletedsecrets", name] => match *method {
                Method::GET => Route::DeletedGet(name.to_string()),
                Method::DELETE => Route::DeletedPurge(name.to_string()),
                _ => Route::MethodNotAllowed,
            },
            ["deletedsecrets", name, "recover"] => {
                m(Method::POST, Route::DeletedRecover(name.to_string()))
            }
            ["certificates"] => m(Method::GET, Route::CertList),
            ["certificates", name] => m(Method::GET, Route::CertGet(name.to_string(), None)),
            ["certificates", name, "import"] => {
                m(Method::POST, Route::CertImport(name.to_string()))
            }
            ["certificates", name, "versions"] => {
                m(Method::GET, Route::CertVersions(name.to_string()))
            }
            ["certificates", name, version] => m(
                Method::GET,
                Route::CertGet(name.to_string(), Some(version.to_string())),
            ),
            _ => Route::NotFound,
        }
    }

    /// The secret or certificate the request is about.
    pub fn object(&self) -> Option<&str> {
        match self {
            Route::SecretSet(n)
            | Route::SecretGet(n, _)
            | Route::SecretVersions(n)
            | Route::SecretDelete(n)
            | Route::CertImport(n)
            | Route::CertGet(n, _)
            | Route::CertVersions(n)
            | Route::DeletedGet(n)
            | Route::DeletedPurge(n)
            | Route::DeletedRecover(n) => Some(n),
            _ => None,
        }
    }

    fn permission(&self) -> &'static str {
        match self {
            Route::SecretSet(_) => "secrets set",
            Route::SecretDelete(_) => "secrets delete",
            Route::SecretsList | Route::SecretVersions(_) => "secrets list",
            Route::CertImport(_) => "certificates import",
            Route::CertList | Route::CertVersions(_) => "certificates list",
            Route::CertGet(..) => "certificates get",
            Route::DeletedList | Route::DeletedGet(_) => "secrets list",
            Route::DeletedPurge(_) => "secrets purge",
            Route::DeletedRecover(_) => "secrets recover",
            _ => "secrets get",
        }
    }
}

/// The vault listener's single handler.
pub async fn handle(State(sh): State<Arc<Shared>>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let ctl = parts.extensions.get::<Arc<ConnCtl>>().cloned();
    let sni = parts
        .extensions
        .get::<Arc<TlsInfo>>()
        .and_then(|t| t.server_name.clone());
    let host_header = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .or(sni.clone())
        .unwrap_or_default();
    let common = Common {
        request_id: sh.guid(),
        region: &sh.region,
        peer_ip: "127.0.0.1".into(),
        client_request_id: parts
            .headers
            .get("x-ms-client-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 256)
            .map(str::to_string),
    };
    let vault =
        vault_host::parse(&host_header).or_else(|| sni.as_deref().and_then(vault_host::parse));
    let route = Route::parse(&parts.method, parts.uri.path());
    let Some(vault) = vault else {
        lock(&sh.counters).unknown_host += 1;
        let r = kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            &format!("Host '{host_header}' is not a Key Vault host served here."),
        );
        return finish(r, &common, None);
    };
    let too_many_vaults = {
        let st = lock(&sh.store);
        st.vaults.len() >= MAX_VAULTS && !st.vaults.contains_key(&vault.name)
    };
    if too_many_vaults {
        lock(&sh.counters).unknown_host += 1;
        let r = kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "This emulator already serves its maximum number of vaults.",
        );
        return finish(r, &common, None);
    }
    lock(&sh.counters).count_request(&vault.name, route.object());
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let key = RequestKey {
        identity: false,
        vault: Some(&vault.name),
        object: route.object(),
        path: parts.uri.path(),
    };

    let reply = match pipeline(&sh, &parts, &vault, &route, &query, key).await {
        Pre::Reply(r) => r,
        Pre::Hang => {
            sh.until_shutdown().await;
            return finish(
                kv_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "shutting down",
                ),
                &common,
                None,
            );
        }
        Pre::Reset => {
            if let Some(ctl) = ctl {
                ctl.reset();
            }
            return Response::new(Body::empty());
        }
        Pre::Continue => {
            let bytes = if matches!(parts.method, Method::PUT | Method::POST | Method::PATCH) {
                match axum::body::to_bytes(body, MAX_BODY).await {
                    Ok(b) => b,
                    Err(_) => {
                        let r = kv_error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "RequestEntityTooLarge",
                            "The request body is too large.",
                        );
                        count_status(&sh, &vault.name, r.status);
                        return finish(r, &common, None);
                    }
                }
            } else {
                Default::default()
            };
            let api_version = query
                .iter()
                .find(|(k, _)| k == "api-version")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let ctx = Ctx {
                vault: &vault,
                host_header: &host_header,
                api_version: &api_version,
                query: &query,
                body: &bytes,
            };
            operate(&sh, &route, &ctx)
        }
    };
    let fault = if reply.status.is_success() {
        lock(&sh.faults).take(key, true)
    } else {
        None
    };
    count_status(&sh, &vault.name, reply.status);
    finish(reply, &common, fault)
}

fn count_status(sh: &Shared, vault: &str, status: StatusCode) {
    *lock(&sh.counters)
        .status
        .entry((vault.to_string(), status.as_u16()))
        .or_default() += 1;
}

enum Pre {
    Reply(Reply),
    Hang,
    Reset,
    /// Authorised, not faulted, not throttled: perform the operation.
    Continue,
}

async fn pipeline(
    sh: &Shared,
    parts: &axum::http::request::Parts,
    vault: &VaultHost,
    route: &Route,
    query: &[(String, String)],
    key: RequestKey<'_>,
) -> Pre {
    let api = query
        .iter()
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v.as_str());
    match api {
        None => {
            return Pre::Reply(kv_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                "The 'api-version' query parameter is missing.",
            ));
        }
        Some(v) if !api_version::accepted(v) => {
            return Pre::Reply(kv_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                &format!(
                    "The specified version ({v}) is not recognized. Consider using the latest supported version (2025-07-01)."
                ),
            ));
        }
        _ => {}
    }

    let resource = vault.resource();
    let authz = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let check = lock(&sh.auth).check(authz, &resource, now_unix());
    let unauthorized = |msg: &str| {
        Pre::Reply(
            kv_error(StatusCode::UNAUTHORIZED, "Unauthorized", msg).header(
                header::WWW_AUTHENTICATE,
                format!(
                    "Bearer authorization=\"https://{}/{}\", resource=\"{}\"",
                    vault.authority_host, sh.tenant_id, resource
                ),
            ),
        )
    };
    let (client_id, object_id) = match check {
        Check::Missing => {
            return unauthorized("AKV10000: Request is missing a Bearer or PoP token.");
        }
        Check::Invalid => {
            return unauthorized(
                "AKV10032: Invalid issuer. The token was not issued for this vault's tenant.",
            );
        }
        Check::Expired => return unauthorized("AKV10013: The access token has expired."),
        Check::WrongAudience { found } => {
            return unauthorized(&format!(
                "AKV10022: Invalid audience. Expected {resource}, found: {found}."
            ));
        }
        Check::Valid {
            client_id,
            object_id,
        } => (client_id, object_id),
    };
    let denied = lock(&sh.store)
        .vault(&vault.name)
        .denied
        .contains(&client_id.to_ascii_lowercase());
    if denied {
        return Pre::Reply(kv_error_inner(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "The user, group or application 'appid={client_id};oid={object_id};iss=https://sts.windows.net/{}/' does not have {} permission on key vault '{};location={}'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
                sh.tenant_id,
                route.permission(),
                vault.name,
                sh.region
            ),
            "AccessDenied",
        ));
    }

    let fault = lock(&sh.faults).take(key, false);
    match fault {
        Some(FaultKind::Status {
            status,
            retry_after,
        }) => {
            let st = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = kv_error(st, code_for_status(status), "Injected fault.");
            if let Some(s) = retry_after {
                r = r.header(header::RETRY_AFTER, s.to_string());
            }
            return Pre::Reply(r);
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        Some(FaultKind::Hang) => return Pre::Hang,
        Some(FaultKind::Reset) => return Pre::Reset,
        Some(FaultKind::Redirect { status, location }) => {
            let st = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
            return Pre::Reply(Reply {
                status: st,
                headers: vec![(header::LOCATION, location)],
                body: None,
            });
        }
        Some(FaultKind::Challenge { resource }) => {
            return Pre::Reply(
                kv_error(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "AKV10000: Request is missing a Bearer or PoP token.",
                )
                .header(
                    header::WWW_AUTHENTICATE,
                    format!(
                        "Bearer authorization=\"https://{}/{}\", resource=\"{resource}\"",
                        vault.authority_host, sh.tenant_id
                    ),
                ),
            );
        }
        _ => {}
    }

    if parts.method == Method::GET {
        let mut throttle = lock(&sh.throttle);
        let limit = throttle.take(&vault.name, Instant::now());
        let send_retry_after = throttle.config().retry_after;
        drop(throttle);
        if let Err(refused) = limit {
            lock(&sh.counters).throttled += 1;
            // The real service's body (a captured answer); `Retry-After` is the emulator's
            // choice (throttle.rs).
            let reply = kv_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Throttled",
                &format!(
                    "Request was not processed because too many requests were received. Reason: {}",
                    refused.scope.reason()
                ),
            );
            return Pre::Reply(if send_retry_after {
                reply.header(
                    header::RETRY_AFTER,
                    throttle::retry_after_secs(refused.wait).to_string(),
                )
            } else {
                reply
            });
        }
    }
    Pre::Continue
}

fn operate(sh: &Shared, route: &Route, ctx: &Ctx<'_>) -> Reply {
    if let Some(name) = route.object()
        && !store::valid_object_name(name)
    {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            &format!("The request URI contains an invalid name: {name}"),
        );
    }
    match route {
        Route::SecretsList => list_secrets(sh, ctx),
        Route::SecretSet(name) => set_secret(sh, ctx, name),
        Route::SecretGet(name, version) => get_secret(sh, ctx, name, version.as_deref()),
        Route::SecretVersions(name) => list_versions(sh, ctx, name),
        Route::SecretDelete(name) => delete_secret(sh, ctx, name),
        Route::DeletedList => deleted_api::list(sh, ctx),
        Route::DeletedGet(name) => deleted_api::get(sh, ctx, name),
        Route::DeletedPurge(name) => deleted_api::purge(sh, ctx, name),
        Route::DeletedRecover(name) => deleted_api::recover(sh, ctx, name),
        Route::CertList => certificates_api::list(sh, ctx),
        Route::CertImport(name) => certificates_api::import(sh, ctx, name),
        Route::CertGet(name, version) => certificates_api::get(sh, ctx, name, version.as_deref()),
        Route::CertVersions(name) => certificates_api::list_versions(sh, ctx, name),
        Route::NotFound => kv_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The requested resource was not found.",
        ),
        Route::MethodNotAllowed => kv_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The requested method is not allowed for this resource.",
        ),
    }
}

pub fn secret_not_found(name: &str, version: Option<&str>) -> Reply {
    let what = match version {
        Some(v) => format!("{name}/{v}"),
        None => name.to_string(),
    };
    kv_error(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        &format!(
            "A secret with (name/id) {what} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    )
}

fn set_secret(sh: &Shared, ctx: &Ctx<'_>, name: &str) -> Reply {
    let body = match json_body(ctx.body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(value) = body.get("value").and_then(Value::as_str) else {
        return bad("Property value is required and must be a string.");
    };
    if value.len() > MAX_SECRET_VALUE {
        return bad("The secret value exceeds the maximum size of 25 KiB.");
    }
    let content_type = match body.get("contentType") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        _ => return bad("Property contentType must be a string."),
    };
    let meta = match parse_meta(&body) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if let Some(r) = deleted_api::conflict_if_deleted(sh, &ctx.vault.name, name) {
        return r;
    }
    let now = now_unix();
    let sv = SecretVersion {
        version: sh.version(),
        value: value.to_string(),
        content_type,
        enabled: meta.enabled,
        nbf: meta.nbf,
        exp: meta.exp,
        created: now,
        updated: now,
        tags: meta.tags,
        managed: false,
        previous_version: None,
    };
    let stored_name = insert_secret(sh, &ctx.vault.name, name, sv.clone());
    Reply::json(
        StatusCode::OK,
        Value::Object(secret_bundle(&ctx.vault.host(), &stored_name, &sv, true)),
    )
}

fn get_secret(sh: &Shared, ctx: &Ctx<'_>, name: &str, version: Option<&str>) -> Reply {
    let mut st = lock(&sh.store);
    let Some(e) = st
        .vault(&ctx.vault.name)
        .secrets
        .get(&name.to_ascii_lowercase())
    else {
        return secret_not_found(name, version);
    };
    let found = match version {
        None => e.latest(),
        Some(v) => e.get(v),
    };
    let Some(s) = found else {
        return secret_not_found(name, version);
    };
    if !s.enabled {
        return kv_error_inner(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Operation get is not allowed on a disabled secret.",
            "SecretDisabled",
        );
    }
    let mut bundle = secret_bundle(&ctx.vault.host(), &e.name, s, true);
    if !api_version_at_least_2025_07(ctx.api_version) {
        bundle.remove("previousVersion");
        return Reply::json(StatusCode::OK, Value::Object(bundle));
    }
    if let Some(out) = ctx.query("outContentType") {
        let current = s.content_type.as_deref().unwrap_or_default();
        if out == certificates_api::CT_PEM && current == certificates_api::CT_PKCS12 && s.managed {
            match certificates_api::pfx_value_as_pem(&s.value) {
                Ok(pem) => {
                    bundle.insert("value".into(), json!(pem));
                    bundle.insert("contentType".into(), json!(out));
                }
                Err(e) => {
                    return kv_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalServerError",
                        &format!("Cannot convert the certificate: {e}"),
                    );
                }
            }
        } else if out != current {
            return bad(&format!(
                "The requested outContentType '{out}' is not supported for this secret; only PFX to PEM conversion is."
            ));
        }
    }
    Reply::json(StatusCode::OK, Value::Object(bundle))
}

/// `previousVersion` and `outContentType` came with api-version 2025-07-01.
fn api_version_at_least_2025_07(v: &str) -> bool {
    !v.starts_with("7.") && v >= "2025-07-01"
}

fn delete_secret(sh: &Shared, ctx: &Ctx<'_>, name: &str) -> Reply {
    let mut st = lock(&sh.store);
    let Some(e) = st
        .vault(&ctx.vault.name)
        .secrets
        .remove(&name.to_ascii_lowercase())
    else {
        return secret_not_found(name, None);
    };
    let now = now_unix();
    let m = deleted_api::deleted_bundle(&ctx.vault.host(), &e, now);
    st.vault(&ctx.vault.name)
        .deleted_secrets
        .insert(name.to_ascii_lowercase(), (e, now));
    Reply::json(StatusCode::OK, Value::Object(m))
}

fn list_secrets(sh: &Shared, ctx: &Ctx<'_>) -> Reply {
    paged(sh, ctx, "/secrets", |vault, host| {
        vault
            .secrets
            .values()
            .filter_map(|e| e.latest().map(|s| secret_item(host, &e.name, s, false)))
            .collect()
    })
}

fn list_versions(sh: &Shared, ctx: &Ctx<'_>, name: &str) -> Reply {
    paged(
        sh,
        ctx,
        &format!("/secrets/{name}/versions"),
        |vault, host| {
            vault
                .secrets
                .get(&name.to_ascii_lowercase())
                .map(|e| {
                    e.versions
                        .iter()
                        .map(|s| secret_item(host, &e.name, s, true))
                        .collect()
                })
                .unwrap_or_default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let g = Method::GET;
        assert_eq!(Route::parse(&g, "/secrets"), Route::SecretsList);
        assert_eq!(Route::parse(&g, "/secrets/"), Route::SecretsList);
        assert_eq!(
            Route::parse(&g, "/secrets/a"),
            Route::SecretGet("a".into(), None)
        );
        assert_eq!(
            Route::parse(&g, "/secrets/a/"),
            Route::SecretGet("a".into(), None)
        );
        assert_eq!(
            Route::parse(&g, "/secrets/a/v1"),
            Route::SecretGet("a".into(), Some("v1".into()))
        );
        assert_eq!(
            Route::parse(&g, "/secrets/a/versions"),
            Route::SecretVersions("a".into())
        );
        assert_eq!(
            Route::parse(&Method::PUT, "/secrets/a"),
            Route::SecretSet("a".into())
        );
        assert_eq!(
            Route::parse(&Method::POST, "/secrets/a"),
            Route::MethodNotAllowed
        );
        assert_eq!(
            Route::parse(&Method::POST, "/certificates/c/import"),
            Route::CertImport("c".into())
        );
        assert_eq!(Route::parse(&g, "/keys/a"), Route::NotFound);
    }
}
