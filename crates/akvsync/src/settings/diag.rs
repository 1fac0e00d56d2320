//! Diagnostics of settings validation: the JSON path a problem concerns, and the
//! separate lists of errors (the settings are rejected) and warnings (they are used).

use std::fmt;

use serde::Serialize;

/// A location in the settings document, printed as `a.b[2].c` (`$` for the root).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonPath(String);

impl JsonPath {
    /// The document root.
    pub fn root() -> Self {
        JsonPath(String::new())
    }

    /// The member `key` of the object at this path.
    pub fn field(&self, key: &str) -> Self {
        let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let mut path = self.0.clone();
        if plain {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        } else {
            // Keys that are not identifiers are quoted like JSON strings: ["a.b"].
            path.push('[');
            path.push_str(&serde_json::Value::String(key.to_owned()).to_string());
            path.push(']');
        }
        JsonPath(path)
    }

    /// The element `index` of the array at this path.
    pub fn index(&self, index: usize) -> Self {
        JsonPath(format!("{}[{index}]", self.0))
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("$")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// One problem found in the settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Everything validation found, errors and warnings apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diagnostics {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, path: &JsonPath, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, path: &JsonPath, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            path: path.to_string(),
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_like_javascript_accessors() {
        let root = JsonPath::root();
        assert_eq!(root.to_string(), "$");
        let url = root
            .field("secretsManagementSettings")
            .field("observedCertificates")
            .index(2)
            .field("url");
        assert_eq!(
            url.to_string(),
            "secretsManagementSettings.observedCertificates[2].url"
        );
        let host = root
            .field("akvsync")
            .field("connectTo")
            .field("v.vault.azure.net");
        assert_eq!(host.to_string(), "akvsync.connectTo[\"v.vault.azure.net\"]");
    }
}
