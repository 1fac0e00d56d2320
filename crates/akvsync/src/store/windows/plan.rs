//! The pure decisions of the Windows store (SPEC §5.1), compiled and unit-tested on every
//! platform: import flags per location and provider, friendly names, which installed
//! certificate is current, which older certificates get `CERT_RENEWAL_PROP_ID`, which
//! HTTP.sys bindings move (with every parameter kept) and which stay in use, the lifecycle
//! notification's script, and the private-key DACL as SDDL. The Win32 calls that act on
//! these decisions live in `sys` (`cfg(windows)`).

use crate::settings::StoreLocation;

/// `CRYPT_EXPORTABLE`.
pub const CRYPT_EXPORTABLE: u32 = 0x0000_0001;
/// `CRYPT_USER_KEYSET`.
pub const CRYPT_USER_KEYSET: u32 = 0x0000_1000;
/// `CRYPT_MACHINE_KEYSET`.
pub const CRYPT_MACHINE_KEYSET: u32 = 0x0000_0020;
/// `PKCS12_PREFER_CNG_KSP`.
pub const PKCS12_PREFER_CNG_KSP: u32 = 0x0000_0100;
/// `PKCS12_ALLOW_OVERWRITE_KEY`.
pub const PKCS12_ALLOW_OVERWRITE_KEY: u32 = 0x0000_4000;

/// Full control of a private key: Administrators and SYSTEM.
pub const KEY_FULL_CONTROL: u32 = 0xD01F_01FF;
/// Read access to a private key: each `accounts` entry.
pub const KEY_READ: u32 = 0x8012_0089;

/// SID of BUILTIN\Administrators.
pub const ADMINISTRATORS_SID: &str = "S-1-5-32-544";
/// SID of NT AUTHORITY\SYSTEM.
pub const SYSTEM_SID: &str = "S-1-5-18";

/// Which key storage the import asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// A CAPI1 CSP named in the PFX key bag (e.g. Key Vault's "Microsoft Enhanced RSA and
    /// AES Cryptographic Provider").
    Capi,
    /// CNG (`PKCS12_PREFER_CNG_KSP`), as the original does for everything else.
    Cng,
}

/// CAPI1 when the PFX names a CAPI1 provider (key-bag attribute 1.3.6.1.4.1.311.17.1);
/// a CNG key storage provider named there, or no name at all, means CNG.
pub fn provider_for(csp_name: Option<&str>) -> Provider {
    match csp_name {
        Some(name) if !name.trim().is_empty() && !name.contains("Key Storage Provider") => {
            Provider::Capi
        }
        _ => Provider::Cng,
    }
}

/// `PFXImportCertStore` flags. `compat` (`akvsync.testing.windowsImportCompat`) keeps only
/// the flags Wine implements: no `PKCS12_PREFER_CNG_KSP`, no `PKCS12_ALLOW_OVERWRITE_KEY`.
/// Keys are always persisted (never `PKCS12_NO_PERSIST_KEY`).
pub fn import_flags(
    location: StoreLocation,
    exportable: bool,
    provider: Provider,
    compat: bool,
) -> u32 {
    let mut flags = match location {
        StoreLocation::LocalMachine => CRYPT_MACHINE_KEYSET,
        StoreLocation::CurrentUser => CRYPT_USER_KEYSET,
    };
    if exportable {
        flags |= CRYPT_EXPORTABLE;
    }
    if !compat {
        flags |= PKCS12_ALLOW_OVERWRITE_KEY;
        if provider == Provider::Cng {
            flags |= PKCS12_PREFER_CNG_KSP;
        }
    }
    flags
}

/// The friendly name of an installed version: `<secret> <version>`.
pub fn friendly_name(secret: &str, version: &str) -> String {
    format!("{secret} {version}")
}

