//! Warnings for likely mistakes in a valid policy set: a challenge rule that
//! can never change a decision, signals no rule reads, duplicate conditions.
//! They do not stop the set from loading.

use super::defs::{Sources, Spanned};
use super::diag::{Code, Diagnostic, Report};
use super::{Effect, Mode, Requirement, Rule, Signal};
use crate::glob;

/// Adds the warnings for `signals` and `rules` (whose definitions are at
/// `signal_ids` and `rule_ids`) to `report`.
pub fn warn(
    signals: &[Signal],
    rules: &[Rule],
    signal_ids: &[Spanned<String>],
    rule_ids: &[Spanned<String>],
    sources: &Sources,
    report: &mut Report,
) {
    shadowed_challenges(rules, rule_ids, sources, report);
    unread_signals(signals, rules, signal_ids, sources, report);
    duplicate_conditions(signals, rules, signal_ids, rule_ids, sources, report);
}

fn warning_at(sources: &Sources, at: &Spanned<String>, code: Code, message: String) -> Diagnostic {
    sources.place(Diagnostic::warning(code, message), at.file, at.location)
}

/// Whether every action `inner` can match is matched by `outer`.
fn covers(outer: &[String], inner: &[String]) -> bool {
    inner.iter().all(|b| {
        outer
            .iter()
            .any(|a| a == b || a == "*" || (!b.contains('*') && glob::matches(a, b)))
    })
}

/// Whether every session that satisfies `strong` also satisfies `weak`.
fn implies(strong: &Requirement, weak: &Requirement) -> bool {
    let level = match (strong.level, weak.level) {
        (_, None) => true,
        (Some(s), Some(w)) => s >= w,
        (None, Some(_)) => false,
    };
    let methods = weak.methods.is_empty()
        || (!strong.methods.is_empty() && strong.methods.iter().all(|m| weak.methods.contains(m)));
    let fresh = match (strong.max_age, weak.max_age) {
        (_, None) => true,
        (Some(s), Some(w)) => s <= w,
        (None, Some(_)) => false,
    };
    level && methods && fresh
}

/// A challenge rule whose requirement is implied by another, always-matching
/// challenge rule for the same actions never changes a decision.
fn shadowed_challenges(
    rules: &[Rule],
    ids: &[Spanned<String>],
    sources: &Sources,
    report: &mut Report,
) {
    let enforced = |r: &&Rule| r.mode == Mode::Enforce && r.effect == Effect::Challenge;
    for (i, weak) in rules.iter().enumerate().filter(|(_, r)| enforced(r)) {
        let Some(weak_req) = &weak.requirement else {
            continue;
        };
        let by = rules.iter().enumerate().find(|(j, strong)| {
            *j != i
                && enforced(strong)
                && strong.when.is_none()
                && covers(&strong.actions, &weak.actions)
                && strong.requirement.as_ref().is_some_and(|s| implies(s, weak_req))
                // Of two identical rules, warn about the later one only.
                && !(weak.when.is_none()
                    && covers(&weak.actions, &strong.actions)
                    && strong.requirement.as_ref().is_some_and(|s| implies(weak_req, s))
                    && *j > i)
        });
        if let (Some((_, strong)), Some(at)) = (by, ids.get(i)) {
            report.push(
                warning_at(
                    sources,
                    at,
                    Code::RedundantRule,
                    format!(
                        "rule `{}` never changes a decision: `{}` always matches its actions and asks for at least as much",
                        weak.id, strong.id
                    ),
                )
                .rule(&*weak.id)
                .help(format!("remove `{}`, or give `{}` a `when`", weak.id, strong.id)),
            );
        }
    }
}

/// Signals only matter through rules that read `risk`.
fn unread_signals(
    signals: &[Signal],
    rules: &[Rule],
    ids: &[Spanned<String>],
    sources: &Sources,
    report: &mut Report,
) {
    let risk_read = rules
        .iter()
        .any(|r| r.when.as_ref().is_some_and(|w| w.reads_risk));
    if risk_read {
        return;
    }
    for (signal, at) in signals.iter().zip(ids) {
        report.push(
            warning_at(
                sources,
                at,
                Code::UnreadSignal,
                format!(
                    "signal `{}` only adds to the reported score: no rule reads `risk`",
                    signal.id
                ),
            )
            .rule(&*signal.id)
            .help("use it in a rule, e.g. `when: \"risk.score >= 50\"`, or remove it"),
        );
    }
}

