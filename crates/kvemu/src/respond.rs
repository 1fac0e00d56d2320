//! Key Vault responses on the wire: the common headers, the error format, and
//! the body faults (truncated, corrupt, oversize, slow-drip bodies) applied
//! when a response is written.

use crate::faults::FaultKind;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use std::time::Duration;

/// What the service reports as its build (recorded responses show 1.9.x).
pub const SERVICE_VERSION: &str = "1.9.2795.1";
/// Chunk size of streamed (oversize) bodies: small enough to stay cheap.
const OVERSIZE_CHUNK: usize = 64 * 1024;
/// Pause between the half body and the abort of a truncated response, so the
/// half reaches the client first.
const TRUNCATE_PAUSE: Duration = Duration::from_millis(50);

/// A response before headers and faults are applied.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Option<Value>,
}

impl Reply {
    pub fn json(status: StatusCode, body: Value) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// `{"error":{"code","message"}}` with `status`.
pub fn kv_error(status: StatusCode, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": code, "message": message}}))
}

/// The Key Vault error format with an `innererror` code (e.g. `SecretDisabled`).
pub fn kv_error_inner(status: StatusCode, code: &str, message: &str, inner: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"code": code, "message": message, "innererror": {"code": inner}}}),
    )
}

/// The error code the service uses for a status (injected status faults).
pub fn code_for_status(status: u16) -> &'static str {
    match status {
        400 => "BadParameter",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        408 => "RequestTimeout",
        409 => "Conflict",
        429 => "Throttled",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "Error",
    }
}

/// Common headers every Key Vault answer carries.
pub struct Common<'a> {
    pub request_id: String,
    pub region: &'a str,
    pub peer_ip: String,
    /// The client's `x-ms-client-request-id`, echoed back as the service does.
    pub client_request_id: Option<String>,
}

/// Builds the wire response, applying a body fault if given.
pub fn finish(reply: Reply, common: &Common<'_>, fault: Option<FaultKind>) -> Response {
    let Reply {
        status,
        headers,
        body,
    } = reply;
    let mut body = body;
    let mut stream: Option<Body> = None;
    let mut declared_len: Option<u64> = None;
    match fault {
        Some(FaultKind::WrongContentType(ct)) => {
            if let Some(Value::Object(m)) = &mut body {
                m.insert("contentType".into(), json!(ct));
            }
        }
        Some(FaultKind::CorruptBase64) => {
            if let Some(Value::Object(m)) = &mut body
                && let Some(Value::String(v)) = m.get_mut("value")
            {
                let mid = v.len() / 2;
                let cut = (0..=mid)
                    .rev()
                    .find(|i| v.is_char_boundary(*i))
                    .unwrap_or(0);
                v.insert_str(cut, "!*%~");
            }
        }
        Some(FaultKind::BadPfx) => {
            if let Some(Value::Object(m)) = &mut body {
                // A DER SEQUENCE header promising 4 KiB followed by 64 zero bytes:
                // valid base64, not a PKCS#12 file.
                let mut junk = vec![0x30, 0x82, 0x10, 0x00, 0x02, 0x01, 0x03];
                junk.extend_from_slice(&[0u8; 64]);
                m.insert(
                    "value".into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(junk)),
                );
            }
        }
        Some(
            kind @ (FaultKind::TruncateBody
            | FaultKind::Oversize { .. }
            | FaultKind::SlowDrip { .. }),
        ) => {
            if let Some((faulty, length)) = streamed_fault(&kind, body_bytes(&body)) {
                stream = Some(faulty);
                declared_len = length;
            }
        }
        _ => {}
    }
    let mut b = Response::builder().status(status);
    let h = b.headers_mut().expect("builder");
    let mut put = |name: HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put(header::CACHE_CONTROL, "no-cache");
    put(header::PRAGMA, "no-cache");
    put(header::EXPIRES, "-1");
    put(
        HeaderName::from_static("x-ms-keyvault-region"),
        common.region,
    );
    put(
        HeaderName::from_static("x-ms-request-id"),
        &common.request_id,
    );
    put(
        HeaderName::from_static("x-ms-keyvault-service-version"),
        SERVICE_VERSION,
    );
    put(
        HeaderName::from_static("x-ms-keyvault-network-info"),
        &format!(
            "conn_type=Ipv4;addr={};act_addr_fam=InterNetwork;",
            common.peer_ip
        ),
    );
    if let Some(id) = &common.client_request_id {
        put(HeaderName::from_static("x-ms-client-request-id"), id);
    }
    put(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    put(
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=31536000;includeSubDomains",
    );
    if body.is_some() || stream.is_some() {
        put(header::CONTENT_TYPE, "application/json; charset=utf-8");
    }
    if let Some(n) = declared_len {
        put(header::CONTENT_LENGTH, &n.to_string());
    }
    for (name, value) in headers {
        put(name, &value);
    }
    let body = match stream {
        Some(s) => s,
        None => match &body {
            Some(_) => Body::from(body_bytes(&body)),
            None => Body::empty(),
        },
    };
    b.body(body).expect("valid response")
}