/// The version in a friendly name that akvsync wrote for `secret`, if it is one.
pub fn version_in_friendly_name<'a>(name: &'a str, secret: &str) -> Option<&'a str> {
    let version = name.strip_prefix(secret)?.strip_prefix(' ')?;
    let is_version = version.len() == 32
        && version
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    is_version.then_some(version)
}

/// One certificate found in a store, reduced to what the decisions need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// 40 uppercase hex digits.
    pub thumbprint: String,
    pub friendly_name: String,
    pub dns_names: Vec<String>,
    pub not_before: u64,
    pub not_after: u64,
    /// akvsync's install mark (seconds since the epoch), if akvsync installed it.
    pub installed_at: Option<u64>,
}

/// Among the certificates installed for `secret`, the current one: the one installed
/// last (akvsync's mark), then the newest by validity. Returns its index and version.
pub fn current<'a>(found: &'a [Found], secret: &str) -> Option<(usize, &'a str)> {
    found
        .iter()
        .enumerate()
        .filter_map(|(i, f)| Some((i, f, version_in_friendly_name(&f.friendly_name, secret)?)))
        .max_by_key(|(_, f, _)| (f.installed_at.unwrap_or(0), f.not_before, f.not_after))
        .map(|(i, _, v)| (i, v))
}

fn san_overlap(a: &[String], b: &[String]) -> bool {
    a.iter()
        .any(|x| b.iter().any(|y| x.eq_ignore_ascii_case(y)))
}

/// `linkOnRenewal`: the certificates in the same store that get `CERT_RENEWAL_PROP_ID`
/// pointing at `new`: every other certificate with a DNS name in common (case-insensitive,
/// wildcards compared literally) that is older (issued earlier, or issued at the same time
/// and expiring earlier). Never `new` itself, never a newer certificate.
pub fn renewal_targets(new: &Found, store: &[Found]) -> Vec<usize> {
    store
        .iter()
        .enumerate()
        .filter(|(_, old)| {
            !old.thumbprint.eq_ignore_ascii_case(&new.thumbprint)
                && san_overlap(&old.dns_names, &new.dns_names)
                && (old.not_before, old.not_after) < (new.not_before, new.not_after)
        })
        .map(|(i, _)| i)
        .collect()
}

/// Which kind of HTTP.sys SSL record a binding is (`netsh http show sslcert`). Central
/// certificate store records (`ccs=`) carry no hash: IIS picks the certificate from the
/// central store by host name, so they never move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingKey {
    /// `ipport=0.0.0.0:443` (`HttpServiceConfigSSLCertInfo`).
    IpPort(std::net::SocketAddr),
    /// `hostnameport=www.example.com:443` (`HttpServiceConfigSslSniCertInfo`).
    HostnamePort { host: String, port: u16 },
}

impl std::fmt::Display for BindingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindingKey::IpPort(address) => write!(f, "ipport={address}"),
            BindingKey::HostnamePort { host, port } => write!(f, "hostnameport={host}:{port}"),
        }
    }
}

/// Every parameter of an HTTP.sys SSL record (`HTTP_SERVICE_CONFIG_SSL_PARAM`): moving a
/// binding changes the hash and keeps each of the others exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub key: BindingKey,
    /// The certificate's SHA-1, 40 uppercase hex digits.
    pub thumbprint: String,
    /// The application that registered it (IIS: `{4dc3e181-e14b-4a21-b022-59fc669b0914}`).
    pub app_id: [u8; 16],
    /// The store the certificate is read from; `None` is HTTP.sys's default, `MY`.
    pub store_name: Option<String>,
    pub cert_check_mode: u32,
    pub revocation_freshness_time: u32,
    pub revocation_url_retrieval_timeout: u32,
    pub ctl_identifier: Option<String>,
    pub ctl_store_name: Option<String>,
    pub flags: u32,
}

impl Binding {
    /// The store it reads from, as HTTP.sys resolves it.
    pub fn store(&self) -> &str {
        self.store_name.as_deref().unwrap_or("MY")
    }
}

