//! Operations on the emulator's state used both by the Rust API
//! ([`crate::Emulator`]) and by the HTTP control endpoint of `kvemu serve`:
//! setting secrets, importing, seeding and rotating certificates.

use crate::certificates_api::{self, CT_PEM, Imported};
use crate::seed::{self, LeafKey, TestPki, Upload};
use crate::state::{Shared, lock};
use crate::store::{self, SecretVersion};
use crate::vault_host::{self, VaultHost};
use crate::{Error, SecretRef, SecretSpec, ids};
use base64::Engine as _;
use serde_json::{Value, json};

fn rejected(message: String) -> Error {
    Error::Rejected {
        status: 400,
        code: "BadParameter".into(),
        message,
    }
}

pub fn vault_host(vault: &str) -> Result<VaultHost, Error> {
    vault_host::parse(&format!("{vault}.vault.azure.net"))
        .ok_or_else(|| rejected(format!("invalid vault name {vault}")))
}

pub fn set_secret_with(
    sh: &Shared,
    vault: &str,
    name: &str,
    spec: SecretSpec,
) -> Result<SecretRef, Error> {
    let host = vault_host(vault)?;
    if !store::valid_object_name(name) {
        return Err(rejected(format!("invalid secret name {name}")));
    }
    let now = ids::now_unix();
    let version = sh.version();
    let sv = SecretVersion {
        version: version.clone(),
        value: spec.value,
        content_type: spec.content_type,
        enabled: spec.enabled.unwrap_or(true),
        nbf: spec.nbf,
        exp: spec.exp,
        created: now,
        updated: now,
        tags: spec.tags,
        managed: false,
        previous_version: None,
    };
    let stored = crate::api_shared::insert_secret(sh, &host.name, name, sv);
    Ok(SecretRef {
        id: format!("https://{}/secrets/{stored}/{version}", host.host()),
        version,
    })
}

pub fn import_certificate_json(
    sh: &Shared,
    vault: &str,
    name: &str,
    body: &Value,
) -> Result<Imported, Error> {
    let host = vault_host(vault)?;
    if !store::valid_object_name(name) {
        return Err(rejected(format!("invalid certificate name {name}")));
    }
    let Value::Object(m) = body else {
        return Err(rejected("body must be an object".into()));
    };
    Ok(certificates_api::do_import(sh, &host, name, m)?)
}

pub fn import_pem(
    sh: &Shared,
    vault: &str,
    name: &str,
    pem: &str,
    content_type: &str,
) -> Result<Imported, Error> {
    let body = json!({
        "value": base64::engine::general_purpose::STANDARD.encode(pem),
        "policy": {"secret_props": {"contentType": content_type}},
    });
    import_certificate_json(sh, vault, name, &body)
}

pub fn import_pfx(
    sh: &Shared,
    vault: &str,
    name: &str,
    pfx_der: &[u8],
    password: Option<&str>,
    content_type: &str,
) -> Result<Imported, Error> {
    let mut body = json!({
        "value": base64::engine::general_purpose::STANDARD.encode(pfx_der),
        "policy": {"secret_props": {"contentType": content_type}},
    });
    if let Some(p) = password {
        body["pwd"] = json!(p);
    }
    import_certificate_json(sh, vault, name, &body)
}

/// The test PKI, generated on first use.
pub fn test_pki(sh: &Shared) -> Result<&TestPki, Error> {
    if let Some(p) = sh.pki.get() {
        return Ok(p);
    }
    let p = TestPki::generate()?;
    Ok(sh.pki.get_or_init(|| p))
}

/// Issues a fresh leaf for `name` and imports it as a new version.
pub fn import_new(
    sh: &Shared,
    vault: &str,
    name: &str,
    key: LeafKey,
    upload: Upload,
) -> Result<Imported, Error> {
    let pki = test_pki(sh)?;
    let dns = vec![format!("{name}.example.test")];
    let issued = pki.issue(&format!("{name}.example.test"), &dns, key, 365)?;
    match upload {
        Upload::Pem => import_pem(sh, vault, name, &issued.pem_key_first(), CT_PEM),
        Upload::PfxLegacy => import_pfx(
            sh,
            vault,
            name,
            &issued.pfx(crate::pfx::PfxForm::KeyVault)?,
            None,
            certificates_api::CT_PKCS12,
        ),
        Upload::PfxModern => import_pfx(
            sh,
            vault,
            name,
            &issued.pfx(crate::pfx::PfxForm::Modern)?,
            None,
            certificates_api::CT_PKCS12,
        ),
    }
}

/// Seeds [`seed::SEEDED`].
pub fn seed(sh: &Shared, vault: &str) -> Result<Vec<Imported>, Error> {
    let mut out = Vec::new();
    for (name, key, upload) in seed::SEEDED {
        out.push(import_new(sh, vault, name, key, upload)?);
    }
    Ok(out)
}

/// A new version of `name` with a fresh leaf of the same key type and served
/// content type (RSA-2048 PEM if the certificate does not exist yet).
pub fn rotate_certificate(sh: &Shared, vault: &str, name: &str) -> Result<Imported, Error> {
    let current = lock(&sh.store)
        .vault(vault)
        .certificates
        .get(&name.to_ascii_lowercase())
        .and_then(|e| {
            e.latest()
                .map(|c| (c.key_type.clone(), c.content_type.clone()))
        });
    let (key, upload) = match current {
        Some((kty, ct)) => (
            if kty == "EC" {
                LeafKey::EcP256
            } else {
                LeafKey::Rsa2048
            },
            if ct == CT_PEM {
                Upload::Pem
            } else {
                Upload::PfxLegacy
            },
        ),
        None => (LeafKey::Rsa2048, Upload::Pem),
    };
    import_new(sh, vault, name, key, upload)
}
