//! `kvemu serve` as a process: endpoints.json written by rename once the
//! listeners accept, seeded certificates reachable, clean exit on SIGTERM.

use crate::common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const UA: &str = "c7373ae5-91c2-4165-8ab6-7381d6e75619";

/// Polls every 50 ms until `probe` gives a value; panics naming `what` after `limit`.
fn wait_until<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(t.elapsed() < limit, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then the exit status must be success within 10 s.
fn terminate(mut child: Child) {
    #[cfg(unix)]
    {
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let st = wait_until(
            Duration::from_secs(10),
            "kvemu did not stop on SIGTERM",
            || child.try_wait().unwrap(),
        );
        assert!(st.success(), "{st:?}");
    }
    #[cfg(not(unix))]
    {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[tokio::test]
async fn serve_writes_endpoints_and_serves() {
    let dir = std::env::temp_dir().join(format!("kvemu-serve-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let child = Command::new(env!("CARGO_BIN_EXE_kvemu"))
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&dir)
        .args(["--identity", UA, "--seed"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let endpoints = dir.join("endpoints.json");
    let ep = wait_until(
        Duration::from_secs(30),
        "endpoints.json not written",
        || {
            let text = std::fs::read_to_string(&endpoints).ok()?;
            Some(serde_json::from_str::<Value>(&text).expect("endpoints.json is complete JSON"))
        },
    );
    let vault_addr: std::net::SocketAddr = ep["vault_addr"].as_str().unwrap().parse().unwrap();
    let identity = ep["identity_endpoint"].as_str().unwrap();
    assert!(identity.starts_with("http://127.0.0.1:"));
    assert!(identity.ends_with("/metadata/identity/oauth2/token"));
    let ca_file = Path::new(ep["ca_file"].as_str().unwrap());
    assert!(ca_file.is_absolute());
    let http = client_to(&std::fs::read(ca_file).unwrap(), vault_addr, None);
    let query = format!("api-version=2018-02-01&resource={VAULT_RESOURCE}&client_id={UA}");
    let tok = http
        .get(format!("{identity}?{query}"))
        .header("Metadata", "true");
    let tok = tok.reply().await;
    let token = tok.str("access_token");
    let demo = |path: &str| {
        let url = format!("https://demo.vault.azure.net:{}{path}", vault_addr.port());
        http.get(url).bearer_auth(token).reply()
    };
    let pem_secret = "/secrets/seed-rsa-pem/?api-version=7.4";
    demo(pem_secret).await.expect(200, "", "seeded");

    // The control endpoint: secrets, faults, rotation, counters.
    let ctl = ep["control_endpoint"].as_str().unwrap();
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let control = |method, path: &str, body: Value| {
        plain
            .request(method, format!("{ctl}{path}"))
            .json(&body)
            .reply()
    };
    let secret = json!({"value": "from-control", "contentType": "text/plain"});
    let r = control(Method::PUT, "/vaults/demo/secrets/ctl", secret).await;
    assert_eq!(r.status, 200);
    let ctl_secret = "/secrets/ctl?api-version=7.4";
    assert_eq!(demo(ctl_secret).await["value"], "from-control");
    let fault = json!([{"vault": "demo", "object": "ctl", "kind": "status", "status": 503, "retry_after": 3}]);
    assert_eq!(control(Method::POST, "/faults", fault).await.status, 200);
    let r = demo(ctl_secret).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), "3");
    let bad = control(Method::POST, "/faults", json!({"kind": "bogus"})).await;
    assert_eq!(bad.status, 400);
    let rotate = "/vaults/demo/certificates/seed-rsa-pem/rotate";
    let rotated = plain.post(format!("{ctl}{rotate}")).reply().await;
    let v = demo(pem_secret).await;
    assert!(v.str("id").ends_with(rotated.str("version")));
    let c = plain.get(format!("{ctl}/counters")).reply().await;
    assert_eq!(c["object"]["demo/ctl"], 2);
    assert_eq!(c["status"]["demo/503"], 1);
    assert!(c["identity"].as_u64().unwrap() >= 1);
    let settings = json!({"page_size": 1, "token_lifetime_secs": 60, "identity_mode": "imds"});
    let r = control(Method::PUT, "/settings", settings).await;
    assert_eq!(r.status, 200);
    terminate(child);
    let _ = std::fs::remove_dir_all(&dir);
}
