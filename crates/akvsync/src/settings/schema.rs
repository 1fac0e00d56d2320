//! The Microsoft settings schemas (SPEC §1.1–§1.3): the runtime-settings wrapper, the
//! public settings with `secretsManagementSettings` in every variant (Windows 1.x string
//! list, Windows 3.x objects, Linux 2.x/3.x directories, mixes), reduced to [`Settings`].

use std::collections::{HashMap, HashSet};

use super::diag::{Diagnostics, JsonPath};
use super::fields::{self, ObjectReader, quote};
use super::json::Json;
use super::model::{
    AkvsyncSettings, DEFAULT_LINUX_STORE, IdentitySettings, LinuxTarget, MAX_POLLING_INTERVAL_S,
    MIN_POLLING_INTERVAL_S, ObservedCertificate, Platform, Settings, SettingsForm, StoreLocation,
    Target, WindowsTarget,
};
use super::vault_url::{self, UrlKind};
use super::{akvsync_section, auth, targets};

/// Reads a whole settings document (either form of SPEC §1.1). Problems go to `diags`;
/// the returned settings are meaningful only when `diags.errors` is empty.
pub fn read_document(doc: &Json, platform: Platform, diags: &mut Diagnostics) -> Settings {
    let root = JsonPath::root();
    let is_runtime = matches!(doc, Json::Object(members)
        if members.iter().any(|(key, _)| key.eq_ignore_ascii_case("runtimeSettings")));
    if !is_runtime {
        return read_public(doc, platform, SettingsForm::PublicSettings, diags);
    }
    let form = SettingsForm::RuntimeSettings;
    let Some(public) = unwrap_runtime(doc, &root, diags) else {
        return Settings::empty(platform, Some(form));
    };
    read_public(public, platform, form, diags)
}

/// `{"runtimeSettings":[{"handlerSettings":{"publicSettings":{…},"protectedSettings":…}}]}`
fn unwrap_runtime<'a>(doc: &'a Json, root: &JsonPath, diags: &mut Diagnostics) -> Option<&'a Json> {
    let mut top = ObjectReader::new(doc, root, diags)?;
    let runtime = top.require("runtimeSettings", diags);
    top.finish(diags);
    let (value, path) = runtime?;
    let items = fields::array(value, &path, diags)?;
    if items.len() != 1 {
        diags.error(
            &path,
            format!("expected exactly one element, found {}", items.len()),
        );
        return None;
    }
    let mut item = ObjectReader::new(&items[0], &path.index(0), diags)?;
    let handler = item.require("handlerSettings", diags);
    item.finish(diags);
    let (handler, handler_path) = handler?;
    let mut handler = ObjectReader::new(handler, &handler_path, diags)?;
    let public = handler.take("publicSettings", diags);
    if let Some((protected, path)) = handler.take("protectedSettings", diags) {
        // Never echo the content: it may be a secret the user put there by mistake.
        let empty = matches!(protected, Json::String(s) if s.trim().is_empty());
        if !empty {
            diags.warn(
                &path,
                "protected settings are present and ignored; akvsync has none",
            );
        }
    }
    handler.take("protectedSettingsCertThumbprint", diags);
    handler.finish(diags);
    match public {
        Some((value, _)) => Some(value),
        None => {
            diags.warn(
                &handler_path.field("publicSettings"),
                "no settings yet; nothing to observe",
            );
            None
        }
    }
}

/// A whole ARM resource (or template) pasted where its settings belong: the extension's
/// settings are the resource's `properties.settings`.
fn arm_resource_hint(value: &Json) -> Option<String> {
    let Json::Object(members) = value else {
        return None;
    };
    let has = |name: &str| members.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if has("secretsManagementSettings") {
        return None;
    }
    if has("properties") || has("$schema") || has("resources") || (has("type") && has("apiVersion"))
    {
        return Some(
            "this looks like a whole ARM resource or template, not the extension's settings: \
             pass the object at properties.settings (the one holding secretsManagementSettings)"
                .to_owned(),
        );
    }
    None
}

