//! `akvsync.outputs`: the files applications read (separate key, chain without the root,
//! PKCS#12 with a password, group-readable modes), parsed per set here and checked against
//! the observed certificates in [`check`]: every filter names a certificate, every file
//! name rendered from a template is one plain name, unique in its directory and clear of
//! the store's own names, and no file holding a key is readable by every account.
//! Linear in the number of certificates × sets (sets are bounded).

use std::collections::HashMap;

use super::diag::{Diagnostics, JsonPath};
use super::fields::{self, ObjectReader, quote};
use super::json::Json;
use super::model::{OutputKind, OutputSet, PfxPassword, Platform, Settings, Target};
use super::vault_url;

/// Output sets per settings file: a handful per server in practice; the bound keeps the
/// certificates × sets check linear in the file's size.
pub const MAX_OUTPUT_SETS: usize = 64;
/// File names are one path component of at most this many bytes.
const MAX_NAME_BYTES: usize = 255;

/// A `certificates` filter entry: `<vault>/<secret>`, or `<vault host>/<secret>` (the
/// vault's full host name, e.g. `myvault.vault.azure.net/web`); lowercase `<vault>/<secret>`.
pub fn certificate_filter(name: &str) -> Option<String> {
    let (vault, secret) = name.split_once('/')?;
    if vault.is_empty() || secret.is_empty() || secret.contains('/') {
        return None;
    }
    let vault = match vault_url::parse_vault_host(vault) {
        Ok((vault_name, _)) => vault_name,
        Err(_) if !vault.contains('.') => vault.to_ascii_lowercase(),
        Err(_) => return None,
    };
    Some(format!("{vault}/{}", secret.to_ascii_lowercase()))
}

/// Reads `certificates` filters into `out`, each an error when malformed.
pub fn read_filters(value: &Json, path: &JsonPath, diags: &mut Diagnostics, out: &mut Vec<String>) {
    let Some(items) = fields::array(value, path, diags) else {
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let item_path = path.index(i);
        if let Some(name) = fields::nonblank_string(item, &item_path, diags) {
            match certificate_filter(name) {
                Some(filter) => out.push(filter),
                None => diags.error(
                    &item_path,
                    format!(
                        "expected \"<vault>/<secret>\" (or \"<vault>.vault.azure.net/<secret>\"), found {}",
                        quote(name)
                    ),
                ),
            }
        }
    }
}

/// `akvsync.outputs`.
pub fn parse(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> Vec<OutputSet> {
    let Some(items) = fields::array(value, path, diags) else {
        return Vec::new();
    };
    if items.len() > MAX_OUTPUT_SETS {
        diags.error(
            path,
            format!(
                "at most {MAX_OUTPUT_SETS} output sets, found {}",
                items.len()
            ),
        );
        return Vec::new();
    }
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| output_set(item, &path.index(i), diags))
        .collect()
}

fn output_set(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> Option<OutputSet> {
    let mut reader = ObjectReader::new(value, path, diags)?;
    let errors_before = diags.errors.len();
    let mut set = OutputSet {
        certificates: Vec::new(),
        certificate_set: Default::default(),
        directory: None,
        files: Vec::new(),
        pfx_password: None,
        owner: None,
        group: None,
        mode: 0,
        accounts: Vec::new(),
    };
    if let Some((value, path)) = reader.take("certificates", diags) {
        read_filters(value, &path, diags, &mut set.certificates);
        set.certificate_set = set.certificates.iter().cloned().collect();
    }
    if let Some((value, path)) = reader.take("directory", diags)
        && let Some(dir) = fields::nonblank_string(value, &path, diags)
    {
        if absolute(dir) {
            set.directory = Some(dir.to_owned());
        } else {
            diags.error(
                &path,
                format!("must be an absolute path, found {}", quote(dir)),
            );
        }
    }
    if let Some((value, path)) = reader.require("files", diags) {
        set.files = files(value, &path, diags);
    }
    if let Some((value, path)) = reader.take("pfxPassword", diags) {
        set.pfx_password = pfx_password(value, &path, diags);
        if set.pfx_password.is_some() && !set.files.iter().any(|(k, _)| *k == OutputKind::Pfx) {
            diags.warn(&path, "ignored: \"files\" has no \"pfx\"");
        }
    }
    for (field, slot) in [("owner", &mut set.owner), ("group", &mut set.group)] {
        if let Some((value, path)) = reader.take(field, diags)
            && let Some(name) = fields::nonblank_string(value, &path, diags)
        {
            if account_name(name) {
                *slot = Some(name.to_owned());
            } else {
                diags.error(
                    &path,
                    format!("{} is not an account name or id", quote(name)),
                );
            }
        }
    }
    let mut mode_path = path.field("mode");
    let mut mode = None;
    if let Some((value, path)) = reader.take("mode", diags) {
        mode = parse_mode(value, &path, diags);
        mode_path = path;
    }
    if let Some((value, path)) = reader.take("accounts", diags)
        && let Some(items) = fields::array(value, &path, diags)
    {
        for (i, item) in items.iter().enumerate() {
            if let Some(name) = fields::nonblank_string(item, &path.index(i), diags) {
                set.accounts.push(name.to_owned());
            }
        }
    }
    reader.finish(diags);
    let holds_key = set.holds_key();
    set.mode = mode.unwrap_or(if holds_key { 0o600 } else { 0o644 });
    if holds_key && set.mode & 0o007 != 0 {
        diags.error(
            &mode_path,
            format!(
                "{:04o} lets every account read or write a file holding the private key; \
                 use a group (e.g. \"group\": \"ssl-cert\", \"mode\": \"0640\")",
                set.mode
            ),
        );
    }
    (diags.errors.len() == errors_before).then_some(set)
}

fn absolute(path: &str) -> bool {
    path.starts_with('/')
        || (path.len() >= 3 && path.as_bytes()[0].is_ascii_alphabetic() && &path[1..3] == ":\\")
}

fn account_name(name: &str) -> bool {
    name.len() <= 256
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "._-$@\\ ".contains(c))
}

