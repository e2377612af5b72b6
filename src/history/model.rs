//! The data kept per subject, what a decision or a step-up report adds to
//! it, and the bounds that keep it small. Plain data (serde): the unit a
//! shared backend stores and merges.

use std::collections::VecDeque;
use std::sync::Arc;

use super::keys::{ItemKey, SubjectKey};
use crate::engine::Outcome;

/// A decision's verdict, as remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// ALLOW.
    Allow,
    /// CHALLENGE.
    Challenge,
    /// DENY.
    Deny,
}

impl From<Outcome> for Verdict {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Allow => Verdict::Allow,
            Outcome::Challenge => Verdict::Challenge,
            Outcome::Deny => Verdict::Deny,
        }
    }
}

pub use crate::expr::history::Millis;

/// How much is kept, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Subjects kept in memory; the least recently seen are evicted first.
    pub max_subjects: usize,
    /// Devices kept per subject; the least recently seen are dropped first.
    pub max_devices: usize,
    /// Action events kept per subject (for `history.count`); oldest first out.
    pub max_events: usize,
    /// How long action events are kept: the longest useful `count` window.
    pub event_retention: Millis,
    /// How long a subject, a device or a location is remembered after it was
    /// last seen.
    pub retention: Millis,
    /// How long a successful step-up lifts its session (the elevation window).
    pub elevation: Millis,
}

/// How long failed step-ups count (`history.stepups_failed`).
pub const FAILURE_WINDOW: Millis = 24 * 3600 * 1000;
/// Failed step-ups kept per subject (more in 24 h read as this many).
pub const MAX_FAILURES: usize = 32;
/// Elevated sessions kept per subject.
pub const MAX_ELEVATIONS: usize = 4;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_subjects: 100_000,
            max_devices: 16,
            max_events: 128,
            event_retention: 24 * 3600 * 1000,
            retention: 90 * 24 * 3600 * 1000,
            elevation: 15 * 60 * 1000,
        }
    }
}

/// A device of the subject.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceRecord {
    /// Keyed hash of the device id.
    pub key: ItemKey,
    /// When first seen.
    pub first_seen: Millis,
    /// When last seen.
    pub last_seen: Millis,
    /// Part of an allowed decision at or above the known-device level, or of
    /// a successful step-up.
    pub known: bool,
}

/// Where a request came from.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Place {
    /// When.
    pub at: Millis,
    /// ISO 3166-1 alpha-2, upper case, when known.
    pub country: Option<[u8; 2]>,
    /// (latitude, longitude) in degrees, when known.
    pub coords: Option<(f64, f64)>,
}

/// Parses an ISO 3166-1 alpha-2 code (any case); other text is not kept.
pub fn country_code(s: &str) -> Option<[u8; 2]> {
    match s.as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

/// One decided action.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// When.
    pub at: Millis,
    /// The action (action names are the service's vocabulary, not personal
    /// data, and `count` matches globs against them).
    pub action: Arc<str>,
}

/// A session lifted by a successful step-up, until `until`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Elevation {
    /// Keyed hash of the session id.
    pub session: ItemKey,
    /// The reported acr.
    pub acr: Option<Arc<str>>,
    /// The reported amr values.
    pub amr: Vec<Arc<str>>,
    /// The reported authentication time.
    pub auth_time: Millis,
    /// Start of the elevation window (the report's time).
    #[serde(default)]
    pub from: Millis,
    /// End of the elevation window.
    pub until: Millis,
}

/// One subject's history: what the engine remembers, and what a shared
/// backend stores and merges.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubjectHistory {
    /// Devices, in no particular order.
    pub devices: Vec<DeviceRecord>,
    /// The last location seen (with country or coordinates).
    pub last_place: Option<Place>,
    /// When the subject was last seen (0: never).
    pub last_seen: Millis,
    /// Decided actions, oldest first.
    pub events: VecDeque<Event>,
    /// Times of failed step-ups, oldest first.
    pub failures: VecDeque<Millis>,
    /// Elevated sessions.
    pub elevations: Vec<Elevation>,
    /// When expired entries were last dropped (updates prune at most once
    /// per [`PRUNE_EVERY`]; readers filter by time anyway).
    #[serde(default)]
    pub pruned_at: Millis,
}

