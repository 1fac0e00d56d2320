//! The integrity MAC of a PFX (`MacData`): HMAC with SHA-1/224/256/384/512
//! keyed by the PKCS#12 KDF (purpose 3), over the authSafe content octets.
//! Parsing, verification (constant time) and computation for the encoder.

use hmac::{Hmac, Mac};
use zeroize::Zeroizing;

use crate::asn1::{self, Tlv, is_oid, oid, tag};
use crate::error::Error;
use crate::kdf::{self, Hash, Password, Purpose};

/// A parsed `MacData`.
#[derive(Debug)]
pub(crate) struct MacData {
    pub hash: Hash,
    pub digest: Vec<u8>,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl MacData {
    /// Parses `MacData ::= SEQUENCE { mac DigestInfo, macSalt OCTET STRING,
    /// iterations INTEGER DEFAULT 1 }`; checks the iteration bound.
    pub fn parse(t: &Tlv<'_>) -> Result<Self, Error> {
        let mut r = t.reader("MacData");
        let digest_info = r.read(tag::SEQUENCE, "MacData.mac")?;
        let salt = r.read(tag::OCTET_STRING, "MacData.macSalt")?.value.to_vec();
        let iterations = match r.read_optional(tag::INTEGER)? {
            Some(i) => i.uint("MacData.iterations")?,
            None => 1,
        };
        let iterations = kdf::check_iterations("MAC", iterations)?;

        // DigestInfo ::= SEQUENCE { digestAlgorithm AlgorithmIdentifier, digest OCTET STRING }
        let mut d = digest_info.reader("MacData.mac");
        let alg = d.read(tag::SEQUENCE, "MacData.mac.digestAlgorithm")?;
        let alg_oid = alg
            .reader("MacData.mac.digestAlgorithm")
            .read(tag::OID, "MacData.mac.digestAlgorithm")?
            .value;
        let hash = [
            (&oid::SHA1, Hash::Sha1),
            (&oid::SHA224, Hash::Sha224),
            (&oid::SHA256, Hash::Sha256),
            (&oid::SHA384, Hash::Sha384),
            (&oid::SHA512, Hash::Sha512),
        ]
        .into_iter()
        .find(|(o, _)| is_oid(alg_oid, o))
        .map(|(_, h)| h)
        .ok_or_else(|| Error::unsupported("MAC algorithm", alg_oid))?;
        let digest = d
            .read(tag::OCTET_STRING, "MacData.mac.digest")?
            .value
            .to_vec();
        Ok(Self {
            hash,
            digest,
            salt,
            iterations,
        })
    }

    /// Whether the MAC verifies with this password encoding.
    pub fn verifies(&self, password: &Password, content: &[u8]) -> bool {
        let key = self.hash.kdf(
            &password.bmp,
            &self.salt,
            Purpose::Mac,
            self.iterations,
            self.hash.output_len(),
        );
        match self.hash {
            Hash::Sha1 => verify::<Hmac<sha1::Sha1>>(&key, content, &self.digest),
            Hash::Sha224 => verify::<Hmac<sha2::Sha224>>(&key, content, &self.digest),
            Hash::Sha256 => verify::<Hmac<sha2::Sha256>>(&key, content, &self.digest),
            Hash::Sha384 => verify::<Hmac<sha2::Sha384>>(&key, content, &self.digest),
            Hash::Sha512 => verify::<Hmac<sha2::Sha512>>(&key, content, &self.digest),
        }
    }
}

fn verify<M: Mac + hmac::digest::KeyInit>(key: &[u8], content: &[u8], expected: &[u8]) -> bool {
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(content);
            m.verify_slice(expected).is_ok()
        }
        Err(_) => false,
    }
}

fn compute<M: Mac + hmac::digest::KeyInit>(key: &[u8], content: &[u8]) -> Result<Vec<u8>, Error> {
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .map_err(|_| Error::InvalidInput("internal: MAC key length".into()))?;
    m.update(content);
    Ok(m.finalize().into_bytes().to_vec())
}

/// Encodes a `MacData` over `content` with a random salt of `salt_len` bytes.
pub(crate) fn encode(
    hash: Hash,
    password: &Password,
    iterations: u32,
    salt_len: usize,
    content: &[u8],
) -> Result<Vec<u8>, Error> {
    let salt = crate::cipher::random(salt_len)?;
    let key: Zeroizing<Vec<u8>> = hash.kdf(
        &password.bmp,
        &salt,
        Purpose::Mac,
        iterations,
        hash.output_len(),
    );
    let (digest, alg) = match hash {
        Hash::Sha1 => (compute::<Hmac<sha1::Sha1>>(&key, content)?, &oid::SHA1),
        Hash::Sha224 => (compute::<Hmac<sha2::Sha224>>(&key, content)?, &oid::SHA224),
        Hash::Sha256 => (compute::<Hmac<sha2::Sha256>>(&key, content)?, &oid::SHA256),
        Hash::Sha384 => (compute::<Hmac<sha2::Sha384>>(&key, content)?, &oid::SHA384),
        Hash::Sha512 => (compute::<Hmac<sha2::Sha512>>(&key, content)?, &oid::SHA512),
    };
    Ok(asn1::seq(&[
        &asn1::seq(&[
            &asn1::seq(&[&asn1::oid(alg), &asn1::null()]),
            &asn1::octet_string(&digest),
        ]),
        &asn1::octet_string(&salt),
        &asn1::uint(u64::from(iterations)),
    ]))
}
