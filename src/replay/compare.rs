//! The comparison of each replayed decision with its baseline: running
//! totals per `before -> after` pair, the rules each change added or
//! removed, and a few examples.

use std::collections::HashMap;

use super::input::Line;
use super::report::{Example, Side, Transition};
use crate::engine::{Decision, Outcome};

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

/// The totals of a replay so far.
pub(super) struct Comparison {
    /// One per (before or unrecorded) x after pair; see [`slot`].
    tallies: Vec<Tally>,
    rules_changed_only: u64,
    examples: usize,
}

impl Comparison {
    /// Empty totals keeping up to `examples` examples per pair.
    pub(super) fn new(examples: usize) -> Self {
        Self {
            tallies: (0..12).map(|_| Tally::default()).collect(),
            rules_changed_only: 0,
            examples,
        }
    }

    /// Requests whose outcome held but whose matched rules changed.
    pub(super) fn rules_changed_only(&self) -> u64 {
        self.rules_changed_only
    }

    /// Adds the decision `after` of line `line_no`, compared with `before`
    /// (a baseline set's decision) or else the decision the line recorded.
    pub(super) fn add(
        &mut self,
        line_no: u64,
        line: &Line<'_>,
        before: Option<&Decision>,
        after: &Decision,
    ) {
        let before_outcome = match before {
            Some(d) => Some(d.outcome),
            None => line.outcome,
        };
        let Some(tally) = self.tallies.get_mut(slot(before_outcome, after.outcome)) else {
            return;
        };
        tally.count += 1;
        let before_ids: Vec<&str> = match before {
            Some(d) => matched_ids(d).collect(),
            None => line.reasons.iter().map(|r| &**r).collect(),
        };
        let changed = before_outcome.is_some_and(|b| b != after.outcome);
        if !changed {
            let same = before_outcome.is_none() || same_rules(&before_ids, after);
            if !same {
                self.rules_changed_only += 1;
            }
            return;
        }
        let after_ids: Vec<&str> = matched_ids(after).collect();
        for id in after_ids.iter().filter(|id| !before_ids.contains(id)) {
            *tally.added.entry((*id).to_owned()).or_default() += 1;
        }
        for id in before_ids.iter().filter(|id| !after_ids.contains(id)) {
            *tally.removed.entry((*id).to_owned()).or_default() += 1;
        }
        if tally.examples.len() < self.examples {
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
                    challenge: before.and_then(challenge_of),
                },
                after: Side {
                    outcome: Some(after.outcome),
                    reasons: after_ids.iter().map(|s| (*s).to_owned()).collect(),
                    challenge: challenge_of(after),
                },
            });
        }
    }

    /// The pairs seen, changed outcomes first, then by count.
    pub(super) fn transitions(self) -> Vec<Transition> {
        let mut transitions: Vec<Transition> = Vec::new();
        for (i, t) in self.tallies.into_iter().enumerate() {
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
        transitions
    }
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
