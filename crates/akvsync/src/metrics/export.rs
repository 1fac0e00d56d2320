//! Where the metrics go: a plain-HTTP `GET /metrics` endpoint on a loopback address, on
//! the agent's own tokio runtime (requests bounded to 8 KiB and 5 s, at most 4 connections
//! at once; a new connection evicts the oldest when all are taken, so idle connections
//! cannot starve a scraper; one response per connection, nothing else served), and a
//! textfile-collector file replaced atomically (through `safefs`, mode 0644) after every
//! round.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Metrics, text};
use crate::settings::MetricsSettings;

/// Longest request head accepted; a scraper sends a few hundred bytes.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A client gets this long to send its request and take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections held at the same time; a new one evicts the oldest (issue 16, finding 8:
/// four idle connections used to make every scrape wait 5 s).
const MAX_CONNECTIONS: usize = 4;

/// Runs the exposition the settings ask for: keeps the endpoint's listener (restarted
/// when the address or the metrics change on a reload, bound again after every round while
/// binding fails) and writes the textfile.
#[derive(Debug, Default)]
pub struct Exporter {
    endpoint: Option<Endpoint>,
    /// The address that could not be bound, so that retries do not repeat the error.
    failed: Option<SocketAddr>,
}

#[derive(Debug)]
struct Endpoint {
    address: SocketAddr,
    metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Exporter {
    /// Starts, moves or stops the endpoint for `settings`; a failure to listen is logged and
    /// the agent goes on without it (certificates matter more than their metrics); the next
    /// call tries again. Cheap when nothing changed: call it after every round.
    pub async fn configure(&mut self, settings: &MetricsSettings, metrics: Option<&Arc<Metrics>>) {
        let wanted = settings.listen.zip(metrics);
        let same = match (&self.endpoint, wanted) {
            (Some(e), Some((address, metrics))) => {
                e.address == address && Arc::ptr_eq(&e.metrics, metrics)
            }
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        // Drop (abort) the old listener first and let the runtime drop its socket, so that
        // the same address can be bound again.
        if self.endpoint.take().is_some() {
            tokio::task::yield_now().await;
        }
        let Some((address, metrics)) = wanted else {
            self.failed = None;
            return;
        };
        match TcpListener::bind(address).await {
            Ok(listener) => {
                tracing::info!(%address, "metrics endpoint listening on http://{address}/metrics");
                self.failed = None;
                let task = tokio::spawn(serve(listener, Arc::clone(metrics)));
                self.endpoint = Some(Endpoint {
                    address,
                    metrics: Arc::clone(metrics),
                    task,
                });
            }
            Err(error) if self.failed != Some(address) => {
                tracing::error!(%address, %error, "cannot listen for metrics; trying again after each sync round");
                self.failed = Some(address);
            }
            Err(error) => tracing::debug!(%address, %error, "still cannot listen for metrics"),
        }
    }

    /// After a round: rewrites the textfile, if one is configured; a failure is logged and
    /// returned (for `once`, which has no log).
    pub fn round_done(
        settings: &MetricsSettings,
        metrics: Option<&Arc<Metrics>>,
    ) -> Option<String> {
        if let (Some(path), Some(metrics)) = (&settings.textfile, metrics)
            && let Err(error) = write_textfile(Path::new(path), &metrics.render())
        {
            tracing::warn!(file = %path, %error, "cannot write the metrics textfile");
            return Some(format!("cannot write the metrics textfile {path}: {error}"));
        }
        None
    }
}

/// The connections being served, oldest first, so that a new one can evict the oldest.
#[derive(Default)]
struct Slots {
    next_id: u64,
    active: std::collections::VecDeque<(u64, tokio::task::AbortHandle)>,
}

async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(std::sync::Mutex::new(Slots::default()));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::debug!(%error, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        // Held across spawn and push: the task's own removal waits until it is listed.
        let mut guard = slots.lock().unwrap_or_else(|e| e.into_inner());
        if guard.active.len() >= MAX_CONNECTIONS
            && let Some((_, oldest)) = guard.active.pop_front()
        {
            // A scraper is answered within milliseconds of connecting; the oldest
            // connection is the one most likely to be idle.
            oldest.abort();
        }
        let id = guard.next_id;
        guard.next_id += 1;
        let task_slots = Arc::clone(&slots);
        let task = tokio::spawn(async move {
            let _ = tokio::time::timeout(IO_TIMEOUT, respond(stream, &metrics)).await;
            task_slots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .active
                .retain(|(other, _)| *other != id);
            crate::memory::release_freed_memory();
        });
        guard.active.push_back((id, task.abort_handle()));
    }
}

/// Reads one request head and answers it; the connection is closed afterwards.
async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    let complete = loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            break false;
        }
        head.extend_from_slice(&buffer[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break true;
        }
        if head.len() > MAX_REQUEST_BYTES {
            break false;
        }
    };
    let (status, body, head_only) = if !complete {
        ("400 Bad Request", "bad request\n".to_owned(), false)
    } else {
        route(&head, metrics)
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        if status.starts_with("200") {
            text::CONTENT_TYPE
        } else {
            "text/plain; charset=utf-8"
        },
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// `GET /metrics` (or `HEAD`, with any query) → 200; other paths 404; other methods 405.
fn route(head: &[u8], metrics: &Metrics) -> (&'static str, String, bool) {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return ("400 Bad Request", "bad request\n".to_owned(), false);
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return ("400 Bad Request", "bad request\n".to_owned(), false);
    }
    let path = target.split('?').next().unwrap_or_default();
    let head_only = method == "HEAD";
    if !matches!(path, "/metrics" | "/ready" | "/healthz") {
        return (
            "404 Not Found",
            "not found; metrics are at /metrics (also /ready, /healthz)\n".to_owned(),
            head_only,
        );
    }
    if method != "GET" && !head_only {
        return ("405 Method Not Allowed", "only GET\n".to_owned(), false);
    }
    match path {
        // Liveness: the agent's runtime answers.
        "/healthz" => ("200 OK", "ok\n".to_owned(), head_only),
        // Readiness: the last round found every certificate served.
        "/ready" => match metrics.readiness() {
            Some((0, _)) => ("200 OK", "ready\n".to_owned(), head_only),
            Some((not_served, all)) => (
                "503 Service Unavailable",
                format!("not ready: {not_served} of {all} certificates not served\n"),
                head_only,
            ),
            None => (
                "503 Service Unavailable",
                "not ready: no sync round finished yet\n".to_owned(),
                head_only,
            ),
        },
        _ => ("200 OK", metrics.render(), head_only),
    }
}

