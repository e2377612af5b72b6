//! AuthZEN JSON to `DecideRequest`, and a decision to an AuthZEN decision
//! object with the step-up profile's `context`: pure functions, no I/O.
//!
//! | AuthZEN | `DecideRequest` |
//! | --- | --- |
//! | `subject.id` | `subject.id` |
//! | `subject.type` | `subject.attributes.type` |
//! | `subject.properties.tenant` | `subject.tenant` |
//! | `subject.properties.roles` | `subject.roles` |
//! | `subject.properties.*` | `subject.attributes.*` |
//! | `action.name` | `action` |
//! | `action.properties` | `attributes.action` |
//! | `resource.type`, `resource.id` | `resource.type`, `resource.id` |
//! | `resource.properties.*` | `resource.attributes.*` |
//! | `context.session`, `.device`, `.network` | `session`, `device`, `network` (their proto3 JSON) |
//! | `context.time` | `time` (RFC 3339) |
//! | `context.*` | `attributes.*` |

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json, json};

use crate::engine::{Decision, Outcome};
use crate::proto::v1 as pb;
use crate::request::InvalidRequest;

/// A request member that cannot be used: its path in the AuthZEN request
/// (`subject.id`, `evaluations[1].resource.type`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct BadRequest {
    /// The member's path in the request body.
    pub field: String,
    /// What is wrong with it, e.g. `missing`.
    pub problem: String,
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> BadRequest {
    BadRequest {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Where each entity of one evaluation came from: its path in the body
/// (`subject` for a top-level default, `evaluations[2].subject` for its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    /// The subject's path.
    pub subject: String,
    /// The action's path.
    pub action: String,
    /// The resource's path.
    pub resource: String,
    /// The context's path.
    pub context: String,
}

/// The four entities of one evaluation, each with its path.
#[derive(Debug, Clone, Copy)]
pub struct Entities<'a> {
    /// `subject`.
    pub subject: Option<(&'a Json, &'a str)>,
    /// `action`.
    pub action: Option<(&'a Json, &'a str)>,
    /// `resource`.
    pub resource: Option<(&'a Json, &'a str)>,
    /// `context`.
    pub context: Option<(&'a Json, &'a str)>,
}

/// The `DecideRequest` of one evaluation. `missing` names where an absent
/// required entity was expected (`subject`, or `evaluations[1].subject`
/// when neither it nor a top-level default is there).
pub fn decide_request(
    e: Entities<'_>,
    missing: &dyn Fn(&str) -> String,
) -> Result<(pb::DecideRequest, Origins), BadRequest> {
    let (subject, subject_at) = e
        .subject
        .ok_or_else(|| bad(missing("subject"), "missing"))?;
    let (action, action_at) = e.action.ok_or_else(|| bad(missing("action"), "missing"))?;
    let (resource, resource_at) = e
        .resource
        .ok_or_else(|| bad(missing("resource"), "missing"))?;
    let mut req = pb::DecideRequest {
        subject: Some(map_subject(subject, subject_at)?),
        resource: Some(map_resource(resource, resource_at)?),
        ..pb::DecideRequest::default()
    };
    let mut origins = Origins {
        subject: subject_at.to_owned(),
        action: action_at.to_owned(),
        resource: resource_at.to_owned(),
        context: "context".to_owned(),
    };
    if let Some((context, at)) = e.context {
        map_context(context, at, &mut req)?;
        at.clone_into(&mut origins.context);
    }
    // After the context: `action.properties` takes `attributes.action`.
    let (name, properties) = map_action(action, action_at)?;
    req.action = name;
    if let Some(p) = properties {
        req.attributes.insert("action".to_owned(), p);
    }
    Ok((req, origins))
}

/// `v` as an object, or why not.
fn object<'a>(v: &'a Json, at: &str) -> Result<&'a Map<String, Json>, BadRequest> {
    v.as_object().ok_or_else(|| bad(at, "must be an object"))
}