/// The public settings object.
fn read_public(
    value: &Json,
    platform: Platform,
    form: SettingsForm,
    diags: &mut Diagnostics,
) -> Settings {
    let root = JsonPath::root();
    let mut settings = Settings::empty(platform, Some(form));
    let Some(mut top) = ObjectReader::new(value, &root, diags) else {
        return settings;
    };
    if top.is_empty() {
        diags.warn(&root, "no settings; nothing to observe");
        return settings;
    }
    if let Some(hint) = arm_resource_hint(value) {
        diags.error(&root, hint);
        return settings;
    }
    let secrets = top.require("secretsManagementSettings", diags);
    let top_auth = top.take("authenticationSettings", diags);
    if let Some((_, path)) = top.take("loggingSettings", diags) {
        diags.warn(
            &path,
            "fluentd log forwarding is not supported; logs go to akvsync's own log",
        );
    }
    if let Some((value, path)) = top.take("akvsync", diags) {
        settings.akvsync = akvsync_section::parse(value, &path, diags);
        if platform == Platform::Linux
            && let Json::Object(members) = value
            && let Some((key, _)) = members
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("windows"))
        {
            diags.warn(&path.field(key), "not used on linux; ignored");
        }
    }
    top.finish(diags);

    let mut nested_auth = None;
    if let Some((value, path)) = secrets {
        nested_auth = read_secrets_management(value, &path, &mut settings, diags);
    }
    super::outputs::check(&settings, &root, diags);
    for (index, hook) in settings.akvsync.hooks.iter().enumerate() {
        let wrong = match (settings.platform, hook.kind) {
            (Platform::Windows, "reloadUnit" | "restartUnit") => {
                Some("systemd units exist only on Linux; use \"restartService\"")
            }
            (Platform::Linux, "restartService") => Some(
                "Windows services exist only on Windows; use \"reloadUnit\" or \"restartUnit\"",
            ),
            _ => None,
        };
        if let Some(message) = wrong {
            diags.error(
                &root
                    .field("akvsync")
                    .field("hooks")
                    .index(index)
                    .field(hook.kind),
                message,
            );
        }
    }
    // `<vault>/<secret>` of every certificate, compared ASCII-case-insensitively: one set,
    // so that checking every hook filter is linear rather than filters × certificates.
    let observed: HashSet<String> = settings
        .certificates
        .iter()
        .map(|c| {
            let mut name = format!("{}/{}", c.secret.vault_name, c.secret.secret_name);
            name.make_ascii_lowercase();
            name
        })
        .collect();
    for (index, hook) in settings.akvsync.hooks.iter().enumerate() {
        for name in &hook.certificates {
            if !observed.contains(&name.to_ascii_lowercase()) {
                let path = root
                    .field("akvsync")
                    .field("hooks")
                    .index(index)
                    .field("certificates");
                // An error, not a warning: the hook would never run (issue 14).
                diags.error(
                    &path,
                    format!("{} names no observed certificate", quote(name)),
                );
            }
        }
    }
    settings.identity = match (top_auth, nested_auth) {
        (Some((value, path)), None) => auth::parse(value, &path, diags),
        (None, Some((value, path))) => {
            diags.warn(
                &path,
                "belongs at the top level, beside secretsManagementSettings; accepted here",
            );
            auth::parse(value, &path, diags)
        }
        (Some(_), Some((_, path))) => {
            diags.error(&path, "given both here and at the top level; keep one");
            IdentitySettings::default()
        }
        (None, None) => IdentitySettings::default(),
    };
    settings
}

/// Store defaults from the top of `secretsManagementSettings` (Windows 1.x / Linux 2.x).
struct StoreDefaults {
    windows_location: StoreLocation,
    windows_store_name: String,
    linux_directory: String,
}

