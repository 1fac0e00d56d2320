//! Property tests: no input makes `decode` panic (random bytes, randomly
//! mutated valid PFX files, truncations, DER-looking prefixes).

use std::sync::OnceLock;

use akvsync_pkcs12::{EncodeOptions, Scheme, decode, encode};
use proptest::prelude::*;

/// Valid PFX files to mutate: small iteration counts keep mutated files cheap
/// (a mutation can raise a count, but only up to the 1,000,000 bound).
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(make_seeds)
}

fn make_seeds() -> Vec<Vec<u8>> {
    let crate::common::Chain { certs, key } = crate::common::chain("ec");
    let mut out = vec![
        crate::common::keyvault_pfx(),
        crate::common::read("ec-unencrypted.pfx"),
    ];
    for scheme in [Scheme::Legacy3Des, Scheme::LegacyRc2, Scheme::ModernAes256] {
        let opts = EncodeOptions {
            scheme,
            iterations: 1,
            friendly_name: Some("n".into()),
            ..EncodeOptions::key_vault()
        };
        let pfx = encode(&[&certs[0], &certs[1]], &key, &opts).unwrap();
        // Without the MAC, mutations reach the bag parsing and decryption.
        out.push(strip_mac(&pfx));
        out.push(pfx);
    }
    out.push(crate::common::read("ec-nomac-3des.pfx"));
    out
}

/// Drops the last element (MacData) of the outer SEQUENCE of our own output.
fn strip_mac(pfx: &[u8]) -> Vec<u8> {
    fn header(b: &[u8]) -> (usize, usize) {
        match b[1] {
            l if l < 0x80 => (2, l as usize),
            0x81 => (3, b[2] as usize),
            0x82 => (4, (b[2] as usize) << 8 | b[3] as usize),
            _ => unreachable!("test input"),
        }
    }
    let (h, _) = header(pfx);
    let body = &pfx[h..];
    let (vh, vl) = header(body);
    let (ah, al) = header(&body[vh + vl..]);
    let content = &body[..vh + vl + ah + al];
    let mut out = vec![0x30, 0x82, (content.len() >> 8) as u8, content.len() as u8];
    out.extend_from_slice(content);
    assert!(decode(&out, None).is_ok());
    out
}

/// `PROPTEST_CASES` if set (for longer local runs), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mutate(mut pfx: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, kind, value) in edits {
        if pfx.is_empty() {
            break;
        }
        let i = pos % pfx.len();
        match kind % 4 {
            0 => pfx[i] = value,
            1 => pfx[i] ^= 1 << (value % 8),
            2 => pfx.insert(i, value),
            _ => {
                pfx.remove(i);
            }
        }
    }
    pfx
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048),
                                password in proptest::option::of("[a-z]{0,3}")) {
        let _ = decode(&bytes, password.as_deref());
    }

    #[test]
    fn der_looking_random_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        // Start like a PFX so that the parser gets past the first checks.
        let mut bytes = vec![0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x03, 0x30, 0x80];
        bytes.extend(tail);
        let _ = decode(&bytes, None);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1024), ..ProptestConfig::default() })]

    #[test]
    fn mutated_pfx_never_panics(seed in 0usize..9,
                                edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
                                cut in any::<Option<usize>>()) {
        let seeds = seeds();
        prop_assert_eq!(seeds.len(), 9);
        let mut pfx = mutate(seeds[seed % seeds.len()].clone(), &edits);
        if let Some(cut) = cut {
            let len = pfx.len();
            pfx.truncate(cut % (len + 1));
        }
        let _ = decode(&pfx, None);
    }
}
