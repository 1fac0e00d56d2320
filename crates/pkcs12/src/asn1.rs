//! The ASN.1 layer: a small, lenient BER/DER reader for untrusted PFX input,
//! a DER writer for the encoder, and the object identifiers PKCS#12 uses.
//!
//! The reader accepts what real PFX producers write: definite lengths (DER)
//! and the BER forms older Windows and Java exports use (indefinite lengths,
//! constructed OCTET STRINGs), and it does not insist on canonical SET OF
//! order. Every length is checked against the remaining input; nesting depth
//! is bounded; nothing indexes or unwraps, so no input can make it panic.
//! (The `der` crate is strict DER, so it is used only for OID printing.)

use std::borrow::Cow;

use der::asn1::ObjectIdentifier;

use crate::error::Error;

/// Universal tags used here.
pub(crate) mod tag {
    pub const INTEGER: u8 = 0x02;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const BMP_STRING: u8 = 0x1e;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// `[0]` context-specific, constructed (EXPLICIT tagging).
    pub const CTX0: u8 = 0xa0;
    /// `[0]` context-specific, primitive (IMPLICIT OCTET STRING).
    pub const CTX0_PRIM: u8 = 0x80;
    /// The constructed bit of an identifier octet.
    pub const CONSTRUCTED: u8 = 0x20;
}

/// Object identifiers, as the content octets of their DER encoding.
pub(crate) mod oid {
    use der::asn1::ObjectIdentifier as O;

    pub const DATA: O = O::new_unwrap("1.2.840.113549.1.7.1");
    pub const ENCRYPTED_DATA: O = O::new_unwrap("1.2.840.113549.1.7.6");

    pub const KEY_BAG: O = O::new_unwrap("1.2.840.113549.1.12.10.1.1");
    pub const SHROUDED_KEY_BAG: O = O::new_unwrap("1.2.840.113549.1.12.10.1.2");
    pub const CERT_BAG: O = O::new_unwrap("1.2.840.113549.1.12.10.1.3");
    pub const SAFE_CONTENTS_BAG: O = O::new_unwrap("1.2.840.113549.1.12.10.1.6");
    pub const X509_CERTIFICATE: O = O::new_unwrap("1.2.840.113549.1.9.22.1");

    pub const FRIENDLY_NAME: O = O::new_unwrap("1.2.840.113549.1.9.20");
    pub const LOCAL_KEY_ID: O = O::new_unwrap("1.2.840.113549.1.9.21");
    pub const MS_CSP_NAME: O = O::new_unwrap("1.3.6.1.4.1.311.17.1");

    /// RC4 PBE (unsupported; used by tests of the error message).
    #[cfg(test)]
    pub const PBE_SHA1_RC4_128: O = O::new_unwrap("1.2.840.113549.1.12.1.1");
    pub const PBE_SHA1_3DES: O = O::new_unwrap("1.2.840.113549.1.12.1.3");
    pub const PBE_SHA1_2DES: O = O::new_unwrap("1.2.840.113549.1.12.1.4");
    pub const PBE_SHA1_RC2_128: O = O::new_unwrap("1.2.840.113549.1.12.1.5");
    pub const PBE_SHA1_RC2_40: O = O::new_unwrap("1.2.840.113549.1.12.1.6");

    pub const PBES2: O = O::new_unwrap("1.2.840.113549.1.5.13");
    pub const PBKDF2: O = O::new_unwrap("1.2.840.113549.1.5.12");
    pub const HMAC_SHA1: O = O::new_unwrap("1.2.840.113549.2.7");
    pub const HMAC_SHA224: O = O::new_unwrap("1.2.840.113549.2.8");
    pub const HMAC_SHA256: O = O::new_unwrap("1.2.840.113549.2.9");
    pub const HMAC_SHA384: O = O::new_unwrap("1.2.840.113549.2.10");
    pub const HMAC_SHA512: O = O::new_unwrap("1.2.840.113549.2.11");
    pub const AES128_CBC: O = O::new_unwrap("2.16.840.1.101.3.4.1.2");
    pub const AES192_CBC: O = O::new_unwrap("2.16.840.1.101.3.4.1.22");
    pub const AES256_CBC: O = O::new_unwrap("2.16.840.1.101.3.4.1.42");
    pub const DES_EDE3_CBC: O = O::new_unwrap("1.2.840.113549.3.7");

