//! Reading test suites (`*_test.yaml`) with positions kept, so that every
//! problem is reported with file, line, caret and a did-you-mean, checked
//! against the policy set under test (rule, signal and level names).
//!
//! A file's documents are walked here (suite, fixtures, cases); a case's
//! request is a positioned [`tree`] merged from fixtures and converted by
//! [`request`]; its `history` is read by [`history`] and its `expect` by
//! [`expect`].

mod expect;
mod history;
mod probe;
mod request;
mod tree;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use saphyr::YamlData;

use super::{Case, Suite};
use crate::policy::PolicySet;
use crate::policy::diag::{Code, Diagnostic, Location, Report, SourceFile};
use crate::policy::yaml::{self, Node, get, location};
use crate::request::validate as convert;
use tree::{Tree, locate_field};

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
    yaml::files(dir, &|name| {
        name.ends_with("_test.yaml") || name.ends_with("_test.yml")
    })
}

/// Reads the suites of one file; problems go to `report`.
pub fn read_file(file: &SourceFile, names: &Names<'_>, report: &mut Report) -> Vec<Suite> {
    let Some(docs) = yaml::documents(file, report) else {
        return Vec::new();
    };
    let mut reader = Reader {
        y: yaml::Reader::new(file, report),
        names,
    };
    let mut suites = Vec::new();
    for doc in &docs {
        if let Some(s) = reader.suite(doc) {
            suites.push(s);
        }
    }
    if suites.is_empty() && !reader.y.report.has_errors() {
        reader.push(
            Diagnostic::warning(Code::EmptySuiteFile, "the file holds no test suite")
                .in_file(&file.path)
                .help("a suite is a mapping with `name` and `cases`"),
        );
    }
    suites
}

/// The YAML reader of one suite file, with the names it may refer to.
struct Reader<'a> {
    y: yaml::Reader<'a>,
    names: &'a Names<'a>,
}

/// Suite-wide context for its cases.
struct SuiteContext {
    name: String,
    now: Option<DateTime<Utc>>,
    fixtures: Vec<(String, Tree)>,
}

impl Reader<'_> {
    fn error_at(&self, at: Location, code: Code, message: impl Into<String>) -> Diagnostic {
        self.y.error_at(at, code, message)
    }

    fn error(&self, node: &Node<'_>, code: Code, message: impl Into<String>) -> Diagnostic {
        self.y.error(node, code, message)
    }

    fn push(&mut self, d: Diagnostic) {
        self.y.push(d);
    }

    /// A list of strings, each with its position; `None` when any entry is
    /// not a string.
    fn string_list(&mut self, node: &Node<'_>, what: &str) -> Option<Vec<(String, Location)>> {
        let list = self.y.string_list(node, what, true)?;
        list.complete.then_some(list.items)
    }

    fn now(&mut self, node: &Node<'_>) -> Option<DateTime<Utc>> {
        let text = self.y.string(node, "`now`")?;
        match DateTime::parse_from_rfc3339(&text) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(e) => {
                let d = self
                    .error(
                        node,
                        Code::InvalidTime,
                        format!("invalid `now` `{text}`: {e}"),
                    )
                    .help("write an RFC 3339 time such as `2026-11-27T10:00:00Z`");
                self.push(d);
                None
            }
        }
    }

    fn suite(&mut self, doc: &Node<'_>) -> Option<Suite> {
        const KEYS: &[&str] = &["name", "description", "now", "fixtures", "cases"];
        let entries = self.y.mapping(doc, "a test suite", KEYS)?;
        let name = match get(&entries, "name") {
            Some(n) => self.y.string(n, "`name`"),
            None => {
                let d = self
                    .error(doc, Code::MissingKey, "test suite is missing `name`")
                    .help("add `name: ...`; case names are shown as `suite › case`");
                self.push(d);
                None
            }
        };
        if let Some(d) = get(&entries, "description") {
            self.y.string(d, "`description`");
        }
        let now = get(&entries, "now").and_then(|n| self.now(n));
        let mut fixtures: Vec<(String, Tree)> = Vec::new();
        if let Some(node) = get(&entries, "fixtures") {
            self.fixtures(node, &mut fixtures);
        }
        let ctx = SuiteContext {
            name: name.clone().unwrap_or_default(),
            now,
            fixtures,
        };
        let cases = match get(&entries, "cases") {
            Some(node) => self.cases(node, &ctx),
            None => {
                let d = self
                    .error(doc, Code::MissingKey, "test suite is missing `cases`")
                    .help("add `cases:` with a list of cases, each with `name`, `now`, `request` and `expect`");
                self.push(d);
                Vec::new()
            }
        };
        Some(Suite {
            name: name?,
            file: self.y.file.path.clone(),
            cases,
        })
    }

    fn cases(&mut self, node: &Node<'_>, ctx: &SuiteContext) -> Vec<Case> {
        let YamlData::Sequence(items) = &node.data else {
            let d = self.error(node, Code::WrongType, "`cases` must be a list");
            self.push(d);
            return Vec::new();
        };
        let mut cases: Vec<Case> = Vec::new();
        for item in items {
            let Some(case) = self.case(item, ctx) else {
                continue;
            };
            if let Some(first) = cases.iter().find(|c| c.name == case.name) {
                let d = self
                    .error_at(
                        case.name_at,
                        Code::DuplicateCase,
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
        cases
    }

    fn fixtures(&mut self, node: &Node<'_>, out: &mut Vec<(String, Tree)>) {
        let YamlData::Mapping(map) = &node.data else {
            let d = self
                .error(
                    node,
                    Code::WrongType,
                    "`fixtures` must be a mapping of names to partial requests",
                )
                .help("write `fixtures: { alice: { subject: { id: alice } } }`");
            self.push(d);
            return;
        };
        for (k, v) in map {
            let Some(name) = self.y.string(k, "a fixture name") else {
                continue;
            };
            if !matches!(v.data, YamlData::Mapping(_)) {
                let d = self
                    .error(
                        v,
                        Code::WrongType,
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
        let entries = self.y.mapping(node, "a test case", KEYS)?;
        let name_node = get(&entries, "name");
        let name = match name_node {
            Some(n) => self.y.string(n, "`name`"),
            None => {
                let d = self
                    .error(node, Code::MissingKey, "test case is missing `name`")
                    .help("add `name: ...` saying what the case shows");
                self.push(d);
                None
            }
        };
        if let Some(d) = get(&entries, "description") {
            self.y.string(d, "`description`");
        }
        let now = match get(&entries, "now") {
            Some(n) => self.now(n).map(Some),
            None => Some(ctx.now),
        };
        let parts = self.request_parts(
            node,
            get(&entries, "fixture"),
            get(&entries, "request"),
            ctx,
        );
        let expect = match get(&entries, "expect") {
            Some(n) => self.expect(n),
            None => {
                let d = self
                    .error(node, Code::MissingKey, "test case is missing `expect`")
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
                .error(node, Code::MissingKey, format!("test case `{name}` is missing `now`"))
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
                    .error_at(at, Code::InvalidRequest, format!("invalid request: {e}"))
                    .maybe_help(required.then(|| {
                        format!("set `{}` in the case's `request` or in a fixture", e.field)
                    }));
                self.push(d);
                return None;
            }
        };
        let history = match get(&entries, "history") {
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
}

#[cfg(test)]
mod tests {
    use super::tree::field_key;

    #[test]
    fn field_keys_ignore_spelling() {
        assert_eq!(field_key("auth_time"), field_key("authTime"));
        assert_ne!(field_key("auth_time"), field_key("time"));
    }
}
