//! `cargo xtask dist`: builds the two Azure VM extension packages,
//! `dist/akvsync-linux-x86_64.zip` and `dist/akvsync-windows-x86_64.zip`, each with
//! `HandlerManifest.json` at its root and the production agent (no demo emulator) under
//! `bin/`. The Linux binary is static (`x86_64-unknown-linux-musl`, static-pie): it runs on
//! any x86_64 Linux whatever its C library, and musl's allocator keeps its resident memory
//! lower than glibc's (docs/benchmarks.md); the Windows one is `x86_64-pc-windows-gnu`.
//! From the same Linux binary: `dist/akvsync_<version>_amd64.deb` (`deb`) and
//! `dist/akvsync-<version>-1.x86_64.rpm` (`rpm`), the plain-service packages
//! (`linux_layout`). `--only deb,rpm,linux-zip,windows-zip` builds some of them,
//! `--package-version V` overrides the workspace version the packages carry. Prerequisites
//! are checked first (`prereq`). And the Windows installer `dist/akvsync-<version>-x64.msi`
//! (`msi`: msitools' wixl, `packaging/windows/akvsync.wxs`) around the Windows binary.

mod deb;
mod linux_layout;
mod msi;
mod options;
mod prereq;
mod rpm;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use zip::write::SimpleFileOptions;

use crate::options::{Options, USAGE};

struct Package {
    /// Its name for `--only`.
    artifact: &'static str,
    zip_name: &'static str,
    manifest: &'static str,
    target: Option<&'static str>,
    binary: &'static str,
}

const PACKAGES: [Package; 2] = [
    Package {
        artifact: "linux-zip",
        zip_name: "akvsync-linux-x86_64.zip",
        manifest: "packaging/linux/HandlerManifest.json",
        target: Some("x86_64-unknown-linux-musl"),
        binary: "akvsync",
    },
    Package {
        artifact: "windows-zip",
        zip_name: "akvsync-windows-x86_64.zip",
        manifest: "packaging/windows/HandlerManifest.json",
        target: Some("x86_64-pc-windows-gnu"),
        binary: "akvsync.exe",
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dist") => Options::parse(&args[1..]).and_then(|options| dist(&options)),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The target of the Linux binary, which the .deb and the .rpm package too.
const LINUX_TARGET: &str = "x86_64-unknown-linux-musl";
/// The target of the Windows binary, which the MSI packages too.
const WINDOWS_TARGET: &str = "x86_64-pc-windows-gnu";

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `CARGO_TARGET_DIR` (relative to the workspace) or `target`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir))
}

fn dist(options: &Options) -> Result<(), String> {
    let root = workspace_root();
    let version = linux_layout::package_version(options.package_version.as_deref())?;
    let linux_packages = options.wants("deb") || options.wants("rpm");
    let msi = options.wants("msi");
    if msi {
        msi::check(&version)?;
    }
    // The Linux binary is built for its zip or for the .deb/.rpm, the Windows one for its
    // zip or for the MSI.
    let needed = |package: &Package| {
        options.wants(package.artifact)
            || (linux_packages && package.target == Some(LINUX_TARGET))
            || (msi && package.target == Some(WINDOWS_TARGET))
    };
    let mut needs = Vec::new();
    for package in PACKAGES.iter().filter(|p| needed(p)) {
        needs.extend(package.target.map(prereq::for_target).unwrap_or_default());
    }
    if options.wants("deb") {
        needs.push(prereq::DPKG_DEB);
    }
    if options.wants("rpm") {
        needs.push(prereq::RPMBUILD);
    }
    prereq::check(&root, &needs)?;

    let dist = root.join("dist");
    fs::create_dir_all(&dist).map_err(|e| format!("{}: {e}", dist.display()))?;
    for package in PACKAGES.iter().filter(|p| needed(p)) {
        let binary = build(&root, package)?;
        if linux_packages && package.target == Some(LINUX_TARGET) {
            build_linux_packages(&root, &binary, &version, &dist, options)?;
        }
        if msi && package.target == Some(WINDOWS_TARGET) {
            let built = msi::build(&root, &binary, &dist, &version)?;
            println!("{}", built.display());
        }
        if !options.wants(package.artifact) {
            continue;
        }
        let zip_path = dist.join(package.zip_name);
        write_zip(
            &zip_path,
            &root.join(package.manifest),
            &binary,
            package.binary,
        )
        .map_err(|e| format!("{}: {e}", zip_path.display()))?;
        println!("{}", zip_path.display());
        list(&zip_path).map_err(|e| format!("{}: {e}", zip_path.display()))?;
    }
    Ok(())
}

/// The .deb and the .rpm (as `options` want) around the Linux `binary`.
fn build_linux_packages(
    root: &Path,
    binary: &Path,
    version: &str,
    dist: &Path,
    options: &Options,
) -> Result<(), String> {
    let work = target_dir(root).join("xtask");
    if options.wants("deb") {
        let tree = linux_layout::stage(root, binary, version, &work.join("deb"), deb::UNIT_DIR)?;
        let deb = deb::build(root, &tree, version, dist)?;
        println!("{}", deb.display());
        deb::list(&deb)?;
    }
    if options.wants("rpm") {
        let tree =
            linux_layout::stage(root, binary, version, &work.join("rpm-root"), rpm::UNIT_DIR)?;
        let rpm = rpm::build(root, &tree, version, &work, dist)?;
        println!("{}", rpm.display());
        rpm::list(&rpm)?;
    }
    Ok(())
}

/// `cargo build --release -p akvsync --no-default-features [--target T]`.
fn build(root: &Path, package: &Package) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.current_dir(root).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "akvsync",
        "--no-default-features",
    ]);
    if let Some(target) = package.target {
        command.args(["--target", target]);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building {} failed ({status})", package.zip_name));
    }
    let mut path = target_dir(root);
    if let Some(target) = package.target {
        path.push(target);
    }
    path.push("release");
    path.push(package.binary);
    Ok(path)
}

fn write_zip(zip_path: &Path, manifest: &Path, binary: &Path, binary_name: &str) -> io::Result<()> {
    let mut zip = zip::ZipWriter::new(File::create(zip_path)?);
    let file = SimpleFileOptions::default().unix_permissions(0o644);
    let executable = SimpleFileOptions::default().unix_permissions(0o755);
    zip.start_file("HandlerManifest.json", file)?;
    zip.write_all(&fs::read(manifest)?)?;
    zip.add_directory("bin/", executable)?;
    zip.start_file(format!("bin/{binary_name}"), executable)?;
    zip.write_all(&fs::read(binary)?)?;
    zip.finish()?;
    Ok(())
}

/// Prints the listing: name, size, mode.
fn list(zip_path: &Path) -> io::Result<()> {
    let mut archive = zip::ZipArchive::new(File::open(zip_path)?)?;
    for index in 0..archive.len() {
        let entry = archive.by_index(index)?;
        let mode = entry
            .unix_mode()
            .map_or_else(String::new, |m| format!("{:o}", m & 0o777));
        println!("  {:>10}  {:>4}  {}", entry.size(), mode, entry.name());
    }
    Ok(())
}
