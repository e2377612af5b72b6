//! The input lines: a bare `DecideRequest` or a decision log line, parsed
//! without copying what is not needed, and what is wrong with a line, with
//! a caret under the column.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::engine::Outcome;
use crate::proto::v1::DecideRequest;
use crate::request::read::ReadError;

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
    pub(super) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            column: None,
            help: None,
            excerpt: None,
        }
    }

    /// From a JSON error in `text`: the column, an excerpt with a caret,
    /// and a did-you-mean for an unknown field.
    fn json(what: &str, read: &ReadError, text: &str) -> Self {
        let e = &read.error;
        let message = read.message();
        let message = message.as_str();
        // serde_json's column is the bytes read on the line, one past the
        // offending token when it had to see a delimiter (numbers).
        let mut at = e.column().saturating_sub(1).min(text.len());
        let unknown = unknown_field(message);
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

/// The unknown field and the expected ones, from serde's "unknown field
/// `x`, expected one of `a`, `b`" message. A line is parsed straight from
/// its text for its column, so only the error's text says which field it
/// was; the test-suite parser, which holds values, tells unknown fields
/// apart by structure instead.
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    // After the field's path, if any: "`network.x`: unknown field `x`...".
    const START: &str = "unknown field `";
    let rest = &message[message.find(START)? + START.len()..];
    let (word, rest) = rest.split_once('`')?;
    let fields = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((word.to_owned(), fields))
}

/// Up to 50 characters before and 30 after char `col` of `text`, with
/// ellipses where cut, and the caret's position in the excerpt.
pub(super) fn excerpt(text: &str, col: usize) -> (String, usize) {
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
pub(super) fn render_line_error(path: &str, line: u64, p: &LineProblem) -> String {
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

/// One input line, parsed.
pub(super) struct Line<'a> {
    pub(super) request: DecideRequest,
    pub(super) outcome: Option<Outcome>,
    pub(super) reasons: Vec<Cow<'a, str>>,
    pub(super) time: Option<Cow<'a, str>>,
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
pub(super) fn parse_line(text: &str) -> Result<Line<'_>, LineProblem> {
    if text.contains("\"request\"") {
        let w: Wrapped<'_> = crate::request::read::from_json(text).map_err(|e| {
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
    let request: DecideRequest = crate::request::read::from_json(text).map_err(|e| {
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
pub(super) fn clock(line: &Line<'_>, default: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
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
}
