//! One way to start the emulator for a test: [`start`] / [`start_with`] give
//! an [`Env`] with a reqwest client that trusts the emulator's CA, routes the
//! [`VAULTS`] hosts to its vault listener and follows no redirects, plus
//! tokens through the identity endpoint, as IMDS clients get them.

use kvemu::{Config, Emulator};
use reqwest::{Method, RequestBuilder};
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::reply::{Reply, SendReply as _};

/// The vault of [`Env::req`]'s relative paths.
pub const V1: &str = "vault1.vault.azure.net";
/// The resource a token for the public cloud's vaults is issued for.
pub const VAULT_RESOURCE: &str = "https://vault.azure.net";

/// Hosts the test client routes to the emulator.
pub const VAULTS: [&str; 6] = [
    V1,
    "demo.vault.azure.net",
    "vault2.vault.azure.net",
    "cnvault.vault.azure.cn",
    "govvault.vault.usgovcloudapi.net",
    "devault.vault.microsoftazure.de",
];

pub struct Env {
    pub emu: Emulator,
    pub http: reqwest::Client,
    /// The system identity's token after [`start_signed_in`], else empty:
    /// what [`Env::get`] and [`Env::check`] send.
    pub token: String,
}

pub async fn start() -> Env {
    start_with(Config::default()).await
}

pub async fn start_with(cfg: Config) -> Env {
    let emu = Emulator::start(cfg).await.expect("emulator starts");
    let http = client(&emu, None);
    Env {
        emu,
        http,
        token: String::new(),
    }
}

/// A default config with these user-assigned identities.
pub fn with_identities(client_ids: &[&str]) -> Config {
    let identities = client_ids.iter().map(|c| c.to_string()).collect();
    Config {
        identities,
        ..Default::default()
    }
}

/// [`start`], signed in as the system identity.
pub async fn start_signed_in() -> Env {
    let mut env = start().await;
    env.token = env.new_token().await;
    env
}

/// A client for `emu`, with a whole-request `timeout` if given.
pub fn client(emu: &Emulator, timeout: Option<Duration>) -> reqwest::Client {
    client_to(emu.ca_pem().as_bytes(), emu.vault_addr(), timeout)
}

/// A client that trusts `ca_pem` and sends [`VAULTS`] to `vault_addr`.
pub fn client_to(
    ca_pem: &[u8],
    vault_addr: SocketAddr,
    timeout: Option<Duration>,
) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(ca_pem).unwrap();
    let mut b = reqwest::Client::builder()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    for h in VAULTS {
        b = b.resolve(h, vault_addr);
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
        self.url(V1, path)
    }

    /// A request to `target`: a path on [`V1`], or a whole `http(s)://` URL.
    pub fn req(&self, method: Method, target: &str) -> RequestBuilder {
        let url = if target.starts_with("http") {
            target.to_string()
        } else {
            self.v1(target)
        };
        self.http.request(method, url)
    }

    /// [`Env::req`] with [`Env::token`].
    pub fn call(&self, method: Method, target: &str) -> RequestBuilder {
        self.req(method, target).bearer_auth(&self.token)
    }

    /// [`check`](crate::common::check) of one `STATUS CODE METHOD TARGET`
    /// row with [`Env::token`].
    pub async fn check(&self, row: &str) -> Reply {
        crate::common::check(self, &self.token, row).await
    }

    /// [`Env::check`] with another token.
    pub async fn check_as(&self, token: &str, row: &str) -> Reply {
        crate::common::check(self, token, row).await
    }

    /// `GET target` with [`Env::token`], read as a [`Reply`].
    pub async fn get(&self, target: &str) -> Reply {
        self.get_as(&self.token, target).await
    }

    /// `GET target` with a bearer token, read as a [`Reply`].
    pub async fn get_as(&self, token: &str, target: &str) -> Reply {
        self.req(Method::GET, target)
            .bearer_auth(token)
            .reply()
            .await
    }

    /// A request to the identity endpoint with `query`, `Metadata: true` included.
    pub fn imds(&self, query: &str) -> RequestBuilder {
        let url = format!("{}?{query}", self.emu.identity_endpoint());
        self.http.get(url).header("Metadata", "true")
    }

    /// A token for the system identity via the identity endpoint.
    pub async fn new_token(&self) -> String {
        self.token_for(None, VAULT_RESOURCE).await
    }

    pub async fn token_for(&self, client_id: Option<&str>, resource: &str) -> String {
        let mut query = format!("api-version=2018-02-01&resource={resource}");
        if let Some(c) = client_id {
            query.push_str(&format!("&client_id={c}"));
        }
        let r = self.imds(&query).reply().await;
        assert_eq!(r.status, 200, "token for {client_id:?}: {}", r.body);
        r.str("access_token").to_string()
    }
}
