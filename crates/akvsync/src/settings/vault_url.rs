//! Observed-certificate URLs: the strict grammar of the Key Vault hosts and secret paths
//! that akvsync will ever send a token to (SPEC §1.3).
//!
//! The grammar is hand-written rather than delegated to a general URL parser so that
//! nothing a URL library would normalise (percent-escapes, IDNA, dot segments, backslashes)
//! can change which host or which file name a URL maps to.

use std::fmt;

use serde::Serialize;

use super::fields::quote;

/// An Azure cloud, known by its Key Vault DNS suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Cloud {
    Public,
    China,
    UsGovernment,
    Germany,
}

impl Cloud {
    pub const ALL: [Cloud; 4] = [
        Cloud::Public,
        Cloud::China,
        Cloud::UsGovernment,
        Cloud::Germany,
    ];

    /// The DNS suffix of the cloud's vaults.
    pub fn suffix(self) -> &'static str {
        match self {
            Cloud::Public => "vault.azure.net",
            Cloud::China => "vault.azure.cn",
            Cloud::UsGovernment => "vault.usgovcloudapi.net",
            Cloud::Germany => "vault.microsoftazure.de",
        }
    }

    /// The token resource of the cloud's vaults, the default before a challenge names one.
    pub fn resource(self) -> String {
        format!("https://{}", self.suffix())
    }
}

/// Which REST collection the URL named. `/certificates/` URLs are served from the
/// secret of the same name, since only the secret carries the private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UrlKind {
    Secrets,
    Certificates,
}

/// A validated observed-certificate URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretUrl {
    /// The vault's first DNS label, lowercase.
    pub vault_name: String,
    pub cloud: Cloud,
    /// The secret name as written (Key Vault compares names case-insensitively).
    pub secret_name: String,
    /// A pinned version: 32 lowercase hex digits.
    pub version: Option<String>,
    pub kind: UrlKind,
}

impl SecretUrl {
    /// `<vault>.<suffix>`, lowercase.
    pub fn vault_host(&self) -> String {
        format!("{}.{}", self.vault_name, self.cloud.suffix())
    }

    /// The secret's URL as akvsync requests it (without api-version).
    pub fn secret_url(&self) -> String {
        match &self.version {
            Some(v) => format!(
                "https://{}/secrets/{}/{v}",
                self.vault_host(),
                self.secret_name
            ),
            None => format!("https://{}/secrets/{}", self.vault_host(), self.secret_name),
        }
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.secret_url())
    }
}

const EXPECTED_FORM: &str = "https://<vault>.vault.azure.net/secrets/<name>";

/// Parses and validates an observed-certificate URL; the error is a message for the user.
pub fn parse(url: &str) -> Result<SecretUrl, String> {
    if url.is_empty() {
        return Err(format!("must not be empty; expected {EXPECTED_FORM}"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{} contains spaces or control characters",
            quote(url)
        ));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{} is not an absolute URL; expected {EXPECTED_FORM}",
            quote(url)
        ));
    };
    // Every problem of the URL at once (a URL copied from the portal with several of them
    // is fixed in one edit, not one per validation run).
    let mut problems = Vec::new();
    if !scheme.eq_ignore_ascii_case("https") {
        problems.push(format!("scheme must be \"https\", found {}", quote(scheme)));
    }
    let (rest, query_or_fragment) = match rest.find(['?', '#']) {
        Some(cut) => rest.split_at(cut),
        None => (rest, ""),
    };
    if query_or_fragment.contains('?') {
        problems.push("query strings (?…) are not allowed".to_owned());
    }
    if query_or_fragment.contains('#') {
        problems.push("fragments (#…) are not allowed".to_owned());
    }
    if rest.contains('\\') {
        problems.push("backslashes are not allowed".to_owned());
    }
    let (authority, path) = match rest.find('/') {
        Some(cut) => rest.split_at(cut),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => {
            problems.push("user information (…@) is not allowed".to_owned());
            host
        }
        None => authority,
    };
    let host = split_port(authority).map_err(|e| problems.push(e)).ok();
    let vault = host.and_then(|host| parse_vault_host(host).map_err(|e| problems.push(e)).ok());
    let parsed_path = parse_path(path).map_err(|e| problems.push(e)).ok();
    match (vault, parsed_path) {
        (Some((vault_name, cloud)), Some((kind, secret_name, version))) if problems.is_empty() => {
            Ok(SecretUrl {
                vault_name,
                cloud,
                secret_name,
                version,
                kind,
            })
        }
        _ => Err(problems.join("; ")),
    }
}

/// Removes an explicit `:443`; any other port is refused.
fn split_port(authority: &str) -> Result<&str, String> {
    if authority.starts_with('[') {
        return Err(format!("host {} is not a Key Vault host", quote(authority)));
    }
    match authority.rsplit_once(':') {
        None => Ok(authority),
        Some((host, "443")) => Ok(host),
        Some((_, port)) => Err(format!(
            "port {} is not allowed; Key Vault is served on port 443",
            quote(port)
        )),
    }
}

