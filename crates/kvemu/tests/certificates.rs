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
    let names: Vec<&str> = seeded.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["seed-rsa-pfx", "seed-ec-pfx", "seed-rsa-pem"]);
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
    // PFX-served certificates rotate too, keeping their form.
    let r = env.emu.rotate_certificate("vault1", "seed-ec-pfx").unwrap();
    assert_eq!(r.content_type, "application/x-pkcs12");
    let (_, c) = json(
        env.get(&env.v1("/certificates/seed-ec-pfx?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!(c["policy"]["key_props"]["kty"], "EC");
    assert_eq!(c["x5t"], r.x5t);
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

async fn import_http(
    env: &Env,
    tok: &str,
    name: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = env
        .http
        .post(env.v1(&format!("/certificates/{name}/import?api-version=7.4")))
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    json(r).await
}

#[tokio::test]
async fn pfx_import_in_every_form_serves_key_vaults_pfx() {
    let env = start().await;
    let tok = env.token().await;
    let pki = kvemu::seed::TestPki::generate().unwrap();
    let rsa = pki
        .issue(
            "rsa.example.test",
            &["rsa.example.test".into()],
            kvemu::seed::LeafKey::Rsa2048,
            90,
        )
        .unwrap();
    let ec = pki
        .issue(
            "ec.example.test",
            &["ec.example.test".into()],
            kvemu::seed::LeafKey::EcP256,
            90,
        )
        .unwrap();
    let chain: Vec<&[u8]> = rsa.chain.iter().map(Vec::as_slice).collect();
    let with_pwd = akvsync_pkcs12::encode(
        &chain,
        &rsa.key_pkcs8,
        &akvsync_pkcs12::EncodeOptions::openssl_modern().with_password("s3cret"),
    )
    .unwrap();
    let cases: Vec<(&str, &kvemu::seed::Issued, Vec<u8>, Option<&str>)> = vec![
        (
            "legacy",
            &rsa,
            rsa.pfx(kvemu::PfxForm::KeyVault).unwrap(),
            None,
        ),
        ("modern", &ec, ec.pfx(kvemu::PfxForm::Modern).unwrap(), None),
        ("password", &rsa, with_pwd.clone(), Some("s3cret")),
    ];
    for (name, issued, pfx, pwd) in cases {
        let mut body = json!({"value": b64(&pfx)});
        if let Some(p) = pwd {
            body["pwd"] = json!(p);
        }
        let (s, cert) = import_http(&env, &tok, name, body).await;
        assert_eq!(s, 200, "{name}: {cert}");
        let cer = base64::engine::general_purpose::STANDARD
            .decode(cert["cer"].as_str().unwrap())
            .unwrap();
        assert_eq!(cer, issued.chain[0], "{name}");
        assert_eq!(
            cert["policy"]["secret_props"]["contentType"],
            "application/x-pkcs12"
        );
        let (_, sec) = json(
            env.get(&env.v1(&format!("/secrets/{name}?api-version=7.4")), &tok)
                .await,
        )
        .await;
        assert_eq!(sec["contentType"], "application/x-pkcs12");
        assert_eq!(sec["managed"], true);
        // Served in Key Vault's own form: decodes with a zero-length password,
        // localKeyId 01 00 00 00, a GUID friendly name, CSP name only for RSA.
        let served = base64::engine::general_purpose::STANDARD
            .decode(sec["value"].as_str().unwrap())
            .unwrap();
        let d = akvsync_pkcs12::decode(&served, None).unwrap();
        assert_eq!(d.certificates.len(), 3, "{name}: chain");
        assert_eq!(d.certificates[0].der, issued.chain[0]);
        assert_eq!(d.keys.len(), 1);
        assert_eq!(
            &d.keys[0].pkcs8_der[..],
            &issued.key_pkcs8[..],
            "{name}: key"
        );
        assert_eq!(d.keys[0].local_key_id.as_deref(), Some(&[1u8, 0, 0, 0][..]));
        assert_eq!(d.keys[0].friendly_name.as_ref().map(String::len), Some(36));
        let rsa_key = std::ptr::eq(issued, &rsa);
        assert_eq!(d.keys[0].csp_name.is_some(), rsa_key, "{name}: CSP name");
        // 2025-07-01: on request, the same certificate as PEM, key first.
        let (c, pem) = json(
            env.get(
                &env.v1(&format!(
                    "/secrets/{name}?api-version=2025-07-01&outContentType=application/x-pem-file"
                )),
                &tok,
            )
            .await,
        )
        .await;
        assert_eq!(c, 200);
        assert_eq!(pem["contentType"], "application/x-pem-file");
        assert_eq!(pem["value"].as_str().unwrap(), issued.pem_key_first());
    }
    // A wrong password, and bytes that are not a PFX: 400 BadParameter.
    let (s, v) = import_http(
        &env,
        &tok,
        "bad",
        json!({"value": b64(&with_pwd), "pwd": "wrong"}),
    )
    .await;
    assert_eq!((s, error_code(&v)), (400, "BadParameter"), "{v}");
    let (s, v) = import_http(
        &env,
        &tok,
        "bad",
        json!({"value": b64([0x30u8, 0x03, 0x02, 0x01, 0x03])}),
    )
    .await;
    assert_eq!((s, error_code(&v)), (400, "BadParameter"), "{v}");
    // PFX uploaded, served as PEM (policy), and PEM uploaded, served as PFX.
    let (s, _) = import_http(
        &env,
        &tok,
        "pfx-as-pem",
        json!({"value": b64(rsa.pfx(kvemu::PfxForm::Modern).unwrap()), "policy": {"secret_props": {"contentType": "application/x-pem-file"}}}),
    )
    .await;
    assert_eq!(s, 200);
    let (_, sec) = json(
        env.get(&env.v1("/secrets/pfx-as-pem?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!(sec["value"].as_str().unwrap(), rsa.pem_key_first());
    let (s, _) = import_http(
        &env,
        &tok,
        "pem-as-pfx",
        json!({"value": b64(ec.pem_key_first())}),
    )
    .await;
    assert_eq!(s, 200);
    let (_, sec) = json(
        env.get(&env.v1("/secrets/pem-as-pfx?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!(sec["contentType"], "application/x-pkcs12");
    let served = base64::engine::general_purpose::STANDARD
        .decode(sec["value"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        akvsync_pkcs12::decode(&served, None).unwrap().certificates[0].der,
        ec.chain[0]
    );
    env.emu.shutdown().await;
}
