//! The Linux directory store on real files: layout, modes, atomic links, retention,
//! refusal to clobber foreign files, cleanup of temporaries, and POSIX ACLs checked by
//! reading as an unprivileged user and with `getfacl` (a grant never widens the mask)
//! (root only; CI runs as root with the `acl` package).
#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use crate::common::Scratch;
use crate::common::store_view::{mode, names, owner};
use crate::common::users::{as_user, ensure_user, skip_unless_root};
use akvsync::settings::{AclEntry, LinuxTarget};
use akvsync::store::linux::{self, NewVersion, StoreError};

const V1: &str = "0123456789abcdef0123456789abcdef";
const V2: &str = "fedcba9876543210fedcba9876543210";
const V3: &str = "00000000000000000000000000000003";

fn target(dir: &Path, custom: Option<&str>, acls: Vec<AclEntry>) -> LinuxTarget {
    LinuxTarget {
        directory: dir.to_str().unwrap().to_owned(),
        link_name: "myvault.web".to_owned(),
        custom_link_name: custom.map(str::to_owned),
        acls,
    }
}

fn version<'a>(v: &'a str, pem: &'a [u8]) -> NewVersion<'a> {
    NewVersion {
        vault_name: "myvault",
        secret_name: "web",
        version: v,
        pem,
    }
}

#[test]
fn installs_versions_behind_atomic_absolute_links() {
    let tmp = Scratch::new("layout");
    let dir = tmp.0.join("nested/store");
    let t = target(&dir, Some("web.pem"), vec![]);

    let first = linux::install(&t, &version(V1, b"PEM ONE")).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(first.path, dir.join(format!("myvault.web.{V1}")));
    assert_eq!(mode(&first.path), 0o600);
    assert_eq!(fs::read(dir.join("myvault.web")).unwrap(), b"PEM ONE");
    assert_eq!(fs::read_link(dir.join("web.pem")).unwrap(), first.path);
    assert!(
        fs::read_link(dir.join("myvault.web"))
            .unwrap()
            .is_absolute()
    );
    assert_eq!(linux::current_version(&t).as_deref(), Some(V1));

    let second = linux::install(&t, &version(V2, b"PEM TWO")).unwrap();
    assert_eq!(fs::read(dir.join("web.pem")).unwrap(), b"PEM TWO");
    assert_eq!(
        fs::read(&first.path).unwrap(),
        b"PEM ONE",
        "the previous version stays"
    );
    assert_eq!(linux::current_version(&t).as_deref(), Some(V2));
    assert_eq!(
        second.links,
        vec![dir.join("myvault.web"), dir.join("web.pem")]
    );
    assert_eq!(
        names(&dir),
        vec![
            "myvault.web".to_owned(),
            format!("myvault.web.{V1}"),
            format!("myvault.web.{V2}"),
            "web.pem".to_owned()
        ]
    );
}

#[test]
fn prunes_only_owned_versions_outside_the_keep_list() {
    let tmp = Scratch::new("prune");
    let t = target(&tmp.0, None, vec![]);
    for v in [V1, V2, V3] {
        linux::install(&t, &version(v, v.as_bytes())).unwrap();
    }
    let foreign = tmp.0.join("myvault.web.11111111111111111111111111111111");
    fs::write(&foreign, "not ours").unwrap();
    let owned = vec![V1.to_owned(), V2.to_owned(), V3.to_owned()];
    let removed = linux::prune(&t, &owned, &[V3, V2]).unwrap();
    assert_eq!(removed, vec![V1.to_owned()]);
    assert!(!tmp.0.join(format!("myvault.web.{V1}")).exists());
    assert!(tmp.0.join(format!("myvault.web.{V2}")).exists());
    assert!(
        foreign.exists(),
        "files akvsync did not write are never pruned"
    );
}

#[test]
fn never_clobbers_a_foreign_file_at_a_link_name() {
    let tmp = Scratch::new("foreign");
    fs::write(tmp.0.join("myvault.web"), "an admin's own file").unwrap();
    let t = target(&tmp.0, None, vec![]);
    let err = linux::install(&t, &version(V1, b"PEM")).unwrap_err();
    assert!(
        matches!(err, StoreError::ForeignFile(ref p) if p == &tmp.0.join("myvault.web")),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(tmp.0.join("myvault.web")).unwrap(),
        "an admin's own file"
    );
    assert_eq!(
        names(&tmp.0),
        vec!["myvault.web".to_owned()],
        "nothing written"
    );
}

