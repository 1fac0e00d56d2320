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

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kvemu::{Config, Emulator, Fault, FaultKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::Scratch;

const VAULT: &str = "metricskv";

fn url(secret: &str) -> String {
    format!("https://{VAULT}.vault.azure.net/secrets/{secret}")
}

/// Settings JSON for `secrets`, pointed at the emulator, with `akvsync` members added.
fn settings_json(
    emu: &Emulator,
    scratch: &Scratch,
    secrets: &[&str],
    akvsync: serde_json::Value,
) -> serde_json::Value {
    let urls: Vec<String> = secrets.iter().map(|s| url(s)).collect();
    let mut ours = serde_json::json!({"testing": {
        "caFile": emu.ca_file().to_str().unwrap(),
        "connectTo": {format!("{VAULT}.vault.azure.net"): emu.vault_addr().to_string()},
        "minPollingIntervalInS": 1,
    }});
    for (key, value) in akvsync.as_object().unwrap() {
        ours[key] = value.clone();
    }
    serde_json::json!({
        "secretsManagementSettings": {
            "pollingIntervalInS": "1",
            "certificateStoreLocation": scratch.store().to_str().unwrap(),
            "observedCertificates": urls,
        },
        "authenticationSettings": {"msiEndpoint": emu.identity_endpoint()},
        "akvsync": ours,
    })
}

fn write_settings(scratch: &Scratch, json: &serde_json::Value) -> PathBuf {
    let file = scratch.0.join("settings.json");
    fs::write(&file, json.to_string()).unwrap();
    file
}

/// Imports a certificate valid for `days` more days as `name`.
fn import_expiring(emu: &Emulator, name: &str, days: i64) -> kvemu::Imported {
    let dns = format!("{name}.example.test");
    let issued = emu
        .test_pki()
        .unwrap()
        .issue(
            &dns,
            std::slice::from_ref(&dns),
            kvemu::seed::LeafKey::EcP256,
            days,
        )
        .unwrap();
    emu.import_pem(VAULT, name, &issued.pem_key_first(), kvemu::CT_PEM)
        .unwrap()
}

fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn akvsync(
    args: &[&str],
    settings: &std::path::Path,
    state: &std::path::Path,
) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .args(args)
        .arg("--settings")
        .arg(settings)
        .arg("--state-dir")
        .arg(state)
        .output()
        .await
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

/// Waits until `check` holds, polling every 100 ms, for at most `limit`.
async fn eventually<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check().await
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

/// `GET path` over a plain TCP connection; the status line's code, the headers and the body.
async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/plain\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .map_err(|_| std::io::Error::other("response timed out"))??;
    let response = String::from_utf8(response).map_err(std::io::Error::other)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status code"))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .ok_or_else(|| std::io::Error::other("no Content-Length"))?;
    assert_eq!(length, body.len(), "Content-Length");
    Ok((code, head.to_owned(), body.to_owned()))
}

