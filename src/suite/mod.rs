//! Policy tests (`stepup test`): suites of cases in `*_test.yaml` files that
//! decide a request at a fixed clock and compare the decision with what the
//! author expects, and coverage (the rules and signals no case exercised).
//!
//! A suite names its `fixtures` (partial requests) and its `cases`; a case
//! starts from fixtures, deep-merges its own `request` over them, and lists
//! what it `expect`s: the outcome, and optionally the requirements, risk
//! score, fired signals, matched rules (`reasons`), failed conditions
//! (`errors`) and matched shadow rules. Unlisted fields are not checked.

pub mod parse;
mod render;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::engine::{self, Decision, Outcome, TraceEntry};
use crate::history::config::Secret;
use crate::history::signals::{Effect, Mark, RiskLevel, Signal};
use crate::history::{Enabled, History, HistoryConfig, Lazy, StepUpReport};
use crate::policy::PolicySet;
use crate::policy::diag::{Code, Diagnostic, Location, Report, SourceFile};
use crate::proto::v1::DecideRequest;

pub use parse::suite_files;
pub use render::{json_report, junit, text};

/// A test suite: one YAML document of a `*_test.yaml` file.
#[derive(Debug)]
pub struct Suite {
    /// Its `name`.
    pub name: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// The cases, in file order.
    pub cases: Vec<Case>,
}

/// One test case: a request, a clock, and what the decision must be.
#[derive(Debug)]
pub struct Case {
    /// Its `name`, unique in the suite.
    pub name: String,
    /// The suite's name.
    pub suite: String,
    /// The line of its `name`.
    pub line: usize,
    name_at: Location,
    /// The decision's clock (`now`, or the request's `time` when set).
    pub now: DateTime<Utc>,
    /// The request: the fixtures with the case's `request` merged over them.
    pub request: DecideRequest,
    /// What happened before (`history`): replayed into a fresh history that
    /// the case's decision then reads. Empty: `history` reads as a subject
    /// never seen.
    pub history: Vec<Prior>,
    /// What the decision must show.
    pub expect: Expect,
}

