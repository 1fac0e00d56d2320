//! Password-based encryption of bags: parsing the encryption
//! AlgorithmIdentifier, and CBC decryption/encryption for the PKCS#12 PBE
//! schemes (3DES, 2-key 3DES, RC2-128, RC2-40 with the appendix B KDF) and
//! PBES2 (PBKDF2 with HMAC-SHA1/224/256/384/512, AES-128/192/256-CBC or
//! DES-EDE3-CBC).

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockCipher, BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use zeroize::Zeroizing;

use crate::asn1::{self, Tlv, is_oid, oid, tag};
use crate::des3::TripleDes;
use crate::error::Error;
use crate::kdf::{self, Hash, Password, Purpose};

/// Block ciphers of the PKCS#12 PBE schemes (RFC 7292 appendix C).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LegacyCipher {
    /// pbeWithSHAAnd3-KeyTripleDES-CBC
    Des3,
    /// pbeWithSHAAnd2-KeyTripleDES-CBC
    Des2,
    /// pbeWithSHAAnd128BitRC2-CBC
    Rc2_128,
    /// pbeWithSHAAnd40BitRC2-CBC
    Rc2_40,
}

impl LegacyCipher {
    fn key_len(self) -> usize {
        match self {
            LegacyCipher::Des3 => 24,
            LegacyCipher::Des2 | LegacyCipher::Rc2_128 => 16,
            LegacyCipher::Rc2_40 => 5,
        }
    }

    fn oid(self) -> &'static der::asn1::ObjectIdentifier {
        match self {
            LegacyCipher::Des3 => &oid::PBE_SHA1_3DES,
            LegacyCipher::Des2 => &oid::PBE_SHA1_2DES,
            LegacyCipher::Rc2_128 => &oid::PBE_SHA1_RC2_128,
            LegacyCipher::Rc2_40 => &oid::PBE_SHA1_RC2_40,
        }
    }
}

/// Ciphers of PBES2's encryptionScheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pbes2Cipher {
    Aes128,
    Aes192,
    Aes256,
    Des3,
}

impl Pbes2Cipher {
    fn key_len(self) -> usize {
        match self {
            Pbes2Cipher::Aes128 => 16,
            Pbes2Cipher::Aes192 | Pbes2Cipher::Des3 => 24,
            Pbes2Cipher::Aes256 => 32,
        }
    }

    fn iv_len(self) -> usize {
        match self {
            Pbes2Cipher::Des3 => 8,
            _ => 16,
        }
    }
}

/// A parsed encryption AlgorithmIdentifier.
#[derive(Debug)]
pub(crate) enum Pbe {
    Pkcs12 {
        cipher: LegacyCipher,
        salt: Vec<u8>,
        iterations: u32,
    },
    Pbes2 {
        prf: Hash,
        salt: Vec<u8>,
        iterations: u32,
        cipher: Pbes2Cipher,
        iv: Vec<u8>,
    },
}

impl Pbe {
    /// Parses `AlgorithmIdentifier { algorithm, parameters }` of a bag's
    /// encryption. Checks iteration counts against the work bound.
    pub fn parse(alg_id: &Tlv<'_>, what: &'static str) -> Result<Self, Error> {
        if alg_id.tag != tag::SEQUENCE {
            return Err(Error::malformed(
                what,
                "encryption AlgorithmIdentifier is not a SEQUENCE",
            ));
        }
        let mut r = alg_id.reader(what);
        let alg = r.read(tag::OID, what)?.value;
        let legacy = [
            LegacyCipher::Des3,
            LegacyCipher::Des2,
            LegacyCipher::Rc2_128,
            LegacyCipher::Rc2_40,
        ]
        .into_iter()
        .find(|c| is_oid(alg, c.oid()));
        if let Some(cipher) = legacy {
            // pkcs-12PbeParams ::= SEQUENCE { salt OCTET STRING, iterations INTEGER }
            let params = r.read(tag::SEQUENCE, "pkcs-12PbeParams")?;
            let mut p = params.reader("pkcs-12PbeParams");
            let salt = p
                .read(tag::OCTET_STRING, "pkcs-12PbeParams.salt")?
                .value
                .to_vec();
            let iterations = p.read(tag::INTEGER, "pkcs-12PbeParams.iterations")?;
            let iterations = kdf::check_iterations(
                "PKCS#12 PBE",
                iterations.uint("pkcs-12PbeParams.iterations")?,
            )?;
            return Ok(Pbe::Pkcs12 {
                cipher,
                salt,
                iterations,
            });
        }
        if is_oid(alg, &oid::PBES2) {
            return Self::parse_pbes2(&r.read(tag::SEQUENCE, "PBES2-params")?);
        }
        Err(Error::unsupported("bag encryption algorithm", alg))
    }

