//! `RecordStepUp`: who may report (a report carries the step-up's signed
//! token as `evidence`, or comes from a caller on `[trust] reporters`), what
//! the evidence proves (subject, session, acr, amr, auth_time: the fields
//! sent beside it must agree), validation of the report (bad input ->
//! `INVALID_ARGUMENT` naming the field) and its conversion to a
//! [`StepUpReport`] keyed by hashes, and the response.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pbjson_types::Timestamp;

use crate::history::{Keyer, Millis, StepUpReport};
use crate::policy::PolicySet;
use crate::proto::v1 as pb;
use crate::request::validate::{InvalidRequest, invalid, string, strings, timestamp, within_skew};
use crate::trust::{IssuerConfig, TokenError, Trust, Verified};

use super::call::CallError;
use super::peer::Peer;

/// Why a report is believed.
#[derive(Debug)]
pub enum Authority {
    /// Its `evidence` verified: what is applied comes from the token.
    Evidence(Box<Verified>),
    /// The caller is a listed reporter (verified mTLS identity).
    Reporter(Arc<str>),
}

/// The report `req`, sent by `peer`, makes, if it is trusted, and why.
/// Without evidence the fields are all there is: malformed input is named
/// first (as for Decide; `success` must say whether the challenge was
/// passed), then the caller must be on `[trust] reporters`, and only then
/// are the fields checked against the policy. With evidence (from anyone,
/// reporters included) a failure is refused before anything else (the
/// token proves a success), then the token is verified and
/// what is recorded comes from it ([`apply_evidence`]), its time not held to
/// `max_skew` (it is signed and bounded by the token's `exp`).
pub async fn trusted_report(
    req: pb::RecordStepUpRequest,
    peer: Option<&Peer>,
    trust: &Trust,
    policy: &PolicySet,
    keyer: &Keyer,
    clock: DateTime<Utc>,
    max_skew: Option<std::time::Duration>,
) -> Result<(StepUpReport, Authority), CallError> {
    if req.evidence.is_empty() {
        // The fields' shape (what Decide checks too), then the caller, then
        // the policy: an unlisted caller learns nothing of the policy (level
        // names, acr values) from `INVALID_ARGUMENT`.
        shape(&req, clock, max_skew)?;
        let reporter = reporter(trust, peer)?;
        let report = step_up_report(&req, clock, max_skew, policy, keyer)?;
        return Ok((report, Authority::Reporter(reporter)));
    }
    if req.success == Some(false) {
        return Err(invalid(
            "success",
            "false beside `evidence`: the evidence is the token of a passed step-up; a failure is reported without evidence, by a listed reporter",
        )
        .into());
    }
    if trust.is_off() {
        return Err(CallError::ReportsOff);
    }
    let token = trust
        .verify(&req.evidence, &crate::trust::Expect::evidence())
        .await
        .map_err(|e| {
            // The caller is told the check that failed, not what the
            // configuration holds (audiences, JWKS location): that is here.
            if e.is_token_fault() {
                tracing::debug!(code = e.code(), "step-up evidence refused: {e}");
            } else {
                tracing::warn!(code = e.code(), "step-up evidence not checked: {e}");
            }
            CallError::Evidence(e)
        })?;
    evidence_kind(&token)?;
    let issuer = trust.issuer(&token.issuer).ok_or_else(|| {
        CallError::Evidence(TokenError::UnknownIssuer {
            issuer: token.issuer.to_string(),
        })
    })?;
    let qualify = trust.qualifies_subjects();
    let req = apply_evidence(req, &token, issuer, qualify, policy)?;
    let report = step_up_report(&req, clock, None, policy, keyer)?;
    Ok((report, Authority::Evidence(Box::new(token))))
}

