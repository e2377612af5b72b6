//! The bounds hold where they should, and conditions right at them compile,
//! check and evaluate on a test thread (2 MiB of stack, debug frames).

use std::sync::Arc;

use chrono::{TimeZone, Utc};

use super::*;
use crate::cache::decide_with;
use crate::engine::Outcome;
use crate::policy::PolicySet;
use crate::policy::diag::Code;
use crate::proto::v1 as pb;

fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

#[test]
fn counts_brackets_up_to_the_bound() {
    assert_eq!(check(&nested("(", "1", ")", MAX_NESTING)), Ok(()));
    let e = check(&nested("(", "1", ")", MAX_NESTING + 1)).unwrap_err();
    assert_eq!(e.offset, MAX_NESTING, "the first bracket past the bound");
    assert!(e.message.contains("32 deep"), "{}", e.message);
    // Every kind of bracket counts; closed ones are given back.
    assert!(check(&nested("[{(", "1", ")}]", 11)).is_err());
    assert_eq!(check(&"(1) + ".repeat(100)), Ok(()));
}

#[test]
fn counts_operators_up_to_the_bound() {
    let chain = |n: usize| format!("1{}", " + 1".repeat(n));
    assert_eq!(check(&chain(MAX_OPERATORS)), Ok(()));
    let e = check(&chain(MAX_OPERATORS + 1)).unwrap_err();
    assert!(e.message.contains("512 operators"), "{}", e.message);
    // The offset is the operator past the bound.
    assert_eq!(e.offset, 2 + 4 * MAX_OPERATORS);
    let count = |s: &str| {
        let n = MAX_OPERATORS - 1;
        (
            check(&format!("{}{s}", "1 + ".repeat(n))).is_ok(),
            check(&format!("{}1 + {s}", "1 + ".repeat(n))).is_ok(),
        )
    };
    // Two-char operators count once; `in` counts, `index` and `inx` do not.
    assert_eq!(count("1 == 1"), (true, false));
    assert_eq!(count("true && true"), (true, false));
    assert_eq!(count("1 in [1]"), (false, false), "`in` and `[` are two");
    assert_eq!(count("index"), (true, true));
    assert_eq!(count("a.b"), (true, false));
    assert_eq!(
        count("1.5"),
        (true, true),
        "a decimal point is no selection"
    );
    assert_eq!(count("x2.y"), (true, false));
}

#[test]
fn skips_strings_and_comments() {
    let deep = "(".repeat(100);
    for text in [
        format!("'{deep}' == ''"),
        format!("\"{deep}\" == \"\""),
        format!("'''{deep}\n{deep}''' == ''"),
        format!("\"\"\"{deep}\"\"\" == ''"),
        format!("'\\'{deep}' == ''"),
        format!("r'{deep}\\' == ''"),
        format!("1 == 1 // {deep}\n"),
        "'' == ''".to_owned(),
    ] {
        assert_eq!(check(&text), Ok(()), "{text}");
    }
    // After a string, counting goes on.
    assert!(check(&format!("'' == '' && {}", nested("(", "1", ")", 40))).is_err());
    // A raw string ends at its quote: the backslash escapes nothing.
    assert!(check(&format!("r'\\' == '' && {}", nested("(", "1", ")", 40))).is_err());
}

/// Conditions at the bounds, each on its own action: `(action, condition,
/// outcome)`, `None` where the condition fails at run time (a missing field)
/// and the rule fails closed.
fn at_the_bounds() -> Vec<(String, String, Option<bool>)> {
    let (n, d) = (MAX_NESTING, MAX_DEPTH);
    // Each `all(` stays open: comprehensions nest as deep as brackets do.
    let all = n;
    let shapes = [
        (nested("(", "1", ")", n) + " == 1", Some(true)),
        (nested("[", "", "]", n - 1) + " != []", Some(true)),
        (nested("int(", "1", ")", n - 1) + " == 1", Some(true)),
        (
            (0..all)
                .map(|i| format!("[1].all(x{i}, "))
                .collect::<String>()
                + "true"
                + &")".repeat(all),
            Some(true),
        ),
        (
            format!("1{} == {}", " + 1".repeat(d - 2), d - 1),
            Some(true),
        ),
        (format!("true{}", " == true".repeat(d - 1)), Some(true)),
        (format!("{}true", "!".repeat(MAX_OPERATORS)), Some(true)),
        (
            format!("{}true", "!".repeat(MAX_OPERATORS - 1)),
            Some(false),
        ),
        (
            format!("subject.attributes{} == 1", ".a".repeat(d - 3)),
            None,
        ),
        (format!("subject.roles{} == 1", "[0]".repeat(d - 3)), None),
        (
            format!("true{}", " && true".repeat(MAX_OPERATORS - 1)),
            Some(true),
        ),
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, (when, outcome))| (format!("shape.s{i}"), when, outcome))
        .collect()
}

