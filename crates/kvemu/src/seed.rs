//! Realistic test certificates and seeding: RSA-2048 and EC P-256 leafs issued
//! by a test intermediate and root (rcgen), encoded as Key Vault encodes them
//! (legacy PFX), as OpenSSL 3 does (modern PFX) and as PEM (key first), and
//! imported into a vault through the same code as `POST …/import`.
//!
//! Seeded names (vault [`DEFAULT_VAULT`] for `kvemu serve --seed`):
//! - `seed-rsa-pfx`: RSA-2048 leaf, uploaded as a legacy PFX (3DES, SHA-1 MAC,
//!   zero-length password), served `application/x-pkcs12`;
//! - `seed-ec-pfx`: EC P-256 leaf, uploaded as a modern PFX (AES-256, PBKDF2,
//!   SHA-256 MAC), served `application/x-pkcs12`;
//! - `seed-rsa-pem`: RSA-2048 leaf, uploaded as PEM with the key first,
//!   served `application/x-pem-file`.
//!
//! Every leaf carries the chain leaf → intermediate → root and the SAN
//! `<name>.example.test`.

use crate::Error;
use crate::certparse::{self, KeyMaterial};
use crate::pfx::{self, PfxForm};
use crate::tls::{ca_params, validity};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The vault `kvemu serve --seed` fills.
pub const DEFAULT_VAULT: &str = "demo";

/// Pre-generated RSA-2048 test keys (ring cannot generate RSA keys; these are
/// test material only, never trusted anywhere).
const RSA_KEYS: [&str; 2] = [
    include_str!("testkeys/rsa2048-1.pk8.pem"),
    include_str!("testkeys/rsa2048-2.pk8.pem"),
];

/// Leaf key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafKey {
    Rsa2048,
    EcP256,
}

/// How a certificate is uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Key Vault's own PFX form (served as `application/x-pkcs12`).
    PfxLegacy,
    /// OpenSSL 3's default PFX form (served as `application/x-pkcs12`).
    PfxModern,
    /// PEM, key first (served as `application/x-pem-file`).
    Pem,
}

/// A leaf with its chain and key.
pub struct Issued {
    /// Leaf, intermediate, root (DER).
    pub chain: Vec<Vec<u8>>,
    pub key_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("chain_len", &self.chain.len())
            .field("key_pkcs8", &"<redacted>")
            .finish()
    }
}

impl Issued {
    /// PEM with the key first, then leaf, intermediate, root (Key Vault's order).
    pub fn pem_key_first(&self) -> String {
        certparse::key_vault_pem(
            &KeyMaterial {
                label: "PRIVATE KEY".into(),
                der: self.key_pkcs8.clone(),
            },
            &self.chain,
        )
    }

    /// A PFX in the given form.
    pub fn pfx(&self, form: PfxForm) -> Result<Vec<u8>, Error> {
        pfx::encode(&self.chain, &self.key_pkcs8, form).map_err(Error::Seed)
    }
}

/// A test root and intermediate that issue leafs.
pub struct TestPki {
    root_der: Vec<u8>,
    intermediate_der: Vec<u8>,
    intermediate: Issuer<'static, KeyPair>,
    rsa_next: AtomicUsize,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

fn seed_err(e: impl std::fmt::Display) -> Error {
    Error::Seed(e.to_string())
}

impl TestPki {
    pub fn generate() -> Result<Self, Error> {
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(seed_err)?;
        let root_params = ca_params("kvemu Test Root CA", 3650);
        let root_cert = root_params.self_signed(&root_key).map_err(seed_err)?;
        let root = Issuer::new(root_params, root_key);
        let int_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(seed_err)?;
        let int_params = ca_params("kvemu Test Issuing CA 01", 1825);
        let int_cert = int_params.signed_by(&int_key, &root).map_err(seed_err)?;
        Ok(TestPki {
            root_der: root_cert.der().to_vec(),
            intermediate_der: int_cert.der().to_vec(),
            intermediate: Issuer::new(int_params, int_key),
            rsa_next: AtomicUsize::new(0),
        })
    }

    /// The root's certificate (DER): what a machine that trusts this PKI has in its roots.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// Issues a TLS server leaf for `dns_names` valid for `days`.
    pub fn issue(
        &self,
        cn: &str,
        dns_names: &[String],
        key: LeafKey,
        days: i64,
    ) -> Result<Issued, Error> {
        let kp = match key {
            LeafKey::EcP256 => {
                KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(seed_err)?
            }
            LeafKey::Rsa2048 => {
                let i = self.rsa_next.fetch_add(1, Ordering::Relaxed) % RSA_KEYS.len();
                KeyPair::from_pem(RSA_KEYS[i]).map_err(seed_err)?
            }
        };
        let mut p = CertificateParams::new(dns_names.to_vec()).map_err(seed_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        validity(&mut p, days);
        let cert = p.signed_by(&kp, &self.intermediate).map_err(seed_err)?;
        Ok(Issued {
            chain: vec![
                cert.der().to_vec(),
                self.intermediate_der.clone(),
                self.root_der.clone(),
            ],
            key_pkcs8: kp.serialize_der(),
        })
    }
}

/// The seeded certificates: (name, key, upload form).
pub const SEEDED: [(&str, LeafKey, Upload); 3] = [
    ("seed-rsa-pfx", LeafKey::Rsa2048, Upload::PfxLegacy),
    ("seed-ec-pfx", LeafKey::EcP256, Upload::PfxModern),
    ("seed-rsa-pem", LeafKey::Rsa2048, Upload::Pem),
];
