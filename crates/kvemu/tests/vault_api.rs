//! Secrets API over real HTTPS: challenge flow, token validation, access
//! denial, error codes, CRUD, paging, api-version rule, headers, host selection.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn challenge_then_token_flow() {
    let env = start().await;
    env.emu
        .set_secret("vault1", "s1", "hello", Some("text/plain"));
    let r = env
        .http
        .get(env.v1("/secrets/s1/?api-version=2026-04-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let chal = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        chal.starts_with("Bearer authorization=\"https://login.windows.net/"),
        "{chal}"
    );
    assert!(
        chal.ends_with("resource=\"https://vault.azure.net\""),
        "{chal}"
    );
    for h in [
        "x-ms-keyvault-service-version",
        "x-ms-request-id",
        "x-ms-keyvault-region",
    ] {
        assert!(r.headers().contains_key(h), "{h}");
    }
    let (_, body) = json(r).await;
    assert_eq!(error_code(&body), "Unauthorized");
    assert_eq!(
        body["error"]["message"],
        "AKV10000: Request is missing a Bearer or PoP token."
    );

    let tok = env.token().await;
    let (s, v) = json(
        env.get(&env.v1("/secrets/s1/?api-version=2026-04-01"), &tok)
            .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["value"], "hello");
    assert_eq!(v["contentType"], "text/plain");
    assert!(
        v["id"]
            .as_str()
            .unwrap()
            .starts_with("https://vault1.vault.azure.net/secrets/s1/")
    );
    assert!(v["attributes"]["created"].is_i64());
    assert_eq!(v["attributes"]["recoveryLevel"], "Recoverable+Purgeable");
    assert!(v.get("managed").is_none() && v.get("kid").is_none());
    // Without the trailing slash too.
    let r = env
        .http
        .get(env.v1("/secrets/s1?api-version=7.6"))
        .bearer_auth(&tok)
        .header("x-ms-client-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ms-client-request-id"], "abc-123");
    env.emu.shutdown().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_a_challenge() {
    let env = start().await;
    env.emu.set_secret("vault1", "s1", "x", None);
    let url = env.v1("/secrets/s1?api-version=7.4");
    // Not issued by us.
    let r = env.get(&url, "eyJhbGciOi.forged.token").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    // Wrong scheme counts as missing.
    let r = env
        .http
        .get(&url)
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Token for another cloud's resource.
    let cn = env.token_for(None, "https://vault.azure.cn").await;
    let (s, v) = json(env.get(&url, &cn).await).await;
    assert_eq!(s, 401);
    assert!(v["error"]["message"].as_str().unwrap().contains("AKV10022"));
    // Expired (whole-second clock: a 3 s token is valid for at least 2 s).
    env.emu
        .set_token_lifetime(std::time::Duration::from_secs(3));
    let short = env.token().await;
    assert_eq!(env.get(&url, &short).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(4100)).await;
    let (s, v) = json(env.get(&url, &short).await).await;
    assert_eq!(s, 401);
    assert_eq!(error_code(&v), "Unauthorized");
    env.emu.shutdown().await;
}

