#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! Property: the decision cache never changes an answer. Random request
//! contexts and clocks over the example policies, decided through one shared
//! cache (so earlier cases warm later ones) and without a cache, must agree
//! on everything but the decision id and the cache flag.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use pbjson_types::{Timestamp, Value};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use stepup::CacheConfig;
use stepup::Decision;
use stepup::PolicySet;
use stepup::internal::DecisionCache;
use stepup::internal::decide_with;
use stepup::proto::v1 as pb;

fn policy() -> Arc<PolicySet> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    Arc::new(PolicySet::load(&dir).unwrap_or_else(|r| panic!("{r}")).0)
}

prop_compose! {
    fn request()(
        // Few values for what the policies read, so that a shared cache gets
        // hits; many for what they do not (the session id), so that
        // entries are shared across requests that differ.
        action in prop::sample::select(vec![
            "payments.refund", "payments.transfer", "iam.role.grant", "environments.delete",
        ]),
        amount in prop::option::of(Just(20000.0)),
        (environment, role) in prop::sample::select(vec![("production", "admin"), ("staging", "viewer")]),
        trusted in any::<bool>(),
        country in prop::sample::select(vec!["DE", "BR"]),
        // Now and then an address in `lists/tor_exits.txt` (`ip_in`).
        tor in prop::option::weighted(0.2, Just("203.0.113.201")),
        fraud in prop::option::of(Just(0.95)),
        anonymizer in prop::option::of(Just(true)),
        timezone in prop::option::of(prop::sample::select(vec!["Asia/Kolkata", "+05:17"])),
        acr in prop::sample::select(vec!["urn:stepup:aal1", "urn:stepup:aal2", "phr", "unknown"]),
        amr in prop::sample::subsequence(vec!["pwd", "otp", "hwk"], 0..=3),
        auth_age in prop::option::of(-600i64..4000),
        unread in any::<u32>(),
    ) -> (pb::DecideRequest, Option<i64>) {
        let mut subject_attrs = std::collections::BTreeMap::from([(
            "usual_countries".to_owned(),
            serde_json::from_str::<Value>(r#"["DE","FR"]"#).unwrap(),
        )]);
        if let Some(tz) = timezone {
            subject_attrs.insert("timezone".into(), Value::from(tz.to_owned()));
        }
        let mut resource_attrs = std::collections::BTreeMap::from([
            ("environment".to_owned(), Value::from(environment.to_owned())),
            ("role".to_owned(), Value::from(role.to_owned())),
        ]);
        if let Some(a) = amount {
            resource_attrs.insert("amount".into(), Value::from(a));
        }
        let mut attrs = std::collections::BTreeMap::new();
        if let Some(f) = fraud {
            attrs.insert("fraud_score".to_owned(), Value::from(f));
        }
        let mut net_attrs = std::collections::BTreeMap::new();
        if let Some(a) = anonymizer {
            net_attrs.insert("anonymizer".to_owned(), Value::from(a));
        }
        let req = pb::DecideRequest {
            action: action.into(),
            subject: Some(pb::Subject { id: "u".into(), attributes: subject_attrs, ..Default::default() }),
            session: Some(pb::Session {
                // `session.id` is read by no rule: it varies without changing keys.
                id: format!("s{unread}"),
                acr: acr.into(),
                amr: amr.into_iter().map(String::from).collect(),
                auth_time: None,
            }),
            // `device.id` is read (`behaviour.yaml`): few values.
            device: Some(pb::Device { id: format!("d{}", unread % 2), trusted, ..Default::default() }),
            network: Some(pb::Network {
                ip: tor.unwrap_or_default().into(),
                country: country.into(),
                attributes: net_attrs,
                ..Default::default()
            }),
            resource: Some(pb::Resource { attributes: resource_attrs, ..Default::default() }),
            attributes: attrs,
            ..Default::default()
        };
        (req, auth_age)
    }
}

/// Everything a caller sees, minus the id and the cache flag.
fn observable(d: &Decision) -> impl PartialEq + std::fmt::Debug + use<> {
    (
        d.outcome,
        d.assessment.risk_score,
        d.assessment.signals.clone(),
        d.assessment.matched.clone(),
        d.assessment.errors.clone(),
        d.unmet.clone(),
        d.challenge_level,
        d.max_age,
        d.www_authenticate(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn cached_equals_uncached(
        (mut req, auth_age) in request(),
        // Around quarter-hour boundaries (and 2026-03-29 01:00 UTC, a DST
        // change in Europe), at random seconds.
        minutes in prop::sample::select(vec![0i64, 14, 15, 29, 30, 1499, 1500, 1501]),
        seconds in 0i64..60,
    ) {
        thread_local! {
            static SHARED: (Arc<PolicySet>, DecisionCache) = (
                policy(),
                DecisionCache::new(CacheConfig::default()).unwrap(),
            );
        }
        let start: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 3, 28, 0, 0, 0).unwrap();
        let now = start + chrono::Duration::minutes(minutes) + chrono::Duration::seconds(seconds);
        if let (Some(s), Some(age)) = (req.session.as_mut(), auth_age) {
            s.auth_time = Some(Timestamp { seconds: now.timestamp() - age, nanos: 0 });
        }
        SHARED.with(|(policy, cache)| {
            let cached = decide_with(Arc::clone(policy), Some(cache), &req, now, false);
            let fresh = decide_with(Arc::clone(policy), None, &req, now, false);
            prop_assert_eq!(observable(&cached), observable(&fresh));
            Ok(())
        })?;
    }

    #[test]
    fn decide_is_deterministic((req, _) in request(), minutes in 0i64..(24 * 60)) {
        let policy = policy();
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(minutes);
        let a = decide_with(Arc::clone(&policy), None, &req, now, false);
        let b = decide_with(Arc::clone(&policy), None, &req, now, false);
        prop_assert_eq!(observable(&a), observable(&b));
        prop_assert_ne!(a.id, b.id);
    }
}

/// Calendar reads of `now` are cached per time step (a quarter hour for
/// `getHours`), which holds only where the time zone's offset is a whole
/// number of steps: a fixed offset like `+05:17`, or a zone's local mean time
/// before 1900, is not. Every 20 seconds over a few hours around an hour
/// boundary of each zone, in order, through one cache: cached == uncached.
#[test]
fn calendar_reads_stay_exact_in_any_time_zone() {
    let policy = policy();
    let cache = DecisionCache::new(CacheConfig::default()).unwrap();
    let zones = [
        "+05:17",
        "-03:07",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Europe/Berlin",
        "Mars/Base",
    ];
    let starts = [
        Utc.with_ymd_and_hms(2026, 3, 28, 22, 0, 0).unwrap(),
        // Europe/Berlin changes to summer time at 01:00 UTC.
        Utc.with_ymd_and_hms(2026, 3, 29, 0, 0, 0).unwrap(),
        // Local mean time: Kolkata +05:53:28, Kathmandu +05:41:16.
        Utc.with_ymd_and_hms(1890, 3, 1, 0, 0, 0).unwrap(),
    ];
    let mut hits = 0;
    for zone in zones {
        let req: pb::DecideRequest = serde_json::from_value(serde_json::json!({
            "action": "payments.refund",
            "subject": { "id": "u", "attributes": { "timezone": zone } },
            "device": { "id": "d", "trusted": true },
            "resource": { "attributes": { "amount": 50 } },
        }))
        .unwrap();
        for start in starts {
            for step in 0..(4 * 180) {
                let now = start + chrono::Duration::seconds(20 * step);
                let cached = decide_with(Arc::clone(&policy), Some(&cache), &req, now, false);
                let fresh = decide_with(Arc::clone(&policy), None, &req, now, false);
                assert_eq!(
                    observable(&cached),
                    observable(&fresh),
                    "{zone} at {now} (cache hit: {})",
                    cached.cache_hit
                );
                hits += usize::from(cached.cache_hit);
            }
        }
    }
    // Zones whose offsets are whole quarter hours are still cached.
    assert!(hits > 4 * 180, "only {hits} hits");
}

#[test]
fn the_property_test_sees_cache_hits() {
    // Guard against a vacuous property: the generator's space is small
    // enough that a shared cache gets hits.
    let policy = policy();
    let cache = DecisionCache::new(CacheConfig::default()).unwrap();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let now = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
    let mut hits = 0;
    for _ in 0..500 {
        let (req, _) = request().new_tree(&mut runner).unwrap().current();
        if decide_with(Arc::clone(&policy), Some(&cache), &req, now, false).cache_hit {
            hits += 1;
        }
    }
    assert!(hits > 50, "only {hits} hits in 500 decisions");
}

/// A set whose signals and rules read `history` next to ones that do not.
const HISTORY_POLICY: &str = r#"
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
    when: "!history.device_known"
    score: 20
  - id: travel
    when: "history.travel_kmh > 900.0"
    score: 40
  - id: failures
    when: "history.stepups_failed >= 2"
    score: 40
  - id: foreign
    when: "network.country != 'DE'"
    score: 10
rules:
  - id: risky
    actions: ["*"]
    when: "risk.score >= 50"
    effect: challenge
    require: { level: aal2 }
  - id: burst
    actions: ["payments.*"]
    when: 'history.count("payments.*", duration("1h")) >= 2 || history.devices_seen > 2'
    effect: challenge
    require: { level: aal2 }
  - id: big
    actions: ["payments.refund"]
    when: "resource.attributes.amount > 100.0"
    effect: challenge
    require: { level: aal2 }
  - id: dormant
    actions: ["account.*"]
    when: 'now - history.last_seen > duration("2h") && history.last_country != network.country'
    effect: deny
"#;

/// One step of a random sequence: a decision, or a step-up report.
#[derive(Clone, Debug)]
enum Step {
    Decide {
        subject: u8,
        device: u8,
        action: &'static str,
        aal2: bool,
        place: u8,
        amount: f64,
        after: i64,
    },
    StepUp {
        subject: u8,
        success: bool,
        after: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..3, 0u8..4, prop::sample::select(vec!["payments.refund", "payments.transfer", "account.view"]),
              any::<bool>(), 0u8..3, prop::sample::select(vec![50.0, 500.0]), 0i64..5000)
            .prop_map(|(subject, device, action, aal2, place, amount, after)| Step::Decide {
                subject, device, action, aal2, place, amount, after,
            }),
        1 => (0u8..3, any::<bool>(), 0i64..600)
            .prop_map(|(subject, success, after)| Step::StepUp { subject, success, after }),
    ]
}

fn history_engine(cache: CacheConfig) -> stepup::Service {
    use stepup::history::{Enabled, History, HistoryConfig, Secret};
    let (policy, _) =
        PolicySet::from_str("h.yaml", HISTORY_POLICY).unwrap_or_else(|r| panic!("{r}"));
    stepup::Service::new(policy, cache).with_history(History::new(HistoryConfig {
        enabled: Enabled::On,
        hash_key: Some(Secret("k".into())),
        ..HistoryConfig::default()
    }))
}

fn history_request(
    subject: u8,
    device: u8,
    action: &str,
    aal2: bool,
    place: u8,
    amount: f64,
) -> pb::DecideRequest {
    let (country, coords) = match place {
        0 => ("DE", Some((52.52, 13.405))),
        1 => ("AU", Some((-33.87, 151.21))),
        _ => ("DE", None),
    };
    let mut net_attrs = std::collections::BTreeMap::new();
    if let Some((lat, lon)) = coords {
        net_attrs.insert("lat".to_owned(), Value::from(lat));
        net_attrs.insert("lon".to_owned(), Value::from(lon));
    }
    pb::DecideRequest {
        action: action.into(),
        subject: Some(pb::Subject {
            id: format!("u{subject}"),
            ..Default::default()
        }),
        session: Some(pb::Session {
            id: format!("s{subject}"),
            acr: if aal2 {
                "urn:stepup:aal2"
            } else {
                "urn:stepup:aal1"
            }
            .into(),
            ..Default::default()
        }),
        device: Some(pb::Device {
            id: format!("d{device}"),
            ..Default::default()
        }),
        network: Some(pb::Network {
            country: country.into(),
            attributes: net_attrs,
            ..Default::default()
        }),
        resource: Some(pb::Resource {
            attributes: std::collections::BTreeMap::from([(
                "amount".to_owned(),
                Value::from(amount),
            )]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// With rules reading `history`, a cached engine and an uncached one fed
    /// the same sequence of decisions and step-up reports agree at every step.
    #[test]
    fn cached_equals_uncached_with_history(steps in prop::collection::vec(step(), 1..40)) {
        let cached = history_engine(CacheConfig::default());
        let fresh = history_engine(CacheConfig { capacity: 0, ..CacheConfig::default() });
        let mut now = Utc.with_ymd_and_hms(2026, 3, 28, 0, 0, 0).unwrap();
        for s in steps {
            match s {
                Step::Decide { subject, device, action, aal2, place, amount, after } => {
                    now += chrono::Duration::seconds(after);
                    let req = history_request(subject, device, action, aal2, place, amount);
                    let a = cached.decide(&req, now, false);
                    let b = fresh.decide(&req, now, false);
                    prop_assert_eq!(observable(&a), observable(&b));
                }
                Step::StepUp { subject, success, after } => {
                    now += chrono::Duration::seconds(after);
                    for engine in [&cached, &fresh] {
                        let h = engine.history();
                        let k = h.keyer();
                        h.report(stepup::history::StepUpReport {
                            subject: k.subject("", &format!("u{subject}")),
                            session: Some(k.session(&format!("s{subject}"))),
                            device: Some(k.device("d0")),
                            acr: Some(Arc::from("urn:stepup:aal2")),
                            amr: Vec::new(),
                            auth_time: now.timestamp_millis(),
                            at: now.timestamp_millis(),
                            success,
                        });
                    }
                }
            }
        }
    }
}
