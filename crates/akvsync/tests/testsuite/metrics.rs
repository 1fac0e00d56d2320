//! Metrics and expiry warnings end to end: `akvsync run` against the emulator with the
//! metrics endpoint on a free loopback port, scraped over TCP and parsed with a small
//! parser of the text exposition format 0.0.4 (comments or `name{labels} value`, `# TYPE`
//! before a family's samples, escaped label values, cumulative histogram buckets ending in
//! `+Inf`); the values are checked against the emulator, `status --json` and the faults
//! injected (429, 403). `once` writes a parseable textfile; `validate` refuses a
//! non-loopback listen address; the expiry warning follows `expiryWarningDays` and is logged
//! once, not at every poll; a taken port is bound once it is free; without metrics settings
//! the agent listens on no port; the extension's service puts the warning in the
//! certificate's substatus and serves the metrics.
#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::time::Duration;

use kvemu::{Emulator, Fault};
use serde_json::json;

use crate::common::env::{Env, EnvConfig, VAULT, akvsync};
use crate::common::faults;
use crate::common::guest_agent::HandlerDir;
use crate::common::http::{self, free_loopback_port};
use crate::common::service::{Service, alive};
use crate::common::store_view::{self, StoreView};
use crate::common::{Scratch, wait_until};

/// An environment observing `observed` (the test creates them in the vault), with these
/// `akvsync` settings.
fn start(observed: &[&str], akvsync: serde_json::Value) -> Env {
    let urls: Vec<String> = observed
        .iter()
        .map(|s| format!("https://{VAULT}.vault.azure.net/secrets/{s}"))
        .collect();
    Env::start(EnvConfig {
        akvsync: Some(akvsync),
        secrets_management: Some(json!({"observedCertificates": urls})),
        ..Default::default()
    })
}

fn listen_on(port: u16) -> serde_json::Value {
    json!({"metrics": {"listen": format!("127.0.0.1:{port}")}})
}

/// Imports a certificate valid for `days` more days as `name`.
fn import_expiring(emu: &Emulator, name: &str, days: i64) -> kvemu::Imported {
    let dns = format!("{name}.example.test");
    let pki = emu.test_pki().unwrap();
    let key = kvemu::seed::LeafKey::EcP256;
    let issued = pki
        .issue(&dns, std::slice::from_ref(&dns), key, days)
        .unwrap();
    emu.import_pem(VAULT, name, &issued.pem_key_first(), kvemu::CT_PEM)
        .unwrap()
}

/// A certificate issued for 10 days has 9 full days left, or 10 when it was synced within
/// the second it was issued (notAfter has 1 s resolution).
fn ten_days_left(warning: &str) -> bool {
    warning.contains("expires in 9 days") || warning.contains("expires in 10 days")
}

/// TCP ports the process `pid` listens on (from `/proc/<pid>/fd` and `/proc/net/tcp{,6}`).
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

/// Waits until `env`'s store links `web` (synced), for at most 20 s.
fn wait_synced(env: &Env, service: &Service) {
    let link = StoreView::new(env.scratch.store()).link(VAULT, "web");
    service.wait_for(Duration::from_secs(20), "web is synced", || link.exists());
}

/// The agent said it serves the metrics on `port`.
fn assert_listened(log: &str, port: u16) {
    let listening = format!("metrics endpoint listening on http://127.0.0.1:{port}/metrics");
    assert!(log.contains(&listening), "{log}");
}

/// The endpoint's exposition (200, the format's content type, a body that parses), or why
/// there is none yet.
fn scrape(port: u16) -> Result<Exposition, String> {
    let response = http::get(port, "/metrics").map_err(|e| e.to_string())?;
    let (head, body) = (response.head, response.body);
    assert_eq!(response.code, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    Ok(parse_exposition(&body).unwrap_or_else(|e| panic!("{e}\n{body}")))
}

// ---------------------------------------------------------------------------------------
// A parser of the Prometheus text exposition format 0.0.4, strict about what the agent
// must get right.

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    /// Family name → TYPE.
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn values(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The one sample of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self
            .values(name)
            .into_iter()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?} matches {found:?}");
        found.first().map(|s| s.value)
    }
}

