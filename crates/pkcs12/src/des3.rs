//! Triple-DES (EDE, two or three keys) CBC decryption for the legacy PBE schemes Key
//! Vault's PFX files use, with combined S-box/permutation tables: the `des` crate computes
//! each round's permutations bit by bit, about 10× slower, and 3DES was a third of a cold
//! sync's CPU (docs/benchmarks.md). Encryption (writing PFX files) stays with `des`, which
//! the tests also use to check that both ciphers agree on random keys and blocks.
//!
//! Table-driven like OpenSSL's and the `des` crate's S-box lookups, so not constant-time;
//! the keys it runs with are derived from the PFX password, which for Key Vault's files is
//! the empty one.

use zeroize::{Zeroize, Zeroizing};

/// Initial permutation (FIPS 46-3): output bit i (1-based, MSB first) is input bit IP[i].
const IP: [u8; 64] = [
    58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, //
    62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8, //
    57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3, //
    61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
];

/// The permutation P applied to the S-boxes' output.
const P: [u8; 32] = [
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, //
    2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25,
];

/// Permuted choice 1: the key's 56 bits, parity bits dropped.
const PC1: [u8; 56] = [
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, //
    10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36, //
    63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, //
    14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
];

/// Permuted choice 2: a round's 48 key bits from the 56 rotated ones.
const PC2: [u8; 48] = [
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, //
    23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2, //
    41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, //
    44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];

/// Left rotations of the key halves before each round.
const SHIFTS: [u8; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];

/// S1..S8, each 4 rows of 16.
const S: [[u8; 64]; 8] = [
    [
        14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7, //
        0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8, //
        4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0, //
        15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13,
    ],
    [
        15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10, //
        3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5, //
        0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15, //
        13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9,
    ],
    [
        10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8, //
        13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1, //
        13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7, //
        1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12,
    ],
    [
        7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15, //
        13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9, //
        10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4, //
        3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14,
    ],
    [
        2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9, //
        14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6, //
        4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14, //
        11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3,
    ],
    [
        12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11, //
        10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8, //
        9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6, //
        4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13,
    ],
    [
        4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1, //
        13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6, //
        1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2, //
        6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12,
    ],
    [
        13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7, //
        1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2, //
        7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8, //
        2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11,
    ],
];

/// A permutation of a 64-bit block as 8 lookups (one per input byte), each giving the
/// output bits that byte's bits land on.
// Evaluated at compile time only (the tables are statics): an index out of range is a
// build error, never a panic at run time.
#[allow(clippy::indexing_slicing)]
const fn byte_tables(table: &[u8; 64]) -> [[u64; 256]; 8] {
    let mut out = [[0u64; 256]; 8];
    let mut out_bit = 0;
    while out_bit < 64 {
        // Input bit (0-based, MSB first) feeding output bit `out_bit`.
        let src = table[out_bit] as usize - 1;
        let (byte, bit) = (src / 8, 7 - src % 8);
        let mut value = 0;
        while value < 256 {
            if value >> bit & 1 == 1 {
                out[byte][value] |= 1 << (63 - out_bit);
            }
            value += 1;
        }
        out_bit += 1;
    }
    out
}

// Evaluated at compile time only (the tables are statics): an index out of range is a
// build error, never a panic at run time.
#[allow(clippy::indexing_slicing)]
const fn inverse(table: &[u8; 64]) -> [u8; 64] {
    let mut out = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        out[table[i] as usize - 1] = i as u8 + 1;
        i += 1;
    }
    out
}

static IP_TABLES: [[u64; 256]; 8] = byte_tables(&IP);
static FP_TABLES: [[u64; 256]; 8] = byte_tables(&inverse(&IP));

/// S-box `i` followed by P, for each 6-bit input: the round function is the OR of eight
/// lookups.
static SP: [[u32; 64]; 8] = sp_tables();

// Evaluated at compile time only (the tables are statics): an index out of range is a
// build error, never a panic at run time.
#[allow(clippy::indexing_slicing)]
const fn sp_tables() -> [[u32; 64]; 8] {
    let mut out = [[0u32; 64]; 8];
    let mut i = 0;
    while i < 8 {
        let mut x = 0;
        while x < 64 {
            // Row from the outer bits b1 b6, column from b2..b5.
            let row = (x >> 4 & 2) | (x & 1);
            let col = x >> 1 & 0xf;
            let s = S[i][row * 16 + col] as u32;
            // The four output bits at positions 4i..4i+3 (MSB first), then P.
            let before = s << (28 - 4 * i);
            let mut after = 0u32;
            let mut j = 0;
            while j < 32 {
                if before >> (31 - (P[j] as u32 - 1)) & 1 == 1 {
                    after |= 1 << (31 - j);
                }
                j += 1;
            }
            out[i][x] = after;
            x += 1;
        }
        i += 1;
    }
    out
}

