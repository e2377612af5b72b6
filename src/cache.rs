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

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pbjson_types::Value;
use pbjson_types::value::Kind;

use crate::engine::Evaluated;
use crate::engine::view::Node;
use crate::policy::PolicySet;
use crate::proto::v1::DecideRequest;

/// Cache settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Maximum entries; 0 turns the cache off.
    pub capacity: u64,
    /// How long an entry lives.
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl: Duration::from_secs(60),
        }
    }
}

/// A cache of evaluations.
///
/// Keys are hashed with foldhash, randomly seeded per cache, rather than
/// moka's default SipHash: a key is a few hundred bytes, and SipHash-1-3
/// over them was a quarter of a cache hit. Keys hold request values a user
/// may choose, so the seed stays random (no fixed-seed hasher).
pub struct DecisionCache {
    inner: moka::sync::Cache<Box<[u8]>, Arc<Evaluated>, foldhash::fast::RandomState>,
}

impl DecisionCache {
    /// A cache per `config`, or `None` when it is turned off.
    pub fn new(config: CacheConfig) -> Option<Self> {
        (config.capacity > 0).then(|| Self {
            inner: moka::sync::Cache::builder()
                .max_capacity(config.capacity)
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
    for path in &policy.key_paths {
        match path.as_ref().and_then(|p| p.resolve(req)) {
            Some(node) => write_node(buf, node),
            None => buf.push(b'_'),
        }
    }
}

fn write_len(buf: &mut Vec<u8>, n: usize) {
    buf.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn write_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b's');
    write_len(buf, s.len());
    buf.extend_from_slice(s.as_bytes());
}

fn write_node(buf: &mut Vec<u8>, node: Node<'_>) {
    match node {
        Node::Str(s) => write_str(buf, s),
        Node::Bool(b) => buf.extend_from_slice(&[b'b', u8::from(b)]),
        Node::Int(i) => {
            buf.push(b'i');
            buf.extend_from_slice(&i.to_le_bytes());
        }
        Node::Time(None) => buf.push(b'T'),
        Node::Time(Some(t)) => {
            buf.push(b't');
            buf.extend_from_slice(&t.seconds.to_le_bytes());
            buf.extend_from_slice(&t.nanos.to_le_bytes());
        }
        Node::StrList(list) => {
            buf.push(b'l');
            write_len(buf, list.len());
            for s in list {
                write_str(buf, s);
            }
        }
        Node::Map(map) => write_map(buf, map.iter()),
        Node::Value(v) => write_value(buf, v),
        Node::Msg(m) => {
            buf.push(b'M');
            buf.push(u8::from(Node::Msg(m).is_set()));
            for name in m.field_names() {
                if let Some(field) = m.field(name) {
                    write_node(buf, field);
                }
            }
        }
    }
}

fn write_map<'a>(buf: &mut Vec<u8>, entries: impl Iterator<Item = (&'a String, &'a Value)>) {
    let mut entries: Vec<_> = entries.collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    buf.push(b'm');
    write_len(buf, entries.len());
    for (k, v) in entries {
        write_str(buf, k);
        write_value(buf, v);
    }
}

fn write_value(buf: &mut Vec<u8>, v: &Value) {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => buf.push(b'n'),
        Some(Kind::NumberValue(n)) => {
            buf.push(b'd');
            buf.extend_from_slice(&n.to_bits().to_le_bytes());
        }
        Some(Kind::StringValue(s)) => write_str(buf, s),
        Some(Kind::BoolValue(b)) => buf.extend_from_slice(&[b'b', u8::from(*b)]),
        Some(Kind::StructValue(s)) => write_map(buf, s.fields.iter()),
        Some(Kind::ListValue(l)) => {
            buf.push(b'L');
            write_len(buf, l.values.len());
            for v in &l.values {
                write_value(buf, v);
            }
        }
    }
}
