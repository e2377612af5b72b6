#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! `stepup test` as users and CI run it: the example policies' own suite
//! with full coverage, and the failure paths (a failing case, an invalid
//! suite, JUnit and JSON output).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn stepup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A directory with the example policies (not their suite) and `suite` as
/// `s_test.yaml`.
fn with_suite(suite: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !name.ends_with("_test.yaml") {
            std::fs::copy(&path, dir.path().join(name)).unwrap();
        }
    }
    // The IP lists the policies use (`lists/*.txt`).
    let lists = dir.path().join("lists");
    std::fs::create_dir(&lists).unwrap();
    for entry in std::fs::read_dir(examples().join("lists")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, lists.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(dir.path().join("s_test.yaml"), suite).unwrap();
    dir
}

const SUITE: &str = r#"name: refunds
now: 2026-11-27T10:00:00Z
fixtures:
  alice:
    subject: { id: alice }
    device: { trusted: true }
    session: { acr: "urn:stepup:aal1", amr: [pwd], authTime: "2026-11-27T09:00:00Z" }
cases:
  - name: small refund
    fixture: alice
    request: { action: payments.refund, resource: { attributes: { amount: 40 } } }
    expect: { outcome: allow }
  - name: large refund
    fixture: alice
    request: { action: payments.refund, resource: { attributes: { amount: 4000 } } }
    expect: { outcome: allow, risk_score: 0 }
"#;

#[test]
fn the_examples_pass_with_every_rule_covered() {
    let dir = examples().display().to_string();
    let out = stepup(&["test", "--policies", &dir, "--require-coverage"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("\ncoverage: 20 of 20 rules matched, 7 of 7 signals fired\n"),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap();
    let (passed, failed) = last.split_once(" passed, ").unwrap();
    assert!(passed.parse::<usize>().unwrap() >= 20, "{last}");
    assert_eq!(failed, "0 failed");
    assert!(!stdout.contains("FAIL "), "{stdout}");
    for line in stdout.lines().take_while(|l| !l.is_empty()) {
        assert!(
            line.starts_with("PASS examples › ")
                || line.starts_with("PASS behaviour › ")
                || line.starts_with("PASS signals › "),
            "{line}"
        );
    }
}

#[test]
fn a_failing_case_shows_expected_actual_and_its_trace() {
    let dir = with_suite(SUITE);
    let out = stepup(&["test", "--policies", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let file = dir.path().join("s_test.yaml").display().to_string();
    assert!(
        stdout.starts_with("PASS refunds › small refund\nFAIL refunds › large refund\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "  --> {file}:13\n    field       expected  actual\n  ✗ outcome     allow     challenge\n    risk_score  0         0\n  trace:\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "    rule   refund-large              matched  `resource.attributes.amount > 1000.0` is true\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("    not considered (action `payments.refund` matches none of their actions): password-change,"), "{stdout}");
    assert!(stdout.ends_with("\n\n1 passed, 1 failed\n"), "{stdout}");
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn an_invalid_suite_exits_2_with_a_positioned_diagnostic() {
    let dir = with_suite(&SUITE.replace(
        "expect: { outcome: allow, risk_score: 0 }",
        "expect: { outcome: allow, reasons: [refund-lage] }",
    ));
    let out = stepup(&["test", "--policies", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let file = dir.path().join("s_test.yaml").display().to_string();
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: unknown rule `refund-lage` [unknown-rule]\n  --> {file}:16:41\n   |\n16 |     expect: {{ outcome: allow, reasons: [refund-lage] }}\n   |                                         ^^^^^^^^^^^\n   = help: did you mean `refund-large`?\n\nerror: the test suites are invalid (1 error)\n"
        )
    );
    assert_eq!(text(&out.stdout), "");

    let out = stepup(&[
        "test",
        "--policies",
        &dir.path().display().to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["diagnostics"][0]["code"], "unknown-rule");
    assert_eq!(v["diagnostics"][0]["location"]["line"], 16);
    assert_eq!(v["diagnostics"][0]["help"], "did you mean `refund-large`?");
}

#[test]
fn invalid_policies_exit_3() {
    let dir = with_suite(SUITE);
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: stepup/v1\nkind: Policy\n",
    )
    .unwrap();
    let out = stepup(&["test", "--policies", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: policy is missing `name`"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("error: the policy set is invalid (1 error)\n"),
        "{stderr}"
    );
}

#[test]
fn no_suites_exit_2() {
    let dir = with_suite(SUITE);
    std::fs::remove_file(dir.path().join("s_test.yaml")).unwrap();
    let out = stepup(&["test", "--policies", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: no test suites in `"));
}

#[test]
fn junit_output_is_valid_xml() {
    let dir = with_suite(&SUITE.replace("large refund", "large refund <&> \"quoted\""));
    let junit = dir.path().join("junit.xml");
    let out = stepup(&[
        "test",
        "--policies",
        &dir.path().display().to_string(),
        "--junit",
        &junit.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests"), Some("2"));
    assert_eq!(root.attribute("failures"), Some("1"));
    let suite = root.children().find(|n| n.is_element()).unwrap();
    assert_eq!(suite.attribute("name"), Some("refunds"));
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 2);
    assert_eq!(
        cases[1].attribute("name"),
        Some("large refund <&> \"quoted\"")
    );
    assert_eq!(cases[1].attribute("line"), Some("13"));
    let failure = cases[1]
        .children()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    assert_eq!(
        failure.attribute("message"),
        Some("outcome: expected allow, got challenge")
    );
    assert!(failure.text().unwrap().contains("trace:"));
    assert!(cases[0].children().all(|n| !n.has_tag_name("failure")));
}

#[test]
fn json_output() {
    let dir = with_suite(SUITE);
    let out = stepup(&[
        "test",
        "--policies",
        &dir.path().display().to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], 1);
    assert_eq!(v["failed"], 1);
    let case = &v["cases"][1];
    assert_eq!(case["case"], "large refund");
    assert_eq!(case["passed"], false);
    assert_eq!(case["checks"][0]["field"], "outcome");
    assert_eq!(case["checks"][0]["expected"], "allow");
    assert_eq!(case["checks"][0]["actual"], "challenge");
    assert_eq!(case["actual"]["requirements"][0]["rule"], "refund-large");
    assert_eq!(case["actual"]["requirements"][0]["max_age"], "5m");
    assert!(case["trace"].as_array().unwrap().len() > 5);
    assert!(
        v["coverage"]["unmatched_rules"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("blocked-country"))
    );
}

#[test]
fn filter_and_require_coverage() {
    let dir = with_suite(SUITE);
    let d = dir.path().display().to_string();
    let out = stepup(&["test", "--policies", &d, "--filter", "small"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "PASS refunds › small refund\n\n1 passed, 0 failed\n"
    );

    let out = stepup(&[
        "test",
        "--policies",
        &d,
        "--filter",
        "refunds › small*",
        "--require-coverage",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("coverage: 0 of 20 rules matched, 0 of 7 signals fired\n"),
        "{stdout}"
    );
    assert!(stdout.ends_with("\n1 passed, 0 failed\n"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: 20 rules no test case matches: `password-change`, "),
        "{stderr}"
    );

    let out = stepup(&["test", "--policies", &d, "--filter", "nothing"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "0 passed, 0 failed\n");
    assert_eq!(
        text(&out.stderr),
        "warning: no test case matches `--filter nothing`\n"
    );
}
