//! [`Dir`] where there are no descriptor-relative calls (Windows): the same interface on
//! paths. Temporaries are created exclusively at fresh random names and renamed over the
//! target (`MoveFileEx` with replace). A directory created with a private mode (no group or
//! other bits: the state directory, `%ProgramData%\akvsync`) gets a protected DACL and an
//! existing one must be owned by SYSTEM, Administrators or us (`windows_dacl`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Entry, FileSpec, TEMP_PREFIX, check_name, temp_name};

/// A directory akvsync writes in.
#[derive(Debug)]
pub struct Dir {
    path: PathBuf,
}

impl Dir {
    /// Opens an existing directory.
    pub fn open(path: &Path) -> io::Result<Dir> {
        if fs::metadata(path)?.is_dir() {
            Ok(Dir {
                path: path.to_owned(),
            })
        } else {
            Err(io::Error::other(format!(
                "{} is not a directory",
                path.display()
            )))
        }
    }

    /// Opens a directory, creating it and its parents if missing; a private `mode` (Unix
    /// bits without group or other access) makes it a protected Windows directory.
    pub fn create(path: &Path, mode: u32) -> io::Result<Dir> {
        if mode & 0o077 == 0 {
            #[cfg(windows)]
            super::windows_dacl::create_private(path)?;
            #[cfg(not(windows))]
            fs::create_dir_all(path)?;
        } else {
            fs::create_dir_all(path)?;
        }
        Dir::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn subdir(&self, name: &str, create: Option<u32>) -> io::Result<Dir> {
        check_name(name)?;
        match create {
            Some(mode) => Dir::create(&self.path.join(name), mode),
            None => Dir::open(&self.path.join(name)),
        }
    }

    pub fn temp_file(&self, _spec: FileSpec) -> io::Result<TempFile<'_>> {
        let name = temp_name();
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.path.join(&name))?;
        Ok(TempFile {
            dir: self,
            name,
            file: Some(file),
            done: false,
        })
    }

    pub fn create_file(&self, name: &str, _spec: FileSpec) -> io::Result<File> {
        check_name(name)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.path.join(name))
    }

    pub fn write_file(&self, name: &str, bytes: &[u8], spec: FileSpec) -> io::Result<()> {
        check_name(name)?;
        let mut temp = self.temp_file(spec)?;
        temp.file().write_all(bytes)?;
        temp.commit(name)
    }

    /// The target of the symlink at `name`.
    pub fn read_link(&self, name: &str) -> io::Result<PathBuf> {
        fs::read_link(self.path.join(name))
    }

    /// Points `name` at `target` (a new link at a temporary name renamed over the old one;
    /// Windows needs the symbolic-link privilege, which services running as SYSTEM have).
    pub fn replace_symlink(&self, name: &str, target: &Path) -> io::Result<()> {
        check_name(name)?;
        let temp = temp_name();
        std::os::windows::fs::symlink_file(target, self.path.join(&temp))?;
        if let Err(e) = fs::rename(self.path.join(&temp), self.path.join(name)) {
            let _ = fs::remove_file(self.path.join(&temp));
            return Err(e);
        }
        Ok(())
    }

    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.path.join(from), self.path.join(to))
    }

    pub fn remove_file(&self, name: &str) -> io::Result<bool> {
        match fs::remove_file(self.path.join(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn remove_tree(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        match fs::remove_dir_all(self.path.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn entry(&self, name: &str) -> io::Result<Entry> {
        match fs::symlink_metadata(self.path.join(name)) {
            Ok(meta) if meta.file_type().is_symlink() => {
                Ok(Entry::Symlink(fs::read_link(self.path.join(name))?))
            }
            Ok(meta) if meta.is_dir() => Ok(Entry::Directory),
            Ok(meta) if meta.is_file() => Ok(Entry::File),
            Ok(_) => Ok(Entry::Other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Entry::Nothing),
            Err(e) => Err(e),
        }
    }

    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// NTFS renames are journaled; Windows cannot open a directory for FlushFileBuffers
    /// without backup semantics.
    pub fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    pub fn open_append(&self, name: &str, _spec: FileSpec) -> io::Result<File> {
        check_name(name)?;
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.join(name))
    }

    pub fn open_lock(&self, name: &str, _spec: FileSpec) -> io::Result<File> {
        check_name(name)?;
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(self.path.join(name))
    }

    pub fn remove_stale_temps(&self) -> io::Result<usize> {
        let mut removed = 0;
        for name in self.list()? {
            if name.starts_with(TEMP_PREFIX) && self.entry(&name)? == Entry::File {
                self.remove_file(&name)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A file being written at a temporary name; removed unless committed.
#[derive(Debug)]
pub struct TempFile<'a> {
    dir: &'a Dir,
    name: String,
    file: Option<File>,
    done: bool,
}

impl TempFile<'_> {
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until commit")
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path.join(&self.name)
    }

    pub fn commit(mut self, name: &str) -> io::Result<()> {
        check_name(name)?;
        let file = self.file.take().expect("open until commit");
        file.sync_all()?;
        drop(file);
        fs::rename(self.dir.path.join(&self.name), self.dir.path.join(name))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.file = None;
            let _ = fs::remove_file(self.dir.path.join(&self.name));
        }
    }
}
