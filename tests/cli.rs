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
    let out = stepup(&["check", "--policies", &examples()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("ok: `"), "{stdout}");
    assert!(
        stdout.contains("is valid: 3 levels, 7 signals, 20 rules, revision sha256:"),
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
    let out = stepup(&["check", "--policies", &dir.path().display().to_string()]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    let file = dir.path().join("bad.yaml").display().to_string();
    assert!(
        stderr.contains(&format!(
            "error: unknown variable `devce` (in `r1`) [unknown-variable]\n --> {file}:7:12\n  |\n7 |     when: \"devce.trusted\"\n  |            ^^^^^\n  = help: did you mean `device`?"
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
        "--policies",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"], 2);
    assert_eq!(v["diagnostics"][0]["code"], "unknown-variable");
    assert_eq!(v["diagnostics"][0]["rule_id"], "r1");
    assert_eq!(v["diagnostics"][0]["location"]["line"], 7);
    assert_eq!(v["diagnostics"][0]["help"], "did you mean `device`?");
}

#[test]
fn check_of_a_missing_directory_names_it() {
    let out = stepup(&["check", "--policies", "/nonexistent/policies"]);
    assert_eq!(out.status.code(), Some(3));
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
    assert_eq!(trace.len(), 7 + 20, "every signal and rule");
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
    assert_eq!(out.status.code(), Some(3));
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
        "error: listen address `nowhere` is not IP:PORT or unix:PATH (e.g. `127.0.0.1:7171` or `unix:/run/stepup/stepup.sock`)\nerror: cache ttl `soon`: expected a number at `soon`\n"
    );
}

#[test]
fn serve_answers_and_stops_on_sigterm() {
    let addr = format!("127.0.0.1:{}", common::free_port());
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
    let rt = common::runtime();
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

/// A stand-in for Redis that never answers `HGET`, so that a history fetch
/// takes its whole `fetch_timeout` and a Decide call stays in flight that
/// long. Each `HGET` is reported on the returned channel. Any other command
/// first gets the unanswered `HGET`s their (nil) replies, then an error
/// (`CLIENT SETINFO`'s is ignored; a history write fails at once).
fn stalling_redis() -> (u16, tokio::sync::mpsc::UnboundedReceiver<()>) {
    use std::io::Read as _;

    fn line(r: &mut impl std::io::BufRead) -> Option<String> {
        let mut l = String::new();
        (r.read_line(&mut l).ok()? > 0).then(|| l.trim_end().to_owned())
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut r = std::io::BufReader::new(conn);
                let mut stalled = 0;
                // A command is `*N` and N bulk strings (`$LEN`, the bytes).
                while let Some(n) = line(&mut r).and_then(|l| l.strip_prefix('*')?.parse().ok()) {
                    let mut args = Vec::new();
                    for _ in 0..n {
                        let len: usize = line(&mut r)
                            .and_then(|l| l.strip_prefix('$')?.parse().ok())
                            .unwrap();
                        let mut arg = vec![0; len + 2];
                        r.read_exact(&mut arg).unwrap();
                        arg.truncate(len);
                        args.push(String::from_utf8(arg).unwrap().to_uppercase());
                    }
                    if args[0] == "HGET" {
                        stalled += 1;
                        let _ = tx.send(());
                        continue;
                    }
                    let nils = "$-1\r\n".repeat(std::mem::take(&mut stalled));
                    let reply = format!("{nils}-ERR not a real Redis\r\n");
                    if out.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

#[test]
fn sigterm_lets_calls_in_flight_finish() {
    // Each call waits 2 s for a history fetch that never comes back.
    let (redis, mut fetches) = stalling_redis();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stepup.toml");
    std::fs::write(
        &config,
        format!(
            "[history]\nenabled = true\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{redis}\"\nhash_key = \"k\"\nfetch_timeout = \"2s\"\nredis_timeout = \"10s\"\n"
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(["serve", "--policies", &examples(), "--listen", &addr])
        .args(["--admin", "off", "--log-format", "json", "--config"])
        .arg(&config)
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rt = common::runtime();
    const CALLS: usize = 3;
    let started = Instant::now();
    rt.block_on(async {
        let client = common::connect_when_up(&mut child, &addr).await;
        let calls: Vec<_> = (0..CALLS)
            .map(|i| {
                let mut client = client.clone();
                let req = stepup::proto::v1::DecideRequest {
                    action: "account.password.change".into(),
                    subject: Some(stepup::proto::v1::Subject {
                        id: format!("u{i}"),
                        ..Default::default()
                    }),
                    session: Some(stepup::proto::v1::Session {
                        id: format!("s{i}"),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                tokio::spawn(async move {
                    let answer = client.decide(req).await;
                    (answer, Instant::now())
                })
            })
            .collect();
        // Every call is in the server, waiting on its history fetch.
        for _ in 0..CALLS {
            tokio::time::timeout(Duration::from_secs(10), fetches.recv())
                .await
                .expect("a call did not reach the history fetch")
                .unwrap();
        }
        let signalled = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for call in calls {
            let (answer, done) = call.await.unwrap();
            let answer = answer.expect("an in-flight call fails at shutdown");
            assert_eq!(
                answer.into_inner().outcome(),
                stepup::proto::v1::Outcome::Challenge
            );
            assert!(done > signalled, "the call was answered before SIGTERM");
        }
    });
    drop(rt);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "graceful exit on SIGTERM: {}",
        text(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn environment_beats_the_config_file_and_flags_beat_both() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stepup.toml");
    std::fs::write(
        &config,
        format!(
            "policies = \"{}\"\nlisten = \"file:listen\"\n[cache]\nttl = \"file-ttl\"\n",
            examples()
        ),
    )
    .unwrap();
    // Bad values everywhere, so that the error names the one that won and
    // the server never starts. Each child gets only the environment given.
    let serve = |env: &[(&str, &str)], flags: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_stepup"))
            .args(["serve", "--admin", "off", "--config"])
            .arg(&config)
            .args(flags)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        text(&out.stderr)
    };
    let listen = |v: &str| {
        format!(
            "error: listen address `{v}` is not IP:PORT or unix:PATH (e.g. `127.0.0.1:7171` or `unix:/run/stepup/stepup.sock`)\n"
        )
    };
    let ttl = |v: &str| format!("error: cache ttl `{v}`: expected a number at `{v}`\n");
    assert_eq!(serve(&[], &[]), listen("file:listen") + &ttl("file-ttl"));
    let env = [
        ("STEPUP_LISTEN", "env:listen"),
        ("STEPUP_CACHE_TTL", "env-ttl"),
    ];
    assert_eq!(serve(&env, &[]), listen("env:listen") + &ttl("env-ttl"));
    assert_eq!(
        serve(&env, &["--listen", "flag:listen"]),
        listen("flag:listen") + &ttl("env-ttl")
    );
    // The config file itself can come from the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(["serve", "--admin", "off"])
        .env_clear()
        .env("STEPUP_CONFIG", &config)
        .env("STEPUP_CACHE_TTL", "env-ttl")
        .output()
        .unwrap();
    assert_eq!(text(&out.stderr), listen("file:listen") + &ttl("env-ttl"));
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
    let addr = format!("127.0.0.1:{}", common::free_port());
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
    let rt = common::runtime();
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
            "Exit codes:\n  0  success (also when a reader closes the output pipe early)\n  1  a check failed (a failing policy test; with --require-coverage, an unmatched rule)\n  2  usage or invalid input: flags, no policy directory given, config or TLS file, context or\n     requests file, test suite\n  3  the policy set is invalid (or its directory cannot be read)\n  4  runtime failure: cannot bind or start, an I/O error"
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
        "--max-in-flight",
        "--max-time-skew",
        "STEPUP_LISTEN",
        "STEPUP_MAX_TIME_SKEW",
        "no HTTP/2 preface within 10s",
        "--listen-mode",
        "--tls-cert",
        "--tls-key",
        "--tls-client-ca",
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
    let out = stepup(&["check", "--policies", &dir.path().display().to_string()]);
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

/// A policy directory with the example levels and `rules` (a `rules:`
/// list of one `kind: Policy` document).
fn policy_dir(rules: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(&examples()).join("levels.yaml"),
        dir.path().join("levels.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        format!("apiVersion: stepup/v1\nkind: Policy\nname: p\nrules:\n{rules}"),
    )
    .unwrap();
    dir
}

/// The hostile probes: a 4-deep `.all` over `subject.roles`, and a
/// 64×64×64 comprehension over literals.
fn probes() -> String {
    let list: Vec<String> = (0..64).map(|i| i.to_string()).collect();
    let list = format!("[{}]", list.join(", "));
    format!(
        "  - id: roles\n    actions: [\"*\"]\n    when: 'subject.roles.all(a, subject.roles.all(b, subject.roles.all(c, subject.roles.all(d, a + b + c + d != \"x\"))))'\n    effect: deny\n  - id: literals\n    actions: [\"*\"]\n    when: '{list}.all(x, {list}.all(y, {list}.all(z, x + y + z >= 0)))'\n    effect: deny\n"
    )
}

#[test]
fn check_refuses_the_probes_of_issue_14_with_both_numbers() {
    let dir = policy_dir(&probes());
    let path = dir.path().display().to_string();
    let out = stepup(&["check", "--policies", &path]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    let file = dir.path().join("p.yaml").display().to_string();
    for (id, line) in [("roles", 7), ("literals", 11)] {
        let head = "error: the condition may cost up to ";
        let at = stderr
            .find(&format!("(in `{id}`) [cost-limit]\n"))
            .unwrap_or_else(|| panic!("{stderr}"));
        let message_line = stderr[..at].rsplit('\n').next().unwrap();
        assert!(message_line.starts_with(head), "{stderr}");
        assert!(
            message_line.ends_with("units, above the limit of 16,000 "),
            "{stderr}"
        );
        let place = stderr[at..].lines().nth(1).unwrap();
        assert!(place.ends_with(&format!("--> {file}:{line}:12")), "{place}");
    }
    assert!(
        stderr.contains(&format!("  |            {}\n", "^".repeat(40))),
        "the caret is on the condition, at most 40 wide: {stderr}"
    );
    assert!(
        stderr.ends_with("error: the policy set is invalid (2 errors)\n"),
        "{stderr}"
    );

    let out = stepup(&["check", "--format", "json", "--policies", &path]);
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["cost-limit", "cost-limit"]);
}

#[test]
fn the_cost_limit_is_set_in_the_config_file() {
    let dir = policy_dir(&probes());
    let config = dir.path().join("stepup.toml");
    std::fs::write(&config, "[limits]\nmax_condition_cost = 1000000000000\n").unwrap();
    let path = dir.path().display().to_string();
    let config = config.display().to_string();
    let out = stepup(&["check", "--config", &config, "--policies", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // And a limit below the examples' dearest condition rejects them.
    let low = dir.path().join("low.toml");
    std::fs::write(&low, "[limits]\nmax_condition_cost = 5\n").unwrap();
    let out = stepup(&[
        "check",
        "--config",
        &low.display().to_string(),
        "--policies",
        &examples(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("above the limit of 5 (in `"));
    std::fs::write(&low, "[limits]\nmax_condition_cost = 0\n").unwrap();
    let out = stepup(&[
        "check",
        "--config",
        &low.display().to_string(),
        "--policies",
        &examples(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: limits.max_condition_cost must be at least 1\n"
    );
}

#[test]
fn check_costs_lists_every_condition_with_its_estimate() {
    let out = stepup(&["check", "--costs", "--policies", &examples()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let header = stdout.lines().next().unwrap();
    assert!(header.starts_with("kind    id "), "{stdout}");
    assert!(header.ends_with("cost"), "{stdout}");
    let refund = stdout
        .lines()
        .find(|l| l.starts_with("rule    refund-large "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(refund.contains("payments.yaml:12"), "{refund}");
    assert!(
        stdout.contains("limit: 16,000 units per condition ([limits] max_condition_cost); all 22 conditions together: "),
        "{stdout}"
    );
    assert!(stdout.contains("ok: `"), "{stdout}");

    let out = stepup(&[
        "check",
        "--costs",
        "--format",
        "json",
        "--policies",
        &examples(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let costs = &json["costs"];
    assert_eq!(costs["limit"], 16_000);
    let conditions = costs["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 22);
    let first = &conditions[0];
    assert_eq!(first["kind"], "signal");
    assert_eq!(first["id"], "untrusted-device");
    assert!(first["file"].as_str().unwrap().ends_with("risk.yaml"));
    assert_eq!(first["line"], 15);
    let total: u64 = conditions.iter().map(|c| c["cost"].as_u64().unwrap()).sum();
    assert_eq!(costs["total"], total);
}
