//! Behavioural history: what the sidecar remembers about each subject
//! (devices, last location, recent actions, step-up outcomes), and the
//! `history` variable policies read it through.
//!
//! # Architecture
//!
//! - `keys`: subjects, devices, sessions and IPs are kept only as keyed
//!   hashes (`Keyer`, SipHash-1-3/128), never in clear, here or in a
//!   shared backend.
//! - `model`: plain data. A `SubjectHistory` per subject; an
//!   `Observation` is what one decision adds, a `StepUpReport` what
//!   `RecordStepUp` adds; both travel to a backend as an `Update`.
//! - `store`: the local in-memory store (`dashmap`, a mutex per subject),
//!   bounded in subjects, devices, events and time (`Limits`).
//! - `view`: the `View` a decision reads, built lazily on the first read
//!   of `history` from the local store (synchronously: the decision itself
//!   never waits on I/O), plus `history.count(glob, window)`.
//!
//! The flow of one decision: (1) with a shared `Backend`, the gRPC handler
//! awaits `History::prefetch`, which refreshes the subject's local entry
//! from the backend within a timeout and falls back to local history on
//! error; (2) `History::elevate` applies a live step-up elevation to the
//! request's session, before the cache lookup; (3) the engine decides,
//! building the `View` only if a condition reads `history`; (4)
//! `History::record` applies the `Observation` to the local store and
//! queues it for the backend (`Backend::publish`, never blocking).
//!
//! # Adding a shared backend
//!
//! Implement `Backend` (e.g. `src/history/redis.rs`): `fetch` returns the
//! subject's `SubjectHistory` (merged into the local entry with
//! `SubjectHistory::merge`, a union, so fetching twice is harmless);
//! `publish` queues each `Update` and applies it on the shared side with
//! `SubjectHistory::observe` / `SubjectHistory::step_up` (or an
//! equivalent server-side script), never blocking the caller. Keys are
//! `SubjectKey::to_hex`; replicas must share `[history] hash_key`. Attach it
//! with `History::with_backend` where the engine is built (`cli.rs`). The
//! gRPC `Decide` handler already awaits `History::prefetch` when a backend
//! is set; Envoy's `Check` path is synchronous and decides on local history.
//!
//! Conditions that read `history` are volatile (see
//! `crate::policy::Condition::volatile`): the decision cache never stores
//! their results, so a cached answer can never be stale with respect to
//! history.

pub(crate) mod config;
pub(crate) mod geo;
pub(crate) mod intern;
pub(crate) mod keys;
mod lazy;
pub(crate) mod model;
pub(crate) mod redis;
pub(crate) mod signals;
pub(crate) mod store;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use pbjson_types::value::Kind;

pub use config::{Enabled, HistoryConfig, RedisConfig, Secret};
pub use model::{Limits, StepUpReport};

pub(crate) use crate::expr::history::View;
pub(crate) use keys::{ItemKey, Keyer, SubjectKey};
pub(crate) use lazy::{Built, Lazy, Lookups};
pub(crate) use model::{Millis, Observation, Place, SubjectHistory, Update};
pub(crate) use signals::Signal;
pub(crate) use store::LocalStore;

use crate::engine::{Decision, Outcome};
use crate::policy::PolicySet;
use crate::proto::v1::DecideRequest;

/// A future a [`Backend`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a shared backend could not answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot be reached or refused the request.
    #[error("history backend unavailable: {0}")]
    Unavailable(String),
    /// What it holds cannot be read.
    #[error("history backend returned unreadable data: {0}")]
    Corrupt(String),
}

/// A history store shared by replicas (e.g. Redis). The local store stays in
/// front of it as a cache: decisions read local history only, refreshed by
/// [`History::prefetch`] before the decision; updates are applied locally,
/// then published.
pub trait Backend: Send + Sync {
    /// A short name for logs and metrics, e.g. `redis`.
    fn name(&self) -> &'static str;

    /// The subject's shared history, `None` when it has none.
    fn fetch(
        &self,
        subject: SubjectKey,
    ) -> BoxFuture<'_, Result<Option<SubjectHistory>, BackendError>>;

    /// Queues an update for the shared store. Must not block: when the queue
    /// is full, drop it (and count the drop).
    fn publish(&self, update: Update);

