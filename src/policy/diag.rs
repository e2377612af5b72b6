//! Policy diagnostics: what is wrong, where (file, line, column, rule id),
//! and how to fix it, rendered rustc-style with the offending source line and
//! a caret, or as JSON for editors and CI.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How bad a diagnostic is. Errors reject the policy set; warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A likely mistake that does not stop the set from loading.
    Warning,
    /// The policy set cannot be used.
    Error,
}

/// What kind of problem a diagnostic reports: a stable name that scripts and
/// tests match on, so that the wording of messages may improve freely. The
/// table in `docs/src/reference/diagnostics.md` documents each one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// A file or directory cannot be read.
    UnreadableFile,
    /// The policy directory holds no policy file.
    NoPolicyFiles,
    /// The text is not YAML.
    InvalidYaml,
    /// YAML that is valid but not supported here (aliases in test suites).
    UnsupportedYaml,
    /// A key the mapping does not have.
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A key that does not belong where it is written.
    MisplacedKey,
    /// A value of the wrong type (a string where a list is expected...).
    WrongType,
    /// An `apiVersion` other than `stepup/v1`.
    UnsupportedApiVersion,
    /// A `kind` other than `Levels` or `Policy`.
    UnknownKind,
    /// A signal or rule id with characters ids may not hold.
    InvalidId,
    /// Two signals or rules with one id.
    DuplicateId,
    /// A score outside its range, or not a whole number.
    InvalidScore,
    /// A rule with an empty `actions` list.
    EmptyActions,
    /// An action glob that cannot match as written.
    InvalidActionPattern,
    /// An `effect` other than `challenge` or `deny`.
    UnknownEffect,
    /// A `mode` other than `enforce` or `shadow`.
    UnknownMode,
    /// A duration that does not parse (`5`, `5 minutes`).
    InvalidDuration,
    /// A `require` that asks for nothing.
    EmptyRequire,
    /// `mode: shadow` on a policy with signals, which still count.
    ShadowSignals,
    /// The set has no `kind: Levels` document.
    NoLevels,
    /// A second `kind: Levels` document.
    DuplicateLadder,
    /// Two levels with one name.
    DuplicateLevel,
    /// A level without acr values.
    EmptyLevel,
    /// An acr value listed under two levels.
    DuplicateAcr,
    /// A level name the ladder does not have.
    UnknownLevel,
    /// A CEL expression that does not parse.
    CelSyntax,
    /// A CEL variable the request context does not have.
    UnknownVariable,
    /// A field the message does not have (in CEL or in a test request).
    UnknownField,
    /// A field selected from a value that has no fields.
    InvalidSelect,
    /// A function CEL does not know.
    UnknownFunction,
    /// A call with the wrong arguments or form.
    InvalidCall,
    /// An IP list the set does not load.
    UnknownList,
    /// A bad entry, name or file of an IP list.
    InvalidList,
    /// Two IP lists with one name.
    DuplicateList,
    /// A GeoIP database that cannot be used.
    InvalidGeoip,
    /// A `matches()` pattern written in the policy that is not a valid regex.
    InvalidRegex,
    /// A `matches()` pattern taken from the request, without the opt-in.
    DynamicRegex,
    /// A condition whose worst-case cost exceeds `[limits] max_condition_cost`.
    CostLimit,
    /// A condition nested or chained deeper than the evaluator takes.
    DepthLimit,
    /// A rule that another rule always overrides.
    RedundantRule,
    /// A signal no rule reads (no rule reads `risk`).
    UnreadSignal,
    /// Two signals or rules with the same condition.
    DuplicateCondition,
    /// An action no test and no other rule uses: a likely typo.
    UntestedAction,
    /// No `*_test.yaml` file in the directory.
    NoTestSuites,
    /// A suite file without a suite.
    EmptySuiteFile,
    /// Two suites with one name.
    DuplicateSuite,
    /// Two cases with one name in a suite.
    DuplicateCase,
    /// A time that is not RFC 3339.
    InvalidTime,
    /// A test request that does not convert or validate.
    InvalidRequest,
    /// A fixture name the suite does not define.
    UnknownFixture,
    /// An expected outcome (or step-up outcome) that does not exist.
    UnknownOutcome,
    /// A `risk_score` range that holds no score.
    EmptyRange,
    /// A rule id the set does not have.
    UnknownRule,
    /// A signal id the set does not have.
    UnknownSignal,
    /// An id that is neither a rule nor a signal of the set.
    UnknownId,
    /// A fault of stepup itself, not of the policies.
    Internal,
}

