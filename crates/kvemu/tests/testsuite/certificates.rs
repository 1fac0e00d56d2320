//! Certificate import over HTTPS (PEM text, base64 PEM; PFX once
//! `akvsync-pkcs12` is linked): the certificate and its managed secret share
//! the version, `kid`, `managed: true`, `contentType`; get and list versions;
//! rotation and seeding.

use crate::common::*;
use kvemu::seed::{Issued, LeafKey, TestPki};
use kvemu::{CT_PEM, PfxForm};
use sha1::{Digest, Sha1};

const PEM_FILE: &str = "application/x-pem-file";
const PKCS12: &str = "application/x-pkcs12";
const BASE: &str = "https://vault1.vault.azure.net";

/// A leaf for `cn` (its only DNS name), issued by `pki`.
fn issue(pki: &TestPki, cn: &str, key: LeafKey, days: i64) -> Issued {
    pki.issue(cn, &[cn.into()], key, days).unwrap()
}

/// A body whose policy asks for the managed secret as `content_type`.
fn with_policy(value: String, content_type: &str) -> Value {
    json!({"value": value, "policy": {"secret_props": {"contentType": content_type}}})
}

/// `POST /certificates/{name}/import` on vault1.
async fn import(env: &Env, name: &str, body: Value) -> Reply {
    let path = format!("/certificates/{name}/import?api-version=7.4");
    env.call(Method::POST, &path).json(&body).reply().await
}

#[tokio::test]
async fn pem_import_creates_certificate_and_managed_secret() {
    let env = start_signed_in().await;
    let pki = TestPki::generate().unwrap();
    let issued = issue(&pki, "web.example.test", LeafKey::Rsa2048, 90);
    // Certificates first and the key last: the import must find the leaf anyway.
    let pem = issued.pem_key_first();
    let end = "-----END PRIVATE KEY-----\n";
    let key_end = pem.find(end).unwrap() + end.len();
    let reordered = format!("{}{}", &pem[key_end..], &pem[..key_end]);
    for (i, value) in [b64(&reordered), reordered.clone()].into_iter().enumerate() {
        let mut body = with_policy(value, PEM_FILE);
        body["tags"] = json!({"app": "web"});
        let cert = import(&env, "web", body).await;
        let cert = cert.expect(200, "", "import");
        let version = cert.version();
        let id = cert.str("id");
        assert!(id.starts_with(&format!("{BASE}/certificates/web/")));
        let cer = unb64(cert.str("cer"));
        assert_eq!(cer, issued.chain[0], "cer is the leaf");
        use base64::Engine as _;
        let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha1::digest(&cer));
        let (ekus, usage) = (
            ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"],
            ["digitalSignature", "keyEncipherment"],
        );
        cert.has(json!({
            "sid": format!("{BASE}/secrets/web/{version}"), "kid": format!("{BASE}/keys/web/{version}"),
            "x5t": x5t,
            "policy": {
                "secret_props": {"contentType": PEM_FILE},
                "key_props": {"kty": "RSA", "key_size": 2048},
                "x509_props": {"subject": "CN=web.example.test", "sans": {"dns_names": ["web.example.test"]},
                               "ekus": ekus, "key_usage": usage}
            }
        }));
        assert!(cert["attributes"]["nbf"].is_i64() && cert["attributes"]["exp"].is_i64());

        let sec = env.get("/secrets/web/?api-version=2025-07-01");
        let sec = sec.await.expect(200, "", "managed secret");
        sec.has(json!({
            "id": format!("{BASE}/secrets/web/{version}"), "kid": cert["kid"], "managed": true,
            "contentType": PEM_FILE, "tags": {"app": "web"}, "attributes": {"exp": cert["attributes"]["exp"]}
        }));
        let value = sec.str("value");
        let key_first = value.starts_with("-----BEGIN PRIVATE KEY-----");
        assert!(key_first, "Key Vault puts the key first");
        let certs = value.matches("BEGIN CERTIFICATE").count();
        assert_eq!(certs, 3, "iteration {i}");
        assert_eq!(value, pem, "key, leaf, intermediate, root");
    }
    let v = env.get("/certificates/web/versions?api-version=7.4");
    assert_eq!(v.await.items().len(), 2);
    let v = env.get("/secrets/web/versions?api-version=7.4").await;
    assert_eq!(v.items().len(), 2);
    assert_eq!(v["value"][0]["managed"], true);
    let v = env.get("/certificates?api-version=7.4").await;
    assert_eq!(v["value"][0]["id"], format!("{BASE}/certificates/web"));
    env.emu.shutdown().await;
}

