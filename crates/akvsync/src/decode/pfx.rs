//! PKCS#12 (PFX) decoding with the empty password (SPEC §4), on RustCrypto's ASN.1 types
//! and ciphers. What Key Vault serves is the legacy form (3DES, SHA-1 MAC) with a truly
//! zero-length password; OpenSSL's `-passout pass:` writes the two-byte BMPString
//! terminator instead. Both are tried, for the MAC and for the bags, as Windows'
//! `PFXImportCertStore` tries `NULL` and `L""`. Modern files (PBES2: PBKDF2 + AES) are
//! decrypted with `pkcs5`.
//!
//! Untrusted input: KDF and MAC iteration counts above 1,000,000 are refused (SPEC §10),
//! nesting of safe contents is bounded, and nothing panics.

use cbc::cipher::{BlockDecryptMut, InnerIvInit, KeyInit, KeyIvInit, block_padding::Pkcs7};
use der::asn1::{AnyRef, BmpString, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use hmac::Mac;
use pkcs12::kdf::{Pkcs12KeyType, derive_key};
use zeroize::Zeroizing;

use super::DecodeError;

/// KDF/MAC iteration bound on untrusted files (SPEC §10).
pub const MAX_ITERATIONS: u64 = 1_000_000;
/// Nested `safeContentsBag`s followed at most.
const MAX_NESTING: usize = 4;

const OID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const OID_ENCRYPTED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.6");
const OID_PBES2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");
const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const OID_LOCAL_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.21");
/// Microsoft's CSP name attribute: Windows imports such keys with CAPI1.
const OID_CSP_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.17.1");

/// The certificates and keys of a PFX, in file order.
pub struct Contents {
    pub certificates: Vec<Vec<u8>>,
    pub keys: Vec<KeyBag>,
}

/// A private key bag: PKCS#8 DER and the attributes we use.
pub struct KeyBag {
    pub pkcs8: Zeroizing<Vec<u8>>,
    pub local_key_id: Option<Vec<u8>>,
    pub csp_name: Option<String>,
}

fn malformed(what: impl std::fmt::Display) -> DecodeError {
    DecodeError::Pkcs12(what.to_string())
}

/// The password candidates: for an empty password, zero bytes and `00 00`.
fn candidates(password: Option<&str>) -> Result<Vec<Zeroizing<Vec<u8>>>, DecodeError> {
    match password {
        None | Some("") => Ok(vec![Zeroizing::new(Vec::new()), Zeroizing::new(vec![0, 0])]),
        Some(text) => {
            let bmp = BmpString::from_utf8(text).map_err(malformed)?;
            let mut bytes = Zeroizing::new(bmp.into_bytes().to_vec());
            bytes.extend([0, 0]);
            Ok(vec![bytes])
        }
    }
}

/// Decodes a PFX (DER).
pub fn decode(der: &[u8], password: Option<&str>) -> Result<Contents, DecodeError> {
    let pfx = pkcs12::pfx::Pfx::from_der(der).map_err(|e| malformed(format!("not a PFX: {e}")))?;
    if pfx.version != pkcs12::pfx::Version::V3 {
        return Err(malformed("unsupported PFX version"));
    }
    if pfx.auth_safe.content_type != OID_DATA {
        return Err(malformed(format!(
            "authSafe of type {} (only data is supported)",
            pfx.auth_safe.content_type
        )));
    }
    let auth_safe = pfx
        .auth_safe
        .content
        .decode_as::<OctetString>()
        .map_err(malformed)?;
    let auth_safe = auth_safe.as_bytes();
    let mut passwords = candidates(password)?;
    if let Some(mac) = &pfx.mac_data {
        let matched = verify_mac(mac, auth_safe, &passwords)?;
        passwords = vec![matched];
    }
    let contents: Vec<cms::content_info::ContentInfo> =
        Vec::from_der(auth_safe).map_err(malformed)?;
    let mut out = Contents {
        certificates: Vec::new(),
        keys: Vec::new(),
    };
    for info in contents {
        let safe_contents: Zeroizing<Vec<u8>> = if info.content_type == OID_DATA {
            Zeroizing::new(
                info.content
                    .decode_as::<OctetString>()
                    .map_err(malformed)?
                    .into_bytes(),
            )
        } else if info.content_type == OID_ENCRYPTED_DATA {
            let data = info
                .content
                .decode_as::<cms::encrypted_data::EncryptedData>()
                .map_err(malformed)?;
            let encrypted = data
                .enc_content_info
                .encrypted_content
                .ok_or_else(|| malformed("encryptedData without content"))?;
            let algorithm = data
                .enc_content_info
                .content_enc_alg
                .to_der()
                .map_err(malformed)?;
            decrypt_any(&algorithm, encrypted.as_bytes(), &passwords)?
        } else {
            continue; // e.g. public-key-encrypted contents: nothing we can open
        };
        read_safe_contents(&safe_contents, &passwords, &mut out, 0)?;
    }
    Ok(out)
}

fn iterations(value: i64) -> Result<u32, DecodeError> {
    if value < 1 || value as u64 > MAX_ITERATIONS {
        return Err(malformed(format!(
            "iteration count {value} outside 1..={MAX_ITERATIONS}"
        )));
    }
    Ok(value as u32)
}

/// Finds the password candidate whose MAC matches.
fn verify_mac(
    mac: &pkcs12::mac_data::MacData,
    data: &[u8],
    passwords: &[Zeroizing<Vec<u8>>],
) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
    let rounds = iterations(i64::from(mac.iterations))? as i32;
    let salt = mac.mac_salt.as_bytes();
    let expected = mac.mac.digest.as_bytes();
    let oid = mac.mac.algorithm.oid;
    for password in passwords {
        let ok = if oid == OID_SHA1 {
            hmac_matches::<sha1::Sha1>(password, salt, rounds, data, expected)
        } else if oid == OID_SHA256 {
            hmac_matches::<sha2::Sha256>(password, salt, rounds, data, expected)
        } else if oid == OID_SHA384 {
            hmac_matches::<sha2::Sha384>(password, salt, rounds, data, expected)
        } else if oid == OID_SHA512 {
            hmac_matches::<sha2::Sha512>(password, salt, rounds, data, expected)
        } else {
            return Err(malformed(format!("unsupported MAC digest {oid}")));
        };
        if ok {
            return Ok(password.clone());
        }
    }
    Err(malformed(
        "MAC verification failed: wrong password or corrupt file",
    ))
}

