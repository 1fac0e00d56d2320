//! The Linux directory store, compatible with KeyVaultForLinux 2.x/3.x (SPEC §5.2, §10):
//! one PEM file per version (`<vault>.<secret>.<version>`: leaf, chain, private key last),
//! mode 0600 from creation, written to a temporary file, fsynced and renamed into place;
//! the stable names are symlinks (`<vault>.<secret>` and `customSymbolicLinkName`) with an
//! absolute target, switched atomically; POSIX ACLs from `acls`; pruning of old versions
//! that akvsync itself installed: those recorded in the state, and those carrying akvsync's
//! mark (the `user.akvsync` attribute, where the file system holds user attributes) that a
//! crash left unrecorded.
//!
//! Order of an install, so that a crash at any instant leaves the old complete
//! certificate or the new complete one behind each stable name:
//! check everything that can be refused (directory, foreign files at link names, ACL
//! principals) → write the version file completely under a temporary name (0600, ACL,
//! fsync) → rename → switch each link (rename) → fsync the directory once, which makes
//! both renames durable (they are metadata operations of one directory, committed in order).

pub mod acl;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::safefs::{self, Dir, Entry, FileSpec, test_delay};
use crate::settings::LinuxTarget;

/// Removes `.akvsync-tmp-*` entries an interrupted run left in a store directory (none if
/// the directory does not exist); returns how many.
pub fn remove_stale_temps(dir: &Path) -> io::Result<usize> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        _ => Dir::open(dir)?.remove_stale_temps(),
    }
}

/// One certificate version to install.
#[derive(Clone, Copy)]
pub struct NewVersion<'a> {
    pub vault_name: &'a str,
    pub secret_name: &'a str,
    /// 32 lowercase hex digits.
    pub version: &'a str,
    /// The PEM file content: leaf, intermediates, root if present, then the private key.
    pub pem: &'a [u8],
}

impl std::fmt::Debug for NewVersion<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewVersion")
            .field("vault_name", &self.vault_name)
            .field("secret_name", &self.secret_name)
            .field("version", &self.version)
            .field("pem", &format_args!("<{} bytes, redacted>", self.pem.len()))
            .finish()
    }
}

/// What an install left on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The version file.
    pub path: PathBuf,
    /// Every stable link now pointing at it.
    pub links: Vec<PathBuf>,
}

/// Why an install or prune failed; nothing behind the stable names changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{} exists and is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} exists and is not a symlink; akvsync never replaces it (move it away to let akvsync manage this name)", .0.display())]
    ForeignFile(PathBuf),
    #[error("{name:?} is not a safe file name")]
    UnsafeName { name: String },
    #[error("acls: {0}")]
    Acl(#[from] acl::AclError),
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// File name of a version: `<vault>.<secret>.<version>`.
pub fn version_file_name(vault_name: &str, secret_name: &str, version: &str) -> String {
    format!("{vault_name}.{secret_name}.{version}")
}

/// Names are built from validated URL parts, but the store checks again: a name is one
/// path component that is not reserved.
fn check_name(name: &str) -> Result<(), StoreError> {
    if safefs::is_plain_name(name) {
        Ok(())
    } else {
        Err(StoreError::UnsafeName {
            name: name.to_owned(),
        })
    }
}

/// The stable link names of a target.
pub fn link_names(target: &LinuxTarget) -> impl Iterator<Item = &str> {
    std::iter::once(target.link_name.as_str()).chain(target.custom_link_name.as_deref())
}

/// Opens the store directory through [`safefs`] (every component of its path checked: no
/// other account can redirect the writes), creating it with mode 0700 if it is missing.
pub fn open_directory(dir: &Path) -> Result<Dir, StoreError> {
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => return Err(StoreError::NotADirectory(dir.to_owned())),
        _ => {}
    }
    Dir::create(dir, 0o700).map_err(io_error("open the store directory", dir))
}

