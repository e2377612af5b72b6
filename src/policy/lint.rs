//! Warnings for likely mistakes in a valid policy set: a challenge rule that
//! can never change a decision, signals no rule reads, duplicate conditions.
//! They do not stop the set from loading.

use std::collections::HashMap;

use super::defs::{Sources, Spanned};
use super::diag::{Code, Diagnostic, Report};
use super::index::ActionIndex;
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
///
/// A pairwise relation, found through an index of the always-matching rules
/// by action: only the rules that cover a rule's first action are compared
/// with it (those sharing the name or a glob over it), not every rule.
fn shadowed_challenges(
    rules: &[Rule],
    ids: &[Spanned<String>],
    sources: &Sources,
    report: &mut Report,
) {
    let enforced = |r: &Rule| r.mode == Mode::Enforce && r.effect == Effect::Challenge;
    let always = Covering::new(
        rules
            .iter()
            .enumerate()
            .filter(|(_, r)| enforced(r) && r.when.is_none() && r.requirement.is_some()),
    );
    let mut candidates = Vec::new();
    for (i, weak) in rules.iter().enumerate().filter(|(_, r)| enforced(r)) {
        if weak.requirement.is_none() {
            continue;
        }
        always.candidates(&weak.actions, &mut candidates);
        let by = candidates
            .iter()
            .filter_map(|&j| Some((j, rules.get(j)?)))
            .find(|&strong| shadows(strong, (i, weak)));
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

/// Whether the always-matching rule `strong` (the `j`th) makes the rule
/// `weak` (the `i`th) redundant.
fn shadows((j, strong): (usize, &Rule), (i, weak): (usize, &Rule)) -> bool {
    let (Some(s), Some(w)) = (&strong.requirement, &weak.requirement) else {
        return false;
    };
    j != i
        && covers(&strong.actions, &weak.actions)
        && implies(s, w)
        // Of two identical rules, warn about the later one only.
        && !(weak.when.is_none()
            && covers(&weak.actions, &strong.actions)
            && implies(w, s)
            && j > i)
}

/// Rules by the actions they match, to find those that may [`covers`] a
/// list of actions.
struct Covering<'r> {
    /// Every rule, for an empty list (which every rule covers).
    all: Vec<usize>,
    /// By every name and pattern, as an action would match them.
    index: ActionIndex,
    /// By pattern as written, for a pattern (covered by the same pattern
    /// or `*`).
    patterns: HashMap<&'r str, Vec<usize>>,
}

impl<'r> Covering<'r> {
    fn new(rules: impl Iterator<Item = (usize, &'r Rule)>) -> Self {
        let mut c = Self {
            all: Vec::new(),
            index: ActionIndex::default(),
            patterns: HashMap::new(),
        };
        for (i, rule) in rules {
            c.all.push(i);
            for a in &rule.actions {
                c.index.insert(a, i);
                if a.contains('*') {
                    c.patterns.entry(a.as_str()).or_default().push(i);
                }
            }
        }
        c
    }

    /// The rules that may cover `actions`, in ascending order, into `out`:
    /// every rule that covers them covers their first.
    fn candidates(&self, actions: &[String], out: &mut Vec<usize>) {
        let Some(first) = actions.first() else {
            out.clone_from(&self.all);
            return;
        };
        if !first.contains('*') {
            // Equal names, `*` and the globs that match it.
            self.index.lookup(first, out);
            return;
        }
        out.clear();
        for pattern in [first.as_str(), "*"] {
            out.extend(self.patterns.get(pattern).into_iter().flatten());
        }
        out.sort_unstable();
        out.dedup();
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

/// The same condition twice is usually a copy-paste mistake. Each is
/// compared with the first of its kind by a hash lookup.
fn duplicate_conditions(
    signals: &[Signal],
    rules: &[Rule],
    signal_ids: &[Spanned<String>],
    rule_ids: &[Spanned<String>],
    sources: &Sources,
    report: &mut Report,
) {
    let mut firsts: HashMap<String, &Signal> = HashMap::new();
    for (s, at) in signals.iter().zip(signal_ids) {
        let first = *firsts.entry(normalized(&s.when.source)).or_insert(s);
        if !std::ptr::eq(first, s) {
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
    let mut firsts: HashMap<(Effect, Mode, &[String], String), &Rule> = HashMap::new();
    for (r, at) in rules.iter().zip(rule_ids) {
        let Some(when) = &r.when else { continue };
        let key = (
            r.effect,
            r.mode,
            r.actions.as_slice(),
            normalized(&when.source),
        );
        let first = *firsts.entry(key).or_insert(r);
        if !std::ptr::eq(first, r) {
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
    use super::{normalized, shadows};
    use crate::policy::{Code, Effect, Mode, PolicySet, Rule};

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

    /// Rules over a few overlapping names and globs, drawn from `seed`.
    fn random_rules(seed: &mut u64) -> String {
        const ACTIONS: [&str; 9] = [
            "a.x", "a.y", "a.x.z", "a.*", "a.x.*", "*", "b.*", "pay*", "*.x",
        ];
        const WHEN: [&str; 4] = [
            "",
            ", when: 'resource.attributes.amount > 1.0'",
            ", when: 'resource.attributes.amount  >  1.0'",
            ", when: 'risk.score > 5'",
        ];
        const REQUIRE: [&str; 4] = [
            "{ level: aal1 }",
            "{ level: aal2 }",
            "{ level: aal2, max_age: 5m }",
            "{ level: aal1, max_age: 10m }",
        ];
        let mut next = |n: usize| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed % n as u64) as usize
        };
        let mut body = String::from("rules:\n");
        for i in 0..8 {
            let actions: Vec<String> = (0..=next(2))
                .map(|_| format!("\"{}\"", ACTIONS[next(ACTIONS.len())]))
                .collect();
            let then = match next(5) {
                0 => "effect: deny".to_owned(),
                _ => format!("effect: challenge, require: {}", REQUIRE[next(4)]),
            };
            let mode = if next(6) == 0 { ", mode: shadow" } else { "" };
            body.push_str(&format!(
                "  - {{ id: r{i}, actions: [{}]{}{mode}, {then} }}\n",
                actions.join(", "),
                WHEN[next(4)],
            ));
        }
        body
    }

    /// What comparing every pair of rules finds: the redundant-rule and
    /// duplicate-condition messages in policy order.
    fn every_pair(set: &PolicySet) -> Vec<String> {
        let rules = &set.rules;
        let mut out = Vec::new();
        let enforced = |r: &Rule| r.mode == Mode::Enforce && r.effect == Effect::Challenge;
        for (i, weak) in rules.iter().enumerate() {
            if !enforced(weak) || weak.requirement.is_none() {
                continue;
            }
            let by = rules.iter().enumerate().find(|&(j, strong)| {
                enforced(strong) && strong.when.is_none() && shadows((j, strong), (i, weak))
            });
            if let Some((_, strong)) = by {
                out.push(format!(
                    "rule `{}` never changes a decision: `{}` always matches its actions and asks for at least as much",
                    weak.id, strong.id
                ));
            }
        }
        for (i, r) in rules.iter().enumerate() {
            let Some(when) = &r.when else { continue };
            let first = rules.iter().take(i).find(|o| {
                o.effect == r.effect
                    && o.mode == r.mode
                    && o.actions == r.actions
                    && o.when
                        .as_ref()
                        .is_some_and(|w| normalized(&w.source) == normalized(&when.source))
            });
            if let Some(first) = first {
                out.push(format!(
                    "rule `{}` has the same actions and condition as `{}`",
                    r.id, first.id
                ));
            }
        }
        out
    }

    /// The rules whose exact names no other rule and no test uses, found
    /// by comparing every pair.
    fn untested_every_pair(set: &PolicySet, tested: &[String]) -> Vec<String> {
        let rules = &set.rules;
        let mut out = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if rule.actions.iter().any(|a| a.contains('*')) {
                continue;
            }
            let used = rule.actions.iter().any(|a| {
                tested.contains(a)
                    || rules
                        .iter()
                        .enumerate()
                        .any(|(j, o)| j != i && o.actions.contains(a))
            });
            if !used {
                out.push(rule.id.to_string());
            }
        }
        out
    }

    /// The indexed lints warn about exactly the rules that comparing every
    /// pair does, in the same order and naming the same other rule.
    #[test]
    fn indexed_lints_agree_with_every_pair() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let mut warned = 0;
        for _ in 0..300 {
            let body = random_rules(&mut seed);
            let (set, report) = PolicySet::from_str("p.yaml", &format!("{LEVELS}{body}"))
                .unwrap_or_else(|r| panic!("{r}\n{body}"));
            let found: Vec<String> = report
                .diagnostics
                .iter()
                .filter(|d| matches!(d.code, Code::RedundantRule | Code::DuplicateCondition))
                .map(|d| d.message.clone())
                .collect();
            assert_eq!(found, every_pair(&set), "{body}");
            warned += found.len();
            let tested = ["a.x".to_owned()];
            let untested: Vec<String> = set
                .unused_action_warnings(&tested)
                .iter()
                .filter_map(|d| d.rule_id.clone())
                .collect();
            assert_eq!(untested, untested_every_pair(&set, &tested), "{body}");
        }
        assert!(warned > 100, "the sets should be warned about: {warned}");
    }
}
