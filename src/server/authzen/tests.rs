//! Unit tests of the AuthZEN mapping: requests to `DecideRequest`s (the
//! documented table), defaults of boxcarred evaluations, field names of
//! errors, and decisions to the profile's JSON.

use serde_json::{Value, json};

use super::map::{self, BadRequest, Semantic};
use crate::proto::v1 as pb;

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn string(s: &str) -> pbjson_types::Value {
    pbjson_types::Value {
        kind: Some(pbjson_types::value::Kind::StringValue(s.to_owned())),
    }
}

fn one(v: Value) -> Result<pb::DecideRequest, BadRequest> {
    map::evaluations(&obj(v)).map(|mut r| r.remove(0).0)
}

/// The example of docs/src/api/authzen.md's mapping section.
#[test]
fn maps_every_member_as_the_table_says() {
    let req = one(json!({
      "subject": { "type": "user", "id": "alice", "properties": {
        "tenant": "acme", "roles": ["admin", "support"], "department": "sales" } },
      "action": { "name": "payments.refund", "properties": { "method": "POST" } },
      "resource": { "type": "order", "id": "o-1", "properties": { "amount": 2500 } },
      "context": {
        "session": { "id": "s-1", "acr": "urn:stepup:aal1", "amr": ["pwd"], "authTime": "2026-01-11T09:00:00Z" },
        "device": { "id": "d-1", "trusted": true },
        "network": { "ip": "192.0.2.7", "country": "DE", "asn": 64500 },
        "time": "2026-01-11T09:30Z",
        "fraud_score": 0.2
      }
    }))
    .unwrap();
    assert_eq!(req.action, "payments.refund");
    let s = req.subject.unwrap();
    assert_eq!((s.id.as_str(), s.tenant.as_str()), ("alice", "acme"));
    assert_eq!(s.roles, ["admin", "support"]);
    assert_eq!(s.attributes["type"], string("user"));
    assert_eq!(s.attributes["department"], string("sales"));
    assert!(!s.attributes.contains_key("tenant"));
    let r = req.resource.unwrap();
    assert_eq!((r.r#type.as_str(), r.id.as_str()), ("order", "o-1"));
    assert_eq!(
        r.attributes["amount"].kind,
        Some(pbjson_types::value::Kind::NumberValue(2500.0))
    );
    let session = req.session.unwrap();
    assert_eq!(
        (session.acr.as_str(), session.amr.len()),
        ("urn:stepup:aal1", 1)
    );
    assert_eq!(session.auth_time.unwrap().seconds, 1_768_122_000);
    assert!(req.device.unwrap().trusted);
    assert_eq!(req.network.unwrap().country, "DE");
    // Seconds may be left out, as the specification's examples do.
    assert_eq!(req.time.unwrap().seconds, 1_768_123_800);
    assert!(req.attributes.contains_key("fraud_score"));
    let Some(pbjson_types::value::Kind::StructValue(action)) = &req.attributes["action"].kind
    else {
        panic!("action properties: {:?}", req.attributes);
    };
    assert_eq!(action.fields["method"], string("POST"));
}

#[test]
fn evaluations_take_missing_members_from_the_top_level() {
    let body = obj(json!({
      "subject": { "type": "user", "id": "alice" },
      "action": { "name": "read" },
      "context": { "tier": "gold" },
      "evaluations": [
        { "resource": { "type": "doc", "id": "1" } },
        { "resource": { "type": "doc", "id": "2" }, "action": { "name": "edit" },
          "subject": { "type": "user", "id": "bob" }, "context": { "tier": "silver" } }
      ]
    }));
    let reqs = map::evaluations(&body).unwrap();
    assert_eq!(reqs.len(), 2);
    let (first, o1) = &reqs[0];
    assert_eq!(
        (
            first.action.as_str(),
            first.subject.as_ref().unwrap().id.as_str()
        ),
        ("read", "alice")
    );
    assert_eq!(first.attributes["tier"], string("gold"));
    assert_eq!(
        (o1.subject.as_str(), o1.resource.as_str()),
        ("subject", "evaluations[0].resource")
    );
    let (second, o2) = &reqs[1];
    assert_eq!(
        (
            second.action.as_str(),
            second.subject.as_ref().unwrap().id.as_str()
        ),
        ("edit", "bob")
    );
    assert_eq!(second.attributes["tier"], string("silver"));
    assert_eq!(o2.context, "evaluations[1].context");

    // A member neither the evaluation nor the top level has.
    let e = map::evaluations(&obj(json!({
      "subject": { "type": "user", "id": "alice" },
      "evaluations": [{ "action": { "name": "read" } }]
    })))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "evaluations[0].resource (and no top-level `resource`): missing"
    );
    // A bad default is named where it is.
    let e = map::evaluations(&obj(json!({
      "subject": { "type": "user" },
      "evaluations": [{ "action": { "name": "read" }, "resource": { "type": "d", "id": "1" } }]
    })))
    .unwrap_err();
    assert_eq!(e.to_string(), "subject.id: missing");
    let e = map::evaluations(&obj(json!({ "evaluations": [1] }))).unwrap_err();
    assert_eq!(e.to_string(), "evaluations[0]: must be an object");
    let many: Vec<Value> = (0..=super::MAX_EVALUATIONS).map(|_| json!({})).collect();
    let e = map::evaluations(&obj(json!({ "evaluations": many }))).unwrap_err();
    assert_eq!(e.field, "evaluations");
}

#[test]
fn semantics_and_where_they_stop() {
    let s = |v: Value| map::semantic(&obj(v));
    assert_eq!(s(json!({})), Ok(Semantic::ExecuteAll));
    assert_eq!(
        s(json!({ "options": { "another_option": 1 } })),
        Ok(Semantic::ExecuteAll)
    );
    assert_eq!(
        s(json!({ "options": { "evaluations_semantic": "deny_on_first_deny" } })),
        Ok(Semantic::DenyOnFirstDeny)
    );
    assert_eq!(
        s(json!({ "options": { "evaluations_semantic": "permit_on_first_permit" } })),
        Ok(Semantic::PermitOnFirstPermit)
    );
    assert_eq!(
        s(json!({ "options": { "evaluations_semantic": "first" } }))
            .unwrap_err()
            .field,
        "options.evaluations_semantic"
    );
    assert!(!map::stops(Semantic::ExecuteAll, false));
    assert!(map::stops(Semantic::DenyOnFirstDeny, false));
    assert!(!map::stops(Semantic::DenyOnFirstDeny, true));
    assert!(map::stops(Semantic::PermitOnFirstPermit, true));
}

/// Validation errors of the mapped request name the AuthZEN member.
#[test]
fn validation_errors_are_renamed_to_the_request_members() {
    let origins = map::Origins {
        subject: "subject".into(),
        action: "evaluations[2].action".into(),
        resource: "evaluations[2].resource".into(),
        context: "context".into(),
    };
    let cases = [
        ("action", "evaluations[2].action.name"),
        ("subject.id", "subject.id"),
        ("subject.tenant", "subject.properties.tenant"),
        ("subject.roles[3]", "subject.properties.roles[3]"),
        ("subject.attributes.type", "subject.type"),
        ("subject.attributes.dept", "subject.properties.dept"),
        (
            "resource.attributes.amount",
            "evaluations[2].resource.properties.amount",
        ),
        ("resource.id", "evaluations[2].resource.id"),
        (
            "attributes.action.method",
            "evaluations[2].action.properties.method",
        ),
        ("attributes.fraud_score", "context.fraud_score"),
        ("session.acr", "context.session.acr"),
        ("network.ip", "context.network.ip"),
        ("time", "context.time"),
    ];
    for (field, expected) in cases {
        let e = crate::request::InvalidRequest {
            field: field.into(),
            problem: "bad".into(),
        };
        assert_eq!(map::rename(e, &origins).field, expected, "{field}");
    }
}

#[test]
fn only_exact_action_names_are_known() {
    let (policy, _) = crate::policy::PolicySet::from_str(
        "p.yaml",
        "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - name: aal1\n    acr: [\"a1\"]\n---\n\
         apiVersion: stepup/v1\nkind: Policy\nname: p\nrules:\n\
         \x20 - id: r1\n    actions: [\"b.read\", \"a.*\", \"*\"]\n    effect: deny\n\
         \x20 - id: r2\n    actions: [\"a.write\", \"b.read\"]\n    effect: deny\n",
    )
    .unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(map::known_actions(&policy), ["a.write", "b.read"]);
}

#[test]
fn decisions_carry_the_profile_context() {
    let (policy, _) = crate::policy::PolicySet::load(std::path::Path::new("policies"))
        .unwrap_or_else(|r| panic!("{r}"));
    let engine = crate::service::Service::new(policy, crate::cache::CacheConfig::default());
    let req = one(json!({
      "subject": { "type": "user", "id": "alice" },
      "action": { "name": "payments.refund" },
      "resource": { "type": "order", "id": "o-1", "properties": { "amount": 2500 } },
      "context": { "session": { "acr": "urn:stepup:aal1", "amr": ["pwd"], "authTime": "2026-11-27T09:00:00Z" } }
    }))
    .unwrap();
    let now = "2026-11-27T10:00:00Z".parse().unwrap();
    let d = engine.decide(&req, now, false);
    let v = map::decision(&d);
    assert_eq!(v["decision"], false);
    let c = &v["context"];
    assert_eq!(c["outcome"], "challenge");
    assert_eq!(c["acr_values"][0], "urn:stepup:aal2");
    assert_eq!(c["max_age"], 300);
    assert_eq!(c["amr"], json!(["hwk", "otp"]));
    assert_eq!(c["amr_conflict"], false);
    assert_eq!(
        c["www_authenticate"],
        d.www_authenticate().unwrap().as_str()
    );
    assert_eq!(c["decision_id"], d.id_string().as_str());
    assert_eq!(c["policy_revision"], &*d.policy.revision);
    assert!(
        c["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["rule_id"] == "refund-large")
    );
    assert!(c["risk"]["score"].is_u64());

    let mut small = req.clone();
    small.resource.as_mut().unwrap().attributes.insert(
        "amount".into(),
        pbjson_types::Value {
            kind: Some(pbjson_types::value::Kind::NumberValue(5.0)),
        },
    );
    let v = map::decision(&engine.decide(&small, now, false));
    assert_eq!(
        (v["decision"].clone(), v["context"]["outcome"].clone()),
        (json!(true), json!("allow"))
    );
    assert!(v["context"].get("amr").is_none());
}

/// Two challenges whose methods have none in common: `amr` is empty and
/// `amr_conflict` says why; a challenge naming no method has an empty `amr`
/// without a conflict.
#[test]
fn methods_no_one_step_up_satisfies_are_a_conflict() {
    let set = |methods: [&str; 2]| {
        let (policy, _) = crate::policy::PolicySet::from_str(
            "p.yaml",
            &format!(
                "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - name: aal1\n    acr: [\"a1\"]\n  - name: aal2\n    acr: [\"a2\"]\n---\n\
                 apiVersion: stepup/v1\nkind: Policy\nname: p\nrules:\n\
                 \x20 - id: r1\n    actions: [\"a.write\"]\n    effect: challenge\n    require: {{level: aal2{}}}\n\
                 \x20 - id: r2\n    actions: [\"a.write\"]\n    effect: challenge\n    require: {{level: aal2{}}}\n",
                methods[0], methods[1]
            ),
        )
        .unwrap_or_else(|r| panic!("{r}"));
        crate::service::Service::new(policy, crate::cache::CacheConfig::default())
    };
    let req = one(json!({
      "subject": { "type": "user", "id": "alice" },
      "action": { "name": "a.write" },
      "resource": { "type": "thing", "id": "t-1" },
      "context": { "session": { "acr": "a1", "amr": ["pwd"], "authTime": "2026-11-27T09:00:00Z" } }
    }))
    .unwrap();
    let now = "2026-11-27T10:00:00Z".parse().unwrap();
    let context = |methods| {
        let v = map::decision(&set(methods).decide(&req, now, false));
        assert_eq!(v["context"]["outcome"], "challenge", "{v}");
        (
            v["context"]["amr"].clone(),
            v["context"]["amr_conflict"].clone(),
        )
    };
    assert_eq!(
        context([", methods: [hwk]", ", methods: [otp]"]),
        (json!([]), json!(true))
    );
    assert_eq!(
        context([", methods: [hwk, otp]", ", methods: [otp]"]),
        (json!(["otp"]), json!(false))
    );
    assert_eq!(context(["", ""]), (json!([]), json!(false)));
}

// ------------------------------------------------------------- the handler

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};

use super::AuthZen;
use crate::server::in_flight::InFlight;

fn api(in_flight: &Arc<InFlight>) -> Arc<AuthZen> {
    let (policy, _) = crate::policy::PolicySet::load(std::path::Path::new("policies"))
        .unwrap_or_else(|r| panic!("{r}"));
    let engine = Arc::new(crate::service::Service::new(
        policy,
        crate::cache::CacheConfig::default(),
    ));
    AuthZen::new(engine, None, Arc::clone(in_flight))
}

fn evaluation(body: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri(super::EVALUATION_PATH)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

const GOOD: &str = r#"{"subject": {"type": "user", "id": "alice"},
    "action": {"name": "orders.list"}, "resource": {"type": "order", "id": "o-1"}}"#;

/// Past the in-flight limit the gRPC calls share, a request is answered
/// 503 at once, with `Retry-After`; a permit released lets the next in.
#[tokio::test]
async fn past_the_shared_in_flight_limit_requests_are_refused_at_once() {
    let in_flight = InFlight::new(1);
    let api = api(&in_flight);
    let held = in_flight.try_enter().unwrap();
    let r = api.handle(evaluation(GOOD)).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    drop(held);
    let r = api.handle(evaluation(GOOD)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["decision"], true, "{v}");
}

/// A body that never arrives.
struct Never;

impl hyper::body::Body for Never {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Pending
    }
}

/// A caller that sends headers and no body holds no decision slot while
/// it waits, and is answered 408 after the body deadline.
#[tokio::test]
async fn a_body_that_does_not_come_holds_no_slot_and_times_out() {
    let in_flight = InFlight::new(1);
    let api = api(&in_flight);
    let slow = Request::builder()
        .method(Method::POST)
        .uri(super::EVALUATION_PATH)
        .header("content-type", "application/json")
        .body(Never)
        .unwrap();
    let waiting = tokio::spawn({
        let api = Arc::clone(&api);
        async move { api.handle(slow).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    // The only slot is free: a decision goes through meanwhile.
    assert_eq!(api.handle(evaluation(GOOD)).await.status(), StatusCode::OK);
    let r = tokio::time::timeout(super::BODY_DEADLINE + Duration::from_secs(2), waiting)
        .await
        .expect("answered after the deadline")
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
}
