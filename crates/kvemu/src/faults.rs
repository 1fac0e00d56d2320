//! Scriptable fault injection: which requests a fault applies to (vault, secret,
//! path, identity endpoint), when (the next N matching requests, or with a
//! probability drawn from the seeded PRNG) and what it does.

use crate::ids::Rng;
use std::time::Duration;

/// What a fault does to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Answer with this status (Key Vault / IMDS error body), optionally with `Retry-After` seconds.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Wait, then answer normally (identity endpoint: a slow start).
    Delay(Duration),
    /// Never answer; the connection stays open until the client gives up or the emulator stops.
    Hang,
    /// Abort the TCP connection with a reset (RST) instead of answering.
    Reset,
    /// Declare the full `Content-Length`, send half the body, then drop the connection.
    TruncateBody,
    /// Answer normally but with a `value` that is not valid base64.
    CorruptBase64,
    /// Answer normally but with a `value` that is valid base64 of bytes that are not a PFX.
    BadPfx,
    /// Answer normally but with this `contentType`.
    WrongContentType(String),
    /// Redirect (3xx, e.g. 302 or 307) to `location` (another host).
    Redirect { status: u16, location: String },
    /// A 200 whose JSON body streams `bytes` bytes (generated lazily, never held
    /// in memory), chunked, or with `Content-Length: bytes` when `declare_length`.
    Oversize { bytes: u64, declare_length: bool },
    /// The normal body, `chunk` bytes every `interval` (slowloris-style).
    SlowDrip { interval: Duration, chunk: usize },
    /// Identity endpoint: a token whose `expires_on` is off by this many seconds (clock skew).
    ExpiresOnSkew(i64),
    /// Vault: a `401` whose `WWW-Authenticate: Bearer` challenge names `resource` (e.g. a
    /// foreign one, which a client must refuse rather than fetch a token for).
    Challenge { resource: String },
}

impl FaultKind {
    /// Body faults need the normal response and apply only to 2xx answers.
    pub fn is_body_fault(&self) -> bool {
        matches!(
            self,
            FaultKind::TruncateBody
                | FaultKind::CorruptBase64
                | FaultKind::BadPfx
                | FaultKind::WrongContentType(_)
                | FaultKind::Oversize { .. }
                | FaultKind::SlowDrip { .. }
                | FaultKind::ExpiresOnSkew(_)
        )
    }
}

/// Which requests a fault matches. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultTarget {
    /// `true`: the identity endpoint; `false`: the vault API.
    pub identity: bool,
    /// Vault name (first DNS label, case-insensitive).
    pub vault: Option<String>,
    /// Secret or certificate name (case-insensitive).
    pub object: Option<String>,
    /// Substring of the request path.
    pub path_contains: Option<String>,
}

/// When a fault fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// The next N matching requests.
    Next(u32),
    /// Each matching request with this probability (seeded, reproducible), forever.
    Probability(f64),
}

/// A scripted fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub target: FaultTarget,
    pub kind: FaultKind,
    pub trigger: Trigger,
}

impl Fault {
    /// `kind` on the next `n` requests for `vault` (any object).
    pub fn vault(vault: &str, kind: FaultKind, n: u32) -> Self {
        Fault {
            target: FaultTarget {
                vault: Some(vault.to_string()),
                ..Default::default()
            },
            kind,
            trigger: Trigger::Next(n),
        }
    }

    /// `kind` on the next `n` requests for `vault`/`object`.
    pub fn object(vault: &str, object: &str, kind: FaultKind, n: u32) -> Self {
        Fault {
            target: FaultTarget {
                vault: Some(vault.to_string()),
                object: Some(object.to_string()),
                ..Default::default()
            },
            kind,
            trigger: Trigger::Next(n),
        }
    }

    /// `kind` on the next `n` identity-endpoint requests.
    pub fn identity(kind: FaultKind, n: u32) -> Self {
        Fault {
            target: FaultTarget {
                identity: true,
                ..Default::default()
            },
            kind,
            trigger: Trigger::Next(n),
        }
    }

    /// Same target and kind, firing with probability `p` instead.
    pub fn with_probability(mut self, p: f64) -> Self {
        self.trigger = Trigger::Probability(p);
        self
    }
}

