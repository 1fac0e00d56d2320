//! Throttling and every fault kind, over real HTTPS; counters are taken on
//! arrival, before faults.

use crate::common::faults::{self, Row, ms, status};
use crate::common::*;
use kvemu::{Fault, FaultKind, ThrottleConfig};
use std::time::{Duration, Instant};

const OK: &str = "200 - GET /secrets/s1?api-version=7.4";
const PKCS12: &str = "application/x-pkcs12";

/// A signed-in emulator with `s1` (base64 of `payload`, as a PFX); `s1`'s URL.
async fn setup() -> (Env, String) {
    let env = start_signed_in().await;
    env.emu
        .set_secret("vault1", "s1", &b64(b"payload"), Some(PKCS12));
    let url = env.v1("/secrets/s1?api-version=7.4");
    (env, url)
}

/// The `Retry-After` seconds of a reply, if it has the header.
fn retry_after(r: &Reply) -> Option<u64> {
    r.headers
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

const THROTTLED: &str = "429 Throttled GET /secrets/s1?api-version=7.4";

#[tokio::test]
async fn throttling_answers_429_with_retry_after_until_the_window_has_room() {
    let (env, _) = setup().await;
    // 3 requests per 30 s: the fourth is refused until the first leaves the window,
    // 30 s after it was accepted (less the time the requests took on a loaded machine).
    env.emu.set_throttle(limit(3, 30, 0));
    let first = Instant::now();
    for _ in 0..3 {
        env.check(OK).await;
    }
    let r = env.check(THROTTLED).await;
    let ra = retry_after(&r).expect("Retry-After");
    let elapsed = first.elapsed().as_secs();
    assert!(
        ra <= 30 && ra + elapsed >= 29,
        "Retry-After {ra} after {elapsed} s"
    );
    r.has(serde_json::json!({"error": {"message": "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"}}));
    // Refused requests do not count: another 429 names no later time.
    let again = env.check(THROTTLED).await;
    assert!(retry_after(&again).unwrap() <= ra);
    // Per vault: another vault is unaffected.
    env.emu.set_secret("vault2", "s1", "x", None);
    let vault2 = env.url("vault2.vault.azure.net", "/secrets/s1?api-version=7.4");
    env.check(&format!("200 - GET {vault2}")).await;
    // A new budget starts with an empty window.
    env.emu.set_throttle(ThrottleConfig::default());
    env.check(OK).await;
    let c = env.emu.counters();
    assert_eq!((c.throttled, c.status_count("vault1", 429)), (2, 2));
    env.emu.shutdown().await;
}

#[tokio::test]
async fn the_window_slides_a_request_is_accepted_once_the_oldest_left() {
    let (env, _) = setup().await;
    env.emu.set_throttle(limit(1, 2, 0));
    env.check(OK).await;
    let accepted = Instant::now();
    let r = env.check(THROTTLED).await;
    assert!((1..=2).contains(&retry_after(&r).unwrap()));
    // Wait out the window measured from (after) the accepted request.
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(accepted.elapsed())).await;
    env.check(OK).await;
    env.emu.shutdown().await;
}

#[tokio::test]
async fn the_subscription_limit_spans_every_vault() {
    let (env, _) = setup().await;
    // Three per vault and three across vaults (a multiple of 1), per minute.
    env.emu.set_throttle(limit(3, 60, 1));
    env.emu.set_secret("vault2", "s1", "x", None);
    let v2 = env.url("vault2.vault.azure.net", "/secrets/s1?api-version=7.4");
    env.check(OK).await;
    env.check(OK).await;
    env.check(&format!("200 - GET {v2}")).await;
    // vault2 has sent one of its three, but the subscription is full.
    let r = env.check(&format!("429 Throttled GET {v2}")).await;
    assert!(retry_after(&r).unwrap() > 30);
    assert!(
        r.str("/error/message")
            .ends_with("Reason: SubscriptionRequestTypeLimitReached"),
        "{}",
        r.body
    );
    // Without the subscription limit the same vault is served.
    env.emu.set_throttle(limit(3, 60, 0));
    env.check(&format!("200 - GET {v2}")).await;
    env.emu.shutdown().await;
}

