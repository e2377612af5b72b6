//! A Security Event Token's claims (RFC 8417, as profiled by SSF 1.0) read
//! into an [`Event`]: its type, id, times and subject. The signature, `iss`,
//! `aud` and `typ` are checked before (by `trust`); this checks what SSF
//! adds: no `sub` and no `exp` claim, a `jti`, an `iat` within the replay
//! window, one event, a `sub_id`.

use serde_json::{Map, Value};

use super::replay::Millis;
use super::subject;
use crate::history::signals::MAX_JTI_BYTES;

/// The CAEP 1.0 event types' common prefix.
pub const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
/// The SSF 1.0 event types' common prefix.
pub const SSF: &str = "https://schemas.openid.net/secevent/ssf/event-type/";

/// The event types the receiver understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// CAEP `session-revoked`.
    SessionRevoked,
    /// CAEP `assurance-level-change`.
    AssuranceLevelChange,
    /// CAEP `session-established`.
    SessionEstablished,
    /// CAEP `credential-change`.
    CredentialChange,
    /// CAEP `device-compliance-change`.
    DeviceComplianceChange,
    /// CAEP `risk-level-change`.
    RiskLevelChange,
    /// SSF `verification`: acknowledged, no effect.
    Verification,
    /// SSF `stream-updated`: acknowledged and logged, no effect.
    StreamUpdated,
}

const KINDS: [(&str, &str, Kind); 8] = [
    (CAEP, "session-revoked", Kind::SessionRevoked),
    (CAEP, "assurance-level-change", Kind::AssuranceLevelChange),
    (CAEP, "session-established", Kind::SessionEstablished),
    (CAEP, "credential-change", Kind::CredentialChange),
    (
        CAEP,
        "device-compliance-change",
        Kind::DeviceComplianceChange,
    ),
    (CAEP, "risk-level-change", Kind::RiskLevelChange),
    (SSF, "verification", Kind::Verification),
    (SSF, "stream-updated", Kind::StreamUpdated),
];

impl Kind {
    /// The type named by the event type URI `uri`, if understood.
    pub fn from_uri(uri: &str) -> Option<Self> {
        KINDS
            .iter()
            .find(|(prefix, name, _)| uri.strip_prefix(prefix) == Some(name))
            .map(|(_, _, k)| *k)
    }

    /// The short name, e.g. `session-revoked`.
    pub fn name(self) -> &'static str {
        KINDS
            .iter()
            .find(|(_, _, k)| *k == self)
            .map_or("unknown", |(_, name, _)| name)
    }
}

/// One event, read from a verified SET's claims.
#[derive(Debug)]
pub struct Event<'a> {
    /// The type, when understood (else `uri` names it).
    pub kind: Option<Kind>,
    /// The event type URI.
    pub uri: &'a str,
    /// The SET's `jti`.
    pub jti: &'a str,
    /// The SET's `txn`, if any.
    pub txn: Option<&'a str>,
    /// When the SET was issued (`iat`), ms: at most `skew` ahead of the
    /// clock.
    pub iat: Millis,
    /// When the event happened (`event_timestamp`, else `toe`, else `iat`),
    /// ms.
    pub at: Millis,
    /// The subject (`sub_id`, else the event's own `subject`), checked in
    /// shape.
    pub subject: Option<&'a Map<String, Value>>,
    /// The event's own claims.
    pub payload: &'a Map<String, Value>,
}

/// Seconds (a JSON number) as ms.
fn millis(v: &Value) -> Option<Millis> {
    let s = v.as_f64().filter(|s| s.is_finite())?;
    #[expect(clippy::cast_possible_truncation, reason = "clamped to the i64 range")]
    let ms = (s * 1000.0).clamp(i64::MIN as f64, i64::MAX as f64) as i64;
    Some(ms)
}

