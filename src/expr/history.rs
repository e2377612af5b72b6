//! `history` as CEL sees it: a [`View`] of one subject's history as it was
//! before the decision, computed on first read (a decision whose conditions
//! never read `history` never builds one), and the `history.count(glob,
//! window)` member function.

use std::sync::Arc;

use cel::ExecutionError;
use cel::common::traits::{Container, Indexer};
use cel::common::types::{
    self as types, CelBool, CelDouble, CelDuration, CelInt, CelString, CelTimestamp, Type,
};
use cel::common::value::{CowVal, StaticVal, Val};
use chrono::{DateTime, Utc};

use super::vals::key_of;

/// Milliseconds since the Unix epoch: how history keeps time.
pub type Millis = i64;

/// The CEL type of `history`.
pub static HISTORY_TYPE: Type = Type::new_unspecified_type("stepup.History");

/// The fields of `history` (the schema checker has the same list).
pub const FIELDS: &[&str] = &[
    "device_known",
    "device_first_seen",
    "devices_seen",
    "last_country",
    "last_seen",
    "travel_kmh",
    "stepups_failed",
    "session_revoked",
    "credential_changed",
    "device_compliant",
    "risk_level",
];

/// One subject's history before a decision, as policies read it.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The request's device is known.
    pub device_known: bool,
    /// When the request's device was first seen (`now` for a new one).
    pub device_first_seen: Millis,
    /// Devices remembered for the subject.
    pub devices_seen: i64,
    /// The last known country (`""`: none).
    pub last_country: Option<[u8; 2]>,
    /// When the subject was last seen (0, the epoch: never).
    pub last_seen: Millis,
    /// Implied speed from the last location to this one, km/h (0.0: unknown).
    pub travel_kmh: f64,
    /// Failed step-ups in the last 24 h.
    pub stepups_failed: i64,
    /// The request's session was revoked (a Shared Signals
    /// `session-revoked` event).
    pub session_revoked: bool,
    /// When the subject's credentials last changed (`credential-change`;
    /// 0, the epoch: never).
    pub credential_changed: Millis,
    /// The request's device's compliance (`device-compliance-change`);
    /// `None`: never reported, when the field is absent
    /// (`has(history.device_compliant)` is false; reading it is an error,
    /// which fails closed).
    pub device_compliant: Option<bool>,
    /// The transmitter's risk level for the subject (`risk-level-change`):
    /// `low`, `medium` or `high`; `None`: never reported, which reads as
    /// `""`.
    pub risk_level: Option<&'static str>,
    /// The Shared Signals events behind the fields above, as (field, `jti`):
    /// what a decision's explanation names.
    pub events: Vec<(&'static str, Arc<str>)>,
    /// The decision's time.
    pub now: Millis,
    /// The subject's recent actions, for `count` (none: a subject never
    /// seen, or history off).
    pub actions: Option<Arc<dyn Actions>>,
}

/// The actions a subject took, as `history.count` reads them.
pub trait Actions: Send + Sync + std::fmt::Debug {
    /// Actions matching `pattern` in the `window` (ms) before `now`,
    /// counting no further than `limit`.
    fn count_up_to(&self, pattern: &str, now: Millis, window: Millis, limit: usize) -> usize;
}

/// Where a decision reads `history` from. A view can be built on the first
/// read (a decision whose conditions never read `history` never builds
/// one) or given whole.
pub trait Recall: Sync {
    /// The subject's history before the decision.
    fn view(&self) -> &View;
}

impl Recall for View {
    fn view(&self) -> &View {
        self
    }
}

