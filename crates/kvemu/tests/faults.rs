//! Throttling and every fault kind, over real HTTPS; counters are taken on
//! arrival, before faults.

mod common;

use base64::Engine as _;
use common::*;
use kvemu::{Fault, FaultKind, ThrottleConfig};
use std::time::{Duration, Instant};

async fn setup() -> (Env, String, String) {
    let env = start().await;
    env.emu.set_secret(
        "vault1",
        "s1",
        &base64::engine::general_purpose::STANDARD.encode(b"payload"),
        Some("application/x-pkcs12"),
    );
    let tok = env.token().await;
    let url = env.v1("/secrets/s1?api-version=7.4");
    (env, tok, url)
}

fn retry_after(r: &reqwest::Response) -> Option<u64> {
    r.headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

fn limit(requests: u32, window_secs: u64, subscription_multiple: u32) -> ThrottleConfig {
    ThrottleConfig {
        requests,
        window: Duration::from_secs(window_secs),
        subscription_multiple,
        ..ThrottleConfig::default()
    }
}

#[tokio::test]
async fn throttling_answers_429_with_retry_after_until_the_window_has_room() {
    let (env, tok, url) = setup().await;
    // 3 requests per 30 s: the fourth is refused until the first leaves the window,
    // 30 s after it was accepted (less the time the requests took on a loaded machine).
    env.emu.set_throttle(limit(3, 30, 0));
    let first = Instant::now();
    for _ in 0..3 {
        assert_eq!(env.get(&url, &tok).await.status(), 200);
    }
    let r = env.get(&url, &tok).await;
    assert_eq!(r.status(), 429);
    let ra = retry_after(&r).expect("Retry-After");
    let elapsed = first.elapsed().as_secs();
    assert!(
        ra <= 30 && ra + elapsed >= 29,
        "Retry-After {ra} after {elapsed} s"
    );
    let (_, v) = json(r).await;
    assert_eq!(error_code(&v), "Throttled");
    assert_eq!(
        v["error"]["message"],
        "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"
    );
    // Refused requests do not count: another 429 names no later time.
    let again = env.get(&url, &tok).await;
    assert_eq!(again.status(), 429);
    assert!(retry_after(&again).unwrap() <= ra);
    // Per vault: another vault is unaffected.
    env.emu.set_secret("vault2", "s1", "x", None);
    assert_eq!(
        env.get(
            &env.url("vault2.vault.azure.net", "/secrets/s1?api-version=7.4"),
            &tok
        )
        .await
        .status(),
        200
    );
    // A new budget starts with an empty window.
    env.emu.set_throttle(ThrottleConfig::default());
    assert_eq!(env.get(&url, &tok).await.status(), 200);
    let c = env.emu.counters();
    assert_eq!(c.throttled, 2);
    assert_eq!(c.status_count("vault1", 429), 2);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn the_window_slides_a_request_is_accepted_once_the_oldest_left() {
    let (env, tok, url) = setup().await;
    env.emu.set_throttle(limit(1, 2, 0));
    assert_eq!(env.get(&url, &tok).await.status(), 200);
    let accepted = Instant::now();
    let r = env.get(&url, &tok).await;
    assert_eq!(r.status(), 429);
    assert!((1..=2).contains(&retry_after(&r).unwrap()));
    // Wait out the window measured from (after) the accepted request.
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(accepted.elapsed())).await;
    assert_eq!(env.get(&url, &tok).await.status(), 200);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn the_subscription_limit_spans_every_vault() {
    let (env, tok, url) = setup().await;
    // Three per vault and three across vaults (a multiple of 1), per minute.
    env.emu.set_throttle(limit(3, 60, 1));
    env.emu.set_secret("vault2", "s1", "x", None);
    let v2 = env.url("vault2.vault.azure.net", "/secrets/s1?api-version=7.4");
    for u in [&url, &url, &v2] {
        assert_eq!(env.get(u, &tok).await.status(), 200);
    }
    // vault2 has sent one of its three, but the subscription is full.
    let r = env.get(&v2, &tok).await;
    assert_eq!(r.status(), 429);
    assert!(retry_after(&r).unwrap() > 30);
    let (_, v) = json(r).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("Reason: SubscriptionRequestTypeLimitReached"),
        "{v}"
    );
    // Without the subscription limit the same vault is served.
    env.emu.set_throttle(limit(3, 60, 0));
    assert_eq!(env.get(&v2, &tok).await.status(), 200);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn retry_after_can_be_left_out_through_the_control_endpoint() {
    let (env, tok, url) = setup().await;
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = plain
        .put(format!("{}/settings", env.emu.control_endpoint()))
        .json(&serde_json::json!({"throttle": {"requests": 1, "window_secs": 60, "retry_after": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env.get(&url, &tok).await.status(), 200);
    let r = env.get(&url, &tok).await;
    assert_eq!(r.status(), 429);
    assert_eq!(retry_after(&r), None);
    let (_, v) = json(r).await;
    assert_eq!(error_code(&v), "Throttled");
    env.emu.shutdown().await;
}

#[tokio::test]
async fn status_faults_with_retry_after_and_counters() {
    let (env, tok, url) = setup().await;
    env.emu.inject(Fault::object(
        "vault1",
        "s1",
        FaultKind::Status {
            status: 503,
            retry_after: Some(7),
        },
        2,
    ));
    for _ in 0..2 {
        let r = env.get(&url, &tok).await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "7");
        let (_, v) = json(r).await;
        assert_eq!(error_code(&v), "ServiceUnavailable");
    }
    assert_eq!(env.get(&url, &tok).await.status(), 200);
    env.emu.inject(Fault::vault(
        "vault1",
        FaultKind::Status {
            status: 429,
            retry_after: Some(1),
        },
        1,
    ));
    assert_eq!(env.get(&url, &tok).await.status(), 429);
    let c = env.emu.counters();
    assert_eq!(c.object_requests("vault1", "s1"), 4);
    assert_eq!(c.vault_requests("vault1"), 4);
    assert_eq!(c.status_count("vault1", 503), 2);
    assert_eq!(c.status_count("vault1", 200), 1);
    assert_eq!(env.emu.pending_faults(), 0);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn challenge_requests_are_not_faulted() {
    let (env, tok, url) = setup().await;
    env.emu.inject(Fault::vault(
        "vault1",
        FaultKind::Status {
            status: 500,
            retry_after: None,
        },
        1,
    ));
    assert_eq!(env.http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(env.get(&url, &tok).await.status(), 500);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn delay_hang_and_reset() {
    let (env, tok, url) = setup().await;
    env.emu.inject(Fault::vault(
        "vault1",
        FaultKind::Delay(Duration::from_millis(400)),
        1,
    ));
    let t = Instant::now();
    assert_eq!(env.get(&url, &tok).await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(400));

    env.emu.inject(Fault::vault("vault1", FaultKind::Hang, 1));
    let short = client(&env.emu, Some(Duration::from_millis(500)));
    let e = short.get(&url).bearer_auth(&tok).send().await.unwrap_err();
    assert!(e.is_timeout(), "{e}");

    env.emu.inject(Fault::vault("vault1", FaultKind::Reset, 1));
    let e = env
        .http
        .get(&url)
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap_err();
    assert!(!e.is_timeout() && !e.is_status(), "{e:?}");
    // Recovered.
    assert_eq!(env.get(&url, &tok).await.status(), 200);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn body_faults() {
    let (env, tok, url) = setup().await;
    // Truncated: body read fails.
    env.emu
        .inject(Fault::object("vault1", "s1", FaultKind::TruncateBody, 1));
    let r = env.get(&url, &tok).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err());
    // Corrupt base64.
    env.emu
        .inject(Fault::object("vault1", "s1", FaultKind::CorruptBase64, 1));
    let (_, v) = json(env.get(&url, &tok).await).await;
    assert!(
        base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().unwrap())
            .is_err()
    );
    // Valid base64 that is no PFX.
    env.emu
        .inject(Fault::object("vault1", "s1", FaultKind::BadPfx, 1));
    let (_, v) = json(env.get(&url, &tok).await).await;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v["value"].as_str().unwrap())
        .unwrap();
    assert_ne!(raw, b"payload");
    // Wrong content type.
    env.emu.inject(Fault::object(
        "vault1",
        "s1",
        FaultKind::WrongContentType("text/plain".into()),
        1,
    ));
    let (_, v) = json(env.get(&url, &tok).await).await;
    assert_eq!(v["contentType"], "text/plain");
    // Body faults wait for a 2xx: a 404 does not use them up.
    env.emu
        .inject(Fault::vault("vault1", FaultKind::CorruptBase64, 1));
    assert_eq!(
        env.get(&env.v1("/secrets/missing?api-version=7.4"), &tok)
            .await
            .status(),
        404
    );
    assert_eq!(env.emu.pending_faults(), 1);
    env.emu.clear_faults();
    let (_, v) = json(env.get(&url, &tok).await).await;
    assert_eq!(v["contentType"], "application/x-pkcs12");
    env.emu.shutdown().await;
}

#[tokio::test]
async fn redirect_oversize_and_slow_drip() {
    let (env, tok, url) = setup().await;
    env.emu.inject(Fault::vault(
        "vault1",
        FaultKind::Redirect {
            status: 302,
            location: "https://evil.example.com/secrets/s1".into(),
        },
        1,
    ));
    let r = env.get(&url, &tok).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "https://evil.example.com/secrets/s1"
    );

    // 8 MiB streamed; the client stops reading after 2 MiB.
    env.emu.inject(Fault::vault(
        "vault1",
        FaultKind::Oversize {
            bytes: 8 << 20,
            declare_length: false,
        },
        1,
    ));
    let mut r = env.get(&url, &tok).await;
    assert_eq!(r.status(), 200);
    assert!(r.content_length().is_none());
    let mut n = 0usize;
    while let Some(chunk) = r.chunk().await.unwrap() {
        n += chunk.len();
        if n > 2 << 20 {
            break;
        }
    }
    assert!(n > 2 << 20);
    drop(r);
    // Fully read, the oversize body has exactly the requested length.
    env.emu.inject(Fault::vault(
        "vault1",
        FaultKind::Oversize {
            bytes: 100_000,
            declare_length: true,
        },
        1,
    ));
    let r = env.get(&url, &tok).await;
    assert_eq!(r.content_length(), Some(100_000));
    let b = r.bytes().await.unwrap();
    assert_eq!(b.len(), 100_000);
    assert!(b.starts_with(b"{\"value\":\"") && b.ends_with(b"\"}"));

    env.emu.inject(Fault::vault(
        "vault1",
        FaultKind::SlowDrip {
            interval: Duration::from_millis(50),
            chunk: 64,
        },
        1,
    ));
    let t = Instant::now();
    let (s, v) = json(env.get(&url, &tok).await).await;
    assert_eq!(s, 200);
    assert_eq!(v["contentType"], "application/x-pkcs12");
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn probability_faults_are_reproducible() {
    async fn run() -> Vec<u16> {
        let (env, tok, url) = setup().await;
        env.emu.inject(
            Fault::vault(
                "vault1",
                FaultKind::Status {
                    status: 500,
                    retry_after: None,
                },
                0,
            )
            .with_probability(0.5),
        );
        let mut out = Vec::new();
        for _ in 0..20 {
            out.push(env.get(&url, &tok).await.status().as_u16());
        }
        env.emu.shutdown().await;
        out
    }
    let a = run().await;
    assert_eq!(a, run().await);
    assert!(a.contains(&500) && a.contains(&200), "{a:?}");
}

#[tokio::test]
async fn path_targeted_fault() {
    let (env, tok, url) = setup().await;
    env.emu.inject(Fault {
        target: kvemu::FaultTarget {
            path_contains: Some("/versions".into()),
            ..Default::default()
        },
        kind: FaultKind::Status {
            status: 500,
            retry_after: None,
        },
        trigger: kvemu::Trigger::Next(1),
    });
    assert_eq!(env.get(&url, &tok).await.status(), 200);
    assert_eq!(
        env.get(&env.v1("/secrets/s1/versions?api-version=7.4"), &tok)
            .await
            .status(),
        500
    );
    env.emu.shutdown().await;
}
