//! The Debian package `dist/akvsync_<version>_amd64.deb`: the files of `linux_layout` (the
//! unit in `/lib/systemd/system`, where Debian 12's packages put units), the settings a
//! conffile, and the maintainer scripts of `packaging/linux/deb/`, built by
//! `dpkg-deb --root-owner-group --build` (every file root's; the scripts set the settings'
//! group and create the state directory once the account exists).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::linux_layout::{self, Kind, Tree};

pub const UNIT_DIR: &str = "/lib/systemd/system";
const SCRIPTS: [&str; 3] = ["postinst", "prerm", "postrm"];

/// Builds the package from a tree staged with [`UNIT_DIR`] and returns its path.
pub fn build(root: &Path, tree: &Tree, version: &str, dist: &Path) -> Result<PathBuf, String> {
    let debian = tree.root.join("DEBIAN");
    let err = |path: &Path, e: std::io::Error| format!("{}: {e}", path.display());
    fs::create_dir_all(&debian).map_err(|e| err(&debian, e))?;
    linux_layout::set_mode(&debian, 0o755)?;

    let write = |name: &str, text: &str, mode: u32| -> Result<(), String> {
        let path = debian.join(name);
        fs::write(&path, text).map_err(|e| err(&path, e))?;
        linux_layout::set_mode(&path, mode)
    };
    write("control", &control(tree, version)?, 0o644)?;
    let conffiles: String = tree
        .files
        .iter()
        .filter(|entry| entry.kind == Kind::Config)
        .map(|entry| format!("{}\n", entry.path))
        .collect();
    write("conffiles", &conffiles, 0o644)?;
    write("md5sums", &md5sums(tree)?, 0o644)?;
    for name in SCRIPTS {
        write(
            name,
            &linux_layout::script(root, &format!("deb/{name}"))?,
            0o755,
        )?;
    }

    let deb = dist.join(format!("{}_{version}_amd64.deb", linux_layout::NAME));
    let status = Command::new("dpkg-deb")
        .arg("--root-owner-group")
        .arg("--build")
        .arg(&tree.root)
        .arg(&deb)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
    if !status.success() {
        return Err(format!("dpkg-deb --build failed ({status})"));
    }
    Ok(deb)
}

fn control(tree: &Tree, version: &str) -> Result<String, String> {
    // Continuation lines start with a space; " ." separates paragraphs.
    let description: Vec<String> = linux_layout::DESCRIPTION
        .iter()
        .map(|paragraph| {
            linux_layout::wrap(paragraph, 78)
                .iter()
                .map(|line| format!(" {line}\n"))
                .collect()
        })
        .collect();
    Ok(format!(
        "Package: {name}\n\
         Version: {version}\n\
         Architecture: amd64\n\
         Maintainer: akvsync contributors\n\
         Installed-Size: {size}\n\
         Depends: passwd | adduser\n\
         Section: admin\n\
         Priority: optional\n\
         Homepage: {homepage}\n\
         Description: {summary}\n{description}\n",
        name = linux_layout::NAME,
        size = tree.installed_kib()?,
        homepage = env!("CARGO_PKG_REPOSITORY"),
        summary = linux_layout::SUMMARY,
        description = description.join(" .\n").trim_end(),
    ))
}

/// `DEBIAN/md5sums` (what `dpkg --verify` checks) for every file but the conffiles, which
/// dpkg records itself.
fn md5sums(tree: &Tree) -> Result<String, String> {
    let paths: Vec<&str> = tree
        .files
        .iter()
        .filter(|entry| entry.kind != Kind::Config)
        .map(|entry| entry.path.trim_start_matches('/'))
        .collect();
    let output = Command::new("md5sum")
        .current_dir(&tree.root)
        .arg("--")
        .args(&paths)
        .output()
        .map_err(|e| format!("cannot run md5sum: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "md5sum failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    String::from_utf8(output.stdout).map_err(|_| "md5sum: output not UTF-8".to_owned())
}

/// Prints the package's control fields and contents.
pub fn list(deb: &Path) -> Result<(), String> {
    for option in ["--field", "--contents"] {
        let output = Command::new("dpkg-deb")
            .arg(option)
            .arg(deb)
            .output()
            .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
        if !output.status.success() {
            return Err(format!("dpkg-deb {option} {} failed", deb.display()));
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            println!("  {line}");
        }
    }
    Ok(())
}
