//! Prometheus metrics (SPEC §8, issue 9): the counters and gauges the sync engine
//! updates, rendered in the text exposition format 0.0.4 (`text`), served on a loopback
//! `GET /metrics` endpoint or written atomically to a textfile-collector file (`export`).
//! Opt-in: without `akvsync.metrics` no [`Metrics`] exists and nothing is recorded.

mod export;
pub mod text;

use std::sync::Mutex;

pub use export::{Exporter, write_textfile};

/// Why a certificate's sync failed, as the `kind` label of `akvsync_fetch_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchErrorKind {
    /// No token from the managed-identity endpoint.
    Identity,
    /// The vault still answered 429/503 after the retries.
    Throttled,
    /// A request timed out.
    Timeout,
    /// The vault was unreachable (connection, TLS).
    Transport,
    /// The vault answered 4xx (403 Forbidden, 404 SecretNotFound…).
    Http4xx,
    /// The vault answered 5xx.
    Http5xx,
    /// The vault redirected (refused).
    Redirect,
    /// The vault's authentication challenge was refused.
    Challenge,
    /// The vault's response was unusable (not a secret, too large, truncated).
    Response,
    /// The secret version is disabled, not yet valid or expired in Key Vault.
    SecretState,
    /// The secret is not a certificate akvsync can decode.
    Decode,
    /// The chain validation the settings ask for refused the certificate.
    Chain,
    /// The store refused the certificate (write, ACL, import).
    Store,
    /// Everything else (client setup, an internal failure).
    Other,
}

impl FetchErrorKind {
    pub const ALL: [FetchErrorKind; 14] = [
        FetchErrorKind::Identity,
        FetchErrorKind::Throttled,
        FetchErrorKind::Timeout,
        FetchErrorKind::Transport,
        FetchErrorKind::Http4xx,
        FetchErrorKind::Http5xx,
        FetchErrorKind::Redirect,
        FetchErrorKind::Challenge,
        FetchErrorKind::Response,
        FetchErrorKind::SecretState,
        FetchErrorKind::Decode,
        FetchErrorKind::Chain,
        FetchErrorKind::Store,
        FetchErrorKind::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FetchErrorKind::Identity => "identity",
            FetchErrorKind::Throttled => "throttled",
            FetchErrorKind::Timeout => "timeout",
            FetchErrorKind::Transport => "transport",
            FetchErrorKind::Http4xx => "http_4xx",
            FetchErrorKind::Http5xx => "http_5xx",
            FetchErrorKind::Redirect => "redirect",
            FetchErrorKind::Challenge => "challenge",
            FetchErrorKind::Response => "response",
            FetchErrorKind::SecretState => "secret_state",
            FetchErrorKind::Decode => "decode",
            FetchErrorKind::Chain => "chain",
            FetchErrorKind::Store => "store",
            FetchErrorKind::Other => "other",
        }
    }
}

/// Upper bounds of the sync-duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// One observed certificate after a round, for the per-certificate series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateSample {
    /// The vault's name (its first DNS label).
    pub vault: String,
    pub secret: String,
    /// What is installed; `None` when nothing is.
    pub version: Option<String>,
    pub thumbprint: Option<String>,
    pub target: String,
    pub not_after: Option<u64>,
    /// Unix seconds of the last sync that found the certificate current.
    pub last_success: Option<u64>,
}

