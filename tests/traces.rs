#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! OTLP: `stepup serve` configured by the standard `OTEL_*` variables
//! exports a span per decision (a child of the caller's `traceparent`), its
//! metrics, and the decision log as log records, to an OTLP collector (a
//! gRPC server in this test).

mod common;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;

use stepup::proto::v1::{DecideRequest, Subject};

#[derive(Clone, Default)]
struct Collector(
    Arc<Mutex<Vec<Span>>>,
    Arc<Mutex<Vec<Metric>>>,
    Arc<Mutex<Vec<LogRecord>>>,
);

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut metrics = self.1.lock().unwrap();
        for rm in request.into_inner().resource_metrics {
            for sm in rm.scope_metrics {
                metrics.extend(sm.metrics);
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut logs = self.2.lock().unwrap();
        for rl in request.into_inner().resource_logs {
            for sl in rl.scope_logs {
                logs.extend(sl.log_records);
            }
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[test]
fn otlp_traces_metrics_and_decision_log() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let collector = Collector::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let otlp = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(collector.clone());
    let metrics_service = MetricsServiceServer::new(collector.clone());
    let logs_service = LogsServiceServer::new(collector.clone());
    rt.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .add_service(metrics_service)
            .add_service(logs_service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });

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
    rt.block_on(async {
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
    });

    let deadline = Instant::now() + Duration::from_secs(20);
    let span = loop {
        if let Some(s) = collector
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == "decide")
            .cloned()
        {
            break s;
        }
        assert!(Instant::now() < deadline, "no span exported");
        std::thread::sleep(Duration::from_millis(50));
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(hex(&span.trace_id), trace_id, "joins the caller's trace");
    assert_eq!(hex(&span.parent_span_id), parent_id);
    let attr = |k: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
            .map(|v| format!("{v:?}"))
            .unwrap_or_default()
    };
    assert!(
        attr("action").contains("account.password.change"),
        "{:?}",
        span.attributes
    );
    assert!(
        attr("outcome").contains("Challenge"),
        "{:?}",
        span.attributes
    );
    assert!(attr("decision_id").len() > 36);

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
