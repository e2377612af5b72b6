#![allow(missing_docs)] // criterion_group! generates undocumented items
#![expect(
    clippy::expect_used,
    reason = "a bench with bad fixtures should stop at once"
)]
//! `stepup replay` throughput over the example policies: decision-log lines
//! (request, recorded decision, time) parsed and decided, with the private
//! decision cache off (the default) and on, and against a baseline set.
//! Criterion reports lines per second. Run: `cargo bench --bench replay`.
//! With `REPLAY_LOG=FILE` it writes the log (`REPLAY_LINES` lines, default
//! 200,000) instead, for timing the binary: `hyperfine 'stepup replay
//! --policies policies --requests FILE'`.

use std::hint::black_box;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use stepup::PolicySet;

use stepup::internal::response;
use stepup::internal::{Baseline, ReplayOptions, replay};
use stepup::proto::v1::DecideRequest;

const LINES: usize = 20_000;

/// A deterministic pseudo-random sequence (no dependency, same log every
/// run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from((self.0 >> 33) % n as u64).unwrap_or(0)
    }

    fn pick<T: Copy + Default>(&mut self, items: &[T]) -> T {
        items
            .get(self.next(items.len()))
            .copied()
            .unwrap_or_default()
    }
}

/// A week-like mix of traffic in the decision log's line format: mostly
/// reads, some money movement, a few account and admin operations, from
/// 5,000 users on trusted and untrusted devices in a handful of countries.
fn log(policy: &Arc<PolicySet>, lines: usize) -> String {
    let mut rng = Lcg(7);
    let start: DateTime<Utc> = "2026-11-23T00:00:00Z".parse().expect("valid time");
    let actions = [
        "orders.list",
        "orders.list",
        "orders.list",
        "profile.view",
        "payments.refund",
        "payments.transfer",
        "account.password.change",
        "account.mfa.add",
        "apikeys.create",
        "iam.role.request",
        "environments.delete",
        "database.migrate",
    ];
    let countries = ["DE", "DE", "DE", "FR", "FR", "US", "GB", "KP"];
    let sessions = [
        ("urn:stepup:aal1", vec!["pwd"]),
        ("urn:stepup:aal2", vec!["pwd", "otp"]),
        ("urn:stepup:aal3", vec!["hwk"]),
    ];
    let mut out = String::with_capacity(lines * 1300);
    for i in 0..lines {
        let now = start + Duration::seconds(i64::try_from(i).unwrap_or(0) * 30);
        let (acr, amr) = sessions
            .get(rng.next(sessions.len()))
            .expect("index in range");
        let auth = now - Duration::seconds(rng.pick(&[30, 90, 400, 1200, 3600]));
        let amount = rng.pick(&[10, 50, 200, 900, 1500, 5000, 20000]);
        let request: DecideRequest = serde_json::from_value(json!({
            "action": rng.pick(&actions),
            "subject": { "id": format!("user-{}", rng.next(5000)), "tenant": "acme", "roles": ["support"],
                         "attributes": { "usual_countries": ["DE", "FR"], "timezone": "Europe/Berlin" } },
            "session": { "id": format!("s-{}", rng.next(1_000_000)), "acr": acr, "amr": amr,
                         "authTime": auth.to_rfc3339() },
            "device": { "id": format!("d-{}", rng.next(10_000)), "trusted": rng.next(5) > 0, "platform": "web" },
            "network": { "ip": format!("203.0.113.{}", rng.next(256)), "country": rng.pick(&countries), "asn": 3320 },
            "resource": { "type": "x", "id": format!("r-{i}"),
                          "attributes": { "amount": amount, "currency": "EUR",
                                          "role": rng.pick(&["admin", "viewer"]),
                                          "environment": rng.pick(&["production", "staging"]) } },
            "attributes": { "fraud_score": f64::from(u32::try_from(rng.next(100)).unwrap_or(0)) / 100.0 }
        }))
        .expect("bench request is valid");
        let decision =
            stepup::internal::decide_with(Arc::clone(policy), None, &request, now, false);
        let line = json!({
            "time": now.to_rfc3339(),
            "source": "decide",
            "latency_us": 7.2,
            "cache_hit": false,
            "request": request,
            "decision": response(&decision),
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (policy, _) = PolicySet::load(&dir).expect("example policies are valid");
    let policy = Arc::new(policy);
    // `REPLAY_LOG=FILE REPLAY_LINES=200000 cargo bench --bench replay`
    // writes the log instead, to time the binary on it (`hyperfine`).
    if let Ok(path) = std::env::var("REPLAY_LOG") {
        let lines = std::env::var("REPLAY_LINES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(200_000);
        std::fs::write(&path, log(&policy, lines)).expect("log written");
        return;
    }
    let input = log(&policy, LINES);
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(LINES as u64));
    group.sample_size(10);
    for (name, cache) in [("recorded, cache off", 0), ("recorded, cache on", 100_000)] {
        let options = ReplayOptions {
            examples: 3,
            now: Utc::now(),
            cache,
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let report = replay(
                    Cursor::new(input.as_bytes()),
                    "bench",
                    &policy,
                    &Baseline::Recorded,
                    &options,
                )
                .expect("bench log replays");
                black_box(report.requests)
            });
        });
    }
    let options = ReplayOptions {
        examples: 3,
        now: Utc::now(),
        cache: 0,
    };
    let baseline = Baseline::Set(Arc::clone(&policy));
    group.bench_function("baseline set (two decisions a line), cache off", |b| {
        b.iter(|| {
            let report = replay(
                Cursor::new(input.as_bytes()),
                "bench",
                &policy,
                &baseline,
                &options,
            )
            .expect("bench log replays");
            black_box(report.requests)
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
