//! Giving memory back to the OS between rounds (issue 19's resident-memory budget), for the
//! service loop after a round and the metrics endpoint after a scrape: freed heap pages
//! (`malloc_trim`) and the agent's own code pages.
//!
//! Code pages: most of an idle agent's resident memory is its executable's text, faulted in
//! (with the kernel's fault-around) by the round that just ended and then unused for the
//! whole polling interval. They are clean, private, read-only file pages: `MADV_DONTNEED`
//! unmaps them and the next round maps them again from the page cache (minor faults), the
//! bytes are the file's, which cannot change under a running executable (ETXTBSY; packages
//! replace it by rename). Only `r-xp` mappings of the executable itself are touched, never
//! a writable or relocated (`r--p` RELRO) one.

/// Hands memory freed by a sync round and the code pages it used back to the OS.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap structures under their locks; it
    // takes no pointers from us and is safe to call at any time from any thread.
    unsafe {
        nix::libc::malloc_trim(0);
    }
    #[cfg(target_os = "linux")]
    release_code_pages();
}

/// The `start..end` ranges of `maps` (the text of `/proc/self/maps`) that are executable,
/// private, read-only mappings of `exe`.
pub fn code_ranges(maps: &str, exe: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?;
            if perms != "r-xp" || path != exe {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some((
                usize::from_str_radix(start, 16).ok()?,
                usize::from_str_radix(end, 16).ok()?,
            ))
        })
        .filter(|(start, end)| start < end)
        .collect()
}

#[cfg(target_os = "linux")]
fn release_code_pages() {
    let (Ok(maps), Ok(exe)) = (
        std::fs::read_to_string("/proc/self/maps"),
        std::fs::read_link("/proc/self/exe"),
    ) else {
        return;
    };
    let Some(exe) = exe.to_str() else {
        return;
    };
    for (start, end) in code_ranges(&maps, exe) {
        // SAFETY: the range is a whole, page-aligned `r-xp` private file mapping of this
        // executable (from /proc/self/maps); MADV_DONTNEED on it only drops clean pages,
        // which the next access maps again with the same bytes from the file.
        unsafe {
            nix::libc::madvise(
                start as *mut nix::libc::c_void,
                end - start,
                nix::libc::MADV_DONTNEED,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_own_code_mappings_are_chosen() {
        let maps = "\
55d0c0000000-55d0c0100000 r--p 00000000 08:01 42 /usr/bin/akvsync
55d0c0100000-55d0c0600000 r-xp 00100000 08:01 42 /usr/bin/akvsync
55d0c0600000-55d0c0700000 r--p 00600000 08:01 42 /usr/bin/akvsync
55d0c0700000-55d0c0710000 rw-p 00700000 08:01 42 /usr/bin/akvsync
7f0000000000-7f0000100000 r-xp 00000000 08:01 7 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(
            code_ranges(maps, "/usr/bin/akvsync"),
            vec![(0x55d0_c010_0000, 0x55d0_c060_0000)]
        );
        assert!(code_ranges(maps, "/other").is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_code_pages_keeps_the_process_running_the_same_code() {
        let before: u64 = (1..=1000u64).sum();
        release_freed_memory();
        // Code runs again after its pages were dropped: refaulted from the file.
        assert_eq!((1..=1000u64).sum::<u64>(), before);
        release_freed_memory();
    }
}
