//! Giving freed memory back to the OS (issue 19's resident-memory budget), for the service
//! loop after a round and the metrics endpoint after a scrape.

/// Hands memory freed by a sync round back to the OS. The round's decode and store work
/// runs on blocking threads, each with its own glibc arena; without a trim the freed pages
/// stay resident for the whole polling interval. The metrics endpoint calls it after a
/// scrape, whose text buffer would otherwise stay resident until the next one.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap structures under their locks; it
    // takes no pointers from us and is safe to call at any time from any thread.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
