//! `kvemu serve` as a process: endpoints.json written by rename once the
//! listeners accept, seeded certificates reachable, clean exit on SIGTERM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_for(path: &Path) -> serde_json::Value {
    let t = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return serde_json::from_str(&text).expect("endpoints.json is complete JSON");
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "endpoints.json not written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn serve_writes_endpoints_and_serves() {
    let dir = std::env::temp_dir().join(format!("kvemu-serve-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvemu"))
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&dir)
        .args([
            "--identity",
            "c7373ae5-91c2-4165-8ab6-7381d6e75619",
            "--seed",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ep = wait_for(&dir.join("endpoints.json"));
    let vault_addr: std::net::SocketAddr = ep["vault_addr"].as_str().unwrap().parse().unwrap();
    let identity = ep["identity_endpoint"].as_str().unwrap();
    assert!(
        identity.starts_with("http://127.0.0.1:")
            && identity.ends_with("/metadata/identity/oauth2/token")
    );
    let ca_file = Path::new(ep["ca_file"].as_str().unwrap());
    assert!(ca_file.is_absolute());
    let ca = std::fs::read(ca_file).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("demo.vault.azure.net", vault_addr)
        .no_proxy()
        .build()
        .unwrap();
    let tok: serde_json::Value = http
        .get(format!(
            "{identity}?api-version=2018-02-01&resource=https://vault.azure.net&client_id=c7373ae5-91c2-4165-8ab6-7381d6e75619"
        ))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!(
        "https://demo.vault.azure.net:{}/secrets/seed-rsa-pem/?api-version=7.4",
        vault_addr.port()
    );
    let r = http
        .get(&url)
        .bearer_auth(tok["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = tok["access_token"].as_str().unwrap();

    // The control endpoint: secrets, faults, rotation, counters.
    let ctl = ep["control_endpoint"].as_str().unwrap();
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = plain
        .put(format!("{ctl}/vaults/demo/secrets/ctl"))
        .json(&serde_json::json!({"value": "from-control", "contentType": "text/plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ctl_url = format!(
        "https://demo.vault.azure.net:{}/secrets/ctl?api-version=7.4",
        vault_addr.port()
    );
    let v: serde_json::Value = http
        .get(&ctl_url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["value"], "from-control");
    let r = plain
        .post(format!("{ctl}/faults"))
        .json(&serde_json::json!([{"vault": "demo", "object": "ctl", "kind": "status", "status": 503, "retry_after": 3}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(&ctl_url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "3");
    let bad = plain
        .post(format!("{ctl}/faults"))
        .json(&serde_json::json!({"kind": "bogus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let rotated: serde_json::Value = plain
        .post(format!(
            "{ctl}/vaults/demo/certificates/seed-rsa-pem/rotate"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let v: serde_json::Value = http
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        v["id"]
            .as_str()
            .unwrap()
            .ends_with(rotated["version"].as_str().unwrap())
    );
    let c: serde_json::Value = plain
        .get(format!("{ctl}/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["object"]["demo/ctl"], 2);
    assert_eq!(c["status"]["demo/503"], 1);
    assert!(c["identity"].as_u64().unwrap() >= 1);
    let r = plain
        .put(format!("{ctl}/settings"))
        .json(&serde_json::json!({"page_size": 1, "token_lifetime_secs": 60, "identity_mode": "imds"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    #[cfg(unix)]
    {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let t = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(st.success(), "{st:?}");
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "kvemu did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    #[cfg(not(unix))]
    {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
