//! The vaults' contents: secrets and certificates with their versions, the
//! per-vault denied identities, and the JSON shapes the service returns for them.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// `attributes.recoveryLevel` of a vault with soft delete and purge (the default since 2020).
pub const RECOVERY_LEVEL: &str = "Recoverable+Purgeable";
/// `attributes.recoverableDays`: the default soft-delete retention.
pub const RECOVERABLE_DAYS: u32 = 90;

/// One version of a secret.
#[derive(Clone)]
pub struct SecretVersion {
    pub version: String,
    pub value: String,
    pub content_type: Option<String>,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
    pub tags: Option<Map<String, Value>>,
    /// Backs a certificate: `managed: true` and a `kid`.
    pub managed: bool,
    /// The certificate's previous version (`previousVersion`, api-version 2025-07-01 and later).
    pub previous_version: Option<String>,
}

impl fmt::Debug for SecretVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretVersion")
            .field("version", &self.version)
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .field("content_type", &self.content_type)
            .field("enabled", &self.enabled)
            .field("managed", &self.managed)
            .finish_non_exhaustive()
    }
}

/// One version of a certificate (its public part; the key lives in the managed secret).
#[derive(Debug, Clone)]
pub struct CertVersion {
    pub version: String,
    pub cer: Vec<u8>,
    /// base64url SHA-1 of `cer`, as the service's `x5t`.
    pub x5t: String,
    pub nbf: i64,
    pub exp: i64,
    pub created: i64,
    pub updated: i64,
    pub enabled: bool,
    pub tags: Option<Map<String, Value>>,
    pub content_type: String,
    pub subject: String,
    pub dns_names: Vec<String>,
    pub key_type: String,
    pub key_size: Option<u32>,
    pub curve: Option<String>,
    pub ekus: Vec<String>,
    pub key_usage: Vec<String>,
}

/// An object (secret or certificate) name with its versions, oldest first.
#[derive(Debug, Clone)]
pub struct Entry<V> {
    /// The name as first created (ids keep this casing; lookups ignore case).
    pub name: String,
    pub versions: Vec<V>,
}

/// One vault.
#[derive(Debug, Default)]
pub struct Vault {
    pub secrets: BTreeMap<String, Entry<SecretVersion>>,
    pub certificates: BTreeMap<String, Entry<CertVersion>>,
    /// Client ids (lowercase) refused with 403 on this vault.
    pub denied: HashSet<String>,
    /// Soft-deleted secrets (recoverable or purgeable) with their deletion time.
    pub deleted_secrets: BTreeMap<String, (Entry<SecretVersion>, i64)>,
}

/// All vaults, created on first use.
#[derive(Debug, Default)]
pub struct Store {
    pub vaults: BTreeMap<String, Vault>,
}

impl Store {
    pub fn vault(&mut self, name: &str) -> &mut Vault {
        self.vaults.entry(name.to_ascii_lowercase()).or_default()
    }
}

/// Secret and certificate names: 1–127 of `[0-9A-Za-z-]`.
pub fn valid_object_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl<V> Entry<V> {
    pub fn latest(&self) -> Option<&V> {
        self.versions.last()
    }
}

pub trait Versioned {
    fn version(&self) -> &str;
}
impl Versioned for SecretVersion {
    fn version(&self) -> &str {
        &self.version
    }
}
impl Versioned for CertVersion {
    fn version(&self) -> &str {
        &self.version
    }
}

impl<V: Versioned> Entry<V> {
    pub fn get(&self, version: &str) -> Option<&V> {
        self.versions
            .iter()
            .find(|v| v.version().eq_ignore_ascii_case(version))
    }
}

fn attributes(
    enabled: bool,
    nbf: Option<i64>,
    exp: Option<i64>,
    created: i64,
    updated: i64,
) -> Value {
    let mut a = Map::new();
    a.insert("enabled".into(), json!(enabled));
    if let Some(nbf) = nbf {
        a.insert("nbf".into(), json!(nbf));
    }
    if let Some(exp) = exp {
        a.insert("exp".into(), json!(exp));
    }
    a.insert("created".into(), json!(created));
    a.insert("updated".into(), json!(updated));
    a.insert("recoveryLevel".into(), json!(RECOVERY_LEVEL));
    a.insert("recoverableDays".into(), json!(RECOVERABLE_DAYS));
    Value::Object(a)
}

/// `SecretBundle` (get/set) or, with `with_value = false`, the fields of a
/// deleted bundle; `id` carries the version.
pub fn secret_bundle(
    host: &str,
    name: &str,
    s: &SecretVersion,
    with_value: bool,
) -> Map<String, Value> {
    let mut m = Map::new();
    if with_value {
        m.insert("value".into(), json!(s.value));
    }
    if let Some(ct) = &s.content_type {
        m.insert("contentType".into(), json!(ct));
    }
    m.insert(
        "id".into(),
        json!(format!("https://{host}/secrets/{name}/{}", s.version)),
    );
    if s.managed {
        m.insert("managed".into(), json!(true));
    }
    m.insert(
        "attributes".into(),
        attributes(s.enabled, s.nbf, s.exp, s.created, s.updated),
    );
    if let Some(tags) = &s.tags {
        m.insert("tags".into(), Value::Object(tags.clone()));
    }
    if let Some(p) = &s.previous_version {
        m.insert("previousVersion".into(), json!(p));
    }
    if s.managed {
        m.insert(
            "kid".into(),
            json!(format!("https://{host}/keys/{name}/{}", s.version)),
        );
    }
    m
}

