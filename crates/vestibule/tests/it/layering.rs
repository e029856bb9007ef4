//! The library's layering rule (docs/ARCHITECTURE.md, "Layering"), checked on the source.
//!
//! Every top-level module of `crates/vestibule/src` has a floor; a module may name (`crate::x`,
//! `use crate::{x, …}`, `$crate::x`) only modules on a lower floor. That rules out upward imports
//! and, with them, every cycle between top-level modules. Test code (after the first
//! `#[cfg(test)]` of a file) and comments are not imports and are not read.
//!
//! `PENDING` lists upward imports tolerated for a while, each with its reason (none today: a
//! lower module that needs a higher one names a trait the higher one implements); the test fails
//! on any upward import not listed *and* on a listed one that no longer exists, so the list can
//! only shrink.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Floors, lowest first. A module not listed here fails the test: a new module takes a floor.
const FLOORS: &[&[&str]] = &[
    // Ground floor: no Vestibule module below them.
    &[
        "error",
        "problem",
        "settings",
        "token",
        "origin",
        "audit",
        "client_ip",
        "cookie_header",
        "db",
    ],
    &["session"],
    &["origins", "metrics"],
    &["csrf", "cors", "ratelimit", "email"],
    &["auth"],
    &["proxy", "doctor"],
    &["config"],
    &["server"],
    // Hidden entry points for cargo-fuzz and the property tests: may reach anything.
    &["fuzzing"],
];

/// Upward imports still to remove, each `(from, to, why it is still there)`. Empty.
const PENDING: &[(&str, &str, &str)] = &[];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

/// The top-level module names a source text refers to through `crate::`.
fn referenced_modules(source: &str) -> BTreeSet<String> {
    let code: String = source
        .split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        // `$crate::` counts; `foo_crate::` or `mycrate::` does not.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            found.extend(group_heads(group));
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::Error` and the like are the crate root's re-exports (lib.rs), not modules.
            if name.starts_with(|c: char| c.is_ascii_lowercase()) {
                found.insert(name);
            }
        }
    }
    found
}

/// The first segment of each path in `a, b::c, d::{e, f}}` (up to the matching brace).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut at_start = true;
    let mut current = String::new();
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                if !current.is_empty() {
                    heads.push(std::mem::take(&mut current));
                }
                at_start = true;
            }
            c if at_start && (c.is_ascii_alphanumeric() || c == '_') => current.push(c),
            _ if at_start && !current.is_empty() => {
                heads.push(std::mem::take(&mut current));
                at_start = false;
            }
            _ => {}
        }
    }
    if !current.is_empty() {
        heads.push(current);
    }
    heads.retain(|h| h.starts_with(|c: char| c.is_ascii_lowercase()));
    heads
}

/// `from → {to}` for every top-level module of the library.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).expect("under src");
            let first = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .expect("utf-8 name");
            let module = first.trim_end_matches(".rs").to_owned();
            if module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            let targets: Vec<String> = referenced_modules(&text)
                .into_iter()
                .filter(|t| *t != module && t != "self" && t != "super")
                .collect();
            edges.entry(module).or_default().extend(targets);
        }
    }
    edges
}

#[test]
fn the_parser_reads_paths_groups_and_macros_but_not_comments_or_tests() {
    let text = "use crate::a::X;\nuse crate::{b, c::{D, E}, d::F, Error};\n\
                // crate::commented\nfn f() { $crate::g::h(); other_crate::i(); crate::j(); }\n\
                #[cfg(test)]\nmod tests { use crate::k; }";
    let got: Vec<String> = referenced_modules(text).into_iter().collect();
    assert_eq!(got, ["a", "b", "c", "d", "g", "j"]);
}

#[test]
fn no_module_imports_a_module_on_a_higher_floor() {
    let edges = imports();
    let mut problems = Vec::new();
    let mut upward = BTreeSet::new();
    for (from, targets) in &edges {
        let Some(own) = floor_of(from) else {
            problems.push(format!("module `{from}` has no floor: add it to FLOORS"));
            continue;
        };
        for to in targets {
            let Some(theirs) = floor_of(to) else {
                problems.push(format!("`{from}` names `crate::{to}`, which has no floor"));
                continue;
            };
            if theirs >= own {
                upward.insert((from.as_str(), to.as_str()));
                if !PENDING.iter().any(|(f, t, _)| f == from && t == to) {
                    problems.push(format!(
                        "`{from}` (floor {own}) imports `{to}` (floor {theirs}): only lower floors may be imported"
                    ));
                }
            }
        }
    }
    for (from, to, _) in PENDING {
        if !upward.contains(&(*from, *to)) {
            problems.push(format!(
                "`{from}` → `{to}` is gone: remove it from PENDING so it cannot come back"
            ));
        }
    }
    assert!(problems.is_empty(), "layering:\n{}", problems.join("\n"));
}