impl Code {
    /// Every code, in the order `docs/src/reference/diagnostics.md` lists them.
    pub const ALL: &[Code] = &[
        Code::UnreadableFile,
        Code::NoPolicyFiles,
        Code::InvalidYaml,
        Code::UnsupportedYaml,
        Code::UnknownKey,
        Code::MissingKey,
        Code::MisplacedKey,
        Code::WrongType,
        Code::UnsupportedApiVersion,
        Code::UnknownKind,
        Code::InvalidId,
        Code::DuplicateId,
        Code::InvalidScore,
        Code::EmptyActions,
        Code::InvalidActionPattern,
        Code::UnknownEffect,
        Code::UnknownMode,
        Code::InvalidDuration,
        Code::EmptyRequire,
        Code::ShadowSignals,
        Code::NoLevels,
        Code::DuplicateLadder,
        Code::DuplicateLevel,
        Code::EmptyLevel,
        Code::DuplicateAcr,
        Code::UnknownLevel,
        Code::CelSyntax,
        Code::UnknownVariable,
        Code::UnknownField,
        Code::InvalidSelect,
        Code::UnknownFunction,
        Code::InvalidCall,
        Code::UnknownList,
        Code::InvalidList,
        Code::DuplicateList,
        Code::InvalidGeoip,
        Code::InvalidRegex,
        Code::DynamicRegex,
        Code::CostLimit,
        Code::DepthLimit,
        Code::RedundantRule,
        Code::UnreadSignal,
        Code::DuplicateCondition,
        Code::UntestedAction,
        Code::NoTestSuites,
        Code::EmptySuiteFile,
        Code::DuplicateSuite,
        Code::DuplicateCase,
        Code::InvalidTime,
        Code::InvalidRequest,
        Code::UnknownFixture,
        Code::UnknownOutcome,
        Code::EmptyRange,
        Code::UnknownRule,
        Code::UnknownSignal,
        Code::UnknownId,
        Code::Internal,
    ];

