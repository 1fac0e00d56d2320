//! Crash-safe file operations in one directory: private temporary files created with
//! their final mode, fsync of files and directories, atomic symlink replacement, and
//! removal of the temporaries a crash left behind. Every temporary is named
//! `.akvsync-tmp-*` (SPEC §10).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::settings::TEMP_PREFIX;

/// A fresh temporary name in the reserved namespace; `create_new` makes collisions an error,
/// never an overwrite.
pub fn temp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{TEMP_PREFIX}{}-{}-{nanos:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a new file readable and writable by its owner only, from the first byte:
/// the mode is given to `open(2)` itself (`O_CREAT|O_EXCL|O_NOFOLLOW`), not set afterwards.
pub fn create_private_temp(dir: &Path) -> io::Result<(File, PathBuf)> {
    let path = dir.join(temp_name());
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&path)?;
    Ok((file, path))
}

/// Makes a directory's entries (renames, new links) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What is at a link's name before we replace it.
#[derive(Debug, PartialEq, Eq)]
pub enum Existing {
    Nothing,
    Symlink(PathBuf),
    /// A regular file, directory or anything else: never replaced silently.
    Other,
}

pub fn existing(path: &Path) -> io::Result<Existing> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Ok(Existing::Symlink(fs::read_link(path)?)),
        Ok(_) => Ok(Existing::Other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::Nothing),
        Err(e) => Err(e),
    }
}

/// Points `dir/name` at `target` atomically: a new symlink under a temporary name, then
/// `rename(2)` over the old one. Readers see the old target or the new one, never none.
pub fn replace_symlink(dir: &Path, name: &str, target: &Path) -> io::Result<()> {
    let temp = dir.join(temp_name());
    symlink(target, &temp)?;
    super::test_delay::pause();
    if let Err(e) = fs::rename(&temp, dir.join(name)) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(())
}

/// Removes `.akvsync-tmp-*` entries left by an interrupted run; returns how many.
pub fn remove_stale_temps(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(TEMP_PREFIX) && !entry.file_type()?.is_dir() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}
