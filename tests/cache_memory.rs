#![allow(clippy::unwrap_used, clippy::panic)] // test code: a failed unwrap is a failed test
//! The decision cache's bound in bytes holds the memory its entries really
//! take: every allocation of this test binary is counted.

use std::alloc::System;
use std::sync::Arc;

use chrono::Utc;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use stepup::internal::{DecisionCache, decide_with};
use stepup::proto::v1::{DecideRequest, Subject};
use stepup::{CacheConfig, PolicySet};

/// The system allocator, counting.
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn an_entry_weighs_at_least_the_memory_it_takes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (policy, _) = PolicySet::load(&dir).unwrap_or_else(|r| panic!("{r}"));
    let policy = Arc::new(policy);
    let cache = DecisionCache::new(CacheConfig {
        capacity: 1_000_000,
        max_bytes: 1 << 30,
        ..CacheConfig::default()
    })
    .unwrap();
    let now = Utc::now();
    let request = |i: usize| DecideRequest {
        action: format!("payments.refund.{i:06}.{}", "x".repeat(100)),
        subject: Some(Subject {
            id: format!("user-{i}"),
            roles: vec!["support".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    // The cache's fixed structures, and the first of each lazily made.
    for i in 0..100 {
        decide_with(Arc::clone(&policy), Some(&cache), &request(i), now, false);
    }
    cache.settle();
    let (entries, weight) = (cache.len(), cache.weight());
    let region = Region::new(ALLOCATOR);
    const N: usize = 20_000;
    for i in 100..100 + N {
        decide_with(Arc::clone(&policy), Some(&cache), &request(i), now, false);
    }
    cache.settle();
    let change = region.change();
    let live = change.bytes_allocated as f64 - change.bytes_deallocated as f64;
    let taken = live / (cache.len() - entries) as f64;
    let weighed = (cache.weight() - weight) as f64 / (cache.len() - entries) as f64;
    assert_eq!(cache.len() - entries, N as u64);
    assert!(
        weighed >= taken,
        "an entry weighs {weighed:.0} bytes but takes {taken:.0}"
    );
    assert!(
        weighed <= taken * 1.5,
        "an entry weighs {weighed:.0} bytes, far above the {taken:.0} it takes"
    );
}