fn normalized(source: &str) -> String {
    source.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The same condition twice is usually a copy-paste mistake.
fn duplicate_conditions(
    signals: &[Signal],
    rules: &[Rule],
    signal_ids: &[Spanned<String>],
    rule_ids: &[Spanned<String>],
    sources: &Sources,
    report: &mut Report,
) {
    for (i, (s, at)) in signals.iter().zip(signal_ids).enumerate() {
        let text = normalized(&s.when.source);
        if let Some(first) = signals
            .iter()
            .take(i)
            .find(|o| normalized(&o.when.source) == text)
        {
            report.push(
                warning_at(
                    sources,
                    at,
                    Code::DuplicateCondition,
                    format!("signal `{}` has the same condition as `{}`", s.id, first.id),
                )
                .rule(&*s.id)
                .help("the score would count twice: merge them"),
            );
        }
    }
    for (i, (r, at)) in rules.iter().zip(rule_ids).enumerate() {
        let Some(when) = &r.when else { continue };
        let text = normalized(&when.source);
        let first = rules.iter().take(i).find(|o| {
            o.effect == r.effect
                && o.mode == r.mode
                && o.actions == r.actions
                && o.when
                    .as_ref()
                    .is_some_and(|w| normalized(&w.source) == text)
        });
        if let Some(first) = first {
            report.push(
                warning_at(
                    sources,
                    at,
                    Code::DuplicateCondition,
                    format!(
                        "rule `{}` has the same actions and condition as `{}`",
                        r.id, first.id
                    ),
                )
                .rule(&*r.id)
                .help("merge them into one rule"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::PolicySet;

    const LEVELS: &str = "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - { name: aal1, acr: [a1] }\n  - { name: aal2, acr: [a2] }\n---\napiVersion: stepup/v1\nkind: Policy\nname: t\n";

    fn warnings(body: &str) -> Vec<String> {
        let (_, report) = PolicySet::from_str("p.yaml", &format!("{LEVELS}{body}")).unwrap();
        report
            .diagnostics
            .iter()
            .map(|d| d.to_string().lines().next().unwrap_or("").to_owned())
            .collect()
    }

    #[test]
    fn weaker_challenge_under_an_always_matching_rule() {
        let w = warnings(
            "rules:\n  - { id: all, actions: [\"payments.*\"], effect: challenge, require: { level: aal2, max_age: 5m } }\n  - { id: refund, actions: [payments.refund], when: 'resource.attributes.amount > 1.0', effect: challenge, require: { level: aal1, max_age: 10m } }\n  - { id: stronger, actions: [payments.refund], effect: challenge, require: { level: aal2, max_age: 1m } }\n",
        );
        assert_eq!(
            w,
            [
                "warning: rule `refund` never changes a decision: `all` always matches its actions and asks for at least as much (in `refund`) [redundant-rule]"
            ]
        );
    }

    #[test]
    fn signals_nobody_reads() {
        let w = warnings(
            "signals:\n  - { id: s, when: 'true', score: 5 }\nrules:\n  - { id: r, actions: [a], effect: deny }\n",
        );
        assert_eq!(
            w,
            [
                "warning: signal `s` only adds to the reported score: no rule reads `risk` (in `s`) [unread-signal]"
            ]
        );
        let w = warnings(
            "signals:\n  - { id: s, when: 'true', score: 5 }\nrules:\n  - { id: r, actions: [a], when: 'risk.score > 1', effect: deny }\n",
        );
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn duplicate_conditions() {
        let w = warnings(
            "signals:\n  - { id: a, when: '!device.trusted', score: 5 }\n  - { id: b, when: '!device.trusted ', score: 5 }\nrules:\n  - { id: r1, actions: [x], when: 'risk.score > 1', effect: deny }\n  - { id: r2, actions: [x], when: 'risk.score  > 1', effect: deny }\n",
        );
        assert_eq!(
            w,
            [
                "warning: signal `b` has the same condition as `a` (in `b`) [duplicate-condition]",
                "warning: rule `r2` has the same actions and condition as `r1` (in `r2`) [duplicate-condition]"
            ]
        );
    }
}
