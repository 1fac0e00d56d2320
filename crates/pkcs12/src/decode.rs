//! Decoding a PFX: size bound, PFX/authSafe structure, choice of the password
//! encoding (by the MAC, or by trial decryption when there is no MAC), the
//! SafeContents walk (plain `data`, `encryptedData`, nested safeContents bags)
//! and bag attributes.

use std::borrow::Cow;

use zeroize::Zeroizing;

use crate::asn1::{self, Tlv, is_oid, oid, tag};
use crate::cipher::Pbe;
use crate::error::Error;
use crate::kdf::{Password, WorkBudget};
use crate::mac::MacData;
use crate::{CertBag, Decoded, KeyBag, MAX_PFX_LEN};

/// Deepest nesting of safeContents bags followed.
const MAX_BAG_NESTING: usize = 4;

/// State of one decode.
struct Ctx {
    /// Password encodings to try, the one the MAC verified first.
    candidates: Vec<Password>,
    budget: WorkBudget,
    out: Decoded,
}

/// See [`crate::decode`].
pub(crate) fn decode(pfx_der: &[u8], password: Option<&str>) -> Result<Decoded, Error> {
    if pfx_der.len() > MAX_PFX_LEN {
        return Err(Error::TooLarge {
            len: pfx_der.len(),
            max: MAX_PFX_LEN,
        });
    }
    // PFX ::= SEQUENCE { version INTEGER {v3(3)}, authSafe ContentInfo, macData MacData OPTIONAL }
    let pfx = asn1::parse_single(pfx_der, "PFX")?;
    if pfx.tag != tag::SEQUENCE {
        return Err(Error::malformed(
            "PFX",
            "not a SEQUENCE (is this a PFX/PKCS#12 file?)",
        ));
    }
    let mut r = pfx.reader("PFX");
    let version = r.read(tag::INTEGER, "PFX.version")?.uint("PFX.version")?;
    if version != 3 {
        return Err(Error::UnsupportedVersion(version));
    }
    let auth_safe = r.read(tag::SEQUENCE, "PFX.authSafe")?;
    let mac = match r.read_optional(tag::SEQUENCE)? {
        Some(t) => Some(MacData::parse(&t)?),
        None => None,
    };

    let (content_type, content) = content_info(&auth_safe, "PFX.authSafe")?;
    if !is_oid(content_type, &oid::DATA) {
        // signedData here is the public-key integrity mode.
        return Err(Error::unsupported("authSafe content type", content_type));
    }
    let auth_bytes = data_octets(&content, "PFX.authSafe.content")?;

    let mut budget = WorkBudget::new();
    let mut candidates = Password::candidates(password);
    if let Some(mac) = &mac {
        let mut verified = None;
        for (i, pw) in candidates.iter().enumerate() {
            budget.spend(mac.iterations)?;
            if mac.verifies(pw, &auth_bytes) {
                verified = Some(i);
                break;
            }
        }
        let Some(i) = verified else {
            return Err(Error::MacMismatch {
                tried: match password {
                    None | Some("") => {
                        "tried the empty password as zero bytes and as BMPString 00 00"
                    }
                    Some(_) => "tried the given password",
                },
            });
        };
        // The verified encoding first; the others stay as fallbacks for the
        // bag encryption (a producer may use different forms for the two).
        candidates.swap(0, i);
    }

    let mut ctx = Ctx {
        candidates,
        budget,
        out: Decoded::default(),
    };

    // AuthenticatedSafe ::= SEQUENCE OF ContentInfo
    let safe = asn1::parse_single(&auth_bytes, "AuthenticatedSafe")?;
    if safe.tag != tag::SEQUENCE {
        return Err(Error::malformed("AuthenticatedSafe", "not a SEQUENCE"));
    }
    let mut r = safe.reader("AuthenticatedSafe");
    while !r.is_empty() {
        let ci = r.read(tag::SEQUENCE, "AuthenticatedSafe.ContentInfo")?;
        let (ct, content) = content_info(&ci, "AuthenticatedSafe.ContentInfo")?;
        if is_oid(ct, &oid::DATA) {
            let bytes = data_octets(&content, "AuthenticatedSafe.ContentInfo(data)")?;
            safe_contents(&bytes, 0, &mut ctx)?;
        } else if is_oid(ct, &oid::ENCRYPTED_DATA) {
            let plain = encrypted_data(&content, &mut ctx)?;
            safe_contents(&plain, 0, &mut ctx)?;
        } else {
            // envelopedData: the public-key privacy mode.
            return Err(Error::unsupported("AuthenticatedSafe content type", ct));
        }
    }
    Ok(ctx.out)
}

