//! Keyed hashes of identifiers: subjects, devices and sessions are
//! remembered (and sent to a shared backend) only as these, never in clear.
//!
//! SipHash-1-3 with a 128-bit output: a keyed PRF built for short inputs
//! (identifiers are tens of bytes, where keyed BLAKE3 is slower below its
//! 1 KiB chunk size), small, free of platform-specific code and already in
//! the dependency tree. Without the
//! key, a hash cannot be linked back to an identifier by guessing ids.

use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};

/// The keyed hash of a subject (tenant and id): 128 bits, so distinct
/// subjects never collide in practice, even across a large shared store.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct SubjectKey(pub u128);

impl SubjectKey {
    /// Lowercase hex, 32 digits: a stable name for the subject in a shared
    /// store (e.g. a Redis key suffix).
    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

/// The keyed hash of a device or session: 64 bits, compared only within
/// one subject's history, where a handful of values never collide.
pub type ItemKey = u64;

/// What an identifier is, mixed into its hash so that a device id and a
/// session id with the same text hash differently.
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
enum Domain {
    Subject = b'S',
    Device = b'D',
    Session = b's',
}

/// Hashes identifiers with one secret key.
#[derive(Clone)]
pub struct Keyer {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for Keyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyer(..)")
    }
}

impl Keyer {
    /// A keyer whose key is derived from `secret` (SHA-256 of it): replicas
    /// sharing a backend must share the secret.
    pub fn from_secret(secret: &str) -> Self {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(secret.as_bytes());
        let mut words = digest.chunks_exact(8).map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        });
        Self {
            k0: words.next().unwrap_or_default(),
            k1: words.next().unwrap_or_default(),
        }
    }

    /// A keyer with a random key (hashes are then meaningful only to this
    /// process).
    pub fn random() -> Self {
        let a = uuid::Uuid::new_v4().as_u64_pair();
        Self { k0: a.0, k1: a.1 }
    }

    fn hasher(&self, domain: Domain) -> SipHasher13 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u8(domain as u8);
        h
    }

    /// The key of subject `id` in `tenant`.
    pub fn subject(&self, tenant: &str, id: &str) -> SubjectKey {
        let mut h = self.hasher(Domain::Subject);
        // Length-prefixed: ("ab", "c") and ("a", "bc") differ.
        h.write_usize(tenant.len());
        h.write(tenant.as_bytes());
        h.write(id.as_bytes());
        SubjectKey(h.finish128().as_u128())
    }

    fn item(&self, domain: Domain, id: &str) -> ItemKey {
        let mut h = self.hasher(domain);
        h.write(id.as_bytes());
        h.finish128().h1
    }

    /// The key of a device id.
    pub fn device(&self, id: &str) -> ItemKey {
        self.item(Domain::Device, id)
    }

    /// The key of a session id.
    pub fn session(&self, id: &str) -> ItemKey {
        self.item(Domain::Session, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_domain_separated_and_stable() {
        let a = Keyer::from_secret("k");
        let b = Keyer::from_secret("k");
        let c = Keyer::from_secret("other");
        assert_eq!(a.subject("t", "alice"), b.subject("t", "alice"));
        assert_ne!(a.subject("t", "alice"), c.subject("t", "alice"));
        assert_ne!(a.subject("ta", "lice"), a.subject("t", "alice"));
        assert_ne!(a.device("x"), a.session("x"));
        assert_eq!(a.subject("", "a").to_hex().len(), 32);
        assert!(!format!("{a:?}").contains(&a.k0.to_string()));
    }
}
