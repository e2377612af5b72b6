#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! The exit codes of the real `stepup` binary, one class at a time, and the
//! one way every command names its policy directory (`--policies DIR` or
//! `STEPUP_POLICIES`). The codes are those `stepup --help` documents:
//! 0 success, 1 a check failed, 2 usage or invalid input, 3 an invalid
//! policy set, 4 a runtime failure.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

#[path = "common/cli.rs"]
mod cli;
use cli::{examples, refund, run, stepup, text};

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn requests(dir: &Path) -> String {
    let request: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(refund()).unwrap()).unwrap();
    let path = dir.join("requests.jsonl");
    std::fs::write(&path, format!("{request}\n")).unwrap();
    path.display().to_string()
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.display().to_string()
}

/// The arguments of every command that reads policies, without the policy
/// directory: what each needs besides it.
fn commands(requests: &str) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        v(&["check"]),
        v(&["eval", "--context", &refund()]),
        v(&["test"]),
        v(&["replay", "--requests", requests]),
        // Bad, so that serve stops after resolving its settings.
        v(&["serve", "--admin", "off", "--listen", "nowhere"]),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn no_policy_directory_is_a_usage_error_in_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let requests = requests(tmp.path());
    for args in commands(&requests) {
        let out = stepup(&strs(&args));
        assert_eq!(code(&out), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(
                "error: no policy directory: pass --policies DIR, set STEPUP_POLICIES, or set `policies` in the config file\n"
            ),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn policies_flag_and_variable_name_the_directory_in_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let requests = requests(tmp.path());
    let listen_error = "error: listen address `nowhere` is not IP:PORT or unix:PATH";
    for args in commands(&requests) {
        let serve = args[0] == "serve";
        let check = |out: Output, how: &str| {
            let stderr = text(&out.stderr);
            if serve {
                // The directory was found: only the bad address is left.
                assert_eq!(code(&out), Some(2), "{how}: {stderr}");
                assert!(stderr.starts_with(listen_error), "{how}: {stderr}");
            } else {
                assert_eq!(code(&out), Some(0), "{args:?} {how}: {stderr}");
            }
        };
        let examples = examples();
        let mut flag = strs(&args);
        flag.extend(["--policies", &examples]);
        check(stepup(&flag), "--policies");
        check(
            run(&strs(&args), &[("STEPUP_POLICIES", &examples)]),
            "STEPUP_POLICIES",
        );
        // The flag beats the variable.
        check(
            run(&flag, &[("STEPUP_POLICIES", "/nonexistent/policies")]),
            "--policies over STEPUP_POLICIES",
        );
    }
}

#[test]
fn the_config_files_policies_serve_every_command_that_reads_one() {
    let tmp = tempfile::tempdir().unwrap();
    let requests = requests(tmp.path());
    let config = write(
        tmp.path(),
        "stepup.toml",
        &format!("policies = \"{}\"\n", examples()),
    );
    for args in commands(&requests).into_iter().filter(|a| a[0] != "serve") {
        let mut with = strs(&args);
        with.extend(["--config", &config]);
        let out = stepup(&with);
        assert_eq!(code(&out), Some(0), "{args:?}: {}", text(&out.stderr));
        // --policies wins over the file.
        with.extend(["--policies", "/nonexistent/policies"]);
        let out = stepup(&with);
        assert_eq!(code(&out), Some(3), "{args:?}: {}", text(&out.stderr));
    }
}

#[test]
fn the_positional_directory_of_check_and_test_still_works_but_not_beside_the_flag() {
    for command in ["check", "test"] {
        let out = stepup(&[command, &examples()]);
        assert_eq!(code(&out), Some(0), "{command}: {}", text(&out.stderr));
        // It works, and says what replaces it.
        assert!(
            text(&out.stderr).starts_with(&format!(
                "warning: `stepup {command} DIR` is deprecated: use `stepup {command} --policies {}` (or STEPUP_POLICIES)\n",
                examples()
            )),
            "{command}: {}",
            text(&out.stderr)
        );
        let out = stepup(&[command, "--policies", &examples()]);
        assert!(
            !text(&out.stderr).contains("deprecated"),
            "{command}: {}",
            text(&out.stderr)
        );
        // An exported STEPUP_POLICIES does not stand in the way of the
        // directory typed on the command line.
        let out = run(
            &[command, &examples()],
            &[("STEPUP_POLICIES", "/nonexistent/policies")],
        );
        assert_eq!(code(&out), Some(0), "{command}: {}", text(&out.stderr));
        let out = stepup(&[command, "--policies", &examples(), &examples()]);
        assert_eq!(code(&out), Some(2), "{command}");
        assert!(
            text(&out.stderr).starts_with(
                "error: the policy directory is named twice: give it once, with --policies DIR\n"
            ),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--no-such-flag"][..],
        &["no-such-command"],
        &["check", "--policies", "x", "--format", "yaml"],
        &["eval", "--policies", "x"],
        &["completions", "tcsh"],
        &[],
    ] {
        let out = stepup(args);
        assert_eq!(code(&out), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stdout).is_empty(), "{args:?}");
    }
    for args in [&["--help"][..], &["--version"], &["check", "--help"]] {
        assert_eq!(code(&stepup(args)), Some(0), "{args:?}");
    }
}

#[test]
fn a_bad_config_file_exits_2_in_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let requests = requests(tmp.path());
    let bad = write(tmp.path(), "bad.toml", "[cache\nsize = 1\n");
    let missing = tmp.path().join("missing.toml").display().to_string();
    let examples = examples();
    for config in [&bad, &missing] {
        for args in commands(&requests) {
            let mut with = strs(&args);
            with.extend(["--policies", &examples]);
            if with[0] == "serve" {
                with.retain(|a| *a != "--listen" && *a != "nowhere");
            }
            with.extend(["--config", config]);
            let out = stepup(&with);
            let stderr = text(&out.stderr);
            assert_eq!(code(&out), Some(2), "{args:?} {config}: {stderr}");
            assert!(stderr.starts_with("error: "), "{stderr}");
            assert!(stderr.contains(config.as_str()), "{stderr}");
        }
    }
}

