//! Bounded, untrusted JSON input: the size cap, text encodings, a nesting bound and a
//! value tree that keeps duplicate keys so that validation can report them.
//!
//! Settings come from files that users and the Azure guest agent write, so everything
//! here assumes hostile input: nothing panics, nothing grows without bound.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Largest settings document accepted. The Microsoft schemas put a few hundred bytes per
/// certificate, so 1 MiB is thousands of certificates while still bounding memory.
pub const MAX_SETTINGS_BYTES: usize = 1024 * 1024;

/// Deepest nesting accepted. The deepest legal path (runtime file → publicSettings →
/// secretsManagementSettings → observedCertificates → item → acls → entry) is 8 levels.
pub const MAX_DEPTH: usize = 64;

/// A JSON value that keeps object members in document order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Name of the JSON type, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

/// Why a document could not be read as JSON at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error(
        "the settings are {size} bytes; at most {MAX_SETTINGS_BYTES} bytes (1 MiB) are accepted"
    )]
    TooLarge { size: usize },
    #[error(
        "the settings are not valid UTF-8 or UTF-16 text (invalid byte sequence at byte {offset})"
    )]
    NotText { offset: usize },
    #[error(
        "the settings are nested deeper than {MAX_DEPTH} levels (at line {line}, column {column})"
    )]
    TooDeep { line: usize, column: usize },
    #[error("the settings are not valid JSON: {message} at line {line}, column {column}")]
    Syntax {
        message: String,
        line: usize,
        column: usize,
    },
}

/// Decodes raw file bytes into text: UTF-8 (with or without BOM) or UTF-16 with a BOM,
/// which is what Windows PowerShell's `Out-File` writes.
pub fn decode_text(bytes: &[u8]) -> Result<String, JsonError> {
    if bytes.len() > MAX_SETTINGS_BYTES {
        return Err(JsonError::TooLarge { size: bytes.len() });
    }
    let utf16 = |body: &[u8], big_endian: bool| -> Result<String, JsonError> {
        if !body.len().is_multiple_of(2) {
            return Err(JsonError::NotText {
                offset: bytes.len() - 1,
            });
        }
        let units = body.chunks_exact(2).map(|pair| {
            if big_endian {
                u16::from_be_bytes([pair[0], pair[1]])
            } else {
                u16::from_le_bytes([pair[0], pair[1]])
            }
        });
        let mut text = String::with_capacity(body.len() / 2);
        for (index, unit) in char::decode_utf16(units).enumerate() {
            match unit {
                Ok(c) => text.push(c),
                Err(_) => {
                    return Err(JsonError::NotText {
                        offset: 2 + index * 2,
                    });
                }
            }
        }
        Ok(text)
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => {
            std::str::from_utf8(rest)
                .map(str::to_owned)
                .map_err(|e| JsonError::NotText {
                    offset: 3 + e.valid_up_to(),
                })
        }
        [0xFF, 0xFE, rest @ ..] => utf16(rest, false),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, true),
        _ => std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| JsonError::NotText {
                offset: e.valid_up_to(),
            }),
    }
}

/// Parses JSON text into a [`Json`] tree after checking the nesting bound.
pub fn parse(text: &str) -> Result<Json, JsonError> {
    if text.len() > MAX_SETTINGS_BYTES {
        return Err(JsonError::TooLarge { size: text.len() });
    }
    check_depth(text)?;
    serde_json::from_str::<Json>(text).map_err(|e| JsonError::Syntax {
        message: syntax_message(&e),
        line: e.line(),
        column: e.column(),
    })
}

/// serde_json's messages end with " at line L column C"; we print the position ourselves.
fn syntax_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// Rejects documents nested deeper than [`MAX_DEPTH`] with a one-pass scan that
/// understands strings, so that the parser never recurses that deep.
fn check_depth(text: &str) -> Result<(), JsonError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let (mut line, mut column) = (1usize, 0usize);
    for c in text.chars() {
        if c == '\n' {
            line += 1;
            column = 0;
        } else {
            column += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(JsonError::TooDeep { line, column });
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        // serde_json never produces non-finite numbers; null is the safe fallback.
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            members.push((key, value));
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_duplicate_keys_in_order() {
        let json = parse(r#"{"a":1,"a":2}"#).unwrap();
        let Json::Object(members) = json else {
            panic!("not an object")
        };
        assert_eq!(members.len(), 2);
        assert_eq!(members[1].1, Json::Number(2.into()));
    }

    #[test]
    fn depth_bound_counts_only_structure_outside_strings() {
        let inside_string = format!("{{\"a\":\"{}\"}}", "[".repeat(1000));
        assert!(parse(&inside_string).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(
            parse(&deep),
            Err(JsonError::TooDeep {
                line: 1,
                column: MAX_DEPTH + 1
            })
        );
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn decodes_utf8_bom_and_utf16() {
        assert_eq!(decode_text(b"\xEF\xBB\xBF{}").unwrap(), "{}");
        assert_eq!(decode_text(b"\xFF\xFE{\0}\0").unwrap(), "{}");
        assert_eq!(decode_text(b"\xFE\xFF\0{\0}").unwrap(), "{}");
        assert_eq!(
            decode_text(b"{\xC3}"),
            Err(JsonError::NotText { offset: 1 })
        );
        assert_eq!(
            decode_text(b"\xFF\xFE{"),
            Err(JsonError::NotText { offset: 2 })
        );
    }

    #[test]
    fn size_cap_is_exact() {
        let at_cap = vec![b' '; MAX_SETTINGS_BYTES];
        assert!(decode_text(&at_cap).is_ok());
        let over = vec![b' '; MAX_SETTINGS_BYTES + 1];
        assert_eq!(
            decode_text(&over),
            Err(JsonError::TooLarge {
                size: MAX_SETTINGS_BYTES + 1
            })
        );
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = parse("{\n  \"a\": 1,\n}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the settings are not valid JSON: trailing comma at line 3, column 1"
        );
    }
}
