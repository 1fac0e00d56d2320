//! Store targets: Windows store location/name/accounts and Linux directory/link/ACL
//! values, each validated on its own (SPEC §1.3, §5).

use super::diag::{Diagnostics, JsonPath};
use super::fields::{self, ObjectReader, quote};
use super::json::Json;
use super::model::{AclEntry, StoreLocation};

/// Longest name accepted for stores, accounts, users, groups and links: the usual
/// 255-byte file-name limit, far above any real account or store name.
const MAX_NAME_LEN: usize = 255;

/// Prefix of akvsync's temporary files in a store directory (SPEC §10); reserved.
pub use crate::safefs::TEMP_PREFIX;

/// `certificateStoreLocation` on Windows: exactly `LocalMachine` or `CurrentUser`.
pub fn windows_location(
    value: &Json,
    path: &JsonPath,
    diags: &mut Diagnostics,
) -> Option<StoreLocation> {
    let text = fields::string(value, path, diags)?;
    match text {
        "LocalMachine" => Some(StoreLocation::LocalMachine),
        "CurrentUser" => Some(StoreLocation::CurrentUser),
        other => {
            diags.error(
                path,
                format!(
                    "must be \"LocalMachine\" or \"CurrentUser\" (case-sensitive), found {}",
                    quote(other)
                ),
            );
            None
        }
    }
}

/// `certificateStoreName`: a system store name.
pub fn windows_store_name(
    value: &Json,
    path: &JsonPath,
    diags: &mut Diagnostics,
) -> Option<String> {
    let text = fields::nonblank_string(value, path, diags)?;
    if text.len() > MAX_NAME_LEN || text.contains('\\') || text.chars().any(fields::is_control) {
        diags.error(
            path,
            format!("store name {} must be at most {MAX_NAME_LEN} characters without backslashes or control characters", quote(text)),
        );
        return None;
    }
    if let Some(name) = system_store_of_display_name(text) {
        diags.warn(
            path,
            format!(
                "{} is how certlm.msc shows the store named \"{name}\"; a store named {} would be a new, separate store (use \"{name}\")",
                quote(text),
                quote(text)
            ),
        );
    }
    Some(text.to_owned())
}

/// The system store behind a name the certificate snap-in displays.
fn system_store_of_display_name(text: &str) -> Option<&'static str> {
    const DISPLAY: [(&str, &str); 7] = [
        ("Personal", "MY"),
        ("Trusted Root Certification Authorities", "Root"),
        ("Trusted Root", "Root"),
        ("Intermediate Certification Authorities", "CA"),
        ("Web Hosting", "WebHosting"),
        ("Trusted People", "TrustedPeople"),
        ("Trusted Publishers", "TrustedPublisher"),
    ];
    DISPLAY
        .iter()
        .find(|(display, _)| display.eq_ignore_ascii_case(text.trim()))
        .map(|(_, name)| *name)
}

/// `accounts`: account names (or SID strings) to get read access to the private key.
pub fn accounts(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> Option<Vec<String>> {
    let items = fields::array(value, path, diags)?;
    let mut names = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        let item_path = path.index(index);
        match fields::nonblank_string(item, &item_path, diags) {
            Some(name) if valid_principal(name) => names.push(name.trim().to_owned()),
            Some(name) => {
                ok = false;
                diags.error(&item_path, principal_error("account", name));
            }
            None => ok = false,
        }
    }
    ok.then_some(names)
}

/// `certificateStoreLocation` on Linux: an absolute directory, returned normalised
/// (no `.` components, no repeated or trailing slashes). `..` is refused outright.
pub fn linux_directory(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> Option<String> {
    let text = fields::nonblank_string(value, path, diags)?;
    if !text.starts_with('/') {
        diags.error(
            path,
            format!(
                "expected an absolute directory path on linux, found {}",
                quote(text)
            ),
        );
        return None;
    }
    if text.chars().any(fields::is_control) {
        diags.error(
            path,
            format!("directory {} contains control characters", quote(text)),
        );
        return None;
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                diags.error(
                    path,
                    format!(
                        "directory {} must not contain \"..\" components",
                        quote(text)
                    ),
                );
                return None;
            }
            part => parts.push(part),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// `customSymbolicLinkName`: one plain file name inside the store directory.
pub fn link_name(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> Option<String> {
    let text = fields::nonblank_string(value, path, diags)?;
    let problem = if text == "." || text == ".." {
        Some("must not be \".\" or \"..\"")
    } else if text.contains('/') {
        Some("must be a file name, without \"/\"")
    } else if text.chars().any(fields::is_control) {
        Some("must not contain control characters")
    } else if text.len() > MAX_NAME_LEN {
        Some("must be at most 255 bytes")
    } else if text.starts_with(TEMP_PREFIX) {
        Some("must not start with \".akvsync-tmp-\", which akvsync reserves for temporary files")
    } else {
        None
    };
    match problem {
        Some(problem) => {
            diags.error(path, format!("link name {} {problem}", quote(text)));
            None
        }
        None => Some(text.to_owned()),
    }
}

/// `acls`: entries with a `user`, a `group` or both. Names are not resolved here: a
/// missing user is an install-time error of that certificate (SPEC §10).
pub fn acls(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> Option<Vec<AclEntry>> {
    let items = fields::array(value, path, diags)?;
    let mut entries = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        let item_path = path.index(index);
        let Some(mut reader) = ObjectReader::new(item, &item_path, diags) else {
            ok = false;
            continue;
        };
        let user = reader.take("user", diags);
        let group = reader.take("group", diags);
        reader.finish(diags);
        let mut principal = |taken: Option<(&Json, JsonPath)>, kind: &str| -> Option<String> {
            let (value, path) = taken?;
            let name = fields::nonblank_string(value, &path, diags);
            match name {
                Some(name) if valid_principal(name) => Some(name.trim().to_owned()),
                Some(name) => {
                    diags.error(&path, principal_error(kind, name));
                    ok = false;
                    None
                }
                None => {
                    ok = false;
                    None
                }
            }
        };
        let had_any = user.is_some() || group.is_some();
        let entry = AclEntry {
            user: principal(user, "user"),
            group: principal(group, "group"),
        };
        if !had_any {
            diags.error(&item_path, "needs a \"user\", a \"group\" or both");
            ok = false;
        } else if entry.user.is_some() || entry.group.is_some() {
            entries.push(entry);
        }
    }
    ok.then_some(entries)
}

/// Account, user and group names: any printable text up to 255 characters (domain
/// accounts have spaces and backslashes), except the `:` and `,` that ACL syntax uses.
fn valid_principal(name: &str) -> bool {
    let name = name.trim();
    name.chars().count() <= MAX_NAME_LEN
        && !name
            .chars()
            .any(|c| fields::is_control(c) || c == ':' || c == ',')
}

fn principal_error(kind: &str, name: &str) -> String {
    format!(
        "{kind} name {} must be at most {MAX_NAME_LEN} characters without control characters, \":\" or \",\"",
        quote(name)
    )
}
