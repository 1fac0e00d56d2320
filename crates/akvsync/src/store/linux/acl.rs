//! POSIX ACLs for the Linux store: resolving `acls` users and groups, and reading and
//! writing the `system.posix_acl_access` extended attribute in the kernel's binary format
//! (`linux/posix_acl_xattr.h`), so that no C library (libacl) is needed.

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
}

impl Acl {
    fn from_mode(mode: u32) -> Self {
        Acl {
            user_obj: ((mode >> 6) & 7) as u16,
            group_obj: ((mode >> 3) & 7) as u16,
            other: (mode & 7) as u16,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
        }
    }

    fn grant(&mut self, grants: &Grants, perm: u16) {
        for uid in &grants.users {
            *self.users.entry(*uid).or_insert(0) |= perm;
        }
        for gid in &grants.groups {
            *self.groups.entry(*gid).or_insert(0) |= perm;
        }
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
        if !self.users.is_empty() || !self.groups.is_empty() {
            let mask = self
                .users
                .values()
                .chain(self.groups.values())
                .fold(self.group_obj, |m, p| m | p);
            push(MASK, mask, UNDEFINED_ID);
        }
        push(OTHER, self.other, UNDEFINED_ID);
        out
    }

    /// Parses the kernel's format; `None` for anything malformed.
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
                // The mask is derived from the named entries and recomputed on write.
                MASK => {}
                OTHER => acl.other = perm,
                _ => return None,
            }
        }
        Some(acl)
    }
}

/// Adds `perm` for every grant to the file's access ACL (read-modify-write), keeping
/// whatever entries are there. Works on an open file, so it can run before the file is
/// renamed into place.
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

    #[test]
    fn plain_mode_has_no_mask() {
        let bytes = Acl::from_mode(0o700).encode();
        assert_eq!(bytes.len(), 4 + 3 * 8);
        assert_eq!(Acl::decode(&bytes[..7]), None);
    }
}