fn is_name(text: &str, colon: bool) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        other => other
            .parse::<f64>()
            .map_err(|e| format!("value {other:?}: {e}")),
    }
}

/// `{a="x",b="y\"z"}` at the start of `text`; returns the labels and the rest.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').ok_or("expected {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest.split_once("=\"").ok_or("expected label=\"")?;
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw newline in a label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &after[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} at {rest:?}"));
        }
    }
}

/// The family a sample belongs to: itself, or a histogram's base name.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    if types.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types
                .get(base)
                .is_some_and(|t| t == "histogram" || t == "summary")
        {
            return base;
        }
    }
    name
}

fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut exposition = Exposition::default();
    let mut helped = std::collections::HashSet::new();
    let mut finished_families = std::collections::HashSet::new();
    let mut current_family: Option<String> = None;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line has no line feed".into());
    }
    for (number, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["TYPE", name, kind] => {
                    if !is_name(name, true) {
                        return Err(at("bad metric name".into()));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(kind) {
                        return Err(at(format!("unknown type {kind}")));
                    }
                    if exposition
                        .types
                        .insert((*name).to_owned(), (*kind).to_owned())
                        .is_some()
                    {
                        return Err(at("a second TYPE".into()));
                    }
                    if exposition
                        .samples
                        .iter()
                        .any(|s| family_of(&s.name, &exposition.types) == *name)
                    {
                        return Err(at("TYPE after the family's samples".into()));
                    }
                }
                ["HELP", name, _] | ["HELP", name] if !helped.insert((*name).to_owned()) => {
                    return Err(at("a second HELP".into()));
                }
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(at("bad metric name".into()));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let fields: Vec<&str> = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?
            .split(' ')
            .collect();
        let value = match fields.as_slice() {
            [value] => parse_value(value).map_err(at)?,
            [value, timestamp] => {
                timestamp
                    .parse::<i64>()
                    .map_err(|e| at(format!("timestamp: {e}")))?;
                parse_value(value).map_err(at)?
            }
            _ => return Err(at("expected a value and an optional timestamp".into())),
        };
        let family = family_of(name, &exposition.types).to_owned();
        if !exposition.types.contains_key(&family) {
            return Err(at("a sample before its family's TYPE".into()));
        }
        if current_family.as_deref() != Some(family.as_str()) {
            if !finished_families.insert(family.clone()) {
                return Err(at("the family's samples are not together".into()));
            }
            current_family = Some(family.clone());
        }
        exposition.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    check_histograms(&exposition)?;
    Ok(exposition)
}

/// A series' labels other than `le`, in order.
type LabelSet = Vec<(String, String)>;

/// Every histogram series: `le` ascending, counts monotone, ending in `+Inf` = `_count`.
fn check_histograms(exposition: &Exposition) -> Result<(), String> {
    for (family, kind) in &exposition.types {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<LabelSet, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in exposition.values(&format!("{family}_bucket")) {
            let le = sample
                .labels
                .get("le")
                .ok_or_else(|| format!("{family}_bucket without le"))?;
            let le = parse_value(le)?;
            let key = sample
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push((le, sample.value));
        }
        if series.is_empty() {
            return Err(format!("histogram {family} has no buckets"));
        }
        for (labels, buckets) in series {
            for pair in buckets.windows(2) {
                if pair[1].0 <= pair[0].0 {
                    return Err(format!("{family}{labels:?}: le not ascending"));
                }
                if pair[1].1 < pair[0].1 {
                    return Err(format!("{family}{labels:?}: buckets not cumulative"));
                }
            }
            let (last_le, last_count) = *buckets.last().unwrap();
            if last_le != f64::INFINITY {
                return Err(format!("{family}{labels:?}: no +Inf bucket"));
            }
            let with = |name: String| {
                exposition.samples.iter().find(|s| {
                    s.name == name
                        && s.labels
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect::<Vec<_>>()
                            == labels
                })
            };
            let count = with(format!("{family}_count"))
                .ok_or_else(|| format!("{family}{labels:?}: no _count"))?;
            with(format!("{family}_sum")).ok_or_else(|| format!("{family}{labels:?}: no _sum"))?;
            if count.value != last_count {
                return Err(format!("{family}{labels:?}: +Inf bucket is not _count"));
            }
        }
    }
    Ok(())
}

#[test]
fn the_parser_refuses_what_the_format_forbids() {
    let good = "# HELP a_total Things.\n# TYPE a_total counter\na_total{k=\"x\\\\y\\\"z\\n\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1.5\nh_count 2\n";
    let parsed = parse_exposition(good).unwrap();
    assert_eq!(parsed.value("a_total", &[("k", "x\\y\"z\n")]), Some(3.0));
    for bad in [
        "a 1\n",                                           // no TYPE
        "a 1\n# TYPE a gauge\n",                           // TYPE after samples
        "# TYPE a gauge\na{k=\"x\"y\"} 1\n",               // unescaped quote
        "# TYPE a gauge\na{k=\"x\\q\"} 1\n",               // unknown escape
        "# TYPE a gauge\na{k=\"x\"} one\n",                // not a number
        "# TYPE a gauge\na 1",                             // no final line feed
        "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na 2\n", // family split
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn run_serves_metrics_that_match_status_faults_and_expiry() {
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let port = free_loopback_port();
    let env = start(&["web", "soon", "denied"], listen_on(port));
    let web = env.emu.rotate_certificate(VAULT, "web").unwrap();
    let soon = import_expiring(&env.emu, "soon", 10);
    env.emu.rotate_certificate(VAULT, "denied").unwrap();
    // The first answer for `web` is a 429 (retried after 1 s); `denied` is always 403.
    env.emu
        .inject(Fault::object(VAULT, "web", faults::status(429, Some(1)), 1));
    env.emu.inject(Fault::object(
        VAULT,
        "denied",
        faults::status(403, None),
        100_000,
    ));
    let service = Service::spawn(env.run_command(&[]));

    // Wait for both good certificates and at least four rounds (one log line of the expiry
    // warning, not four).
    let metrics = wait_until(Duration::from_secs(30), "2 installed, 4 rounds", || {
        let metrics = scrape(port).map_err(|e| format!("{e}\n{}", service.log()))?;
        let rounds = metrics.value("akvsync_sync_duration_seconds_count", &[]);
        match metrics.value("akvsync_certificates_installed", &[]) {
            Some(2.0) if rounds.is_some_and(|n| n >= 4.0) => Ok(metrics),
            _ => Err(format!("{metrics:#?}\n{}", service.log())),
        }
    });

    assert_eq!(metrics.types["akvsync_certificate_info"], "gauge");
    assert_eq!(metrics.types["akvsync_fetch_errors_total"], "counter");
    assert_eq!(metrics.types["akvsync_sync_duration_seconds"], "histogram");
    let build = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(metrics.value("akvsync_build_info", &build), Some(1.0));
    let observed = metrics.value("akvsync_certificates_observed", &[]);
    assert_eq!(observed, Some(3.0));

    // Per-certificate series agree with what `status --json` reads back from the store.
    // Exit 1: `denied` is not served (SPEC §10); the two others are.
    let out = env.cmd(&["status", "--json"]).code(1).run();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = |name: &str| {
        let certificates = status["certificates"].as_array().unwrap();
        let wanted = format!("{VAULT}/{name}");
        certificates
            .iter()
            .find(|c| c["name"] == wanted)
            .unwrap()
            .clone()
    };
    for (name, served) in [("web", true), ("soon", true), ("denied", false)] {
        assert_eq!(entry(name)["served"], served, "{:#}", entry(name));
    }
    for (name, imported) in [("web", &web), ("soon", &soon)] {
        let installed = entry(name)["installed"].clone();
        assert_eq!(installed["thumbprint"], imported.thumbprint.as_str());
        assert_eq!(installed["version"], imported.version.as_str());
        let info: Vec<&Sample> = metrics
            .values("akvsync_certificate_info")
            .into_iter()
            .filter(|s| s.labels["secret"] == name)
            .collect();
        assert_eq!(info.len(), 1, "{info:?}");
        let labels = &info[0].labels;
        assert_eq!(labels["vault"], VAULT);
        assert_eq!(labels["version"], imported.version);
        assert_eq!(labels["thumbprint"], imported.thumbprint);
        assert_eq!(labels["target"], entry(name)["target"].as_str().unwrap());
        assert_eq!(info[0].value, 1.0);
        let series = [("vault", VAULT), ("secret", name)];
        assert_eq!(
            metrics.value("akvsync_certificate_not_after_timestamp_seconds", &series),
            installed["notAfter"].as_f64()
        );
        let last_success = "akvsync_certificate_last_success_timestamp_seconds";
        let last_success = metrics.value(last_success, &series).unwrap();
        // The scrape came before `status`, so the state's record is the same or later.
        let recorded = entry(name)["lastSuccess"].as_f64().unwrap();
        assert!(
            last_success >= started_at && last_success <= recorded,
            "{started_at} <= {last_success} <= {recorded}"
        );
    }
    // The denied certificate: no info, no last success, counted as an HTTP 4xx failure.
    assert!(entry("denied")["installed"].is_null());
    let denied = [("vault", VAULT), ("secret", "denied")];
    let last_success = "akvsync_certificate_last_success_timestamp_seconds";
    assert_eq!(metrics.value(last_success, &denied), None);
    let info = metrics.values("akvsync_certificate_info");
    assert!(!info.iter().any(|s| s.labels["secret"] == "denied"));
    let rounds = metrics.value("akvsync_sync_duration_seconds_count", &[]);
    let rounds = rounds.unwrap();
    let errors = |kind| metrics.value("akvsync_fetch_errors_total", &[("kind", kind)]);
    let http_4xx = errors("http_4xx").unwrap();
    assert!(
        http_4xx >= rounds - 1.0 && http_4xx <= rounds + 1.0,
        "{http_4xx} of {rounds}"
    );
    for kind in ["decode", "store", "identity", "http_5xx", "throttled"] {
        assert_eq!(errors(kind), Some(0.0), "{kind}");
    }
    // The 429 was retried (so it is no fetch error) but counted as a throttled response.
    let throttled = metrics.value("akvsync_throttled_responses_total", &[]);
    assert_eq!(throttled, Some(1.0));
    assert!(metrics.value("akvsync_token_refreshes_total", &[]).unwrap() >= 1.0);
    let sum = metrics.value("akvsync_sync_duration_seconds_sum", &[]);
    let sum = sum.unwrap();
    assert!(sum >= 1.0, "the first round waited for Retry-After: {sum}");

    // A second 429 makes the counter go up on a later round.
    env.emu
        .inject(Fault::object(VAULT, "web", faults::status(429, Some(1)), 1));
    wait_until(
        Duration::from_secs(20),
        "throttled after a second 429",
        || {
            let throttled = scrape(port)?.value("akvsync_throttled_responses_total", &[]);
            (throttled == Some(2.0))
                .then_some(())
                .ok_or(format!("{throttled:?}"))
        },
    );

    // Nothing but /metrics is served.
    for path in ["/", "/metrics/../etc/passwd"] {
        assert_eq!(http::get(port, path).unwrap().code, 404, "{path}");
    }

    // The expiry warning: in status for `soon` only, and logged once, not every poll.
    let warning = entry("soon")["installed"]["expiryWarning"].clone();
    assert!(warning.as_str().is_some_and(ten_days_left), "{warning}");
    assert!(entry("web")["installed"]["expiryWarning"].is_null());
    let table = env.cmd(&["status"]).run();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.lines().any(|l| l.contains("soon")
            && l.contains("warning: the certificate expires in")
            && ten_days_left(l)),
        "{table}"
    );

    assert_eq!(
        listening_ports(service.pid()),
        vec![port],
        "the agent listens on the metrics port and nothing else"
    );

    let log = service.stop_within(Duration::from_secs(5));
    let expiry_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("certificate expiry"))
        .collect();
    assert_eq!(expiry_lines.len(), 1, "{log}");
    assert!(
        expiry_lines[0].contains(&format!("{VAULT}/soon")) && ten_days_left(expiry_lines[0]),
        "{log}"
    );
    assert_listened(&log, port);
}

#[test]
fn once_writes_a_parseable_textfile_and_the_threshold_decides_the_warning() {
    let env = start(&["soon"], json!({}));
    let soon = import_expiring(&env.emu, "soon", 10);
    let collector = env.scratch.path("collector");
    let textfile = collector.join("akvsync.prom");
    fs::create_dir_all(&collector).unwrap();
    // A stale file from an earlier run is replaced, not appended to.
    fs::write(&textfile, "garbage that is not the exposition format\n").unwrap();
    // Warnings do not fail `once`.
    let once = |days: u32| {
        let mut settings = env.settings_json();
        settings["akvsync"]["expiryWarningDays"] = days.into();
        settings["akvsync"]["metrics"] = json!({"textfile": textfile});
        env.write_settings(&settings);
        let out = env.cmd(&["once"]).code(0).run();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    // 10 days left, warned 30 days ahead: the warning is printed.
    let stderr = once(30);
    let warning = format!("warning: {VAULT}/soon: the certificate expires in ");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&warning) && ten_days_left(l)),
        "{stderr}"
    );
    let text = fs::read_to_string(&textfile).unwrap();
    let metrics = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let thumbprint = [("thumbprint", soon.thumbprint.as_str())];
    for (name, labels, value) in [
        ("akvsync_certificates_observed", &[][..], 1.0),
        ("akvsync_certificates_installed", &[], 1.0),
        ("akvsync_certificate_info", &thumbprint, 1.0),
        ("akvsync_sync_duration_seconds_count", &[], 1.0),
        ("akvsync_throttled_responses_total", &[], 0.0),
        ("akvsync_token_refreshes_total", &[], 1.0),
    ] {
        assert_eq!(metrics.value(name, labels), Some(value), "{name}");
    }
    assert_eq!(store_view::mode(&textfile) & 0o777, 0o644);
    let leftovers: Vec<String> = store_view::snapshot(&collector).into_keys().collect();
    assert_eq!(leftovers, ["akvsync.prom"], "no temporaries");

    // Warned only 5 days ahead: no warning for 10 days left.
    let stderr = once(5);
    assert!(!stderr.contains("expires in"), "{stderr}");
}

