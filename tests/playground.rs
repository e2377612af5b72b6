#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code: a failed unwrap is a failed test
//! `stepup playground` end to end: the binary started on a real socket, its
//! JSON API called over HTTP/1.1, its files written in a temporary copy of
//! the example policies and read back by `stepup test`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// A running `stepup playground`, killed when dropped.
struct Playground {
    child: Child,
    addr: String,
}

impl Drop for Playground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Playground {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stepup"))
            .arg("playground")
            .arg("--policies")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("stepup playground: http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .trim_end_matches('/')
            .to_owned();
        // Keep draining standard error so the child never blocks on it.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Self { child, addr }
    }

    /// One HTTP/1.1 call: the status and the body.
    fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
        let headers = format!("Host: {}\r\nContent-Type: application/json\r\n", self.addr);
        self.call_with(method, path, &headers, body)
    }

    /// A call with the given header lines (each ending in CRLF).
    fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &str,
        body: Option<&[u8]>,
    ) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        let body = body.unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\n{headers}Connection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        // A refused body may be answered before it is all sent.
        let _ = s.write_all(body);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text:?}"));
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, body.to_owned())
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = self.call("POST", path, Some(body.to_string().as_bytes()));
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn files(&self) -> Value {
        let (status, body) = self.get("/api/v1/files");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// A copy of the example policies in a temporary directory.
fn examples() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies"),
        tmp.path(),
    );
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn stepup(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(args)
        .output()
        .unwrap()
}

/// A refund of 2500 from a password-only session an hour old.
fn refund() -> Value {
    json!({
        "action": "payments.refund",
        "subject": { "id": "alice", "tenant": "acme" },
        "device": { "id": "d-laptop", "trusted": true },
        "network": { "ip": "203.0.113.7", "country": "DE" },
        "session": { "id": "s-1", "acr": "urn:stepup:aal1", "amr": ["pwd"],
                     "authTime": "2026-11-27T09:00:00Z" },
        "resource": { "type": "order", "attributes": { "amount": 2500 } }
    })
}

fn outcome(v: &Value) -> &str {
    v["decision"]["outcome"].as_str().unwrap_or("")
}

fn reasons(v: &Value) -> Vec<String> {
    v["decision"]["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["ruleId"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_page_and_its_assets_are_served_from_the_binary() {
    let dir = examples();
    let p = Playground::start(dir.path(), &[]);
    let (status, html) = p.get("/");
    assert_eq!(status, 200);
    assert!(html.contains("<title>stepup playground</title>"), "{html}");
    for asset in ["/app.js", "/app.css"] {
        let (status, text) = p.get(asset);
        assert_eq!(status, 200, "{asset}");
        assert!(text.len() > 1000, "{asset} is embedded");
    }
    // Nothing is fetched from elsewhere: the page works offline.
    for text in [html, p.get("/app.js").1, p.get("/app.css").1] {
        assert!(!text.contains("https://"), "no external URL");
        assert!(!text.contains("//cdn"), "no CDN");
    }
    assert_eq!(p.get("/nope").0, 404);
    assert_eq!(p.get("/api/v1/evaluate").0, 405);
}

#[test]
fn the_files_are_the_set_with_its_test_cases_as_presets() {
    let dir = examples();
    let p = Playground::start(dir.path(), &[]);
    let files = p.files();
    let names: Vec<&str> = files["files"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(names.contains(&"payments.yaml"), "{names:?}");
    assert!(names.contains(&"examples_test.yaml"), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("lists")), "{names:?}");
    assert_eq!(files["write"], false);
    let presets = files["presets"].as_array().unwrap();
    assert!(presets.len() > 20, "{}", presets.len());
    // Every preset, decided through the API, has the outcome its case
    // expects (the example suites pass).
    for preset in presets {
        let (status, v) = p.post(
            "/api/v1/evaluate",
            &json!({
                "files": files["files"],
                "request": preset["request"],
                "now": preset["now"],
                "history": preset["history"],
            }),
        );
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            outcome(&v).to_lowercase(),
            format!("outcome_{}", preset["expect"].as_str().unwrap()),
            "{}: {v}",
            preset["name"]
        );
    }
}

