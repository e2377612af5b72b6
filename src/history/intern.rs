//! Shared strings for what history keeps per event and per elevation
//! (action names, acr and amr values): each distinct value is one
//! allocation in a table bounded in names and in bytes, so a flood of
//! made-up names costs at most the table, never a string per event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashSet;

/// A set of shared strings, bounded in names and bytes.
#[derive(Debug)]
pub struct Interner {
    names: DashSet<Arc<str>, foldhash::fast::RandomState>,
    len: AtomicUsize,
    bytes: AtomicUsize,
    bounds: Bounds,
}

/// How much an [`Interner`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Most names.
    pub names: usize,
    /// Most bytes, counted by [`cost`].
    pub bytes: usize,
    /// Longest name taken.
    pub name_bytes: usize,
}

/// What one name of `len` bytes costs the table: its text, the `Arc`
/// counts, and its slot (a pointer and length, a control byte, with the
/// table at most half empty).
pub const fn cost(len: usize) -> usize {
    len + 2 * size_of::<usize>() + 2 * (size_of::<Arc<str>>() + 1)
}

impl Interner {
    /// An empty table within `bounds`.
    pub fn new(bounds: Bounds) -> Self {
        Self {
            names: DashSet::default(),
            len: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            bounds,
        }
    }

    /// The shared copy of `s`, added when there is room; `None` when `s` is
    /// longer than a name may be or the table is full.
    pub fn get(&self, s: &str) -> Option<Arc<str>> {
        if let Some(a) = self.names.get(s) {
            return Some(Arc::clone(a.key()));
        }
        if s.len() > self.bounds.name_bytes || !self.reserve(s.len()) {
            return None;
        }
        Some(self.add(s))
    }

    /// The shared copy of `s`, added whatever the bounds (for names the
    /// policy set itself holds, which are bounded by the set).
    pub fn get_always(&self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return Arc::clone(a.key());
        }
        self.len.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(cost(s.len()), Ordering::Relaxed);
        self.add(s)
    }

    /// Adds `s`, already paid for; when another thread added it meanwhile,
    /// gives the payment back and returns that copy.
    fn add(&self, s: &str) -> Arc<str> {
        let a: Arc<str> = Arc::from(s);
        if self.names.insert(Arc::clone(&a)) {
            return a;
        }
        self.release(s.len());
        self.names.get(s).map_or(a, |x| Arc::clone(x.key()))
    }

    /// Pays for a name of `len` bytes when both bounds allow it.
    fn reserve(&self, len: usize) -> bool {
        if self.len.fetch_add(1, Ordering::Relaxed) >= self.bounds.names {
            self.len.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let c = cost(len);
        if self.bytes.fetch_add(c, Ordering::Relaxed).saturating_add(c) > self.bounds.bytes {
            self.release(len);
            return false;
        }
        true
    }

    fn release(&self, len: usize) {
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(cost(len), Ordering::Relaxed);
    }

    /// Names held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Bytes held, counted by [`cost`].
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_names_and_stops_at_its_bounds() {
        let t = Interner::new(Bounds {
            names: 10,
            bytes: 10 * cost(4),
            name_bytes: 8,
        });
        let a = t.get("a.b").unwrap();
        assert!(Arc::ptr_eq(&a, &t.get("a.b").unwrap()));
        assert!(t.get("much.too.long").is_none());
        for i in 0..100 {
            t.get(&format!("n{i:03}"));
        }
        assert_eq!(t.len(), 10);
        assert!(t.bytes() <= 10 * cost(4), "{}", t.bytes());
        assert!(t.get("n099").is_none(), "full");
        assert!(t.get("n000").is_some(), "still there");
        let b = t.get_always("policy.name");
        assert!(Arc::ptr_eq(&b, &t.get("policy.name").unwrap()));
        assert_eq!(t.len(), 11);
    }
}
