#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code: a failed unwrap is a failed test
//! The dependency rule of `src/lib.rs`, checked: every module of the crate
//! imports only from modules below it, so the modules form no cycle. Unit
//! test code (`tests.rs`, `testing.rs`, `#[cfg(test)] mod tests`) may reach
//! anywhere to build fixtures and is not checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The modules, lowest first: the order `src/lib.rs` documents. Modules on
/// one line are peers that do not import each other.
const LAYERS: &[&[&str]] = &[
    &["proto", "duration", "glob", "json"],
    &["request"],
    &["lists"],
    &["expr"],
    &["policy"],
    &["engine"],
    &["cache"],
    &["history"],
    &["mapping"],
    &["telemetry"],
    &["trust"],
    &["ssf"],
    &["config"],
    &["service"],
    &["server"],
    &["suite"],
    &["replay"],
    &["playground"],
    &["cli"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code outside unit tests and comments.
fn library_code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names through `crate::`,
/// including those inside `use crate::{a::X, b}` groups.
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find(';').unwrap_or(group.len())];
            // Names at the group's top level: after `{` or a `,` at depth 0.
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        out.insert(ident(&group[j..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    out
}

#[test]
fn every_module_imports_only_from_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let name = relative.file_stem().unwrap().to_str().unwrap();
        if matches!(name, "tests" | "testing" | "lib" | "main") {
            continue;
        }
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap()
            .trim_end_matches(".rs");
        let Some(own) = rank(top) else {
            violations.push(format!(
                "{}: module `{top}` is in no layer",
                relative.display()
            ));
            continue;
        };
        let code = library_code(&std::fs::read_to_string(file).unwrap());
        for used in crate_references(&code) {
            if used == top {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                Some(_) => violations.push(format!(
                    "{}: `{top}` imports `crate::{used}`, which is not below it",
                    relative.display()
                )),
                // Items of the crate root (re-exports) are not modules.
                None => violations.push(format!(
                    "{}: `{top}` names `crate::{used}`; import it from its module",
                    relative.display()
                )),
            }
        }
        checked += 1;
    }
    assert!(
        checked > 50,
        "only {checked} files checked: is `src` where it was?"
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_check_sees_grouped_and_nested_imports() {
    let refs = crate_references(
        "use crate::{engine::{Decision, Outcome}, policy};\nlet x = crate::cache::decide(y);",
    );
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    assert_eq!(refs, ["cache", "engine", "policy"]);
}

#[test]
fn every_module_of_lib_rs_has_a_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| {
            let l = l
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            l.strip_prefix("mod ")?.strip_suffix(';')
        })
        .collect();
    assert!(modules.len() > 10, "{modules:?}");
    for m in modules {
        assert!(rank(m).is_some(), "`{m}` is in no layer of the rule");
    }
}

/// The API is curated: `lib.rs` makes public only the modules a user of the
/// library is meant to reach (the generated types, the binary's commands,
/// the history settings and the doc-hidden internals for benches and tests);
/// everything else is exported item by item with `pub use`.
#[test]
fn only_the_curated_modules_are_public() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let public: Vec<&str> = lib
        .lines()
        .filter_map(|l| {
            let name = l.strip_prefix("pub mod ")?;
            Some(name.trim_end_matches([';', '{', ' ']))
        })
        .collect();
    assert_eq!(public, ["cli", "history", "internal", "proto"]);
}