fn hmac_matches<D>(password: &[u8], salt: &[u8], rounds: i32, data: &[u8], expected: &[u8]) -> bool
where
    D: digest::Digest
        + digest::FixedOutputReset
        + digest::core_api::BlockSizeUser
        + Clone
        + digest::core_api::CoreProxy,
    hmac::SimpleHmac<D>: Mac + KeyInit,
{
    let size = <D as digest::Digest>::output_size();
    let key = Zeroizing::new(derive_key::<D>(
        password,
        salt,
        Pkcs12KeyType::Mac,
        rounds,
        size,
    ));
    let Ok(mut mac) = <hmac::SimpleHmac<D> as KeyInit>::new_from_slice(&key) else {
        return false;
    };
    mac.update(data);
    mac.verify_slice(expected).is_ok()
}

fn read_safe_contents(
    der: &[u8],
    passwords: &[Zeroizing<Vec<u8>>],
    out: &mut Contents,
    depth: usize,
) -> Result<(), DecodeError> {
    if depth > MAX_NESTING {
        return Err(malformed("safe contents nested too deeply"));
    }
    let bags: Vec<pkcs12::safe_bag::SafeBag> = Vec::from_der(der).map_err(malformed)?;
    for bag in bags {
        // bag_value is the whole `[0] EXPLICIT` element; its content is the inner TLV.
        let wrapper = AnyRef::from_der(&bag.bag_value).map_err(malformed)?;
        let inner = wrapper.value();
        let attributes = bag.bag_attributes.as_ref();
        if bag.bag_id == pkcs12::PKCS_12_CERT_BAG_OID {
            let cert = pkcs12::cert_type::CertBag::from_der(inner).map_err(malformed)?;
            if cert.cert_id == pkcs12::PKCS_12_X509_CERT_OID {
                out.certificates.push(cert.cert_value.into_bytes());
            }
        } else if bag.bag_id == pkcs12::PKCS_12_KEY_BAG_OID {
            out.keys
                .push(key_bag(Zeroizing::new(inner.to_vec()), attributes));
        } else if bag.bag_id == pkcs12::PKCS_12_PKCS8_KEY_BAG_OID {
            let (algorithm, encrypted) = encrypted_private_key_info(inner)?;
            let pkcs8 = decrypt_any(&algorithm, &encrypted, passwords)?;
            out.keys.push(key_bag(pkcs8, attributes));
        } else if bag.bag_id == pkcs12::PKCS_12_SAFE_CONTENTS_BAG_OID {
            read_safe_contents(inner, passwords, out, depth + 1)?;
        }
        // CRL and secret bags carry nothing a certificate store needs.
    }
    Ok(())
}

/// `EncryptedPrivateKeyInfo ::= SEQUENCE { AlgorithmIdentifier, OCTET STRING }`, read by
/// hand: `pkcs8`'s type only admits PKCS#5 schemes, not the PKCS#12 PBE ones.
fn encrypted_private_key_info(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), DecodeError> {
    use der::Reader;
    let mut reader = der::SliceReader::new(der).map_err(malformed)?;
    let parsed = reader
        .sequence(|nested| {
            let algorithm: spki::AlgorithmIdentifierRef<'_> = nested.decode()?;
            let data: der::asn1::OctetStringRef<'_> = nested.decode()?;
            Ok((algorithm.to_der()?, data.as_bytes().to_vec()))
        })
        .map_err(malformed)?;
    reader.finish(parsed).map_err(malformed)
}