impl View {
    /// The Shared Signals events behind the fields a condition (its
    /// `source`) reads, for an explanation: ``history.session_revoked from
    /// event `jti` ``, one per field; `None` when there are none.
    pub fn provenance(&self, source: &str) -> Option<String> {
        let parts: Vec<String> = self
            .events
            .iter()
            .filter(|(field, _)| source.contains(&format!("history.{field}")))
            .map(|(field, jti)| format!("history.{field} from event `{jti}`"))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// A subject never seen, at `now`.
    pub fn empty(now: Millis) -> Self {
        Self {
            device_first_seen: now,
            now,
            ..Self::default()
        }
    }

    /// Actions matching `pattern` in the `window` (ms) before now, this
    /// decision excluded.
    pub fn count(&self, pattern: &str, window: Millis) -> usize {
        self.count_up_to(pattern, window, usize::MAX)
    }

    /// [`View::count`], counting no further than `limit`.
    pub fn count_up_to(&self, pattern: &str, window: Millis, limit: usize) -> usize {
        self.actions
            .as_ref()
            .map_or(0, |a| a.count_up_to(pattern, self.now, window, limit))
    }
}

/// A history time (ms) as CEL reads it: out of range is the Unix epoch.
pub fn instant(ms: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A country code as text (`""` for none).
pub fn country_str(code: Option<&[u8; 2]>) -> &str {
    code.and_then(|c| std::str::from_utf8(c).ok()).unwrap_or("")
}

fn timestamp(ms: Millis) -> CelTimestamp {
    CelTimestamp::from(instant(ms).fixed_offset())
}

/// Field `name` of the view.
pub fn field<'v>(view: &View, name: &str) -> Result<CowVal<'static, 'v>, ExecutionError> {
    Ok(match name {
        "device_known" => CowVal::owned(CelBool::from(view.device_known)),
        "device_first_seen" => CowVal::owned(timestamp(view.device_first_seen)),
        "devices_seen" => CowVal::owned(CelInt::from(view.devices_seen)),
        "last_country" => CowVal::owned(CelString::from(
            country_str(view.last_country.as_ref()).to_owned(),
        )),
        "last_seen" => CowVal::owned(timestamp(view.last_seen)),
        "travel_kmh" => CowVal::owned(CelDouble::from(view.travel_kmh)),
        "stepups_failed" => CowVal::owned(CelInt::from(view.stepups_failed)),
        "session_revoked" => CowVal::owned(CelBool::from(view.session_revoked)),
        "credential_changed" => CowVal::owned(timestamp(view.credential_changed)),
        // Absent until a transmitter reports the device: `has()` is false,
        // and a bare read is an error, which fails closed.
        "device_compliant" => match view.device_compliant {
            Some(c) => CowVal::owned(CelBool::from(c)),
            None => return Err(ExecutionError::no_such_key(name)),
        },
        "risk_level" => CowVal::owned(CelString::from(view.risk_level.unwrap_or("").to_owned())),
        other => return Err(ExecutionError::no_such_key(other)),
    })
}

impl Val for View {
    fn get_type(&self) -> &Type {
        &HISTORY_TYPE
    }

    fn cel_type() -> &'static Type {
        &HISTORY_TYPE
    }

    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn as_container(&self) -> Option<&dyn Container> {
        Some(self)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

impl StaticVal for View {}

impl Indexer for View {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        field(self, key_of(idx)?)
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        field(&self, key_of(idx)?).map(CowVal::into_owned)
    }
}

impl Container for View {
    /// `"x" in history`: every field is there, except a device compliance
    /// never reported.
    fn contains(&self, value: &dyn Val) -> Result<bool, ExecutionError> {
        Ok(match key_of(value)? {
            "device_compliant" => self.device_compliant.is_some(),
            name => FIELDS.contains(&name),
        })
    }
}

/// `history.count(pattern, window)`.
fn count<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [target, pattern, window] = args.as_slice() else {
        return Err(ExecutionError::function_error(
            "count",
            "expects a glob and a duration",
        ));
    };
    let view = target
        .downcast_ref::<View>()
        .ok_or_else(|| ExecutionError::function_error("count", "only `history` has `count`"))?;
    let pattern = pattern
        .downcast_ref::<CelString>()
        .map(CelString::inner)
        .ok_or_else(|| ExecutionError::function_error("count", "the pattern must be a string"))?;
    let window = window
        .downcast_ref::<CelDuration>()
        .map(|d| d.inner().num_milliseconds())
        .ok_or_else(|| ExecutionError::function_error("count", "the window must be a duration"))?;
    if window <= 0 {
        return Err(ExecutionError::function_error(
            "count",
            "the window must be positive",
        ));
    }
    let n = view.count(pattern, window);
    Ok(CowVal::owned(CelInt::from(
        i64::try_from(n).unwrap_or(i64::MAX),
    )))
}

