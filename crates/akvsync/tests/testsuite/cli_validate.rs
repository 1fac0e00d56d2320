//! `akvsync validate` as a user runs it: the real binary, real files, exit codes 0/2,
//! human and JSON output, and the size bound.

use crate::common::Scratch;
use crate::common::env::{Cmd, akvsync};

/// `akvsync validate <file> [--platform <platform>] [more…]`, to be run.
fn validate(file: impl AsRef<std::path::Path>, platform: Option<&str>, more: &[&str]) -> Cmd {
    let cmd = akvsync(&["validate"]).arg(file.as_ref());
    let cmd = match platform {
        Some(platform) => cmd.arg("--platform").arg(platform),
        None => cmd,
    };
    more.iter().fold(cmd, |cmd, arg| cmd.arg(arg))
}

/// A file of the settings corpus (`tests/settings/<path>`).
fn corpus(path: &str) -> std::path::PathBuf {
    crate::common::crate_path("tests/settings").join(path)
}

#[test]
fn valid_settings_exit_0_with_one_line_per_certificate() {
    let out = validate(
        corpus("valid/windows-doc-arm-template.json"),
        Some("windows"),
        &[],
    )
    .code(0)
    .stderr_is("")
    .run();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("  -> ")).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(
        lines[1],
        "myvault.vault.azure.net  mycertificate2  latest  -> CurrentUser\\MY (key readable by Local Service)"
    );
}

#[test]
fn invalid_settings_exit_2_with_errors_on_stderr() {
    validate(corpus("invalid/windows-url-foreign-host.json"), Some("windows"), &[])
        .code(2)
        .stdout_is("")
        .stderr_is("error: secretsManagementSettings.observedCertificates[2].url: host \"evil.example.com\" is not a Key Vault host\n")
        .run();
}

#[test]
fn json_output_is_the_normalized_model() {
    let out = validate(
        corpus("valid/linux-doc-schema-3x.json"),
        Some("linux"),
        &["--json"],
    )
    .code(0)
    .run();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], true);
    let first = &json["settings"]["certificates"][0];
    assert_eq!(first["vaultHost"], "myvault.vault.azure.net");
    assert_eq!(first["secretName"], "mycertificate1");
    assert_eq!(first["version"], serde_json::Value::Null);
    assert_eq!(first["target"]["kind"], "linuxDirectory");
    assert_eq!(
        first["target"]["directory"],
        "/var/lib/waagent/Microsoft.Azure.KeyVault/app1"
    );
    assert_eq!(first["target"]["customLinkName"], "app1Cert1");
    assert_eq!(
        first["target"]["acls"][0],
        serde_json::json!({"user": "app1", "group": "appGroup1"})
    );
    assert_eq!(
        json["settings"]["identity"]["userAssigned"]["clientId"],
        "00001111-aaaa-2222-bbbb-3333cccc4444"
    );
    assert_eq!(json["warnings"][0]["path"], "loggingSettings");

    // --json prints JSON only.
    let out = validate(
        corpus("invalid/linux-many-errors-at-once.json"),
        Some("linux"),
        &["--json"],
    )
    .code(2)
    .stderr_is("")
    .run();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["errors"].as_array().unwrap().len(), 6);
}

/// Newcomer mistakes get a hint that says what to write instead.
#[test]
fn common_mistakes_get_hints() {
    let scratch = Scratch::new("cli-hints");
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"secretsManagementSettings":{"observedCertificates":[{"url":"https://myvault.vault.azure.net/secrets/web","certificateStoreName":"Personal","certificateStoreLocation":"LocalMachine"}]}}"#,
            "windows",
            "\"Personal\" is how certlm.msc shows the store named \"MY\"",
        ),
        (
            r#"{"secretsManagementSettings":{"observedCertificate":["https://myvault.vault.azure.net/secrets/web"]}}"#,
            "linux",
            "secretsManagementSettings.observedCertificate: unknown field; ignored (did you mean \"observedCertificates\"?)",
        ),
        (
            r#"{"type":"Microsoft.Compute/virtualMachines/extensions","apiVersion":"2023-03-01","properties":{"settings":{"secretsManagementSettings":{}}}}"#,
            "linux",
            "pass the object at properties.settings",
        ),
    ];
    for (index, (json, platform, hint)) in cases.iter().enumerate() {
        let file = scratch.path(&format!("case{index}.json"));
        std::fs::write(&file, json).unwrap();
        let out = validate(&file, Some(platform), &[]).run();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains(hint), "case {index}: {all}");
    }
}

#[test]
fn oversize_and_missing_files_are_refused_clearly() {
    let scratch = Scratch::new("cli");
    let big = scratch.path("big.json");
    let mut content = String::from("{\"secretsManagementSettings\":{\"observedCertificates\":[");
    while content.len() <= 1024 * 1024 {
        content.push_str("\"https://myvault.vault.azure.net/secrets/c1\",");
    }
    content.push_str("\"x\"]}}");
    std::fs::write(&big, &content).unwrap();
    let refused = format!(
        "error: $: the settings are {} bytes; at most 1048576 bytes (1 MiB) are accepted\n",
        content.len()
    );
    validate(&big, Some("linux"), &[])
        .code(2)
        .stderr_is(&refused)
        .run();

    let out = validate(scratch.path("absent.json"), None, &[])
        .code(2)
        .run();
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .starts_with("error: cannot read settings file ")
    );
}

#[test]
fn usage_errors_exit_2() {
    // Rows: the arguments of a usage error.
    for args in [
        &["validate"][..],
        &["validate", "x.json", "--platform", "macos"],
    ] {
        akvsync(args).code(2).run();
    }
}

#[test]
fn default_platform_is_the_running_one() {
    let out = validate(corpus("valid/linux-2x-default-store.json"), None, &[]).run();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let expected = if cfg!(windows) {
        "for windows:"
    } else {
        "for linux:"
    };
    assert!(stdout.contains(expected), "{stdout}");
}