/// `ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ANY }`:
/// the type's OID content octets and the inner element.
fn content_info<'a>(ci: &Tlv<'a>, what: &'static str) -> Result<(&'a [u8], Tlv<'a>), Error> {
    let mut r = ci.reader(what);
    let ct = r.read(tag::OID, what)?.value;
    let explicit = r.read(tag::CTX0, what)?;
    let inner = asn1::parse_single(explicit.value, what)?;
    Ok((ct, inner))
}

/// The octets of `data` content (an OCTET STRING, BER chunks allowed).
fn data_octets<'a>(t: &Tlv<'a>, what: &'static str) -> Result<Cow<'a, [u8]>, Error> {
    if t.tag & !tag::CONSTRUCTED != tag::OCTET_STRING {
        return Err(Error::malformed(
            what,
            format!("expected an OCTET STRING, found tag 0x{:02x}", t.tag),
        ));
    }
    t.octets(what)
}

/// `EncryptedData ::= SEQUENCE { version INTEGER, encryptedContentInfo
/// SEQUENCE { contentType OID, contentEncryptionAlgorithm AlgorithmIdentifier,
/// encryptedContent [0] IMPLICIT OCTET STRING OPTIONAL } }`, decrypted.
fn encrypted_data(t: &Tlv<'_>, ctx: &mut Ctx) -> Result<Zeroizing<Vec<u8>>, Error> {
    const WHAT: &str = "EncryptedData";
    if t.tag != tag::SEQUENCE {
        return Err(Error::malformed(WHAT, "not a SEQUENCE"));
    }
    let mut r = t.reader(WHAT);
    r.read(tag::INTEGER, "EncryptedData.version")?;
    let eci = r.read(tag::SEQUENCE, "EncryptedData.encryptedContentInfo")?;
    let mut e = eci.reader("EncryptedData.encryptedContentInfo");
    e.read(tag::OID, "EncryptedContentInfo.contentType")?;
    let alg = e.read(
        tag::SEQUENCE,
        "EncryptedContentInfo.contentEncryptionAlgorithm",
    )?;
    let pbe = Pbe::parse(&alg, "EncryptedContentInfo.contentEncryptionAlgorithm")?;
    let ciphertext = match e.peek_tag() {
        Some(tag::CTX0_PRIM | tag::CTX0) => e
            .read_any()?
            .octets("EncryptedContentInfo.encryptedContent")?,
        _ => return Ok(Zeroizing::new(Vec::new())), // no content: an empty SafeContents follows
    };
    if ciphertext.is_empty() {
        return Err(Error::malformed(
            "EncryptedContentInfo.encryptedContent",
            "empty",
        ));
    }
    decrypt(
        &pbe,
        &ciphertext,
        ctx,
        "encrypted SafeContents (certificates)",
    )
}

/// Decrypts with the candidate encodings in order; a result counts only if
/// its padding is valid and it is one well-formed SEQUENCE.
fn decrypt(
    pbe: &Pbe,
    ciphertext: &[u8],
    ctx: &mut Ctx,
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let cost = match pbe {
        // Key and IV are two KDF runs.
        Pbe::Pkcs12 { .. } => pbe.iterations().saturating_mul(2),
        Pbe::Pbes2 { .. } => pbe.iterations(),
    };
    for (i, pw) in ctx.candidates.iter().enumerate() {
        let seen = ctx.candidates.get(..i).unwrap_or_default();
        if seen.iter().any(|earlier| pbe.same_key(earlier, pw)) {
            continue;
        }
        ctx.budget.spend(cost)?;
        if let Some(plain) = pbe.decrypt(pw, ciphertext)
            && asn1::is_single_sequence(&plain)
        {
            return Ok(plain);
        }
    }
    Err(Error::Decryption { what })
}

