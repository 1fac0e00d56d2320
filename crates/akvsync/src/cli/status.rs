//! `akvsync status` and `akvsync wait`: read-only views of [`crate::health`] (no state lock,
//! so both work beside the running service). `status` exits 1 when any certificate is not
//! served (SPEC §10) and says why in one line per certificate; `wait` returns 0 as soon as
//! every certificate is served, 1 at its timeout with the reasons.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::sync_verbs::load_settings_quietly;
use super::{exit, table};
use crate::health::{self, CertificateHealth, first_line};
use crate::settings::Validated;
use crate::state::{self, StateDir};

/// One-line reasons in the table are cut to this many characters (the whole text is in
/// `--json`).
const REASON_CHARS: usize = 100;

/// Which settings and state to look at (both verbs).
#[derive(Debug, clap::Args)]
pub(crate) struct Where {
    /// Settings file (default: the settings last used by `once`/`run` with this state directory).
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// Where akvsync keeps its state (default: /var/lib/akvsync, %ProgramData%\\akvsync).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub at: Where,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct WaitArgs {
    #[command(flatten)]
    pub at: Where,
    /// Give up after this long: `90`, `90s`, `5m`, `1h` (default 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `90`, `90s`, `5m`, `2h`: a whole number of seconds, minutes or hours (at most a day).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90s, 5m or 1h"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{text:?}: the unit must be s, m or h")),
    };
    if seconds > 86_400 {
        return Err(format!("{text:?} is longer than a day"));
    }
    Ok(Duration::from_secs(seconds))
}

fn state_dir_of(dir: Option<&PathBuf>) -> PathBuf {
    dir.cloned().unwrap_or_else(state::default_state_dir)
}

/// The settings to report on: given, or those `once`/`run` last used. `Ok(None)` when
/// nothing has been synced with this state directory yet.
fn settings_for(
    settings: Option<&PathBuf>,
    state_dir: &Path,
) -> Result<Option<Validated>, ExitCode> {
    let path = match settings {
        Some(path) => path.clone(),
        None => {
            let remembered = state_dir.join(state::LAST_SETTINGS_FILE);
            if !remembered.exists() {
                return Ok(None);
            }
            remembered
        }
    };
    load_settings_quietly(&path).map(Some)
}

fn nothing_synced(state_dir: &Path) -> ExitCode {
    eprintln!(
        "nothing synced yet: {} has no settings recorded; run `akvsync once --settings FILE` \
         (or the service), or pass --settings",
        state_dir.display()
    );
    ExitCode::from(exit::FAILURE)
}

pub(crate) fn status(args: &StatusArgs) -> ExitCode {
    let state_dir = state_dir_of(args.at.state_dir.as_ref());
    let validated = match settings_for(args.at.settings.as_ref(), &state_dir) {
        Ok(Some(v)) => v,
        Ok(None) => return nothing_synced(&state_dir),
        Err(code) => return code,
    };
    let all = health::evaluate(&validated.settings, &StateDir::peek(&state_dir));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if args.json {
        let entries: Vec<serde_json::Value> = all
            .iter()
            .map(|h| json_entry(h, now, validated.settings.akvsync.expiry_warning_days))
            .collect();
        println!(
            "{:#}",
            serde_json::json!({"certificates": entries, "summary": health::summary(&all)})
        );
    } else {
        print!(
            "{}",
            text_table(&all, now, validated.settings.akvsync.expiry_warning_days)
        );
    }
    if all.iter().all(|h| h.problem.is_none()) {
        ExitCode::from(exit::OK)
    } else {
        ExitCode::from(exit::FAILURE)
    }
}

