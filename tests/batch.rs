#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! `DecideBatch` end to end over a real socket: the server on
//! `127.0.0.1:0`, a real tonic client, the example policies.

mod common;

use std::sync::Arc;

use common::{TestServer, examples};
use pbjson_types::Timestamp;
use stepup::proto::v1::{DecideBatchRequest, DecideRequest, DecideResponse, Outcome};
use stepup::{CacheConfig, DecisionLog, DecisionLogConfig, PolicySet, Service, Sink};
use tonic::Code;

const NOW: i64 = 1_795_780_800; // 2026-11-27T12:00:00Z: daytime

fn request(action: &str, subject: &str, resource: serde_json::Value) -> DecideRequest {
    let mut r: DecideRequest = serde_json::from_value(serde_json::json!({
        "action": action,
        "subject": { "id": subject, "attributes": { "usual_countries": ["DE"] } },
        "session": { "acr": "urn:stepup:aal1", "amr": ["pwd"] },
        "device": { "id": "d1", "trusted": true },
        "network": { "ip": "198.51.100.4", "country": "DE" },
        "resource": resource,
    }))
    .unwrap();
    r.time = Some(Timestamp {
        seconds: NOW,
        nanos: 0,
    });
    r
}

fn refund(subject: &str, amount: f64) -> DecideRequest {
    request(
        "payments.refund",
        subject,
        serde_json::json!({ "type": "refund", "attributes": { "amount": amount } }),
    )
}

fn blocked(subject: &str) -> DecideRequest {
    let mut r = refund(subject, 10.0);
    r.network.as_mut().unwrap().country = "KP".into();
    r
}

fn batch(requests: Vec<DecideRequest>, combine: bool) -> DecideBatchRequest {
    DecideBatchRequest {
        requests,
        combine_challenges: combine,
    }
}

/// A response without what differs between two decisions of the same
/// request (the decision id).
fn comparable(mut r: DecideResponse) -> DecideResponse {
    r.decision_id.clear();
    r
}