#[test]
fn adopts_an_existing_keyvaultforlinux_link() {
    let tmp = Scratch::new("adopt");
    let old = tmp.0.join("myvault.web.5f2c3c6c.1234.PEM");
    fs::write(&old, "written by the Microsoft extension").unwrap();
    symlink(&old, tmp.0.join("myvault.web")).unwrap();
    let t = target(&tmp.0, None, vec![]);
    linux::install(&t, &version(V1, b"NEW")).unwrap();
    assert_eq!(fs::read(tmp.0.join("myvault.web")).unwrap(), b"NEW");
    assert!(old.exists(), "the old extension's file stays");
}

#[test]
fn removes_stale_temporaries_and_nothing_else() {
    let tmp = Scratch::new("temps");
    fs::write(tmp.0.join(".akvsync-tmp-1-2-3"), "half a certificate").unwrap();
    symlink("/nowhere", tmp.0.join(".akvsync-tmp-4-5-6")).unwrap();
    fs::write(tmp.0.join("keep.pem"), "x").unwrap();
    assert_eq!(linux::remove_stale_temps(&tmp.0).unwrap(), 2);
    assert_eq!(names(&tmp.0), vec!["keep.pem".to_owned()]);
}

#[test]
fn refuses_a_directory_that_is_a_file() {
    let tmp = Scratch::new("notdir");
    let file = tmp.0.join("store");
    fs::write(&file, "").unwrap();
    let err = linux::install(&target(&file, None, vec![]), &version(V1, b"PEM")).unwrap_err();
    assert!(matches!(err, StoreError::NotADirectory(_)), "{err}");
}

