//! Key derivation: the PKCS#12 KDF (RFC 7292 appendix B) for the legacy PBE
//! schemes and the MAC key, the password encodings it takes, and the work
//! bound on iteration counts (SPEC §10).

use sha2::digest::core_api::BlockSizeUser;
use sha2::digest::{Digest, FixedOutputReset};
use zeroize::{Zeroize, Zeroizing};

use crate::error::Error;

/// Diversifier ID of RFC 7292 B.3: what the derived bytes are for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    Key = 1,
    Iv = 2,
    Mac = 3,
}

/// One way to turn the caller's password into bytes.
pub(crate) struct Password {
    /// Input of the PKCS#12 KDF: BMPString (UTF-16BE) with a 00 00 terminator,
    /// or for the empty password possibly zero bytes.
    pub bmp: Zeroizing<Vec<u8>>,
    /// Input of PBKDF2 (PBES2): the UTF-8 bytes.
    pub utf8: Zeroizing<Vec<u8>>,
}

impl Password {
    /// The BMPString form with terminator of a non-empty password.
    pub fn given(password: &str) -> Self {
        let mut bmp: Zeroizing<Vec<u8>> =
            Zeroizing::new(Vec::with_capacity(password.len() * 2 + 2));
        for unit in password.encode_utf16() {
            bmp.extend_from_slice(&unit.to_be_bytes());
        }
        bmp.extend_from_slice(&[0, 0]);
        Self {
            bmp,
            utf8: Zeroizing::new(password.as_bytes().to_vec()),
        }
    }

    /// The empty password as zero bytes (Key Vault, Windows with `NULL`).
    pub fn empty_zero_length() -> Self {
        Self {
            bmp: Zeroizing::new(Vec::new()),
            utf8: Zeroizing::new(Vec::new()),
        }
    }

    /// The empty password as the BMPString terminator 00 00 (OpenSSL `pass:`).
    pub fn empty_bmp_terminator() -> Self {
        Self {
            bmp: Zeroizing::new(vec![0, 0]),
            utf8: Zeroizing::new(Vec::new()),
        }
    }

    /// The encodings to try for what the caller gave, most likely first.
    pub fn candidates(password: Option<&str>) -> Vec<Self> {
        match password {
            None | Some("") => vec![Self::empty_zero_length(), Self::empty_bmp_terminator()],
            Some(p) if p.is_ascii() => vec![Self::given(p)],
            Some(p) => vec![Self::given(p), Self::openssl1_bytes(p)],
        }
    }

    /// OpenSSL 1.x's form of a non-ASCII password: each UTF-8 *byte*
    /// zero-extended to 16 bits (OpenSSL 3 also tries it, for old files).
    fn openssl1_bytes(password: &str) -> Self {
        let mut bmp: Zeroizing<Vec<u8>> =
            Zeroizing::new(Vec::with_capacity(password.len() * 2 + 2));
        for b in password.bytes() {
            bmp.extend_from_slice(&[0, b]);
        }
        bmp.extend_from_slice(&[0, 0]);
        Self {
            bmp,
            utf8: Zeroizing::new(password.as_bytes().to_vec()),
        }
    }
}

/// Checks an iteration count from the input against [`crate::MAX_ITERATIONS`]
/// and returns it as u32.
pub(crate) fn check_iterations(what: &'static str, iterations: u64) -> Result<u32, Error> {
    if iterations > u64::from(crate::MAX_ITERATIONS) {
        return Err(Error::IterationsTooHigh {
            what,
            iterations,
            max: crate::MAX_ITERATIONS,
        });
    }
    if iterations == 0 {
        return Err(Error::malformed(what, "iteration count 0"));
    }
    u32::try_from(iterations).map_err(|_| Error::malformed(what, "iteration count out of range"))
}

/// The work bound a decode runs with: [`crate::MAX_TOTAL_ITERATIONS`]; under the fuzzer
/// (`cfg(fuzzing)`, which cargo-fuzz sets) 1,024, so that an execution costs microseconds
/// rather than the millisecond a real file's 2,000-iteration chains take (the seed corpus
/// has one-iteration copies of the real files, `fuzz/corpus/pkcs12/*-1iter.p12`); the
/// bound's own logic is unit-tested at its real value.
const WORK_BOUND: u64 = if cfg!(fuzzing) {
    1024
} else {
    crate::MAX_TOTAL_ITERATIONS
};

