//! Unit tests of suite loading (diagnostics) and running (checks, coverage).

use std::path::Path;
use std::sync::Arc;

use super::*;

const POLICY: &str = r#"
apiVersion: stepup/v1
kind: Levels
levels:
  - name: aal1
    acr: ["urn:aal1"]
  - name: aal2
    acr: ["urn:aal2"]
---
apiVersion: stepup/v1
kind: Policy
name: p
signals:
  - id: untrusted-device
    when: "!device.trusted"
    score: 30
rules:
  - id: refund-large
    actions: ["payments.refund"]
    when: "resource.attributes.amount > 1000.0"
    effect: challenge
    require: { level: aal2, methods: [otp], max_age: 5m }
  - id: blocked
    actions: ["*"]
    when: 'network.country == "KP"'
    effect: deny
  - id: new-rule
    actions: ["payments.*"]
    when: "risk.score >= 30"
    effect: challenge
    mode: shadow
    require: { level: aal2 }
"#;

fn policy() -> Arc<PolicySet> {
    let (set, _) = PolicySet::from_str("p.yaml", POLICY).unwrap_or_else(|r| panic!("{r}"));
    Arc::new(set)
}

fn read(text: &str) -> (Vec<Suite>, Report) {
    let set = policy();
    let names = parse::Names::of(&set);
    let file = SourceFile {
        path: "s_test.yaml".into(),
        text: text.to_owned(),
    };
    let mut report = Report::default();
    let suites = parse::read_file(&file, &names, &mut report);
    (suites, report)
}

fn errors(text: &str) -> Vec<String> {
    let (_, report) = read(text);
    report.errors().map(ToString::to_string).collect()
}

/// The codes of the errors of reading `text`.
fn error_codes(text: &str) -> Vec<Code> {
    let (_, report) = read(text);
    report.errors().map(|d| d.code).collect()
}

const SUITE: &str = r#"
name: payments
now: 2026-11-27T10:00:00Z
fixtures:
  alice:
    subject: { id: alice }
    session: { acr: "urn:aal1", amr: [pwd], authTime: "2026-11-27T09:00:00Z" }
    device: { trusted: true }
  stepped-up:
    session: { acr: "urn:aal2", amr: [pwd, otp], auth_time: "2026-11-27T09:59:00Z" }
cases:
  - name: small refund
    fixture: alice
    request:
      action: payments.refund
      resource: { attributes: { amount: 50 } }
    expect: { outcome: allow, reasons: [], risk_score: 0, signals: [] }
  - name: large refund
    fixture: alice
    request:
      action: payments.refund
      resource: { attributes: { amount: 5000 } }
    expect:
      outcome: challenge
      requirements: [{ rule: refund-large, level: aal2, methods: [otp], max_age: 5m }]
      reasons: [refund-large]
  - name: large refund after step-up
    fixture: [alice, stepped-up]
    now: 2026-11-27T10:01:00Z
    request:
      action: payments.refund
      resource: { attributes: { amount: 5000 } }
      device: { trusted: false }
    expect:
      outcome: allow
      risk_score: { min: 20, max: 40 }
      signals: [untrusted-device]
      shadow: [new-rule]
  - name: missing amount fails closed
    fixture: alice
    request: { action: payments.refund }
    expect: { outcome: challenge, errors: [refund-large] }
"#;

#[test]
fn reads_fixtures_and_overrides() {
    let (suites, report) = read(SUITE);
    assert!(!report.has_errors(), "{report}");
    let cases = &suites[0].cases;
    assert_eq!(cases.len(), 4);
    let r = &cases[2].request;
    // `auth_time` of the second fixture replaces `authTime` of the first.
    let session = r.session.as_ref().unwrap();
    assert_eq!(session.acr, "urn:aal2");
    assert_eq!(session.amr, ["pwd", "otp"]);
    assert_eq!(
        session.auth_time.as_ref().unwrap().seconds,
        DateTime::parse_from_rfc3339("2026-11-27T09:59:00Z")
            .unwrap()
            .timestamp()
    );
    assert!(
        !r.device.as_ref().unwrap().trusted,
        "case overrides fixture"
    );
    assert_eq!(r.subject.as_ref().unwrap().id, "alice", "fixture kept");
    assert_eq!(cases[2].now.to_rfc3339(), "2026-11-27T10:01:00+00:00");
    assert_eq!(cases[0].now.to_rfc3339(), "2026-11-27T10:00:00+00:00");
    assert_eq!(cases[1].line, 18);
}