/// Installs a version and points the target's links at it.
pub fn install(target: &LinuxTarget, new: &NewVersion<'_>) -> Result<Installed, StoreError> {
    let dir_path = Path::new(&target.directory);
    let file_name = version_file_name(new.vault_name, new.secret_name, new.version);
    check_name(&file_name)?;
    for link in link_names(target) {
        check_name(link)?;
    }
    let dir = open_directory(dir_path)?;
    // Everything that can be refused is refused before the first byte is written.
    let grants = acl::resolve(&target.acls)?;
    for link in link_names(target) {
        match dir.entry(link) {
            Ok(Entry::Nothing | Entry::Symlink(_)) => {}
            Ok(_) => return Err(StoreError::ForeignFile(dir_path.join(link))),
            Err(e) => return Err(io_error("inspect", &dir_path.join(link))(e)),
        }
    }

    let final_path = dir_path.join(&file_name);
    let mut temp = dir
        .temp_file(FileSpec::PRIVATE)
        .map_err(io_error("create a file in", dir_path))?;
    let temp_path = temp.path();
    test_delay::pause();
    test_delay::write_all(temp.file(), new.pem).map_err(io_error("write", &temp_path))?;
    acl::add_to(temp.file(), &grants, acl::READ)?;
    // Best effort: without user attributes only the state records what akvsync wrote.
    let _ = xattr::FileExt::set_xattr(temp.file(), MARK, b"1");
    test_delay::pause();
    // `commit` fsyncs the file before the rename.
    temp.commit(&file_name)
        .map_err(io_error("sync and rename into", &final_path))?;
    if !grants.is_empty() {
        let handle = fs::File::open(dir_path).map_err(io_error("open", dir_path))?;
        acl::add_to(&handle, &grants, acl::EXECUTE)?;
    }

    let mut links = Vec::new();
    for link in link_names(target) {
        dir.replace_symlink(link, &final_path)
            .map_err(io_error("switch link", &dir_path.join(link)))?;
        links.push(dir_path.join(link));
    }
    dir.sync().map_err(io_error("sync", dir_path))?;
    Ok(Installed {
        path: final_path,
        links,
    })
}

/// The version the target's main link points at, if it points at one of our version files
/// of this certificate.
pub fn current_version(target: &LinuxTarget) -> Option<String> {
    let link = Path::new(&target.directory).join(&target.link_name);
    version_of(target, &fs::read_link(link).ok()?)
}

/// The version in `pointed` (a main link's target), if it names one of this target's
/// version files: `<link name>.<32 hex digits>`.
fn version_of(target: &LinuxTarget, pointed: &Path) -> Option<String> {
    let name = pointed.file_name()?.to_str()?;
    let version = name
        .strip_prefix(target.link_name.as_str())?
        .strip_prefix('.')?;
    is_version(version).then(|| version.to_owned())
}

/// [`current_version`], when every link of the target points where the main link does (one
/// read of each link). A crash between two link switches (or a `customSymbolicLinkName`
/// added to the settings later) leaves them apart; the target is then not current, so that
/// the next sync switches every link.
pub fn current_version_agreed(target: &LinuxTarget) -> Option<String> {
    let dir = Path::new(&target.directory);
    let main = fs::read_link(dir.join(&target.link_name)).ok()?;
    let agree = target
        .custom_link_name
        .as_deref()
        .is_none_or(|custom| fs::read_link(dir.join(custom)).is_ok_and(|t| t == main));
    agree.then(|| version_of(target, &main)).flatten()
}

/// The attribute that marks a version file akvsync wrote.
const MARK: &str = "user.akvsync";

