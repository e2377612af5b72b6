#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! End to end over a real socket: the server on `127.0.0.1:0`, a real tonic
//! client, the example policies.

mod common;
use common::frame;

use common::{TestServer, examples};
use pbjson_types::Timestamp;
use stepup::CacheConfig;
use stepup::proto::v1::{self as pb, DecideRequest, Outcome};
use tonic::Code;

const NOW: i64 = 1_795_780_800; // 2026-11-27T12:00:00Z: daytime, so `odd-hours` stays quiet

fn at(secs_before_now: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: NOW - secs_before_now,
        nanos: 0,
    })
}

fn refund(amount: f64) -> DecideRequest {
    serde_json::from_value(serde_json::json!({
        "action": "payments.refund",
        "subject": { "id": "user-1", "attributes": { "usual_countries": ["DE"] } },
        "session": { "acr": "urn:stepup:aal1", "amr": ["pwd"] },
        "device": { "id": "d1", "trusted": true },
        "network": { "ip": "198.51.100.4", "country": "DE" },
        "resource": { "type": "refund", "attributes": { "amount": amount } },
    }))
    .map(|mut r: DecideRequest| {
        r.time = at(0);
        r
    })
    .unwrap()
}

#[tokio::test]
async fn allow_challenge_deny_and_satisfied_challenge() {
    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    let mut client = server.client().await;

    // ALLOW: a small refund from a trusted device.
    let r = client.decide(refund(50.0)).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::Allow);
    assert!(r.reasons.is_empty());
    assert!(r.www_authenticate.is_empty());
    assert_eq!(r.risk.as_ref().unwrap().score, 0);
    assert_eq!(
        r.policy_revision,
        server.engine.policy().revision.to_string()
    );
    let id = uuid::Uuid::parse_str(&r.decision_id).unwrap();
    assert_eq!(id.get_version_num(), 7);

    // CHALLENGE: a large refund from an aal1 session.
    let r = client.decide(refund(2500.0)).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::Challenge);
    assert_eq!(r.requirements.len(), 1);
    let req = &r.requirements[0];
    assert_eq!(req.rule_id, "refund-large");
    assert_eq!(req.level, "aal2");
    assert_eq!(req.methods, ["hwk", "otp"]);
    assert_eq!(req.max_age.unwrap().seconds, 300);
    assert_eq!(r.acr_values[0], "urn:stepup:aal2");
    assert_eq!(r.max_age.unwrap().seconds, 300);
    assert!(
        r.www_authenticate.starts_with(
            "Bearer error=\"insufficient_user_authentication\", error_description=\"Refunds above 1,000 need re-verification\", acr_values=\"urn:stepup:aal2 "
        ),
        "{}",
        r.www_authenticate
    );
    assert!(r.www_authenticate.ends_with(", max_age=\"300\""));
    assert_eq!(r.reasons[0].rule_id, "refund-large");
    assert_eq!(r.reasons[0].effect(), pb::Effect::Challenge);

    // The same refund after stepping up with an OTP a minute ago: ALLOW, and
    // the reason still says which rule was satisfied.
    let mut stepped_up = refund(2500.0);
    stepped_up.session = Some(pb::Session {
        id: "s1".into(),
        acr: "urn:stepup:aal2".into(),
        amr: vec!["pwd".into(), "otp".into()],
        auth_time: at(60),
    });
    let r = client
        .decide(stepped_up.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.outcome(), Outcome::Allow);
    assert!(r.requirements.is_empty());
    assert_eq!(r.reasons[0].rule_id, "refund-large");

    // ...but not ten minutes later: max_age is 5m.
    stepped_up.session.as_mut().unwrap().auth_time = at(600);
    let r = client.decide(stepped_up).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::Challenge);

    // DENY: a blocked country, whatever the session.
    let mut blocked = refund(10.0);
    blocked.network.as_mut().unwrap().country = "KP".into();
    let r = client.decide(blocked).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::Deny);
    assert_eq!(r.reasons[0].rule_id, "blocked-country");
    assert!(r.www_authenticate.is_empty());

    server.stop().await;
}

#[tokio::test]
async fn risk_signals_raise_a_challenge() {
    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    let mut client = server.client().await;
    let mut r = refund(10.0);
    r.action = "payments.transfer".into();
    r.device.as_mut().unwrap().trusted = false;
    r.network.as_mut().unwrap().country = "BR".into();
    let resp = client.decide(r).await.unwrap().into_inner();
    let risk = resp.risk.clone().unwrap();
    assert_eq!(risk.score, 55);
    assert_eq!(risk.signals, ["untrusted-device", "unusual-country"]);
    assert_eq!(resp.outcome(), Outcome::Challenge);
    assert_eq!(resp.requirements[0].rule_id, "payments-risky");
    server.stop().await;
}