/// An event before a case's decision.
#[derive(Debug)]
pub enum Prior {
    /// An earlier decision of this request (recorded in the history).
    Decide {
        /// The request.
        request: Box<DecideRequest>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A step-up report for the case's subject, session and device.
    StepUp {
        /// When.
        at: DateTime<Utc>,
        /// Passed (the device becomes known, the session is elevated to the
        /// strongest level) or failed.
        success: bool,
    },
    /// A Shared Signals event about the case's subject (one of
    /// [`SIGNALS`]), as the receiver applies it.
    Signal {
        /// When the event happened.
        at: DateTime<Utc>,
        /// Which.
        name: String,
        /// The request whose session and device it is about, when not the
        /// case's.
        about: Option<Box<DecideRequest>>,
    },
}

/// The Shared Signals events a case's `history` can hold, by name:
/// `session-revoked` (the case's session), `assurance-decrease` (ends the
/// session's elevation), `credential-change`, `device-compliant` and
/// `device-not-compliant` (the case's device), `risk-low`, `risk-medium`,
/// `risk-high`.
pub const SIGNALS: &[&str] = &[
    "session-revoked",
    "assurance-decrease",
    "credential-change",
    "device-compliant",
    "device-not-compliant",
    "risk-low",
    "risk-medium",
    "risk-high",
];

/// The effect of the signal `name` for `request`'s session and device;
/// `None` when it needs a device the request does not name.
fn signal_effect(history: &History, request: &DecideRequest, name: &str) -> Option<Effect> {
    let k = history.keyer();
    let session = request
        .session
        .as_ref()
        .filter(|s| !s.id.is_empty())
        .map(|s| k.session(&s.id));
    let device = request
        .device
        .as_ref()
        .filter(|d| !d.id.is_empty())
        .map(|d| k.device(&d.id));
    Some(match name {
        "session-revoked" => Effect::SessionRevoked { session },
        "assurance-decrease" => Effect::LevelLowered { session },
        "credential-change" => Effect::CredentialChanged,
        "device-compliant" => Effect::DeviceCompliance {
            device: device?,
            compliant: true,
        },
        "device-not-compliant" => Effect::DeviceCompliance {
            device: device?,
            compliant: false,
        },
        "risk-low" => Effect::RiskLevel(RiskLevel::Low),
        "risk-medium" => Effect::RiskLevel(RiskLevel::Medium),
        _ => Effect::RiskLevel(RiskLevel::High),
    })
}

/// Replays `prior` into a fresh history (a fixed hash key, every decision
/// recorded) for `request`'s subject.
fn replay_history(set: &Arc<PolicySet>, request: &DecideRequest, prior: &[Prior]) -> History {
    let history = History::new(HistoryConfig {
        enabled: Enabled::On,
        hash_key: Some(Secret("stepup test".to_owned())),
        ..HistoryConfig::default()
    });
    for (i, p) in prior.iter().enumerate() {
        match p {
            Prior::Signal { at, name, about } => {
                let subject = request.subject.as_ref();
                let about = about.as_deref().unwrap_or(request);
                if let Some(effect) = signal_effect(&history, about, name) {
                    history.signal(Signal {
                        subject: history.keyer().subject(
                            subject.map_or("", |s| &s.tenant),
                            subject.map_or("", |s| &s.id),
                        ),
                        effect,
                        mark: Mark {
                            at: at.timestamp_millis(),
                            jti: Arc::from(format!("history[{i}]")),
                        },
                    });
                }
            }
            Prior::Decide { request, at } => {
                let lazy = Lazy::new(Some(&history), set, request, *at);
                let d = engine::decide(Arc::clone(set), request, *at, &lazy, false);
                history.record(request, &d, *at, None);
            }
            Prior::StepUp { at, success } => {
                let k = history.keyer();
                let subject = request.subject.as_ref();
                let ms = at.timestamp_millis();
                history.report(StepUpReport {
                    subject: k.subject(
                        subject.map_or("", |s| &s.tenant),
                        subject.map_or("", |s| &s.id),
                    ),
                    session: request
                        .session
                        .as_ref()
                        .filter(|s| !s.id.is_empty())
                        .map(|s| k.session(&s.id)),
                    device: request
                        .device
                        .as_ref()
                        .filter(|d| !d.id.is_empty())
                        .map(|d| k.device(&d.id)),
                    acr: set.levels.last().and_then(|l| l.acr.first()).cloned(),
                    amr: Vec::new(),
                    auth_time: ms,
                    at: ms,
                    success: *success,
                });
            }
        }
    }
    history
}

/// What a case expects; `None` fields are not checked.
#[derive(Debug)]
pub struct Expect {
    /// The outcome (always checked).
    pub outcome: Outcome,
    /// The unmet requirements of a challenge, in any order.
    pub requirements: Option<Vec<ExpectedRequirement>>,
    /// The risk score, exact or a range.
    pub risk_score: Option<ScoreRange>,
    /// The ids of the signals that fired, in any order.
    pub signals: Option<Vec<String>>,
    /// The ids of the enforced rules that matched, in any order.
    pub reasons: Option<Vec<String>>,
    /// The ids of the signals and rules whose condition failed.
    pub errors: Option<Vec<String>>,
    /// The ids of the shadow rules that matched.
    pub shadow: Option<Vec<String>>,
}

/// An expected requirement; only the fields given are compared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpectedRequirement {
    /// The rule asking for it.
    pub rule: Option<String>,
    /// The level's name.
    pub level: Option<String>,
    /// The acceptable methods, in any order.
    pub methods: Option<Vec<String>>,
    /// The freshness.
    pub max_age: Option<Duration>,
}

/// An inclusive range of risk scores (`min == max` for an exact score).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScoreRange {
    /// Lowest accepted score.
    pub min: u32,
    /// Highest accepted score.
    pub max: u32,
}

/// Loads every suite under `dir`, checked against `set`. On success the
/// report holds the warnings; on failure, every problem.
pub fn load(dir: &Path, set: &PolicySet) -> Result<(Vec<Suite>, Report), Report> {
    let mut report = Report::default();
    let files = match suite_files(dir) {
        Ok(files) => files,
        Err(e) => {
            report.push(
                Diagnostic::error(
                    Code::UnreadableFile,
                    format!("cannot read test directory `{}`: {e}", dir.display()),
                )
                .help("pass the policy directory holding the `*_test.yaml` suites"),
            );
            return Err(report);
        }
    };
    if files.is_empty() {
        report.push(
            Diagnostic::error(
                Code::NoTestSuites,
                format!("no test suites in `{}`", dir.display()),
            )
            .help("test suites are files named `*_test.yaml` next to (or under) the policies"),
        );
        return Err(report);
    }
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push(SourceFile { path, text }),
            Err(e) => report.push(
                Diagnostic::error(Code::UnreadableFile, format!("cannot read test suite: {e}"))
                    .in_file(&path),
            ),
        }
    }
    read_suites(&sources, set, report)
}

