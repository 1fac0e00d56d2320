//! The top-level `akvsync` object: settings that only akvsync has (version retention,
//! the initial-sync attempt limit and start-up spread, hooks, expiry warnings, metrics, outputs (read by
//! `outputs`), testing overrides). Kept in one object so that no
//! future Microsoft field can collide with ours.

use super::diag::{Diagnostics, JsonPath};
use super::fields::{self, ObjectReader, quote};
use super::json::Json;
use super::model::{
    AkvsyncSettings, ChainValidation, DEFAULT_HOOK_TIMEOUT_S, Hook, MAX_EXPIRY_WARNING_DAYS,
    MAX_INITIAL_SYNC_SPREAD_S, MAX_POLLING_INTERVAL_S, MetricsSettings, TestingOverrides,
    WindowsOptions,
};
use super::vault_url;

/// Upper bound of `retainVersions`: beyond this a store is an archive, not a store.
const MAX_RETAIN_VERSIONS: u64 = 1000;

pub fn parse(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> AkvsyncSettings {
    let mut settings = AkvsyncSettings::default();
    let Some(mut reader) = ObjectReader::new(value, path, diags) else {
        return settings;
    };
    if let Some((value, path)) = reader.take("retainVersions", diags)
        && let Some(n) = fields::positive_integer(value, &path, MAX_RETAIN_VERSIONS, diags)
    {
        settings.retain_versions = n as u32;
    }
    if let Some((value, path)) = reader.take("initialSyncMaxAttempts", diags)
        && let Some(n) = fields::positive_integer(value, &path, u64::from(u32::MAX), diags)
    {
        settings.initial_sync_max_attempts = Some(n as u32);
    }
    if let Some((value, path)) = reader.take("initialSyncSpreadInS", diags)
        && let Some(seconds) = whole_number(
            value,
            &path,
            MAX_INITIAL_SYNC_SPREAD_S,
            "seconds",
            "0: no spread",
            diags,
        )
    {
        settings.initial_sync_spread_s = seconds;
    }
    if let Some((value, path)) = reader.take("hooks", diags)
        && let Some(items) = fields::array(value, &path, diags)
    {
        settings.hooks = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| hook(item, &path.index(i), diags))
            .collect();
    }
    if let Some((value, path)) = reader.take("expiryWarningDays", diags)
        && let Some(days) = whole_number(
            value,
            &path,
            u64::from(MAX_EXPIRY_WARNING_DAYS),
            "days",
            "0: warn only once a certificate has expired",
            diags,
        )
    {
        settings.expiry_warning_days = days as u32;
    }
    if let Some((value, path)) = reader.take("metrics", diags) {
        settings.metrics = metrics(value, &path, diags);
    }
    if let Some((value, path)) = reader.take("outputs", diags) {
        settings.outputs = super::outputs::parse(value, &path, diags);
    }
    if let Some((value, path)) = reader.take("chainValidation", diags)
        && let Some(text) = fields::nonblank_string(value, &path, diags)
    {
        settings.chain_validation = match text.trim().to_ascii_lowercase().as_str() {
            "serverauth" => Some(ChainValidation::ServerAuth),
            "all" => Some(ChainValidation::All),
            "off" => Some(ChainValidation::Off),
            _ => {
                diags.error(
                    &path,
                    format!(
                        "expected \"serverAuth\", \"all\" or \"off\", found {}",
                        quote(text)
                    ),
                );
                None
            }
        };
    }
    if let Some((value, path)) = reader.take("windows", diags) {
        settings.windows = windows(value, &path, diags);
    }
    if let Some((value, path)) = reader.take("testing", diags) {
        settings.testing = testing(value, &path, diags);
    }
    reader.finish(diags);
    settings
}

