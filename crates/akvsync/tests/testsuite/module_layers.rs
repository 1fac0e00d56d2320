//! "No module imports a module above it" (issue 18), checked: in each crate of the workspace
//! (the agent, the emulator, the PKCS#12 crate), the graph of top-level modules built from
//! `crate::<module>` paths in production code has no cycle. A cycle means two modules each
//! reach into the other; the test names it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level module a file belongs to (`src/handler/lifecycle.rs` → `handler`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    crate::common::rust_sources(src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = module_of(src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let production = &text[..text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len())];
        for line in production
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
        {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let braced = rest.starts_with('{');
                let targets: Vec<String> = if braced {
                    let inner = rest[1..].split('}').next().unwrap_or("");
                    inner
                        .split(',')
                        .map(|p| p.trim().split("::").next().unwrap_or("").to_owned())
                        .collect()
                } else {
                    vec![name]
                };
                for target in targets {
                    if target != from && modules.contains(&target) {
                        edges.entry(from.clone()).or_default().insert(target);
                    }
                }
            }
        }
    }
    edges
}

/// One cycle of the graph, if any (depth-first search).
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(found) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(found);
        }
    }
    None
}

#[test]
fn no_module_imports_a_module_above_it() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for name in ["akvsync", "kvemu", "pkcs12"] {
        let src = crates.join(name).join("src");
        let edges = graph(&src);
        assert!(
            !edges.is_empty(),
            "{name}: no imports found; the scan is broken"
        );
        if let Some(found) = cycle(&edges) {
            panic!("{name}: modules import each other: {}", found.join(" -> "));
        }
    }
}

#[test]
fn the_scan_finds_a_cycle_when_there_is_one() {
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    edges.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    edges.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(cycle(&edges).unwrap(), vec!["a", "b", "c", "a"]);
    edges.get_mut("c").unwrap().clear();
    assert!(cycle(&edges).is_none());
}
