//! [`Dir`] on Linux: descriptor-relative operations (`openat`, `renameat`, `symlinkat`,
//! `unlinkat`) on a directory reached by a checked walk from `/`.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, symlinkat, unlinkat};

use super::trust::{self, Kind, Meta, Verdict};
use super::{Entry, FileSpec, TEMP_PREFIX, check_name, temp_name};

/// What [`prepare_for_account`] did to a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    Created,
    /// The account owned it already.
    Owned,
    /// Root owned it; it (and akvsync's own entries in it) now belong to the account.
    TookOver,
}

/// Root, preparing a directory for the service account (`akvsync service install`, issue
/// 16): walks to its parent like [`Dir::create`] but trusting directories owned by root or
/// `uid` (missing parents are created root-owned, 0755), then creates the directory owned by
/// `uid:gid` with exactly `mode`, keeps it when `uid` owns it, or hands a root-owned one to
/// the account together with the entries in it whose names `take` accepts (recursively, links
/// themselves, never their targets). A symlink, a directory another account owns and one
/// that others may write are refused.
pub fn prepare_for_account(
    path: &Path,
    uid: u32,
    gid: u32,
    mode: u32,
    take: &dyn Fn(&str) -> bool,
) -> io::Result<Prepared> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a directory below /", path.display()),
        ));
    };
    let parent = walk_trusting(parent, Some(0o755), uid)?;
    let refusal = |r: trust::Refusal| refused(path, r);
    let (fd, prepared) = match open_path(parent.fd.as_fd(), name) {
        Ok(fd) => {
            let meta = meta_of(&fstat(&fd).map_err(errno)?);
            if meta.uid != 0 && meta.uid != uid {
                return Err(refusal(trust::Refusal::ForeignOwner { uid: meta.uid }));
            }
            if meta.mode & 0o022 != 0 {
                return Err(refusal(trust::Refusal::WritableByOthers {
                    mode: meta.mode,
                }));
            }
            if meta.uid == uid {
                (fd, Prepared::Owned)
            } else {
                chown_entries(fd.as_fd(), uid, gid, take)?;
                chown_self(fd.as_fd(), uid, gid)?;
                (fd, Prepared::TookOver)
            }
        }
        Err(Errno::ENOENT) => {
            mkdirat(parent.fd.as_fd(), name, Mode::from_bits_truncate(0o700)).map_err(errno)?;
            let fd = open_path(parent.fd.as_fd(), name).map_err(errno)?;
            chown_self(fd.as_fd(), uid, gid)?;
            fchmod(
                &readable(fd.as_fd())?,
                Mode::from_bits_truncate(mode & 0o7777),
            )
            .map_err(errno)?;
            (fd, Prepared::Created)
        }
        Err(Errno::ENOTDIR | Errno::ELOOP) => {
            return Err(refusal(trust::Refusal::NotADirectory));
        }
        Err(e) => return Err(errno(e)),
    };
    drop(fd);
    Ok(prepared)
}

fn chown_self(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    nix::unistd::fchownat(
        fd,
        "",
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_EMPTY_PATH,
    )
    .map_err(errno)
}

