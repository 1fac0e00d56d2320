//! Throughput sanity check (ignored by default; run with
//! `cargo test -p kvemu --release --test testsuite perf:: -- --ignored --nocapture`).

use crate::common::*;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn gets_per_second() {
    let env = start_signed_in().await;
    for i in 0..200 {
        env.emu.set_secret("vault1", &format!("s{i}"), "x", None);
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let http = client(&env.emu, None);
        let base = env.v1("");
        let tok = env.token.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..125 {
                let url = format!("{base}/secrets/s{}?api-version=7.4", (w * 125 + i) % 200);
                let r = http.get(url).bearer_auth(&tok).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let el = t.elapsed();
    println!(
        "2000 GETs over 16 connections in {el:?}: {:.0}/s",
        2000.0 / el.as_secs_f64()
    );
    env.emu.shutdown().await;
}
