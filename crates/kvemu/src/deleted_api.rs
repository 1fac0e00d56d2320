//! Soft delete of secrets: deleted secrets stay recoverable or purgeable
//! (`/deletedsecrets`), and their names cannot be reused meanwhile.

use crate::api_shared::{Ctx, paged};
use crate::respond::{Reply, kv_error};
use crate::state::{Shared, lock};
use crate::store::{self, Entry, SecretVersion, secret_bundle};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

/// `DeletedSecretBundle` fields (no value).
pub fn deleted_bundle(host: &str, e: &Entry<SecretVersion>, deleted: i64) -> Map<String, Value> {
    let latest = e.latest().expect("entries have versions");
    let mut m = secret_bundle(host, &e.name, latest, false);
    m.insert(
        "recoveryId".into(),
        json!(format!("https://{host}/deletedsecrets/{}", e.name)),
    );
    m.insert("deletedDate".into(), json!(deleted));
    m.insert(
        "scheduledPurgeDate".into(),
        json!(deleted + i64::from(store::RECOVERABLE_DAYS) * 86400),
    );
    m
}

fn not_found(name: &str) -> Reply {
    kv_error(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        &format!("Deleted Secret not found: {name}"),
    )
}

/// 409 when `name` is a deleted secret (its name cannot be reused until purged or recovered).
pub fn conflict_if_deleted(sh: &Shared, vault: &str, name: &str) -> Option<Reply> {
    let deleted = lock(&sh.store)
        .vault(vault)
        .deleted_secrets
        .contains_key(&name.to_ascii_lowercase());
    deleted.then(|| {
        kv_error(
            StatusCode::CONFLICT,
            "Conflict",
            &format!("Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."),
        )
    })
}

pub fn get(sh: &Shared, ctx: &Ctx<'_>, name: &str) -> Reply {
    let mut st = lock(&sh.store);
    match st
        .vault(&ctx.vault.name)
        .deleted_secrets
        .get(&name.to_ascii_lowercase())
    {
        Some((e, when)) => Reply::json(
            StatusCode::OK,
            Value::Object(deleted_bundle(&ctx.vault.host(), e, *when)),
        ),
        None => not_found(name),
    }
}

pub fn purge(sh: &Shared, ctx: &Ctx<'_>, name: &str) -> Reply {
    let removed = lock(&sh.store)
        .vault(&ctx.vault.name)
        .deleted_secrets
        .remove(&name.to_ascii_lowercase());
    match removed {
        Some(_) => Reply {
            status: StatusCode::NO_CONTENT,
            headers: Vec::new(),
            body: None,
        },
        None => not_found(name),
    }
}

pub fn recover(sh: &Shared, ctx: &Ctx<'_>, name: &str) -> Reply {
    let mut st = lock(&sh.store);
    let v = st.vault(&ctx.vault.name);
    let Some((e, _)) = v.deleted_secrets.remove(&name.to_ascii_lowercase()) else {
        return not_found(name);
    };
    let host = ctx.vault.host();
    let m = secret_bundle(&host, &e.name, e.latest().expect("versions"), false);
    v.secrets.insert(name.to_ascii_lowercase(), e);
    Reply::json(StatusCode::OK, Value::Object(m))
}

pub fn list(sh: &Shared, ctx: &Ctx<'_>) -> Reply {
    paged(sh, ctx, "/deletedsecrets", |vault, host| {
        vault
            .deleted_secrets
            .values()
            .map(|(e, when)| {
                let mut m = deleted_bundle(host, e, *when);
                m.insert(
                    "id".into(),
                    json!(format!("https://{host}/secrets/{}", e.name)),
                );
                m.remove("kid");
                Value::Object(m)
            })
            .collect()
    })
}
