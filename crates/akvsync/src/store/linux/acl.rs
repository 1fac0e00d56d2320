//! POSIX ACLs for the Linux store: resolving `acls` users and groups, and reading and
//! writing the `system.posix_acl_access` extended attribute in the kernel's binary format
//! (`linux/posix_acl_xattr.h`), so that no C library (libacl) is needed.
//!
//! A write never widens the mask beyond what akvsync grants in it: an existing mask (one
//! an administrator may have narrowed) gains only the granted bits; a file without an ACL
//! gets the mask its group bits plus the granted bits make, so the owning group's class
//! never gains a permission that neither it had nor akvsync granted.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;

use nix::unistd::{Group, User};

use crate::settings::AclEntry;

const XATTR_NAME: &str = "system.posix_acl_access";
const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;
/// Largest ACL we read back: 4 + 8 × 1024 entries, far above any real ACL.
const MAX_XATTR_BYTES: usize = 4 + 8 * 1024;

pub const READ: u16 = 4;
pub const EXECUTE: u16 = 1;

/// Users and groups, resolved to ids, that get access.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub users: Vec<u32>,
    pub groups: Vec<u32>,
}

impl Grants {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

/// Why `acls` could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("user {0:?} does not exist")]
    NoSuchUser(String),
    #[error("group {0:?} does not exist")]
    NoSuchGroup(String),
    #[error("cannot look up {0:?}: {1}")]
    Lookup(String, nix::Error),
    #[error("the filesystem does not support POSIX ACLs")]
    Unsupported,
    #[error("cannot set POSIX ACL: {0}")]
    Io(#[from] io::Error),
}

/// Resolves names (or numeric ids) through NSS, as `id` and `setfacl` do.
pub fn resolve(entries: &[AclEntry]) -> Result<Grants, AclError> {
    let mut grants = Grants::default();
    for entry in entries {
        if let Some(name) = &entry.user {
            let uid = match User::from_name(name) {
                Ok(Some(user)) => user.uid.as_raw(),
                Ok(None) => name
                    .parse()
                    .map_err(|_| AclError::NoSuchUser(name.clone()))?,
                Err(e) => return Err(AclError::Lookup(name.clone(), e)),
            };
            grants.users.push(uid);
        }
        if let Some(name) = &entry.group {
            let gid = match Group::from_name(name) {
                Ok(Some(group)) => group.gid.as_raw(),
                Ok(None) => name
                    .parse()
                    .map_err(|_| AclError::NoSuchGroup(name.clone()))?,
                Err(e) => return Err(AclError::Lookup(name.clone(), e)),
            };
            grants.groups.push(gid);
        }
    }
    Ok(grants)
}

/// An access ACL: the three base entries plus named users/groups and the mask.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Acl {
    user_obj: u16,
    group_obj: u16,
    other: u16,
    users: BTreeMap<u32, u16>,
    groups: BTreeMap<u32, u16>,
    /// The mask entry: the upper bound of the owning group's and the named entries'
    /// permissions. `None` for a minimal ACL (the file's mode alone).
    mask: Option<u16>,
}

impl Acl {
    fn from_mode(mode: u32) -> Self {
        Acl {
            user_obj: ((mode >> 6) & 7) as u16,
            group_obj: ((mode >> 3) & 7) as u16,
            other: (mode & 7) as u16,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            mask: None,
        }
    }

    /// Adds `perm` for every grant. The mask gains `perm` and nothing else: an existing
    /// mask keeps whatever an administrator narrowed it to; without one, the mask is the
    /// group bits the file had plus `perm`, so that no entry of the group class (the
    /// owning group included) gets more than it had or than akvsync grants.
    fn grant(&mut self, grants: &Grants, perm: u16) {
        if grants.is_empty() {
            return;
        }
        for uid in &grants.users {
            *self.users.entry(*uid).or_insert(0) |= perm;
        }
        for gid in &grants.groups {
            *self.groups.entry(*gid).or_insert(0) |= perm;
        }
        self.mask = Some(self.mask.unwrap_or(self.group_obj) | perm);
    }

