#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! Operations end to end: `stepup serve` as a process with the admin
//! listener and a file decision log; known traffic; then the scraped
//! counters, the probes, `/policy`, and the log lines (masking applied).
//! `/metrics` in both formats (text 0.0.4 and, when asked, OpenMetrics 1.0)
//! goes to the Prometheus project's own parsers when
//! `STEPUP_PROMETHEUS_PYTHON` names a Python that has them
//! (`tests/exposition/check.sh` sets it up and runs this test).

mod common;
use common::{http_get as get, metric};
use std::path::Path;
use std::process::{Command, Stdio};

use stepup::proto::v1::{DecideRequest, Outcome};

fn request(json: serde_json::Value) -> DecideRequest {
    serde_json::from_value(json).unwrap()
}

#[test]
fn metrics_probes_and_decision_log() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("decisions.jsonl");
    let (mut child, grpc, admin) = serve_with_log(dir.path(), &log_path);
    let rt = common::runtime();
    let outcomes = rt.block_on(traffic(&mut child, &grpc));
    assert_eq!(
        outcomes,
        [
            Outcome::Allow,
            Outcome::Allow,
            Outcome::Challenge,
            Outcome::Deny
        ]
    );

    check_metrics(&admin);
    check_exposition(&admin, dir.path());
    check_policy(&admin);

    // Graceful stop flushes the log.
    drop(rt);
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        4,
        "one line per decision, none for the invalid call"
    );
    check_log(&lines);
}