/// Hands the entries of `dir` that `take` accepts to `uid:gid`, the whole tree below the
/// accepted directories, without following a link.
fn chown_entries(
    dir: BorrowedFd<'_>,
    uid: u32,
    gid: u32,
    take: &dyn Fn(&str) -> bool,
) -> io::Result<()> {
    let names: Vec<String> = names(dir)?.into_iter().filter(|n| take(n)).collect();
    for name in names {
        nix::unistd::fchownat(
            dir,
            name.as_str(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(errno)?;
        if let Ok(sub) = open_path(dir, std::ffi::OsStr::new(&name)) {
            chown_entries(sub.as_fd(), uid, gid, &|_| true)?;
        }
    }
    Ok(())
}

/// `dir` opened for reading (a walk holds `O_PATH` descriptors, which can neither be
/// listed, fsynced nor fchmod'ed).
fn readable(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)
}

/// The names in `dir` (not `.`/`..`), unsorted; names that are not UTF-8 are skipped
/// (akvsync never writes one).
fn names(dir: BorrowedFd<'_>) -> io::Result<Vec<String>> {
    let mut listing = nix::dir::Dir::from_fd(readable(dir)?).map_err(errno)?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(errno)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if let Ok(name) = std::str::from_utf8(name) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Symlinks followed in one walk before giving up (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// An open, checked directory. Every write below it is relative to its descriptor.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn errno(e: Errno) -> io::Error {
    io::Error::from(e)
}

fn meta_of(stat: &FileStat) -> Meta {
    let format = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    let kind = if format == SFlag::S_IFDIR {
        Kind::Directory
    } else if format == SFlag::S_IFLNK {
        Kind::Symlink
    } else {
        Kind::Other
    };
    Meta {
        kind,
        uid: stat.st_uid,
        gid: stat.st_gid,
        mode: stat.st_mode & 0o7777,
    }
}

fn refused(path: &Path, refusal: trust::Refusal) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("refusing to write under {}: {refusal}", path.display()),
    )
}

fn push_components(pending: &mut VecDeque<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    for part in parts.into_iter().rev() {
        pending.push_front(part);
    }
}

