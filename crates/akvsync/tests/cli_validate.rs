//! `akvsync validate` as a user runs it: the real binary, real files, exit codes 0/2,
//! human and JSON output, and the size bound.

use std::path::Path;
use std::process::{Command, Output};

fn validate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .arg("validate")
        .args(args)
        .output()
        .unwrap()
}

fn corpus(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/settings")
        .join(path)
        .display()
        .to_string()
}

#[test]
fn valid_settings_exit_0_with_one_line_per_certificate() {
    let out = validate(&[
        &corpus("valid/windows-doc-arm-template.json"),
        "--platform",
        "windows",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("  -> ")).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(
        lines[1],
        "myvault.vault.azure.net  mycertificate2  latest  -> CurrentUser\\MY (key readable by Local Service)"
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn invalid_settings_exit_2_with_errors_on_stderr() {
    let out = validate(&[
        &corpus("invalid/windows-url-foreign-host.json"),
        "--platform",
        "windows",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: secretsManagementSettings.observedCertificates[2].url: host \"evil.example.com\" is not a Key Vault host\n"
    );
}

#[test]
fn json_output_is_the_normalized_model() {
    let out = validate(&[
        &corpus("valid/linux-doc-schema-3x.json"),
        "--platform",
        "linux",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
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

    let out = validate(&[
        &corpus("invalid/linux-many-errors-at-once.json"),
        "--platform",
        "linux",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["errors"].as_array().unwrap().len(), 6);
    assert!(
        out.stderr.is_empty(),
        "--json prints JSON only: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Newcomer mistakes get a hint that says what to write instead.
#[test]
fn common_mistakes_get_hints() {
    let dir = std::env::temp_dir().join(format!("akvsync-cli-hints-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
        let file = dir.join(format!("case{index}.json"));
        std::fs::write(&file, json).unwrap();
        let out = validate(&[file.to_str().unwrap(), "--platform", platform]);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains(hint), "case {index}: {all}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oversize_and_missing_files_are_refused_clearly() {
    let dir = std::env::temp_dir().join(format!("akvsync-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.json");
    let mut content = String::from("{\"secretsManagementSettings\":{\"observedCertificates\":[");
    while content.len() <= 1024 * 1024 {
        content.push_str("\"https://myvault.vault.azure.net/secrets/c1\",");
    }
    content.push_str("\"x\"]}}");
    std::fs::write(&big, &content).unwrap();
    let out = validate(&[big.to_str().unwrap(), "--platform", "linux"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        format!(
            "error: $: the settings are {} bytes; at most 1048576 bytes (1 MiB) are accepted\n",
            content.len()
        )
    );

    let out = validate(&[dir.join("absent.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .starts_with("error: cannot read settings file ")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .args(["validate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .args(["validate", "x.json", "--platform", "macos"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn default_platform_is_the_running_one() {
    let out = validate(&[&corpus("valid/linux-2x-default-store.json")]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let expected = if cfg!(windows) {
        "for windows:"
    } else {
        "for linux:"
    };
    assert!(stdout.contains(expected), "{stdout}");
}
