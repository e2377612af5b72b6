//! A latency histogram of fixed buckets kept as atomics: an observation is a
//! bucket found by comparison and three relaxed atomic adds.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A latency histogram with fixed buckets (`N` upper bounds, the `+Inf`
/// bucket being the count).
#[derive(Debug)]
pub(super) struct Histogram<const N: usize> {
    pub(super) buckets: [AtomicU64; N],
    pub(super) count: AtomicU64,
    pub(super) sum_nanos: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl<const N: usize> Histogram<N> {
    /// Counts `d` in the first bucket whose bound holds it: no allocation,
    /// three relaxed atomic adds.
    pub(super) fn observe(&self, bounds: &[f64; N], d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = bounds.iter().position(|b| secs <= *b)
            && let Some(b) = self.buckets.get(i)
        {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// `name_bucket`, `name_sum` and `name_count` lines, with `labels`
    /// (`key="value",`, ending in a comma, or empty) on every line.
    pub(super) fn render(&self, w: &mut String, name: &str, labels: &str, bounds: &[f64; N]) {
        let mut cumulative = 0;
        for (b, bound) in self.buckets.iter().zip(bounds) {
            cumulative += b.load(Ordering::Relaxed);
            let _ = writeln!(w, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(w, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let labels = labels.trim_end_matches(',');
        if labels.is_empty() {
            let _ = writeln!(w, "{name}_sum {sum}\n{name}_count {count}");
        } else {
            let _ = writeln!(
                w,
                "{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {count}"
            );
        }
    }
}
