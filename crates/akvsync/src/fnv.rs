//! `FnvMap`: a `HashMap` hashed with FNV-1a, for the per-request lookup tables of the vault
//! and identity clients (vault host → push-back or challenge resource, secret → URL,
//! resource → token). SipHash, std's default, cost ~4 k instructions of every request
//! (docs/benchmarks.md); the keys come from the settings and the agent's own requests, not
//! from the network, so hash flooding is no concern.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`Fnv`] hashing.
pub type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// FNV-1a, 64 bits.
#[derive(Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_fnv1a_values_and_a_working_map() {
        let hash = |bytes: &[u8]| {
            let mut h = Fnv::default();
            h.write(bytes);
            h.finish()
        };
        // The FNV-1a 64 test vectors: "" and "a".
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut map: FnvMap<String, u32> = FnvMap::default();
        for i in 0..1000 {
            map.insert(format!("vault{i}.vault.azure.net"), i);
        }
        assert_eq!(map.get("vault517.vault.azure.net"), Some(&517));
        assert_eq!(map.len(), 1000);
    }
}