/// How often an update drops expired entries (ms): pruning on every update
/// would touch every device and the oldest event each time.
pub const PRUNE_EVERY: Millis = 60_000;

/// What one decision adds to its subject's history.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Observation {
    /// Whose.
    pub subject: SubjectKey,
    /// The device, when the request named one.
    pub device: Option<ItemKey>,
    /// The action.
    pub action: Arc<str>,
    /// The decision's time.
    pub at: Millis,
    /// Where from, when known (country or coordinates).
    pub place: Option<Place>,
    /// The verdict.
    pub outcome: Verdict,
    /// The level of the session (after any elevation), when its acr maps to
    /// one.
    pub session_level: Option<usize>,
    /// An allowed decision at or above the known-device level: the device
    /// becomes known.
    pub makes_known: bool,
}

/// A completed (or failed) step-up, from `RecordStepUp`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepUpReport {
    /// Whose.
    pub subject: SubjectKey,
    /// The session stepped up.
    pub session: Option<ItemKey>,
    /// The device used.
    pub device: Option<ItemKey>,
    /// The acr reached.
    pub acr: Option<Arc<str>>,
    /// The methods used.
    pub amr: Vec<Arc<str>>,
    /// When the user authenticated.
    pub auth_time: Millis,
    /// When reported.
    pub at: Millis,
    /// Whether the challenge was passed.
    pub success: bool,
}

/// A change to one subject's history, as sent to a shared backend.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Update {
    /// A decision.
    Observed(Observation),
    /// A step-up outcome.
    SteppedUp(StepUpReport),
}

impl Update {
    /// The subject it is about.
    pub fn subject(&self) -> SubjectKey {
        match self {
            Update::Observed(o) => o.subject,
            Update::SteppedUp(r) => r.subject,
        }
    }
}

impl SubjectHistory {
    /// Prunes when the last pruning is [`PRUNE_EVERY`] old (or in the
    /// future: a clock set back).
    fn maybe_prune(&mut self, now: Millis, limits: &Limits) {
        if now.saturating_sub(self.pruned_at) >= PRUNE_EVERY || now < self.pruned_at {
            self.prune(now, limits);
        }
    }

    /// Drops what is older than the limits allow at `now`.
    pub fn prune(&mut self, now: Millis, limits: &Limits) {
        self.pruned_at = now;
        let forget = now.saturating_sub(limits.retention);
        self.devices.retain(|d| d.last_seen >= forget);
        if self.last_place.is_some_and(|p| p.at < forget) {
            self.last_place = None;
        }
        let old = now.saturating_sub(limits.event_retention);
        while self.events.front().is_some_and(|e| e.at < old) {
            self.events.pop_front();
        }
        let old = now.saturating_sub(FAILURE_WINDOW);
        while self.failures.front().is_some_and(|t| *t < old) {
            self.failures.pop_front();
        }
        self.elevations.retain(|e| e.until > now);
    }

    /// Adds a decision.
    pub fn observe(&mut self, o: &Observation, limits: &Limits) {
        self.maybe_prune(o.at, limits);
        self.last_seen = self.last_seen.max(o.at);
        if let Some(key) = o.device {
            self.see_device(key, o.at, o.makes_known, limits);
        }
        if let Some(p) = o.place
            && self.last_place.is_none_or(|last| last.at <= p.at)
        {
            self.last_place = Some(p);
        }
        // Events stay in time order whatever order they arrive in (a
        // request's `time` may be earlier than the last one's): `count`
        // walks back from the newest and stops at the window's start, so
        // one backdated event must not end the walk early.
        let at = sorted_position(&self.events, o.at, |e| e.at);
        // Reuse the previous event's string for a repeated action: a burst
        // of one action costs no allocation.
        let action = match at.checked_sub(1).and_then(|i| self.events.get(i)) {
            Some(e) if e.action == o.action => Arc::clone(&e.action),
            _ => Arc::clone(&o.action),
        };
        insert_bounded(
            &mut self.events,
            at,
            Event { at: o.at, action },
            limits.max_events,
        );
    }

