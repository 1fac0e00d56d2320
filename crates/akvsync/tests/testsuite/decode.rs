//! Decoding certificate secrets: PEM in any order and every key form, the recorded Key
//! Vault PFX (zero-length empty password), and the errors for blobs that cannot be
//! installed. Fixtures: `tests/data` (see `make-fixtures.sh`).

use crate::common::fixtures::{self, thumbprint};
use akvsync::decode::{self, DecodeError};

#[test]
fn key_first_shuffled_pem_orders_leaf_intermediate_root() {
    let bundle = decode::decode_secret(
        Some("application/x-pem-file"),
        &fixtures::text("rsa-key-first-shuffled.pem"),
    )
    .unwrap();
    assert_eq!(bundle.leaf.thumbprint, thumbprint("leaf"));
    let chain: Vec<&str> = bundle.chain.iter().map(|c| c.thumbprint.as_str()).collect();
    assert_eq!(
        chain,
        [thumbprint("int").as_str(), thumbprint("root").as_str()]
    );
    assert_eq!(bundle.leaf.subject, "CN=www.contoso.com");
    assert_eq!(bundle.leaf.issuer, "CN=akvsync test intermediate");
    assert_eq!(bundle.leaf.dns_names, ["www.contoso.com", "contoso.com"]);
    assert_eq!(bundle.leaf.key, "RSA 2048");
    assert_eq!(bundle.leaf.sha256.len(), 64);
    assert!(bundle.leaf.not_after > bundle.leaf.not_before);
    assert!(bundle.chain[1].is_self_issued());
    assert_eq!(bundle.unrelated, 0);

    // The store layout: leaf, intermediate, root, then the key; re-decoding gives the same.
    let pem = String::from_utf8(bundle.to_pem().to_vec()).unwrap();
    let labels: Vec<&str> = pem
        .lines()
        .filter(|l| l.starts_with("-----BEGIN"))
        .collect();
    assert_eq!(
        labels,
        ["-----BEGIN CERTIFICATE-----"; 3]
            .into_iter()
            .chain(["-----BEGIN PRIVATE KEY-----"])
            .collect::<Vec<_>>()
    );
    let again = decode::decode_pem(&pem).unwrap();
    assert_eq!(again.leaf, bundle.leaf);
    assert_eq!(again.key.pkcs8_der(), bundle.key.pkcs8_der());
}

#[test]
fn pkcs1_and_sec1_keys_become_pkcs8() {
    let rsa = decode::decode_pem(&fixtures::text("rsa-pkcs1-key-last.pem")).unwrap();
    assert_eq!(rsa.leaf.thumbprint, thumbprint("leaf"));
    assert_eq!(rsa.chain.len(), 1, "the root is not in this file");
    let from_pkcs8 = decode::decode_pem(&fixtures::text("rsa-key-first-shuffled.pem")).unwrap();
    assert_eq!(
        rsa.key.pkcs8_der(),
        from_pkcs8.key.pkcs8_der(),
        "PKCS#1 wrapped into the same PKCS#8"
    );

    let ec = decode::decode_pem(&fixtures::text("ec-sec1-with-params.pem")).unwrap();
    assert_eq!(ec.leaf.thumbprint, thumbprint("ec"));
    assert_eq!(ec.leaf.key, "EC P-256");
    assert_eq!(ec.leaf.dns_names, ["api.contoso.com"]);
    let reparsed = decode::decode_pem(core::str::from_utf8(&ec.to_pem()).unwrap()).unwrap();
    assert_eq!(reparsed.leaf.thumbprint, thumbprint("ec"));
}

