//! Request counters readable by tests: per vault, per object, per status, and
//! for the identity endpoint. Every request is counted on arrival, before any
//! fault, throttling or authentication decides its answer.

use std::collections::BTreeMap;

/// A snapshot of all counters (keys lowercase).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests per vault name.
    pub vault: BTreeMap<String, u64>,
    /// Requests per (vault, secret or certificate name).
    pub object: BTreeMap<(String, String), u64>,
    /// Answers per (vault, HTTP status); faults that send no status are not here.
    pub status: BTreeMap<(String, u16), u64>,
    /// Requests to the vault listener whose host is not a vault.
    pub unknown_host: u64,
    /// Requests to the identity endpoint.
    pub identity: u64,
    /// Identity-endpoint answers per status.
    pub identity_status: BTreeMap<u16, u64>,
    /// Tokens issued per identity client id.
    pub tokens_issued: BTreeMap<String, u64>,
    /// Requests answered with 429 by the throttle (not by injected faults).
    pub throttled: u64,
}

/// Distinct (vault, object) keys counted; beyond, requests are counted under
/// the object name [`OTHER`] (names come from request paths).
pub const MAX_OBJECT_KEYS: usize = 100_000;
/// Object name standing for everything past [`MAX_OBJECT_KEYS`].
pub const OTHER: &str = "<other>";

impl Counters {
    /// Counts a vault request on arrival.
    pub fn count_request(&mut self, vault: &str, object: Option<&str>) {
        *self.vault.entry(vault.to_string()).or_default() += 1;
        if let Some(obj) = object {
            let mut key = (vault.to_string(), obj.to_ascii_lowercase());
            if self.object.len() >= MAX_OBJECT_KEYS && !self.object.contains_key(&key) {
                key.1 = OTHER.to_string();
            }
            *self.object.entry(key).or_default() += 1;
        }
    }

    /// JSON form (for the control endpoint): composite keys joined with `/`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{Map, Value, json};
        let obj: Map<String, Value> = self
            .object
            .iter()
            .map(|((v, o), n)| (format!("{v}/{o}"), json!(n)))
            .collect();
        let status: Map<String, Value> = self
            .status
            .iter()
            .map(|((v, s), n)| (format!("{v}/{s}"), json!(n)))
            .collect();
        let id_status: Map<String, Value> = self
            .identity_status
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        json!({
            "vault": self.vault,
            "object": obj,
            "status": status,
            "unknown_host": self.unknown_host,
            "identity": self.identity,
            "identity_status": id_status,
            "tokens_issued": self.tokens_issued,
            "throttled": self.throttled,
        })
    }

    pub fn vault_requests(&self, vault: &str) -> u64 {
        self.vault
            .get(&vault.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    pub fn object_requests(&self, vault: &str, object: &str) -> u64 {
        self.object
            .get(&(vault.to_ascii_lowercase(), object.to_ascii_lowercase()))
            .copied()
            .unwrap_or(0)
    }

    pub fn status_count(&self, vault: &str, status: u16) -> u64 {
        self.status
            .get(&(vault.to_ascii_lowercase(), status))
            .copied()
            .unwrap_or(0)
    }
}