/// `akvsync.windows`: `lifecycleNotifications` (default true), `updateHttpSysBindings`
/// (default false). The platform check (a warning on Linux) is the schema's.
fn windows(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> WindowsOptions {
    let mut options = WindowsOptions::default();
    let Some(mut reader) = ObjectReader::new(value, path, diags) else {
        return options;
    };
    if let Some((value, path)) = reader.take("lifecycleNotifications", diags)
        && let Some(on) = fields::boolean(value, &path, diags)
    {
        options.lifecycle_notifications = on;
    }
    if let Some((value, path)) = reader.take("updateHttpSysBindings", diags)
        && let Some(on) = fields::boolean(value, &path, diags)
    {
        options.update_http_sys_bindings = on;
    }
    reader.finish(diags);
    options
}

/// A whole number of `unit` in `0..=max`, as a number or a string of digits; `zero` says
/// what 0 means (`expiryWarningDays`: 0 turns the early warning off, an expired certificate
/// is still reported; `initialSyncSpreadInS`: 0 starts at once).
fn whole_number(
    value: &Json,
    path: &JsonPath,
    max: u64,
    unit: &str,
    zero: &str,
    diags: &mut Diagnostics,
) -> Option<u64> {
    let parsed = match value {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => {
            let digits = s.trim();
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<u64>().unwrap_or(u64::MAX))
        }
        _ => None,
    };
    let found = match value {
        Json::Number(n) => n.to_string(),
        Json::String(s) => quote(s),
        other => other.kind().to_owned(),
    };
    match parsed {
        Some(n) if n <= max => Some(n),
        _ => {
            diags.error(
                path,
                format!(
                    "expected a whole number of {unit} from 0 to {max} ({zero}), found {found}"
                ),
            );
            None
        }
    }
}