impl Fault {
    /// Parses the JSON form used by `kvemu serve`'s control endpoint:
    /// `{"target": "vault"|"identity", "vault", "object", "path_contains",
    /// "kind": "status"|"delay"|"hang"|"reset"|"truncate_body"|"corrupt_base64"|
    /// "bad_pfx"|"wrong_content_type"|"redirect"|"oversize"|"slow_drip"|"expires_on_skew"|
    /// "challenge", "status", "retry_after", "delay_ms", "content_type", "location", "bytes",
    /// "declare_length", "interval_ms", "chunk", "skew_secs", "resource",
    /// "next": N (default 1) | "probability": p}`.
    pub fn from_json(v: &serde_json::Value) -> Result<Fault, String> {
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let u = |k: &str| v.get(k).and_then(|x| x.as_u64());
        let need_u = |k: &str| u(k).ok_or_else(|| format!("missing or invalid {k}"));
        let identity = match s("target").as_deref() {
            None | Some("vault") => false,
            Some("identity") => true,
            Some(other) => return Err(format!("unknown target {other}")),
        };
        let kind_name = s("kind").ok_or("missing kind")?;
        let kind = match kind_name.as_str() {
            "status" => FaultKind::Status {
                status: u16::try_from(need_u("status")?).map_err(|e| e.to_string())?,
                retry_after: u("retry_after"),
            },
            "delay" => FaultKind::Delay(Duration::from_millis(need_u("delay_ms")?)),
            "hang" => FaultKind::Hang,
            "reset" => FaultKind::Reset,
            "truncate_body" => FaultKind::TruncateBody,
            "corrupt_base64" => FaultKind::CorruptBase64,
            "bad_pfx" => FaultKind::BadPfx,
            "wrong_content_type" => {
                FaultKind::WrongContentType(s("content_type").ok_or("missing content_type")?)
            }
            "redirect" => FaultKind::Redirect {
                status: u16::try_from(u("status").unwrap_or(302)).map_err(|e| e.to_string())?,
                location: s("location").ok_or("missing location")?,
            },
            "oversize" => FaultKind::Oversize {
                bytes: need_u("bytes")?,
                declare_length: v
                    .get("declare_length")
                    .and_then(|x| x.as_bool())
                    .unwrap_or(false),
            },
            "slow_drip" => FaultKind::SlowDrip {
                interval: Duration::from_millis(need_u("interval_ms")?),
                chunk: usize::try_from(u("chunk").unwrap_or(16)).map_err(|e| e.to_string())?,
            },
            "expires_on_skew" => FaultKind::ExpiresOnSkew(
                v.get("skew_secs")
                    .and_then(|x| x.as_i64())
                    .ok_or("missing skew_secs")?,
            ),
            "challenge" => FaultKind::Challenge {
                resource: s("resource").ok_or("missing resource")?,
            },
            other => return Err(format!("unknown kind {other}")),
        };
        let trigger = match v.get("probability").and_then(|x| x.as_f64()) {
            Some(p) if (0.0..=1.0).contains(&p) => Trigger::Probability(p),
            Some(_) => return Err("probability must be within 0..=1".into()),
            None => {
                Trigger::Next(u32::try_from(u("next").unwrap_or(1)).map_err(|e| e.to_string())?)
            }
        };
        Ok(Fault {
            target: FaultTarget {
                identity,
                vault: s("vault"),
                object: s("object"),
                path_contains: s("path_contains"),
            },
            kind,
            trigger,
        })
    }
}

/// What a request looks like to the matcher.
#[derive(Debug, Clone, Copy)]
pub struct RequestKey<'a> {
    pub identity: bool,
    pub vault: Option<&'a str>,
    pub object: Option<&'a str>,
    pub path: &'a str,
}

/// Upper bound of scripted faults held at once (a runaway test cannot grow it forever).
const MAX_FAULTS: usize = 10_000;

/// The scripted faults, in insertion order; the first that matches and fires wins.
#[derive(Debug)]
pub struct Faults {
    rules: Vec<Fault>,
    rng: Rng,
}

impl Faults {
    pub fn new(seed: u64) -> Self {
        Faults {
            rules: Vec::new(),
            rng: Rng::new(seed ^ 0xfa17),
        }
    }