#[tokio::test]
async fn retry_after_can_be_left_out_through_the_control_endpoint() {
    let (env, _) = setup().await;
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = plain
        .put(format!("{}/settings", env.emu.control_endpoint()))
        .json(&serde_json::json!({"throttle": {"requests": 1, "window_secs": 60, "retry_after": false}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.check(OK).await;
    let r = env.check(THROTTLED).await;
    assert_eq!(retry_after(&r), None);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn status_faults_with_retry_after_and_counters() {
    let (env, _) = setup().await;
    let unavailable = "503 ServiceUnavailable GET /secrets/s1?api-version=7.4";
    env.emu
        .inject(Fault::object("vault1", "s1", status(503, Some(7)), 2));
    for _ in 0..2 {
        assert_eq!(env.check(unavailable).await.header("retry-after"), "7");
    }
    env.check(OK).await;
    env.emu
        .inject(Fault::vault("vault1", status(429, Some(1)), 1));
    env.check("429 Throttled GET /secrets/s1?api-version=7.4")
        .await;
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
    let (env, url) = setup().await;
    env.emu.inject(Fault::vault("vault1", status(500, None), 1));
    assert_eq!(env.http.get(&url).send().await.unwrap().status(), 401);
    env.check("500 InternalServerError GET /secrets/s1?api-version=7.4")
        .await;
    env.emu.shutdown().await;
}

/// Every fault kind of the vault listener, one GET of `s1` each.
#[tokio::test]
async fn every_fault_kind() {
    let (env, url) = setup().await;
    let object = |kind| Fault::object("vault1", "s1", kind, 1);
    let vault = |kind| Fault::vault("vault1", kind, 1);
    let evil = "https://evil.example.com/secrets/s1";
    let redirect = FaultKind::Redirect {
        status: 302,
        location: evil.into(),
    };
    let oversize = |bytes, declare_length| FaultKind::Oversize {
        bytes,
        declare_length,
    };
    let drip = FaultKind::SlowDrip {
        interval: ms(50),
        chunk: 64,
    };
    let rows: Vec<Row> = vec![
        ("delay", vault(FaultKind::Delay(ms(400))), |s| {
            assert_eq!(s.status(), 200);
            assert!(s.elapsed >= ms(400));
        }),
        ("hang", vault(FaultKind::Hang), |s| {
            let e = s.answer.as_ref().unwrap_err();
            assert!(e.is_timeout(), "{e}");
        }),
        ("reset", vault(FaultKind::Reset), |s| {
            let e = s.answer.as_ref().unwrap_err();
            assert!(!e.is_timeout() && !e.is_status(), "{e:?}");
        }),
        ("truncated", object(FaultKind::TruncateBody), |s| {
            assert_eq!(s.status(), 200);
            assert!(s.body.is_err(), "the body read fails");
        }),
        ("corrupt base64", object(FaultKind::CorruptBase64), |s| {
            use base64::Engine as _;
            let value = s.json()["value"].as_str().unwrap().to_string();
            assert!(
                base64::engine::general_purpose::STANDARD
                    .decode(value)
                    .is_err()
            );
        }),
        ("base64, no PFX", object(FaultKind::BadPfx), |s| {
            assert_ne!(unb64(s.json()["value"].as_str().unwrap()), b"payload");
        }),
        (
            "content type",
            object(FaultKind::WrongContentType("text/plain".into())),
            |s| {
                assert_eq!(s.json()["contentType"], "text/plain");
            },
        ),
        ("redirect", vault(redirect), |s| {
            assert_eq!(s.status(), 302);
            assert_eq!(s.header("location"), "https://evil.example.com/secrets/s1");
        }),
        // 8 MiB streamed; the client stops reading after 2 MiB.
        (
            "oversize, no length",
            vault(oversize(8 << 20, false)),
            |s| {
                assert_eq!((s.status(), s.content_length), (200, None));
                assert!(s.body.as_ref().unwrap().len() > 2 << 20);
            },
        ),
        // Fully read, the oversize body has exactly the requested length.
        ("oversize, declared", vault(oversize(100_000, true)), |s| {
            assert_eq!(s.content_length, Some(100_000));
            let b = s.body.as_ref().unwrap();
            assert_eq!(b.len(), 100_000);
            assert!(b.starts_with(b"{\"value\":\"") && b.ends_with(b"\"}"));
        }),
        ("slow drip", vault(drip), |s| {
            assert_eq!(s.status(), 200);
            assert_eq!(s.json()["contentType"], PKCS12);
            assert!(s.elapsed >= ms(150), "{:?}", s.elapsed);
        }),
    ];
    faults::run(&env, rows, |http| http.get(&url).bearer_auth(&env.token)).await;
    env.check(OK).await; // Recovered.
    env.emu.shutdown().await;
}

#[tokio::test]
async fn body_faults_wait_for_a_success() {
    let (env, _) = setup().await;
    // Body faults wait for a 2xx: a 404 does not use them up.
    env.emu
        .inject(Fault::vault("vault1", FaultKind::CorruptBase64, 1));
    let missing = "404 SecretNotFound GET /secrets/missing?api-version=7.4";
    env.check(missing).await;
    assert_eq!(env.emu.pending_faults(), 1);
    env.emu.clear_faults();
    assert_eq!(env.check(OK).await["contentType"], PKCS12);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn probability_faults_are_reproducible() {
    async fn run() -> Vec<u16> {
        let (env, url) = setup().await;
        let fault = Fault::vault("vault1", status(500, None), 0);
        env.emu.inject(fault.with_probability(0.5));
        let mut out = Vec::new();
        for _ in 0..20 {
            out.push(env.get(&url).await.status);
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
    let (env, _) = setup().await;
    let path_contains = Some("/versions".into());
    let target = kvemu::FaultTarget {
        path_contains,
        ..Default::default()
    };
    let (kind, trigger) = (status(500, None), kvemu::Trigger::Next(1));
    env.emu.inject(Fault {
        target,
        kind,
        trigger,
    });
    env.check(OK).await;
    env.check("500 InternalServerError GET /secrets/s1/versions?api-version=7.4")
        .await;
    env.emu.shutdown().await;
}
