//! Reading typed fields out of [`Json`] objects the way the Microsoft extensions do:
//! field names matched case-insensitively (with a warning when the case differs),
//! `null` meaning absent, booleans also as `"true"`/`"false"` strings, numbers also as
//! strings of digits, and every member not taken reported as an unknown field.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::diag::{Diagnostics, JsonPath};
use super::json::Json;

/// Reads the members of one JSON object and remembers which ones were used.
#[derive(Debug)]
pub struct ObjectReader<'a> {
    members: &'a [(String, Json)],
    path: JsonPath,
    taken: Vec<bool>,
    /// Field names asked for, for "did you mean" on unknown ones.
    asked: Vec<String>,
}

/// Field names remembered per object for "did you mean" (every schema object has fewer).
const MAX_ASKED: usize = 32;

/// Whether `a` and `b` differ by exactly one inserted, removed or replaced character, or
/// by two adjacent characters swapped (ASCII case ignored): a typo of the other. Linear.
pub fn one_edit_apart(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    if a == b || a.len().abs_diff(b.len()) > 1 || a.len().min(b.len()) < 3 {
        return false;
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (rest_a, rest_b) = (a.len() - prefix - suffix, b.len() - prefix - suffix);
    let swapped =
        rest_a == 2 && rest_b == 2 && a[prefix] == b[prefix + 1] && a[prefix + 1] == b[prefix];
    (rest_a <= 1 && rest_b <= 1) || swapped
}

impl<'a> ObjectReader<'a> {
    /// Starts reading `value` as an object; reports an error and returns `None` otherwise.
    pub fn new(value: &'a Json, path: &JsonPath, diags: &mut Diagnostics) -> Option<Self> {
        match value {
            Json::Object(members) => Some(ObjectReader {
                members,
                path: path.clone(),
                taken: vec![false; members.len()],
                asked: Vec::new(),
            }),
            other => {
                diags.error(path, format!("expected an object, found {}", other.kind()));
                None
            }
        }
    }

    /// True when the object has no members at all.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Takes the member `name` (matched case-insensitively; the last of duplicates wins,
    /// as in the Microsoft extensions' JSON parser). `null` counts as absent.
    pub fn take(&mut self, name: &str, diags: &mut Diagnostics) -> Option<(&'a Json, JsonPath)> {
        if self.asked.len() < MAX_ASKED {
            self.asked.push(name.to_owned());
        }
        let mut last = None;
        let mut count = 0;
        for (index, (key, _)) in self.members.iter().enumerate() {
            if key.eq_ignore_ascii_case(name) {
                self.taken[index] = true;
                count += 1;
                last = Some(index);
            }
        }
        self.found(name, last?, count, diags)
    }

    /// Takes every member, for objects whose keys are data (`testing.connectTo`): calls
    /// `each` once per group of case-insensitively equal keys, in the order of their first
    /// appearance, with the first spelling as the name. Exactly what calling
    /// [`take`](Self::take) with each distinct key would report and return, in one pass
    /// over the members rather than one per key.
    pub fn take_each(
        &mut self,
        diags: &mut Diagnostics,
        mut each: impl FnMut(&'a str, &'a Json, JsonPath, &mut Diagnostics),
    ) {
        // Per group: the first index, the last index and how many members it has.
        let mut groups: Vec<(usize, usize, usize)> = Vec::new();
        let mut group_of: HashMap<String, usize> = HashMap::with_capacity(self.members.len());
        for (index, (key, _)) in self.members.iter().enumerate() {
            match group_of.entry(key.to_ascii_lowercase()) {
                Entry::Occupied(group) => {
                    let group = &mut groups[*group.get()];
                    group.1 = index;
                    group.2 += 1;
                }
                Entry::Vacant(slot) => {
                    slot.insert(groups.len());
                    groups.push((index, index, 1));
                }
            }
        }
        self.taken.fill(true);
        let members: &'a [(String, Json)] = self.members;
        for (first, last, count) in groups {
            let name = members[first].0.as_str();
            if let Some((value, path)) = self.found(name, last, count, diags) {
                each(name, value, path, diags);
            }
        }
    }

    /// The member at `index`, the last of `count` whose keys equal `name`
    /// case-insensitively: reports the duplicates and a spelling other than `name`.
    fn found(
        &self,
        name: &str,
        index: usize,
        count: usize,
        diags: &mut Diagnostics,
    ) -> Option<(&'a Json, JsonPath)> {
        let members: &'a [(String, Json)] = self.members;
        let (key, value) = &members[index];
        let path = self.path.field(key);
        if count > 1 {
            diags.warn(&path, format!("given {count} times; the last one is used"));
        }
        if key != name {
            diags.warn(
                &path,
                format!("field name is spelled \"{name}\" in the schema; accepted"),
            );
        }
        match value {
            Json::Null => None,
            value => Some((value, path)),
        }
    }

    /// Like [`take`](Self::take), but reports an error when the member is missing.
    pub fn require(&mut self, name: &str, diags: &mut Diagnostics) -> Option<(&'a Json, JsonPath)> {
        let taken = self.take(name, diags);
        if taken.is_none() {
            diags.error(&self.path.field(name), "required field is missing");
        }
        taken
    }

    /// Takes a member that the other platform uses and this one ignores, with a warning.
    pub fn ignore_for_platform(&mut self, name: &str, platform: &str, diags: &mut Diagnostics) {
        if let Some((_, path)) = self.take(name, diags) {
            diags.warn(&path, format!("not used on {platform}; ignored"));
        }
    }

    /// Reports every member that was not taken as an unknown field, with the known field
    /// it is one edit away from, if any.
    pub fn finish(self, diags: &mut Diagnostics) {
        for ((key, _), taken) in self.members.iter().zip(&self.taken) {
            if !taken {
                let message = match self.asked.iter().find(|known| one_edit_apart(key, known)) {
                    Some(known) => format!("unknown field; ignored (did you mean \"{known}\"?)"),
                    None => "unknown field; ignored".to_owned(),
                };
                diags.warn(&self.path.field(key), message);
            }
        }
    }
}

/// A boolean: JSON `true`/`false`, or the strings `"true"`/`"false"` in any case
/// (the Microsoft documentation shows both forms).
pub fn boolean(value: &Json, path: &JsonPath, diags: &mut Diagnostics) -> Option<bool> {
    match value {
        Json::Bool(b) => Some(*b),
        Json::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Json::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        Json::String(s) => {
            diags.error(path, format!("expected true or false, found {}", quote(s)));
            None
        }
        other => {
            diags.error(
                path,
                format!("expected true or false, found {}", other.kind()),
            );
            None
        }
    }
}

/// A string, as is.
pub fn string<'a>(value: &'a Json, path: &JsonPath, diags: &mut Diagnostics) -> Option<&'a str> {
    match value {
        Json::String(s) => Some(s),
        other => {
            diags.error(path, format!("expected a string, found {}", other.kind()));
            None
        }
    }
}