#[test]
fn a_missing_or_invalid_policy_set_exits_3_in_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let requests = requests(tmp.path());
    let invalid = tmp.path().join("invalid");
    std::fs::create_dir(&invalid).unwrap();
    write(
        &invalid,
        "p.yaml",
        "apiVersion: stepup/v1\nkind: Policy\nname: x\n",
    );
    let invalid = invalid.display().to_string();
    for dir in ["/nonexistent/policies", invalid.as_str()] {
        for args in commands(&requests) {
            let mut with = strs(&args);
            if with[0] == "serve" {
                with.retain(|a| *a != "nowhere");
                with.push("127.0.0.1:0");
            }
            with.extend(["--policies", dir]);
            let out = stepup(&with);
            assert_eq!(code(&out), Some(3), "{args:?} {dir}: {}", text(&out.stderr));
        }
    }
    // The baseline of a replay is a policy set too.
    let out = stepup(&[
        "replay",
        "--policies",
        &examples(),
        "--baseline",
        &invalid,
        "--requests",
        &requests,
    ]);
    assert_eq!(code(&out), Some(3), "{}", text(&out.stderr));
}

#[test]
fn bad_input_files_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.json").display().to_string();
    let garbage = write(tmp.path(), "garbage.jsonl", "{\"action\": \n");
    let suite = tmp.path().join("suite");
    std::fs::create_dir(&suite).unwrap();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, suite.join(path.file_name().unwrap())).unwrap();
        }
    }
    copy_lists(&suite);
    write(&suite, "x_test.yaml", "name: x\ncases: 5\n");
    let suite = suite.display().to_string();
    for args in [
        vec!["eval", "--policies", &examples(), "--context", &missing],
        vec!["eval", "--policies", &examples(), "--context", &garbage],
        vec!["replay", "--policies", &examples(), "--requests", &missing],
        vec!["replay", "--policies", &examples(), "--requests", &garbage],
        vec!["test", "--policies", &suite],
    ] {
        let out = stepup(&args);
        assert_eq!(code(&out), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("error"), "{args:?}");
    }
}

