//! The Shared Signals receiver: Security Event Tokens (RFC 8417) pushed by
//! a transmitter (RFC 8935), verified with the keys of the trusted issuers
//! (`trust`), checked against replays ([`replay::Seen`]), their subject
//! (RFC 9493, SSF 1.0 complex subjects) mapped to the request's
//! `subject.id`, `session.id` and `device.id` ([`subject`]), and their
//! effect applied to the subject's history (so, with a shared backend, on
//! every replica):
//!
//! | event (CAEP 1.0) | effect |
//! | --- | --- |
//! | `session-revoked` | `history.session_revoked` for the session (without one: every session authenticated until then); its elevations end |
//! | `assurance-level-change` up, `session-established` | an elevation of the session, as a trusted `RecordStepUp` |
//! | `assurance-level-change` down | the session's (or every session's) elevations end |
//! | `credential-change` | `history.credential_changed` |
//! | `device-compliance-change` | `history.device_compliant` for the device |
//! | `risk-level-change` | `history.risk_level` |
//! | SSF `verification`, `stream-updated`, other types | acknowledged, no effect |
//!
//! Every fact keeps the event's `jti`: an explained decision names the
//! events behind the history it read. Effects are dated by the event's time,
//! and the later fact wins, so an event delivered twice (to two replicas)
//! or out of order changes nothing more.

pub mod config;
pub mod event;
pub mod replay;
pub mod subject;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::history::signals::{Effect, Mark, RiskLevel, Signal};
use crate::history::{History, Keyer, StepUpReport, SubjectKey};
use crate::policy::PolicySet;
use crate::trust::{Expect, TokenError, Trust};
pub use config::SsfConfig;
use event::{Event, Kind, text};
use replay::{Millis, Refusal, Seen};
pub use subject::Selector;

/// Largest SET accepted, in bytes (the HTTP body).
pub const MAX_SET_BYTES: usize = 64 * 1024;

/// How far an event's time may lie ahead of the clock.
const SKEW: Millis = 5 * 60 * 1000;

/// Why a SET was refused. [`ReceiveError::err`] is its RFC 8935 error code,
/// [`ReceiveError::status`] the HTTP status, [`ReceiveError::description`]
/// what the transmitter is told; the message (`Display`) is for the log.
/// Messages never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    /// Not a SET, or the event does not conform to its definition, or a
    /// replayed `jti`.
    #[error("{0}")]
    InvalidRequest(String),
    /// The SET does not verify (signature, key, algorithm, issuer,
    /// audience, claims), or the issuer's keys cannot be loaded now.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The issuer has no stream here.
    #[error("{0}")]
    InvalidIssuer(String),
    /// The stream needs a bearer token and none was sent (HTTP 401).
    #[error("the stream of this issuer needs a bearer token (`Authorization: Bearer ...`)")]
    NoToken,
    /// The bearer token is not the stream's (HTTP 403).
    #[error("the bearer token is not the token of this issuer's stream")]
    WrongToken,
    /// The receiver cannot take the event now; the transmitter should retry
    /// (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
}