    fn parse_pbes2(params: &Tlv<'_>) -> Result<Self, Error> {
        // PBES2-params ::= SEQUENCE { keyDerivationFunc AlgorithmIdentifier,
        //                             encryptionScheme AlgorithmIdentifier }
        let mut r = params.reader("PBES2-params");
        let kdf_alg = r.read(tag::SEQUENCE, "PBES2-params.keyDerivationFunc")?;
        let enc_alg = r.read(tag::SEQUENCE, "PBES2-params.encryptionScheme")?;

        let mut k = kdf_alg.reader("PBES2-params.keyDerivationFunc");
        let kdf_oid = k.read(tag::OID, "PBES2-params.keyDerivationFunc")?.value;
        if !is_oid(kdf_oid, &oid::PBKDF2) {
            return Err(Error::unsupported("PBES2 key derivation function", kdf_oid));
        }
        // PBKDF2-params ::= SEQUENCE { salt CHOICE { specified OCTET STRING, .. },
        //   iterationCount INTEGER, keyLength INTEGER OPTIONAL,
        //   prf AlgorithmIdentifier DEFAULT hmacWithSHA1 }
        let kp = k.read(tag::SEQUENCE, "PBKDF2-params")?;
        let mut kp = kp.reader("PBKDF2-params");
        let salt = kp
            .read(tag::OCTET_STRING, "PBKDF2-params.salt")?
            .value
            .to_vec();
        let iterations = kp.read(tag::INTEGER, "PBKDF2-params.iterationCount")?;
        let iterations =
            kdf::check_iterations("PBKDF2", iterations.uint("PBKDF2-params.iterationCount")?)?;
        let key_length = match kp.read_optional(tag::INTEGER)? {
            Some(t) => Some(t.uint("PBKDF2-params.keyLength")?),
            None => None,
        };
        let prf = match kp.read_optional(tag::SEQUENCE)? {
            None => Hash::Sha1,
            Some(prf) => {
                let prf_oid = prf
                    .reader("PBKDF2-params.prf")
                    .read(tag::OID, "PBKDF2-params.prf")?
                    .value;
                [
                    (&oid::HMAC_SHA1, Hash::Sha1),
                    (&oid::HMAC_SHA224, Hash::Sha224),
                    (&oid::HMAC_SHA256, Hash::Sha256),
                    (&oid::HMAC_SHA384, Hash::Sha384),
                    (&oid::HMAC_SHA512, Hash::Sha512),
                ]
                .into_iter()
                .find(|(o, _)| is_oid(prf_oid, o))
                .map(|(_, h)| h)
                .ok_or_else(|| Error::unsupported("PBKDF2 PRF", prf_oid))?
            }
        };

        let mut e = enc_alg.reader("PBES2-params.encryptionScheme");
        let enc_oid = e.read(tag::OID, "PBES2-params.encryptionScheme")?.value;
        let cipher = [
            (&oid::AES128_CBC, Pbes2Cipher::Aes128),
            (&oid::AES192_CBC, Pbes2Cipher::Aes192),
            (&oid::AES256_CBC, Pbes2Cipher::Aes256),
            (&oid::DES_EDE3_CBC, Pbes2Cipher::Des3),
        ]
        .into_iter()
        .find(|(o, _)| is_oid(enc_oid, o))
        .map(|(_, c)| c)
        .ok_or_else(|| Error::unsupported("PBES2 encryption scheme", enc_oid))?;
        let iv = e
            .read(tag::OCTET_STRING, "PBES2 encryptionScheme IV")?
            .value
            .to_vec();
        if iv.len() != cipher.iv_len() {
            return Err(Error::malformed(
                "PBES2 encryptionScheme IV",
                format!("IV is {} bytes, expected {}", iv.len(), cipher.iv_len()),
            ));
        }
        if let Some(len) = key_length
            && len != cipher.key_len() as u64
        {
            return Err(Error::malformed(
                "PBKDF2-params.keyLength",
                format!(
                    "key length {len} does not match the cipher's {}",
                    cipher.key_len()
                ),
            ));
        }
        Ok(Pbe::Pbes2 {
            prf,
            salt,
            iterations,
            cipher,
            iv,
        })
    }