#[tokio::test]
async fn import_errors() {
    let env = start_signed_in().await;
    let pki = TestPki::generate().unwrap();
    let pem = pki.issue("x", &["x.test".into()], LeafKey::EcP256, 30);
    let pem = pem.unwrap().pem_key_first();
    let certs_only = &pem[pem.find("-----BEGIN CERTIFICATE").unwrap()..];
    for (body, row) in [
        (with_policy(b64(certs_only), PEM_FILE), "no key"),
        (json!({"policy": {}}), "no value"),
        (json!({"value": "%%%"}), "not base64"),
        (with_policy(b64(&pem), "text/plain"), "content type"),
    ] {
        let r = import(&env, "c", body).await;
        r.expect(400, "BadParameter", row);
    }
    env.emu.shutdown().await;
}

#[tokio::test]
async fn seed_and_rotate() {
    let env = start_signed_in().await;
    let seeded = env.emu.seed("vault1").unwrap();
    let names: Vec<&str> = seeded.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["seed-rsa-pfx", "seed-ec-pfx", "seed-rsa-pem"]);
    let pem_secret = "/secrets/seed-rsa-pem?api-version=7.4";
    let v = env.get(pem_secret).await.expect(200, "", "seeded");
    assert_eq!(v["contentType"], PEM_FILE);
    let first = seeded.iter().find(|i| i.name == "seed-rsa-pem").unwrap();
    assert_eq!(v.version(), first.version);
    let rotated = env.emu.rotate_certificate("vault1", "seed-rsa-pem");
    let rotated = rotated.unwrap();
    assert_ne!(rotated.version, first.version);
    assert_ne!(rotated.thumbprint, first.thumbprint);
    assert_eq!(rotated.thumbprint.len(), 40);
    let v = env.get(pem_secret).await;
    assert!(v.str("id").ends_with(&rotated.version));
    assert_eq!(env.emu.secret_versions("vault1", "seed-rsa-pem").len(), 2);
    // PFX-served certificates rotate too, keeping their form.
    let r = env.emu.rotate_certificate("vault1", "seed-ec-pfx").unwrap();
    assert_eq!(r.content_type, PKCS12);
    let c = env.get("/certificates/seed-ec-pfx?api-version=7.4").await;
    c.has(json!({"policy": {"key_props": {"kty": "EC"}}, "x5t": r.x5t}));
    // EC leaf via PEM through the library.
    let ec = issue(env.emu.test_pki().unwrap(), "ec", LeafKey::EcP256, 30);
    let pem = ec.pem_key_first();
    let imp = env.emu.import_pem("vault1", "ec", &pem, CT_PEM).unwrap();
    let c = env.get("/certificates/ec?api-version=7.4").await;
    let key_props = json!({"kty": "EC", "crv": "P-256"});
    c.has(json!({"x5t": imp.x5t, "policy": {"key_props": key_props}}));
    env.emu.shutdown().await;
}

