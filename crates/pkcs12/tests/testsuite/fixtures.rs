//! Every committed OpenSSL-made fixture decodes to the certificates and key it
//! was made from (tests/data/README.md says how they were made). These tests
//! do not need openssl.

use akvsync_pkcs12::{Error, decode};

const PASSWORD: &str = "Pässwörd-1";

/// Decodes `{prefix}-{variant}.pfx` and checks it against chain `prefix`
/// (rsa or ec), OpenSSL's attributes included.
fn fixture(prefix: &str, variant: &str, password: Option<&str>) {
    let name = format!("{prefix}-{variant}.pfx");
    let d = decode(&crate::common::read(&name), password).unwrap_or_else(|e| panic!("{name}: {e}"));
    let c = crate::common::chain(prefix);
    let certs: Vec<&Vec<u8>> = d.certificates.iter().map(|c| &c.der).collect();
    assert_eq!(
        certs,
        c.certs.iter().collect::<Vec<_>>(),
        "{name}: certificates in file order"
    );
    assert_eq!(d.keys.len(), 1);
    let key = &d.keys[0];
    assert_eq!(&key.pkcs8_der[..], &c.key[..], "{name}: private key");
    let (id, friendly) = (crate::common::sha1(&c.certs[0]), format!("{prefix} leaf"));
    let (leaf, int) = (&d.certificates[0], &d.certificates[1]);
    assert_eq!(leaf.local_key_id.as_deref(), Some(&id[..]));
    assert_eq!(leaf.friendly_name.as_deref(), Some(friendly.as_str()));
    assert_eq!(int.local_key_id, None);
    assert_eq!(key.local_key_id.as_deref(), Some(&id[..]));
    assert_eq!(key.friendly_name.as_deref(), Some(friendly.as_str()));
    assert_eq!(key.csp_name, None);
}

macro_rules! fixtures {
    ($($test:ident: $prefix:literal, $variant:literal, $password:expr;)*) => {
        $(
            #[test]
            fn $test() {
                fixture($prefix, $variant, $password);
            }
        )*
    };
}

fixtures! {
    rsa_modern_empty_none: "rsa", "modern", None;
    rsa_modern_empty_str: "rsa", "modern", Some("");
    rsa_legacy: "rsa", "legacy", None;
    rsa_3des: "rsa", "3des", Some("");
    rsa_nomac: "rsa", "nomac", None;
    rsa_nomac_3des: "rsa", "nomac-3des", None;
    rsa_password: "rsa", "password", Some(PASSWORD);
    rsa_password_legacy: "rsa", "password-legacy", Some(PASSWORD);
    rsa_unencrypted: "rsa", "unencrypted", None;
    rsa_aes128_des3_sha512: "rsa", "aes128-des3-sha512", None;
    rsa_aes192_2des_sha384: "rsa", "aes192-2des-sha384", None;
    rsa_rc2_128_sha1: "rsa", "rc2-128-sha1", None;
    ec_modern: "ec", "modern", None;
    ec_legacy: "ec", "legacy", Some("");
    ec_3des: "ec", "3des", None;
    ec_nomac: "ec", "nomac", None;
    ec_nomac_3des: "ec", "nomac-3des", Some("");
    ec_password: "ec", "password", Some(PASSWORD);
    ec_password_legacy: "ec", "password-legacy", Some(PASSWORD);
    ec_unencrypted: "ec", "unencrypted", None;
}

#[test]
fn wrong_password_is_a_mac_error() {
    for (name, password) in [
        ("rsa-modern.pfx", Some("wrong")),
        ("rsa-legacy.pfx", Some("wrong")),
        ("rsa-password.pfx", None),
        ("rsa-password.pfx", Some("Passwörd-1")),
        ("ec-password-legacy.pfx", Some("")),
    ] {
        let err = decode(&crate::common::read(name), password).unwrap_err();
        assert!(matches!(err, Error::MacMismatch { .. }), "{name}: {err:?}");
    }
}

#[test]
fn wrong_password_without_mac_is_a_decryption_error() {
    for name in ["rsa-nomac.pfx", "rsa-nomac-3des.pfx"] {
        let err = decode(&crate::common::read(name), Some("wrong")).unwrap_err();
        assert!(matches!(err, Error::Decryption { .. }), "{name}: {err:?}");
        assert!(err.is_wrong_password());
    }
}

#[test]
fn iteration_count_above_the_bound_is_rejected() {
    let err = decode(&crate::common::read("rsa-iter-2000000.pfx"), None).unwrap_err();
    let Error::IterationsTooHigh {
        iterations, max, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((*iterations, *max), (2_000_000, 1_000_000), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("2000000") && msg.contains("1000000"), "{msg}");
}

#[test]
fn truncated_fixtures_are_malformed() {
    for name in ["rsa-modern.pfx", "ec-legacy.pfx", "rsa-unencrypted.pfx"] {
        let pfx = crate::common::read(name);
        for cut in [1, 7, pfx.len() / 3, pfx.len() - 30] {
            let err = decode(&pfx[..pfx.len() - cut], None).unwrap_err();
            let malformed = matches!(err, Error::Malformed { .. });
            assert!(malformed, "{name} -{cut}: {err:?}");
        }
    }
}

#[test]
fn oversized_input_is_rejected() {
    let big = vec![0x30u8; akvsync_pkcs12::MAX_PFX_LEN + 1];
    let err = decode(&big, None).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
}

#[test]
fn not_a_pfx_is_malformed_and_says_so() {
    let pem = crate::common::read("rsa-leaf.pem");
    let err = decode(&pem, None).unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    let cert = crate::common::pem("rsa-leaf.pem");
    let err = decode(&cert, None).unwrap_err();
    assert!(err.to_string().contains("PFX"), "{err}");
}

#[test]
fn errors_never_contain_the_password() {
    let err = decode(&crate::common::read("rsa-password.pfx"), Some("SECRET-xyz")).unwrap_err();
    assert!(!err.to_string().contains("SECRET"));
    assert!(!format!("{err:?}").contains("SECRET"));
}
