//! Uppercase hex without separators: how thumbprints and fingerprints are printed
//! everywhere (SPEC §10), and reading such a string back.

/// The bytes of an even-length hex string (either case); `None` for anything else.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

pub fn upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xF)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn decode_reads_what_upper_writes_and_nothing_else() {
        let bytes = [0x00, 0xab, 0x7f, 0xff];
        assert_eq!(super::decode(&super::upper(&bytes)).unwrap(), bytes);
        assert_eq!(super::decode("aBcD").unwrap(), vec![0xab, 0xcd]);
        assert!(super::decode("abc").is_none());
        assert!(super::decode("zz").is_none());
        assert!(super::decode("+1").is_none());
    }
}
