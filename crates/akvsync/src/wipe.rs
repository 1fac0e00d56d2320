//! Wiping secret bytes before their memory is freed, cheaply enough for every poll: volatile
//! word-sized writes over the whole allocation. (`zeroize` writes one byte at a time, about
//! four instructions per byte: 35 k instructions for the two 4 KiB copies one unchanged
//! certificate's response used to leave, a fifth of a poll; see docs/benchmarks.md.)
//!
//! [`SecretBytes`] owns a response body that holds a secret; [`wipe`] clears any slice.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{Ordering, compiler_fence};

/// Overwrites `bytes` with zeros by volatile writes, which the compiler may not remove.
pub fn wipe(bytes: &mut [u8]) {
    // SAFETY: the pointer and length come from a live, exclusively borrowed slice.
    unsafe { wipe_raw(bytes.as_mut_ptr(), bytes.len()) }
}

/// Zeros `len` bytes from `ptr`: single bytes up to the first 8-byte boundary, then `u64`
/// words, then the last bytes.
///
/// # Safety
/// `ptr..ptr+len` must be one allocation this caller may write (initialised or not).
unsafe fn wipe_raw(ptr: *mut u8, len: usize) {
    let head = ptr.align_offset(std::mem::align_of::<u64>()).min(len);
    let words = (len - head) / 8;
    // SAFETY (all three loops): every address written is inside `ptr..ptr+len` (the
    // caller's promise); the words start at an 8-byte boundary (`align_offset`).
    unsafe {
        for i in 0..head {
            std::ptr::write_volatile(ptr.add(i), 0);
        }
        let word_ptr = ptr.add(head).cast::<u64>();
        for i in 0..words {
            std::ptr::write_volatile(word_ptr.add(i), 0);
        }
        for i in head + words * 8..len {
            std::ptr::write_volatile(ptr.add(i), 0);
        }
    }
    compiler_fence(Ordering::SeqCst);
}

/// A byte buffer holding secret material (a Key Vault response body): its whole
/// allocation, spare capacity included, is wiped when it is dropped. Grow it only through
/// [`SecretBytes::extend_from_slice`], which moves into a wiped-on-drop buffer itself
/// instead of letting `Vec` reallocate and leave the old copy behind.
#[derive(Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// An empty buffer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        SecretBytes(Vec::with_capacity(capacity))
    }

    /// Appends `bytes`; when they do not fit, the content moves to a buffer twice the size
    /// and the old one is wiped.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let needed = self.0.len() + bytes.len();
        if self.0.capacity() < needed {
            let mut grown = SecretBytes::with_capacity(needed * 2);
            grown.0.extend_from_slice(&self.0);
            std::mem::swap(self, &mut grown);
        }
        self.0.extend_from_slice(bytes);
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }
}

impl Deref for SecretBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for SecretBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        // SAFETY: the Vec's allocation is `capacity` bytes from its pointer (nothing is
        // written when the capacity is 0: the range is empty).
        unsafe { wipe_raw(self.0.as_mut_ptr(), self.0.capacity()) }
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipe_clears_every_byte_at_every_alignment_and_length() {
        let mut backing = [0xa5u8; 80];
        for start in 0..9 {
            for len in 0..40 {
                backing.fill(0xa5);
                wipe(&mut backing[start..start + len]);
                assert!(backing[start..start + len].iter().all(|&b| b == 0));
                assert!(backing[..start].iter().all(|&b| b == 0xa5), "{start}/{len}");
                assert!(
                    backing[start + len..].iter().all(|&b| b == 0xa5),
                    "{start}/{len}"
                );
            }
        }
    }

    #[test]
    fn growing_keeps_the_content_and_capacity_follows() {
        let mut bytes = SecretBytes::with_capacity(2);
        for chunk in [&b"ab"[..], b"cdef", b"", b"ghijklmnop"] {
            bytes.extend_from_slice(chunk);
        }
        assert_eq!(&*bytes, b"abcdefghijklmnop");
        assert!(bytes.0.capacity() >= 16);
        assert_eq!(format!("{bytes:?}"), "SecretBytes(<16 bytes redacted>)");
    }
}