/// The caller's identity, if it is on `[trust] reporters`.
fn reporter(trust: &Trust, peer: Option<&Peer>) -> Result<Arc<str>, CallError> {
    if trust.is_off() {
        return Err(CallError::ReportsOff);
    }
    match peer.and_then(Peer::identity) {
        Some(id) if trust.is_reporter(id) => Ok(Arc::from(id)),
        Some(id) => Err(CallError::Untrusted {
            caller: format!("`{id}` is not on `[trust] reporters`"),
        }),
        None => Err(CallError::Untrusted {
            caller: "has no verified client certificate (mTLS), so it is not a listed reporter"
                .to_owned(),
        }),
    }
}

/// Refuses a token that is no step-up evidence by its kind: a `typ` other
/// than none, `JWT` or `at+jwt` (e.g. `logout+jwt`, `secevent+jwt`), or an
/// `events` claim (a Security Event Token or a logout token, which proves no
/// authentication).
fn evidence_kind(token: &Verified) -> Result<(), CallError> {
    if let Some(typ) = &token.typ {
        let lower = typ.to_ascii_lowercase();
        let short = lower.strip_prefix("application/").unwrap_or(&lower);
        if short != "jwt" && short != "at+jwt" {
            return Err(CallError::Evidence(TokenError::Type {
                found: format!("`{}`", typ.chars().take(64).collect::<String>()),
                expected: "absent, `JWT` or `at+jwt` (an ID token or access token)".to_owned(),
            }));
        }
    }
    if token.claims.contains_key("events") {
        return Err(claim_type(
            "events",
            "absent (a token with `events` is a security event or logout token, no evidence of a step-up)",
        ));
    }
    Ok(())
}

fn mismatch(field: &'static str, detail: impl Into<String>) -> CallError {
    CallError::EvidenceMismatch {
        field,
        detail: detail.into(),
    }
}

fn claim_type(claim: &str, expected: &'static str) -> CallError {
    CallError::Evidence(TokenError::InvalidClaim {
        claim: claim.to_owned(),
        expected,
    })
}

/// `req` as the evidence says: subject (the issuer's subject claim, as
/// `<iss>#<sub>` when `qualify`: several issuers are trusted, the rule
/// Envoy's mapping follows with several `issuers`),
/// session (`sid`), `acr`, `amr`, `auth_time` from the token, the tenant
/// from the issuer's settings when it names one; each field sent beside
/// them checked to agree (else `PERMISSION_DENIED` naming the field); a
/// success; `auth_time` required (else `UNAUTHENTICATED` `missing_claim`);
/// at the token's `auth_time` (its `iat` if earlier), so that the same
/// evidence reported twice records the same thing and a token refreshed
/// after the step-up opens no later window.
pub fn apply_evidence(
    mut req: pb::RecordStepUpRequest,
    token: &Verified,
    issuer: &IssuerConfig,
    qualify: bool,
    policy: &PolicySet,
) -> Result<pb::RecordStepUpRequest, CallError> {
    let subject_claim = issuer.subject_claim.as_str();
    let subject = token.subject.as_deref().ok_or_else(|| {
        CallError::Evidence(TokenError::MissingClaim {
            claim: subject_claim.to_owned(),
        })
    })?;
    let subject = if qualify {
        format!("{}#{subject}", token.issuer)
    } else {
        subject.to_owned()
    };
    if let Some(tenant) = &issuer.tenant {
        if !req.tenant.is_empty() && req.tenant != *tenant {
            return Err(mismatch(
                "tenant",
                "is not the tenant of the evidence's issuer (`[[trust.issuers]] tenant`)",
            ));
        }
        req.tenant.clone_from(tenant);
    }
    if !req.subject_id.is_empty() && req.subject_id != subject {
        return Err(mismatch(
            "subject_id",
            format!("does not match the evidence's `{subject_claim}` claim"),
        ));
    }
    req.subject_id = subject;
    let text = |name: &str| -> Result<Option<String>, CallError> {
        match token.claims.get(name) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(claim_type(name, "a string")),
        }
    };
    let agree = |field: &'static str, sent: &str, claim: &str, value: &Option<String>| match value {
        _ if sent.is_empty() => Ok(()),
        Some(v) if v == sent => Ok(()),
        Some(_) => Err(mismatch(
            field,
            format!("does not match the evidence's `{claim}` claim"),
        )),
        None => Err(mismatch(
            field,
            format!("is given but the evidence has no `{claim}` claim"),
        )),
    };
    let sid = text("sid")?;
    agree("session_id", &req.session_id, "sid", &sid)?;
    req.session_id = sid.unwrap_or_default();
    let acr = text("acr")?;
    agree("acr", &req.acr, "acr", &acr)?;
    if !req.level.is_empty()
        && let Some(level) = policy.levels.iter().position(|l| *l.name == *req.level)
    {
        match &acr {
            None => {
                return Err(mismatch(
                    "level",
                    "is given but the evidence has no `acr` claim",
                ));
            }
            Some(a) if policy.level_of_acr(a) != Some(level) => {
                return Err(mismatch(
                    "level",
                    "is not the level of the evidence's `acr` claim",
                ));
            }
            Some(_) => {}
        }
    }
    req.acr = acr.unwrap_or_default();
    let amr: Vec<String> = match token.claims.get("amr") {
        None => Vec::new(),
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| claim_type("amr", "an array of strings"))?,
        Some(_) => return Err(claim_type("amr", "an array of strings")),
    };
    if !req.amr.is_empty() {
        let mut sent = req.amr.clone();
        let mut proven = amr.clone();
        sent.sort();
        sent.dedup();
        proven.sort();
        proven.dedup();
        if sent != proven {
            return Err(mismatch("amr", "does not match the evidence's `amr` claim"));
        }
    }
    req.amr = amr;
    apply_times(&mut req, token)?;
    req.success = Some(true);
    Ok(req)
}

