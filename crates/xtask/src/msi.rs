//! The Windows Installer package of `cargo xtask dist`: `dist/akvsync-<version>-x64.msi`,
//! built on Linux by msitools' `wixl` from `packaging/windows/akvsync.wxs` and the Windows
//! binary that `dist` has just built (`exe`). This module owns the `wixl`
//! prerequisite check, the MSI ProductVersion rule (numeric `MAJOR.MINOR.PATCH`) and the
//! `wixl` call; what the package installs (binary, service, event log source) is in the
//! `.wxs`. `scripts/wine/msi-check.sh` installs and removes the package under Wine.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The WiX source, relative to the workspace root.
const WXS: &str = "packaging/windows/akvsync.wxs";
/// Debian's package for `/usr/bin/wixl`.
const INSTALL_WIXL: &str = "sudo apt-get install wixl";

/// Checked before anything is built: `wixl` runs, and `version` is a valid MSI
/// ProductVersion.
pub fn check(version: &str) -> Result<(), String> {
    product_version(version)?;
    match Command::new("wixl").arg("--version").output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "`wixl --version` failed ({}); the MSI is built with msitools' wixl: {INSTALL_WIXL}",
            output.status
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "wixl not found; the MSI is built with msitools' wixl: {INSTALL_WIXL}"
        )),
        Err(e) => Err(format!("cannot run wixl: {e}")),
    }
}

/// Builds `dist/akvsync-<version>-x64.msi` from the Windows binary and prints its path,
/// size and what it installs.
pub fn build(root: &Path, exe: &Path, dist: &Path, version: &str) -> Result<PathBuf, String> {
    let version = product_version(version)?;
    let exe_size = std::fs::metadata(exe)
        .map_err(|e| format!("{}: {e}", exe.display()))?
        .len();
    let (Some(exe_dir), Some(exe_name)) = (exe.parent(), exe.file_name()) else {
        return Err(format!("{}: not a file path", exe.display()));
    };
    let msi = dist.join(format!("akvsync-{version}-x64.msi"));
    // wixl finds `File/@Source` relative to its working directory only (an absolute path
    // fails), hence the binary's directory as working directory and its bare name.
    let mut exe_define = std::ffi::OsString::from("Exe=");
    exe_define.push(exe_name);
    let status = Command::new("wixl")
        .current_dir(exe_dir)
        .args(["--arch", "x64", "--define"])
        .arg(format!("Version={version}"))
        .arg("--define")
        .arg(exe_define)
        .arg("--output")
        .arg(&msi)
        .arg(root.join(WXS))
        .status()
        .map_err(|e| format!("cannot run wixl: {e}"))?;
    if !status.success() {
        return Err(format!("wixl failed building {} ({status})", msi.display()));
    }
    let size = std::fs::metadata(&msi)
        .map_err(|e| format!("{}: {e}", msi.display()))?
        .len();
    println!("{}", msi.display());
    println!("  {size:>10}  ProductVersion {version}, x64, per machine");
    println!("  {exe_size:>10}  [ProgramFiles64Folder]akvsync\\akvsync.exe (service akvsync)");
    Ok(msi)
}

/// `version` as an MSI ProductVersion: `MAJOR.MINOR.PATCH`, decimal numbers without leading
/// zeros, MAJOR and MINOR at most 255 and PATCH at most 65535 (Windows Installer compares
/// only these three fields, so anything more would not order upgrades).
fn product_version(version: &str) -> Result<String, String> {
    let invalid = || {
        format!(
            "package version {version:?}: the MSI needs MAJOR.MINOR.PATCH in decimal \
             (MAJOR and MINOR ≤ 255, PATCH ≤ 65535), e.g. --package-version 1.2.3"
        )
    };
    let parts: Vec<&str> = version.split('.').collect();
    let [major, minor, patch] = parts.as_slice() else {
        return Err(invalid());
    };
    let number = |part: &str, max: u32| -> Option<u32> {
        let canonical = !part.is_empty()
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'));
        let n: u32 = part.parse().ok().filter(|_| canonical)?;
        (n <= max).then_some(n)
    };
    match (number(major, 255), number(minor, 255), number(patch, 65535)) {
        (Some(a), Some(b), Some(c)) => Ok(format!("{a}.{b}.{c}")),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::product_version;

    #[test]
    fn the_product_version_is_numeric_major_minor_patch_within_msi_bounds() {
        for ok in ["0.1.0", "1.2.3", "255.255.65535", "10.0.100"] {
            assert_eq!(product_version(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "1.2.3-rc1",
            "1.2.x",
            "256.0.0",
            "0.256.0",
            "0.0.65536",
            "01.2.3",
            "1..3",
            "+1.2.3",
            " 1.2.3",
        ] {
            assert!(product_version(bad).is_err(), "{bad:?} accepted");
        }
    }
}
