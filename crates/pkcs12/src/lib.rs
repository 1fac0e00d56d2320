//! PKCS#12 (PFX) decoding and encoding shared by the agent and the emulator.
//!
//! Pure Rust (RustCrypto primitives, no OpenSSL, no C). The agent decodes what
//! Key Vault serves with [`decode`]; the emulator parses imported PFX files
//! with [`decode`] and produces Key Vault's (or OpenSSL 3's) form with
//! [`encode`].
//!
//! The empty password has two encodings (SPEC §4): Key Vault's PFX use a
//! zero-length password, OpenSSL's `-passout pass:` the BMPString terminator
//! `00 00`. [`decode`] tries both for `None` and `Some("")`.
//!
//! Module map: `asn1` (BER reader, DER writer, OIDs), `kdf` (PKCS#12 KDF,
//! password encodings, work bound), `cipher` (bag encryption), `mac`
//! (integrity MAC), `decode`, `encode`, `error`.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod asn1;
mod cipher;
mod decode;
mod des3;
mod encode;
mod error;
mod kdf;
mod mac;

use std::fmt;

pub use error::Error;

/// Largest PFX accepted by [`decode`]: 1 MiB, the agent's response cap (a
/// Key Vault secret is at most 25 KiB).
pub const MAX_PFX_LEN: usize = 1024 * 1024;

/// Largest KDF or MAC iteration count accepted (SPEC §10 work bound for
/// untrusted input); also the largest [`EncodeOptions::iterations`].
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Largest total number of key-derivation iterations one [`decode`] spends
/// (MAC checks and bag decryptions over all password encodings tried), so
/// that a file with many expensive bags cannot pin a CPU: ten times
/// [`MAX_ITERATIONS`] covers any real file at the per-count bound.
pub const MAX_TOTAL_ITERATIONS: u64 = 10 * MAX_ITERATIONS as u64;

/// CSP name Key Vault puts on RSA key bags (so that Windows imports the key
/// with CAPI1's enhanced provider).
pub const CSP_MS_ENHANCED_RSA_AES: &str = "Microsoft Enhanced RSA and AES Cryptographic Provider";

/// The contents of a PFX, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// X.509 certificates (certBag, x509Certificate), in file order.
    pub certificates: Vec<CertBag>,
    /// Private keys (keyBag or pkcs8ShroudedKeyBag), in file order.
    pub keys: Vec<KeyBag>,
}

/// One certificate of a PFX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertBag {
    /// The certificate's DER encoding.
    pub der: Vec<u8>,
    /// The localKeyId attribute (pairs a certificate with its key).
    pub local_key_id: Option<Vec<u8>>,
    /// The friendlyName attribute.
    pub friendly_name: Option<String>,
}

/// One private key of a PFX. `Debug` does not print the key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBag {
    /// The key as unencrypted PKCS#8 `PrivateKeyInfo` DER; zeroed on drop.
    pub pkcs8_der: zeroize::Zeroizing<Vec<u8>>,
    /// The localKeyId attribute (pairs a key with its certificate).
    pub local_key_id: Option<Vec<u8>>,
    /// The friendlyName attribute.
    pub friendly_name: Option<String>,
    /// Microsoft's CSP name attribute (1.3.6.1.4.1.311.17.1), e.g.
    /// "Microsoft Enhanced RSA and AES Cryptographic Provider".
    pub csp_name: Option<String>,
}

impl fmt::Debug for KeyBag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyBag")
            .field(
                "pkcs8_der",
                &format_args!("<{} bytes redacted>", self.pkcs8_der.len()),
            )
            .field("local_key_id", &self.local_key_id)
            .field("friendly_name", &self.friendly_name)
            .field("csp_name", &self.csp_name)
            .finish()
    }
}

/// Decodes a PFX (DER, or the BER forms older producers write).
///
/// `password`: `None` or `Some("")` mean the empty password, tried as zero
/// bytes and as the BMPString terminator `00 00`; the encoding the MAC
/// verifies is used (without a MAC, the one that decrypts to valid data).
/// A non-ASCII password is also tried in OpenSSL 1.x's byte-wise form.
///
/// Supported: keyBag, pkcs8ShroudedKeyBag, certBag (x509Certificate), nested
/// safeContentsBag; crlBag, secretBag and unknown bags are skipped. Encryption:
/// PKCS#12 PBE with 3DES, 2-key 3DES, RC2-128, RC2-40; PBES2 with PBKDF2
/// (HMAC-SHA1/224/256/384/512) and AES-128/192/256-CBC or DES-EDE3-CBC. MAC:
/// HMAC-SHA1/224/256/384/512; a PFX without MAC is accepted.
///
/// # Errors
/// [`Error::TooLarge`] above [`MAX_PFX_LEN`]; [`Error::MacMismatch`] for a
/// wrong password; [`Error::Decryption`] for a wrong password without MAC;
/// [`Error::IterationsTooHigh`] above [`MAX_ITERATIONS`];
/// [`Error::UnsupportedAlgorithm`]; [`Error::Malformed`] for anything else.
pub fn decode(pfx_der: &[u8], password: Option<&str>) -> Result<Decoded, Error> {
    decode::decode(pfx_der, password)
}

