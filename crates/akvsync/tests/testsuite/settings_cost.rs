//! Validation cost of the largest settings (issue 16, finding 6): for each list a settings
//! file can make long (certificates, duplicate targets, hooks with certificate filters,
//! accounts, acls, `testing.connectTo` hosts, unknown fields), a document just under the
//! 1 MiB cap is validated and the result checked exactly. Nothing here asserts on time:
//! every list is matched in linear or n·log n time, and a quadratic regression shows as a
//! test that takes minutes. `scripts/settings-cost.sh` prints the CPU time of
//! `akvsync validate` on each generated file (the ignored test `write_generated_files`
//! writes them).

use akvsync::settings::{
    Diagnostic, MAX_SETTINGS_BYTES, Platform, SettingsError, Target, Validated, parse_bytes,
};

/// Every generated document stays this far under the cap.
const BUDGET: usize = MAX_SETTINGS_BYTES - 256;

/// Appends `item(0)`, `item(1)`, … separated by commas to `out` while `out` plus `tail`
/// (the text that will close the document) stays within `limit`; returns the count.
fn fill(
    out: &mut String,
    tail: &str,
    limit: usize,
    mut item: impl FnMut(usize) -> String,
) -> usize {
    let mut count = 0;
    loop {
        let next = item(count);
        let comma = usize::from(count > 0);
        if out.len() + comma + next.len() + tail.len() > limit {
            return count;
        }
        if comma == 1 {
            out.push(',');
        }
        out.push_str(&next);
        count += 1;
    }
}

fn vault(i: usize) -> String {
    format!("v{:04}", i % 9973)
}

fn secret(i: usize) -> String {
    format!("c{i:06}")
}

fn url(i: usize) -> String {
    format!(
        "\"https://{}.vault.azure.net/secrets/{}\"",
        vault(i),
        secret(i)
    )
}

/// A generated document, the platform it is read with, and how many list items it holds.
struct Generated {
    name: &'static str,
    platform: Platform,
    text: String,
    items: usize,
}

impl Generated {
    /// `head`, then as many `item(i)` as fit in the budget, then `tail`.
    fn filled(
        name: &'static str,
        platform: Platform,
        head: String,
        tail: &str,
        item: impl FnMut(usize) -> String,
    ) -> Generated {
        let mut text = head;
        let items = fill(&mut text, tail, BUDGET, item);
        text.push_str(tail);
        Generated {
            name,
            platform,
            text,
            items,
        }
    }
}

/// The start of a document whose `observedCertificates` list comes next.
const OBSERVED: &str = r#"{"secretsManagementSettings":{"observedCertificates":["#;

/// [`OBSERVED`] with the first `count` generated certificates listed.
fn observing(count: usize) -> String {
    let urls: Vec<String> = (0..count).map(url).collect();
    format!("{OBSERVED}{}", urls.join(","))
}

/// Tens of thousands of distinct certificates (Linux, string form).
fn many_certificates() -> Generated {
    Generated::filled("certificates", Platform::Linux, OBSERVED.into(), "]}}", url)
}

/// The same vault and secret (in varying case) installed over and over into one store
/// (Windows): each repeat is a duplicate target of the first.
fn duplicate_certificates() -> Generated {
    Generated::filled(
        "duplicates",
        Platform::Windows,
        OBSERVED.into(),
        "]}}",
        |i| {
            let name = if i % 2 == 0 { "web" } else { "WEB" };
            format!("\"https://myvault.vault.azure.net/secrets/{name}\"")
        },
    )
}

const HOOK_CERTIFICATES: usize = 6000;
const FILTERS_PER_HOOK: usize = 100;

/// A filter of the hooks document: every 10th names no certificate; the others name one in
/// varying case (names are compared case-insensitively).
fn filter(i: usize) -> String {
    filter_with(i, true)
}

/// `missing`: every tenth filter names no certificate.
fn filter_with(i: usize, missing: bool) -> String {
    let c = (i * 7919) % HOOK_CERTIFICATES;
    if missing && i % 10 == 9 {
        format!("{}/missing{i:06}", vault(c))
    } else if i.is_multiple_of(2) {
        format!("{}/{}", vault(c), secret(c))
    } else {
        format!("{}/{}", vault(c).to_uppercase(), secret(c).to_uppercase())
    }
}

/// Thousands of certificates and as many hooks' worth of filters as fit beside them.
fn many_hooks() -> Generated {
    many_hooks_with(true)
}

