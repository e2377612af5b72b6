#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! The client and the layer against a real `stepup serve` on the example
//! policies (the binary `STEPUP_BIN` names), with the example payments app
//! on a real port in front of it.

mod common;

#[allow(dead_code, clippy::all)]
#[path = "../examples/payments.rs"]
mod payments;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Idp, Pki, Sidecar, send, serve, session_token};
use rcgen::ExtendedKeyUsagePurpose;
use stepup_client::proto::{
    DecideRequest, Network, Outcome, RecordStepUpRequest, Resource, Session, Subject,
};
use stepup_client::{
    CallError, CallEvent, CallResult, Client, DecisionSource, FailMode, Method, Observer, TlsConfig,
};

const AAL1: &str = "urn:stepup:aal1";
const AAL2: &str = "urn:stepup:aal2";

fn refund(amount: f64, session: Session, country: &str) -> DecideRequest {
    let mut resource = Resource {
        r#type: "refund".into(),
        ..Resource::default()
    };
    resource.attributes.insert(
        "amount".into(),
        stepup_client::pbjson_types::Value::from(amount),
    );
    DecideRequest {
        action: "payments.refund".into(),
        subject: Some(Subject {
            id: "alice".into(),
            ..Subject::default()
        }),
        session: Some(session),
        network: Some(Network {
            country: country.into(),
            ..Network::default()
        }),
        resource: Some(resource),
        ..DecideRequest::default()
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The example app in front of `client`: its base URL.
async fn app(client: Client) -> String {
    serve(payments::app(client, common::APP_SECRET).unwrap()).await
}

#[tokio::test]
async fn a_large_refund_from_a_password_session_is_challenged_until_the_step_up_is_reported() {
    let idp = Idp::new();
    let config = idp.config.to_str().unwrap().to_owned();
    let sidecar = Sidecar::tcp(&["--config", &config]);
    let client = Client::builder(&sidecar.target).build().unwrap();
    let url = app(client.clone()).await;
    let auth_time = common::now() - 600;
    let token = session_token("alice", "s-1", AAL1, &["pwd"], auth_time);

    let reply = send(
        "POST",
        &format!("{url}/refunds?amount=2500"),
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.json);
    // The header is the sidecar's own value, byte for byte.
    let session = Session {
        id: "s-1".into(),
        acr: AAL1.into(),
        amr: vec!["pwd".into()],
        auth_time: Some(stepup_client::pbjson_types::Timestamp {
            seconds: auth_time,
            nanos: 0,
        }),
    };
    let direct = client.decide(refund(2500.0, session, "")).await.unwrap();
    assert_eq!(direct.outcome(), Outcome::Challenge);
    assert!(
        direct
            .www_authenticate
            .starts_with("Bearer error=\"insufficient_user_authentication\"")
    );
    assert_eq!(
        reply.headers["www-authenticate"].to_str().unwrap(),
        direct.www_authenticate
    );
    assert_eq!(reply.json["error"], "insufficient_user_authentication");
    assert_eq!(reply.json["acr_values"], direct.acr_values.join(" "));
    assert!(
        reply.json["acr_values"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|v| v == AAL2)
    );
    assert_eq!(reply.json["max_age"], 300);
    assert_eq!(
        reply.json["error_description"],
        "Refunds above 1,000 need re-verification"
    );
    let decision_id = reply.json["decision_id"].as_str().unwrap();
    assert!(!decision_id.is_empty());

    // The step-up, reported with the identity provider's ID token.
    let report = client
        .record_step_up(RecordStepUpRequest {
            evidence: idp.step_up_token("alice", "s-1", AAL2, &["otp"]),
            ..RecordStepUpRequest::default()
        })
        .await
        .unwrap();
    assert!(report.elevation_expire_time.is_some());

    // The same session token now passes: the sidecar counts the step-up.
    let reply = send(
        "POST",
        &format!("{url}/refunds?amount=2500"),
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(reply.json["refunded"], true);
    assert!(!reply.json["decision_id"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn a_stronger_session_is_allowed_and_a_blocked_country_denied() {
    let sidecar = Sidecar::tcp(&[]);
    let client = Client::builder(&sidecar.target).build().unwrap();
    let url = app(client).await;
    let strong = session_token("alice", "s-2", AAL2, &["pwd", "otp"], common::now() - 30);
    let weak = session_token("alice", "s-3", AAL1, &["pwd"], common::now() - 30);

    let reply = send(
        "POST",
        &format!("{url}/refunds?amount=2500"),
        &[("authorization", &bearer(&strong))],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.json);

    // A small refund needs nothing more.
    let reply = send(
        "POST",
        &format!("{url}/refunds?amount=40"),
        &[("authorization", &bearer(&weak))],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.json);

    // A refund without an amount fails closed in the policy: challenged.
    let reply = send(
        "POST",
        &format!("{url}/refunds"),
        &[("authorization", &bearer(&weak))],
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.json);

    // No step-up lifts a sanctioned country.
    let reply = send(
        "POST",
        &format!("{url}/refunds?amount=40"),
        &[("authorization", &bearer(&strong)), ("x-country", "KP")],
    )
    .await;
    assert_eq!(reply.status, 403, "{}", reply.json);
    assert_eq!(reply.json["error"], "access_denied");
    assert_eq!(
        reply.json["error_description"],
        "This service is not available in your region"
    );
    assert!(reply.headers.get("www-authenticate").is_none());

    // Routes the mapping skips get no decision.
    let reply = send(
        "GET",
        &format!("{url}/health"),
        &[("authorization", &bearer(&weak))],
    )
    .await;
    assert_eq!(reply.status, 200);
}

/// Counts what the client reports.
#[derive(Clone, Default)]
struct Counter(Arc<Mutex<Vec<String>>>);

impl Observer for Counter {
    fn on_call(&self, event: &CallEvent<'_>) {
        let result = match &event.result {
            CallResult::Decided(outcome) => format!("{outcome:?}"),
            CallResult::Ok => "ok".into(),
            CallResult::Failed(err) => format!("failed:{:?}", err.code()),
        };
        self.0.lock().unwrap().push(format!(
            "{}:{result}:{}",
            event.method.as_str(),
            event.attempts
        ));
    }

    fn on_fail_mode(&self, _error: &CallError, outcome: Outcome) {
        self.0
            .lock()
            .unwrap()
            .push(format!("fail_mode:{outcome:?}"));
    }
}

#[tokio::test]
async fn a_stopped_sidecar_fails_closed_or_gets_the_configured_answer() {
    let mut sidecar = Sidecar::tcp(&[]);
    let events = Counter::default();
    let closed = Client::builder(&sidecar.target)
        .observer(events.clone())
        .build()
        .unwrap();
    let fallback = Client::builder(&sidecar.target)
        .fail_mode(FailMode::challenge(
            "Bearer error=\"insufficient_user_authentication\", acr_values=\"urn:stepup:aal2\"",
            vec![AAL2.into()],
        ))
        .observer(events.clone())
        .build()
        .unwrap();
    let closed_url = app(closed.clone()).await;
    let fallback_url = app(fallback.clone()).await;
    let token = session_token("alice", "s-4", AAL1, &["pwd"], common::now() - 30);
    let auth = [("authorization", bearer(&token))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let reply = send("POST", &format!("{closed_url}/refunds?amount=40"), &auth).await;
    assert_eq!(reply.status, 200, "{}", reply.json);
    sidecar.stop();

    let started = Instant::now();
    let reply = send("POST", &format!("{closed_url}/refunds?amount=40"), &auth).await;
    assert_eq!(reply.status, 503, "{}", reply.json);
    assert_eq!(reply.json["error"], "temporarily_unavailable");
    assert!(started.elapsed() < Duration::from_secs(2));
    let err = closed
        .decide(refund(40.0, Session::default(), ""))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Unreachable { .. }), "{err:?}");
    assert!(err.is_unavailable());

    let reply = send("POST", &format!("{fallback_url}/refunds?amount=40"), &auth).await;
    assert_eq!(reply.status, 401, "{}", reply.json);
    assert_eq!(
        reply.headers["www-authenticate"],
        "Bearer error=\"insufficient_user_authentication\", acr_values=\"urn:stepup:aal2\""
    );
    let decision = fallback
        .decide_with_fail_mode(refund(40.0, Session::default(), ""))
        .await
        .unwrap();
    assert_eq!(decision.source, DecisionSource::FailMode);

    let events = events.0.lock().unwrap().clone();
    assert_eq!(
        events.first().map(String::as_str),
        Some("Decide:Allow:1"),
        "{events:?}"
    );
    // A refused connection is retried (the request was never sent): 1 + 2.
    assert!(
        events.contains(&"Decide:failed:Unavailable:3".to_owned()),
        "{events:?}"
    );
    assert!(
        events.contains(&"fail_mode:Challenge".to_owned()),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_sidecar_that_does_not_answer_times_out_at_the_deadline() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let client = Client::builder(format!("http://{addr}"))
        .deadline(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client
        .decide(refund(40.0, Session::default(), ""))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, CallError::Timeout { .. }), "{err:?}");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(err.is_unavailable());
}

#[tokio::test]
async fn errors_carry_the_error_info_reason() {
    let sidecar = Sidecar::tcp(&[]);
    let client = Client::builder(&sidecar.target).build().unwrap();
    let err = client
        .decide(DecideRequest {
            action: "payments.refund".into(),
            ..DecideRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert_eq!(err.reason(), Some("INVALID_FIELD"));
    let CallError::Status { metadata, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        metadata.get("field").map(String::as_str),
        Some("subject.id")
    );
    assert!(!err.is_unavailable());

    // Reports are off without `[trust]`; never retried.
    let err = client
        .record_step_up(RecordStepUpRequest {
            subject_id: "alice".into(),
            success: Some(true),
            level: "aal2".into(),
            ..RecordStepUpRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert_eq!(err.reason(), Some("STEP_UP_REPORTS_DISABLED"));
}

#[tokio::test]
async fn the_handler_decides_when_the_layer_passes_decisions_through() {
    use axum::extract::Extension;
    use stepup_client::{Decision, StepUpLayer};

    let sidecar = Sidecar::tcp(&[]);
    let client = Client::builder(&sidecar.target).build().unwrap();
    let layer = StepUpLayer::new(client, |req: &axum::extract::Request| {
        let country = req.headers().get("x-country")?.to_str().ok()?.to_owned();
        Some(refund(40.0, Session::default(), &country))
    })
    .pass_through(true);
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|Extension(decision): Extension<Decision>| async move {
                format!("{:?} {:?}", decision.outcome(), decision.source)
            }),
        )
        .layer(layer);
    let url = serve(app).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    for (country, expected) in [("KP", "Deny Sidecar"), ("DE", "Allow Sidecar")] {
        let request = http::Request::get(format!("{url}/"))
            .header("x-country", country)
            .body(Default::default())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, expected);
    }
}

#[tokio::test]
async fn tls_with_a_client_certificate() {
    let pki = Pki::new();
    let (server_cert, server_key) = pki.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = pki.leaf(
        "spiffe://stepup.test/app",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let port = common::free_port();
    let ca = pki.ca_file();
    let sidecar = Sidecar::start(
        format!("127.0.0.1:{port}"),
        format!("https://localhost:{port}"),
        &[
            "--tls-cert",
            server_cert.to_str().unwrap(),
            "--tls-key",
            server_key.to_str().unwrap(),
            "--tls-client-ca",
            ca.to_str().unwrap(),
        ],
    );
    let client = Client::builder(&sidecar.target)
        .tls(TlsConfig::new(&ca).client_identity(&client_cert, &client_key))
        .build()
        .unwrap();
    let answer = client
        .decide(refund(40.0, Session::default(), ""))
        .await
        .unwrap();
    assert_eq!(answer.outcome(), Outcome::Allow);

    // A CA that did not sign the sidecar's certificate: no connection, so
    // the request was never sent.
    let other = Pki::new();
    let untrusting = Client::builder(&sidecar.target)
        .tls(TlsConfig::new(other.ca_file()).client_identity(&client_cert, &client_key))
        .build()
        .unwrap();
    let err = untrusting
        .decide(refund(40.0, Session::default(), ""))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Unreachable { .. }), "{err:?}");

    // `https://` without TLS settings, and TLS settings for `http://`.
    assert!(Client::builder(&sidecar.target).build().is_err());
    assert!(
        Client::builder(format!("http://127.0.0.1:{port}"))
            .tls(TlsConfig::new(&ca))
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("stepup.sock");
    let target = format!("unix:{}", socket.display());
    let sidecar = Sidecar::start(target.clone(), target, &[]);
    let events = Counter::default();
    let client = Client::builder(&sidecar.target)
        .observer(events.clone())
        .build()
        .unwrap();
    let session = Session {
        acr: AAL1.into(),
        amr: vec!["pwd".into()],
        ..Session::default()
    };
    let answer = client.decide(refund(2500.0, session, "")).await.unwrap();
    assert_eq!(answer.outcome(), Outcome::Challenge);
    assert!(!answer.www_authenticate.is_empty());
    assert_eq!(*events.0.lock().unwrap(), ["Decide:Challenge:1"]);
    let _ = Method::Decide;
}

#[tokio::test]
async fn a_tonic_server_behind_the_layer_answers_with_grpc_statuses() {
    use stepup_client::StepUpLayer;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let sidecar = Sidecar::tcp(&[]);
    let client = Client::builder(&sidecar.target).build().unwrap();
    // The session's strength comes from metadata here; a real service reads
    // its verified token's claims.
    let layer = StepUpLayer::new(client, |req: &http::Request<tonic::body::Body>| {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let session = Session {
            acr: header("x-acr"),
            ..Session::default()
        };
        let amount = header("x-amount").parse().unwrap_or(2500.0);
        Some(refund(amount, session, &header("x-country")))
    });
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let call = |acr: &'static str, country: &'static str, amount: &'static str| {
        let mut health = HealthClient::new(channel.clone());
        async move {
            let mut request = tonic::Request::new(HealthCheckRequest::default());
            request.metadata_mut().insert("x-acr", acr.parse().unwrap());
            request
                .metadata_mut()
                .insert("x-country", country.parse().unwrap());
            request
                .metadata_mut()
                .insert("x-amount", amount.parse().unwrap());
            health.check(request).await
        }
    };

    let status = call(AAL1, "DE", "2500").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "Refunds above 1,000 need re-verification");
    let challenge = status
        .metadata()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_user_authentication\""),
        "{challenge}"
    );

    let status = call(AAL1, "KP", "40").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // ALLOW reaches the service, which answers.
    let answer = call(AAL1, "DE", "40").await.unwrap().into_inner();
    assert_eq!(answer.status, 1, "{answer:?}"); // SERVING
}