/// `secretsManagementSettings`; returns a nested `authenticationSettings` if one is there.
fn read_secrets_management<'a>(
    value: &'a Json,
    path: &JsonPath,
    settings: &mut Settings,
    diags: &mut Diagnostics,
) -> Option<(&'a Json, JsonPath)> {
    let platform = settings.platform;
    let mut reader = ObjectReader::new(value, path, diags)?;
    if let Some((value, path)) = reader.take("pollingIntervalInS", diags) {
        settings.polling_interval_s = polling_interval(value, &path, &settings.akvsync, diags)
            .unwrap_or(settings.polling_interval_s);
    }
    if let Some((value, path)) = reader.take("requireInitialSync", diags) {
        settings.require_initial_sync = fields::boolean(value, &path, diags).unwrap_or(false);
    }
    if let Some((value, path)) = reader.take("linkOnRenewal", diags) {
        let on = fields::boolean(value, &path, diags).unwrap_or(false);
        match platform {
            Platform::Windows => settings.link_on_renewal = on,
            Platform::Linux if on => diags.warn(&path, "not used on linux; ignored"),
            Platform::Linux => {}
        }
    }
    let mut defaults = StoreDefaults {
        windows_location: StoreLocation::LocalMachine,
        windows_store_name: "MY".to_owned(),
        linux_directory: DEFAULT_LINUX_STORE.to_owned(),
    };
    let mut acl_enabled = false;
    match platform {
        Platform::Windows => {
            if let Some((value, path)) = reader.take("certificateStoreName", diags)
                && let Some(name) = targets::windows_store_name(value, &path, diags)
            {
                defaults.windows_store_name = name;
            }
            if let Some((value, path)) = reader.take("certificateStoreLocation", diags)
                && let Some(location) = targets::windows_location(value, &path, diags)
            {
                defaults.windows_location = location;
            }
            reader.ignore_for_platform("aclEnabled", "windows", diags);
        }
        Platform::Linux => {
            reader.ignore_for_platform("certificateStoreName", "linux", diags);
            if let Some((value, path)) = reader.take("certificateStoreLocation", diags)
                && let Some(directory) = targets::linux_directory(value, &path, diags)
            {
                defaults.linux_directory = directory;
            }
            if let Some((value, path)) = reader.take("aclEnabled", diags) {
                acl_enabled = fields::boolean(value, &path, diags).unwrap_or(false);
            }
        }
    }
    let nested_auth = reader.take("authenticationSettings", diags);
    let observed = reader.require("observedCertificates", diags);
    reader.finish(diags);

    if let Some((value, path)) = observed
        && let Some(items) = fields::array(value, &path, diags)
    {
        if items.is_empty() {
            diags.warn(&path, "empty; no certificate is observed");
        }
        let context = CertificateContext {
            platform,
            defaults: &defaults,
            acl_enabled,
        };
        settings.certificates = items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| read_certificate(item, index, &path, &context, diags))
            .collect();
        check_duplicates(&settings.certificates, &path, diags);
    }
    nested_auth
}

fn polling_interval(
    value: &Json,
    path: &JsonPath,
    ours: &AkvsyncSettings,
    diags: &mut Diagnostics,
) -> Option<u64> {
    let seconds = fields::positive_integer(value, path, MAX_POLLING_INTERVAL_S, diags)?;
    let floor = ours
        .testing
        .min_polling_interval_s
        .unwrap_or(MIN_POLLING_INTERVAL_S);
    if seconds < floor {
        diags.warn(
            path,
            format!("{seconds} s is below the minimum; raised to {floor} s"),
        );
        return Some(floor);
    }
    Some(seconds)
}

struct CertificateContext<'a> {
    platform: Platform,
    defaults: &'a StoreDefaults,
    acl_enabled: bool,
}