#[test]
fn runs_and_passes() {
    let (suites, _) = read(SUITE);
    let report = run(&policy(), &suites, None);
    for r in &report.results {
        assert!(
            r.passed(),
            "{}\n{}",
            r.case.name,
            render::text(&report, false)
        );
    }
    assert_eq!(report.summary(), "4 passed, 0 failed");
    assert_eq!(report.coverage.unmatched_rules(), ["blocked"]);
    assert!(report.coverage.unfired_signals().is_empty());
}

#[test]
fn a_failure_shows_expected_actual_and_trace() {
    let text = SUITE.replace(
        "expect: { outcome: allow, reasons: [], risk_score: 0, signals: [] }",
        "expect: { outcome: challenge, reasons: [refund-large], risk_score: 0 }",
    );
    let (suites, report) = read(&text);
    assert!(!report.has_errors(), "{report}");
    let report = run(&policy(), &suites, Some(&Filter::new("small")));
    assert_eq!(report.summary(), "0 passed, 1 failed");
    let out = render::text(&report, false);
    assert!(
        out.starts_with("FAIL payments › small refund\n  --> s_test.yaml:12\n"),
        "{out}"
    );
    assert!(
        out.contains("    field       expected        actual\n  ✗ outcome     challenge       allow\n    risk_score  0               0\n  ✗ reasons     [refund-large]  []\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "  trace:\n    signal untrusted-device  -        `!device.trusted` is false\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "    rule   refund-large      -        `resource.attributes.amount > 1000.0` is false\n"
        ),
        "{out}"
    );
    assert!(out.ends_with("\n\n0 passed, 1 failed"), "{out}");
}

#[test]
fn requirements_match_in_any_order_and_in_full() {
    let a = |rule: &str, level: &str| ActualRequirement {
        rule: rule.into(),
        level: Some(level.into()),
        methods: vec![],
        max_age: None,
        max_age_value: None,
    };
    let e = |rule: Option<&str>, level: Option<&str>| ExpectedRequirement {
        rule: rule.map(Into::into),
        level: level.map(Into::into),
        ..Default::default()
    };
    let actual = [a("r1", "aal2"), a("r2", "aal3")];
    assert!(requirements_match(
        &[e(Some("r2"), None), e(Some("r1"), Some("aal2"))],
        &actual
    ));
    // The greedy choice (r1 for the first) would leave nothing for the second.
    assert!(requirements_match(
        &[e(None, None), e(None, Some("aal2"))],
        &actual
    ));
    assert!(!requirements_match(&[e(Some("r1"), None)], &actual));
    assert!(!requirements_match(
        &[e(Some("r1"), Some("aal3")), e(Some("r2"), None)],
        &actual
    ));
}

#[test]
fn filters_by_substring_or_glob() {
    assert!(Filter::new("refund").matches("payments › large refund"));
    assert!(!Filter::new("Refund").matches("payments › large refund"));
    assert!(Filter::new("payments › *refund").matches("payments › large refund"));
    assert!(!Filter::new("account*").matches("payments › large refund"));
}

#[test]
fn unknown_keys_get_did_you_mean() {
    let e = errors(
        "name: s\nnow: 2026-11-27T10:00:00Z\ncases:\n  - name: c\n    requst: { action: a }\n    expect: { outcome: allow }\n",
    );
    assert_eq!(
        e[0],
        "error: unknown key `requst` in a test case [unknown-key]\n --> s_test.yaml:5:5\n  |\n5 |     requst: { action: a }\n  |     ^^^^^^\n  = help: did you mean `request`?"
    );
}

