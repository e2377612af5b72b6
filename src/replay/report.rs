//! The replay's report: transitions between outcomes with their rules and
//! examples, as text for people and JSON for tools.

use std::time::Duration;

use serde_json::{Value, json};

use crate::engine::Outcome;

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

/// The name of an outcome in reports.
pub fn outcome_name(o: Option<Outcome>) -> &'static str {
    match o {
        Some(Outcome::Allow) => "allow",
        Some(Outcome::Challenge) => "challenge",
        Some(Outcome::Deny) => "deny",
        None => "unrecorded",
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
