#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! What the real `stepup` binary prints for scripts and people: the JSON
//! documents of `--format json` (parsed, their documented keys present),
//! `eval --format text`, `--help` (defaults, environment variables,
//! examples, exit codes) and `stepup completions` (a script each shell
//! accepts).

use std::process::Command;

#[path = "common/cli.rs"]
mod cli;
use cli::{examples, refund, stepup, text};

fn json(args: &[&str]) -> serde_json::Value {
    let out = stepup(args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

#[test]
fn check_json_has_its_documented_keys() {
    let v = json(&[
        "check",
        "--policies",
        &examples(),
        "--format",
        "json",
        "--costs",
    ]);
    assert_eq!(
        keys(&v),
        [
            "costs",
            "diagnostics",
            "errors",
            "revision",
            "valid",
            "warnings"
        ]
    );
    assert_eq!(v["valid"], true);
    assert_eq!(v["errors"], 0);
    assert!(v["revision"].as_str().unwrap().starts_with("sha256:"));
    assert!(v["diagnostics"].is_array());
}

#[test]
fn test_json_has_its_documented_keys() {
    let v = json(&["test", "--policies", &examples(), "--format", "json"]);
    assert_eq!(
        keys(&v),
        ["cases", "coverage", "failed", "passed", "revision"]
    );
    assert_eq!(v["failed"], 0);
    let case = &v["cases"][0];
    assert_eq!(
        keys(case),
        ["case", "checks", "file", "line", "passed", "suite"]
    );
    assert_eq!(
        keys(&v["coverage"]),
        ["rules", "signals", "unfired_signals", "unmatched_rules"]
    );
}

#[test]
fn replay_json_has_its_documented_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let request: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(refund()).unwrap()).unwrap();
    let requests = tmp.path().join("requests.jsonl");
    std::fs::write(&requests, format!("{request}\n{request}\n")).unwrap();
    let v = json(&[
        "replay",
        "--policies",
        &examples(),
        "--baseline",
        &examples(),
        "--requests",
        requests.to_str().unwrap(),
        "--now",
        "2026-11-27T12:00:00Z",
        "--format",
        "json",
    ]);
    assert_eq!(
        keys(&v),
        [
            "baseline_revision",
            "candidate_revision",
            "changed",
            "elapsed_seconds",
            "input",
            "requests",
            "requests_per_second",
            "rules_changed_only",
            "transitions"
        ]
    );
    assert_eq!(v["requests"], 2);
    assert_eq!(v["changed"], 0);
    assert_eq!(
        keys(&v["transitions"][0]),
        [
            "after",
            "before",
            "changed",
            "count",
            "examples",
            "rules_added",
            "rules_removed"
        ]
    );
}

#[test]
fn eval_prints_json_by_default_and_a_summary_as_text() {
    let args = [
        "eval",
        "--policies",
        &examples(),
        "--context",
        &refund(),
        "--now",
        "2026-11-27T12:00:00Z",
    ];
    let v = json(&args);
    assert_eq!(v["outcome"], "OUTCOME_CHALLENGE");
    let mut as_json = args.to_vec();
    as_json.extend(["--format", "json"]);
    let again = json(&as_json);
    assert_eq!(again["outcome"], v["outcome"]);
    assert_eq!(again["requirements"], v["requirements"]);

    let mut as_text = args.to_vec();
    as_text.extend(["--format", "text"]);
    let out = stepup(&as_text);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "outcome: challenge", "{stdout}");
    assert!(
        lines[1].starts_with(
            "requirement: `refund-large` asks for level `aal2` (acr_values urn:stepup:aal2 "
        ),
        "{stdout}"
    );
    assert!(
        lines[1].ends_with(", methods hwk otp, max_age 300s"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("www-authenticate: Bearer error=\"insufficient_user_authentication\""),
        "{stdout}"
    );
    assert_eq!(lines[3], "risk: 30 (signals: untrusted-device)", "{stdout}");
    assert_eq!(
        lines[4],
        "reason: challenge `refund-large`: Refunds above 1,000 need re-verification"
    );
    assert!(!stdout.contains("\ntrace: "), "{stdout}");
    let last = lines.last().unwrap();
    assert!(last.starts_with("decision: "), "{stdout}");
    assert!(
        last.ends_with(&format!(
            " (policy revision {})",
            v["policyRevision"].as_str().unwrap()
        )),
        "{stdout}"
    );
    // --explain adds a line per signal and rule.
    as_text.push("--explain");
    let out = stepup(&as_text);
    let stdout = text(&out.stdout);
    let trace: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("trace: "))
        .collect();
    assert_eq!(trace.len(), 7 + 20, "{stdout}");
    assert!(
        trace
            .iter()
            .any(|l| l.starts_with("trace: signal `untrusted-device` fired: ")),
        "{stdout}"
    );
    assert!(
        trace
            .iter()
            .any(|l| l.starts_with("trace: rule `refund-large` matched: ")),
        "{stdout}"
    );
}

