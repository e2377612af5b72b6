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
