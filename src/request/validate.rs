//! Validation of a request from outside: the limits, and a bad field named
//! by its path (the gRPC server answers `INVALID_ARGUMENT` with it).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pbjson_types::value::Kind;
use pbjson_types::{Timestamp, Value};

use crate::duration::format_duration;
use crate::proto::v1 as pb;

/// Longest accepted string field, in bytes.
pub const MAX_STRING_BYTES: usize = 1024;
/// Most entries in a repeated field or attributes map.
pub const MAX_ENTRIES: usize = 64;
/// Deepest nesting of attribute values.
pub const MAX_DEPTH: usize = 8;

/// A request that cannot be decided: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {problem}")]
pub struct InvalidRequest {
    /// The field's path, e.g. `subject.id` or `resource.attributes.amount`.
    pub field: String,
    /// What is wrong, e.g. `required`.
    pub problem: String,
}

pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> InvalidRequest {
    InvalidRequest {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Checks a request and returns the decision's "now": `time` when set, else
/// `clock`.
pub fn validate(
    req: &pb::DecideRequest,
    clock: DateTime<Utc>,
) -> Result<DateTime<Utc>, InvalidRequest> {
    if req.action.is_empty() {
        return Err(invalid("action", "required"));
    }
    string("action", &req.action)?;
    let Some(subject) = &req.subject else {
        return Err(invalid("subject.id", "required"));
    };
    if subject.id.is_empty() {
        return Err(invalid("subject.id", "required"));
    }
    string("subject.id", &subject.id)?;
    string("subject.tenant", &subject.tenant)?;
    strings("subject.roles", &subject.roles)?;
    attributes("subject.attributes", &subject.attributes)?;
    if let Some(s) = &req.session {
        string("session.id", &s.id)?;
        string("session.acr", &s.acr)?;
        strings("session.amr", &s.amr)?;
        if let Some(t) = &s.auth_time {
            timestamp("session.auth_time", t)?;
        }
    }
    if let Some(d) = &req.device {
        string("device.id", &d.id)?;
        string("device.platform", &d.platform)?;
        attributes("device.attributes", &d.attributes)?;
    }
    if let Some(n) = &req.network {
        string("network.ip", &n.ip)?;
        if !n.ip.is_empty() && n.ip.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(
                "network.ip",
                format!("`{}` is not an IP address", truncate(&n.ip)),
            ));
        }
        string("network.country", &n.country)?;
        let alpha2 = n.country.len() == 2 && n.country.bytes().all(|b| b.is_ascii_uppercase());
        if !n.country.is_empty() && !alpha2 {
            return Err(invalid(
                "network.country",
                format!(
                    "`{}` is not an ISO 3166-1 alpha-2 code (two capital letters)",
                    truncate(&n.country)
                ),
            ));
        }
        // An int64 on the wire (no unsigned integers in the API) holding a
        // 32-bit ASN (RFC 6793).
        if u32::try_from(n.asn).is_err() {
            return Err(invalid(
                "network.asn",
                format!("{} is not an AS number (0 to 4294967295)", n.asn),
            ));
        }
        attributes("network.attributes", &n.attributes)?;
    }
    if let Some(r) = &req.resource {
        string("resource.type", &r.r#type)?;
        string("resource.id", &r.id)?;
        attributes("resource.attributes", &r.attributes)?;
    }
    attributes("attributes", &req.attributes)?;
    match &req.time {
        Some(t) => timestamp("time", t),
        None => Ok(clock),
    }
}

/// [`validate`] for a live request, as the server takes it: also checks
/// that `time`, when set, lies within `max_skew` of `clock` (`None`: any
/// time, for simulations on a fixed timeline).
pub fn validate_within(
    req: &pb::DecideRequest,
    clock: DateTime<Utc>,
    max_skew: Option<Duration>,
) -> Result<DateTime<Utc>, InvalidRequest> {
    let now = validate(req, clock)?;
    within_skew("time", now, clock, max_skew)?;
    Ok(now)
}

/// Checks that `time` (the request's `field`) lies within `max_skew` of the
/// server's `clock`: a request from far in the past or future would let its
/// sender rewrite what history remembers. `None` accepts any time.
pub fn within_skew(
    field: &str,
    time: DateTime<Utc>,
    clock: DateTime<Utc>,
    max_skew: Option<Duration>,
) -> Result<(), InvalidRequest> {
    let Some(max) = max_skew else {
        return Ok(());
    };
    let skew = time.signed_duration_since(clock);
    let Ok(ahead) = skew.abs().to_std() else {
        return Ok(());
    };
    if ahead <= max {
        return Ok(());
    }
    let direction = if skew > chrono::Duration::zero() {
        "ahead of"
    } else {
        "behind"
    };
    // Whole seconds: sub-second detail says nothing about a bad clock.
    let rounded = ahead.saturating_add(Duration::from_millis(500)).as_secs();
    let shown = Duration::from_secs(rounded.max(1));
    Err(invalid(
        field,
        format!(
            "{} {direction} the server clock; at most {} allowed (`max_time_skew`)",
            format_duration(shown),
            format_duration(max)
        ),
    ))
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

pub(crate) fn string(field: &str, s: &str) -> Result<(), InvalidRequest> {
    if s.len() > MAX_STRING_BYTES {
        return Err(invalid(
            field,
            format!("longer than {MAX_STRING_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A field's path, rendered only when there is an error to report: a valid
/// request (the common case) allocates no path strings.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'a str),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root(s) => f.write_str(s),
            Path::Key(parent, k) => write!(f, "{parent}.{k}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn string_at(field: &Path<'_>, s: &str) -> Result<(), InvalidRequest> {
    if s.len() > MAX_STRING_BYTES {
        return Err(invalid(
            field.to_string(),
            format!("longer than {MAX_STRING_BYTES} bytes"),
        ));
    }
    Ok(())
}

pub(crate) fn strings(field: &str, list: &[String]) -> Result<(), InvalidRequest> {
    if list.len() > MAX_ENTRIES {
        return Err(invalid(field, format!("more than {MAX_ENTRIES} entries")));
    }
    let root = Path::Root(field);
    for (i, s) in list.iter().enumerate() {
        string_at(&Path::Index(&root, i), s)?;
    }
    Ok(())
}

fn attributes(field: &str, map: &BTreeMap<String, Value>) -> Result<(), InvalidRequest> {
    if map.len() > MAX_ENTRIES {
        return Err(invalid(field, format!("more than {MAX_ENTRIES} entries")));
    }
    let root = Path::Root(field);
    for (k, v) in map {
        if k.len() > MAX_STRING_BYTES {
            return Err(invalid(
                field,
                format!("a key is longer than {MAX_STRING_BYTES} bytes"),
            ));
        }
        value(&Path::Key(&root, k), v, 1)?;
    }
    Ok(())
}

fn value(field: &Path<'_>, v: &Value, depth: usize) -> Result<(), InvalidRequest> {
    if depth > MAX_DEPTH {
        return Err(invalid(
            field.to_string(),
            format!("nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    match &v.kind {
        Some(Kind::StringValue(s)) => string_at(field, s),
        Some(Kind::NumberValue(n)) if !n.is_finite() => {
            Err(invalid(field.to_string(), "not a finite number"))
        }
        Some(Kind::StructValue(s)) => {
            if s.fields.len() > MAX_ENTRIES {
                return Err(invalid(
                    field.to_string(),
                    format!("more than {MAX_ENTRIES} entries"),
                ));
            }
            for (k, v) in &s.fields {
                string_at(field, k)?;
                value(&Path::Key(field, k), v, depth + 1)?;
            }
            Ok(())
        }
        Some(Kind::ListValue(l)) => {
            if l.values.len() > MAX_ENTRIES {
                return Err(invalid(
                    field.to_string(),
                    format!("more than {MAX_ENTRIES} entries"),
                ));
            }
            for (i, v) in l.values.iter().enumerate() {
                value(&Path::Index(field, i), v, depth + 1)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Timestamps must lie in 0001-01-01..=9999-12-31 with nanos in range, as
/// protobuf's Timestamp documents.
pub(crate) fn timestamp(field: &str, t: &Timestamp) -> Result<DateTime<Utc>, InvalidRequest> {
    const MIN: i64 = -62_135_596_800;
    const MAX: i64 = 253_402_300_799;
    if !(MIN..=MAX).contains(&t.seconds) {
        return Err(invalid(
            field,
            "seconds out of range (0001-01-01 to 9999-12-31)",
        ));
    }
    let nanos = u32::try_from(t.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| invalid(field, "nanos must be in 0..=999999999"))?;
    DateTime::from_timestamp(t.seconds, nanos).ok_or_else(|| invalid(field, "not a valid time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> pb::DecideRequest {
        pb::DecideRequest {
            action: "payments.refund".into(),
            subject: Some(pb::Subject {
                id: "u1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn names_the_bad_field() {
        let now = Utc::now();
        let mut r = req();
        r.action.clear();
        assert_eq!(
            validate(&r, now).unwrap_err().to_string(),
            "`action`: required"
        );

        let mut r = req();
        r.subject = None;
        assert_eq!(
            validate(&r, now).unwrap_err().to_string(),
            "`subject.id`: required"
        );

        let mut r = req();
        r.time = Some(Timestamp {
            seconds: 0,
            nanos: -1,
        });
        assert_eq!(
            validate(&r, now).unwrap_err().to_string(),
            "`time`: nanos must be in 0..=999999999"
        );

        let mut r = req();
        r.network = Some(pb::Network {
            ip: "999.1.1.1".into(),
            ..Default::default()
        });
        assert_eq!(
            validate(&r, now).unwrap_err().to_string(),
            "`network.ip`: `999.1.1.1` is not an IP address"
        );

        // The wire's int64 holds 32-bit AS numbers only.
        for (asn, ok) in [
            (0, true),
            (4_294_967_295, true),
            (4_294_967_296, false),
            (-1, false),
        ] {
            let mut r = req();
            r.network = Some(pb::Network {
                asn,
                ..Default::default()
            });
            match validate(&r, now) {
                Ok(_) => assert!(ok, "{asn}"),
                Err(e) => assert_eq!(
                    (ok, e.to_string()),
                    (
                        false,
                        format!("`network.asn`: {asn} is not an AS number (0 to 4294967295)")
                    )
                ),
            }
        }

        let mut r = req();
        r.resource = Some(pb::Resource {
            attributes: [("note".to_owned(), Value::from("x".repeat(2000)))].into(),
            ..Default::default()
        });
        assert_eq!(
            validate(&r, now).unwrap_err().to_string(),
            "`resource.attributes.note`: longer than 1024 bytes"
        );

        let mut r = req();
        r.session = Some(pb::Session {
            amr: vec!["otp".into(); 65],
            ..Default::default()
        });
        assert_eq!(
            validate(&r, now).unwrap_err().to_string(),
            "`session.amr`: more than 64 entries"
        );
    }

    #[test]
    fn time_lies_within_the_skew_bound() {
        let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
        let bound = Some(Duration::from_secs(300));
        let at = |offset: i64| {
            let mut r = req();
            r.time = Some(Timestamp {
                seconds: now.timestamp() + offset,
                nanos: 0,
            });
            r
        };
        assert_eq!(
            validate_within(&at(-7200), now, bound)
                .unwrap_err()
                .to_string(),
            "`time`: 2h behind the server clock; at most 5m allowed (`max_time_skew`)"
        );
        assert_eq!(
            validate_within(&at(2 * 86_400), now, bound)
                .unwrap_err()
                .to_string(),
            "`time`: 2d ahead of the server clock; at most 5m allowed (`max_time_skew`)"
        );
        for ok in [-299, 0, 299] {
            assert!(validate_within(&at(ok), now, bound).is_ok(), "{ok}");
        }
        assert!(validate_within(&at(-7200), now, None).is_ok());
        assert_eq!(validate_within(&req(), now, bound), Ok(now));
        // The field keeps its name; the year 1 is still a time, far behind.
        let err = within_skew("attributes.request.time", DateTime::UNIX_EPOCH, now, bound);
        assert!(
            err.unwrap_err()
                .to_string()
                .starts_with("`attributes.request.time`: "),
        );
    }

    #[test]
    fn time_defaults_to_the_clock() {
        let now = Utc::now();
        assert_eq!(validate(&req(), now), Ok(now));
        let mut r = req();
        r.time = Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        });
        assert_eq!(validate(&r, now).map(|t| t.timestamp()), Ok(1_700_000_000));
    }
}
