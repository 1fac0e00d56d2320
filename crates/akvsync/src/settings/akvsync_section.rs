//! The top-level `akvsync` object: settings that only akvsync has (version retention,
//! the initial-sync attempt limit, testing overrides). Kept in one object so that no
//! future Microsoft field can collide with ours.

use super::diag::{Diagnostics, JsonPath};
use super::fields::{self, ObjectReader, quote};
use super::json::Json;
use super::model::{AkvsyncSettings, MAX_POLLING_INTERVAL_S, TestingOverrides};
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
    if let Some((value, path)) = reader.take("testing", diags) {
        settings.testing = testing(value, &path, diags);
    }
    reader.finish(diags);
    settings
}

/// `akvsync.testing`: each override set is announced with a warning (SPEC §1.2).
fn testing(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> TestingOverrides {
    let mut overrides = TestingOverrides::default();
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
        if let Json::Object(members) = value {
            let mut seen = std::collections::BTreeSet::new();
            for (host, _) in members {
                if !seen.insert(host.to_ascii_lowercase()) {
                    continue;
                }
                let Some((target, host_path)) = hosts.take(host, diags) else {
                    continue;
                };
                connect_to_entry(host, target, &host_path, &mut overrides, diags);
            }
        }
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
