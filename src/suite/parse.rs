//! Reading test suites (`*_test.yaml`) with positions kept, so that every
//! problem is reported with file, line, caret and a did-you-mean, checked
//! against the policy set under test (rule, signal and level names).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::Value;

use super::{Case, Expect, ExpectedRequirement, Prior, ScoreRange, Suite};
use crate::duration::parse_duration;
use crate::engine::Outcome;
use crate::policy::PolicySet;
use crate::policy::diag::{Diagnostic, Location, Report, SourceFile, did_you_mean};
use crate::proto::v1::DecideRequest;
use crate::request::validate as convert;

type Node<'i> = MarkedYaml<'i>;

/// The names a suite may refer to: the policy set's rules, signals and
/// levels.
pub struct Names<'a> {
    rules: Vec<&'a str>,
    signals: Vec<&'a str>,
    levels: Vec<&'a str>,
}

impl<'a> Names<'a> {
    /// The names `set` defines.
    pub fn of(set: &'a PolicySet) -> Self {
        Self {
            rules: set.rules.iter().map(|r| &*r.id).collect(),
            signals: set.signals.iter().map(|s| &*s.id).collect(),
            levels: set.levels.iter().map(|l| &*l.name).collect(),
        }
    }
}

/// Lists the suite files under `dir` (`*_test.yaml`, `*_test.yml`),
/// sorted, skipping hidden entries as the policy loader does.
pub fn suite_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(dir, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if std::fs::metadata(&path)?.is_dir() {
            walk(&path, out)?;
        } else if name.ends_with("_test.yaml") || name.ends_with("_test.yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads the suites of one file; problems go to `report`.
pub fn read_file(file: &SourceFile, names: &Names<'_>, report: &mut Report) -> Vec<Suite> {
    let docs = match MarkedYaml::load_from_str(&file.text) {
        Ok(docs) => docs,
        Err(e) => {
            let m = e.marker();
            report.push(Diagnostic::error(format!("invalid YAML: {}", e.info())).at(
                file,
                Location {
                    line: m.line(),
                    column: m.col() + 1,
                    len: 1,
                },
            ));
            return Vec::new();
        }
    };
    let mut reader = Reader {
        file,
        names,
        report,
    };
    let mut suites = Vec::new();
    for doc in &docs {
        if matches!(doc.data, YamlData::Value(Scalar::Null)) {
            continue;
        }
        if let Some(s) = reader.suite(doc) {
            suites.push(s);
        }
    }
    if suites.is_empty() && !reader.report.has_errors() {
        reader.report.push(
            Diagnostic::warning("the file holds no test suite")
                .in_file(&file.path)
                .help("a suite is a mapping with `name` and `cases`"),
        );
    }
    suites
}

/// A request value from a suite, with where each part was written: the
/// merge of fixtures and overrides keeps positions, so that a bad field is
/// reported where it was written.
#[derive(Clone, Debug)]
pub(super) struct Tree {
    kind: TreeKind,
    at: Location,
}

#[derive(Clone, Debug)]
enum TreeKind {
    Map(Vec<Entry>),
    Seq(Vec<Tree>),
    Scalar(Value),
}

#[derive(Clone, Debug)]
struct Entry {
    key: String,
    key_at: Location,
    value: Tree,
}

impl Tree {
    fn to_json(&self) -> Value {
        match &self.kind {
            TreeKind::Scalar(v) => v.clone(),
            TreeKind::Seq(items) => Value::Array(items.iter().map(Tree::to_json).collect()),
            TreeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.kind {
            TreeKind::Map(entries) => entries
                .iter()
                .find(|e| e.key == key || field_key(&e.key) == field_key(key)),
            _ => None,
        }
    }
}

/// A proto field name in one spelling: proto3 JSON accepts `auth_time` and
/// `authTime` alike.
fn field_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Deep-merges `over` onto `base`: mappings merge key by key, anything else
/// is replaced. Keys of request messages match in either spelling
/// (`auth_time`, `authTime`); keys of attribute maps match exactly.
fn merge(base: Tree, over: Tree, free: bool) -> Tree {
    match (base.kind, over.kind) {
        (TreeKind::Map(mut entries), TreeKind::Map(overrides)) => {
            for o in overrides {
                let found = entries.iter_mut().find(|e| {
                    if free {
                        e.key == o.key
                    } else {
                        field_key(&e.key) == field_key(&o.key)
                    }
                });
                match found {
                    Some(e) => {
                        let placeholder = Tree {
                            kind: TreeKind::Scalar(Value::Null),
                            at: Location::default(),
                        };
                        let old = std::mem::replace(&mut e.value, placeholder);
                        let free = free || o.key == "attributes";
                        e.value = merge(old, o.value, free);
                        e.key = o.key;
                        e.key_at = o.key_at;
                    }
                    None => entries.push(o),
                }
            }
            Tree {
                kind: TreeKind::Map(entries),
                at: over.at,
            }
        }
        (_, kind) => Tree { kind, at: over.at },
    }
}

struct Reader<'a> {
    file: &'a SourceFile,
    names: &'a Names<'a>,
    report: &'a mut Report,
}

fn location(node: &Node<'_>) -> Location {
    let start = node.span.start;
    let len = if node.span.end.line() == start.line() {
        node.span.end.col().saturating_sub(start.col())
    } else {
        1
    };
    Location {
        line: start.line(),
        column: start.col() + 1,
        len: len.max(1),
    }
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a case's `fixture` and `request` read as, before conversion.
struct RequestParts {
    tree: Option<Tree>,
    /// Where to report problems of the request as a whole.
    at: Location,
}

/// Suite-wide context for its cases.
struct SuiteContext {
    name: String,
    now: Option<DateTime<Utc>>,
    fixtures: Vec<(String, Tree)>,
}

impl Reader<'_> {
    fn error_at(&self, at: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(message).at(self.file, at)
    }

    fn error(&self, node: &Node<'_>, message: impl Into<String>) -> Diagnostic {
        self.error_at(location(node), message)
    }

    fn push(&mut self, d: Diagnostic) {
        self.report.push(d);
    }

    /// The entries of a mapping, checking every key against `allowed`.
    fn mapping<'n, 'i>(
        &mut self,
        node: &'n Node<'i>,
        what: &str,
        allowed: &[&str],
    ) -> Option<Vec<(&'n str, &'n Node<'i>)>> {
        let YamlData::Mapping(map) = &node.data else {
            let d = self.error(node, format!("{what} must be a mapping"));
            self.push(d);
            return None;
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let YamlData::Value(Scalar::String(key)) = &k.data else {
                let d = self.error(k, format!("keys of {what} must be strings"));
                self.push(d);
                continue;
            };
            if !allowed.contains(&key.as_ref()) {
                let d = self
                    .error(k, format!("unknown key `{key}` in {what}"))
                    .maybe_help(did_you_mean(key, allowed.iter().copied()).or_else(|| {
                        Some(format!("the keys of {what} are {}", quoted_list(allowed)))
                    }));
                self.push(d);
                continue;
            }
            out.push((key.as_ref(), v));
        }
        Some(out)
    }

    fn string(&mut self, node: &Node<'_>, what: &str) -> Option<String> {
        match &node.data {
            YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
            YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
            _ => {
                let d = self.error(node, format!("{what} must be a string"));
                self.push(d);
                None
            }
        }
    }

    /// A list of strings, each with its position.
    fn string_list(&mut self, node: &Node<'_>, what: &str) -> Option<Vec<(String, Location)>> {
        let YamlData::Sequence(items) = &node.data else {
            let d = self
                .error(node, format!("{what} must be a list of strings"))
                .help(format!("write {what} as `[a, b]`, or `[]` for none"));
            self.push(d);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match self.string(item, &format!("each entry of {what}")) {
                Some(s) => out.push((s, location(item))),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn now(&mut self, node: &Node<'_>) -> Option<DateTime<Utc>> {
        let text = self.string(node, "`now`")?;
        match DateTime::parse_from_rfc3339(&text) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(e) => {
                let d = self
                    .error(node, format!("invalid `now` `{text}`: {e}"))
                    .help("write an RFC 3339 time such as `2026-11-27T10:00:00Z`");
                self.push(d);
                None
            }
        }
    }

    /// A positioned copy of a YAML value (a request or fixture part).
    fn tree(&mut self, node: &Node<'_>) -> Option<Tree> {
        let at = location(node);
        let kind = match &node.data {
            YamlData::Value(s) => TreeKind::Scalar(match s {
                Scalar::Null => Value::Null,
                Scalar::Boolean(b) => Value::Bool(*b),
                Scalar::Integer(i) => Value::from(*i),
                Scalar::FloatingPoint(f) => match serde_json::Number::from_f64(f.0) {
                    Some(n) => Value::Number(n),
                    None => {
                        let d = self.error(node, "not a finite number");
                        self.push(d);
                        return None;
                    }
                },
                Scalar::String(s) => Value::String(s.to_string()),
            }),
            YamlData::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items {
                    match self.tree(item) {
                        Some(t) => out.push(t),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                TreeKind::Seq(out)
            }
            YamlData::Mapping(map) => {
                let mut out = Vec::with_capacity(map.len());
                let mut ok = true;
                for (k, v) in map {
                    let key = match &k.data {
                        YamlData::Value(Scalar::String(s)) => s.to_string(),
                        _ => {
                            let d = self.error(k, "keys of a request must be strings");
                            self.push(d);
                            ok = false;
                            continue;
                        }
                    };
                    match self.tree(v) {
                        Some(value) => out.push(Entry {
                            key,
                            key_at: location(k),
                            value,
                        }),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                TreeKind::Map(out)
            }
            YamlData::Tagged(_, inner) => return self.tree(inner),
            YamlData::Alias(_) => {
                let d = self
                    .error(node, "YAML aliases are not supported in test suites")
                    .help("share request fields between cases with `fixtures`");
                self.push(d);
                return None;
            }
            YamlData::Representation(..) | YamlData::BadValue => {
                let d = self.error(node, "unreadable value");
                self.push(d);
                return None;
            }
        };
        Some(Tree { kind, at })
    }

    fn suite(&mut self, doc: &Node<'_>) -> Option<Suite> {
        const KEYS: &[&str] = &["name", "description", "now", "fixtures", "cases"];
        let entries = self.mapping(doc, "a test suite", KEYS)?;
        let get = |k: &str| entries.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let name = match get("name") {
            Some(n) => self.string(n, "`name`"),
            None => {
                let d = self
                    .error(doc, "test suite is missing `name`")
                    .help("add `name: ...`; case names are shown as `suite › case`");
                self.push(d);
                None
            }
        };
        if let Some(d) = get("description") {
            self.string(d, "`description`");
        }
        let now = get("now").and_then(|n| self.now(n));
        let mut fixtures: Vec<(String, Tree)> = Vec::new();
        if let Some(node) = get("fixtures") {
            self.fixtures(node, &mut fixtures);
        }
        let ctx = SuiteContext {
            name: name.clone().unwrap_or_default(),
            now,
            fixtures,
        };
        let mut cases: Vec<Case> = Vec::new();
        match get("cases") {
            Some(node) => match &node.data {
                YamlData::Sequence(items) => {
                    for item in items {
                        if let Some(case) = self.case(item, &ctx) {
                            if let Some(first) = cases.iter().find(|c| c.name == case.name) {
                                let d = self
                                    .error_at(
                                        case.name_at,
                                        format!("duplicate case name `{}`", case.name),
                                    )
                                    .help(format!(
                                        "case names are unique within a suite; the first is at line {}",
                                        first.line
                                    ));
                                self.push(d);
                                continue;
                            }
                            cases.push(case);
                        }
                    }
                }
                _ => {
                    let d = self.error(node, "`cases` must be a list");
                    self.push(d);
                }
            },
            None => {
                let d = self
                    .error(doc, "test suite is missing `cases`")
                    .help("add `cases:` with a list of cases, each with `name`, `now`, `request` and `expect`");
                self.push(d);
            }
        }
        Some(Suite {
            name: name?,
            file: self.file.path.clone(),
            line: location(doc).line,
            cases,
        })
    }

    fn fixtures(&mut self, node: &Node<'_>, out: &mut Vec<(String, Tree)>) {
        let YamlData::Mapping(map) = &node.data else {
            let d = self
                .error(
                    node,
                    "`fixtures` must be a mapping of names to partial requests",
                )
                .help("write `fixtures: { alice: { subject: { id: alice } } }`");
            self.push(d);
            return;
        };
        for (k, v) in map {
            let Some(name) = self.string(k, "a fixture name") else {
                continue;
            };
            if !matches!(v.data, YamlData::Mapping(_)) {
                let d = self
                    .error(
                        v,
                        format!("fixture `{name}` must be a mapping of request fields"),
                    )
                    .help("write request fields such as `session: { acr: urn:stepup:aal1 }`");
                self.push(d);
                continue;
            }
            if let Some(tree) = self.tree(v) {
                out.push((name, tree));
            }
        }
    }

    fn case(&mut self, node: &Node<'_>, ctx: &SuiteContext) -> Option<Case> {
        const KEYS: &[&str] = &[
            "name",
            "description",
            "now",
            "fixture",
            "history",
            "request",
            "expect",
        ];
        let entries = self.mapping(node, "a test case", KEYS)?;
        let get = |k: &str| entries.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let name_node = get("name");
        let name = match name_node {
            Some(n) => self.string(n, "`name`"),
            None => {
                let d = self
                    .error(node, "test case is missing `name`")
                    .help("add `name: ...` saying what the case shows");
                self.push(d);
                None
            }
        };
        if let Some(d) = get("description") {
            self.string(d, "`description`");
        }
        let now_node = get("now");
        let now = match now_node {
            Some(n) => self.now(n).map(Some),
            None => Some(ctx.now),
        };
        let parts = self.request_parts(node, get("fixture"), get("request"), ctx);
        let expect = match get("expect") {
            Some(n) => self.expect(n),
            None => {
                let d = self
                    .error(node, "test case is missing `expect`")
                    .help("add `expect: { outcome: allow }` (or `challenge`, `deny`)");
                self.push(d);
                None
            }
        };
        let (name, now, tree, expect) = (name?, now?, parts.tree?, expect?);
        let request = self.request(&tree, parts.at)?;
        let Some(clock) = now.or_else(|| request.time.as_ref().map(|_| DateTime::UNIX_EPOCH))
        else {
            let d = self
                .error(node, format!("test case `{name}` is missing `now`"))
                .help("add `now: 2026-11-27T10:00:00Z` (the decision's clock) to the case, or a default `now` to the suite");
            self.push(d);
            return None;
        };
        let now = match convert::validate(&request, clock) {
            Ok(t) => t,
            Err(e) => {
                let at = locate_field(&tree, &e.field).unwrap_or(parts.at);
                let required = e.problem == "required";
                let d = self
                    .error_at(at, format!("invalid request: {e}"))
                    .maybe_help(required.then(|| {
                        format!("set `{}` in the case's `request` or in a fixture", e.field)
                    }));
                self.push(d);
                return None;
            }
        };
        let history = match get("history") {
            Some(h) => self.history(h, &tree, now)?,
            None => Vec::new(),
        };
        let name_at = name_node.map_or_else(|| location(node), location);
        Some(Case {
            name,
            line: name_at.line,
            name_at,
            suite: ctx.name.clone(),
            now,
            request,
            history,
            expect,
        })
    }

    /// A case's `history`: earlier decisions (the case's request with the
    /// entry's `request` merged over it) and step-up reports, each `ago`
    /// before the case's clock, in the order written.
    fn history(&mut self, node: &Node<'_>, case: &Tree, now: DateTime<Utc>) -> Option<Vec<Prior>> {
        const KEYS: &[&str] = &["ago", "request", "stepup"];
        let YamlData::Sequence(items) = &node.data else {
            let d = self
                .error(node, "`history` must be a list of earlier events")
                .help("write `history: [{ ago: 30m, request: { ... } }, { ago: 5m, stepup: failed }]`");
            self.push(d);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            let Some(entries) = self.mapping(item, "a `history` entry", KEYS) else {
                ok = false;
                continue;
            };
            let get = |k: &str| entries.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
            let ago = match get("ago") {
                Some(v) => {
                    let text = match &v.data {
                        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
                        _ => None,
                    };
                    match text.as_deref().map(parse_duration) {
                        Some(Ok(d)) => chrono::Duration::from_std(d).ok(),
                        _ => {
                            let d = self
                                .error(v, "`ago` must be a duration such as `30m`")
                                .help("write durations like `90s`, `5m`, `1h30m` or `7d`");
                            self.push(d);
                            None
                        }
                    }
                }
                None => {
                    let d = self
                        .error(item, "a `history` entry is missing `ago`")
                        .help("add `ago: 30m`: how long before the case's `now` it happened");
                    self.push(d);
                    None
                }
            };
            let Some(at) = ago.and_then(|a| now.checked_sub_signed(a)) else {
                ok = false;
                continue;
            };
            match (get("stepup"), get("request")) {
                (Some(_), Some(r)) => {
                    let d = self
                        .error(r, "a `history` entry is either a `request` or a `stepup`")
                        .help("split it into two entries");
                    self.push(d);
                    ok = false;
                }
                (Some(v), None) => match self.string(v, "`stepup`").as_deref() {
                    Some("failed") => out.push(Prior::StepUp { at, success: false }),
                    Some("passed") => out.push(Prior::StepUp { at, success: true }),
                    Some(other) => {
                        let d = self
                            .error(v, format!("unknown step-up outcome `{other}`"))
                            .help("write `stepup: passed` or `stepup: failed`");
                        self.push(d);
                        ok = false;
                    }
                    None => ok = false,
                },
                (None, r) => {
                    let tree = match r {
                        Some(r) => match self.tree(r) {
                            Some(t) => merge(case.clone(), t, false),
                            None => {
                                ok = false;
                                continue;
                            }
                        },
                        None => case.clone(),
                    };
                    let Some(mut request) = self.request(&tree, location(item)) else {
                        ok = false;
                        continue;
                    };
                    request.time = None;
                    if let Err(e) = convert::validate(&request, at) {
                        let d = self.error(item, format!("invalid request in `history`: {e}"));
                        self.push(d);
                        ok = false;
                        continue;
                    }
                    out.push(Prior::Decide {
                        request: Box::new(request),
                        at,
                    });
                }
            }
        }
        ok.then_some(out)
    }

    /// The case's fixtures merged in order, then its `request` over them.
    fn request_parts(
        &mut self,
        case: &Node<'_>,
        fixture: Option<&Node<'_>>,
        request: Option<&Node<'_>>,
        ctx: &SuiteContext,
    ) -> RequestParts {
        let mut ok = true;
        let mut merged: Option<Tree> = None;
        if let Some(f) = fixture {
            let names: Vec<(String, Location)> = match &f.data {
                YamlData::Sequence(_) => self.string_list(f, "`fixture`").unwrap_or_else(|| {
                    ok = false;
                    Vec::new()
                }),
                _ => match self.string(f, "`fixture`") {
                    Some(s) => vec![(s, location(f))],
                    None => {
                        ok = false;
                        Vec::new()
                    }
                },
            };
            for (name, at) in names {
                match ctx.fixtures.iter().find(|(n, _)| *n == name) {
                    Some((_, tree)) => {
                        merged = Some(match merged.take() {
                            Some(m) => merge(m, tree.clone(), false),
                            None => tree.clone(),
                        });
                    }
                    None => {
                        let help = if ctx.fixtures.is_empty() {
                            Some("the suite defines no `fixtures`".to_owned())
                        } else {
                            did_you_mean(&name, ctx.fixtures.iter().map(|(n, _)| n.as_str()))
                                .or_else(|| {
                                    let names: Vec<&str> =
                                        ctx.fixtures.iter().map(|(n, _)| n.as_str()).collect();
                                    Some(format!("the fixtures are {}", quoted_list(&names)))
                                })
                        };
                        let d = self
                            .error_at(at, format!("unknown fixture `{name}`"))
                            .maybe_help(help);
                        self.push(d);
                        ok = false;
                    }
                }
            }
        }
        let mut at = fixture.map_or_else(|| location(case), location);
        if let Some(r) = request {
            at = location(r);
            if !matches!(r.data, YamlData::Mapping(_)) {
                let d = self
                    .error(r, "`request` must be a mapping of request fields")
                    .help("write fields as `stepup eval` reads them: `action`, `subject`, `session`...");
                self.push(d);
                return RequestParts { tree: None, at };
            }
            match self.tree(r) {
                Some(tree) => {
                    merged = Some(match merged.take() {
                        Some(m) => merge(m, tree, false),
                        None => tree,
                    });
                }
                None => ok = false,
            }
        }
        if ok && merged.is_none() {
            let d = self
                .error(case, "test case has no `request`")
                .help("add `request:` with the request fields, or `fixture:` naming a fixture");
            self.push(d);
        }
        RequestParts {
            tree: merged.filter(|_| ok),
            at,
        }
    }

    /// Converts the merged request, reporting a bad field where it was
    /// written.
    fn request(&mut self, tree: &Tree, at: Location) -> Option<DecideRequest> {
        match serde_json::from_value::<DecideRequest>(tree.to_json()) {
            Ok(r) => Some(r),
            Err(e) => {
                let bad = find_bad(tree, &mut Vec::new());
                let d = match bad {
                    Some(bad) => {
                        let time =
                            bad.path.rsplit('.').next().is_some_and(|f| {
                                matches!(field_key(f).as_str(), "time" | "authtime")
                            });
                        let help = unknown_field(&bad.message).and_then(|(word, fields)| {
                            did_you_mean(&word, fields.iter().map(String::as_str)).or_else(|| {
                                let f: Vec<&str> = fields.iter().map(String::as_str).collect();
                                (!f.is_empty())
                                    .then(|| format!("the fields are {}", quoted_list(&f)))
                            })
                        });
                        let what = if bad.path.is_empty() {
                            "invalid request".to_owned()
                        } else {
                            format!("invalid request field `{}`", bad.path)
                        };
                        self.error_at(bad.at, format!("{what}: {}", bad.message))
                            .maybe_help(help.or_else(|| {
                                time.then(|| {
                                    "write an RFC 3339 time such as `2026-11-27T09:00:00Z`"
                                        .to_owned()
                                })
                            }))
                    }
                    None => self.error_at(at, format!("invalid request: {e}")),
                };
                self.push(d);
                None
            }
        }
    }

    fn expect(&mut self, node: &Node<'_>) -> Option<Expect> {
        const KEYS: &[&str] = &[
            "outcome",
            "requirements",
            "risk_score",
            "signals",
            "reasons",
            "errors",
            "shadow",
        ];
        let entries = self.mapping(node, "`expect`", KEYS)?;
        let mut ok = true;
        let mut expect = Expect {
            outcome: Outcome::Allow,
            requirements: None,
            risk_score: None,
            signals: None,
            reasons: None,
            errors: None,
            shadow: None,
        };
        let mut outcome = None;
        let has_outcome = entries.iter().any(|(k, _)| *k == "outcome");
        for (key, v) in entries {
            let done = match key {
                "outcome" => {
                    outcome = self.outcome(v);
                    outcome.is_some()
                }
                "requirements" => {
                    expect.requirements = self.requirements(v);
                    expect.requirements.is_some()
                }
                "risk_score" => {
                    expect.risk_score = self.risk_score(v);
                    expect.risk_score.is_some()
                }
                "signals" => {
                    expect.signals = self.ids(v, "`signals`", Kind::Signal);
                    expect.signals.is_some()
                }
                "reasons" => {
                    expect.reasons = self.ids(v, "`reasons`", Kind::Rule);
                    expect.reasons.is_some()
                }
                "errors" => {
                    expect.errors = self.ids(v, "`errors`", Kind::Either);
                    expect.errors.is_some()
                }
                "shadow" => {
                    expect.shadow = self.ids(v, "`shadow`", Kind::Rule);
                    expect.shadow.is_some()
                }
                _ => true,
            };
            ok &= done;
        }
        match outcome {
            Some(o) => expect.outcome = o,
            None => {
                if !has_outcome {
                    let d = self
                        .error(node, "`expect` is missing `outcome`")
                        .help("add `outcome: allow`, `challenge` or `deny`");
                    self.push(d);
                }
                return None;
            }
        }
        ok.then_some(expect)
    }

    fn outcome(&mut self, node: &Node<'_>) -> Option<Outcome> {
        let s = self.string(node, "`outcome`")?;
        match s.as_str() {
            "allow" => Some(Outcome::Allow),
            "challenge" => Some(Outcome::Challenge),
            "deny" => Some(Outcome::Deny),
            other => {
                let d = self
                    .error(node, format!("unknown outcome `{other}`"))
                    .maybe_help(
                        did_you_mean(&other.to_lowercase(), ["allow", "challenge", "deny"])
                            .or_else(|| Some("use `allow`, `challenge` or `deny`".to_owned())),
                    );
                self.push(d);
                None
            }
        }
    }

    fn risk_score(&mut self, node: &Node<'_>) -> Option<ScoreRange> {
        let int = |r: &mut Self, n: &Node<'_>, what: &str| match &n.data {
            YamlData::Value(Scalar::Integer(i)) if (0..=100).contains(i) => u32::try_from(*i).ok(),
            _ => {
                let d = r
                    .error(n, format!("{what} must be a whole number from 0 to 100"))
                    .help("risk scores are clamped to 0..100");
                r.push(d);
                None
            }
        };
        match &node.data {
            YamlData::Mapping(_) => {
                let entries = self.mapping(node, "`risk_score`", &["min", "max"])?;
                let mut range = ScoreRange { min: 0, max: 100 };
                let mut ok = true;
                for (k, v) in &entries {
                    match (*k, int(self, v, &format!("`risk_score.{k}`"))) {
                        ("min", Some(n)) => range.min = n,
                        ("max", Some(n)) => range.max = n,
                        _ => ok = false,
                    }
                }
                if entries.is_empty() {
                    let d = self
                        .error(node, "`risk_score` range is empty")
                        .help("write `{ min: 20, max: 60 }`, or an exact score");
                    self.push(d);
                    return None;
                }
                if ok && range.min > range.max {
                    let d = self.error(
                        node,
                        format!(
                            "`risk_score` range is empty: min {} is above max {}",
                            range.min, range.max
                        ),
                    );
                    self.push(d);
                    return None;
                }
                ok.then_some(range)
            }
            _ => int(self, node, "`risk_score`").map(|n| ScoreRange { min: n, max: n }),
        }
    }

    fn ids(&mut self, node: &Node<'_>, what: &str, kind: Kind) -> Option<Vec<String>> {
        let list = self.string_list(node, what)?;
        let names = self.names;
        let candidates: Vec<&str> = match kind {
            Kind::Rule => names.rules.clone(),
            Kind::Signal => names.signals.clone(),
            Kind::Either => names.signals.iter().chain(&names.rules).copied().collect(),
        };
        let mut ok = true;
        for (id, at) in &list {
            if !candidates.contains(&id.as_str()) {
                let what = match kind {
                    Kind::Rule => "rule",
                    Kind::Signal => "signal",
                    Kind::Either => "rule or signal",
                };
                let help = did_you_mean(id, candidates.iter().copied()).or_else(|| match kind {
                    Kind::Rule if names.signals.contains(&id.as_str()) => {
                        Some(format!("`{id}` is a signal; list it under `signals`"))
                    }
                    Kind::Signal if names.rules.contains(&id.as_str()) => {
                        Some(format!("`{id}` is a rule; list it under `reasons`"))
                    }
                    Kind::Signal if !candidates.is_empty() => {
                        Some(format!("the signals are {}", quoted_list(&candidates)))
                    }
                    _ => None,
                });
                let d = self
                    .error_at(*at, format!("unknown {what} `{id}`"))
                    .maybe_help(help);
                self.push(d);
                ok = false;
            }
        }
        ok.then(|| list.into_iter().map(|(s, _)| s).collect())
    }

    fn requirements(&mut self, node: &Node<'_>) -> Option<Vec<ExpectedRequirement>> {
        let YamlData::Sequence(items) = &node.data else {
            let d = self.error(node, "`requirements` must be a list").help(
                "write `requirements: [{ rule: refund-large, level: aal2 }]`, or `[]` for none",
            );
            self.push(d);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match self.requirement(item) {
                Some(r) => out.push(r),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn requirement(&mut self, node: &Node<'_>) -> Option<ExpectedRequirement> {
        let entries = self.mapping(
            node,
            "a requirement",
            &["rule", "level", "methods", "max_age"],
        )?;
        let mut r = ExpectedRequirement::default();
        let mut ok = true;
        for (key, v) in entries {
            match key {
                "rule" => match self.rule_id(v) {
                    Some(id) => r.rule = Some(id),
                    None => ok = false,
                },
                "level" => match self.string(v, "`level`") {
                    Some(level) if self.names.levels.contains(&level.as_str()) => {
                        r.level = Some(level);
                    }
                    Some(level) => {
                        let levels = self.names.levels.clone();
                        let d = self
                            .error(v, format!("unknown level `{level}`"))
                            .maybe_help(did_you_mean(&level, levels.iter().copied()).or_else(
                                || {
                                    Some(if levels.is_empty() {
                                        "the policy set defines no levels".to_owned()
                                    } else {
                                        format!("the levels are {}", quoted_list(&levels))
                                    })
                                },
                            ));
                        self.push(d);
                        ok = false;
                    }
                    None => ok = false,
                },
                "methods" => match self.string_list(v, "`methods`") {
                    Some(list) => r.methods = Some(list.into_iter().map(|(s, _)| s).collect()),
                    None => ok = false,
                },
                "max_age" => {
                    let text = match &v.data {
                        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
                        _ => None,
                    };
                    match text.as_deref().map(parse_duration) {
                        Some(Ok(d)) => r.max_age = Some(d),
                        Some(Err(e)) => {
                            let d = self
                                .error(
                                    v,
                                    format!("invalid duration `{}`: {e}", text.unwrap_or_default()),
                                )
                                .help("write durations like `90s`, `5m`, `1h30m` or `7d`");
                            self.push(d);
                            ok = false;
                        }
                        None => {
                            let d = self
                                .error(v, "`max_age` must be a duration such as `5m`")
                                .help("write durations like `90s`, `5m`, `1h30m` or `7d`");
                            self.push(d);
                            ok = false;
                        }
                    }
                }
                _ => {}
            }
        }
        ok.then_some(r)
    }

    fn rule_id(&mut self, node: &Node<'_>) -> Option<String> {
        let id = self.string(node, "`rule`")?;
        if self.names.rules.contains(&id.as_str()) {
            return Some(id);
        }
        let d = self
            .error(node, format!("unknown rule `{id}`"))
            .maybe_help(did_you_mean(&id, self.names.rules.iter().copied()));
        self.push(d);
        None
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Rule,
    Signal,
    Either,
}

/// The deepest part of a request that fails to convert on its own.
struct Bad {
    at: Location,
    path: String,
    message: String,
}

#[derive(Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

fn path_text(path: &[Segment]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Segment::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Converts a request holding only `leaf` at `path`.
fn probe(path: &[Segment], leaf: Value) -> Result<(), serde_json::Error> {
    let mut v = leaf;
    for seg in path.iter().rev() {
        v = match seg {
            Segment::Key(k) => {
                let mut m = serde_json::Map::new();
                m.insert(k.clone(), v);
                Value::Object(m)
            }
            Segment::Index(_) => Value::Array(vec![v]),
        };
    }
    serde_json::from_value::<DecideRequest>(v).map(|_| ())
}

/// Finds the part of `node` (at `path`) that fails to convert on its own,
/// descending as long as a single child fails: the error is then reported
/// at that child (at its key for an unknown field).
fn find_bad(node: &Tree, path: &mut Vec<Segment>) -> Option<Bad> {
    match &node.kind {
        TreeKind::Map(entries) => {
            for e in entries {
                path.push(Segment::Key(e.key.clone()));
                if let Err(err) = probe(path, e.value.to_json()) {
                    let message = err.to_string();
                    let found = if message.starts_with("unknown field") {
                        Some(Bad {
                            at: e.key_at,
                            path: path_text(
                                path.get(..path.len().saturating_sub(1)).unwrap_or(&[]),
                            ),
                            message,
                        })
                    } else {
                        find_bad(&e.value, path).or_else(|| {
                            Some(Bad {
                                at: e.value.at,
                                path: path_text(path),
                                message,
                            })
                        })
                    };
                    path.pop();
                    return found;
                }
                path.pop();
            }
            None
        }
        TreeKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Segment::Index(i));
                if let Err(err) = probe(path, item.to_json()) {
                    let found = find_bad(item, path).or_else(|| {
                        Some(Bad {
                            at: item.at,
                            path: path_text(path),
                            message: err.to_string(),
                        })
                    });
                    path.pop();
                    return found;
                }
                path.pop();
            }
            None
        }
        TreeKind::Scalar(_) => None,
    }
}

/// The unknown field and the expected ones, from serde's
/// "unknown field `x`, expected one of `a`, `b`" message.
pub(crate) fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (word, rest) = rest.split_once('`')?;
    let fields = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((word.to_owned(), fields))
}

/// Where the field named by a validation error (`subject.id`,
/// `session.amr[2]`, `resource.attributes.note`) was written: the field
/// itself, or its closest written ancestor.
fn locate_field(tree: &Tree, field: &str) -> Option<Location> {
    let mut node = tree;
    let mut best = None;
    for part in field.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some(e) = node.entry(key) else {
            return best;
        };
        best = Some(e.value.at);
        node = &e.value;
        if let (Some(i), TreeKind::Seq(items)) = (index, &node.kind)
            && let Some(item) = items.get(i)
        {
            best = Some(item.at);
            node = item;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_unknown_field_messages() {
        assert_eq!(
            unknown_field("unknown field `devce`, expected one of `action`, `device`"),
            Some(("devce".into(), vec!["action".into(), "device".into()]))
        );
        assert_eq!(unknown_field("invalid type"), None);
    }

    #[test]
    fn field_keys_ignore_spelling() {
        assert_eq!(field_key("auth_time"), field_key("authTime"));
        assert_ne!(field_key("auth_time"), field_key("time"));
    }
}