fn json_entry(h: &CertificateHealth, now: u64, warning_days: u32) -> serde_json::Value {
    let record = h.record.as_ref();
    serde_json::json!({
        "name": h.name,
        "target": h.target,
        "links": h.links,
        "installed": match &h.installed {
            Ok(Some(i)) => serde_json::json!({
                "version": i.version,
                "thumbprint": i.leaf.thumbprint,
                "sha256": i.leaf.sha256,
                "subject": i.leaf.subject,
                "dnsNames": i.leaf.dns_names,
                "notAfter": i.leaf.not_after,
                "daysLeft": (i.leaf.not_after as i64 - now as i64).div_euclid(86_400),
                "hasPrivateKey": i.has_private_key,
                "location": i.location,
                "expiryWarning": crate::sync::expiry_warning(i.leaf.not_after, now, warning_days),
            }),
            Ok(None) => serde_json::Value::Null,
            Err(e) => serde_json::json!({"error": e}),
        },
        "outputs": h.outputs,
        "outputsVersion": h.outputs_version,
        "hook": h.hook().map(|hook| serde_json::json!({
            "result": if hook.ok { "success" } else { "failure" },
            "exitCode": hook.exit_code,
            "message": hook.message,
            "at": hook.at,
            "version": hook.version,
        })),
        "lastCheck": record.and_then(|r| r.last_check),
        "lastSuccess": record.and_then(|r| r.last_success),
        "lastError": record.and_then(|r| r.last_error.clone()),
        "served": h.problem.is_none(),
        "problem": h.problem,
    })
}

fn text_table(all: &[CertificateHealth], now: u64, warning_days: u32) -> String {
    let dash = || "-".to_owned();
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|h| {
            let installed = h.installed.as_ref().ok().and_then(Option::as_ref);
            let state = match (&h.problem, installed) {
                (Some(problem), _) => first_line(problem, REASON_CHARS),
                (None, Some(i)) => crate::sync::expiry_warning(i.leaf.not_after, now, warning_days)
                    .map_or_else(|| "ok".to_owned(), |w| format!("ok; warning: {w}")),
                (None, None) => "ok".to_owned(),
            };
            vec![
                h.name.clone(),
                installed
                    .and_then(|i| i.version.clone())
                    .unwrap_or_else(dash),
                installed.map_or_else(dash, |i| i.leaf.thumbprint.clone()),
                installed.map_or_else(dash, |i| table::date(i.leaf.not_after)),
                installed.map_or_else(dash, |i| {
                    (i.leaf.not_after as i64 - now as i64)
                        .div_euclid(86_400)
                        .to_string()
                }),
                installed.map_or_else(dash, |i| i.leaf.dns_names.join(",")),
                h.record
                    .as_ref()
                    .and_then(|r| r.last_check)
                    .map_or_else(|| "never".to_owned(), table::datetime),
                state,
            ]
        })
        .collect();
    let mut out = table::render(
        &[
            "CERTIFICATE",
            "VERSION",
            "THUMBPRINT",
            "EXPIRES",
            "DAYS",
            "DNS NAMES",
            "LAST CHECK",
            "STATE",
        ],
        &rows,
    );
    for h in all {
        if h.links.len() > 1 || !h.outputs.is_empty() {
            let mut line = format!("{}: links {}", h.name, h.links.join(", "));
            if !h.outputs.is_empty() {
                line.push_str(&format!("; outputs {}", h.outputs.join(", ")));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

pub(crate) fn wait(args: &WaitArgs) -> ExitCode {
    let state_dir = state_dir_of(args.at.state_dir.as_ref());
    let started = Instant::now();
    let mut validated = None;
    loop {
        if validated.is_none() {
            validated = match settings_for(args.at.settings.as_ref(), &state_dir) {
                Ok(v) => v,
                Err(code) => return code,
            };
        }
        let problems: Vec<String> = match &validated {
            None => vec![format!(
                "nothing synced yet: {} has no settings recorded",
                state_dir.display()
            )],
            Some(v) => health::evaluate(&v.settings, &StateDir::peek(&state_dir))
                .into_iter()
                .filter_map(|h| {
                    h.problem
                        .map(|p| format!("{}: {}", h.name, first_line(&p, 200)))
                })
                .collect(),
        };
        if problems.is_empty() {
            return ExitCode::from(exit::OK);
        }
        if started.elapsed() >= args.timeout {
            eprintln!(
                "not every certificate is served after {} s:",
                args.timeout.as_secs()
            );
            for problem in problems {
                eprintln!("  {problem}");
            }
            return ExitCode::from(exit::FAILURE);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "m", "5x", "-1", "25h", "1.5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
