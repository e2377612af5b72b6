//! A `DecideRequest` as its proto3 JSON, written field by field without
//! serde: the same text pbjson's `Serialize` impl writes through
//! [`crate::json::write`], for less (the decision log writes one per
//! decision). Every message is destructured without `..`,
//! so a field added to the proto does not compile until it is written here;
//! the tests hold the text to pbjson's.

use chrono::{DateTime, Datelike, Timelike, Utc};
use pbjson_types::value::Kind;
use pbjson_types::{ListValue, Struct, Timestamp, Value};

use crate::json::{Obj, key, write_f64, write_int, write_str};
use crate::proto::v1::{DecideRequest, Device, Network, Resource, Session, Subject};

/// Appends the proto3 JSON of `r` to `out`.
pub fn write_request(out: &mut Vec<u8>, r: &DecideRequest) {
    let DecideRequest {
        action,
        subject,
        session,
        device,
        network,
        resource,
        attributes,
        time,
        explain,
    } = r;
    let mut o = Obj::new(out);
    o.text(key!("action"), action);
    if let Some(v) = subject {
        write_subject(o.key(key!("subject")), v);
    }
    if let Some(v) = session {
        write_session(o.key(key!("session")), v);
    }
    if let Some(v) = device {
        write_device(o.key(key!("device")), v);
    }
    if let Some(v) = network {
        write_network(o.key(key!("network")), v);
    }
    if let Some(v) = resource {
        write_resource(o.key(key!("resource")), v);
    }
    if !attributes.is_empty() {
        write_map(o.key(key!("attributes")), attributes);
    }
    if let Some(t) = time {
        write_timestamp(o.key(key!("time")), t);
    }
    if *explain {
        o.raw(key!("explain"), b"true");
    }
    o.end();
}

fn write_subject(out: &mut Vec<u8>, s: &Subject) {
    let Subject {
        id,
        tenant,
        roles,
        attributes,
    } = s;
    let mut o = Obj::new(out);
    o.text(key!("id"), id);
    o.text(key!("tenant"), tenant);
    o.strs(key!("roles"), roles.iter().map(String::as_str));
    if !attributes.is_empty() {
        write_map(o.key(key!("attributes")), attributes);
    }
    o.end();
}

fn write_session(out: &mut Vec<u8>, s: &Session) {
    let Session {
        id,
        acr,
        amr,
        auth_time,
    } = s;
    let mut o = Obj::new(out);
    o.text(key!("id"), id);
    o.text(key!("acr"), acr);
    o.strs(key!("amr"), amr.iter().map(String::as_str));
    if let Some(t) = auth_time {
        write_timestamp(o.key(key!("authTime")), t);
    }
    o.end();
}

fn write_device(out: &mut Vec<u8>, d: &Device) {
    let Device {
        id,
        trusted,
        platform,
        attributes,
    } = d;
    let mut o = Obj::new(out);
    o.text(key!("id"), id);
    if *trusted {
        o.raw(key!("trusted"), b"true");
    }
    o.text(key!("platform"), platform);
    if !attributes.is_empty() {
        write_map(o.key(key!("attributes")), attributes);
    }
    o.end();
}

fn write_network(out: &mut Vec<u8>, n: &Network) {
    let Network {
        ip,
        country,
        asn,
        attributes,
    } = n;
    let mut o = Obj::new(out);
    o.text(key!("ip"), ip);
    o.text(key!("country"), country);
    if *asn != 0 {
        // An int64: a string in proto3 JSON (as pbjson writes it).
        let out = o.key(key!("asn"));
        out.push(b'"');
        write_int(out, *asn);
        out.push(b'"');
    }
    if !attributes.is_empty() {
        write_map(o.key(key!("attributes")), attributes);
    }
    o.end();
}

