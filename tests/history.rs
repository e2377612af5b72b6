#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! Behavioural history end to end: decisions and step-up reports over a real
//! gRPC socket, with policies that read `history`, the decision cache on.

mod common;

use common::TestServer;
use pbjson_types::Timestamp;
use stepup::CacheConfig;
use stepup::PolicySet;
use stepup::Service;
use stepup::history::{Enabled, History, HistoryConfig, Limits, StepUpReport};
use stepup::proto::v1::decision_service_client::DecisionServiceClient;
use stepup::proto::v1::{DecideRequest, DecideResponse, Outcome, RecordStepUpRequest};
use tonic::Code;
use tonic::transport::Channel;

/// 2026-11-27T10:00:00Z.
const T0: i64 = 1_795_773_600;

const POLICY: &str = r#"
apiVersion: stepup/v1
kind: Levels
levels:
  - name: aal1
    acr: ["urn:stepup:aal1"]
  - name: aal2
    acr: ["urn:stepup:aal2"]
---
apiVersion: stepup/v1
kind: Policy
name: behaviour
signals:
  - id: new-device
    when: "device.id != '' && !history.device_known"
    score: 10
  - id: impossible-travel
    when: "history.travel_kmh > 900.0"
    score: 60
  - id: failed-stepups
    when: "history.stepups_failed >= 2"
    score: 50
rules:
  - id: risky
    actions: ["*"]
    when: "risk.score >= 50"
    effect: challenge
    require: { level: aal2, max_age: 5m }
  - id: refund-burst
    actions: ["payments.refund"]
    when: 'history.count("payments.*", duration("1h")) >= 3'
    effect: challenge
    require: { level: aal2 }
  - id: transfer-new-device
    actions: ["payments.transfer"]
    when: "!history.device_known"
    effect: challenge
    require: { level: aal2 }
  - id: delete-account
    actions: ["account.delete"]
    effect: challenge
    require: { level: aal2, methods: [otp, hwk], max_age: 5m }
"#;

fn ts(secs: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

/// A request by `subject` at `T0 + offset` seconds.
fn request(subject: &str, action: &str, offset: i64, extra: serde_json::Value) -> DecideRequest {
    let mut base = serde_json::json!({
        "action": action,
        "subject": { "id": subject },
        "session": { "id": "s-1", "acr": "urn:stepup:aal1", "amr": ["pwd"] },
        "device": { "id": "d-1" },
    });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    let mut r: DecideRequest = serde_json::from_value(base).unwrap();
    r.time = ts(T0 + offset);
    r
}

fn from(lat: f64, lon: f64, country: &str) -> serde_json::Value {
    serde_json::json!({ "network": { "country": country, "attributes": { "lat": lat, "lon": lon } } })
}

async fn decide(c: &mut DecisionServiceClient<Channel>, r: DecideRequest) -> DecideResponse {
    c.decide(r).await.unwrap().into_inner()
}

fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("behaviour.yaml"), POLICY).unwrap();
    dir
}

/// The identity provider whose signed tokens prove step-ups.
static IDP: std::sync::LazyLock<common::evidence::Idp> =
    std::sync::LazyLock::new(common::evidence::Idp::new);

async fn serve(history: HistoryConfig) -> (TestServer, tempfile::TempDir) {
    let dir = policy_dir();
    let (policy, _) = PolicySet::load(dir.path()).unwrap_or_else(|r| panic!("{r}"));
    let engine = Service::new(policy, CacheConfig::default())
        .with_history(History::new(history))
        .with_trust(IDP.trust_with_reporter());
    (TestServer::start_engine(engine).await, dir)
}

fn outcome(r: &DecideResponse) -> Outcome {
    Outcome::try_from(r.outcome).unwrap()
}

fn reasons(r: &DecideResponse) -> Vec<&str> {
    r.reasons.iter().map(|x| x.rule_id.as_str()).collect()
}

#[tokio::test]
async fn a_new_device_then_a_known_one() {
    let (server, _dir) = serve(HistoryConfig::default()).await;
    let mut c = server.client().await;
    // First transfer from d-1: a new device, challenged.
    let r = decide(
        &mut c,
        request("alice", "payments.transfer", 0, serde_json::json!({})),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Challenge);
    assert_eq!(r.risk.as_ref().unwrap().signals, ["new-device"]);
    // The user steps up (aal2): allowed, and d-1 becomes known.
    let aal2 = serde_json::json!({ "session": { "id": "s-1", "acr": "urn:stepup:aal2", "amr": ["pwd", "otp"] } });
    let r = decide(&mut c, request("alice", "payments.transfer", 60, aal2)).await;
    assert_eq!(outcome(&r), Outcome::Allow);
    // Back on a password session: the device is known now.
    let r = decide(
        &mut c,
        request("alice", "payments.transfer", 120, serde_json::json!({})),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Allow, "{r:?}");
    assert!(r.risk.as_ref().unwrap().signals.is_empty());
    // Another subject's same device id is not known to it.
    let r = decide(
        &mut c,
        request("bob", "payments.transfer", 130, serde_json::json!({})),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Challenge);
    // A second device for alice is new again.
    let d2 = serde_json::json!({ "device": { "id": "d-2" } });
    let r = decide(&mut c, request("alice", "payments.transfer", 140, d2)).await;
    assert_eq!(outcome(&r), Outcome::Challenge);
    server.stop().await;
}

