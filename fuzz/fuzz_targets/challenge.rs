//! The vault's 401 challenge: `WWW-Authenticate` parsing and the resource decision
//! (`vault::parse_challenge`, `vault::accept_challenge_resource`). Never panics; what is
//! accepted is exactly the Key Vault resource of the vault's own cloud; refusals stay short.
//! The input is tried as a header and as a resource for a vault of every cloud, and, split
//! at its first newline, as a vault host and a header.
#![no_main]
use akvsync::settings::Cloud;
use akvsync::vault::{accept_challenge_resource, parse_challenge};
use libfuzzer_sys::fuzz_target;

/// The resource a vault host's challenge may name, if the host is a vault of a known cloud.
fn expected(vault_host: &str) -> Option<String> {
    let host = vault_host.to_ascii_lowercase();
    Cloud::ALL
        .into_iter()
        .find(|cloud| {
            host.strip_suffix(cloud.suffix())
                .is_some_and(|label| label.len() > 1 && label.ends_with('.'))
        })
        .map(Cloud::resource)
}

fn check(result: Result<String, String>, vault_host: &str, input: &str) {
    match result {
        Ok(resource) => assert_eq!(
            Some(resource),
            expected(vault_host),
            "{input:?} accepted for {vault_host:?}"
        ),
        // The untrusted part of a message is cut to 100 characters.
        Err(reason) => assert!(
            reason.len() <= 1300 + vault_host.len(),
            "{} bytes for {input:?}",
            reason.len()
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for cloud in Cloud::ALL {
        let host = format!("fuzzvault.{}", cloud.suffix());
        check(parse_challenge(&text, &host), &host, &text);
        check(accept_challenge_resource(&text, &host), &host, &text);
    }
    if let Some((host, header)) = text.split_once('\n') {
        check(parse_challenge(header, host), host, header);
        check(accept_challenge_resource(header, host), host, header);
    }
});
