//! The emulator's answers against a response recorded from the real service:
//! same field names, types and nesting.

mod common;

use common::*;
use serde_json::Value;

fn recorded() -> Value {
    serde_json::from_str(include_str!("data/get-secret-pkcs12.json")).unwrap()
}

/// Field name → JSON type, recursively, for comparing shapes.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(_) => Value::String("array".into()),
        Value::String(_) => Value::String("string".into()),
        Value::Number(n) if n.is_i64() => Value::String("integer".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Null => Value::String("null".into()),
    }
}

#[tokio::test]
async fn managed_secret_has_the_recorded_shape() {
    let env = start().await;
    let pki = env.emu.test_pki().unwrap();
    let issued = pki
        .issue(
            "shape",
            &["shape.test".into()],
            kvemu::seed::LeafKey::Rsa2048,
            30,
        )
        .unwrap();
    env.emu
        .import_pem("vault1", "shape", &issued.pem_key_first(), kvemu::CT_PEM)
        .unwrap();
    let tok = env.token().await;
    let (s, ours) = json(
        env.get(&env.v1("/secrets/shape/?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(shape(&ours), shape(&recorded()), "ours: {ours:#}");
    // Ids have the recorded form: https://<vault>/secrets|keys/<name>/<32 hex>.
    let rec = recorded();
    for (k, kind) in [("id", "secrets"), ("kid", "keys")] {
        let r = rec[k].as_str().unwrap();
        let o = ours[k].as_str().unwrap();
        assert!(
            r.contains(&format!(".vault.azure.net/{kind}/"))
                && o.contains(&format!(".vault.azure.net/{kind}/"))
        );
        assert_eq!(
            r.rsplit('/').next().unwrap().len(),
            o.rsplit('/').next().unwrap().len()
        );
    }
    env.emu.shutdown().await;
}

/// Key Vault's own PFX (zero-length password) imports, with the service's `x5t`.
#[tokio::test]
async fn recorded_key_vault_pfx_imports_with_the_service_x5t() {
    use base64::Engine as _;
    let env = start().await;
    let rec = recorded();
    let der = base64::engine::general_purpose::STANDARD
        .decode(rec["value"].as_str().unwrap())
        .unwrap();
    let imp = env
        .emu
        .import_pfx("vault1", "recorded", &der, None, kvemu::CT_PKCS12)
        .unwrap();
    assert_eq!(imp.x5t, "q_RvEU8m6RjDjaZW_YWARMVna-Q");
    assert_eq!(imp.thumbprint, "ABF46F114F26E918C38DA656FD858044C5676BE4");
    let tok = env.token().await;
    let (_, s) = json(
        env.get(&env.v1("/secrets/recorded?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!(s["contentType"], "application/x-pkcs12");
    assert_eq!(shape(&s), shape(&rec), "ours: {s:#}");
    // 2025-07-01: served as PEM on request, key first.
    let (c, p) = json(
        env.get(
            &env.v1(
                "/secrets/recorded?api-version=2025-07-01&outContentType=application/x-pem-file",
            ),
            &tok,
        )
        .await,
    )
    .await;
    assert_eq!(c, 200, "{p}");
    assert!(
        p["value"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    env.emu.shutdown().await;
}