/// One `observedCertificates` element: a URL string or an object with `url`.
fn read_certificate(
    item: &Json,
    index: usize,
    list_path: &JsonPath,
    context: &CertificateContext<'_>,
    diags: &mut Diagnostics,
) -> Option<ObservedCertificate> {
    let path = &list_path.index(index);
    let errors_before = diags.errors.len();
    let (url_value, url_path, mut reader) = match item {
        Json::String(_) => (item, path.clone(), None),
        Json::Object(_) => {
            let mut reader = ObjectReader::new(item, path, diags)?;
            let (value, url_path) = reader.require("url", diags)?;
            (value, url_path, Some(reader))
        }
        other => {
            diags.error(
                path,
                format!(
                    "expected a URL string or an object with \"url\", found {}",
                    other.kind()
                ),
            );
            return None;
        }
    };
    let url_text = fields::string(url_value, &url_path, diags).map(|text| {
        if text.trim() != text {
            diags.warn(&url_path, "leading or trailing spaces removed");
        }
        text.trim()
    });
    let secret = url_text.and_then(|text| match vault_url::parse(text) {
        Ok(secret) => Some(secret),
        Err(message) => {
            diags.error(&url_path, message);
            None
        }
    });
    if let Some(secret) = &secret
        && secret.kind == UrlKind::Certificates
    {
        diags.warn(
            &url_path,
            format!(
                "/certificates/ URLs carry no private key; the secret {} is fetched instead",
                secret.secret_url()
            ),
        );
    }
    let target = match context.platform {
        Platform::Windows => {
            windows_target(reader.as_mut(), context.defaults, diags).map(Target::WindowsStore)
        }
        Platform::Linux => {
            let link = secret
                .as_ref()
                .map(|s| format!("{}.{}", s.vault_name, s.secret_name));
            linux_target(reader.as_mut(), context, link, diags).map(Target::LinuxDirectory)
        }
    };
    if let Some(reader) = reader {
        reader.finish(diags);
    }
    let (secret, target) = (secret?, target?);
    if diags.errors.len() != errors_before {
        return None;
    }
    Some(ObservedCertificate {
        index,
        url: url_text.unwrap_or_default().to_owned(),
        vault_host: secret.vault_host(),
        secret,
        target,
    })
}

fn windows_target(
    reader: Option<&mut ObjectReader<'_>>,
    defaults: &StoreDefaults,
    diags: &mut Diagnostics,
) -> Option<WindowsTarget> {
    let mut target = WindowsTarget {
        store_location: defaults.windows_location,
        store_name: defaults.windows_store_name.clone(),
        accounts: Vec::new(),
        key_exportable: false,
    };
    let Some(reader) = reader else {
        return Some(target);
    };
    let mut ok = true;
    if let Some((value, path)) = reader.take("certificateStoreName", diags) {
        match targets::windows_store_name(value, &path, diags) {
            Some(name) => target.store_name = name,
            None => ok = false,
        }
    }
    if let Some((value, path)) = reader.take("certificateStoreLocation", diags) {
        match targets::windows_location(value, &path, diags) {
            Some(location) => target.store_location = location,
            None => ok = false,
        }
    }
    if let Some((value, path)) = reader.take("keyExportable", diags) {
        match fields::boolean(value, &path, diags) {
            Some(on) => target.key_exportable = on,
            None => ok = false,
        }
    }
    if let Some((value, path)) = reader.take("accounts", diags) {
        match targets::accounts(value, &path, diags) {
            Some(accounts) => target.accounts = accounts,
            None => ok = false,
        }
    }
    reader.ignore_for_platform("customSymbolicLinkName", "windows", diags);
    reader.ignore_for_platform("acls", "windows", diags);
    ok.then_some(target)
}