    /// The kernel's format; entries in the order it requires (tag, then id).
    fn encode(&self) -> Vec<u8> {
        let mut out = VERSION.to_le_bytes().to_vec();
        let mut push = |tag: u16, perm: u16, id: u32| {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&perm.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        };
        push(USER_OBJ, self.user_obj, UNDEFINED_ID);
        for (uid, perm) in &self.users {
            push(USER, *perm, *uid);
        }
        push(GROUP_OBJ, self.group_obj, UNDEFINED_ID);
        for (gid, perm) in &self.groups {
            push(GROUP, *perm, *gid);
        }
        if let Some(mask) = self.mask {
            push(MASK, mask, UNDEFINED_ID);
        }
        push(OTHER, self.other, UNDEFINED_ID);
        out
    }

    /// Parses the kernel's format; `None` for anything malformed (the kernel never stores
    /// named entries without a mask).
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (header, body) = bytes.split_first_chunk::<4>()?;
        if u32::from_le_bytes(*header) != VERSION || body.len() % 8 != 0 {
            return None;
        }
        let mut acl = Acl::from_mode(0);
        for entry in body.chunks_exact(8) {
            let tag = u16::from_le_bytes([entry[0], entry[1]]);
            let perm = u16::from_le_bytes([entry[2], entry[3]]) & 7;
            let id = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
            match tag {
                USER_OBJ => acl.user_obj = perm,
                USER => _ = acl.users.insert(id, perm),
                GROUP_OBJ => acl.group_obj = perm,
                GROUP => _ = acl.groups.insert(id, perm),
                // Kept as found: it may be narrower than the entries on purpose.
                MASK => acl.mask = Some(perm),
                OTHER => acl.other = perm,
                _ => return None,
            }
        }
        let named = !acl.users.is_empty() || !acl.groups.is_empty();
        (!named || acl.mask.is_some()).then_some(acl)
    }
}

/// Adds `perm` for every grant to the file's access ACL (read-modify-write), keeping
/// whatever entries are there and widening the mask by `perm` only. Works on an open
/// file, so it can run before the file is renamed into place.
pub fn add_to(file: &File, grants: &Grants, perm: u16) -> Result<(), AclError> {
    if grants.is_empty() {
        return Ok(());
    }
    let mode = file.metadata()?.mode();
    let mut acl = match read(file)? {
        Some(acl) => acl,
        None => Acl::from_mode(mode),
    };
    acl.grant(grants, perm);
    xattr::FileExt::set_xattr(file, XATTR_NAME, &acl.encode()).map_err(unsupported)
}

fn read(file: &File) -> Result<Option<Acl>, AclError> {
    match xattr::FileExt::get_xattr(file, XATTR_NAME) {
        Ok(Some(bytes)) if bytes.len() <= MAX_XATTR_BYTES => Ok(Acl::decode(&bytes)),
        Ok(_) => Ok(None),
        Err(e) => Err(unsupported(e)),
    }
}

/// The named entries of a file's ACL: `(id, permission bits)` per user and per group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedEntries {
    pub users: Vec<(u32, u16)>,
    pub groups: Vec<(u32, u16)>,
}

/// Reads the named user and group entries of the file's ACL, for `status` and tests.
pub fn named_entries(file: &File) -> Result<NamedEntries, AclError> {
    Ok(match read(file)? {
        Some(acl) => NamedEntries {
            users: acl.users.into_iter().collect(),
            groups: acl.groups.into_iter().collect(),
        },
        None => NamedEntries::default(),
    })
}

