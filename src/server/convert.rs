//! `Decision` -> `DecideResponse`: the wire form of a decision, as a pure
//! function.

use std::time::Duration;

use crate::engine::{Decision, Outcome, TraceKind};
use crate::proto::v1 as pb;

pub(crate) fn duration(d: Duration) -> pbjson_types::Duration {
    pbjson_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// An owned copy of a policy string (`Arc<str>::to_string` would go through
/// the formatting machinery: a few hundred instructions per string).
fn owned(s: &str) -> String {
    String::from(s)
}

/// The wire form of a decision.
pub fn response(d: &Decision) -> pb::DecideResponse {
    let policy = &d.policy;
    let requirements = d
        .unmet
        .iter()
        .filter_map(|i| policy.rules.get(*i))
        .filter_map(|rule| {
            let r = rule.requirement.as_ref()?;
            let level = r.level.and_then(|l| policy.levels.get(l));
            Some(pb::Requirement {
                rule_id: owned(&rule.id),
                level: level.map(|l| owned(&l.name)).unwrap_or_default(),
                acr_values: level
                    .map(|l| l.acr.iter().map(|a| owned(a)).collect())
                    .unwrap_or_default(),
                methods: r.methods.iter().map(|m| owned(m)).collect(),
                max_age: r.max_age.map(duration),
            })
        })
        .collect();
    let a = &d.assessment;
    pb::DecideResponse {
        outcome: match d.outcome {
            Outcome::Allow => pb::Outcome::Allow,
            Outcome::Challenge => pb::Outcome::Challenge,
            Outcome::Deny => pb::Outcome::Deny,
        } as i32,
        requirements,
        acr_values: d.acr_values().iter().map(|a| owned(a)).collect(),
        max_age: d.max_age.map(duration),
        www_authenticate: d.www_authenticate().unwrap_or_default(),
        risk: Some(pb::Risk {
            // 0..=100 (AIP-141: no unsigned integers on the wire).
            score: i32::try_from(a.risk_score).unwrap_or(i32::MAX),
            signals: a.signals.iter().map(|s| owned(s)).collect(),
        }),
        reasons: d
            .reasons()
            .map(|(id, e, message)| pb::Reason {
                rule_id: owned(id),
                effect: e.to_proto() as i32,
                message: owned(message),
            })
            .collect(),
        errors: a
            .errors
            .iter()
            .map(|e| pb::EvaluationError {
                rule_id: owned(&e.id),
                message: owned(&e.message),
            })
            .collect(),
        decision_id: d.id_string(),
        policy_revision: owned(&policy.revision),
        shadow: d
            .shadow
            .iter()
            .filter_map(|s| {
                let rule = policy.rules.get(s.rule)?;
                Some(pb::ShadowResult {
                    rule_id: owned(&rule.id),
                    effect: s.effect.to_proto() as i32,
                    message: owned(&rule.message),
                    satisfied: s.satisfied,
                })
            })
            .collect(),
        trace: d
            .trace
            .iter()
            .map(|t| pb::TraceEntry {
                kind: match t.kind {
                    TraceKind::Signal => pb::trace_entry::Kind::Signal,
                    TraceKind::Rule => pb::trace_entry::Kind::Rule,
                } as i32,
                id: owned(&t.id),
                fired: t.fired,
                detail: t.detail.clone(),
            })
            .collect(),
    }
}

/// The one challenge that satisfies every CHALLENGE decision of a batch:
/// the strongest level any unmet requirement asks for, the smallest
/// `max_age`, and the methods every requirement that names methods accepts
/// (their intersection; `methods_conflict` when it is empty). `None` when no
/// decision is a CHALLENGE.
pub fn combined_challenge(decisions: &[Decision]) -> Option<pb::CombinedChallenge> {
    let challenged: Vec<&Decision> = decisions
        .iter()
        .filter(|d| d.outcome == Outcome::Challenge)
        .collect();
    let first = challenged.first()?;
    // Levels are indices into the policy set's ordered ladder (weakest
    // first): the strongest is the largest. One policy set decides a batch.
    let level = challenged.iter().filter_map(|d| d.challenge_level).max();
    let max_age = challenged.iter().filter_map(|d| d.max_age).min();
    let mut methods: Option<Vec<&str>> = None;
    for d in &challenged {
        let sets = d
            .unmet
            .iter()
            .filter_map(|i| d.policy.rules.get(*i))
            .filter_map(|r| r.requirement.as_ref())
            .filter(|r| !r.methods.is_empty());
        for r in sets {
            let accepted = |m: &&str| r.methods.iter().any(|x| **x == **m);
            methods = Some(match methods {
                None => r.methods.iter().map(|m| &**m).collect(),
                Some(cur) => cur.into_iter().filter(accepted).collect(),
            });
        }
    }
    let methods_conflict = methods.as_ref().is_some_and(Vec::is_empty);
    let policy = &first.policy;
    let level = level.and_then(|l| policy.levels.get(l));
    let acr_values: Vec<String> = level
        .map(|l| l.acr.iter().map(|a| owned(a)).collect())
        .unwrap_or_default();
    let description = first
        .unmet
        .first()
        .and_then(|i| policy.rules.get(*i))
        .map_or("step-up authentication required", |r| &r.message);
    Some(pb::CombinedChallenge {
        level: level.map(|l| owned(&l.name)).unwrap_or_default(),
        www_authenticate: crate::engine::www_authenticate(description, &acr_values, max_age),
        acr_values,
        max_age: max_age.map(duration),
        methods: methods.unwrap_or_default().into_iter().map(owned).collect(),
        methods_conflict,
    })
}
