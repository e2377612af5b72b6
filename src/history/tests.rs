//! The history through the engine: GeoIP location, elevation, recording
//! modes.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{TimeZone, Utc};

use super::*;
use crate::cache::CacheConfig;
use crate::lists::{Lists, ListsConfig, mmdb_writer};
use crate::service::Service;

const POLICY: &str = r#"
apiVersion: stepup/v1
kind: Levels
levels:
  - name: aal1
    acr: ["a1"]
  - name: aal2
    acr: ["a2"]
---
apiVersion: stepup/v1
kind: Policy
name: p
signals:
  - id: travel
    when: "history.travel_kmh > 900.0"
    score: 50
  - id: was-au
    when: 'history.last_country == "AU"'
    score: 5
"#;

fn request(ip: &str) -> DecideRequest {
    serde_json::from_value(serde_json::json!({
        "action": "x",
        "subject": { "id": "alice" },
        "network": { "ip": ip },
    }))
    .unwrap()
}

#[test]
fn geoip_locates_requests_without_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = mmdb_writer::MmdbWriter::new("GeoLite2-City");
    w.insert(
        "192.0.2.0/24",
        mmdb_writer::Value::city("DE", 52.52, 13.405),
    );
    w.insert(
        "198.51.100.0/24",
        mmdb_writer::Value::city("AU", -33.87, 151.21),
    );
    let path = dir.path().join("city.mmdb");
    std::fs::write(&path, w.finish()).unwrap();
    let lists = Lists::load(
        &ListsConfig {
            ip: BTreeMap::new(),
            geoip_city: Some(path),
        },
        None,
        None,
    )
    .unwrap();
    let (policy, _) = PolicySet::from_str_with("p.yaml", POLICY, Arc::new(lists)).unwrap();
    let engine = Service::new(policy, CacheConfig::default());
    let t0 = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
    let d = engine.decide(&request("192.0.2.7"), t0, false);
    assert_eq!(d.assessment.risk_score, 0);
    // Sydney half an hour after Berlin, both from the database.
    let d = engine.decide(
        &request("198.51.100.9"),
        t0 + chrono::Duration::minutes(30),
        false,
    );
    assert_eq!(&*d.assessment.signals, [Arc::from("travel")]);
    // The country came from the database too.
    let d = engine.decide(
        &request("198.51.100.9"),
        t0 + chrono::Duration::hours(30),
        false,
    );
    assert_eq!(&*d.assessment.signals, [Arc::from("was-au")]);
    // An address the database does not know: no location, nothing changes.
    let d = engine.decide(
        &request("203.0.113.1"),
        t0 + chrono::Duration::hours(31),
        false,
    );
    assert_eq!(&*d.assessment.signals, [Arc::from("was-au")]);
}

#[test]
fn auto_records_only_for_sets_that_read_history() {
    let quiet = "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - name: aal1\n    acr: [a1]\n";
    let (policy, _) = PolicySet::from_str("p.yaml", quiet).unwrap();
    let engine = Service::new(policy, CacheConfig::default());
    let t0 = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
    engine.decide(&request("192.0.2.7"), t0, false);
    assert!(
        engine.history().store().is_empty(),
        "auto: nothing reads history"
    );
    let (policy, _) = PolicySet::from_str("p.yaml", POLICY).unwrap();
    engine.replace_policy(policy);
    engine.decide(&request("192.0.2.7"), t0, false);
    assert_eq!(engine.history().store().len(), 1);
    let mut metrics = String::new();
    engine.history().render_metrics(&mut metrics);
    assert!(
        metrics.contains("\nstepup_history_subjects 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nstepup_history_evictions_total 0\n"),
        "{metrics}"
    );
    // Identifiers are stored hashed only.
    let dump = format!("{:?}", engine.history().store().snapshot_all());
    assert!(
        !dump.contains("alice") && !dump.contains("192.0.2.7"),
        "{dump}"
    );
}

const SIGNALS_POLICY: &str = r#"
apiVersion: stepup/v1
kind: Levels
levels:
  - name: aal1
    acr: ["a1"]
  - name: aal2
    acr: ["a2"]
