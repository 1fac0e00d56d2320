//! The RPM package `dist/akvsync-<version>-1.x86_64.rpm`: the files of `linux_layout` (the
//! unit in `/usr/lib/systemd/system`), the settings `%config(noreplace)` with the group
//! `akvsync` (the account is created in `%pre`, before the files), and the scriptlets of
//! `packaging/linux/rpm/`. `rpmbuild -bb` (Debian's `rpm` package works) runs on a spec
//! written here into a scratch `_topdir`: binary only, no build step, the staged tree
//! copied as it is; plain sh scriptlets, since Debian's rpm has no systemd macros.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::linux_layout::{self, Kind, Tree};

pub const UNIT_DIR: &str = "/usr/lib/systemd/system";
const RELEASE: &str = "1";
const ARCH: &str = "x86_64";
/// Scriptlet sections and their files under `packaging/linux/rpm/`.
const SCRIPTLETS: [(&str, &str); 4] = [
    ("%pre", "rpm/pre.sh"),
    ("%post", "rpm/post.sh"),
    ("%preun", "rpm/preun.sh"),
    ("%postun", "rpm/postun.sh"),
];

/// Builds the package from a tree staged with [`UNIT_DIR`] in `work` and returns its path.
pub fn build(
    root: &Path,
    tree: &Tree,
    version: &str,
    work: &Path,
    dist: &Path,
) -> Result<PathBuf, String> {
    let topdir = work.join("rpmbuild");
    let err = |path: &Path, e: std::io::Error| format!("{}: {e}", path.display());
    if topdir.exists() {
        fs::remove_dir_all(&topdir).map_err(|e| err(&topdir, e))?;
    }
    fs::create_dir_all(&topdir).map_err(|e| err(&topdir, e))?;
    let spec_path = topdir.join("akvsync.spec");
    let spec = spec(root, tree, version)?;
    fs::write(&spec_path, spec).map_err(|e| err(&spec_path, e))?;

    let output = Command::new("rpmbuild")
        .args(["-bb", "--quiet", "--nodeps", "--target"])
        .arg(format!("{ARCH}-linux"))
        .arg("--define")
        .arg(format!("_topdir {}", macro_safe(&topdir)?))
        // xz: readable by every rpm still in use (zstd needs rpm 4.14).
        .args(["--define", "_binary_payload w9.xzdio"])
        .arg(&spec_path)
        .output()
        .map_err(|e| format!("cannot run rpmbuild: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "rpmbuild failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let name = format!("{}-{version}-{RELEASE}.{ARCH}.rpm", linux_layout::NAME);
    let built = topdir.join("RPMS").join(ARCH).join(&name);
    let rpm = dist.join(&name);
    fs::copy(&built, &rpm).map_err(|e| err(&built, e))?;
    Ok(rpm)
}

fn spec(root: &Path, tree: &Tree, version: &str) -> Result<String, String> {
    let mut summary = linux_layout::SUMMARY.to_owned();
    summary[..1].make_ascii_uppercase();
    let mut spec = format!(
        "Name: {name}\n\
         Version: {version}\n\
         Release: {RELEASE}\n\
         Summary: {summary}\n\
         License: {license}\n\
         URL: {url}\n\
         # A static binary: nothing to find, no debug package, no build-id links, no\n\
         # distribution post-processing of the staged files.\n\
         AutoReqProv: no\n\
         Requires(pre): /usr/bin/getent\n\
         Requires(pre): /usr/sbin/groupadd\n\
         Requires(pre): /usr/sbin/useradd\n\
         %global debug_package %{{nil}}\n\
         %global __os_install_post %{{nil}}\n\
         %global __spec_install_post %{{nil}}\n\
         %global _build_id_links none\n\n\
         %description\n{description}\n\n\
         %install\n\
         cp -a \"{stage}/.\" \"%{{buildroot}}/\"\n\n",
        name = linux_layout::NAME,
        license = env!("CARGO_PKG_LICENSE"),
        url = env!("CARGO_PKG_REPOSITORY"),
        description = linux_layout::DESCRIPTION
            .map(|paragraph| linux_layout::wrap(paragraph, 78).join("\n"))
            .join("\n\n"),
        stage = macro_safe(&tree.root)?,
    );
    for (section, file) in SCRIPTLETS {
        let text = linux_layout::script(root, file)?;
        spec.push_str(&format!("{section}\n{}\n", text.replace('%', "%%")));
    }
    spec.push_str("%files\n");
    for dir in linux_layout::OWN_DIRS {
        spec.push_str(&format!("%dir %attr(0755,root,root) {dir}\n"));
    }
    for entry in &tree.files {
        let marker = match entry.kind {
            Kind::Program | Kind::Data => "",
            Kind::Config => "%config(noreplace) ",
            Kind::Doc => "%doc ",
            Kind::License => "%license ",
        };
        let group = if entry.kind == Kind::Config {
            linux_layout::NAME
        } else {
            "root"
        };
        spec.push_str(&format!(
            "{marker}%attr({:04o},root,{group}) {}\n",
            entry.mode, entry.path
        ));
    }
    Ok(spec)
}

/// A path for a spec or a `--define`: no `%` (a macro) and no `"` (the quoting of
/// `%install`).
fn macro_safe(path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{}: not UTF-8", path.display()))?;
    if text.contains(['%', '"', '\n']) {
        return Err(format!("{text}: rpmbuild cannot take this path"));
    }
    Ok(text.to_owned())
}

/// Prints the package's header and file list with modes.
pub fn list(rpm: &Path) -> Result<(), String> {
    for args in [&["-qip"][..], &["-qlvp"][..]] {
        let output = Command::new("rpm")
            .args(args)
            .arg(rpm)
            .output()
            .map_err(|e| format!("cannot run rpm: {e}"))?;
        if !output.status.success() {
            return Err(format!("rpm {} {} failed", args.join(" "), rpm.display()));
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            println!("  {line}");
        }
    }
    Ok(())
}