/// The optional HTTP.sys binding move (`akvsync.windows.updateHttpSysBindings`): each
/// binding whose certificate is one of the `replaced` thumbprints and is read from the same
/// store (names compared case-insensitively, unset = `MY`) becomes the same record with
/// `new_thumbprint`; every other field is kept. Bindings of other certificates or stores
/// are not touched. Returns `(old record, new record)` pairs.
pub fn bindings_to_move(
    bindings: &[Binding],
    replaced: &[&str],
    store_name: &str,
    new_thumbprint: &str,
) -> Vec<(Binding, Binding)> {
    bindings
        .iter()
        .filter(|b| {
            b.store().eq_ignore_ascii_case(store_name)
                && !b.thumbprint.eq_ignore_ascii_case(new_thumbprint)
                && replaced
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(&b.thumbprint))
        })
        .map(|b| {
            let moved = Binding {
                thumbprint: new_thumbprint.to_ascii_uppercase(),
                ..b.clone()
            };
            (b.clone(), moved)
        })
        .collect()
}

/// The thumbprints among `candidates` that an HTTP.sys binding still serves from
/// `store_name`: pruning keeps those certificates installed (a binding to a deleted
/// certificate fails every TLS handshake).
pub fn still_bound<'a>(
    candidates: &[&'a str],
    bindings: &[Binding],
    store_name: &str,
) -> Vec<&'a str> {
    candidates
        .iter()
        .copied()
        .filter(|t| {
            bindings.iter().any(|b| {
                b.store().eq_ignore_ascii_case(store_name) && b.thumbprint.eq_ignore_ascii_case(t)
            })
        })
        .collect()
}

/// The certificate lifecycle *replace* notification (event 1001 in
/// `Microsoft-Windows-CertificateServicesClient-Lifecycle-System/Operational`, what IIS's
/// `IIS-AutoCertRebind` task and other subscribers react to). Windows has no documented API
/// that raises it; `Switch-Certificate -NotifyOnly` of the PKI module is the documented way,
/// so akvsync runs that, one call per replaced certificate. The script names both
/// certificates by store path; it is passed as `-EncodedCommand` (UTF-16LE, base64), so no
/// store name can break out of its quoting.
pub fn lifecycle_script(
    location: crate::settings::StoreLocation,
    store_name: &str,
    old_thumbprint: &str,
    new_thumbprint: &str,
) -> String {
    let quote = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let path = |thumbprint: &str| {
        quote(&format!(
            "Cert:\\{}\\{}\\{}",
            location.name(),
            store_name,
            thumbprint.to_ascii_uppercase()
        ))
    };
    format!(
        "$ErrorActionPreference = 'Stop'\n\
         Import-Module PKI\n\
         $old = Get-Item -LiteralPath {}\n\
         $new = Get-Item -LiteralPath {}\n\
         Switch-Certificate -OldCert $old -NewCert $new -NotifyOnly -Confirm:$false\n",
        path(old_thumbprint),
        path(new_thumbprint)
    )
}

/// `powershell.exe` arguments running `script` (`-EncodedCommand`: base64 of UTF-16LE).
pub fn powershell_arguments(script: &str) -> Vec<String> {
    use base64::Engine as _;
    let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    vec![
        "-NoProfile".to_owned(),
        "-NonInteractive".to_owned(),
        "-ExecutionPolicy".to_owned(),
        "Bypass".to_owned(),
        "-EncodedCommand".to_owned(),
        base64::engine::general_purpose::STANDARD.encode(utf16),
    ]
}

/// A private key as a certificate references it (`CERT_KEY_PROV_INFO_PROP_ID`): provider
/// and container name identify it; type 0 is a CNG key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    pub provider: String,
    pub container: String,
    pub provider_type: u32,
    /// `CRYPT_MACHINE_KEYSET` (= `NCRYPT_MACHINE_KEY_FLAG`) when a machine key.
    pub machine: bool,
}

