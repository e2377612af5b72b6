//! What Shared Signals (CAEP) events said about one subject: revoked
//! sessions, lowered assurance, the last credential change, device
//! compliance and the transmitter's risk level. Each fact keeps the time of
//! the event and its `jti`, so that a decision it changed can name the
//! event. Plain data (serde) like the rest of `SubjectHistory`, bounded,
//! merged as a union (the later fact wins), so replicas sharing a backend
//! converge whatever order the events arrive in.

use std::sync::Arc;

use super::keys::{ItemKey, SubjectKey};
use super::model::{Limits, Millis};

/// Revoked sessions kept one by one per subject (the newest); an older
/// revocation is folded into the revocation of every session authenticated
/// until its time, which revokes more, never less.
pub const MAX_REVOKED: usize = 3;
/// Lowered assurance levels kept one by one per subject; older ones are
/// folded as revocations are.
pub const MAX_LOWERED: usize = 1;
/// Devices whose compliance is kept per subject (the newest).
pub const MAX_COMPLIANCE: usize = 4;
/// Longest event id (`jti`) accepted; the receiver rejects longer ones.
pub const MAX_JTI_BYTES: usize = 128;
/// Longest event id kept with a fact (a UUID fits): a longer one is kept as
/// its first bytes (it names the event in an explanation; the replay check
/// uses the whole id).
pub const KEPT_JTI_BYTES: usize = 40;

/// `jti` as kept: at most [`KEPT_JTI_BYTES`], cut at a character boundary.
pub fn kept_jti(jti: &str) -> &str {
    let mut end = jti.len().min(KEPT_JTI_BYTES);
    while !jti.is_char_boundary(end) {
        end -= 1;
    }
    jti.get(..end).unwrap_or_default()
}

/// A transmitter's risk level for a subject (CAEP `risk-level-change`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    /// `LOW`.
    Low,
    /// `MEDIUM`.
    Medium,
    /// `HIGH`.
    High,
}

impl RiskLevel {
    /// The level as policies read it: `low`, `medium` or `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
        }
    }
}

/// When an event said something, and which event (its `jti`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mark {
    /// The event's time.
    pub at: Millis,
    /// The event's `jti`.
    pub jti: Arc<str>,
}

/// A fact about one session, or about every session of the subject.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionMark {
    /// Keyed hash of the session id; `None`: every session of the subject
    /// authenticated at or before the mark.
    pub session: Option<ItemKey>,
    /// When, and which event.
    pub mark: Mark,
}

/// A device's compliance, as last reported.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceMark {
    /// Keyed hash of the device id.
    pub device: ItemKey,
    /// `compliant` (true) or `not-compliant` (false).
    pub compliant: bool,
    /// When, and which event.
    pub mark: Mark,
}

/// The transmitter's risk level, as last reported.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RiskMark {
    /// The level.
    pub level: RiskLevel,
    /// When, and which event.
    pub mark: Mark,
}

/// What Shared Signals events said about one subject.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signals {
    /// Revoked sessions (or every session, `session: None`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<SessionMark>,
    /// Lowered assurance: elevations that started at or before the mark end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lowered: Vec<SessionMark>,
    /// The last credential change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_changed: Option<Mark>,
    /// The last risk level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskMark>,
    /// Device compliance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceMark>,
}

/// What one event does to its subject's history (besides the elevations
/// of `session-established` and a raised `assurance-level-change`, which
/// are step-up reports).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Effect {
    /// `session-revoked`: the session (or, without one, every session
    /// authenticated until then) is revoked.
    SessionRevoked {
        /// The session.
        session: Option<ItemKey>,
    },
    /// `assurance-level-change` to a lower level: the elevations of the
    /// session (or of every session) end.
    LevelLowered {
        /// The session.
        session: Option<ItemKey>,
    },
    /// `credential-change`.
    CredentialChanged,
    /// `device-compliance-change`.
    DeviceCompliance {
        /// The device.
        device: ItemKey,
        /// Its current status.
        compliant: bool,
    },
    /// `risk-level-change`.
    RiskLevel(RiskLevel),
}

/// A Shared Signals event's effect on one subject, as applied locally and
/// sent to a shared backend.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signal {
    /// Whose.
    pub subject: SubjectKey,
    /// The effect.
    pub effect: Effect,
    /// When it happened (the event's `event_timestamp`, else its `iat`),
    /// and which event.
    pub mark: Mark,
}