#[tokio::test]
async fn impossible_travel_versus_a_plausible_trip() {
    let (server, _dir) = serve(HistoryConfig::default()).await;
    let mut c = server.client().await;
    let berlin = || from(52.52, 13.405, "DE");
    // Berlin, then Sydney 45 minutes later: impossible.
    let r = decide(&mut c, request("carol", "account.view", 0, berlin())).await;
    assert_eq!(outcome(&r), Outcome::Allow);
    let r = decide(
        &mut c,
        request(
            "carol",
            "account.view",
            45 * 60,
            from(-33.8688, 151.2093, "AU"),
        ),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Challenge);
    assert!(
        r.risk
            .as_ref()
            .unwrap()
            .signals
            .contains(&"impossible-travel".to_owned())
    );
    assert_eq!(reasons(&r), ["risky"]);
    // Berlin, then Munich six hours later: a train ride.
    let r = decide(&mut c, request("dave", "account.view", 0, berlin())).await;
    assert_eq!(outcome(&r), Outcome::Allow);
    let r = decide(
        &mut c,
        request(
            "dave",
            "account.view",
            6 * 3600,
            from(48.1351, 11.582, "DE"),
        ),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Allow, "{r:?}");
    // No coordinates: no travel speed.
    let r = decide(
        &mut c,
        request(
            "dave",
            "account.view",
            6 * 3600 + 60,
            serde_json::json!({ "network": { "country": "AU" } }),
        ),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Allow);
    server.stop().await;
}

#[tokio::test]
async fn a_burst_of_refunds_crosses_the_threshold() {
    let (server, _dir) = serve(HistoryConfig::default()).await;
    let mut c = server.client().await;
    for i in 0..3 {
        let r = decide(
            &mut c,
            request("erin", "payments.refund", i * 60, serde_json::json!({})),
        )
        .await;
        assert_eq!(reasons(&r), Vec::<&str>::new(), "refund {i}");
    }
    // Three payments in the last hour: the fourth is challenged.
    let r = decide(
        &mut c,
        request("erin", "payments.refund", 200, serde_json::json!({})),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Challenge);
    assert_eq!(reasons(&r), ["refund-burst"]);
    // Two hours later the window has passed.
    let r = decide(
        &mut c,
        request("erin", "payments.refund", 3 * 3600, serde_json::json!({})),
    )
    .await;
    assert_eq!(reasons(&r), Vec::<&str>::new());
    server.stop().await;
}

/// `req` with the ID token of its step-up (aal2 at `time`) as evidence.
fn with_evidence(req: RecordStepUpRequest) -> RecordStepUpRequest {
    let at = req.time.as_ref().unwrap().seconds;
    let amr: Vec<&str> = req.amr.iter().map(String::as_str).collect();
    let evidence = IDP.step_up(
        &req.subject_id,
        &req.session_id,
        "urn:stepup:aal2",
        &amr,
        at,
    );
    RecordStepUpRequest { evidence, ..req }
}

fn report(subject: &str, offset: i64, success: bool) -> RecordStepUpRequest {
    RecordStepUpRequest {
        subject_id: subject.into(),
        session_id: "s-1".into(),
        device_id: "d-1".into(),
        level: "aal2".into(),
        amr: vec!["otp".into()],
        time: ts(T0 + offset),
        success: Some(success),
        ..Default::default()
    }
}

#[tokio::test]
async fn two_failed_step_ups_raise_the_risk() {
    let (server, _dir) = serve(HistoryConfig::default()).await;
    let mut c = server.client().await;
    let r = decide(
        &mut c,
        request("frank", "account.view", 0, serde_json::json!({})),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Allow);
    let first = common::evidence::report_as_reporter(&server.engine, report("frank", 10, false))
        .await
        .unwrap();
    assert_eq!(first.stepups_failed, 1);
    assert!(first.elevation_expire_time.is_none());
    let r = decide(
        &mut c,
        request("frank", "account.view", 20, serde_json::json!({})),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Allow, "one failure is not enough");
    let second = common::evidence::report_as_reporter(&server.engine, report("frank", 30, false))
        .await
        .unwrap();
    assert_eq!(second.stepups_failed, 2);
    let r = decide(
        &mut c,
        request("frank", "account.view", 40, serde_json::json!({})),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Challenge);
    assert!(
        r.risk
            .as_ref()
            .unwrap()
            .signals
            .contains(&"failed-stepups".to_owned())
    );
    server.stop().await;
}

