//! The trust rule for a path component (pure, tested on every platform): may akvsync write
//! below this directory, or follow this symlink, without another account being able to
//! choose where the write lands?

/// What `lstat`/`fstat` says about one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits including the sticky bit (`st_mode & 0o7777`).
    pub mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Directory,
    Symlink,
    Other,
}

/// Why a component is refused; the message names the account that could redirect writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotADirectory,
    /// Owned by an account that is neither root nor us.
    ForeignOwner {
        uid: u32,
    },
    /// Writable by the group or by everyone (and not a sticky directory).
    WritableByOthers {
        mode: u32,
    },
    /// A symlink owned by another account (e.g. planted in a sticky directory).
    ForeignSymlink {
        uid: u32,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotADirectory => write!(f, "it is not a directory"),
            Refusal::ForeignOwner { uid } => write!(
                f,
                "it is owned by uid {uid}, which is neither root nor the account akvsync runs as; \
                 that account could redirect akvsync's writes (make root own it)"
            ),
            Refusal::WritableByOthers { mode } => write!(
                f,
                "its mode {mode:04o} lets other accounts create or replace entries in it \
                 (remove group and other write, or set the sticky bit)"
            ),
            Refusal::ForeignSymlink { uid } => write!(
                f,
                "it is a symlink owned by uid {uid}, not by root or the account akvsync runs as"
            ),
        }
    }
}

/// The verdict on one component reached from a trusted parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A trusted directory; `shared`: others may add entries (sticky, world-writable), so
    /// each child must be checked for its owner before it is used.
    Directory { shared: bool },
    /// A symlink we may follow.
    FollowLink,
}

fn trusted_owner(uid: u32, euid: u32) -> bool {
    uid == 0 || uid == euid
}

/// Judges a component. `parent_shared`: the directory it was found in is a sticky,
/// world-writable one (its entries may have been made by anyone). `euid`: this process.
pub fn judge(meta: Meta, euid: u32, parent_shared: bool) -> Result<Verdict, Refusal> {
    match meta.kind {
        Kind::Symlink => {
            // A link in a directory only trusted accounts can write was made by one of them;
            // in a shared directory only its owner says who made it.
            if trusted_owner(meta.uid, euid) || !parent_shared {
                Ok(Verdict::FollowLink)
            } else {
                Err(Refusal::ForeignSymlink { uid: meta.uid })
            }
        }
        Kind::Other => Err(Refusal::NotADirectory),
        Kind::Directory => {
            if !trusted_owner(meta.uid, euid) {
                return Err(Refusal::ForeignOwner { uid: meta.uid });
            }
            let others_write = meta.mode & 0o022 != 0;
            let sticky = meta.mode & 0o1000 != 0;
            if others_write && !sticky {
                return Err(Refusal::WritableByOthers {
                    mode: meta.mode & 0o7777,
                });
            }
            Ok(Verdict::Directory {
                shared: others_write,
            })
        }
    }
}

/// Windows: the DACL of a private directory akvsync creates (`%ProgramData%\\akvsync`):
/// protected (nothing inherited from `%ProgramData%`, which lets Users create files), SYSTEM
/// and Administrators full control, for the directory and everything below it.
pub const WINDOWS_PRIVATE_DACL: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

/// Windows: may akvsync use an existing private directory owned by `owner` (a SID string)?
/// Only when SYSTEM, Administrators or the account akvsync runs as owns it: a directory
/// another account created first could redirect akvsync's writes (junctions, links).
pub fn windows_owner_trusted(owner: &str, this_account: Option<&str>) -> bool {
    const SYSTEM: &str = "S-1-5-18";
    const ADMINISTRATORS: &str = "S-1-5-32-544";
    owner.eq_ignore_ascii_case(SYSTEM)
        || owner.eq_ignore_ascii_case(ADMINISTRATORS)
        || this_account.is_some_and(|me| owner.eq_ignore_ascii_case(me))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_private_directories_trust_system_administrators_and_us_only() {
        assert!(windows_owner_trusted("S-1-5-18", None));
        assert!(windows_owner_trusted("s-1-5-32-544", None));
        assert!(windows_owner_trusted(
            "S-1-5-21-1-2-3-1000",
            Some("S-1-5-21-1-2-3-1000")
        ));
        // Users, Authenticated Users, another account: refused.
        assert!(!windows_owner_trusted("S-1-5-32-545", None));
        assert!(!windows_owner_trusted("S-1-5-11", Some("S-1-5-18")));
        assert!(!windows_owner_trusted(
            "S-1-5-21-1-2-3-1001",
            Some("S-1-5-21-1-2-3-1000")
        ));
        assert!(
            WINDOWS_PRIVATE_DACL.starts_with("D:P("),
            "protected: nothing inherited"
        );
    }

    fn dir(uid: u32, mode: u32) -> Meta {
        Meta {
            kind: Kind::Directory,
            uid,
            gid: 0,
            mode,
        }
    }

    fn link(uid: u32) -> Meta {
        Meta {
            kind: Kind::Symlink,
            uid,
            gid: 0,
            mode: 0o777,
        }
    }

    #[test]
    fn table() {
        let me = 998;
        let cases: &[(Meta, bool, Result<Verdict, Refusal>)] = &[
            (
                dir(0, 0o755),
                false,
                Ok(Verdict::Directory { shared: false }),
            ),
            (
                dir(me, 0o700),
                false,
                Ok(Verdict::Directory { shared: false }),
            ),
            (
                dir(1000, 0o755),
                false,
                Err(Refusal::ForeignOwner { uid: 1000 }),
            ),
            (
                dir(0, 0o775),
                false,
                Err(Refusal::WritableByOthers { mode: 0o775 }),
            ),
            (
                dir(0, 0o757),
                false,
                Err(Refusal::WritableByOthers { mode: 0o757 }),
            ),
            (
                dir(0, 0o1777),
                false,
                Ok(Verdict::Directory { shared: true }),
            ),
            (
                dir(1000, 0o1777),
                false,
                Err(Refusal::ForeignOwner { uid: 1000 }),
            ),
            (link(0), true, Ok(Verdict::FollowLink)),
            (link(me), true, Ok(Verdict::FollowLink)),
            (link(1000), true, Err(Refusal::ForeignSymlink { uid: 1000 })),
            // In a directory nobody else can write, the link's owner does not matter.
            (link(1000), false, Ok(Verdict::FollowLink)),
            (
                Meta {
                    kind: Kind::Other,
                    uid: 0,
                    gid: 0,
                    mode: 0o644,
                },
                false,
                Err(Refusal::NotADirectory),
            ),
        ];
        for (meta, shared, expected) in cases {
            assert_eq!(
                &judge(*meta, me, *shared),
                expected,
                "{meta:?} shared={shared}"
            );
        }
    }

    #[test]
    fn refusals_name_the_account() {
        let text = Refusal::ForeignOwner { uid: 1000 }.to_string();
        assert!(text.contains("uid 1000"), "{text}");
        let text = Refusal::WritableByOthers { mode: 0o775 }.to_string();
        assert!(text.contains("0775"), "{text}");
    }
}
