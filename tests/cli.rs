#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! The `stepup` binary as users run it: exit codes, output and diagnostics,
//! and `serve` as a real process that stops cleanly on SIGTERM.

mod common;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn stepup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(args)
        .env_remove("STEPUP_POLICIES")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn examples() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .display()
        .to_string()
}

#[test]
fn check_accepts_the_examples() {
    let out = stepup(&["check", &examples()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("ok: `"), "{stdout}");
    assert!(
        stdout.contains("is valid: 3 levels, 5 signals, 17 rules, revision sha256:"),
        "{stdout}"
    );
}

#[test]
fn check_prints_every_diagnostic_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(&examples()).join("levels.yaml"),
        dir.path().join("levels.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: stepup/v1\nkind: Policy\nname: bad\nrules:\n  - id: r1\n    actions: [a]\n    when: \"devce.trusted\"\n    effect: challenge\n    require: { level: aal9 }\n",
    )
    .unwrap();
    let out = stepup(&["check", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let file = dir.path().join("bad.yaml").display().to_string();
    assert!(
        stderr.contains(&format!(
            "error: unknown variable `devce` (in `r1`)\n --> {file}:7:12\n  |\n7 |     when: \"devce.trusted\"\n  |            ^^^^^\n  = help: did you mean `device`?"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: unknown level `aal9` (in `r1`)"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("error: the policy set is invalid (2 errors)\n"),
        "{stderr}"
    );

    let out = stepup(&[
        "check",
        "--format",
        "json",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"], 2);
    assert_eq!(v["diagnostics"][0]["rule_id"], "r1");
    assert_eq!(v["diagnostics"][0]["location"]["line"], 7);
    assert_eq!(v["diagnostics"][0]["help"], "did you mean `device`?");
}

#[test]
fn check_of_a_missing_directory_names_it() {
    let out = stepup(&["check", "/nonexistent/policies"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .starts_with("error: cannot read policy directory `/nonexistent/policies`"),
        "{}",
        text(&out.stderr)
    );
}

fn eval(context: &str, extra: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args([
            "eval",
            "--policies",
            &examples(),
            "--context",
            "-",
            "--now",
            "2026-11-27T12:00:00Z",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(context.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn eval_prints_the_response_as_json() {
    let ctx =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/refund.json"))
            .unwrap();
    let out = eval(&ctx, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "OUTCOME_CHALLENGE");
    assert_eq!(v["requirements"][0]["ruleId"], "refund-large");
    assert_eq!(v["maxAge"], "300s");
    assert_eq!(v["risk"]["signals"][0], "untrusted-device");
    assert!(v.get("trace").is_none());

    let out = eval(&ctx, &["--explain"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let trace = v["trace"].as_array().unwrap();
    assert_eq!(trace.len(), 5 + 17, "every signal and rule");
}

#[test]
fn eval_rejects_bad_input_with_exit_2() {
    let out = eval("{ \"action\": \"a\",\n  \"subject\": { \"id\": 5 } }", &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: <stdin>:2:"), "{stderr}");
    assert!(
        stderr.contains("not a DecideRequest in JSON form"),
        "{stderr}"
    );

    let out = eval("{ \"action\": \"a\" }", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: <stdin>: invalid request: `subject.id`: required\n"
    );
}

#[test]
fn serve_refuses_an_invalid_set_and_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "apiVersion: stepup/v1\nkind: Policy\nname: x\n",
    )
    .unwrap();
    let out = stepup(&[
        "serve",
        "--policies",
        &dir.path().display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("error: the policy set has no `kind: Levels` document"));

    let out = stepup(&[
        "serve",
        "--policies",
        &examples(),
        "--listen",
        "nowhere",
        "--cache-ttl",
        "soon",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: listen address `nowhere` is not IP:PORT (e.g. `127.0.0.1:7171`)\nerror: cache ttl `soon`: expected a number at `soon`\n"
    );
}

#[test]
fn serve_answers_and_stops_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args([
            "serve",
            "--policies",
            &examples(),
            "--listen",
            &addr,
            "--admin",
            "off",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = rt.block_on(async {
        let mut client = common::connect_when_up(&mut child, &addr).await;
        let req = stepup::proto::v1::DecideRequest {
            action: "account.password.change".into(),
            subject: Some(stepup::proto::v1::Subject {
                id: "u".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        client.decide(req).await.unwrap().into_inner().outcome()
    });
    assert_eq!(outcome, stepup::proto::v1::Outcome::Challenge);
    drop(rt); // closes the client's connection

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "graceful exit on SIGTERM");
    let logs = text(&out.stderr);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "policy set loaded"),
        "{logs}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "shutting down: finishing in-flight calls"),
        "{logs}"
    );
}

/// Decides `account.password.change` on `addr`, returning the revision.
fn revision_at(
    rt: &tokio::runtime::Runtime,
    child: &mut std::process::Child,
    addr: &str,
) -> String {
    rt.block_on(async {
        let mut client = common::connect_when_up(child, addr).await;
        let req = stepup::proto::v1::DecideRequest {
            action: "account.password.change".into(),
            subject: Some(stepup::proto::v1::Subject {
                id: "u".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        client
            .decide(req)
            .await
            .unwrap()
            .into_inner()
            .policy_revision
    })
}

#[test]
fn sighup_reloads_the_policy_set() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["levels.yaml", "account.yaml"] {
        std::fs::copy(Path::new(&examples()).join(f), dir.path().join(f)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args([
            "serve",
            "--no-watch",
            "--admin",
            "off",
            "--policies",
            &dir.path().display().to_string(),
            "--listen",
            &addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = revision_at(&rt, &mut child, &addr);
    let mut text = std::fs::read_to_string(dir.path().join("account.yaml")).unwrap();
    text.push_str("# edited\n");
    std::fs::write(dir.path().join("account.yaml"), text).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        revision_at(&rt, &mut child, &addr),
        before,
        "--no-watch: no reload without SIGHUP"
    );

    assert!(
        Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while revision_at(&rt, &mut child, &addr) == before {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(rt);
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn help_documents_exit_codes() {
    let out = stepup(&["--help"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "Exit codes: 0 success, 1 a check failed (a failing policy test), 2 invalid input"
        ),
        "{stdout}"
    );
    let out = stepup(&["serve", "--help"]);
    let stdout = text(&out.stdout);
    for flag in [
        "--policies",
        "--listen",
        "--config",
        "--cache-size",
        "--cache-ttl",
        "--log-format",
        "STEPUP_LISTEN",
    ] {
        assert!(stdout.contains(flag), "{flag} missing from serve --help");
    }
}

#[test]
fn check_warns_about_a_rule_on_an_action_nothing_else_uses() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let to = dir.path().join(path.file_name().unwrap());
        if path.is_dir() {
            // `lists/`: the IP lists the policies use.
            std::fs::create_dir(&to).unwrap();
            for file in std::fs::read_dir(&path).unwrap() {
                let file = file.unwrap().path();
                std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
            }
        } else {
            std::fs::copy(&path, to).unwrap();
        }
    }
    std::fs::write(
        dir.path().join("typo.yaml"),
        "apiVersion: stepup/v1\nkind: Policy\nname: typo\nrules:\n  - id: refund-typo\n    actions: [payments.refnud]\n    effect: deny\n",
    )
    .unwrap();
    let out = stepup(&["check", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "warnings do not fail the check");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("warning: no test and no other rule uses the action of rule `refund-typo`: `payments.refnud` (in `refund-typo`)"),
        "{stdout}"
    );
    assert!(stdout.contains("typo.yaml:5:9"), "{stdout}");
    assert!(
        stdout.contains("= help: did you mean `payments.refund`?"),
        "{stdout}"
    );
}
