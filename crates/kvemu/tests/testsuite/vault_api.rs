//! Secrets API over real HTTPS: challenge flow, token validation, access
//! denial, error codes, CRUD, paging, api-version rule, headers, host selection.

use crate::common::*;
use std::time::Duration;

const S1: &str = "/secrets/s1?api-version=7.4";
const OK: &str = "200 - GET /secrets/s1?api-version=7.4";
const UA: &str = "c7373ae5-91c2-4165-8ab6-7381d6e75619";

#[tokio::test]
async fn challenge_then_token_flow() {
    let mut env = start().await;
    let url = "/secrets/s1/?api-version=2026-04-01";
    let text = Some("text/plain");
    env.emu.set_secret("vault1", "s1", "hello", text);
    let r = env.req(Method::GET, url).reply().await;
    let r = r.expect(401, "Unauthorized", "no token");
    let chal = r.header("www-authenticate");
    let authority = "Bearer authorization=\"https://login.windows.net/";
    assert!(chal.starts_with(authority), "{chal}");
    let resource = "resource=\"https://vault.azure.net\"";
    assert!(chal.ends_with(resource), "{chal}");
    let service = "x-ms-keyvault-service-version";
    for h in [service, "x-ms-request-id", "x-ms-keyvault-region"] {
        assert!(r.headers.contains_key(h), "{h}");
    }
    let missing = "AKV10000: Request is missing a Bearer or PoP token.";
    assert_eq!(r["error"]["message"], missing);

    env.token = env.new_token().await;
    let v = env.get(url).await.expect(200, "", "with a token");
    let recovery_level = "Recoverable+Purgeable";
    v.has(json!({"value": "hello", "contentType": text, "attributes": {"recoveryLevel": recovery_level}}));
    let id = "https://vault1.vault.azure.net/secrets/s1/";
    assert!(v.str("id").starts_with(id));
    assert!(v["attributes"]["created"].is_i64());
    assert!(v.body.get("managed").is_none() && v.body.get("kid").is_none());
    // Without the trailing slash too.
    let r = env.call(Method::GET, "/secrets/s1?api-version=7.6");
    let r = r.header("x-ms-client-request-id", "abc");
    let r = r.reply().await.expect(200, "", "no trailing slash");
    assert_eq!(r.header("x-ms-client-request-id"), "abc");
    env.emu.shutdown().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_challenge() {
    let env = start().await;
    env.emu.set_secret("vault1", "s1", "x", None);
    let cn = env.token_for(None, "https://vault.azure.cn").await;
    let cn = format!("Bearer {cn}");
    for (row, authorization, message) in [
        ("not issued by us", "Bearer eyJhbGciOi.forged.token", ""),
        ("a wrong scheme counts as missing", "Basic abc", ""),
        ("another cloud's token", cn.as_str(), "AKV10022"),
    ] {
        let r = env
            .req(Method::GET, S1)
            .header("Authorization", authorization);
        let r = r.reply().await.expect(401, "Unauthorized", row);
        assert!(r.headers.contains_key("www-authenticate"), "{row}");
        let text = r.str("/error/message");
        assert!(text.contains(message), "{row}: {text}");
    }
    // Expired (whole-second clock: a 3 s token is valid for at least 2 s).
    env.emu.set_token_lifetime(Duration::from_secs(3));
    let short = env.new_token().await;
    env.check_as(&short, OK).await;
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let expired = "401 Unauthorized GET /secrets/s1?api-version=7.4";
    env.check_as(&short, expired).await;
    env.emu.shutdown().await;
}

#[tokio::test]
async fn denied_identity_gets_forbidden() {
    let env = start_with(with_identities(&[UA])).await;
    env.emu.set_secret("vault1", "s1", "x", None);
    env.emu.set_secret("vault2", "s1", "y", None);
    env.emu.deny_identity("vault1", UA);
    let tok = env.token_for(Some(UA), VAULT_RESOURCE).await;
    let denied = "403 Forbidden/AccessDenied GET /secrets/s1?api-version=7.4";
    let v = env.check_as(&tok, denied).await;
    assert!(v.str("/error/message").contains(UA));
    // Other vault fine; system identity fine.
    let u2 = env.url("vault2.vault.azure.net", S1);
    env.check_as(&tok, &format!("200 - GET {u2}")).await;
    env.check_as(&env.new_token().await, OK).await;
    env.emu.allow_identity("vault1", UA);
    env.check_as(&tok, OK).await;
    env.emu.shutdown().await;
}

/// Answers to bad requests (Throttled is covered in faults.rs, Unauthorized
/// above): `STATUS CODE METHOD TARGET`.
const ERRORS: [&str; 7] = [
    "404 SecretNotFound           GET /secrets/nope?api-version=7.4",
    "404 SecretNotFound           GET /secrets/nope/0123456789abcdef0123456789abcdef?api-version=7.4",
    "404 CertificateNotFound      GET /certificates/nope?api-version=7.4",
    "400 BadParameter             GET /secrets/bad_name?api-version=7.4",
    "400 BadParameter             GET /secrets?api-version=7.4&maxresults=26",
    "403 Forbidden/SecretDisabled GET /secrets/d?api-version=7.4",
    "400 BadParameter             GET /secrets/s",
];

/// The api-version rule: `STATUS CODE VERSION`.
const API_VERSIONS: [&str; 13] = [
    "200 - 7.0",
    "200 - 7.4",
    "200 - 7.5",
    "200 - 7.6",
    "200 - 2025-06-01",
    "200 - 2025-07-01",
    "200 - 2026-04-01",
    "200 - 2026-03-01-preview",
    "400 BadParameter 7.7",
    "400 BadParameter 2016-10-01",
    "400 BadParameter 2025-05-31",
    "400 BadParameter latest",
    "400 BadParameter 2025-06-01-beta",
];

#[tokio::test]
async fn status_and_error_codes() {
    let env = start_signed_in().await;
    env.emu.set_secret("vault1", "s", "x", None);
    env.emu.set_secret("vault1", "d", "x", None);
    env.emu.set_secret_enabled("vault1", "d", None, false);
    check_rows(&env, &ERRORS).await;
    let as_get = |row: &&str| {
        let (status_code, version) = row.rsplit_once(' ').unwrap();
        format!("{status_code} GET /secrets/s?api-version={version}")
    };
    let versions: Vec<String> = API_VERSIONS.iter().map(as_get).collect();
    check_rows(&env, &versions).await;
    let put = || env.call(Method::PUT, "/secrets/x?api-version=7.4");
    let r = put().body("not json").reply().await;
    r.expect(400, "BadParameter", "not JSON");
    let too_long = json!({"value": "a".repeat(26 * 1024)});
    let r = put().json(&too_long).reply().await;
    r.expect(400, "BadParameter", "value over 25 KiB");
    env.emu.shutdown().await;
}

#[tokio::test]
async fn set_get_versions_list_delete_with_paging() {
    let env = start_signed_in().await;
    env.emu.set_page_size(2);
    let check = |row: &'static str| env.check(row);
    let put = |name: &str, body: Value| {
        let path = format!("/secrets/{name}?api-version=7.4");
        env.call(Method::PUT, &path).json(&body).reply()
    };
    let mut versions = Vec::new();
    for i in 0..5 {
        let attributes = json!({"enabled": true, "exp": 4102444800i64});
        let body = json!({"value": format!("v{i}"), "contentType": "text/plain",
                          "attributes": attributes, "tags": {"k": "v"}});
        let v = put("Rotating", body.clone()).await.expect(200, "", "set");
        v.has(json!({"value": body["value"], "tags": {"k": "v"}, "attributes": {"exp": 4102444800i64}}));
        versions.push(v.version().to_string());
    }
    assert_eq!(versions[0].len(), 32);
    // Latest and by version (name lookup ignores case; id keeps the created casing).
    let v = check("200 - GET /secrets/rotating/?api-version=7.4").await;
    assert_eq!(v["value"], "v4");
    assert!(v.str("id").contains("/secrets/Rotating/"));
    let path = format!("/secrets/Rotating/{}?api-version=7.4", versions[1]);
    assert_eq!(env.get(&path).await["value"], "v1");
    // Versions, paged by 2 via nextLink.
    let first = env.v1("/secrets/Rotating/versions?api-version=7.4");
    let (n, items) = pages(&env, &first).await;
    assert_eq!(n, 3);
    assert!(items.iter().all(|i| i.get("value").is_none()));
    let seen: Vec<&str> = ids(&items).into_iter().map(last_segment).collect();
    assert_eq!(seen, versions);
    // List secrets; maxresults overrides the page size.
    for n in ["a", "b", "c"] {
        env.emu.set_secret("vault1", n, "x", None);
    }
    let v = check("200 - GET /secrets?api-version=7.4&maxresults=25").await;
    let listed = ids(v.items());
    assert_eq!(listed.len(), 4);
    assert!(listed.contains(&"https://vault1.vault.azure.net/secrets/Rotating"));
    assert!(v["nextLink"].is_null());
    // Delete; a soft-deleted secret is under /deletedsecrets and its name is
    // not reusable until purged or recovered.
    let recovery_id = "https://vault1.vault.azure.net/deletedsecrets/a";
    let v = check("200 - DELETE /secrets/a?api-version=7.4").await;
    assert_eq!(v["recoveryId"], recovery_id);
    assert!(v["scheduledPurgeDate"].is_i64() && v.body.get("value").is_none());
    check("404 SecretNotFound GET /secrets/a?api-version=7.4").await;
    let v = check("200 - GET /deletedsecrets/a?api-version=7.4").await;
    assert_eq!(v["recoveryId"], recovery_id);
    let again = || json!({"value": "again"});
    put("a", again())
        .await
        .expect(409, "Conflict", "name in use");
    check("200 - POST /deletedsecrets/a/recover?api-version=7.4").await;
    check("200 - GET /secrets/a?api-version=7.4").await;
    check("200 - DELETE /secrets/a?api-version=7.4").await;
    let v = check("200 - GET /deletedsecrets?api-version=7.4").await;
    assert_eq!(v["value"][0]["recoveryId"], recovery_id);
    check("204 - DELETE /deletedsecrets/a?api-version=7.4").await;
    check("404 SecretNotFound GET /deletedsecrets/a?api-version=7.4").await;
    put("a", again()).await.expect(200, "", "name free again");
    env.emu.shutdown().await;
}

/// Sovereign clouds: `HOST RESOURCE` (the resource its tokens are for).
const CLOUDS: [&str; 3] = [
    "cnvault.vault.azure.cn           https://vault.azure.cn",
    "govvault.vault.usgovcloudapi.net https://vault.usgovcloudapi.net",
    "devault.vault.microsoftazure.de  https://vault.microsoftazure.de",
];

#[tokio::test]
async fn vaults_are_selected_by_host_in_every_cloud() {
    let env = start_signed_in().await;
    for (vault, value) in [("vault1", "one"), ("vault2", "two")] {
        env.emu.set_secret(vault, "s", value, None);
    }
    let s = "/secrets/s?api-version=7.4";
    let v = env.get(&env.url("vault2.vault.azure.net", s)).await;
    assert_eq!(v["value"], "two");
    for (host, res) in CLOUDS.map(|row| row.split_once(' ').unwrap()) {
        let res = res.trim();
        let r = env.req(Method::GET, &env.url(host, s)).reply().await;
        assert_eq!(r.status, 401, "{host}");
        let chal = r.header("www-authenticate");
        assert!(chal.contains(&format!("resource=\"{res}\"")), "{chal}");
        let t = env.token_for(None, res).await;
        let r = env.get_as(&t, &env.url(host, s)).await;
        r.expect(404, "SecretNotFound", host);
    }
    let c = env.emu.counters();
    assert!(c.vault_requests("vault2") >= 1);
    assert_eq!(c.vault_requests("cnvault"), 2);
    assert!(c.status_count("cnvault", 401) == 1);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn sni_selects_the_vault_when_host_is_not_a_vault() {
    let env = start_signed_in().await;
    env.emu.set_secret("vault1", "s", "via-sni", None);
    let r = env.call(Method::GET, "/secrets/s?api-version=7.4");
    let r = r.header("Host", "127.0.0.1").reply().await;
    let v = r.expect(200, "", "via SNI");
    assert_eq!(v["value"], "via-sni");
    env.emu.shutdown().await;
}

#[test]
fn blocking_wrapper_and_debug_hide_secrets() {
    let emu = kvemu::BlockingEmulator::start(kvemu::Config::default()).unwrap();
    emu.set_secret("vault1", "s", "top-secret-value", None);
    let client_id = emu.system_identity().client_id;
    let token = emu.issue_token(&client_id, VAULT_RESOURCE).unwrap();
    let dbg = format!("{emu:?} {:?}", *emu);
    assert!(
        !dbg.contains("top-secret-value") && !dbg.contains(&token),
        "{dbg}"
    );
    let value = "top-secret-value".into();
    let spec = kvemu::SecretSpec {
        value,
        ..Default::default()
    };
    assert!(!format!("{spec:?}").contains("top-secret-value"));
    assert!(emu.ca_file().is_absolute() && emu.ca_file().exists());
    let ca = emu.ca_file().to_path_buf();
    emu.shutdown();
    assert!(!ca.exists(), "temporary state directory removed");
}
