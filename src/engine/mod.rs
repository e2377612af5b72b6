//! The decision: signals -> risk -> rules -> requirements -> satisfied by the
//! session? Pure over a policy set, a request, a clock and a history view:
//! [`decide`] is total, it always returns a [`Decision`]; a condition that
//! fails to evaluate is recorded in it and fails closed.
//!
//! The engine takes the prost `DecideRequest` by reference rather than a
//! domain copy of it: the request is plain data, and borrowing it is what
//! keeps a decision free of per-field copies (see `expr::vals`). The cache
//! sits above it: [`evaluate_stable`] is what it stores, [`decide_from`]
//! finishes a decision from it.

mod decision;
mod evaluate;
mod explain;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::expr::history::Recall;
use crate::policy::PolicySet;
use crate::proto::v1::DecideRequest;
pub use decision::{
    AUTH_TIME_SKEW, Assessment, Decision, EvalError, Outcome, ShadowResult, TraceEntry, TraceKind,
    www_authenticate,
};
pub(crate) use evaluate::interpreter;
pub use evaluate::{CondResult, Evaluated};

/// Decides `req` under `policy` at `now`, evaluating every condition, with
/// `history` read from `history`. `explain` adds a trace.
pub fn decide(
    policy: Arc<PolicySet>,
    req: &DecideRequest,
    now: DateTime<Utc>,
    history: &dyn Recall,
    explain: bool,
) -> Decision {
    let now_fixed = now.fixed_offset();
    let candidates = candidates(&policy, req);
    let full = evaluate::evaluate(&policy, req, now_fixed, history, &candidates, false);
    let assessment = full.assessment.clone().unwrap_or_else(|| {
        // Unreachable: nothing is left pending without `stable_only`.
        Arc::new(evaluate::finish(&policy, req, now_fixed, history, &full))
    });
    let trace = if explain {
        explain::trace(&policy, req, &full, history)
    } else {
        Vec::new()
    };
    with_provenance(
        decision::conclude(policy, assessment, req, now, false, trace),
        history,
    )
}

/// `d`, with the Shared Signals events that changed it: when it is not an
/// ALLOW and carries no trace, the rules among its reasons that read
/// `history` fed by an event (a revoked session, a credential change, ...)
/// are traced with the events' `jti`, so the decision log says which event
/// changed the decision. Nothing is looked up for an ALLOW or a decision
/// without such a rule.
fn with_provenance(mut d: Decision, history: &dyn Recall) -> Decision {
    if d.outcome != Outcome::Allow && d.trace.is_empty() {
        d.trace = explain::provenance(&d, history);
    }
    d
}

/// The time-independent part of deciding `req`: volatile conditions are
/// left pending, for [`decide_from`] to run per decision. What the decision
/// cache stores.
pub fn evaluate_stable(
    policy: &PolicySet,
    req: &DecideRequest,
    now: DateTime<Utc>,
    history: &dyn Recall,
) -> Evaluated {
    let candidates = candidates(policy, req);
    evaluate::evaluate(policy, req, now.fixed_offset(), history, &candidates, true)
}

/// Decides `req` from `stable`, its time-independent part (cached when
/// `cache_hit`): the pending conditions run now.
pub fn decide_from(
    policy: Arc<PolicySet>,
    stable: &Evaluated,
    req: &DecideRequest,
    now: DateTime<Utc>,
    history: &dyn Recall,
    cache_hit: bool,
) -> Decision {
    let assessment = match &stable.assessment {
        Some(a) => Arc::clone(a),
        None => Arc::new(evaluate::finish(
            &policy,
            req,
            now.fixed_offset(),
            history,
            stable,
        )),
    };
    with_provenance(
        decision::conclude(policy, assessment, req, now, cache_hit, Vec::new()),
        history,
    )
}

/// The indices of the rules whose actions match `req`'s.
fn candidates(policy: &PolicySet, req: &DecideRequest) -> Vec<usize> {
    let mut c = Vec::new();
    policy.index.lookup(&req.action, &mut c);
    c
}

#[cfg(test)]
mod tests;
