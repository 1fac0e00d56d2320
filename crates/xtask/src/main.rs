//! `cargo xtask dist`: builds the two Azure VM extension packages,
//! `dist/akvsync-linux-x86_64.zip` and `dist/akvsync-windows-x86_64.zip`, each with
//! `HandlerManifest.json` at its root and the production agent (no demo emulator) under
//! `bin/`. The Linux binary is static (`x86_64-unknown-linux-musl`, static-pie): it runs on
//! any x86_64 Linux whatever its C library, and musl's allocator keeps its resident memory
//! lower than glibc's (docs/benchmarks.md); the Windows one is `x86_64-pc-windows-gnu`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use zip::write::SimpleFileOptions;

mod msi;

struct Package {
    zip_name: &'static str,
    manifest: &'static str,
    target: Option<&'static str>,
    binary: &'static str,
}

const PACKAGES: [Package; 2] = [
    Package {
        zip_name: "akvsync-linux-x86_64.zip",
        manifest: "packaging/linux/HandlerManifest.json",
        target: Some("x86_64-unknown-linux-musl"),
        binary: "akvsync",
    },
    Package {
        zip_name: "akvsync-windows-x86_64.zip",
        manifest: "packaging/windows/HandlerManifest.json",
        target: Some("x86_64-pc-windows-gnu"),
        binary: "akvsync.exe",
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dist") => package_version(&args[1..]).and_then(|version| dist(&version)),
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

const USAGE: &str = "usage: cargo xtask dist [--package-version X.Y.Z]";

/// `--package-version X.Y.Z`, or the workspace's version.
fn package_version(args: &[String]) -> Result<String, String> {
    match args {
        [] => Ok(env!("CARGO_PKG_VERSION").to_owned()),
        [flag, version] if flag == "--package-version" => Ok(version.clone()),
        [flag] => flag
            .strip_prefix("--package-version=")
            .map(str::to_owned)
            .ok_or_else(|| USAGE.to_owned()),
        _ => Err(USAGE.to_owned()),
    }
}

fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn dist(version: &str) -> Result<(), String> {
    msi::check(version)?;
    let root = workspace_root();
    let dist = root.join("dist");
    fs::create_dir_all(&dist).map_err(|e| format!("{}: {e}", dist.display()))?;
    for package in &PACKAGES {
        let binary = build(&root, package)?;
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
    msi::build(&root, &dist, version)?;
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
    let mut path = root.join("target");
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
