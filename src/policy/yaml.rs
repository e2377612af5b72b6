//! The positioned YAML reader shared by the policy loader and the test-suite
//! parser: the files of a directory, a file's documents, and the checks
//! every document needs (mappings with known keys, strings, string lists),
//! each problem reported at its line and column.

use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::diag::{Code, Diagnostic, LineIndex, Location, Report, SourceFile, did_you_mean};

/// A YAML node with its position.
pub type Node<'i> = MarkedYaml<'i>;

/// The files under `dir` whose names `wanted` accepts, sorted. Hidden
/// entries are skipped (Kubernetes ConfigMap mounts keep old copies under
/// `..data` siblings); symlinks are followed (ConfigMap files are links
/// into `..data`).
pub fn files(dir: &Path, wanted: &dyn Fn(&str) -> bool) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(dir, wanted, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, wanted: &dyn Fn(&str) -> bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if std::fs::metadata(&path)?.is_dir() {
            walk(&path, wanted, out)?;
        } else if wanted(&name) {
            out.push(path);
        }
    }
    Ok(())
}

/// The documents of `file`, empty ones (after a trailing `---`) left out;
/// `None` after reporting invalid YAML.
pub fn documents<'i>(file: &'i SourceFile, report: &mut Report) -> Option<Vec<Node<'i>>> {
    match MarkedYaml::load_from_str(&file.text) {
        Ok(docs) => Some(
            docs.into_iter()
                .filter(|d| !matches!(d.data, YamlData::Value(Scalar::Null)))
                .collect(),
        ),
        Err(e) => {
            let m = e.marker();
            let mut at = Location {
                line: m.line(),
                column: m.col() + 1,
                len: 1,
            };
            // The scanner reports a tab where the token it was reading
            // started (a plain scalar may go on over the next lines): point
            // at the tab itself.
            let mut help = None;
            if e.info().contains("tab") {
                at = first_tab(&file.text, at).unwrap_or(at);
                help =
                    Some("YAML indents with spaces only: replace the tab with spaces".to_owned());
            }
            report.push(
                Diagnostic::error(Code::InvalidYaml, format!("invalid YAML: {}", e.info()))
                    .at(file, at)
                    .maybe_help(help),
            );
            None
        }
    }
}

/// The first tab in `text` at or after `from`.
fn first_tab(text: &str, from: Location) -> Option<Location> {
    text.lines()
        .enumerate()
        .skip(from.line.saturating_sub(1))
        .find_map(|(i, line)| {
            let skip = if i + 1 == from.line {
                from.column - 1
            } else {
                0
            };
            let column = line.chars().skip(skip).position(|c| c == '\t')? + skip + 1;
            Some(Location {
                line: i + 1,
                column,
                len: 1,
            })
        })
}

/// Where `node` is written: its start, underlining it when it fits on one
/// line.
pub fn location(node: &Node<'_>) -> Location {
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

/// `a`, `b` and `c` as "`a`, `b`, `c`".
pub fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|a| format!("`{a}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value of `key` among a mapping's checked entries.
pub fn get<'n, 'i>(entries: &[(&str, &'n Node<'i>)], key: &str) -> Option<&'n Node<'i>> {
    entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The strings of a list, each with where it is written.
pub struct Strings {
    /// The entries that are strings.
    pub items: Vec<(String, Location)>,
    /// Whether every entry was (the others are reported).
    pub complete: bool,
}

/// Reads the nodes of one file, reporting problems with their position.
pub struct Reader<'a> {
    /// The file read.
    pub file: &'a SourceFile,
    /// Where problems go.
    pub report: &'a mut Report,
    /// The signal or rule being read, named by every diagnostic until
    /// cleared.
    pub rule: Option<String>,
    /// The file's lines, for diagnostics.
    lines: LineIndex,
}

impl<'a> Reader<'a> {
    /// A reader of `file`.
    pub fn new(file: &'a SourceFile, report: &'a mut Report) -> Self {
        Self {
            file,
            report,
            rule: None,
            lines: LineIndex::new(&file.text),
        }
    }

    /// An error at `at`, in the current rule if any.
    pub fn error_at(&self, at: Location, code: Code, message: impl Into<String>) -> Diagnostic {
        let line = self.lines.line(&self.file.text, at.line);
        let d = Diagnostic::error(code, message).at_line(self.file, at, line);
        match &self.rule {
            Some(r) => d.rule(r.clone()),
            None => d,
        }
    }

    /// An error at `node`, in the current rule if any.
    pub fn error(&self, node: &Node<'_>, code: Code, message: impl Into<String>) -> Diagnostic {
        self.error_at(location(node), code, message)
    }

    /// Reports `d`.
    pub fn push(&mut self, d: Diagnostic) {
        self.report.push(d);
    }

    /// The entries of a mapping, checking every key against `allowed`.
    pub fn mapping<'n, 'i>(
        &mut self,
        node: &'n Node<'i>,
        what: &str,
        allowed: &[&str],
    ) -> Option<Vec<(&'n str, &'n Node<'i>)>> {
        let YamlData::Mapping(map) = &node.data else {
            let d = self.error(node, Code::WrongType, format!("{what} must be a mapping"));
            self.push(d);
            return None;
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let YamlData::Value(Scalar::String(key)) = &k.data else {
                let d = self.error(
                    k,
                    Code::WrongType,
                    format!("keys of {what} must be strings"),
                );
                self.push(d);
                continue;
            };
            if !allowed.contains(&key.as_ref()) {
                let d = self
                    .error(
                        k,
                        Code::UnknownKey,
                        format!("unknown key `{key}` in {what}"),
                    )
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

    /// A string. A plain integer where a string is expected is taken as
    /// written (`id: 2`): YAML reads it as a number, the author meant text.
    pub fn string(&mut self, node: &Node<'_>, what: &str) -> Option<String> {
        match &node.data {
            YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
            YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
            _ => {
                let d = self.error(node, Code::WrongType, format!("{what} must be a string"));
                self.push(d);
                None
            }
        }
    }

    /// A list of strings. `none_hint`: the help mentions `[]`, where an
    /// empty list is meaningful.
    pub fn string_list(&mut self, node: &Node<'_>, what: &str, none_hint: bool) -> Option<Strings> {
        let YamlData::Sequence(items) = &node.data else {
            let help = if none_hint {
                format!("write {what} as `[a, b]`, or `[]` for none")
            } else {
                format!("write {what} as `[a, b]`")
            };
            let d = self
                .error(
                    node,
                    Code::WrongType,
                    format!("{what} must be a list of strings"),
                )
                .help(help);
            self.push(d);
            return None;
        };
        let mut out = Strings {
            items: Vec::with_capacity(items.len()),
            complete: true,
        };
        for item in items {
            match self.string(item, &format!("each entry of {what}")) {
                Some(s) => out.items.push((s, location(item))),
                None => out.complete = false,
            }
        }
        Some(out)
    }

    /// The value of required `key`, reporting its absence from `parent`.
    pub fn required<'n, 'i>(
        &mut self,
        entries: &[(&str, &'n Node<'i>)],
        key: &str,
        parent: &Node<'_>,
        what: &str,
    ) -> Option<&'n Node<'i>> {
        let found = get(entries, key);
        if found.is_none() {
            let d = self.error(
                parent,
                Code::MissingKey,
                format!("{what} is missing `{key}`"),
            );
            self.push(d);
        }
        found
    }
}

#[cfg(test)]
mod tests;