/// `akvsync.metrics`: `listen` (a loopback `ip:port`) and/or `textfile` (an absolute path).
fn metrics(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> MetricsSettings {
    let mut metrics = MetricsSettings::default();
    let Some(mut reader) = ObjectReader::new(value, path, diags) else {
        return metrics;
    };
    if let Some((value, path)) = reader.take("listen", diags)
        && let Some(text) = fields::nonblank_string(value, &path, diags)
    {
        metrics.listen = listen_address(text, &path, diags);
    }
    if let Some((value, path)) = reader.take("textfile", diags)
        && let Some(text) = fields::nonblank_string(value, &path, diags)
    {
        metrics.textfile = textfile_path(text, &path, diags);
    }
    reader.finish(diags);
    metrics
}

/// A loopback socket address with a port: the endpoint is unauthenticated, so it is never
/// reachable from another machine.
fn listen_address(
    text: &str,
    path: &JsonPath,
    diags: &mut Diagnostics,
) -> Option<std::net::SocketAddr> {
    let Ok(address) = text.trim().parse::<std::net::SocketAddr>() else {
        diags.error(
            path,
            format!(
                "expected a loopback address and port such as \"127.0.0.1:9464\" or \"[::1]:9464\", found {}",
                quote(text)
            ),
        );
        return None;
    };
    if !address.ip().is_loopback() {
        diags.error(
            path,
            format!(
                "{} is not a loopback address; the metrics endpoint has no authentication and listens only on 127.0.0.0/8 or ::1",
                quote(text)
            ),
        );
        return None;
    }
    if address.port() == 0 {
        diags.error(path, "the port must not be 0");
        return None;
    }
    Some(address)
}

/// An absolute file path (`/…`, or `C:\…` on Windows) without `..` components; a warning
/// when the name does not end in `.prom`, the only files the textfile collectors read.
fn textfile_path(text: &str, path: &JsonPath, diags: &mut Diagnostics) -> Option<String> {
    let bytes = text.as_bytes();
    let windows_absolute = bytes.len() > 3
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && (bytes[2] == b'\\' || bytes[2] == b'/');
    let problem = if !(text.starts_with('/') || windows_absolute) {
        Some("must be an absolute path")
    } else if text.chars().any(fields::is_control) {
        Some("must not contain control characters")
    } else if text.split(['/', '\\']).any(|part| part == "..") {
        Some("must not contain \"..\" components")
    } else if text.ends_with('/') || text.ends_with('\\') {
        Some("must name a file, not a directory")
    } else {
        None
    };
    if let Some(problem) = problem {
        diags.error(path, format!("textfile {} {problem}", quote(text)));
        return None;
    }
    if !text.ends_with(".prom") {
        diags.warn(
            path,
            "textfile collectors read only files whose names end in \".prom\"",
        );
    }
    Some(text.to_owned())
}

/// Most arguments a hook command may have; a bound on untrusted settings.
const MAX_HOOK_ARGS: usize = 64;
/// Longest hook timeout: an hour.
const MAX_HOOK_TIMEOUT_S: u64 = 3600;

/// One `akvsync.hooks[]` entry: exactly one of `command` (an argument array, or a string
/// run by `/bin/sh -c`), `reloadUnit` or `restartUnit` (systemd), plus optional
/// `certificates` (`<vault>/<secret>` names) and `timeoutInS`.
fn hook(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> Option<Hook> {
    let mut reader = ObjectReader::new(value, path, diags)?;
    let errors_before = diags.errors.len();
    let mut commands = Vec::new();
    let mut given = 0;
    let mut kind = "command";
    if let Some((value, path)) = reader.take("command", diags) {
        given += 1;
        match value {
            Json::String(line) if !line.trim().is_empty() => {
                commands.push(vec!["/bin/sh".to_owned(), "-c".to_owned(), line.clone()]);
            }
            Json::Array(items) if !items.is_empty() && items.len() <= MAX_HOOK_ARGS => {
                let args: Vec<String> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| {
                        fields::string(item, &path.index(i), diags).map(str::to_owned)
                    })
                    .collect();
                if args
                    .first()
                    .is_some_and(|program| program.trim().is_empty())
                {
                    diags.error(&path.index(0), "the program must not be empty");
                }
                commands.push(args);
            }
            _ => diags.error(
                &path,
                format!("expected a command line or an array of 1 to {MAX_HOOK_ARGS} arguments"),
            ),
        }
    }
    // `reloadUnit` reloads a running unit and leaves a stopped one alone (nothing serves the old
    // certificate; a first boot starts the server after `akvsync wait`).
    for (field, verb) in [
        ("reloadUnit", "try-reload-or-restart"),
        ("restartUnit", "restart"),
    ] {
        let Some((value, path)) = reader.take(field, diags) else {
            continue;
        };
        given += 1;
        kind = field;
        if let Some(unit) = fields::nonblank_string(value, &path, diags) {
            let valid = unit.len() <= 255
                && unit
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"@._-:\\".contains(&b));
            if valid {
                commands.push(vec![
                    "systemctl".to_owned(),
                    verb.to_owned(),
                    unit.to_owned(),
                ]);
            } else {
                diags.error(
                    &path,
                    format!("unit name {} is not a systemd unit name", quote(unit)),
                );
            }
        }
    }
    let mut restart_service = None;
    if let Some((value, path)) = reader.take("restartService", diags) {
        given += 1;
        kind = "restartService";
        if let Some(name) = fields::nonblank_string(value, &path, diags) {
            // Service names: at most 256 characters, no slashes (SCM's rule).
            if name.len() <= 256
                && !name.contains(['/', '\\'])
                && !name.chars().any(fields::is_control)
            {
                restart_service = Some(name.to_owned());
            } else {
                diags.error(
                    &path,
                    format!("{} is not a Windows service name", quote(name)),
                );
            }
        }
    }
    let mut certificates = Vec::new();
    if let Some((value, path)) = reader.take("certificates", diags) {
        super::outputs::read_filters(value, &path, diags, &mut certificates);
    }
    let mut timeout_s = DEFAULT_HOOK_TIMEOUT_S;
    if let Some((value, path)) = reader.take("timeoutInS", diags)
        && let Some(n) = fields::positive_integer(value, &path, MAX_HOOK_TIMEOUT_S, diags)
    {
        timeout_s = n;
    }
    reader.finish(diags);
    if given != 1 {
        diags.error(
            path,
            "needs exactly one of \"command\", \"reloadUnit\", \"restartUnit\" or \"restartService\"",
        );
        return None;
    }
    if diags.errors.len() != errors_before
        || commands.len() + usize::from(restart_service.is_some()) != 1
    {
        return None;
    }
    Some(Hook {
        command: if commands.is_empty() {
            Vec::new()
        } else {
            commands.remove(0)
        },
        restart_service,
        kind,
        certificate_set: certificates.iter().cloned().collect(),
        certificates,
        timeout_s,
    })
}

/// The environment variable that lets a production build accept `akvsync.testing`.
pub const ALLOW_TESTING_ENV: &str = "AKVSYNC_ALLOW_TESTING_OVERRIDES";