impl ReceiveError {
    /// The RFC 8935 error code (`err`).
    pub fn err(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::Token(e) => match e {
                TokenError::AlgorithmNotAllowed { .. }
                | TokenError::UnknownKey { .. }
                | TokenError::KeyMismatch { .. } => "invalid_key",
                TokenError::UnknownIssuer { .. } => "invalid_issuer",
                TokenError::Audience { .. } => "invalid_audience",
                TokenError::BadSignature => "authentication_failed",
                TokenError::KeysUnavailable { .. } => "unavailable",
                _ => "invalid_request",
            },
            Self::InvalidIssuer(_) => "invalid_issuer",
            Self::NoToken => "authentication_failed",
            Self::WrongToken => "access_denied",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status: 400 for a SET at fault, 401 without the stream's
    /// token, 403 with another, 503 when the receiver cannot take it now.
    pub fn status(&self) -> u16 {
        match self {
            Self::NoToken => 401,
            Self::WrongToken => 403,
            Self::Unavailable(_) | Self::Token(TokenError::KeysUnavailable { .. }) => 503,
            _ => 400,
        }
    }

    /// The `description` of the RFC 8935 error object: what the SET did
    /// wrong, without the receiver's configuration (accepted audiences and
    /// algorithms, trusted issuers, key URLs, settings), which a caller not
    /// yet authenticated must not learn. The log has the whole message.
    pub fn description(&self) -> String {
        match self {
            Self::Token(e) => match e {
                TokenError::AlgorithmNotAllowed { .. } => {
                    "the SET's algorithm is not accepted".to_owned()
                }
                TokenError::UnknownIssuer { .. } => "the SET's issuer is not trusted".to_owned(),
                TokenError::UnknownKey { .. } => {
                    "no key of the issuer has the SET's `kid`".to_owned()
                }
                TokenError::KeyMismatch { .. } => {
                    "the key named by `kid` does not verify the SET's algorithm".to_owned()
                }
                TokenError::KeysUnavailable { .. } => {
                    "the issuer's keys are unavailable: retry later".to_owned()
                }
                TokenError::Audience { .. } => "`aud` does not name this receiver".to_owned(),
                other => other.to_string(),
            },
            Self::InvalidIssuer(_) => "the SET's issuer has no stream here".to_owned(),
            Self::Unavailable(_) => "the receiver cannot take events now: retry later".to_owned(),
            Self::InvalidRequest(_) | Self::NoToken | Self::WrongToken => self.to_string(),
        }
    }
}

/// What was done with an accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The event type's short name (`session-revoked`), or its URI when
    /// not understood.
    pub kind: String,
    /// The SET's `jti`.
    pub jti: String,
    /// The SET's `txn`, if any.
    pub txn: Option<String>,
    /// The effect, in words (`session revoked`, `no effect: ...`).
    pub effect: &'static str,
}

