//! The PFX recorded from the real Key Vault service (SPEC §4: a required case).

use akvsync_pkcs12::{CSP_MS_ENHANCED_RSA_AES, Error, decode};

#[test]
fn keyvault_pfx_decodes_with_absent_and_empty_password() {
    let pfx = crate::common::keyvault_pfx();
    for password in [None, Some("")] {
        let d = decode(&pfx, password).unwrap();
        assert_eq!(d.certificates.len(), 1);
        assert_eq!(d.keys.len(), 1);
        let cert = &d.certificates[0];
        assert_eq!(
            crate::common::sha1_hex(&cert.der),
            "ABF46F114F26E918C38DA656FD858044C5676BE4"
        );
        assert_eq!(cert.local_key_id.as_deref(), Some(&[1u8, 0, 0, 0][..]));
        let key = &d.keys[0];
        assert_eq!(key.local_key_id.as_deref(), Some(&[1u8, 0, 0, 0][..]));
        assert_eq!(key.csp_name.as_deref(), Some(CSP_MS_ENHANCED_RSA_AES));
        assert_eq!(
            key.friendly_name.as_deref(),
            Some("51ad1b0b-c859-41df-8933-76683d38ee1f")
        );
        // PKCS#8 PrivateKeyInfo of an RSA key: SEQUENCE { INTEGER 0, SEQUENCE { rsaEncryption ...
        assert_eq!(key.pkcs8_der[0], 0x30);
        let rsa_oid = [
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
        ];
        assert!(key.pkcs8_der.windows(rsa_oid.len()).any(|w| w == rsa_oid));
        // Debug never shows the key.
        let dbg = format!("{key:?}");
        assert!(dbg.contains("redacted"), "{dbg}");
        assert!(!dbg.contains("48, 130"), "{dbg}");
    }
}

#[test]
fn keyvault_pfx_wrong_password_is_a_mac_error() {
    let err = decode(&crate::common::keyvault_pfx(), Some("not the password")).unwrap_err();
    assert!(matches!(err, Error::MacMismatch { .. }), "{err:?}");
    assert!(err.is_wrong_password());
    assert!(err.to_string().contains("MAC"), "{err}");
}

#[test]
fn keyvault_pfx_truncated_is_malformed() {
    let pfx = crate::common::keyvault_pfx();
    for len in [0, 1, 2, 10, pfx.len() / 2, pfx.len() - 1] {
        let err = decode(&pfx[..len], None).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{len}: {err:?}");
    }
}
