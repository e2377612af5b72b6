#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! `stepup replay` as users run it: a small decision log recorded under the
//! example policies, replayed under a candidate that lowers the large-refund
//! limit from 1,000 to 100.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use stepup::PolicySet;
use stepup::internal::response;
use stepup::proto::v1::DecideRequest;

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

/// The example policies with the large-refund limit lowered to 100.
fn candidate() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !name.ends_with("_test.yaml") {
            let text = std::fs::read_to_string(&path).unwrap().replace(
                "resource.attributes.amount > 1000.0",
                "resource.attributes.amount > 100.0",
            );
            std::fs::write(dir.path().join(name), text).unwrap();
        }
    }
    // The IP lists the policies use (`lists/*.txt`).
    let lists = dir.path().join("lists");
    std::fs::create_dir(&lists).unwrap();
    for entry in std::fs::read_dir(examples().join("lists")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, lists.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn refund(user: &str, amount: u32, country: &str) -> DecideRequest {
    serde_json::from_value(json!({
        "action": "payments.refund",
        "subject": { "id": user },
        "session": { "acr": "urn:stepup:aal1", "amr": ["pwd"], "authTime": "2026-11-27T09:00:00Z" },
        "device": { "trusted": true },
        "network": { "country": country },
        "resource": { "attributes": { "amount": amount } }
    }))
    .unwrap()
}

/// Decision-log lines recorded under the example policies at 10:00 UTC.
fn recorded(requests: &[DecideRequest]) -> String {
    let (set, _) = PolicySet::load(&examples()).unwrap();
    let set = Arc::new(set);
    let now: DateTime<Utc> = "2026-11-27T10:00:00Z".parse().unwrap();
    let mut out = String::new();
    for r in requests {
        let d = stepup::internal::decide_with(Arc::clone(&set), None, r, now, false);
        out.push_str(
            &json!({
                "time": "2026-11-27T10:00:00.000000Z",
                "source": "decide",
                "latency_us": 6.0,
                "cache_hit": false,
                "request": r,
                "decision": response(&d),
            })
            .to_string(),
        );
        out.push('\n');
    }
    out
}

fn log_file(dir: &Path) -> PathBuf {
    let log = recorded(&[
        refund("alice", 500, "DE"), // allow -> challenge
        refund("bob", 50, "DE"),    // allow -> allow
        refund("carol", 700, "DE"), // allow -> challenge
        refund("dave", 5000, "DE"), // challenge -> challenge
        refund("erin", 300, "KP"),  // deny -> deny (refund-large added)
        refund("frank", 900, "DE"), // allow -> challenge
    ]);
    let path = dir.join("decisions.jsonl");
    std::fs::write(&path, log).unwrap();
    path
}

#[test]
fn replay_reports_changes_rules_and_examples() {
    let candidate = candidate();
    let log = log_file(candidate.path());
    let out = stepup(&[
        "replay",
        "--policies",
        &candidate.path().display().to_string(),
        "--requests",
        &log.display().to_string(),
        "--examples",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "replayed 6 requests from `{}` under the candidate set (sha256:",
            log.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(") against the recorded decisions\n3 changed outcome (50.00%); 1 kept their outcome with different matched rules\n\nbefore -> after\n  allow -> challenge      3   50.00%  changed\n  allow -> allow          1   16.67%\n  challenge -> challenge  1   16.67%\n  deny -> deny            1   16.67%\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nallow -> challenge: 3 requests\n  now matching: +refund-large (3)\n  line 1: `payments.refund` by `alice`: allow [] -> challenge (level aal2, max_age 5m) [refund-large]\n  line 3: `payments.refund` by `carol`: allow [] -> challenge (level aal2, max_age 5m) [refund-large]\n\n6 requests in "),
        "{stdout}"
    );
}

#[test]
fn replay_against_a_baseline_set_as_json() {
    let candidate = candidate();
    let log = log_file(candidate.path());
    let out = stepup(&[
        "replay",
        "--policies",
        &examples().display().to_string(),
        "--baseline",
        &candidate.path().display().to_string(),
        "--requests",
        &log.display().to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["requests"], 6);
    assert_eq!(v["changed"], 3);
    let t = &v["transitions"][0];
    assert_eq!(t["before"], "challenge");
    assert_eq!(t["after"], "allow");
    assert_eq!(t["count"], 3);
    assert_eq!(
        t["rules_removed"],
        json!([{ "rule": "refund-large", "count": 3 }])
    );
    assert_eq!(t["examples"].as_array().unwrap().len(), 3);
    assert_eq!(t["examples"][2]["line"], 6);
    assert_eq!(t["examples"][2]["subject"], "frank");
    assert_eq!(
        t["examples"][2]["before"]["challenge"],
        "level aal2, max_age 5m"
    );
    assert!(
        v["baseline_revision"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[test]
fn bare_requests_from_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args([
            "replay",
            "--policies",
            &examples().display().to_string(),
            "--requests",
            "-",
            "--now",
            "2026-11-27T10:00:00Z",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = format!(
        "{}\n{}\n",
        serde_json::to_string(&refund("a", 5000, "DE")).unwrap(),
        serde_json::to_string(&refund("b", 5, "DE")).unwrap()
    );
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), lines.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("replayed 2 requests from `<stdin>`"),
        "{stdout}"
    );
    assert!(stdout.contains("  unrecorded -> allow      1"), "{stdout}");
    assert!(stdout.contains("  unrecorded -> challenge  1"), "{stdout}");
}

#[test]
fn a_bad_line_exits_2_naming_file_and_line() {
    let dir = candidate();
    let log = log_file(dir.path());
    let mut text_log = std::fs::read_to_string(&log).unwrap();
    text_log.push_str("{\"request\": {\"action\": \"a\", \"subjet\": {}}}\n");
    std::fs::write(&log, text_log).unwrap();
    let out = stepup(&[
        "replay",
        "--policies",
        &examples().display().to_string(),
        "--requests",
        &log.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(
            "error: not a recorded decision (`request`, `decision`, `time`): `request`: unknown field `subjet`, expected one of `action`, "
        ),
        "{stderr}"
    );
    assert!(
        stderr.ends_with(&format!(
            " --> {}:7:29\n  |\n7 | {{\"request\": {{\"action\": \"a\", \"subjet\": {{}}}}}}\n  |                             ^\n  = help: did you mean `subject`?\n",
            log.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `subjet`"), "{stderr}");
    assert_eq!(text(&out.stdout), "");

    let out = stepup(&[
        "replay",
        "--policies",
        &examples().display().to_string(),
        "--requests",
        "/nonexistent/log.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .starts_with("error: cannot read requests file `/nonexistent/log.jsonl`: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_invalid_candidate_exits_3() {
    let dir = candidate();
    let log = log_file(dir.path());
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: stepup/v1\nkind: Polcy\n",
    )
    .unwrap();
    let out = stepup(&[
        "replay",
        "--policies",
        &dir.path().display().to_string(),
        "--requests",
        &log.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error: unknown kind `Polcy`"), "{stderr}");
    assert!(
        stderr.ends_with("error: the policy set is invalid (1 error)\n"),
        "{stderr}"
    );
}