    /// Writes what is still queued, waiting at most `deadline` (called once
    /// at shutdown, after the last decision). Without a queue, nothing to do.
    fn flush(&self, deadline: std::time::Duration) -> BoxFuture<'_, ()> {
        let _ = deadline;
        Box::pin(async {})
    }

    /// Appends the backend's own Prometheus metrics to `out` (none by
    /// default).
    fn render_metrics(&self, _out: &mut String) {}
}

/// The action names history keeps: at most this many names, this many
/// bytes, names up to this long. Past it (a flood of made-up names), a new
/// name is recorded as [`OTHER_ACTION`]: events then hold shared strings
/// only, so memory does not grow with the names a caller invents. The
/// names the policy set's rules spell out are always kept (bounded by the
/// set).
pub const ACTIONS: intern::Bounds = intern::Bounds {
    names: 4096,
    bytes: 512 * 1024,
    name_bytes: 128,
};
/// The acr and amr values elevations keep. Past it, a new value is dropped
/// from the elevation (which then lifts less, never more).
pub const AUTH_VALUES: intern::Bounds = intern::Bounds {
    names: 256,
    bytes: 32 * 1024,
    name_bytes: model::MAX_AUTH_VALUE_BYTES,
};
/// What an action is recorded as when it is not kept: `history.count`
/// matches it with `*` only.
pub const OTHER_ACTION: &str = "~other";

/// The history: settings, the hash key, the local store and an optional
/// shared backend.
pub struct History {
    config: HistoryConfig,
    keyer: Keyer,
    store: LocalStore,
    backend: Option<Arc<dyn Backend>>,
    actions: intern::Interner,
    auth_values: intern::Interner,
    other_action: Arc<str>,
    /// The generation of the policy set whose rule actions are interned.
    vocabulary: AtomicU64,
    /// Actions recorded as [`OTHER_ACTION`].
    folded: AtomicU64,
    /// Until when some elevation may be live: decisions skip the elevation
    /// lookup entirely after it.
    elevated_until: AtomicI64,
    fetch_failures: AtomicU64,
    /// When a fetch failure was last logged (wall clock, ms).
    fetch_warned_at: AtomicI64,
}

/// At most one fetch-failure warning per this many ms: during an outage
/// every decision fails its fetch.
const FETCH_WARN_EVERY: Millis = 10_000;

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("enabled", &self.config.enabled)
            .field("subjects", &self.store.len())
            .field("backend", &self.backend.as_ref().map(|b| b.name()))
            .finish_non_exhaustive()
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new(HistoryConfig::default())
    }
}

impl History {
    /// A history per `config`, local only.
    pub fn new(config: HistoryConfig) -> Self {
        let keyer = match &config.hash_key {
            Some(k) => Keyer::from_secret(&k.0),
            None => Keyer::random(),
        };
        Self {
            store: LocalStore::new(config.limits),
            config,
            keyer,
            backend: None,
            actions: intern::Interner::new(ACTIONS),
            auth_values: intern::Interner::new(AUTH_VALUES),
            other_action: Arc::from(OTHER_ACTION),
            vocabulary: AtomicU64::new(u64::MAX),
            folded: AtomicU64::new(0),
            elevated_until: AtomicI64::new(i64::MIN),
            fetch_failures: AtomicU64::new(0),
            fetch_warned_at: AtomicI64::new(i64::MIN),
        }
    }

    /// Shares history through `backend`.
    pub fn with_backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// The settings.
    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// The local store.
    pub fn store(&self) -> &LocalStore {
        &self.store
    }

    /// The identifier hasher.
    pub fn keyer(&self) -> &Keyer {
        &self.keyer
    }

    /// The shared backend, if any.
    pub fn backend(&self) -> Option<&Arc<dyn Backend>> {
        self.backend.as_ref()
    }

    /// Prefetches that failed or timed out (decisions then used local history).
    pub fn fetch_failures(&self) -> u64 {
        self.fetch_failures.load(Ordering::Relaxed)
    }

