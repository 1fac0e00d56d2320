//! The Key Vault secret response parser (id/version checks), then decoding of its value.
#![no_main]
use akvsync::settings::parse_secret_url;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(latest) = parse_secret_url("https://fuzzvault.vault.azure.net/secrets/cert") else {
        return;
    };
    if let Ok(secret) = akvsync::vault::parse_secret_response(data.to_vec().into(), &latest) {
        if let Ok(text) = secret.value.text() {
            let _ = akvsync::decode::decode_secret(secret.content_type.as_deref(), text);
        }
    }
    if let Ok(pinned) = parse_secret_url(
        "https://fuzzvault.vault.azure.net/secrets/cert/0123456789abcdef0123456789abcdef",
    ) {
        let _ = akvsync::vault::parse_secret_response(data.to_vec().into(), &pinned);
    }
});
