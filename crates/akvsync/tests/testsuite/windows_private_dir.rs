//! `%ProgramData%\akvsync`-style private directories on Windows (issue 15): created with the
//! protected SYSTEM/Administrators DACL, read back, and an existing one used only when its
//! owner is trusted. Under Wine (which derives descriptors from Unix modes) the owner reads
//! back as the Wine user, i.e. this account; the DACL text is printed, not compared (docs/windows.md).
#![cfg(windows)]

use crate::common::Scratch;
use akvsync::safefs::{self, trust, windows_dacl};

#[test]
fn a_private_directory_is_created_read_back_and_reused_only_by_a_trusted_owner() {
    let scratch = Scratch::new("private");
    let state = scratch.path("akvsync");
    safefs::Dir::create(&state, 0o700).unwrap();
    assert!(state.is_dir());
    let (owner, dacl) = windows_dacl::owner_and_dacl(&state).unwrap();
    println!("owner {owner}, DACL {dacl}");
    assert!(owner.starts_with("S-1-5-"), "{owner}");
    // Created by this process: its owner is trusted, so it is used again (and its DACL set
    // to the private one where it differs).
    safefs::Dir::create(&state, 0o700).unwrap();
    let (again, _) = windows_dacl::owner_and_dacl(&state).unwrap();
    assert_eq!(again, owner);
    assert!(trust::windows_owner_trusted(&owner, Some(&owner)));
    // A directory with a public mode is an ordinary one.
    safefs::Dir::create(&scratch.path("public"), 0o755).unwrap();
    // Removed here, not on drop, so that a DACL that keeps its creator from removing it fails.
    std::fs::remove_dir_all(&scratch.0).unwrap();
}