#[tokio::test]
async fn pfx_import_in_every_form_serves_key_vaults_pfx() {
    let env = start_signed_in().await;
    let pki = TestPki::generate().unwrap();
    let rsa = issue(&pki, "rsa.example.test", LeafKey::Rsa2048, 90);
    let ec = issue(&pki, "ec.example.test", LeafKey::EcP256, 90);
    let chain: Vec<&[u8]> = rsa.chain.iter().map(Vec::as_slice).collect();
    let opts = akvsync_pkcs12::EncodeOptions::openssl_modern().with_password("s3cret");
    let with_pwd = akvsync_pkcs12::encode(&chain, &rsa.key_pkcs8, &opts).unwrap();
    let cases = [
        ("legacy", &rsa, rsa.pfx(PfxForm::KeyVault).unwrap(), None),
        ("modern", &ec, ec.pfx(PfxForm::Modern).unwrap(), None),
        ("password", &rsa, with_pwd.clone(), Some("s3cret")),
    ];
    for (name, issued, pfx, pwd) in cases {
        let mut body = json!({"value": b64(&pfx)});
        if let Some(p) = pwd {
            body["pwd"] = json!(p);
        }
        let cert = import(&env, name, body).await.expect(200, "", name);
        assert_eq!(unb64(cert.str("cer")), issued.chain[0], "{name}");
        assert_eq!(cert["policy"]["secret_props"]["contentType"], PKCS12);
        let path = format!("/secrets/{name}?api-version=7.4");
        let sec = env.get(&path).await;
        sec.has(json!({"contentType": PKCS12, "managed": true}));
        // Served in Key Vault's own form: decodes with a zero-length password,
        // localKeyId 01 00 00 00, a GUID friendly name, CSP name only for RSA.
        let d = akvsync_pkcs12::decode(&unb64(sec.str("value")), None).unwrap();
        assert_eq!(d.certificates.len(), 3, "{name}: chain");
        assert_eq!(d.certificates[0].der, issued.chain[0]);
        assert_eq!(d.keys.len(), 1);
        let key = &d.keys[0];
        assert_eq!(&key.pkcs8_der[..], &issued.key_pkcs8[..], "{name}: key");
        assert_eq!(key.local_key_id.as_deref(), Some(&[1u8, 0, 0, 0][..]));
        assert_eq!(key.friendly_name.as_ref().map(String::len), Some(36));
        let rsa_key = std::ptr::eq(issued, &rsa);
        assert_eq!(key.csp_name.is_some(), rsa_key, "{name}: CSP name");
        // 2025-07-01: on request, the same certificate as PEM, key first.
        let path = format!("/secrets/{name}?api-version=2025-07-01&outContentType={PEM_FILE}");
        let pem = env.get(&path).await.expect(200, "", "as PEM");
        assert_eq!(pem["contentType"], PEM_FILE);
        assert_eq!(pem.str("value"), issued.pem_key_first());
    }
    // A wrong password, and bytes that are not a PFX: 400 BadParameter.
    let wrong_pwd = json!({"value": b64(&with_pwd), "pwd": "wrong"});
    let not_pfx = json!({"value": b64([0x30u8, 0x03, 0x02, 0x01, 0x03])});
    for (row, body) in [("wrong password", wrong_pwd), ("not a PFX", not_pfx)] {
        let r = import(&env, "bad", body).await;
        r.expect(400, "BadParameter", row);
    }
    // PFX uploaded, served as PEM (policy), and PEM uploaded, served as PFX.
    let pfx = b64(rsa.pfx(PfxForm::Modern).unwrap());
    let body = with_policy(pfx, PEM_FILE);
    let r = import(&env, "pfx-as-pem", body).await;
    r.expect(200, "", "pfx-as-pem");
    let sec = env.get("/secrets/pfx-as-pem?api-version=7.4").await;
    assert_eq!(sec.str("value"), rsa.pem_key_first());
    let body = json!({"value": b64(ec.pem_key_first())});
    let r = import(&env, "pem-as-pfx", body).await;
    r.expect(200, "", "pem-as-pfx");
    let sec = env.get("/secrets/pem-as-pfx?api-version=7.4").await;
    assert_eq!(sec["contentType"], PKCS12);
    let served = akvsync_pkcs12::decode(&unb64(sec.str("value")), None).unwrap();
    assert_eq!(served.certificates[0].der, ec.chain[0]);
    env.emu.shutdown().await;
}
