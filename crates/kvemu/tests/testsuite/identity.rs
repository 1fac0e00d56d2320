//! The identity endpoint: IMDS rules (Metadata header, resource, selection of
//! identities), string-valued JSON, the Arc Basic challenge, and its faults.

use crate::common::faults::{self, Row, Seen, ms, status};
use crate::common::*;
use kvemu::{Config, Fault, FaultKind, IdentityMode};

const UA: &str = "c7373ae5-91c2-4165-8ab6-7381d6e75619";
const Q: &str = "api-version=2018-02-01&resource=https://vault.azure.net";
const OTHER: &str = "00000000-0000-0000-0000-000000000001";

/// `expires_on - not_before` of a token answer (both strings of digits).
fn lifetime(v: &Value) -> i64 {
    let secs = |k: &str| v[k].as_str().unwrap().parse::<i64>().unwrap();
    secs("expires_on") - secs("not_before")
}

/// Requests the identity endpoint refuses, `WHAT QUERY`: what is wrong and
/// the query (sent with `Metadata: true` unless WHAT says otherwise).
const REFUSED: [&str; 5] = [
    "no-metadata  api-version=2018-02-01&resource=https://vault.azure.net",
    "no-resource  api-version=2018-02-01",
    "no-version   resource=https://vault.azure.net",
    "proxied      api-version=2018-02-01&resource=https://vault.azure.net",
    "unknown-id   api-version=2018-02-01&resource=https://vault.azure.net&client_id=00000000-0000-0000-0000-000000000001",
];

#[tokio::test]
async fn imds_rules_and_shapes() {
    let env = start_with(with_identities(&[UA])).await;
    let endpoint = env.emu.identity_endpoint();
    for row in REFUSED {
        let (what, query) = row.split_once(' ').unwrap();
        let query = query.trim();
        let r = match what {
            "no-metadata" => env.http.get(format!("{endpoint}?{query}")),
            "proxied" => env.imds(query).header("X-Forwarded-For", "10.0.0.1"),
            _ => env.imds(query),
        };
        let r = r.reply().await;
        assert_eq!(r.status, 400, "{row}");
        assert_eq!(r["error"], "invalid_request", "{row}: {}", r.body);
        assert!(r["error_description"].is_string(), "{row}");
    }
    let v = env.imds(Q).reply().await.expect(200, "", "system identity");
    let fields = "access_token expires_in expires_on ext_expires_in not_before";
    for k in fields
        .split(' ')
        .chain(["resource", "token_type", "client_id"])
    {
        assert!(v[k].is_string(), "{k}: {}", v.body);
    }
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["resource"], "https://vault.azure.net");
    assert_eq!(v["client_id"], env.emu.system_identity().client_id);
    assert_eq!(lifetime(&v.body), 86400);
    let ua = env.emu.identities().into_iter().find(|i| i.client_id == UA);
    let ua = ua.unwrap();
    for sel in [
        format!("client_id={UA}"),
        format!("object_id={}", ua.object_id),
        format!("msi_res_id={}", ua.msi_res_id),
    ] {
        let v = env.imds(&format!("{Q}&{sel}")).reply().await;
        assert_eq!(v.expect(200, "", &sel)["client_id"], UA, "{sel}");
    }
    // Identities can be added at run time.
    env.emu.add_identity(OTHER);
    let r = env.imds(&format!("{Q}&client_id={OTHER}")).reply().await;
    assert_eq!(r.status, 200);
    let c = env.emu.counters();
    assert_eq!(c.identity, 10);
    assert_eq!(c.identity_status[&400], 5);
    assert_eq!(c.tokens_issued[UA], 3);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn arc_basic_challenge() {
    let identity_mode = IdentityMode::Arc;
    let env = start_with(Config {
        identity_mode,
        ..Default::default()
    })
    .await;
    let arc = env.imds("api-version=2019-11-01&resource=https://vault.azure.net");
    let r = arc.try_clone().unwrap().reply().await;
    assert_eq!(r.status, 401);
    let path = r
        .header("www-authenticate")
        .strip_prefix("Basic realm=")
        .unwrap();
    assert!(path.ends_with(".key"));
    assert!(std::path::Path::new(path).starts_with(env.emu.arc_token_dir()));
    let secret = std::fs::read_to_string(path).unwrap();
    assert!(secret.len() <= 4096);
    // Wrong secret: a new challenge.
    let r = arc
        .try_clone()
        .unwrap()
        .header("Authorization", "Basic nope");
    assert_eq!(r.reply().await.status, 401);
    let r = arc
        .header("Authorization", format!("Basic {secret}"))
        .reply()
        .await;
    let v = r.expect(200, "", "the file's secret");
    env.emu.set_secret("vault1", "s", "x", None);
    let s = env
        .get_as(v.str("access_token"), "/secrets/s?api-version=7.4")
        .await;
    s.expect(200, "", "vault with an Arc token");
    // IMDS's api-version is not Arc's.
    assert_eq!(env.imds(Q).reply().await.status, 400);
    env.emu.shutdown().await;
}

fn retry_after_2(s: &Seen) {
    assert_eq!(s.header("retry-after"), "2");
}

#[tokio::test]
async fn identity_faults() {
    let env = start().await;
    let fault = |kind| Fault::identity(kind, 1);
    let rows: Vec<Row> = vec![
        ("404", fault(status(404, Some(2))), retry_after_2),
        ("410", fault(status(410, Some(2))), retry_after_2),
        ("429", fault(status(429, Some(2))), retry_after_2),
        ("500", fault(status(500, Some(2))), retry_after_2),
        ("delay", fault(FaultKind::Delay(ms(300))), |s| {
            assert_eq!(s.status(), 200);
            assert!(s.elapsed >= ms(300));
        }),
        ("skew", fault(FaultKind::ExpiresOnSkew(-7200)), |s| {
            assert_eq!(lifetime(&s.json()), 86400 - 7200);
        }),
        ("reset", fault(FaultKind::Reset), |s| {
            assert!(s.answer.is_err())
        }),
    ];
    let url = format!("{}?{Q}", env.emu.identity_endpoint());
    faults::run(&env, rows, |http| http.get(&url).header("Metadata", "true")).await;
    assert_eq!(env.emu.counters().identity, 7);
    env.emu.shutdown().await;
}