/// Reads `path` as `user` (uid and gid only), returning whether it succeeded.
fn can_read_as(user: &str, path: &Path) -> bool {
    let user = ensure_user(user);
    as_user(&user, "cat")
        .arg(path)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn acls_grant_read_to_listed_users_only() {
    if skip_unless_root("acls_grant_read_to_listed_users_only") {
        return;
    }
    ensure_user("akvsync-acl-reader");
    ensure_user("akvsync-acl-other");
    let tmp = Scratch::new("acl");
    // The reader must be able to reach the store directory's parent: a Scratch is 0755.
    assert_eq!(mode(&tmp.0), 0o755);
    let dir = tmp.0.join("store");
    let t = target(
        &dir,
        None,
        vec![AclEntry {
            user: Some("akvsync-acl-reader".into()),
            group: None,
        }],
    );
    let installed = linux::install(&t, &version(V1, b"SECRET PEM")).unwrap();
    let link = dir.join("myvault.web");
    assert!(
        can_read_as("akvsync-acl-reader", &link),
        "listed user reads through the link"
    );
    assert!(
        !can_read_as("akvsync-acl-other", &link),
        "an unlisted user does not"
    );
    let file = fs::File::open(&installed.path).unwrap();
    let entries = linux::acl::named_entries(&file).unwrap();
    let uid = ensure_user("akvsync-acl-reader").uid.as_raw();
    assert_eq!(entries.users, vec![(uid, linux::acl::READ)]);
    assert!(entries.groups.is_empty());
    assert_eq!(owner(&installed.path).0, 0);

    // A certificate without acls in the same directory stays private.
    let plain = LinuxTarget {
        link_name: "myvault.other".into(),
        ..target(&dir, None, vec![])
    };
    let other = linux::install(
        &plain,
        &NewVersion {
            secret_name: "other",
            ..version(V1, b"OTHER")
        },
    )
    .unwrap();
    assert!(!can_read_as("akvsync-acl-reader", &other.path));
}

/// Whether `setfacl` and `getfacl` (Debian package `acl`) are installed.
fn have_acl_tools() -> bool {
    ["setfacl", "getfacl"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

fn setfacl(args: &[&str], path: &Path) {
    let status = Command::new("setfacl")
        .args(args)
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "setfacl {args:?} {}", path.display());
}

/// The effective permissions (`rwx` form) of the ACL entry `tag` (`mask::`, `group::`,
/// `user:name:`), as `getfacl` prints them, or `None` when there is no such entry.
fn getfacl_entry(path: &Path, tag: &str) -> Option<String> {
    let out = Command::new("getfacl")
        .args(["--omit-header", "--absolute-names"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "getfacl {}", path.display());
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(tag)?;
        let (perms, effective) = match rest.split_once('#') {
            Some((perms, comment)) => (perms.trim(), comment.strip_prefix("effective:")),
            None => (rest.trim(), None),
        };
        Some(effective.unwrap_or(perms).trim().to_owned())
    })
}

/// Issue 16, finding 5: a mask an administrator narrowed on the store directory stays
/// narrow when akvsync adds its traverse entry, so the owning group gains nothing; on a
/// directory without an ACL the mask is its group bits plus traverse.
#[test]
fn an_acl_grant_never_widens_the_mask() {
    if skip_unless_root("an_acl_grant_never_widens_the_mask") {
        return;
    }
    if !have_acl_tools() {
        eprintln!(
            "SKIPPED an_acl_grant_never_widens_the_mask: needs setfacl and getfacl (package acl)"
        );
        return;
    }
    ensure_user("akvsync-acl-reader");
    let tmp = Scratch::new("acl-mask");
    assert_eq!(mode(&tmp.0), 0o755);
    let reader = vec![AclEntry {
        user: Some("akvsync-acl-reader".into()),
        group: None,
    }];

    // The owning group has rwx in its entry, but the administrator's mask allows --x.
    let narrowed = tmp.0.join("narrowed");
    fs::create_dir(&narrowed).unwrap();
    fs::set_permissions(&narrowed, fs::Permissions::from_mode(0o770)).unwrap();
    setfacl(&["-m", "m::--x"], &narrowed);
    assert_eq!(getfacl_entry(&narrowed, "mask::").as_deref(), Some("--x"));
    assert_eq!(getfacl_entry(&narrowed, "group::").as_deref(), Some("--x"));

    let t = target(&narrowed, None, reader.clone());
    let installed = linux::install(&t, &version(V1, b"SECRET PEM")).unwrap();
    assert_eq!(getfacl_entry(&narrowed, "mask::").as_deref(), Some("--x"));
    assert_eq!(
        getfacl_entry(&narrowed, "group::").as_deref(),
        Some("--x"),
        "the owning group gained nothing"
    );
    assert_eq!(
        getfacl_entry(&narrowed, "user:akvsync-acl-reader:").as_deref(),
        Some("--x")
    );
    let bits = mode(&narrowed);
    assert_eq!(bits & 0o070, 0o010, "group class bits of {bits:o}");
    assert_eq!(
        getfacl_entry(&installed.path, "mask::").as_deref(),
        Some("r--")
    );
    assert!(
        can_read_as("akvsync-acl-reader", &narrowed.join("myvault.web")),
        "traverse is enough for the listed user"
    );
    // A second install is idempotent.
    linux::install(&t, &version(V2, b"SECRET PEM 2")).unwrap();
    assert_eq!(getfacl_entry(&narrowed, "mask::").as_deref(), Some("--x"));

    // No ACL yet (mode 0750): the mask is the group's r-x plus --x, never w.
    let plain = tmp.0.join("plain");
    fs::create_dir(&plain).unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o750)).unwrap();
    assert_eq!(getfacl_entry(&plain, "mask::"), None);
    linux::install(&target(&plain, None, reader), &version(V1, b"SECRET PEM")).unwrap();
    assert_eq!(getfacl_entry(&plain, "mask::").as_deref(), Some("r-x"));
    assert_eq!(getfacl_entry(&plain, "group::").as_deref(), Some("r-x"));
    assert_eq!(mode(&plain), 0o750);
}

#[test]
fn unknown_acl_user_is_an_error_and_nothing_is_written() {
    let tmp = Scratch::new("acl-missing");
    let t = target(
        &tmp.0,
        None,
        vec![AclEntry {
            user: Some("akvsync-no-such-user-x".into()),
            group: None,
        }],
    );
    let err = linux::install(&t, &version(V1, b"PEM")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "acls: user \"akvsync-no-such-user-x\" does not exist"
    );
    assert!(names(&tmp.0).is_empty());
}
