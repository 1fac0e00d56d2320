//! `akvsync.chainValidation` (issue 15): the real binary against the emulator, with the
//! machine's trusted roots set through `SSL_CERT_FILE` (what `rustls-native-certs` reads
//! first on every platform). The emulator's certificates are TLS server leafs issued by its
//! test intermediate and root. Rows: the policy, whether the machine trusts that root, and
//! what must happen.

use std::fs;

use crate::common::agent::linked_version;
use crate::common::env::{Env, EnvConfig, VAULT};
use crate::common::store_view::StoreView;

/// PEM of one certificate.
fn pem(der: &[u8]) -> String {
    let body = pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, der).unwrap();
    format!("{body}\n")
}

/// A roots file holding the emulator's test root, or an unrelated root only.
fn roots_file(env: &Env, trusted: bool) -> std::path::PathBuf {
    let path = env.scratch.path("roots.pem");
    let text = if trusted {
        pem(env.emu.test_pki().unwrap().root_der())
    } else {
        // The emulator's TLS CA: a real root, just not the one that issued the certificates.
        fs::read_to_string(env.emu.ca_file()).unwrap()
    };
    fs::write(&path, text).unwrap();
    path
}

struct Row {
    policy: Option<&'static str>,
    trusted: bool,
    installed: bool,
    stderr: &'static str,
}

#[test]
fn chain_validation_installs_trusted_chains_and_refuses_others_by_name() {
    let rows = [
        // Linux's default is off (KeyVaultForLinux does not validate): installed either way.
        Row {
            policy: None,
            trusted: false,
            installed: true,
            stderr: "",
        },
        Row {
            policy: Some("off"),
            trusted: false,
            installed: true,
            stderr: "",
        },
        Row {
            policy: Some("serverAuth"),
            trusted: true,
            installed: true,
            stderr: "",
        },
        Row {
            policy: Some("all"),
            trusted: true,
            installed: true,
            stderr: "",
        },
        Row {
            policy: Some("serverAuth"),
            trusted: false,
            installed: false,
            stderr: "chain validation (ServerAuth): untrusted chain: no root the machine trusts issued",
        },
        Row {
            policy: Some("all"),
            trusted: false,
            installed: false,
            stderr: "untrusted chain",
        },
    ];
    for row in rows {
        let env = Env::start(EnvConfig {
            certificates: &["web"],
            akvsync: row
                .policy
                .map(|p| serde_json::json!({"chainValidation": p})),
            ..Default::default()
        });
        let roots = roots_file(&env, row.trusted);
        let output = env
            .cmd(&["once"])
            .env("SSL_CERT_FILE", &roots)
            .code(if row.installed { 0 } else { 1 })
            .run();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let what = format!("policy {:?}, trusted {}: {stdout}", row.policy, row.trusted);
        assert_eq!(
            linked_version(&env, "web").is_some(),
            row.installed,
            "{what}"
        );
        if !row.installed {
            assert!(stdout.contains(row.stderr), "{what}");
            // Nothing of the refused version was written.
            let names = StoreView::new(env.scratch.store()).names_starting(VAULT);
            assert!(names.is_empty(), "{what}: {names:?}");
        }
    }
}

#[test]
fn a_renewal_with_an_untrusted_chain_keeps_the_installed_version() {
    let env = Env::start(EnvConfig {
        certificates: &["web"],
        akvsync: Some(serde_json::json!({"chainValidation": "serverAuth"})),
        ..Default::default()
    });
    let trusted = roots_file(&env, true);
    env.cmd(&["once"])
        .env("SSL_CERT_FILE", &trusted)
        .code(0)
        .run();
    let first = linked_version(&env, "web").unwrap();
    // The machine stops trusting the root (a re-keyed PKI, a removed root): the next
    // version is refused by name and the first one stays linked.
    env.emu.rotate_certificate(VAULT, "web").unwrap();
    let untrusted = roots_file(&env, false);
    env.cmd(&["once"])
        .env("SSL_CERT_FILE", &untrusted)
        .code(1)
        .stdout_has("untrusted chain")
        .run();
    assert_eq!(linked_version(&env, "web").unwrap(), first);
    env.cmd(&["status", "--json"])
        .stdout_has("untrusted chain")
        .run();
}