fn is_version(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Version files found in each store directory when this process first pruned there, by
/// link name: the candidates for unrecorded versions. Only an earlier process can have left
/// one (this process records each version it installs before it prunes), so each directory
/// is listed once per process, which keeps a cold sync of N certificates linear rather than
/// quadratic. A target's candidates are taken when it is first pruned; only those that may
/// still become prunable later (newer than a kept version, or behind a link) are put back.
static CANDIDATES: Mutex<BTreeMap<PathBuf, HashMap<String, Vec<String>>>> =
    Mutex::new(BTreeMap::new());

fn take_candidates(dir: &Path, link_name: &str) -> io::Result<Vec<String>> {
    let mut all = CANDIDATES.lock().unwrap_or_else(|e| e.into_inner());
    if !all.contains_key(dir) {
        let mut by_link: HashMap<String, Vec<String>> = HashMap::new();
        for entry in fs::read_dir(dir)? {
            let Ok(name) = entry?.file_name().into_string() else {
                continue;
            };
            if let Some((link, version)) = name.rsplit_once('.')
                && is_version(version)
            {
                by_link
                    .entry(link.to_owned())
                    .or_default()
                    .push(version.to_owned());
            }
        }
        all.insert(dir.to_path_buf(), by_link);
    }
    Ok(all
        .get_mut(dir)
        .and_then(|by_link| by_link.remove(link_name))
        .unwrap_or_default())
}

fn put_back_candidates(dir: &Path, link_name: &str, versions: Vec<String>) {
    if versions.is_empty() {
        return;
    }
    let mut all = CANDIDATES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(by_link) = all.get_mut(dir) {
        by_link
            .entry(link_name.to_owned())
            .or_default()
            .extend(versions);
    }
}

/// Version files of this certificate that carry akvsync's mark but are not in `owned` (a
/// crash came between writing them and saving the state), are behind none of the target's
/// links, and are older than every kept version that exists: a crash never makes pruning
/// drop something newer than what the retention keeps.
fn unrecorded_versions(
    target: &LinuxTarget,
    owned: &[String],
    keep: &[&str],
) -> io::Result<Vec<String>> {
    let dir = Path::new(&target.directory);
    let candidates = take_candidates(dir, &target.link_name)?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let modified = |version: &str| {
        fs::symlink_metadata(dir.join(format!("{}.{version}", target.link_name)))
            .and_then(|m| m.modified())
            .ok()
    };
    let oldest_kept = keep.iter().filter_map(|v| modified(v)).min();
    let linked: Vec<PathBuf> = link_names(target)
        .filter_map(|link| fs::read_link(dir.join(link)).ok())
        .collect();
    let mut found = Vec::new();
    let mut later = Vec::new();
    for version in candidates {
        if owned.contains(&version) || keep.contains(&version.as_str()) {
            continue;
        }
        let path = dir.join(format!("{}.{version}", target.link_name));
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue; // gone since the listing
        };
        if !meta.is_file() || !xattr::get(&path, MARK).is_ok_and(|mark| mark.is_some()) {
            continue; // not ours: never touched
        }
        let older_than_kept = match (oldest_kept, meta.modified()) {
            (Some(oldest), Ok(mtime)) => mtime < oldest,
            _ => false,
        };
        if linked.contains(&path) || !older_than_kept {
            later.push(version);
        } else {
            found.push(version);
        }
    }
    put_back_candidates(dir, &target.link_name, later);
    found.sort();
    Ok(found)
}

/// Removes version files of this certificate that akvsync installed (`owned`, and older
/// unrecorded ones carrying its mark), except those in `keep`; files akvsync did not write
/// are never touched (SPEC §10). Returns the removed versions.
pub fn prune(
    target: &LinuxTarget,
    owned: &[String],
    keep: &[&str],
) -> Result<Vec<String>, StoreError> {
    let dir_path = Path::new(&target.directory);
    let dir = match Dir::open(dir_path) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("open the store directory", dir_path)(e)),
    };
    let mut removed = Vec::new();
    for version in owned.iter().filter(|v| !keep.contains(&v.as_str())) {
        let name = format!("{}.{version}", target.link_name);
        let path = dir_path.join(&name);
        match dir.entry(&name) {
            Ok(Entry::File) => {
                dir.remove_file(&name).map_err(io_error("remove", &path))?;
                removed.push(version.clone());
            }
            Ok(Entry::Nothing) => removed.push(version.clone()),
            Ok(_) => {}
            Err(e) => return Err(io_error("inspect", &path)(e)),
        }
    }
    for version in unrecorded_versions(target, owned, keep).map_err(io_error("read", dir_path))? {
        let name = format!("{}.{version}", target.link_name);
        dir.remove_file(&name)
            .map_err(io_error("remove", &dir_path.join(&name)))?;
        removed.push(version);
    }
    if !removed.is_empty() {
        dir.sync().map_err(io_error("sync", dir_path))?;
    }
    Ok(removed)
}

/// The directory store as a [`super::CertificateStore`].
#[derive(Debug, Clone, Copy)]
pub struct DirectoryStore;

