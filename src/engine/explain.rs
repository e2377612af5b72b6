//! The explanation of a decision: per signal and rule, whether it fired
//! and why.

use std::sync::Arc;

use super::decision::{TraceEntry, TraceKind};
use super::evaluate::{CondResult, Evaluated};
use crate::expr::history::Recall;
use crate::policy::{Mode, PolicySet};
use crate::proto::v1::DecideRequest;

/// Per signal and rule: whether it fired and why. A fired condition that
/// reads `history` also names the Shared Signals events (their `jti`) the
/// history it read came from, so a decision changed by an event says which.
pub(super) fn trace(
    policy: &PolicySet,
    req: &DecideRequest,
    full: &Evaluated,
    history: &dyn Recall,
) -> Vec<TraceEntry> {
    let mut out = trace_conditions(policy, req, full);
    let source = |e: &TraceEntry| match e.kind {
        TraceKind::Signal => policy
            .signals
            .iter()
            .find(|s| s.id == e.id)
            .map(|s| Arc::clone(&s.when.source)),
        TraceKind::Rule => policy
            .rules
            .iter()
            .find(|r| r.id == e.id)
            .and_then(|r| r.when.as_ref())
            .map(|w| Arc::clone(&w.source)),
    };
    let reads_history =
        |e: &TraceEntry| e.fired && source(e).is_some_and(|s| s.contains("history."));
    if out.iter().any(reads_history) {
        let view = history.view();
        for e in out.iter_mut() {
            if reads_history(e)
                && let Some(events) = source(e).and_then(|s| view.provenance(&s))
            {
                e.detail = format!("{}; {events}", e.detail);
            }
        }
    }
    out
}

/// The rules among `d`'s reasons whose conditions read `history` that
/// Shared Signals events fed, each traced with those events' `jti`; empty
/// when there are none (the history view is built only when some reason's
/// condition reads `history`).
pub(super) fn provenance(d: &super::Decision, history: &dyn Recall) -> Vec<TraceEntry> {
    let reading: Vec<(&Arc<str>, Arc<str>)> = d
        .reasons()
        .filter_map(|(id, _, _)| {
            let rule = d.policy.rules.iter().find(|r| r.id == *id)?;
            let source = &rule.when.as_ref()?.source;
            source
                .contains("history.")
                .then(|| (id, Arc::clone(source)))
        })
        .collect();
    if reading.is_empty() {
        return Vec::new();
    }
    let view = history.view();
    reading
        .into_iter()
        .filter_map(|(id, source)| {
            Some(TraceEntry {
                kind: TraceKind::Rule,
                id: Arc::clone(id),
                fired: true,
                detail: view.provenance(&source)?,
            })
        })
        .collect()
}

fn trace_conditions(policy: &PolicySet, req: &DecideRequest, full: &Evaluated) -> Vec<TraceEntry> {
    let mut out = Vec::new();
    for (s, r) in policy.signals.iter().zip(full.signals.iter()) {
        let (fired, detail) = describe(r, &s.when.source);
        out.push(TraceEntry {
            kind: TraceKind::Signal,
            id: Arc::clone(&s.id),
            fired,
            detail: if fired {
                format!("{detail}; adds {}", s.score)
            } else {
                detail
            },
        });
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let entry = match full.rules.iter().find(|(j, _)| *j == i) {
            Some((_, r)) => match &rule.when {
                Some(w) => {
                    let (fired, detail) = describe(r, &w.source);
                    let detail = if matches!(r, CondResult::Error(_)) {
                        format!("{detail}; counts as matched (fail closed)")
                    } else {
                        detail
                    };
                    (fired || matches!(r, CondResult::Error(_)), detail)
                }
                None => (
                    true,
                    format!("action `{}` matches and the rule has no `when`", req.action),
                ),
            },
            None => (
                false,
                format!(
                    "not considered: action `{}` matches none of {:?}",
                    req.action, rule.actions
                ),
            ),
        };
        let detail = match rule.mode {
            Mode::Shadow => format!("shadow (report-only): {}", entry.1),
            Mode::Enforce => entry.1,
        };
        out.push(TraceEntry {
            kind: TraceKind::Rule,
            id: Arc::clone(&rule.id),
            fired: entry.0,
            detail,
        });
    }
    out
}

fn describe(r: &CondResult, source: &str) -> (bool, String) {
    match r {
        CondResult::True => (true, format!("`{source}` is true")),
        CondResult::False => (false, format!("`{source}` is false")),
        CondResult::Error(e) => (false, format!("`{source}` failed: {e}")),
        CondResult::Pending => (false, format!("`{source}` was not evaluated")),
    }
}