    /// Iterations one decryption attempt costs.
    pub fn iterations(&self) -> u32 {
        match self {
            Pbe::Pkcs12 { iterations, .. } | Pbe::Pbes2 { iterations, .. } => *iterations,
        }
    }

    /// Whether `a` and `b` give the same key here (PBES2 uses the UTF-8 bytes,
    /// identical for both encodings of the empty password).
    pub fn same_key(&self, a: &Password, b: &Password) -> bool {
        match self {
            Pbe::Pkcs12 { .. } => a.bmp == b.bmp,
            Pbe::Pbes2 { .. } => a.utf8 == b.utf8,
        }
    }

    /// Decrypts and removes PKCS#7 padding; `None` if the padding is invalid
    /// (wrong password or corrupted data).
    pub fn decrypt(&self, password: &Password, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        match self {
            Pbe::Pkcs12 {
                cipher,
                salt,
                iterations,
            } => {
                let [key, iv] = kdf::sha1_kdf_many(
                    &password.bmp,
                    salt,
                    *iterations,
                    [(Purpose::Key, cipher.key_len()), (Purpose::Iv, 8)],
                );
                match cipher {
                    LegacyCipher::Des3 | LegacyCipher::Des2 => {
                        TripleDes::new(&key)?.cbc_decrypt(&iv, ciphertext)
                    }
                    LegacyCipher::Rc2_128 => {
                        cbc_decrypt(rc2::Rc2::new_with_eff_key_len(&key, 128), &iv, ciphertext)
                    }
                    LegacyCipher::Rc2_40 => {
                        cbc_decrypt(rc2::Rc2::new_with_eff_key_len(&key, 40), &iv, ciphertext)
                    }
                }
            }
            Pbe::Pbes2 {
                prf,
                salt,
                iterations,
                cipher,
                iv,
            } => {
                let key = pbkdf2(*prf, &password.utf8, salt, *iterations, cipher.key_len());
                match cipher {
                    Pbes2Cipher::Aes128 => {
                        cbc_decrypt(aes::Aes128::new_from_slice(&key).ok()?, iv, ciphertext)
                    }
                    Pbes2Cipher::Aes192 => {
                        cbc_decrypt(aes::Aes192::new_from_slice(&key).ok()?, iv, ciphertext)
                    }
                    Pbes2Cipher::Aes256 => {
                        cbc_decrypt(aes::Aes256::new_from_slice(&key).ok()?, iv, ciphertext)
                    }
                    Pbes2Cipher::Des3 => TripleDes::new(&key)?.cbc_decrypt(iv, ciphertext),
                }
            }
        }
    }
}

fn pbkdf2(
    prf: Hash,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let mut key = Zeroizing::new(vec![0u8; len]);
    match prf {
        Hash::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, &mut key),
        Hash::Sha224 => pbkdf2::pbkdf2_hmac::<sha2::Sha224>(password, salt, iterations, &mut key),
        Hash::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut key),
        Hash::Sha384 => pbkdf2::pbkdf2_hmac::<sha2::Sha384>(password, salt, iterations, &mut key),
        Hash::Sha512 => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, &mut key),
    }
    key
}