/// Cumulative key-derivation work of one decode, bounded by [`WORK_BOUND`] so that a file
/// full of expensive bags cannot pin a CPU.
pub(crate) struct WorkBudget {
    spent: u64,
}

impl WorkBudget {
    pub fn new() -> Self {
        Self { spent: 0 }
    }

    pub fn spend(&mut self, iterations: u32) -> Result<(), Error> {
        self.spent = self.spent.saturating_add(u64::from(iterations));
        if self.spent > WORK_BOUND {
            return Err(Error::TooMuchWork { max: WORK_BOUND });
        }
        Ok(())
    }
}

/// RFC 7292 B.2: derives `len` bytes for `purpose` from the password bytes
/// (already in their BMP form), salt and iteration count, with hash `D`.
pub(crate) fn pkcs12_kdf<D>(
    password: &[u8],
    salt: &[u8],
    purpose: Purpose,
    iterations: u32,
    len: usize,
) -> Zeroizing<Vec<u8>>
where
    D: Digest + FixedOutputReset + BlockSizeUser,
{
    let v = D::block_size();
    let u = <D as Digest>::output_size();
    let diversifier = vec![purpose as u8; v];
    let mut i_buf = initial_i(password, salt, v);

    let mut out: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(len + u));
    let mut hasher = D::new();
    loop {
        // A_i = H^c(D || I)
        Digest::update(&mut hasher, &diversifier);
        Digest::update(&mut hasher, &i_buf[..]);
        // One fixed-size buffer for every iteration: no allocation in the loop, which runs
        // thousands of times per key (and under a contended allocator, as musl's, that
        // dominated a cold sync).
        let mut a = Digest::finalize_reset(&mut hasher);
        for _ in 1..iterations {
            Digest::update(&mut hasher, &a[..]);
            Digest::finalize_into_reset(&mut hasher, &mut a);
        }
        out.extend_from_slice(&a);
        if out.len() < len {
            add_to_i(&mut i_buf, &a, v);
        }
        a.as_mut_slice().zeroize();
        if out.len() >= len {
            break;
        }
    }
    out.truncate(len);
    out
}

/// I = S || P of RFC 7292 B.2, each input repeated to a multiple of `v` bytes.
fn initial_i(password: &[u8], salt: &[u8], v: usize) -> Zeroizing<Vec<u8>> {
    let repeat = |input: &[u8]| -> Vec<u8> {
        if input.is_empty() {
            return Vec::new();
        }
        let n = input.len().div_ceil(v) * v;
        input.iter().copied().cycle().take(n).collect()
    };
    let mut i_buf: Zeroizing<Vec<u8>> = Zeroizing::new(repeat(salt));
    i_buf.extend_from_slice(&Zeroizing::new(repeat(password)));
    i_buf
}

/// B = A repeated to `v` bytes; each `v`-byte block I_j = (I_j + B + 1) mod 2^v.
fn add_to_i(i_buf: &mut [u8], a: &[u8], v: usize) {
    let b: Zeroizing<Vec<u8>> = Zeroizing::new(a.iter().copied().cycle().take(v).collect());
    for block in i_buf.chunks_mut(v) {
        let mut carry: u16 = 1;
        for (x, y) in block.iter_mut().rev().zip(b.iter().rev()) {
            let sum = u16::from(*x) + u16::from(*y) + carry;
            *x = sum as u8;
            carry = sum >> 8;
        }
    }
}