    /// Adds a step-up outcome.
    pub fn step_up(&mut self, r: &StepUpReport, limits: &Limits) {
        self.maybe_prune(r.at, limits);
        self.last_seen = self.last_seen.max(r.at);
        if !r.success {
            let at = sorted_position(&self.failures, r.at, |t| *t);
            insert_bounded(&mut self.failures, at, r.at, MAX_FAILURES);
            return;
        }
        if let Some(key) = r.device {
            self.see_device(key, r.at, true, limits);
        }
        if let Some(session) = r.session {
            self.elevations.retain(|e| e.session != session);
            if self.elevations.len() >= MAX_ELEVATIONS {
                // The one ending first goes.
                if let Some(i) = (0..self.elevations.len())
                    .min_by_key(|&i| self.elevations.get(i).map_or(0, |e| e.until))
                {
                    self.elevations.remove(i);
                }
            }
            self.elevations.push(Elevation {
                session,
                acr: r.acr.clone(),
                amr: r.amr.clone(),
                auth_time: r.auth_time,
                from: r.at,
                until: r.at.saturating_add(limits.elevation),
            });
        }
    }

    fn see_device(&mut self, key: ItemKey, at: Millis, known: bool, limits: &Limits) {
        if let Some(d) = self.devices.iter_mut().find(|d| d.key == key) {
            d.last_seen = d.last_seen.max(at);
            d.first_seen = d.first_seen.min(at);
            d.known |= known;
            return;
        }
        if self.devices.len() >= limits.max_devices.max(1) {
            // Least recently seen first; an unknown device before a known one.
            if let Some(i) = self
                .devices
                .iter()
                .enumerate()
                .min_by_key(|(_, d)| (d.known, d.last_seen))
                .map(|(i, _)| i)
            {
                self.devices.remove(i);
            }
        }
        self.devices.push(DeviceRecord {
            key,
            first_seen: at,
            last_seen: at,
            known,
        });
    }

    /// Merges `other` (e.g. fetched from a shared store) into this one: the
    /// union of devices, events, failures and elevations, the later location.
    pub fn merge(&mut self, other: &SubjectHistory, limits: &Limits) {
        for d in &other.devices {
            match self.devices.iter_mut().find(|x| x.key == d.key) {
                Some(x) => {
                    x.first_seen = x.first_seen.min(d.first_seen);
                    x.last_seen = x.last_seen.max(d.last_seen);
                    x.known |= d.known;
                }
                None => self.devices.push(d.clone()),
            }
        }
        self.devices.sort_by_key(|d| d.last_seen);
        let extra = self.devices.len().saturating_sub(limits.max_devices.max(1));
        self.devices.drain(..extra);
        if let Some(p) = other.last_place
            && self.last_place.is_none_or(|l| l.at < p.at)
        {
            self.last_place = Some(p);
        }
        self.last_seen = self.last_seen.max(other.last_seen);
        self.pruned_at = self.pruned_at.min(other.pruned_at);
        let mut events: Vec<Event> = self
            .events
            .drain(..)
            .chain(other.events.iter().cloned())
            .collect();
        events.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.action.cmp(&b.action)));
        events.dedup();
        let skip = events.len().saturating_sub(limits.max_events);
        self.events = events.into_iter().skip(skip).collect();
        let mut failures: Vec<Millis> = self
            .failures
            .drain(..)
            .chain(other.failures.iter().copied())
            .collect();
        failures.sort_unstable();
        failures.dedup();
        let skip = failures.len().saturating_sub(MAX_FAILURES);
        self.failures = failures.into_iter().skip(skip).collect();
        for e in &other.elevations {
            match self.elevations.iter_mut().find(|x| x.session == e.session) {
                Some(x) if x.until >= e.until => {}
                Some(x) => *x = e.clone(),
                None => self.elevations.push(e.clone()),
            }
        }
        self.elevations.sort_by_key(|e| std::cmp::Reverse(e.until));
        self.elevations.truncate(MAX_ELEVATIONS);
    }

    /// The live elevation of `session` at `now`, if any: a decision before
    /// the report (beyond the clock skew allowance) is not lifted by it.
    pub fn elevation(&self, session: ItemKey, now: Millis) -> Option<&Elevation> {
        let skew = Millis::try_from(crate::engine::AUTH_TIME_SKEW.as_millis()).unwrap_or(0);
        self.elevations
            .iter()
            .find(|e| e.session == session && e.until > now && e.from <= now.saturating_add(skew))
    }

    /// Failed step-ups in the 24 h before `now`.
    pub fn failures_since(&self, now: Millis) -> usize {
        let since = now.saturating_sub(FAILURE_WINDOW);
        self.failures
            .iter()
            .filter(|t| **t >= since && **t <= now)
            .count()
    }

    /// Actions matching `pattern` (a glob) in `(now - window, now]`. No
    /// allocation; a run of events sharing one interned action string is
    /// matched once.
    pub fn count(&self, pattern: &str, now: Millis, window: Millis) -> usize {
        self.count_up_to(pattern, now, window, usize::MAX)
    }

    /// [`SubjectHistory::count`], but stops counting at `limit`: enough to
    /// compare the count with a number below it, without reading every
    /// event of a busy subject.
    pub fn count_up_to(&self, pattern: &str, now: Millis, window: Millis, limit: usize) -> usize {
        let since = now.saturating_sub(window);
        let mut last: Option<(&Arc<str>, bool)> = None;
        let mut n = 0;
        for e in self.events.iter().rev().take_while(|e| e.at > since) {
            let hit = match last {
                Some((a, hit)) if Arc::ptr_eq(a, &e.action) => hit,
                _ => {
                    let hit = glob(pattern, &e.action);
                    last = Some((&e.action, hit));
                    hit
                }
            };
            if hit && e.at <= now {
                n += 1;
                if n >= limit {
                    break;
                }
            }
        }
        n
    }
}