/// `entry` into `list`, one entry per key (the later mark wins), keeping the
/// `max` newest: when full, the oldest goes first (or the new one, if it is
/// the oldest), so the list never grows past `max`.
fn put<T>(
    list: &mut Vec<T>,
    entry: T,
    max: usize,
    key: impl Fn(&T) -> u128,
    mark: impl Fn(&T) -> &Mark,
) {
    if let Some(x) = list.iter_mut().find(|x| key(x) == key(&entry)) {
        if mark(x).at < mark(&entry).at {
            *x = entry;
        }
        return;
    }
    if list.len() >= max {
        let oldest =
            (0..list.len()).min_by_key(|&i| list.get(i).map_or(Millis::MIN, |x| mark(x).at));
        match oldest {
            Some(i) if list.get(i).is_some_and(|x| mark(x).at < mark(&entry).at) => {
                list.swap_remove(i);
            }
            _ => return,
        }
    }
    list.push(entry);
}

/// `entry` into `list`, one entry per session (the later mark wins), at
/// most `max` of them for single sessions: past it, the oldest of them (or
/// the new one, if it is the oldest) is folded into the entry for every
/// session (`session: None`), whose mark then covers it.
fn put_session(list: &mut Vec<SessionMark>, entry: SessionMark, max: usize) {
    if let Some(x) = list.iter_mut().find(|x| x.session == entry.session) {
        if x.mark.at < entry.mark.at {
            *x = entry;
        }
        return;
    }
    if entry.session.is_none() || list.iter().filter(|x| x.session.is_some()).count() < max {
        list.push(entry);
        return;
    }
    let oldest = list
        .iter()
        .enumerate()
        .filter(|(_, x)| x.session.is_some())
        .min_by_key(|(_, x)| x.mark.at)
        .map(|(i, x)| (i, x.mark.at));
    let folded = match oldest {
        Some((i, at)) if at < entry.mark.at => {
            let old = list.swap_remove(i);
            list.push(entry);
            old.mark
        }
        _ => entry.mark,
    };
    put_session(
        list,
        SessionMark {
            session: None,
            mark: folded,
        },
        max,
    );
}

