//! What ships: both `HandlerManifest.json` files have exactly the SPEC §7 fields and name
//! commands that exist; the systemd units (the one `handler enable` writes and the plain
//! install's) pass `systemd-analyze verify` where it is installed.

use std::path::PathBuf;
// The unit checks run only on Linux.
#[cfg(target_os = "linux")]
use std::{path::Path, process::Command};

fn repo() -> PathBuf {
    crate::common::crate_path("../..")
}

fn manifest(platform: &str) -> serde_json::Value {
    let path = repo()
        .join("packaging")
        .join(platform)
        .join("HandlerManifest.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn manifests_follow_the_spec() {
    for (platform, exe) in [("linux", "bin/akvsync"), ("windows", "bin\\akvsync.exe")] {
        let m = manifest(platform);
        let entries = m.as_array().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["version"], 1.0);
        let h = entries[0]["handlerManifest"].as_object().unwrap();
        for op in ["install", "uninstall", "update", "enable", "disable"] {
            assert_eq!(
                h[&format!("{op}Command")],
                format!("{exe} handler {op}"),
                "{platform}"
            );
        }
        assert_eq!(h["rebootAfterInstall"], false);
        assert_eq!(h["reportHeartbeat"], false);
        assert_eq!(h["updateMode"], "UpdateWithInstall");
        assert_eq!(h.len(), 8, "{platform}: no other fields");
    }
}

#[test]
fn manifest_commands_exist() {
    for op in ["install", "uninstall", "update", "enable", "disable"] {
        crate::common::env::akvsync(&["handler", op, "--help"])
            .code(0)
            .run();
    }
}

/// `systemd-analyze verify` on `unit` (with its ExecStart binary present) and its drop-in,
/// if installed.
#[cfg(target_os = "linux")]
fn verify(name: &str, unit: &str, dropin: Option<&str>) {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed: only the unit's text is checked");
        return;
    }
    let scratch = crate::common::Scratch::new(&format!("unit-{name}"));
    let dir = &scratch.0;
    let path = dir.join("akvsync.service");
    std::fs::write(&path, unit).unwrap();
    if let Some(dropin) = dropin {
        std::fs::create_dir(dir.join("akvsync.service.d")).unwrap();
        std::fs::write(
            dir.join("akvsync.service.d/50-akvsync-settings.conf"),
            dropin,
        )
        .unwrap();
    }
    // By name, with the unit's directory first in the search path: only then are its
    // drop-ins read.
    let out = Command::new("systemd-analyze")
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .arg("verify")
        .arg("akvsync.service")
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(target_os = "linux")]
#[test]
fn units_verify() {
    let exe = Path::new(env!("CARGO_BIN_EXE_akvsync"));
    let generated = akvsync::handler::manager::unit_file(
        exe,
        Path::new("/var/lib/akvsync"),
        &[
            PathBuf::from("/var/lib/waagent/Microsoft.Azure.KeyVault.Store"),
            PathBuf::from("/etc/my certs"),
        ],
        Some(&["CAP_CHOWN"]),
    );
    verify("generated", &generated, None);
    let plain = std::fs::read_to_string(repo().join("packaging/linux/akvsync.service")).unwrap();
    assert!(plain.contains(
        "ExecStart=/usr/bin/akvsync run --settings /etc/akvsync/settings.json --state-dir /var/lib/akvsync"
    ));
    assert!(plain.contains("\nUser=akvsync\n") && plain.contains("\nCapabilityBoundingSet=\n"));
    // With the drop-in `akvsync service install` writes for settings that need CAP_CHOWN.
    let plan = akvsync::privilege::Plan {
        writable: vec!["/etc/nginx/tls".into(), "/srv/my certs".into()],
        capabilities: vec![(akvsync::privilege::Capability::Chown, "why".into())],
        ..Default::default()
    };
    let dropin = akvsync::privilege::dropin(
        &plan,
        "akvsync",
        "/etc/akvsync/settings.json",
        "/var/lib/akvsync",
    );
    verify(
        "plain",
        &plain.replace("/usr/bin/akvsync", &exe.display().to_string()),
        Some(&dropin),
    );
}
