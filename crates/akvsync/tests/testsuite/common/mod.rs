//! The integration tests' harness (`testsuite/main.rs` includes it once for every module):
//! scratch directories that clean up after themselves ([`Scratch`]), an emulator with a
//! settings file and must-run commands of the real binary ([`env`]), long-running processes
//! killed on drop ([`service`]), real users and
//! dropped privileges ([`users`]), polling with a named limit ([`wait_until`]), knobs of
//! long tests from the environment ([`knob`]), and the
//! crate's files: fixtures and the settings corpus ([`crate_path`], [`fixtures`],
//! [`settings_corpus`]); on Windows, the system stores ([`win_store`]).
#![cfg_attr(windows, allow(dead_code))] // Windows' modules use a subset.

pub mod agent;
pub mod env;
pub mod faults;
pub mod fixtures;
pub mod guest_agent;
pub mod http;
pub mod probe;
pub mod service;
pub mod store_view;
#[cfg(unix)]
pub mod users;
#[cfg(windows)]
pub mod win_store;

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory under the system's temporary directory, unique per process and call,
/// mode 0755 (tests that drop to an unprivileged user must be able to traverse it), removed
/// with everything in it when dropped.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "akvsync-test-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Scratch(dir)
    }

    /// `name` inside the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The store directory the tests' settings point at.
    pub fn store(&self) -> PathBuf {
        self.0.join("store")
    }

    /// The agent's state directory.
    pub fn state(&self) -> PathBuf {
        self.0.join("state")
    }

    /// Where a test writes the settings file.
    pub fn settings_file(&self) -> PathBuf {
        self.0.join("settings.json")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Polls `probe` until it returns `Some`, for at most `limit`; panics naming `what` and
/// the last observation otherwise.
pub fn wait_until<T>(
    limit: std::time::Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let started = std::time::Instant::now();
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if started.elapsed() > limit => {
                panic!("{what}: not within {limit:?}; last observation: {last}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

/// A knob of a long test read from the environment (`AKVSYNC_CRASH_KILLS`, …): `None`
/// when unset or not a `T`.
pub fn knob<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.parse().ok()
}

/// `rel` inside this crate's directory (`tests/data/…`, `tests/settings/…`, `../../packaging/…`).
pub fn crate_path(rel: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The `.json` files of the settings corpus `tests/settings/<kind>` (`valid`, `invalid`),
/// sorted.
pub fn settings_corpus(kind: &str) -> Vec<PathBuf> {
    let dir = crate_path("tests/settings").join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

/// Every `.rs` file below `dir` (the source scans of `write_paths.rs` and `module_layers.rs`).
pub fn rust_sources(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
