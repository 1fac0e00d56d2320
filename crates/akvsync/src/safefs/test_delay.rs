//! Test-only pauses between the steps of a store write and of an output set's write
//! (`outputs.rs`: before each file's rename, before the `current` link switch; link
//! switches pause in [`super::Dir::replace_symlink`]), so that the crash harness
//! (`tests/testsuite/crash_consistency.rs`) can land SIGKILLs in the middle of an install. Only debug
//! builds read `AKVSYNC_TEST_WRITE_DELAY_MS` (read once; each pause sleeps a random
//! 0..=N ms); in release builds every function here is an empty inline function and the
//! variable's name is not in the binary.

/// Bytes written between two pauses when pauses are enabled.
#[cfg(debug_assertions)]
const CHUNK: usize = 1024;

#[cfg(debug_assertions)]
fn max_delay_ms() -> u64 {
    static MAX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var("AKVSYNC_TEST_WRITE_DELAY_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

/// Sleeps a random 0..=N ms when the test variable is set (debug builds only).
#[cfg(debug_assertions)]
pub fn pause() {
    let max = max_delay_ms();
    if max > 0 {
        std::thread::sleep(std::time::Duration::from_millis(fastrand::u64(0..=max)));
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn pause() {}

/// `write_all`, in chunks with a pause after each when the test variable is set.
#[cfg(debug_assertions)]
pub fn write_all(file: &mut impl std::io::Write, bytes: &[u8]) -> std::io::Result<()> {
    if max_delay_ms() == 0 {
        return file.write_all(bytes);
    }
    for chunk in bytes.chunks(CHUNK) {
        file.write_all(chunk)?;
        file.flush()?;
        pause();
    }
    Ok(())
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn write_all(file: &mut impl std::io::Write, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)
}
