//! The cache's two bounds: entries and bytes.

use super::*;

fn evaluated() -> Arc<Evaluated> {
    Arc::new(Evaluated {
        signals: Arc::from([]),
        risk: None,
        rules: Vec::new(),
        assessment: None,
    })
}

/// A cache per `config` after inserting `n` entries with `key_bytes`-byte
/// keys, its pending evictions done.
fn filled(config: CacheConfig, n: usize, key_bytes: usize) -> DecisionCache {
    let cache = DecisionCache::new(config).unwrap();
    for i in 0..n {
        let mut key = vec![0u8; key_bytes.max(8)];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        cache.insert(key.into(), evaluated());
    }
    cache.settle();
    cache
}

#[test]
fn large_keys_are_bounded_by_bytes() {
    let config = CacheConfig {
        capacity: 10_000,
        max_bytes: 1 << 20,
        ..CacheConfig::default()
    };
    // 4,000 keys of 4 KiB: 16 MiB offered, 1 MiB kept.
    let cache = filled(config, 4_000, 4 << 10);
    assert!(cache.weight() <= 1 << 20, "{}", cache.weight());
    assert!(cache.len() <= 256, "{} entries", cache.len());
    assert!(
        cache.len() >= 128,
        "the bound is not far below its bytes: {}",
        cache.len()
    );
}

#[test]
fn small_keys_are_bounded_by_entries() {
    let config = CacheConfig {
        capacity: 1_000,
        max_bytes: 64 << 20,
        ..CacheConfig::default()
    };
    let cache = filled(config, 5_000, 32);
    assert!(cache.len() <= 1_000, "{} entries", cache.len());
    assert!(cache.len() >= 900, "{} entries", cache.len());
}

#[test]
fn an_entry_weighs_its_key_and_what_it_holds() {
    let small = entry_bytes(&[0; 16], &evaluated());
    let large = entry_bytes(&[0; 4096], &evaluated());
    assert_eq!(large - small, 4080);
    let failed = Arc::new(Evaluated {
        signals: Arc::from([crate::engine::CondResult::Error(Arc::from(
            "x".repeat(1000),
        ))]),
        risk: None,
        rules: Vec::new(),
        assessment: None,
    });
    assert!(entry_bytes(&[0; 16], &failed) >= small + 1000);
}

#[test]
fn zero_bytes_or_entries_turn_it_off() {
    for (capacity, max_bytes) in [(0, 1 << 20), (1_000, 0)] {
        let config = CacheConfig {
            capacity,
            max_bytes,
            ..CacheConfig::default()
        };
        assert!(DecisionCache::new(config).is_none());
    }
}
