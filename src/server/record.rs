//! `RecordStepUp`: validation of a step-up report (bad input ->
//! `INVALID_ARGUMENT` naming the field) and its conversion to a
//! [`StepUpReport`] keyed by hashes, and the response.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pbjson_types::Timestamp;

use crate::history::{Keyer, Millis, StepUpReport};
use crate::policy::PolicySet;
use crate::proto::v1 as pb;
use crate::request::validate::{InvalidRequest, invalid, string, strings, timestamp, within_skew};

/// Checks `req` against `policy` (level names, acr values) and turns it into
/// a report at `clock` (unless `time` is set, which must lie within
/// `max_skew` of `clock`), identifiers hashed by `keyer`.
pub fn step_up_report(
    req: &pb::RecordStepUpRequest,
    clock: DateTime<Utc>,
    max_skew: Option<std::time::Duration>,
    policy: &PolicySet,
    keyer: &Keyer,
) -> Result<StepUpReport, InvalidRequest> {
    if req.subject_id.is_empty() {
        return Err(invalid("subject_id", "required"));
    }
    string("subject_id", &req.subject_id)?;
    string("tenant", &req.tenant)?;
    string("session_id", &req.session_id)?;
    string("device_id", &req.device_id)?;
    string("level", &req.level)?;
    string("acr", &req.acr)?;
    strings("amr", &req.amr)?;
    let level = if req.level.is_empty() {
        None
    } else {
        match policy.levels.iter().position(|l| *l.name == *req.level) {
            Some(i) => Some(i),
            None => {
                let names: Vec<String> = policy
                    .levels
                    .iter()
                    .map(|l| format!("`{}`", l.name))
                    .collect();
                let known = if names.is_empty() {
                    "the policy set defines no levels".to_owned()
                } else {
                    format!("the levels are {}", names.join(", "))
                };
                return Err(invalid(
                    "level",
                    format!("unknown level `{}` ({known})", req.level),
                ));
            }
        }
    };
    let acr: Option<Arc<str>> = match (level, req.acr.is_empty()) {
        (Some(l), false) => {
            if policy.level_of_acr(&req.acr) != Some(l) {
                return Err(invalid(
                    "acr",
                    format!("`{}` is not an acr value of level `{}`", req.acr, req.level),
                ));
            }
            Some(Arc::from(req.acr.as_str()))
        }
        (Some(l), true) => policy
            .levels
            .get(l)
            .and_then(|l| l.acr.first())
            .map(Arc::clone),
        (None, false) => Some(Arc::from(req.acr.as_str())),
        (None, true) => None,
    };
    let skew = chrono::Duration::from_std(crate::engine::AUTH_TIME_SKEW).unwrap_or_default();
    let at = match &req.time {
        Some(t) => timestamp("time", t)?,
        None => clock,
    };
    within_skew("time", at, clock, max_skew)?;
    // A report from the future would open an elevation window that is live
    // now and lasts past its stated end.
    if at > clock + skew {
        return Err(invalid("time", "more than 5 minutes in the future"));
    }
    let auth_time = match &req.auth_time {
        Some(t) => timestamp("auth_time", t)?,
        None => at,
    };
    if auth_time > at + skew {
        return Err(invalid("auth_time", "more than 5 minutes after `time`"));
    }
    let ms = |t: DateTime<Utc>| -> Millis { t.timestamp_millis() };
    Ok(StepUpReport {
        subject: keyer.subject(&req.tenant, &req.subject_id),
        session: (!req.session_id.is_empty()).then(|| keyer.session(&req.session_id)),
        device: (!req.device_id.is_empty()).then(|| keyer.device(&req.device_id)),
        acr,
        amr: req.amr.iter().map(|m| Arc::from(m.as_str())).collect(),
        auth_time: ms(auth_time),
        at: ms(at),
        success: req.success,
    })
}

/// The response to a recorded report.
pub fn step_up_response(elevated_until: Option<Millis>, failed: usize) -> pb::RecordStepUpResponse {
    pb::RecordStepUpResponse {
        elevated_until: elevated_until.map(|ms| Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        }),
        stepups_failed: u32::try_from(failed).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: stepup/v1
kind: Levels
levels:
  - name: aal1
    acr: ["urn:stepup:aal1"]
  - name: aal2
    acr: ["urn:stepup:aal2", "urn:okta:loa:2fa:any"]
"#;

    fn check(req: pb::RecordStepUpRequest) -> Result<StepUpReport, String> {
        let (policy, _) = PolicySet::from_str("p.yaml", POLICY).unwrap();
        step_up_report(&req, Utc::now(), None, &policy, &Keyer::from_secret("k"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn unknown_level_without_levels_says_there_are_none() {
        let (policy, _) = PolicySet::from_str(
            "p.yaml",
            "apiVersion: stepup/v1\nkind: Levels\nlevels: []\n",
        )
        .unwrap();
        let req = pb::RecordStepUpRequest {
            subject_id: "alice".into(),
            level: "aal2".into(),
            ..Default::default()
        };
        let e =
            step_up_report(&req, Utc::now(), None, &policy, &Keyer::from_secret("k")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`level`: unknown level `aal2` (the policy set defines no levels)"
        );
    }

    #[test]
    fn validates_and_names_the_field() {
        assert_eq!(
            check(pb::RecordStepUpRequest::default()).unwrap_err(),
            "`subject_id`: required"
        );
        let base = pb::RecordStepUpRequest {
            subject_id: "alice".into(),
            session_id: "s-1".into(),
            success: true,
            ..Default::default()
        };
        let e = check(pb::RecordStepUpRequest {
            level: "aal9".into(),
            ..base.clone()
        })
        .unwrap_err();
        assert_eq!(
            e,
            "`level`: unknown level `aal9` (the levels are `aal1`, `aal2`)"
        );
        let e = check(pb::RecordStepUpRequest {
            level: "aal2".into(),
            acr: "urn:stepup:aal1".into(),
            ..base.clone()
        })
        .unwrap_err();
        assert_eq!(
            e,
            "`acr`: `urn:stepup:aal1` is not an acr value of level `aal2`"
        );
        let e = check(pb::RecordStepUpRequest {
            amr: vec!["x".repeat(2000)],
            ..base.clone()
        })
        .unwrap_err();
        assert_eq!(e, "`amr[0]`: longer than 1024 bytes");
        let e = check(pb::RecordStepUpRequest {
            time: Some(Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..base.clone()
        })
        .unwrap_err();
        assert_eq!(e, "`time`: nanos must be in 0..=999999999");
        let future = Utc::now().timestamp() + 3600;
        let e = check(pb::RecordStepUpRequest {
            time: Some(Timestamp {
                seconds: future,
                nanos: 0,
            }),
            ..base.clone()
        })
        .unwrap_err();
        assert_eq!(e, "`time`: more than 5 minutes in the future");
        let e = check(pb::RecordStepUpRequest {
            auth_time: Some(Timestamp {
                seconds: future,
                nanos: 0,
            }),
            ..base.clone()
        })
        .unwrap_err();
        assert_eq!(e, "`auth_time`: more than 5 minutes after `time`");
        let r = check(pb::RecordStepUpRequest {
            level: "aal2".into(),
            ..base
        })
        .unwrap();
        assert_eq!(r.acr.as_deref(), Some("urn:stepup:aal2"));
        assert!(r.session.is_some() && r.device.is_none());
    }
}