/// Reads the suites of files held in memory (the playground's edited
/// `*_test.yaml` files), checked against `set` as [`load`] checks them.
pub fn load_sources(files: &[SourceFile], set: &PolicySet) -> Result<(Vec<Suite>, Report), Report> {
    read_suites(files, set, Report::default())
}

fn read_suites(
    files: &[SourceFile],
    set: &PolicySet,
    mut report: Report,
) -> Result<(Vec<Suite>, Report), Report> {
    let names = parse::Names::of(set);
    let mut suites: Vec<Suite> = Vec::new();
    for file in files {
        for suite in parse::read_file(file, &names, &mut report) {
            if let Some(first) = suites.iter().find(|s| s.name == suite.name) {
                report.push(
                    Diagnostic::warning(
                        Code::DuplicateSuite,
                        format!("two suites are named `{}`", suite.name),
                    )
                        .in_file(&suite.file)
                        .help(format!(
                            "the first is in `{}`; distinct names keep `--filter` and JUnit reports unambiguous",
                            first.file.display()
                        )),
                );
            }
            suites.push(suite);
        }
    }
    if report.has_errors() {
        Err(report)
    } else {
        Ok((suites, report))
    }
}

/// Selects cases by `suite › case`: a glob when the pattern holds `*`
/// (matching the whole name), else a substring.
#[derive(Clone, Debug)]
pub struct Filter {
    pattern: String,
}

impl Filter {
    /// A filter for `pattern`.
    pub fn new(pattern: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
        }
    }

    /// Whether the case `name` (`suite › case`) is selected.
    pub fn matches(&self, name: &str) -> bool {
        if self.pattern.contains('*') {
            crate::glob::matches(&self.pattern, name)
        } else {
            name.contains(&self.pattern)
        }
    }
}

/// A case's full name as shown and filtered: `suite › case`.
pub fn full_name(case: &Case) -> String {
    format!("{} › {}", case.suite, case.name)
}

/// A requirement of an actual decision.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ActualRequirement {
    /// The rule asking for it.
    pub rule: String,
    /// The level's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The acceptable methods.
    pub methods: Vec<String>,
    /// The freshness, as policies write it (`5m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    #[serde(skip)]
    max_age_value: Option<Duration>,
}

/// A decision, in the terms of a case's `expect`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Actual {
    /// The outcome.
    pub outcome: Outcome,
    /// The unmet requirements (empty unless the outcome is a challenge).
    pub requirements: Vec<ActualRequirement>,
    /// The risk score.
    pub risk_score: u32,
    /// Fired signals.
    pub signals: Vec<String>,
    /// Matched enforced rules.
    pub reasons: Vec<String>,
    /// Signals and rules whose condition failed, with why.
    pub errors: Vec<engine::EvalError>,
    /// Matched shadow rules.
    pub shadow: Vec<String>,
}

impl Actual {
    fn of(d: &Decision) -> Self {
        let policy = &d.policy;
        let rule_id = |i: &usize| policy.rules.get(*i).map(|r| r.id.to_string());
        Self {
            outcome: d.outcome,
            requirements: d
                .unmet
                .iter()
                .filter_map(|i| {
                    let rule = policy.rules.get(*i)?;
                    let r = rule.requirement.as_ref()?;
                    Some(ActualRequirement {
                        rule: rule.id.to_string(),
                        level: r
                            .level
                            .and_then(|l| policy.levels.get(l))
                            .map(|l| l.name.to_string()),
                        methods: r.methods.iter().map(|m| m.to_string()).collect(),
                        max_age: r.max_age.map(crate::duration::format_duration),
                        max_age_value: r.max_age,
                    })
                })
                .collect(),
            risk_score: d.assessment.risk_score,
            signals: d.assessment.signals.iter().map(|s| s.to_string()).collect(),
            reasons: d.assessment.matched.iter().filter_map(rule_id).collect(),
            errors: d.assessment.errors.clone(),
            shadow: d.shadow.iter().filter_map(|s| rule_id(&s.rule)).collect(),
        }
    }
}

/// One compared field of a case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    /// The `expect` key.
    pub field: &'static str,
    /// What the case expects.
    pub expected: Value,
    /// What the decision shows.
    pub actual: Value,
    /// Whether they agree.
    pub ok: bool,
}