#[tokio::test]
async fn answers_in_order_with_mixed_outcomes() {
    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    let mut client = server.client().await;
    let r = client
        .decide_batch(batch(
            vec![
                refund("u1", 50.0),
                refund("u2", 2500.0),
                blocked("u3"),
                refund("u4", 20.0),
            ],
            false,
        ))
        .await
        .unwrap()
        .into_inner();
    let outcomes: Vec<Outcome> = r.responses.iter().map(DecideResponse::outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Allow,
            Outcome::Challenge,
            Outcome::Deny,
            Outcome::Allow
        ]
    );
    assert_eq!(r.responses[1].requirements[0].rule_id, "refund-large");
    assert_eq!(r.responses[2].reasons[0].rule_id, "blocked-country");
    // Not asked for: no combined challenge.
    assert!(r.combined.is_none());
    // Counted once, under its own name.
    assert_eq!(server.grpc_count("DecideBatch", "OK"), 1);
    assert_eq!(server.grpc_count("Decide", "OK"), 0);
    let text = server.engine.render_metrics();
    assert!(
        text.contains("stepup_grpc_server_handling_seconds_count{method=\"DecideBatch\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("method=\"unknown\""), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_batch_equals_the_individual_decisions() {
    // Distinct subjects: no decision's history bears on another's.
    let requests = vec![
        refund("a", 50.0),
        refund("b", 2500.0),
        blocked("c"),
        request(
            "environments.delete",
            "d",
            serde_json::json!({ "type": "environment", "attributes": { "environment": "production" } }),
        ),
        request("account.password.change", "e", serde_json::json!({})),
    ];
    let one = TestServer::start(&examples(), CacheConfig::default()).await;
    let many = TestServer::start(&examples(), CacheConfig::default()).await;
    let batched = one
        .client()
        .await
        .decide_batch(batch(requests.clone(), false))
        .await
        .unwrap()
        .into_inner()
        .responses;
    let mut client = many.client().await;
    let mut single = Vec::new();
    for r in requests {
        single.push(comparable(client.decide(r).await.unwrap().into_inner()));
    }
    let batched: Vec<DecideResponse> = batched.into_iter().map(comparable).collect();
    assert_eq!(batched, single);
    one.stop().await;
    many.stop().await;
}

#[tokio::test]
async fn decisions_of_a_batch_do_not_see_each_other() {
    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    let mut client = server.client().await;
    // Eleven refunds within the hour make a burst (`refund-burst`) when sent
    // one by one; in one batch each sees the history as it stood before.
    let requests: Vec<DecideRequest> = (0..11).map(|_| refund("burst", 20.0)).collect();
    let r = client
        .decide_batch(batch(requests, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.responses.len(), 11);
    for (i, answer) in r.responses.iter().enumerate() {
        assert_eq!(answer.outcome(), Outcome::Allow, "answer {i}");
    }
    // ...and recorded afterwards: the next refund is the twelfth.
    let next = client
        .decide(refund("burst", 20.0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.outcome(), Outcome::Challenge);
    assert_eq!(next.requirements[0].rule_id, "refund-burst");
    server.stop().await;
}

#[tokio::test]
async fn one_clock_for_the_batch_and_each_decision_logged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    let (policy, _) = PolicySet::load(&examples()).unwrap_or_else(|r| panic!("{r}"));
    let engine = Service::new(policy, CacheConfig::default());
    let log = DecisionLog::start(
        DecisionLogConfig::new(Sink::File {
            path: path.clone(),
            max_bytes: 1 << 20,
            keep: 1,
        }),
        Arc::clone(engine.metrics()),
    )
    .unwrap();
    let server = TestServer::start_engine(engine.with_decision_log(log)).await;
    let mut client = server.client().await;
    let mut requests: Vec<DecideRequest> = (0..5)
        .map(|i| {
            let mut r = refund(&format!("clock-{i}"), 20.0);
            r.time = None;
            r
        })
        .collect();
    // A request's own time still applies.
    requests[2].time = Some(Timestamp {
        seconds: NOW,
        nanos: 0,
    });
    client.decide_batch(batch(requests, false)).await.unwrap();
    server.engine.close();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    let times: Vec<&str> = lines.iter().map(|l| l["time"].as_str().unwrap()).collect();
    assert!(times[2].starts_with("2026-11-27T12:00:00"), "{}", times[2]);
    for i in [1, 3, 4] {
        assert_eq!(times[i], times[0], "one clock for the batch");
    }
    assert_ne!(times[0], times[2]);
    for l in &lines {
        assert_eq!(l["source"], "batch");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_batch_is_bounded_and_a_bad_request_is_named_by_index() {
    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    let mut client = server.client().await;

    let status = client
        .decide_batch(batch(Vec::new(), false))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("`requests`: "),
        "{}",
        status.message()
    );

    let full: Vec<DecideRequest> = (0..100).map(|i| refund(&format!("u{i}"), 20.0)).collect();
    let r = client
        .decide_batch(batch(full.clone(), false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.responses.len(), 100);

    let mut over = full;
    over.push(refund("u100", 20.0));
    let status = client.decide_batch(batch(over, false)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "`requests`: 101 requests, over the limit of 100 per batch"
    );

    let mut bad = vec![refund("a", 20.0); 5];
    bad[3].action.clear();
    let status = client.decide_batch(batch(bad, false)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "`requests[3].action`: required");

    let mut bad = vec![refund("a", 20.0); 2];
    bad[1].subject.as_mut().unwrap().id.clear();
    let status = client.decide_batch(batch(bad, false)).await.unwrap_err();
    assert_eq!(status.message(), "`requests[1].subject.id`: required");
    assert_eq!(server.grpc_count("DecideBatch", "INVALID_ARGUMENT"), 4);
    server.stop().await;
}

#[tokio::test]
async fn the_combined_challenge_satisfies_every_answer() {
    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    let mut client = server.client().await;
    let requests = vec![
        refund("a", 50.0),
        // aal2, methods hwk or otp, 5m
        refund("b", 2500.0),
        // aal2, any method, 10m
        request("account.password.change", "c", serde_json::json!({})),
        // aal3, hwk, 2m
        request(
            "environments.delete",
            "d",
            serde_json::json!({ "type": "environment", "attributes": { "environment": "production" } }),
        ),
        blocked("e"),
    ];
    let r = client
        .decide_batch(batch(requests.clone(), true))
        .await
        .unwrap()
        .into_inner();
    let c = r.combined.unwrap();
    assert_eq!(c.level, "aal3");
    assert_eq!(c.acr_values, ["urn:stepup:aal3", "phr", "phrh"]);
    assert_eq!(c.max_age.unwrap().seconds, 120);
    assert_eq!(c.methods, ["hwk"]);
    assert!(!c.methods_conflict);
    assert_eq!(
        c.www_authenticate,
        "Bearer error=\"insufficient_user_authentication\", error_description=\"Refunds above 1,000 need re-verification\", acr_values=\"urn:stepup:aal3 phr phrh\", max_age=\"120\""
    );

    // Only ALLOW and DENY answers: nothing to combine.
    let r = client
        .decide_batch(batch(vec![refund("a", 50.0), blocked("e")], true))
        .await
        .unwrap()
        .into_inner();
    assert!(r.combined.is_none());
    server.stop().await;
}

#[tokio::test]
async fn disjoint_methods_are_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        examples().join("levels.yaml"),
        dir.path().join("levels.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "apiVersion: stepup/v1\nkind: Policy\nname: p\nrules:\n  - id: needs-otp\n    actions: [a.otp]\n    effect: challenge\n    require: { level: aal2, methods: [otp] }\n    message: OTP\n  - id: needs-face\n    actions: [a.face]\n    effect: challenge\n    require: { level: aal2, methods: [face], max_age: 1m }\n    message: Face\n",
    )
    .unwrap();
    let server = TestServer::start(dir.path(), CacheConfig::default()).await;
    let mut client = server.client().await;
    let requests = vec![
        request("a.otp", "x", serde_json::json!({})),
        request("a.face", "x", serde_json::json!({})),
    ];
    let r = client
        .decide_batch(batch(requests, true))
        .await
        .unwrap()
        .into_inner();
    let c = r.combined.unwrap();
    assert_eq!(c.level, "aal2");
    assert!(c.methods.is_empty());
    assert!(c.methods_conflict);
    assert_eq!(c.max_age.unwrap().seconds, 60);
    assert_eq!(
        c.www_authenticate,
        "Bearer error=\"insufficient_user_authentication\", error_description=\"OTP\", acr_values=\"urn:stepup:aal2 urn:okta:loa:2fa:any http://schemas.openid.net/pape/policies/2007/06/multi-factor\", max_age=\"60\""
    );
    server.stop().await;
}

#[tokio::test]
async fn reflection_describes_the_method() {
    use prost::Message as _;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "stepup.v1.DecisionService.DecideBatch".into(),
        )),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = msg.message_response else {
        panic!("unexpected reflection answer: {msg:?}");
    };
    let file = pbjson_types::FileDescriptorProto::decode(files.file_descriptor_proto[0].as_slice())
        .unwrap();
    let service = file
        .service
        .iter()
        .find(|s| s.name() == "DecisionService")
        .unwrap();
    let method = service
        .method
        .iter()
        .find(|m| m.name() == "DecideBatch")
        .unwrap();
    assert_eq!(method.input_type(), ".stepup.v1.DecideBatchRequest");
    assert_eq!(method.output_type(), ".stepup.v1.DecideBatchResponse");
    server.stop().await;
}

#[tokio::test]
async fn an_undecodable_batch_names_its_message_type() {
    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    // Field 1 with wire type 7, which protobuf does not have.
    let s = common::raw_call(
        server.channel().await,
        &server.addr.to_string(),
        "/stepup.v1.DecisionService/DecideBatch",
        common::frame(&[0x0f]),
    )
    .await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert_eq!(
        s.message(),
        "`stepup.v1.DecideBatchRequest`: not a valid message: invalid wire type value: 7"
    );
    assert_eq!(server.grpc_count("DecideBatch", "INVALID_ARGUMENT"), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_batch_with_a_costly_decision_is_decided_off_the_runtime_in_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        examples().join("levels.yaml"),
        dir.path().join("levels.yaml"),
    )
    .unwrap();
    // `a.costly`: about 5,000 cost units (four `contains` per role over up
    // to 64 roles of 1,024 bytes), so its decisions take the isolation path.
    std::fs::write(
        dir.path().join("p.yaml"),
        "apiVersion: stepup/v1\nkind: Policy\nname: p\nrules:\n  - id: cheap\n    actions: [a.cheap]\n    when: 'subject.id == \"x\"'\n    effect: deny\n  - id: costly\n    actions: [a.costly]\n    when: >-\n      subject.roles.exists(r, r.contains(\"a\") && r.contains(\"b\") && r.contains(\"c\") && r.contains(\"d\"))\n    effect: deny\n",
    )
    .unwrap();
    let server = TestServer::start(dir.path(), CacheConfig::default()).await;
    assert!(server.engine.is_costly(Some("a.costly")));
    let mut client = server.client().await;
    let mut costly_hit = request("a.costly", "y", serde_json::json!({}));
    costly_hit.subject.as_mut().unwrap().roles = vec!["abcd".into()];
    let mut costly_miss = request("a.costly", "y", serde_json::json!({}));
    costly_miss.subject.as_mut().unwrap().roles = vec!["zz".into()];
    let r = client
        .decide_batch(batch(
            vec![
                request("a.cheap", "x", serde_json::json!({})),
                costly_hit,
                costly_miss,
                request("a.cheap", "y", serde_json::json!({})),
            ],
            true,
        ))
        .await
        .unwrap()
        .into_inner();
    let outcomes: Vec<Outcome> = r.responses.iter().map(DecideResponse::outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Deny, Outcome::Deny, Outcome::Allow, Outcome::Allow]
    );
    assert_eq!(r.responses[1].reasons[0].rule_id, "costly");
    assert!(r.combined.is_none(), "no challenge to combine");
    server.stop().await;
}
