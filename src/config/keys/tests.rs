//! [`KEYS`] against the parser: every documented key is accepted with its
//! example value, and every table documents exactly the keys the parser
//! accepts in it.

use std::collections::BTreeSet;
use std::path::Path;

use super::*;
use crate::config::parse_file;

/// What the parser says about `doc`, one line per problem.
fn problems(doc: &toml::Table) -> Vec<String> {
    let text = toml::to_string(doc).unwrap();
    let mut found = Vec::new();
    parse_file(Path::new("stepup.toml"), &text, &mut found);
    found
        .iter()
        .map(|p| format!("{p}\n--- in:\n{text}"))
        .collect()
}

/// A document with `value` at the dotted `path` (`[]`: the first table of
/// an array of tables; `<name>`: a key named `example`).
fn document(path: &str, value: toml::Value) -> toml::Table {
    let mut doc = toml::Table::new();
    let segments: Vec<&str> = path.split('.').collect();
    insert(&mut doc, &segments, value);
    doc
}

fn insert(table: &mut toml::Table, segments: &[&str], value: toml::Value) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    let (name, array) = match first.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (*first, false),
    };
    let name = if name.starts_with('<') {
        "example"
    } else {
        name
    };
    if rest.is_empty() {
        table.insert(name.to_owned(), value);
        return;
    }
    let inner = if array {
        let items = table
            .entry(name)
            .or_insert_with(|| toml::Value::Array(vec![toml::Value::Table(toml::Table::new())]));
        &mut items.as_array_mut().unwrap()[0]
    } else {
        table
            .entry(name)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    };
    insert(inner.as_table_mut().unwrap(), rest, value);
}

/// The documented keys directly in the table at `path` (`""`: the top
/// level), by name.
fn children(path: &str) -> BTreeSet<&'static str> {
    let prefix = match KEYS.iter().find(|k| k.key == path).map(|k| k.kind) {
        _ if path.is_empty() => String::new(),
        Some(KeyKind::Tables) => format!("{path}[]."),
        Some(KeyKind::Like(other)) => return children(other),
        _ => format!("{path}."),
    };
    KEYS.iter()
        .filter_map(|k| k.key.strip_prefix(prefix.as_str()))
        .filter(|rest| !rest.contains('.'))
        .collect()
}

/// The keys the parser accepts in the table at `path`: those its
/// unknown-key error lists when given one.
fn accepted(path: &str) -> BTreeSet<String> {
    let probe = if path.is_empty() {
        "__probe__".to_owned()
    } else {
        let array = KEYS
            .iter()
            .any(|k| k.key == path && k.kind == KeyKind::Tables);
        format!("{path}{}.__probe__", if array { "[]" } else { "" })
    };
    let found = problems(&document(&probe, toml::Value::Integer(0)));
    let message = found
        .iter()
        .find(|p| p.contains("unknown field `__probe__`"))
        .unwrap_or_else(|| panic!("`{path}` takes any key, or is not a table: {found:?}"));
    let first_line = message.lines().next().unwrap_or_default();
    // serde: "expected one of `a`, `b`", "expected `a` or `b`", "expected
    // `a`", "there are no fields".
    let list = first_line.split_once("expected").map_or("", |(_, l)| l);
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_documented_key_is_accepted_with_its_example() {
    for key in KEYS {
        let KeyKind::Value(_) = key.kind else {
            continue;
        };
        let value: toml::Table = toml::from_str(&format!("v = {}", key.example))
            .unwrap_or_else(|e| panic!("`{}`: the example is not TOML: {e}", key.key));
        let found: Vec<String> = problems(&document(key.key, value["v"].clone()))
            .into_iter()
            // A required sibling (`path` of a route, `issuer` of an
            // issuer) is not this key's problem.
            .filter(|p| !p.contains("missing field"))
            .collect();
        assert!(
            found.is_empty(),
            "`{}` as documented in src/config/keys.rs is refused by the parser: {found:#?}",
            key.key
        );
    }
}

#[test]
fn every_table_documents_exactly_the_keys_the_parser_accepts() {
    let tables = KEYS
        .iter()
        .filter(|k| !matches!(k.kind, KeyKind::Value(_)))
        .map(|k| k.key);
    for path in std::iter::once("").chain(tables) {
        let documented = children(path);
        if documented.iter().any(|k| k.starts_with('<')) {
            // A table of user-named keys: any key is accepted.
            continue;
        }
        let documented: BTreeSet<String> = documented
            .into_iter()
            .map(|k| k.trim_end_matches("[]").to_owned())
            .collect();
        let accepted = accepted(path);
        let table = if path.is_empty() {
            "the top level"
        } else {
            path
        };
        assert_eq!(
            accepted.difference(&documented).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "keys of {table} the parser accepts but src/config/keys.rs does not document"
        );
        assert_eq!(
            documented.difference(&accepted).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "keys of {table} src/config/keys.rs documents but the parser does not accept"
        );
    }
}

#[test]
fn keys_are_unique_and_inside_documented_tables() {
    let mut seen = BTreeSet::new();
    for key in KEYS {
        assert!(seen.insert(key.key), "`{}` is documented twice", key.key);
        if let Some((parent, _)) = key.key.rsplit_once('.') {
            let parent = parent.trim_end_matches("[]");
            assert!(
                seen.contains(parent),
                "`{}` comes before its table `{parent}`, or the table is not documented",
                key.key
            );
        }
        let is_table = !matches!(key.kind, KeyKind::Value(_));
        assert_eq!(
            key.example.is_empty(),
            is_table,
            "`{}`: values need an example, tables none",
            key.key
        );
    }
}
