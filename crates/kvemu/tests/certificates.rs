//! Certificate import over HTTPS (PEM text, base64 PEM; PFX once
//! `akvsync-pkcs12` is linked): the certificate and its managed secret share
//! the version, `kid`, `managed: true`, `contentType`; get and list versions;
//! rotation and seeding.

mod common;

use base64::Engine as _;
use common::*;
use serde_json::json;
use sha1::{Digest, Sha1};

fn b64(b: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn pem_import_creates_certificate_and_managed_secret() {
    let env = start().await;
    let tok = env.token().await;
    let pki = kvemu::seed::TestPki::generate().unwrap();
    let issued = pki
        .issue(
            "web.example.test",
            &["web.example.test".into()],
            kvemu::seed::LeafKey::Rsa2048,
            90,
        )
        .unwrap();
    // Certificates first and the key last: the import must find the leaf anyway.
    let pem = issued.pem_key_first();
    let key_end =
        pem.find("-----END PRIVATE KEY-----\n").unwrap() + "-----END PRIVATE KEY-----\n".len();
    let reordered = format!("{}{}", &pem[key_end..], &pem[..key_end]);
    for (i, value) in [b64(&reordered), reordered.clone()].into_iter().enumerate() {
        let r = env
            .http
            .post(env.v1("/certificates/web/import?api-version=7.4"))
            .bearer_auth(&tok)
            .json(&json!({"value": value, "policy": {"secret_props": {"contentType": "application/x-pem-file"}}, "tags": {"app": "web"}}))
            .send()
            .await
            .unwrap();
        let (s, cert) = json(r).await;
        assert_eq!(s, 200, "{cert}");
        let id = cert["id"].as_str().unwrap();
        let version = id.rsplit('/').next().unwrap();
        assert!(id.starts_with("https://vault1.vault.azure.net/certificates/web/"));
        assert_eq!(
            cert["sid"],
            format!("https://vault1.vault.azure.net/secrets/web/{version}")
        );
        assert_eq!(
            cert["kid"],
            format!("https://vault1.vault.azure.net/keys/web/{version}")
        );
        let cer = base64::engine::general_purpose::STANDARD
            .decode(cert["cer"].as_str().unwrap())
            .unwrap();
        assert_eq!(cer, issued.chain[0], "cer is the leaf");
        assert_eq!(
            cert["x5t"],
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha1::digest(&cer))
        );
        assert_eq!(
            cert["policy"]["secret_props"]["contentType"],
            "application/x-pem-file"
        );
        assert_eq!(cert["policy"]["key_props"]["kty"], "RSA");
        assert_eq!(cert["policy"]["key_props"]["key_size"], 2048);
        let x509 = &cert["policy"]["x509_props"];
        assert_eq!(x509["subject"], "CN=web.example.test");
        assert_eq!(x509["sans"]["dns_names"][0], "web.example.test");
        assert_eq!(
            x509["ekus"],
            json!(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"])
        );
        assert_eq!(
            x509["key_usage"],
            json!(["digitalSignature", "keyEncipherment"])
        );
        assert!(cert["attributes"]["nbf"].is_i64() && cert["attributes"]["exp"].is_i64());

        let (s, sec) = json(
            env.get(&env.v1("/secrets/web/?api-version=2025-07-01"), &tok)
                .await,
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(
            sec["id"],
            format!("https://vault1.vault.azure.net/secrets/web/{version}")
        );
        assert_eq!(sec["kid"], cert["kid"]);
        assert_eq!(sec["managed"], true);
        assert_eq!(sec["contentType"], "application/x-pem-file");
        assert_eq!(sec["tags"]["app"], "web");
        assert_eq!(sec["attributes"]["exp"], cert["attributes"]["exp"]);
        let value = sec["value"].as_str().unwrap();
        assert!(
            value.starts_with("-----BEGIN PRIVATE KEY-----"),
            "Key Vault puts the key first"
        );
        assert_eq!(
            value.matches("BEGIN CERTIFICATE").count(),
            3,
            "iteration {i}"
        );
        assert_eq!(
            value,
            issued.pem_key_first(),
            "key, leaf, intermediate, root"
        );
    }
    let (_, v) = json(
        env.get(&env.v1("/certificates/web/versions?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    let (_, v) = json(
        env.get(&env.v1("/secrets/web/versions?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    assert_eq!(v["value"][0]["managed"], true);
    let (_, v) = json(
        env.get(&env.v1("/certificates?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!(
        v["value"][0]["id"],
        "https://vault1.vault.azure.net/certificates/web"
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn import_errors() {
    let env = start().await;
    let tok = env.token().await;
    let pki = kvemu::seed::TestPki::generate().unwrap();
    let issued = pki
        .issue("x", &["x.test".into()], kvemu::seed::LeafKey::EcP256, 30)
        .unwrap();
    let pem = issued.pem_key_first();
    let certs_only = &pem[pem.find("-----BEGIN CERTIFICATE").unwrap()..];
    for (body, what) in [
        (
            json!({"value": b64(certs_only), "policy": {"secret_props": {"contentType": "application/x-pem-file"}}}),
            "no key",
        ),
        (json!({"policy": {}}), "no value"),
        (json!({"value": "%%%"}), "not base64"),
        (
            json!({"value": b64(&pem), "policy": {"secret_props": {"contentType": "text/plain"}}}),
            "content type",
        ),
    ] {
        let r = env
            .http
            .post(env.v1("/certificates/c/import?api-version=7.4"))
            .bearer_auth(&tok)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (s, v) = json(r).await;
        assert_eq!((s, error_code(&v)), (400, "BadParameter"), "{what}: {v}");
    }
    env.emu.shutdown().await;
}

#[tokio::test]
async fn seed_and_rotate() {
    let env = start().await;
    let seeded = env.emu.seed("vault1").unwrap();
    assert!(seeded.iter().any(|i| i.name == "seed-rsa-pem"));
    let tok = env.token().await;
    let (s, v) = json(
        env.get(&env.v1("/secrets/seed-rsa-pem?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["contentType"], "application/x-pem-file");
    let first = seeded
        .iter()
        .find(|i| i.name == "seed-rsa-pem")
        .unwrap()
        .clone();
    assert!(v["id"].as_str().unwrap().ends_with(&first.version));
    let rotated = env
        .emu
        .rotate_certificate("vault1", "seed-rsa-pem")
        .unwrap();
    assert_ne!(rotated.version, first.version);
    assert_ne!(rotated.thumbprint, first.thumbprint);
    assert_eq!(rotated.thumbprint.len(), 40);
    let (_, v) = json(
        env.get(&env.v1("/secrets/seed-rsa-pem?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert!(v["id"].as_str().unwrap().ends_with(&rotated.version));
    assert_eq!(env.emu.secret_versions("vault1", "seed-rsa-pem").len(), 2);
    // EC leaf via PEM through the library.
    let pki = env.emu.test_pki().unwrap();
    let ec = pki
        .issue("ec", &["ec.test".into()], kvemu::seed::LeafKey::EcP256, 30)
        .unwrap();
    let imp = env
        .emu
        .import_pem("vault1", "ec", &ec.pem_key_first(), kvemu::CT_PEM)
        .unwrap();
    let (_, c) = json(
        env.get(&env.v1("/certificates/ec?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!(c["x5t"], imp.x5t);
    assert_eq!(c["policy"]["key_props"]["kty"], "EC");
    assert_eq!(c["policy"]["key_props"]["crv"], "P-256");
    env.emu.shutdown().await;
}
