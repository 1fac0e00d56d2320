//! The emulator's answers against a response recorded from the real service:
//! same field names, types and nesting.

use crate::common::*;
use serde_json::Value;

fn recorded() -> Value {
    serde_json::from_str(include_str!("../data/get-secret-pkcs12.json")).unwrap()
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
    let env = start_signed_in().await;
    let pki = env.emu.test_pki().unwrap();
    let sans = ["shape.test".into()];
    let issued = pki.issue("shape", &sans, kvemu::seed::LeafKey::Rsa2048, 30);
    let pem = issued.unwrap().pem_key_first();
    env.emu
        .import_pem("vault1", "shape", &pem, kvemu::CT_PEM)
        .unwrap();
    let ours = env.get("/secrets/shape/?api-version=7.4").await;
    let ours = ours.expect(200, "", "managed secret").body;
    assert_eq!(shape(&ours), shape(&recorded()), "ours: {ours:#}");
    // Ids have the recorded form: https://<vault>/secrets|keys/<name>/<32 hex>.
    let rec = recorded();
    for (k, kind) in [("id", "secrets"), ("kid", "keys")] {
        let (r, o) = (rec[k].as_str().unwrap(), ours[k].as_str().unwrap());
        let form = format!(".vault.azure.net/{kind}/");
        assert!(r.contains(&form) && o.contains(&form));
        assert_eq!(last_segment(r).len(), last_segment(o).len());
    }
    env.emu.shutdown().await;
}

/// Key Vault's own PFX (zero-length password) imports, with the service's `x5t`.
#[tokio::test]
async fn recorded_key_vault_pfx_imports_with_the_service_x5t() {
    let env = start_signed_in().await;
    let rec = recorded();
    let der = unb64(rec["value"].as_str().unwrap());
    let imp = env
        .emu
        .import_pfx("vault1", "recorded", &der, None, kvemu::CT_PKCS12);
    let imp = imp.unwrap();
    assert_eq!(imp.x5t, "q_RvEU8m6RjDjaZW_YWARMVna-Q");
    assert_eq!(imp.thumbprint, "ABF46F114F26E918C38DA656FD858044C5676BE4");
    let s = env.get("/secrets/recorded?api-version=7.4").await;
    assert_eq!(s["contentType"], "application/x-pkcs12");
    assert_eq!(shape(&s.body), shape(&rec), "ours: {:#}", s.body);
    // 2025-07-01: served as PEM on request, key first.
    let as_pem = "/secrets/recorded?api-version=2025-07-01&outContentType=application/x-pem-file";
    let p = env.get(as_pem).await.expect(200, "", "as PEM");
    assert!(p.str("value").starts_with("-----BEGIN PRIVATE KEY-----"));
    env.emu.shutdown().await;
}