impl KeyRef {
    fn same_key(&self, other: &KeyRef) -> bool {
        self.provider.eq_ignore_ascii_case(&other.provider)
            && self.container.eq_ignore_ascii_case(&other.container)
            && self.machine == other.machine
    }
}

/// The keys of pruned certificates that may be deleted: each one no remaining certificate
/// (in any store of the location) references, once. Keys are only ever those of
/// certificates akvsync installed and pruned; a key another certificate still uses (Wine
/// keeps every imported key in one container; an administrator may have copied the
/// certificate to another store) stays.
pub fn keys_to_delete(pruned: &[KeyRef], remaining: &[KeyRef]) -> Vec<KeyRef> {
    let mut out: Vec<KeyRef> = Vec::new();
    for key in pruned {
        if key.container.is_empty()
            || remaining.iter().any(|r| r.same_key(key))
            || out.iter().any(|o| o.same_key(key))
        {
            continue;
        }
        out.push(key.clone());
    }
    out
}

/// A well-known account, built with `CreateWellKnownSid` because its name is localised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WellKnown {
    NetworkService,
    LocalService,
    LocalSystem,
    Administrators,
}

impl WellKnown {
    /// The SID string (the same on every Windows).
    pub fn sid(self) -> &'static str {
        match self {
            WellKnown::NetworkService => "S-1-5-20",
            WellKnown::LocalService => "S-1-5-19",
            WellKnown::LocalSystem => SYSTEM_SID,
            WellKnown::Administrators => ADMINISTRATORS_SID,
        }
    }
}

/// How an `accounts` entry is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account<'a> {
    WellKnown(WellKnown),
    /// `S-1-…`, converted with `ConvertStringSidToSidW`.
    SidString(&'a str),
    /// Anything else (`IIS AppPool\Site`, `DOMAIN\user`): `LookupAccountNameW`.
    Name(&'a str),
}

/// Classifies an `accounts` entry; English names of well-known accounts, with or without
/// their `NT AUTHORITY\` / `BUILTIN\` prefix, in any case.
pub fn classify_account(entry: &str) -> Account<'_> {
    let trimmed = entry.trim();
    if trimmed.len() > 4 && trimmed[..4].eq_ignore_ascii_case("S-1-") {
        return Account::SidString(trimmed);
    }
    let lower = trimmed.to_ascii_lowercase();
    let bare = lower
        .strip_prefix("nt authority\\")
        .or_else(|| lower.strip_prefix("builtin\\"))
        .unwrap_or(&lower);
    match bare {
        "network service" | "networkservice" => Account::WellKnown(WellKnown::NetworkService),
        "local service" | "localservice" => Account::WellKnown(WellKnown::LocalService),
        "system" | "local system" | "localsystem" => Account::WellKnown(WellKnown::LocalSystem),
        "administrators" => Account::WellKnown(WellKnown::Administrators),
        _ => Account::Name(trimmed),
    }
}

/// The private key's DACL as SDDL: protected, Administrators and SYSTEM full control, each
/// account read (duplicates and accounts already given full control are skipped).
pub fn key_dacl_sddl(reader_sids: &[String]) -> String {
    let mut sddl = format!(
        "D:P(A;;0x{KEY_FULL_CONTROL:x};;;{ADMINISTRATORS_SID})(A;;0x{KEY_FULL_CONTROL:x};;;{SYSTEM_SID})"
    );
    let mut seen: Vec<&str> = vec![ADMINISTRATORS_SID, SYSTEM_SID];
    for sid in reader_sids {
        if seen.iter().any(|s| s.eq_ignore_ascii_case(sid)) {
            continue;
        }
        seen.push(sid);
        sddl.push_str(&format!("(A;;0x{KEY_READ:x};;;{sid})"));
    }
    sddl
}

/// One access-allowed ACE read back from SDDL: (access mask, SID string).
pub type Ace = (u32, String);

