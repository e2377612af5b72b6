//! The cost model's unit tests: the hostile probes fail, the example
//! and realistic rules pass, and the model's parts cost what they say.

use std::collections::HashMap;

use super::*;
use crate::policy::{Code, PolicySet};

const LEVELS: &str = "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - name: aal1\n    acr: [a1]\n  - name: aal2\n    acr: [a2]\n---\n";

/// The estimate of `src` as a rule's condition of a set with 5 signals and
/// no regex.
fn cost(src: &str) -> u64 {
    let program = cel::Program::compile(src).unwrap();
    let states = HashMap::new();
    estimate(
        program.expression(),
        &Inputs {
            scope: Scope::Rule,
            history_events: DEFAULT_HISTORY_EVENTS,
            signals: 5,
            regex_states: &states,
        },
    )
}

/// A one-rule policy whose condition is `when`.
pub(crate) fn rule(when: &str) -> String {
    format!(
        "{LEVELS}apiVersion: stepup/v1\nkind: Policy\nname: p\nrules:\n  - id: r\n    actions: [\"*\"]\n    when: '{when}'\n    effect: deny\n"
    )
}

/// The 4-deep `.all(...)` over `subject.roles` (17–31 s per
/// decision).
pub(crate) const PROBE_ROLES: &str = "subject.roles.all(a, subject.roles.all(b, subject.roles.all(c, subject.roles.all(d, a + b + c + d != \"x\"))))";

/// The 64×64×64 comprehension over literals (0.5 s per
/// decision).
pub(crate) fn probe_literals() -> String {
    let list: Vec<String> = (0..64).map(|i| i.to_string()).collect();
    let list = format!("[{}]", list.join(", "));
    format!("{list}.all(x, {list}.all(y, {list}.all(z, x + y + z >= 0)))")
}

#[test]
fn the_probes_of_issue_14_are_load_errors_with_both_numbers() {
    for (probe, estimate) in [
        (PROBE_ROLES.to_owned(), cost(PROBE_ROLES)),
        (probe_literals(), cost(&probe_literals())),
    ] {
        assert!(estimate > DEFAULT_MAX_CONDITION_COST, "{probe}: {estimate}");
        let report = PolicySet::from_str("p.yaml", &rule(&probe)).unwrap_err();
        let d = report.errors().next().unwrap();
        assert_eq!(d.code, Code::CostLimit);
        assert_eq!(
            d.message,
            format!(
                "the condition may cost up to {} units, above the limit of {}",
                units(estimate),
                units(DEFAULT_MAX_CONDITION_COST)
            )
        );
        let loc = d.location.unwrap();
        assert_eq!(
            (loc.line, loc.column),
            (15, 12),
            "the caret is on the condition"
        );
        assert!(d.to_string().contains("^^^^"), "{d}");
    }
}

#[test]
fn the_probes_estimate_orders_of_magnitude_above_the_limit() {
    assert!(cost(PROBE_ROLES) > 1_000 * DEFAULT_MAX_CONDITION_COST);
    assert!(cost(&probe_literals()) > 10 * DEFAULT_MAX_CONDITION_COST);
}

#[test]
fn every_example_condition_is_within_the_default_limit() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (set, _) = PolicySet::load(&dir).unwrap_or_else(|r| panic!("{r}"));
    let report = set.cost_report();
    assert_eq!(report.limit, DEFAULT_MAX_CONDITION_COST);
    let rules = set.rules.iter().filter(|r| r.when.is_some()).count();
    assert_eq!(report.conditions.len(), set.signals.len() + rules);
    for c in &report.conditions {
        assert!(c.cost > 0 && c.cost <= 2_000, "{}: {}", c.id, c.cost);
    }
}