fn linux_target(
    reader: Option<&mut ObjectReader<'_>>,
    context: &CertificateContext<'_>,
    link_name: Option<String>,
    diags: &mut Diagnostics,
) -> Option<LinuxTarget> {
    let mut target = LinuxTarget {
        directory: context.defaults.linux_directory.clone(),
        link_name: link_name.unwrap_or_default(),
        custom_link_name: None,
        acls: Vec::new(),
    };
    let Some(reader) = reader else {
        return Some(target);
    };
    let mut ok = true;
    if let Some((value, path)) = reader.take("certificateStoreLocation", diags) {
        match targets::linux_directory(value, &path, diags) {
            Some(directory) => target.directory = directory,
            None => ok = false,
        }
    }
    if let Some((value, path)) = reader.take("customSymbolicLinkName", diags) {
        match targets::link_name(value, &path, diags) {
            Some(name) if name == target.link_name => {
                diags.warn(&path, "is the default link name already");
            }
            Some(name) => target.custom_link_name = Some(name),
            None => ok = false,
        }
    }
    if let Some((value, path)) = reader.take("acls", diags) {
        match targets::acls(value, &path, diags) {
            Some(_) if !context.acl_enabled => diags.warn(
                &path,
                "ignored because secretsManagementSettings.aclEnabled is not true",
            ),
            Some(acls) => target.acls = acls,
            None => ok = false,
        }
    }
    for windows_only in ["certificateStoreName", "keyExportable", "accounts"] {
        reader.ignore_for_platform(windows_only, "linux", diags);
    }
    ok.then_some(target)
}

/// Two certificates may not share a store entry: the same vault+secret in the same
/// store, or (Linux) the same link name in the same directory (SPEC §1.3, §10).
fn check_duplicates(
    certificates: &[ObservedCertificate],
    list_path: &JsonPath,
    diags: &mut Diagnostics,
) {
    let mut owners: HashMap<String, usize> = HashMap::new();
    for (position, certificate) in certificates.iter().enumerate() {
        for (key, what) in store_entries(certificate) {
            match owners.get(&key) {
                Some(&first) if first != position => {
                    let owner = &certificates[first];
                    let message = match what {
                        StoreEntry::Secret => format!(
                            "{}/{} is already installed into {} by",
                            owner.vault_host,
                            owner.secret.secret_name,
                            store_name(&owner.target)
                        ),
                        StoreEntry::Link(link) => format!(
                            "link name {} in {} is already used by",
                            quote(&link),
                            store_name(&owner.target)
                        ),
                    };
                    diags.error(
                        &list_path.index(certificate.index),
                        format!(
                            "duplicate target: {message} {}",
                            list_path.index(owner.index)
                        ),
                    );
                    break;
                }
                Some(_) => {}
                None => {
                    owners.insert(key, position);
                }
            }
        }
    }
}

enum StoreEntry {
    Secret,
    Link(String),
}

/// The store entries a certificate occupies, as comparable keys. Key Vault names are
/// case-insensitive, Windows store names too; Linux file names are not.
fn store_entries(certificate: &ObservedCertificate) -> Vec<(String, StoreEntry)> {
    let secret = format!(
        "{}/{}",
        certificate.secret.vault_name,
        certificate.secret.secret_name.to_ascii_lowercase()
    );
    match &certificate.target {
        Target::WindowsStore(t) => vec![(
            format!(
                "store {}\\{}|{secret}",
                t.store_location.name(),
                t.store_name.to_ascii_lowercase()
            ),
            StoreEntry::Secret,
        )],
        Target::LinuxDirectory(t) => {
            let mut entries = vec![(format!("dir {}|{secret}", t.directory), StoreEntry::Secret)];
            for link in std::iter::once(&t.link_name).chain(&t.custom_link_name) {
                entries.push((
                    format!("link {}/{link}", t.directory),
                    StoreEntry::Link(link.clone()),
                ));
            }
            entries
        }
    }
}

/// `LocalMachine\MY` or the directory.
fn store_name(target: &Target) -> String {
    match target {
        Target::WindowsStore(t) => format!("{}\\{}", t.store_location.name(), t.store_name),
        Target::LinuxDirectory(t) => t.directory.clone(),
    }
}