#[test]
fn help_says_defaults_environment_variables_and_examples() {
    let out = stepup(&["--help"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("\nExit codes:\n  0  success"), "{stdout}");
    assert!(stdout.contains("  completions  "), "{stdout}");
    for command in ["serve", "check", "eval", "test", "replay"] {
        let out = stepup(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let stdout = text(&out.stdout);
        assert!(stdout.contains("--policies <DIR>"), "{command}: {stdout}");
        assert!(
            stdout.contains("[env: STEPUP_POLICIES=]"),
            "{command}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("Examples:\n  stepup {command} --policies ")),
            "{command}: {stdout}"
        );
        assert!(stdout.contains("Exit codes: 0 "), "{command}: {stdout}");
        if command != "serve" {
            assert!(stdout.contains("[default: text]") || command == "eval");
            assert!(
                stdout.contains("--format json prints")
                    || stdout.contains("--format json (the default) prints"),
                "{command}: {stdout}"
            );
        }
        // The short help stays short: no examples.
        let out = stepup(&[command, "-h"]);
        assert!(!text(&out.stdout).contains("Examples:"), "{command}");
    }
    let eval = text(&stepup(&["eval", "--help"]).stdout);
    assert!(eval.contains("[default: json]"), "{eval}");
    assert!(eval.contains("[default: the current time]"), "{eval}");
    // The positional directory is not a documented second way.
    for command in ["check", "test"] {
        let help = text(&stepup(&[command, "--help"]).stdout);
        assert!(
            help.contains(&format!("Usage: stepup {command} [OPTIONS]\n")),
            "{help}"
        );
    }
}

/// The completion script for `shell`.
fn completions(shell: &str) -> String {
    let out = stepup(&["completions", shell]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn completions_name_every_command_and_flag_in_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = completions(shell);
        assert!(script.len() > 1000, "{shell}: {script}");
        for word in [
            "serve",
            "check",
            "eval",
            "test",
            "replay",
            "completions",
            "policies",
            "format",
            "require-coverage",
            "baseline",
            "max-time-skew",
        ] {
            assert!(script.contains(word), "{shell}: `{word}` missing");
        }
    }
    // Value completions for the enums.
    let bash = completions("bash");
    assert!(bash.contains("text json"), "{bash}");
}

fn have(shell: &str) -> bool {
    Command::new(shell)
        .args(["-c", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn bash_loads_the_completion_script_and_completes_commands() {
    assert!(have("bash"), "no bash on PATH: install bash");
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("stepup.bash");
    std::fs::write(&script, completions("bash")).unwrap();
    // Load the script, check the registration, then ask for the words after
    // `stepup ch` and `stepup check --po` as bash would.
    let program = format!(
        r#"source '{}' || exit 10
complete -p stepup || exit 11
COMP_WORDS=(stepup ch); COMP_CWORD=1; COMP_LINE='stepup ch'; COMP_POINT=${{#COMP_LINE}}
_stepup stepup ch stepup; echo "commands: ${{COMPREPLY[*]}}"
COMP_WORDS=(stepup check --po); COMP_CWORD=2; COMP_LINE='stepup check --po'; COMP_POINT=${{#COMP_LINE}}
_stepup stepup --po check; echo "flags: ${{COMPREPLY[*]}}""#,
        script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("complete ") && stdout.contains(" -F _stepup stepup\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\ncommands: check\n"), "{stdout}");
    assert!(stdout.contains("\nflags: --policies\n"), "{stdout}");
}

#[test]
fn zsh_and_fish_parse_their_scripts() {
    for (shell, flag) in [("zsh", "-n"), ("fish", "--no-execute")] {
        assert!(
            have(shell),
            "no {shell} on PATH: install it (`apt-get install zsh fish`; .ci/run does)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("stepup");
        std::fs::write(&script, completions(shell)).unwrap();
        let out = Command::new(shell).arg(flag).arg(&script).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
    }
}
