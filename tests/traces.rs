#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! OTLP: `stepup serve` configured by the standard `OTEL_*` variables
//! exports a server span per gRPC call (a child of the caller's
//! `traceparent`, named and attributed by OpenTelemetry's RPC conventions),
//! its metrics (histograms with explicit buckets and units), and the
//! decision log as log records, to an OTLP collector (a gRPC server in this
//! test).

mod common;
use common::otlp::Collector;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{HistogramDataPoint, Metric};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use stepup::proto::v1::{DecideRequest, RecordStepUpRequest, Subject};

#[test]
fn otlp_traces_metrics_and_decision_log() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let collector = Collector::default();
    let otlp = collector.start(&rt);

    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args([
            "serve",
            "--admin",
            "off",
            "--decision-log",
            "otlp",
            "--listen",
            &addr,
            "--policies",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "100")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .env("OTEL_SERVICE_NAME", "stepup-test")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let (record_code, check_code) = rt.block_on(async {
        let mut client = common::connect_when_up(&mut child, &addr).await;
        let mut req = tonic::Request::new(DecideRequest {
            action: "account.password.change".into(),
            subject: Some(Subject {
                id: "u".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        req.metadata_mut().insert(
            "traceparent",
            format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
        );
        client.decide(req).await.unwrap();
        let invalid = client.decide(DecideRequest::default()).await.unwrap_err();
        assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
        let record = client
            .record_step_up(RecordStepUpRequest {
                subject_id: "u".into(),
                success: Some(true),
                ..Default::default()
            })
            .await
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let check = AuthorizationClient::new(channel)
            .check(CheckRequest::default())
            .await
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        (record, check)
    });

    check_spans(&collector, trace_id, parent_id, record_code, check_code);
    check_metrics(&collector);
    check_logs(&collector);

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// The decision log as OTLP log records: an `Info` event
/// `stepup.decision` per decision, whose body is the JSON line the file and
/// stdout sinks write.
fn check_logs(collector: &Collector) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let found = collector.logs.lock().unwrap().iter().find_map(|r| {
            let Some(Value::StringValue(body)) = r.body.clone().and_then(|b| b.value) else {
                return None;
            };
            let line: serde_json::Value = serde_json::from_str(&body).ok()?;
            (line["request"]["action"] == "account.password.change").then(|| (r.clone(), line))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no decision log record for the Decide: {:#?}",
            collector.logs.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (record, line) = line;
    assert_eq!(record.event_name, "stepup.decision");
    assert_eq!(record.severity_number, 9, "INFO");
    assert!(record.time_unix_nano > 0);
    assert_eq!(line["decision"]["outcome"], "OUTCOME_CHALLENGE", "{line}");
    assert_eq!(line["source"], "decide", "{line}");
    assert_eq!(
        line["decision"]["decisionId"].as_str().map(str::len),
        Some(36),
        "{line}"
    );
}

/// The server spans of the calls: `Decide` joined to the caller's trace
/// with the decision's attributes, the refused `Decide`, `RecordStepUp`
/// and `Check`, each with its status code.
fn check_spans(
    collector: &Collector,
    trace_id: &str,
    parent_id: &str,
    record_code: tonic::Code,
    check_code: tonic::Code,
) {
    let spans = wait_for(&collector.spans, 4, "spans");
    let named =
        |name: &str| -> Vec<Span> { spans.iter().filter(|s| s.name == name).cloned().collect() };
    let decides = named("stepup.v1.DecisionService/Decide");
    assert_eq!(decides.len(), 2, "{spans:#?}");
    let span = decides
        .iter()
        .find(|s| attr(&s.attributes, "rpc.status_code") == "OK")
        .unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(hex(&span.trace_id), trace_id, "joins the caller's trace");
    assert_eq!(hex(&span.parent_span_id), parent_id);
    assert_eq!(span.kind, SpanKind::Server as i32);
    let a = |k: &str| attr(&span.attributes, k);
    assert_eq!(a("rpc.system.name"), "grpc");
    assert_eq!(a("rpc.method"), "stepup.v1.DecisionService/Decide");
    assert_eq!(a("rpc.system"), "grpc");
    assert_eq!(a("rpc.service"), "stepup.v1.DecisionService");
    assert_eq!(a("rpc.grpc.status_code"), "0");
    assert_eq!(a("error.type"), "", "not an error");
    assert_eq!(a("stepup.action"), "account.password.change");
    assert_eq!(a("stepup.outcome"), "challenge");
    assert_eq!(a("stepup.decision_id").len(), 36, "{:?}", span.attributes);
    assert!(a("stepup.policy_revision").starts_with("sha256:"));
    assert_eq!(a("stepup.cache_hit"), "false");
    assert!(
        a("stepup.risk").parse::<i64>().is_ok(),
        "{:?}",
        span.attributes
    );
    // No trace context: a trace of its own. A refused request still has
    // its span, with the status and no decision.
    let invalid = decides.iter().find(|s| s != &span).unwrap();
    assert!(invalid.parent_span_id.is_empty());
    assert_ne!(invalid.trace_id, span.trace_id);
    assert_eq!(
        attr(&invalid.attributes, "rpc.status_code"),
        "INVALID_ARGUMENT"
    );
    assert_eq!(attr(&invalid.attributes, "rpc.grpc.status_code"), "3");
    assert_eq!(attr(&invalid.attributes, "stepup.outcome"), "");
    // INVALID_ARGUMENT is the caller's fault: the span status stays unset.
    assert_eq!(invalid.status.as_ref().map_or(0, |s| s.code), 0);

    let record = named("stepup.v1.DecisionService/RecordStepUp");
    assert_eq!(record.len(), 1, "{spans:#?}");
    assert_eq!(
        attr(&record[0].attributes, "rpc.status_code"),
        code_name(record_code)
    );
    let check = named("envoy.service.auth.v3.Authorization/Check");
    assert_eq!(check.len(), 1, "{spans:#?}");
    assert_eq!(
        attr(&check[0].attributes, "rpc.service"),
        "envoy.service.auth.v3.Authorization"
    );
    assert_eq!(
        attr(&check[0].attributes, "rpc.status_code"),
        code_name(check_code)
    );
    assert_eq!(check[0].kind, SpanKind::Server as i32);
}

/// Waits (up to 20 s) until `items` holds at least `n`, and copies them.
fn wait_for<T: Clone>(items: &Mutex<Vec<T>>, n: usize, what: &str) -> Vec<T> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = items.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "{} {what} exported", got.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An attribute's value as text ("" when absent).
fn attr(attributes: &[KeyValue], key: &str) -> String {
    match attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone())
        .and_then(|v| v.value)
    {
        Some(Value::StringValue(s)) => s,
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        other => panic!("unexpected status {other:?}"),
    }
}

/// The latest exported points of histogram `name`, once it has counted
/// `min` in total.
fn histogram(collector: &Collector, name: &str, min: u64) -> (Metric, Vec<HistogramDataPoint>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let latest = collector
            .metrics
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m.name == name)
            .cloned();
        if let Some(m) = latest
            && let Some(Data::Histogram(h)) = &m.data
            && h.data_points.iter().map(|p| p.count).sum::<u64>() >= min
        {
            let points = h.data_points.clone();
            return (m, points);
        }
        assert!(
            Instant::now() < deadline,
            "no histogram {name} counting {min}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the collector receives: the conventions' RPC call duration and the
/// decision duration as histograms in seconds, with their buckets, and the
/// counters with their units.
fn check_metrics(collector: &Collector) {
    let (m, points) = histogram(collector, "rpc.server.call.duration", 4);
    assert_eq!(m.unit, "s");
    let decide = points
        .iter()
        .find(|p| {
            attr(&p.attributes, "rpc.method") == "stepup.v1.DecisionService/Decide"
                && attr(&p.attributes, "rpc.status_code") == "OK"
        })
        .unwrap_or_else(|| panic!("{points:#?}"));
    assert_eq!(decide.count, 1);
    assert_eq!(attr(&decide.attributes, "rpc.system.name"), "grpc");
    assert_eq!(attr(&decide.attributes, "error.type"), "");
    assert!(decide.explicit_bounds.len() > 10, "{decide:?}");
    assert_eq!(decide.bucket_counts.len(), decide.explicit_bounds.len() + 1);
    assert_eq!(decide.bucket_counts.iter().sum::<u64>(), 1);
    assert!(
        decide.sum.is_some_and(|s| s > 0.0 && s < 10.0),
        "{decide:?}"
    );
    assert!(
        points.iter().any(|p| {
            attr(&p.attributes, "rpc.status_code") == "INVALID_ARGUMENT"
                && attr(&p.attributes, "rpc.method") == "stepup.v1.DecisionService/Decide"
        }),
        "{points:#?}"
    );

    let (m, points) = histogram(collector, "stepup.decision.duration", 1);
    assert_eq!(m.unit, "s");
    assert_eq!(points.len(), 1);
    assert!(
        points[0]
            .explicit_bounds
            .first()
            .is_some_and(|b| *b <= 0.000_01)
    );

    let metrics = collector.metrics.lock().unwrap().clone();
    let decisions = metrics
        .iter()
        .rev()
        .find(|m| m.name == "stepup.decisions")
        .unwrap();
    assert_eq!(decisions.unit, "{decision}");
    let Some(Data::Sum(sum)) = &decisions.data else {
        panic!("{decisions:?}")
    };
    assert!(sum.is_monotonic);
    assert!(
        sum.data_points
            .iter()
            .any(|p| attr(&p.attributes, "stepup.outcome") == "challenge"),
        "{sum:?}"
    );
}
