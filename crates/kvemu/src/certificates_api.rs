//! The certificates operations: import (PFX or PEM; creates a certificate
//! version and its managed secret with the same version), get, list, list versions.

use crate::api_shared::{Ctx, bad, insert_secret, json_body, paged, parse_meta};
use crate::certparse::{self, KeyMaterial};
use crate::ids::now_unix;
use crate::pfx::{self, PfxForm};
use crate::respond::{Reply, kv_error};
use crate::state::{Shared, lock};
use crate::store::{CertVersion, Entry, SecretVersion, cert_bundle, cert_item};
use crate::vault_host::VaultHost;
use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{Map, Value};

pub const CT_PKCS12: &str = "application/x-pkcs12";
pub const CT_PEM: &str = "application/x-pem-file";

fn cert_not_found(name: &str, version: Option<&str>) -> Reply {
    let what = match version {
        Some(v) => format!("{name}/{v}"),
        None => name.to_string(),
    };
    kv_error(
        StatusCode::NOT_FOUND,
        "CertificateNotFound",
        &format!(
            "A certificate with (name/id) {what} was not found in this key vault. If you recently deleted this certificate you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    )
}

/// What an import produced.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The certificate name as stored.
    pub name: String,
    pub version: String,
    pub x5t: String,
    /// SHA-1 thumbprint, 40 uppercase hex digits.
    pub thumbprint: String,
    pub content_type: String,
    pub bundle: Value,
}

/// The import operation on a request body: used by the HTTP handler and by the
/// library (seeding), so both go through the same code.
pub fn do_import(
    sh: &Shared,
    vault: &VaultHost,
    name: &str,
    body: &Map<String, Value>,
) -> Result<Imported, Reply> {
    let Some(value) = body.get("value").and_then(Value::as_str) else {
        return Err(bad("Property value is required and must be a string."));
    };
    let pwd = body
        .get("pwd")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    let content_type = body
        .get("policy")
        .and_then(|p| p.get("secret_props"))
        .and_then(|s| s.get("contentType"))
        .and_then(Value::as_str)
        .unwrap_or(CT_PKCS12)
        .to_string();
    if content_type != CT_PKCS12 && content_type != CT_PEM {
        return Err(bad(&format!("Unsupported content type: {content_type}")));
    }
    let preserve = body
        .get("preserveCertOrder")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let meta = parse_meta(body)?;

    // The value is base64 of a PFX, base64 of PEM text, or PEM text itself.
    let trimmed = value.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(trimmed.split_whitespace().collect::<String>())
        .ok();
    let pem_text = if trimmed.starts_with("-----BEGIN") {
        Some(trimmed.to_string())
    } else {
        decoded
            .as_deref()
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|s| s.trim_start().starts_with("-----BEGIN"))
            .map(str::to_string)
    };
    let (certs, key) = if let Some(text) = pem_text {
        let parts = certparse::parse_pem(&text).map_err(|e| bad(&e))?;
        let Some(key) = parts.key else {
            return Err(bad(
                "The specified PEM X.509 certificate content does not contain a private key.",
            ));
        };
        (parts.certs, key)
    } else {
        let Some(der) = decoded else {
            return Err(bad("The specified value is not valid base64."));
        };
        let parts = pfx::decode(&der, pwd).map_err(|e| {
            bad(&format!(
                "The specified PKCS#12 X.509 certificate content can not be read: {e}"
            ))
        })?;
        let Some(key) = parts.keys.into_iter().next() else {
            return Err(bad(
                "The specified PKCS#12 X.509 certificate content does not contain a private key.",
            ));
        };
        (parts.certs, key)
    };
    let key_public = certparse::public_key_of(&key);
    let chain = if preserve {
        if certs.is_empty() {
            return Err(bad(
                "The certificate content does not contain a certificate.",
            ));
        }
        certs.clone()
    } else {
        certparse::order_chain(&certs, key_public.as_deref()).map_err(|e| bad(&e))?
    };
    let info = certparse::leaf_info(&chain[0]).map_err(|e| bad(&e))?;
    let secret_value = managed_value(&content_type, &chain, &key)?;

    let now = now_unix();
    let version = sh.version();
    let cv = CertVersion {
        version: version.clone(),
        cer: chain[0].clone(),
        x5t: info.x5t.clone(),
        nbf: info.nbf,
        exp: info.exp,
        created: now,
        updated: now,
        enabled: meta.enabled,
        tags: meta.tags.clone(),
        content_type: content_type.clone(),
        subject: info.subject.clone(),
        dns_names: info.dns_names.clone(),
        key_type: info.key_type.clone(),
        key_size: info.key_size,
        curve: info.curve.clone(),
        ekus: info.ekus.clone(),
        key_usage: info.key_usage.clone(),
    };
    let sv = SecretVersion {
        version: version.clone(),
        value: secret_value,
        content_type: Some(content_type.clone()),
        enabled: meta.enabled,
        nbf: Some(info.nbf),
        exp: Some(info.exp),
        created: now,
        updated: now,
        tags: meta.tags,
        managed: true,
        previous_version: None,
    };
    let (stored, previous) = {
        let mut st = lock(&sh.store);
        let e = st
            .vault(&vault.name)
            .certificates
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Entry {
                name: name.to_string(),
                versions: Vec::new(),
            });
        let previous = e.latest().map(|c| c.version.clone());
        e.versions.push(cv.clone());
        (e.name.clone(), previous)
    };
    insert_secret(
        sh,
        &vault.name,
        &stored,
        SecretVersion {
            previous_version: previous,
            ..sv
        },
    );
    Ok(Imported {
        bundle: cert_bundle(&vault.host(), &stored, &cv),
        name: stored,
        version,
        x5t: info.x5t,
        thumbprint: info.sha1_hex,
        content_type,
    })
}