---
apiVersion: stepup/v1
kind: Policy
name: p
rules:
  - id: revoked
    actions: ["*"]
    when: "history.session_revoked"
    effect: deny
    message: This session was revoked
  - id: transfer
    actions: ["transfer"]
    effect: challenge
    require: { level: aal2 }
  - id: credential
    actions: ["read"]
    when: 'now - history.credential_changed < duration("24h") || history.risk_level == "high" || (has(history.device_compliant) && !history.device_compliant)'
    effect: challenge
    require: { level: aal2 }
"#;

fn signal_request(action: &str, session: &str) -> DecideRequest {
    serde_json::from_value(serde_json::json!({
        "action": action,
        "subject": { "id": "alice", "tenant": "acme" },
        "session": { "id": session, "acr": "a1", "authTime": "2026-11-27T09:00:00Z" },
        "device": { "id": "d-1" },
    }))
    .unwrap()
}

/// Revocation, lowering, credential change, risk and device compliance
/// through a service with the decision cache on: a revoked session is
/// denied on the next decision whatever the cache holds, and the trace
/// names the event.
#[test]
fn signals_change_the_next_decision_and_the_trace_names_the_event() {
    let (policy, _) = PolicySet::from_str("p.yaml", SIGNALS_POLICY).unwrap();
    let service = Service::new(policy, CacheConfig::default());
    let h = service.history();
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
    let ms = now.timestamp_millis();
    let keyer = h.keyer().clone();
    let subject = keyer.subject("acme", "alice");
    let mark = |jti: &str, ago: i64| signals::Mark {
        at: ms - ago,
        jti: Arc::from(jti),
    };
    let read = signal_request("read", "s-1");
    for _ in 0..2 {
        assert_eq!(service.decide(&read, now, false).outcome, Outcome::Allow);
    }
    // An elevation of s-1, then a revocation of s-1 only.
    h.report(StepUpReport {
        subject,
        session: Some(keyer.session("s-1")),
        device: None,
        acr: Some(Arc::from("a2")),
        amr: Vec::new(),
        auth_time: ms - 60_000,
        at: ms - 60_000,
        success: true,
    });
    let transfer = signal_request("transfer", "s-1");
    assert_eq!(
        service.decide(&transfer, now, false).outcome,
        Outcome::Allow
    );
    h.signal(Signal {
        subject,
        effect: signals::Effect::SessionRevoked {
            session: Some(keyer.session("s-1")),
        },
        mark: mark("jti-revoke", 1000),
    });
    let d = service.decide(&read, now, false);
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(
        h.elevate(&d.policy, &transfer, now).is_none(),
        "the elevation ended"
    );
    let explained = service.decide(&read, now, true);
    let entry = explained
        .trace
        .iter()
        .find(|t| &*t.id == "revoked")
        .unwrap();
    assert!(entry.fired);
    assert!(
        entry
            .detail
            .contains("history.session_revoked from event `jti-revoke`"),
        "{}",
        entry.detail
    );
    // Another session is not revoked.
    let other = signal_request("read", "s-2");
    assert_eq!(service.decide(&other, now, false).outcome, Outcome::Allow);

    // A credential change within 24 h challenges `read`; one 25 h ago does not.
    h.signal(Signal {
        subject,
        effect: signals::Effect::CredentialChanged,
        mark: mark("jti-cred-old", 25 * 3_600_000),
    });
    assert_eq!(service.decide(&other, now, false).outcome, Outcome::Allow);
    h.signal(Signal {
        subject,
        effect: signals::Effect::CredentialChanged,
        mark: mark("jti-cred", 3_600_000),
    });
    assert_eq!(
        service.decide(&other, now, false).outcome,
        Outcome::Challenge
    );
    let s = h.store().get(subject, ms).unwrap();
    let view = h.view(&service.policy(), &other, ms).view;
    assert_eq!(view.credential_changed, ms - 3_600_000);
    assert_eq!(view.risk_level, None);
    assert_eq!(view.device_compliant, None);
    drop(s);
}