/// The required, non-empty string member `key` of `o`.
fn required(o: &Map<String, Json>, key: &str, at: &str) -> Result<String, BadRequest> {
    match o.get(key) {
        None | Some(Json::Null) => Err(bad(format!("{at}.{key}"), "missing")),
        Some(Json::String(s)) if s.is_empty() => Err(bad(format!("{at}.{key}"), "empty")),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad(format!("{at}.{key}"), "must be a string")),
    }
}

/// A JSON value as a `google.protobuf.Value` (numbers become doubles).
fn value(v: &Json) -> pbjson_types::Value {
    use pbjson_types::value::Kind;
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(a) => Kind::ListValue(pbjson_types::ListValue {
            values: a.iter().map(value).collect(),
        }),
        Json::Object(o) => Kind::StructValue(pbjson_types::Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
        }),
    };
    pbjson_types::Value { kind: Some(kind) }
}

/// The `properties` object of an entity, if it has one.
fn properties<'a>(
    o: &'a Map<String, Json>,
    at: &str,
) -> Result<Option<&'a Map<String, Json>>, BadRequest> {
    match o.get("properties") {
        None | Some(Json::Null) => Ok(None),
        Some(p) => object(p, &format!("{at}.properties")).map(Some),
    }
}

fn map_subject(v: &Json, at: &str) -> Result<pb::Subject, BadRequest> {
    let o = object(v, at)?;
    let kind = required(o, "type", at)?;
    let mut s = pb::Subject {
        id: required(o, "id", at)?,
        ..pb::Subject::default()
    };
    for (k, v) in properties(o, at)?.into_iter().flatten() {
        let field = || format!("{at}.properties.{k}");
        match k.as_str() {
            "tenant" => match v {
                Json::String(t) => s.tenant.clone_from(t),
                Json::Null => {}
                _ => return Err(bad(field(), "must be a string")),
            },
            "roles" => {
                let roles = v
                    .as_array()
                    .ok_or_else(|| bad(field(), "must be an array of strings"))?;
                for (i, r) in roles.iter().enumerate() {
                    let role = r
                        .as_str()
                        .ok_or_else(|| bad(format!("{}[{i}]", field()), "must be a string"))?;
                    s.roles.push(role.to_owned());
                }
            }
            _ => {
                s.attributes.insert(k.clone(), value(v));
            }
        }
    }
    // The entity's own type wins over a property of that name.
    s.attributes
        .insert("type".to_owned(), value(&Json::String(kind)));
    Ok(s)
}

fn map_resource(v: &Json, at: &str) -> Result<pb::Resource, BadRequest> {
    let o = object(v, at)?;
    Ok(pb::Resource {
        r#type: required(o, "type", at)?,
        id: required(o, "id", at)?,
        attributes: properties(o, at)?
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
    })
}

/// `action.name` and, as one value, `action.properties`.
fn map_action(v: &Json, at: &str) -> Result<(String, Option<pbjson_types::Value>), BadRequest> {
    let o = object(v, at)?;
    let name = required(o, "name", at)?;
    let props = properties(o, at)?.map(|p| value(&Json::Object(p.clone())));
    Ok((name, props))
}

/// A member of `context` in the proto3 JSON shape of `T` (`Session`,
/// `Device`, `Network`), a wrong member named by its path.
fn proto_json<T: for<'de> serde::Deserialize<'de>>(v: &Json, at: &str) -> Result<T, BadRequest> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            at.to_owned()
        } else {
            format!("{at}.{path}")
        };
        bad(field, e.inner().to_string())
    })
}