/// Several SHA-1 [`pkcs12_kdf`] derivations from one password, salt and iteration count
/// (a legacy PBE's key and IV), with their hash chains run side by side: each iteration
/// is one dependent SHA-1 block, and two independent chains interleaved take about half
/// the time of one after the other (the CPU overlaps them). The results are those of
/// [`pkcs12_kdf`] for each `(purpose, len)`.
pub(crate) fn sha1_kdf_many<const N: usize>(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    jobs: [(Purpose, usize); N],
) -> [Zeroizing<Vec<u8>>; N] {
    const V: usize = 64;
    const U: usize = 20;
    let mut i_bufs: [Zeroizing<Vec<u8>>; N] = std::array::from_fn(|_| initial_i(password, salt, V));
    let mut outs: [Zeroizing<Vec<u8>>; N] =
        jobs.map(|(_, len)| Zeroizing::new(Vec::with_capacity(len + U)));
    // This stage's chains: one single-block message being iterated per job that needs
    // more bytes (`None` for a job that has them all).
    let mut chains: [Option<Block>; N] = std::array::from_fn(|_| None);
    loop {
        for ((chain, (purpose, len)), (out, i_buf)) in
            chains.iter_mut().zip(jobs).zip(outs.iter().zip(&i_bufs))
        {
            *chain = (out.len() < len).then(|| {
                let mut hasher = sha1::Sha1::new();
                Digest::update(&mut hasher, [purpose as u8; V]);
                Digest::update(&mut hasher, &i_buf[..]);
                Block::new(&hasher.finalize())
            });
        }
        if chains.iter().all(Option::is_none) {
            break;
        }
        for _ in 1..iterations {
            for block in chains.iter_mut().flatten() {
                block.hash_in_place();
            }
        }
        for ((chain, (_, len)), (out, i_buf)) in chains
            .iter()
            .zip(jobs)
            .zip(outs.iter_mut().zip(i_bufs.iter_mut()))
        {
            if let Some(block) = chain {
                out.extend_from_slice(block.digest());
                if out.len() < len {
                    add_to_i(i_buf, block.digest(), V);
                }
            }
        }
    }
    for (out, &(_, len)) in outs.iter_mut().zip(&jobs) {
        out.truncate(len);
    }
    outs
}

/// A 20-byte SHA-1 digest as the one padded block that hashing it takes.
struct Block([u8; 64]);

impl Block {
    fn new(digest: &[u8]) -> Self {
        let mut block = [0u8; 64];
        block[..20].copy_from_slice(digest);
        block[20] = 0x80;
        // Message length in bits, big-endian, at the end: 160.
        block[63] = 160;
        Block(block)
    }

    /// Replaces the digest with its own SHA-1.
    fn hash_in_place(&mut self) {
        const H0: [u32; 5] = [
            0x6745_2301,
            0xefcd_ab89,
            0x98ba_dcfe,
            0x1032_5476,
            0xc3d2_e1f0,
        ];
        let mut state = H0;
        sha1::compress(&mut state, std::slice::from_ref((&self.0).into()));
        for (bytes, word) in self.0.chunks_exact_mut(4).zip(state) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
    }