/// Declares `history.count(string, duration)` in `env`.
pub fn register(env: &mut cel::Env) -> Result<(), cel::DeclarationError> {
    env.add_member_overload(
        "count",
        "stepup_history_count_string_duration",
        HISTORY_TYPE.to_owned(),
        vec![types::STRING_TYPE, types::DURATION_TYPE],
        count,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(view: View, src: &str) -> cel::Value {
        let mut env = cel::Env::stdlib();
        register(&mut env).unwrap();
        let env = Arc::new(env);
        let program = env.compile(src).unwrap();
        let mut ctx = cel::Context::with_env(env);
        ctx.add_variable_as_val("history", Box::new(view));
        program.execute(&ctx).unwrap()
    }

    #[test]
    fn fields_and_count_read_in_cel() {
        let v = View {
            device_known: true,
            devices_seen: 3,
            last_country: Some(*b"DE"),
            travel_kmh: 1200.5,
            stepups_failed: 2,
            now: 10_000,
            ..View::default()
        };
        assert_eq!(
            eval(
                v.clone(),
                "history.device_known && history.devices_seen == 3"
            ),
            cel::Value::Bool(true)
        );
        assert_eq!(
            eval(
                v.clone(),
                r#"history.last_country == "DE" && history.travel_kmh > 900.0"#
            ),
            cel::Value::Bool(true)
        );
        assert_eq!(
            eval(
                v.clone(),
                r#"history.count("payments.*", duration("1h")) == 0"#
            ),
            cel::Value::Bool(true)
        );
        assert_eq!(
            eval(
                v.clone(),
                r#"has(history.stepups_failed) && history.stepups_failed >= 2"#
            ),
            cel::Value::Bool(true)
        );
        assert_eq!(
            eval(
                View::empty(5),
                r#"history.last_seen == timestamp("1970-01-01T00:00:00Z")"#
            ),
            cel::Value::Bool(true)
        );
    }

    #[test]
    fn signal_fields_read_in_cel_and_unknown_ones_are_absent() {
        let unknown = View::empty(5);
        for (src, want) in [
            ("history.session_revoked", false),
            ("has(history.session_revoked)", true),
            ("has(history.device_compliant)", false),
            ("has(history.risk_level)", true),
            (r#"history.risk_level == """#, true),
            (
                r#"history.credential_changed == timestamp("1970-01-01T00:00:00Z")"#,
                true,
            ),
        ] {
            assert_eq!(eval(unknown.clone(), src), cel::Value::Bool(want), "{src}");
        }
        assert_eq!(unknown.provenance("history.session_revoked"), None);
        // A bare read of an unreported compliance fails (closed).
        let mut env = cel::Env::stdlib();
        register(&mut env).unwrap();
        let env = Arc::new(env);
        let program = env.compile("!history.device_compliant").unwrap();
        let mut ctx = cel::Context::with_env(env);
        ctx.add_variable_as_val("history", Box::new(unknown.clone()));
        assert!(program.execute(&ctx).is_err());
        let known = View {
            session_revoked: true,
            credential_changed: 3_600_000,
            device_compliant: Some(true),
            risk_level: Some("high"),
            events: vec![("session_revoked", Arc::from("j-1"))],
            now: 7_200_000,
            ..View::default()
        };
        for src in [
            "history.session_revoked",
            "has(history.device_compliant) && history.device_compliant",
            r#"history.risk_level == "high""#,
            r#"now - history.credential_changed < duration("24h")"#,
        ] {
            let mut env = cel::Env::stdlib();
            register(&mut env).unwrap();
            let env = Arc::new(env);
            let program = env.compile(src).unwrap();
            let mut ctx = cel::Context::with_env(env);
            ctx.add_variable_as_val("history", Box::new(known.clone()));
            ctx.add_variable_as_val(
                "now",
                Box::new(CelTimestamp::from(instant(7_200_000).fixed_offset())),
            );
            assert_eq!(
                program.execute(&ctx).unwrap(),
                cel::Value::Bool(true),
                "{src}"
            );
        }
        assert_eq!(
            known.provenance("history.session_revoked || x").as_deref(),
            Some("history.session_revoked from event `j-1`")
        );
        assert_eq!(known.provenance("history.risk_level == \"high\""), None);
    }
}
