//! Shared helpers of the emulator's integration tests: start an emulator, a
//! reqwest client that trusts its CA and routes real-shaped vault hosts to it,
//! and token fetching through the identity endpoint.

#![allow(dead_code)]

use kvemu::{Config, Emulator};
use serde_json::Value;
use std::time::Duration;

pub const API: &str = "7.4";

pub struct Env {
    pub emu: Emulator,
    pub http: reqwest::Client,
}

/// Hosts the test client routes to the emulator.
pub const VAULTS: [&str; 5] = [
    "vault1.vault.azure.net",
    "vault2.vault.azure.net",
    "cnvault.vault.azure.cn",
    "govvault.vault.usgovcloudapi.net",
    "devault.vault.microsoftazure.de",
];

pub async fn start() -> Env {
    start_with(Config::default()).await
}

pub async fn start_with(cfg: Config) -> Env {
    let emu = Emulator::start(cfg).await.expect("emulator starts");
    let http = client(&emu, None);
    Env { emu, http }
}

pub fn client(emu: &Emulator, timeout: Option<Duration>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).unwrap();
    let mut b = reqwest::Client::builder()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    for h in VAULTS {
        b = b.resolve(h, emu.vault_addr());
    }
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().unwrap()
}

impl Env {
    /// `https://<host>:<port><path_and_query>`
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.emu.vault_addr().port())
    }

    pub fn v1(&self, path: &str) -> String {
        self.url("vault1.vault.azure.net", path)
    }

    /// A token for the system identity via the identity endpoint.
    pub async fn token(&self) -> String {
        self.token_for(None, "https://vault.azure.net").await
    }

    pub async fn token_for(&self, client_id: Option<&str>, resource: &str) -> String {
        let mut url = format!(
            "{}?api-version=2018-02-01&resource={}",
            self.emu.identity_endpoint(),
            resource
        );
        if let Some(c) = client_id {
            url.push_str(&format!("&client_id={c}"));
        }
        let r = self
            .http
            .get(url)
            .header("Metadata", "true")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    pub async fn get(&self, url: &str, token: &str) -> reqwest::Response {
        self.http.get(url).bearer_auth(token).send().await.unwrap()
    }

    pub async fn put_secret(
        &self,
        vault_host: &str,
        name: &str,
        body: Value,
        token: &str,
    ) -> reqwest::Response {
        self.http
            .put(self.url(vault_host, &format!("/secrets/{name}?api-version={API}")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

/// Status and parsed JSON body.
pub async fn json(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}
