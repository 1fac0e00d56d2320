//! The one way akvsync writes files (issue 16): every file, link and directory the agent
//! creates, replaces or removes (store versions and links, output sets, state, lock, handler
//! files, status, logs, pid, metrics textfile, demo files) goes through a [`Dir`].
//!
//! On Unix a [`Dir`] is an open directory descriptor reached by walking the path from `/`
//! one component at a time without following symlinks ([`trust`] decides each step): every
//! directory on the way must be owned by root or by this process's user and be writable by
//! no other account (a sticky directory such as `/tmp` is allowed, provided the next
//! component is owned by root or us); a symlink on the way is followed only if root or we
//! own it (it then sits in a directory nobody else can write, so nobody else chose it).
//! After that walk nobody but root and us can change what the path names. Files are then
//! created relative to the descriptor with `O_CREAT|O_EXCL|O_NOFOLLOW` at a fresh random
//! name in the reserved `.akvsync-tmp-` namespace, get their mode and owner before the first
//! byte is written, are fsynced and renamed into place; links are replaced by rename;
//! removals never follow a link.
//!
//! On Windows the same interface works on paths (create-new temporaries, rename); private
//! directories (`%ProgramData%\akvsync`, the state) get a protected SYSTEM/Administrators
//! DACL and an existing one owned by another account is refused (`windows_dacl`).
//!
//! Grep-able invariant (tests/testsuite/write_paths.rs): outside this module, no code under `src/`
//! opens a file for writing, creates, renames or removes a file system entry, or sets
//! permissions.

#[cfg(windows)]
mod other;
pub mod test_delay;
pub mod trust;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
pub mod windows_dacl;

#[cfg(windows)]
pub use other::{Dir, TempFile};
#[cfg(unix)]
pub use unix::{Dir, Prepared, TempFile, prepare_for_account};

use std::path::{Path, PathBuf};

/// The namespace of temporary names: nothing else akvsync writes starts with it, and
/// leftovers of a crash are removed by [`Dir::remove_stale_temps`].
pub const TEMP_PREFIX: &str = ".akvsync-tmp-";

/// How a new file is created: its mode and (Unix, when running as root) its owner and
/// group, applied before the first byte is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpec {
    /// Permission bits (Unix); exactly these, whatever the umask.
    pub mode: u32,
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

impl FileSpec {
    /// Readable and writable by the owner only (0600): keys, state, protected settings.
    pub const PRIVATE: FileSpec = FileSpec {
        mode: 0o600,
        owner: None,
        group: None,
    };
    /// Readable by everyone (0644): status files, metrics, demo files.
    pub const PUBLIC: FileSpec = FileSpec {
        mode: 0o644,
        owner: None,
        group: None,
    };
}

/// What is at a name in a directory, without following a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Nothing,
    Symlink(PathBuf),
    File,
    Directory,
    /// A device, socket or fifo.
    Other,
}

/// A fresh temporary name in the reserved namespace; random, so that nobody can plant
/// anything at it in advance (creation is exclusive anyway: a collision is an error, never
/// an overwrite).
pub fn temp_name() -> String {
    format!(
        "{TEMP_PREFIX}{:016x}{:08x}",
        fastrand::u64(..),
        std::process::id()
    )
}

/// A single path component that is not empty, `.`, `..`, hidden-reserved, and holds no
/// separator or NUL.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && !name.contains('\0')
        && !name.starts_with(TEMP_PREFIX)
}

fn invalid_name(name: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{name:?} is not a plain file name"),
    )
}

/// [`is_plain_name`] as an error naming the name.
fn check_name(name: &str) -> std::io::Result<()> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(invalid_name(name))
    }
}

/// Opens `path` for reading without following a symlink at its last component (and
/// without blocking on a fifo planted there).
pub fn open_read_nofollow(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC,
    );
    options.open(path)
}

fn split(path: &Path) -> std::io::Result<(&Path, &str)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| invalid_name(&path.display().to_string()))?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((parent, name))
}

/// Replaces the file at `path` durably ([`Dir::write_file`] in its parent, which must exist).
pub fn write_file_at(path: &Path, bytes: &[u8], spec: FileSpec) -> std::io::Result<()> {
    let (parent, name) = split(path)?;
    Dir::open(parent)?.write_file(name, bytes, spec)
}

/// Removes the file or symlink at `path`, never what a link points at; `Ok(false)` if
/// nothing (or no parent directory) was there.
pub fn remove_file_at(path: &Path) -> std::io::Result<bool> {
    let (parent, name) = split(path)?;
    match Dir::open(parent) {
        Ok(dir) => dir.remove_file(name),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the directory at `path` and everything in it, never following a link.
pub fn remove_tree_at(path: &Path) -> std::io::Result<()> {
    let (parent, name) = split(path)?;
    match Dir::open(parent) {
        Ok(dir) => dir.remove_tree(name),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_fresh_and_reserved() {
        let a = temp_name();
        let b = temp_name();
        assert_ne!(a, b);
        assert!(a.starts_with(TEMP_PREFIX));
        assert!(!is_plain_name(&a));
    }

    #[test]
    fn plain_names() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\0b", ".akvsync-tmp-x"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        for good in ["state.json", ".hidden", "a..b", "v.s.0123"] {
            assert!(is_plain_name(good), "{good:?}");
        }
    }
}