async fn scrape(port: u16) -> Option<Exposition> {
    let (code, head, body) = http_get(port, "/metrics").await.ok()?;
    assert_eq!(code, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    Some(parse_exposition(&body).unwrap_or_else(|e| panic!("{e}\n{body}")))
}

#[tokio::test]
async fn run_serves_metrics_that_match_status_faults_and_expiry() {
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let emu = Emulator::start(Config::default()).await.unwrap();
    let web = emu.rotate_certificate(VAULT, "web").unwrap();
    let soon = import_expiring(&emu, "soon", 10);
    emu.rotate_certificate(VAULT, "denied").unwrap();
    // The first answer for `web` is a 429 (retried after 1 s); `denied` is always 403.
    emu.inject(Fault::object(
        VAULT,
        "web",
        FaultKind::Status {
            status: 429,
            retry_after: Some(1),
        },
        1,
    ));
    emu.inject(Fault::object(
        VAULT,
        "denied",
        FaultKind::Status {
            status: 403,
            retry_after: None,
        },
        100_000,
    ));
    let scratch = Scratch::new("run");
    let port = free_loopback_port();
    let settings = write_settings(
        &scratch,
        &settings_json(
            &emu,
            &scratch,
            &["web", "soon", "denied"],
            serde_json::json!({"metrics": {"listen": format!("127.0.0.1:{port}")}}),
        ),
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .arg("run")
        .arg("--settings")
        .arg(&settings)
        .arg("--state-dir")
        .arg(scratch.state())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let sink = Arc::clone(&log);
    let reader = tokio::spawn(async move {
        let mut line = String::new();
        while tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut line)
            .await
            .unwrap_or(0)
            > 0
        {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });

    // Wait for both good certificates and at least four rounds (one log line of the expiry
    // warning, not four).
    let last = Arc::new(std::sync::Mutex::new(None));
    let ready = eventually(Duration::from_secs(30), || {
        let last = Arc::clone(&last);
        async move {
            let Some(metrics) = scrape(port).await else {
                return false;
            };
            let done = metrics.value("akvsync_certificates_installed", &[]) == Some(2.0)
                && metrics
                    .value("akvsync_sync_duration_seconds_count", &[])
                    .is_some_and(|n| n >= 4.0);
            *last.lock().unwrap() = Some(metrics);
            done
        }
    })
    .await;
    let metrics = last.lock().unwrap().take();
    assert!(ready, "{metrics:#?}\n{}", log.lock().unwrap());
    let metrics = metrics.unwrap();

    assert_eq!(metrics.types["akvsync_certificate_info"], "gauge");
    assert_eq!(metrics.types["akvsync_fetch_errors_total"], "counter");
    assert_eq!(metrics.types["akvsync_sync_duration_seconds"], "histogram");
    assert_eq!(
        metrics.value("akvsync_certificates_observed", &[]),
        Some(3.0)
    );
    assert_eq!(
        metrics.value(
            "akvsync_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // Per-certificate series agree with what `status --json` reads back from the store.
    let out = akvsync(&["status", "--json"], &settings, &scratch.state()).await;
    // Exit 1: `denied` is not served (SPEC §10); the two others are.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, served) in [("web", true), ("soon", true), ("denied", false)] {
        let entry = status["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == format!("{VAULT}/{name}"))
            .unwrap();
        assert_eq!(entry["served"], served, "{entry:#}");
    }
    let entry = |name: &str| {
        status["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == format!("{VAULT}/{name}"))
            .unwrap()
            .clone()
    };
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
        let last_success = metrics
            .value(
                "akvsync_certificate_last_success_timestamp_seconds",
                &series,
            )
            .unwrap();
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
    assert_eq!(
        metrics.value(
            "akvsync_certificate_last_success_timestamp_seconds",
            &denied
        ),
        None
    );
    assert!(
        !metrics
            .values("akvsync_certificate_info")
            .iter()
            .any(|s| s.labels["secret"] == "denied")
    );
    let rounds = metrics
        .value("akvsync_sync_duration_seconds_count", &[])
        .unwrap();
    let http_4xx = metrics
        .value("akvsync_fetch_errors_total", &[("kind", "http_4xx")])
        .unwrap();
    assert!(
        http_4xx >= rounds - 1.0 && http_4xx <= rounds + 1.0,
        "{http_4xx} of {rounds}"
    );
    for kind in ["decode", "store", "identity", "http_5xx", "throttled"] {
        assert_eq!(
            metrics.value("akvsync_fetch_errors_total", &[("kind", kind)]),
            Some(0.0),
            "{kind}"
        );
    }
    // The 429 was retried (so it is no fetch error) but counted as a throttled response.
    assert_eq!(
        metrics.value("akvsync_throttled_responses_total", &[]),
        Some(1.0)
    );
    assert!(metrics.value("akvsync_token_refreshes_total", &[]).unwrap() >= 1.0);
    let sum = metrics
        .value("akvsync_sync_duration_seconds_sum", &[])
        .unwrap();
    assert!(sum >= 1.0, "the first round waited for Retry-After: {sum}");

    // A second 429 makes the counter go up on a later round.
    emu.inject(Fault::object(
        VAULT,
        "web",
        FaultKind::Status {
            status: 429,
            retry_after: Some(1),
        },
        1,
    ));
    assert!(
        eventually(Duration::from_secs(20), || async {
            scrape(port)
                .await
                .and_then(|m| m.value("akvsync_throttled_responses_total", &[]))
                == Some(2.0)
        })
        .await,
        "throttled counter after a second 429"
    );

    // Nothing but /metrics is served.
    let (code, _, _) = http_get(port, "/").await.unwrap();
    assert_eq!(code, 404);
    let (code, _, _) = http_get(port, "/metrics/../etc/passwd").await.unwrap();
    assert_eq!(code, 404);

    // The expiry warning: in status for `soon` only, and logged once, not every poll.
    let warning = entry("soon")["installed"]["expiryWarning"].clone();
    assert!(warning.as_str().is_some_and(ten_days_left), "{warning}");
    assert!(entry("web")["installed"]["expiryWarning"].is_null());
    let table = akvsync(&["status"], &settings, &scratch.state()).await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.lines().any(|l| l.contains("soon")
            && l.contains("warning: the certificate expires in")
            && ten_days_left(l)),
        "{table}"
    );

    assert_eq!(
        listening_ports(child.id().unwrap()),
        vec![port],
        "the agent listens on the metrics port and nothing else"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("stops promptly")
        .unwrap();
    assert!(status.success(), "{status:?}");
    reader.await.unwrap();
    let log = log.lock().unwrap().clone();
    let expiry_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("certificate expiry"))
        .collect();
    assert_eq!(expiry_lines.len(), 1, "{log}");
    assert!(
        expiry_lines[0].contains(&format!("{VAULT}/soon")) && ten_days_left(expiry_lines[0]),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "metrics endpoint listening on http://127.0.0.1:{port}/metrics"
        )),
        "{log}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn once_writes_a_parseable_textfile_and_the_threshold_decides_the_warning() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let soon = import_expiring(&emu, "soon", 10);
    let scratch = Scratch::new("textfile");
    let textfile = scratch.0.join("collector").join("akvsync.prom");
    fs::create_dir_all(textfile.parent().unwrap()).unwrap();
    // A stale file from an earlier run is replaced, not appended to.
    fs::write(&textfile, "garbage that is not the exposition format\n").unwrap();
    let once = |days: u32| {
        let settings = write_settings(
            &scratch,
            &settings_json(
                &emu,
                &scratch,
                &["soon"],
                serde_json::json!({
                    "expiryWarningDays": days,
                    "metrics": {"textfile": textfile.to_str().unwrap()},
                }),
            ),
        );
        let state = scratch.state();
        async move { akvsync(&["once"], &settings, &state).await }
    };

    // 10 days left, warned 30 days ahead: the warning is printed.
    let out = once(30).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "warnings do not fail `once`: {stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.starts_with(&format!(
            "warning: {VAULT}/soon: the certificate expires in "
        )) && ten_days_left(l)),
        "{stderr}"
    );
    let text = fs::read_to_string(&textfile).unwrap();
    let metrics = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        metrics.value("akvsync_certificates_observed", &[]),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("akvsync_certificates_installed", &[]),
        Some(1.0)
    );
    assert_eq!(
        metrics.value(
            "akvsync_certificate_info",
            &[("thumbprint", soon.thumbprint.as_str())]
        ),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("akvsync_sync_duration_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        metrics.value("akvsync_throttled_responses_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        metrics.value("akvsync_token_refreshes_total", &[]),
        Some(1.0)
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&textfile).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644);
    let leftovers: Vec<_> = fs::read_dir(textfile.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("akvsync.prom")],
        "no temporaries"
    );

    // Warned only 5 days ahead: no warning for 10 days left.
    let out = once(5).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("expires in"), "{stderr}");
    emu.shutdown().await;
}

