//! The official Rust SDK (`azure_security_keyvault_secrets`) runs set / get /
//! list / list versions against the emulator, with challenge verification on,
//! a real-shaped vault URL (`https://<vault>.vault.azure.net/`, routed to the
//! emulator by the transport's DNS override), the test CA trusted, and a token
//! credential that asks the emulator's identity endpoint as IMDS clients do.

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, Transport};
use azure_core::time::OffsetDateTime;
use azure_security_keyvault_certificates::models::{
    CertificatePolicy, ImportCertificateParameters, SecretProperties as CertSecretProperties,
};
use azure_security_keyvault_certificates::{CertificateClient, CertificateClientOptions};
use azure_security_keyvault_secrets::models::{SecretClientGetSecretOptions, SetSecretParameters};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use futures_util::TryStreamExt;
use std::sync::Arc;

/// A managed-identity credential for an arbitrary IMDS-style endpoint
/// (`azure_identity`'s is hard-wired to 169.254.169.254).
#[derive(Debug)]
struct EndpointCredential {
    endpoint: String,
    client_id: Option<String>,
    http: reqwest::Client,
}

impl EndpointCredential {
    async fn fetch(&self, scopes: &[&str]) -> Result<AccessToken, Box<dyn std::error::Error>> {
        let resource = scopes
            .first()
            .ok_or("no scope")?
            .trim_end_matches("/.default");
        let mut query = vec![("api-version", "2018-02-01"), ("resource", resource)];
        if let Some(c) = &self.client_id {
            query.push(("client_id", c));
        }
        let url = reqwest::Url::parse_with_params(&self.endpoint, &query)?;
        let rsp = self.http.get(url).header("Metadata", "true").send().await?;
        let status = rsp.status();
        let body = rsp.text().await?;
        if !status.is_success() {
            return Err(format!("identity endpoint: {status}: {body}").into());
        }
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let token = v["access_token"].as_str().ok_or("no access_token")?;
        let expires_on = v["expires_on"].as_str().and_then(|s| s.parse().ok());
        let expires_on = expires_on.ok_or("expires_on is not a string of digits")?;
        let expires_on = OffsetDateTime::from_unix_timestamp(expires_on)?;
        Ok(AccessToken::new(token.to_string(), expires_on))
    }
}

#[async_trait::async_trait]
impl TokenCredential for EndpointCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let credential = azure_core::error::ErrorKind::Credential;
        let token = self.fetch(scopes).await;
        token.map_err(|e| azure_core::Error::with_message(credential, e.to_string()))
    }
}

fn transport(emu: &kvemu::Emulator, hosts: &[&str]) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls::pki_types::pem::PemObject::pem_slice_iter(emu.ca_pem().as_bytes()) {
        let der: rustls::pki_types::CertificateDer<'static> = der.expect("CA PEM");
        roots.add(der).expect("CA certificate");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    for h in hosts {
        // The URL has no port, so the override's port is used.
        b = b.resolve(h, emu.vault_addr());
    }
    b.build().expect("reqwest client")
}

/// The model of a call's response; the panic names the call.
macro_rules! model {
    ($call:expr) => {
        $call
            .await
            .and_then(|r| r.into_model())
            .unwrap_or_else(|e| panic!("{}: {e:?}", stringify!($call)))
    };
}

/// Every item of a pager; the panic names the call.
macro_rules! all {
    ($pager:expr) => {
        $pager
            .unwrap()
            .try_collect::<Vec<_>>()
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", stringify!($pager)))
    };
}

fn client_options(http: &Arc<reqwest::Client>) -> ClientOptions {
    let transport = Some(Transport::new(http.clone()));
    ClientOptions {
        transport,
        ..Default::default()
    }
}

