//! The data kept per subject, what a decision or a step-up report adds to
//! it, and the bounds that keep it small. Plain data (serde): the unit a
//! shared backend stores and merges.

use std::collections::VecDeque;
use std::sync::Arc;

use super::keys::{ItemKey, SubjectKey};
use super::signals::{Signal, Signals};
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
/// Places kept per subject, newest by time first out only when older ones
/// are gone: a place dated ahead of the others takes one slot, not the
/// subject's location (see [`SubjectHistory::place_at`]).
pub const MAX_PLACES: usize = 4;
/// amr values kept per elevation (RFC 8176 methods: a handful).
pub const MAX_AMR: usize = 8;
/// Longest acr or amr value kept; a longer one is dropped (an elevation
/// without it lifts less, never more).
pub const MAX_AUTH_VALUE_BYTES: usize = 128;

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
    /// The newest location by time (with country or coordinates).
    pub last_place: Option<Place>,
    /// Earlier locations, oldest first (at most `MAX_PLACES` - 1): what a
    /// decision dated before `last_place` reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_places: Vec<Place>,
    /// When the subject was last seen (0: never).
    pub last_seen: Millis,
    /// Decided actions, oldest first.
    pub events: VecDeque<Event>,
    /// Times of failed step-ups, oldest first.
    pub failures: VecDeque<Millis>,
    /// Elevated sessions.
    pub elevations: Vec<Elevation>,
    /// When expired entries were last dropped (updates prune at most once
    /// per `PRUNE_EVERY`; readers filter by time anyway).
    #[serde(default)]
    pub pruned_at: Millis,
    /// What Shared Signals events said about the subject; boxed, since most
    /// subjects have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<Box<Signals>>,
}

/// How far past the server's clock pruning may go (ms): clocks of callers
/// and servers differ a little. A setting would be `[limits]
/// max_time_skew`'s value.
pub const CLOCK_ALLOWANCE: Millis = 5 * 60 * 1000;

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
    /// A Shared Signals event's effect.
    Signalled(Signal),
}

impl Update {
    /// The subject it is about.
    pub fn subject(&self) -> SubjectKey {
        match self {
            Update::Observed(o) => o.subject,
            Update::SteppedUp(r) => r.subject,
            Update::Signalled(s) => s.subject,
        }
    }
}

impl SubjectHistory {
    /// Prunes before an update dated `at`, when the last pruning is
    /// [`PRUNE_EVERY`] old (or in the future: a clock set back).
    ///
    /// A request's `time` is input: one dated days ahead must not expire the
    /// subject's failures, devices and elevations. So pruning goes no further
    /// than the server's clock (plus [`CLOCK_ALLOWANCE`]), however far ahead
    /// `at` is and whatever bound the server puts on request times, and no
    /// further than the subject's previous update (so a lone outlier in a
    /// replayed timeline, older than the clock, prunes nothing either).
    /// Pruning only saves space: readers filter by their own time and the
    /// caps bound the size, so pruning later than it could costs nothing.
    fn maybe_prune(&mut self, at: Millis, limits: &Limits) {
        let clock = chrono::Utc::now()
            .timestamp_millis()
            .saturating_add(CLOCK_ALLOWANCE);
        let now = at.min(self.last_seen).min(clock);
        if now.saturating_sub(self.pruned_at) >= PRUNE_EVERY || now < self.pruned_at {
            self.prune(now, limits);
        }
    }

