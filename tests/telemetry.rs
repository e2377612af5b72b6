#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! Operations end to end: `stepup serve` as a process with the admin
//! listener and a file decision log; known traffic; then the scraped
//! counters, the probes, `/policy`, and the log lines (masking applied).

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
