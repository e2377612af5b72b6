//! Writes the seed corpora of `fuzz/seeds/<target>/` from the examples:
//! the policy files, the test suites, the suites' requests (encoded as
//! `DecideRequest`s, as decision-log lines and as Envoy `CheckRequest`s for
//! the example routes). Run from anywhere after `cargo fuzz build`:
//!
//!     fuzz/target/x86_64-unknown-linux-gnu/release/seeds
//!
//! The output is deterministic; the seeds are committed.

#[path = "fuzz_targets/common.rs"]
mod common;

use std::path::Path;

use envoy_types::pb::envoy::config::core::v3::{Address, Metadata, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use envoy_types::pb::google::protobuf as epb;
use prost::Message;
use stepup::Report;
use stepup::internal::{SourceFile, SuiteNames, read_suite_file, response};
use stepup::proto::v1::DecideRequest;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = common::repo().join("fuzz/seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// The example files: (file name, text), policies and suites.
fn example_files() -> Vec<(String, String)> {
    let dir = common::repo().join("policies");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, text)
        })
        .collect();
    files.sort();
    files
}

/// Every request of the example suites, with its clock.
fn suite_requests(
    files: &[(String, String)],
) -> Vec<(String, DecideRequest, chrono::DateTime<chrono::Utc>)> {
    let set = common::policies();
    let names = SuiteNames::of(set);
    let mut out = Vec::new();
    for (name, text) in files.iter().filter(|(n, _)| n.ends_with("_test.yaml")) {
        let file = SourceFile {
            path: Path::new(name).to_path_buf(),
            text: text.clone(),
        };
        let mut report = Report::default();
        for suite in read_suite_file(&file, &names, &mut report) {
            for (i, case) in suite.cases.iter().enumerate() {
                out.push((
                    format!("{}-{i:02}", suite.name),
                    case.request.clone(),
                    case.now,
                ));
            }
        }
        assert!(!report.has_errors(), "{report}");
    }
    out
}

fn json(v: serde_json::Value) -> epb::Value {
    use epb::value::Kind as K;
    let kind = match v {
        serde_json::Value::Null => K::NullValue(0),
        serde_json::Value::Bool(b) => K::BoolValue(b),
        serde_json::Value::Number(n) => K::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => K::StringValue(s),
        serde_json::Value::Array(a) => K::ListValue(epb::ListValue {
            values: a.into_iter().map(json).collect(),
        }),
        serde_json::Value::Object(o) => K::StructValue(epb::Struct {
            fields: o.into_iter().map(|(k, v)| (k, json(v))).collect(),
        }),
    };
    epb::Value { kind: Some(kind) }
}

/// What Envoy (jwt_authn metadata) or Istio (payload header) sends for
/// `method path`.
fn check(method: &str, path: &str, istio: bool, action: Option<&str>) -> CheckRequest {
    let now = common::now().timestamp();
    let claims = serde_json::json!({
        "iss": "https://idp.example.com", "sub": "alice", "sid": "s-1", "tenant": "acme",
        "roles": ["support"], "acr": "urn:stepup:aal1", "amr": ["pwd"], "auth_time": now - 3600,
        "usual_countries": ["DE", "FR"], "zoneinfo": "Europe/Berlin",
    });
    let mut headers: Vec<(String, String)> = vec![
        ("x-device-id".into(), "d-laptop".into()),
        ("x-forwarded-for".into(), "203.0.113.7, 10.0.0.1".into()),
        ("user-agent".into(), "curl/8".into()),
        ("x-stepup-risk-score".into(), "0".into()),
    ];
    let metadata = if istio {
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        headers.push(("x-jwt-payload".into(), payload));
        None
    } else {
        Some(Metadata {
            filter_metadata: [(
                "envoy.filters.http.jwt_authn".to_owned(),
                epb::Struct {
                    fields: [("jwt_payload".to_owned(), json(claims))].into(),
                },
            )]
            .into(),
            ..Default::default()
        })
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "10.0.0.1".into(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(Request {
                time: Some(epb::Timestamp {
                    seconds: now,
                    nanos: 0,
                }),
                http: Some(HttpRequest {
                    id: "req-1".into(),
                    method: method.into(),
                    path: path.into(),
                    host: "api.example.com".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/1.1".into(),
                    headers: headers.into_iter().collect(),
                    ..Default::default()
                }),
            }),
            context_extensions: action
                .map(|a| [("stepup_action".to_owned(), a.to_owned())].into())
                .unwrap_or_default(),
            metadata_context: metadata,
            ..Default::default()
        }),
    }
}

