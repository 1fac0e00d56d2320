//! Handler logs in the agent's `logFolder` (SPEC §7): one file per role
//! (`akvsync-handler.log` for the commands, `akvsync-service.log` for the service),
//! rotated to `<file>.1` when it reaches [`MAX_FILE_BYTES`], so that the folder never
//! holds more than twice that per role. The same `tracing` events as `run`'s stderr log,
//! so no token or key is ever written (they never reach a log event).

use std::fs::File;
use std::io::Write;

use crate::safefs::{Dir, FileSpec};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// 4 MiB per file, one rotated file kept: months of normal polling, and at most 8 MiB
/// per role in a folder the guest agent also collects for support.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// An append-only log file that rotates itself.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: Option<File>,
    written: u64,
    max: u64,
}

impl RotatingFile {
    pub fn new(path: PathBuf, max: u64) -> Self {
        RotatingFile {
            path,
            file: None,
            written: 0,
            max,
        }
    }

    /// The log's directory (created 0755 if missing, checked by [`crate::safefs`]) and name.
    fn parts(&self) -> std::io::Result<(Dir, String)> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| std::io::Error::other("the log path names no file"))?;
        Ok((Dir::create(dir, 0o755)?, name.to_owned()))
    }

    fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            let (dir, name) = self.parts()?;
            let file = dir.open_append(&name, FileSpec::PUBLIC)?;
            self.written = file.metadata()?.len();
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let (dir, name) = self.parts()?;
        dir.rename(&name, &format!("{name}.1"))?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.open()?;
        if self.written > 0 && self.written + buf.len() as u64 > self.max {
            self.rotate()?;
        }
        let n = self.open()?.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

/// Sends this process's `tracing` events to `<log_folder>/<file_name>` (level from
/// `AKVSYNC_LOG`, default info).
pub fn init(log_folder: &Path, file_name: &str) {
    let level = crate::logging::level_from_env();
    let writer = Mutex::new(RotatingFile::new(
        log_folder.join(file_name),
        MAX_FILE_BYTES,
    ));
    crate::logging::init(
        tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .with_target(false),
        level,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap_and_keeps_one() {
        let dir = std::env::temp_dir().join(format!("akvsync-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("h.log");
        let mut log = RotatingFile::new(path.clone(), 100);
        for _ in 0..25 {
            log.write_all(b"0123456789\n").unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 100);
        assert!(size(&dir.join("h.log.1")) <= 100);
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(files, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
