//! Identities and the bearer tokens issued to them: which identity a token
//! request selects, token minting, and validation of a vault request's
//! `Authorization` header (issued by us, unexpired, right audience).

use crate::ids::{Rng, secure_bytes};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use std::collections::HashMap;
use std::fmt;

/// Subscription used in generated resource ids.
const SUBSCRIPTION: &str = "00000000-0000-0000-0000-00000000cafe";
/// Issued tokens kept for validation; beyond this, expired ones are pruned and
/// then the oldest dropped (a token flood cannot grow memory without bound).
const MAX_TOKENS: usize = 100_000;

/// A managed identity the endpoint can issue tokens for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub client_id: String,
    pub object_id: String,
    pub msi_res_id: String,
    /// The VM's system-assigned identity (selected when a request names none).
    pub system: bool,
}

#[derive(Clone)]
struct TokenInfo {
    client_id: String,
    resource: String,
    expires_on: i64,
    serial: u64,
}

/// What a request's `Authorization` header amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Missing,
    /// Present but not a token we issued.
    Invalid,
    Expired,
    WrongAudience {
        found: String,
    },
    Valid {
        client_id: String,
        object_id: String,
    },
}

/// Identities and issued tokens.
pub struct Auth {
    identities: Vec<Identity>,
    tokens: HashMap<String, TokenInfo>,
    serial: u64,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("identities", &self.identities)
            .field("tokens", &format_args!("<{} issued>", self.tokens.len()))
            .finish()
    }
}

/// Normalises a resource or scope: `https://vault.azure.net/.default` and
/// `https://vault.azure.net/` both mean `https://vault.azure.net`.
pub fn normalize_resource(r: &str) -> String {
    r.trim_end_matches("/.default")
        .trim_end_matches('/')
        .to_ascii_lowercase()
}

impl Auth {
    pub fn new(rng: &mut Rng) -> Self {
        let system = Identity {
            client_id: rng.guid(),
            object_id: rng.guid(),
            msi_res_id: format!(
                "/subscriptions/{SUBSCRIPTION}/resourceGroups/kvemu/providers/Microsoft.Compute/virtualMachines/kvemu-vm"
            ),
            system: true,
        };
        Auth {
            identities: vec![system],
            tokens: HashMap::new(),
            serial: 0,
        }
    }

    /// Every token issued and still kept (tests scan outputs for them).
    pub fn issued(&self) -> Vec<String> {
        self.tokens.keys().cloned().collect()
    }

    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    /// Adds a user-assigned identity (idempotent on the client id).
    pub fn add(&mut self, rng: &mut Rng, client_id: &str) -> Identity {
        if let Some(i) = self
            .identities
            .iter()
            .find(|i| i.client_id.eq_ignore_ascii_case(client_id))
        {
            return i.clone();
        }
        let short: String = client_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(8)
            .collect();
        let id = Identity {
            client_id: client_id.to_ascii_lowercase(),
            object_id: rng.guid(),
            msi_res_id: format!(
                "/subscriptions/{SUBSCRIPTION}/resourcegroups/kvemu/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-{short}"
            ),
            system: false,
        };
        self.identities.push(id.clone());
        id
    }

    pub fn system(&self) -> &Identity {
        &self.identities[0]
    }

    pub fn by_client_id(&self, v: &str) -> Option<&Identity> {
        self.identities
            .iter()
            .find(|i| i.client_id.eq_ignore_ascii_case(v))
    }

    pub fn by_object_id(&self, v: &str) -> Option<&Identity> {
        self.identities
            .iter()
            .find(|i| i.object_id.eq_ignore_ascii_case(v))
    }

    pub fn by_res_id(&self, v: &str) -> Option<&Identity> {
        self.identities
            .iter()
            .find(|i| i.msi_res_id.eq_ignore_ascii_case(v))
    }

    /// Mints a JWT-shaped token (random signature; valid only here).
    pub fn issue(
        &mut self,
        identity: &Identity,
        tenant: &str,
        resource: &str,
        now: i64,
        lifetime: i64,
    ) -> String {
        let header = json!({"typ": "JWT", "alg": "RS256", "x5t": "kvemu", "kid": "kvemu"});
        let claims = json!({
            "aud": resource,
            "iss": format!("https://sts.windows.net/{tenant}/"),
            "iat": now, "nbf": now, "exp": now + lifetime,
            "appid": identity.client_id,
            "oid": identity.object_id,
            "sub": identity.object_id,
            "tid": tenant,
            "xms_mirid": identity.msi_res_id,
            "idtyp": "app",
        });
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(secure_bytes(32))
        );
        if self.tokens.len() >= MAX_TOKENS {
            self.tokens.retain(|_, t| t.expires_on > now);
            if self.tokens.len() >= MAX_TOKENS {
                let cutoff = self.serial.saturating_sub(MAX_TOKENS as u64 / 2);
                self.tokens.retain(|_, t| t.serial > cutoff);
            }
        }
        self.serial += 1;
        self.tokens.insert(
            token.clone(),
            TokenInfo {
                client_id: identity.client_id.clone(),
                resource: normalize_resource(resource),
                expires_on: now + lifetime,
                serial: self.serial,
            },
        );
        token
    }

    /// Validates an `Authorization` header for a vault of `resource`.
    pub fn check(&self, header: Option<&str>, resource: &str, now: i64) -> Check {
        let Some(h) = header else {
            return Check::Missing;
        };
        let Some((scheme, token)) = h.trim().split_once(' ') else {
            return Check::Missing;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Check::Missing;
        }
        let Some(t) = self.tokens.get(token.trim()) else {
            return Check::Invalid;
        };
        if t.expires_on <= now {
            return Check::Expired;
        }
        if t.resource != normalize_resource(resource) {
            return Check::WrongAudience {
                found: t.resource.clone(),
            };
        }
        let object_id = self
            .by_client_id(&t.client_id)
            .map(|i| i.object_id.clone())
            .unwrap_or_default();
        Check::Valid {
            client_id: t.client_id.clone(),
            object_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_check() {
        let mut rng = Rng::new(1);
        let mut a = Auth::new(&mut rng);
        let ua = a.add(&mut rng, "C7373AE5-91C2-4165-8AB6-7381D6E75619");
        assert!(
            a.by_client_id("c7373ae5-91c2-4165-8ab6-7381d6e75619")
                .is_some()
        );
        assert!(a.by_res_id(&ua.msi_res_id.to_uppercase()).is_some());
        let t = a.issue(&ua, "t", "https://vault.azure.net", 100, 10);
        let h = format!("Bearer {t}");
        assert!(matches!(
            a.check(Some(&h), "https://vault.azure.net/", 105),
            Check::Valid { .. }
        ));
        assert_eq!(
            a.check(Some(&h), "https://vault.azure.net", 110),
            Check::Expired
        );
        assert!(matches!(
            a.check(Some(&h), "https://vault.azure.cn", 105),
            Check::WrongAudience { .. }
        ));
        assert_eq!(
            a.check(Some("Bearer nope"), "https://vault.azure.net", 105),
            Check::Invalid
        );
        assert_eq!(
            a.check(None, "https://vault.azure.net", 105),
            Check::Missing
        );
        assert_eq!(
            a.check(Some("Basic abc"), "https://vault.azure.net", 105),
            Check::Missing
        );
    }
}