/// `auth_time` (required, and the one sent beside it must agree) and the
/// step-up's time from `token` into `req`.
fn apply_times(req: &mut pb::RecordStepUpRequest, token: &Verified) -> Result<(), CallError> {
    let seconds = |name: &str| -> Result<Option<i64>, CallError> {
        match token.claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_f64().map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| claim_type(name, "a number of seconds")),
        }
    };
    // Required: without it the token's `iat` would pass for the time of
    // the authentication, and a token refreshed long after the step-up
    // (same `acr`, new `iat`) would look fresh to `max_age`.
    let auth_time = seconds("auth_time")?.ok_or_else(|| {
        CallError::Evidence(TokenError::MissingClaim {
            claim: "auth_time".to_owned(),
        })
    })?;
    if let Some(sent) = &req.auth_time
        && auth_time != sent.seconds
    {
        return Err(mismatch(
            "auth_time",
            "does not match the evidence's `auth_time` claim",
        ));
    }
    let stamp = |seconds: i64| Timestamp { seconds, nanos: 0 };
    req.auth_time = Some(stamp(auth_time));
    // The step-up happened at `auth_time`: the elevation window starts
    // there (at `iat` only when that is earlier), so a token issued later
    // for the same authentication (a refresh) never opens a later window.
    let at = seconds("iat")?.map_or(auth_time, |iat| iat.min(auth_time));
    req.time = Some(stamp(at));
    Ok(())
}

/// What can be checked of `req` without the policy, as Decide checks its
/// requests: `subject_id` and `success` given (a report that does not say
/// whether the challenge was passed is no failure), no string too long,
/// `time` valid and within `max_skew` of `clock`.
fn shape(
    req: &pb::RecordStepUpRequest,
    clock: DateTime<Utc>,
    max_skew: Option<std::time::Duration>,
) -> Result<(), InvalidRequest> {
    if req.subject_id.is_empty() {
        return Err(invalid("subject_id", "required"));
    }
    if req.success.is_none() {
        return Err(invalid(
            "success",
            "required without `evidence` (true: the challenge was passed; false: it failed)",
        ));
    }
    string("subject_id", &req.subject_id)?;
    string("tenant", &req.tenant)?;
    string("session_id", &req.session_id)?;
    string("device_id", &req.device_id)?;
    string("level", &req.level)?;
    string("acr", &req.acr)?;
    strings("amr", &req.amr)?;
    if let Some(t) = &req.time {
        within_skew("time", timestamp("time", t)?, clock, max_skew)?;
    }
    Ok(())
}

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
    shape(req, clock, max_skew)?;
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
        success: req.success == Some(true),
    })
}