/// `SafeContents ::= SEQUENCE OF SafeBag`.
fn safe_contents(data: &[u8], depth: usize, ctx: &mut Ctx) -> Result<(), Error> {
    if data.is_empty() {
        return Ok(());
    }
    let sc = asn1::parse_single(data, "SafeContents")?;
    if sc.tag != tag::SEQUENCE {
        return Err(Error::malformed("SafeContents", "not a SEQUENCE"));
    }
    let mut r = sc.reader("SafeContents");
    while !r.is_empty() {
        let bag = r.read(tag::SEQUENCE, "SafeBag")?;
        safe_bag(&bag, depth, ctx)?;
    }
    Ok(())
}

/// `SafeBag ::= SEQUENCE { bagId OID, bagValue [0] EXPLICIT ANY,
/// bagAttributes SET OF PKCS12Attribute OPTIONAL }`.
fn safe_bag(bag: &Tlv<'_>, depth: usize, ctx: &mut Ctx) -> Result<(), Error> {
    let mut r = bag.reader("SafeBag");
    let bag_id = r.read(tag::OID, "SafeBag.bagId")?.value;
    let explicit = r.read(tag::CTX0, "SafeBag.bagValue")?;
    let value = asn1::parse_single(explicit.value, "SafeBag.bagValue")?;
    let attrs = match r.read_optional(tag::SET)? {
        Some(set) => Attributes::parse(&set)?,
        None => Attributes::default(),
    };

    if is_oid(bag_id, &oid::KEY_BAG) {
        if value.tag != tag::SEQUENCE {
            return Err(Error::malformed(
                "keyBag",
                "PrivateKeyInfo is not a SEQUENCE",
            ));
        }
        ctx.out
            .keys
            .push(attrs.into_key(Zeroizing::new(value.raw.to_vec())));
    } else if is_oid(bag_id, &oid::SHROUDED_KEY_BAG) {
        // EncryptedPrivateKeyInfo ::= SEQUENCE { encryptionAlgorithm, encryptedData OCTET STRING }
        if value.tag != tag::SEQUENCE {
            return Err(Error::malformed("pkcs8ShroudedKeyBag", "not a SEQUENCE"));
        }
        let mut e = value.reader("EncryptedPrivateKeyInfo");
        let alg = e.read(tag::SEQUENCE, "EncryptedPrivateKeyInfo.encryptionAlgorithm")?;
        let pbe = Pbe::parse(&alg, "EncryptedPrivateKeyInfo.encryptionAlgorithm")?;
        let ct_tlv = e.read_any()?;
        let ciphertext = data_octets(&ct_tlv, "EncryptedPrivateKeyInfo.encryptedData")?;
        let pkcs8 = decrypt(&pbe, &ciphertext, ctx, "pkcs8ShroudedKeyBag (private key)")?;
        ctx.out.keys.push(attrs.into_key(pkcs8));
    } else if is_oid(bag_id, &oid::CERT_BAG) {
        // CertBag ::= SEQUENCE { certId OID, certValue [0] EXPLICIT OCTET STRING }
        if value.tag != tag::SEQUENCE {
            return Err(Error::malformed("certBag", "not a SEQUENCE"));
        }
        let mut c = value.reader("certBag");
        let cert_id = c.read(tag::OID, "certBag.certId")?.value;
        if !is_oid(cert_id, &oid::X509_CERTIFICATE) {
            return Ok(()); // sdsiCertificate and others: not ours to use.
        }
        let explicit = c.read(tag::CTX0, "certBag.certValue")?;
        let os = asn1::parse_single(explicit.value, "certBag.certValue")?;
        let der = data_octets(&os, "certBag.certValue")?;
        if !asn1::is_single_sequence(&der) {
            return Err(Error::malformed(
                "certBag.certValue",
                "certificate is not one DER SEQUENCE",
            ));
        }
        ctx.out.certificates.push(CertBag {
            der: der.into_owned(),
            local_key_id: attrs.local_key_id,
            friendly_name: attrs.friendly_name,
        });
    } else if is_oid(bag_id, &oid::SAFE_CONTENTS_BAG) {
        if depth + 1 > MAX_BAG_NESTING {
            return Err(Error::malformed("safeContentsBag", "nested too deeply"));
        }
        safe_contents(value.raw, depth + 1, ctx)?;
    }
    // crlBag, secretBag and unknown bag types are skipped.
    Ok(())
}