fn open_path(parent: BorrowedFd<'_>, name: &std::ffi::OsStr) -> nix::Result<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Creates directory `name` in `parent` with exactly `mode` (whatever the umask; nothing is
/// in it yet, so no window); an existing one is left as it is (the caller checks it).
fn make_dir(parent: BorrowedFd<'_>, name: &std::ffi::OsStr, mode: u32) -> nix::Result<()> {
    match mkdirat(parent, name, Mode::from_bits_truncate(0o700)) {
        Ok(()) => {
            let fd = openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            fchmod(&fd, Mode::from_bits_truncate(mode))
        }
        Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Walks `path` from `/`, creating missing directories with `create` (their mode, exactly),
/// judging every component with [`trust::judge`].
fn walk(path: &Path, create: Option<u32>) -> io::Result<Dir> {
    walk_trusting(path, create, Uid::effective().as_raw())
}

/// [`walk`], trusting directories owned by root or by `euid` (the account a root process
/// prepares directories for, or this process's own).
fn walk_trusting(path: &Path, create: Option<u32>, euid: u32) -> io::Result<Dir> {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    };
    let root = open_path(nix::fcntl::AT_FDCWD, std::ffi::OsStr::new("/")).map_err(errno)?;
    let root_meta = meta_of(&fstat(&root).map_err(errno)?);
    let shared = match trust::judge(root_meta, euid, false) {
        Ok(Verdict::Directory { shared }) => shared,
        Ok(Verdict::FollowLink) => false,
        Err(refusal) => return Err(refused(Path::new("/"), refusal)),
    };
    // (descriptor, others may add entries, the resolved path)
    let mut stack: Vec<(OwnedFd, bool, PathBuf)> = vec![(root, shared, PathBuf::from("/"))];
    let mut pending = VecDeque::new();
    push_components(&mut pending, &absolute);
    let mut links = 0;
    let mut created_attempts = 0;
    while let Some(name) = pending.pop_front() {
        if name == "." {
            continue;
        }
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let (parent, parent_shared, parent_path) = stack.last().expect("root stays");
        let here = parent_path.join(&name);
        match open_path(parent.as_fd(), &name) {
            Ok(fd) => {
                let meta = meta_of(&fstat(&fd).map_err(errno)?);
                match trust::judge(meta, euid, *parent_shared) {
                    Ok(Verdict::Directory { shared }) => stack.push((fd, shared, here)),
                    Ok(Verdict::FollowLink) => unreachable!("opened with O_NOFOLLOW"),
                    Err(refusal) => return Err(refused(&here, refusal)),
                }
            }
            Err(Errno::ENOENT) if create.is_some() && created_attempts < 8 => {
                created_attempts += 1;
                let mode = create.unwrap_or(0o700);
                make_dir(parent.as_fd(), &name, mode).map_err(|e| {
                    io::Error::new(
                        errno(e).kind(),
                        format!("cannot create directory {}: {e}", here.display()),
                    )
                })?;
                pending.push_front(name);
            }
            Err(Errno::ENOTDIR | Errno::ELOOP) => {
                let stat = fstatat(
                    parent.as_fd(),
                    name.as_os_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(errno)?;
                let meta = meta_of(&stat);
                match trust::judge(meta, euid, *parent_shared) {
                    Ok(Verdict::FollowLink) => {}
                    Ok(Verdict::Directory { .. }) => {
                        return Err(io::Error::other(format!(
                            "{} changed while it was checked",
                            here.display()
                        )));
                    }
                    Err(refusal) => return Err(refused(&here, refusal)),
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(errno(Errno::ELOOP));
                }
                let target =
                    PathBuf::from(readlinkat(parent.as_fd(), name.as_os_str()).map_err(errno)?);
                if target.is_absolute() {
                    stack.truncate(1);
                }
                push_components(&mut pending, &target);
            }
            Err(e) => {
                return Err(io::Error::new(
                    errno(e).kind(),
                    format!("{}: {e}", here.display()),
                ));
            }
        }
    }
    let (fd, shared, resolved) = stack.pop().expect("root stays");
    if shared {
        return Err(refused(
            &resolved,
            trust::Refusal::WritableByOthers {
                mode: meta_of(&fstat(&fd).map_err(errno)?).mode,
            },
        ));
    }
    Ok(Dir { fd, path: absolute })
}

impl Dir {
    /// Opens an existing directory after checking every component of its path.
    pub fn open(path: &Path) -> io::Result<Dir> {
        walk(path, None)
    }

    /// Like [`Dir::open`], creating missing directories with exactly `mode`.
    pub fn create(path: &Path, mode: u32) -> io::Result<Dir> {
        walk(path, Some(mode))
    }

    /// The path this directory was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A subdirectory (one plain name), checked like every other component (one step from
    /// this already checked directory: no second walk from `/`); created with exactly
    /// `create` if it is missing and `create` is given. A link there is refused: akvsync
    /// never makes one where it expects a directory.
    pub fn subdir(&self, name: &str, create: Option<u32>) -> io::Result<Dir> {
        check_name(name)?;
        let path = self.path.join(name);
        let euid = Uid::effective().as_raw();
        for _ in 0..8 {
            match open_path(self.fd.as_fd(), std::ffi::OsStr::new(name)) {
                Ok(fd) => {
                    let meta = meta_of(&fstat(&fd).map_err(errno)?);
                    return match trust::judge(meta, euid, false) {
                        Ok(Verdict::Directory { shared: false }) => Ok(Dir { fd, path }),
                        Ok(_) => Err(refused(
                            &path,
                            trust::Refusal::WritableByOthers { mode: meta.mode },
                        )),
                        Err(refusal) => Err(refused(&path, refusal)),
                    };
                }
                Err(Errno::ENOENT) if create.is_some() => {
                    make_dir(
                        self.fd.as_fd(),
                        std::ffi::OsStr::new(name),
                        create.unwrap_or(0o700),
                    )
                    .map_err(errno)?;
                }
                Err(Errno::ENOTDIR | Errno::ELOOP) => {
                    return Err(refused(&path, trust::Refusal::NotADirectory));
                }
                Err(e) => return Err(errno(e)),
            }
        }
        Err(io::Error::other(format!(
            "{} keeps changing",
            path.display()
        )))
    }

    /// Creates a new file at a fresh temporary name with `spec`'s owner and mode set before
    /// anything is written to it.
    pub fn temp_file(&self, spec: FileSpec) -> io::Result<TempFile<'_>> {
        let name = temp_name();
        let file = self.create_exclusive(&name, spec)?;
        Ok(TempFile {
            dir: self,
            name,
            file,
            done: false,
        })
    }

    /// Creates `name`, which must not exist, with `spec`'s owner and mode set before anything
    /// is written: for a directory nobody reads yet (an output set being built), where a
    /// temporary name and a rename per file would only cost journal commits.
    pub fn create_file(&self, name: &str, spec: FileSpec) -> io::Result<File> {
        check_name(name)?;
        self.create_exclusive(name, spec)
    }

    fn create_exclusive(&self, name: &str, spec: FileSpec) -> io::Result<File> {
        let fd = openat(
            self.fd.as_fd(),
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(errno)?;
        let file = File::from(fd);
        let cleanup = |e: Errno| {
            let _ = unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir);
            errno(e)
        };
        // Mode first: after handing the file to another owner, a service account without
        // CAP_FOWNER could no longer set it (least privilege, src/privilege).
        fchmod(&file, Mode::from_bits_truncate(spec.mode & 0o7777)).map_err(cleanup)?;
        if spec.owner.is_some() || spec.group.is_some() {
            fchown(
                &file,
                spec.owner.map(Uid::from_raw),
                spec.group.map(Gid::from_raw),
            )
            .map_err(cleanup)?;
        }
        Ok(file)
    }

    /// Replaces `name` with a file holding `bytes`, durably: temporary file, fsync, rename,
    /// fsync of the directory. Readers see the old file or the new one.
    pub fn write_file(&self, name: &str, bytes: &[u8], spec: FileSpec) -> io::Result<()> {
        check_name(name)?;
        let mut temp = self.temp_file(spec)?;
        temp.file().write_all(bytes)?;
        temp.commit(name)?;
        self.sync()
    }

    /// Points `name` at `target` atomically (a new link at a temporary name renamed over
    /// the old one). Never replaces anything but a symlink or nothing.
    pub fn replace_symlink(&self, name: &str, target: &Path) -> io::Result<()> {
        check_name(name)?;
        let existing = self.entry(name)?;
        match existing {
            Entry::Nothing | Entry::Symlink(_) => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a symlink",
                        self.path.join(name).display()
                    ),
                ));
            }
        }
        let temp = temp_name();
        // Nothing there yet: create the link at its name (atomic, and refused if something
        // appeared meanwhile) instead of a temporary and a rename.
        if existing == Entry::Nothing {
            match symlinkat(target, self.fd.as_fd(), name) {
                Ok(()) => return Ok(()),
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        symlinkat(target, self.fd.as_fd(), temp.as_str()).map_err(errno)?;
        super::test_delay::pause();
        if let Err(e) = renameat(self.fd.as_fd(), temp.as_str(), self.fd.as_fd(), name) {
            let _ = unlinkat(self.fd.as_fd(), temp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(errno(e));
        }
        Ok(())
    }

    /// Renames an entry within this directory (never follows a link at either name).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        renameat(self.fd.as_fd(), from, self.fd.as_fd(), to).map_err(errno)
    }

    /// Removes a file or symlink (never what it points at); `Ok(false)` if nothing was there.
    pub fn remove_file(&self, name: &str) -> io::Result<bool> {
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(errno(e)),
        }
    }

    /// Removes a directory this process made and everything in it, never following a link.
    pub fn remove_tree(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        let fd = match openat(
            self.fd.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(errno(e)),
        };
        let child = Dir {
            fd,
            path: self.path.join(name),
        };
        for entry in child.list()? {
            match child.entry(&entry)? {
                Entry::Directory => child.remove_tree(&entry)?,
                Entry::Nothing => {}
                _ => {
                    child.remove_file(&entry)?;
                }
            }
        }
        match unlinkat(self.fd.as_fd(), name, UnlinkatFlags::RemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(errno(e)),
        }
    }

    /// What is at `name`, without following a link.
    pub fn entry(&self, name: &str) -> io::Result<Entry> {
        match fstatat(self.fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(match meta_of(&stat).kind {
                Kind::Directory => Entry::Directory,
                Kind::Symlink => Entry::Symlink(self.read_link(name)?),
                Kind::Other => {
                    let format = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
                    if format == SFlag::S_IFREG {
                        Entry::File
                    } else {
                        Entry::Other
                    }
                }
            }),
            Err(Errno::ENOENT) => Ok(Entry::Nothing),
            Err(e) => Err(errno(e)),
        }
    }

    /// The target of the symlink at `name`.
    pub fn read_link(&self, name: &str) -> io::Result<PathBuf> {
        readlinkat(self.fd.as_fd(), name)
            .map(PathBuf::from)
            .map_err(errno)
    }

    /// The names in this directory (not `.`/`..`), unsorted; names that are not UTF-8 are
    /// skipped (akvsync never writes one).
    pub fn list(&self) -> io::Result<Vec<String>> {
        names(self.fd.as_fd())
    }

    /// Makes this directory's entries (renames, new links, removals) durable.
    pub fn sync(&self) -> io::Result<()> {
        File::from(self.readable()?).sync_all()
    }

    /// The directory opened for reading (the walk holds an `O_PATH` descriptor, which can
    /// neither be listed nor fsynced).
    fn readable(&self) -> io::Result<OwnedFd> {
        readable(self.fd.as_fd())
    }

    /// Opens `name` for appending (a log), creating it with `spec`; an existing entry must be
    /// a regular file owned by root or us (never a link).
    pub fn open_append(&self, name: &str, spec: FileSpec) -> io::Result<File> {
        self.open_regular(name, OFlag::O_WRONLY | OFlag::O_APPEND, spec)
    }

    /// Opens (creating) `name` for reading and writing, e.g. a lock file; same rules as
    /// [`Dir::open_append`].
    pub fn open_lock(&self, name: &str, spec: FileSpec) -> io::Result<File> {
        self.open_regular(name, OFlag::O_RDWR, spec)
    }

    fn open_regular(&self, name: &str, access: OFlag, spec: FileSpec) -> io::Result<File> {
        check_name(name)?;
        let fd = openat(
            self.fd.as_fd(),
            name,
            access | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::from_bits_truncate(spec.mode & 0o777),
        )
        .map_err(errno)?;
        let stat = fstat(&fd).map_err(errno)?;
        let euid = Uid::effective().as_raw();
        let regular = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
        if !regular || (stat.st_uid != 0 && stat.st_uid != euid) || stat.st_nlink > 1 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "refusing to open {}: not a regular file of root or this account",
                    self.path.join(name).display()
                ),
            ));
        }
        if stat.st_mode & 0o7777 != spec.mode & 0o7777 && stat.st_uid == euid {
            fchmod(&fd, Mode::from_bits_truncate(spec.mode & 0o7777)).map_err(errno)?;
        }
        Ok(File::from(fd))
    }

    /// Removes `.akvsync-tmp-*` files left by an interrupted run; returns how many.
    pub fn remove_stale_temps(&self) -> io::Result<usize> {
        let mut removed = 0;
        for name in self.list()? {
            if name.starts_with(TEMP_PREFIX) && self.entry(&name)? != Entry::Directory {
                self.remove_file(&name)?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.sync()?;
        }
        Ok(removed)
    }
}