/// Reads `claims` at `now`, allowing `skew` (ms) of clock difference and
/// events issued at most `window` (ms) ago. The error says what is wrong
/// (an `invalid_request`).
pub fn read(
    claims: &Map<String, Value>,
    now: Millis,
    skew: Millis,
    window: Millis,
) -> Result<Event<'_>, String> {
    if claims.contains_key("sub") {
        return Err(
            "the `sub` claim must not be in a SET (SSF 1.0 names the subject in `sub_id`)"
                .to_owned(),
        );
    }
    if claims.contains_key("exp") {
        return Err("the `exp` claim must not be in a SET (SSF 1.0)".to_owned());
    }
    let jti = match claims.get("jti") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_JTI_BYTES => s.as_str(),
        Some(Value::String(s)) if !s.is_empty() => {
            return Err(format!("`jti` is longer than {MAX_JTI_BYTES} bytes"));
        }
        _ => return Err("`jti` is missing or not a non-empty string".to_owned()),
    };
    let iat = claims
        .get("iat")
        .and_then(millis)
        .ok_or("`iat` is missing or not a number")?;
    if iat < now.saturating_sub(window) {
        return Err(format!(
            "issued before the replay window (`iat` is {} s ago, the window is {} s)",
            now.saturating_sub(iat) / 1000,
            window / 1000
        ));
    }
    // An `iat` ahead of the clock would outlive the replay memory (which
    // keeps an id `window` from receipt, or from `iat` when later): bounded
    // by the same skew as the event's time.
    if iat > now.saturating_add(skew) {
        return Err(format!(
            "issued in the future (`iat` is {} s ahead)",
            iat.saturating_sub(now) / 1000
        ));
    }
    let events = claims
        .get("events")
        .and_then(Value::as_object)
        .filter(|e| !e.is_empty())
        .ok_or("`events` is missing or not a non-empty object")?;
    let known: Vec<(&String, Kind)> = events
        .keys()
        .filter_map(|uri| Some((uri, Kind::from_uri(uri)?)))
        .collect();
    let (uri, kind) = match known.as_slice() {
        [] => (events.keys().next().map_or("", String::as_str), None),
        [(uri, kind)] => (uri.as_str(), Some(*kind)),
        [(uri, kind), rest @ ..] if rest.iter().all(|(_, k)| k == kind) => {
            (uri.as_str(), Some(*kind))
        }
        _ => return Err("`events` holds more than one event (SSF 1.0: one per SET)".to_owned()),
    };
    let payload = events
        .get(uri)
        .and_then(Value::as_object)
        .ok_or_else(|| format!("event `{uri}` is not an object"))?;
    let at = match payload.get("event_timestamp").or_else(|| claims.get("toe")) {
        Some(v) => millis(v).ok_or("`event_timestamp` is not a number")?,
        None => iat,
    };
    if at > now.saturating_add(skew) {
        return Err(format!(
            "the event is dated {} s in the future",
            at.saturating_sub(now) / 1000
        ));
    }
    let subject = match claims.get("sub_id").or_else(|| payload.get("subject")) {
        Some(s) => Some(subject::check(s)?),
        None => None,
    };
    let txn = claims.get("txn").and_then(Value::as_str);
    Ok(Event {
        kind,
        uri,
        jti,
        txn,
        iat,
        at,
        subject,
        payload,
    })
}

