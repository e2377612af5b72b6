//! What the policy files define, as read and before compilation: levels,
//! signals and rules with where each was written, and the files themselves
//! (kept for diagnostics).

use std::sync::OnceLock;
use std::time::Duration;

use super::diag::{Code, Diagnostic, LineIndex, Location, SourceFile};

/// The `apiVersion` every document must carry.
pub const API_VERSION: &str = "stepup/v1";

/// A string from a policy file and where it was written.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Index of the file in [`Sources`].
    pub file: usize,
    /// Where the value starts.
    pub location: Location,
}

/// The files a policy set was read from, kept for diagnostics.
#[derive(Debug, Default)]
pub struct Sources {
    /// In the order read (sorted by path).
    pub files: Vec<SourceFile>,
    /// The files' line indexes, made when the first diagnostic is placed
    /// (after every file is read).
    lines: OnceLock<Box<[LineIndex]>>,
}

impl Sources {
    /// A diagnostic placed at `spanned`.
    pub fn error_at<T>(
        &self,
        spanned: &Spanned<T>,
        code: Code,
        message: impl Into<String>,
    ) -> Diagnostic {
        self.place(
            Diagnostic::error(code, message),
            spanned.file,
            spanned.location,
        )
    }

    /// Places `diagnostic` at `location` in file number `file`.
    pub fn place(&self, diagnostic: Diagnostic, file: usize, location: Location) -> Diagnostic {
        match self.files.get(file) {
            Some(f) => diagnostic.at_line(f, location, self.line(file, location.line)),
            None => diagnostic,
        }
    }

    /// The text of 1-based `line` of `file`, as [`SourceFile::line`].
    pub fn line(&self, file: usize, line: usize) -> Option<&str> {
        let f = self.files.get(file)?;
        match self.index(file) {
            Some(index) => index.line(&f.text, line),
            None => f.line(line),
        }
    }

    /// How many lines `file` has.
    pub fn line_count(&self, file: usize) -> usize {
        match (self.files.get(file), self.index(file)) {
            (Some(f), Some(index)) => index.count(&f.text),
            (Some(f), None) => f.text.lines().count(),
            (None, _) => 0,
        }
    }

    /// `file`'s line index; `None` for a file added after the indexes were
    /// made (then lines are counted from the start).
    fn index(&self, file: usize) -> Option<&LineIndex> {
        self.lines
            .get_or_init(|| self.files.iter().map(|f| LineIndex::new(&f.text)).collect())
            .get(file)
    }
}

/// One level of the assurance ladder.
#[derive(Debug)]
pub struct LevelDef {
    /// Its name, e.g. `aal2`.
    pub name: Spanned<String>,
    /// The acr values that count as this level.
    pub acr: Vec<Spanned<String>>,
}

/// A `kind: Levels` document.
#[derive(Debug)]
pub struct LevelsDef {
    /// Weakest first.
    pub levels: Vec<LevelDef>,
    /// Where the document's `kind` is, for "more than one" errors.
    pub at: Spanned<()>,
}

/// A risk signal.
#[derive(Debug)]
pub struct SignalDef {
    /// Unique id.
    pub id: Spanned<String>,
    /// CEL condition (absent only when the definition has errors).
    pub when: Option<Spanned<String>>,
    /// Score added when `when` is true (may be negative).
    pub score: i64,
    /// `dynamic_regex: true`: `matches()` may take its pattern from the
    /// request.
    pub dynamic_regex: bool,
    /// False when the definition had errors (already reported): it is still
    /// checked further, so that one pass reports everything, but not used.
    pub valid: bool,
}

/// What a rule does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Step up first.
    Challenge,
    /// Refuse.
    Deny,
}

impl Effect {
    /// The wire form.
    pub fn to_proto(self) -> crate::proto::v1::Effect {
        match self {
            Effect::Challenge => crate::proto::v1::Effect::Challenge,
            Effect::Deny => crate::proto::v1::Effect::Deny,
        }
    }
}

/// Whether a rule's effect counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The rule decides.
    Enforce,
    /// The rule is evaluated and its would-be effect reported, but it does not
    /// change the outcome (report-only, to roll out a new rule safely).
    Shadow,
}

/// A challenge rule's requirement.
#[derive(Debug, Default)]
pub struct RequireDef {
    /// Level name.
    pub level: Option<Spanned<String>>,
    /// Acceptable amr values.
    pub methods: Vec<String>,
    /// Freshness.
    pub max_age: Option<Duration>,
    /// False when a field had errors (already reported).
    pub valid: bool,
}

/// A rule.
#[derive(Debug)]
pub struct RuleDef {
    /// Unique id.
    pub id: Spanned<String>,
    /// For people.
    pub description: Option<String>,
    /// Action names or globs.
    pub actions: Vec<Spanned<String>>,
    /// Optional CEL condition.
    pub when: Option<Spanned<String>>,
    /// Challenge or deny.
    pub effect: Effect,
    /// For challenge rules.
    pub require: Option<RequireDef>,
    /// For the end user.
    pub message: Option<String>,
    /// `enforce` or `shadow` (report-only); `None` means the policy's mode,
    /// else enforce.
    pub mode: Option<Mode>,
    /// `dynamic_regex: true`: `matches()` may take its pattern from the
    /// request.
    pub dynamic_regex: bool,
    /// False when the definition had errors (already reported): it is still
    /// checked further, so that one pass reports everything, but not used.
    pub valid: bool,
}

/// Everything read from a policy directory, before compilation.
#[derive(Debug, Default)]
pub struct Definitions {
    /// The files.
    pub sources: Sources,
    /// Every `Levels` document (exactly one is valid).
    pub levels: Vec<LevelsDef>,
    /// Signals in file order.
    pub signals: Vec<SignalDef>,
    /// Rules in file order.
    pub rules: Vec<RuleDef>,
}