/// The response to a recorded report.
pub fn step_up_response(elevation_end: Option<Millis>, failed: usize) -> pb::RecordStepUpResponse {
    pb::RecordStepUpResponse {
        elevation_expire_time: elevation_end.map(|ms| Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        }),
        stepups_failed: i32::try_from(failed).unwrap_or(i32::MAX),
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
            success: Some(true),
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
            success: Some(true),
            ..Default::default()
        };
        // Not saying whether the challenge was passed is no failure.
        let e = check(pb::RecordStepUpRequest {
            success: None,
            ..base.clone()
        })
        .unwrap_err();
        assert_eq!(
            e,
            "`success`: required without `evidence` (true: the challenge was passed; false: it failed)"
        );
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

    fn token(typ: Option<&str>, claims: serde_json::Value) -> Verified {
        Verified {
            issuer: Arc::from("https://idp.test"),
            subject: Some("alice".to_owned()),
            kid: None,
            algorithm: jsonwebtoken::Algorithm::ES256,
            typ: typ.map(str::to_owned),
            claims: claims.as_object().cloned().unwrap(),
        }
    }

    fn apply(token: &Verified) -> Result<pb::RecordStepUpRequest, String> {
        let (policy, _) = PolicySet::from_str("p.yaml", POLICY).unwrap();
        let issuer = IssuerConfig::new(
            "https://idp.test",
            vec!["app".into()],
            crate::trust::KeySource::File("jwks.json".into()),
        );
        apply_evidence(
            pb::RecordStepUpRequest::default(),
            token,
            &issuer,
            false,
            &policy,
        )
        .map_err(|e| e.to_string())
    }

    /// `iat` is no authentication time: evidence without `auth_time` is
    /// refused, and a token issued (refreshed) after the authentication
    /// opens its window at `auth_time`, not at the later `iat`.
    #[test]
    fn evidence_needs_auth_time_and_its_window_starts_there() {
        let t = token(
            None,
            serde_json::json!({ "sid": "s-1", "acr": "urn:stepup:aal2", "iat": 2_000_000 }),
        );
        assert_eq!(
            apply(&t).unwrap_err(),
            "`evidence` refused (missing_claim): the `auth_time` claim is missing"
        );
        let t = token(
            None,
            serde_json::json!({ "sid": "s-1", "acr": "urn:stepup:aal2", "iat": 2_000_000, "auth_time": 1_000_000 }),
        );
        let req = apply(&t).unwrap();
        assert_eq!(req.auth_time.map(|t| t.seconds), Some(1_000_000));
        assert_eq!(req.time.map(|t| t.seconds), Some(1_000_000));
        let t = token(
            None,
            serde_json::json!({ "sid": "s-1", "iat": 999_990, "auth_time": 1_000_000 }),
        );
        assert_eq!(apply(&t).unwrap().time.map(|t| t.seconds), Some(999_990));
    }

    /// Only an ID token or access token is evidence: not a logout token,
    /// not a security event, whatever it carries.
    #[test]
    fn evidence_must_be_an_id_or_access_token() {
        for typ in [
            None,
            Some("JWT"),
            Some("at+jwt"),
            Some("application/AT+JWT"),
        ] {
            assert!(
                evidence_kind(&token(typ, serde_json::json!({}))).is_ok(),
                "{typ:?}"
            );
        }
        let e = evidence_kind(&token(Some("logout+jwt"), serde_json::json!({}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`evidence` refused (typ_mismatch): `typ` is `logout+jwt`, expected absent, `JWT` or `at+jwt` (an ID token or access token)"
        );
        let events = serde_json::json!({ "events": { "http://schemas.openid.net/event/backchannel-logout": {} } });
        let e = evidence_kind(&token(Some("JWT"), events)).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "`evidence` refused (invalid_claim): the `events` claim is not absent"
            ),
            "{e}"
        );
    }
}