/// A string that is not empty or blank.
pub fn nonblank_string<'a>(
    value: &'a Json,
    path: &JsonPath,
    diags: &mut Diagnostics,
) -> Option<&'a str> {
    let s = string(value, path, diags)?;
    if s.trim().is_empty() {
        diags.error(path, "must not be empty");
        return None;
    }
    Some(s)
}

/// A whole number in `1..=max`, as a JSON number or a string of digits (`"3600"`).
pub fn positive_integer(
    value: &Json,
    path: &JsonPath,
    max: u64,
    diags: &mut Diagnostics,
) -> Option<u64> {
    let expected = "expected a positive whole number, as a number or a string of digits";
    let parsed = match value {
        Json::Number(n) => match n.as_u64() {
            Some(v) => Some(v),
            None => {
                diags.error(path, format!("{expected}, found {n}"));
                return None;
            }
        },
        Json::String(s) => {
            let digits = s.trim();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                diags.error(path, format!("{expected}, found {}", quote(s)));
                return None;
            }
            // Only overflow can fail here; report it like any too-large value.
            digits.parse::<u64>().ok().or(Some(u64::MAX))
        }
        other => {
            diags.error(path, format!("{expected}, found {}", other.kind()));
            return None;
        }
    }?;
    if parsed == 0 {
        diags.error(path, "must be greater than 0");
        None
    } else if parsed > max {
        diags.error(path, format!("must be at most {max}"));
        None
    } else {
        Some(parsed)
    }
}

