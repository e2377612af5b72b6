//! A decision as the proto3 JSON of its `DecideResponse`, written straight
//! from the [`Decision`]: the decision log does not build the response
//! message (a `String` per reason, signal and acr value) only to serialise
//! it. The test below holds this to `convert::response` + pbjson: both must
//! read back as the same `DecideResponse`.

use serde::ser::{Serialize, SerializeSeq, SerializeStruct, Serializer};

use crate::engine::{Decision, Outcome};
use crate::proto::v1 as pb;
use crate::server::convert;

/// Serialises as `convert::response(decision)` does through pbjson.
pub struct DecisionJson<'a>(pub &'a Decision);

/// A list of borrowed strings.
struct Strs<'a, I>(I)
where
    I: Iterator<Item = &'a str> + Clone;

impl<'a, I> Serialize for Strs<'a, I>
where
    I: Iterator<Item = &'a str> + Clone,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for item in self.0.clone() {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

/// A repeated message field: the elements `item` makes of `items`.
type ItemFn<T> = for<'x> fn(&'x T, &'x Decision) -> Option<Item<'x>>;
struct List<'a, T>(&'a [T], ItemFn<T>, &'a Decision);

/// One element of a repeated message field.
enum Item<'a> {
    Requirement {
        rule_id: &'a str,
        level: &'a str,
        acr_values: &'a [std::sync::Arc<str>],
        methods: &'a [std::sync::Arc<str>],
        max_age: Option<std::time::Duration>,
    },
    Reason {
        rule_id: &'a str,
        effect: pb::Effect,
        message: &'a str,
    },
    Error {
        rule_id: &'a str,
        message: &'a str,
    },
    Shadow {
        rule_id: &'a str,
        effect: pb::Effect,
        message: &'a str,
        satisfied: bool,
    },
    Trace {
        kind: &'a str,
        id: &'a str,
        fired: bool,
        detail: &'a str,
    },
}

/// A string field, left out when empty (proto3 JSON omits defaults).
fn text<S: SerializeStruct>(m: &mut S, key: &'static str, v: &str) -> Result<(), S::Error> {
    if v.is_empty() {
        return Ok(());
    }
    m.serialize_field(key, v)
}

impl Serialize for Item<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Item", 5)?;
        match self {
            Item::Requirement {
                rule_id,
                level,
                acr_values,
                methods,
                max_age,
            } => {
                text(&mut m, "ruleId", rule_id)?;
                text(&mut m, "level", level)?;
                if !acr_values.is_empty() {
                    m.serialize_field("acrValues", &Strs(acr_values.iter().map(|a| &**a)))?;
                }
                if !methods.is_empty() {
                    m.serialize_field("methods", &Strs(methods.iter().map(|a| &**a)))?;
                }
                if let Some(d) = max_age {
                    m.serialize_field("maxAge", &convert::duration(*d))?;
                }
            }
            Item::Reason {
                rule_id,
                effect,
                message,
            } => {
                text(&mut m, "ruleId", rule_id)?;
                m.serialize_field("effect", effect.as_str_name())?;
                text(&mut m, "message", message)?;
            }
            Item::Error { rule_id, message } => {
                text(&mut m, "ruleId", rule_id)?;
                text(&mut m, "message", message)?;
            }
            Item::Shadow {
                rule_id,
                effect,
                message,
                satisfied,
            } => {
                text(&mut m, "ruleId", rule_id)?;
                m.serialize_field("effect", effect.as_str_name())?;
                text(&mut m, "message", message)?;
                if *satisfied {
                    m.serialize_field("satisfied", &true)?;
                }
            }
            Item::Trace {
                kind,
                id,
                fired,
                detail,
            } => {
                text(&mut m, "kind", kind)?;
                text(&mut m, "id", id)?;
                if *fired {
                    m.serialize_field("fired", &true)?;
                }
                text(&mut m, "detail", detail)?;
            }
        }
        m.end()
    }
}

impl<T> Serialize for List<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for x in self.0 {
            if let Some(item) = (self.1)(x, self.2) {
                seq.serialize_element(&item)?;
            }
        }
        seq.end()
    }
}

struct Risk<'a>(&'a Decision);

impl Serialize for Risk<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = &self.0.assessment;
        let mut m = s.serialize_struct("Risk", 2)?;
        if a.risk_score != 0 {
            m.serialize_field("score", &a.risk_score)?;
        }
        if !a.signals.is_empty() {
            m.serialize_field("signals", &Strs(a.signals.iter().map(|x| &**x)))?;
        }
        m.end()
    }
}