/// A file being written at a temporary name; removed unless [`TempFile::commit`] renames it.
#[derive(Debug)]
pub struct TempFile<'a> {
    dir: &'a Dir,
    name: String,
    file: File,
    done: bool,
}

impl TempFile<'_> {
    /// The open file (write, set ACLs and attributes on it).
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The temporary's path (for error messages).
    pub fn path(&self) -> PathBuf {
        self.dir.path.join(&self.name)
    }

    /// fsyncs the file and renames it to `name` (replacing what is there). The directory is
    /// not synced: callers that rename several entries sync it once.
    pub fn commit(mut self, name: &str) -> io::Result<()> {
        check_name(name)?;
        self.file.sync_all()?;
        renameat(
            self.dir.fd.as_fd(),
            self.name.as_str(),
            self.dir.fd.as_fd(),
            name,
        )
        .map_err(errno)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = unlinkat(
                self.dir.fd.as_fd(),
                self.name.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    struct Scratch(PathBuf);
    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!(
                "akvsync-safefs-{name}-{}-{:x}",
                std::process::id(),
                fastrand::u32(..)
            ));
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            Scratch(dir)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn victim(scratch: &Scratch) -> PathBuf {
        let victim = scratch.0.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        victim
    }

    #[test]
    fn writes_replace_a_planted_link_and_never_follow_it() {
        let scratch = Scratch::new("links");
        let victim = victim(&scratch);
        let dir = Dir::create(&scratch.0.join("d"), 0o700).unwrap();
        symlink(&victim, scratch.0.join("d/state.json")).unwrap();
        symlink(&victim, scratch.0.join("d/lock")).unwrap();
        symlink(&victim, scratch.0.join("d/log")).unwrap();
        dir.write_file("state.json", b"{}", FileSpec::PUBLIC)
            .unwrap();
        assert!(
            dir.open_lock("lock", FileSpec::PRIVATE).is_err(),
            "a link at the lock"
        );
        assert!(
            dir.open_append("log", FileSpec::PUBLIC).is_err(),
            "a link at the log"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::metadata(&victim).unwrap().mode() & 0o777, 0o600);
        let meta = std::fs::symlink_metadata(scratch.0.join("d/state.json")).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.mode() & 0o777, 0o644, "exact mode whatever the umask");
        assert_eq!(
            std::fs::read(scratch.0.join("d/state.json")).unwrap(),
            b"{}"
        );
        assert_eq!(
            std::fs::metadata(scratch.0.join("d")).unwrap().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn links_on_the_way_are_followed_when_trusted_and_removal_never_follows() {
        let scratch = Scratch::new("walk");
        let real = scratch.0.join("real");
        std::fs::create_dir(&real).unwrap();
        symlink(&real, scratch.0.join("alias")).unwrap();
        symlink("real", scratch.0.join("relative")).unwrap();
        let dir = Dir::open(&scratch.0.join("alias")).unwrap();
        dir.write_file("a", b"1", FileSpec::PRIVATE).unwrap();
        let dir = Dir::open(&scratch.0.join("relative/../real")).unwrap();
        dir.write_file("b", b"2", FileSpec::PRIVATE).unwrap();
        assert_eq!(std::fs::read(real.join("a")).unwrap(), b"1");
        assert_eq!(std::fs::read(real.join("b")).unwrap(), b"2");
        // A link to the victim's directory inside a tree being removed: only the link goes.
        let victim = victim(&scratch);
        let tree = Dir::create(&scratch.0.join("tree/sub"), 0o700).unwrap();
        symlink(&scratch.0, scratch.0.join("tree/sub/escape")).unwrap();
        tree.write_file("f", b"x", FileSpec::PRIVATE).unwrap();
        Dir::open(&scratch.0).unwrap().remove_tree("tree").unwrap();
        assert!(!scratch.0.join("tree").exists());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // Temporaries: fresh names, removed when not committed.
        let dir = Dir::open(&real).unwrap();
        drop(dir.temp_file(FileSpec::PRIVATE).unwrap());
        assert_eq!(dir.remove_stale_temps().unwrap(), 0);
    }

    #[test]
    fn directories_others_control_are_refused() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: needs root to make directories of another account");
            return;
        }
        let scratch = Scratch::new("foreign");
        let foreign = scratch.0.join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
        let err = Dir::create(&foreign.join("below"), 0o700).unwrap_err();
        assert!(err.to_string().contains("uid 65534"), "{err}");
        assert!(!foreign.join("below").exists(), "nothing created below it");

        let open = scratch.0.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Dir::open(&open).unwrap_err();
        assert!(err.to_string().contains("0777"), "{err}");

        // A sticky, world-writable directory (like /tmp): a link another account planted
        // there is not followed; our own subdirectory is fine.
        let sticky = scratch.0.join("sticky");
        std::fs::create_dir(&sticky).unwrap();
        std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
        symlink(&scratch.0, sticky.join("planted")).unwrap();
        std::os::unix::fs::lchown(sticky.join("planted"), Some(65534), Some(65534)).unwrap();
        let err = Dir::open(&sticky.join("planted")).unwrap_err();
        assert!(
            err.to_string().contains("symlink owned by uid 65534"),
            "{err}"
        );
        assert!(Dir::create(&sticky.join("mine"), 0o700).is_ok());
        assert!(
            Dir::open(&sticky).is_err(),
            "writing into the shared directory itself"
        );
    }
}
