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