/// Whether `action` matches `pattern`, where `*` matches any run of
/// characters (as [`crate::glob::matches`], without allocating).
pub fn glob(pattern: &str, action: &str) -> bool {
    let stars = pattern.matches('*').count();
    if stars == 0 {
        return pattern == action;
    }
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let last = pattern.rsplit('*').next().unwrap_or("");
    let Some(mut rest) = action.strip_prefix(first) else {
        return false;
    };
    for part in parts.take(stars - 1) {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or(""),
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Where an item at time `at` goes in `q` (kept oldest first): after every
/// item at or before `at`. Items nearly always arrive in order, so the
/// search starts from the back.
fn sorted_position<T>(q: &VecDeque<T>, at: Millis, time: impl Fn(&T) -> Millis) -> usize {
    q.iter()
        .rev()
        .position(|x| time(x) <= at)
        .map_or(0, |from_back| q.len() - from_back)
}

/// Inserts `item` at `index`, then drops the oldest items beyond `max`.
fn insert_bounded<T>(q: &mut VecDeque<T>, index: usize, item: T, max: usize) {
    if max == 0 {
        return;
    }
    q.insert(index, item);
    while q.len() > max {
        q.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Histories written by a version that kept a keyed hash of the client
    /// IP in the last place (a shared Redis store may still hold them) read
    /// as if it were not there.
    #[test]
    fn reads_places_with_the_old_ip_field() {
        let h = SubjectHistory {
            last_place: Some(Place {
                at: 5,
                country: Some(*b"DE"),
                coords: Some((52.5, 13.4)),
            }),
            ..SubjectHistory::default()
        };
        let mut old = serde_json::to_value(&h).unwrap();
        old["last_place"]["ip"] = serde_json::json!(12_345_u64);
        let back: SubjectHistory = serde_json::from_value(old).unwrap();
        assert_eq!(back, h);
    }

    fn obs(device: u64, action: &str, at: Millis) -> Observation {
        Observation {
            subject: SubjectKey(1),
            device: Some(device),
            action: Arc::from(action),
            at,
            place: None,
            outcome: Verdict::Allow,
            session_level: None,
            makes_known: false,
        }
    }

    #[test]
    fn caps_devices_and_events() {
        let limits = Limits {
            max_devices: 2,
            max_events: 3,
            ..Limits::default()
        };
        let mut h = SubjectHistory::default();
        for i in 0..10 {
            h.observe(
                &obs(i % 4, "a.b", 1000 + i64::try_from(i).unwrap()),
                &limits,
            );
        }
        assert_eq!(h.devices.len(), 2);
        assert_eq!(h.events.len(), 3);
        assert_eq!(h.count("a.*", 1009, 60_000), 3);
        assert_eq!(h.count("x", 1009, 60_000), 0);
        assert_eq!(h.count_up_to("a.*", 1009, 60_000, 2), 2);
        assert_eq!(h.count_up_to("a.*", 1009, 60_000, 5), 3);
    }

    #[test]
    fn a_backdated_event_hides_nothing_from_count() {
        let limits = Limits::default();
        let mut h = SubjectHistory::default();
        let now = 10 * 3_600_000;
        for i in 0..10 {
            h.observe(&obs(1, "payments.refund", now - 60_000 + i), &limits);
        }
        // Two hours back, arriving last.
        h.observe(&obs(1, "payments.refund", now - 7_200_000), &limits);
        assert_eq!(h.count("payments.refund", now, 3_600_000), 10);
        assert_eq!(h.count("payments.refund", now, 3 * 3_600_000), 11);
        let times: Vec<Millis> = h.events.iter().map(|e| e.at).collect();
        assert!(times.is_sorted(), "{times:?}");
    }

    #[test]
    fn backdated_events_and_failures_keep_time_order_within_the_caps() {
        let limits = Limits {
            max_events: 3,
            ..Limits::default()
        };
        let mut h = SubjectHistory::default();
        for at in [50, 10, 40, 30, 20, 60] {
            h.observe(&obs(1, "a", at), &limits);
            h.step_up(
                &StepUpReport {
                    subject: SubjectKey(1),
                    session: None,
                    device: None,
                    acr: None,
                    amr: Vec::new(),
                    auth_time: at,
                    at,
                    success: false,
                },
                &limits,
            );
        }
        let times: Vec<Millis> = h.events.iter().map(|e| e.at).collect();
        assert_eq!(times, [40, 50, 60], "the newest three, oldest first");
        assert_eq!(h.failures, [10, 20, 30, 40, 50, 60]);
        assert_eq!(h.failures_since(60), 6);
    }

    #[test]
    fn expires_old_entries() {
        let limits = Limits::default();
        let mut h = SubjectHistory::default();
        h.observe(&obs(1, "a", 0), &limits);
        h.observe(&obs(2, "a", limits.event_retention + 10), &limits);
        assert_eq!(h.events.len(), 1, "the first event is past retention");
        h.observe(&obs(2, "a", limits.retention + 10), &limits);
        assert_eq!(h.devices.len(), 1, "device 1 is forgotten");
    }

    #[test]
    fn step_ups_elevate_and_failures_count() {
        let limits = Limits::default();
        let mut h = SubjectHistory::default();
        let mut r = StepUpReport {
            subject: SubjectKey(1),
            session: Some(7),
            device: Some(3),
            acr: Some(Arc::from("aal2")),
            amr: vec![Arc::from("otp")],
            auth_time: 1000,
            at: 1000,
            success: false,
        };
        h.step_up(&r, &limits);
        h.step_up(&r, &limits);
        assert_eq!(h.failures_since(2000), 2);
        assert!(h.elevation(7, 2000).is_none());
        r.success = true;
        h.step_up(&r, &limits);
        assert!(h.elevation(7, 2000).is_some());
        assert!(h.elevation(7, 1000 + limits.elevation).is_none());
        assert!(h.devices.first().unwrap().known);
        assert_eq!(h.failures_since(1000 + FAILURE_WINDOW + 1), 0);
    }

    #[test]
    fn glob_agrees_with_the_engine() {
        let patterns = [
            "payments.*",
            "*",
            "a*a",
            "account.*.change",
            "*.delete",
            "x",
            "a**b",
            "*b*",
        ];
        let actions = [
            "payments.refund",
            "payments",
            "a",
            "aa",
            "account.email.change",
            "env.delete",
            "x",
            "ab",
            "abc",
            "",
        ];
        for p in patterns {
            for a in actions {
                assert_eq!(glob(p, a), crate::glob::matches(p, a), "{p} {a}");
            }
        }
    }

    #[test]
    fn merge_is_a_union() {
        let limits = Limits::default();
        let mut a = SubjectHistory::default();
        let mut b = SubjectHistory::default();
        a.observe(&obs(1, "x", 10), &limits);
        b.observe(&obs(2, "y", 20), &limits);
        b.observe(&obs(1, "x", 10), &limits);
        a.merge(&b, &limits);
        assert_eq!(a.devices.len(), 2);
        assert_eq!(a.events.len(), 2);
        assert_eq!(a.last_seen, 20);
    }
}