/// The streamed body faults (truncated, oversize, slow drip) applied to `bytes`, the
/// normal body: the body to send and the `Content-Length` to declare, if any. `None` for
/// every other kind. Shared by the vault API and the identity endpoint.
pub fn streamed_fault(kind: &FaultKind, bytes: Vec<u8>) -> Option<(Body, Option<u64>)> {
    match *kind {
        FaultKind::TruncateBody => {
            let declared = bytes.len() as u64;
            let half = Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
            // Half the body, a pause so it is flushed to the client, then an
            // error that makes the server drop the connection.
            let s = futures_util::stream::unfold(0u8, move |step| {
                let half = half.clone();
                async move {
                    match step {
                        0 => Some((Ok(half), 1)),
                        1 => {
                            tokio::time::sleep(TRUNCATE_PAUSE).await;
                            Some((Err(std::io::Error::other("kvemu: truncated body fault")), 2))
                        }
                        _ => None,
                    }
                }
            });
            Some((Body::from_stream(s), Some(declared)))
        }
        FaultKind::Oversize {
            bytes: total,
            declare_length,
        } => Some((oversize_body(total), declare_length.then_some(total))),
        FaultKind::SlowDrip { interval, chunk } => {
            Some((slow_body(bytes, interval, chunk.max(1)), None))
        }
        _ => None,
    }
}

fn body_bytes(body: &Option<Value>) -> Vec<u8> {
    body.as_ref()
        .map(|v| serde_json::to_vec(v).expect("json"))
        .unwrap_or_default()
}

/// `{"value":"AAAA…` for `total` bytes, generated chunk by chunk.
fn oversize_body(total: u64) -> Body {
    let prefix = Bytes::from_static(b"{\"value\":\"");
    let chunk = Bytes::from(vec![b'A'; OVERSIZE_CHUNK]);
    let s = futures_util::stream::unfold(0u64, move |sent| {
        let prefix = prefix.clone();
        let chunk = chunk.clone();
        async move {
            if sent >= total {
                return None;
            }
            let piece = if sent == 0 {
                prefix
            } else if total - sent < chunk.len() as u64 {
                let n = (total - sent) as usize;
                let mut tail = vec![b'A'; n.saturating_sub(2)];
                tail.extend_from_slice(&b"\"}"[..n.min(2)]);
                Bytes::from(tail)
            } else {
                chunk
            };
            let next = sent + piece.len() as u64;
            Some((Ok::<Bytes, std::io::Error>(piece), next))
        }
    });
    Body::from_stream(s)
}

/// The body, `chunk` bytes per `interval`.
fn slow_body(bytes: Vec<u8>, interval: Duration, chunk: usize) -> Body {
    let bytes = Bytes::from(bytes);
    let s = futures_util::stream::unfold(0usize, move |pos| {
        let bytes = bytes.clone();
        async move {
            if pos >= bytes.len() {
                return None;
            }
            if pos > 0 {
                tokio::time::sleep(interval).await;
            }
            let end = (pos + chunk).min(bytes.len());
            Some((Ok::<Bytes, std::io::Error>(bytes.slice(pos..end)), end))
        }
    });
    Body::from_stream(s)
}