#[test]
fn a_broken_rule_is_reported_where_check_reports_it() {
    let dir = examples();
    let p = Playground::start(dir.path(), &[]);
    let mut files = p.files()["files"].clone();
    let text = files["payments.yaml"].as_str().unwrap().to_owned();
    let broken = text.replace(
        "resource.attributes.amount > 1000.0",
        "resource.atributes.amount > 1000.0",
    );
    assert_ne!(broken, text);
    files["payments.yaml"] = json!(broken);
    let (status, v) = p.post(
        "/api/v1/evaluate",
        &json!({ "files": files, "request": refund(), "now": "2026-11-27T10:00:00Z" }),
    );
    assert_eq!(status, 200);
    assert_eq!(v["valid"], false);
    assert!(v["decision"].is_null());
    let d = &v["diagnostics"][0];
    assert_eq!(d["file"], "payments.yaml", "{v}");
    assert_eq!(d["location"]["line"], 12, "{v}");
    assert_eq!(d["severity"], "error");
    assert!(d["help"].as_str().unwrap().contains("did you mean"), "{d}");
    // The same diagnostic as `stepup check` on the same file.
    std::fs::write(dir.path().join("payments.yaml"), &broken).unwrap();
    let out = stepup(&[
        "check",
        "--format",
        "json",
        "--policies",
        dir.path().to_str().unwrap(),
    ]);
    // An invalid set's report goes to standard output, with exit code 3.
    assert_eq!(out.status.code(), Some(3));
    let check: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &check["diagnostics"][0];
    for key in ["code", "message", "location", "help", "severity"] {
        assert_eq!(d[key], c[key], "{key}");
    }
    // Fixed again: valid, and a decision.
    files["payments.yaml"] = json!(text);
    let (_, v) = p.post(
        "/api/v1/evaluate",
        &json!({ "files": files, "request": refund(), "now": "2026-11-27T10:00:00Z" }),
    );
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["diagnostics"], json!([]));
    assert_eq!(outcome(&v), "OUTCOME_CHALLENGE");
}

