//! Fault kinds as a table: each row injects one [`Fault`], sends one request
//! and hands what came back ([`Seen`]) to the row's check; the runner then
//! asserts the fault was used up (and a [`FaultKind::Status`] row's status). A [`FaultKind::Hang`] row is sent with a
//! [`HANG_TIMEOUT`] client, every other row with the plain one.

use kvemu::{Fault, FaultKind};
use reqwest::RequestBuilder;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::time::{Duration, Instant};

use crate::common::{Env, client};

/// How long a hung request is waited for: the emulator never answers it.
pub const HANG_TIMEOUT: Duration = Duration::from_millis(500);
/// Bodies are read up to just past this: an 8 MiB stream need not be read whole.
pub const READ_CAP: usize = 2 << 20;

/// One fault kind's case: its name, the fault, the check of its one request.
pub type Row = (&'static str, Fault, fn(&Seen));

#[derive(Debug)]
pub struct Seen {
    /// The status, or the transport error when no answer came.
    pub answer: Result<u16, reqwest::Error>,
    pub headers: HeaderMap,
    pub content_length: Option<u64>,
    /// The body up to a little past [`READ_CAP`], or the error that cut it.
    pub body: Result<Vec<u8>, reqwest::Error>,
    /// From sending to the end of reading.
    pub elapsed: Duration,
}

impl Seen {
    pub fn status(&self) -> u16 {
        *self.answer.as_ref().expect("an answer")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(self.body.as_ref().expect("a whole body")).expect("JSON body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }
}

/// `n` milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A [`FaultKind::Status`] fault kind.
pub fn status(status: u16, retry_after: Option<u64>) -> FaultKind {
    FaultKind::Status {
        status,
        retry_after,
    }
}

/// Runs every row against the request `send` builds on a given client; the
/// panic names the row that failed.
pub async fn run(env: &Env, rows: Vec<Row>, send: impl Fn(&reqwest::Client) -> RequestBuilder) {
    let hang_client = client(&env.emu, Some(HANG_TIMEOUT));
    for (row, fault, check) in rows {
        let http = if matches!(fault.kind, FaultKind::Hang) {
            &hang_client
        } else {
            &env.http
        };
        env.emu.inject(fault);
        let seen = seen(send(http)).await;
        let outcome = std::panic::AssertUnwindSafe(|| check(&seen));
        if let Err(e) = std::panic::catch_unwind(outcome) {
            panic!("fault row {row}: {}", panic_text(&e));
        }
        assert_eq!(env.emu.pending_faults(), 0, "fault row {row}: not used up");
    }
}

async fn seen(req: RequestBuilder) -> Seen {
    let t = Instant::now();
    let mut r = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let (headers, elapsed) = (HeaderMap::new(), t.elapsed());
            return Seen {
                answer: Err(e),
                headers,
                content_length: None,
                body: Ok(vec![]),
                elapsed,
            };
        }
    };
    let (answer, headers, content_length) = (
        Ok(r.status().as_u16()),
        r.headers().clone(),
        r.content_length(),
    );
    let mut bytes = Vec::new();
    let body = loop {
        match r.chunk().await {
            Ok(Some(chunk)) if bytes.len() <= READ_CAP => bytes.extend_from_slice(&chunk),
            Ok(_) => break Ok(bytes),
            Err(e) => break Err(e),
        }
    };
    Seen {
        answer,
        headers,
        content_length,
        body,
        elapsed: t.elapsed(),
    }
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    match (e.downcast_ref::<String>(), e.downcast_ref::<&str>()) {
        (Some(s), _) => s.clone(),
        (_, Some(s)) => s.to_string(),
        _ => "panic".into(),
    }
}