#[test]
fn validate_refuses_a_metrics_endpoint_that_is_not_loopback() {
    let scratch = Scratch::new("validate");
    for (listen, accepted) in [
        ("0.0.0.0:9464", false),
        ("192.0.2.10:9464", false),
        ("[::]:9464", false),
        ("127.0.0.1:9464", true),
        ("[::1]:9464", true),
    ] {
        let settings = json!({
            "secretsManagementSettings": {
                "observedCertificates": ["https://myvault.vault.azure.net/secrets/web"],
            },
            "akvsync": {"metrics": {"listen": listen}},
        });
        fs::write(scratch.settings_file(), settings.to_string()).unwrap();
        let validate = akvsync(&["validate", "--platform", "linux"]).arg(scratch.settings_file());
        if accepted {
            validate.code(0).run();
        } else {
            let refused = validate.code(2).stderr_has("akvsync.metrics.listen");
            refused.stderr_has("not a loopback address").run();
        }
    }
}

#[test]
fn a_taken_port_does_not_stop_syncing_and_the_endpoint_comes_up_once_it_is_free() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let env = start(&["web"], listen_on(port));
    env.emu.rotate_certificate(VAULT, "web").unwrap();
    let service = Service::spawn(env.run_command(&[]));
    // Synced although the metrics port is taken.
    wait_synced(&env, &service);
    // Several rounds with the port still taken: the squatter answers, not the agent.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(alive(service.pid()), "still running");
    drop(squatter);
    wait_until(Duration::from_secs(20), "bound after a later round", || {
        let installed = scrape(port)?.value("akvsync_certificates_installed", &[]);
        (installed == Some(1.0))
            .then_some(())
            .ok_or(format!("{installed:?}"))
    });
    let log = service.stop_within(Duration::from_secs(5));
    assert_eq!(
        log.matches("cannot listen for metrics").count(),
        1,
        "the error is logged once, not at every retry: {log}"
    );
    assert_listened(&log, port);
}