/// How [`encode`] protects the PFX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// 3DES (pbeWithSHAAnd3-KeyTripleDES-CBC) for key and cert bags, SHA-1
    /// MAC: what Key Vault serves.
    #[default]
    Legacy3Des,
    /// RC2-40 certs + 3DES key, SHA-1 MAC: OpenSSL 1.x / `-legacy` default.
    LegacyRc2,
    /// PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), HMAC-SHA256 MAC: OpenSSL 3
    /// default.
    ModernAes256,
}

/// How [`encode`] encodes an empty password for the PKCS#12 KDF (the MAC and
/// the legacy bag encryption; PBES2 always uses zero bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmptyPassword {
    /// Zero-length password bytes (what Key Vault's own PFX use).
    #[default]
    ZeroLength,
    /// BMPString terminator 00 00 (what `openssl -passout pass:` writes).
    BmpTerminator,
}

/// Options of [`encode`]. `Debug` does not print the password.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Encryption and MAC algorithms.
    pub scheme: Scheme,
    /// The password; `None` (or `Some("")`) is the empty password.
    pub password: Option<String>,
    /// Encoding of the empty password (ignored for a non-empty one).
    pub empty_password: EmptyPassword,
    /// KDF and MAC iteration count, 1 to [`MAX_ITERATIONS`].
    pub iterations: u32,
    /// friendlyName attribute on the key bag, and on the leaf's cert bag
    /// except with [`Scheme::Legacy3Des`] (Key Vault puts it only on the key).
    pub friendly_name: Option<String>,
    /// Microsoft CSP name attribute on the key bag.
    pub csp_name: Option<String>,
    /// localKeyId attribute on the key bag and the leaf's cert bag; empty
    /// means the SHA-1 of the leaf certificate (OpenSSL's choice).
    pub local_key_id: Vec<u8>,
}

impl fmt::Debug for EncodeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodeOptions")
            .field("scheme", &self.scheme)
            .field(
                "password",
                &match self.password.as_deref() {
                    None | Some("") => "<empty>",
                    Some(_) => "<redacted>",
                },
            )
            .field("empty_password", &self.empty_password)
            .field("iterations", &self.iterations)
            .field("friendly_name", &self.friendly_name)
            .field("csp_name", &self.csp_name)
            .field("local_key_id", &self.local_key_id)
            .finish()
    }
}

impl Default for EncodeOptions {
    /// Same as [`EncodeOptions::key_vault`].
    fn default() -> Self {
        Self::key_vault()
    }
}

impl EncodeOptions {
    /// Key Vault's form: [`Scheme::Legacy3Des`], zero-length empty password,
    /// 2000 iterations, localKeyId 01 00 00 00, CSP name
    /// [`CSP_MS_ENHANCED_RSA_AES`] on the key bag (set `csp_name` to `None`
    /// for an EC key), no friendlyName (Key Vault uses a random GUID; set one
    /// if wanted).
    pub fn key_vault() -> Self {
        Self {
            scheme: Scheme::Legacy3Des,
            password: None,
            empty_password: EmptyPassword::ZeroLength,
            iterations: 2000,
            friendly_name: None,
            csp_name: Some(CSP_MS_ENHANCED_RSA_AES.to_owned()),
            local_key_id: vec![1, 0, 0, 0],
        }
    }

    /// OpenSSL 3's default (`openssl pkcs12 -export -passout pass:`):
    /// [`Scheme::ModernAes256`], empty password as `00 00`, 2048 iterations,
    /// localKeyId = SHA-1 of the leaf, no friendlyName or CSP name.
    pub fn openssl_modern() -> Self {
        Self {
            scheme: Scheme::ModernAes256,
            password: None,
            empty_password: EmptyPassword::BmpTerminator,
            iterations: 2048,
            friendly_name: None,
            csp_name: None,
            local_key_id: Vec::new(),
        }
    }

    /// OpenSSL 1.x's default (`openssl pkcs12 -export -legacy -passout pass:`):
    /// [`Scheme::LegacyRc2`], otherwise as [`EncodeOptions::openssl_modern`].
    pub fn openssl_legacy() -> Self {
        Self {
            scheme: Scheme::LegacyRc2,
            ..Self::openssl_modern()
        }
    }

    /// Returns these options with `password` set (builder style).
    #[must_use]
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }
}

/// Encodes a certificate chain (DER, leaf first) and its private key (PKCS#8
/// `PrivateKeyInfo` DER) as a PFX. Salts and IVs are random.
///
/// Layout: one key bag (pkcs8ShroudedKeyBag) in a `data` ContentInfo and the
/// certificates in an `encryptedData` ContentInfo (key first for
/// [`Scheme::Legacy3Des`], as Key Vault does; certificates first otherwise,
/// as OpenSSL does), then the MAC.
///
/// # Errors
/// [`Error::InvalidInput`] for an empty chain, a certificate or key that is
/// not one DER SEQUENCE, or iterations outside 1..=[`MAX_ITERATIONS`];
/// [`Error::Random`] if the OS random generator fails.
pub fn encode(
    cert_chain_der: &[&[u8]],
    key_pkcs8_der: &[u8],
    opts: &EncodeOptions,
) -> Result<Vec<u8>, Error> {
    encode::encode(cert_chain_der, key_pkcs8_der, opts)
}
