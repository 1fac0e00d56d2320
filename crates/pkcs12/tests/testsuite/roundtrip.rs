//! encode → decode for every Scheme × EmptyPassword (and a real password),
//! and, when `openssl` is on PATH, that OpenSSL 3 reads what we encode.

use crate::common::{Chain, chain};
use std::io::Write as _;
use std::process::{Command, Stdio};

use akvsync_pkcs12::{
    CSP_MS_ENHANCED_RSA_AES, EmptyPassword, EncodeOptions, Error, Scheme, decode, encode,
};

const SCHEMES: [Scheme; 3] = [Scheme::Legacy3Des, Scheme::LegacyRc2, Scheme::ModernAes256];
const EMPTY: [EmptyPassword; 2] = [EmptyPassword::ZeroLength, EmptyPassword::BmpTerminator];
const PASSWORD: &str = "Pässwörd-1";

/// One case: the chain (`rsa`, `ec`), the scheme, how an empty password is
/// encoded, and a password or none.
type Row = (&'static str, Scheme, EmptyPassword, Option<&'static str>);

/// Every chain × scheme × empty-password form without a password (12 rows),
/// then every chain × scheme with one (6 rows).
fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for prefix in ["rsa", "ec"] {
        for scheme in SCHEMES {
            rows.extend(EMPTY.map(|empty| (prefix, scheme, empty, None)));
        }
    }
    for prefix in ["rsa", "ec"] {
        rows.extend(SCHEMES.map(|s| (prefix, s, EmptyPassword::ZeroLength, Some(PASSWORD))));
    }
    rows
}

/// The row's chain, options and encoded PFX.
fn encode_row(&(prefix, scheme, empty, password): &Row) -> (Chain, EncodeOptions, Vec<u8>) {
    let c = chain(prefix);
    let mut opts = options(scheme, empty);
    if let Some(p) = password {
        opts = opts.with_password(p);
    }
    let pfx = encode_chain(&c, &opts);
    (c, opts, pfx)
}

fn encode_chain(c: &Chain, opts: &EncodeOptions) -> Vec<u8> {
    let refs: Vec<&[u8]> = c.certs.iter().map(Vec::as_slice).collect();
    encode(&refs, &c.key, opts).unwrap()
}

fn options(scheme: Scheme, empty: EmptyPassword) -> EncodeOptions {
    EncodeOptions {
        scheme,
        empty_password: empty,
        iterations: 64, // small: these run unoptimized
        friendly_name: Some("akvsync test ü".into()),
        csp_name: Some(CSP_MS_ENHANCED_RSA_AES.into()),
        local_key_id: vec![1, 0, 0, 0],
        ..EncodeOptions::key_vault()
    }
}

fn check_decoded(c: &Chain, pfx: &[u8], password: Option<&str>, opts: &EncodeOptions) {
    let d = decode(pfx, password).unwrap_or_else(|e| panic!("{opts:?}: {e}"));
    let certs: Vec<&Vec<u8>> = d.certificates.iter().map(|b| &b.der).collect();
    assert_eq!(certs, c.certs.iter().collect::<Vec<_>>(), "{opts:?}");
    assert_eq!(d.keys.len(), 1);
    let key = &d.keys[0];
    assert_eq!(&key.pkcs8_der[..], &c.key[..]);
    let id = if opts.local_key_id.is_empty() {
        crate::common::sha1(&c.certs[0])
    } else {
        opts.local_key_id.clone()
    };
    assert_eq!(key.local_key_id.as_deref(), Some(&id[..]));
    assert_eq!(d.certificates[0].local_key_id.as_deref(), Some(&id[..]));
    assert_eq!(d.certificates[1].local_key_id, None);
    assert_eq!(key.friendly_name, opts.friendly_name);
    let leaf_name = match opts.scheme {
        Scheme::Legacy3Des => None,
        _ => opts.friendly_name.clone(),
    };
    assert_eq!(d.certificates[0].friendly_name, leaf_name);
    assert_eq!(key.csp_name, opts.csp_name);
}

#[test]
fn every_row_round_trips() {
    let rows = rows();
    assert_eq!(rows.len(), 18);
    for row in &rows {
        let (c, opts, pfx) = encode_row(row);
        match row.3 {
            None => {
                check_decoded(&c, &pfx, None, &opts);
                check_decoded(&c, &pfx, Some(""), &opts);
                // A non-empty password never opens an empty-password file.
                assert!(
                    decode(&pfx, Some("x")).unwrap_err().is_wrong_password(),
                    "{row:?}"
                );
            }
            Some(password) => {
                check_decoded(&c, &pfx, Some(password), &opts);
                let err = decode(&pfx, None).unwrap_err();
                assert!(matches!(err, Error::MacMismatch { .. }), "{row:?}: {err:?}");
            }
        }
    }
}

