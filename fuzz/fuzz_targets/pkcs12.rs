//! PKCS#12 decoding of untrusted PFX bytes with the empty password, through the crate and
//! through the agent's decode (leaf matching, chain ordering); never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = akvsync_pkcs12::decode(data, None);
    let _ = akvsync::decode::decode_pfx(data);
});
