#![allow(missing_docs)] // criterion_group! generates undocumented items
#![expect(
    clippy::expect_used,
    reason = "a bench with bad fixtures should stop at once"
)]
//! What behavioural history costs: a decision with history off vs on, for
//! the example set without `behaviour.yaml` (nothing reads `history`: on
//! means every decision is recorded) and with it (the view is built, `count`
//! scans events); and the memory per tracked subject. Run: `cargo bench
//! --bench history`.

use std::hint::black_box;
use std::path::Path;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group};
use stepup::CacheConfig;
use stepup::PolicySet;
use stepup::Service;
use stepup::history::{Enabled, History, HistoryConfig, Limits};
use stepup::proto::v1::DecideRequest;

/// Distinct subjects the benches cycle through.
const SUBJECTS: usize = 1000;

fn requests() -> Vec<DecideRequest> {
    (0..SUBJECTS)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "action": "payments.refund",
                "subject": { "id": format!("user-{i}"), "tenant": "acme", "roles": ["support"],
                             "attributes": { "usual_countries": ["DE", "FR"], "timezone": "Europe/Berlin" } },
                "session": { "id": format!("s-{i}"), "acr": "urn:stepup:aal1", "amr": ["pwd"], "authTime": "2026-11-27T09:00:00Z" },
                "device": { "id": format!("d-{}", i % 7), "trusted": false, "platform": "web" },
                "network": { "ip": "203.0.113.7", "country": "DE", "asn": 3320,
                             "attributes": { "lat": 52.52, "lon": 13.405 } },
                "resource": { "type": "refund", "id": "r-42", "attributes": { "amount": 2500, "currency": "EUR" } },
                "attributes": { "fraud_score": 0.2 }
            }))
            .expect("bench request is valid")
        })
        .collect()
}

/// Copies `from` into `to` (recursively), leaving out `skip`.
fn copy_dir(from: &Path, to: &Path, skip: &str) {
    for entry in std::fs::read_dir(from).expect("policies dir") {
        let path = entry.expect("entry").path();
        let Some(name) = path.file_name() else {
            continue;
        };
        if name == skip {
            continue;
        }
        if path.is_dir() {
            std::fs::create_dir_all(to.join(name)).expect("mkdir");
            copy_dir(&path, &to.join(name), skip);
        } else {
            std::fs::copy(&path, to.join(name)).expect("copy policy");
        }
    }
}

/// The example set, with or without `behaviour.yaml` (the policies reading
/// `history`).
fn engine(reads_history: bool, enabled: Enabled, cache: u64) -> Service {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(
        &src,
        dir.path(),
        if reads_history { "" } else { "behaviour.yaml" },
    );
    let (policy, _) = PolicySet::load(dir.path()).expect("bench policies are valid");
    Service::new(
        policy,
        CacheConfig {
            capacity: cache,
            ..CacheConfig::default()
        },
    )
    .with_history(History::new(HistoryConfig {
        enabled,
        ..HistoryConfig::default()
    }))
}

fn bench(c: &mut Criterion) {
    let start = Utc
        .with_ymd_and_hms(2026, 11, 27, 10, 0, 0)
        .single()
        .expect("valid time");
    let reqs = requests();
    for (set, reads) in [("no_history_reads", false), ("reads_history", true)] {
        for (cache_name, cache) in [("cache_off", 0), ("cache_on", 100_000)] {
            let mut g = c.benchmark_group(format!("history/{set}/{cache_name}"));
            for (mode, enabled) in [("off", Enabled::Off), ("on", Enabled::On)] {
                let engine = engine(reads, enabled, cache);
                let mut i = 0usize;
                // The clock advances a second per decision: events age and
                // expire as in a steady stream.
                let mut tick = 0i64;
                g.bench_function(mode, |b| {
                    b.iter(|| {
                        i = (i + 1) % SUBJECTS;
                        tick += 1;
                        let now = start + chrono::Duration::seconds(tick / 10);
                        let req = reqs.get(i).expect("in range");
                        black_box(engine.decide(black_box(req), now, false))
                    })
                });
            }
            g.finish();
        }
    }
}

/// Resident set size of this process, bytes (Linux).
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes per tracked subject: 100,000 subjects, each seen once (one device,
/// one location, one event), then each seen 9 more times (two more devices,
/// ten events).
fn memory() {
    let n = 100_000;
    let policy_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (policy, _) = PolicySet::load(&policy_dir).expect("example policies are valid");
    let engine = Service::new(
        policy,
        CacheConfig {
            capacity: 0,
            ..CacheConfig::default()
        },
    )
    .with_history(History::new(HistoryConfig {
        enabled: Enabled::On,
        limits: Limits {
            max_subjects: n,
            ..Limits::default()
        },
        ..HistoryConfig::default()
    }));
    let now = Utc
        .with_ymd_and_hms(2026, 11, 27, 10, 0, 0)
        .single()
        .expect("valid time");
    let mut req = requests().into_iter().next().expect("one request");
    let before = rss().unwrap_or(0);
    for round in 0..10 {
        for i in 0..n {
            if let Some(s) = req.subject.as_mut() {
                s.id = format!("user-{i}");
            }
            if let Some(d) = req.device.as_mut() {
                d.id = format!("d-{}", round % 3);
            }
            let _ = engine.decide(&req, now + chrono::Duration::seconds(round), false);
        }
        if round == 0 || round == 9 {
            let after = rss().unwrap_or(0);
            println!(
                "history/memory: {} subjects after {} decisions each: {} bytes per subject (RSS delta {} MiB)",
                engine.history().store().len(),
                round + 1,
                after.saturating_sub(before) / u64::try_from(n).unwrap_or(1),
                after.saturating_sub(before) / (1024 * 1024)
            );
        }
    }
}

/// History on vs off measured in alternating batches (robust to a busy
/// machine: both modes see the same load): the median per-decision time of
/// 41 batches of 2,000 decisions each.
fn paired() {
    let start = Utc
        .with_ymd_and_hms(2026, 11, 27, 10, 0, 0)
        .single()
        .expect("valid time");
    let reqs = requests();
    for (set, reads) in [("no_history_reads", false), ("reads_history", true)] {
        for (cache_name, cache) in [("cache_off", 0), ("cache_on", 100_000)] {
            let engines = [
                engine(reads, Enabled::Off, cache),
                engine(reads, Enabled::On, cache),
            ];
            let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
            let mut tick = 0i64;
            for round in 0..42 {
                for (e, t) in engines.iter().zip(times.iter_mut()) {
                    let began = std::time::Instant::now();
                    for i in 0..2000 {
                        tick += 1;
                        let now = start + chrono::Duration::seconds(tick / 20);
                        let req = reqs.get(i % SUBJECTS).expect("in range");
                        black_box(e.decide(black_box(req), now, false));
                    }
                    if round > 0 {
                        t.push(began.elapsed().as_secs_f64() * 1e9 / 2000.0);
                    }
                }
            }
            let median = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v.get(v.len() / 2).copied().unwrap_or(0.0)
            };
            let [mut off, mut on] = times;
            let (off, on) = (median(&mut off), median(&mut on));
            println!(
                "history/paired/{set}/{cache_name}: off {off:.0} ns, on {on:.0} ns, on - off {:+.0} ns",
                on - off
            );
        }
    }
}

criterion_group!(benches, bench);

fn main() {
    memory();
    paired();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