fn cbc_decrypt<C>(cipher: C, iv: &[u8], ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>>
where
    C: BlockCipher + BlockDecryptMut,
{
    let decryptor = cbc::Decryptor::<C>::inner_iv_slice_init(cipher, iv).ok()?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let len = decryptor.decrypt_padded_mut::<Pkcs7>(&mut buf).ok()?.len();
    buf.truncate(len);
    Some(buf)
}

fn cbc_encrypt<C>(cipher: C, iv: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error>
where
    C: BlockCipher + BlockEncryptMut,
{
    let encryptor = cbc::Encryptor::<C>::inner_iv_slice_init(cipher, iv)
        .map_err(|_| Error::InvalidInput("internal: IV length".into()))?;
    Ok(encryptor.encrypt_padded_vec_mut::<Pkcs7>(plaintext))
}

/// Random bytes from the operating system.
pub(crate) fn random(len: usize) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; len];
    getrandom::getrandom(&mut buf).map_err(|e| Error::Random(e.to_string()))?;
    Ok(buf)
}

/// How the encoder encrypts a bag.
#[derive(Clone, Copy, Debug)]
pub(crate) enum EncryptWith {
    Pkcs12(LegacyCipher),
    /// PBES2 with PBKDF2 (`prf` as HMAC) and `cipher` in CBC mode; the
    /// encoder uses SHA-256 + AES-256 (OpenSSL 3's default).
    Pbes2 {
        prf: Hash,
        cipher: Pbes2Cipher,
    },
}

impl Hash {
    fn hmac_oid(self) -> &'static der::asn1::ObjectIdentifier {
        match self {
            Hash::Sha1 => &oid::HMAC_SHA1,
            Hash::Sha224 => &oid::HMAC_SHA224,
            Hash::Sha256 => &oid::HMAC_SHA256,
            Hash::Sha384 => &oid::HMAC_SHA384,
            Hash::Sha512 => &oid::HMAC_SHA512,
        }
    }
}

impl Pbes2Cipher {
    fn oid(self) -> &'static der::asn1::ObjectIdentifier {
        match self {
            Pbes2Cipher::Aes128 => &oid::AES128_CBC,
            Pbes2Cipher::Aes192 => &oid::AES192_CBC,
            Pbes2Cipher::Aes256 => &oid::AES256_CBC,
            Pbes2Cipher::Des3 => &oid::DES_EDE3_CBC,
        }
    }
}

