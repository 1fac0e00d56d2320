//! Reading an answer: [`SendReply::reply`] sends a request and returns a
//! [`Reply`] (status, headers, the body as JSON or `Null`), whose
//! [`Reply::expect`] asserts status and Key Vault error code and names the
//! table row that failed.

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::common::Env;

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as JSON; `Null` when it is empty or not JSON.
    pub body: Value,
}

impl Reply {
    pub async fn of(r: reqwest::Response) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        Reply {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// Key Vault's `error.code`, `/`, then `error.innererror.code` if there is
    /// one: `Forbidden/SecretDisabled`; empty when the body is no error.
    pub fn code(&self) -> String {
        let e = &self.body["error"];
        let code = e["code"].as_str().unwrap_or("");
        match e["innererror"]["code"].as_str() {
            Some(inner) => format!("{code}/{inner}"),
            None => code.to_string(),
        }
    }

    /// Asserts the status and [`Reply::code`]; `row` names the case on failure.
    #[track_caller]
    pub fn expect(self, status: u16, code: &str, row: &str) -> Self {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "{row}: {}",
            self.body
        );
        self
    }

    /// Asserts that every field of `expected` is in the body with the same
    /// value: objects recursively, anything else (arrays too) equal.
    #[track_caller]
    pub fn has(&self, expected: Value) -> &Self {
        fn at(path: &str, actual: &Value, expected: &Value, body: &Value) {
            match expected {
                Value::Object(fields) => {
                    for (k, v) in fields {
                        at(&format!("{path}/{k}"), &actual[k], v, body);
                    }
                }
                _ => assert_eq!(actual, expected, "{path} in {body}"),
            }
        }
        at("", &self.body, &expected, &self.body);
        self
    }

    /// The header's value; panics if it is absent.
    #[track_caller]
    pub fn header(&self, name: &str) -> &str {
        let v = self
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"));
        v.to_str().unwrap()
    }

    /// The string at a top-level field (or a JSON pointer, `/a/b`); panics if absent.
    #[track_caller]
    pub fn str(&self, at: &str) -> &str {
        let v = if at.starts_with('/') {
            self.body.pointer(at)
        } else {
            self.body.get(at)
        };
        v.and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string {at}: {}", self.body))
    }

    /// The `value` array of a list answer.
    #[track_caller]
    pub fn items(&self) -> &[Value] {
        self.body["value"].as_array().expect("a list answer")
    }

    /// The last path segment of `id` (an object's version).
    pub fn version(&self) -> &str {
        last_segment(self.str("id"))
    }
}

impl std::ops::Index<&str> for Reply {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        &self.body[key]
    }
}

/// The `id` of every item.
pub fn ids(items: &[Value]) -> Vec<&str> {
    items.iter().map(|i| i["id"].as_str().unwrap()).collect()
}

/// What follows the last `/`.
pub fn last_segment(id: &str) -> &str {
    id.rsplit('/').next().unwrap()
}

/// `send` then read as a [`Reply`]; panics on transport errors.
pub trait SendReply {
    fn reply(self) -> impl Future<Output = Reply>;
}

impl SendReply for reqwest::RequestBuilder {
    async fn reply(self) -> Reply {
        Reply::of(self.send().await.expect("request sent")).await
    }
}

/// Follows `nextLink` from `first`: the number of pages and every item.
pub async fn pages(env: &Env, first: &str) -> (usize, Vec<Value>) {
    let (mut url, mut pages, mut items) = (first.to_string(), 0, Vec::new());
    loop {
        let r = env.get(&url).await.expect(200, "", &url).body.clone();
        pages += 1;
        items.extend(r["value"].as_array().unwrap().iter().cloned());
        match r["nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => {
                assert!(r["nextLink"].is_null(), "{r}");
                return (pages, items);
            }
        }
    }
}

/// Sends one row, `STATUS CODE METHOD TARGET` (CODE as [`Reply::code`] gives
/// it, `-` for none; TARGET as [`Env::req`] takes it), with `token`, and
/// checks the answer; the panic quotes the row.
pub async fn check(env: &Env, token: &str, row: &str) -> Reply {
    let [status, code, method, target] = row.split_whitespace().collect::<Vec<_>>()[..] else {
        panic!("not STATUS CODE METHOD TARGET: {row}");
    };
    let (method, code) = (method.parse().unwrap(), code.trim_start_matches('-'));
    let r = env.req(method, target).bearer_auth(token).reply().await;
    r.expect(status.parse().unwrap(), code, row)
}

/// [`check`] for every row of a table, with [`Env::token`].
pub async fn check_rows(env: &Env, rows: &[impl AsRef<str>]) {
    for row in rows {
        check(env, &env.token, row.as_ref()).await;
    }
}