#[tokio::test]
async fn denied_identity_gets_forbidden() {
    let env = start_with(kvemu::Config {
        identities: vec!["c7373ae5-91c2-4165-8ab6-7381d6e75619".into()],
        ..Default::default()
    })
    .await;
    env.emu.set_secret("vault1", "s1", "x", None);
    env.emu.set_secret("vault2", "s1", "y", None);
    let ua = "c7373ae5-91c2-4165-8ab6-7381d6e75619";
    env.emu.deny_identity("vault1", ua);
    let tok = env.token_for(Some(ua), "https://vault.azure.net").await;
    let (s, v) = json(env.get(&env.v1("/secrets/s1?api-version=7.4"), &tok).await).await;
    assert_eq!(s, 403);
    assert_eq!(error_code(&v), "Forbidden");
    assert_eq!(v["error"]["innererror"]["code"], "AccessDenied");
    assert!(v["error"]["message"].as_str().unwrap().contains(ua));
    // Other vault fine; system identity fine.
    let u2 = env.url("vault2.vault.azure.net", "/secrets/s1?api-version=7.4");
    assert_eq!(env.get(&u2, &tok).await.status(), 200);
    let sys = env.token().await;
    assert_eq!(
        env.get(&env.v1("/secrets/s1?api-version=7.4"), &sys)
            .await
            .status(),
        200
    );
    env.emu.allow_identity("vault1", ua);
    assert_eq!(
        env.get(&env.v1("/secrets/s1?api-version=7.4"), &tok)
            .await
            .status(),
        200
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn error_codes() {
    let env = start().await;
    let tok = env.token().await;
    let (s, v) = json(
        env.get(&env.v1("/secrets/nope?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!((s, error_code(&v)), (404, "SecretNotFound"));
    let (s, v) = json(
        env.get(
            &env.v1("/secrets/nope/0123456789abcdef0123456789abcdef?api-version=7.4"),
            &tok,
        )
        .await,
    )
    .await;
    assert_eq!((s, error_code(&v)), (404, "SecretNotFound"));
    let (s, v) = json(
        env.get(&env.v1("/certificates/nope?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!((s, error_code(&v)), (404, "CertificateNotFound"));
    let (s, v) = json(
        env.get(&env.v1("/secrets/bad_name?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!((s, error_code(&v)), (400, "BadParameter"));
    let (s, v) = json(
        env.get(&env.v1("/secrets?api-version=7.4&maxresults=26"), &tok)
            .await,
    )
    .await;
    assert_eq!((s, error_code(&v)), (400, "BadParameter"));
    let r = env
        .http
        .put(env.v1("/secrets/x?api-version=7.4"))
        .bearer_auth(&tok)
        .body("not json")
        .send()
        .await
        .unwrap();
    let (s, v) = json(r).await;
    assert_eq!((s, error_code(&v)), (400, "BadParameter"));
    let (s, v) = json(
        env.put_secret(
            "vault1.vault.azure.net",
            "x",
            json!({"value": "a".repeat(26 * 1024)}),
            &tok,
        )
        .await,
    )
    .await;
    assert_eq!((s, error_code(&v)), (400, "BadParameter"));
    // Disabled secret.
    env.emu.set_secret("vault1", "d", "x", None);
    env.emu.set_secret_enabled("vault1", "d", None, false);
    let (s, v) = json(env.get(&env.v1("/secrets/d?api-version=7.4"), &tok).await).await;
    assert_eq!((s, error_code(&v)), (403, "Forbidden"));
    assert_eq!(v["error"]["innererror"]["code"], "SecretDisabled");
    // Throttled is covered in faults.rs; Unauthorized above.
    env.emu.shutdown().await;
}

#[tokio::test]
async fn api_version_rule() {
    let env = start().await;
    let tok = env.token().await;
    env.emu.set_secret("vault1", "s", "x", None);
    for ok in [
        "7.0",
        "7.4",
        "7.5",
        "7.6",
        "2025-06-01",
        "2025-07-01",
        "2026-04-01",
        "2026-03-01-preview",
    ] {
        let r = env
            .get(&env.v1(&format!("/secrets/s?api-version={ok}")), &tok)
            .await;
        assert_eq!(r.status(), 200, "{ok}");
    }
    for bad in [
        "7.7",
        "2016-10-01",
        "2025-05-31",
        "latest",
        "2025-06-01-beta",
    ] {
        let (s, v) = json(
            env.get(&env.v1(&format!("/secrets/s?api-version={bad}")), &tok)
                .await,
        )
        .await;
        assert_eq!((s, error_code(&v)), (400, "BadParameter"), "{bad}");
    }
    let (s, v) = json(env.get(&env.v1("/secrets/s"), &tok).await).await;
    assert_eq!((s, error_code(&v)), (400, "BadParameter"));
    env.emu.shutdown().await;
}

#[tokio::test]
async fn set_get_versions_list_delete_with_paging() {
    let env = start().await;
    env.emu.set_page_size(2);
    let tok = env.token().await;
    let h = "vault1.vault.azure.net";
    let mut versions = Vec::new();
    for i in 0..5 {
        let (s, v) = json(
            env.put_secret(
                h,
                "Rotating",
                json!({"value": format!("v{i}"), "contentType": "text/plain",
                       "attributes": {"enabled": true, "exp": 4102444800i64}, "tags": {"k": "v"}}),
                &tok,
            )
            .await,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["value"], format!("v{i}"));
        assert_eq!(v["tags"]["k"], "v");
        assert_eq!(v["attributes"]["exp"], 4102444800i64);
        versions.push(
            v["id"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(versions[0].len(), 32);
    // Latest and by version (name lookup ignores case; id keeps the created casing).
    let (_, v) = json(
        env.get(&env.v1("/secrets/rotating/?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!(v["value"], "v4");
    assert!(v["id"].as_str().unwrap().contains("/secrets/Rotating/"));
    let (_, v) = json(
        env.get(
            &env.v1(&format!(
                "/secrets/Rotating/{}?api-version=7.4",
                versions[1]
            )),
            &tok,
        )
        .await,
    )
    .await;
    assert_eq!(v["value"], "v1");
    // Versions, paged by 2 via nextLink.
    let mut url = env.v1("/secrets/Rotating/versions?api-version=7.4");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (s, v) = json(env.get(&url, &tok).await).await;
        assert_eq!(s, 200);
        pages += 1;
        for item in v["value"].as_array().unwrap() {
            assert!(item.get("value").is_none());
            seen.push(
                item["id"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
        match v["nextLink"].as_str() {
            Some(n) => url = n.to_string(),
            None => {
                assert!(v["nextLink"].is_null());
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, versions);
    // List secrets; maxresults overrides the page size.
    for n in ["a", "b", "c"] {
        env.emu.set_secret("vault1", n, "x", None);
    }
    let (_, v) = json(
        env.get(&env.v1("/secrets?api-version=7.4&maxresults=25"), &tok)
            .await,
    )
    .await;
    let ids: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.contains(&"https://vault1.vault.azure.net/secrets/Rotating"));
    assert!(v["nextLink"].is_null());
    // Delete.
    let r = env
        .http
        .delete(env.v1("/secrets/a?api-version=7.4"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    let (s, v) = json(r).await;
    assert_eq!(s, 200);
    assert_eq!(
        v["recoveryId"],
        "https://vault1.vault.azure.net/deletedsecrets/a"
    );
    assert!(v["scheduledPurgeDate"].is_i64() && v.get("value").is_none());
    assert_eq!(
        env.get(&env.v1("/secrets/a?api-version=7.4"), &tok)
            .await
            .status(),
        404
    );
    // Soft delete: visible under /deletedsecrets, name not reusable until purged or recovered.
    let (s, v) = json(
        env.get(&env.v1("/deletedsecrets/a?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["recoveryId"],
        "https://vault1.vault.azure.net/deletedsecrets/a"
    );
    let (s, v) = json(
        env.put_secret(
            "vault1.vault.azure.net",
            "a",
            json!({"value": "again"}),
            &tok,
        )
        .await,
    )
    .await;
    assert_eq!((s, error_code(&v)), (409, "Conflict"));
    let r = env
        .http
        .post(env.v1("/deletedsecrets/a/recover?api-version=7.4"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        env.get(&env.v1("/secrets/a?api-version=7.4"), &tok)
            .await
            .status(),
        200
    );
    env.http
        .delete(env.v1("/secrets/a?api-version=7.4"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    let (_, v) = json(
        env.get(&env.v1("/deletedsecrets?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!(
        v["value"][0]["recoveryId"],
        "https://vault1.vault.azure.net/deletedsecrets/a"
    );
    let r = env
        .http
        .delete(env.v1("/deletedsecrets/a?api-version=7.4"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (s, v) = json(
        env.get(&env.v1("/deletedsecrets/a?api-version=7.4"), &tok)
            .await,
    )
    .await;
    assert_eq!((s, error_code(&v)), (404, "SecretNotFound"));
    let (s, _) = json(
        env.put_secret(
            "vault1.vault.azure.net",
            "a",
            json!({"value": "again"}),
            &tok,
        )
        .await,
    )
    .await;
    assert_eq!(s, 200);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn vaults_are_selected_by_host_in_every_cloud() {
    let env = start().await;
    env.emu.set_secret("vault1", "s", "one", None);
    env.emu.set_secret("vault2", "s", "two", None);
    let tok = env.token().await;
    let (_, v) = json(
        env.get(
            &env.url("vault2.vault.azure.net", "/secrets/s?api-version=7.4"),
            &tok,
        )
        .await,
    )
    .await;
    assert_eq!(v["value"], "two");
    for (host, res) in [
        ("cnvault.vault.azure.cn", "https://vault.azure.cn"),
        (
            "govvault.vault.usgovcloudapi.net",
            "https://vault.usgovcloudapi.net",
        ),
        (
            "devault.vault.microsoftazure.de",
            "https://vault.microsoftazure.de",
        ),
    ] {
        let r = env
            .http
            .get(env.url(host, "/secrets/s?api-version=7.4"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let chal = r.headers()["www-authenticate"].to_str().unwrap();
        assert!(chal.contains(&format!("resource=\"{res}\"")), "{chal}");
        let t = env.token_for(None, res).await;
        let (s, v) = json(
            env.get(&env.url(host, "/secrets/s?api-version=7.4"), &t)
                .await,
        )
        .await;
        assert_eq!((s, error_code(&v)), (404, "SecretNotFound"), "{host}");
    }
    let c = env.emu.counters();
    assert!(c.vault_requests("vault2") >= 1);
    assert_eq!(c.vault_requests("cnvault"), 2);
    assert!(c.status_count("cnvault", 401) == 1);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn sni_selects_the_vault_when_host_is_not_a_vault() {
    let env = start().await;
    env.emu.set_secret("vault1", "s", "via-sni", None);
    let tok = env.token().await;
    let r = env
        .http
        .get(env.v1("/secrets/s?api-version=7.4"))
        .header("Host", "127.0.0.1")
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    let (s, v) = json(r).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["value"], "via-sni");
    env.emu.shutdown().await;
}

#[test]
fn blocking_wrapper_and_debug_hide_secrets() {
    let emu = kvemu::BlockingEmulator::start(kvemu::Config::default()).unwrap();
    emu.set_secret("vault1", "s", "top-secret-value", None);
    let token = emu
        .issue_token(&emu.system_identity().client_id, "https://vault.azure.net")
        .unwrap();
    let dbg = format!("{emu:?} {:?}", *emu);
    assert!(
        !dbg.contains("top-secret-value") && !dbg.contains(&token),
        "{dbg}"
    );
    let spec = kvemu::SecretSpec {
        value: "top-secret-value".into(),
        ..Default::default()
    };
    assert!(!format!("{spec:?}").contains("top-secret-value"));
    assert!(emu.ca_file().is_absolute() && emu.ca_file().exists());
    let ca = emu.ca_file().to_path_buf();
    emu.shutdown();
    assert!(!ca.exists(), "temporary state directory removed");
}
