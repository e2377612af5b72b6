//! The local, in-memory history: a `dashmap` of subjects, each behind its own
//! mutex, bounded in subjects (least recently seen evicted first), and per
//! subject by [`Limits`].
//!
//! Eviction runs in batches: when a new subject would exceed the cap, one
//! thread finds the touch time below which the oldest ~1/16 of the subjects
//! fall (a linear selection over the touch times) and drops them, together
//! with every subject past its retention. That is O(cap) once per cap/16 new
//! subjects: a handful of operations per insert, amortised, and the map
//! never holds more than the cap.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;

use super::keys::SubjectKey;
use super::model::{Limits, Millis, SubjectHistory};

/// One subject's history and when it was last touched.
#[derive(Debug, Default)]
pub struct Entry {
    state: Mutex<SubjectHistory>,
    touched: AtomicI64,
}

impl crate::expr::history::Actions for Entry {
    fn count_up_to(&self, pattern: &str, now: Millis, window: Millis, limit: usize) -> usize {
        self.lock().count_up_to(pattern, now, window, limit)
    }
}

impl Entry {
    /// Locks the history (a poisoned lock is still usable: the history is
    /// plain data, each update leaves it consistent).
    pub fn lock(&self) -> MutexGuard<'_, SubjectHistory> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the subject was last touched.
    pub fn touched(&self) -> Millis {
        self.touched.load(Ordering::Relaxed)
    }

    fn touch(&self, now: Millis) {
        self.touched.fetch_max(now, Ordering::Relaxed);
    }
}

/// Subject keys are already uniformly distributed keyed hashes: hashing them
/// again (the map's default SipHash) would only cost time.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, i: u128) {
        self.0 = (i as u64) ^ ((i >> 64) as u64);
    }
}

/// The in-memory store.
#[derive(Debug)]
pub struct LocalStore {
    map: DashMap<SubjectKey, Arc<Entry>, BuildHasherDefault<KeyHasher>>,
    len: AtomicUsize,
    limits: Limits,
    sweeping: Mutex<()>,
    evicted: AtomicU64,
}