/// An RFC 3339 time; seconds may be left out (`1985-10-26T01:22-07:00`,
/// as the AuthZEN examples write it).
pub fn time(v: &Json, at: &str) -> Result<pbjson_types::Timestamp, BadRequest> {
    let text = v
        .as_str()
        .ok_or_else(|| bad(at, "must be an RFC 3339 time string"))?;
    let parsed = DateTime::parse_from_rfc3339(text)
        .or_else(|e| DateTime::parse_from_rfc3339(&with_seconds(text).ok_or(e)?))
        .map_err(|_| {
            bad(
                at,
                format!("`{text}` is not an RFC 3339 time such as `2026-01-11T09:30:00Z`"),
            )
        })?;
    let utc: DateTime<Utc> = parsed.into();
    Ok(pbjson_types::Timestamp {
        seconds: utc.timestamp(),
        nanos: i32::try_from(utc.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

/// `text` with `:00` seconds after its `THH:MM`, if it has none there.
fn with_seconds(text: &str) -> Option<String> {
    let end = text.find(['T', 't'])?.checked_add(6)?;
    let (head, tail) = (text.get(..end)?, text.get(end..)?);
    (!tail.starts_with(':')).then(|| format!("{head}:00{tail}"))
}

fn map_context(v: &Json, at: &str, req: &mut pb::DecideRequest) -> Result<(), BadRequest> {
    let o = object(v, at)?;
    for (k, v) in o {
        let field = format!("{at}.{k}");
        match k.as_str() {
            "session" => req.session = Some(proto_json(v, &field)?),
            "device" => req.device = Some(proto_json(v, &field)?),
            "network" => req.network = Some(proto_json(v, &field)?),
            "time" => req.time = Some(time(v, &field)?),
            _ => {
                req.attributes.insert(k.clone(), value(v));
            }
        }
    }
    Ok(())
}

/// A validation error of the mapped request, named by its path in the
/// AuthZEN body: `subject.attributes.x` is `subject.properties.x`,
/// `session.acr` is `context.session.acr`, `attributes.x` is `context.x`.
pub fn rename(e: InvalidRequest, o: &Origins) -> BadRequest {
    let field = e.field.as_str();
    let (head, rest) = field.split_once('.').unwrap_or((field, ""));
    let path = match (head, rest) {
        ("action", _) => format!("{}.name", o.action),
        ("time", _) => format!("{}.time", o.context),
        ("subject", r) if r.starts_with("tenant") || r.starts_with("roles") => {
            format!("{}.properties.{r}", o.subject)
        }
        ("subject", "attributes.type") => format!("{}.type", o.subject),
        ("subject", r) => match r.strip_prefix("attributes") {
            Some(tail) => format!("{}.properties{tail}", o.subject),
            None => format!("{}.{r}", o.subject),
        },
        ("resource", r) => match r.strip_prefix("attributes") {
            Some(tail) => format!("{}.properties{tail}", o.resource),
            None => format!("{}.{r}", o.resource),
        },
        ("attributes", r) if r == "action" || r.starts_with("action.") => {
            format!(
                "{}.properties{}",
                o.action,
                r.strip_prefix("action").unwrap_or_default()
            )
        }
        ("attributes", r) => format!("{}.{r}", o.context),
        (h, "") => format!("{}.{h}", o.context),
        (h, r) => format!("{}.{h}.{r}", o.context),
    };
    bad(path, e.problem)
}

/// The profile's name for an outcome.
pub fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Allow => "allow",
        Outcome::Challenge => "challenge",
        Outcome::Deny => "deny",
    }
}

/// The methods that satisfy every unmet requirement naming methods (their
/// intersection, in the first one's order); `None` when none names any (any
/// method will do), an empty list when they have none in common (no one
/// step-up satisfies them all).
fn methods(d: &Decision) -> Option<Vec<&str>> {
    let mut out: Option<Vec<&str>> = None;
    let named = d
        .unmet
        .iter()
        .filter_map(|i| d.policy.rules.get(*i))
        .filter_map(|r| r.requirement.as_ref())
        .filter(|r| !r.methods.is_empty());
    for r in named {
        out = Some(match out {
            None => r.methods.iter().map(|m| &**m).collect(),
            Some(cur) => cur
                .into_iter()
                .filter(|m| r.methods.iter().any(|x| &**x == *m))
                .collect(),
        });
    }
    out
}

/// The AuthZEN decision object of `d`: `decision` is `true` only for
/// ALLOW; `context` carries the step-up profile's members.
pub fn decision(d: &Decision) -> Json {
    let mut ctx = Map::new();
    ctx.insert("outcome".into(), outcome_name(d.outcome).into());
    if d.outcome == Outcome::Challenge {
        let acr: Vec<&str> = d.acr_values().iter().map(|a| &**a).collect();
        ctx.insert("acr_values".into(), json!(acr));
        if let Some(max_age) = d.max_age {
            ctx.insert("max_age".into(), max_age.as_secs().into());
        }
        let methods = methods(d);
        // An empty `amr` alone would read as "any method will do".
        ctx.insert(
            "amr_conflict".into(),
            methods.as_ref().is_some_and(Vec::is_empty).into(),
        );
        ctx.insert("amr".into(), json!(methods.unwrap_or_default()));
        if let Some(w) = d.www_authenticate() {
            ctx.insert("www_authenticate".into(), w.into());
        }
    }
    ctx.insert("decision_id".into(), d.id_string().into());
    ctx.insert("policy_revision".into(), (*d.policy.revision).into());
    let reasons: Vec<Json> = d
        .reasons()
        .map(|(id, _, message)| json!({ "rule_id": &**id, "message": &**message }))
        .collect();
    ctx.insert("reasons".into(), reasons.into());
    let signals: Vec<&str> = d.assessment.signals.iter().map(|s| &**s).collect();
    ctx.insert(
        "risk".into(),
        json!({ "score": d.assessment.risk_score, "signals": signals }),
    );
    json!({ "decision": d.outcome == Outcome::Allow, "context": ctx })
}

/// The action names the policy set's rules name exactly (patterns such as
/// `payments.*` name no one action), sorted, each once.
pub fn known_actions(policy: &crate::policy::PolicySet) -> Vec<String> {
    let names: std::collections::BTreeSet<&str> = policy
        .rules
        .iter()
        .flat_map(|r| r.actions.iter())
        .filter(|a| !a.contains('*'))
        .map(String::as_str)
        .collect();
    names.into_iter().map(str::to_owned).collect()
}

/// How an evaluations request stops (`options.evaluations_semantic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Semantic {
    /// Every evaluation, answered in order (the default).
    #[default]
    ExecuteAll,
    /// Stop after the first decision that is not `true`.
    DenyOnFirstDeny,
    /// Stop after the first decision that is `true`.
    PermitOnFirstPermit,
}

/// `options.evaluations_semantic` of an evaluations request.
pub fn semantic(body: &Map<String, Json>) -> Result<Semantic, BadRequest> {
    let Some(options) = body.get("options").filter(|o| !o.is_null()) else {
        return Ok(Semantic::default());
    };
    let options = object(options, "options")?;
    match options.get("evaluations_semantic") {
        None | Some(Json::Null) => Ok(Semantic::default()),
        Some(Json::String(s)) => match s.as_str() {
            "execute_all" => Ok(Semantic::ExecuteAll),
            "deny_on_first_deny" => Ok(Semantic::DenyOnFirstDeny),
            "permit_on_first_permit" => Ok(Semantic::PermitOnFirstPermit),
            other => Err(bad(
                "options.evaluations_semantic",
                format!(
                    "`{other}` is not one of `execute_all`, `deny_on_first_deny`, `permit_on_first_permit`"
                ),
            )),
        },
        Some(_) => Err(bad("options.evaluations_semantic", "must be a string")),
    }
}

/// The `DecideRequest`s of an evaluations request: each evaluation's
/// missing `subject`, `action`, `resource` and `context` taken from the
/// top level. Without an `evaluations` array (or with an empty one), the
/// request is one evaluation of its top-level members.
pub fn evaluations(
    body: &Map<String, Json>,
) -> Result<Vec<(pb::DecideRequest, Origins)>, BadRequest> {
    let top = |key: &'static str| body.get(key).filter(|v| !v.is_null()).map(|v| (v, key));
    let list = match body.get("evaluations") {
        None | Some(Json::Null) => None,
        Some(Json::Array(a)) if a.is_empty() => None,
        Some(Json::Array(a)) => Some(a),
        Some(_) => return Err(bad("evaluations", "must be an array")),
    };
    let Some(list) = list else {
        let e = Entities {
            subject: top("subject"),
            action: top("action"),
            resource: top("resource"),
            context: top("context"),
        };
        return decide_request(e, &|k| k.to_owned()).map(|r| vec![r]);
    };
    if list.len() > super::MAX_EVALUATIONS {
        return Err(bad(
            "evaluations",
            format!(
                "{} evaluations, over the limit of {} per request",
                list.len(),
                super::MAX_EVALUATIONS
            ),
        ));
    }
    let paths: Vec<[String; 4]> = (0..list.len())
        .map(|i| {
            ["subject", "action", "resource", "context"].map(|k| format!("evaluations[{i}].{k}"))
        })
        .collect();
    list.iter()
        .zip(&paths)
        .enumerate()
        .map(|(i, (item, [s, a, r, c]))| {
            let own = object(item, &format!("evaluations[{i}]"))?;
            let e = Entities {
                subject: pick(own, body, "subject", s),
                action: pick(own, body, "action", a),
                resource: pick(own, body, "resource", r),
                context: pick(own, body, "context", c),
            };
            decide_request(e, &|k| {
                format!("evaluations[{i}].{k} (and no top-level `{k}`)")
            })
        })
        .collect()
}

/// An evaluation's own `key` (at `path`), else the top-level default.
fn pick<'a>(
    own: &'a Map<String, Json>,
    body: &'a Map<String, Json>,
    key: &'static str,
    path: &'a str,
) -> Option<(&'a Json, &'a str)> {
    own.get(key)
        .filter(|v| !v.is_null())
        .map(|v| (v, path))
        .or_else(|| body.get(key).filter(|v| !v.is_null()).map(|v| (v, key)))
}