#[tokio::test]
async fn rule_errors_fail_closed_and_are_reported() {
    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    let mut client = server.client().await;
    let mut r = refund(10.0);
    r.resource = None; // no amount: the refund rule cannot be evaluated
    let resp = client.decide(r).await.unwrap().into_inner();
    assert_eq!(resp.outcome(), Outcome::Challenge);
    assert_eq!(resp.errors.len(), 1);
    assert_eq!(resp.errors[0].rule_id, "refund-large");
    assert_eq!(resp.errors[0].message, "no such key: `amount`");
    server.stop().await;
}

#[tokio::test]
async fn invalid_requests_name_the_field() {
    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    let mut client = server.client().await;

    let mut r = refund(10.0);
    r.action.clear();
    let status = client.decide(r).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "`action`: required");

    let mut r = refund(10.0);
    r.subject = None;
    let status = client.decide(r).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "`subject.id`: required");

    let mut r = refund(10.0);
    r.time = Some(Timestamp {
        seconds: i64::MAX,
        nanos: 0,
    });
    let status = client.decide(r).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "`time`: seconds out of range (0001-01-01 to 9999-12-31)"
    );

    let mut r = refund(10.0);
    r.subject.as_mut().unwrap().id = "x".repeat(5000);
    let status = client.decide(r).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "`subject.id`: longer than 1024 bytes");

    // Over 1 MiB the transport refuses the message before Decide sees it.
    let mut r = refund(10.0);
    r.subject.as_mut().unwrap().id = "x".repeat(stepup::MAX_MESSAGE_BYTES + 1);
    let status = client.decide(r).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    server.stop().await;
}

#[tokio::test]
async fn explain_returns_a_trace() {
    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    let mut client = server.client().await;
    let mut r = refund(2500.0);
    r.explain = true;
    let resp = client.decide(r).await.unwrap().into_inner();
    let refund = resp.trace.iter().find(|t| t.id == "refund-large").unwrap();
    assert_eq!(refund.kind(), stepup::proto::v1::trace_entry::Kind::Rule);
    assert!(refund.fired);
    assert_eq!(
        refund.detail,
        "`resource.attributes.amount > 1000.0` is true"
    );
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    let channel = server.channel().await;
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "stepup.v1.DecisionService"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "service `{service}`");
    }

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["stepup.v1.DecisionService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }

    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    let mut alpha = AlphaClient::new(channel);
    let req = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol(
            "stepup.v1.DecisionService".into(),
        )),
    };
    let mut stream = alpha
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    assert!(
        matches!(
            msg.message_response,
            Some(tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ),
        "v1alpha serves the descriptor of DecisionService"
    );
    server.stop().await;
}

#[tokio::test]
async fn cache_off_and_on_agree_over_the_wire() {
    let on = TestServer::start(&examples(), CacheConfig::default()).await;
    let off = TestServer::start(
        &examples(),
        CacheConfig {
            capacity: 0,
            ..CacheConfig::default()
        },
    )
    .await;
    let (mut a, mut b) = (on.client().await, off.client().await);
    for amount in [10.0, 2500.0, 10.0, 2500.0] {
        let x = a.decide(refund(amount)).await.unwrap().into_inner();
        let y = b.decide(refund(amount)).await.unwrap().into_inner();
        assert_eq!(x.outcome, y.outcome);
        assert_eq!(x.requirements, y.requirements);
        assert_eq!(x.reasons, y.reasons);
        assert_eq!(x.risk, y.risk);
        assert_eq!(x.www_authenticate, y.www_authenticate);
    }
    assert!(on.engine.cache().is_some());
    assert!(off.engine.cache().is_none());
    on.stop().await;
    off.stop().await;
}

#[tokio::test]
async fn shadow_rules_come_back_in_the_response() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        examples().join("levels.yaml"),
        dir.path().join("levels.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("new.yaml"),
        "apiVersion: stepup/v1\nkind: Policy\nname: rollout\nmode: shadow\nrules:\n  - id: refunds-need-aal3\n    actions: [payments.refund]\n    effect: challenge\n    require: { level: aal3 }\n    message: Refunds will need a security key\n",
    )
    .unwrap();
    let server = TestServer::start(dir.path(), CacheConfig::default()).await;
    let mut client = server.client().await;
    let r = client.decide(refund(10.0)).await.unwrap().into_inner();
    assert_eq!(r.outcome(), Outcome::Allow);
    assert!(r.reasons.is_empty());
    assert_eq!(
        r.shadow,
        [pb::ShadowResult {
            rule_id: "refunds-need-aal3".into(),
            effect: pb::Effect::Challenge as i32,
            message: "Refunds will need a security key".into(),
            satisfied: false,
        }]
    );
    server.stop().await;
}