async fn flow(emu: &kvemu::Emulator, vault: &str, client_id: Option<&str>) {
    let host = format!("{vault}.vault.azure.net");
    let http = Arc::new(transport(emu, &[&host]));
    let credential = Arc::new(EndpointCredential {
        endpoint: emu.identity_endpoint(),
        client_id: client_id.map(str::to_string),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    });
    let url = format!("https://{host}/");
    let client_options = client_options(&http);
    let options = SecretClientOptions {
        client_options,
        ..Default::default()
    };
    let client = SecretClient::new(&url, credential.clone(), Some(options)).expect("client");
    let client_options = self::client_options(&http);
    let options = CertificateClientOptions {
        client_options,
        ..Default::default()
    };
    let certs = CertificateClient::new(&url, credential, Some(options)).expect("certificates");

    let mut versions = Vec::new();
    for i in 0..3 {
        let params = SetSecretParameters {
            value: Some(format!("value-{i}")),
            content_type: Some("text/plain".into()),
            ..Default::default()
        };
        let secret = model!(client.set_secret("rs-secret", params.try_into().unwrap(), None));
        assert_eq!(secret.value.as_deref(), Some(format!("value-{i}").as_str()));
        versions.push(secret.resource_id().unwrap().version.unwrap());
    }
    let latest = model!(client.get_secret("rs-secret", None));
    assert_eq!(latest.value.as_deref(), Some("value-2"));
    assert_eq!(latest.content_type.as_deref(), Some("text/plain"));
    assert!(latest.attributes.as_ref().unwrap().created.is_some());
    let secret_version = Some(versions[0].clone());
    let first = SecretClientGetSecretOptions {
        secret_version,
        ..Default::default()
    };
    let first = model!(client.get_secret("rs-secret", Some(first)));
    assert_eq!(first.value.as_deref(), Some("value-0"));

    for n in ["a", "b", "c"] {
        let value = Some(n.into());
        let p = SetSecretParameters {
            value,
            ..Default::default()
        };
        model!(client.set_secret(&format!("rs-{n}"), p.try_into().unwrap(), None));
    }
    let listed = all!(client.list_secret_properties(None));
    let mut names: Vec<_> = listed
        .iter()
        .map(|p| p.resource_id().unwrap().name)
        .collect();
    names.sort();
    assert_eq!(names, ["rs-a", "rs-b", "rs-c", "rs-secret"]);
    let listed = all!(client.list_secret_properties_versions("rs-secret", None));
    let version = |p: &_| -> String { ResourceExt::resource_id(p).unwrap().version.unwrap() };
    let mut seen: Vec<String> = listed.iter().map(version).collect();
    seen.sort();
    versions.sort();
    assert_eq!(seen, versions);

    // A missing secret is a 404 with the service's error code.
    let e = client.get_secret("missing", None).await.unwrap_err();
    assert!(format!("{e:?}").contains("SecretNotFound"), "{e:?}");

    // Import a PEM certificate with the official certificates client; its
    // managed secret has the same version, key first.
    let pki = emu.test_pki().unwrap();
    let cn = "rs.example.test";
    let issued = pki.issue(cn, &[cn.into()], kvemu::seed::LeafKey::EcP256, 30);
    let issued = issued.unwrap();
    let content_type = Some("application/x-pem-file".into());
    let params = ImportCertificateParameters {
        base64_encoded_certificate: Some(issued.pem_key_first()),
        certificate_policy: Some(CertificatePolicy {
            secret_properties: Some(CertSecretProperties { content_type }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cert = model!(certs.import_certificate("rs-cert", params.try_into().unwrap(), None));
    let leaf = issued.chain[0].as_slice();
    assert_eq!(cert.cer.as_deref(), Some(leaf));
    use sha1::Digest as _;
    let thumbprint = sha1::Sha1::digest(leaf);
    assert_eq!(cert.x509_thumbprint.as_deref(), Some(thumbprint.as_slice()));
    let cert_version = cert.id.as_deref().unwrap().rsplit('/').next().unwrap();
    let got = model!(certs.get_certificate("rs-cert", None));
    assert_eq!(got.id, cert.id);
    let listed = all!(certs.list_certificate_properties_versions("rs-cert", None));
    assert_eq!(listed.len(), 1);
    let managed = model!(client.get_secret("rs-cert", None));
    assert_eq!(managed.managed, Some(true));
    assert_eq!(managed.kid, cert.kid);
    let pem = Some("application/x-pem-file");
    assert_eq!(managed.content_type.as_deref(), pem);
    let managed_version = managed.resource_id().unwrap().version;
    assert_eq!(managed_version.as_deref(), Some(cert_version));
    let value = managed.value.as_deref().unwrap();
    assert!(value.starts_with("-----BEGIN PRIVATE KEY-----"));

    // A PFX (OpenSSL's modern form) imported with the official client is
    // served in Key Vault's form, decodable with the empty password.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let pfx = issued.pfx(kvemu::PfxForm::Modern).unwrap();
    let base64_encoded_certificate = Some(b64.encode(&pfx));
    let params = ImportCertificateParameters {
        base64_encoded_certificate,
        ..Default::default()
    };
    let cert = model!(certs.import_certificate("rs-pfx", params.try_into().unwrap(), None));
    assert_eq!(cert.cer.as_deref(), Some(leaf));
    let managed = model!(client.get_secret("rs-pfx", None));
    let pkcs12 = Some("application/x-pkcs12");
    assert_eq!(managed.content_type.as_deref(), pkcs12);
    let der = b64.decode(managed.value.as_deref().unwrap()).unwrap();
    let decoded = akvsync_pkcs12::decode(&der, None).unwrap();
    assert_eq!(decoded.certificates[0].der, leaf);

    // A certificate-backed secret (imported through the emulator's import path).
    let seeded = emu.seed(vault).unwrap();
    let pem = seeded.iter().find(|i| i.name == "seed-rsa-pem").unwrap();
    let s = model!(client.get_secret("seed-rsa-pem", None));
    assert_eq!(s.managed, Some(true));
    let version = s.resource_id().unwrap().version;
    assert_eq!(version.as_deref(), Some(pem.version.as_str()));
    assert!(s.value.unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[tokio::test]
async fn official_rust_sdk_against_kvemu() {
    // reqwest's `rustls-no-provider`: ring, process-wide (no aws-lc).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ua = "0d2a3c41-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
    let emu = kvemu::Emulator::start(kvemu::Config {
        identities: vec![ua.into()],
        page_size: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    flow(&emu, "rsvault", None).await;
    flow(&emu, "rsvault2", Some(ua)).await;
    let c = emu.counters();
    // Each client's first request goes without a token and gets the challenge.
    assert!(c.status_count("rsvault", 401) >= 1);
    // One token per client (secrets, certificates): each caches its own.
    assert_eq!(c.tokens_issued[ua], 2);
    emu.shutdown().await;
}
