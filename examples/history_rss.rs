//! Resident memory of the behavioural history under a flood: a million
//! decisions (by default) over the example policies with history on, each
//! from a random subject with a random action name, then the process's RSS.
//! Run: `cargo run --release --example history_rss [decisions [subjects]]`,
//! where `subjects` draws the subjects from a pool of that many (so each
//! keeps a run of events) instead of all at random.

use std::path::Path;

use chrono::{TimeZone, Utc};
use stepup::history::{Enabled, History, HistoryConfig};
use stepup::proto::v1::DecideRequest;
use stepup::{CacheConfig, PolicySet, Service};

/// The allocator of the `stepup` binary, so the numbers are the sidecar's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resident set size of this process, bytes (Linux).
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// xorshift64*: reproducible and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 1_000_000,
    };
    let pool: Option<u64> = std::env::args().nth(2).map(|a| a.parse()).transpose()?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (policy, _) = PolicySet::load(&dir).map_err(|r| r.to_string())?;
    let service =
        Service::new(policy, CacheConfig::default()).with_history(History::new(HistoryConfig {
            enabled: Enabled::On,
            ..HistoryConfig::default()
        }));
    let mut req: DecideRequest = serde_json::from_str(include_str!("refund.json"))?;
    let start = Utc
        .with_ymd_and_hms(2026, 11, 27, 10, 0, 0)
        .single()
        .ok_or("bad start time")?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let before = rss().unwrap_or(0);
    for i in 0..n {
        if let Some(s) = req.subject.as_mut() {
            let id = rng.next();
            s.id = format!("user-{:x}", pool.map_or(id, |p| id % p.max(1)));
        }
        req.action = format!("app.{:016x}", rng.next());
        let at = start + chrono::Duration::milliseconds(i64::try_from(i)?);
        let _ = service.decide(&req, at, false);
    }
    let after = rss().unwrap_or(0);
    println!(
        "history_rss: {n} decisions, subjects from {}, {} kept: RSS {} MiB before, {} MiB after (+{} MiB)",
        pool.map_or_else(|| "anywhere".to_owned(), |p| format!("a pool of {p}")),
        service.history().store().len(),
        before / (1 << 20),
        after / (1 << 20),
        after.saturating_sub(before) / (1 << 20)
    );
    Ok(())
}