#[test]
fn blobs_that_cannot_be_installed_are_errors() {
    let cases: [(&str, Option<&str>, String); 6] = [
        (
            "no key",
            Some("application/x-pem-file"),
            fixtures::text("certificates-only.pem"),
        ),
        (
            "wrong key",
            Some("application/x-pem-file"),
            fixtures::text("key-matches-nothing.pem"),
        ),
        (
            "no certificate",
            Some("application/x-pem-file"),
            fixtures::text("rsa-pkcs1-key-last.pem")
                .split("-----BEGIN RSA")
                .nth(1)
                .map(|k| format!("-----BEGIN RSA{k}"))
                .unwrap(),
        ),
        (
            "bad base64",
            Some("application/x-pkcs12"),
            "not base64 at all!".to_owned(),
        ),
        ("bad content type", Some("text/plain"), "hello".to_owned()),
        (
            "truncated PEM",
            Some("application/x-pem-file"),
            fixtures::text("rsa-key-first-shuffled.pem")[..200].to_owned(),
        ),
    ];
    for (what, content_type, value) in cases {
        let err = decode::decode_secret(content_type, &value).unwrap_err();
        let ok = match what {
            "no key" => matches!(err, DecodeError::NoPrivateKey),
            "wrong key" => matches!(err, DecodeError::KeyMatchesNoCertificate),
            "no certificate" => matches!(err, DecodeError::NoCertificate),
            "bad base64" => matches!(err, DecodeError::Base64(_)),
            "bad content type" => matches!(err, DecodeError::ContentType(_)),
            _ => matches!(err, DecodeError::Pem(_)),
        };
        assert!(ok, "{what}: {err}");
        assert!(
            !err.to_string().contains("PRIVATE KEY-----"),
            "{what}: error echoes key material"
        );
    }
}

#[test]
fn recorded_key_vault_pfx_decodes_with_the_zero_length_password() {
    let bundle = fixtures::recorded_key_vault_bundle();
    assert_eq!(bundle.leaf.thumbprint, fixtures::RECORDED_LEAF);
    assert_eq!(
        bundle.csp_name.as_deref(),
        Some("Microsoft Enhanced RSA and AES Cryptographic Provider")
    );
}

#[test]
fn every_openssl_pfx_form_with_the_empty_password_decodes() {
    for (file, leaf, chain) in [
        ("rsa-openssl3-aes-empty.p12", "leaf", 2),
        ("rsa-legacy-rc2-empty.p12", "leaf", 2),
        ("rsa-3des-sha1-empty.p12", "leaf", 2),
        ("rsa-nomac-empty.p12", "leaf", 2),
        ("rsa-unencrypted-empty.p12", "leaf", 2),
        ("ec-openssl3-aes-empty.p12", "ec", 2),
    ] {
        let bundle =
            decode::decode_pfx(&fixtures::bytes(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(bundle.leaf.thumbprint, thumbprint(leaf), "{file}");
        let chain_thumbprints: Vec<&str> =
            bundle.chain.iter().map(|c| c.thumbprint.as_str()).collect();
        assert_eq!(
            chain_thumbprints,
            [thumbprint("int").as_str(), thumbprint("root").as_str()][..chain],
            "{file}"
        );
        assert_eq!(bundle.csp_name, None, "{file}: OpenSSL writes no CSP name");
        // Through the secret path too, as Key Vault serves it (base64, PKCS#12 content type).
        let value = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            fixtures::bytes(file),
        );
        let served = decode::decode_secret(Some("application/x-pkcs12"), &value).unwrap();
        assert_eq!(served.leaf.thumbprint, thumbprint(leaf));
    }
    let ec = decode::decode_pfx(&fixtures::bytes("ec-openssl3-aes-empty.p12")).unwrap();
    assert_eq!(ec.leaf.key, "EC P-256");
}

#[test]
fn pfx_files_that_cannot_be_used_are_clear_errors() {
    let cases = [
        ("rsa-with-password.p12", "MAC verification failed"),
        (
            "rsa-2m-iterations.p12",
            "iteration count 2000000 is above the limit of 1000000",
        ),
    ];
    for (file, expected) in cases {
        let err = decode::decode_pfx(&fixtures::bytes(file))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{file}: {err}");
    }
    let whole = fixtures::bytes("rsa-3des-sha1-empty.p12");
    let err = decode::decode_pfx(&whole[..whole.len() / 2]).unwrap_err();
    assert!(matches!(err, DecodeError::Pkcs12(_)), "{err}");
    let mut flipped = whole.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    assert!(
        decode::decode_pfx(&flipped).is_err(),
        "a flipped byte fails the MAC"
    );
}