/// `stepup serve` over the example policies with the admin listener and a
/// file decision log at `log_path` (IPs hashed, emails dropped): the child,
/// the gRPC address and the admin address.
fn serve_with_log(dir: &Path, log_path: &Path) -> (std::process::Child, String, String) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let config = dir.join("stepup.toml");
    std::fs::write(
        &config,
        "[decision_log]\nhash = [\"network.ip\"]\ndrop = [\"subject.attributes.email\"]\nhash_key = \"test-key\"\n",
    )
    .unwrap();
    let grpc = format!("127.0.0.1:{}", common::free_port());
    let admin = format!("127.0.0.1:{}", common::free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(["serve", "--policies"])
        .arg(&examples)
        .args(["--listen", &grpc, "--admin", &admin, "--decision-log"])
        .arg(log_path)
        .arg("--config")
        .arg(&config)
        // The request is at a fixed time.
        .args(["--max-time-skew", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, grpc, admin)
}

/// Four decisions (allow, allow again, challenge, deny) and one invalid
/// call; the outcomes.
async fn traffic(child: &mut std::process::Child, grpc: &str) -> Vec<Outcome> {
    let mut client = common::connect_when_up(child, grpc).await;
    let base = serde_json::json!({
        "action": "orders.list",
        "time": "2026-11-27T12:00:00Z",
        "subject": { "id": "u1", "attributes": { "email": "alice@example.com", "usual_countries": ["DE"] } },
        "device": { "trusted": true },
        "network": { "ip": "203.0.113.7", "country": "DE" },
    });
    let mut outcomes = Vec::new();
    for patch in [
        serde_json::json!({}),
        serde_json::json!({}),
        serde_json::json!({ "action": "account.password.change" }),
        serde_json::json!({ "network": { "ip": "203.0.113.8", "country": "KP" } }),
    ] {
        let mut v = base.clone();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        outcomes.push(
            client
                .decide(request(v))
                .await
                .unwrap()
                .into_inner()
                .outcome(),
        );
    }
    let invalid = client.decide(DecideRequest::default()).await.unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    outcomes
}

/// The probes and the counters after [`traffic`].
fn check_metrics(admin: &str) {
    assert_eq!(get(admin, "/livez"), (200, "ok\n".into()));
    assert_eq!(get(admin, "/readyz"), (200, "ready\n".into()));
    let (status, body) = get(admin, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        metric(&body, "stepup_decisions_total{outcome=\"allow\"}"),
        2.0
    );
    assert_eq!(
        metric(&body, "stepup_decisions_total{outcome=\"challenge\"}"),
        1.0
    );
    assert_eq!(
        metric(&body, "stepup_decisions_total{outcome=\"deny\"}"),
        1.0
    );
    assert_eq!(
        metric(&body, "stepup_rule_matches_total{rule=\"password-change\"}"),
        1.0
    );
    assert_eq!(
        metric(&body, "stepup_rule_matches_total{rule=\"blocked-country\"}"),
        1.0
    );
    assert_eq!(metric(&body, "stepup_decision_duration_seconds_count"), 4.0);
    assert_eq!(
        metric(&body, "stepup_cache_hits_total"),
        1.0,
        "the second identical allow"
    );
    assert_eq!(metric(&body, "stepup_cache_misses_total"), 3.0);
    assert_eq!(
        metric(
            &body,
            "stepup_grpc_requests_total{method=\"Decide\",code=\"OK\"}"
        ),
        4.0
    );
    assert_eq!(
        metric(
            &body,
            "stepup_grpc_requests_total{method=\"Decide\",code=\"INVALID_ARGUMENT\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&body, "stepup_policy_reloads_total{result=\"failed\"}"),
        0.0
    );
    assert!(
        body.contains("stepup_policy_info{revision=\"sha256:"),
        "{body}"
    );
}

/// GET `/metrics` with `accept`: (content type, body).
fn scrape(admin: &str, accept: &str) -> (String, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_else(|| panic!("{head}"));
    (content_type.to_owned(), body.to_owned())
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The build, process, per-method latency and reload metrics, and
/// OpenMetrics for a scraper that asks for it; both formats through the
/// Prometheus parsers when there are.
fn check_exposition(admin: &str, dir: &Path) {
    // What Prometheus sends by default.
    let (content_type, om) = scrape(
        admin,
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    );
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.ends_with("\n# EOF\n"), "{om}");
    assert!(om.contains("\n# TYPE stepup_decisions counter\n"), "{om}");
    assert_eq!(
        metric(&om, "stepup_decisions_total{outcome=\"allow\"}"),
        2.0
    );
    let (content_type, text) = scrape(admin, "text/plain");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!text.contains("# EOF"));

    assert_eq!(
        metric(
            &text,
            "stepup_grpc_server_handling_seconds_count{method=\"Decide\"}"
        ),
        5.0,
        "four decisions and the invalid call"
    );
    assert_eq!(
        metric(
            &text,
            "stepup_grpc_server_handling_seconds_bucket{method=\"Decide\",le=\"+Inf\"}"
        ),
        5.0
    );
    assert_eq!(
        metric(
            &text,
            "stepup_grpc_server_handling_seconds_count{method=\"Check\"}"
        ),
        0.0
    );
    let build = text
        .lines()
        .find(|l| l.starts_with("stepup_build_info{"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        build.starts_with(&format!(
            "stepup_build_info{{version=\"{}\"",
            env!("CARGO_PKG_VERSION")
        )) && build.ends_with("} 1"),
        "{build}"
    );
    let now = now();
    let loaded = metric(&text, "stepup_policy_last_reload_success_timestamp_seconds");
    assert!(loaded <= now && loaded > now - 600.0, "{loaded} vs {now}");
    if cfg!(target_os = "linux") {
        let started = metric(&text, "process_start_time_seconds");
        assert!(
            started <= loaded + 1.0 && started > now - 600.0,
            "{started}"
        );
        assert!(metric(&text, "process_resident_memory_bytes") > 1_048_576.0);
        assert!(
            metric(&text, "process_virtual_memory_bytes")
                >= metric(&text, "process_resident_memory_bytes")
        );
        let fds = metric(&text, "process_open_fds");
        assert!(
            fds >= 3.0 && fds <= metric(&text, "process_max_fds"),
            "{fds}"
        );
        assert!(metric(&text, "process_cpu_seconds_total") >= 0.0);
    }

    if let Some(python) = std::env::var_os("STEPUP_PROMETHEUS_PYTHON") {
        let text_file = dir.join("metrics.txt");
        let om_file = dir.join("metrics.openmetrics");
        std::fs::write(&text_file, &text).unwrap();
        std::fs::write(&om_file, &om).unwrap();
        let out = Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/exposition/check.py"))
            .arg(&text_file)
            .arg(&om_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the Prometheus parsers reject /metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{}", String::from_utf8_lossy(&out.stdout).trim_end());
    } else {
        println!(
            "note: STEPUP_PROMETHEUS_PYTHON is unset: the Prometheus parsers' check is \
             tests/exposition/check.sh"
        );
    }
}

/// `/policy` over the example set.
fn check_policy(admin: &str) {
    let (status, policy) = get(admin, "/policy");
    assert_eq!(status, 200);
    let policy: serde_json::Value = serde_json::from_str(&policy).unwrap();
    assert_eq!(policy["rules"], 20);
    assert!(policy["revision"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(policy["last_reload_error"], serde_json::Value::Null);
    // The example set's `lists/tor_exits.txt`.
    assert_eq!(policy["lists"]["ip"]["tor_exits"]["prefixes"], 3);
    assert_eq!(policy["lists"]["geoip_city"], serde_json::Value::Null);
    assert_eq!(get(admin, "/nope").0, 404);
}

/// The decision-log lines of [`traffic`]: one per decision, masked.
fn check_log(lines: &[serde_json::Value]) {
    let challenge = &lines[2];
    assert_eq!(challenge["source"], "decide");
    assert_eq!(challenge["decision"]["outcome"], "OUTCOME_CHALLENGE");
    assert_eq!(
        challenge["decision"]["reasons"][0]["ruleId"],
        "password-change"
    );
    assert_eq!(challenge["decision"]["requirements"][0]["level"], "aal2");
    assert!(challenge["decision"]["decisionId"].as_str().unwrap().len() == 36);
    assert!(
        challenge["decision"]["policyRevision"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(challenge["time"], "2026-11-27T12:00:00.000000Z");
    assert!(challenge["latency_us"].as_f64().unwrap() > 0.0);
    assert_eq!(challenge["request"]["action"], "account.password.change");
    // Masking: the IP is a keyed hash, the email is gone, the rest stays.
    let ip = challenge["request"]["network"]["ip"].as_str().unwrap();
    assert!(ip.starts_with("hash:") && !ip.contains("203.0.113"), "{ip}");
    assert_eq!(
        lines[0]["request"]["network"]["ip"],
        challenge["request"]["network"]["ip"]
    );
    assert_ne!(
        lines[3]["request"]["network"]["ip"],
        challenge["request"]["network"]["ip"]
    );
    assert!(
        challenge["request"]["subject"]["attributes"]
            .get("email")
            .is_none()
    );
    assert_eq!(
        challenge["request"]["subject"]["attributes"]["usual_countries"][0],
        "DE"
    );
    assert_eq!(lines[1]["cache_hit"], true);
}