fn many_hooks_with(missing: bool) -> Generated {
    let head = format!(
        r#"{}]}},"akvsync":{{"hooks":["#,
        observing(HOOK_CERTIFICATES)
    );
    Generated::filled("hooks", Platform::Linux, head, "]}}", |h| {
        let filters: Vec<String> = (0..FILTERS_PER_HOOK)
            .map(|k| format!("\"{}\"", filter_with(h * FILTERS_PER_HOOK + k, missing)))
            .collect();
        format!(
            r#"{{"command":["/bin/true","{h}"],"certificates":[{}]}}"#,
            filters.join(",")
        )
    })
}

/// Output sets (at most 64), each listing as many certificates as fit in its share of the
/// budget, with a file per set so that every name is unique.
fn many_outputs() -> Generated {
    let mut text = observing(HOOK_CERTIFICATES);
    text.push_str(r#"]},"akvsync":{"outputs":["#);
    let per_set = (BUDGET - text.len()) / OUTPUT_SETS;
    let mut items = 0;
    for set in 0..OUTPUT_SETS {
        if set > 0 {
            text.push(',');
        }
        let head = format!(
            r#"{{"directory":"/srv/out","files":{{"cert":"{{vault}}-{{secret}}-{set}.crt"}},"certificates":["#
        );
        let mut body = head.clone();
        let tail = "]}";
        let filters = fill(&mut body, tail, per_set - 1, |k| {
            let c = (set * 7919 + k) % HOOK_CERTIFICATES;
            format!("\"{}/{}\"", vault(c), secret(c))
        });
        body.push_str(tail);
        items += filters;
        text.push_str(&body);
    }
    text.push_str("]}}");
    Generated {
        name: "outputs",
        platform: Platform::Linux,
        text,
        items,
    }
}

const OUTPUT_SETS: usize = 64;

const LIST_CERTIFICATES: usize = 8;

/// [`LIST_CERTIFICATES`] certificates after `head`, each `{"url":…,<fields>"<list>":[…]}`
/// with `item(c, i)` filling its share of the budget.
fn per_certificate_lists(
    name: &'static str,
    platform: Platform,
    head: &str,
    fields: &str,
    list: &str,
    item: impl Fn(usize, usize) -> String,
) -> Generated {
    let mut text = head.to_owned();
    let mut items = 0;
    for c in 0..LIST_CERTIFICATES {
        if c > 0 {
            text.push(',');
        }
        text.push_str(&format!(r#"{{"url":{},{fields}"{list}":["#, url(c)));
        let limit = BUDGET * (c + 1) / LIST_CERTIFICATES;
        let tail = "]}]}}";
        items += fill(&mut text, tail, limit, |i| item(c, i));
        text.push_str("]}");
    }
    text.push_str("]}}");
    Generated {
        name,
        platform,
        text,
        items,
    }
}

/// A few Windows certificates, each with thousands of `accounts`.
fn many_accounts() -> Generated {
    per_certificate_lists(
        "accounts",
        Platform::Windows,
        OBSERVED,
        r#""certificateStoreName":"MY","#,
        "accounts",
        |c, i| format!("\"NT SERVICE\\\\Account {c}-{i:06}\""),
    )
}

/// A few Linux certificates, each with thousands of `acls` entries.
fn many_acls() -> Generated {
    per_certificate_lists(
        "acls",
        Platform::Linux,
        r#"{"secretsManagementSettings":{"aclEnabled":true,"observedCertificates":["#,
        "",
        "acls",
        |c, i| {
            if i % 3 == 0 {
                format!(r#"{{"user":"u{c}-{i:06}","group":"g{c}-{i:06}"}}"#)
            } else {
                format!(r#"{{"user":"u{c}-{i:06}"}}"#)
            }
        },
    )
}

/// The host of `testing.connectTo` entry `i`: every 50th repeats entry `i - 25` in
/// upper case (a duplicate key, matched case-insensitively).
fn connect_host(i: usize) -> String {
    if i % 50 == 49 {
        connect_host(i - 25).to_uppercase()
    } else {
        format!("h{i:06}.vault.azure.net")
    }
}

/// Thousands of `akvsync.testing.connectTo` hosts, some given twice.
fn many_connect_to() -> Generated {
    let head = format!(r#"{OBSERVED}]}},"akvsync":{{"testing":{{"connectTo":{{"#);
    Generated::filled("connect-to", Platform::Linux, head, "}}}}", |i| {
        format!("\"{}\":\"127.0.0.1:{}\"", connect_host(i), 1 + i % 65535)
    })
}

/// One certificate object with tens of thousands of unknown fields.
fn many_unknown_fields() -> Generated {
    let head = format!(r#"{OBSERVED}{{"url":{},"#, url(0));
    Generated::filled("unknown-fields", Platform::Linux, head, "}]}}", |i| {
        format!("\"x{i}\":{i}")
    })
}

fn generated() -> Vec<Generated> {
    vec![
        many_certificates(),
        duplicate_certificates(),
        many_hooks(),
        many_outputs(),
        many_accounts(),
        many_acls(),
        many_connect_to(),
        many_unknown_fields(),
    ]
}

fn valid(doc: &Generated) -> Validated {
    assert!(
        doc.text.len() <= MAX_SETTINGS_BYTES && doc.text.len() > MAX_SETTINGS_BYTES - 4096,
        "{}: {} bytes",
        doc.name,
        doc.text.len()
    );
    match parse_bytes(doc.text.as_bytes(), doc.platform) {
        Ok(validated) => validated,
        Err(SettingsError::Invalid(diags)) => {
            panic!(
                "{}: {:?}",
                doc.name,
                &diags.errors[..diags.errors.len().min(5)]
            )
        }
        Err(e) => panic!("{}: {e}", doc.name),
    }
}

/// [`valid`], with no warning at all.
/// `doc` is valid without warnings and every item is read: `entries` checks certificate
/// `c`'s target and returns how many items it holds; they add up to the document's.
fn every_item_read(doc: &Generated, mut entries: impl FnMut(usize, &Target) -> usize) {
    let validated = valid_without_warnings(doc);
    let total: usize = validated
        .settings
        .certificates
        .iter()
        .enumerate()
        .map(|(c, certificate)| entries(c, &certificate.target))
        .sum();
    assert_eq!(total, doc.items);
}

fn valid_without_warnings(doc: &Generated) -> Validated {
    let validated = valid(doc);
    assert!(
        validated.warnings.is_empty(),
        "{}: {:?}",
        doc.name,
        &validated.warnings[..1]
    );
    validated
}

fn warning(path: &str, message: &str) -> Diagnostic {
    Diagnostic {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

#[test]
fn many_certificates_are_valid() {
    let doc = many_certificates();
    assert!(doc.items > 15_000, "{}", doc.items);
    let validated = valid_without_warnings(&doc);
    assert_eq!(validated.settings.certificates.len(), doc.items);
    let last = validated.settings.certificates.last().unwrap();
    assert_eq!(last.secret.secret_name, secret(doc.items - 1));
}

#[test]
fn every_duplicate_target_is_reported_against_the_first() {
    let doc = duplicate_certificates();
    assert!(doc.items > 15_000, "{}", doc.items);
    let Err(SettingsError::Invalid(diags)) = parse_bytes(doc.text.as_bytes(), doc.platform) else {
        panic!("duplicates accepted");
    };
    assert_eq!(diags.errors.len(), doc.items - 1);
    for (i, error) in diags.errors.iter().enumerate() {
        assert_eq!(
            error.path,
            format!("secretsManagementSettings.observedCertificates[{}]", i + 1)
        );
        assert_eq!(
            error.message,
            "duplicate target: myvault.vault.azure.net/web is already installed into \
             LocalMachine\\MY by secretsManagementSettings.observedCertificates[0]"
        );
    }
    assert!(diags.warnings.is_empty());
}

#[test]
fn hook_filters_are_matched_case_insensitively() {
    let doc = many_hooks();
    let filters = doc.items * FILTERS_PER_HOOK;
    assert!(filters > 5_000, "{filters}");
    // Exactly the filters that name no certificate are reported, in order; since issue 14
    // they are errors (such a hook would never run), so the document is refused.
    let expected: Vec<Diagnostic> = (0..filters)
        .filter(|i| i % 10 == 9)
        .map(|i| {
            warning(
                &format!("akvsync.hooks[{}].certificates", i / FILTERS_PER_HOOK),
                &format!(
                    "\"{}\" names no observed certificate",
                    filter(i).to_lowercase()
                ),
            )
        })
        .collect();
    match parse_bytes(doc.text.as_bytes(), doc.platform) {
        Err(SettingsError::Invalid(diags)) => {
            assert_eq!(diags.errors.len(), expected.len());
            assert_eq!(diags.errors, expected);
        }
        other => panic!(
            "{}: expected the unknown filters refused: {other:?}",
            doc.name
        ),
    }
    // The same document without the unknown filters validates, every filter kept.
    let known = many_hooks_with(false);
    let validated = valid_without_warnings(&known);
    assert_eq!(validated.settings.certificates.len(), HOOK_CERTIFICATES);
    let hooks = &validated.settings.akvsync.hooks;
    assert_eq!(hooks.len(), known.items);
    assert_eq!(
        hooks[1].certificates[1],
        filter(FILTERS_PER_HOOK + 1).to_lowercase()
    );
}

#[test]
fn many_output_filters_are_valid() {
    let doc = many_outputs();
    assert!(doc.items > 20_000, "{}", doc.items);
    let validated = valid_without_warnings(&doc);
    let outputs = &validated.settings.akvsync.outputs;
    assert_eq!(outputs.len(), OUTPUT_SETS);
    assert_eq!(
        outputs.iter().map(|o| o.certificates.len()).sum::<usize>(),
        doc.items
    );
}

#[test]
fn many_accounts_are_valid() {
    let doc = many_accounts();
    assert!(doc.items > 20_000, "{}", doc.items);
    every_item_read(&doc, |c, target| {
        let Target::WindowsStore(target) = target else {
            panic!("not a Windows target");
        };
        assert_eq!(
            target.accounts[0],
            format!("NT SERVICE\\Account {c}-000000")
        );
        target.accounts.len()
    });
}

// The shape of many_accounts_are_valid on purpose: one test per generated document and target kind.
#[test]
fn many_acls_are_valid() {
    let doc = many_acls();
    assert!(doc.items > 15_000, "{}", doc.items);
    every_item_read(&doc, |c, target| {
        let Target::LinuxDirectory(target) = target else {
            panic!("not a Linux target");
        };
        let first = &target.acls[0];
        assert_eq!(first.user.as_deref(), Some(format!("u{c}-000000").as_str()));
        assert_eq!(
            first.group.as_deref(),
            Some(format!("g{c}-000000").as_str())
        );
        assert_eq!(target.acls[1].group, None);
        target.acls.len()
    });
}

#[test]
fn many_connect_to_hosts_are_read_once_each() {
    let doc = many_connect_to();
    assert!(doc.items > 15_000, "{}", doc.items);
    let validated = valid(&doc);
    let connect_to = &validated.settings.akvsync.testing.connect_to;
    let hosts: std::collections::BTreeSet<String> = (0..doc.items)
        .map(|i| connect_host(i).to_lowercase())
        .collect();
    assert_eq!(connect_to.len(), hosts.len());
    // A host given twice: the later value wins, reported like any duplicate key.
    let first = 24;
    let again = 49;
    assert_eq!(connect_host(again), connect_host(first).to_uppercase());
    assert_eq!(
        connect_to[&connect_host(first)],
        format!("127.0.0.1:{}", 1 + again)
    );
    let again_path = format!("akvsync.testing.connectTo[\"{}\"]", connect_host(again));
    let expected_first = [
        warning(&again_path, "given 2 times; the last one is used"),
        warning(
            &again_path,
            &format!(
                "field name is spelled \"{}\" in the schema; accepted",
                connect_host(first)
            ),
        ),
        warning(
            &again_path,
            &format!(
                "testing override: connecting to \"127.0.0.1:{}\" for {}",
                1 + again,
                connect_host(first)
            ),
        ),
    ];
    let position = validated
        .warnings
        .iter()
        .position(|w| w.path == again_path)
        .unwrap();
    assert_eq!(validated.warnings[position..position + 3], expected_first);
    // One warning per distinct host, two more per duplicated one, and the empty list's.
    let duplicated = doc.items - hosts.len();
    assert_eq!(
        validated.warnings.len(),
        hosts.len() + 2 * duplicated + 1,
        "{:?}",
        &validated.warnings[..4]
    );
}

#[test]
fn many_unknown_fields_are_each_reported() {
    let doc = many_unknown_fields();
    assert!(doc.items > 50_000, "{}", doc.items);
    let validated = valid(&doc);
    assert_eq!(validated.settings.certificates.len(), 1);
    assert_eq!(validated.warnings.len(), doc.items);
    assert_eq!(
        validated.warnings[doc.items - 1],
        warning(
            &format!(
                "secretsManagementSettings.observedCertificates[0].x{}",
                doc.items - 1
            ),
            "unknown field; ignored"
        )
    );
}

/// Writes every generated document to `$AKVSYNC_SETTINGS_COST_DIR` as `<kind>.json`, with
/// `<kind>.platform` beside it, for `scripts/settings-cost.sh`.
#[test]
#[ignore = "writes files for scripts/settings-cost.sh"]
fn write_generated_files() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("AKVSYNC_SETTINGS_COST_DIR").expect("AKVSYNC_SETTINGS_COST_DIR"),
    );
    std::fs::create_dir_all(&dir).unwrap();
    for doc in generated() {
        std::fs::write(dir.join(format!("{}.json", doc.name)), &doc.text).unwrap();
        let platform = match doc.platform {
            Platform::Linux => "linux",
            Platform::Windows => "windows",
        };
        std::fs::write(dir.join(format!("{}.platform", doc.name)), platform).unwrap();
        println!(
            "{}: {} bytes, {} items, {platform}",
            doc.name,
            doc.text.len(),
            doc.items
        );
    }
}