/// The bag attributes this crate exposes.
#[derive(Default)]
struct Attributes {
    local_key_id: Option<Vec<u8>>,
    friendly_name: Option<String>,
    csp_name: Option<String>,
}

impl Attributes {
    /// `SET OF SEQUENCE { attrId OID, attrValues SET OF ANY }`; unknown
    /// attributes and unexpected value types are ignored.
    fn parse(set: &Tlv<'_>) -> Result<Self, Error> {
        let mut out = Self::default();
        let mut r = set.reader("SafeBag.bagAttributes");
        while !r.is_empty() {
            let attr = r.read(tag::SEQUENCE, "PKCS12Attribute")?;
            let mut a = attr.reader("PKCS12Attribute");
            let id = a.read(tag::OID, "PKCS12Attribute.attrId")?.value;
            let values = a.read(tag::SET, "PKCS12Attribute.attrValues")?;
            let mut v = values.reader("PKCS12Attribute.attrValues");
            if v.is_empty() {
                continue;
            }
            let first = v.read_any()?;
            let string = || match first.tag {
                tag::BMP_STRING => Some(asn1::decode_bmp(first.value)),
                // UTF8String, as some non-Microsoft producers write.
                0x0c => Some(String::from_utf8_lossy(first.value).into_owned()),
                _ => None,
            };
            if is_oid(id, &oid::LOCAL_KEY_ID) {
                if first.tag & !tag::CONSTRUCTED == tag::OCTET_STRING {
                    out.local_key_id = Some(first.octets("localKeyId")?.into_owned());
                }
            } else if is_oid(id, &oid::FRIENDLY_NAME) {
                out.friendly_name = string();
            } else if is_oid(id, &oid::MS_CSP_NAME) {
                out.csp_name = string();
            }
        }
        Ok(out)
    }

    fn into_key(self, pkcs8_der: Zeroizing<Vec<u8>>) -> KeyBag {
        KeyBag {
            pkcs8_der,
            local_key_id: self.local_key_id,
            friendly_name: self.friendly_name,
            csp_name: self.csp_name,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hand-built PFX files for what the OpenSSL fixtures cannot show.

    use super::*;
    use crate::cipher::{EncryptWith, LegacyCipher, Pbes2Cipher, encrypt};
    use crate::kdf::Hash;

    /// Stand-ins: the decoder checks only that these are one SEQUENCE.
    const CERT: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x07];
    const KEY: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x00];
    const DES3: EncryptWith = EncryptWith::Pkcs12(LegacyCipher::Des3);

    fn bag(id: &der::asn1::ObjectIdentifier, value: &[u8], attrs: &[Vec<u8>]) -> Vec<u8> {
        let id = asn1::oid(id);
        let value = asn1::tlv(tag::CTX0, value);
        if attrs.is_empty() {
            asn1::seq(&[&id, &value])
        } else {
            asn1::seq(&[&id, &value, &asn1::set_of(attrs.to_vec())])
        }
    }

    fn cert_bag(der: &[u8]) -> Vec<u8> {
        let cb = asn1::seq(&[
            &asn1::oid(&oid::X509_CERTIFICATE),
            &asn1::tlv(tag::CTX0, &asn1::octet_string(der)),
        ]);
        bag(&oid::CERT_BAG, &cb, &[])
    }