#[tokio::test]
async fn a_recorded_step_up_satisfies_a_later_challenge() {
    let (server, _dir) = serve(HistoryConfig::default()).await;
    let mut c = server.client().await;
    let r = decide(
        &mut c,
        request("gina", "account.delete", 0, serde_json::json!({})),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Challenge);
    let ok = c
        .record_step_up(with_evidence(report("gina", 10, true)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.elevation_expire_time, ts(T0 + 10 + 15 * 60));
    // The same session, still sending its aal1 token: elevated.
    let r = decide(
        &mut c,
        request("gina", "account.delete", 20, serde_json::json!({})),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Allow, "{r:?}");
    assert_eq!(reasons(&r), ["delete-account"]);
    // And the device became known.
    let r = decide(
        &mut c,
        request("gina", "payments.transfer", 30, serde_json::json!({})),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Allow);
    // Another session of the same subject is not elevated.
    let other =
        serde_json::json!({ "session": { "id": "s-2", "acr": "urn:stepup:aal1", "amr": ["pwd"] } });
    let r = decide(&mut c, request("gina", "account.delete", 40, other)).await;
    assert_eq!(outcome(&r), Outcome::Challenge);
    // Six minutes after the step-up, `max_age: 5m` is no longer met.
    let r = decide(
        &mut c,
        request("gina", "account.delete", 10 + 6 * 60, serde_json::json!({})),
    )
    .await;
    assert_eq!(outcome(&r), Outcome::Challenge);
    server.stop().await;
}

#[tokio::test]
async fn record_step_up_validates_like_decide() {
    let (server, _dir) = serve(HistoryConfig::default()).await;
    let mut c = server.client().await;
    let e = c
        .record_step_up(RecordStepUpRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "`subject_id`: required");
    // Checked against the policy only for a listed reporter (tests/trust.rs):
    // this caller is none, and learns no level names.
    let mut bad = report("h", 0, true);
    bad.level = "aal3".into();
    let e = c.record_step_up(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(!e.message().contains("aal1"), "{}", e.message());
    server.stop().await;

    let (server, _dir) = serve(HistoryConfig {
        enabled: stepup::history::Enabled::Off,
        ..HistoryConfig::default()
    })
    .await;
    let mut c = server.client().await;
    let e = c.record_step_up(report("h", 0, true)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    server.stop().await;
}

#[tokio::test]
async fn a_flood_of_subjects_stays_within_the_cap() {
    let (server, _dir) = serve(HistoryConfig {
        limits: Limits {
            max_subjects: 100,
            ..Limits::default()
        },
        ..HistoryConfig::default()
    })
    .await;
    let mut c = server.client().await;
    for i in 0..1500 {
        let r = request(
            &format!("flood-{i}"),
            "account.view",
            i,
            serde_json::json!({}),
        );
        decide(&mut c, r).await;
        // A regular keeps coming back and is never evicted.
        decide(
            &mut c,
            request("regular", "payments.refund", i, serde_json::json!({})),
        )
        .await;
        let store = server.engine.history().store();
        assert!(store.len() <= 100, "{} subjects after {i}", store.len());
    }
    assert!(server.engine.history().store().evicted() >= 1400);
    // The regular's refunds are all remembered: the burst rule fires.
    let r = decide(
        &mut c,
        request("regular", "payments.refund", 1500, serde_json::json!({})),
    )
    .await;
    assert_eq!(reasons(&r), ["refund-burst"]);
    server.stop().await;
}

#[test]
fn memory_stays_flat_under_200k_distinct_subjects() {
    // 200,000 subjects through the engine, at most 10,000 kept.
    let dir = policy_dir();
    let (policy, _) = PolicySet::load(dir.path()).unwrap_or_else(|r| panic!("{r}"));
    let engine =
        Service::new(policy, CacheConfig::default()).with_history(History::new(HistoryConfig {
            limits: Limits {
                max_subjects: 10_000,
                ..Limits::default()
            },
            ..HistoryConfig::default()
        }));
    let now = chrono::DateTime::from_timestamp(T0, 0).unwrap();
    let mut req = request("x", "account.view", 0, serde_json::json!({}));
    let store = engine.history().store();
    for i in 0..200_000 {
        req.subject.as_mut().unwrap().id = format!("s-{i}");
        engine.decide(&req, now + chrono::Duration::milliseconds(i), false);
        assert!(store.len() <= 10_000, "{} subjects after {i}", store.len());
    }
    assert!(store.len() > 9_000, "{}", store.len());
    assert_eq!(store.evicted(), 200_000 - store.len() as u64);
}

/// A request by `subject` at `at` (the server's clock, not `T0`: pruning
/// never goes past the server's clock, and that is what is tested).
fn request_at(
    subject: &str,
    action: &str,
    at: chrono::DateTime<chrono::Utc>,
    extra: serde_json::Value,
) -> DecideRequest {
    let mut r = request(subject, action, 0, extra);
    r.time = ts(at.timestamp());
    r
}

fn failed_step_up(history: &History, subject: &str, at: chrono::DateTime<chrono::Utc>) {
    let at = at.timestamp_millis();
    history.report(StepUpReport {
        subject: history.keyer().subject("", subject),
        session: None,
        device: None,
        acr: None,
        amr: Vec::new(),
        auth_time: at,
        at,
        success: false,
    });
}

/// A hostile probe: a request and a step-up report dated two days
/// ahead neither expire the subject's failed step-ups nor pin a location
/// that every later request seems to travel from. In process: the server
/// may refuse such a `time` before history sees it.
#[test]
fn a_future_dated_event_prunes_nothing_and_pins_no_place() {
    let dir = policy_dir();
    let (policy, _) = PolicySet::load(dir.path()).unwrap_or_else(|r| panic!("{r}"));
    let engine = Service::new(policy, CacheConfig::default())
        .with_history(History::new(HistoryConfig::default()));
    let start = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp(), 0).unwrap();
    let at = |minutes: i64| start + chrono::Duration::minutes(minutes);
    let history = engine.history();
    failed_step_up(history, "alice", at(0));
    failed_step_up(history, "alice", at(1));
    let berlin = from(52.52, 13.405, "DE");
    engine.decide(
        &request_at("alice", "account.view", at(2), berlin),
        at(2),
        false,
    );
    // Two days ahead, from Sydney.
    let ahead = at(2 * 24 * 60);
    let sydney = from(-33.87, 151.21, "AU");
    engine.decide(
        &request_at("alice", "account.view", ahead, sydney),
        ahead,
        false,
    );
    failed_step_up(history, "alice", ahead);
    // Back in real time, from Potsdam (30 km from Berlin), twice.
    for minutes in [10, 20] {
        let potsdam = from(52.39, 13.06, "DE");
        let d = engine.decide(
            &request_at("alice", "account.view", at(minutes), potsdam),
            at(minutes),
            false,
        );
        let signals: Vec<&str> = d.assessment.signals.iter().map(|s| &**s).collect();
        assert!(
            signals.contains(&"failed-stepups"),
            "the failures are still there at +{minutes}m: {signals:?}"
        );
        assert!(
            !signals.contains(&"impossible-travel"),
            "no travel from Sydney at +{minutes}m: {signals:?}"
        );
    }
}

/// A hostile probe: 25,600 distinct action names. Events hold shared
/// strings only (past the table's bound, the `~other` marker), so the
/// history stays within its computed byte bound and the strings within the
/// action table's.
#[test]
fn distinct_action_names_stay_within_the_byte_bound() {
    let dir = policy_dir();
    let (policy, _) = PolicySet::load(dir.path()).unwrap_or_else(|r| panic!("{r}"));
    let engine =
        Service::new(policy, CacheConfig::default()).with_history(History::new(HistoryConfig {
            enabled: Enabled::On,
            limits: Limits {
                max_subjects: 1000,
                ..Limits::default()
            },
            ..HistoryConfig::default()
        }));
    let now = chrono::DateTime::from_timestamp(T0, 0).unwrap();
    let mut req = request("x", "x", 0, serde_json::json!({}));
    for i in 0..25_600i64 {
        req.subject.as_mut().unwrap().id = format!("s-{}", i % 200);
        req.action = format!("app.{i:016x}.{}", "x".repeat(64));
        engine.decide(&req, now + chrono::Duration::milliseconds(i), false);
    }
    let history = engine.history();
    assert!(
        history.bytes() <= history.max_bytes(),
        "{} > {}",
        history.bytes(),
        history.max_bytes()
    );
    let mut strings = std::collections::HashMap::new();
    for (_, h) in history.store().snapshot_all() {
        for e in &h.events {
            strings.insert(
                std::sync::Arc::as_ptr(&e.action).cast::<u8>() as usize,
                e.action.len(),
            );
        }
    }
    let bytes: usize = strings.values().sum();
    assert!(
        bytes <= stepup::history::ACTIONS.bytes,
        "{} distinct strings, {bytes} bytes",
        strings.len()
    );
    assert!(strings.len() <= stepup::history::ACTIONS.names + 1);
    let metrics = engine.render_metrics();
    assert!(
        !metrics.contains("\nstepup_history_actions_folded_total 0\n"),
        "{metrics}"
    );
}
