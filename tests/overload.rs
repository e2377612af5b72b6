#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! Overload and hostile connections over a real socket: the in-flight limit
//! sheds at once (counted, health unaffected), a connection that never
//! opens HTTP/2 is closed, and a request's `time` is held to the server
//! clock.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{TestServer, examples};
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use envoy_types::pb::google::protobuf as epb;
use pbjson_types::Timestamp;
use stepup::history::{BackendError, BoxFuture, History, HistoryConfig};
use stepup::internal::{Backend, SubjectHistory, SubjectKey};
use stepup::proto::v1::decision_service_client::DecisionServiceClient;
use stepup::proto::v1::{DecideRequest, RecordStepUpRequest};
use stepup::{CacheConfig, PolicySet, ServeOptions, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A shared history backend whose fetches wait until the test lets them
/// go: each `Decide` that prefetches stays in flight until then.
struct Gate {
    waiting: AtomicUsize,
    open: Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            waiting: AtomicUsize::new(0),
            open: Semaphore::new(0),
        }
    }
}

impl Backend for Gate {
    fn name(&self) -> &'static str {
        "gate"
    }

    fn fetch(
        &self,
        _subject: SubjectKey,
    ) -> BoxFuture<'_, Result<Option<SubjectHistory>, BackendError>> {
        Box::pin(async move {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _ = self.open.acquire().await;
            Ok(None)
        })
    }

    fn publish(&self, _update: stepup::internal::Update) {}
}

/// The example policies served with `options`.
async fn examples_server(options: ServeOptions) -> TestServer {
    let (policy, _) = PolicySet::load(&examples()).unwrap();
    TestServer::start_with(Service::new(policy, CacheConfig::default()), options).await
}

fn decide_at(time: Option<chrono::DateTime<chrono::Utc>>) -> DecideRequest {
    DecideRequest {
        time: time.map(|t| Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        }),
        ..serde_json::from_value(serde_json::json!({
            "action": "payments.refund",
            "subject": { "id": "user-1" },
            "session": { "id": "s-1", "acr": "urn:stepup:aal1", "amr": ["pwd"] },
            "resource": { "type": "refund", "attributes": { "amount": 10 } },
        }))
        .unwrap()
    }
}

