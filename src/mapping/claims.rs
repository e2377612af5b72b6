//! Subject fields as found in the request: a claim of the verified JWT
//! payload or a trusted header, read as text, list, time or any value.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use envoy_types::pb::google::protobuf as epb;
use pbjson_types::value::Kind;
use pbjson_types::{Timestamp, Value};

use crate::request::validate as convert;

/// Reads a subject field by claim or header name.
pub(super) type Reader<'a> = Box<dyn Fn(&str) -> Option<Claim<'a>> + 'a>;

/// A subject field as found: a JWT claim or a header value.
pub(super) enum Claim<'a> {
    Json(&'a epb::Value),
    Text(Cow<'a, str>),
}

impl Claim<'_> {
    pub(super) fn text(&self) -> Option<String> {
        match self {
            Claim::Text(t) => Some(t.to_string()),
            Claim::Json(v) => match &v.kind {
                Some(epb::value::Kind::StringValue(s)) => Some(s.clone()),
                // Numeric subject ids exist (e.g. GitHub's).
                Some(epb::value::Kind::NumberValue(n))
                    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 =>
                {
                    Some(format!("{n:.0}"))
                }
                _ => None,
            },
        }
    }

    /// A JSON list of strings, or a string of items separated by spaces or
    /// commas.
    pub(super) fn list(&self) -> Option<Vec<String>> {
        let split = |s: &str| {
            s.split([' ', ','])
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        };
        match self {
            Claim::Text(t) => Some(split(t)),
            Claim::Json(v) => match &v.kind {
                Some(epb::value::Kind::StringValue(s)) => Some(split(s)),
                Some(epb::value::Kind::ListValue(l)) => l
                    .values
                    .iter()
                    .map(|v| match &v.kind {
                        Some(epb::value::Kind::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            },
        }
    }

    pub(super) fn time(&self) -> Option<Timestamp> {
        let from_secs = |secs: f64| {
            if !secs.is_finite() {
                return None;
            }
            let whole = secs.floor();
            // In range: the Timestamp range is checked by validation.
            #[expect(clippy::cast_possible_truncation, reason = "checked finite, floored")]
            let seconds = whole as i64;
            #[expect(clippy::cast_possible_truncation, reason = "in 0..1e9")]
            let nanos = ((secs - whole) * 1e9) as i32;
            Some(Timestamp { seconds, nanos })
        };
        match self {
            Claim::Json(v) => match &v.kind {
                Some(epb::value::Kind::NumberValue(n)) => from_secs(*n),
                Some(epb::value::Kind::StringValue(s)) => s.trim().parse().ok().and_then(from_secs),
                _ => None,
            },
            Claim::Text(t) => {
                let t = t.trim();
                match t.parse::<i64>() {
                    Ok(seconds) => Some(Timestamp { seconds, nanos: 0 }),
                    Err(_) => DateTime::parse_from_rfc3339(t)
                        .ok()
                        .map(|d| Timestamp::from(d.with_timezone(&Utc))),
                }
            }
        }
    }

    pub(super) fn value(&self) -> Value {
        match self {
            Claim::Text(t) => Value {
                kind: Some(Kind::StringValue(t.to_string())),
            },
            Claim::Json(v) => json_value(v, 0),
        }
    }
}

/// A JSON value as Envoy's `google.protobuf.Value`; nesting past the request
/// limit is cut.
pub(super) fn from_json(v: serde_json::Value, depth: usize) -> epb::Value {
    use epb::value::Kind as E;
    let kind = match v {
        _ if depth > convert::MAX_DEPTH + 1 => E::NullValue(0),
        serde_json::Value::Null => E::NullValue(0),
        serde_json::Value::Bool(b) => E::BoolValue(b),
        serde_json::Value::Number(n) => E::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => E::StringValue(s),
        serde_json::Value::Array(a) => E::ListValue(epb::ListValue {
            values: a.into_iter().map(|v| from_json(v, depth + 1)).collect(),
        }),
        serde_json::Value::Object(o) => E::StructValue(epb::Struct {
            fields: o
                .into_iter()
                .map(|(k, v)| (k, from_json(v, depth + 1)))
                .collect(),
        }),
    };
    epb::Value { kind: Some(kind) }
}

pub(super) fn as_struct(v: &epb::Value) -> Option<&epb::Struct> {
    match &v.kind {
        Some(epb::value::Kind::StructValue(s)) => Some(s),
        _ => None,
    }
}

/// A claim by name; a dotted name that is not a claim itself walks nested
/// objects (`realm_access.roles`).
pub(super) fn claim<'a>(payload: &'a epb::Struct, name: &str) -> Option<&'a epb::Value> {
    if let Some(v) = payload.fields.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = payload.fields.get(parts.next()?)?;
    for part in parts {
        v = as_struct(v)?.fields.get(part)?;
    }
    Some(v)
}

/// Envoy's `google.protobuf.Value` as ours; nesting past the request limit
/// is cut (validation rejects it anyway).
fn json_value(v: &epb::Value, depth: usize) -> Value {
    use epb::value::Kind as E;
    let kind = match &v.kind {
        _ if depth > convert::MAX_DEPTH => Kind::NullValue(0),
        None | Some(E::NullValue(_)) => Kind::NullValue(0),
        Some(E::NumberValue(n)) => Kind::NumberValue(*n),
        Some(E::StringValue(s)) => Kind::StringValue(s.clone()),
        Some(E::BoolValue(b)) => Kind::BoolValue(*b),
        Some(E::StructValue(s)) => Kind::StructValue(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), json_value(v, depth + 1)))
                .collect(),
        ),
        Some(E::ListValue(l)) => {
            Kind::ListValue(l.values.iter().map(|v| json_value(v, depth + 1)).collect())
        }
    };
    Value { kind: Some(kind) }
}