    pub fn add(&mut self, f: Fault) {
        if self.rules.len() < MAX_FAULTS {
            self.rules.push(f);
        }
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn pending(&self) -> usize {
        self.rules.len()
    }

    /// The fault to apply to this request, if any; `body` selects body faults
    /// (asked once the normal answer is known to be a 2xx) or the others.
    pub fn take(&mut self, key: RequestKey<'_>, body: bool) -> Option<FaultKind> {
        let idx = self.rules.iter().position(|f| {
            f.kind.is_body_fault() == body
                && matches(&f.target, key)
                && f.trigger != Trigger::Next(0)
        });
        // Probability rules are rolled in order; a miss lets later rules try.
        let mut i = idx?;
        loop {
            let f = &mut self.rules[i];
            let fire = match &mut f.trigger {
                Trigger::Next(n) => {
                    *n -= 1;
                    true
                }
                Trigger::Probability(p) => self.rng.next_f64() < *p,
            };
            if fire {
                let kind = f.kind.clone();
                if f.trigger == Trigger::Next(0) {
                    self.rules.remove(i);
                }
                return Some(kind);
            }
            i = (i + 1..self.rules.len()).find(|&j| {
                let f = &self.rules[j];
                f.kind.is_body_fault() == body && matches(&f.target, key)
            })?;
        }
    }
}

fn matches(t: &FaultTarget, k: RequestKey<'_>) -> bool {
    let eq = |want: &Option<String>, got: Option<&str>| match want {
        None => true,
        Some(w) => got.is_some_and(|g| g.eq_ignore_ascii_case(w)),
    };
    t.identity == k.identity
        && eq(&t.vault, k.vault)
        && eq(&t.object, k.object)
        && t.path_contains
            .as_deref()
            .is_none_or(|p| k.path.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(vault: &'a str, object: &'a str) -> RequestKey<'a> {
        RequestKey {
            identity: false,
            vault: Some(vault),
            object: Some(object),
            path: "/secrets/x",
        }
    }

    #[test]
    fn next_n_then_gone() {
        let mut f = Faults::new(1);
        f.add(Fault::object("v1", "s", FaultKind::Hang, 2));
        assert_eq!(f.take(key("v2", "s"), false), None);
        assert_eq!(f.take(key("V1", "S"), true), None);
        assert_eq!(f.take(key("v1", "s"), false), Some(FaultKind::Hang));
        assert_eq!(f.take(key("v1", "s"), false), Some(FaultKind::Hang));
        assert_eq!(f.take(key("v1", "s"), false), None);
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn json_form() {
        let f = Fault::from_json(&serde_json::json!({
            "vault": "v1", "object": "s", "kind": "status", "status": 503, "retry_after": 5, "next": 2
        }))
        .unwrap();
        assert_eq!(
            f,
            Fault::object(
                "v1",
                "s",
                FaultKind::Status {
                    status: 503,
                    retry_after: Some(5)
                },
                2
            )
        );
        let f = Fault::from_json(&serde_json::json!({"target": "identity", "kind": "delay", "delay_ms": 1500, "probability": 0.5})).unwrap();
        assert_eq!(
            f,
            Fault::identity(FaultKind::Delay(Duration::from_millis(1500)), 0).with_probability(0.5)
        );
        let f = Fault::from_json(
            &serde_json::json!({"kind": "challenge", "resource": "https://evil.example.com"}),
        )
        .unwrap();
        assert_eq!(
            f.kind,
            FaultKind::Challenge {
                resource: "https://evil.example.com".into()
            }
        );
        assert!(!f.kind.is_body_fault());
        assert!(Fault::from_json(&serde_json::json!({"kind": "challenge"})).is_err());
        assert!(Fault::from_json(&serde_json::json!({"kind": "nope"})).is_err());
        assert!(Fault::from_json(&serde_json::json!({"kind": "status"})).is_err());
    }

    #[test]
    fn probability_is_reproducible() {
        let run = || {
            let mut f = Faults::new(42);
            f.add(Fault::vault("v", FaultKind::Reset, 0).with_probability(0.3));
            (0..200)
                .map(|_| f.take(key("v", "s"), false).is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let hits = a.iter().filter(|x| **x).count();
        assert!((30..90).contains(&hits), "{hits}");
    }
}