/// Parses the access-allowed ACEs of an SDDL DACL (`D:…(A;;mask;;;sid)…`), mapping the
/// aliases Windows prints (`BA`, `SY`, `NS`, `LS`, `FA`/`GR`-free masks) back to SID strings.
pub fn parse_dacl_aces(sddl: &str) -> Vec<Ace> {
    let dacl = match sddl.find("D:") {
        Some(i) => &sddl[i + 2..],
        None => return Vec::new(),
    };
    let dacl = dacl.split("S:").next().unwrap_or(dacl);
    let mut aces = Vec::new();
    for part in dacl.split('(').skip(1) {
        let body = part.split(')').next().unwrap_or("");
        let fields: Vec<&str> = body.split(';').collect();
        if fields.len() < 6 || fields[0] != "A" {
            continue;
        }
        let mask = match fields[2]
            .strip_prefix("0x")
            .or_else(|| fields[2].strip_prefix("0X"))
        {
            Some(hex) => u32::from_str_radix(hex, 16).unwrap_or(0),
            None => match fields[2] {
                "FA" => 0x001F_01FF,
                "GA" => 0x1000_0000,
                "GR" => 0x8000_0000,
                other => other.parse().unwrap_or(0),
            },
        };
        let sid = match fields[5] {
            "BA" => ADMINISTRATORS_SID.to_owned(),
            "SY" => SYSTEM_SID.to_owned(),
            "NS" => "S-1-5-20".to_owned(),
            "LS" => "S-1-5-19".to_owned(),
            "WD" => "S-1-1-0".to_owned(),
            "BU" => "S-1-5-32-545".to_owned(),
            other => other.to_owned(),
        };
        aces.push((mask, sid));
    }
    aces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(thumb: &str, names: &[&str], not_before: u64, not_after: u64) -> Found {
        Found {
            thumbprint: thumb.to_owned(),
            friendly_name: String::new(),
            dns_names: names.iter().map(|s| (*s).to_owned()).collect(),
            not_before,
            not_after,
            installed_at: None,
        }
    }

    #[test]
    fn flags_per_location_provider_and_compat() {
        use StoreLocation::*;
        assert_eq!(
            import_flags(LocalMachine, false, Provider::Cng, false),
            CRYPT_MACHINE_KEYSET | PKCS12_ALLOW_OVERWRITE_KEY | PKCS12_PREFER_CNG_KSP
        );
        assert_eq!(
            import_flags(CurrentUser, true, Provider::Capi, false),
            CRYPT_USER_KEYSET | CRYPT_EXPORTABLE | PKCS12_ALLOW_OVERWRITE_KEY
        );
        assert_eq!(
            import_flags(LocalMachine, true, Provider::Cng, true),
            CRYPT_MACHINE_KEYSET | CRYPT_EXPORTABLE
        );
        assert_eq!(
            import_flags(CurrentUser, false, Provider::Capi, true),
            CRYPT_USER_KEYSET
        );
    }

    #[test]
    fn capi_only_when_the_pfx_names_a_capi_csp() {
        assert_eq!(
            provider_for(Some(
                "Microsoft Enhanced RSA and AES Cryptographic Provider"
            )),
            Provider::Capi
        );
        assert_eq!(
            provider_for(Some("Microsoft Software Key Storage Provider")),
            Provider::Cng
        );
        assert_eq!(provider_for(None), Provider::Cng);
        assert_eq!(provider_for(Some(" ")), Provider::Cng);
    }

    #[test]
    fn friendly_names_round_trip_and_reject_others() {
        let v = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            version_in_friendly_name(&friendly_name("web", v), "web"),
            Some(v)
        );
        assert_eq!(
            version_in_friendly_name(&friendly_name("web", v), "we"),
            None
        );
        assert_eq!(version_in_friendly_name("web 0123", "web"), None);
        assert_eq!(
            version_in_friendly_name(&format!("web {}", v.to_uppercase()), "web"),
            None
        );
        assert_eq!(version_in_friendly_name("", "web"), None);
    }

    #[test]
    fn current_is_the_last_installed_then_the_newest() {
        let a = "a".repeat(32);
        let b = "b".repeat(32);
        let mut old = found("01", &[], 10, 20);
        old.friendly_name = friendly_name("web", &a);
        let mut new = found("02", &[], 30, 40);
        new.friendly_name = friendly_name("web", &b);
        let other = Found {
            friendly_name: "someone else's".into(),
            ..found("03", &[], 50, 60)
        };
        let list = vec![old.clone(), new.clone(), other];
        assert_eq!(current(&list, "web"), Some((1, b.as_str())));
        // A pinned older version installed last is current.
        old.installed_at = Some(100);
        new.installed_at = Some(90);
        assert_eq!(current(&[old, new], "web"), Some((0, a.as_str())));
        assert_eq!(current(&[], "web"), None);
    }

    #[test]
    fn renewal_goes_to_older_certificates_with_a_common_san() {
        let new = found("NEW", &["www.example.com", "example.com"], 100, 200);
        let store = vec![
            found("OLD1", &["WWW.example.com"], 50, 150), // older, same SAN
            found("OLD2", &["other.example.com"], 50, 150), // no common SAN
            found("NEWER", &["example.com"], 150, 300),   // newer: untouched
            found("new", &["example.com"], 100, 200),     // the new one itself
            found("SAMEDAY", &["example.com"], 100, 180), // same issue time, expires first
            found("WILD", &["*.example.com"], 10, 20),    // wildcard compared literally
        ];
        assert_eq!(renewal_targets(&new, &store), vec![0, 4]);
    }

    fn binding(key: &str, thumbprint: &str, store: Option<&str>) -> Binding {
        Binding {
            key: match key.parse() {
                Ok(address) => BindingKey::IpPort(address),
                Err(_) => {
                    let (host, port) = key.rsplit_once(':').unwrap();
                    BindingKey::HostnamePort {
                        host: host.into(),
                        port: port.parse().unwrap(),
                    }
                }
            },
            thumbprint: thumbprint.into(),
            app_id: [0x4d; 16],
            store_name: store.map(Into::into),
            cert_check_mode: 1,
            revocation_freshness_time: 3600,
            revocation_url_retrieval_timeout: 15_000,
            ctl_identifier: Some("ctl".into()),
            ctl_store_name: Some("CtlStore".into()),
            flags: 0x4,
        }
    }

    #[test]
    fn only_bindings_of_replaced_certificates_in_the_same_store_move_with_every_field_kept() {
        let bindings = vec![
            binding("0.0.0.0:443", "OLD", Some("MY")),
            binding("www.example.com:443", "old", None), // unset store = MY
            binding("api.example.com:443", "OTHER", Some("MY")),
            binding("x.example.com:443", "OLD", Some("WebHosting")),
            binding("[::]:8443", "NEW", Some("my")),
        ];
        let moves = bindings_to_move(&bindings, &["OLD"], "My", "new");
        let keys: Vec<String> = moves.iter().map(|(old, _)| old.key.to_string()).collect();
        assert_eq!(
            keys,
            vec!["ipport=0.0.0.0:443", "hostnameport=www.example.com:443"]
        );
        for (old, new) in &moves {
            assert_eq!(new.thumbprint, "NEW");
            // Everything but the hash is the old record's.
            assert_eq!(
                &Binding {
                    thumbprint: old.thumbprint.clone(),
                    ..new.clone()
                },
                old
            );
        }
        assert_eq!(moves[1].1.store_name, None, "an unset store stays unset");
    }

    #[test]
    fn certificates_a_binding_still_serves_are_kept() {
        let bindings = vec![
            binding("0.0.0.0:443", "A", None),
            binding("b.example.com:443", "B", Some("WebHosting")),
        ];
        assert_eq!(still_bound(&["A", "B", "C"], &bindings, "MY"), vec!["A"]);
        assert_eq!(still_bound(&["a", "b"], &bindings, "webhosting"), vec!["b"]);
    }

    #[test]
    fn the_lifecycle_notification_names_both_certificates_and_cannot_be_escaped() {
        let script = lifecycle_script(
            crate::settings::StoreLocation::LocalMachine,
            "Web'Hosting",
            "ab12",
            "cd34",
        );
        assert!(script.contains("Get-Item -LiteralPath 'Cert:\\LocalMachine\\Web''Hosting\\AB12'"));
        assert!(script.contains("Get-Item -LiteralPath 'Cert:\\LocalMachine\\Web''Hosting\\CD34'"));
        assert!(script.contains(
            "Switch-Certificate -OldCert $old -NewCert $new -NotifyOnly -Confirm:$false"
        ));
        let args = powershell_arguments(&script);
        assert_eq!(args[4], "-EncodedCommand");
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&args[5])
            .unwrap();
        let units: Vec<u16> = bytes
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16(&units).unwrap(), script);
    }

    #[test]
    fn a_pruned_key_is_deleted_only_when_nothing_else_references_it() {
        let key = |container: &str, machine: bool| KeyRef {
            provider: "Microsoft Software Key Storage Provider".into(),
            container: container.into(),
            provider_type: 0,
            machine,
        };
        let pruned = vec![
            key("old", true),
            key("shared", true),
            key("OLD", true),
            key("", true),
        ];
        let remaining = vec![key("SHARED", true), key("old", false), key("new", true)];
        // `old` once (case-insensitive), not `shared` (still used), not the nameless one; a
        // user key named `old` is another key.
        assert_eq!(keys_to_delete(&pruned, &remaining), vec![key("old", true)]);
        assert!(keys_to_delete(&[], &remaining).is_empty());
    }

    #[test]
    fn accounts_classify() {
        assert_eq!(
            classify_account("Network Service"),
            Account::WellKnown(WellKnown::NetworkService)
        );
        assert_eq!(
            classify_account("NT AUTHORITY\\LOCAL SERVICE"),
            Account::WellKnown(WellKnown::LocalService)
        );
        assert_eq!(
            classify_account("builtin\\administrators"),
            Account::WellKnown(WellKnown::Administrators)
        );
        assert_eq!(
            classify_account("SYSTEM"),
            Account::WellKnown(WellKnown::LocalSystem)
        );
        assert_eq!(
            classify_account("S-1-5-21-1-2-3-1001"),
            Account::SidString("S-1-5-21-1-2-3-1001")
        );
        assert_eq!(
            classify_account("IIS AppPool\\Site"),
            Account::Name("IIS AppPool\\Site")
        );
    }

    #[test]
    fn dacl_is_admins_and_system_full_then_readers_once() {
        let sddl = key_dacl_sddl(&[
            "S-1-5-20".into(),
            "S-1-5-19".into(),
            "S-1-5-20".into(),
            SYSTEM_SID.into(),
        ]);
        assert_eq!(
            parse_dacl_aces(&sddl),
            vec![
                (KEY_FULL_CONTROL, ADMINISTRATORS_SID.to_owned()),
                (KEY_FULL_CONTROL, SYSTEM_SID.to_owned()),
                (KEY_READ, "S-1-5-20".to_owned()),
                (KEY_READ, "S-1-5-19".to_owned()),
            ]
        );
        assert!(sddl.starts_with("D:P("));
    }

    #[test]
    fn sddl_aliases_parse() {
        assert_eq!(
            parse_dacl_aces("O:BAD:P(A;;FA;;;SY)(A;;0x80120089;;;NS)(D;;FA;;;WD)S:"),
            vec![
                (0x001F_01FF, SYSTEM_SID.to_owned()),
                (KEY_READ, "S-1-5-20".to_owned())
            ]
        );
        assert!(parse_dacl_aces("O:BA").is_empty());
    }
}