fn write_resource(out: &mut Vec<u8>, r: &Resource) {
    let Resource {
        r#type,
        id,
        attributes,
    } = r;
    let mut o = Obj::new(out);
    o.text(key!("type"), r#type);
    o.text(key!("id"), id);
    if !attributes.is_empty() {
        write_map(o.key(key!("attributes")), attributes);
    }
    o.end();
}

/// An attribute map (`map<string, google.protobuf.Value>`), in the map's
/// order (sorted for the request's `BTreeMap`s, as pbjson writes them).
fn write_map<'m, M>(out: &mut Vec<u8>, map: &'m M)
where
    &'m M: IntoIterator<Item = (&'m String, &'m Value)>,
{
    out.push(b'{');
    for (i, (k, v)) in map.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

/// A `google.protobuf.Value` as its JSON value. A NaN or infinite number
/// (which pbjson refuses to write, losing the whole line) is `null`; the
/// gRPC API rejects such requests before they are decided anyway.
fn write_value(out: &mut Vec<u8>, v: &Value) {
    let Value { kind } = v;
    match kind {
        None | Some(Kind::NullValue(_)) => out.extend_from_slice(b"null"),
        Some(Kind::NumberValue(n)) => write_f64(out, *n),
        Some(Kind::StringValue(s)) => write_str(out, s),
        Some(Kind::BoolValue(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Some(Kind::StructValue(Struct { fields })) => write_map(out, fields),
        Some(Kind::ListValue(ListValue { values })) => {
            out.push(b'[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, v);
            }
            out.push(b']');
        }
    }
}

/// A timestamp as pbjson writes it (chrono's `to_rfc3339`: UTC as `+00:00`,
/// a fraction of 3, 6 or 9 digits when there is one), without formatting
/// through `fmt`. One that is no valid time (pbjson cannot write it either)
/// is `null`.
fn write_timestamp(out: &mut Vec<u8>, t: &Timestamp) {
    let Some(time) = u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
    else {
        out.extend_from_slice(b"null");
        return;
    };
    let nanos = time.timestamp_subsec_nanos();
    let (digits, fraction) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (3, n / 1_000_000),
        n if n % 1_000 == 0 => (6, n / 1_000),
        n => (9, n),
    };
    if !write_date_time(out, &time, digits, fraction) {
        write_str(out, &time.to_rfc3339());
        return;
    }
    out.extend_from_slice(b"+00:00\"");
}

/// Appends `"YYYY-MM-DDTHH:MM:SS[.fraction]` (no zone, no closing quote);
/// `false`, with nothing written, for a year outside 0..=9999 or a leap
/// second, which callers format the slow way.
pub(crate) fn write_date_time(
    out: &mut Vec<u8>,
    t: &DateTime<Utc>,
    digits: u32,
    fraction: u32,
) -> bool {
    let year = t.year();
    let Ok(year) = u32::try_from(year) else {
        return false;
    };
    if year > 9999 || t.timestamp_subsec_nanos() >= 1_000_000_000 {
        return false;
    }
    let two = |n: u32| [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
    let [y0, y1] = two(year / 100);
    let [y2, y3] = two(year);
    let [mo0, mo1] = two(t.month());
    let [d0, d1] = two(t.day());
    let [h0, h1] = two(t.hour());
    let [mi0, mi1] = two(t.minute());
    let [s0, s1] = two(t.second());
    out.reserve(32);
    out.extend_from_slice(&[
        b'"', y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1, b'T', h0, h1, b':', mi0, mi1, b':', s0,
        s1,
    ]);
    if digits > 0 {
        let mut buf = [b'0'; 10];
        buf[0] = b'.';
        let mut n = fraction;
        for b in buf.iter_mut().skip(1).take(digits as usize).rev() {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend_from_slice(buf.get(..=digits as usize).unwrap_or_default());
    }
    true
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    type Attributes = BTreeMap<String, Value>;

    fn ours(r: &DecideRequest) -> String {
        let mut out = Vec::new();
        write_request(&mut out, r);
        String::from_utf8(out).unwrap()
    }

    fn value(kind: Kind) -> Value {
        Value { kind: Some(kind) }
    }

    fn attrs(pairs: &[(&str, Value)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    /// Every field of every message set, every kind of value, strings that
    /// need escaping.
    fn full(nanos: i32) -> DecideRequest {
        let nested = Struct {
            fields: [
                ("k".to_owned(), value(Kind::StringValue("v\"".into()))),
                ("n".to_owned(), value(Kind::NullValue(0))),
            ]
            .into_iter()
            .collect(),
        };
        let all = attrs(&[
            ("s", value(Kind::StringValue("naïve\n✓".into()))),
            ("n", value(Kind::NumberValue(2500.0))),
            ("f", value(Kind::NumberValue(-0.125e-7))),
            ("big", value(Kind::NumberValue(1e300))),
            ("t", value(Kind::BoolValue(true))),
            ("b", value(Kind::BoolValue(false))),
            ("null", value(Kind::NullValue(0))),
            ("none", Value { kind: None }),
            ("struct", value(Kind::StructValue(nested))),
            (
                "list",
                value(Kind::ListValue(ListValue {
                    values: vec![
                        value(Kind::StringValue("DE".into())),
                        value(Kind::NumberValue(1.5)),
                        value(Kind::ListValue(ListValue { values: vec![] })),
                    ],
                })),
            ),
            ("quote\"key", value(Kind::StringValue(String::new()))),
        ]);
        DecideRequest {
            action: "payments.refund".into(),
            subject: Some(Subject {
                id: "user-\"42\"".into(),
                tenant: "acme".into(),
                roles: vec!["support".into(), "a\\b".into()],
                attributes: all.clone(),
            }),
            session: Some(Session {
                id: "sess-9f2c".into(),
                acr: "urn:stepup:aal1".into(),
                amr: vec!["pwd".into(), "otp".into()],
                auth_time: Some(Timestamp {
                    seconds: 1_795_000_000,
                    nanos,
                }),
            }),
            device: Some(Device {
                id: "dev-7a1b".into(),
                trusted: true,
                platform: "ios".into(),
                attributes: all.clone(),
            }),
            network: Some(Network {
                ip: "203.0.113.7".into(),
                country: "DE".into(),
                asn: 3320,
                attributes: all.clone(),
            }),
            resource: Some(Resource {
                r#type: "refund".into(),
                id: "rf-1001".into(),
                attributes: all.clone(),
            }),
            attributes: all,
            time: Some(Timestamp { seconds: 0, nanos }),
            explain: true,
        }
    }

    fn pbjson(r: &DecideRequest) -> String {
        let mut out = Vec::new();
        crate::json::write(&mut out, r).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_what_pbjson_writes() {
        let cases = [
            full(0),
            full(120_000_000),
            full(123_456_000),
            full(123_456_789),
            full(1),
            DecideRequest::default(),
            DecideRequest {
                action: "a".into(),
                subject: Some(Subject::default()),
                session: Some(Session::default()),
                device: Some(Device::default()),
                network: Some(Network::default()),
                resource: Some(Resource::default()),
                ..Default::default()
            },
        ];
        for r in &cases {
            let text = ours(r);
            // Struct fields are a HashMap: compare as values, not text.
            let a: serde_json::Value = serde_json::from_str(&text).unwrap();
            let b: serde_json::Value = serde_json::from_str(&pbjson(r)).unwrap();
            assert_eq!(a, b, "{text}");
            // Reads back as pbjson's own text does (which reads `null` as
            // a value without a kind).
            let back: DecideRequest = serde_json::from_str(&text).unwrap();
            let theirs: DecideRequest = serde_json::from_str(&pbjson(r)).unwrap();
            assert_eq!(back, theirs);
        }
        // Without a Struct value the text is the same byte for byte.
        let plain = DecideRequest {
            attributes: attrs(&[("fraud_score", value(Kind::NumberValue(0.12)))]),
            ..full(5_000)
        };
        let mut plain = plain;
        for m in [
            plain.subject.as_mut().map(|s| &mut s.attributes),
            plain.device.as_mut().map(|s| &mut s.attributes),
            plain.network.as_mut().map(|s| &mut s.attributes),
            plain.resource.as_mut().map(|s| &mut s.attributes),
        ]
        .into_iter()
        .flatten()
        {
            m.remove("struct");
        }
        assert_eq!(ours(&plain), pbjson(&plain));
    }

    #[test]
    fn timestamps_at_the_edges_of_the_range() {
        for (seconds, nanos) in [
            (-62_135_596_800, 0),           // 0001-01-01
            (253_402_300_799, 999_999_999), // 9999-12-31T23:59:59.999999999
            (-62_167_219_200, 0),           // 0000-01-01
            (253_402_300_800, 0),           // 10000-01-01: chrono's own text
            (1_700_000_000, -1),            // no valid time
            (i64::MAX, 0),
        ] {
            let r = DecideRequest {
                time: Some(Timestamp { seconds, nanos }),
                ..Default::default()
            };
            let text = ours(&r);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            match crate::json::write(&mut Vec::new(), &r) {
                Ok(()) => assert_eq!(text, pbjson(&r), "{seconds} {nanos}"),
                Err(_) => assert_eq!(v["time"], serde_json::Value::Null, "{text}"),
            }
        }
    }
}