    fn shrouded(with: EncryptWith, pw: &Password, iterations: u32) -> Vec<u8> {
        let (alg, ct) = encrypt(with, pw, iterations, KEY).unwrap();
        bag(
            &oid::SHROUDED_KEY_BAG,
            &asn1::seq(&[&alg, &asn1::octet_string(&ct)]),
            &[],
        )
    }

    fn data_ci(bags: &[Vec<u8>]) -> Vec<u8> {
        let sc = asn1::seq(&bags.iter().map(Vec::as_slice).collect::<Vec<_>>());
        asn1::seq(&[
            &asn1::oid(&oid::DATA),
            &asn1::tlv(tag::CTX0, &asn1::octet_string(&sc)),
        ])
    }

    fn enc_ci(with: EncryptWith, pw: &Password, bags: &[Vec<u8>]) -> Vec<u8> {
        let sc = asn1::seq(&bags.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let (alg, ct) = encrypt(with, pw, 7, &sc).unwrap();
        let ed = asn1::seq(&[
            &asn1::uint(0),
            &asn1::seq(&[
                &asn1::oid(&oid::DATA),
                &alg,
                &asn1::tlv(tag::CTX0_PRIM, &ct),
            ]),
        ]);
        asn1::seq(&[&asn1::oid(&oid::ENCRYPTED_DATA), &asn1::tlv(tag::CTX0, &ed)])
    }

    fn pfx_with_mac_data(cis: &[Vec<u8>], mac: Option<Vec<u8>>) -> Vec<u8> {
        let auth = asn1::seq(&cis.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let ci = asn1::seq(&[
            &asn1::oid(&oid::DATA),
            &asn1::tlv(tag::CTX0, &asn1::octet_string(&auth)),
        ]);
        match mac {
            Some(mac) => asn1::seq(&[&asn1::uint(3), &ci, &mac]),
            None => asn1::seq(&[&asn1::uint(3), &ci]),
        }
    }

    fn pfx(cis: &[Vec<u8>], mac: Option<(Hash, &Password)>) -> Vec<u8> {
        let auth = asn1::seq(&cis.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let mac = mac.map(|(h, pw)| crate::mac::encode(h, pw, 5, 8, &auth).unwrap());
        pfx_with_mac_data(cis, mac)
    }

    fn key_and_cert(pw: &Password, with: EncryptWith) -> Vec<Vec<u8>> {
        vec![
            enc_ci(with, pw, &[cert_bag(CERT)]),
            data_ci(&[shrouded(with, pw, 9)]),
        ]
    }

    fn assert_one_of_each(d: &Decoded) {
        assert_eq!(d.certificates.len(), 1);
        assert_eq!(d.certificates[0].der, CERT);
        assert_eq!(d.keys.len(), 1);
        assert_eq!(&d.keys[0].pkcs8_der[..], KEY);
    }

    #[test]
    fn without_mac_both_empty_encodings_are_found_by_decryption() {
        for pw in [
            Password::empty_zero_length(),
            Password::empty_bmp_terminator(),
        ] {
            for with in [DES3, EncryptWith::Pkcs12(LegacyCipher::Rc2_40)] {
                let file = pfx(&key_and_cert(&pw, with), None);
                assert_one_of_each(&decode(&file, None).unwrap());
                assert_one_of_each(&decode(&file, Some("")).unwrap());
                let err = decode(&file, Some("x")).unwrap_err();
                assert!(matches!(err, Error::Decryption { .. }), "{err:?}");
            }
        }
    }

    #[test]
    fn openssl1_encoding_of_a_non_ascii_password() {
        let old = Password::candidates(Some("Pässwörd")).remove(1);
        let file = pfx(&key_and_cert(&old, DES3), Some((Hash::Sha1, &old)));
        assert_one_of_each(&decode(&file, Some("Pässwörd")).unwrap());
    }

    #[test]
    fn mac_and_bags_with_different_empty_encodings() {
        let zero = Password::empty_zero_length();
        let bmp = Password::empty_bmp_terminator();
        let file = pfx(&key_and_cert(&bmp, DES3), Some((Hash::Sha1, &zero)));
        assert_one_of_each(&decode(&file, None).unwrap());
    }

    #[test]
    fn every_pbes2_prf_and_cipher_and_mac_hash() {
        let pw = Password::given("pw");
        let hashes = [
            Hash::Sha1,
            Hash::Sha224,
            Hash::Sha256,
            Hash::Sha384,
            Hash::Sha512,
        ];
        for prf in hashes {
            for cipher in [
                Pbes2Cipher::Aes128,
                Pbes2Cipher::Aes192,
                Pbes2Cipher::Aes256,
                Pbes2Cipher::Des3,
            ] {
                let with = EncryptWith::Pbes2 { prf, cipher };
                let file = pfx(&key_and_cert(&pw, with), Some((prf, &pw)));
                assert_one_of_each(&decode(&file, Some("pw")).unwrap());
            }
        }
        for legacy in [
            LegacyCipher::Des3,
            LegacyCipher::Des2,
            LegacyCipher::Rc2_128,
            LegacyCipher::Rc2_40,
        ] {
            let file = pfx(&key_and_cert(&pw, EncryptWith::Pkcs12(legacy)), None);
            assert_one_of_each(&decode(&file, Some("pw")).unwrap());
        }
    }

    #[test]
    fn nested_and_foreign_bags() {
        let pw = Password::empty_bmp_terminator();
        let secret = bag(
            &der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.5"),
            &asn1::seq(&[&asn1::oid(&oid::DATA), &asn1::octet_string(b"s")]),
            &[],
        );
        let crl = bag(
            &der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.4"),
            &asn1::seq(&[]),
            &[],
        );
        let sdsi = bag(
            &oid::CERT_BAG,
            &asn1::seq(&[
                &asn1::oid(&der::asn1::ObjectIdentifier::new_unwrap(
                    "1.2.840.113549.1.9.22.2",
                )),
                &asn1::tlv(tag::CTX0, &asn1::tlv(0x16, b"sdsi")),
            ]),
            &[],
        );
        let local_id = asn1::seq(&[
            &asn1::oid(&oid::LOCAL_KEY_ID),
            &asn1::set_of(vec![asn1::octet_string(&[9, 9])]),
        ]);
        let unknown_attr = asn1::seq(&[
            &asn1::oid(&der::asn1::ObjectIdentifier::new_unwrap("1.2.3.4")),
            &asn1::set_of(vec![asn1::null()]),
        ]);
        let plain_key = bag(&oid::KEY_BAG, KEY, &[local_id, unknown_attr]);
        let inner = asn1::seq(&[&cert_bag(CERT), &plain_key]);
        let nested = bag(&oid::SAFE_CONTENTS_BAG, &inner, &[]);
        let file = pfx(
            &[data_ci(&[secret, crl, sdsi, nested])],
            Some((Hash::Sha256, &pw)),
        );
        let d = decode(&file, None).unwrap();
        assert_one_of_each(&d);
        assert_eq!(d.keys[0].local_key_id.as_deref(), Some(&[9u8, 9][..]));
    }

    #[test]
    fn ber_indefinite_lengths_and_chunked_octet_strings() {
        let pw = Password::given("pw");
        let cis = key_and_cert(&pw, DES3);
        let auth = asn1::seq(&cis.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let mac = crate::mac::encode(Hash::Sha1, &pw, 5, 8, &auth).unwrap();
        let (a, b) = auth.split_at(auth.len() / 2);
        let mut chunks = vec![0x24, 0x80];
        chunks.extend(asn1::octet_string(a));
        chunks.extend(asn1::octet_string(b));
        chunks.extend([0, 0]);
        let mut ci = vec![0x30, 0x80];
        ci.extend(asn1::oid(&oid::DATA));
        ci.extend([0xa0, 0x80]);
        ci.extend(chunks);
        ci.extend([0, 0, 0, 0]);
        let mut file = vec![0x30, 0x80];
        file.extend(asn1::uint(3));
        file.extend(ci);
        file.extend(mac);
        file.extend([0, 0]);
        assert_one_of_each(&decode(&file, Some("pw")).unwrap());
    }

    #[test]
    fn bounds_are_checked_before_any_work() {
        let pw = Password::given("pw");
        let cis = key_and_cert(&pw, DES3);
        // MAC iterations above the bound: rejected before computing anything.
        let mac = asn1::seq(&[
            &asn1::seq(&[
                &asn1::seq(&[&asn1::oid(&oid::SHA1), &asn1::null()]),
                &asn1::octet_string(&[0; 20]),
            ]),
            &asn1::octet_string(&[1; 8]),
            &asn1::uint(2_000_000),
        ]);
        let err = decode(&pfx_with_mac_data(&cis, Some(mac)), Some("pw")).unwrap_err();
        assert!(
            matches!(
                err,
                Error::IterationsTooHigh {
                    what: "MAC",
                    iterations: 2_000_000,
                    ..
                }
            ),
            "{err:?}"
        );
        // A bag's PBE iterations above the bound.
        let alg = asn1::seq(&[
            &asn1::oid(&oid::PBE_SHA1_3DES),
            &asn1::seq(&[&asn1::octet_string(&[1; 8]), &asn1::uint(1_000_001)]),
        ]);
        let key = bag(
            &oid::SHROUDED_KEY_BAG,
            &asn1::seq(&[&alg, &asn1::octet_string(&[0; 16])]),
            &[],
        );
        let err = decode(&pfx(&[data_ci(&[key])], None), Some("pw")).unwrap_err();
        assert!(matches!(err, Error::IterationsTooHigh { .. }), "{err:?}");
        // A huge INTEGER saturates rather than wrapping.
        let mut huge = vec![0x02, 0x09, 0x01];
        huge.extend([0u8; 8]);
        let t = asn1::parse_single(&huge, "int").unwrap();
        assert!(crate::kdf::check_iterations("MAC", t.uint("int").unwrap()).is_err());
    }

    #[test]
    fn unsupported_things_are_named() {
        let pw = Password::given("pw");
        // PBMAC1 (RFC 9579) as the MAC algorithm.
        let mac = asn1::seq(&[
            &asn1::seq(&[
                &asn1::seq(&[&asn1::oid(&der::asn1::ObjectIdentifier::new_unwrap(
                    "1.2.840.113549.1.5.14",
                ))]),
                &asn1::octet_string(&[0; 32]),
            ]),
            &asn1::octet_string(&[1; 8]),
            &asn1::uint(1),
        ]);
        let err = decode(
            &pfx_with_mac_data(&key_and_cert(&pw, DES3), Some(mac)),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("1.2.840.113549.1.5.14"), "{err}");

        // envelopedData in the AuthenticatedSafe.
        let env = asn1::seq(&[
            &asn1::oid(&der::asn1::ObjectIdentifier::new_unwrap(
                "1.2.840.113549.1.7.3",
            )),
            &asn1::tlv(tag::CTX0, &asn1::seq(&[])),
        ]);
        let err = decode(&pfx(&[env], None), None).unwrap_err();
        assert!(matches!(err, Error::UnsupportedAlgorithm { .. }), "{err:?}");
        assert!(err.to_string().contains("1.2.840.113549.1.7.3"), "{err}");

        // Version 2.
        let mut file = pfx(&key_and_cert(&pw, DES3), None);
        let pos = file.windows(3).position(|w| w == [2, 1, 3]).unwrap();
        file[pos + 2] = 2;
        assert!(matches!(
            decode(&file, None),
            Err(Error::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn malformed_errors_say_where() {
        let err = decode(&asn1::seq(&[&asn1::uint(3)]), None).unwrap_err();
        assert!(err.to_string().contains("PFX.authSafe"), "{err}");
        let bad_bag = asn1::seq(&[&asn1::oid(&oid::CERT_BAG)]);
        let err = decode(&pfx(&[data_ci(&[bad_bag])], None), None).unwrap_err();
        assert!(err.to_string().contains("SafeBag.bagValue"), "{err}");
    }
}
