//! Replaying recorded traffic under a candidate policy set (`stepup
//! replay`): "what would this policy change do to last week's requests?"
//!
//! The input is JSON lines, each a bare `DecideRequest` or an object with
//! the `request`, the `decision` that was made and its `time` (the decision
//! log's line format; other fields are ignored). Every request is decided
//! under the candidate set at its recorded clock and compared with the
//! recorded decision, or with a decision under a baseline set. Lines are
//! parsed one at a time into a reused buffer, so a log of any size streams.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Value, json};

use crate::cache::{CacheConfig, DecisionCache};
use crate::engine::{Decision, Outcome};
use crate::policy::PolicySet;
use crate::proto::v1::DecideRequest;

/// What the candidate's decisions are compared with.
#[derive(Debug)]
pub enum Baseline {
    /// The decisions recorded in the input lines.
    Recorded,
    /// Decisions under another policy set (e.g. the one in production).
    Set(Arc<PolicySet>),
}

/// Settings of a replay.
#[derive(Clone, Copy, Debug)]
pub struct ReplayOptions {
    /// Examples kept per outcome change.
    pub examples: usize,
    /// The clock of lines that record no time.
    pub now: DateTime<Utc>,
    /// Decision cache entries per policy set (0: no cache, the default).
    /// Answers do not depend on it. On varied traffic it costs more than
    /// it saves (measured: 123k lines/s without, 66k with, on one core);
    /// it pays off only for logs of many identical requests.
    pub cache: u64,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            examples: 3,
            now: Utc::now(),
            cache: 0,
        }
    }
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The input's name.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a request or a recorded decision.
    #[error("{}", render_line_error(path, *line, problem))]
    Line {
        /// The input's name.
        path: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong, and where in the line.
        problem: Box<LineProblem>,
    },
}

/// What is wrong with an input line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineProblem {
    /// The message: lowercase, one line.
    pub message: String,
    /// 1-based column (in characters) of the problem, when known.
    pub column: Option<usize>,
    /// How to fix it.
    pub help: Option<String>,
    /// The part of the line around the column, and the caret's 0-based
    /// position in it.
    pub excerpt: Option<(String, usize)>,
}

impl LineProblem {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            column: None,
            help: None,
            excerpt: None,
        }
    }

    /// From a JSON error in `text`: the column, an excerpt with a caret,
    /// and a did-you-mean for an unknown field.
    fn json(what: &str, e: &serde_json::Error, text: &str) -> Self {
        let raw = e.to_string();
        let message = raw
            .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
            .unwrap_or(&raw);
        // serde_json's column is the bytes read on the line, one past the
        // offending token when it had to see a delimiter (numbers).
        let mut at = e.column().saturating_sub(1).min(text.len());
        let unknown = crate::suite::unknown_field(message);
        match &unknown {
            // Point at the key, not past it.
            Some((word, _)) => {
                if let Some(start) = text
                    .get(..at.saturating_add(1).min(text.len()))
                    .and_then(|t| t.rfind(&format!("\"{word}\"")))
                {
                    at = start;
                }
            }
            None => {
                if at > 0
                    && text
                        .get(at..)
                        .and_then(|t| t.chars().next())
                        .is_some_and(|c| matches!(c, ',' | '}' | ']') || c.is_whitespace())
                {
                    at -= 1;
                }
            }
        }
        Self::at(format!("{what}: {message}"), text, at).with_help(unknown.and_then(
            |(word, fields)| {
                crate::policy::diag::did_you_mean(&word, fields.iter().map(String::as_str))
            },
        ))
    }

    /// A problem at byte `at` of `text`.
    fn at(message: String, text: &str, mut at: usize) -> Self {
        at = at.min(text.len());
        while at > 0 && !text.is_char_boundary(at) {
            at -= 1;
        }
        let col = text.get(..at).map_or(0, |t| t.chars().count());
        Self {
            message,
            column: Some(col + 1),
            help: None,
            excerpt: Some(excerpt(text, col)),
        }
    }

    fn with_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