/// Replaces `path` with `contents` atomically through [`crate::safefs`]: a new file at a
/// fresh `.akvsync-tmp-*` name in the same directory (created exclusively, never through a
/// symlink; the name does not end in `.prom`, so collectors never read it half-written),
/// mode exactly 0644 (the collector may run as another user), renamed over the old file.
/// A directory that another account owns or can write is refused (issue 16, finding 1).
pub fn write_textfile(path: &Path, contents: &str) -> std::io::Result<()> {
    crate::safefs::write_file_at(path, contents.as_bytes(), crate::safefs::FileSpec::PUBLIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 8: idle connections (more than the slots) do not delay a scrape; the scrape
    /// is answered although none of them has timed out (they would after 5 s).
    #[test]
    fn idle_connections_do_not_starve_a_scrape() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(serve(listener, Arc::new(Metrics::new())));
            let mut idle = Vec::new();
            for _ in 0..MAX_CONNECTIONS * 2 {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.write_all(b"GET /metr").await.unwrap();
                idle.push(stream);
            }
            let scrape = async {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await
                    .unwrap();
                let mut response = String::new();
                stream.read_to_string(&mut response).await.unwrap();
                response
            };
            // Well under IO_TIMEOUT: before the fix the scrape waited for a slot until an
            // idle connection timed out.
            let response = tokio::time::timeout(IO_TIMEOUT / 2, scrape)
                .await
                .expect("the scrape was answered while idle connections were open");
            assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
            drop(idle);
        });
    }

    #[test]
    fn routes() {
        let metrics = Metrics::new();
        let get = |head: &str| route(head.as_bytes(), &metrics);
        assert_eq!(get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").0, "200 OK");
        assert_eq!(get("GET /metrics?x=1 HTTP/1.0\r\n\r\n").0, "200 OK");
        let head = get("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.0 == "200 OK" && head.2);
        assert_eq!(get("GET / HTTP/1.1\r\n\r\n").0, "404 Not Found");
        assert_eq!(get("GET /metricsx HTTP/1.1\r\n\r\n").0, "404 Not Found");
        assert_eq!(
            get("POST /metrics HTTP/1.1\r\n\r\n").0,
            "405 Method Not Allowed"
        );
        assert_eq!(get("GET /metrics\r\n\r\n").0, "400 Bad Request");
        assert_eq!(get("GET /metrics SPDY/3\r\n\r\n").0, "400 Bad Request");
        assert_eq!(get("GET /healthz HTTP/1.1\r\n\r\n").0, "200 OK");
        assert_eq!(
            get("GET /ready HTTP/1.1\r\n\r\n").0,
            "503 Service Unavailable"
        );
        metrics.set_readiness(1, 2);
        let ready = get("GET /ready HTTP/1.1\r\n\r\n");
        assert_eq!(
            (ready.0, ready.1.as_str()),
            (
                "503 Service Unavailable",
                "not ready: 1 of 2 certificates not served\n"
            )
        );
        metrics.set_readiness(0, 2);
        assert_eq!(get("GET /ready HTTP/1.1\r\n\r\n").0, "200 OK");
    }
}