#[test]
fn without_metrics_settings_nothing_listens() {
    let env = start(&["web"], json!({}));
    env.emu.rotate_certificate(VAULT, "web").unwrap();
    let service = Service::spawn(env.run_command(&[]));
    wait_synced(&env, &service);
    // A few polls later: still no listening socket.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(listening_ports(service.pid()), Vec::<u16>::new());
    let log = service.stop_within(Duration::from_secs(5));
    assert!(
        !log.contains("metrics endpoint") && !log.contains("listen for metrics"),
        "{log}"
    );
}

/// The extension: `akvsync handler install` and `enable` in a handler directory laid out as
/// the Linux guest agent lays it out; the service it starts reports the expiry warning in
/// the certificate's substatus and serves the metrics.
#[test]
fn the_extension_reports_the_expiry_warning_in_its_substatus_and_serves_metrics() {
    let port = free_loopback_port();
    let env = start(&["web", "soon"], listen_on(port));
    env.emu.rotate_certificate(VAULT, "web").unwrap();
    import_expiring(&env.emu, "soon", 10);
    let handler = HandlerDir::create(&env.scratch.0, env.scratch.state());
    handler.write_settings(0, &env.settings_json(), None);
    handler.cmd("install", 0).code(0).run();
    handler.cmd("enable", 0).code(0).run();

    let status = wait_until(
        Duration::from_secs(60),
        "0.status: 2 substatuses",
        || match handler.status(0) {
            Some(s)
                if s["status"] == "success"
                    && s["substatus"].as_array().is_some_and(|a| a.len() == 2) =>
            {
                Ok(s)
            }
            other => Err(format!("{other:#?}")),
        },
    );
    let substatus = |name: &str| {
        let all = status["substatus"].as_array().unwrap();
        let wanted = format!("{VAULT}/{name}");
        all.iter().find(|s| s["name"] == wanted).unwrap().clone()
    };
    let soon = substatus("soon");
    assert_eq!(soon["status"], "warning", "{soon:#}");
    let message = soon["formattedMessage"]["message"].as_str().unwrap();
    assert!(
        message.contains("; warning: the certificate expires in") && ten_days_left(message),
        "{message}"
    );
    let web = substatus("web");
    assert_eq!(web["status"], "success", "{web:#}");
    let message = web["formattedMessage"]["message"].as_str().unwrap();
    assert!(!message.contains("warning"), "{web:#}");

    // The extension's service serves the metrics too.
    let metrics = scrape(port).unwrap();
    let installed = metrics.value("akvsync_certificates_installed", &[]);
    assert_eq!(installed, Some(2.0));
    handler.cmd("disable", 0).code(0).run();
}
