//! The managed-identity token response parser (string or number fields, expiry rules).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = akvsync::identity::parse_token_response(data, 1_800_000_000);
});