/// What an event does, worked out before anything is applied.
enum Plan {
    /// Nothing (the reason, for the log).
    Nothing(&'static str),
    /// A fact about the subject.
    Signal(Signal, &'static str),
    /// An elevation, as a trusted step-up report.
    StepUp(StepUpReport, &'static str),
}

/// The verified issuer of a SET, as its subjects are read.
struct Issuer<'a> {
    /// The SET's `iss`.
    name: &'a str,
    /// The tenant the issuer is bound to (`[[trust.issuers]] tenant`).
    tenant: Option<&'a str>,
    /// Whether subject ids are `<iss>#<sub>` ([`Trust::qualifies_subjects`]).
    qualify: bool,
}

/// The receiver: settings and the replay memory.
#[derive(Debug)]
pub struct Receiver {
    config: SsfConfig,
    seen: Seen,
}

/// Bearer tokens compared in time independent of where they differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Receiver {
    /// A receiver per `config`.
    pub fn new(config: SsfConfig) -> Self {
        let window = Millis::try_from(config.jti_window.as_millis()).unwrap_or(Millis::MAX);
        Self {
            seen: Seen::new(window, config.max_jtis),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &SsfConfig {
        &self.config
    }

    /// Event ids remembered against replays.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }

    /// Checks the request's `bearer` token before its body is read: an
    /// error when it belongs to no stream, or when none is presented and
    /// every stream needs one. The endpoint calls it on the headers, so
    /// that a caller without the token holds nothing while it sends.
    pub fn admits_bearer(&self, bearer: Option<&str>) -> Result<(), ReceiveError> {
        self.authenticate(bearer).map(|_| ())
    }

    /// Which stream a presented bearer token belongs to (its index); an
    /// error when it belongs to none, or when none is presented and every
    /// stream needs one (no point verifying the SET then).
    fn authenticate(&self, bearer: Option<&str>) -> Result<Option<usize>, ReceiveError> {
        let streams = &self.config.streams;
        match bearer {
            Some(t) => streams
                .iter()
                .position(|s| s.token.as_ref().is_some_and(|k| same_token(&k.0, t)))
                .map(Some)
                .ok_or(ReceiveError::WrongToken),
            None if !streams.is_empty() && streams.iter().all(|s| s.token.is_some()) => {
                Err(ReceiveError::NoToken)
            }
            None => Ok(None),
        }
    }

    /// Checks that `issuer` may send events here with the token presented
    /// (the stream `presented`, if any).
    fn authorise(&self, issuer: &str, presented: Option<usize>) -> Result<(), ReceiveError> {
        let streams = &self.config.streams;
        if streams.is_empty() {
            return Ok(());
        }
        let Some(i) = streams.iter().position(|s| s.issuer == issuer) else {
            return Err(ReceiveError::InvalidIssuer(format!(
                "issuer `{issuer}` has no stream here (`[[ssf.streams]]`)"
            )));
        };
        match (streams.get(i).and_then(|s| s.token.as_ref()), presented) {
            (None, _) => Ok(()),
            (Some(_), Some(p)) if p == i => Ok(()),
            (Some(_), Some(_)) => Err(ReceiveError::WrongToken),
            (Some(_), None) => Err(ReceiveError::NoToken),
        }
    }

    /// Receives one SET (`token`, the HTTP body) with the `bearer` token of
    /// the request, if any, at `now`: verifies it with `trust`, checks it,
    /// and applies its effect to `history` (levels from `policy`).
    pub async fn receive(
        &self,
        token: &str,
        bearer: Option<&str>,
        trust: &Trust,
        history: &History,
        policy: &PolicySet,
        now: DateTime<Utc>,
    ) -> Result<Received, ReceiveError> {
        let presented = self.authenticate(bearer)?;
        if !history.is_on() {
            return Err(ReceiveError::Unavailable(
                "history is off (`[history] enabled = false`): events cannot be applied".to_owned(),
            ));
        }
        let expect = Expect::security_event(self.config.audience.clone());
        let verified = trust.verify_at(token, &expect, now.timestamp()).await?;
        self.authorise(&verified.issuer, presented)?;
        let now_ms = now.timestamp_millis();
        let window = Millis::try_from(self.config.jti_window.as_millis()).unwrap_or(Millis::MAX);
        let event = event::read(&verified.claims, now_ms, SKEW, window)
            .map_err(ReceiveError::InvalidRequest)?;
        let tenant = trust
            .issuer(&verified.issuer)
            .and_then(|i| i.tenant.as_deref());
        let issuer = Issuer {
            name: &verified.issuer,
            tenant,
            qualify: trust.qualifies_subjects(),
        };
        let plan = self.plan(&event, history.keyer(), &issuer, policy, now_ms)?;
        match self
            .seen
            .admit(&verified.issuer, event.jti, event.iat, now_ms)
        {
            Ok(()) => {}
            Err(Refusal::Replayed) => {
                return Err(ReceiveError::InvalidRequest(format!(
                    "`jti` `{}` was already received (replay)",
                    event.jti
                )));
            }
            Err(Refusal::Full) => {
                return Err(ReceiveError::Unavailable(format!(
                    "{} event ids are remembered against replays ([ssf] max_jtis): retry later",
                    self.config.max_jtis
                )));
            }
        }
        let effect = match plan {
            Plan::Nothing(why) => why,
            Plan::Signal(s, what) => {
                history.signal(s);
                what
            }
            Plan::StepUp(r, what) => {
                history.report(r);
                what
            }
        };
        Ok(Received {
            kind: event
                .kind
                .map_or_else(|| event.uri.to_owned(), |k| k.name().to_owned()),
            jti: event.jti.to_owned(),
            txn: event.txn.map(str::to_owned),
            effect,
        })
    }

    /// What `event` does, with identifiers hashed by `keyer`, about a
    /// subject of `issuer`.
    fn plan(
        &self,
        event: &Event<'_>,
        keyer: &Keyer,
        issuer: &Issuer<'_>,
        policy: &PolicySet,
        now: Millis,
    ) -> Result<Plan, ReceiveError> {
        let Some(kind) = event.kind else {
            return Ok(Plan::Nothing("no effect: event type not handled"));
        };
        let mark = Mark {
            at: event.at,
            jti: Arc::from(crate::history::signals::kept_jti(event.jti)),
        };
        let invalid = |m: String| ReceiveError::InvalidRequest(m);
        let signal = |subject: SubjectKey, effect: Effect, what| {
            Plan::Signal(
                Signal {
                    subject,
                    effect,
                    mark: mark.clone(),
                },
                what,
            )
        };
        let ids = || self.identifiers(event, keyer, issuer);
        Ok(match kind {
            Kind::Verification => Plan::Nothing("no effect: verification acknowledged"),
            Kind::StreamUpdated => Plan::Nothing("no effect: stream update acknowledged"),
            Kind::SessionRevoked => {
                let (subject, session, _) = ids()?;
                signal(
                    subject,
                    Effect::SessionRevoked { session },
                    "session revoked",
                )
            }
            Kind::CredentialChange => {
                for claim in ["credential_type", "change_type"] {
                    if text(event.payload, claim).is_none() {
                        return Err(invalid(format!(
                            "credential-change: `{claim}` is missing or not a string"
                        )));
                    }
                }
                let (subject, _, _) = ids()?;
                signal(
                    subject,
                    Effect::CredentialChanged,
                    "credential change recorded",
                )
            }
            Kind::DeviceComplianceChange => {
                let compliant = match text(event.payload, "current_status") {
                    Some("compliant") => true,
                    Some("not-compliant") => false,
                    _ => {
                        return Err(invalid(
                            "device-compliance-change: `current_status` must be `compliant` or `not-compliant`"
                                .to_owned(),
                        ));
                    }
                };
                let (subject, _, device) = ids()?;
                let device = device.ok_or_else(|| {
                    invalid(format!(
                        "device-compliance-change: the subject names no device the `[ssf] device` mapping finds ({})",
                        names(&self.config.mapping.device)
                    ))
                })?;
                signal(
                    subject,
                    Effect::DeviceCompliance { device, compliant },
                    "device compliance recorded",
                )
            }
            Kind::RiskLevelChange => {
                let level = match text(event.payload, "current_level")
                    .map(str::to_ascii_uppercase)
                    .as_deref()
                {
                    Some("LOW") => RiskLevel::Low,
                    Some("MEDIUM") => RiskLevel::Medium,
                    Some("HIGH") => RiskLevel::High,
                    _ => {
                        return Err(invalid(
                            "risk-level-change: `current_level` must be LOW, MEDIUM or HIGH"
                                .to_owned(),
                        ));
                    }
                };
                let (subject, _, _) = ids()?;
                signal(subject, Effect::RiskLevel(level), "risk level recorded")
            }
            Kind::AssuranceLevelChange => self.assurance(event, ids()?, policy, mark, now)?,
            Kind::SessionEstablished => self.established(event, ids()?, policy, now),
        })
    }

    /// The subject's key, and the session's and device's keys when the
    /// event's subject names them. An issuer bound to a tenant
    /// (`[[trust.issuers]] tenant`) speaks for that tenant only: its events
    /// are about its tenant's users, and one naming another tenant is
    /// refused. An issuer speaks for its own users only: an `iss_sub`
    /// subject of another issuer is refused. With two or more trusted
    /// issuers the subject id is `<iss>#<sub>` (the SET's verified `iss`),
    /// as `RecordStepUp` and Envoy's mapping name it.
    fn identifiers(
        &self,
        event: &Event<'_>,
        keyer: &Keyer,
        issuer: &Issuer<'_>,
    ) -> Result<(SubjectKey, Option<u64>, Option<u64>), ReceiveError> {
        let m = &self.config.mapping;
        let sub = event
            .subject
            .ok_or_else(|| ReceiveError::InvalidRequest("the SET has no `sub_id`".to_owned()))?;
        let (id, from) = subject::first_in(&m.subject, sub, "user").ok_or_else(|| {
            ReceiveError::InvalidRequest(format!(
                "the subject names no user the `[ssf] subject` mapping finds ({})",
                names(&m.subject)
            ))
        })?;
        if from.get("format").and_then(serde_json::Value::as_str) == Some("iss_sub") {
            let named = from.get("iss").and_then(serde_json::Value::as_str);
            if named != Some(issuer.name) {
                return Err(ReceiveError::InvalidRequest(format!(
                    "the subject's `iss_sub` issuer `{}` is not the SET's issuer `{}`",
                    crate::trust::verify::shorten(named.unwrap_or("(none)")),
                    issuer.name
                )));
            }
        }
        let id = if issuer.qualify {
            format!("{}{}{id}", issuer.name, crate::mapping::ISSUER_SEPARATOR)
        } else {
            id.to_owned()
        };
        let long = [Some(id.as_str()), subject::first(&m.tenant, sub, "tenant")]
            .into_iter()
            .flatten()
            .any(|s| s.len() > crate::request::MAX_STRING_BYTES);
        if long {
            return Err(ReceiveError::InvalidRequest(format!(
                "a subject identifier is longer than {} bytes",
                crate::request::MAX_STRING_BYTES
            )));
        }
        let named = subject::first(&m.tenant, sub, "tenant");
        let tenant = match (issuer.tenant, named) {
            (Some(b), Some(n)) if b != n => {
                return Err(ReceiveError::InvalidRequest(format!(
                    "the subject's tenant `{n}` is not the tenant of the issuer (`[[trust.issuers]] tenant`)"
                )));
            }
            (Some(b), _) => b,
            (None, n) => n.unwrap_or(""),
        };
        let session = subject::first(&m.session, sub, "session").map(|s| keyer.session(s));
        let device = subject::first(&m.device, sub, "device").map(|d| keyer.device(d));
        Ok((keyer.subject(tenant, &id), session, device))
    }

    /// The policy level an assurance level or acr value stands for: through
    /// `[ssf] levels` (`namespace:value`, then `value`), else a level of
    /// that name, else the level of that acr value.
    fn level(&self, policy: &PolicySet, namespace: Option<&str>, value: &str) -> Option<usize> {
        let mapped = namespace
            .and_then(|ns| self.config.levels.get(&format!("{ns}:{value}")))
            .or_else(|| self.config.levels.get(value));
        match mapped {
            Some(name) => policy.levels.iter().position(|l| *l.name == **name),
            None => policy
                .levels
                .iter()
                .position(|l| *l.name == *value)
                .or_else(|| policy.level_of_acr(value)),
        }
    }

    /// `assurance-level-change`: down ends the elevations; up (or a level
    /// without a direction) elevates the session to it.
    fn assurance(
        &self,
        event: &Event<'_>,
        (subject, session, device): (SubjectKey, Option<u64>, Option<u64>),
        policy: &PolicySet,
        mark: Mark,
        now: Millis,
    ) -> Result<Plan, ReceiveError> {
        let p = event.payload;
        let namespace = text(p, "namespace");
        let Some(current) = text(p, "current_level") else {
            return Err(ReceiveError::InvalidRequest(
                "assurance-level-change: `current_level` is missing or not a string".to_owned(),
            ));
        };
        let level = self.level(policy, namespace, current);
        let previous = text(p, "previous_level").and_then(|v| self.level(policy, namespace, v));
        let down = match text(p, "change_direction") {
            Some("decrease") => true,
            Some("increase") => false,
            Some(other) => {
                return Err(ReceiveError::InvalidRequest(format!(
                    "assurance-level-change: `change_direction` `{other}` must be `increase` or `decrease`"
                )));
            }
            None => matches!((level, previous), (Some(c), Some(p)) if c < p),
        };
        if down {
            return Ok(Plan::Signal(
                Signal {
                    subject,
                    effect: Effect::LevelLowered { session },
                    mark,
                },
                "assurance lowered: elevations ended",
            ));
        }
        let Some(level) = level.and_then(|l| policy.levels.get(l)) else {
            return Ok(Plan::Nothing(
                "no effect: the level maps to no policy level",
            ));
        };
        let Some(session) = session else {
            return Ok(Plan::Nothing(
                "no effect: the subject names no session to elevate",
            ));
        };
        Ok(Plan::StepUp(
            StepUpReport {
                subject,
                session: Some(session),
                device,
                acr: level.acr.first().cloned(),
                amr: Vec::new(),
                auth_time: event.at,
                at: event.at.min(now),
                success: true,
            },
            "session elevated",
        ))
    }

    /// `session-established`: the session elevated to its `acr` and `amr`.
    fn established(
        &self,
        event: &Event<'_>,
        (subject, session, device): (SubjectKey, Option<u64>, Option<u64>),
        policy: &PolicySet,
        now: Millis,
    ) -> Plan {
        let Some(session) = session else {
            return Plan::Nothing("no effect: the subject names no session");
        };
        let acr = text(event.payload, "acr").map(|a| {
            match self
                .config
                .levels
                .get(a)
                .and_then(|name| policy.levels.iter().find(|l| *l.name == **name))
                .and_then(|l| l.acr.first())
            {
                Some(mapped) => Arc::clone(mapped),
                None => Arc::from(a),
            }
        });
        let amr = event
            .payload
            .get("amr")
            .and_then(serde_json::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(serde_json::Value::as_str)
                    .map(Arc::from)
                    .collect()
            })
            .unwrap_or_default();
        Plan::StepUp(
            StepUpReport {
                subject,
                session: Some(session),
                device,
                acr,
                amr,
                auth_time: event.at,
                at: event.at.min(now),
                success: true,
            },
            "session established: elevated",
        )
    }
}

/// Selectors as the settings spell them, for a message.
fn names(selectors: &[subject::Selector]) -> String {
    let names: Vec<String> = selectors
        .iter()
        .map(|s| match &s.member {
            Some(m) => format!("`{m}:{}.{}`", s.format, s.field),
            None => format!("`{}.{}`", s.format, s.field),
        })
        .collect();
    if names.is_empty() {
        "none set".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests;