/// An array, element by element with their paths.
pub fn array<'a>(value: &'a Json, path: &JsonPath, diags: &mut Diagnostics) -> Option<&'a [Json]> {
    match value {
        Json::Array(items) => Some(items),
        other => {
            diags.error(path, format!("expected an array, found {}", other.kind()));
            None
        }
    }
}

/// Quotes user text for a message: JSON string syntax, cut to a readable length.
pub fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    let shown: String = text.chars().take(MAX_CHARS).collect();
    let mut quoted = serde_json::Value::String(shown).to_string();
    if text.chars().count() > MAX_CHARS {
        quoted.insert(quoted.len() - 1, '…');
    }
    quoted
}

/// True for characters that never belong in names, paths or identifiers.
pub fn is_control(c: char) -> bool {
    c.is_control()
}

#[cfg(test)]
mod tests {
    #[test]
    fn typos_are_one_edit_apart() {
        use super::one_edit_apart;
        assert!(one_edit_apart(
            "observedCertificate",
            "observedCertificates"
        ));
        // Differing only in case is a match, not a typo.
        assert!(!one_edit_apart("pollingIntervalIns", "pollingIntervalInS"));
        assert!(one_edit_apart("pollingIntrevalInS", "pollingIntervalInS"));
        assert!(one_edit_apart(
            "certificateStoreNme",
            "certificateStoreName"
        ));
        assert!(one_edit_apart("linkOnRenewl", "linkOnRenewal"));
        assert!(!one_edit_apart("url", "uri2"));
        assert!(!one_edit_apart("acls", "acls"));
        assert!(!one_edit_apart("hooks", "metrics"));
    }

    use super::*;
    use crate::settings::json;

    fn shown(value: &Json) -> String {
        match value {
            Json::Number(n) => n.to_string(),
            other => other.kind().to_owned(),
        }
    }

    /// What `testing.connectTo` did before `take_each`: `take` once per distinct key.
    fn take_per_key(doc: &Json, diags: &mut Diagnostics) {
        let path = JsonPath::root().field("o");
        let mut reader = ObjectReader::new(doc, &path, diags).unwrap();
        let Json::Object(members) = doc else {
            unreachable!()
        };
        let mut seen = std::collections::BTreeSet::new();
        for (key, _) in members {
            if !seen.insert(key.to_ascii_lowercase()) {
                continue;
            }
            if let Some((value, path)) = reader.take(key, diags) {
                diags.warn(&path, format!("{key} = {}", shown(value)));
            }
        }
        reader.finish(diags);
    }

    #[test]
    fn take_each_reports_and_returns_what_take_per_key_did() {
        let doc = json::parse(
            r#"{"a":1,"B":2,"A":3,"c":null,"b":4,"C":5,"d":null,"é":6,"É":7,"a":8,"x.y":9}"#,
        )
        .unwrap();
        let mut before = Diagnostics::default();
        take_per_key(&doc, &mut before);

        let mut after = Diagnostics::default();
        let path = JsonPath::root().field("o");
        let mut reader = ObjectReader::new(&doc, &path, &mut after).unwrap();
        reader.take_each(&mut after, |name, value, path, diags| {
            diags.warn(&path, format!("{name} = {}", shown(value)));
        });
        reader.finish(&mut after);

        assert_eq!(after, before);
        let shown: Vec<String> = after.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "o.a: given 3 times; the last one is used",
                "o.a: a = 8",
                "o.b: given 2 times; the last one is used",
                "o.b: field name is spelled \"B\" in the schema; accepted",
                "o.b: B = 4",
                "o.C: given 2 times; the last one is used",
                "o.C: field name is spelled \"c\" in the schema; accepted",
                "o.C: c = 5",
                "o[\"é\"]: é = 6",
                "o[\"É\"]: É = 7",
                "o[\"x.y\"]: x.y = 9",
            ]
        );
    }
}