    /// The code as written in text and JSON output, e.g. `unknown-key`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::UnreadableFile => "unreadable-file",
            Code::NoPolicyFiles => "no-policy-files",
            Code::InvalidYaml => "invalid-yaml",
            Code::UnsupportedYaml => "unsupported-yaml",
            Code::UnknownKey => "unknown-key",
            Code::MissingKey => "missing-key",
            Code::MisplacedKey => "misplaced-key",
            Code::WrongType => "wrong-type",
            Code::UnsupportedApiVersion => "unsupported-api-version",
            Code::UnknownKind => "unknown-kind",
            Code::InvalidId => "invalid-id",
            Code::DuplicateId => "duplicate-id",
            Code::InvalidScore => "invalid-score",
            Code::EmptyActions => "empty-actions",
            Code::InvalidActionPattern => "invalid-action-pattern",
            Code::UnknownEffect => "unknown-effect",
            Code::UnknownMode => "unknown-mode",
            Code::InvalidDuration => "invalid-duration",
            Code::EmptyRequire => "empty-require",
            Code::ShadowSignals => "shadow-signals",
            Code::NoLevels => "no-levels",
            Code::DuplicateLadder => "duplicate-ladder",
            Code::DuplicateLevel => "duplicate-level",
            Code::EmptyLevel => "empty-level",
            Code::DuplicateAcr => "duplicate-acr",
            Code::UnknownLevel => "unknown-level",
            Code::CelSyntax => "cel-syntax",
            Code::UnknownVariable => "unknown-variable",
            Code::UnknownField => "unknown-field",
            Code::InvalidSelect => "invalid-select",
            Code::UnknownFunction => "unknown-function",
            Code::InvalidCall => "invalid-call",
            Code::UnknownList => "unknown-list",
            Code::InvalidList => "invalid-list",
            Code::DuplicateList => "duplicate-list",
            Code::InvalidGeoip => "invalid-geoip",
            Code::InvalidRegex => "invalid-regex",
            Code::DynamicRegex => "dynamic-regex",
            Code::CostLimit => "cost-limit",
            Code::DepthLimit => "depth-limit",
            Code::RedundantRule => "redundant-rule",
            Code::UnreadSignal => "unread-signal",
            Code::DuplicateCondition => "duplicate-condition",
            Code::UntestedAction => "untested-action",
            Code::NoTestSuites => "no-test-suites",
            Code::EmptySuiteFile => "empty-suite-file",
            Code::DuplicateSuite => "duplicate-suite",
            Code::DuplicateCase => "duplicate-case",
            Code::InvalidTime => "invalid-time",
            Code::InvalidRequest => "invalid-request",
            Code::UnknownFixture => "unknown-fixture",
            Code::UnknownOutcome => "unknown-outcome",
            Code::EmptyRange => "empty-range",
            Code::UnknownRule => "unknown-rule",
            Code::UnknownSignal => "unknown-signal",
            Code::UnknownId => "unknown-id",
            Code::Internal => "internal",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A loaded policy file's text, kept for diagnostics.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as given (relative to the policy directory's parent when the
    /// directory was given relatively).
    pub path: PathBuf,
    /// The file's contents.
    pub text: String,
}

impl SourceFile {
    /// The text of 1-based `line`, without its line ending.
    pub fn line(&self, line: usize) -> Option<&str> {
        self.text.lines().nth(line.checked_sub(1)?)
    }
}

/// Where each line of a text starts, so that a line is found without
/// reading those before it: a diagnostic per rule of a large file costs
/// the same as one in a small file.
#[derive(Debug, Default)]
pub struct LineIndex {
    /// Byte offsets of the lines' starts (the first is 0).
    starts: Vec<usize>,
}

impl LineIndex {
    /// The index of `text`.
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    /// Line 1-based `line` of `text` (the text indexed), without its line
    /// ending: what [`SourceFile::line`] returns, as [`str::lines`] splits.
    pub fn line<'t>(&self, text: &'t str, line: usize) -> Option<&'t str> {
        let k = line.checked_sub(1)?;
        let start = *self.starts.get(k)?;
        match self.starts.get(k + 1) {
            Some(&next) => {
                let line = text.get(start..next - 1)?;
                Some(line.strip_suffix('\r').unwrap_or(line))
            }
            // The last line, if anything follows the last newline.
            None => text.get(start..).filter(|rest| !rest.is_empty()),
        }
    }

    /// How many lines `text` has, as [`str::lines`] counts them.
    pub fn count(&self, text: &str) -> usize {
        let ends_in_newline = self.starts.last().is_some_and(|&s| s == text.len());
        self.starts.len() - usize::from(ends_in_newline)
    }
}

/// A position in a source file: 1-based line, 1-based column (in characters),
/// and how many characters to underline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// Characters to underline (at least one caret is always drawn).
    pub len: usize,
}

/// One problem found in a policy set.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What kind of problem: stable, for scripts and tests.
    pub code: Code,
    /// What is wrong: lowercase, one line, user input in backticks.
    pub message: String,
    /// The file, when the problem is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Where in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The signal or rule the problem is in, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    /// How to fix it, when a fix is likely.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The source line, for rendering (not serialized: JSON consumers have
    /// the file).
    #[serde(skip)]
    pub source_line: Option<Arc<str>>,
}