impl DirectoryStore {
    fn target(
        certificate: &crate::settings::ObservedCertificate,
    ) -> Result<&LinuxTarget, super::StoreFailure> {
        match &certificate.target {
            crate::settings::Target::LinuxDirectory(t) => Ok(t),
            crate::settings::Target::WindowsStore(_) => Err("not a directory target".into()),
        }
    }
}

impl super::CertificateStore for DirectoryStore {
    fn target_key(&self, certificate: &crate::settings::ObservedCertificate) -> String {
        match &certificate.target {
            crate::settings::Target::LinuxDirectory(t) => {
                format!("{}/{}", t.directory.trim_end_matches('/'), t.link_name)
            }
            crate::settings::Target::WindowsStore(_) => String::new(),
        }
    }

    fn describe(&self, certificate: &crate::settings::ObservedCertificate) -> String {
        self.target_key(certificate)
    }

    fn current_version(
        &self,
        certificate: &crate::settings::ObservedCertificate,
    ) -> Option<String> {
        current_version_agreed(Self::target(certificate).ok()?)
    }

    fn install(
        &self,
        certificate: &crate::settings::ObservedCertificate,
        version: &str,
        bundle: &crate::decode::Bundle,
    ) -> Result<(), super::StoreFailure> {
        let target = Self::target(certificate)?;
        let pem = bundle.to_pem();
        let new = NewVersion {
            vault_name: &certificate.secret.vault_name,
            secret_name: &certificate.secret.secret_name,
            version,
            pem: &pem,
        };
        install(target, &new)?;
        Ok(())
    }

    fn installed(
        &self,
        certificate: &crate::settings::ObservedCertificate,
    ) -> Result<Option<super::InstalledCertificate>, super::StoreFailure> {
        let target = Self::target(certificate)?;
        let link = Path::new(&target.directory).join(&target.link_name);
        let file = match fs::canonicalize(&link) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("resolve", &link)(e).into()),
        };
        let mut pem = zeroize::Zeroizing::new(String::new());
        io::Read::read_to_string(
            &mut io::Read::take(
                fs::File::open(&file).map_err(io_error("open", &file))?,
                crate::decode::MAX_VALUE_BYTES as u64,
            ),
            &mut pem,
        )
        .map_err(io_error("read", &file))?;
        let bundle =
            crate::decode::decode_pem(&pem).map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(Some(super::InstalledCertificate {
            version: current_version(target),
            leaf: bundle.leaf,
            has_private_key: true,
            location: file.display().to_string(),
        }))
    }

    fn prune(
        &self,
        certificate: &crate::settings::ObservedCertificate,
        owned: &[String],
        keep: &[&str],
    ) -> Result<Vec<String>, super::StoreFailure> {
        Ok(prune(Self::target(certificate)?, owned, keep)?)
    }

    fn forget_link(
        &self,
        certificate: &crate::settings::ObservedCertificate,
        name: &str,
    ) -> Result<bool, super::StoreFailure> {
        Ok(forget_link(Self::target(certificate)?, name)?)
    }
}

/// Removes `name` from the target's directory if it is a symlink to one of this
/// certificate's version files (what akvsync made as a `customSymbolicLinkName`) and no
/// longer one of the target's link names.
pub fn forget_link(target: &LinuxTarget, name: &str) -> Result<bool, StoreError> {
    if link_names(target).any(|link| link == name) || !safefs::is_plain_name(name) {
        return Ok(false);
    }
    let dir_path = Path::new(&target.directory);
    let dir = match Dir::open(dir_path) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error("open the store directory", dir_path)(e)),
    };
    let ours = match dir.entry(name) {
        Ok(Entry::Symlink(pointed)) => {
            pointed.parent() == Some(dir_path)
                && pointed
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix(&format!("{}.", target.link_name)))
                    .is_some_and(is_version)
        }
        Ok(_) => false,
        Err(e) => return Err(io_error("inspect", &dir_path.join(name))(e)),
    };
    if ours {
        dir.remove_file(name)
            .map_err(io_error("remove", &dir_path.join(name)))?;
        dir.sync().map_err(io_error("sync", dir_path))?;
    }
    Ok(ours)
}