fn check_at(time: chrono::DateTime<chrono::Utc>) -> CheckRequest {
    let payload = epb::Struct {
        fields: [(
            "sub".to_owned(),
            epb::Value {
                kind: Some(epb::value::Kind::StringValue("user-1".into())),
            },
        )]
        .into(),
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time: Some(epb::Timestamp {
                    seconds: time.timestamp(),
                    nanos: 0,
                }),
                http: Some(HttpRequest {
                    method: "POST".into(),
                    path: "/refunds".into(),
                    ..Default::default()
                }),
            }),
            context_extensions: [("stepup_action".to_owned(), "payments.refund".to_owned())].into(),
            metadata_context: Some(Metadata {
                filter_metadata: [(
                    "envoy.filters.http.jwt_authn".to_owned(),
                    epb::Struct {
                        fields: [(
                            "jwt_payload".to_owned(),
                            epb::Value {
                                kind: Some(epb::value::Kind::StructValue(payload)),
                            },
                        )]
                        .into(),
                    },
                )]
                .into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

async fn health(channel: &Channel) -> ServingStatus {
    HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

#[tokio::test]
async fn past_the_in_flight_limit_calls_are_shed_at_once_and_counted() {
    let gate = Arc::new(Gate::default());
    let history = History::new(HistoryConfig {
        fetch_timeout: Duration::from_secs(30),
        ..Default::default()
    })
    .with_backend(Arc::clone(&gate) as Arc<dyn Backend>);
    let (policy, _) = PolicySet::load(&examples()).unwrap();
    let engine = Service::new(policy, CacheConfig::default()).with_history(history);
    let options = ServeOptions {
        max_in_flight: 2,
        ..ServeOptions::default()
    };
    let server = TestServer::start_with(engine, options).await;
    let channel = server.channel().await;

    // Two calls in flight, held at the history fetch.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut client = DecisionServiceClient::new(channel.clone());
            tokio::spawn(async move { client.decide(decide_at(None)).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while gate.waiting.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "the calls never reached the gate"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The third is answered at once, whichever method.
    let mut client = DecisionServiceClient::new(channel.clone());
    let started = Instant::now();
    let status = client.decide(decide_at(None)).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "overloaded: 2 calls in flight, the most this server takes at once; retry later"
    );
    // Shed, said in the details: "not run, retry later", not a failure.
    common::error_info(&status, "OVERLOADED");
    let status = client
        .record_step_up(RecordStepUpRequest {
            subject_id: "user-1".into(),
            success: Some(true),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    common::error_info(&status, "OVERLOADED");
    let status = AuthorizationClient::new(channel.clone())
        .check(check_at(chrono::Utc::now()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    common::error_info(&status, "OVERLOADED");
    // Health is never shed.
    assert_eq!(health(&channel).await, ServingStatus::Serving);
    for method in ["Decide", "RecordStepUp", "Check"] {
        assert_eq!(
            server.grpc_count(method, "RESOURCE_EXHAUSTED"),
            1,
            "{method}"
        );
    }

    // Once the held calls are answered, calls are admitted again.
    gate.open.add_permits(100);
    for call in held {
        call.await.unwrap().unwrap();
    }
    client.decide(decide_at(None)).await.unwrap();
    assert_eq!(server.grpc_count("Decide", "OK"), 3);
    server.stop().await;
}

/// Reads from `stream` until the server closes it; how long that took.
async fn closed_after(stream: &mut tokio::net::TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0; 256];
    let deadline = Duration::from_secs(5);
    loop {
        match tokio::time::timeout(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            // The server's own SETTINGS frame.
            Ok(Ok(_)) => {}
            Err(_) => panic!("the connection is still open after {deadline:?}"),
        }
    }
}

#[tokio::test]
async fn a_connection_that_never_opens_http2_is_closed() {
    let options = ServeOptions {
        handshake_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    };
    let server = examples_server(options).await;

    // Silent.
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let waited = closed_after(&mut idle).await;
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    // Half a preface, then silent.
    let mut partial = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    closed_after(&mut partial).await;

    // A client that speaks HTTP/2 is served, and its connection stays open
    // past the handshake timeout.
    let channel = server.channel().await;
    let mut client = DecisionServiceClient::new(channel.clone());
    client.decide(decide_at(None)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    client.decide(decide_at(None)).await.unwrap();
    assert_eq!(health(&channel).await, ServingStatus::Serving);
    server.stop().await;
}

/// `INVALID_ARGUMENT` starting with one of `prefixes` (the field and the
/// skew), `direction` the server clock, and the bound.
fn assert_skew(status: &tonic::Status, prefixes: &[&str], direction: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let message = status.message();
    assert!(prefixes.iter().any(|p| message.starts_with(p)), "{message}");
    let tail = format!(" {direction} the server clock; at most 5m allowed (`max_time_skew`)");
    assert!(message.ends_with(&tail), "{message}");
}

#[tokio::test]
async fn a_request_time_far_from_the_clock_is_invalid() {
    let server = examples_server(ServeOptions::default()).await;
    let channel = server.channel().await;
    let mut client = DecisionServiceClient::new(channel.clone());
    let now = chrono::Utc::now();

    let status = client
        .decide(decide_at(Some(now - chrono::Duration::hours(2))))
        .await
        .unwrap_err();
    // The skew is in whole seconds and grows while the call travels.
    assert_skew(&status, &["`time`: 2h"], "behind");
    let status = client
        .decide(decide_at(Some(now + chrono::Duration::days(2))))
        .await
        .unwrap_err();
    assert_skew(&status, &["`time`: 2d ", "`time`: 1d23h59m"], "ahead of");
    // Within the bound, either way, and no time at all.
    for t in [
        now - chrono::Duration::minutes(4),
        now + chrono::Duration::minutes(4),
    ] {
        client.decide(decide_at(Some(t))).await.unwrap();
    }
    client.decide(decide_at(None)).await.unwrap();

    let status = client
        .record_step_up(RecordStepUpRequest {
            subject_id: "user-1".into(),
            success: Some(true),
            time: Some(Timestamp {
                seconds: (now - chrono::Duration::hours(2)).timestamp(),
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_skew(&status, &["`time`: 2h"], "behind");

    let mut envoy = AuthorizationClient::new(channel.clone());
    let status = envoy
        .check(check_at(now - chrono::Duration::hours(2)))
        .await
        .unwrap_err();
    assert_skew(&status, &["`attributes.request.time`: 2h"], "behind");
    envoy.check(check_at(now)).await.unwrap();
    assert_eq!(server.grpc_count("Decide", "INVALID_ARGUMENT"), 2);
    server.stop().await;

    // `off`: any time, as a replayed timeline needs.
    let options = ServeOptions {
        max_time_skew: None,
        ..ServeOptions::default()
    };
    let server = examples_server(options).await;
    let mut client = DecisionServiceClient::new(server.channel().await);
    for t in [
        now - chrono::Duration::hours(2),
        now + chrono::Duration::days(2),
    ] {
        client.decide(decide_at(Some(t))).await.unwrap();
    }
    server.stop().await;
}

#[test]
fn the_limits_come_from_flag_env_or_file() {
    use std::process::{Command, Stdio};

    // A bad value is named, whichever source it comes from.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stepup.toml");
    std::fs::write(&config, "[limits]\nmax_time_skew = \"soon\"\n").unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_stepup"))
            .args(["serve", "--policies"])
            .arg(examples())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("max_time_skew `soon`: expected a number at `soon`"),
        "{stderr}"
    );
    // The environment overrides the file; the flag overrides both.
    let (code, stderr) = run(
        &["--config", config.to_str().unwrap()],
        &[
            ("STEPUP_MAX_TIME_SKEW", "later"),
            ("STEPUP_MAX_IN_FLIGHT", "0"),
        ],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("max_time_skew `later`"), "{stderr}");
    assert!(
        stderr.contains("max_in_flight must be at least 1"),
        "{stderr}"
    );
    let (code, stderr) = run(
        &[
            "--config",
            config.to_str().unwrap(),
            "--max-time-skew",
            "never",
            "--max-in-flight",
            "0",
        ],
        &[("STEPUP_MAX_TIME_SKEW", "later")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("max_time_skew `never`"), "{stderr}");
    assert!(!stderr.contains("`later`"), "{stderr}");
}