/// Whether `akvsync.testing` may be used (issue 16, finding 11): the overrides make the agent
/// trust another CA and connect elsewhere for a vault's name, so a settings file alone must
/// not be able to turn them on in what the packages ship. Builds with the `demo` feature
/// (development, tests, `cargo install` with defaults) accept them; production builds
/// (`--no-default-features`) only when the agent's environment sets
/// `AKVSYNC_ALLOW_TESTING_OVERRIDES=1`, which the settings file cannot do.
pub fn testing_allowed(demo_build: bool, env: Option<&std::ffi::OsStr>) -> bool {
    demo_build || env.is_some_and(|v| v == "1")
}

/// `akvsync.testing`: each override set is announced with a warning (SPEC §1.2).
fn testing(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> TestingOverrides {
    let mut overrides = TestingOverrides::default();
    if !testing_allowed(
        cfg!(feature = "demo"),
        std::env::var_os(ALLOW_TESTING_ENV).as_deref(),
    ) {
        diags.error(
            path,
            format!(
                "testing overrides are refused by this production build (they would let a \
                 settings file redirect tokens to another host); set {ALLOW_TESTING_ENV}=1 in \
                 the agent's environment to use them on a test machine"
            ),
        );
        return overrides;
    }
    let Some(mut reader) = ObjectReader::new(value, path, diags) else {
        return overrides;
    };
    if let Some((value, path)) = reader.take("caFile", diags)
        && let Some(file) = fields::nonblank_string(value, &path, diags)
    {
        diags.warn(
            &path,
            format!("testing override: also trusting the CA in {}", quote(file)),
        );
        overrides.ca_file = Some(file.to_owned());
    }
    if let Some((value, path)) = reader.take("connectTo", diags)
        && let Some(mut hosts) = ObjectReader::new(value, &path, diags)
    {
        // One pass over the hosts (a lookup per host would be quadratic).
        hosts.take_each(diags, |host, target, host_path, diags| {
            connect_to_entry(host, target, &host_path, &mut overrides, diags);
        });
        hosts.finish(diags);
    }
    if let Some((value, path)) = reader.take("minPollingIntervalInS", diags)
        && let Some(n) = fields::positive_integer(value, &path, MAX_POLLING_INTERVAL_S, diags)
    {
        diags.warn(
            &path,
            format!("testing override: polling interval floor is {n} s"),
        );
        overrides.min_polling_interval_s = Some(n);
    }
    if let Some((value, path)) = reader.take("windowsImportCompat", diags)
        && let Some(on) = fields::boolean(value, &path, diags)
    {
        if on {
            diags.warn(
                &path,
                "testing override: PFX import restricted to the flags Wine implements",
            );
        }
        overrides.windows_import_compat = on;
    }
    reader.finish(diags);
    overrides
}

fn connect_to_entry(
    host: &str,
    target: &Json,
    path: &JsonPath,
    overrides: &mut TestingOverrides,
    diags: &mut Diagnostics,
) {
    let vault_host = match vault_url::parse_vault_host(host) {
        Ok((name, cloud)) => format!("{name}.{}", cloud.suffix()),
        Err(message) => {
            diags.error(path, message);
            return;
        }
    };
    let Some(address) = fields::nonblank_string(target, path, diags) else {
        return;
    };
    if !valid_host_port(address) {
        diags.error(
            path,
            format!(
                "expected \"host:port\" (e.g. \"127.0.0.1:8443\"), found {}",
                quote(address)
            ),
        );
        return;
    }
    diags.warn(
        path,
        format!(
            "testing override: connecting to {} for {vault_host}",
            quote(address)
        ),
    );
    overrides.connect_to.insert(vault_host, address.to_owned());
}

/// `host:port` or `[v6]:port` with a port in 1..=65535.
fn valid_host_port(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let port_ok =
        port.parse::<u16>().is_ok_and(|p| p != 0) && port.bytes().all(|b| b.is_ascii_digit());
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::valid_host_port;

    #[test]
    fn host_port_forms() {
        assert!(valid_host_port("127.0.0.1:8443"));
        assert!(valid_host_port("localhost:1"));
        assert!(valid_host_port("[::1]:8443"));
        assert!(!valid_host_port("127.0.0.1"));
        assert!(!valid_host_port("127.0.0.1:0"));
        assert!(!valid_host_port("127.0.0.1:+80"));
        assert!(!valid_host_port("::1:8443"));
        assert!(!valid_host_port(":8443"));
    }
}