#[test]
fn unknown_names_in_expectations() {
    let e = errors(
        r#"name: s
now: 2026-11-27T10:00:00Z
cases:
  - name: c
    request: { action: a, subject: { id: u } }
    expect:
      outcome: alow
      reasons: [refund-lage]
      signals: [untrusted-devise, refund-large]
      requirements: [{ level: aal9, max_age: soon }]
"#,
    );
    let joined = e.join("\n\n");
    for want in [
        "error: unknown outcome `alow` [unknown-outcome]\n --> s_test.yaml:7:16",
        "= help: did you mean `allow`?",
        "error: unknown rule `refund-lage` [unknown-rule]\n --> s_test.yaml:8:17",
        "= help: did you mean `refund-large`?",
        "error: unknown signal `untrusted-devise`",
        "= help: did you mean `untrusted-device`?",
        "error: unknown signal `refund-large`",
        "= help: `refund-large` is a rule; list it under `reasons`",
        "error: unknown level `aal9`",
        "= help: did you mean `aal1` or `aal2`?",
        "error: invalid duration `soon`",
    ] {
        assert!(joined.contains(want), "missing {want:?} in\n{joined}");
    }
}

#[test]
fn unknown_level_without_levels_says_there_are_none() {
    let (set, _) = PolicySet::from_str(
        "p.yaml",
        "apiVersion: stepup/v1\nkind: Levels\nlevels: []\n---\napiVersion: stepup/v1\nkind: Policy\nname: p\nrules:\n  - { id: r, actions: [a], effect: deny }\n",
    )
    .unwrap_or_else(|r| panic!("{r}"));
    let names = parse::Names::of(&set);
    let file = SourceFile {
        path: "s_test.yaml".into(),
        text: "name: s\ncases:\n  - name: c\n    request: { action: a, subject: { id: u } }\n    expect:\n      outcome: deny\n      requirements: [{ level: aal2 }]\n".to_owned(),
    };
    let mut report = Report::default();
    parse::read_file(&file, &names, &mut report);
    let e: Vec<String> = report.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with("error: unknown level `aal2` [unknown-level]\n")
            && e[0].ends_with("= help: the policy set defines no levels"),
        "{e:#?}"
    );
}

#[test]
fn unknown_fixture_and_bad_now() {
    let e = errors(
        r#"name: s
fixtures:
  alice: { subject: { id: alice } }
cases:
  - name: c
    now: yesterday
    fixture: alise
    request: { action: a }
    expect: { outcome: allow }
"#,
    );
    let joined = e.join("\n\n");
    assert!(
        joined.contains("error: invalid `now` `yesterday`: ")
            && joined.contains("--> s_test.yaml:6:10"),
        "{joined}"
    );
    assert!(
        joined.contains("error: unknown fixture `alise` [unknown-fixture]\n --> s_test.yaml:7:14\n  |\n7 |     fixture: alise\n  |              ^^^^^\n  = help: did you mean `alice`?"),
        "{joined}"
    );
}