fn requirement<'a>(i: &usize, d: &'a Decision) -> Option<Item<'a>> {
    let rule = d.policy.rules.get(*i)?;
    let r = rule.requirement.as_ref()?;
    let level = r.level.and_then(|l| d.policy.levels.get(l));
    Some(Item::Requirement {
        rule_id: &rule.id,
        level: level.map_or("", |l| &*l.name),
        acr_values: level.map_or(&[], |l| &l.acr),
        methods: &r.methods,
        max_age: r.max_age,
    })
}

fn reason<'a>(i: &usize, d: &'a Decision) -> Option<Item<'a>> {
    let rule = d.policy.rules.get(*i)?;
    Some(Item::Reason {
        rule_id: &rule.id,
        effect: convert::effect(rule.effect),
        message: &rule.message,
    })
}

fn error<'a>(e: &'a crate::engine::EvalError, _: &'a Decision) -> Option<Item<'a>> {
    Some(Item::Error {
        rule_id: &e.id,
        message: &e.message,
    })
}

fn trace<'a>(t: &'a crate::engine::TraceEntry, _: &'a Decision) -> Option<Item<'a>> {
    Some(Item::Trace {
        kind: t.kind,
        id: &t.id,
        fired: t.fired,
        detail: &t.detail,
    })
}

fn shadow<'a>(sh: &'a crate::engine::ShadowResult, d: &'a Decision) -> Option<Item<'a>> {
    let rule = d.policy.rules.get(sh.rule)?;
    Some(Item::Shadow {
        rule_id: &rule.id,
        effect: convert::effect(sh.effect),
        message: &rule.message,
        satisfied: sh.satisfied,
    })
}

impl Serialize for DecisionJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        let a = &d.assessment;
        let mut m = s.serialize_struct("DecideResponse", 12)?;
        let outcome = match d.outcome {
            Outcome::Allow => pb::Outcome::Allow,
            Outcome::Challenge => pb::Outcome::Challenge,
            Outcome::Deny => pb::Outcome::Deny,
        };
        m.serialize_field("outcome", outcome.as_str_name())?;
        let unmet: &[usize] = &d.unmet;
        if unmet.iter().any(|&i| requirement(&i, d).is_some()) {
            m.serialize_field("requirements", &List(unmet, requirement, d))?;
        }
        let acr = d.acr_values();
        if !acr.is_empty() {
            m.serialize_field("acrValues", &Strs(acr.iter().map(|x| &**x)))?;
        }
        if let Some(max_age) = d.max_age {
            m.serialize_field("maxAge", &convert::duration(max_age))?;
        }
        if let Some(header) = d.www_authenticate() {
            m.serialize_field("wwwAuthenticate", &header)?;
        }
        m.serialize_field("risk", &Risk(d))?;
        if a.matched.iter().any(|&i| reason(&i, d).is_some()) {
            m.serialize_field("reasons", &List(&a.matched, reason, d))?;
        }
        if !a.errors.is_empty() {
            m.serialize_field("errors", &List(&a.errors, error, d))?;
        }
        m.serialize_field("decisionId", &*d.id_string())?;
        if !d.policy.revision.is_empty() {
            m.serialize_field("policyRevision", &*d.policy.revision)?;
        }
        if !d.trace.is_empty() {
            m.serialize_field("trace", &List(&d.trace, trace, d))?;
        }
        if d.shadow.iter().any(|sh| shadow(sh, d).is_some()) {
            m.serialize_field("shadow", &List(&d.shadow, shadow, d))?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::proto::v1::DecideRequest;

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
                    crate::engine::decide_with(Arc::clone(&policy), None, &req(json), now, explain);
                let mut ours = Vec::new();
                crate::telemetry::json::write(&mut ours, &DecisionJson(&d)).unwrap();
                let back: pb::DecideResponse = serde_json::from_slice(&ours).unwrap_or_else(|e| {
                    panic!("case {n}: {e}: {}", String::from_utf8_lossy(&ours))
                });
                assert_eq!(back, convert::response(&d), "case {n}, explain {explain}");
                // And the same text as pbjson writes, field for field.
                let theirs: serde_json::Value =
                    serde_json::to_value(convert::response(&d)).unwrap();
                let ours: serde_json::Value = serde_json::from_slice(&ours).unwrap();
                assert_eq!(ours, theirs, "case {n}, explain {explain}");
            }
        }
    }
}
