//! PEM decoding (certificates and keys in any order, PKCS#8/PKCS#1/SEC1); never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(bundle) = akvsync::decode::decode_pem(&text) {
        let _ = bundle.to_pem();
    }
    let _ = akvsync::decode::decode_secret(None, &text);
});