/// Up to 50 characters before and 30 after char `col` of `text`, with
/// ellipses where cut, and the caret's position in the excerpt.
fn excerpt(text: &str, col: usize) -> (String, usize) {
    let chars: Vec<char> = text.chars().collect();
    let start = col.saturating_sub(50);
    let end = (col + 30).min(chars.len());
    let mut out = String::new();
    let mut caret = col - start;
    if start > 0 {
        out.push('…');
        caret += 1;
    }
    out.extend(chars.get(start..end).unwrap_or(&[]));
    if end < chars.len() {
        out.push('…');
    }
    (out, caret)
}

/// Renders a line problem like the policy diagnostics: the message, `-->
/// file:line:column`, the line (an excerpt) with a caret, and help.
fn render_line_error(path: &str, line: u64, p: &LineProblem) -> String {
    let mut out = p.message.clone();
    let gutter = line.to_string().len();
    let pad = " ".repeat(gutter);
    match p.column {
        Some(col) => out.push_str(&format!("\n{pad}--> {path}:{line}:{col}")),
        None => out.push_str(&format!("\n{pad}--> {path}:{line}")),
    }
    if let Some((text, caret)) = &p.excerpt {
        out.push_str(&format!(
            "\n{pad} |\n{line} | {text}\n{pad} | {}^",
            " ".repeat(*caret)
        ));
    }
    if let Some(help) = &p.help {
        out.push_str(&format!("\n{pad} = help: {help}"));
    }
    out
}

/// One decision, summarised for an example.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Side {
    /// The outcome (`None`: nothing recorded).
    pub outcome: Option<Outcome>,
    /// The matched rules.
    pub reasons: Vec<String>,
    /// For a challenge: the level and freshness asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
}

/// A request whose outcome changed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Example {
    /// 1-based line number in the input.
    pub line: u64,
    /// The request's action.
    pub action: String,
    /// The request's subject id.
    pub subject: String,
    /// The decision before (recorded or baseline).
    pub before: Side,
    /// The decision under the candidate set.
    pub after: Side,
}

/// All requests that went from one outcome to another.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Transition {
    /// The outcome before (`None`: nothing recorded).
    pub before: Option<Outcome>,
    /// The outcome under the candidate set.
    pub after: Outcome,
    /// How many requests.
    pub count: u64,
    /// Rules the candidate matched that did not match before, with counts
    /// (most frequent first).
    pub rules_added: Vec<(String, u64)>,
    /// Rules that matched before but not under the candidate.
    pub rules_removed: Vec<(String, u64)>,
    /// The first requests of this change.
    pub examples: Vec<Example>,
}

impl Transition {
    /// Whether the outcome changed.
    pub fn changed(&self) -> bool {
        self.before.is_some_and(|b| b != self.after)
    }
}

/// What a replay found.
#[derive(Clone, Debug)]
pub struct ReplayReport {
    /// The input's name.
    pub input: String,
    /// Requests decided.
    pub requests: u64,
    /// By `before -> after`, changes first, then by count.
    pub transitions: Vec<Transition>,
    /// Requests with the same outcome but a different set of matched rules
    /// (e.g. a new challenge rule the session already satisfies).
    pub rules_changed_only: u64,
    /// The candidate set's revision.
    pub candidate: String,
    /// The baseline set's revision, when deciding under one.
    pub baseline: Option<String>,
    /// Time spent reading and deciding.
    pub elapsed: Duration,
}

impl ReplayReport {
    /// Requests whose outcome changed.
    pub fn changed(&self) -> u64 {
        self.transitions
            .iter()
            .filter(|t| t.changed())
            .map(|t| t.count)
            .sum()
    }

    /// Requests per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }
}

/// Running totals of one `before -> after` pair.
#[derive(Default)]
struct Tally {
    count: u64,
    added: HashMap<String, u64>,
    removed: HashMap<String, u64>,
    examples: Vec<Example>,
}

