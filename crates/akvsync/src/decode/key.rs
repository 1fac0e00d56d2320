//! Private keys: PKCS#8, PKCS#1 (RSA) and SEC1 (EC) input, normalised to PKCS#8, with the
//! public key derived for matching the leaf certificate. Key bytes live in `Zeroizing`
//! buffers and never reach `Debug` output or error messages.

use der::asn1::{ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode};
use pkcs8::PrivateKeyInfo;
use spki::AlgorithmIdentifier;
use zeroize::Zeroizing;

use super::DecodeError;
use super::certificate::{OID_EC, OID_RSA};

/// A private key in PKCS#8 DER.
pub struct PrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    /// The public key as it appears in a certificate's subjectPublicKey bits.
    public_key: Vec<u8>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl PrivateKey {
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    pub(crate) fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// From PKCS#8 `PrivateKeyInfo` DER (what PFX key bags and `PRIVATE KEY` hold).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, DecodeError> {
        let info =
            PrivateKeyInfo::from_der(der).map_err(|e| DecodeError::Key(format!("PKCS#8: {e}")))?;
        let public_key = if info.algorithm.oid == OID_RSA {
            rsa_public_key(info.private_key)?
        } else if info.algorithm.oid == OID_EC {
            let key = sec1::EcPrivateKey::from_der(info.private_key)
                .map_err(|e| DecodeError::Key(format!("EC key: {e}")))?;
            key.public_key
                .map(<[u8]>::to_vec)
                .ok_or_else(missing_ec_public_key)?
        } else if let Some(public) = info.public_key {
            public.to_vec()
        } else {
            return Err(DecodeError::Key(format!(
                "unsupported key algorithm {}",
                info.algorithm.oid
            )));
        };
        Ok(PrivateKey {
            pkcs8: Zeroizing::new(der.to_vec()),
            public_key,
        })
    }

    /// From a PKCS#1 `RSAPrivateKey` (`RSA PRIVATE KEY`).
    pub fn from_pkcs1(der: &[u8]) -> Result<Self, DecodeError> {
        let public_key = rsa_public_key(der)?;
        let algorithm = AlgorithmIdentifier {
            oid: OID_RSA,
            parameters: Some(der::asn1::AnyRef::NULL),
        };
        let pkcs8 = wrap(algorithm, der)?;
        Ok(PrivateKey { pkcs8, public_key })
    }

    /// From a SEC1 `ECPrivateKey` (`EC PRIVATE KEY`); the curve comes from its parameters.
    pub fn from_sec1(der: &[u8]) -> Result<Self, DecodeError> {
        let key = sec1::EcPrivateKey::from_der(der)
            .map_err(|e| DecodeError::Key(format!("EC key: {e}")))?;
        let public_key = key
            .public_key
            .map(<[u8]>::to_vec)
            .ok_or_else(missing_ec_public_key)?;
        let curve: ObjectIdentifier = key
            .parameters
            .and_then(|p| p.named_curve())
            .ok_or_else(|| DecodeError::Key("EC key without a named curve".to_owned()))?;
        let curve_der = curve
            .to_der()
            .map_err(|e| DecodeError::Key(e.to_string()))?;
        let curve_any =
            der::asn1::AnyRef::from_der(&curve_der).map_err(|e| DecodeError::Key(e.to_string()))?;
        let pkcs8 = wrap(
            AlgorithmIdentifier {
                oid: OID_EC,
                parameters: Some(curve_any),
            },
            der,
        )?;
        Ok(PrivateKey { pkcs8, public_key })
    }
}

fn rsa_public_key(pkcs1_der: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let key = pkcs1::RsaPrivateKey::from_der(pkcs1_der)
        .map_err(|e| DecodeError::Key(format!("RSA key: {e}")))?;
    pkcs1::RsaPublicKey {
        modulus: key.modulus,
        public_exponent: key.public_exponent,
    }
    .to_der()
    .map_err(|e| DecodeError::Key(e.to_string()))
}

fn missing_ec_public_key() -> DecodeError {
    DecodeError::Key("EC key without its public key; cannot match it to a certificate".to_owned())
}

fn wrap(
    algorithm: AlgorithmIdentifier<der::asn1::AnyRef<'_>>,
    inner: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
    let _ = OctetStringRef::new(inner).map_err(|e| DecodeError::Key(e.to_string()))?;
    let info = PrivateKeyInfo {
        algorithm,
        private_key: inner,
        public_key: None,
    };
    info.to_der()
        .map(Zeroizing::new)
        .map_err(|e| DecodeError::Key(e.to_string()))
}
