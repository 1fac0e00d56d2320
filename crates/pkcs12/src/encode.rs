//! Encoding a PFX from a certificate chain and a PKCS#8 key: bag attributes,
//! the shrouded key bag, the encrypted certificate SafeContents, the
//! AuthenticatedSafe and the MAC, in the layouts Key Vault and OpenSSL write.

use sha1::Digest;
use zeroize::Zeroizing;

use crate::asn1::{self, oid, tag};
use crate::cipher::{self, EncryptWith, LegacyCipher, Pbes2Cipher};
use crate::error::Error;
use crate::kdf::{Hash, Password};
use crate::{EmptyPassword, EncodeOptions, MAX_ITERATIONS, Scheme};

/// OpenSSL 3's default bag encryption.
const PBES2_AES256: EncryptWith = EncryptWith::Pbes2 {
    prf: Hash::Sha256,
    cipher: Pbes2Cipher::Aes256,
};

/// See [`crate::encode`].
pub(crate) fn encode(
    chain: &[&[u8]],
    key_pkcs8: &[u8],
    opts: &EncodeOptions,
) -> Result<Vec<u8>, Error> {
    let Some(leaf) = chain.first() else {
        return Err(Error::InvalidInput("the certificate chain is empty".into()));
    };
    for (i, cert) in chain.iter().enumerate() {
        if !asn1::is_single_sequence(cert) {
            return Err(Error::InvalidInput(format!(
                "certificate {i} of the chain is not one DER SEQUENCE"
            )));
        }
    }
    if !asn1::is_single_sequence(key_pkcs8) {
        return Err(Error::InvalidInput(
            "the private key is not one DER SEQUENCE (PKCS#8 PrivateKeyInfo)".into(),
        ));
    }
    if opts.iterations == 0 || opts.iterations > MAX_ITERATIONS {
        return Err(Error::InvalidInput(format!(
            "iterations {} outside 1..={MAX_ITERATIONS}",
            opts.iterations
        )));
    }

    let password = match opts.password.as_deref() {
        None | Some("") => match opts.empty_password {
            EmptyPassword::ZeroLength => Password::empty_zero_length(),
            EmptyPassword::BmpTerminator => Password::empty_bmp_terminator(),
        },
        Some(p) => Password::given(p),
    };
    let (cert_enc, key_enc, mac_hash, mac_salt_len) = match opts.scheme {
        // Key Vault: 20-byte MAC salt.
        Scheme::Legacy3Des => (
            EncryptWith::Pkcs12(LegacyCipher::Des3),
            EncryptWith::Pkcs12(LegacyCipher::Des3),
            Hash::Sha1,
            20,
        ),
        Scheme::LegacyRc2 => (
            EncryptWith::Pkcs12(LegacyCipher::Rc2_40),
            EncryptWith::Pkcs12(LegacyCipher::Des3),
            Hash::Sha1,
            8,
        ),
        Scheme::ModernAes256 => (PBES2_AES256, PBES2_AES256, Hash::Sha256, 8),
    };

    let local_key_id = if opts.local_key_id.is_empty() {
        sha1::Sha1::digest(leaf).to_vec()
    } else {
        opts.local_key_id.clone()
    };

    // Attributes: the leaf and the key share localKeyId. friendlyName goes on
    // the key, and on the leaf too as OpenSSL does, except in Key Vault's
    // layout (its leaf carries only localKeyId).
    let key_id_attr = attribute(&oid::LOCAL_KEY_ID, &asn1::octet_string(&local_key_id));
    let name_attr = opts
        .friendly_name
        .as_deref()
        .map(|name| attribute(&oid::FRIENDLY_NAME, &asn1::bmp_string(name)));
    let mut leaf_attrs = vec![key_id_attr.clone()];
    if opts.scheme != Scheme::Legacy3Des {
        leaf_attrs.extend(name_attr.clone());
    }
    let mut key_attrs = vec![key_id_attr];
    key_attrs.extend(name_attr);
    if let Some(csp) = &opts.csp_name {
        key_attrs.push(attribute(&oid::MS_CSP_NAME, &asn1::bmp_string(csp)));
    }

    // Certificates: SafeContents of certBags, encrypted.
    let mut cert_bags = Vec::with_capacity(chain.len());
    for (i, cert) in chain.iter().enumerate() {
        let cert_bag = asn1::seq(&[
            &asn1::oid(&oid::X509_CERTIFICATE),
            &asn1::tlv(tag::CTX0, &asn1::octet_string(cert)),
        ]);
        let attrs = if i == 0 {
            Some(leaf_attrs.clone())
        } else {
            None
        };
        cert_bags.push(safe_bag(&oid::CERT_BAG, &cert_bag, attrs));
    }
    let cert_contents = asn1::seq(&cert_bags.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let (cert_alg, cert_ct) =
        cipher::encrypt(cert_enc, &password, opts.iterations, &cert_contents)?;
    let encrypted_data = asn1::seq(&[
        &asn1::uint(0),
        &asn1::seq(&[
            &asn1::oid(&oid::DATA),
            &cert_alg,
            &asn1::tlv(tag::CTX0_PRIM, &cert_ct),
        ]),
    ]);
    let certs_ci = asn1::seq(&[
        &asn1::oid(&oid::ENCRYPTED_DATA),
        &asn1::tlv(tag::CTX0, &encrypted_data),
    ]);

    // Key: pkcs8ShroudedKeyBag in a plain `data` SafeContents.
    let (key_alg, key_ct) = cipher::encrypt(key_enc, &password, opts.iterations, key_pkcs8)?;
    let epki = asn1::seq(&[&key_alg, &asn1::octet_string(&key_ct)]);
    let key_bag = safe_bag(&oid::SHROUDED_KEY_BAG, &epki, Some(key_attrs));
    let key_ci = data_content_info(&asn1::seq(&[&key_bag]));

    let ordered: [&[u8]; 2] = match opts.scheme {
        Scheme::Legacy3Des => [&key_ci, &certs_ci],
        Scheme::LegacyRc2 | Scheme::ModernAes256 => [&certs_ci, &key_ci],
    };
    let auth_safe = asn1::seq(&ordered);
    let mac = crate::mac::encode(
        mac_hash,
        &password,
        opts.iterations,
        mac_salt_len,
        &auth_safe,
    )?;
    // The key is encrypted, but the buffers are zeroed anyway on the way out.
    let auth_safe = Zeroizing::new(auth_safe);
    Ok(asn1::seq(&[
        &asn1::uint(3),
        &data_content_info(&auth_safe),
        &mac,
    ]))
}

/// `ContentInfo { data, [0] EXPLICIT OCTET STRING }`.
fn data_content_info(content: &[u8]) -> Vec<u8> {
    asn1::seq(&[
        &asn1::oid(&oid::DATA),
        &asn1::tlv(tag::CTX0, &asn1::octet_string(content)),
    ])
}

/// `PKCS12Attribute { attrId, attrValues SET OF (one value) }`.
fn attribute(id: &der::asn1::ObjectIdentifier, value: &[u8]) -> Vec<u8> {
    asn1::seq(&[&asn1::oid(id), &asn1::set_of(vec![value.to_vec()])])
}

/// `SafeBag { bagId, [0] EXPLICIT value, attributes OPTIONAL }`.
fn safe_bag(
    id: &der::asn1::ObjectIdentifier,
    value: &[u8],
    attrs: Option<Vec<Vec<u8>>>,
) -> Vec<u8> {
    let id = asn1::oid(id);
    let value = asn1::tlv(tag::CTX0, value);
    match attrs {
        Some(attrs) => asn1::seq(&[&id, &value, &asn1::set_of(attrs)]),
        None => asn1::seq(&[&id, &value]),
    }
}