/// Device compliance and the transmitter's risk level: the later report
/// wins, and the trace names the event.
#[test]
fn compliance_and_risk_reach_the_rules() {
    let (policy, _) = PolicySet::from_str("p.yaml", SIGNALS_POLICY).unwrap();
    let service = Service::new(policy, CacheConfig::default());
    let h = service.history();
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
    let ms = now.timestamp_millis();
    let keyer = h.keyer().clone();
    let mark = |jti: &str, ago: i64| signals::Mark {
        at: ms - ago,
        jti: Arc::from(jti),
    };
    // Risk and compliance, for a subject without a credential change.
    let bob: DecideRequest = serde_json::from_value(serde_json::json!({
        "action": "read",
        "subject": { "id": "bob", "tenant": "acme" },
        "device": { "id": "d-1" },
    }))
    .unwrap();
    let bob_key = keyer.subject("acme", "bob");
    assert_eq!(service.decide(&bob, now, false).outcome, Outcome::Allow);
    h.signal(Signal {
        subject: bob_key,
        effect: signals::Effect::DeviceCompliance {
            device: keyer.device("d-1"),
            compliant: true,
        },
        mark: mark("jti-dev", 10),
    });
    assert_eq!(service.decide(&bob, now, false).outcome, Outcome::Allow);
    h.signal(Signal {
        subject: bob_key,
        effect: signals::Effect::DeviceCompliance {
            device: keyer.device("d-1"),
            compliant: false,
        },
        mark: mark("jti-dev2", 5),
    });
    assert_eq!(service.decide(&bob, now, false).outcome, Outcome::Challenge);
    h.signal(Signal {
        subject: bob_key,
        effect: signals::Effect::DeviceCompliance {
            device: keyer.device("d-1"),
            compliant: true,
        },
        mark: mark("jti-dev3", 1),
    });
    assert_eq!(service.decide(&bob, now, false).outcome, Outcome::Allow);
    h.signal(Signal {
        subject: bob_key,
        effect: signals::Effect::RiskLevel(signals::RiskLevel::High),
        mark: mark("jti-risk", 1),
    });
    let d = service.decide(&bob, now, true);
    assert_eq!(d.outcome, Outcome::Challenge);
    let entry = d.trace.iter().find(|t| &*t.id == "credential").unwrap();
    assert!(
        entry
            .detail
            .contains("history.risk_level from event `jti-risk`"),
        "{}",
        entry.detail
    );
}

/// A lowered level ends the session's elevation; a later elevation counts
/// again. The subject's history round-trips through JSON (a shared backend)
/// with its signals.
#[test]
fn a_lowered_level_ends_the_elevation_and_signals_travel_in_json() {
    let (policy, _) = PolicySet::from_str("p.yaml", SIGNALS_POLICY).unwrap();
    let service = Service::new(policy, CacheConfig::default());
    let h = service.history();
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
    let ms = now.timestamp_millis();
    let keyer = h.keyer().clone();
    let subject = keyer.subject("acme", "alice");
    let key = keyer.session("s-1");
    let session = Some(key);
    let report = |at: i64| StepUpReport {
        subject,
        session,
        device: None,
        acr: Some(Arc::from("a2")),
        amr: Vec::new(),
        auth_time: at,
        at,
        success: true,
    };
    let transfer = signal_request("transfer", "s-1");
    h.report(report(ms - 120_000));
    assert_eq!(
        service.decide(&transfer, now, false).outcome,
        Outcome::Allow
    );
    h.signal(Signal {
        subject,
        effect: signals::Effect::LevelLowered { session },
        mark: signals::Mark {
            at: ms - 60_000,
            jti: Arc::from("down"),
        },
    });
    assert_eq!(
        service.decide(&transfer, now, false).outcome,
        Outcome::Challenge
    );
    h.report(report(ms - 30_000));
    assert_eq!(
        service.decide(&transfer, now, false).outcome,
        Outcome::Allow
    );

    let stored = h.store().get(subject, ms).unwrap().lock().clone();
    let json = serde_json::to_string(&stored).unwrap();
    let back: SubjectHistory = serde_json::from_str(&json).unwrap();
    assert_eq!(back, stored);
    assert!(back.signals.is_some());
    // Merged into a replica that never saw the event, it ends the older
    // elevation there too.
    let mut replica = SubjectHistory::default();
    replica.step_up(&report(ms - 120_000), &h.config().limits);
    assert!(replica.elevation(key, ms).is_some());
    let mut lowered_only = back.clone();
    lowered_only.elevations.clear();
    replica.merge(&lowered_only, &h.config().limits);
    assert!(replica.elevation(key, ms).is_none());
}