#[tokio::test]
async fn validate_refuses_a_metrics_endpoint_that_is_not_loopback() {
    let scratch = Scratch::new("validate");
    for (listen, accepted) in [
        ("0.0.0.0:9464", false),
        ("192.0.2.10:9464", false),
        ("[::]:9464", false),
        ("127.0.0.1:9464", true),
        ("[::1]:9464", true),
    ] {
        let file = scratch.0.join("settings.json");
        fs::write(
            &file,
            serde_json::json!({
                "secretsManagementSettings": {
                    "observedCertificates": ["https://myvault.vault.azure.net/secrets/web"],
                },
                "akvsync": {"metrics": {"listen": listen}},
            })
            .to_string(),
        )
        .unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
            .args(["validate", "--platform", "linux"])
            .arg(&file)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if accepted {
            assert_eq!(out.status.code(), Some(0), "{listen}: {stderr}");
        } else {
            assert_eq!(out.status.code(), Some(2), "{listen}: {stderr}");
            assert!(
                stderr.contains("akvsync.metrics.listen")
                    && stderr.contains("not a loopback address"),
                "{listen}: {stderr}"
            );
        }
    }
}

#[tokio::test]
async fn a_taken_port_does_not_stop_syncing_and_the_endpoint_comes_up_once_it_is_free() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    emu.rotate_certificate(VAULT, "web").unwrap();
    let scratch = Scratch::new("taken");
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let settings = write_settings(
        &scratch,
        &settings_json(
            &emu,
            &scratch,
            &["web"],
            serde_json::json!({"metrics": {"listen": format!("127.0.0.1:{port}")}}),
        ),
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .arg("run")
        .arg("--settings")
        .arg(&settings)
        .arg("--state-dir")
        .arg(scratch.state())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let link = scratch.store().join(format!("{VAULT}.web"));
    assert!(
        eventually(Duration::from_secs(20), || async { link.exists() }).await,
        "synced although the metrics port is taken"
    );
    // Several rounds with the port still taken: the squatter answers, not the agent.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(child.try_wait().unwrap().is_none(), "still running");
    drop(squatter);
    assert!(
        eventually(Duration::from_secs(20), || async {
            scrape(port)
                .await
                .is_some_and(|m| m.value("akvsync_certificates_installed", &[]) == Some(1.0))
        })
        .await,
        "the endpoint is bound after a later round"
    );
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        log.matches("cannot listen for metrics").count(),
        1,
        "the error is logged once, not at every retry: {log}"
    );
    assert!(
        log.contains(&format!(
            "metrics endpoint listening on http://127.0.0.1:{port}/metrics"
        )),
        "{log}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn without_metrics_settings_nothing_listens() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    emu.rotate_certificate(VAULT, "web").unwrap();
    let scratch = Scratch::new("off");
    let settings = write_settings(
        &scratch,
        &settings_json(&emu, &scratch, &["web"], serde_json::json!({})),
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
        .arg("run")
        .arg("--settings")
        .arg(&settings)
        .arg("--state-dir")
        .arg(scratch.state())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let link = scratch.store().join(format!("{VAULT}.web"));
    assert!(eventually(Duration::from_secs(20), || async { link.exists() }).await);
    // A few polls later: still no listening socket.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(listening_ports(child.id().unwrap()), Vec::<u16>::new());
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        !log.contains("metrics endpoint") && !log.contains("listen for metrics"),
        "{log}"
    );
    emu.shutdown().await;
}