/// A string claim of the event, if present.
pub fn text<'a>(payload: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    payload.get(name).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_700_000_000_000;
    const WINDOW: Millis = 24 * 3_600_000;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn set(event: &str, payload: Value) -> Map<String, Value> {
        claims(serde_json::json!({
            "iss": "https://idp.example.com/",
            "jti": "j-1",
            "iat": NOW / 1000,
            "aud": "https://stepup.example.com/ssf",
            "txn": "8675309",
            "sub_id": {"format": "iss_sub", "iss": "https://idp.example.com/", "sub": "alice"},
            "events": { event: payload }
        }))
    }

    #[test]
    fn reads_the_caep_examples() {
        let c = set(
            "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
            serde_json::json!({"event_timestamp": 1_699_999_990, "initiating_entity": "policy"}),
        );
        let e = read(&c, NOW, 300_000, WINDOW).unwrap();
        assert_eq!(e.kind, Some(Kind::SessionRevoked));
        assert_eq!(e.jti, "j-1");
        assert_eq!(e.txn, Some("8675309"));
        assert_eq!(e.at, NOW - 10_000);
        assert!(e.subject.is_some());
        let v = set(
            "https://schemas.openid.net/secevent/ssf/event-type/verification",
            serde_json::json!({"state": "abc"}),
        );
        assert_eq!(
            read(&v, NOW, 0, WINDOW).unwrap().kind,
            Some(Kind::Verification)
        );
        let u = set("https://example.com/event/other", serde_json::json!({}));
        let e = read(&u, NOW, 0, WINDOW).unwrap();
        assert_eq!((e.kind, e.uri), (None, "https://example.com/event/other"));
        for (k, name) in KINDS.iter().map(|(p, n, k)| (*k, format!("{p}{n}"))) {
            assert_eq!(Kind::from_uri(&name), Some(k));
            assert!(name.ends_with(k.name()));
        }
    }

    #[test]
    fn names_what_is_wrong() {
        let base = set(
            "https://schemas.openid.net/secevent/caep/event-type/credential-change",
            serde_json::json!({"credential_type": "password", "change_type": "update"}),
        );
        let wrong = |f: &dyn Fn(&mut Map<String, Value>)| {
            let mut c = base.clone();
            f(&mut c);
            read(&c, NOW, 300_000, WINDOW).unwrap_err()
        };
        assert_eq!(
            wrong(&|c| {
                c.insert("sub".into(), "alice".into());
            }),
            "the `sub` claim must not be in a SET (SSF 1.0 names the subject in `sub_id`)"
        );
        assert_eq!(
            wrong(&|c| {
                c.insert("exp".into(), (NOW / 1000 + 60).into());
            }),
            "the `exp` claim must not be in a SET (SSF 1.0)"
        );
        assert_eq!(
            wrong(&|c| {
                c.remove("jti");
            }),
            "`jti` is missing or not a non-empty string"
        );
        assert_eq!(
            wrong(&|c| {
                c.insert("jti".into(), "x".repeat(200).into());
            }),
            "`jti` is longer than 128 bytes"
        );
        assert_eq!(
            wrong(&|c| {
                c.insert("iat".into(), (NOW / 1000 - 2 * 86_400).into());
            }),
            "issued before the replay window (`iat` is 172800 s ago, the window is 86400 s)"
        );
        // An `iat` ahead of the clock by more than the skew (here with an
        // `event_timestamp` of now, which alone would pass).
        assert_eq!(
            wrong(&|c| {
                c.insert("iat".into(), (NOW / 1000 + 3600).into());
                c.insert(
                    "events".into(),
                    serde_json::json!({
                        "https://schemas.openid.net/secevent/caep/event-type/credential-change": {"event_timestamp": NOW / 1000}
                    }),
                );
            }),
            "issued in the future (`iat` is 3600 s ahead)"
        );
        let mut ahead = base.clone();
        ahead.insert("iat".into(), (NOW / 1000 + 60).into());
        assert_eq!(
            read(&ahead, NOW, 300_000, WINDOW).unwrap().iat,
            NOW + 60_000
        );
        assert_eq!(
            wrong(&|c| {
                c.insert("sub_id".into(), serde_json::json!({"sub": "alice"}));
            }),
            "`sub_id` has no `format`"
        );
        assert_eq!(
            wrong(&|c| {
                c.insert(
                    "events".into(),
                    serde_json::json!({
                        "https://schemas.openid.net/secevent/caep/event-type/credential-change": {"event_timestamp": NOW / 1000 + 3600}
                    }),
                );
            }),
            "the event is dated 3600 s in the future"
        );
        assert_eq!(
            wrong(&|c| {
                c.insert(
                    "events".into(),
                    serde_json::json!({
                        "https://schemas.openid.net/secevent/caep/event-type/credential-change": {},
                        "https://schemas.openid.net/secevent/caep/event-type/session-revoked": {}
                    }),
                );
            }),
            "`events` holds more than one event (SSF 1.0: one per SET)"
        );
    }
}