    pub const SHA1: O = O::new_unwrap("1.3.14.3.2.26");
    pub const SHA224: O = O::new_unwrap("2.16.840.1.101.3.4.2.4");
    pub const SHA256: O = O::new_unwrap("2.16.840.1.101.3.4.2.1");
    pub const SHA384: O = O::new_unwrap("2.16.840.1.101.3.4.2.2");
    pub const SHA512: O = O::new_unwrap("2.16.840.1.101.3.4.2.3");
}

/// Deepest nesting the reader follows (BER indefinite lengths and constructed
/// strings recurse); real PFX files nest about ten levels.
const MAX_DEPTH: usize = 32;

/// One decoded element: its identifier octet and its content octets.
#[derive(Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    /// Content octets (for an indefinite length: without the end-of-contents).
    pub value: &'a [u8],
    /// The whole encoding, header included.
    pub raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    pub fn is_constructed(&self) -> bool {
        self.tag & tag::CONSTRUCTED != 0
    }

    /// Reader over the content of a constructed element.
    pub fn reader(&self, what: &'static str) -> Reader<'a> {
        Reader::new(self.value, what)
    }

    /// Content of an OCTET STRING (or an IMPLICIT one): primitive, or BER
    /// constructed (chunks concatenated).
    pub fn octets(&self, what: &'static str) -> Result<Cow<'a, [u8]>, Error> {
        self.octets_depth(what, 0)
    }

    fn octets_depth(&self, what: &'static str, depth: usize) -> Result<Cow<'a, [u8]>, Error> {
        if !self.is_constructed() {
            return Ok(Cow::Borrowed(self.value));
        }
        if depth >= MAX_DEPTH {
            return Err(Error::malformed(
                what,
                "constructed OCTET STRING nested too deeply",
            ));
        }
        let mut out = Vec::new();
        let mut r = self.reader(what);
        while !r.is_empty() {
            let chunk = r.read_any()?;
            if chunk.tag & !tag::CONSTRUCTED != tag::OCTET_STRING {
                return Err(Error::malformed(
                    what,
                    format!("constructed OCTET STRING holds tag 0x{:02x}", chunk.tag),
                ));
            }
            out.extend_from_slice(&chunk.octets_depth(what, depth + 1)?);
        }
        Ok(Cow::Owned(out))
    }

    /// A non-negative INTEGER that fits in a u64.
    pub fn uint(&self, what: &'static str) -> Result<u64, Error> {
        if self.tag != tag::INTEGER {
            return Err(Error::malformed(
                what,
                format!("expected an INTEGER, found tag 0x{:02x}", self.tag),
            ));
        }
        let bytes = self.value;
        match bytes.first() {
            None => return Err(Error::malformed(what, "empty INTEGER")),
            Some(b) if b & 0x80 != 0 => return Err(Error::malformed(what, "negative INTEGER")),
            Some(_) => {}
        }
        let mut trimmed = bytes;
        while let [0, rest @ ..] = trimmed {
            trimmed = rest;
        }
        if trimmed.len() > 8 {
            // Larger than any count we accept; saturate so the caller's bound
            // check reports it.
            return Ok(u64::MAX);
        }
        Ok(trimmed
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }
}

/// Sequential reader over the elements of one content.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8], what: &'static str) -> Self {
        Self { data, what }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Tag of the next element, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// Reads the next element, whatever its tag.
    pub fn read_any(&mut self) -> Result<Tlv<'a>, Error> {
        let (tlv, rest) = parse_tlv(self.data, self.what, 0)?;
        self.data = rest;
        Ok(tlv)
    }

    /// Reads the next element and checks its tag.
    pub fn read(&mut self, expected: u8, what: &'static str) -> Result<Tlv<'a>, Error> {
        if self.data.is_empty() {
            return Err(Error::malformed(
                what,
                format!(
                    "missing (expected tag 0x{expected:02x}, found end of {})",
                    self.what
                ),
            ));
        }
        let tlv = self.read_any()?;
        if tlv.tag != expected {
            return Err(Error::malformed(
                what,
                format!("expected tag 0x{expected:02x}, found 0x{:02x}", tlv.tag),
            ));
        }
        Ok(tlv)
    }

    /// Reads the next element if it has the given tag.
    pub fn read_optional(&mut self, expected: u8) -> Result<Option<Tlv<'a>>, Error> {
        if self.peek_tag() == Some(expected) {
            self.read_any().map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Parses one element at the start of `data`; returns it and the rest.
fn parse_tlv<'a>(
    data: &'a [u8],
    what: &'static str,
    depth: usize,
) -> Result<(Tlv<'a>, &'a [u8]), Error> {
    if depth >= MAX_DEPTH {
        return Err(Error::malformed(what, "nesting too deep"));
    }
    let [tag, first_len, rest @ ..] = data else {
        return Err(Error::malformed(what, "truncated element header"));
    };
    let tag = *tag;
    if tag & 0x1f == 0x1f {
        return Err(Error::malformed(what, "high tag numbers are not supported"));
    }
    let (len, header_len, rest) = if *first_len < 0x80 {
        (Some(usize::from(*first_len)), 2usize, rest)
    } else if *first_len == 0x80 {
        (None, 2usize, rest)
    } else {
        let n = usize::from(*first_len & 0x7f);
        if n > 4 {
            return Err(Error::malformed(what, "length field longer than 4 bytes"));
        }
        let (len_bytes, rest) = rest
            .split_at_checked(n)
            .ok_or_else(|| Error::malformed(what, "truncated length field"))?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (Some(len), 2 + n, rest)
    };
    match len {
        Some(len) => {
            let (value, after) = rest.split_at_checked(len).ok_or_else(|| {
                Error::malformed(
                    what,
                    format!(
                        "element of {len} bytes overruns its container ({} left)",
                        rest.len()
                    ),
                )
            })?;
            let raw = data
                .get(..header_len + len)
                .ok_or_else(|| Error::malformed(what, "truncated element"))?;
            Ok((Tlv { tag, value, raw }, after))
        }
        None => {
            if tag & tag::CONSTRUCTED == 0 {
                return Err(Error::malformed(
                    what,
                    "indefinite length on a primitive element",
                ));
            }
            // Walk the children up to the end-of-contents octets.
            let mut cursor = rest;
            loop {
                match cursor {
                    [0, 0, after @ ..] => {
                        let value_len = rest.len() - cursor.len();
                        let value = rest
                            .get(..value_len)
                            .ok_or_else(|| Error::malformed(what, "truncated element"))?;
                        let raw = data
                            .get(..header_len + value_len + 2)
                            .ok_or_else(|| Error::malformed(what, "truncated element"))?;
                        return Ok((Tlv { tag, value, raw }, after));
                    }
                    [] => {
                        return Err(Error::malformed(what, "missing end-of-contents octets"));
                    }
                    _ => {
                        let (_, next) = parse_tlv(cursor, what, depth + 1)?;
                        cursor = next;
                    }
                }
            }
        }
    }
}

/// Parses `data` as exactly one element (nothing after it).
pub(crate) fn parse_single<'a>(data: &'a [u8], what: &'static str) -> Result<Tlv<'a>, Error> {
    let (tlv, rest) = parse_tlv(data, what, 0)?;
    if !rest.is_empty() {
        return Err(Error::malformed(
            what,
            format!("{} unexpected bytes after the element", rest.len()),
        ));
    }
    Ok(tlv)
}

/// Whether `data` is exactly one well-formed SEQUENCE (the sanity check for a
/// decryption attempt with a guessed password).
pub(crate) fn is_single_sequence(data: &[u8]) -> bool {
    matches!(parse_single(data, "decrypted content"), Ok(t) if t.tag == tag::SEQUENCE)
}

/// Whether OID content octets are `oid`.
pub(crate) fn is_oid(content: &[u8], oid: &ObjectIdentifier) -> bool {
    content == oid.as_bytes()
}

// ---------------------------------------------------------------------------
// DER writer
// ---------------------------------------------------------------------------

/// One element: identifier, DER length, content.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// A constructed element from already-encoded parts.
pub(crate) fn cons(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    cons(tag::SEQUENCE, parts)
}

/// A DER SET OF: elements sorted by their encodings.
pub(crate) fn set_of(mut parts: Vec<Vec<u8>>) -> Vec<u8> {
    parts.sort();
    tlv(tag::SET, &parts.concat())
}

pub(crate) fn octet_string(content: &[u8]) -> Vec<u8> {
    tlv(tag::OCTET_STRING, content)
}

pub(crate) fn oid(oid: &ObjectIdentifier) -> Vec<u8> {
    tlv(tag::OID, oid.as_bytes())
}

pub(crate) fn null() -> Vec<u8> {
    vec![tag::NULL, 0]
}

/// A non-negative INTEGER in minimal two's complement.
pub(crate) fn uint(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut content = Vec::with_capacity(9);
    let significant = bytes.get(skip..).unwrap_or_default();
    if significant.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(significant);
    tlv(tag::INTEGER, &content)
}

/// A BMPString (UTF-16 big-endian, no terminator).
pub(crate) fn bmp_string(s: &str) -> Vec<u8> {
    let content: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
    tlv(tag::BMP_STRING, &content)
}

/// Decodes BMPString content (UTF-16 big-endian) leniently: an odd trailing
/// byte or unpaired surrogate becomes U+FFFD, trailing NULs are dropped.
pub(crate) fn decode_bmp(content: &[u8]) -> String {
    let units: Vec<u16> = content
        .chunks(2)
        .map(|c| match c {
            [a, b] => u16::from_be_bytes([*a, *b]),
            _ => 0xfffd,
        })
        .collect();
    let s = String::from_utf16_lossy(&units);
    s.trim_end_matches('\0').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip() {
        for v in [
            0u64,
            1,
            127,
            128,
            255,
            256,
            2000,
            2048,
            1_000_000,
            u64::from(u32::MAX),
        ] {
            let enc = uint(v);
            let t = parse_single(&enc, "int").unwrap();
            assert_eq!(t.uint("int").unwrap(), v, "{enc:02x?}");
        }
        assert_eq!(uint(128), vec![2, 2, 0, 128]);
        assert_eq!(uint(0), vec![2, 1, 0]);
    }

    #[test]
    fn long_lengths() {
        let content = vec![7u8; 300];
        let enc = octet_string(&content);
        assert_eq!(&enc[..4], &[4, 0x82, 1, 44]);
        let t = parse_single(&enc, "os").unwrap();
        assert_eq!(t.value, &content[..]);
    }

    #[test]
    fn ber_indefinite_and_constructed_octets() {
        // SEQUENCE (indefinite) { OCTET STRING constructed (indefinite) { 04 02 'ab', 04 01 'c' } }
        let data = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c', 0, 0, 0, 0,
        ];
        let t = parse_single(&data, "ber").unwrap();
        let mut r = t.reader("ber");
        let os = r.read(0x24, "os").unwrap();
        assert_eq!(&*os.octets("os").unwrap(), b"abc");
        assert!(r.is_empty());
    }

    #[test]
    fn truncation_and_overrun_are_errors() {
        assert!(parse_single(&[0x30], "x").is_err());
        assert!(parse_single(&[0x30, 0x05, 0x02], "x").is_err());
        assert!(parse_single(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], "x").is_err());
        assert!(parse_single(&[0x30, 0x80, 0x02, 0x01, 0x01], "x").is_err());
        assert!(parse_single(&[0x04, 0x80, 0, 0], "x").is_err());
        assert!(parse_single(&[0x1f, 0x01, 0x00], "x").is_err());
        // Deep nesting is bounded.
        let deep: Vec<u8> = std::iter::repeat_n([0x30u8, 0x80], 100)
            .flatten()
            .chain(std::iter::repeat_n(0u8, 200))
            .collect();
        assert!(parse_single(&deep, "x").is_err());
    }

    #[test]
    fn set_of_is_sorted_and_bmp_round_trips() {
        let s = set_of(vec![vec![0x30, 0x01, 0x02], vec![0x30, 0x01, 0x01]]);
        assert_eq!(s, vec![0x31, 6, 0x30, 1, 1, 0x30, 1, 2]);
        let b = bmp_string("Pä€");
        let t = parse_single(&b, "bmp").unwrap();
        assert_eq!(decode_bmp(t.value), "Pä€");
        assert_eq!(decode_bmp(&[0, b'a', 0, 0]), "a");
        assert_eq!(decode_bmp(&[0, b'a', 0]), "a\u{fffd}");
    }

    #[test]
    fn oid_strings() {
        use crate::error::oid_to_string;
        assert_eq!(oid_to_string(oid::SHA1.as_bytes()), "1.3.14.3.2.26");
        assert!(oid_to_string(&[0x80]).starts_with("<invalid OID"));
    }
}