fn copy_lists(dir: &Path) {
    let lists = dir.join("lists");
    std::fs::create_dir(&lists).unwrap();
    for entry in std::fs::read_dir(Path::new(&examples()).join("lists")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, lists.join(path.file_name().unwrap())).unwrap();
    }
}

/// The example policies with one extra suite whose only case fails.
fn failing_suite() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !name.ends_with("_test.yaml") {
            std::fs::copy(&path, dir.path().join(name)).unwrap();
        }
    }
    copy_lists(dir.path());
    write(
        dir.path(),
        "f_test.yaml",
        "name: f\nnow: 2026-11-27T10:00:00Z\ncases:\n  - name: large refund\n    request: { action: payments.refund, subject: { id: a }, resource: { attributes: { amount: 4000 } } }\n    expect: { outcome: allow }\n",
    );
    dir
}

#[test]
fn a_failing_test_case_exits_1() {
    let dir = failing_suite();
    let path = dir.path().display().to_string();
    let out = stepup(&["test", "--policies", &path]);
    assert_eq!(code(&out), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with("0 passed, 1 failed\n"));
    let out = stepup(&["test", "--policies", &path, "--format", "json"]);
    assert_eq!(code(&out), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["failed"], 1);
}

#[test]
fn a_port_in_use_exits_4() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // The gRPC listener, then the admin listener.
    for flags in [
        ["--listen", addr.as_str(), "--admin", "off"],
        ["--listen", "127.0.0.1:0", "--admin", addr.as_str()],
    ] {
        let mut args = vec!["serve", "--policies"];
        let examples = examples();
        args.push(&examples);
        args.extend(flags);
        let out = stepup(&args);
        let stderr = text(&out.stderr);
        assert_eq!(code(&out), Some(4), "{flags:?}: {stderr}");
        assert!(
            stderr.contains(&format!("error: cannot listen on `{addr}`: ")),
            "{stderr}"
        );
    }
}

#[test]
fn tls_files_that_do_not_load_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let cert = tmp.path().join("missing.pem").display().to_string();
    let key = write(tmp.path(), "key.pem", "not a key\n");
    let out = stepup(&[
        "serve",
        "--policies",
        &examples(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "off",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read the TLS certificate `{cert}`")),
        "{stderr}"
    );
}

#[test]
fn a_report_that_cannot_be_written_exits_4() {
    let tmp = tempfile::tempdir().unwrap();
    let junit = tmp.path().join("no/such/dir/report.xml");
    let out = stepup(&[
        "test",
        "--policies",
        &examples(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("error: cannot write the JUnit report `"),
        "{}",
        text(&out.stderr)
    );
    // A full disk behind standard output.
    if Path::new("/dev/full").exists() {
        let out = Command::new(env!("CARGO_BIN_EXE_stepup"))
            .args(["check", "--policies", &examples()])
            .stdout(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            )
            .output()
            .unwrap();
        assert_eq!(code(&out), Some(4), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).starts_with("error: cannot write to standard output: "),
            "{}",
            text(&out.stderr)
        );
    }
}

/// `stepup eval --context -` whose reader has gone before it prints.
fn eval_into_closed_pipe(context: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(["eval", "--policies", &examples(), "--context", "-"])
        .env_remove("STEPUP_POLICIES")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end first: eval waits for its context, so nothing has
    // been written yet.
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(context.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn a_reader_that_closes_the_pipe_early_does_not_change_the_exit_code() {
    let ok = std::fs::read_to_string(refund()).unwrap();
    let out = eval_into_closed_pipe(&ok);
    assert_eq!(code(&out), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    // A failure keeps its own code and message.
    let out = eval_into_closed_pipe("{ \"action\": \"a\" }");
    assert_eq!(code(&out), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: <stdin>: invalid request: `subject.id`: required\n"
    );
}
