//! What the .deb and the .rpm install, shared by `deb` and `rpm`: the files with their modes
//! (staged in a directory tree that each builder packages as it is), the package version and
//! description, and the maintainer scripts of `packaging/linux/{deb,rpm}/` with the shared
//! functions of `packaging/linux/scripts/functions.sh` put in.
//!
//! | path | mode | from |
//! |---|---|---|
//! | `/usr/bin/akvsync` | 0755 | the static musl production binary |
//! | `<unit dir>/akvsync.service` | 0644 | `packaging/linux/akvsync.service` |
//! | `/etc/akvsync/settings.json` | 0640, a configuration file | `packaging/linux/settings.json` (observes nothing) |
//! | `/usr/share/doc/akvsync/README.md` | 0644 | the workspace README |
//! | `/usr/share/doc/akvsync/README.package.md` | 0644 | `packaging/linux/README.package.md` |
//! | `/usr/share/doc/akvsync/copyright` | 0644 | `packaging/linux/copyright` (Debian format) |
//! | `/usr/share/doc/akvsync/usage.txt` | 0644 | `akvsync --help` and each verb's `--help` |
//! | `/usr/share/man/man1/akvsync.1.gz` | 0644 | the same text as a man page |
//!
//! The settings' group (`akvsync`) and the state directory `/var/lib/akvsync` (0700, the
//! account's) are the maintainer scripts' work: the account does not exist before them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const NAME: &str = "akvsync";
pub const SUMMARY: &str = "keeps Azure Key Vault certificates installed and current";
/// The long description, one paragraph per entry.
pub const DESCRIPTION: [&str; 2] = [
    "akvsync installs the certificates of Azure Key Vault on this machine and keeps them \
     current, as the Azure Key Vault VM extension (KeyVaultForLinux) does, from the same \
     settings file. This package runs it as a plain systemd service under its own account.",
    "The settings installed in /etc/akvsync/settings.json observe no certificate: the \
     service idles until they are edited (see /usr/share/doc/akvsync/README.package.md).",
];
pub const SETTINGS: &str = "/etc/akvsync/settings.json";
/// Directories that belong to the package alone.
pub const OWN_DIRS: [&str; 2] = ["/etc/akvsync", "/usr/share/doc/akvsync"];
const FUNCTIONS_MARK: &str = "#AKVSYNC_FUNCTIONS#";
/// Tells shellcheck the dialect of the scripts that have no `#!` line (the rpm scriptlets).
const SHELLCHECK_DIRECTIVE: &str = "# shellcheck shell=sh";

/// What a file is, for the packages' markers (configuration, documentation, license).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Program,
    Data,
    Config,
    Doc,
    License,
}

/// One file of the package.
#[derive(Debug)]
pub struct Entry {
    /// Absolute path on the installed system.
    pub path: String,
    pub mode: u32,
    pub kind: Kind,
}

/// The staged tree: `root` holds every entry at its path (without the leading `/`).
#[derive(Debug)]
pub struct Tree {
    pub root: PathBuf,
    pub files: Vec<Entry>,
}