    fn digest(&self) -> &[u8] {
        &self.0[..20]
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The hash functions the PKCS#12 KDF and the MAC run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha224 => 28,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// [`pkcs12_kdf`] with this hash.
    pub fn kdf(
        self,
        password: &[u8],
        salt: &[u8],
        purpose: Purpose,
        iterations: u32,
        len: usize,
    ) -> Zeroizing<Vec<u8>> {
        match self {
            Hash::Sha1 => pkcs12_kdf::<sha1::Sha1>(password, salt, purpose, iterations, len),
            Hash::Sha224 => pkcs12_kdf::<sha2::Sha224>(password, salt, purpose, iterations, len),
            Hash::Sha256 => pkcs12_kdf::<sha2::Sha256>(password, salt, purpose, iterations, len),
            Hash::Sha384 => pkcs12_kdf::<sha2::Sha384>(password, salt, purpose, iterations, len),
            Hash::Sha512 => pkcs12_kdf::<sha2::Sha512>(password, salt, purpose, iterations, len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Vectors from the RustCrypto `pkcs12` crate's KDF tests (password "ge@äheim",
    // salt 01 02 03 04 05 06 07 08), themselves checked against OpenSSL.
    #[test]
    fn kdf_known_answers() {
        let pw = Password::given("ge@äheim");
        let salt = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            *pkcs12_kdf::<sha2::Sha256>(&pw.bmp, &salt, Purpose::Key, 100, 32),
            hex("fae4d4957a3cc781e1180b9d4fb79c1e0c8579b746a3177e5b0768a3118bf863")
        );
        assert_eq!(
            *pkcs12_kdf::<sha2::Sha256>(&pw.bmp, &salt, Purpose::Iv, 100, 32),
            hex("e5ff813bc6547de5155b14d2fada85b3201a977349db6e26ccc998d9e8f83d6c")
        );
        assert_eq!(
            *pkcs12_kdf::<sha2::Sha256>(&pw.bmp, &salt, Purpose::Mac, 100, 32),
            hex("136355ed9434516682534f46d63956db5ff06b844702c2c1f3b46321e2524a4d")
        );
        // Longer than one hash output: exercises the I_j update.
        assert_eq!(
            *pkcs12_kdf::<sha2::Sha256>(&pw.bmp, &salt, Purpose::Key, 100, 20),
            hex("fae4d4957a3cc781e1180b9d4fb79c1e0c8579b7")
        );
        assert_eq!(
            *pkcs12_kdf::<sha2::Sha256>(&pw.bmp, &salt, Purpose::Key, 1000, 100),
            hex(
                "2b95a0569b63f641fae1efca32e84db3699ab74540628ba66283b58cf5400527d8d0ebe2ccbf768c51c4d8fbd1bb156be06c1c59cbb69e44052ffc37376fdb47b2de7f9e543de9d096d8e5474b220410ff1c5d8bb7e5bc0f61baeaa12fd0da1d7a970172"
            )
        );
        assert_eq!(
            *Hash::Sha512.kdf(&pw.bmp, &salt, Purpose::Key, 100, 32),
            hex("b14a9f01bfd9dce4c9d66d2fe9937e5fd9f1afa59e370a6fa4fc81c1cc8ec8ee")
        );
    }

    #[test]
    fn interleaved_sha1_chains_give_the_same_bytes() {
        let pw = Password::given("ge@äheim");
        for (salt_len, iterations) in [(8usize, 1u32), (8, 2), (20, 2048), (0, 3), (65, 17)] {
            let salt: Vec<u8> = (0..salt_len as u8).collect();
            for lens in [[24usize, 8, 20], [16, 8, 1], [41, 60, 0]] {
                let [key, iv, mac] = sha1_kdf_many(
                    &pw.bmp,
                    &salt,
                    iterations,
                    [
                        (Purpose::Key, lens[0]),
                        (Purpose::Iv, lens[1]),
                        (Purpose::Mac, lens[2]),
                    ],
                );
                let one = |purpose, len| {
                    pkcs12_kdf::<sha1::Sha1>(&pw.bmp, &salt, purpose, iterations, len)
                };
                assert_eq!(
                    *key,
                    *one(Purpose::Key, lens[0]),
                    "{salt_len} {iterations} {lens:?}"
                );
                assert_eq!(
                    *iv,
                    *one(Purpose::Iv, lens[1]),
                    "{salt_len} {iterations} {lens:?}"
                );
                assert_eq!(
                    *mac,
                    *one(Purpose::Mac, lens[2]),
                    "{salt_len} {iterations} {lens:?}"
                );
            }
        }
    }

    #[test]
    fn password_encodings() {
        assert_eq!(*Password::given("ab").bmp, vec![0, b'a', 0, b'b', 0, 0]);
        assert_eq!(*Password::given("ab").utf8, b"ab".to_vec());
        let c = Password::candidates(Some(""));
        assert_eq!(c.len(), 2);
        assert!(c[0].bmp.is_empty());
        assert_eq!(*c[1].bmp, vec![0, 0]);
        assert_eq!(Password::candidates(None).len(), 2);
        assert_eq!(Password::candidates(Some("ascii")).len(), 1);
        let c = Password::candidates(Some("ä"));
        assert_eq!(*c[0].bmp, vec![0, 0xe4, 0, 0]);
        assert_eq!(*c[1].bmp, vec![0, 0xc3, 0, 0xa4, 0, 0]);
    }

    #[test]
    fn iteration_bound() {
        assert!(check_iterations("MAC", 1_000_000).is_ok());
        assert!(matches!(
            check_iterations("MAC", 1_000_001),
            Err(Error::IterationsTooHigh { .. })
        ));
        assert!(check_iterations("MAC", 0).is_err());
    }

    #[test]
    fn work_budget_is_cumulative() {
        let mut b = WorkBudget::new();
        for _ in 0..10 {
            b.spend(crate::MAX_ITERATIONS).unwrap();
        }
        assert!(matches!(b.spend(1), Err(Error::TooMuchWork { .. })));
    }
}