#[test]
fn a_bad_request_field_is_reported_where_written() {
    let suite = r#"name: s
now: 2026-11-27T10:00:00Z
fixtures:
  alice: { subject: { id: alice }, device: { trusted: "yes" } }
cases:
  - name: typo
    request: { action: a, subject: { id: u }, devce: { trusted: true } }
    expect: { outcome: allow }
  - name: wrong type from the fixture
    fixture: alice
    request: { action: a }
    expect: { outcome: allow }
  - name: missing subject
    request: { action: a, session: { authTime: "2026-13-01" } }
    expect: { outcome: allow }
  - name: invalid country
    request: { action: a, subject: { id: u }, network: { country: germany } }
    expect: { outcome: allow }
"#;
    assert_eq!(
        error_codes(suite),
        [
            Code::UnknownField,
            Code::InvalidRequest,
            Code::InvalidRequest,
            Code::InvalidRequest
        ]
    );
    let e = errors(suite);
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(
        e[0].starts_with("error: invalid request: unknown field `devce`, expected one of")
            && e[0].contains("--> s_test.yaml:7:47")
            && e[0].ends_with("= help: did you mean `device`?"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("error: invalid request field `device.trusted`: invalid type: string \"yes\", expected a boolean")
            && e[1].contains("--> s_test.yaml:4:55"),
        "{}",
        e[1]
    );
    assert!(
        e[2].starts_with("error: invalid request field `session.authTime`: ")
            && e[2].contains("--> s_test.yaml:14:48")
            && e[2].ends_with("= help: write an RFC 3339 time such as `2026-11-27T09:00:00Z`"),
        "{}",
        e[2]
    );
    assert!(
        e[3].starts_with(
            "error: invalid request: `network.country`: `germany` is not an ISO 3166-1 alpha-2 code"
        ) && e[3].contains("--> s_test.yaml:17:67"),
        "{}",
        e[3]
    );
}

#[test]
fn missing_pieces() {
    let suite = "name: s\ncases:\n  - name: c\n    request: { action: a, subject: { id: u } }\n    expect: { outcome: allow }\n  - name: d\n    expect: { reasons: [] }\n";
    assert_eq!(error_codes(suite), [Code::MissingKey; 3]);
    let e = errors(suite);
    let joined = e.join("\n\n");
    for want in [
        "error: test case `c` is missing `now`",
        "error: `expect` is missing `outcome`",
        "error: test case has no `request`",
    ] {
        assert!(joined.contains(want), "missing {want:?} in\n{joined}");
    }
}

#[test]
fn duplicate_case_names() {
    let e = errors(
        "name: s\nnow: 2026-11-27T10:00:00Z\ncases:\n  - name: c\n    request: { action: a, subject: { id: u } }\n    expect: { outcome: allow }\n  - name: c\n    request: { action: a, subject: { id: u } }\n    expect: { outcome: allow }\n",
    );
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("error: duplicate case name `c` [duplicate-case]\n --> s_test.yaml:7:11"),
        "{}",
        e[0]
    );
}

#[test]
fn load_finds_suites_and_reports_none() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
    let set = policy();
    let report = load(dir.path(), &set).unwrap_err();
    assert!(
        report.to_string().starts_with("error: no test suites in `"),
        "{report}"
    );

    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/pay_test.yaml"), SUITE).unwrap();
    std::fs::write(dir.path().join(".hidden_test.yaml"), "garbage: [").unwrap();
    let (suites, _) = load(dir.path(), &set).unwrap();
    assert_eq!(suites.len(), 1);
    assert_eq!(suites[0].file, dir.path().join("sub/pay_test.yaml"));
    assert!(Path::new(&suites[0].file).exists());
}

#[test]
fn junit_and_json() {
    let (suites, _) = read(SUITE);
    let report = run(&policy(), &suites, None);
    let xml = render::junit(&report);
    assert!(
        xml.contains("<testsuites name=\"stepup test\" tests=\"4\" failures=\"0\""),
        "{xml}"
    );
    assert!(xml.contains("<testcase name=\"large refund\" classname=\"payments\" file=\"s_test.yaml\" line=\"18\""), "{xml}");
    let v = render::json_report(&report);
    assert_eq!(v["passed"], 4);
    assert_eq!(v["coverage"]["unmatched_rules"], json!(["blocked"]));
    assert_eq!(v["cases"][1]["checks"][1]["field"], "requirements");
}

#[test]
fn suites_held_in_memory_read_and_decide_as_on_disk() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (set, _) = PolicySet::load(&dir).unwrap();
    let set = Arc::new(set);
    let (on_disk, _) = load(&dir, &set).unwrap();
    let sources: Vec<SourceFile> = suite_files(&dir)
        .unwrap()
        .into_iter()
        .map(|path| SourceFile {
            text: std::fs::read_to_string(&path).unwrap(),
            path,
        })
        .collect();
    let (in_memory, _) = load_sources(&sources, &set).unwrap();
    let names = |s: &[Suite]| -> Vec<String> {
        s.iter()
            .flat_map(|s| s.cases.iter().map(full_name))
            .collect()
    };
    assert_eq!(names(&in_memory), names(&on_disk));
    // `decide_case` is the runner's decision: every example case holds.
    let report = run(&set, &in_memory, None);
    assert_eq!(report.failed(), 0);
    for result in &report.results {
        let decision = decide_case(&set, result.case);
        assert_eq!(decision.outcome, result.actual.outcome);
    }
}