impl Diagnostic {
    /// An error with no location yet.
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    /// A warning with no location yet.
    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, message)
    }

    fn new(severity: Severity, code: Code, message: impl Into<String>) -> Self {
        Self {
            severity,
            code,
            message: message.into(),
            file: None,
            location: None,
            rule_id: None,
            help: None,
            source_line: None,
        }
    }

    /// Places the diagnostic in `file` at `location`.
    pub fn at(self, file: &SourceFile, location: Location) -> Self {
        let line = file.line(location.line);
        self.at_line(file, location, line)
    }

    /// [`Diagnostic::at`], given the text of the location's line.
    pub fn at_line(mut self, file: &SourceFile, location: Location, line: Option<&str>) -> Self {
        self.source_line = line.map(Arc::from);
        self.file = Some(file.path.clone());
        self.location = Some(location);
        self
    }

    /// Names the file without a position (e.g. it could not be read).
    pub fn in_file(mut self, path: &Path) -> Self {
        self.file = Some(path.to_path_buf());
        self
    }

    /// Names the signal or rule the problem is in.
    pub fn rule(mut self, id: impl Into<String>) -> Self {
        self.rule_id = Some(id.into());
        self
    }

    /// Adds advice.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds advice when there is some.
    pub fn maybe_help(self, help: Option<String>) -> Self {
        match help {
            Some(help) => self.help(help),
            None => self,
        }
    }

    /// Whether this diagnostic rejects the set.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// Renders like rustc: the message and its code, `--> file:line:col`,
    /// the source line with a caret under the problem, and `= help:`. The
    /// code goes last on the first line, so that the line still starts with
    /// `error: <message>` for people and for tools that search for it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{label}: {}", self.message)?;
        if let Some(id) = &self.rule_id {
            write!(f, " (in `{id}`)")?;
        }
        write!(f, " [{}]", self.code)?;
        let gutter = self.location.map(|l| l.line.to_string().len()).unwrap_or(1);
        let pad = " ".repeat(gutter);
        match (&self.file, self.location) {
            (Some(file), Some(loc)) => {
                write!(
                    f,
                    "\n{pad}--> {}:{}:{}",
                    file.display(),
                    loc.line,
                    loc.column
                )?;
                if let Some(line) = &self.source_line {
                    let (line, column) = window(line, loc.column);
                    let mut caret = String::new();
                    // Keep tabs so the caret lines up under them.
                    for c in line.chars().take(column.saturating_sub(1)) {
                        caret.push(if c == '\t' { '\t' } else { ' ' });
                    }
                    let room = line.chars().count().saturating_sub(column - 1).max(1);
                    for _ in 0..loc.len.clamp(1, room) {
                        caret.push('^');
                    }
                    write!(f, "\n{pad} |\n{} | {line}\n{pad} | {caret}", loc.line)?;
                }
            }
            (Some(file), None) => write!(f, "\n{pad}--> {}", file.display())?,
            _ => {}
        }
        if let Some(help) = &self.help {
            write!(f, "\n{pad} = help: {help}")?;
        }
        Ok(())
    }
}

/// Every diagnostic of a load or check, errors and warnings.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(transparent)]
pub struct Report {
    /// In the order found: file by file, top to bottom.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// Adds a diagnostic.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// How many errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// How many warnings.
    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for d in &self.diagnostics {
            let _ = writeln!(out, "{d}\n");
        }
        f.write_str(out.trim_end())
    }
}

/// A report that stops a load is the error of that load.
impl std::error::Error for Report {}

/// Source lines up to this many chars are shown whole.
const MAX_SHOWN: usize = 100;