/// The extension: `akvsync handler install` and `enable` in a handler directory laid out as
/// the Linux guest agent lays it out; the service it starts reports the expiry warning in
/// the certificate's substatus and serves the metrics.
#[test]
fn the_extension_reports_the_expiry_warning_in_its_substatus_and_serves_metrics() {
    let emu = kvemu::BlockingEmulator::start(Config::default()).unwrap();
    emu.rotate_certificate(VAULT, "web").unwrap();
    import_expiring(&emu, "soon", 10);
    let scratch = Scratch::new("handler");
    let handler_dir = scratch.0.join("Akvsync.KeyVault-1.0.0");
    for dir in ["config", "status", "log"] {
        fs::create_dir_all(handler_dir.join(dir)).unwrap();
    }
    let environment = serde_json::json!([{
        "name": "Akvsync.KeyVault",
        "version": 1.0,
        "handlerEnvironment": {
            "logFolder": handler_dir.join("log"),
            "configFolder": handler_dir.join("config"),
            "statusFolder": handler_dir.join("status"),
            "heartbeatFile": handler_dir.join("heartbeat.log"),
        }
    }]);
    fs::write(
        handler_dir.join("HandlerEnvironment.json"),
        environment.to_string(),
    )
    .unwrap();
    let port = free_loopback_port();
    let public = settings_json(
        &emu,
        &scratch,
        &["web", "soon"],
        serde_json::json!({"metrics": {"listen": format!("127.0.0.1:{port}")}}),
    );
    let runtime = serde_json::json!({"runtimeSettings": [{"handlerSettings": {
        "publicSettings": public, "protectedSettings": null, "protectedSettingsCertThumbprint": null,
    }}]});
    fs::write(handler_dir.join("config/0.settings"), runtime.to_string()).unwrap();
    let handler = |op: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_akvsync"))
            .args(["handler", op, "--state-dir"])
            .arg(scratch.state())
            .current_dir(&handler_dir)
            .env("AZURE_GUEST_AGENT_EXTENSION_VERSION", "1.0.0")
            .env("ConfigSequenceNumber", "0")
            .env_remove("AZURE_GUEST_AGENT_EXTENSION_PATH")
            .env_remove("AZURE_GUEST_AGENT_UPDATING_FROM_VERSION")
            .output()
            .unwrap();
        assert!(out.status.success(), "handler {op}: {out:?}");
    };
    // Whatever happens, the detached service does not outlive the test.
    struct StopService(PathBuf);
    impl Drop for StopService {
        fn drop(&mut self) {
            if let Some(pid) = fs::read_to_string(self.0.join("akvsync.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    let _stop = StopService(scratch.state());
    handler("install");
    handler("enable");

    let status_file = handler_dir.join("status/0.status");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = fs::read(&status_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|v| v[0]["status"].clone());
        if let Some(s) = &status
            && s["status"] == "success"
            && s["substatus"].as_array().is_some_and(|a| a.len() == 2)
        {
            break s.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{status:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let substatus = |name: &str| {
        status["substatus"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == format!("{VAULT}/{name}"))
            .unwrap()
            .clone()
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
    assert!(
        !web["formattedMessage"]["message"]
            .as_str()
            .unwrap()
            .contains("warning"),
        "{web:#}"
    );

    // The extension's service serves the metrics too.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let metrics = parse_exposition(body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert_eq!(
        metrics.value("akvsync_certificates_installed", &[]),
        Some(2.0)
    );
    handler("disable");
}