#[tokio::test]
async fn every_call_is_counted_by_method_and_code() {
    use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

    // Step-up reports are believed with evidence from a trusted issuer.
    let idp = common::evidence::Idp::new();
    let (policy, _) = stepup::PolicySet::load(&examples()).unwrap();
    let engine = stepup::Service::new(policy, CacheConfig::default()).with_trust(idp.trust());
    let server = TestServer::start_engine(engine).await;
    let mut client = server.client().await;
    client.decide(refund(10.0)).await.unwrap();
    client.decide(refund(2500.0)).await.unwrap();
    let mut r = refund(10.0);
    r.action.clear();
    client.decide(r).await.unwrap_err();
    // Refused by the transport before Decide runs, and counted all the same.
    let mut r = refund(10.0);
    r.subject.as_mut().unwrap().id = "x".repeat(stepup::MAX_MESSAGE_BYTES + 1);
    assert_eq!(client.decide(r).await.unwrap_err().code(), Code::OutOfRange);
    let evidence = idp.step_up(
        "user-1",
        "s-1",
        "urn:stepup:aal2",
        &["otp"],
        common::evidence::now(),
    );
    client
        .record_step_up(pb::RecordStepUpRequest {
            subject_id: "user-1".into(),
            success: Some(true),
            evidence,
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .record_step_up(pb::RecordStepUpRequest::default())
        .await
        .unwrap_err();
    let mut authz = AuthorizationClient::new(server.channel().await);
    authz.check(CheckRequest::default()).await.unwrap_err();

    for (method, code, n) in [
        ("Decide", "OK", 2),
        ("Decide", "INVALID_ARGUMENT", 1),
        ("Decide", "OUT_OF_RANGE", 1),
        ("RecordStepUp", "OK", 1),
        ("RecordStepUp", "INVALID_ARGUMENT", 1),
        ("Check", "INVALID_ARGUMENT", 1),
        ("Check", "OK", 0),
    ] {
        assert_eq!(server.grpc_count(method, code), n, "{method} {code}");
    }
    server.stop().await;
}

/// Sends `body` as it is to `server`: [`common::raw_call`].
async fn raw_call(server: &TestServer, path: &str, body: Vec<u8>) -> tonic::Status {
    common::raw_call(server.channel().await, &server.addr.to_string(), path, body).await
}

#[tokio::test]
async fn undecodable_bodies_are_invalid_argument_and_counted() {
    const DECIDE: &str = "/stepup.v1.DecisionService/Decide";
    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    let malformed =
        |detail: &str| format!("`stepup.v1.DecideRequest`: not a valid message: {detail}");

    // Field 1 with wire type 7, which protobuf does not have.
    let s = raw_call(&server, DECIDE, frame(&[0x0f])).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert_eq!(s.message(), malformed("invalid wire type value: 7"));
    // `action` says 10 bytes; 2 follow.
    let s = raw_call(&server, DECIDE, frame(&[0x0a, 10, b'a', b'b'])).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().starts_with(&malformed("")), "{}", s.message());
    // The frame header says 100 bytes; 3 follow.
    let s = raw_call(&server, DECIDE, vec![0, 0, 0, 0, 100, 1, 2, 3]).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert_eq!(s.message(), malformed("unexpected EOF decoding stream"));
    // No frame at all.
    let s = raw_call(&server, DECIDE, Vec::new()).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert_eq!(s.message(), malformed("missing request message"));
    // Flagged compressed, with no `grpc-encoding`.
    let s = raw_call(&server, DECIDE, vec![1, 0, 0, 0, 1, 0]).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    // Over the size limit by its header alone: as tonic answers it.
    let s = raw_call(&server, DECIDE, vec![0, 0, 0x20, 0, 0]).await;
    assert_eq!(s.code(), Code::OutOfRange, "{s:?}");

    let s = raw_call(
        &server,
        "/stepup.v1.DecisionService/RecordStepUp",
        frame(&[0x0f]),
    )
    .await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(
        s.message()
            .starts_with("`stepup.v1.RecordStepUpRequest`: not a valid message: "),
        "{}",
        s.message()
    );
    let s = raw_call(
        &server,
        "/envoy.service.auth.v3.Authorization/Check",
        frame(&[0x0f]),
    )
    .await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(
        s.message()
            .starts_with("`envoy.service.auth.v3.CheckRequest`: not a valid message: "),
        "{}",
        s.message()
    );
    // A method the service does not have: counted, but not by its name.
    let s = raw_call(&server, "/stepup.v1.DecisionService/Nope", frame(&[])).await;
    assert_eq!(s.code(), Code::Unimplemented, "{s:?}");

    for (method, code, n) in [
        ("Decide", "INVALID_ARGUMENT", 5),
        ("Decide", "OUT_OF_RANGE", 1),
        ("Decide", "INTERNAL", 0),
        ("RecordStepUp", "INVALID_ARGUMENT", 1),
        ("Check", "INVALID_ARGUMENT", 1),
        ("unknown", "UNIMPLEMENTED", 1),
    ] {
        assert_eq!(server.grpc_count(method, code), n, "{method} {code}");
    }
    server.stop().await;
}
