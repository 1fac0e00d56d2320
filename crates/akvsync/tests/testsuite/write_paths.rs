//! The write-path invariant of issue 16 (ARCHITECTURE.md): outside `src/safefs/`, no code
//! of the agent opens a file for writing, creates, renames or removes a file system entry,
//! or sets permissions. Every such call goes through `safefs`, which refuses directories
//! another account controls and never follows a symlink it did not expect. This test reads
//! every source file and fails, naming file and line, when one bypasses the module.

use std::path::Path;

/// Calls that write to the file system. `read`-only helpers (`fs::read`, `File::open`,
/// `read_dir`, `metadata`) are not writes.
const WRITE_CALLS: &[&str] = &[
    "OpenOptions",
    "File::create",
    "fs::write(",
    "fs::rename(",
    "fs::copy(",
    "fs::hard_link(",
    "create_dir(",
    "create_dir_all(",
    "DirBuilder",
    "remove_file(",
    "remove_dir(",
    "remove_dir_all(",
    "set_permissions(",
    "symlink(",
    "symlinkat(",
    "renameat(",
    "unlinkat(",
    "mkdirat(",
    "openat(",
    "fchmod(",
    "fchown(",
    "chown(",
];

/// The lines of `text` that are not in a `#[cfg(test)]` module (by convention the last
/// item of a file) and not comments.
fn production_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end]
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| {
            let trimmed = line.trim_start();
            !trimmed.starts_with("//")
        })
}

/// Whether `line` calls `call` as a free function or path (`fs::remove_file(`,
/// `remove_file(`), not as a method of something else (`dir.remove_file(`, which is
/// safefs's own); `set_permissions` is caught as a method too.
fn calls(line: &str, call: &str) -> bool {
    line.match_indices(call).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        match before {
            None => true,
            Some('.') => call == "set_permissions(",
            Some(c) => !(c.is_alphanumeric() || c == '_'),
        }
    })
}

fn bypasses(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    crate::common::rust_sources(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        if relative.starts_with("safefs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in production_lines(&text) {
            for call in WRITE_CALLS {
                if calls(line, call) {
                    found.push(format!(
                        "src/{}:{number}: {call} ({})",
                        relative.display(),
                        line.trim()
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn every_write_goes_through_safefs() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = bypasses(&src);
    assert!(
        found.is_empty(),
        "writes that bypass src/safefs (use safefs::Dir instead):\n{}",
        found.join("\n")
    );
    // The scan itself is not vacuous: safefs does contain these calls.
    let safefs = std::fs::read_to_string(src.join("safefs/unix.rs")).unwrap();
    assert!(safefs.contains("renameat(") && safefs.contains("openat("));
}

#[test]
fn the_scan_catches_a_bypass() {
    let dir = std::env::temp_dir().join(format!("akvsync-write-paths-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("safefs")).unwrap();
    std::fs::write(
        dir.join("safefs/mod.rs"),
        "fn f() { std::fs::rename(a, b); }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("bad.rs"),
        "//! doc\n// std::fs::write(x) in a comment\nfn f() {\n    std::fs::write(p, b);\n}\n#[cfg(test)]\nmod tests {\n    fn g() { std::fs::remove_file(p); }\n}\n",
    )
    .unwrap();
    let found = bypasses(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(calls("file.set_permissions(p)", "set_permissions("));
    assert!(calls("symlink(a, b)", "symlink("));
    assert!(!calls("dir.replace_symlink(a, b)", "symlink("));
    assert!(!calls("dir.remove_file(a)", "remove_file("));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("src/bad.rs:4: fs::write("),
        "{found:?}"
    );
}