#[test]
fn a_challenge_then_the_step_up_then_time_passing() {
    let dir = examples();
    let p = Playground::start(dir.path(), &[]);
    let files = p.files()["files"].clone();
    let now = "2026-11-27T10:00:00Z";
    let mut request = refund();
    let (_, v) = p.post(
        "/api/v1/evaluate",
        &json!({ "files": files, "request": request, "now": now }),
    );
    assert_eq!(outcome(&v), "OUTCOME_CHALLENGE", "{v}");
    let req = &v["decision"]["requirements"][0];
    assert_eq!(req["ruleId"], "refund-large");
    assert_eq!(req["level"], "aal2");
    assert_eq!(req["maxAge"], "300s");
    let challenge = v["decision"]["wwwAuthenticate"].as_str().unwrap();
    assert!(
        challenge.starts_with(r#"Bearer error="insufficient_user_authentication""#),
        "{challenge}"
    );
    assert!(challenge.contains("urn:stepup:aal2"), "{challenge}");
    // The explain trace says which rule fired and what it read.
    let trace = v["decision"]["trace"].as_array().unwrap();
    assert!(
        trace
            .iter()
            .any(|t| t["id"] == "refund-large" && t["fired"] == true),
        "{trace:?}"
    );
    let levels: Vec<&str> = v["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["aal1", "aal2", "aal3"]);
    // Each condition's worst-case cost, where its `when` is.
    let cost = v["costs"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "refund-large")
        .unwrap();
    assert_eq!(cost["file"], "payments.yaml");
    assert_eq!(cost["line"], 12);
    assert!(cost["cost"].as_u64().unwrap() <= v["costs"]["limit"].as_u64().unwrap());
    // The identity provider steps the session up: acr, amr, auth_time.
    request["session"]["acr"] = req["acrValues"][0].clone();
    request["session"]["amr"] = json!(["pwd", "otp"]);
    request["session"]["authTime"] = json!(now);
    let (_, v) = p.post(
        "/api/v1/evaluate",
        &json!({ "files": files, "request": request, "now": now }),
    );
    assert_eq!(outcome(&v), "OUTCOME_ALLOW", "{v}");
    // Six minutes on, the step-up is older than max_age (5m).
    let (_, v) = p.post(
        "/api/v1/evaluate",
        &json!({ "files": files, "request": request, "now": "2026-11-27T10:06:00Z" }),
    );
    assert_eq!(outcome(&v), "OUTCOME_CHALLENGE", "{v}");
    assert_eq!(reasons(&v), ["refund-large"]);
}

#[test]
fn history_is_simulated_refunds_and_devices() {
    let dir = examples();
    let p = Playground::start(dir.path(), &[]);
    let files = p.files()["files"].clone();
    let mut request = refund();
    request["resource"]["attributes"]["amount"] = json!(50);
    let decide = |request: &Value, history: Value| {
        let (status, v) = p.post(
            "/api/v1/evaluate",
            &json!({ "files": files, "request": request, "now": "2026-11-27T10:00:00Z",
                     "history": history }),
        );
        assert_eq!(status, 200);
        v
    };
    let refunds = |n: usize| {
        Value::Array(
            (0..n)
                .map(|i| json!({ "ago": format!("{}m", 50 - i), "request": {} }))
                .collect(),
        )
    };
    let v = decide(&request, refunds(9));
    assert_eq!(outcome(&v), "OUTCOME_ALLOW", "{v}");
    let v = decide(&request, refunds(10));
    assert_eq!(outcome(&v), "OUTCOME_CHALLENGE", "{v}");
    assert!(reasons(&v).contains(&"refund-burst".to_owned()), "{v}");
    // Two failed step-ups in a row.
    let v = decide(
        &request,
        json!([{ "ago": "10m", "stepup": "failed" }, { "ago": "5m", "stepup": "failed" }]),
    );
    assert!(reasons(&v).contains(&"failed-step-ups".to_owned()), "{v}");
    // An account change from a device never seen, next to one seen before.
    request["action"] = json!("account.email.change");
    let v = decide(
        &request,
        json!([{ "ago": "2d", "request": { "action": "orders.list", "device": { "id": "d-old" } } }]),
    );
    assert!(
        reasons(&v).contains(&"new-device-account-change".to_owned()),
        "{v}"
    );
    // A history entry that is not one is reported, not decided.
    let v = decide(&request, json!([{ "ago": "soon" }]));
    assert!(v["decision"].is_null(), "{v}");
    assert!(
        v["scenario"][0]["message"]
            .as_str()
            .unwrap()
            .contains("ago"),
        "{v}"
    );
}

#[test]
fn the_suite_runs_over_the_edited_files() {
    let dir = examples();
    let p = Playground::start(dir.path(), &[]);
    let mut files = p.files()["files"].clone();
    let (status, v) = p.post("/api/v1/test", &json!({ "files": files }));
    assert_eq!(status, 200);
    assert_eq!(v["failed"], 0, "{v}");
    assert!(v["passed"].as_u64().unwrap() > 20);
    // The cases come back as presets, for edited suites.
    assert_eq!(
        v["presets"].as_array().unwrap().len() as u64,
        v["passed"].as_u64().unwrap()
    );
    assert!(
        v["coverage"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "refund-large" && r["cases"].as_u64().unwrap() > 0)
    );
    // The refund threshold raised: the cases about it fail.
    let text = files["payments.yaml"]
        .as_str()
        .unwrap()
        .replace("> 1000.0", "> 100000.0");
    files["payments.yaml"] = json!(text);
    let (_, v) = p.post("/api/v1/test", &json!({ "files": files }));
    assert!(v["failed"].as_u64().unwrap() > 0, "{v}");
    let failed = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["passed"] == false)
        .unwrap();
    assert!(
        failed["file"].as_str().unwrap().ends_with("_test.yaml"),
        "{failed}"
    );
}

fn saved_case() -> Value {
    let mut request = refund();
    request["resource"]["attributes"]["amount"] = json!(5000);
    json!({
        "name": "a refund of 5000 from the playground",
        "now": "2026-11-27T10:00:00Z",
        "request": request,
        "expect": { "outcome": "challenge", "reasons": ["refund-large"] }
    })
}

#[test]
fn saving_needs_write_and_then_the_case_passes_with_stepup_test() {
    let dir = examples();
    let before = std::fs::read_to_string(dir.path().join("examples_test.yaml")).unwrap();
    {
        let p = Playground::start(dir.path(), &[]);
        let (status, v) = p.post(
            "/api/v1/save-test",
            &json!({ "file": "examples_test.yaml", "case": saved_case() }),
        );
        assert_eq!(status, 403, "{v}");
        assert!(v["error"].as_str().unwrap().contains("--write"), "{v}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("examples_test.yaml")).unwrap(),
        before
    );
    let p = Playground::start(dir.path(), &["--write"]);
    assert_eq!(p.files()["write"], true);
    for file in [
        "examples_test.yaml",
        "playground_test.yaml",
        "signals_test.yaml",
    ] {
        let (status, v) = p.post(
            "/api/v1/save-test",
            &json!({ "file": file, "case": saved_case() }),
        );
        assert_eq!(status, 200, "{file}: {v}");
        assert_eq!(v["saved"], file);
    }
    let after = std::fs::read_to_string(dir.path().join("examples_test.yaml")).unwrap();
    assert!(after.starts_with(&before));
    assert!(after.contains("a refund of 5000 from the playground"));
    let out = stepup(&[
        "test",
        "--format",
        "json",
        "--policies",
        dir.path().to_str().unwrap(),
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    let saved: Vec<&Value> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["case"] == "a refund of 5000 from the playground")
        .collect();
    assert_eq!(saved.len(), 3, "{report}");
    assert!(saved.iter().all(|c| c["passed"] == true));
    // A case that does not hold is saved, and `stepup test` fails on it.
    let mut wrong = saved_case();
    wrong["expect"] = json!({ "outcome": "allow" });
    let (status, _) = p.post(
        "/api/v1/save-test",
        &json!({ "file": "playground_test.yaml", "case": wrong }),
    );
    assert_eq!(status, 200);
    assert_eq!(
        stepup(&["test", "--policies", dir.path().to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn saving_stays_inside_the_directory_and_in_test_files() {
    let dir = examples();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("x_test.yaml"), "").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("x_test.yaml"),
            dir.path().join("link_test.yaml"),
        )
        .unwrap();
    }
    let p = Playground::start(dir.path(), &["--write"]);
    let outside_name = format!("{}/y_test.yaml", outside.path().display());
    for file in [
        "../x_test.yaml",
        "sub/../../x_test.yaml",
        outside_name.as_str(),
        "payments.yaml",
        "notes.txt",
        ".hidden_test.yaml",
        "out/x_test.yaml",
        "link_test.yaml",
        "missing/dir_test.yaml",
        "a\\..\\..\\x_test.yaml",
    ] {
        let (status, v) = p.post(
            "/api/v1/save-test",
            &json!({ "file": file, "case": saved_case() }),
        );
        assert!(status == 403 || status == 400, "{file}: {status} {v}");
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("x_test.yaml")).unwrap(),
        ""
    );
    assert!(!outside.path().join("y_test.yaml").exists());
    // Edited file names are checked the same way.
    let (status, v) = p.post(
        "/api/v1/evaluate",
        &json!({ "files": { "../evil.yaml": "x" } }),
    );
    assert_eq!(status, 403, "{v}");
}

#[test]
fn bodies_are_bounded_and_must_be_json() {
    let dir = examples();
    let p = Playground::start(dir.path(), &[]);
    let big = vec![b'x'; 5 << 20];
    let (status, _) = p.call("POST", "/api/v1/evaluate", Some(&big));
    assert_eq!(status, 413);
    let (status, body) = p.call("POST", "/api/v1/evaluate", Some(b"{not json"));
    assert_eq!(status, 400, "{body}");
    let (status, v) = p.post("/api/v1/evaluate", &json!({ "request": refund() }));
    assert_eq!(status, 400, "{v}");
}

#[test]
fn a_non_loopback_address_warns_and_a_bad_one_is_a_usage_error() {
    let dir = examples();
    let out = stepup(&[
        "playground",
        "--policies",
        dir.path().to_str().unwrap(),
        "--listen",
        "localhost",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid listen address `localhost`"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(["playground", "--policies", dir.path().to_str().unwrap()])
        .args(["--listen", "0.0.0.0:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("warning: the playground listens on `0.0.0.0:0`, not loopback"),
        "{line}"
    );
}

#[test]
fn replay_log_requests_are_presets() {
    let dir = examples();
    let log = dir.path().join("requests.jsonl");
    let line = json!({ "request": refund(), "decision": { "outcome": "CHALLENGE" },
                       "time": "2026-11-27T10:00:00Z" });
    std::fs::write(&log, format!("{line}\n{}\nnot json\n", refund())).unwrap();
    let p = Playground::start(dir.path(), &["--requests", log.to_str().unwrap()]);
    let requests = p.files()["requests"].as_array().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["request"]["action"], "payments.refund");
    assert_eq!(requests[1]["request"]["action"], "payments.refund");
    assert_eq!(requests[0]["now"], "2026-11-27T10:00:00Z");
    assert!(requests[1]["now"].is_null());
}

#[test]
fn requests_a_web_page_elsewhere_could_send_are_refused() {
    let dir = examples();
    let p = Playground::start(dir.path(), &["--write"]);
    let port = p.addr.rsplit_once(':').unwrap().1;
    let body = json!({ "file": "x_test.yaml", "case": saved_case() }).to_string();
    let save = |headers: &str| {
        p.call_with("POST", "/api/v1/save-test", headers, Some(body.as_bytes()))
            .0
    };
    // DNS rebinding: a site's own name pointed at the loopback address.
    let (status, _) = p.call_with("GET", "/api/v1/files", "Host: evil.example:7180\r\n", None);
    assert_eq!(status, 403);
    // A cross-origin page, and a form or no-CORS fetch (no JSON type).
    let json = "Content-Type: application/json\r\n";
    assert_eq!(
        save(&format!(
            "Host: {}\r\nOrigin: http://evil.example\r\n{json}",
            p.addr
        )),
        403
    );
    assert_eq!(
        save(&format!("Host: {}\r\nContent-Type: text/plain\r\n", p.addr)),
        415
    );
    assert!(!dir.path().join("x_test.yaml").exists());
    // The page's own calls: same origin, by IP or as localhost.
    let origin = format!("Origin: http://localhost:{port}\r\n");
    assert_eq!(
        save(&format!("Host: localhost:{port}\r\n{origin}{json}")),
        200
    );
    assert!(dir.path().join("x_test.yaml").exists());
    let (status, _) = p.call_with("GET", "/", &format!("Host: [::1]:{port}\r\n"), None);
    assert_eq!(status, 200);
}

#[test]
fn a_file_is_saved_only_with_write_and_only_when_the_set_stays_valid() {
    let dir = examples();
    let payments = dir.path().join("payments.yaml");
    let before = std::fs::read_to_string(&payments).unwrap();
    let raised = before.replace("> 1000.0", "> 2000.0");
    {
        let p = Playground::start(dir.path(), &[]);
        let (status, v) = p.post(
            "/api/v1/save-file",
            &json!({ "file": "payments.yaml", "text": raised }),
        );
        assert_eq!(status, 403, "{v}");
    }
    let p = Playground::start(dir.path(), &["--write"]);
    // An edit that breaks the set is not written.
    let broken = before.replace("effect: challenge", "effect: challenj");
    let (status, v) = p.post(
        "/api/v1/save-file",
        &json!({ "file": "payments.yaml", "text": broken }),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("invalid"), "{v}");
    assert_eq!(std::fs::read_to_string(&payments).unwrap(), before);
    for file in [
        "../payments.yaml",
        "lists/tor_exits.txt",
        "notes.txt",
        "/tmp/x.yaml",
    ] {
        let (status, v) = p.post(
            "/api/v1/save-file",
            &json!({ "file": file, "text": raised }),
        );
        assert_eq!(status, 403, "{file}: {v}");
    }
    // A valid edit is written, and `stepup check` reads it.
    let (status, v) = p.post(
        "/api/v1/save-file",
        &json!({ "file": "payments.yaml", "text": raised }),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(std::fs::read_to_string(&payments).unwrap(), raised);
    assert!(
        stepup(&["check", "--policies", dir.path().to_str().unwrap()])
            .status
            .success()
    );
    // A suite is written when it reads against the set on disk.
    let (status, v) = p.post(
        "/api/v1/save-file",
        &json!({ "file": "new_test.yaml", "text": "name: new\ncases:\n  - name: c\n    request: { action: orders.list }\n    expect: { outcome: nope }\n" }),
    );
    assert_eq!(status, 400, "{v}");
    assert!(!dir.path().join("new_test.yaml").exists());
}

/// A `DecideRequest` with every field set to a value that is not the
/// default, so its proto3 JSON names every field. The struct literals name
/// every field: a field added to the proto fails to compile here until it
/// is set.
fn every_field() -> stepup::proto::v1::DecideRequest {
    use stepup::proto::v1::{DecideRequest, Device, Network, Resource, Session, Subject};
    let attributes = || {
        std::iter::once((
            "k".to_owned(),
            pbjson_types::Value {
                kind: Some(pbjson_types::value::Kind::StringValue("v".into())),
            },
        ))
        .collect()
    };
    let at = pbjson_types::Timestamp {
        seconds: 1_795_000_000,
        nanos: 0,
    };
    DecideRequest {
        action: "payments.refund".into(),
        subject: Some(Subject {
            id: "alice".into(),
            tenant: "acme".into(),
            roles: vec!["support".into()],
            attributes: attributes(),
        }),
        session: Some(Session {
            id: "s-1".into(),
            acr: "urn:stepup:aal1".into(),
            amr: vec!["pwd".into()],
            auth_time: Some(at),
        }),
        device: Some(Device {
            id: "d-1".into(),
            trusted: true,
            platform: "web".into(),
            attributes: attributes(),
        }),
        network: Some(Network {
            ip: "203.0.113.7".into(),
            country: "DE".into(),
            asn: 3320,
            attributes: attributes(),
        }),
        resource: Some(Resource {
            r#type: "order".into(),
            id: "o-1".into(),
            attributes: attributes(),
        }),
        attributes: attributes(),
        time: Some(at),
        explain: true,
    }
}

/// Checks that the schema `fields` names exactly the keys of the proto3
/// JSON object `json` at `path`, and that each value has the schema's type.
fn assert_schema_matches(fields: &Value, json: &Value, path: &str) {
    let fields = fields
        .as_array()
        .unwrap_or_else(|| panic!("{path}: no fields"));
    let object = json.as_object().unwrap();
    let names: std::collections::BTreeSet<&str> =
        fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
    let keys: std::collections::BTreeSet<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(
        names, keys,
        "{path}: the schema's fields and the JSON's keys"
    );
    for f in fields {
        let name = f["name"].as_str().unwrap();
        let at = format!("{path}.{name}");
        let v = &object[name];
        let values: Vec<&Value> = if f["repeated"] == true {
            v.as_array()
                .unwrap_or_else(|| panic!("{at}: a list"))
                .iter()
                .collect()
        } else {
            assert!(!v.is_array(), "{at}: not a list");
            vec![v]
        };
        for v in values {
            match f["type"].as_str().unwrap() {
                "string" => assert!(v.is_string(), "{at}: {v}"),
                "bool" => assert!(v.is_boolean(), "{at}: {v}"),
                // proto3 JSON writes 64-bit integers as strings.
                "number" => assert!(
                    v.is_number() || v.as_str().is_some_and(|s| s.parse::<f64>().is_ok()),
                    "{at}: {v}"
                ),
                "timestamp" => assert!(
                    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).is_ok(),
                    "{at}: {v}"
                ),
                "map" => {
                    assert_eq!(f["key"], "string", "{at}");
                    assert_eq!(f["value"]["type"], "value", "{at}");
                    assert!(v.is_object(), "{at}: {v}");
                }
                "message" => assert_schema_matches(&f["fields"], v, &at),
                other => panic!("{at}: unexpected type {other} in {f}"),
            }
        }
    }
}

#[test]
fn the_schema_is_the_decide_request_of_the_proto() {
    let dir = examples();
    let p = Playground::start(dir.path(), &[]);
    let (status, body) = p.get("/api/v1/schema");
    assert_eq!(status, 200, "{body}");
    let schema: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(schema["message"], "stepup.v1.DecideRequest");
    // Every field of a fully set request, by its proto3 JSON name, and
    // nothing else, with the type its JSON has.
    let json = serde_json::to_value(every_field()).unwrap();
    assert_schema_matches(&schema["fields"], &json, "request");
    // The fields the page completes and checks, with their proto names
    // and types.
    let field = |path: &[&str]| {
        let mut fields = &schema["fields"];
        let mut found = &Value::Null;
        for name in path {
            found = fields
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == *name)
                .unwrap_or_else(|| panic!("no field {name} in {schema}"));
            fields = &found["fields"];
        }
        found.clone()
    };
    let auth_time = field(&["session", "authTime"]);
    assert_eq!(auth_time["proto"], "auth_time");
    assert_eq!(auth_time["type"], "timestamp");
    assert_eq!(field(&["session"])["message"], "stepup.v1.Session");
    assert_eq!(field(&["subject", "roles"])["repeated"], true);
    assert_eq!(field(&["network", "asn"])["type"], "number");
    assert_eq!(field(&["device", "trusted"])["type"], "bool");
    assert_eq!(field(&["explain"])["type"], "bool");
    assert!(field(&["action"]).get("repeated").is_none());
    // A proto name is read as its JSON name, as the page accepts it.
    let files = p.files()["files"].clone();
    let mut request = refund();
    request["session"]["auth_time"] = request["session"]["authTime"].take();
    request["session"]
        .as_object_mut()
        .unwrap()
        .remove("authTime");
    let (_, v) = p.post(
        "/api/v1/evaluate",
        &json!({ "files": files, "request": request, "now": "2026-11-27T10:00:00Z" }),
    );
    assert_eq!(outcome(&v), "OUTCOME_CHALLENGE", "{v}");
    assert_eq!(p.call("POST", "/api/v1/schema", Some(b"{}")).0, 405);
}

/// What the page's "Trip Berlin → Sydney" button does (`simulate("trip")`
/// in app.js): an earlier request from Berlin 45 minutes ago, and the
/// current one moved to Sydney.
fn trip(request: &mut Value) -> Value {
    request["network"]["country"] = json!("AU");
    request["network"]["attributes"] = json!({ "lat": -33.87, "lon": 151.21 });
    json!([{ "ago": "45m", "request": { "action": "orders.list",
             "network": { "country": "DE", "attributes": { "lat": 52.52, "lon": 13.405 } } } }])
}

#[test]
fn the_trip_button_is_impossible_travel() {
    let dir = examples();
    let p = Playground::start(dir.path(), &[]);
    let files = p.files()["files"].clone();
    let mut request = refund();
    request["resource"]["attributes"]["amount"] = json!(50);
    request["subject"]["attributes"] = json!({ "usual_countries": ["DE", "FR"] });
    let decide = |request: &Value, history: &Value| {
        let (status, v) = p.post(
            "/api/v1/evaluate",
            &json!({ "files": files, "request": request, "now": "2026-11-27T10:00:00Z",
                     "history": history }),
        );
        assert_eq!(status, 200, "{v}");
        assert!(v["scenario"].is_null(), "{v}");
        v
    };
    let fired = |v: &Value, kind: &str, id: &str| {
        v["decision"]["trace"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == kind && t["id"] == id && t["fired"] == true)
    };
    assert_eq!(outcome(&decide(&request, &json!([]))), "OUTCOME_ALLOW");
    let history = trip(&mut request);
    let v = decide(&request, &history);
    assert_eq!(outcome(&v), "OUTCOME_CHALLENGE", "{v}");
    assert_eq!(reasons(&v), ["impossible-travel"], "{v}");
    let req = &v["decision"]["requirements"][0];
    assert_eq!(req["ruleId"], "impossible-travel", "{v}");
    assert_eq!(req["level"], "aal2");
    assert_eq!(req["methods"], json!(["hwk", "otp"]));
    assert!(fired(&v, "KIND_RULE", "impossible-travel"), "{v}");
    // Sydney is outside Alice's usual countries: the risk signal fires too.
    let risk = v["risk"].as_array().unwrap();
    assert!(
        risk.iter()
            .any(|s| s["signal"] == "unusual-country" && s["fired"] == true),
        "{v}"
    );
    // Sydney without Berlin before it, or Berlin a day before (670 km/h):
    // no impossible travel.
    let v = decide(&request, &json!([]));
    assert!(!fired(&v, "KIND_RULE", "impossible-travel"), "{v}");
    assert!(
        !reasons(&v).contains(&"impossible-travel".to_owned()),
        "{v}"
    );
    let mut a_day = history.clone();
    a_day[0]["ago"] = json!("24h");
    let v = decide(&request, &a_day);
    assert!(!fired(&v, "KIND_RULE", "impossible-travel"), "{v}");
    assert_eq!(outcome(&v), "OUTCOME_ALLOW", "{v}");
}

#[test]
fn the_config_files_cost_limit_applies() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::copy(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/levels.yaml"),
        policies.join("levels.yaml"),
    )
    .unwrap();
    let cheap = "  - id: cheap\n    actions: [\"orders.*\"]\n    when: 'subject.id == \"mallory\"'\n    effect: deny\n";
    let costly = "  - id: costly\n    actions: [\"orders.*\"]\n    when: 'subject.roles.exists(r, r == \"admin\")'\n    effect: deny\n";
    let policy =
        |rules: &str| format!("apiVersion: stepup/v1\nkind: Policy\nname: costs\nrules:\n{rules}");
    std::fs::write(
        policies.join("costs.yaml"),
        policy(&format!("{cheap}{costly}")),
    )
    .unwrap();
    let limit = 100;
    let config = dir.path().join("stepup.toml");
    std::fs::write(&config, format!("[limits]\nmax_condition_cost = {limit}\n")).unwrap();
    let cfg = config.to_str().unwrap();

    // Without the config file the set is valid, the costly condition
    // above the limit the file sets and the cheap one below it.
    let p = Playground::start(&policies, &[]);
    let files = p.files()["files"].clone();
    let (_, v) = p.post("/api/v1/evaluate", &json!({ "files": files }));
    assert_eq!(v["valid"], true, "{v}");
    let cost = |id: &str| {
        v["costs"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()["cost"]
            .as_u64()
            .unwrap()
    };
    assert!(cost("costly") > limit && cost("cheap") <= limit, "{v}");
    assert!(
        v["costs"]["limit"].as_u64().unwrap() > cost("costly"),
        "{v}"
    );
    drop(p);

    // With it, the costly condition is the error `stepup check` reports.
    let p = Playground::start(&policies, &["--config", cfg]);
    let (status, v) = p.post("/api/v1/evaluate", &json!({ "files": files }));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["valid"], false, "{v}");
    let diagnostics = v["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 1, "{v}");
    let d = &diagnostics[0];
    assert_eq!(d["code"], "cost-limit", "{v}");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["file"], "costs.yaml");
    assert_eq!(d["location"]["line"], 11, "{v}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .ends_with(&format!("above the limit of {limit}")),
        "{d}"
    );
    let out = stepup(&[
        "check",
        "--format",
        "json",
        "--config",
        cfg,
        "--policies",
        policies.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let check: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["code", "message", "location", "help", "severity"] {
        assert_eq!(d[key], check["diagnostics"][0][key], "{key}");
    }
    // Without the costly rule the set is valid, under the file's limit.
    let mut files = files;
    files["costs.yaml"] = json!(policy(cheap));
    let (_, v) = p.post("/api/v1/evaluate", &json!({ "files": files }));
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["costs"]["limit"], limit, "{v}");
}