/// An elevation lifts `(acr, amr, auth_time)` as one unit, and only from a
/// level at least the caller's own: an old strong session plus a fresh weak
/// (or acr-less) re-authentication of the same session never reads as a
/// fresh strong one.
#[test]
fn elevation_lifts_acr_amr_and_auth_time_together_from_an_equal_or_higher_level() {
    let levels = "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - name: aal1\n    acr: [\"a1\"]\n  - name: aal2\n    acr: [\"a2\", \"a2-alt\"]\n  - name: aal3\n    acr: [\"a3\"]\n";
    let (policy, _) = PolicySet::from_str("p.yaml", levels).unwrap();
    let service = Service::new(policy, CacheConfig::default());
    let h = service.history();
    let policy = service.policy();
    let now = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
    let ms = now.timestamp_millis();
    let keyer = h.keyer().clone();
    let old = "2026-11-27T09:00:00Z";
    let session = |sid: &str, acr: &str| -> DecideRequest {
        serde_json::from_value(serde_json::json!({
            "action": "transfer",
            "subject": { "id": "alice" },
            "session": { "id": sid, "acr": acr, "amr": ["hwk"], "authTime": old },
        }))
        .unwrap()
    };
    let report = |sid: &str, acr: Option<&str>, amr: &[&str]| {
        h.report(StepUpReport {
            subject: keyer.subject("", "alice"),
            session: Some(keyer.session(sid)),
            device: None,
            acr: acr.map(Arc::from),
            amr: amr.iter().map(|m| Arc::from(*m)).collect(),
            auth_time: ms - 60_000,
            at: ms - 60_000,
            success: true,
        })
    };
    // An old aal3 session re-authenticated at aal1, or without acr, a
    // minute ago: still the old aal3 authentication.
    report("s-low", Some("a1"), &["pwd"]);
    assert_eq!(h.elevate(&policy, &session("s-low", "a3"), now), None);
    report("s-none", None, &["pwd"]);
    assert_eq!(h.elevate(&policy, &session("s-none", "a3"), now), None);
    assert_eq!(h.elevate(&policy, &session("s-none", "a1"), now), None);
    // The same level (another acr of it), fresher: taken whole.
    report("s-same", Some("a2-alt"), &["otp"]);
    let lifted = h.elevate(&policy, &session("s-same", "a2"), now).unwrap();
    let s = lifted.session.unwrap();
    assert_eq!(s.acr, "a2-alt");
    assert_eq!(s.amr, vec!["otp".to_owned()], "amr comes with the unit");
    assert_eq!(s.auth_time.unwrap().seconds, (ms - 60_000) / 1000);
    // A higher level: taken whole.
    report("s-high", Some("a3"), &["hwk"]);
    let s = h
        .elevate(&policy, &session("s-high", "a1"), now)
        .unwrap()
        .session
        .unwrap();
    assert_eq!(
        (s.acr.as_str(), s.auth_time.unwrap().seconds),
        ("a3", (ms - 60_000) / 1000)
    );
    // The same level but older than the caller's own: nothing changes.
    let mut fresh = session("s-same", "a2");
    if let Some(s) = fresh.session.as_mut() {
        s.auth_time = Some(pbjson_types::Timestamp {
            seconds: ms / 1000,
            nanos: 0,
        });
    }
    assert_eq!(h.elevate(&policy, &fresh, now), None);
}