fn main() {
    let files = example_files();
    let requests = suite_requests(&files);

    // policy_load: each policy file, and all of them as one stream.
    let mut all = String::new();
    for (name, text) in files.iter().filter(|(n, _)| !n.ends_with("_test.yaml")) {
        write("policy_load", name, text.as_bytes());
        if !all.is_empty() {
            all.push_str("\n---\n");
        }
        all.push_str(text);
    }
    write("policy_load", "all.yaml", all.as_bytes());

    // decide_wire: the suites' requests, encoded.
    for (name, req, now) in &requests {
        let mut req = req.clone();
        req.time = Some(prost_types_timestamp(*now));
        write("decide_wire", &format!("{name}.pb"), &req.encode_to_vec());
    }

    // suite_replay_inputs: the suites, and decision-log lines of their
    // requests (full responses and the short form), and bare requests.
    for (name, text) in files.iter().filter(|(n, _)| n.ends_with("_test.yaml")) {
        write("suite_replay_inputs", name, text.as_bytes());
    }
    let set = common::policies();
    let mut log = String::new();
    let mut short = String::new();
    let mut bare = String::new();
    for (_, req, now) in &requests {
        let d = stepup::internal::decide_with(std::sync::Arc::clone(set), None, req, *now, false);
        let line = serde_json::json!({
            "time": now.to_rfc3339(),
            "source": "decide",
            "request": req,
            "decision": response(&d),
        });
        log.push_str(&line.to_string());
        log.push('\n');
        let reasons: Vec<&str> = d.reasons().map(|(rule, _, _)| &**rule).collect();
        let outcome = format!("{:?}", d.outcome).to_lowercase();
        let line = serde_json::json!({
            "time": now.to_rfc3339(),
            "request": req,
            "decision": { "outcome": outcome, "reasons": reasons },
        });
        short.push_str(&line.to_string());
        short.push('\n');
        bare.push_str(&serde_json::to_string(req).unwrap_or_default());
        bare.push('\n');
    }
    write("suite_replay_inputs", "decision_log.jsonl", log.as_bytes());
    write("suite_replay_inputs", "short.jsonl", short.as_bytes());
    write("suite_replay_inputs", "bare.jsonl", bare.as_bytes());
    // Single lines too, small inputs mutate faster.
    for (i, line) in log.lines().take(8).enumerate() {
        write(
            "suite_replay_inputs",
            &format!("line-{i}.jsonl"),
            line.as_bytes(),
        );
    }

    // ext_authz_map: the example routes, through Envoy and Istio, and a
    // route named by the context extension.
    let routes = [
        ("POST", "/v1/payments/p-1/refunds?amount=2500&currency=EUR"),
        ("POST", "/v1/payments/p-1/refunds?amount=12"),
        ("POST", "/v1/transfers?amount=20000"),
        ("PUT", "/v1/account/password"),
        ("PUT", "/v1/account/email"),
        ("POST", "/v1/api-keys"),
        ("DELETE", "/v1/environments/prod"),
        ("GET", "/v1/orders?page=2#top"),
    ];
    for (i, (method, path)) in routes.iter().enumerate() {
        write(
            "ext_authz_map",
            &format!("envoy-{i}.pb"),
            &check(method, path, false, None).encode_to_vec(),
        );
        write(
            "ext_authz_map",
            &format!("istio-{i}.pb"),
            &check(method, path, true, None).encode_to_vec(),
        );
    }
    let ext = check("GET", "/v1/orders", false, Some("orders.list"));
    write("ext_authz_map", "extension.pb", &ext.encode_to_vec());
}

fn prost_types_timestamp(t: chrono::DateTime<chrono::Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}
