//! Which vault (and which cloud) a request is for, from its Host header or SNI.

/// The Key Vault DNS suffixes served, with each cloud's challenge resource and
/// authority host.
pub const SUFFIXES: [(&str, &str); 4] = [
    ("vault.azure.net", "login.windows.net"),
    ("vault.azure.cn", "login.chinacloudapi.cn"),
    ("vault.usgovcloudapi.net", "login.microsoftonline.us"),
    ("vault.microsoftazure.de", "login.microsoftonline.de"),
];

/// A parsed vault host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultHost {
    /// First DNS label, lowercase.
    pub name: String,
    /// DNS suffix, e.g. `vault.azure.net`.
    pub suffix: &'static str,
    pub authority_host: &'static str,
}

impl VaultHost {
    /// `https://<suffix>`: the challenge's `resource` and the token audience.
    pub fn resource(&self) -> String {
        format!("https://{}", self.suffix)
    }

    /// `<name>.<suffix>`, the host in object ids.
    pub fn host(&self) -> String {
        format!("{}.{}", self.name, self.suffix)
    }
}

/// Parses `name.vault.azure.net[:port]` (case-insensitive). Vault names are 3–24
/// of `[0-9A-Za-z-]`, as the service requires.
pub fn parse(host_header: &str) -> Option<VaultHost> {
    let host = strip_port(host_header)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let (name, rest) = host.split_once('.')?;
    let &(suffix, authority_host) = SUFFIXES.iter().find(|(s, _)| *s == rest)?;
    let ok = (3..=24).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then(|| VaultHost {
        name: name.to_string(),
        suffix,
        authority_host,
    })
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h;
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => h,
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn hosts() {
        let v = parse("MyVault.vault.azure.net:8443").unwrap();
        assert_eq!(v.name, "myvault");
        assert_eq!(v.resource(), "https://vault.azure.net");
        assert_eq!(
            parse("abc.vault.azure.cn").unwrap().resource(),
            "https://vault.azure.cn"
        );
        assert!(parse("abc.vault.usgovcloudapi.net").is_some());
        assert!(parse("abc.vault.microsoftazure.de").is_some());
        assert!(parse("ab.vault.azure.net").is_none());
        assert!(parse("a.b.vault.azure.net").is_none());
        assert!(parse("localhost:8443").is_none());
        assert!(parse("abc.evil.net").is_none());
    }
}