#[test]
fn presets_round_trip() {
    let c = chain("rsa");
    for opts in [
        EncodeOptions::key_vault(),
        EncodeOptions::openssl_modern(),
        EncodeOptions::openssl_legacy(),
        EncodeOptions::default(),
    ] {
        let pfx = encode_chain(&c, &opts);
        check_decoded(&c, &pfx, None, &opts);
    }
    assert_eq!(EncodeOptions::key_vault().iterations, 2000);
    assert_eq!(EncodeOptions::key_vault().local_key_id, vec![1, 0, 0, 0]);
}

#[test]
fn encoded_output_is_fresh_each_time() {
    let c = chain("ec");
    let opts = EncodeOptions::key_vault();
    assert_ne!(
        encode_chain(&c, &opts),
        encode_chain(&c, &opts),
        "random salts and IVs"
    );
}

#[test]
fn invalid_encode_input_is_an_error() {
    let c = chain("rsa");
    let leaf: &[u8] = &c.certs[0];
    let opts = EncodeOptions::key_vault();
    let err = encode(&[], &c.key, &opts).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert!(encode(&[leaf], b"not a key", &opts).is_err());
    assert!(encode(&[b"\x30\x05"], &c.key, &opts).is_err());
    for iterations in [0, 2_000_000] {
        let opts = EncodeOptions {
            iterations,
            ..EncodeOptions::key_vault()
        };
        assert!(matches!(
            encode(&[leaf], &c.key, &opts),
            Err(Error::InvalidInput(_))
        ));
    }
    // The error about the key never shows it.
    let err = encode(&[leaf], &c.key[..c.key.len() - 1], &opts).unwrap_err();
    assert!(!err.to_string().contains("0x30"));
}

#[test]
fn encode_options_debug_redacts_the_password() {
    let opts = EncodeOptions::key_vault().with_password("SECRET-abc");
    let dbg = format!("{opts:?}");
    assert!(!dbg.contains("SECRET"), "{dbg}");
    assert!(dbg.contains("redacted"), "{dbg}");
}

// --- OpenSSL cross-check (skipped with a message if openssl is missing) ---

fn openssl_available() -> bool {
    match Command::new("openssl").arg("version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            eprintln!("openssl not found on PATH: skipping the OpenSSL cross-check");
            false
        }
    }
}

/// Runs `openssl pkcs12 -nodes` (with `-legacy` for RC2) on `pfx` given on
/// stdin and returns its stdout and stderr.
fn openssl_read(pfx: &[u8], password: &str, legacy: bool, info: bool) -> String {
    let pass = format!("pass:{password}");
    let mut args = vec!["pkcs12", "-passin", &pass, "-nodes"];
    args.extend(
        info.then_some("-info")
            .into_iter()
            .chain(legacy.then_some("-legacy")),
    );
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(pfx).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "openssl failed: {stderr}");
    format!("{}{stderr}", String::from_utf8_lossy(&out.stdout))
}

#[test]
fn openssl_reads_what_we_encode() {
    if !openssl_available() {
        return;
    }
    for row in rows() {
        let (_, opts, pfx) = encode_row(&row);
        let out = openssl_read(&pfx, row.3.unwrap_or(""), row.1 == Scheme::LegacyRc2, false);
        let count = |block: &str| out.matches(block).count();
        assert_eq!(count("-----BEGIN CERTIFICATE-----"), 3, "{opts:?}\n{out}");
        assert_eq!(count("-----BEGIN PRIVATE KEY-----"), 1, "{opts:?}\n{out}");
        assert!(
            out.contains("friendlyName: akvsync test "),
            "{row:?}\n{out}"
        );
    }
}

#[test]
fn openssl_sees_key_vaults_shape_in_the_key_vault_preset() {
    if !openssl_available() {
        return;
    }
    let c = chain("rsa");
    let opts = EncodeOptions {
        friendly_name: Some("51ad1b0b-c859-41df-8933-76683d38ee1f".into()),
        ..EncodeOptions::key_vault()
    };
    // Key Vault's PFX holds only the leaf.
    let leaf_only = encode(&[&c.certs[0]], &c.key, &opts).unwrap();
    let ours = openssl_read(&leaf_only, "", false, true);
    let theirs = openssl_read(&crate::common::keyvault_pfx(), "", false, true);
    // The -info lines (algorithms, iterations, MAC, attribute names) match.
    let starts = ["MAC", "PKCS7", "Shrouded", "Bag Attributes"];
    let has = ["localKeyID", "Microsoft CSP Name", "friendlyName"];
    let kept =
        |l: &&str| starts.iter().any(|p| l.starts_with(p)) || has.iter().any(|p| l.contains(p));
    let shape = |s: &str| -> Vec<String> { s.lines().filter(kept).map(str::to_owned).collect() };
    assert_eq!(
        shape(&ours),
        shape(&theirs),
        "ours:\n{ours}\ntheirs:\n{theirs}"
    );
    let modern = openssl_read(
        &encode_chain(&c, &EncodeOptions::openssl_modern()),
        "",
        false,
        true,
    );
    assert!(
        modern.contains("PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256"),
        "{modern}"
    );
    assert!(modern.contains("MAC: sha256, Iteration 2048"), "{modern}");
}
