//! Request generators shared by the property tests of the modules that read
//! requests (the cache key, the fast path).

use std::collections::BTreeMap;

use pbjson_types::{ListValue, Struct, Timestamp, Value, value::Kind};
use proptest::prelude::*;

use crate::proto::v1 as pb;

/// The clock the generated `auth_time`s are relative to.
pub(crate) const NOW_SECS: i64 = 1_795_000_000;

pub(crate) fn kind(k: Kind) -> Value {
    Value { kind: Some(k) }
}

pub(crate) fn strings(items: &[&str]) -> Value {
    kind(Kind::ListValue(ListValue {
        values: items.iter().map(|s| Value::from((*s).to_owned())).collect(),
    }))
}

/// A JSON value of any kind, from the few that make comparisons interesting.
pub(crate) fn value() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        Value::from(5.0),
        Value::from(1000.0),
        Value::from(2500.0),
        Value::from(0.95),
        Value::from(f64::NAN),
        Value::from("production".to_owned()),
        Value::from("a".to_owned()),
        Value::from("DE".to_owned()),
        Value::from(true),
        Value::from(false),
        kind(Kind::NullValue(0)),
        strings(&["DE", "FR"]),
        strings(&[]),
        kind(Kind::ListValue(ListValue {
            values: vec![Value::from("DE".to_owned()), Value::from(1.0)],
        })),
        kind(Kind::StructValue(Struct {
            fields: [("role".to_owned(), Value::from("admin".to_owned()))].into(),
        })),
    ])
}

pub(crate) fn attributes(
    keys: &'static [&'static str],
) -> impl Strategy<Value = BTreeMap<String, Value>> {
    prop::collection::vec((prop::sample::select(keys), value()), 0..4)
        .prop_map(|kv| kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

prop_compose! {
    /// A request of the shapes the example policies read (shared with the
    /// cache key's tests).
    pub(crate) fn request()(
        action in prop::sample::select(vec!["payments.refund", "orders.list"]),
        roles in prop::sample::subsequence(vec!["admin", "support"], 0..=2),
        subject_attrs in attributes(&["usual_countries", "x"]),
        has_subject in any::<bool>(),
        auth_time in prop::option::of(-7200i64..7200),
        has_device in any::<bool>(),
        trusted in any::<bool>(),
        device_id in prop::sample::select(vec!["", "d-1"]),
        country in prop::sample::select(vec!["", "DE", "KP", "BR"]),
        ip in prop::sample::select(vec!["", "203.0.113.7", "10.0.0.1", "::1", "not-an-ip"]),
        asn in prop::sample::select(vec![0i64, 3320]),
        network_attrs in attributes(&["anonymizer"]),
        resource_attrs in attributes(&["amount", "environment", "role", "x"]),
        attrs in attributes(&["fraud_score", "x"]),
    ) -> pb::DecideRequest {
        pb::DecideRequest {
            action: action.to_owned(),
            subject: has_subject.then(|| pb::Subject {
                id: "u".into(),
                tenant: "acme".into(),
                roles: roles.into_iter().map(String::from).collect(),
                attributes: subject_attrs,
            }),
            session: Some(pb::Session {
                auth_time: auth_time.map(|s| Timestamp { seconds: NOW_SECS + s, nanos: 0 }),
                ..Default::default()
            }),
            device: has_device.then(|| pb::Device {
                id: device_id.into(),
                trusted,
                ..Default::default()
            }),
            network: Some(pb::Network {
                ip: ip.into(),
                country: country.into(),
                asn,
                attributes: network_attrs,
            }),
            resource: Some(pb::Resource {
                attributes: resource_attrs,
                ..Default::default()
            }),
            attributes: attrs,
            ..Default::default()
        }
    }
}
