//! The decision cache: a moka cache in front of evaluation, keyed by the
//! policy set's generation, the action and the values of exactly the request
//! paths the set's conditions read, so that requests differing only in unread
//! fields share an entry.
//!
//! What is cached is the result of the time-independent conditions only
//! (see [`crate::policy::Condition::volatile`]); conditions reading `now` and
//! the session's freshness check run on every decision. The cache therefore
//! never changes an answer, which a property test checks. Conditions that
//! read the clock only through calendar accessors (`now.getHours(tz)`) are
//! cached with `floor(now / step)` in the key (see
//! [`crate::policy::PolicySet::time_step`]).

mod calendar;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::engine::{self, Decision, Evaluated};
use crate::expr::history::Recall;
use crate::policy::PolicySet;
use crate::proto::v1::DecideRequest;
use crate::request::key::write_str;

/// Cache settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Maximum entries; 0 turns the cache off.
    pub capacity: u64,
    /// Maximum bytes the entries hold (keys, evaluations, the cache's own
    /// bookkeeping), whatever their number: a key holds the request values
    /// the policies read, which callers choose.
    pub max_bytes: u64,
    /// How long an entry lives.
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            max_bytes: 64 << 20,
            ttl: Duration::from_secs(60),
        }
    }
}

/// What one entry holds in memory, near enough: moka's node for it (its
/// hash-table slot, the access-order and timer links, the counters), the
/// key, and the evaluation with what it points to. Strings shared with the
/// policy set (ids, messages) are not counted; error messages are.
fn entry_bytes(key: &[u8], e: &Evaluated) -> usize {
    use crate::engine::{Assessment, CondResult, EvalError};
    use std::mem::size_of;
    /// moka's own per-entry structures (the node, its access-order and
    /// timer links, the hash-table slot), estimated from their layout.
    const NODE: usize = 200;
    let result = |r: &CondResult| match r {
        CondResult::Error(message) => message.len(),
        _ => 0,
    };
    let mut bytes = NODE
        + key.len()
        + size_of::<Evaluated>()
        + e.signals.len() * size_of::<CondResult>()
        + e.rules.capacity() * size_of::<(usize, CondResult)>()
        + e.signals.iter().map(result).sum::<usize>()
        + e.rules.iter().map(|(_, r)| result(r)).sum::<usize>();
    if let Some(a) = &e.assessment {
        bytes += size_of::<Assessment>()
            + (a.matched.capacity() + a.shadow.capacity()) * size_of::<usize>()
            + a.errors.capacity() * size_of::<EvalError>()
            + a.errors.iter().map(|x| x.message.len()).sum::<usize>();
    }
    bytes
}

/// A cache of evaluations.
///
/// Keys are hashed with foldhash, randomly seeded per cache, rather than
/// moka's default SipHash: a key is a few hundred bytes, and SipHash-1-3
/// over them is a large share of a cache hit. Keys hold request values a user
/// may choose, so the seed stays random (no fixed-seed hasher).
pub struct DecisionCache {
    inner: moka::sync::Cache<Key, Arc<Evaluated>, foldhash::fast::RandomState>,
}

/// A cache key: the request values the policy set reads, encoded. (A name
/// for it, since moka's weigher must take `&Box<[u8]>`.)
type Key = Box<[u8]>;

impl DecisionCache {
    /// A cache per `config`, or `None` when it is turned off.
    ///
    /// Both bounds hold with one weight: the cache holds at most
    /// `max_bytes` of weight, and an entry weighs its bytes, but at least
    /// `max_bytes / capacity`; so there are never more than `capacity`
    /// entries, nor more than `max_bytes` in them.
    pub fn new(config: CacheConfig) -> Option<Self> {
        if config.capacity == 0 || config.max_bytes == 0 {
            return None;
        }
        let floor = u32::try_from(config.max_bytes / config.capacity).unwrap_or(u32::MAX);
        Some(Self {
            inner: moka::sync::Cache::builder()
                .max_capacity(config.max_bytes)
                .weigher(move |key: &Key, value: &Arc<Evaluated>| {
                    u32::try_from(entry_bytes(key, value))
                        .unwrap_or(u32::MAX)
                        .max(floor)
                })
                .time_to_live(config.ttl)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        })
    }

