//! A decision as the decision log records it: the proto3 JSON of its
//! `DecideResponse` without what the policy revision already says, written
//! straight from the [`Decision`] (no response message, no serde).
//!
//! Left out: `wwwAuthenticate` (made from the first reason's message, the
//! acr values and max age), each requirement's `acrValues` (its level's; the
//! challenge's are in the top-level `acrValues`) and each reason's and
//! shadow result's `message` (the rule's). Everything else is as the
//! response has it, so a line's `decision` still reads as a
//! `DecideResponse` (with those fields empty), and old lines that have them
//! read the same way. The test below holds this to `convert::response` +
//! pbjson.

use std::time::Duration;

use crate::engine::{Decision, Outcome, TraceKind};
use crate::json::{Obj, key, write_int};
use crate::proto::v1 as pb;

/// Appends the decision's record to `out`.
pub fn write_decision(out: &mut Vec<u8>, d: &Decision) {
    let a = &*d.assessment;
    let policy = &*d.policy;
    let mut o = Obj::new(out);
    o.raw(
        key!("outcome"),
        match d.outcome {
            Outcome::Allow => b"\"OUTCOME_ALLOW\"",
            Outcome::Challenge => b"\"OUTCOME_CHALLENGE\"",
            Outcome::Deny => b"\"OUTCOME_DENY\"",
        },
    );
    let mut requirements = d
        .unmet
        .iter()
        .filter_map(|i| policy.rules.get(*i))
        .filter_map(|rule| Some((rule, rule.requirement.as_ref()?)))
        .peekable();
    if requirements.peek().is_some() {
        let out = o.key(key!("requirements"));
        out.push(b'[');
        for (n, (rule, r)) in requirements.enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let mut m = Obj::new(out);
            m.text(key!("ruleId"), &rule.id);
            if let Some(level) = r.level.and_then(|l| policy.levels.get(l)) {
                m.text(key!("level"), &level.name);
            }
            m.strs(key!("methods"), r.methods.iter().map(|x| &**x));
            if let Some(max_age) = r.max_age {
                write_duration(m.key(key!("maxAge")), max_age);
            }
            m.end();
        }
        out.push(b']');
    }
    o.strs(key!("acrValues"), d.acr_values().iter().map(|x| &**x));
    if let Some(max_age) = d.max_age {
        write_duration(o.key(key!("maxAge")), max_age);
    }
    {
        let mut risk = Obj::new(o.key(key!("risk")));
        if a.risk_score != 0 {
            write_int(risk.key(key!("score")), a.risk_score);
        }
        risk.strs(key!("signals"), a.signals.iter().map(|x| &**x));
        risk.end();
    }
    let rules = |i: &usize| policy.rules.get(*i);
    list(
        &mut o,
        key!("reasons"),
        a.matched.iter().filter_map(rules),
        |out, rule| {
            let mut m = Obj::new(out);
            m.text(key!("ruleId"), &rule.id);
            m.raw(key!("effect"), effect(rule.effect.to_proto()));
            m.end();
        },
    );
    list(&mut o, key!("errors"), a.errors.iter(), |out, e| {
        let mut m = Obj::new(out);
        m.text(key!("ruleId"), &e.id);
        m.text(key!("message"), &e.message);
        m.end();
    });
    {
        let mut id = uuid::Uuid::encode_buffer();
        o.str(key!("decisionId"), d.id.hyphenated().encode_lower(&mut id));
    }
    o.text(key!("policyRevision"), &policy.revision);
    list(&mut o, key!("trace"), d.trace.iter(), |out, t| {
        let mut m = Obj::new(out);
        m.raw(
            key!("kind"),
            match t.kind {
                TraceKind::Signal => b"\"KIND_SIGNAL\"",
                TraceKind::Rule => b"\"KIND_RULE\"",
            },
        );
        m.text(key!("id"), &t.id);
        if t.fired {
            m.raw(key!("fired"), b"true");
        }
        m.text(key!("detail"), &t.detail);
        m.end();
    });
    let shadow = d
        .shadow
        .iter()
        .filter_map(|sh| Some((sh, policy.rules.get(sh.rule)?)));
    list(&mut o, key!("shadow"), shadow, |out, (sh, rule)| {
        let mut m = Obj::new(out);
        m.text(key!("ruleId"), &rule.id);
        m.raw(key!("effect"), effect(sh.effect.to_proto()));
        if sh.satisfied {
            m.raw(key!("satisfied"), b"true");
        }
        m.end();
    });
    o.end();
}

