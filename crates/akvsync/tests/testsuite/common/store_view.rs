//! Reading back what the agent wrote: a store directory's links and version files, a
//! snapshot or the sorted names of a directory, modes, owners and PEM blocks, so that every test reads the
//! store the same way.
//!
//! ```ignore
//! let store = StoreView::new(env.scratch.store());
//! assert_eq!(store.linked_version(VAULT, "web").as_deref(), Some(rotated.version.as_str()));
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// One store directory (the Linux layout: `<vault>.<secret>` links to
/// `<vault>.<secret>.<version>` files).
#[derive(Debug, Clone)]
pub struct StoreView {
    pub dir: PathBuf,
}

impl StoreView {
    pub fn new(dir: impl Into<PathBuf>) -> StoreView {
        StoreView { dir: dir.into() }
    }

    /// The stable link of a certificate.
    pub fn link(&self, vault: &str, secret: &str) -> PathBuf {
        self.dir.join(format!("{vault}.{secret}"))
    }

    /// The version the link points at (the part of its target after the last dot), or
    /// `None` when there is no link.
    pub fn linked_version(&self, vault: &str, secret: &str) -> Option<String> {
        self.link_version(&format!("{vault}.{secret}"))
    }

    /// The version the link `name` (a custom link, an output's current-set link) points
    /// at: the part of its target after the last dot; `None` when there is no link.
    pub fn link_version(&self, name: &str) -> Option<String> {
        let target = fs::read_link(self.dir.join(name)).ok()?;
        Some(target.to_string_lossy().rsplit('.').next()?.to_owned())
    }

    /// Whether the directory has an entry `name` (a dangling link counts).
    pub fn has(&self, name: &str) -> bool {
        fs::symlink_metadata(self.dir.join(name)).is_ok()
    }

    /// The names of the directory's entries, sorted; empty when it does not exist.
    pub fn names(&self) -> Vec<String> {
        names(&self.dir)
    }

    /// The names of the entries that start with `prefix` (temporaries, version files of
    /// one certificate, data directories), sorted.
    pub fn names_starting(&self, prefix: &str) -> Vec<String> {
        let mut names = self.names();
        names.retain(|name| name.starts_with(prefix));
        names
    }

    /// The entries whose target does not exist (dangling links), sorted.
    pub fn dangling(&self) -> Vec<String> {
        self.snapshot()
            .into_keys()
            .filter(|name| fs::metadata(self.dir.join(name)).is_err())
            .collect()
    }

    /// The directory's entries (name → what it is), empty when it does not exist.
    pub fn snapshot(&self) -> BTreeMap<String, Entry> {
        snapshot(&self.dir)
    }
}

/// What a directory entry is, as a snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A symbolic link and its target.
    Link(PathBuf),
    /// A directory.
    Dir,
    /// A file and its contents (a snapshot compares bytes: "the store is byte-identical").
    File(Vec<u8>),
    Other,
}

/// The names of `dir`'s entries, sorted; empty when it does not exist.
pub fn names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The entries of `dir` (name → what it is), not following links; empty when it does not
/// exist.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Entry> {
    let Ok(entries) = fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            let kind = if meta.file_type().is_symlink() {
                Entry::Link(fs::read_link(entry.path()).unwrap())
            } else if meta.is_dir() {
                Entry::Dir
            } else if meta.is_file() {
                Entry::File(fs::read(entry.path()).unwrap())
            } else {
                Entry::Other
            };
            (entry.file_name().to_string_lossy().into_owned(), kind)
        })
        .collect()
}

/// The permission bits (`0o7777`) of `path`, following links.
#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The owning uid and gid of `path`, following links.
#[cfg(unix)]
pub fn owner(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid())
}

/// How many `-----BEGIN <label>-----` blocks the file holds.
pub fn pem_blocks(path: &Path, label: &str) -> usize {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    pem_blocks_in(&text, label)
}

/// How many `-----BEGIN <label>-----` blocks `text` holds.
pub fn pem_blocks_in(text: &str, label: &str) -> usize {
    text.matches(&format!("-----BEGIN {label}-----")).count()
}