/// Encrypts `plaintext`; returns the encryption AlgorithmIdentifier (DER) and
/// the ciphertext. Salt (8 bytes) and IV are random.
pub(crate) fn encrypt(
    with: EncryptWith,
    password: &Password,
    iterations: u32,
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let salt = random(8)?;
    let iter = asn1::uint(u64::from(iterations));
    let bad_key = |_| Error::InvalidInput("internal: key length".into());
    match with {
        EncryptWith::Pkcs12(cipher) => {
            let [key, iv] = kdf::sha1_kdf_many(
                &password.bmp,
                &salt,
                iterations,
                [(Purpose::Key, cipher.key_len()), (Purpose::Iv, 8)],
            );
            let ct = match cipher {
                LegacyCipher::Des3 => cbc_encrypt(
                    des::TdesEde3::new_from_slice(&key).map_err(bad_key)?,
                    &iv,
                    plaintext,
                )?,
                LegacyCipher::Des2 => cbc_encrypt(
                    des::TdesEde2::new_from_slice(&key).map_err(bad_key)?,
                    &iv,
                    plaintext,
                )?,
                LegacyCipher::Rc2_128 => {
                    cbc_encrypt(rc2::Rc2::new_with_eff_key_len(&key, 128), &iv, plaintext)?
                }
                LegacyCipher::Rc2_40 => {
                    cbc_encrypt(rc2::Rc2::new_with_eff_key_len(&key, 40), &iv, plaintext)?
                }
            };
            let alg = asn1::seq(&[
                &asn1::oid(cipher.oid()),
                &asn1::seq(&[&asn1::octet_string(&salt), &iter]),
            ]);
            Ok((alg, ct))
        }
        EncryptWith::Pbes2 { prf, cipher } => {
            let iv = random(cipher.iv_len())?;
            let key = pbkdf2(prf, &password.utf8, &salt, iterations, cipher.key_len());
            let ct = match cipher {
                Pbes2Cipher::Aes128 => cbc_encrypt(
                    aes::Aes128::new_from_slice(&key).map_err(bad_key)?,
                    &iv,
                    plaintext,
                )?,
                Pbes2Cipher::Aes192 => cbc_encrypt(
                    aes::Aes192::new_from_slice(&key).map_err(bad_key)?,
                    &iv,
                    plaintext,
                )?,
                Pbes2Cipher::Aes256 => cbc_encrypt(
                    aes::Aes256::new_from_slice(&key).map_err(bad_key)?,
                    &iv,
                    plaintext,
                )?,
                Pbes2Cipher::Des3 => cbc_encrypt(
                    des::TdesEde3::new_from_slice(&key).map_err(bad_key)?,
                    &iv,
                    plaintext,
                )?,
            };
            let kdf = asn1::seq(&[
                &asn1::oid(&oid::PBKDF2),
                &asn1::seq(&[
                    &asn1::octet_string(&salt),
                    &iter,
                    &asn1::seq(&[&asn1::oid(prf.hmac_oid()), &asn1::null()]),
                ]),
            ]);
            let scheme = asn1::seq(&[&asn1::oid(cipher.oid()), &asn1::octet_string(&iv)]);
            let alg = asn1::seq(&[&asn1::oid(&oid::PBES2), &asn1::seq(&[&kdf, &scheme])]);
            Ok((alg, ct))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(with: EncryptWith) {
        let pw = Password::given("pw");
        let plain = b"0123456789abcdef-some plaintext".to_vec();
        let (alg, ct) = encrypt(with, &pw, 3, &plain).unwrap();
        let tlv = asn1::parse_single(&alg, "alg").unwrap();
        let pbe = Pbe::parse(&tlv, "alg").unwrap();
        assert_eq!(pbe.iterations(), 3);
        assert_eq!(&pbe.decrypt(&pw, &ct).unwrap()[..], &plain[..]);
        // A wrong password almost always breaks the padding or the content.
        let wrong = pbe.decrypt(&Password::given("other"), &ct);
        assert!(wrong.is_none_or(|p| p[..] != plain[..]));
    }

    #[test]
    fn encrypt_decrypt_all_encoder_ciphers() {
        round_trip(EncryptWith::Pkcs12(LegacyCipher::Des3));
        round_trip(EncryptWith::Pkcs12(LegacyCipher::Des2));
        round_trip(EncryptWith::Pkcs12(LegacyCipher::Rc2_128));
        round_trip(EncryptWith::Pkcs12(LegacyCipher::Rc2_40));
        for prf in [
            Hash::Sha1,
            Hash::Sha224,
            Hash::Sha256,
            Hash::Sha384,
            Hash::Sha512,
        ] {
            for cipher in [
                Pbes2Cipher::Aes128,
                Pbes2Cipher::Aes192,
                Pbes2Cipher::Aes256,
                Pbes2Cipher::Des3,
            ] {
                round_trip(EncryptWith::Pbes2 { prf, cipher });
            }
        }
    }

    #[test]
    fn unknown_algorithm_names_its_oid() {
        let alg = asn1::seq(&[&asn1::oid(&oid::PBE_SHA1_RC4_128), &asn1::seq(&[])]);
        let tlv = asn1::parse_single(&alg, "alg").unwrap();
        let err = Pbe::parse(&tlv, "alg").unwrap_err();
        assert!(err.to_string().contains("1.2.840.113549.1.12.1.1"), "{err}");
    }
}