    /// The entry for `req` at `now` under `policy`, if cached. The key is
    /// built in a reused per-thread buffer, so a hit allocates nothing; a
    /// miss returns the key for [`DecisionCache::insert`].
    pub fn lookup(
        &self,
        policy: &PolicySet,
        req: &DecideRequest,
        now: DateTime<Utc>,
    ) -> Result<Arc<Evaluated>, Box<[u8]>> {
        KEY_BUFFER.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            write_key(&mut buf, policy, req, now);
            match self.inner.get(buf.as_slice()) {
                Some(hit) => Ok(hit),
                None => Err(Box::from(buf.as_slice())),
            }
        })
    }

    /// Decides `req` at `now` under `policy`: the time-independent part
    /// from the cache (evaluated and inserted on a miss), the volatile
    /// conditions and the session's freshness now.
    pub fn decide(
        &self,
        policy: Arc<PolicySet>,
        req: &DecideRequest,
        now: DateTime<Utc>,
        history: &dyn Recall,
    ) -> Decision {
        let (stable, hit) = match self.lookup(&policy, req, now) {
            Ok(e) => (e, true),
            Err(key) => {
                let e = Arc::new(engine::evaluate_stable(&policy, req, now, history));
                // Calendar reads in a zone off the key's time step would not
                // hold for the whole step.
                if calendar::steady(&policy, req, now, history, &e) {
                    self.insert(key, Arc::clone(&e));
                }
                (e, false)
            }
        };
        engine::decide_from(policy, &stable, req, now, history, hit)
    }

    /// The entry for `key`, if cached.
    pub fn get(&self, key: &[u8]) -> Option<Arc<Evaluated>> {
        self.inner.get(key)
    }

    /// Caches `value` under `key`.
    pub fn insert(&self, key: Box<[u8]>, value: Arc<Evaluated>) {
        self.inner.insert(key, value);
    }

    /// Drops every entry (after a policy reload).
    pub fn clear(&self) {
        self.inner.invalidate_all();
    }

    /// Approximate number of entries.
    pub fn len(&self) -> u64 {
        self.inner.entry_count()
    }

    /// Approximate bytes the entries weigh (see [`DecisionCache::new`]).
    pub fn weight(&self) -> u64 {
        self.inner.weighted_size()
    }

    /// Runs the evictions and counts the cache has pending (they otherwise
    /// run every few operations), so that `len` and `weight` are exact.
    pub fn settle(&self) {
        self.inner.run_pending_tasks();
    }

    /// Whether the cache is (approximately) empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

thread_local! {
    static KEY_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(256));
}

/// Writes the cache key of `req` under `policy` into `buf`: the generation,
/// the time step, the action and an injective encoding of every read path's
/// value (tags and lengths, no hash: two requests share a key only if the
/// policy cannot tell them apart).
fn write_key(buf: &mut Vec<u8>, policy: &PolicySet, req: &DecideRequest, now: DateTime<Utc>) {
    buf.extend_from_slice(&policy.generation.to_le_bytes());
    if let Some(step) = policy.time_step {
        let step = i64::try_from(step.as_secs()).unwrap_or(i64::MAX).max(1);
        buf.extend_from_slice(&now.timestamp().div_euclid(step).to_le_bytes());
    }
    write_str(buf, &req.action);
    policy.key_tree.write(buf, req);
}

/// Decides `req` through `cache` when given (an explanation bypasses it: it
/// needs every condition evaluated), else evaluating everything.
pub fn decide(
    cache: Option<&DecisionCache>,
    policy: Arc<PolicySet>,
    req: &DecideRequest,
    now: DateTime<Utc>,
    history: &dyn Recall,
    explain: bool,
) -> Decision {
    match cache {
        Some(cache) if !explain => cache.decide(policy, req, now, history),
        _ => engine::decide(policy, req, now, history, explain),
    }
}

/// `decide` with `history` read as a subject never seen.
pub fn decide_with(
    policy: Arc<PolicySet>,
    cache: Option<&DecisionCache>,
    req: &DecideRequest,
    now: DateTime<Utc>,
    explain: bool,
) -> Decision {
    let history = crate::expr::history::View::empty(now.timestamp_millis());
    decide(cache, policy, req, now, &history, explain)
}

#[cfg(test)]
mod tests;
