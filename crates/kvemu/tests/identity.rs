//! The identity endpoint: IMDS rules (Metadata header, resource, selection of
//! identities), string-valued JSON, the Arc Basic challenge, and its faults.

mod common;

use common::*;
use kvemu::{Config, Fault, FaultKind, IdentityMode};
use serde_json::Value;
use std::time::{Duration, Instant};

const UA: &str = "c7373ae5-91c2-4165-8ab6-7381d6e75619";

async fn imds(env: &Env, query: &str, metadata: bool) -> (u16, Value) {
    let mut req = env
        .http
        .get(format!("{}?{query}", env.emu.identity_endpoint()));
    if metadata {
        req = req.header("Metadata", "true");
    }
    json(req.send().await.unwrap()).await
}

#[tokio::test]
async fn imds_rules_and_shapes() {
    let env = start_with(Config {
        identities: vec![UA.into()],
        ..Default::default()
    })
    .await;
    let q = "api-version=2018-02-01&resource=https://vault.azure.net";
    let (s, v) = imds(&env, q, false).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")));
    assert!(v["error_description"].is_string());
    let (s, _) = imds(&env, "api-version=2018-02-01", true).await;
    assert_eq!(s, 400);
    let (s, _) = imds(&env, "resource=https://vault.azure.net", true).await;
    assert_eq!(s, 400);

    let r = env
        .http
        .get(format!("{}?{q}", env.emu.identity_endpoint()))
        .header("Metadata", "true")
        .header("X-Forwarded-For", "10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "proxied requests are refused");
    let (s, v) = imds(&env, q, true).await;
    assert_eq!(s, 200);
    for k in [
        "access_token",
        "expires_in",
        "expires_on",
        "ext_expires_in",
        "not_before",
        "resource",
        "token_type",
        "client_id",
    ] {
        assert!(v[k].is_string(), "{k}: {v}");
    }
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["resource"], "https://vault.azure.net");
    assert_eq!(v["client_id"], env.emu.system_identity().client_id);
    let exp: i64 = v["expires_on"].as_str().unwrap().parse().unwrap();
    let nb: i64 = v["not_before"].as_str().unwrap().parse().unwrap();
    assert_eq!(exp - nb, 86400);

    let ua = env
        .emu
        .identities()
        .into_iter()
        .find(|i| i.client_id == UA)
        .unwrap();
    for sel in [
        format!("client_id={UA}"),
        format!("object_id={}", ua.object_id),
        format!("msi_res_id={}", ua.msi_res_id),
    ] {
        let (s, v) = imds(&env, &format!("{q}&{sel}"), true).await;
        assert_eq!(s, 200, "{sel}");
        assert_eq!(v["client_id"], UA);
    }
    let (s, v) = imds(
        &env,
        &format!("{q}&client_id=00000000-0000-0000-0000-000000000001"),
        true,
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")));
    // Identities can be added at run time.
    env.emu.add_identity("00000000-0000-0000-0000-000000000001");
    let (s, _) = imds(
        &env,
        &format!("{q}&client_id=00000000-0000-0000-0000-000000000001"),
        true,
    )
    .await;
    assert_eq!(s, 200);
    let c = env.emu.counters();
    assert_eq!(c.identity, 10);
    assert_eq!(c.identity_status[&400], 5);
    assert_eq!(c.tokens_issued[UA], 3);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn arc_basic_challenge() {
    let env = start_with(Config {
        identity_mode: IdentityMode::Arc,
        ..Default::default()
    })
    .await;
    let url = format!(
        "{}?api-version=2019-11-01&resource=https://vault.azure.net",
        env.emu.identity_endpoint()
    );
    let r = env
        .http
        .get(&url)
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let chal = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let path = chal.strip_prefix("Basic realm=").unwrap();
    assert!(path.ends_with(".key"));
    assert!(std::path::Path::new(path).starts_with(env.emu.arc_token_dir()));
    let secret = std::fs::read_to_string(path).unwrap();
    assert!(secret.len() <= 4096);
    // Wrong secret: a new challenge.
    let r = env
        .http
        .get(&url)
        .header("Metadata", "true")
        .header("Authorization", "Basic nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = env
        .http
        .get(&url)
        .header("Metadata", "true")
        .header("Authorization", format!("Basic {secret}"))
        .send()
        .await
        .unwrap();
    let (s, v) = json(r).await;
    assert_eq!(s, 200);
    let tok = v["access_token"].as_str().unwrap();
    env.emu.set_secret("vault1", "s", "x", None);
    assert_eq!(
        env.get(&env.v1("/secrets/s?api-version=7.4"), tok)
            .await
            .status(),
        200
    );
    // IMDS's api-version is not Arc's.
    let (s, _) = imds(
        &env,
        "api-version=2018-02-01&resource=https://vault.azure.net",
        true,
    )
    .await;
    assert_eq!(s, 400);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn identity_faults() {
    let env = start().await;
    let q = "api-version=2018-02-01&resource=https://vault.azure.net";
    for status in [404u16, 410, 429, 500] {
        env.emu.inject(Fault::identity(
            FaultKind::Status {
                status,
                retry_after: Some(2),
            },
            1,
        ));
        let r = env
            .http
            .get(format!("{}?{q}", env.emu.identity_endpoint()))
            .header("Metadata", "true")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(r.headers()["retry-after"], "2");
    }
    env.emu.inject(Fault::identity(
        FaultKind::Delay(Duration::from_millis(300)),
        1,
    ));
    let t = Instant::now();
    assert_eq!(imds(&env, q, true).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    env.emu
        .inject(Fault::identity(FaultKind::ExpiresOnSkew(-7200), 1));
    let (_, v) = imds(&env, q, true).await;
    let exp: i64 = v["expires_on"].as_str().unwrap().parse().unwrap();
    let nb: i64 = v["not_before"].as_str().unwrap().parse().unwrap();
    assert_eq!(exp - nb, 86400 - 7200);

    env.emu.inject(Fault::identity(FaultKind::Reset, 1));
    assert!(
        env.http
            .get(format!("{}?{q}", env.emu.identity_endpoint()))
            .header("Metadata", "true")
            .send()
            .await
            .is_err()
    );
    assert_eq!(env.emu.counters().identity, 7);
    env.emu.shutdown().await;
}