/// The part of a long source `line` shown around (1-based) `column`: up
/// to [`MAX_SHOWN`] chars, cut with `…` on the sides it leaves out, and the
/// column within what is shown.
fn window(line: &str, column: usize) -> (std::borrow::Cow<'_, str>, usize) {
    let count = line.chars().count();
    if count <= MAX_SHOWN {
        return (std::borrow::Cow::Borrowed(line), column.max(1));
    }
    let at = column.saturating_sub(1).min(count);
    // A third of the window before the caret, the rest after it.
    let start = at
        .saturating_sub(MAX_SHOWN / 3)
        .min(count.saturating_sub(MAX_SHOWN));
    let end = (start + MAX_SHOWN).min(count);
    let mut shown = String::with_capacity(MAX_SHOWN + 8);
    if start > 0 {
        shown.push('…');
    }
    shown.extend(line.chars().skip(start).take(end - start));
    if end < count {
        shown.push('…');
    }
    let column = at - start + 1 + usize::from(start > 0);
    (std::borrow::Cow::Owned(shown), column)
}

/// The candidate closest to `word` by edit distance, when close enough to be a
/// likely typo: the basis of every "did you mean" help.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let max = (word.chars().count() / 3).max(1);
    let scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .map(|c| {
            // `amr_list` for `amr`: a prefix is a likely mix-up too.
            let prefix =
                c.len().min(word.len()) >= 3 && (word.starts_with(c) || c.starts_with(word));
            let d = strsim::levenshtein(word, c);
            (if prefix { d.min(max) } else { d }, c)
        })
        .filter(|(d, _)| *d <= max)
        .collect();
    let best = scored.iter().map(|(d, _)| *d).min()?;
    let mut names: Vec<&str> = scored
        .iter()
        .filter(|(d, _)| *d == best)
        .map(|(_, c)| *c)
        .collect();
    names.sort_unstable();
    names.dedup();
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    Some(match quoted.as_slice() {
        [one] => format!("did you mean {one}?"),
        [init @ .., last] => format!("did you mean {} or {last}?", init.join(", ")),
        [] => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let fields = ["device", "session", "subject"];
        assert_eq!(
            did_you_mean("devce", fields).as_deref(),
            Some("did you mean `device`?")
        );
        assert_eq!(did_you_mean("network", fields), None);
        assert_eq!(
            did_you_mean("aal4", ["aal1", "aal2", "aal3"]).as_deref(),
            Some("did you mean `aal1`, `aal2` or `aal3`?")
        );
    }

    #[test]
    fn codes_are_kebab_case_alike_in_text_and_json_and_documented() {
        let page = include_str!("../../docs/src/reference/diagnostics.md");
        for code in Code::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
            assert!(
                page.contains(&format!("| `{code}` |")),
                "docs/src/reference/diagnostics.md lacks `{code}`"
            );
        }
        let distinct: std::collections::HashSet<&str> =
            Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(distinct.len(), Code::ALL.len());
    }

    #[test]
    fn renders_caret_under_the_span() {
        let file = SourceFile {
            path: PathBuf::from("p.yaml"),
            text: "rules:\n  - when: \"devce.trusted\"\n".into(),
        };
        let d = Diagnostic::error(Code::UnknownVariable, "unknown variable `devce`")
            .at(
                &file,
                Location {
                    line: 2,
                    column: 12,
                    len: 5,
                },
            )
            .rule("r1")
            .help("did you mean `device`?");
        let text = d.to_string();
        assert_eq!(
            text,
            "error: unknown variable `devce` (in `r1`) [unknown-variable]\n --> p.yaml:2:12\n  |\n2 |   - when: \"devce.trusted\"\n  |            ^^^^^\n  = help: did you mean `device`?"
        );
    }

    #[test]
    fn line_index_finds_the_lines_that_lines_splits() {
        for text in [
            "",
            "\n",
            "\n\n",
            "a",
            "a\n",
            "a\nb",
            "a\r\nb\r\n",
            "a\r",
            "a\n\nb\n\n",
            "\r\n",
            "é\nü\r\n",
        ] {
            let index = LineIndex::new(text);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(index.count(text), lines.len(), "{text:?}");
            for n in 0..lines.len() + 3 {
                let expected = n.checked_sub(1).and_then(|k| lines.get(k).copied());
                assert_eq!(index.line(text, n), expected, "{text:?} line {n}");
            }
        }
    }
}