fn permute(tables: &[[u64; 256]; 8], block: u64) -> u64 {
    let bytes = block.to_be_bytes();
    let mut out = 0;
    for (table, &byte) in tables.iter().zip(&bytes) {
        out |= table.get(usize::from(byte)).copied().unwrap_or(0);
    }
    out
}

/// One DES key's 16 round keys, each as eight 6-bit chunks.
#[derive(Clone)]
struct Schedule([[u8; 8]; 16]);

impl Zeroize for Schedule {
    fn zeroize(&mut self) {
        self.0.iter_mut().for_each(|k| k.zeroize());
    }
}

impl Schedule {
    fn new(key: &[u8; 8]) -> Self {
        let key = u64::from_be_bytes(*key);
        let bit = |value: u64, width: u32, index: u8| value >> (width - u32::from(index)) & 1;
        let mut cd = 0u64;
        for (i, &src) in PC1.iter().enumerate() {
            cd |= bit(key, 64, src) << (55 - i);
        }
        let (mut c, mut d) = ((cd >> 28) as u32, (cd & 0x0fff_ffff) as u32);
        let mut rounds = [[0u8; 8]; 16];
        for (round, &shift) in rounds.iter_mut().zip(&SHIFTS) {
            c = (c << shift | c >> (28 - u32::from(shift))) & 0x0fff_ffff;
            d = (d << shift | d >> (28 - u32::from(shift))) & 0x0fff_ffff;
            let cd = u64::from(c) << 28 | u64::from(d);
            let mut k = 0u64;
            for (i, &src) in PC2.iter().enumerate() {
                k |= bit(cd, 56, src) << (47 - i);
            }
            for (j, chunk) in round.iter_mut().enumerate() {
                *chunk = (k >> (42 - 6 * j) & 0x3f) as u8;
            }
            k.zeroize();
        }
        cd.zeroize();
        Schedule(rounds)
    }
}

fn feistel(r: u32, k: &[u8; 8]) -> u32 {
    let mut out = 0;
    for (j, (&chunk, sp)) in k.iter().zip(&SP).enumerate() {
        // Expansion E: chunk j is R's bits 4j-1 .. 4j+4 (MSB first, cyclic).
        let e = (r.rotate_left((4 * j as u32 + 31) % 32) >> 26) as u8;
        out |= sp
            .get(usize::from((e ^ chunk) & 0x3f))
            .copied()
            .unwrap_or(0);
    }
    out
}

/// The 16 rounds between the initial and final permutations, with the schedule in order
/// (encryption) or reversed (decryption).
fn rounds(schedule: &Schedule, decrypt: bool, block: u64) -> u64 {
    let (mut l, mut r) = ((block >> 32) as u32, block as u32);
    let mut round = |k: &[u8; 8]| (l, r) = (r, l ^ feistel(r, k));
    if decrypt {
        schedule.0.iter().rev().for_each(&mut round);
    } else {
        schedule.0.iter().for_each(&mut round);
    }
    u64::from(r) << 32 | u64::from(l)
}

/// A 3DES (EDE) key: three schedules (the first and third are the same key for two-key
/// 3DES).
pub(crate) struct TripleDes([Schedule; 3]);

impl Drop for TripleDes {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(Zeroize::zeroize);
    }
}

impl TripleDes {
    /// From a 24-byte (three-key) or 16-byte (two-key) key; `None` for other lengths.
    pub fn new(key: &[u8]) -> Option<Self> {
        let part = |i: usize| -> Option<Schedule> {
            Some(Schedule::new(key.get(i * 8..i * 8 + 8)?.try_into().ok()?))
        };
        match key.len() {
            24 => Some(TripleDes([part(0)?, part(1)?, part(2)?])),
            16 => Some(TripleDes([part(0)?, part(1)?, part(0)?])),
            _ => None,
        }
    }