impl Tree {
    /// Sum of the files' sizes in KiB, each rounded up, plus one per directory (how
    /// dpkg-gencontrol counts `Installed-Size`).
    pub fn installed_kib(&self) -> Result<u64, String> {
        let mut kib = 0;
        for entry in &self.files {
            let path = self.host_path(&entry.path);
            let len = fs::metadata(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .len();
            kib += len.div_ceil(1024);
        }
        let mut dirs: Vec<&str> = Vec::new();
        for entry in &self.files {
            let mut path = entry.path.as_str();
            while let Some(slash) = path.rfind('/').filter(|&i| i > 0) {
                path = &path[..slash];
                if !dirs.contains(&path) {
                    dirs.push(path);
                }
            }
        }
        Ok(kib + dirs.len() as u64)
    }

    pub fn host_path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

/// The version the packages carry: `requested` or the workspace's, with a semver
/// pre-release `-rc.1` written `~rc.1` (sorts before the release in dpkg and rpm, and `-`
/// would be a revision separator in both).
pub fn package_version(requested: Option<&str>) -> Result<String, String> {
    let version = requested
        .unwrap_or(env!("CARGO_PKG_VERSION"))
        .replace('-', "~");
    let valid = version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~'));
    if valid {
        Ok(version)
    } else {
        Err(format!(
            "package version {version:?}: it must start with a digit and hold only letters, digits, '.', '+' and '~'"
        ))
    }
}

/// Stages every file under `stage` (emptied first), the unit in `unit_dir`.
pub fn stage(
    root: &Path,
    binary: &Path,
    version: &str,
    stage: &Path,
    unit_dir: &str,
) -> Result<Tree, String> {
    let err = |path: &Path, e: std::io::Error| format!("{}: {e}", path.display());
    if stage.exists() {
        fs::remove_dir_all(stage).map_err(|e| err(stage, e))?;
    }
    fs::create_dir_all(stage).map_err(|e| err(stage, e))?;
    let mut tree = Tree {
        root: stage.to_owned(),
        files: Vec::new(),
    };
    check_copyright(root)?;
    let usage = usage_text(binary)?;
    let packaging = root.join("packaging/linux");
    let copies: [(PathBuf, String, u32, Kind); 6] = [
        (
            binary.to_owned(),
            "/usr/bin/akvsync".into(),
            0o755,
            Kind::Program,
        ),
        (
            packaging.join("akvsync.service"),
            format!("{unit_dir}/akvsync.service"),
            0o644,
            Kind::Data,
        ),
        (
            packaging.join("settings.json"),
            SETTINGS.into(),
            0o640,
            Kind::Config,
        ),
        (
            root.join("README.md"),
            "/usr/share/doc/akvsync/README.md".into(),
            0o644,
            Kind::Doc,
        ),
        (
            packaging.join("README.package.md"),
            "/usr/share/doc/akvsync/README.package.md".into(),
            0o644,
            Kind::Doc,
        ),
        (
            packaging.join("copyright"),
            "/usr/share/doc/akvsync/copyright".into(),
            0o644,
            Kind::License,
        ),
    ];
    for (from, path, mode, kind) in copies {
        let bytes = fs::read(&from).map_err(|e| err(&from, e))?;
        add(&mut tree, &path, &bytes, mode, kind)?;
    }
    add(
        &mut tree,
        "/usr/share/doc/akvsync/usage.txt",
        usage.as_bytes(),
        0o644,
        Kind::Doc,
    )?;
    add(
        &mut tree,
        "/usr/share/man/man1/akvsync.1.gz",
        &gzip(man_page(&usage, version).as_bytes())?,
        0o644,
        Kind::Doc,
    )?;
    // The example must be settings the agent accepts.
    validate(binary, &tree.host_path(SETTINGS))?;
    Ok(tree)
}

fn add(tree: &mut Tree, path: &str, bytes: &[u8], mode: u32, kind: Kind) -> Result<(), String> {
    let host = tree.host_path(path);
    let err = |e: std::io::Error| format!("{}: {e}", host.display());
    let mut dir = host.parent();
    while let Some(d) = dir.filter(|d| *d != tree.root) {
        fs::create_dir_all(d).map_err(err)?;
        set_mode(d, 0o755)?;
        dir = d.parent();
    }
    fs::write(&host, bytes).map_err(err)?;
    set_mode(&host, mode)?;
    tree.files.push(Entry {
        path: path.to_owned(),
        mode,
        kind,
    });
    Ok(())
}

#[cfg(unix)]
pub fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(not(unix))]
pub fn set_mode(path: &Path, _: u32) -> Result<(), String> {
    Err(format!(
        "{}: the Linux packages are built on Linux (file modes)",
        path.display()
    ))
}

/// The copyright file must name the workspace's license (`MIT OR Apache-2.0` is written
/// `MIT or Apache-2.0` in Debian's format).
fn check_copyright(root: &Path) -> Result<(), String> {
    let path = root.join("packaging/linux/copyright");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let expected = format!(
        "License: {}",
        env!("CARGO_PKG_LICENSE").replace(" OR ", " or ")
    );
    if text.lines().any(|line| line == expected) {
        Ok(())
    } else {
        Err(format!(
            "{}: no line {expected:?} (the workspace's license)",
            path.display()
        ))
    }
}

/// `akvsync --help`, then `akvsync <verb> --help` for each verb it lists.
fn usage_text(binary: &Path) -> Result<String, String> {
    let top = run(binary, &["--help"])?;
    let mut text = format!("$ akvsync --help\n{top}");
    let verbs = top
        .lines()
        .skip_while(|line| line.trim() != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|verb| *verb != "help");
    for verb in verbs {
        let help = run(binary, &[verb, "--help"])?;
        text.push_str(&format!("\n$ akvsync {verb} --help\n{help}"));
    }
    Ok(text)
}

fn run(binary: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(binary)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} {} failed ({}): {}",
            binary.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let mut text = String::from_utf8(output.stdout)
        .map_err(|_| format!("{} {}: not UTF-8", binary.display(), args.join(" ")))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

fn validate(binary: &Path, settings: &Path) -> Result<(), String> {
    let path = settings.to_string_lossy();
    run(binary, &["validate", &path])
        .map(drop)
        .map_err(|e| format!("the example settings are refused: {e}"))
}

/// A man page holding the usage text as it is (no-fill), roff-escaped.
fn man_page(usage: &str, version: &str) -> String {
    let mut page = format!(
        ".TH AKVSYNC 1 \"\" \"akvsync {version}\" \"User Commands\"\n\
         .SH NAME\nakvsync \\- {SUMMARY}\n\
         .SH DESCRIPTION\n.nf\n"
    );
    for line in usage.lines() {
        let line = line.replace('\\', "\\e");
        if line.starts_with('.') || line.starts_with('\'') {
            page.push_str("\\&");
        }
        page.push_str(&line);
        page.push('\n');
    }
    page.push_str(
        ".fi\n.SH FILES\n\
         .TP\n/etc/akvsync/settings.json\nthe settings of the akvsync service\n\
         .TP\n/var/lib/akvsync\nits state\n\
         .SH SEE ALSO\n/usr/share/doc/akvsync/README.md, /usr/share/doc/akvsync/README.package.md\n",
    );
    page
}

/// gzip without a name or time stamp (`gzip -9n`), so that equal text gives equal bytes.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|e| format!("gzip: {e}"))
}

