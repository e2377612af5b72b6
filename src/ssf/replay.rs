//! [`Seen`]: the event ids (`iss`, `jti`) received within the replay
//! window, bounded in time and number. An id is kept for the whole window
//! from its receipt, or from its `iat` when that lies ahead of the clock
//! (within the skew): events issued before the window are refused by their
//! `iat`, so an id that left the memory can no longer be replayed. When the memory is
//! full, new events are refused until old ids expire, rather than
//! forgetting an id early: an id forgotten inside the window could be
//! replayed.

use std::collections::{HashSet, VecDeque};
use std::hash::Hasher;
use std::sync::{Mutex, PoisonError};

use siphasher::sip128::{Hasher128, SipHasher13};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Why an event id is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Seen within the window.
    Replayed,
    /// The memory is full of ids still inside the window.
    Full,
}

#[derive(Debug, Default)]
struct State {
    ids: HashSet<u128>,
    /// (expiry, id), in expiry order.
    order: VecDeque<(Millis, u128)>,
}

/// Event ids seen within the window.
#[derive(Debug)]
pub struct Seen {
    state: Mutex<State>,
    window: Millis,
    max: usize,
    k0: u64,
    k1: u64,
}

impl Seen {
    /// A memory of at most `max` ids for `window` ms each.
    pub fn new(window: Millis, max: usize) -> Self {
        // Keyed with a random key: ids are chosen by transmitters, and the
        // set's hash must not be steerable into collisions.
        let (k0, k1) = uuid::Uuid::new_v4().as_u64_pair();
        Self {
            state: Mutex::new(State::default()),
            window,
            max,
            k0,
            k1,
        }
    }

    fn key(&self, issuer: &str, jti: &str) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_usize(issuer.len());
        h.write(issuer.as_bytes());
        h.write(jti.as_bytes());
        h.finish128().as_u128()
    }

    /// Records `jti` of `issuer`, issued at `iat`, at `now`; refused when
    /// seen within the window, or when the memory is full. The id is kept
    /// until `window` after the later of `iat` and `now`: a SET dated ahead
    /// of the clock is accepted until `iat - window`, so it must be
    /// remembered until `iat + window`.
    pub fn admit(&self, issuer: &str, jti: &str, iat: Millis, now: Millis) -> Result<(), Refusal> {
        let key = self.key(issuer, jti);
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(&(expiry, id)) = s.order.front() {
            if expiry > now {
                break;
            }
            s.order.pop_front();
            s.ids.remove(&id);
        }
        if s.ids.contains(&key) {
            return Err(Refusal::Replayed);
        }
        if s.ids.len() >= self.max {
            return Err(Refusal::Full);
        }
        s.ids.insert(key);
        let expiry = iat.max(now).saturating_add(self.window);
        // Kept in expiry order: the front is always the first to expire.
        let at = s.order.partition_point(|&(e, _)| e <= expiry);
        s.order.insert(at, (expiry, key));
        Ok(())
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ids
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_replays_within_the_window_and_bounds_memory() {
        let seen = Seen::new(1000, 3);
        assert_eq!(seen.admit("i", "a", 0, 0), Ok(()));
        assert_eq!(seen.admit("i", "a", 999, 999), Err(Refusal::Replayed));
        // Another issuer's id is another id.
        assert_eq!(seen.admit("j", "a", 10, 10), Ok(()));
        assert_eq!(seen.admit("i", "b", 20, 20), Ok(()));
        assert_eq!(seen.admit("i", "c", 30, 30), Err(Refusal::Full));
        assert_eq!(seen.len(), 3);
        // `a` leaves the window: room again, and `a` is new again (its
        // `iat` is checked against the window elsewhere).
        assert_eq!(seen.admit("i", "c", 1000, 1000), Ok(()));
        assert_eq!(seen.admit("i", "a", 1001, 1001), Err(Refusal::Full));
        assert_eq!(seen.admit("i", "a", 1010, 1010), Ok(()));
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.admit("i", "b", 1015, 1015), Err(Refusal::Replayed));
        assert_eq!(seen.admit("i", "b", 1020, 1020), Ok(()));
    }

    #[test]
    fn an_id_issued_ahead_of_the_clock_is_kept_a_window_after_its_iat() {
        let seen = Seen::new(1000, 10);
        // Issued 300 ms ahead (within the skew): accepted until `iat -
        // window`, so remembered until `iat + window`, not `now + window`.
        assert_eq!(seen.admit("i", "ahead", 300, 0), Ok(()));
        assert_eq!(seen.admit("i", "now", 100, 100), Ok(()));
        assert_eq!(seen.admit("i", "ahead", 1200, 1200), Err(Refusal::Replayed));
        // `now` expired at 1100 although it arrived after `ahead`.
        assert_eq!(seen.admit("i", "now", 1150, 1150), Ok(()));
        assert_eq!(seen.admit("i", "ahead", 1300, 1300), Ok(()));
    }
}