/// The managed secret's value: Key Vault's PFX (base64) or PEM (key first).
fn managed_value(
    content_type: &str,
    chain: &[Vec<u8>],
    key: &KeyMaterial,
) -> Result<String, Reply> {
    if content_type == CT_PEM {
        return Ok(certparse::key_vault_pem(key, chain));
    }
    let pk8 = certparse::to_pkcs8(key);
    match pfx::encode(chain, &pk8.der, PfxForm::KeyVault) {
        Ok(der) => Ok(base64::engine::general_purpose::STANDARD.encode(der)),
        Err(e) => Err(bad(&format!("Cannot produce the PKCS#12 secret: {e}"))),
    }
}

/// `outContentType=application/x-pem-file` on a PFX secret: the same
/// certificate and key as Key Vault's PEM (key first).
pub fn pfx_value_as_pem(value: &str) -> Result<String, String> {
    let der = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|e| format!("stored value is not base64: {e}"))?;
    let parts = pfx::decode(&der, None)?;
    let key = parts.keys.into_iter().next().ok_or("no private key")?;
    let chain = certparse::order_chain(&parts.certs, certparse::public_key_of(&key).as_deref())?;
    Ok(certparse::key_vault_pem(&key, &chain))
}

pub fn import(sh: &Shared, ctx: &Ctx<'_>, name: &str) -> Reply {
    let body = match json_body(ctx.body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match do_import(sh, ctx.vault, name, &body) {
        Ok(i) => Reply::json(StatusCode::OK, i.bundle),
        Err(r) => r,
    }
}

pub fn get(sh: &Shared, ctx: &Ctx<'_>, name: &str, version: Option<&str>) -> Reply {
    let mut st = lock(&sh.store);
    let Some(e) = st
        .vault(&ctx.vault.name)
        .certificates
        .get(&name.to_ascii_lowercase())
    else {
        return cert_not_found(name, version);
    };
    let found = match version {
        None => e.latest(),
        Some(v) => e.get(v),
    };
    match found {
        Some(c) => Reply::json(StatusCode::OK, cert_bundle(&ctx.vault.host(), &e.name, c)),
        None => cert_not_found(name, version),
    }
}

pub fn list(sh: &Shared, ctx: &Ctx<'_>) -> Reply {
    paged(sh, ctx, "/certificates", |vault, host| {
        vault
            .certificates
            .values()
            .filter_map(|e| e.latest().map(|c| cert_item(host, &e.name, c, false)))
            .collect()
    })
}

pub fn list_versions(sh: &Shared, ctx: &Ctx<'_>, name: &str) -> Reply {
    paged(
        sh,
        ctx,
        &format!("/certificates/{name}/versions"),
        |vault, host| {
            vault
                .certificates
                .get(&name.to_ascii_lowercase())
                .map(|e| {
                    e.versions
                        .iter()
                        .map(|c| cert_item(host, &e.name, c, true))
                        .collect()
                })
                .unwrap_or_default()
        },
    )
}