/// A repeated message field, left out when `items` is empty.
fn list<T>(
    o: &mut Obj<'_>,
    key: &'static str,
    items: impl Iterator<Item = T>,
    mut item: impl FnMut(&mut Vec<u8>, T),
) {
    let mut items = items.peekable();
    if items.peek().is_none() {
        return;
    }
    let out = o.key(key);
    out.push(b'[');
    for (n, x) in items.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        item(out, x);
    }
    out.push(b']');
}

fn effect(e: pb::Effect) -> &'static [u8] {
    match e {
        pb::Effect::Unspecified => b"\"EFFECT_UNSPECIFIED\"",
        pb::Effect::Challenge => b"\"EFFECT_CHALLENGE\"",
        pb::Effect::Deny => b"\"EFFECT_DENY\"",
    }
}

/// A duration as proto3 JSON writes it: `"300s"`, `"1.500s"`.
fn write_duration(out: &mut Vec<u8>, d: Duration) {
    out.push(b'"');
    write_int(out, d.as_secs().min(i64::MAX as u64));
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let (digits, mut n) = match nanos {
            n if n % 1_000_000 == 0 => (3, n / 1_000_000),
            n if n % 1_000 == 0 => (6, n / 1_000),
            n => (9, n),
        };
        let mut buf = [b'0'; 9];
        for b in buf.iter_mut().take(digits).rev() {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.push(b'.');
        out.extend_from_slice(buf.get(..digits).unwrap_or_default());
    }
    out.extend_from_slice(b"s\"");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::proto::v1::DecideRequest;
    use crate::server::convert;

    fn policies() -> Arc<crate::PolicySet> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        Arc::new(crate::PolicySet::load(&dir).unwrap().0)
    }

    fn req(json: &str) -> DecideRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reads_back_as_the_response_message_for_every_outcome() {
        let policy = policies();
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 3, 0, 0).unwrap();
        let cases = [
            // CHALLENGE with requirements, several signals
            r#"{"action": "payments.refund", "subject": {"id": "u"},
                "session": {"acr": "urn:stepup:aal1", "amr": ["pwd"], "authTime": "2026-11-27T02:00:00Z"},
                "network": {"ip": "203.0.113.7", "country": "DE"},
                "resource": {"attributes": {"amount": 20000}}, "attributes": {"fraud_score": 0.95}}"#,
            // DENY
            r#"{"action": "payments.refund", "subject": {"id": "u"}, "network": {"country": "KP"}}"#,
            // ALLOW, nothing matched
            r#"{"action": "orders.list", "subject": {"id": "u"}, "device": {"trusted": true}}"#,
            // a rule error (fail closed): a non-number amount
            r#"{"action": "payments.refund", "subject": {"id": "u"},
                "resource": {"attributes": {"amount": "lots"}}}"#,
        ];
        for (n, json) in cases.iter().enumerate() {
            for explain in [false, true] {
                let d =
                    crate::cache::decide_with(Arc::clone(&policy), None, &req(json), now, explain);
                let mut ours = Vec::new();
                write_decision(&mut ours, &d);
                let back: pb::DecideResponse = serde_json::from_slice(&ours).unwrap_or_else(|e| {
                    panic!("case {n}: {e}: {}", String::from_utf8_lossy(&ours))
                });
                let mut lean = convert::response(&d);
                lean.www_authenticate.clear();
                for r in &mut lean.requirements {
                    r.acr_values.clear();
                }
                for r in &mut lean.reasons {
                    r.message.clear();
                }
                for r in &mut lean.shadow {
                    r.message.clear();
                }
                assert_eq!(back, lean, "case {n}, explain {explain}");
                // And the same text as pbjson writes, field for field.
                let theirs: serde_json::Value = serde_json::to_value(&lean).unwrap();
                let ours: serde_json::Value = serde_json::from_slice(&ours).unwrap();
                assert_eq!(ours, theirs, "case {n}, explain {explain}");
            }
        }
    }

    #[test]
    fn durations_as_proto3_json_writes_them() {
        for d in [
            Duration::ZERO,
            Duration::from_secs(300),
            Duration::from_millis(1500),
            Duration::from_micros(1),
            Duration::from_nanos(1_000_000_001),
            Duration::from_secs(u64::MAX),
        ] {
            let mut ours = Vec::new();
            write_duration(&mut ours, d);
            let mut theirs = Vec::new();
            crate::json::write(&mut theirs, &convert::duration(d)).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(theirs).unwrap(),
                "{d:?}"
            );
        }
    }
}