    /// Counts a failed prefetch; whether to log it (at most once per
    /// [`FETCH_WARN_EVERY`]).
    fn fetch_failed(&self) -> bool {
        self.fetch_failures.fetch_add(1, Ordering::Relaxed);
        let now = Utc::now().timestamp_millis();
        let last = self.fetch_warned_at.load(Ordering::Relaxed);
        now.saturating_sub(last) >= FETCH_WARN_EVERY
            && self
                .fetch_warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Appends the history's Prometheus metrics to `out`:
    /// `stepup_history_subjects`, `stepup_history_evictions_total`,
    /// `stepup_history_fetch_failures_total`, `stepup_history_action_names`
    /// and `stepup_history_actions_folded_total`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP stepup_history_subjects Subjects in the local history.\n\
             # TYPE stepup_history_subjects gauge\n\
             stepup_history_subjects {}\n\
             # HELP stepup_history_evictions_total Subjects evicted from the local history (cap or retention).\n\
             # TYPE stepup_history_evictions_total counter\n\
             stepup_history_evictions_total {}\n\
             # HELP stepup_history_fetch_failures_total Shared-backend fetches that failed or timed out (decided on local history).\n\
             # TYPE stepup_history_fetch_failures_total counter\n\
             stepup_history_fetch_failures_total {}\n\
             # HELP stepup_history_action_names Distinct action names history keeps (bounded).\n\
             # TYPE stepup_history_action_names gauge\n\
             stepup_history_action_names {}\n\
             # HELP stepup_history_actions_folded_total Decisions recorded with their action as `~other` (the action-name table was full).\n\
             # TYPE stepup_history_actions_folded_total counter\n\
             stepup_history_actions_folded_total {}",
            self.store.len(),
            self.store.evicted(),
            self.fetch_failures(),
            self.actions.len(),
            self.folded.load(Ordering::Relaxed)
        );
        if let Some(b) = &self.backend {
            b.render_metrics(out);
        }
    }

    /// Whether anything is remembered at all.
    pub fn is_on(&self) -> bool {
        self.config.enabled != Enabled::Off
    }

    /// Whether decisions under `policy` are recorded.
    pub fn records(&self, policy: &PolicySet) -> bool {
        match self.config.enabled {
            Enabled::On => true,
            Enabled::Off => false,
            Enabled::Auto => policy.reads_history || self.backend.is_some(),
        }
    }

    fn subject_key(&self, req: &DecideRequest) -> Option<SubjectKey> {
        let s = req.subject.as_ref().filter(|s| !s.id.is_empty())?;
        Some(self.keyer.subject(&s.tenant, &s.id))
    }

    fn device_key(&self, req: &DecideRequest) -> Option<ItemKey> {
        let d = req.device.as_ref().filter(|d| !d.id.is_empty())?;
        Some(self.keyer.device(&d.id))
    }

    /// Where the request comes from: coordinates from
    /// `network.attributes.lat`/`lon`, the country from `network.country`;
    /// what is missing from the GeoIP database of `policy`'s lists, when one
    /// is configured and `network.ip` is an address.
    pub fn place_of(&self, policy: &PolicySet, req: &DecideRequest, now: Millis) -> Option<Place> {
        let n = req.network.as_ref()?;
        let number = |k: &str| match n.attributes.get(k).and_then(|v| v.kind.as_ref()) {
            Some(Kind::NumberValue(x)) if x.is_finite() => Some(*x),
            _ => None,
        };
        let coords = match (number("lat"), number("lon")) {
            (Some(lat), Some(lon))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
            {
                Some((lat, lon))
            }
            _ => None,
        };
        let mut country = model::country_code(&n.country);
        let mut coords = coords;
        if (coords.is_none() || country.is_none())
            && policy.lists().geoip().is_some()
            && let Ok(ip) = n.ip.parse::<std::net::IpAddr>()
            && let Some(point) = policy.lists().locate(ip)
        {
            coords = coords.or(Some((point.lat, point.lon)));
            country =
                country.or_else(|| point.country.and_then(|c| model::country_code(c.as_str())));
        }
        if coords.is_none() && country.is_none() {
            return None;
        }
        Some(Place {
            at: now,
            country,
            coords,
        })
    }

    /// The view of `req`'s subject at `now` (before this decision), with
    /// what was looked up to build it.
    pub fn view(&self, policy: &PolicySet, req: &DecideRequest, now: Millis) -> Built {
        let empty = || Built {
            view: View::empty(now),
            lookups: None,
            entry: None,
        };
        if !self.is_on() {
            return empty();
        }
        let Some(subject) = self.subject_key(req) else {
            return empty();
        };
        let lookups = Lookups {
            subject,
            device: self.device_key(req),
            place: self.place_of(policy, req, now),
        };
        let mut v = View::empty(now);
        let Some(entry) = self.store.get(subject, now) else {
            return Built {
                view: v,
                lookups: Some(lookups),
                entry: None,
            };
        };
        {
            let h = entry.lock();
            let forget = now.saturating_sub(self.config.limits.retention);
            let mut devices = 0i64;
            // As of `now`: what is dated later (a request's `time` ahead of
            // the others) is not seen yet.
            let seen = |d: &&model::DeviceRecord| d.last_seen >= forget && d.first_seen <= now;
            for d in h.devices.iter().filter(seen) {
                devices += 1;
                if Some(d.key) == lookups.device {
                    v.device_known = d.known;
                    v.device_first_seen = d.first_seen;
                }
            }
            v.devices_seen = devices;
            v.last_seen = h.seen_by(now);
            if let Some(last) = h.place_at(now).filter(|p| p.at >= forget) {
                v.last_country = last.country;
                if let Some(here) = &lookups.place {
                    v.travel_kmh = geo::travel_kmh(&last, here);
                }
            }
            v.stepups_failed = i64::try_from(h.failures_since(now)).unwrap_or(i64::MAX);
            if let Some(s) = h.signals.as_deref() {
                self.signal_view(s, req, lookups.device, &mut v);
            }
        }
        v.actions = Some(Arc::clone(&entry) as Arc<dyn crate::expr::history::Actions>);
        Built {
            view: v,
            lookups: Some(lookups),
            entry: Some(entry),
        }
    }

    /// The Shared Signals fields of `v` from `s`, for `req`'s session and
    /// `device`.
    fn signal_view(
        &self,
        s: &signals::Signals,
        req: &DecideRequest,
        device: Option<ItemKey>,
        v: &mut View,
    ) {
        let session = req.session.as_ref();
        if let Some(session) = session {
            let key = (!session.id.is_empty()).then(|| self.keyer.session(&session.id));
            let auth_time = session.auth_time.as_ref().map(|t| {
                t.seconds
                    .saturating_mul(1000)
                    .saturating_add(i64::from(t.nanos) / 1_000_000)
            });
            if let Some(m) = s.revocation(key, auth_time) {
                v.session_revoked = true;
                v.events.push(("session_revoked", Arc::clone(&m.jti)));
            }
        }
        if let Some(c) = &s.credential_changed {
            v.credential_changed = c.at;
            v.events.push(("credential_changed", Arc::clone(&c.jti)));
        }
        if let Some(d) = device.and_then(|d| s.device(d)) {
            v.device_compliant = Some(d.compliant);
            v.events.push(("device_compliant", Arc::clone(&d.mark.jti)));
        }
        if let Some(r) = &s.risk {
            v.risk_level = Some(r.level.as_str());
            v.events.push(("risk_level", Arc::clone(&r.mark.jti)));
        }
    }

    /// Applies a Shared Signals event's effect to its subject's history and
    /// sends it to the shared backend.
    pub fn signal(&self, s: Signal) {
        let limits = self.config.limits;
        self.store
            .update(s.subject, s.mark.at, |h| h.signal(&s, &limits));
        if let Some(b) = &self.backend {
            b.publish(Update::Signalled(s));
        }
    }

    /// The shared string for `action`: from a small per-thread cache of
    /// recent actions (a string comparison), else the interner (a map
    /// lookup), else [`OTHER_ACTION`] when the interner is full.
    fn intern(&self, policy: &PolicySet, action: &str) -> Arc<str> {
        thread_local! {
            static RECENT: std::cell::RefCell<Vec<Arc<str>>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        const RECENT_MAX: usize = 8;
        let recent = RECENT.with(|r| r.borrow().iter().find(|a| ***a == *action).cloned());
        if let Some(a) = recent {
            return a;
        }
        let generation = policy.generation;
        if self.vocabulary.load(Ordering::Relaxed) != generation
            && self.vocabulary.swap(generation, Ordering::Relaxed) != generation
        {
            // The set's own names first: a flood of made-up names before a
            // reload must not fold the names its rules match on.
            for name in policy.rules.iter().flat_map(|r| &r.actions) {
                if !name.contains('*') {
                    self.actions.get_always(name);
                }
            }
        }
        let Some(a) = self.actions.get(action) else {
            self.folded.fetch_add(1, Ordering::Relaxed);
            return Arc::clone(&self.other_action);
        };
        RECENT.with(|r| {
            let mut r = r.borrow_mut();
            if r.len() >= RECENT_MAX {
                r.remove(0);
            }
            r.push(Arc::clone(&a));
        });
        a
    }

    /// `r` with its acr and amr values shared through the interner; a value
    /// it cannot take is dropped.
    fn shared_auth(&self, mut r: StepUpReport) -> StepUpReport {
        r.acr = r.acr.and_then(|a| self.auth_values.get(&a));
        r.amr = r
            .amr
            .iter()
            .take(model::MAX_AMR)
            .filter_map(|m| self.auth_values.get(m))
            .collect();
        r
    }

    /// A history fetched from a shared backend, its strings replaced by the
    /// interned ones (or [`OTHER_ACTION`], or dropped), as if recorded here.
    fn share_strings(&self, h: &mut SubjectHistory) {
        for e in &mut h.events {
            e.action = self
                .actions
                .get(&e.action)
                .unwrap_or_else(|| Arc::clone(&self.other_action));
        }
        for e in &mut h.elevations {
            e.acr = e.acr.take().and_then(|a| self.auth_values.get(&a));
            let amr = std::mem::take(&mut e.amr);
            e.amr = amr
                .iter()
                .take(model::MAX_AMR)
                .filter_map(|m| self.auth_values.get(m))
                .collect();
        }
    }

    /// What the history holds, in bytes: every subject's entry (its struct,
    /// its vectors, its slot in the map) and the interned strings. An
    /// estimate from sizes and capacities, without the allocator's own
    /// overhead; never above [`History::max_bytes`].
    pub fn bytes(&self) -> usize {
        self.store.bytes() + self.actions.bytes() + self.auth_values.bytes()
    }

    /// The most [`History::bytes`] can be under the configured limits: the
    /// store full of subjects at every per-subject cap, both interners full
    /// (the policy set's own action names come on top, bounded by the set).
    pub fn max_bytes(&self) -> usize {
        self.store.max_bytes() + ACTIONS.bytes + AUTH_VALUES.bytes
    }

    /// The level index at or above which an allowed decision makes the
    /// device known, under `policy`.
    fn known_level(&self, policy: &PolicySet) -> Option<usize> {
        match &self.config.known_level {
            Some(name) => policy.levels.iter().position(|l| *l.name == **name),
            None => Some(usize::from(policy.levels.len() > 1)),
        }
    }

    /// Records `decision` of `req` (already elevated, if it was) when
    /// decisions under its policy are recorded: cheap and synchronous.
    /// `view`, the decision's view of the history when it read one, saves
    /// hashing and locating the request again.
    pub fn record(
        &self,
        req: &DecideRequest,
        decision: &Decision,
        now: DateTime<Utc>,
        view: Option<&Built>,
    ) {
        let policy = &decision.policy;
        if !self.records(policy) {
            return;
        }
        let at = now.timestamp_millis();
        let lookups = match view
            .and_then(|v| v.lookups)
            .filter(|_| view.is_some_and(|v| v.view.now == at))
        {
            Some(l) => l,
            None => {
                let Some(subject) = self.subject_key(req) else {
                    return;
                };
                Lookups {
                    subject,
                    device: self.device_key(req),
                    place: self.place_of(policy, req, at),
                }
            }
        };
        let subject = lookups.subject;
        let session_level = req
            .session
            .as_ref()
            .and_then(|s| policy.level_of_acr(&s.acr));
        let makes_known = decision.outcome == Outcome::Allow
            && matches!((session_level, self.known_level(policy)), (Some(have), Some(need)) if have >= need);
        let o = Observation {
            subject,
            device: lookups.device,
            action: self.intern(policy, &req.action),
            at,
            place: lookups.place,
            outcome: decision.outcome.into(),
            session_level,
            makes_known,
        };
        let limits = self.config.limits;
        // The view's entry, when it found one, saves a second map lookup.
        match view.and_then(|v| v.entry.as_ref()) {
            Some(entry) if view.is_some_and(|v| v.view.now == at) => {
                self.store
                    .update_entry(entry, at, |h| h.observe(&o, &limits));
            }
            _ => self.store.update(subject, at, |h| h.observe(&o, &limits)),
        }
        if let Some(b) = &self.backend {
            b.publish(Update::Observed(o));
        }
    }

    /// Records a step-up outcome (from `RecordStepUp`). Returns the end of
    /// the elevation window it opened (a success with a session) and the
    /// subject's failed step-ups in the last 24 hours.
    pub fn report(&self, r: StepUpReport) -> (Option<Millis>, usize) {
        let r = self.shared_auth(r);
        let limits = self.config.limits;
        let until =
            (r.success && r.session.is_some()).then(|| r.at.saturating_add(limits.elevation));
        if let Some(until) = until {
            self.elevated_until.fetch_max(until, Ordering::Relaxed);
        }
        let failed = self.store.update(r.subject, r.at, |h| {
            h.step_up(&r, &limits);
            h.failures_since(r.at)
        });
        if let Some(b) = &self.backend {
            b.publish(Update::SteppedUp(r));
        }
        (until, failed)
    }

    /// `req` with its session lifted by a live elevation of its session:
    /// the elevation's `acr`, `amr` and `auth_time` replace the caller's, as
    /// one unit, when its acr maps to a higher level of `policy`'s ladder
    /// than the caller's (or the caller's maps to none), or to the same
    /// level with a later `auth_time`; an elevation without `acr`, or at a
    /// lower level, changes nothing. `None` when nothing changes (the usual
    /// case, answered without a lookup when no elevation can be live).
    pub fn elevate(
        &self,
        policy: &PolicySet,
        req: &DecideRequest,
        now: DateTime<Utc>,
    ) -> Option<DecideRequest> {
        let now = now.timestamp_millis();
        if !self.is_on() || self.elevated_until.load(Ordering::Relaxed) <= now {
            return None;
        }
        let session = req.session.as_ref().filter(|s| !s.id.is_empty())?;
        let entry = self.store.get(self.subject_key(req)?, now)?;
        let e = entry
            .lock()
            .elevation(self.keyer.session(&session.id), now)?
            .clone();
        let mut s = session.clone();
        let caller = s.auth_time.as_ref().map_or(i64::MIN, |t| {
            t.seconds
                .saturating_mul(1000)
                .saturating_add(i64::from(t.nanos) / 1_000_000)
        });
        // `(acr, amr, auth_time)` describe one authentication and are taken
        // together, never mixed with the caller's: an old strong step-up
        // plus a fresh weak login of the same session must not read as a
        // fresh strong one. An elevation without `acr` lifts nothing.
        let acr = e.acr.as_deref()?;
        let own = policy.level_of_acr(&s.acr);
        let level = if *acr == *s.acr {
            own
        } else {
            Some(policy.level_of_acr(acr)?)
        };
        let takes = match (level, own) {
            (Some(l), Some(o)) if l > o => true,
            (Some(_), None) => true,
            (l, o) if l == o => e.auth_time > caller,
            _ => false,
        };
        if !takes {
            return None;
        }
        s.acr = acr.to_owned();
        s.amr = e
            .amr
            .iter()
            .take(crate::request::MAX_ENTRIES)
            .map(|m| m.to_string())
            .collect();
        s.auth_time = Some(pbjson_types::Timestamp {
            seconds: e.auth_time.div_euclid(1000),
            nanos: i32::try_from(e.auth_time.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        });
        Some(DecideRequest {
            session: Some(s),
            ..req.clone()
        })
    }

    /// Refreshes the local history of `req`'s subject from the shared
    /// backend, when one is configured and the decision may need it (the set
    /// reads `history`, or the request names a session that may be elevated):
    /// at most [`HistoryConfig::fetch_timeout`]; on error or timeout the
    /// decision goes ahead on local history (counted in
    /// [`History::fetch_failures`] and logged). A no-op without a backend.
    pub async fn prefetch(&self, policy: &PolicySet, req: &DecideRequest, now: DateTime<Utc>) {
        let Some(backend) = &self.backend else {
            return;
        };
        let has_session = req.session.as_ref().is_some_and(|s| !s.id.is_empty());
        if !self.is_on() || !(policy.reads_history || has_session) {
            return;
        }
        let Some(subject) = self.subject_key(req) else {
            return;
        };
        let fetched = tokio::time::timeout(self.config.fetch_timeout, backend.fetch(subject)).await;
        match fetched {
            Ok(Ok(Some(mut shared))) => {
                self.share_strings(&mut shared);
                let at = now.timestamp_millis();
                let limits = self.config.limits;
                if let Some(e) = shared.elevations.iter().map(|e| e.until).max() {
                    self.elevated_until.fetch_max(e, Ordering::Relaxed);
                }
                self.store
                    .update(subject, at, |h| h.merge(&shared, &limits));
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                if self.fetch_failed() {
                    tracing::warn!(backend = backend.name(), error = %e, failures = self.fetch_failures(), "history fetch failed: deciding on local history");
                }
            }
            Err(_) => {
                if self.fetch_failed() {
                    tracing::warn!(backend = backend.name(), timeout = ?self.config.fetch_timeout, failures = self.fetch_failures(), "history fetch timed out: deciding on local history");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
