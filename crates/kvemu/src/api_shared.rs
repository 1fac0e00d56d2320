//! What the vault API's operations share (secrets, certificates, deleted items): the request
//! context, the `BadParameter` reply, attributes and tags from a request body, a JSON body,
//! adding a secret version, and paging with `nextLink`. Below all three API modules, so that
//! none of them imports another.

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::respond::{Reply, kv_error};
use crate::state::{Shared, lock};
use crate::store::{Entry, SecretVersion};
use crate::vault_host::VaultHost;

/// The service's limit on tags per object.
const MAX_TAGS: usize = 15;

/// What a handler needs about the request.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub vault: &'a VaultHost,
    /// The Host header as received (with port), for `nextLink`.
    pub host_header: &'a str,
    pub api_version: &'a str,
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Ctx<'_> {
    pub fn query(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

pub fn bad(msg: &str) -> Reply {
    kv_error(StatusCode::BAD_REQUEST, "BadParameter", msg)
}

/// Attributes and tags from a request body (`attributes.enabled/nbf/exp`, `tags`).
pub struct Meta {
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub tags: Option<Map<String, Value>>,
}

pub fn parse_meta(body: &Map<String, Value>) -> Result<Meta, Reply> {
    let mut meta = Meta {
        enabled: true,
        nbf: None,
        exp: None,
        tags: None,
    };
    if let Some(a) = body.get("attributes") {
        let Value::Object(a) = a else {
            return Err(bad("Property attributes must be an object."));
        };
        if let Some(e) = a.get("enabled") {
            meta.enabled = e
                .as_bool()
                .ok_or_else(|| bad("Property attributes.enabled must be a boolean."))?;
        }
        for (k, slot) in [("nbf", &mut meta.nbf), ("exp", &mut meta.exp)] {
            if let Some(v) = a.get(k).filter(|v| !v.is_null()) {
                *slot =
                    Some(v.as_i64().ok_or_else(|| {
                        bad(&format!("Property attributes.{k} must be an integer."))
                    })?);
            }
        }
    }
    if let Some(t) = body.get("tags").filter(|t| !t.is_null()) {
        let Value::Object(t) = t else {
            return Err(bad("Property tags must be an object."));
        };
        if t.len() > MAX_TAGS || t.values().any(|v| !v.is_string()) {
            return Err(bad("Tags must be at most 15 string values."));
        }
        meta.tags = Some(t.clone());
    }
    Ok(meta)
}

pub fn json_body(body: &[u8]) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(bad("The request body is not a valid JSON object.")),
    }
}

/// Adds a version; returns the name as first created.
pub fn insert_secret(sh: &Shared, vault: &str, name: &str, sv: SecretVersion) -> String {
    let mut st = lock(&sh.store);
    let e = st
        .vault(vault)
        .secrets
        .entry(name.to_ascii_lowercase())
        .or_insert_with(|| Entry {
            name: name.to_string(),
            versions: Vec::new(),
        });
    e.versions.push(sv);
    e.name.clone()
}

/// Page size from `maxresults` (1–25) or the configured default.
fn page_size(sh: &Shared, ctx: &Ctx<'_>) -> Result<usize, Reply> {
    match ctx.query("maxresults") {
        None => Ok(sh.page_size.load(std::sync::atomic::Ordering::Relaxed)),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=25).contains(&n) => Ok(n),
            _ => Err(bad("The value of maxresults must be between 1 and 25.")),
        },
    }
}

/// Offset encoded in `$skiptoken` (opaque to clients, like the service's).
fn skip(ctx: &Ctx<'_>) -> Result<usize, Reply> {
    let Some(tok) = ctx.query("$skiptoken") else {
        return Ok(0);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("NextMarker")?.as_str()?.parse().ok())
        .ok_or_else(|| bad("The $skiptoken is invalid."))
}

/// One page of `items` with the service's `nextLink` (null on the last page).
fn page(ctx: &Ctx<'_>, path: &str, items: Vec<Value>, offset: usize, size: usize) -> Reply {
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(offset).take(size).collect();
    let next = if offset + size < total {
        let tok = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"NextMarker": (offset + size).to_string()}).to_string());
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("api-version", ctx.api_version)
            .append_pair("$skiptoken", &tok)
            .append_pair("maxresults", &size.to_string())
            .finish();
        Value::String(format!("https://{}{path}?{query}", ctx.host_header))
    } else {
        Value::Null
    };
    Reply::json(StatusCode::OK, json!({"value": page, "nextLink": next}))
}

/// A list operation: parses the paging parameters, collects the items of the request's
/// vault under the store lock (`items` gets the vault and its host name), and answers
/// one page with `nextLink`.
pub fn paged(
    sh: &Shared,
    ctx: &Ctx<'_>,
    path: &str,
    items: impl FnOnce(&crate::store::Vault, &str) -> Vec<Value>,
) -> Reply {
    let (size, offset) = match (page_size(sh, ctx), skip(ctx)) {
        (Ok(s), Ok(o)) => (s, o),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let host = ctx.vault.host();
    let items = {
        let mut st = lock(&sh.store);
        items(st.vault(&ctx.vault.name), &host)
    };
    page(ctx, path, items, offset, size)
}