/// `"0640"`, `"640"` or the number 640 read as octal digits; 3 or 4 octal digits, no
/// setuid/setgid/sticky bits.
fn parse_mode(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> Option<u32> {
    let text = match value {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.to_string(),
        _ => {
            diags.error(path, "expected an octal mode such as \"0640\"");
            return None;
        }
    };
    let digits = text
        .strip_prefix('0')
        .filter(|d| d.len() == 3)
        .unwrap_or(&text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if digits.len() == 3 && mode <= 0o777 => Some(mode),
        _ => {
            diags.error(
                path,
                format!(
                    "expected an octal mode such as \"0640\", found {}",
                    quote(&text)
                ),
            );
            None
        }
    }
}

fn files(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> Vec<(OutputKind, String)> {
    let Some(mut reader) = ObjectReader::new(value, path, diags) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for kind in OutputKind::ALL {
        if let Some((value, path)) = reader.take(kind.name(), diags)
            && let Some(template) = fields::nonblank_string(value, &path, diags)
        {
            match check_template(template) {
                Ok(()) => files.push((kind, template.to_owned())),
                Err(message) => diags.error(&path, message),
            }
        }
    }
    reader.finish(diags);
    if files.is_empty() {
        diags.error(
            path,
            "needs at least one of \"cert\", \"chain\", \"fullchain\", \"key\", \"pem\", \"pfx\"",
        );
    }
    files
}

/// A template may use `{vault}` and `{secret}`; anything else in braces is an error.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("{}: unclosed \"{{\"", quote(template)));
        };
        let field = &after[..close];
        if field != "vault" && field != "secret" {
            return Err(format!(
                "{}: unknown placeholder {{{field}}}; templates take {{vault}} and {{secret}}",
                quote(template)
            ));
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("{}: unmatched \"}}\"", quote(template)));
    }
    // The placeholders' values are plain names, so a template that is plain with them
    // replaced by "x" renders plain names.
    check_file_name(&render_template(template, "x", "x"))
        .map_err(|m| format!("{}: {m}", quote(template)))
}

/// The file name a template gives for a certificate.
pub fn render_template(template: &str, vault: &str, secret: &str) -> String {
    template
        .replace("{vault}", vault)
        .replace("{secret}", secret)
}

/// One plain, visible file name.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!("a file name must be 1 to {MAX_NAME_BYTES} bytes"));
    }
    if name.contains('/') || name.contains('\\') || name.contains('\0') {
        return Err("must be a file name, not a path".to_owned());
    }
    if name.starts_with('.') {
        return Err("must not be a hidden name (akvsync keeps its own files there)".to_owned());
    }
    if name.chars().any(fields::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}

