//! The settings corpus: every file under `tests/settings/valid` must validate and print
//! exactly its `.expected` report; every file under `tests/settings/invalid` must be
//! rejected with exactly the error lines of its `.errors` file. The platform is the
//! file name's prefix (`windows-…`, `linux-…`).
//!
//! To add a case, add the `.json` file and run with `UPDATE_EXPECT=1` to write its
//! expectation, then read the written file: it is the assertion.

use std::fs;
use std::path::Path;

use akvsync::settings::{self, Platform, SettingsError, Validated, render};

const MIN_VALID: usize = 15;
const MIN_INVALID: usize = 30;

fn platform_of(path: &Path) -> Platform {
    let name = path.file_name().unwrap().to_string_lossy();
    if name.starts_with("windows-") {
        Platform::Windows
    } else if name.starts_with("linux-") {
        Platform::Linux
    } else {
        panic!("{name}: corpus file names start with windows- or linux-")
    }
}

/// Compares `actual` with the expectation file, or rewrites it under UPDATE_EXPECT=1.
fn check(expect_file: &Path, actual: &str) -> Result<(), String> {
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        fs::write(expect_file, actual).unwrap();
        return Ok(());
    }
    let expected = fs::read_to_string(expect_file).map_err(|e| {
        format!(
            "{}: {e} (run with UPDATE_EXPECT=1 to create it)",
            expect_file.display()
        )
    })?;
    if expected == actual {
        Ok(())
    } else {
        Err(format!(
            "{}:\n--- expected\n{expected}--- actual\n{actual}",
            expect_file.display()
        ))
    }
}

/// One half of the corpus: its directory, how many files it has at least, the extension
/// of the expectation files, and what a file validates to in their form.
struct Corpus {
    kind: &'static str,
    min_files: usize,
    expect: &'static str,
    render: fn(Result<Validated, SettingsError>) -> String,
}

/// Every file of `corpus` renders to exactly its expectation file.
fn check_corpus(corpus: Corpus) {
    let files = crate::common::settings_corpus(corpus.kind);
    assert!(
        files.len() >= corpus.min_files,
        "only {} {} settings files",
        files.len(),
        corpus.kind
    );
    let mut failures = Vec::new();
    for file in &files {
        let actual = (corpus.render)(settings::load_file(file, platform_of(file)));
        if let Err(failure) = check(&file.with_extension(corpus.expect), &actual) {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_corpus_validates_to_its_expected_report() {
    check_corpus(Corpus {
        kind: "valid",
        min_files: MIN_VALID,
        expect: "expected",
        render: |result| match result {
            Ok(validated) => render::report(&validated),
            Err(SettingsError::Invalid(diags)) => {
                format!("INVALID\n{}", render::errors(&diags.errors))
            }
            Err(other) => format!("ERROR {other}\n"),
        },
    });
}

#[test]
fn invalid_corpus_gives_exactly_its_errors() {
    check_corpus(Corpus {
        kind: "invalid",
        min_files: MIN_INVALID,
        expect: "errors",
        render: |result| match result {
            Ok(validated) => format!("VALID\n{}", render::report(&validated)),
            Err(SettingsError::Invalid(diags)) => diags
                .errors
                .iter()
                .map(|e| format!("{e}\n"))
                .collect::<String>(),
            Err(other) => format!("ERROR {other}\n"),
        },
    });
}

/// The same valid file means the same certificates whichever form carries it.
#[test]
fn runtime_and_public_forms_agree() {
    let dir = crate::common::crate_path("tests/settings/valid");
    let public = fs::read_to_string(dir.join("windows-doc-powershell.json")).unwrap();
    let runtime = format!(
        r#"{{"runtimeSettings":[{{"handlerSettings":{{"protectedSettingsCertThumbprint":null,"protectedSettings":null,"publicSettings":{public}}}}}]}}"#
    );
    let a = settings::parse_bytes(public.as_bytes(), Platform::Windows).unwrap();
    let b = settings::parse_bytes(runtime.as_bytes(), Platform::Windows).unwrap();
    assert_eq!(a.settings.certificates, b.settings.certificates);
    assert_eq!(a.settings.identity, b.settings.identity);
    assert_eq!(a.warnings, b.warnings);
}