fn slot(before: Option<Outcome>, after: Outcome) -> usize {
    let b = before.map_or(3, outcome_index);
    b * 3 + outcome_index(after)
}

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Allow => 0,
        Outcome::Challenge => 1,
        Outcome::Deny => 2,
    }
}

const OUTCOMES: [Outcome; 3] = [Outcome::Allow, Outcome::Challenge, Outcome::Deny];

/// The name of an outcome in reports.
pub fn outcome_name(o: Option<Outcome>) -> &'static str {
    match o {
        Some(Outcome::Allow) => "allow",
        Some(Outcome::Challenge) => "challenge",
        Some(Outcome::Deny) => "deny",
        None => "unrecorded",
    }
}

/// Replays every line of `input` (named `name` in errors) under
/// `candidate`.
pub fn replay(
    mut input: impl BufRead,
    name: &str,
    candidate: &Arc<PolicySet>,
    baseline: &Baseline,
    options: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let start = Instant::now();
    let cache_config = CacheConfig {
        capacity: options.cache,
        ..CacheConfig::default()
    };
    let candidate_cache = DecisionCache::new(cache_config);
    let baseline_cache = DecisionCache::new(cache_config);
    let mut tallies: Vec<Tally> = (0..12).map(|_| Tally::default()).collect();
    let mut rules_changed_only = 0;
    let mut buf = String::with_capacity(4096);
    let mut line_no: u64 = 0;
    let mut requests: u64 = 0;
    loop {
        buf.clear();
        let n = input
            .read_line(&mut buf)
            .map_err(|source| ReplayError::Read {
                path: name.to_owned(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = buf.trim();
        if text.is_empty() {
            continue;
        }
        let bad = |problem: LineProblem| ReplayError::Line {
            path: name.to_owned(),
            line: line_no,
            problem: Box::new(problem),
        };
        let line = parse_line(text).map_err(bad)?;
        let now = clock(&line, options.now).map_err(|m| bad(LineProblem::new(m)))?;
        let after = crate::cache::decide_with(
            Arc::clone(candidate),
            candidate_cache.as_ref(),
            &line.request,
            now,
            false,
        );
        requests += 1;
        let baseline_decision = match baseline {
            Baseline::Set(set) => Some(crate::cache::decide_with(
                Arc::clone(set),
                baseline_cache.as_ref(),
                &line.request,
                now,
                false,
            )),
            Baseline::Recorded => None,
        };
        let before_outcome = match &baseline_decision {
            Some(d) => Some(d.outcome),
            None => line.outcome,
        };
        let Some(tally) = tallies.get_mut(slot(before_outcome, after.outcome)) else {
            continue;
        };
        tally.count += 1;
        let before_ids: Vec<&str> = match &baseline_decision {
            Some(d) => matched_ids(d).collect(),
            None => line.reasons.iter().map(|r| &**r).collect(),
        };
        let changed = before_outcome.is_some_and(|b| b != after.outcome);
        if !changed {
            let same = before_outcome.is_none() || same_rules(&before_ids, &after);
            if !same {
                rules_changed_only += 1;
            }
            continue;
        }
        let after_ids: Vec<&str> = matched_ids(&after).collect();
        for id in after_ids.iter().filter(|id| !before_ids.contains(id)) {
            *tally.added.entry((*id).to_owned()).or_default() += 1;
        }
        for id in before_ids.iter().filter(|id| !after_ids.contains(id)) {
            *tally.removed.entry((*id).to_owned()).or_default() += 1;
        }
        if tally.examples.len() < options.examples {
            tally.examples.push(Example {
                line: line_no,
                action: line.request.action.clone(),
                subject: line
                    .request
                    .subject
                    .as_ref()
                    .map(|s| s.id.clone())
                    .unwrap_or_default(),
                before: Side {
                    outcome: before_outcome,
                    reasons: before_ids.iter().map(|s| (*s).to_owned()).collect(),
                    challenge: baseline_decision.as_ref().and_then(challenge_of),
                },
                after: Side {
                    outcome: Some(after.outcome),
                    reasons: after_ids.iter().map(|s| (*s).to_owned()).collect(),
                    challenge: challenge_of(&after),
                },
            });
        }
    }
    let mut transitions: Vec<Transition> = Vec::new();
    for (i, t) in tallies.into_iter().enumerate() {
        if t.count == 0 {
            continue;
        }
        let before = OUTCOMES.get(i / 3).copied();
        let Some(after) = OUTCOMES.get(i % 3).copied() else {
            continue;
        };
        transitions.push(Transition {
            before,
            after,
            count: t.count,
            rules_added: sorted(t.added),
            rules_removed: sorted(t.removed),
            examples: t.examples,
        });
    }
    transitions.sort_by(|a, b| b.changed().cmp(&a.changed()).then(b.count.cmp(&a.count)));
    Ok(ReplayReport {
        input: name.to_owned(),
        requests,
        transitions,
        rules_changed_only,
        candidate: candidate.revision.to_string(),
        baseline: match baseline {
            Baseline::Set(set) => Some(set.revision.to_string()),
            Baseline::Recorded => None,
        },
        elapsed: start.elapsed(),
    })
}

fn sorted(map: HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

fn matched_ids(d: &Decision) -> impl Iterator<Item = &str> {
    d.assessment
        .matched
        .iter()
        .filter_map(|i| d.policy.rules.get(*i))
        .map(|r| &*r.id)
}

/// Whether `before` holds exactly the rules `after` matched (no allocation:
/// both lists are short).
fn same_rules(before: &[&str], after: &Decision) -> bool {
    let mut n = 0;
    for id in matched_ids(after) {
        if !before.contains(&id) {
            return false;
        }
        n += 1;
    }
    n == before.len()
}

fn challenge_of(d: &Decision) -> Option<String> {
    if d.outcome != Outcome::Challenge {
        return None;
    }
    let mut parts = Vec::new();
    if let Some(level) = d.challenge_level.and_then(|l| d.policy.levels.get(l)) {
        parts.push(format!("level {}", level.name));
    }
    if let Some(max_age) = d.max_age {
        parts.push(format!(
            "max_age {}",
            crate::duration::format_duration(max_age)
        ));
    }
    Some(parts.join(", "))
}

/// One input line, parsed.
struct Line<'a> {
    request: DecideRequest,
    outcome: Option<Outcome>,
    reasons: Vec<Cow<'a, str>>,
    time: Option<Cow<'a, str>>,
}

/// A line of the decision-log shape; unknown fields are ignored so that
/// logs with more fields (latency, source, cache hit) replay as they are.
#[derive(serde::Deserialize)]
struct Wrapped<'a> {
    #[serde(default)]
    request: Option<DecideRequest>,
    #[serde(default, borrow)]
    decision: Option<Recorded<'a>>,
    #[serde(default, borrow)]
    time: Option<Cow<'a, str>>,
}

/// A recorded decision: the `DecideResponse` JSON (`"outcome":
/// "OUTCOME_CHALLENGE"`, `"reasons": [{"ruleId": ...}]`) or a short form
/// (`"outcome": "challenge"`, `"reasons": ["rule-id"]`).
#[derive(serde::Deserialize)]
struct Recorded<'a> {
    #[serde(default, borrow)]
    outcome: Option<RecordedOutcome<'a>>,
    #[serde(default, borrow)]
    reasons: Vec<RuleRef<'a>>,
}

struct RecordedOutcome<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for RecordedOutcome<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RecordedOutcome<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an outcome name or number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RecordedOutcome(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RecordedOutcome(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(RecordedOutcome(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RecordedOutcome(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A rule named in a recorded decision: `"id"` or `{"ruleId": "id", ...}`.
struct RuleRef<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for RuleRef<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RuleRef<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a rule id or an object with `ruleId`")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RuleRef(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RuleRef(Cow::Owned(v.to_owned())))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut id: Option<Cow<'de, str>> = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if matches!(&*key, "ruleId" | "rule_id" | "rule" | "id") && id.is_none() {
                        id = Some(map.next_value::<Cow<'de, str>>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                id.map(RuleRef)
                    .ok_or_else(|| de::Error::missing_field("ruleId"))
            }
        }
        d.deserialize_any(V)
    }
}

fn parse_outcome(text: &str) -> Option<Outcome> {
    let t = text.trim();
    let t = t
        .strip_prefix("OUTCOME_")
        .or_else(|| t.strip_prefix("outcome_"))
        .unwrap_or(t);
    match t {
        "1" => return Some(Outcome::Allow),
        "2" => return Some(Outcome::Challenge),
        "3" => return Some(Outcome::Deny),
        _ => {}
    }
    if t.eq_ignore_ascii_case("allow") {
        Some(Outcome::Allow)
    } else if t.eq_ignore_ascii_case("challenge") {
        Some(Outcome::Challenge)
    } else if t.eq_ignore_ascii_case("deny") {
        Some(Outcome::Deny)
    } else {
        None
    }
}

/// Parses a line: the decision-log shape when it has a `request`, else a
/// bare request. Only lines mentioning `"request"` try the first (a bare
/// request never has that key), so bare lines are parsed once.
fn parse_line(text: &str) -> Result<Line<'_>, LineProblem> {
    if text.contains("\"request\"") {
        let w: Wrapped<'_> = serde_json::from_str(text).map_err(|e| {
            LineProblem::json(
                "not a recorded decision (`request`, `decision`, `time`)",
                &e,
                text,
            )
        })?;
        if let Some(request) = w.request {
            let (outcome, reasons) = match w.decision {
                Some(d) => {
                    let outcome = match d.outcome {
                        Some(RecordedOutcome(o)) => Some(parse_outcome(&o).ok_or_else(|| {
                            let message = format!("unknown outcome `{o}` in the recorded decision");
                            let at = text
                                .find("\"outcome\"")
                                .and_then(|k| Some(k + text.get(k..)?.find(&*o)?));
                            match at {
                                Some(at) => LineProblem::at(message, text, at),
                                None => LineProblem::new(message),
                            }
                            .with_help(Some(
                                "use `allow`, `challenge` or `deny` (or `OUTCOME_ALLOW`...)"
                                    .to_owned(),
                            ))
                        })?),
                        None => None,
                    };
                    (outcome, d.reasons.into_iter().map(|r| r.0).collect())
                }
                None => (None, Vec::new()),
            };
            return Ok(Line {
                request,
                outcome,
                reasons,
                time: w.time,
            });
        }
    }
    let request: DecideRequest = serde_json::from_str(text).map_err(|e| {
        LineProblem::json(
            "not a DecideRequest in JSON form, nor an object with one in `request`",
            &e,
            text,
        )
    })?;
    Ok(Line {
        request,
        outcome: None,
        reasons: Vec::new(),
        time: None,
    })
}