/// `SecretItem` of a list: `id` without the version for `/secrets`, with it for
/// `/secrets/{name}/versions`.
pub fn secret_item(host: &str, name: &str, s: &SecretVersion, with_version: bool) -> Value {
    let mut m = Map::new();
    let id = if with_version {
        format!("https://{host}/secrets/{name}/{}", s.version)
    } else {
        format!("https://{host}/secrets/{name}")
    };
    m.insert("id".into(), json!(id));
    m.insert(
        "attributes".into(),
        attributes(s.enabled, s.nbf, s.exp, s.created, s.updated),
    );
    if let Some(tags) = &s.tags {
        m.insert("tags".into(), Value::Object(tags.clone()));
    }
    if let Some(ct) = &s.content_type {
        m.insert("contentType".into(), json!(ct));
    }
    if s.managed {
        m.insert("managed".into(), json!(true));
    }
    Value::Object(m)
}

/// The certificate policy the service reports for an imported certificate.
pub fn cert_policy(host: &str, name: &str, c: &CertVersion) -> Value {
    let mut key_props = Map::new();
    key_props.insert("exportable".into(), json!(true));
    key_props.insert("kty".into(), json!(c.key_type));
    if let Some(size) = c.key_size {
        key_props.insert("key_size".into(), json!(size));
    }
    if let Some(crv) = &c.curve {
        key_props.insert("crv".into(), json!(crv));
    }
    key_props.insert("reuse_key".into(), json!(false));
    let mut x509 = Map::new();
    x509.insert("subject".into(), json!(c.subject));
    if !c.dns_names.is_empty() {
        x509.insert("sans".into(), json!({"dns_names": c.dns_names}));
    }
    x509.insert("ekus".into(), json!(c.ekus));
    x509.insert("key_usage".into(), json!(c.key_usage));
    x509.insert(
        "validity_months".into(),
        json!(((c.exp - c.nbf).max(0) / (30 * 86400)).max(1)),
    );
    json!({
        "id": format!("https://{host}/certificates/{name}/policy"),
        "key_props": key_props,
        "secret_props": {"contentType": c.content_type},
        "x509_props": x509,
        "lifetime_actions": [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "EmailContacts"}}],
        "issuer": {"name": "Unknown"},
        "attributes": {"enabled": true, "created": c.created, "updated": c.updated},
    })
}

/// `CertificateBundle` (import/get).
pub fn cert_bundle(host: &str, name: &str, c: &CertVersion) -> Value {
    use base64::Engine as _;
    let mut m = Map::new();
    m.insert(
        "id".into(),
        json!(format!("https://{host}/certificates/{name}/{}", c.version)),
    );
    m.insert(
        "kid".into(),
        json!(format!("https://{host}/keys/{name}/{}", c.version)),
    );
    m.insert(
        "sid".into(),
        json!(format!("https://{host}/secrets/{name}/{}", c.version)),
    );
    m.insert("x5t".into(), json!(c.x5t));
    m.insert(
        "cer".into(),
        json!(base64::engine::general_purpose::STANDARD.encode(&c.cer)),
    );
    m.insert(
        "attributes".into(),
        attributes(c.enabled, Some(c.nbf), Some(c.exp), c.created, c.updated),
    );
    m.insert("policy".into(), cert_policy(host, name, c));
    if let Some(tags) = &c.tags {
        m.insert("tags".into(), Value::Object(tags.clone()));
    }
    Value::Object(m)
}

/// `CertificateItem` of a list.
pub fn cert_item(host: &str, name: &str, c: &CertVersion, with_version: bool) -> Value {
    let id = if with_version {
        format!("https://{host}/certificates/{name}/{}", c.version)
    } else {
        format!("https://{host}/certificates/{name}")
    };
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("x5t".into(), json!(c.x5t));
    m.insert(
        "attributes".into(),
        attributes(c.enabled, Some(c.nbf), Some(c.exp), c.created, c.updated),
    );
    if let Some(tags) = &c.tags {
        m.insert("tags".into(), Value::Object(tags.clone()));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert!(valid_object_name("cert-0"));
        assert!(!valid_object_name("a_b"));
        assert!(!valid_object_name(&"a".repeat(128)));
    }

    #[test]
    fn debug_hides_value() {
        let s = SecretVersion {
            version: "v".into(),
            value: "hunter2".into(),
            content_type: None,
            enabled: true,
            nbf: None,
            exp: None,
            created: 1,
            updated: 1,
            tags: None,
            managed: false,
            previous_version: None,
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