    /// D_K1(E_K2(D_K3(block))), with one initial and one final permutation: between two
    /// passes the final permutation and the next initial one cancel, and a pass's output
    /// halves (R16, L16) are the next pass's (L0, R0).
    fn decrypt_block(&self, block: u64) -> u64 {
        let [k1, k2, k3] = &self.0;
        let mut x = permute(&IP_TABLES, block);
        x = rounds(k3, true, x);
        x = rounds(k2, false, x);
        x = rounds(k1, true, x);
        permute(&FP_TABLES, x)
    }

    /// CBC decryption with PKCS#7 padding checked and removed; `None` when the length or
    /// the padding is wrong (as a wrong password gives).
    pub fn cbc_decrypt(&self, iv: &[u8], ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let mut previous = u64::from_be_bytes(iv.try_into().ok()?);
        if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(8) {
            return None;
        }
        let mut out = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
        for chunk in ciphertext.chunks_exact(8) {
            let block = u64::from_be_bytes(chunk.try_into().ok()?);
            out.extend_from_slice(&(self.decrypt_block(block) ^ previous).to_be_bytes());
            previous = block;
        }
        let pad = usize::from(*out.last()?);
        let len = out
            .len()
            .checked_sub(pad)
            .filter(|_| (1..=8).contains(&pad))?;
        if !out.get(len..)?.iter().all(|&b| usize::from(b) == pad) {
            return None;
        }
        out.get_mut(len..)?.zeroize();
        out.truncate(len);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use des::cipher::KeyInit;

    fn reference(key: &[u8], block: u64) -> u64 {
        use des::cipher::BlockDecrypt;
        let mut b = block.to_be_bytes().into();
        match key.len() {
            24 => des::TdesEde3::new_from_slice(key)
                .unwrap()
                .decrypt_block(&mut b),
            _ => des::TdesEde2::new_from_slice(key)
                .unwrap()
                .decrypt_block(&mut b),
        }
        u64::from_be_bytes(b.into())
    }

    #[test]
    fn the_fips_example_decrypts() {
        // Single DES as 3DES with three equal keys: key 133457799BBCDFF1,
        // 0123456789ABCDEF <-> 85E813540F0AB405.
        let key = [0x13, 0x34, 0x57, 0x79, 0x9b, 0xbc, 0xdf, 0xf1].repeat(3);
        let des = TripleDes::new(&key).unwrap();
        assert_eq!(
            des.decrypt_block(0x85e8_1354_0f0a_b405),
            0x0123_4567_89ab_cdef
        );
    }

    #[test]
    fn agrees_with_the_des_crate_on_random_keys_and_blocks() {
        // A fixed-seed xorshift: the same 2,000 cases on every run.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for case in 0..2000 {
            let len = if case % 2 == 0 { 24 } else { 16 };
            let key: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let block = next();
            let ours = TripleDes::new(&key).unwrap().decrypt_block(block);
            assert_eq!(ours, reference(&key, block), "case {case}");
        }
    }

    #[test]
    fn cbc_round_trips_with_the_des_crate_and_checks_padding() {
        let key: Vec<u8> = (1..=24).collect();
        let iv = [9u8, 8, 7, 6, 5, 4, 3, 2];
        for len in [0usize, 1, 7, 8, 9, 100] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let ciphertext = {
                use cbc::cipher::{BlockEncryptMut, InnerIvInit};
                let cipher = des::TdesEde3::new_from_slice(&key).unwrap();
                cbc::Encryptor::<des::TdesEde3>::inner_iv_slice_init(cipher, &iv)
                    .unwrap()
                    .encrypt_padded_vec_mut::<cbc::cipher::block_padding::Pkcs7>(&plain)
            };
            let des = TripleDes::new(&key).unwrap();
            assert_eq!(*des.cbc_decrypt(&iv, &ciphertext).unwrap(), plain, "{len}");
            // A wrong key (or password) fails on the padding, not with garbage.
            let other: Vec<u8> = (2..=25).collect();
            let wrong = TripleDes::new(&other)
                .unwrap()
                .cbc_decrypt(&iv, &ciphertext);
            assert!(wrong.is_none_or(|p| *p != plain));
        }
        let des = TripleDes::new(&key).unwrap();
        assert!(des.cbc_decrypt(&iv, &[]).is_none());
        assert!(des.cbc_decrypt(&iv, &[0; 7]).is_none());
        assert!(des.cbc_decrypt(&[0; 7], &[0; 8]).is_none());
        assert!(TripleDes::new(&[0; 8]).is_none());
    }
}
