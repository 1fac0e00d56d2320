//! The settings corpus: every file under `tests/settings/valid` must validate and print
//! exactly its `.expected` report; every file under `tests/settings/invalid` must be
//! rejected with exactly the error lines of its `.errors` file. The platform is the
//! file name's prefix (`windows-…`, `linux-…`).
//!
//! To add a case, add the `.json` file and run with `UPDATE_EXPECT=1` to write its
//! expectation, then read the written file: it is the assertion.

use std::fs;
use std::path::{Path, PathBuf};

use akvsync::settings::{self, Platform, SettingsError, render};

const MIN_VALID: usize = 15;
const MIN_INVALID: usize = 30;

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/settings")
        .join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
}

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

#[test]
fn valid_corpus_validates_to_its_expected_report() {
    let files = corpus("valid");
    assert!(
        files.len() >= MIN_VALID,
        "only {} valid settings files",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let result = settings::load_file(file, platform_of(file));
        let actual = match result {
            Ok(validated) => render::report(&validated),
            Err(SettingsError::Invalid(diags)) => {
                format!("INVALID\n{}", render::errors(&diags.errors))
            }
            Err(other) => format!("ERROR {other}\n"),
        };
        if let Err(failure) = check(&file.with_extension("expected"), &actual) {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_corpus_gives_exactly_its_errors() {
    let files = corpus("invalid");
    assert!(
        files.len() >= MIN_INVALID,
        "only {} invalid settings files",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let actual = match settings::load_file(file, platform_of(file)) {
            Ok(validated) => format!("VALID\n{}", render::report(&validated)),
            Err(SettingsError::Invalid(diags)) => diags
                .errors
                .iter()
                .map(|e| format!("{e}\n"))
                .collect::<String>(),
            Err(other) => format!("ERROR {other}\n"),
        };
        if let Err(failure) = check(&file.with_extension("errors"), &actual) {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The same valid file means the same certificates whichever form carries it.
#[test]
fn runtime_and_public_forms_agree() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/settings/valid");
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