/// The result of one case.
#[derive(Debug)]
pub struct CaseResult<'s> {
    /// The case.
    pub case: &'s Case,
    /// The file of its suite.
    pub file: &'s Path,
    /// Every checked field, `outcome` first.
    pub checks: Vec<Check>,
    /// The decision.
    pub actual: Actual,
    /// The explanation of the decision: the signals and the rules the
    /// action selected.
    pub trace: Vec<TraceEntry>,
    /// The rules the action did not select (left out of `trace`).
    pub not_considered: Vec<String>,
    /// How long the decision took.
    pub elapsed: Duration,
}

impl CaseResult<'_> {
    /// Whether every check agrees.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// How often each rule matched and each signal fired over the cases run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Coverage {
    /// Per rule, in policy order: the cases that matched it.
    pub rules: Vec<Covered>,
    /// Per signal, in policy order: the cases in which it fired.
    pub signals: Vec<Covered>,
}

/// A rule or signal and how many cases exercised it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Covered {
    /// Its id.
    pub id: String,
    /// How many cases matched or fired it.
    pub cases: usize,
}

impl Coverage {
    /// The rules no case matched.
    pub fn unmatched_rules(&self) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|c| c.cases == 0)
            .map(|c| c.id.as_str())
            .collect()
    }

    /// The signals that fired in no case.
    pub fn unfired_signals(&self) -> Vec<&str> {
        self.signals
            .iter()
            .filter(|c| c.cases == 0)
            .map(|c| c.id.as_str())
            .collect()
    }
}

/// The results of a run.
#[derive(Debug)]
pub struct RunReport<'s> {
    /// One per case run, in suite and file order.
    pub results: Vec<CaseResult<'s>>,
    /// What the cases run exercised.
    pub coverage: Coverage,
    /// The policy set's revision.
    pub revision: String,
}

impl RunReport<'_> {
    /// How many cases passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed()).count()
    }

    /// How many cases failed.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// The summary line: `N passed, M failed`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Runs the cases `filter` selects (all without one) under `set`.
pub fn run<'s>(
    set: &Arc<PolicySet>,
    suites: &'s [Suite],
    filter: Option<&Filter>,
) -> RunReport<'s> {
    let mut coverage = Coverage {
        rules: set
            .rules
            .iter()
            .map(|r| Covered {
                id: r.id.to_string(),
                cases: 0,
            })
            .collect(),
        signals: set
            .signals
            .iter()
            .map(|s| Covered {
                id: s.id.to_string(),
                cases: 0,
            })
            .collect(),
    };
    let mut results = Vec::new();
    for suite in suites {
        for case in &suite.cases {
            if filter.is_some_and(|f| !f.matches(&full_name(case))) {
                continue;
            }
            let start = Instant::now();
            let decision = decide_case(set, case);
            let elapsed = start.elapsed();
            let a = &decision.assessment;
            for i in a.matched.iter().chain(&a.shadow) {
                if let Some(c) = coverage.rules.get_mut(*i) {
                    c.cases += 1;
                }
            }
            for (c, s) in coverage.signals.iter_mut().zip(&set.signals) {
                if a.signals.contains(&s.id) {
                    c.cases += 1;
                }
            }
            let mut candidates = Vec::new();
            set.index.lookup(&case.request.action, &mut candidates);
            let considered = |id: &str| {
                candidates
                    .iter()
                    .any(|i| set.rules.get(*i).is_some_and(|r| &*r.id == id))
            };
            let (trace, skipped): (Vec<TraceEntry>, Vec<TraceEntry>) = decision
                .trace
                .iter()
                .cloned()
                .partition(|t| t.kind != engine::TraceKind::Rule || considered(&t.id));
            let actual = Actual::of(&decision);
            results.push(CaseResult {
                case,
                file: &suite.file,
                checks: compare(&case.expect, &actual),
                actual,
                trace,
                not_considered: skipped.into_iter().map(|t| t.id.to_string()).collect(),
                elapsed,
            });
        }
    }
    RunReport {
        results,
        coverage,
        revision: set.revision.to_string(),
    }
}