/// The subject, resource and context of an action search, as one
/// evaluation per action in `actions`.
pub fn action_search(
    body: &Map<String, Json>,
    actions: &[String],
) -> Result<Vec<(pb::DecideRequest, Origins)>, BadRequest> {
    if let Some(page) = body.get("page").filter(|p| !p.is_null()) {
        let page = object(page, "page")?;
        if page
            .get("token")
            .and_then(Json::as_str)
            .is_some_and(|t| !t.is_empty())
        {
            return Err(bad(
                "page.token",
                "no such page: results are never paginated",
            ));
        }
    }
    let top = |key: &'static str| body.get(key).filter(|v| !v.is_null()).map(|v| (v, key));
    // The subject, resource and context are checked even when the policy
    // set names no action.
    let probe = json!({ "name": "-" });
    let e = Entities {
        subject: top("subject"),
        action: Some((&probe, "action")),
        resource: top("resource"),
        context: top("context"),
    };
    let (template, origins) = decide_request(e, &|k| k.to_owned())?;
    Ok(actions
        .iter()
        .map(|a| {
            let mut req = template.clone();
            a.clone_into(&mut req.action);
            (req, origins.clone())
        })
        .collect())
}

/// Whether an evaluation `answered` ends the list under `semantic`.
pub fn stops(semantic: Semantic, allowed: bool) -> bool {
    match semantic {
        Semantic::ExecuteAll => false,
        Semantic::DenyOnFirstDeny => !allowed,
        Semantic::PermitOnFirstPermit => allowed,
    }
}
