#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! The AuthZEN Authorization API 1.0 with the step-up profile, end to end:
//! a real `stepup serve` over tests/fixtures/authzen, and curl (a client
//! written by others) over HTTP/1.1, HTTP/2 with prior knowledge and
//! HTTP/2 over TLS (ALPN), on the gRPC port and on `--http`. The
//! specification's own request examples are the test vectors; the
//! responses are the ones it shows (`true`, `false`, `true` for the three
//! documents, with document 2 private).

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::redis::Killed;
use serde_json::{Value, json};

const H1: &str = "--http1.1";
const H2: &str = "--http2-prior-knowledge";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/authzen")
}

/// A `stepup serve` process: gRPC port, `--http` port, admin port.
struct Sidecar {
    grpc: String,
    http: String,
    admin: String,
    log: PathBuf,
    child: Killed,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    /// Serves the fixtures with `args` added, once both ports listen.
    fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("decisions.jsonl");
        let port = || format!("127.0.0.1:{}", common::free_port());
        let (grpc, http, admin) = (port(), port(), port());
        let child = Command::new(env!("CARGO_BIN_EXE_stepup"))
            .args(["serve", "--policies"])
            .arg(fixtures())
            .args(["--listen", &grpc, "--http", &http, "--admin", &admin])
            .args(["--no-watch", "--decision-log"])
            .arg(&log)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut s = Self {
            grpc,
            http,
            admin,
            log,
            child: Killed(child),
            _dir: dir,
        };
        s.wait_up();
        s
    }

    fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for addr in [self.grpc.clone(), self.http.clone()] {
            while std::net::TcpStream::connect(&addr).is_err() {
                if let Some(status) = self.child.0.try_wait().unwrap() {
                    panic!("stepup serve exited before listening on {addr}: {status}");
                }
                assert!(Instant::now() < deadline, "not listening on {addr}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// What curl got.
#[derive(Debug)]
struct Answer {
    status: u16,
    version: String,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// One request with curl: `method` to `url`, `body` as `content_type`,
/// with `extra` options (the HTTP version, TLS files, headers).
fn curl(method: &str, url: &str, extra: &[&str], body: Option<&str>, content_type: &str) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-i",
        "-X",
        method,
        "--max-time",
        "20",
        "-H",
        "Expect:",
    ])
    .args(["-w", "\n%{http_code} %{http_version}"])
    .args(extra)
    .arg(url)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .stdin(Stdio::piped());
    if body.is_some() {
        cmd.args(["-H", &format!("Content-Type: {content_type}")])
            .args(["--data-binary", "@-"]);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run curl (apt-get install -y curl): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    if let Some(b) = body {
        stdin.write_all(b.as_bytes()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {method} {url} failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (response, tail) = text.rsplit_once('\n').unwrap();
    let (status, version) = tail.split_once(' ').unwrap();
    let (headers, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    Answer {
        status: status.parse().unwrap(),
        version: version.to_owned(),
        headers: headers.to_owned(),
        body: body.to_owned(),
    }
}

/// POSTs `body` as JSON to `path` on `addr` (plaintext) over `http`.
fn post(addr: &str, path: &str, http: &str, body: &Value) -> Answer {
    curl(
        "POST",
        &format!("http://{addr}{path}"),
        &[http],
        Some(&body.to_string()),
        "application/json",
    )
}

/// The `decision` of each evaluation of an evaluations answer.
fn decisions(a: &Answer) -> Vec<bool> {
    assert_eq!(a.status, 200, "{a:?}");
    a.json()["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["decision"].as_bool().unwrap())
        .collect()
}

// ------------------------------------------- the specification's examples

/// The Access Evaluation request example.
fn spec_evaluation() -> Value {
    json!({
      "subject": { "type": "user", "id": "alice@example.com" },
      "resource": { "type": "account", "id": "123" },
      "action": { "name": "can_read", "properties": { "method": "GET" } },
      "context": { "time": "1985-10-26T01:22-07:00" }
    })
}

/// The three boxcarred evaluations, without defaults.
fn spec_boxcar() -> Value {
    let one = |id: &str| {
        json!({
          "subject": { "type": "user", "id": "alice@example.com" },
          "action": { "name": "can_read" },
          "resource": { "type": "document", "id": id },
          "context": { "time": "2024-05-31T15:22-07:00" }
        })
    };
    json!({ "evaluations": [one("boxcarring.md"), one("subject-search.md"), one("resource-search.md")] })
}

/// The boxcar with the subject and context as top-level defaults.
fn spec_boxcar_defaults() -> Value {
    json!({
      "subject": { "type": "user", "id": "alice@example.com" },
      "context": { "time": "2024-05-31T15:22-07:00" },
      "evaluations": [
        { "action": { "name": "can_read" }, "resource": { "type": "document", "id": "boxcarring.md" } },
        { "action": { "name": "can_read" }, "resource": { "type": "document", "id": "subject-search.md" } },
        { "action": { "name": "can_read" }, "resource": { "type": "document", "id": "resource-search.md" } }
      ]
    })
}

/// The boxcar with a default action the third evaluation overrides.
fn spec_boxcar_override() -> Value {
    json!({
      "subject": { "type": "user", "id": "alice@example.com" },
      "context": { "time": "2024-05-31T15:22-07:00" },
      "action": { "name": "can_read" },
      "evaluations": [
        { "resource": { "type": "document", "id": "boxcarring.md" } },
        { "resource": { "type": "document", "id": "subject-search.md" } },
        { "action": { "name": "can_edit" }, "resource": { "type": "document", "id": "resource-search.md" } }
      ]
    })
}

/// `read` of documents 1, 2 and 3 under `semantic`.
fn spec_semantic(semantic: &str) -> Value {
    json!({
      "subject": { "type": "user", "id": "alice@example.com" },
      "action": { "name": "read" },
      "options": { "evaluations_semantic": semantic },
      "evaluations": [
        { "resource": { "type": "document", "id": "1" } },
        { "resource": { "type": "document", "id": "2" } },
        { "resource": { "type": "document", "id": "3" } }
      ]
    })
}

/// The Action Search request example.
fn spec_action_search() -> Value {
    json!({
      "subject": { "type": "user", "id": "alice@example.com" },
      "resource": { "type": "account", "id": "123" },
      "context": { "time": "2024-10-26T01:22-07:00" }
    })
}

/// The specification's examples, on both ports, over HTTP/1.1 and HTTP/2:
/// the decisions it shows, with the profile's context. Its times lie in
/// the past, so this server takes any time (`--max-time-skew off`).
#[test]
fn the_specification_examples_on_both_ports_over_http1_and_http2() {
    let s = Sidecar::start(&["--max-time-skew", "off"]);
    for addr in [&s.grpc, &s.http] {
        for (http, version) in [(H1, "1.1"), (H2, "2")] {
            let a = curl(
                "POST",
                &format!("http://{addr}/access/v1/evaluation"),
                &[
                    http,
                    "-H",
                    "X-Request-ID: bfe9eb29-ab87-4ca3-be83-a1d5d8305716",
                ],
                Some(&spec_evaluation().to_string()),
                "application/json",
            );
            assert_eq!((a.status, a.version.as_str()), (200, version), "{a:?}");
            assert_eq!(
                a.header("content-type").as_deref(),
                Some("application/json")
            );
            assert_eq!(
                a.header("x-request-id").as_deref(),
                Some("bfe9eb29-ab87-4ca3-be83-a1d5d8305716")
            );
            let v = a.json();
            assert_eq!(v["decision"], true, "{v}");
            assert_eq!(v["context"]["outcome"], "allow");
            assert_eq!(v["context"]["decision_id"].as_str().unwrap().len(), 36);
            assert!(
                v["context"]["policy_revision"]
                    .as_str()
                    .unwrap()
                    .starts_with("sha256:")
            );
            assert_eq!(v["context"]["reasons"], json!([]));
            assert_eq!(v["context"]["risk"]["score"], 0);
            assert!(v["context"].get("acr_values").is_none(), "{v}");

            for example in [spec_boxcar(), spec_boxcar_defaults()] {
                let a = post(addr, "/access/v1/evaluations", http, &example);
                assert_eq!(decisions(&a), [true, false, true]);
                assert_eq!(a.version, version);
                let v = a.json();
                assert_eq!(v["evaluations"][1]["context"]["outcome"], "deny");
                assert_eq!(
                    v["evaluations"][1]["context"]["reasons"],
                    json!([{ "rule_id": "private-document", "message": "This document is private" }])
                );
            }
            let a = post(
                addr,
                "/access/v1/evaluations",
                http,
                &spec_boxcar_override(),
            );
            assert_eq!(decisions(&a), [true, false, true]);
        }
    }
    let addr = &s.grpc;
    let a = post(
        addr,
        "/access/v1/evaluations",
        H2,
        &spec_semantic("execute_all"),
    );
    assert_eq!(decisions(&a), [true, false, true]);
    let mut default = spec_semantic("execute_all");
    default.as_object_mut().unwrap().remove("options");
    let a = post(addr, "/access/v1/evaluations", H2, &default);
    assert_eq!(decisions(&a), [true, false, true]);
    let a = post(
        addr,
        "/access/v1/evaluations",
        H1,
        &spec_semantic("deny_on_first_deny"),
    );
    assert_eq!(decisions(&a), [true, false]);
    let a = post(
        addr,
        "/access/v1/evaluations",
        H1,
        &spec_semantic("permit_on_first_permit"),
    );
    assert_eq!(decisions(&a), [true]);
    // A permit only at the end: every evaluation runs.
    let mut late = spec_semantic("permit_on_first_permit");
    late["subject"]["id"] = json!("bob");
    late["evaluations"] = json!([
        { "resource": { "type": "document", "id": "2" } },
        { "resource": { "type": "document", "id": "subject-search.md" } },
        { "resource": { "type": "document", "id": "3" } }
    ]);
    let a = post(addr, "/access/v1/evaluations", H1, &late);
    assert_eq!(decisions(&a), [false, false, true]);

    // Without an `evaluations` array the request is one evaluation.
    let a = post(addr, "/access/v1/evaluations", H1, &spec_evaluation());
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["decision"], true);

    // The options example leaves out the action everywhere: a bad request.
    let options_example = json!({
      "evaluations": [{
        "resource": { "type": "doc", "id": "1" },
        "subject": { "type": "doc", "id": "2" }
      }],
      "options": { "evaluations_semantic": "execute_all", "another_option": "value" }
    });
    let a = post(addr, "/access/v1/evaluations", H1, &options_example);
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(
        a.json()["error"],
        "evaluations[0].action (and no top-level `action`): missing"
    );

    // Action search: every action the policies name, the allowed ones as
    // results.
    let a = post(addr, "/access/v1/search/action", H1, &spec_action_search());
    assert_eq!(a.status, 200, "{a:?}");
    let v = a.json();
    assert_eq!(
        v["results"],
        json!([{ "name": "can_read" }, { "name": "documents.read" }, { "name": "read" }])
    );
}

/// For one subject and resource, search/action says which actions the
/// session may do now, which need a step-up first (and which one) and
/// which are denied; after a step-up (a fresh aal2 session), the
/// challenge is gone.
#[test]
fn search_action_lists_allow_challenge_and_deny_for_one_subject() {
    let s = Sidecar::start(&[]);
    let now = chrono::Utc::now();
    let request = |acr: &str, roles: Value| {
        json!({
          "subject": { "type": "user", "id": "alice", "properties": { "tenant": "acme", "roles": roles } },
          "resource": { "type": "document", "id": "doc-1" },
          "context": {
            "session": { "id": "s-1", "acr": acr, "amr": ["pwd", "otp"], "authTime": now.to_rfc3339() },
            "network": { "ip": "192.0.2.7", "country": "DE" }
          }
        })
    };
    let a = post(
        &s.http,
        "/access/v1/search/action",
        H2,
        &request("urn:stepup:aal1", json!([])),
    );
    assert_eq!(a.status, 200, "{a:?}");
    let v = a.json();
    assert_eq!(
        v["results"],
        json!([{ "name": "can_read" }, { "name": "documents.read" }, { "name": "read" }])
    );
    let actions = v["context"]["actions"].as_array().unwrap();
    let by_name = |n: &str| actions.iter().find(|a| a["name"] == n).unwrap().clone();
    let names: Vec<&str> = actions
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "can_read",
            "documents.delete",
            "documents.edit",
            "documents.read",
            "read"
        ]
    );
    let edit = by_name("documents.edit");
    assert_eq!(edit["decision"], false);
    let ctx = &edit["context"];
    assert_eq!(ctx["outcome"], "challenge");
    assert_eq!(ctx["acr_values"], json!(["urn:stepup:aal2"]));
    assert_eq!(ctx["max_age"], 600);
    assert_eq!(ctx["amr"], json!(["hwk", "otp"]));
    assert_eq!(
        ctx["www_authenticate"],
        "Bearer error=\"insufficient_user_authentication\", error_description=\"Confirm it is you before editing\", acr_values=\"urn:stepup:aal2\", max_age=\"600\""
    );
    assert_eq!(
        ctx["reasons"],
        json!([{ "rule_id": "edit-needs-aal2", "message": "Confirm it is you before editing" }])
    );
    let delete = by_name("documents.delete");
    assert_eq!(
        (
            delete["decision"].clone(),
            delete["context"]["outcome"].clone()
        ),
        (json!(false), json!("deny"))
    );
    assert!(delete["context"].get("www_authenticate").is_none());
    let read = by_name("documents.read");
    assert_eq!(
        (read["decision"].clone(), read["context"]["outcome"].clone()),
        (json!(true), json!("allow"))
    );
    let mut ids: Vec<&str> = actions
        .iter()
        .map(|a| a["context"]["decision_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), actions.len(), "one decision per action");

    // The same subject after a step-up to aal2, as an admin: nothing left
    // to challenge or deny.
    let a = post(
        &s.grpc,
        "/access/v1/search/action",
        H1,
        &request("urn:stepup:aal2", json!(["admin"])),
    );
    let v = a.json();
    assert_eq!(v["results"].as_array().unwrap().len(), 5, "{v}");

    // One evaluation agrees with the search.
    let mut one = request("urn:stepup:aal1", json!([]));
    one["action"] = json!({ "name": "documents.edit" });
    let a = post(&s.grpc, "/access/v1/evaluation", H2, &one);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json()["context"]["outcome"], "challenge");
    // Other context members are attributes: `blocked` denies.
    one["context"]["blocked"] = json!(true);
    one["action"] = json!({ "name": "documents.read" });
    let a = post(&s.grpc, "/access/v1/evaluation", H2, &one);
    assert_eq!(a.json()["context"]["reasons"][0]["rule_id"], "blocked");
    // Resource properties are resource attributes: a secret document.
    one["context"]["blocked"] = json!(false);
    one["resource"]["properties"] = json!({ "secret": true });
    let a = post(&s.grpc, "/access/v1/evaluation", H2, &one);
    assert_eq!(a.json()["context"]["reasons"][0]["rule_id"], "read-secret");
}

/// The metadata names the endpoints with absolute URLs built from the
/// request's scheme and host, and the profile.
#[test]
fn the_metadata_document_names_the_endpoints() {
    let s = Sidecar::start(&[]);
    for (addr, http) in [(&s.grpc, H1), (&s.http, H2)] {
        let url = format!("http://{addr}/.well-known/authzen-configuration");
        let a = curl("GET", &url, &[http], None, "");
        assert_eq!(a.status, 200, "{a:?}");
        let v = a.json();
        let base = format!("http://{addr}");
        assert_eq!(v["policy_decision_point"], base.as_str());
        assert_eq!(
            v["access_evaluation_endpoint"],
            format!("{base}/access/v1/evaluation")
        );
        assert_eq!(
            v["access_evaluations_endpoint"],
            format!("{base}/access/v1/evaluations")
        );
        assert_eq!(
            v["search_action_endpoint"],
            format!("{base}/access/v1/search/action")
        );
        assert!(v.get("search_subject_endpoint").is_none());
        assert_eq!(
            v["stepup"]["profile"],
            "urn:stepup:authzen:profile:step-up:1"
        );
        assert_eq!(
            v["stepup"]["outcomes"],
            json!(["allow", "challenge", "deny"])
        );
        let a = curl("POST", &url, &[http], Some("{}"), "application/json");
        assert_eq!(a.status, 405, "{a:?}");
        assert_eq!(a.header("allow").as_deref(), Some("GET"));
    }
    // Behind a proxy the Host it forwarded names the PDP.
    let a = curl(
        "GET",
        &format!("http://{}/.well-known/authzen-configuration", s.http),
        &[H1, "-H", "Host: pdp.example.com"],
        None,
        "",
    );
    assert_eq!(a.json()["policy_decision_point"], "http://pdp.example.com");
}

/// Requests with one bad member, each with the error that names it.
fn bad_members(ok: &Value) -> Vec<(Value, &'static str)> {
    let with = |pointer: &str, v: Value| {
        let mut b = ok.clone();
        *b.pointer_mut(pointer).unwrap() = v;
        b
    };
    vec![
        (
            with("/subject", json!({ "type": "user" })),
            "subject.id: missing",
        ),
        (with("/subject/id", json!("")), "subject.id: empty"),
        (
            with("/subject/id", json!(7)),
            "subject.id: must be a string",
        ),
        (with("/action", json!({})), "action.name: missing"),
        (
            with("/resource", json!("doc")),
            "resource: must be an object",
        ),
        (
            with(
                "/subject",
                json!({ "type": "user", "id": "a", "properties": { "roles": "admin" } }),
            ),
            "subject.properties.roles: must be an array of strings",
        ),
        (
            with(
                "/subject",
                json!({ "type": "user", "id": "a", "properties": { "roles": ["x", 1] } }),
            ),
            "subject.properties.roles[1]: must be a string",
        ),
        (
            json!({ "subject": ok["subject"], "action": ok["action"], "resource": ok["resource"],
                    "context": { "session": { "amr": "pwd" } } }),
            "context.session.amr: invalid type: string \"pwd\", expected a sequence",
        ),
        (
            json!({ "subject": ok["subject"], "action": ok["action"], "resource": ok["resource"],
                    "context": { "time": "yesterday" } }),
            "context.time: `yesterday` is not an RFC 3339 time such as `2026-01-11T09:30:00Z`",
        ),
        (
            json!({ "subject": ok["subject"], "action": ok["action"], "resource": ok["resource"],
                    "context": { "network": { "ip": "not-an-ip" } } }),
            "context.network.ip: `not-an-ip` is not an IP address",
        ),
        (
            json!({ "action": ok["action"], "resource": ok["resource"] }),
            "subject: missing",
        ),
    ]
}

/// The counts of `s`'s `/metrics` after the requests of
/// `bad_requests_name_the_field_and_everything_is_counted_and_logged`, and
/// its decision log: the four good evaluations, as AuthZEN's.
fn assert_counted_and_logged(s: &Sidecar) {
    let (status, metrics) = common::http_get(&s.admin, "/metrics");
    assert_eq!(status, 200);
    let count = |series: &str| common::metric(&metrics, series);
    assert_eq!(
        count("stepup_http_requests_total{route=\"evaluation\",code=\"200\"}"),
        4.0
    );
    assert_eq!(
        count("stepup_http_requests_total{route=\"evaluation\",code=\"415\"}"),
        4.0
    );
    assert_eq!(
        count("stepup_http_requests_total{route=\"evaluation\",code=\"413\"}"),
        4.0
    );
    assert_eq!(
        count("stepup_http_requests_total{route=\"unknown\",code=\"404\"}"),
        4.0
    );
    assert_eq!(
        count("stepup_http_server_request_duration_seconds_count{route=\"evaluation\"}"),
        // 11 field cases, the time, four times (bad JSON, array, 415,
        // 405, 413, good).
        12.0 + 4.0 * 6.0
    );
    // The decisions (the four good evaluations) are logged as AuthZEN's.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&s.log).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 4 {
            assert!(lines.iter().all(|l| l["source"] == "authzen"), "{text}");
            assert_eq!(lines.len(), 4, "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "decision log: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Bad requests are answered 400 naming the member; the wrong media type
/// 415, a path that is not an endpoint 404, the wrong method 405, a body
/// over the limit 413. Every answer is counted by route and status, and
/// every decision is in the decision log with source `authzen`.
#[test]
fn bad_requests_name_the_field_and_everything_is_counted_and_logged() {
    let s = Sidecar::start(&[]);
    let ok = json!({
      "subject": { "type": "user", "id": "alice" },
      "action": { "name": "documents.read" },
      "resource": { "type": "document", "id": "d" }
    });
    let cases = bad_members(&ok);
    for (body, expected) in &cases {
        let a = post(&s.grpc, "/access/v1/evaluation", H1, body);
        assert_eq!(a.status, 400, "{body}: {a:?}");
        let v = a.json();
        assert_eq!(v["error"], *expected, "{body}");
        assert_eq!(v["field"], expected.split(':').next().unwrap(), "{body}");
    }
    // The specification's example time is 1985: outside the skew allowed.
    let a = post(&s.http, "/access/v1/evaluation", H2, &spec_evaluation());
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(a.json()["field"], "context.time");

    let a = post(
        &s.grpc,
        "/access/v1/evaluations",
        H2,
        &json!({ "subject": ok["subject"], "evaluations": [
            { "action": ok["action"], "resource": ok["resource"] },
            { "action": ok["action"], "resource": { "type": "document" } }
        ] }),
    );
    assert_eq!(
        a.json()["error"],
        "evaluations[1].resource.id: missing",
        "{a:?}"
    );
    let a = post(
        &s.grpc,
        "/access/v1/evaluations",
        H2,
        &json!({ "subject": ok["subject"], "options": { "evaluations_semantic": "all" },
                 "evaluations": [{ "action": ok["action"], "resource": ok["resource"] }] }),
    );
    assert_eq!(a.json()["field"], "options.evaluations_semantic", "{a:?}");
    let a = post(
        &s.grpc,
        "/access/v1/search/action",
        H2,
        &json!({ "subject": ok["subject"], "resource": ok["resource"], "page": { "token": "x" } }),
    );
    assert_eq!(a.json()["field"], "page.token", "{a:?}");

    for (addr, http) in [(&s.grpc, H1), (&s.grpc, H2), (&s.http, H1), (&s.http, H2)] {
        let url = format!("http://{addr}/access/v1/evaluation");
        let a = curl("POST", &url, &[http], Some("{not json"), "application/json");
        assert_eq!(a.status, 400, "{a:?}");
        assert!(
            a.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("body: not JSON"),
            "{a:?}"
        );
        let a = curl("POST", &url, &[http], Some("[1]"), "application/json");
        assert_eq!(a.json()["error"], "body: must be a JSON object");
        let a = curl("POST", &url, &[http], Some(&ok.to_string()), "text/plain");
        assert_eq!(a.status, 415, "{a:?}");
        let a = curl("GET", &url, &[http], None, "");
        assert_eq!(
            (a.status, a.header("allow")),
            (405, Some("POST".into())),
            "{a:?}"
        );
        let a = curl(
            "POST",
            &format!("http://{addr}/access/v1/search/subject"),
            &[http],
            Some("{}"),
            "application/json",
        );
        assert_eq!(a.status, 404, "{a:?}");
        // Over the 1 MiB limit.
        let big = json!({ "subject": ok["subject"], "action": ok["action"], "resource": ok["resource"],
                          "context": { "pad": "x".repeat(1100 * 1024) } });
        let a = curl(
            "POST",
            &url,
            &[http],
            Some(&big.to_string()),
            "application/json",
        );
        assert_eq!(a.status, 413, "{a:?}");
        // A good request still works on the same server.
        let a = curl(
            "POST",
            &url,
            &[http],
            Some(&ok.to_string()),
            "application/json; charset=utf-8",
        );
        assert_eq!(a.status, 200, "{a:?}");
    }
    assert_counted_and_logged(&s);
}

/// With TLS and client certificates, both ports speak HTTPS (HTTP/2 by
/// ALPN, and HTTP/1.1), the metadata's URLs are `https`, a client without
/// a certificate gets no answer, and the decision log names the caller.
#[test]
fn tls_and_mutual_tls_on_both_ports() {
    let ca = common::tls::Ca::new("authzen test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.server().write(&dir.path().join("server"));
    let ca_file = common::tls::write(&dir.path().join("ca.pem"), &ca.pem());
    let (client_cert, client_key) = ca
        .client("spiffe://example.org/ns/shop/sa/checkout")
        .write(&dir.path().join("client"));
    let s = Sidecar::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-client-ca",
        ca_file.to_str().unwrap(),
    ]);
    let tls = [
        "--cacert",
        ca_file.to_str().unwrap(),
        "--cert",
        client_cert.to_str().unwrap(),
        "--key",
        client_key.to_str().unwrap(),
    ];
    let body = json!({
      "subject": { "type": "user", "id": "alice" },
      "action": { "name": "documents.edit" },
      "resource": { "type": "document", "id": "d" }
    })
    .to_string();
    for addr in [&s.grpc, &s.http] {
        let port = addr.rsplit_once(':').unwrap().1;
        let base = format!("https://localhost:{port}");
        for (http, version) in [("--http2", "2"), (H1, "1.1")] {
            let opts: Vec<&str> = tls.iter().copied().chain([http]).collect();
            let a = curl(
                "POST",
                &format!("{base}/access/v1/evaluation"),
                &opts,
                Some(&body),
                "application/json",
            );
            assert_eq!((a.status, a.version.as_str()), (200, version), "{a:?}");
            assert_eq!(a.json()["context"]["outcome"], "challenge");
            let a = curl(
                "GET",
                &format!("{base}/.well-known/authzen-configuration"),
                &opts,
                None,
                "",
            );
            assert_eq!(a.json()["policy_decision_point"], base.as_str());
        }
        // No client certificate: the handshake fails, nothing is decided.
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--cacert",
                ca_file.to_str().unwrap(),
            ])
            .args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
            ])
            .arg(format!("{base}/access/v1/evaluation"))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "answered without a client certificate: {out:?}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&s.log).unwrap_or_default();
        if text.lines().count() >= 4 {
            for l in text.lines() {
                let v: Value = serde_json::from_str(l).unwrap();
                assert_eq!(
                    v["caller"], "spiffe://example.org/ns/shop/sa/checkout",
                    "{l}"
                );
                assert_eq!(v["source"], "authzen");
            }
            break;
        }
        assert!(Instant::now() < deadline, "decision log: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------------ traces

/// Spans exported to this test's OTLP collector.
#[derive(Clone, Default)]
struct Collector(
    std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Collector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

/// An attribute's value as text ("" when absent).
fn attr(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    match span
        .attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone())
        .and_then(|v| v.value)
    {
        Some(V::StringValue(s)) => s,
        Some(V::IntValue(i)) => i.to_string(),
        Some(V::BoolValue(b)) => b.to_string(),
        Some(V::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Each request gets an HTTP server span named by OpenTelemetry's HTTP
/// conventions, a child of the caller's `traceparent`, with the decision's
/// `stepup.*` attributes.
#[test]
fn each_request_gets_an_http_server_span_in_the_callers_trace() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    let rt = common::runtime();
    let collector = Collector::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let otlp = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(collector.clone());
    let server = std::thread::spawn(move || {
        rt.block_on(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let grpc = format!("127.0.0.1:{}", common::free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args([
            "serve",
            "--admin",
            "off",
            "--no-watch",
            "--listen",
            &grpc,
            "--policies",
        ])
        .arg(fixtures())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("OTEL_LOGS_EXPORTER", "none")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&grpc).is_err() {
        assert!(Instant::now() < deadline, "not listening on {grpc}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let parent = "b7ad6b7169203331";
    let body = json!({
      "subject": { "type": "user", "id": "alice" },
      "action": { "name": "documents.edit" },
      "resource": { "type": "document", "id": "d" }
    });
    let a = curl(
        "POST",
        &format!("http://{grpc}/access/v1/evaluation"),
        &[H2, "-H", &format!("traceparent: 00-{trace_id}-{parent}-01")],
        Some(&body.to_string()),
        "application/json",
    );
    assert_eq!(a.status, 200, "{a:?}");
    let decision_id = a.json()["context"]["decision_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = curl(
        "GET",
        &format!("http://{grpc}/access/v2/nowhere"),
        &[H1],
        None,
        "",
    );
    assert_eq!(a.status, 404, "{a:?}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let (span, unknown) = loop {
        let spans = collector.0.lock().unwrap().clone();
        let named = |n: &str| spans.iter().find(|s| s.name == n).cloned();
        if let (Some(s), Some(u)) = (named("POST /access/v1/evaluation"), named("GET")) {
            break (s, u);
        }
        assert!(Instant::now() < deadline, "spans: {spans:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(hex(&span.trace_id), trace_id);
    assert_eq!(hex(&span.parent_span_id), parent);
    assert_eq!(
        span.kind,
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32
    );
    for (key, value) in [
        ("http.request.method", "POST"),
        ("http.route", "/access/v1/evaluation"),
        ("url.scheme", "http"),
        ("http.response.status_code", "200"),
        ("stepup.action", "documents.edit"),
        ("stepup.outcome", "challenge"),
        ("stepup.decision_id", decision_id.as_str()),
    ] {
        assert_eq!(attr(&span, key), value, "{key}: {span:?}");
    }
    assert!(attr(&span, "stepup.policy_revision").starts_with("sha256:"));
    // An unknown path: named by its method, no route.
    assert_eq!(attr(&unknown, "http.route"), "");
    assert_eq!(attr(&unknown, "http.response.status_code"), "404");
    drop(server);
}

// ------------------------------------------------ a client written by others

/// A Python with decern's AuthZEN client (tests/authzen_client/
/// requirements.txt).
fn decern_python() -> PathBuf {
    common::python::venv("authzen_client", "the AuthZEN client test")
}

/// decern's client (Python, urllib, HTTP/1.1) asks both ports: it reads
/// `decision` and the profile's `context` (its `reasons` are ours), and
/// gets the 400 naming the member as an error.
#[test]
fn a_third_party_authzen_client_gets_decisions_and_errors() {
    let python = decern_python();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/authzen_client/decern_client.py");
    let s = Sidecar::start(&[]);
    let ask = |addr: &str, subject: Value, action: &str| {
        let out = Command::new(&python)
            .arg(&script)
            .arg(format!("http://{addr}"))
            .arg(subject.to_string())
            .arg(action)
            .arg(json!({ "type": "document", "id": "doc-1" }).to_string())
            .arg(json!({ "session": { "acr": "urn:stepup:aal1", "amr": ["pwd"] } }).to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let alice = json!({ "type": "user", "id": "alice" });
    for addr in [&s.grpc, &s.http] {
        let read: Value =
            serde_json::from_str(&ask(addr, alice.clone(), "\"documents.read\"")).unwrap();
        assert_eq!(read["allowed"], true, "{read}");
        assert_eq!(read["context"]["outcome"], "allow");
        let edit: Value =
            serde_json::from_str(&ask(addr, alice.clone(), "\"documents.edit\"")).unwrap();
        assert_eq!(edit["allowed"], false, "{edit}");
        assert_eq!(edit["context"]["outcome"], "challenge");
        assert_eq!(edit["context"]["acr_values"], json!(["urn:stepup:aal2"]));
        assert_eq!(edit["reasons"][0]["rule_id"], "edit-needs-aal2");
        let bad = ask(addr, json!({ "type": "user" }), "\"documents.read\"");
        assert!(
            bad.starts_with("error 400 ") && bad.contains("subject.id: missing"),
            "{bad}"
        );
    }
}
