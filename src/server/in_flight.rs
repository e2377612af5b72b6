//! [`InFlight`]: the bound on calls being decided at once. Past it a call
//! is answered `RESOURCE_EXHAUSTED` at once rather than queued: a client (or
//! Envoy) can retry elsewhere, and the sidecar's latency and memory stay
//! bounded under any load. One atomic add and one subtract per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Calls in flight, shared by every service it limits.
#[derive(Debug)]
pub struct InFlight {
    count: AtomicUsize,
    max: usize,
}

impl InFlight {
    /// A limit of `max` calls at once (0 admits none).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            count: AtomicUsize::new(0),
            max,
        })
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A permit for one call, held until the call is answered; `None` when
    /// `max` calls are already in flight.
    pub fn try_enter(self: &Arc<Self>) -> Option<Permit> {
        // Relaxed: the count orders nothing else; a call admitted or shed
        // at the edge of the limit is as good as the other.
        let before = self.count.fetch_add(1, Ordering::Relaxed);
        if before >= self.max {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Permit(Arc::clone(self)))
    }
}

/// One admitted call; dropping it lets another in.
#[derive(Debug)]
pub struct Permit(Arc<InFlight>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_again_after_a_release() {
        let limit = InFlight::new(2);
        let a = limit.try_enter().unwrap();
        let b = limit.try_enter().unwrap();
        assert!(limit.try_enter().is_none());
        assert_eq!(limit.count.load(Ordering::Relaxed), 2);
        drop(a);
        let c = limit.try_enter().unwrap();
        assert!(limit.try_enter().is_none());
        drop((b, c));
        assert_eq!(limit.count.load(Ordering::Relaxed), 0);
        assert!(InFlight::new(0).try_enter().is_none());
    }
}