impl LocalStore {
    /// An empty store bounded by `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            map: DashMap::with_hasher(BuildHasherDefault::default()),
            len: AtomicUsize::new(0),
            limits,
            sweeping: Mutex::new(()),
            evicted: AtomicU64::new(0),
        }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Subjects held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no subject is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Subjects evicted so far (for the cap or retention).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// The subject's entry, if held and not past retention at `now`.
    pub fn get(&self, key: SubjectKey, now: Millis) -> Option<Arc<Entry>> {
        let e = self.map.get(&key).map(|e| Arc::clone(e.value()))?;
        (e.touched() >= now.saturating_sub(self.limits.retention)).then_some(e)
    }

    /// Applies `f` to the subject's history, creating it (and evicting others
    /// if the store is full) when absent.
    pub fn update<R>(
        &self,
        key: SubjectKey,
        now: Millis,
        f: impl FnOnce(&mut SubjectHistory) -> R,
    ) -> R {
        let entry = match self.map.get(&key) {
            Some(e) => Arc::clone(e.value()),
            None => self.insert(key, now),
        };
        entry.touch(now);
        let mut state = entry.lock();
        f(&mut state)
    }

    /// Applies `f` to an entry already looked up (by [`LocalStore::get`]).
    /// If it was evicted meanwhile, the update is lost with it.
    pub fn update_entry<R>(
        &self,
        entry: &Entry,
        now: Millis,
        f: impl FnOnce(&mut SubjectHistory) -> R,
    ) -> R {
        entry.touch(now);
        let mut state = entry.lock();
        f(&mut state)
    }

    fn insert(&self, key: SubjectKey, now: Millis) -> Arc<Entry> {
        if self.len() >= self.limits.max_subjects {
            self.evict(now);
        }
        match self.map.entry(key) {
            MapEntry::Occupied(o) => Arc::clone(o.get()),
            MapEntry::Vacant(v) => {
                self.len.fetch_add(1, Ordering::Relaxed);
                let e = Arc::new(Entry::default());
                Arc::clone(v.insert(e).value())
            }
        }
    }

    /// Drops subjects past retention and, when the store is at its cap, the
    /// least recently seen ~1/16 of them.
    pub fn evict(&self, now: Millis) {
        let _one_at_a_time = self.sweeping.lock().unwrap_or_else(PoisonError::into_inner);
        let cap = self.limits.max_subjects;
        if self.len() < cap {
            return; // another thread just swept
        }
        let mut times: Vec<Millis> = self.map.iter().map(|e| e.value().touched()).collect();
        let excess = times.len().saturating_sub(cap);
        let n = (excess + cap / 16).max(1).min(times.len());
        let forget = now.saturating_sub(self.limits.retention);
        // The n-th oldest touch time; of the subjects touched exactly then,
        // only as many go as needed (many subjects can share a millisecond).
        let (threshold, mut ties) = match n.checked_sub(1) {
            Some(i) if i < times.len() => {
                let (_, t, _) = times.select_nth_unstable(i);
                let t = *t;
                let below = times.iter().filter(|x| **x < t).count();
                (t, n.saturating_sub(below))
            }
            _ => (Millis::MIN, 0),
        };
        let mut removed = 0usize;
        self.map.retain(|_, e| {
            let t = e.touched();
            let keep = if t < forget || t < threshold {
                false
            } else if t == threshold && ties > 0 {
                ties -= 1;
                false
            } else {
                true
            };
            if !keep {
                removed += 1;
            }
            keep
        });
        self.len
            .fetch_sub(removed.min(self.len()), Ordering::Relaxed);
        self.evicted.fetch_add(
            u64::try_from(removed).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// What one subject costs besides its history's vectors: its entry
    /// behind an `Arc`, and its slot in the map (key and pointer, a control
    /// byte, with the table at most half empty).
    pub const ENTRY_BYTES: usize = size_of::<Entry>()
        + 2 * size_of::<usize>()
        + 2 * (size_of::<SubjectKey>() + size_of::<Arc<Entry>>() + 1);

    /// The bytes the subjects take, an estimate from sizes and capacities
    /// (see [`SubjectHistory::heap_bytes`]). Locks each subject in turn.
    pub fn bytes(&self) -> usize {
        self.map
            .iter()
            .map(|e| Self::ENTRY_BYTES + e.value().lock().heap_bytes())
            .sum()
    }

    /// The most [`LocalStore::bytes`] can be: `max_subjects` subjects, each
    /// at every cap of [`Limits`].
    pub fn max_bytes(&self) -> usize {
        self.limits
            .max_subjects
            .saturating_mul(Self::ENTRY_BYTES + SubjectHistory::max_heap_bytes(&self.limits))
    }

    /// Every subject's key and history (a copy), for tests and dumps.
    pub fn snapshot_all(&self) -> Vec<(SubjectKey, SubjectHistory)> {
        self.map
            .iter()
            .map(|e| (*e.key(), e.value().lock().clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_the_cap_and_evicts_the_least_recently_seen() {
        let store = LocalStore::new(Limits {
            max_subjects: 1000,
            ..Limits::default()
        });
        // A subject seen at every step stays.
        for i in 0..20_000u128 {
            let now = i64::try_from(i).unwrap();
            store.update(SubjectKey(i + 1_000_000), now, |h| h.last_seen = now);
            store.update(SubjectKey(7), now, |h| h.last_seen = now);
            assert!(store.len() <= 1000, "{} at {i}", store.len());
        }
        assert!(store.get(SubjectKey(7), 20_000).is_some());
        assert!(store.get(SubjectKey(1_000_000), 20_000).is_none());
        assert!(store.evicted() >= 19_000);
    }

    #[test]
    fn subjects_seen_in_the_same_millisecond_are_not_all_evicted() {
        let store = LocalStore::new(Limits {
            max_subjects: 1000,
            ..Limits::default()
        });
        for i in 0..5000u128 {
            store.update(SubjectKey(i), 42, |_| ());
            assert!(store.len() <= 1000);
        }
        assert!(store.len() > 900, "{}", store.len());
    }
}