/// The later of two marks (`a` on a tie, so merging is stable).
fn later<'a>(a: Option<&'a Mark>, b: Option<&'a Mark>) -> Option<&'a Mark> {
    match (a, b) {
        (Some(a), Some(b)) if b.at > a.at => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

impl Signals {
    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
            && self.lowered.is_empty()
            && self.credential_changed.is_none()
            && self.risk.is_none()
            && self.devices.is_empty()
    }

    /// Applies one effect dated `mark`.
    pub fn apply(&mut self, effect: &Effect, mark: &Mark) {
        match effect {
            Effect::SessionRevoked { session } => put_session(
                &mut self.revoked,
                SessionMark {
                    session: *session,
                    mark: mark.clone(),
                },
                MAX_REVOKED,
            ),
            Effect::LevelLowered { session } => put_session(
                &mut self.lowered,
                SessionMark {
                    session: *session,
                    mark: mark.clone(),
                },
                MAX_LOWERED,
            ),
            Effect::CredentialChanged => {
                self.credential_changed =
                    later(self.credential_changed.as_ref(), Some(mark)).cloned();
            }
            Effect::RiskLevel(level) => {
                if self.risk.as_ref().is_none_or(|r| r.mark.at <= mark.at) {
                    self.risk = Some(RiskMark {
                        level: *level,
                        mark: mark.clone(),
                    });
                }
            }
            Effect::DeviceCompliance { device, compliant } => {
                self.put_device(DeviceMark {
                    device: *device,
                    compliant: *compliant,
                    mark: mark.clone(),
                });
            }
        }
    }

    fn put_device(&mut self, entry: DeviceMark) {
        let key = |d: &DeviceMark| u128::from(d.device);
        put(&mut self.devices, entry, MAX_COMPLIANCE, key, |d| &d.mark);
    }

    /// Merges `other` (e.g. fetched from a shared store): per session,
    /// device and fact, the later mark wins.
    pub fn merge(&mut self, other: &Signals) {
        for r in &other.revoked {
            put_session(&mut self.revoked, r.clone(), MAX_REVOKED);
        }
        for l in &other.lowered {
            put_session(&mut self.lowered, l.clone(), MAX_LOWERED);
        }
        self.credential_changed = later(
            self.credential_changed.as_ref(),
            other.credential_changed.as_ref(),
        )
        .cloned();
        if let Some(r) = &other.risk
            && self.risk.as_ref().is_none_or(|x| x.mark.at < r.mark.at)
        {
            self.risk = Some(r.clone());
        }
        for d in &other.devices {
            self.put_device(d.clone());
        }
    }

    /// Drops what no reader needs at `now`: lowerings older than an
    /// elevation window (no elevation they end is live any more), the rest
    /// after the retention.
    pub fn prune(&mut self, now: Millis, limits: &Limits) {
        let forget = now.saturating_sub(limits.retention);
        self.revoked.retain(|r| r.mark.at >= forget);
        let ended = now.saturating_sub(limits.elevation);
        self.lowered.retain(|l| l.mark.at >= ended);
        if self
            .credential_changed
            .as_ref()
            .is_some_and(|c| c.at < forget)
        {
            self.credential_changed = None;
        }
        if self.risk.as_ref().is_some_and(|r| r.mark.at < forget) {
            self.risk = None;
        }
        self.devices.retain(|d| d.mark.at >= forget);
    }

    /// The revocation that covers `session` (its keyed hash, and when it
    /// authenticated): one of that session, or of every session at or after
    /// its authentication. `None`: not revoked.
    pub fn revocation(&self, session: Option<ItemKey>, auth_time: Option<Millis>) -> Option<&Mark> {
        self.revoked
            .iter()
            .filter(|r| match r.session {
                Some(s) => Some(s) == session,
                // A session without an authentication time is as old as
                // can be: revoked (fail closed).
                None => auth_time.is_none_or(|t| t <= r.mark.at),
            })
            .map(|r| &r.mark)
            .max_by_key(|m| m.at)
    }

    /// Whether an elevation of `session` that started at `from` was ended
    /// by a lowered level or a revocation.
    pub fn ends_elevation(&self, session: ItemKey, from: Millis) -> bool {
        self.lowered
            .iter()
            .chain(&self.revoked)
            .any(|l| l.session.is_none_or(|s| s == session) && l.mark.at >= from)
    }

    /// The compliance of `device`, when reported.
    pub fn device(&self, device: ItemKey) -> Option<&DeviceMark> {
        self.devices.iter().find(|d| d.device == device)
    }

    /// Bytes held beyond the struct: the vectors and the event ids.
    pub fn heap_bytes(&self) -> usize {
        let jti = |m: &Mark| m.jti.len() + 2 * size_of::<usize>();
        self.revoked.capacity() * size_of::<SessionMark>()
            + self.lowered.capacity() * size_of::<SessionMark>()
            + self.devices.capacity() * size_of::<DeviceMark>()
            + self.revoked.iter().map(|r| jti(&r.mark)).sum::<usize>()
            + self.lowered.iter().map(|r| jti(&r.mark)).sum::<usize>()
            + self.devices.iter().map(|d| jti(&d.mark)).sum::<usize>()
            + self.credential_changed.as_ref().map_or(0, jti)
            + self.risk.as_ref().map_or(0, |r| jti(&r.mark))
    }

    /// The most [`Signals::heap_bytes`] can be (with the struct itself,
    /// which a subject keeps boxed): every list full, capacity growth by
    /// doubling, every id at [`KEPT_JTI_BYTES`].
    pub fn max_bytes() -> usize {
        // A vector of small items starts at 4 and doubles; the session
        // lists hold one more entry (every session) than single sessions.
        let cap = |n: usize| n.max(4).next_power_of_two();
        let jti = KEPT_JTI_BYTES + 2 * size_of::<usize>();
        size_of::<Signals>()
            + (cap(MAX_REVOKED + 1) + cap(MAX_LOWERED + 1)) * size_of::<SessionMark>()
            + cap(MAX_COMPLIANCE) * size_of::<DeviceMark>()
            + (MAX_REVOKED + MAX_LOWERED + MAX_COMPLIANCE + 4) * jti
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(at: Millis, jti: &str) -> Mark {
        Mark {
            at,
            jti: Arc::from(jti),
        }
    }

    #[test]
    fn a_revocation_covers_its_session_or_every_older_one() {
        let mut s = Signals::default();
        s.apply(
            &Effect::SessionRevoked { session: Some(7) },
            &mark(100, "a"),
        );
        assert_eq!(s.revocation(Some(7), Some(50)).map(|m| &*m.jti), Some("a"));
        assert!(s.revocation(Some(8), Some(50)).is_none());
        assert!(s.revocation(None, None).is_none());
        s.apply(&Effect::SessionRevoked { session: None }, &mark(200, "all"));
        assert_eq!(
            s.revocation(Some(8), Some(150)).map(|m| &*m.jti),
            Some("all")
        );
        assert_eq!(s.revocation(Some(8), None).map(|m| &*m.jti), Some("all"));
        // A session authenticated after the revocation is a new one.
        assert!(s.revocation(Some(8), Some(250)).is_none());
        assert_eq!(s.revocation(Some(7), Some(250)).map(|m| &*m.jti), Some("a"));
    }

    #[test]
    fn lowering_and_revocation_end_elevations_that_started_before() {
        let mut s = Signals::default();
        s.apply(&Effect::LevelLowered { session: Some(1) }, &mark(100, "l"));
        assert!(s.ends_elevation(1, 90));
        assert!(!s.ends_elevation(1, 110));
        assert!(!s.ends_elevation(2, 90));
        s.apply(
            &Effect::SessionRevoked { session: Some(2) },
            &mark(100, "r"),
        );
        assert!(s.ends_elevation(2, 90));
    }

    #[test]
    fn the_later_mark_wins_in_any_order_and_merge_converges() {
        let effects = [
            (Effect::RiskLevel(RiskLevel::High), mark(10, "r1")),
            (Effect::RiskLevel(RiskLevel::Low), mark(20, "r2")),
            (Effect::CredentialChanged, mark(5, "c1")),
            (Effect::CredentialChanged, mark(15, "c2")),
            (
                Effect::DeviceCompliance {
                    device: 3,
                    compliant: false,
                },
                mark(30, "d1"),
            ),
            (
                Effect::DeviceCompliance {
                    device: 3,
                    compliant: true,
                },
                mark(25, "d0"),
            ),
        ];
        let mut forward = Signals::default();
        for (e, m) in &effects {
            forward.apply(e, m);
        }
        let mut backward = Signals::default();
        for (e, m) in effects.iter().rev() {
            backward.apply(e, m);
        }
        assert_eq!(forward, backward);
        assert_eq!(forward.risk.as_ref().map(|r| r.level), Some(RiskLevel::Low));
        assert_eq!(forward.credential_changed.as_ref().map(|c| c.at), Some(15));
        assert_eq!(forward.device(3).map(|d| d.compliant), Some(false));
        let mut half = Signals::default();
        for (e, m) in effects.iter().take(3) {
            half.apply(e, m);
        }
        let mut merged = half.clone();
        merged.merge(&forward);
        assert_eq!(merged, forward);
        let mut other = forward.clone();
        other.merge(&half);
        assert_eq!(other, forward);
    }

    #[test]
    fn bounded_and_pruned() {
        let limits = Limits::default();
        let mut s = Signals::default();
        for i in 0..100u64 {
            let at = Millis::try_from(i).unwrap() + 1;
            let jti = "j".repeat(KEPT_JTI_BYTES);
            s.apply(
                &Effect::SessionRevoked { session: Some(i) },
                &mark(at, &jti),
            );
            s.apply(&Effect::LevelLowered { session: Some(i) }, &mark(at, &jti));
            s.apply(
                &Effect::DeviceCompliance {
                    device: i,
                    compliant: false,
                },
                &mark(at, &jti),
            );
            s.apply(&Effect::CredentialChanged, &mark(at, &jti));
            s.apply(&Effect::RiskLevel(RiskLevel::Medium), &mark(at, &jti));
            assert!(size_of::<Signals>() + s.heap_bytes() <= Signals::max_bytes());
        }
        // The newest one by one, the rest folded into every session.
        assert_eq!(s.revoked.len(), MAX_REVOKED + 1);
        assert_eq!(s.lowered.len(), MAX_LOWERED + 1);
        assert_eq!(s.devices.len(), MAX_COMPLIANCE);
        assert!(
            s.revoked
                .iter()
                .all(|r| r.session.is_none() || r.mark.at > 97)
        );
        // Session 5 (revoked at 6) left the list, but is still revoked when
        // it authenticated before the folded mark; a session that signed in
        // since is not.
        assert!(s.revocation(Some(5), Some(3)).is_some());
        assert!(s.revocation(Some(5), Some(98)).is_none());
        assert!(s.revocation(Some(99), Some(98)).is_some());
        assert!(s.ends_elevation(5, 50));
        // An older one than all kept is folded without displacing them.
        s.apply(
            &Effect::SessionRevoked {
                session: Some(1000),
            },
            &mark(0, "old"),
        );
        assert!(s.revoked.iter().all(|r| r.session != Some(1000)));
        assert_eq!(s.revoked.len(), MAX_REVOKED + 1);
        s.prune(101 + limits.elevation, &limits);
        assert!(s.lowered.is_empty());
        assert_eq!(s.revoked.len(), MAX_REVOKED + 1);
        s.prune(101 + limits.retention, &limits);
        assert!(s.is_empty());
    }

    #[test]
    fn long_ids_are_kept_cut_at_a_character() {
        assert_eq!(kept_jti("abc"), "abc");
        let long = format!("{}é", "x".repeat(39));
        assert_eq!(kept_jti(&long), "x".repeat(39));
        assert_eq!(kept_jti(&"y".repeat(128)).len(), KEPT_JTI_BYTES);
    }

    #[test]
    fn reads_back_from_json() {
        let mut s = Signals::default();
        s.apply(&Effect::SessionRevoked { session: Some(1) }, &mark(1, "a"));
        s.apply(&Effect::RiskLevel(RiskLevel::High), &mark(2, "b"));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""level":"high""#), "{json}");
        let back: Signals = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let empty: Signals = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty());
    }
}