/// Validates `<vault>.<known suffix>` and returns the lowercase vault name and its cloud.
pub fn parse_vault_host(host: &str) -> Result<(String, Cloud), String> {
    let lower = host.to_ascii_lowercase();
    let matched = Cloud::ALL.into_iter().find_map(|cloud| {
        lower
            .strip_suffix(cloud.suffix())
            .and_then(|label| label.strip_suffix('.'))
            .map(|label| (label, cloud))
    });
    let Some((label, cloud)) = matched else {
        return Err(format!("host {} is not a Key Vault host", quote(host)));
    };
    if label.starts_with('<') && label.ends_with('>') {
        return Err(format!(
            "vault name {} is a documentation placeholder; put your vault's name there",
            quote(label)
        ));
    }
    if label.contains('.') {
        return Err(format!("host {} is not a Key Vault host", quote(host)));
    }
    if !(3..=24).contains(&label.len()) || !label.bytes().all(is_name_byte) {
        return Err(format!(
            "vault name {} must be 3 to 24 letters, digits or hyphens",
            quote(label)
        ));
    }
    Ok((label.to_owned(), cloud))
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

type ParsedPath = (UrlKind, String, Option<String>);

fn parse_path(path: &str) -> Result<ParsedPath, String> {
    let shape_error = || {
        format!(
            "path {} must be /secrets/<name> or /secrets/<name>/<version>",
            quote(path)
        )
    };
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let Some(trimmed) = trimmed.strip_prefix('/') else {
        return Err(format!("has no path; expected {EXPECTED_FORM}"));
    };
    let segments: Vec<&str> = trimmed.split('/').collect();
    let (collection, name, version) = match segments.as_slice() {
        [collection, name] => (*collection, *name, None),
        [collection, name, version] => (*collection, *name, Some(*version)),
        _ => return Err(shape_error()),
    };
    let kind = if collection.eq_ignore_ascii_case("secrets") {
        UrlKind::Secrets
    } else if collection.eq_ignore_ascii_case("certificates") {
        UrlKind::Certificates
    } else {
        return Err(shape_error());
    };
    if name.is_empty() || name.len() > 127 || !name.bytes().all(is_name_byte) {
        return Err(format!(
            "secret name {} must be 1 to 127 letters, digits or hyphens",
            quote(name)
        ));
    }
    let version = match version {
        None => None,
        Some(v) if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(v.to_ascii_lowercase())
        }
        Some(v) => {
            return Err(format!(
                "version {} must be 32 hexadecimal digits",
                quote(v)
            ));
        }
    };
    Ok((kind, name.to_owned(), version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        let url = parse("https://MyVault.vault.azure.net/secrets/cert-1").unwrap();
        assert_eq!(url.vault_name, "myvault");
        assert_eq!(url.vault_host(), "myvault.vault.azure.net");
        assert_eq!(url.secret_name, "cert-1");
        assert_eq!(url.version, None);
        let pinned =
            parse("HTTPS://v01.vault.azure.cn:443/secrets/c/0123456789ABCDEF0123456789abcdef/")
                .unwrap();
        assert_eq!(
            pinned.version.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(pinned.cloud, Cloud::China);
        assert_eq!(
            parse("https://abc.vault.azure.net/certificates/x")
                .unwrap()
                .kind,
            UrlKind::Certificates
        );
    }

    #[test]
    fn rejects_everything_else() {
        for (url, message) in [
            (
                "http://abc.vault.azure.net/secrets/x",
                "scheme must be \"https\", found \"http\"",
            ),
            (
                "https://evil.example.com/secrets/x",
                "host \"evil.example.com\" is not a Key Vault host",
            ),
            (
                "https://a.b.vault.azure.net/secrets/x",
                "host \"a.b.vault.azure.net\" is not a Key Vault host",
            ),
            (
                "https://vault.azure.net/secrets/x",
                "host \"vault.azure.net\" is not a Key Vault host",
            ),
            (
                "https://abc.vault.azure.net.evil.com/secrets/x",
                "host \"abc.vault.azure.net.evil.com\" is not a Key Vault host",
            ),
            (
                "https://abc.vault.azure.net:8443/secrets/x",
                "port \"8443\" is not allowed; Key Vault is served on port 443",
            ),
            (
                "https://u@abc.vault.azure.net/secrets/x",
                "user information (…@) is not allowed",
            ),
            (
                "https://abc.vault.azure.net/secrets/x?api-version=7.4",
                "query strings (?…) are not allowed",
            ),
            (
                "https://abc.vault.azure.net/secrets/x#f",
                "fragments (#…) are not allowed",
            ),
            (
                "https://abc.vault.azure.net/secrets/../x",
                "secret name \"..\" must be 1 to 127 letters, digits or hyphens",
            ),
            (
                "https://abc.vault.azure.net/secrets/a%2Fb",
                "secret name \"a%2Fb\" must be 1 to 127 letters, digits or hyphens",
            ),
            (
                "https://abc.vault.azure.net/keys/x",
                "path \"/keys/x\" must be /secrets/<name> or /secrets/<name>/<version>",
            ),
            (
                "https://abc.vault.azure.net/secrets/x/123",
                "version \"123\" must be 32 hexadecimal digits",
            ),
        ] {
            assert_eq!(parse(url).unwrap_err(), message, "{url}");
        }
    }
}