fn pfx_password(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> Option<PfxPassword> {
    let mut reader = ObjectReader::new(value, path, diags)?;
    let file = reader.take("file", diags);
    let secret = reader.take("secret", diags);
    reader.finish(diags);
    match (file, secret) {
        (Some((value, path)), None) => {
            let file = fields::nonblank_string(value, &path, diags)?;
            if absolute(file) {
                Some(PfxPassword::File(file.to_owned()))
            } else {
                diags.error(
                    &path,
                    format!("must be an absolute path, found {}", quote(file)),
                );
                None
            }
        }
        (None, Some((value, path))) => {
            let url = fields::nonblank_string(value, &path, diags)?;
            match vault_url::parse(url) {
                Ok(secret) => Some(PfxPassword::Secret(secret)),
                Err(message) => {
                    diags.error(&path, message);
                    None
                }
            }
        }
        _ => {
            diags.error(path, "needs exactly one of \"file\" or \"secret\"");
            None
        }
    }
}

/// Cross-checks the output sets against the observed certificates (after both are read).
pub fn check(settings: &Settings, root: &JsonPath, diags: &mut Diagnostics) {
    let outputs = &settings.akvsync.outputs;
    if outputs.is_empty() {
        return;
    }
    let base = root.field("akvsync").field("outputs");
    let observed: HashMap<String, usize> = settings
        .certificates
        .iter()
        .enumerate()
        .map(|(i, c)| (filter_name(c), i))
        .collect();
    for (index, set) in outputs.iter().enumerate() {
        for (i, name) in set.certificates.iter().enumerate() {
            if !observed.contains_key(name) {
                diags.error(
                    &base.index(index).field("certificates").index(i),
                    format!("{} names no observed certificate", quote(name)),
                );
            }
        }
        if settings.platform == Platform::Windows {
            diags.error(
                &base.index(index),
                "outputs are written on Linux only in this version (Windows: planned, with \
                 a DACL per file); use the certificate store",
            );
        }
    }
    // Store names per directory: link names and custom links (version files are
    // `<link>.<32 hex>`, which a template cannot collide with unless it ends so).
    let mut taken: HashMap<(String, String), String> = HashMap::new();
    for certificate in &settings.certificates {
        if let Target::LinuxDirectory(t) = &certificate.target {
            let dir = normalize_dir(&t.directory);
            for link in std::iter::once(&t.link_name).chain(t.custom_link_name.as_ref()) {
                taken.insert(
                    (dir.clone(), link.clone()),
                    "the store's own link".to_owned(),
                );
            }
        }
    }
    let names: Vec<String> = settings.certificates.iter().map(filter_name).collect();
    for (index, set) in outputs.iter().enumerate() {
        let set_path = base.index(index);
        for (certificate, name) in settings.certificates.iter().zip(&names) {
            if !set.applies_to(name) {
                continue;
            }
            let directory = match (&set.directory, &certificate.target) {
                (Some(dir), _) => normalize_dir(dir),
                (None, Target::LinuxDirectory(t)) => normalize_dir(&t.directory),
                (None, Target::WindowsStore(_)) => {
                    diags.error(
                        &set_path.field("directory"),
                        "required on Windows (there is no store directory)",
                    );
                    break;
                }
            };
            for (kind, template) in &set.files {
                let file = render_template(
                    template,
                    &certificate.secret.vault_name,
                    &certificate.secret.secret_name,
                );
                let path = set_path.field("files").field(kind.name());
                if let Err(message) = check_file_name(&file) {
                    diags.error(&path, format!("{} for {name}: {message}", quote(&file)));
                    continue;
                }
                if looks_like_version_file(&file) {
                    diags.error(
                        &path,
                        format!(
                            "{} for {name} has the form of a store version file",
                            quote(&file)
                        ),
                    );
                    continue;
                }
                let owner = format!("{name}'s {} in outputs[{index}]", kind.name());
                if let Some(other) = taken.insert((directory.clone(), file.clone()), owner) {
                    diags.error(
                        &path,
                        format!(
                            "{} in {directory} for {name} is already {other}; each output file \
                             needs its own name (use {{vault}} and {{secret}} in the template)",
                            quote(&file)
                        ),
                    );
                }
            }
        }
    }
}

/// `<vault>/<secret>`, lowercase, as filters are written.
pub fn filter_name(certificate: &super::model::ObservedCertificate) -> String {
    format!(
        "{}/{}",
        certificate.secret.vault_name,
        certificate.secret.secret_name.to_ascii_lowercase()
    )
}

fn normalize_dir(dir: &str) -> String {
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

fn looks_like_version_file(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, v)| {
        v.len() == 32 && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_take_the_vault_name_or_its_host() {
        assert_eq!(
            certificate_filter("MyVault/Web").as_deref(),
            Some("myvault/web")
        );
        assert_eq!(
            certificate_filter("myvault.vault.azure.net/web").as_deref(),
            Some("myvault/web")
        );
        assert_eq!(
            certificate_filter("myvault.vault.azure.cn/web").as_deref(),
            Some("myvault/web")
        );
        for bad in ["web", "/web", "myvault/", "a/b/c", "evil.example.com/web"] {
            assert_eq!(certificate_filter(bad), None, "{bad}");
        }
    }

    #[test]
    fn templates() {
        assert!(check_template("{secret}.crt").is_ok());
        assert!(check_template("{vault}-{secret}.key").is_ok());
        assert!(check_template("tls.crt").is_ok());
        for bad in [
            "{name}.crt",
            "{secret",
            "x}",
            "../{secret}",
            "a/{secret}",
            ".{secret}",
            "{secret}\u{7}",
        ] {
            assert!(check_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes() {
        let mut diags = Diagnostics::default();
        let path = JsonPath::root();
        assert_eq!(
            parse_mode(&Json::String("0640".into()), &path, &mut diags),
            Some(0o640)
        );
        assert_eq!(
            parse_mode(&Json::String("600".into()), &path, &mut diags),
            Some(0o600)
        );
        assert!(diags.errors.is_empty());
        for bad in ["0999", "4755", "64", "rw-r-----", "00640"] {
            assert_eq!(
                parse_mode(&Json::String(bad.into()), &path, &mut diags),
                None,
                "{bad}"
            );
        }
    }
}