fn unsupported(error: io::Error) -> AclError {
    if error.raw_os_error() == Some(nix::libc::EOPNOTSUPP) {
        AclError::Unsupported
    } else {
        AclError::Io(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_in_kernel_order_with_mask() {
        let mut acl = Acl::from_mode(0o600);
        acl.grant(
            &Grants {
                users: vec![1002, 1001],
                groups: vec![50],
            },
            READ,
        );
        let bytes = acl.encode();
        let tags: Vec<u16> = bytes[4..]
            .chunks(8)
            .map(|e| u16::from_le_bytes([e[0], e[1]]))
            .collect();
        assert_eq!(tags, [USER_OBJ, USER, USER, GROUP_OBJ, GROUP, MASK, OTHER]);
        let ids: Vec<u32> = bytes[4..]
            .chunks(8)
            .map(|e| u32::from_le_bytes([e[4], e[5], e[6], e[7]]))
            .collect();
        assert_eq!(&ids[1..3], &[1001, 1002]);
        assert_eq!(Acl::decode(&bytes), Some(acl));
    }

    /// `(tag, perm, id)` of every entry of an encoded ACL.
    fn entries(bytes: &[u8]) -> Vec<(u16, u16, u32)> {
        bytes[4..]
            .chunks(8)
            .map(|e| {
                (
                    u16::from_le_bytes([e[0], e[1]]),
                    u16::from_le_bytes([e[2], e[3]]),
                    u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
                )
            })
            .collect()
    }

    fn mask_of(bytes: &[u8]) -> Option<u16> {
        entries(bytes)
            .into_iter()
            .find(|e| e.0 == MASK)
            .map(|e| e.1)
    }

    fn user(uid: u32) -> Grants {
        Grants {
            users: vec![uid],
            groups: vec![],
        }
    }

    /// Issue 16, finding 5: a directory whose mask an administrator narrowed to `--x`
    /// (owning group `rwx`) keeps it when akvsync adds `user:<uid>:--x` for traverse;
    /// the mask used to be recomputed as `rwx`, giving the owning group write.
    #[test]
    fn an_existing_mask_gains_only_the_granted_bits() {
        let mut narrowed = Acl::from_mode(0o770);
        narrowed.groups.insert(50, 7);
        narrowed.mask = Some(EXECUTE);
        let stored = narrowed.encode();
        assert_eq!(mask_of(&stored), Some(EXECUTE));

        let mut acl = Acl::decode(&stored).unwrap();
        acl.grant(&user(1001), EXECUTE);
        let bytes = acl.encode();
        assert_eq!(mask_of(&bytes), Some(EXECUTE), "no bit beyond --x");
        assert_eq!(
            entries(&bytes),
            [
                (USER_OBJ, 7, UNDEFINED_ID),
                (USER, EXECUTE, 1001),
                (GROUP_OBJ, 7, UNDEFINED_ID),
                (GROUP, 7, 50),
                (MASK, EXECUTE, UNDEFINED_ID),
                (OTHER, 0, UNDEFINED_ID),
            ]
        );

        // Granting read widens it by read, never by write.
        let mut acl = Acl::decode(&bytes).unwrap();
        acl.grant(&user(1002), READ);
        assert_eq!(mask_of(&acl.encode()), Some(READ | EXECUTE));

        // A mask of nothing gains exactly the grant.
        let mut none = Acl::from_mode(0o770);
        none.groups.insert(50, 7);
        none.mask = Some(0);
        let mut acl = Acl::decode(&none.encode()).unwrap();
        acl.grant(&user(1001), EXECUTE);
        assert_eq!(mask_of(&acl.encode()), Some(EXECUTE));
    }

    /// Without an ACL the mask is the file's group bits plus the grant: the owning
    /// group's class keeps exactly what the mode gave it.
    #[test]
    fn a_plain_mode_gets_its_group_bits_plus_the_grant_as_mask() {
        for (mode, perm, mask) in [
            (0o700, EXECUTE, EXECUTE),
            (0o750, EXECUTE, READ | EXECUTE),
            (0o710, EXECUTE, EXECUTE),
            (0o770, EXECUTE, 7),
            (0o600, READ, READ),
            (0o640, READ, READ),
            (0o620, READ, READ | 2),
        ] {
            let mut acl = Acl::from_mode(mode);
            acl.grant(&user(1001), perm);
            let bytes = acl.encode();
            assert_eq!(mask_of(&bytes), Some(mask), "mode {mode:o}");
            let group_obj = entries(&bytes)
                .into_iter()
                .find(|e| e.0 == GROUP_OBJ)
                .unwrap()
                .1;
            assert_eq!(group_obj, ((mode >> 3) & 7) as u16, "mode {mode:o}");
        }
        // Nothing granted: the ACL stays minimal.
        let mut acl = Acl::from_mode(0o750);
        acl.grant(&Grants::default(), EXECUTE);
        assert_eq!(mask_of(&acl.encode()), None);
    }

    #[test]
    fn named_entries_without_a_mask_are_malformed() {
        let mut acl = Acl::from_mode(0o700);
        acl.users.insert(1001, READ);
        assert_eq!(Acl::decode(&acl.encode()), None);
    }

    #[test]
    fn plain_mode_has_no_mask() {
        let bytes = Acl::from_mode(0o700).encode();
        assert_eq!(bytes.len(), 4 + 3 * 8);
        assert_eq!(Acl::decode(&bytes[..7]), None);
    }
}