/// A paragraph as lines of at most `width` characters (longer words stay whole).
pub fn wrap(paragraph: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in paragraph.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// A maintainer script of `packaging/linux/<relative>`, the shared functions in place of
/// its `#AKVSYNC_FUNCTIONS#` line, without the source files' shellcheck directives.
pub fn script(root: &Path, relative: &str) -> Result<String, String> {
    let read =
        |path: PathBuf| fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()));
    let text = read(root.join("packaging/linux").join(relative))?;
    let functions = if text.lines().any(|line| line == FUNCTIONS_MARK) {
        read(root.join("packaging/linux/scripts/functions.sh"))?
    } else {
        String::new()
    };
    let mut script = String::new();
    for line in text.lines() {
        if line == FUNCTIONS_MARK {
            for function_line in functions.lines().filter(|l| *l != SHELLCHECK_DIRECTIVE) {
                script.push_str(function_line);
                script.push('\n');
            }
        } else if line != SHELLCHECK_DIRECTIVE {
            script.push_str(line);
            script.push('\n');
        }
    }
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_versions() {
        assert_eq!(
            package_version(None).unwrap(),
            env!("CARGO_PKG_VERSION").replace('-', "~")
        );
        assert_eq!(package_version(Some("0.2.0")).unwrap(), "0.2.0");
        assert_eq!(package_version(Some("0.2.0-rc.1")).unwrap(), "0.2.0~rc.1");
        assert_eq!(package_version(Some("0.1.0+ci1")).unwrap(), "0.1.0+ci1");
        for bad in ["", "v1", "1.0 beta", "1:0", "1_0", "1/0"] {
            assert!(package_version(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wrap_keeps_words_and_width() {
        let lines = wrap("aa bb cc dd", 5);
        assert_eq!(lines, ["aa bb", "cc dd"]);
        assert_eq!(wrap("averylongword x", 4), ["averylongword", "x"]);
        for paragraph in DESCRIPTION {
            assert!(wrap(paragraph, 78).iter().all(|line| line.len() <= 78));
        }
    }

    #[test]
    fn man_page_escapes_roff() {
        let page = man_page(".start\n'quote\nback\\slash\n", "1.2.3");
        assert!(page.starts_with(".TH AKVSYNC 1 \"\" \"akvsync 1.2.3\""));
        assert!(page.contains("\n\\&.start\n\\&'quote\nback\\eslash\n"));
    }

    #[test]
    fn scripts_get_the_functions_once_and_no_directives() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for name in ["deb/postinst", "deb/prerm", "deb/postrm"] {
            let text = script(&root, name).unwrap();
            assert!(text.starts_with("#!/bin/sh\n"), "{name}");
            assert!(!text.contains(FUNCTIONS_MARK), "{name}");
        }
        for name in ["rpm/pre.sh", "rpm/post.sh", "rpm/preun.sh", "rpm/postun.sh"] {
            let text = script(&root, name).unwrap();
            assert!(!text.contains(SHELLCHECK_DIRECTIVE), "{name}");
            assert!(!text.contains(FUNCTIONS_MARK), "{name}");
            assert!(text.matches("akvsync_purge() {").count() <= 1, "{name}");
        }
        let postrm = script(&root, "deb/postrm").unwrap();
        assert_eq!(postrm.matches("akvsync_purge() {").count(), 1);
        assert!(postrm.contains("\n  akvsync_purge\n"));
    }

    #[test]
    fn copyright_names_the_workspace_license() {
        check_copyright(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")).unwrap();
    }
}