/// Runs `f` on a thread with the stack conditions get in production.
fn on_condition_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn the_shapes_sit_at_the_bounds() {
    on_condition_stack(shapes_sit_at_the_bounds);
}

fn shapes_sit_at_the_bounds() {
    let depths: Vec<usize> = at_the_bounds()
        .iter()
        .map(|(_, when, _)| depth(cel::Program::compile(when).unwrap().expression()))
        .collect();
    assert!(depths.iter().all(|&x| x <= MAX_DEPTH), "{depths:?}");
    // The chains are exactly at the bound, and one more link is past it.
    assert_eq!(&depths[4..6], &[MAX_DEPTH, MAX_DEPTH]);
    assert_eq!(&depths[8..10], &[MAX_DEPTH, MAX_DEPTH]);
    let one_more = format!("1{} == 1", " + 1".repeat(MAX_DEPTH - 1));
    assert_eq!(
        depth(cel::Program::compile(&one_more).unwrap().expression()),
        MAX_DEPTH + 1
    );
}

#[test]
fn conditions_at_the_bounds_compile_and_decide() {
    on_condition_stack(decide_at_the_bounds);
}

fn decide_at_the_bounds() {
    let mut text = String::from(
        "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - name: aal1\n    acr: [a1]\n---\n\
         apiVersion: stepup/v1\nkind: Policy\nname: bounds\nrules:\n",
    );
    let shapes = at_the_bounds();
    for (i, (action, when, _)) in shapes.iter().enumerate() {
        assert_eq!(check(when), Ok(()), "{when}");
        text.push_str(&format!(
            "  - id: r{i}\n    actions: [\"{action}\"]\n    when: '{when}'\n    effect: deny\n"
        ));
    }
    let set = match PolicySet::from_str("bounds.yaml", &text) {
        Ok((set, _)) => Arc::new(set),
        Err(report) => panic!("{report}"),
    };
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    for (action, when, outcome) in &shapes {
        let req = pb::DecideRequest {
            action: action.clone(),
            subject: Some(pb::Subject {
                id: "u1".into(),
                roles: vec!["admin".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let d = decide_with(Arc::clone(&set), None, &req, now, false);
        match outcome {
            Some(true) => assert_eq!(d.outcome, Outcome::Deny, "{when}"),
            Some(false) => assert_eq!(d.outcome, Outcome::Allow, "{when}"),
            // Failed closed, with the error reported.
            None => assert!(
                d.outcome == Outcome::Deny && !d.assessment.errors.is_empty(),
                "{when}: {d:?}"
            ),
        }
    }
}

#[test]
fn conditions_past_the_bounds_are_a_load_error_with_a_caret() {
    on_condition_stack(past_the_bounds);
}

fn past_the_bounds() {
    let deep = nested("(", "1", ")", 200);
    let text = format!(
        "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - name: aal1\n    acr: [a1]\n---\n\
         apiVersion: stepup/v1\nkind: Policy\nname: bounds\nrules:\n\
         \x20 - id: deep\n    actions: [a.b]\n    when: '{deep} == 1'\n    effect: deny\n\
         \x20 - id: long\n    actions: [a.c]\n    when: '1{} == 1'\n    effect: deny\n\
         \x20 - id: chain\n    actions: [a.d]\n    when: '1{} == 1'\n    effect: deny\n",
        " + 1".repeat(1000),
        " + 1".repeat(MAX_DEPTH - 1),
    );
    let report = PolicySet::from_str("bounds.yaml", &text).unwrap_err();
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 3, "{report}");
    assert!(
        errors.iter().all(|e| e.code == Code::DepthLimit),
        "{report}"
    );
    let shown = report.to_string();
    // One error per rule, at the bracket past the bound (column 12 + 32),
    // the line cut to a window around it with the caret under that bracket.
    assert!(shown.contains("--> bounds.yaml:13:44\n"), "{shown}");
    let lines: Vec<&str> = shown.lines().collect();
    let source = lines.iter().position(|l| l.starts_with("13 | ")).unwrap();
    let caret = lines[source + 1].find('^').unwrap();
    let under: Vec<char> = lines[source].chars().collect();
    assert_eq!(under[caret], '(', "{shown}");
    assert_eq!(
        under[5..caret].iter().filter(|&&c| c == '(').count(),
        MAX_NESTING,
        "the window shows the brackets before it: {shown}"
    );
    assert!(shown.contains("(in `deep`) [depth-limit]"), "{shown}");
    assert!(shown.contains("(in `long`) [depth-limit]"), "{shown}");
    assert!(
        shown.contains("error: the condition's expression is 101 levels deep, more than 100 (in `chain`) [depth-limit]\n  --> bounds.yaml:21:11\n"),
        "{shown}"
    );
    // Source lines are cut: the 2,000-char one too.
    for line in lines.iter().filter(|l| l.contains(" | ")) {
        assert!(
            line.chars().count() <= 110,
            "a line of {} chars: {line}",
            line.chars().count()
        );
    }
}
