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
use stepup::PolicySet;
use stepup::cache::{CacheConfig, DecisionCache};
use stepup::engine::{Decision, decide_with};
use stepup::proto::v1 as pb;

fn policy() -> Arc<PolicySet> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    Arc::new(PolicySet::load(&dir).unwrap_or_else(|r| panic!("{r}")).0)
}

prop_compose! {
    fn request()(
        // Few values for what the policies read, so that a shared cache gets
        // hits; many for what they do not (session, device id), so that
        // entries are shared across requests that differ.
        action in prop::sample::select(vec![
            "payments.refund", "payments.transfer", "iam.role.grant", "environments.delete",
        ]),
        amount in prop::option::of(Just(20000.0)),
        (environment, role) in prop::sample::select(vec![("production", "admin"), ("staging", "viewer")]),
        trusted in any::<bool>(),
        country in prop::sample::select(vec!["DE", "BR"]),
        fraud in prop::option::of(Just(0.95)),
        anonymizer in prop::option::of(Just(true)),
        timezone in prop::option::of(Just("Asia/Kolkata")),
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
                id: "s".into(),
                acr: acr.into(),
                amr: amr.into_iter().map(String::from).collect(),
                auth_time: None,
            }),
            // `device.id` is read by no rule: it varies without changing keys.
            device: Some(pb::Device { id: format!("d{unread}"), trusted, ..Default::default() }),
            network: Some(pb::Network { country: country.into(), attributes: net_attrs, ..Default::default() }),
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