/// The line's clock: the request's `time`, else the recorded `time`, else
/// `default`.
fn clock(line: &Line<'_>, default: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Some(t) = &line.request.time {
        return u32::try_from(t.nanos)
            .ok()
            .and_then(|n| DateTime::from_timestamp(t.seconds, n))
            .ok_or_else(|| "`request.time` is out of range".to_owned());
    }
    match &line.time {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("`time` `{t}` is not an RFC 3339 time: {e}")),
        None => Ok(default),
    }
}

fn side_text(s: &Side) -> String {
    let mut out = outcome_name(s.outcome).to_owned();
    if let Some(c) = &s.challenge
        && !c.is_empty()
    {
        out.push_str(&format!(" ({c})"));
    }
    out.push_str(&format!(" [{}]", s.reasons.join(", ")));
    out
}

impl ReplayReport {
    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let against = match &self.baseline {
            Some(rev) => format!("the baseline set ({rev})"),
            None => "the recorded decisions".to_owned(),
        };
        out.push_str(&format!(
            "replayed {} requests from `{}` under the candidate set ({}) against {against}\n",
            self.requests, self.input, self.candidate
        ));
        let changed = self.changed();
        let pct = |n: u64| {
            if self.requests == 0 {
                0.0
            } else {
                n as f64 * 100.0 / self.requests as f64
            }
        };
        out.push_str(&format!("{changed} changed outcome ({:.2}%)", pct(changed)));
        if self.rules_changed_only > 0 {
            out.push_str(&format!(
                "; {} kept their outcome with different matched rules",
                self.rules_changed_only
            ));
        }
        out.push_str("\n\n");
        let width = self
            .transitions
            .iter()
            .map(|t| outcome_name(t.before).len() + 4 + outcome_name(Some(t.after)).len())
            .max()
            .unwrap_or(0);
        let count_w = self
            .transitions
            .iter()
            .map(|t| t.count.to_string().len())
            .max()
            .unwrap_or(1);
        out.push_str("before -> after\n");
        for t in &self.transitions {
            let label = format!(
                "{} -> {}",
                outcome_name(t.before),
                outcome_name(Some(t.after))
            );
            out.push_str(&format!(
                "  {label:width$}  {:>count_w$}  {:>6.2}%{}\n",
                t.count,
                pct(t.count),
                if t.changed() { "  changed" } else { "" }
            ));
        }
        for t in self.transitions.iter().filter(|t| t.changed()) {
            out.push_str(&format!(
                "\n{} -> {}: {} request{}\n",
                outcome_name(t.before),
                outcome_name(Some(t.after)),
                t.count,
                if t.count == 1 { "" } else { "s" }
            ));
            let rules = |list: &[(String, u64)], sign: char| {
                list.iter()
                    .map(|(id, n)| format!("{sign}{id} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !t.rules_added.is_empty() {
                out.push_str(&format!("  now matching: {}\n", rules(&t.rules_added, '+')));
            }
            if !t.rules_removed.is_empty() {
                out.push_str(&format!(
                    "  no longer matching: {}\n",
                    rules(&t.rules_removed, '-')
                ));
            }
            if t.rules_added.is_empty() && t.rules_removed.is_empty() {
                out.push_str("  same rules matched: the session checks or the risk score decide the difference\n");
            }
            for e in &t.examples {
                out.push_str(&format!(
                    "  line {}: `{}` by `{}`: {} -> {}\n",
                    e.line,
                    e.action,
                    e.subject,
                    side_text(&e.before),
                    side_text(&e.after)
                ));
            }
        }
        out.push_str(&format!(
            "\n{} requests in {:.3} s ({:.0} requests/s)",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.rate()
        ));
        out
    }

    /// The report for scripts.
    pub fn json(&self) -> Value {
        let transitions: Vec<Value> = self
            .transitions
            .iter()
            .map(|t| {
                let rules = |list: &[(String, u64)]| -> Value {
                    Value::Array(
                        list.iter()
                            .map(|(id, n)| json!({ "rule": id, "count": n }))
                            .collect(),
                    )
                };
                json!({
                    "before": outcome_name(t.before),
                    "after": outcome_name(Some(t.after)),
                    "changed": t.changed(),
                    "count": t.count,
                    "rules_added": rules(&t.rules_added),
                    "rules_removed": rules(&t.rules_removed),
                    "examples": t.examples,
                })
            })
            .collect();
        json!({
            "input": self.input,
            "requests": self.requests,
            "changed": self.changed(),
            "rules_changed_only": self.rules_changed_only,
            "candidate_revision": self.candidate,
            "baseline_revision": self.baseline,
            "transitions": transitions,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "requests_per_second": self.rate(),
        })
    }
}

#[cfg(test)]
mod tests;