/// The process's metrics; shared by the engine (writer) and the exporter (reader).
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    observed: usize,
    certificates: Vec<CertificateSample>,
    fetch_errors: [u64; FetchErrorKind::ALL.len()],
    throttled: u64,
    token_refreshes: u64,
    /// Hook runs that succeeded and that failed.
    hook_runs: [u64; 2],
    /// After the last round: certificates not served, and all of them.
    readiness: Option<(usize, usize)>,
    /// Per bucket (not cumulative), plus one for observations above the last bound.
    duration_counts: [u64; DURATION_BUCKETS.len() + 1],
    duration_sum: f64,
}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn count_fetch_error(&self, kind: FetchErrorKind) {
        let index = FetchErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(FetchErrorKind::ALL.len() - 1);
        self.inner().fetch_errors[index] += 1;
    }

    /// Records how many certificates the last round left not served (for `GET /ready`).
    pub fn set_readiness(&self, not_served: usize, all: usize) {
        self.inner().readiness = Some((not_served, all));
    }

    /// `(not served, all)` after the last round; `None` before the first.
    pub fn readiness(&self) -> Option<(usize, usize)> {
        self.inner().readiness
    }

    /// Counts one hook run.
    pub fn count_hook_run(&self, success: bool) {
        self.inner().hook_runs[usize::from(!success)] += 1;
    }

    /// Adds the 429/503 answers and the token requests of one round.
    pub fn add_vault_counts(&self, throttled: u64, token_refreshes: u64) {
        let mut inner = self.inner();
        inner.throttled += throttled;
        inner.token_refreshes += token_refreshes;
    }

    /// Records a round: its duration and every observed certificate's state after it.
    pub fn record_round(&self, seconds: f64, certificates: Vec<CertificateSample>) {
        let mut inner = self.inner();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DURATION_BUCKETS.len());
        inner.duration_counts[bucket] += 1;
        inner.duration_sum += seconds;
        inner.observed = certificates.len();
        inner.certificates = certificates;
    }

    /// The exposition text of every metric.
    pub fn render(&self) -> String {
        let inner = self.inner();
        let mut w = text::Writer::with_capacity(2048 + inner.certificates.len() * 512);
        w.family(
            "akvsync_build_info",
            "gauge",
            "The akvsync version that is running.",
        );
        w.sample(
            "akvsync_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        w.family(
            "akvsync_certificates_observed",
            "gauge",
            "Certificates the settings observe.",
        );
        w.sample("akvsync_certificates_observed", &[], inner.observed as f64);
        let installed = inner
            .certificates
            .iter()
            .filter(|c| c.version.is_some())
            .count();
        w.family(
            "akvsync_certificates_installed",
            "gauge",
            "Observed certificates that have a version installed.",
        );
        w.sample("akvsync_certificates_installed", &[], installed as f64);
        w.family(
            "akvsync_certificate_info",
            "gauge",
            "The installed version of each observed certificate (always 1).",
        );
        for c in &inner.certificates {
            if let (Some(version), Some(thumbprint)) = (&c.version, &c.thumbprint) {
                w.sample(
                    "akvsync_certificate_info",
                    &[
                        ("vault", &c.vault),
                        ("secret", &c.secret),
                        ("version", version),
                        ("thumbprint", thumbprint),
                        ("target", &c.target),
                    ],
                    1.0,
                );
            }
        }
        w.family(
            "akvsync_certificate_not_after_timestamp_seconds",
            "gauge",
            "When the installed certificate expires (notAfter), in Unix seconds.",
        );
        for c in &inner.certificates {
            if let Some(not_after) = c.not_after {
                w.sample(
                    "akvsync_certificate_not_after_timestamp_seconds",
                    &[("vault", &c.vault), ("secret", &c.secret)],
                    not_after as f64,
                );
            }
        }
        w.family(
            "akvsync_certificate_last_success_timestamp_seconds",
            "gauge",
            "When a sync last found the certificate current, in Unix seconds.",
        );
        for c in &inner.certificates {
            if let Some(last) = c.last_success {
                w.sample(
                    "akvsync_certificate_last_success_timestamp_seconds",
                    &[("vault", &c.vault), ("secret", &c.secret)],
                    last as f64,
                );
            }
        }
        w.family(
            "akvsync_fetch_errors_total",
            "counter",
            "Certificate syncs that failed, by the kind of failure.",
        );
        for (kind, count) in FetchErrorKind::ALL.iter().zip(inner.fetch_errors) {
            w.sample(
                "akvsync_fetch_errors_total",
                &[("kind", kind.label())],
                count as f64,
            );
        }
        w.family(
            "akvsync_hook_runs_total",
            "counter",
            "Post-install hook runs, by result (a failing hook is run again at every poll).",
        );
        for (result, count) in ["success", "failure"].iter().zip(inner.hook_runs) {
            w.sample(
                "akvsync_hook_runs_total",
                &[("result", result)],
                count as f64,
            );
        }
        w.family(
            "akvsync_throttled_responses_total",
            "counter",
            "Key Vault responses 429 or 503 (each one, including those a retry recovered from).",
        );
        w.sample(
            "akvsync_throttled_responses_total",
            &[],
            inner.throttled as f64,
        );
        w.family(
            "akvsync_token_refreshes_total",
            "counter",
            "Token requests sent to the managed-identity endpoint.",
        );
        w.sample(
            "akvsync_token_refreshes_total",
            &[],
            inner.token_refreshes as f64,
        );
        w.family(
            "akvsync_sync_duration_seconds",
            "histogram",
            "Duration of a sync round over every observed certificate.",
        );
        w.histogram(
            "akvsync_sync_duration_seconds",
            &DURATION_BUCKETS,
            &inner.duration_counts,
            inner.duration_sum,
        );
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_the_recorded_values() {
        let metrics = Metrics::new();
        metrics.count_fetch_error(FetchErrorKind::Http4xx);
        metrics.count_fetch_error(FetchErrorKind::Http4xx);
        metrics.add_vault_counts(3, 1);
        metrics.record_round(
            0.3,
            vec![
                CertificateSample {
                    vault: "kv".into(),
                    secret: "web".into(),
                    version: Some("ab".repeat(16)),
                    thumbprint: Some("CD".repeat(20)),
                    target: "/store/kv.web".into(),
                    not_after: Some(1_800_000_000),
                    last_success: Some(1_700_000_000),
                },
                CertificateSample {
                    vault: "kv".into(),
                    secret: "absent".into(),
                    ..CertificateSample::default()
                },
            ],
        );
        metrics.record_round(500.0, Vec::new());
        metrics.record_round(0.05, Vec::new());
        let text = metrics.render();
        for line in [
            "akvsync_certificates_observed 0",
            "akvsync_fetch_errors_total{kind=\"http_4xx\"} 2",
            "akvsync_fetch_errors_total{kind=\"decode\"} 0",
            "akvsync_throttled_responses_total 3",
            "akvsync_token_refreshes_total 1",
            "akvsync_sync_duration_seconds_bucket{le=\"0.1\"} 1",
            "akvsync_sync_duration_seconds_bucket{le=\"0.5\"} 2",
            "akvsync_sync_duration_seconds_bucket{le=\"300\"} 2",
            "akvsync_sync_duration_seconds_bucket{le=\"+Inf\"} 3",
            "akvsync_sync_duration_seconds_count 3",
            "akvsync_sync_duration_seconds_sum 500.35",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(text.contains("# TYPE akvsync_sync_duration_seconds histogram\n"));
    }

    #[test]
    fn per_certificate_series_only_for_what_is_installed() {
        let metrics = Metrics::new();
        metrics.record_round(
            1.0,
            vec![
                CertificateSample {
                    vault: "kv".into(),
                    secret: "web".into(),
                    version: Some("0".repeat(32)),
                    thumbprint: Some("A".repeat(40)),
                    target: "C:\\\"odd\"".into(),
                    not_after: Some(2_000_000_000),
                    last_success: None,
                },
                CertificateSample {
                    vault: "kv".into(),
                    secret: "absent".into(),
                    ..CertificateSample::default()
                },
            ],
        );
        let text = metrics.render();
        assert!(text.contains("akvsync_certificates_observed 2\n"), "{text}");
        assert!(
            text.contains("akvsync_certificates_installed 1\n"),
            "{text}"
        );
        assert!(
            text.contains("target=\"C:\\\\\\\"odd\\\"\"} 1\n"),
            "escaped target label: {text}"
        );
        assert!(text.contains(
            "akvsync_certificate_not_after_timestamp_seconds{vault=\"kv\",secret=\"web\"} 2000000000\n"
        ));
        assert!(!text.contains("secret=\"absent\""), "{text}");
        assert!(!text.contains("akvsync_certificate_last_success_timestamp_seconds{"));
    }
}