#[test]
fn realistic_conditions_are_within_the_default_limit() {
    for src in [
        r#"subject.roles.exists(r, r in ["admin", "owner", "billing-admin"])"#,
        r#"session.amr.exists(m, m == "hwk") || "otp" in session.amr"#,
        r#"!subject.roles.all(r, r.startsWith("viewer-"))"#,
        r#"has(resource.attributes.items) && resource.attributes.items.exists(i, i.amount > 1000.0 && i.currency != "EUR")"#,
        r#"history.count("payments.*", duration("1h")) >= 10 && history.count("account.*", duration("24h")) > 3"#,
        r#"device.platform.matches("^(ios|android) [0-9]+$") && subject.id.endsWith("@example.com")"#,
        r#"subject.roles.filter(r, r.startsWith("team-")).size() > 3"#,
        r#"resource.attributes.tags.exists(t, t in subject.attributes.allowed_tags)"#,
        r#"network.country in ["KP", "IR", "SY", "CU"] && !(network.country in subject.attributes.usual_countries)"#,
    ] {
        let c = cost(src);
        assert!(c <= DEFAULT_MAX_CONDITION_COST, "{src}: {c}");
        PolicySet::from_str("p.yaml", &rule(src)).unwrap_or_else(|r| panic!("{r}"));
    }
}

#[test]
fn comprehensions_multiply_and_strings_scale_with_length() {
    let one = cost(r#"subject.roles.exists(r, r == "admin")"#);
    let two = cost(r#"subject.roles.exists(r, session.amr.exists(m, r == m))"#);
    assert!(two > 60 * one, "{one} {two}");
    assert!(cost(r#"subject.id.contains("x")"#) > cost(r#"network.country.contains("x")"#));
    // A literal range costs its length.
    assert!(cost("[1, 2, 3].all(x, x > 0)") < cost("subject.roles.all(x, x != \"\")"));
    // A ternary pays for its dearer branch only.
    assert!(
        cost(r#"true ? subject.roles.exists(r, r == "a") : false"#)
            < cost(
                r#"true && subject.roles.exists(r, r == "a") && subject.roles.exists(r, r == "a")"#
            )
    );
}

#[test]
fn history_count_scales_with_the_events_kept() {
    let program = cel::Program::compile(r#"history.count("a.*", duration("1h")) > 1"#).unwrap();
    let states = HashMap::new();
    let at = |events| {
        estimate(
            program.expression(),
            &Inputs {
                scope: Scope::Rule,
                history_events: events,
                signals: 0,
                regex_states: &states,
            },
        )
    };
    assert!(at(1_280) > 9 * at(128));
    assert_eq!(
        DEFAULT_HISTORY_EVENTS,
        crate::history::model::Limits::default().max_events as u64
    );
}

#[test]
fn regexes_cost_their_automaton_times_the_input() {
    let set = |src: &str| {
        PolicySet::from_str("p.yaml", &rule(src)).map(|(s, _)| s.cost_report().conditions[0].cost)
    };
    let small = set(r#"subject.id.matches("^a+$")"#).unwrap();
    let classes = set(r#"subject.id.matches("^[a-z]{40}$")"#).unwrap();
    assert!(classes > 4 * small, "{small} {classes}");
    let report = set(r#"subject.id.matches("^\\w{40}$")"#).unwrap_err();
    assert_eq!(report.errors().next().unwrap().code, Code::CostLimit);
    // The catastrophic pattern, written in a policy, does not even compile.
    let report = set(r#"subject.id.matches("(?:\\w{30}){30}")"#).unwrap_err();
    assert_eq!(report.errors().next().unwrap().code, Code::InvalidRegex);
}

#[test]
fn units_have_thousands_separators() {
    assert_eq!(units(0), "0");
    assert_eq!(units(999), "999");
    assert_eq!(units(20_000), "20,000");
    assert_eq!(units(16_777_216), "16,777,216");
}

#[test]
fn the_docs_list_the_example_estimates() {
    let page = include_str!("../../../docs/src/policy/cost.md");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (set, _) = PolicySet::load(&dir).unwrap_or_else(|r| panic!("{r}"));
    for c in set.cost_report().conditions {
        let file = c.file.file_name().unwrap().to_string_lossy().into_owned();
        let row = format!(
            "| {} `{}` | `policies/{file}:{}` | {} |",
            c.kind,
            c.id,
            c.line,
            units(c.cost)
        );
        assert!(page.contains(&row), "docs/src/policy/cost.md lacks `{row}`");
    }
    assert!(page.contains(&format!(
        "max_condition_cost` (default **{}** units)",
        units(DEFAULT_MAX_CONDITION_COST)
    )));
}
