//! A decision and what it says: the outcome, the assessment it came from,
//! the merged challenge and its RFC 9470 `WWW-Authenticate` value.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::policy::{Effect, PolicySet};
use crate::proto::v1::DecideRequest;

/// How far in the future a session's `auth_time` may lie (clock skew between
/// the identity provider and us) and still count.
pub const AUTH_TIME_SKEW: Duration = Duration::from_secs(300);

/// The verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Go ahead.
    Allow,
    /// Step up first.
    Challenge,
    /// Refuse.
    Deny,
}

/// A signal or rule whose condition failed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvalError {
    /// The signal's or rule's id.
    pub id: Arc<str>,
    /// What went wrong.
    pub message: Arc<str>,
}

/// What a line of an explanation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceKind {
    /// A risk signal.
    Signal,
    /// A rule.
    Rule,
}

impl TraceKind {
    /// `signal` or `rule`, as the CLI's reports name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signal => "signal",
            Self::Rule => "rule",
        }
    }
}

/// One line of an explanation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TraceEntry {
    /// A signal or a rule.
    pub kind: TraceKind,
    /// Its id.
    pub id: Arc<str>,
    /// Whether it fired or matched.
    pub fired: bool,
    /// Why.
    pub detail: String,
}

/// What the signals and rules found, before the session is compared with the
/// requirements. Shared between cached decisions.
#[derive(Debug, PartialEq)]
pub struct Assessment {
    /// 0..=100.
    pub risk_score: u32,
    /// Ids of the signals that fired (shared with the cached entry).
    pub signals: Arc<[Arc<str>]>,
    /// Indices of the enforced rules that matched, in policy order.
    pub matched: Vec<usize>,
    /// Indices of the shadow rules that matched (report-only).
    pub shadow: Vec<usize>,
    /// Conditions that failed.
    pub errors: Vec<EvalError>,
}

/// A decision.
#[derive(Debug)]
pub struct Decision {
    /// The verdict.
    pub outcome: Outcome,
    /// What the signals and rules found.
    pub assessment: Arc<Assessment>,
    /// Matched challenge rules the session does not satisfy yet (indices).
    pub unmet: Vec<usize>,
    /// The merged challenge's level (the strongest any unmet rule asks for).
    pub challenge_level: Option<usize>,
    /// The merged challenge's freshness (the smallest unmet `max_age`).
    pub max_age: Option<Duration>,
    /// Unique, time-sortable id.
    pub id: uuid::Uuid,
    /// The policy set that decided.
    pub policy: Arc<PolicySet>,
    /// Whether the time-independent part came from the cache.
    pub cache_hit: bool,
    /// Filled when an explanation was asked for.
    pub trace: Vec<TraceEntry>,
    /// The matched shadow rules and what they would have done.
    pub shadow: Vec<ShadowResult>,
    /// Time to decide (set by `Service::decide`).
    pub elapsed: Duration,
}

/// What a matched shadow rule would have done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowResult {
    /// Index of the rule.
    pub rule: usize,
    /// Its effect.
    pub effect: Effect,
    /// For a challenge: whether the session already meets the requirement
    /// (then enforcing the rule would not have challenged).
    pub satisfied: bool,
}

impl Decision {
    /// The ids, effects and messages of the matched rules.
    pub fn reasons(&self) -> impl Iterator<Item = (&Arc<str>, Effect, &Arc<str>)> {
        self.assessment
            .matched
            .iter()
            .filter_map(|i| self.policy.rules.get(*i))
            .map(|r| (&r.id, r.effect, &r.message))
    }

    /// The merged challenge's acr values.
    pub fn acr_values(&self) -> &[Arc<str>] {
        self.challenge_level
            .and_then(|l| self.policy.levels.get(l))
            .map_or(&[], |l| &l.acr)
    }

    /// The decision id in its canonical text form (lowercase, hyphenated;
    /// formatted without going through `Display`).
    pub fn id_string(&self) -> String {
        let mut buf = uuid::Uuid::encode_buffer();
        (*self.id.hyphenated().encode_lower(&mut buf)).to_owned()
    }

    /// The RFC 9470 `WWW-Authenticate` value for a challenge.
    pub fn www_authenticate(&self) -> Option<String> {
        if self.outcome != Outcome::Challenge {
            return None;
        }
        let description = self
            .unmet
            .first()
            .and_then(|i| self.policy.rules.get(*i))
            .map_or("step-up authentication required", |r| &r.message);
        Some(www_authenticate(
            description,
            self.acr_values(),
            self.max_age,
        ))
    }
}