fn key_bag(pkcs8: Zeroizing<Vec<u8>>, attributes: Option<&x509_cert::attr::Attributes>) -> KeyBag {
    let mut bag = KeyBag {
        pkcs8,
        local_key_id: None,
        csp_name: None,
    };
    for attribute in attributes.into_iter().flat_map(|a| a.iter()) {
        let Some(value) = attribute.values.iter().next() else {
            continue;
        };
        if attribute.oid == OID_LOCAL_KEY_ID {
            bag.local_key_id = value
                .decode_as::<OctetString>()
                .ok()
                .map(OctetString::into_bytes);
        } else if attribute.oid == OID_CSP_NAME {
            bag.csp_name = value.decode_as::<BmpString>().ok().map(|s| s.to_string());
        }
    }
    bag
}

/// Decrypts with whichever password candidate yields valid padding and DER.
fn decrypt_any(
    algorithm_der: &[u8],
    data: &[u8],
    passwords: &[Zeroizing<Vec<u8>>],
) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
    let algorithm = spki::AlgorithmIdentifierRef::from_der(algorithm_der).map_err(malformed)?;
    let mut last = None;
    for password in passwords {
        match decrypt(&algorithm, data, password) {
            Ok(plain) if AnyRef::from_der(&plain).is_ok() => return Ok(plain),
            Ok(_) => last = Some(malformed("decryption produced no DER: wrong password")),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| malformed("no password to try")))
}

fn decrypt(
    algorithm: &spki::AlgorithmIdentifierRef<'_>,
    data: &[u8],
    password: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
    if algorithm.oid == OID_PBES2 {
        let scheme = pkcs5::EncryptionScheme::try_from(*algorithm).map_err(malformed)?;
        if let Some(pkcs5::pbes2::Kdf::Pbkdf2(params)) = scheme.pbes2().map(|p| &p.kdf) {
            iterations(i64::from(params.iteration_count))?;
        } else {
            return Err(malformed("PBES2 without PBKDF2 is not supported"));
        }
        // PBES2 takes the password as bytes; the BMP terminator form means "empty" here.
        let utf8: &[u8] = if password == [0, 0] { &[] } else { password };
        return scheme
            .decrypt(utf8, data)
            .map(Zeroizing::new)
            .map_err(|e| malformed(format!("PBES2: {e}")));
    }
    let params = algorithm
        .parameters
        .ok_or_else(|| malformed("PBE without parameters"))?
        .decode_as::<pkcs12::pbe_params::Pkcs12PbeParams>()
        .map_err(malformed)?;
    let rounds = iterations(i64::from(params.iterations))? as i32;
    let salt = params.salt.as_bytes();
    let key = |len| {
        Zeroizing::new(derive_key::<sha1::Sha1>(
            password,
            salt,
            Pkcs12KeyType::EncryptionKey,
            rounds,
            len,
        ))
    };
    let iv = derive_key::<sha1::Sha1>(password, salt, Pkcs12KeyType::Iv, rounds, 8);
    let padding = |e: cbc::cipher::block_padding::UnpadError| {
        malformed(format!("bad padding ({e}): wrong password"))
    };
    let plain = if algorithm.oid == pkcs12::PKCS_12_PBE_WITH_SHAAND3_KEY_TRIPLE_DES_CBC {
        let key = key(24);
        cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
            .map_err(malformed)?
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(padding)?
    } else if algorithm.oid == pkcs12::PKCS_12_PBE_WITH_SHAAND2_KEY_TRIPLE_DES_CBC {
        let key = key(16);
        cbc::Decryptor::<des::TdesEde2>::new_from_slices(&key, &iv)
            .map_err(malformed)?
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(padding)?
    } else if algorithm.oid == pkcs12::PKCS_12_PBE_WITH_SHAAND128_BIT_RC2_CBC
        || algorithm.oid == pkcs12::PKCS_12_PBEWITH_SHAAND40_BIT_RC2_CBC
    {
        let bits = if algorithm.oid == pkcs12::PKCS_12_PBE_WITH_SHAAND128_BIT_RC2_CBC {
            128
        } else {
            40
        };
        let key = key(bits / 8);
        let cipher = rc2::Rc2::new_with_eff_key_len(&key, bits);
        let iv: [u8; 8] = iv
            .as_slice()
            .try_into()
            .map_err(|_| malformed("IV length"))?;
        cbc::Decryptor::<rc2::Rc2>::inner_iv_init(cipher, &iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(padding)?
    } else {
        return Err(malformed(format!(
            "unsupported encryption {}",
            algorithm.oid
        )));
    };
    Ok(Zeroizing::new(plain))
}
