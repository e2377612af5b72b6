#![allow(missing_docs)] // criterion_group! generates undocumented items
#![expect(
    clippy::expect_used,
    reason = "a bench with bad fixtures should stop at once"
)]
//! Decision cost over the example policy set (`policies/`): the engine alone,
//! with the cache off, on a cache hit and on a miss, and the response
//! conversion the gRPC server adds. Run: `cargo bench --bench decide`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use stepup::CacheConfig;
use stepup::PolicySet;
use stepup::Service;
use stepup::internal::response;
use stepup::proto::v1::DecideRequest;

fn request(json: &str) -> DecideRequest {
    serde_json::from_str(json).expect("bench request is valid JSON")
}

/// A refund above the limit from an aal1 session on an untrusted device: a
/// CHALLENGE that evaluates every signal and three rules.
const REFUND: &str = include_str!("../examples/refund.json");

/// A plain read from a trusted device: ALLOW, only the catch-all deny rule
/// is a candidate.
const READ: &str = include_str!("read.json");

fn engine(cache: u64) -> Service {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (policy, _) = PolicySet::load(&dir).expect("example policies are valid");
    Service::new(
        policy,
        CacheConfig {
            capacity: cache,
            ..CacheConfig::default()
        },
    )
}

fn bench(c: &mut Criterion) {
    let now = Utc
        .with_ymd_and_hms(2026, 11, 27, 10, 0, 0)
        .single()
        .expect("valid time");
    let off = Arc::new(engine(0));
    let on = Arc::new(engine(100_000));
    for (name, json) in [("refund_challenge", REFUND), ("read_allow", READ)] {
        let req = request(json);
        let mut g = c.benchmark_group(format!("decide/{name}"));
        g.bench_function("cache_off", |b| {
            b.iter(|| black_box(off.decide(black_box(&req), now, false)))
        });
        // Warm the entry, then measure hits.
        let _ = on.decide(&req, now, false);
        g.bench_function("cache_hit", |b| {
            b.iter(|| {
                let d = on.decide(black_box(&req), now, false);
                debug_assert!(d.cache_hit);
                black_box(d)
            })
        });
        if name == "refund_challenge" {
            // Misses: every iteration a refund of a new amount (a new key):
            // the evaluation plus the key, the check of the calendar reads'
            // time zones, the insertion and, once full, moka's evictions.
            let mut req = req.clone();
            let mut amount = 1_000_000.0;
            g.bench_function("cache_miss", |b| {
                b.iter(|| {
                    amount += 1.0;
                    if let Some(v) = req
                        .resource
                        .as_mut()
                        .and_then(|r| r.attributes.get_mut("amount"))
                    {
                        *v = pbjson_types::Value::from(amount);
                    }
                    let d = on.decide(black_box(&req), now, false);
                    debug_assert!(!d.cache_hit);
                    black_box(d)
                })
            });
        }
        g.bench_function("cache_off+response", |b| {
            b.iter(|| {
                let d = off.decide(black_box(&req), now, false);
                black_box(response(&d))
            })
        });
        g.finish();
    }
}

/// The gRPC handler's work per decision with the decision log off and on
/// (to a file; the writer thread runs on the other core): decide, build the
/// response, and for the log, write the line and queue its bytes.
fn logging(c: &mut Criterion) {
    use stepup::{DecisionLog, DecisionLogConfig, Sink};
    let now = Utc
        .with_ymd_and_hms(2026, 11, 27, 10, 0, 0)
        .single()
        .expect("valid time");
    let dir = tempfile::tempdir().expect("temp dir");
    let plain = engine(0);
    let logged = engine(0);
    let log = DecisionLog::start(
        DecisionLogConfig::new(Sink::File {
            path: dir.path().join("decisions.jsonl"),
            max_bytes: 64 * 1024 * 1024,
            keep: 1,
        }),
        Arc::clone(logged.metrics()),
    )
    .expect("decision log starts");
    let logged = logged.with_decision_log(log);
    let req = request(REFUND);
    let mut g = c.benchmark_group("decide/refund_challenge");
    g.bench_function("handler_log_off", |b| {
        b.iter(|| {
            let r = req.clone();
            let d = plain.decide(black_box(&r), now, false);
            let response = response(&d);
            plain.log("decide", now, r, d);
            black_box(response)
        })
    });
    g.bench_function("handler_log_file", |b| {
        b.iter(|| {
            let r = req.clone();
            let d = logged.decide(black_box(&r), now, false);
            let response = response(&d);
            logged.log("decide", now, r, d);
            black_box(response)
        })
    });
    g.finish();
    let dropped = logged.metrics().log_dropped_total();
    logged.close();
    eprintln!("decision log: {dropped} entries dropped (queue full) during the bench");
}

criterion_group!(benches, bench, logging);
criterion_main!(benches);
