//! Throttling and every fault kind, over real HTTPS; counters are taken on
//! arrival, before faults.

mod common;

use common::faults::{self, Row, ms, status};
use common::*;
use kvemu::{Fault, FaultKind, ThrottleConfig};
use std::time::Duration;

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

#[tokio::test]
async fn throttling_answers_429_with_retry_after() {
    let (env, _) = setup().await;
    // 3 requests per 30 s: one token back every 10 s, so a slow (loaded)
    // machine cannot refill the bucket before the fourth request.
    let window = Duration::from_secs(30);
    env.emu.set_throttle(ThrottleConfig {
        requests: 3,
        window,
    });
    for _ in 0..3 {
        env.check(OK).await;
    }
    let r = env.check("429 Throttled GET /secrets/s1?api-version=7.4");
    let ra: u64 = r.await.header("retry-after").parse().unwrap();
    assert!((1..=10).contains(&ra), "{ra}");
    // Per vault: another vault is unaffected.
    env.emu.set_secret("vault2", "s1", "x", None);
    let vault2 = env.url("vault2.vault.azure.net", "/secrets/s1?api-version=7.4");
    env.check(&format!("200 - GET {vault2}")).await;
    // Refill over time is unit-tested (throttle.rs); a new budget resets it.
    env.emu.set_throttle(ThrottleConfig::default());
    env.check(OK).await;
    let c = env.emu.counters();
    assert_eq!((c.throttled, c.status_count("vault1", 429)), (1, 1));
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