    /// Drops what is older than the limits allow at `now`.
    pub fn prune(&mut self, now: Millis, limits: &Limits) {
        self.pruned_at = now;
        let forget = now.saturating_sub(limits.retention);
        self.devices.retain(|d| d.last_seen >= forget);
        self.earlier_places.retain(|p| p.at >= forget);
        if self.last_place.is_some_and(|p| p.at < forget) {
            self.last_place = self.earlier_places.pop();
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
        if let Some(s) = &mut self.signals {
            s.prune(now, limits);
            if s.is_empty() {
                self.signals = None;
            }
        }
    }

    /// Applies `update` (what a shared backend does with each queued one).
    pub fn apply(&mut self, update: &Update, limits: &Limits) {
        match update {
            Update::Observed(o) => self.observe(o, limits),
            Update::SteppedUp(r) => self.step_up(r, limits),
            Update::Signalled(s) => self.signal(s, limits),
        }
    }

    /// Adds a Shared Signals event's effect.
    pub fn signal(&mut self, s: &Signal, limits: &Limits) {
        self.maybe_prune(s.mark.at, limits);
        self.signals
            .get_or_insert_default()
            .apply(&s.effect, &s.mark);
    }

    /// Adds a decision.
    pub fn observe(&mut self, o: &Observation, limits: &Limits) {
        self.maybe_prune(o.at, limits);
        self.last_seen = self.last_seen.max(o.at);
        if let Some(key) = o.device {
            self.see_device(key, o.at, o.makes_known, limits);
        }
        if let Some(p) = o.place {
            self.add_place(p);
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
            let (acr, amr) = bounded_auth(r.acr.as_ref(), &r.amr);
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
                acr,
                amr,
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

    /// Adds a place in time order, keeping the newest [`MAX_PLACES`].
    fn add_place(&mut self, p: Place) {
        match self.last_place {
            Some(last) if last.at > p.at => {
                let i = self
                    .earlier_places
                    .iter()
                    .rposition(|x| x.at <= p.at)
                    .map_or(0, |i| i + 1);
                self.earlier_places.insert(i, p);
            }
            last => {
                self.earlier_places.extend(last);
                self.last_place = Some(p);
            }
        }
        let extra = self
            .earlier_places
            .len()
            .saturating_sub(MAX_PLACES.saturating_sub(1));
        self.earlier_places.drain(..extra);
    }

    /// The places kept, oldest first.
    pub fn places(&self) -> impl DoubleEndedIterator<Item = &Place> {
        self.earlier_places.iter().chain(self.last_place.as_ref())
    }

    /// Where the subject last was as of `now`: the newest place dated at or
    /// before it. A place dated later (a request's `time` ahead of the
    /// others) is not yet the subject's location, so it cannot pin one that
    /// every real request then seems to travel from.
    pub fn place_at(&self, now: Millis) -> Option<Place> {
        self.places().rev().find(|p| p.at <= now).copied()
    }

    /// When the subject was last seen as of `now`: [`Self::last_seen`] when
    /// not after `now`, else the newest event, place or device sighting at or
    /// before it (an update dated ahead does not hide the real last one).
    pub fn seen_by(&self, now: Millis) -> Millis {
        if self.last_seen <= now {
            return self.last_seen;
        }
        let event = self.events.iter().rev().map(|e| e.at).find(|t| *t <= now);
        let place = self.place_at(now).map(|p| p.at);
        let device = self
            .devices
            .iter()
            .map(|d| d.last_seen)
            .filter(|t| *t <= now)
            .max();
        event.max(place).max(device).unwrap_or(0)
    }

    /// Bytes this history holds beyond its own struct (its vectors'
    /// allocations; strings are shared through the interners and counted
    /// there).
    pub fn heap_bytes(&self) -> usize {
        let elevations: usize = self
            .elevations
            .iter()
            .map(|e| e.amr.capacity() * size_of::<Arc<str>>())
            .sum();
        self.devices.capacity() * size_of::<DeviceRecord>()
            + self.earlier_places.capacity() * size_of::<Place>()
            + self.events.capacity() * size_of::<Event>()
            + self.failures.capacity() * size_of::<Millis>()
            + self.elevations.capacity() * size_of::<Elevation>()
            + elevations
            + self
                .signals
                .as_ref()
                .map_or(0, |s| size_of::<Signals>() + s.heap_bytes())
    }

    /// The most [`Self::heap_bytes`] can be under `limits`: every vector at
    /// its cap, with the capacity growth by doubling leaves.
    pub fn max_heap_bytes(limits: &Limits) -> usize {
        let cap = |n: usize| n.max(1).next_power_of_two();
        cap(limits.max_devices) * size_of::<DeviceRecord>()
            + cap(MAX_PLACES) * size_of::<Place>()
            + cap(limits.max_events) * size_of::<Event>()
            + cap(MAX_FAILURES) * size_of::<Millis>()
            + cap(MAX_ELEVATIONS) * (size_of::<Elevation>() + cap(MAX_AMR) * size_of::<Arc<str>>())
            + Signals::max_bytes()
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
        self.devices.shrink_to(limits.max_devices.max(1));
        for p in other.places() {
            if !self.places().any(|x| x == p) {
                self.add_place(*p);
            }
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
        // The union's allocation may be reused: give back what the cap does
        // not need.
        self.events.shrink_to(limits.max_events);
        let mut failures: Vec<Millis> = self
            .failures
            .drain(..)
            .chain(other.failures.iter().copied())
            .collect();
        failures.sort_unstable();
        failures.dedup();
        let skip = failures.len().saturating_sub(MAX_FAILURES);
        self.failures = failures.into_iter().skip(skip).collect();
        self.failures.shrink_to(MAX_FAILURES);
        for e in &other.elevations {
            let (acr, amr) = bounded_auth(e.acr.as_ref(), &e.amr);
            let e = Elevation {
                acr,
                amr,
                ..e.clone()
            };
            match self.elevations.iter_mut().find(|x| x.session == e.session) {
                Some(x) if x.until >= e.until => {}
                Some(x) => *x = e,
                None => self.elevations.push(e),
            }
        }
        self.elevations.sort_by_key(|e| std::cmp::Reverse(e.until));
        self.elevations.truncate(MAX_ELEVATIONS);
        self.elevations.shrink_to(MAX_ELEVATIONS);
        if let Some(theirs) = other.signals.as_deref() {
            self.signals.get_or_insert_default().merge(theirs);
        }
    }

    /// The live elevation of `session` at `now`, if any: a decision before
    /// the report (beyond the clock skew allowance) is not lifted by it, and
    /// a lowered level or a revocation since it started ends it.
    pub fn elevation(&self, session: ItemKey, now: Millis) -> Option<&Elevation> {
        let skew = Millis::try_from(crate::engine::AUTH_TIME_SKEW.as_millis()).unwrap_or(0);
        let ended = |e: &Elevation| {
            self.signals
                .as_deref()
                .is_some_and(|s| s.ends_elevation(session, e.from))
        };
        self.elevations.iter().find(|e| {
            e.session == session && e.until > now && e.from <= now.saturating_add(skew) && !ended(e)
        })
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

/// Inserts `item` at `index`, keeping the newest `max` items. The oldest
/// goes first, before the insert, so the queue never grows past `max` (nor
/// its allocation past the capacity `max` items need).
fn insert_bounded<T>(q: &mut VecDeque<T>, index: usize, item: T, max: usize) {
    let mut index = index;
    while q.len() >= max {
        if index == 0 {
            return; // older than everything kept
        }
        q.pop_front();
        index -= 1;
    }
    q.insert(index, item);
}

/// An elevation's acr and amr within [`MAX_AUTH_VALUE_BYTES`] and
/// [`MAX_AMR`]: a report is input, and elevations are kept per subject.
fn bounded_auth(acr: Option<&Arc<str>>, amr: &[Arc<str>]) -> (Option<Arc<str>>, Vec<Arc<str>>) {
    let short = |v: &&Arc<str>| v.len() <= MAX_AUTH_VALUE_BYTES;
    let acr = acr.filter(short).cloned();
    let amr = amr.iter().filter(short).take(MAX_AMR).cloned().collect();
    (acr, amr)
}

#[cfg(test)]
mod tests;