/// Decides `case` under `set` as the suite runner does: its `history`
/// replayed into a fresh history that the decision reads, with the trace.
pub fn decide_case(set: &Arc<PolicySet>, case: &Case) -> Decision {
    if case.history.is_empty() {
        crate::cache::decide_with(Arc::clone(set), None, &case.request, case.now, true)
    } else {
        let history = replay_history(set, &case.request, &case.history);
        let elevated = history.elevate(set, &case.request, case.now);
        let request = elevated.as_ref().unwrap_or(&case.request);
        let lazy = Lazy::new(Some(&history), set, request, case.now);
        engine::decide(Arc::clone(set), request, case.now, &lazy, true)
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Allow => "allow",
        Outcome::Challenge => "challenge",
        Outcome::Deny => "deny",
    }
}

fn same_set(expected: &[String], actual: &[String]) -> bool {
    let mut e: Vec<&str> = expected.iter().map(String::as_str).collect();
    let mut a: Vec<&str> = actual.iter().map(String::as_str).collect();
    e.sort_unstable();
    e.dedup();
    a.sort_unstable();
    a.dedup();
    e == a
}

fn requirement_matches(e: &ExpectedRequirement, a: &ActualRequirement) -> bool {
    e.rule.as_ref().is_none_or(|r| *r == a.rule)
        && e.level.as_ref().is_none_or(|l| a.level.as_ref() == Some(l))
        && e.methods.as_ref().is_none_or(|m| same_set(m, &a.methods))
        && e.max_age.is_none_or(|m| a.max_age_value == Some(m))
}

/// Whether every expected requirement pairs with a distinct actual one and
/// none is left over (a small backtracking search: lists are short).
fn requirements_match(expected: &[ExpectedRequirement], actual: &[ActualRequirement]) -> bool {
    fn assign(
        expected: &[ExpectedRequirement],
        actual: &[ActualRequirement],
        used: &mut Vec<bool>,
    ) -> bool {
        let Some((first, rest)) = expected.split_first() else {
            return true;
        };
        for (i, a) in actual.iter().enumerate() {
            if used.get(i).copied().unwrap_or(true) || !requirement_matches(first, a) {
                continue;
            }
            if let Some(u) = used.get_mut(i) {
                *u = true;
            }
            if assign(rest, actual, used) {
                return true;
            }
            if let Some(u) = used.get_mut(i) {
                *u = false;
            }
        }
        false
    }
    expected.len() == actual.len() && assign(expected, actual, &mut vec![false; actual.len()])
}

fn expected_requirement_json(r: &ExpectedRequirement) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(rule) = &r.rule {
        m.insert("rule".into(), json!(rule));
    }
    if let Some(level) = &r.level {
        m.insert("level".into(), json!(level));
    }
    if let Some(methods) = &r.methods {
        m.insert("methods".into(), json!(methods));
    }
    if let Some(max_age) = r.max_age {
        m.insert(
            "max_age".into(),
            json!(crate::duration::format_duration(max_age)),
        );
    }
    Value::Object(m)
}

fn compare(expect: &Expect, actual: &Actual) -> Vec<Check> {
    let mut checks = vec![Check {
        field: "outcome",
        expected: json!(outcome_name(expect.outcome)),
        actual: json!(outcome_name(actual.outcome)),
        ok: expect.outcome == actual.outcome,
    }];
    if let Some(r) = &expect.requirements {
        checks.push(Check {
            field: "requirements",
            expected: Value::Array(r.iter().map(expected_requirement_json).collect()),
            actual: json!(actual.requirements),
            ok: requirements_match(r, &actual.requirements),
        });
    }
    if let Some(range) = expect.risk_score {
        checks.push(Check {
            field: "risk_score",
            expected: if range.min == range.max {
                json!(range.min)
            } else {
                json!({ "min": range.min, "max": range.max })
            },
            actual: json!(actual.risk_score),
            ok: (range.min..=range.max).contains(&actual.risk_score),
        });
    }
    let error_ids: Vec<String> = actual.errors.iter().map(|e| e.id.to_string()).collect();
    let lists = [
        (
            "signals",
            expect.signals.as_deref(),
            actual.signals.as_slice(),
        ),
        (
            "reasons",
            expect.reasons.as_deref(),
            actual.reasons.as_slice(),
        ),
        ("errors", expect.errors.as_deref(), error_ids.as_slice()),
        ("shadow", expect.shadow.as_deref(), actual.shadow.as_slice()),
    ];
    for (field, expected, actual) in lists {
        if let Some(e) = expected {
            checks.push(Check {
                field,
                expected: json!(e),
                actual: json!(actual),
                ok: same_set(e, actual),
            });
        }
    }
    checks
}

#[cfg(test)]
mod tests;