/// The RFC 9470 `WWW-Authenticate` value of a challenge described by
/// `description`, asking for `acr` and `max_age`.
pub fn www_authenticate(
    description: &str,
    acr: &[impl AsRef<str>],
    max_age: Option<Duration>,
) -> String {
    let mut v = String::with_capacity(160);
    v.push_str("Bearer error=\"insufficient_user_authentication\", error_description=\"");
    push_quoted(&mut v, description);
    v.push('"');
    if !acr.is_empty() {
        v.push_str(", acr_values=\"");
        for (i, a) in acr.iter().enumerate() {
            if i > 0 {
                v.push(' ');
            }
            push_quoted(&mut v, a.as_ref());
        }
        v.push('"');
    }
    if let Some(max_age) = max_age {
        v.push_str(", max_age=\"");
        v.push_str(itoa::Buffer::new().format(max_age.as_secs()));
        v.push('"');
    }
    v
}

/// Appends `s` as the content of an RFC 6750 quoted-string: only the
/// characters RFC 6750 allows in `error_description` (printable ASCII but
/// `"` and `\`) are kept; others become `?`, so a policy message can never
/// break the header.
///
/// Policy messages and acr values are almost always clean: they are then
/// copied whole instead of character by character.
fn push_quoted(out: &mut String, s: &str) {
    let allowed = |c: char| matches!(c, ' ' | '!' | '#'..='[' | ']'..='~');
    if s.bytes().all(|b| allowed(char::from(b))) {
        out.push_str(s);
        return;
    }
    out.extend(s.chars().map(|c| if allowed(c) { c } else { '?' }));
}

/// Compares the session with each matched challenge rule's requirement.
pub(super) fn conclude(
    policy: Arc<PolicySet>,
    assessment: Arc<Assessment>,
    req: &DecideRequest,
    now: DateTime<Utc>,
    cache_hit: bool,
    trace: Vec<TraceEntry>,
) -> Decision {
    let mut denied = false;
    let mut unmet = Vec::new();
    let mut challenge_level: Option<usize> = None;
    let mut max_age: Option<Duration> = None;
    let session = req.session.as_ref();
    let session_level = session.and_then(|s| policy.level_of_acr(&s.acr));
    let age = session.and_then(|s| s.auth_time.as_ref()).and_then(|t| {
        let at = DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)?;
        let age = now.signed_duration_since(at);
        if age < -chrono::Duration::from_std(AUTH_TIME_SKEW).ok()? {
            None // from the future: not a usable authentication time
        } else {
            Some(age.to_std().unwrap_or(Duration::ZERO))
        }
    });
    let amr: &[String] = session.map_or(&[], |s| &s.amr);
    let satisfied = |r: &crate::policy::Requirement| {
        let level_ok = r
            .level
            .is_none_or(|need| session_level.is_some_and(|have| have >= need));
        let methods_ok =
            r.methods.is_empty() || amr.iter().any(|m| r.methods.iter().any(|x| **x == **m));
        let fresh = r
            .max_age
            .is_none_or(|limit| age.is_some_and(|a| a <= limit));
        level_ok && methods_ok && fresh
    };
    for &i in &assessment.matched {
        let Some(rule) = policy.rules.get(i) else {
            continue;
        };
        match rule.effect {
            Effect::Deny => denied = true,
            Effect::Challenge => {
                let Some(r) = &rule.requirement else { continue };
                if !satisfied(r) {
                    unmet.push(i);
                    if r.level > challenge_level {
                        challenge_level = r.level;
                    }
                    if let Some(m) = r.max_age {
                        max_age = Some(max_age.map_or(m, |cur| cur.min(m)));
                    }
                }
            }
        }
    }
    let shadow: Vec<ShadowResult> = assessment
        .shadow
        .iter()
        .filter_map(|&i| {
            let rule = policy.rules.get(i)?;
            Some(ShadowResult {
                rule: i,
                effect: rule.effect,
                satisfied: rule.effect == Effect::Challenge
                    && rule.requirement.as_ref().is_some_and(&satisfied),
            })
        })
        .collect();
    let outcome = if denied {
        Outcome::Deny
    } else if !unmet.is_empty() {
        Outcome::Challenge
    } else {
        Outcome::Allow
    };
    if outcome != Outcome::Challenge {
        unmet.clear();
        challenge_level = None;
        max_age = None;
    }
    Decision {
        outcome,
        assessment,
        unmet,
        challenge_level,
        max_age,
        id: uuid::Uuid::now_v7(),
        policy,
        cache_hit,
        trace,
        shadow,
        elapsed: Duration::ZERO,
    }
}
