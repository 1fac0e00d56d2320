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
                tried: if candidates.len() > 1 {
                    "tried the empty password as zero bytes and as BMPString 00 00"
                } else {
                    "tried the given password"
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
