//! The Redis [`Backend`]: replicas share each subject's history in Redis, so
//! a device made known through one sidecar is known to all of them.
//!
//! # Connections
//!
//! One [`redis::aio::ConnectionManager`], not a pool (`deadpool-redis`): it
//! is a single multiplexed connection that pipelines every caller's commands
//! and reconnects by itself after an outage. Nothing here needs a connection
//! to itself (no `WATCH`, no blocking commands), so a pool would only add
//! sockets. It connects lazily: a sidecar starts while Redis is down.
//!
//! # Storage, and concurrent updates
//!
//! Key `stepup:history:<subject hex>` is a hash with `h`, the subject's
//! [`SubjectHistory`] as JSON, and `v`, a version incremented on every
//! write; the key expires after the retention (`[history] retention`) since
//! its last update. Updates are applied by compare-and-set: read `v` and `h`,
//! apply the updates with [`SubjectHistory::observe`] /
//! [`SubjectHistory::step_up`] (the same code as the local store), then a Lua
//! script writes only if `v` is unchanged; when another replica wrote in
//! between, read and apply again (a few tries). So two replicas' concurrent
//! updates are both kept, and the merge logic lives in one place (Rust)
//! rather than being duplicated in Lua.
//!
//! # Never in the way of a decision
//!
//! [`Backend::publish`] queues into a bounded channel; a background task
//! drains it in batches (one pipelined read, one pipelined write per round
//! for the whole batch). A full queue drops the update
//! (`stepup_history_publish_dropped_total`); a batch Redis could not take is
//! counted in `stepup_history_publish_failures_total`. Errors are logged at
//! most every [`WARN_EVERY`]. Fetch errors are the caller's to count (the
//! decision goes ahead on local history).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::config::RedisConfig;
use super::{Backend, BackendError, BoxFuture, Limits, SubjectHistory, SubjectKey, Update};

/// Updates waiting for Redis; past this, updates are dropped (and counted).
pub const QUEUE: usize = 10_000;
/// Most updates written per round trip.
const BATCH: usize = 256;
/// Compare-and-set attempts per subject per batch.
const TRIES: usize = 5;
/// At most one warning per this interval.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Writes `ARGV[2]` as the history when the version is still `ARGV[1]`
/// (`0`: no key), bumps the version and sets the expiry (`ARGV[3]`, ms).
const CAS: &str = r"
local v = redis.call('HGET', KEYS[1], 'v')
if (v or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', tostring(tonumber(ARGV[1]) + 1), 'h', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// The Redis key of `subject`.
pub fn key(subject: SubjectKey) -> String {
    format!("stepup:history:{}", subject.to_hex())
}

/// Why the backend cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// The connection manager could not be set up.
    #[error("cannot set up the Redis connection: {0}")]
    Connect(String),
}

#[derive(Debug, Default)]
struct Counters {
    dropped: AtomicU64,
    failed: AtomicU64,
    last_warn: AtomicI64,
}

impl Counters {
    /// Whether a warning may be logged now (at most one per [`WARN_EVERY`]).
    fn may_warn(&self) -> bool {
        let now = chrono::Utc::now().timestamp_millis();
        let every = i64::try_from(WARN_EVERY.as_millis()).unwrap_or(i64::MAX);
        let last = self.last_warn.load(Ordering::Relaxed);
        now.saturating_sub(last) >= every
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Subject history shared through Redis.
pub struct RedisBackend {
    conn: ConnectionManager,
    queue: mpsc::Sender<Update>,
    counters: Arc<Counters>,
    /// Tells the writer to write what is queued and stop (at shutdown).
    stop: Arc<tokio::sync::Notify>,
    writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend").finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Sets up the connection (lazily: Redis may be down) and starts the
    /// writer task on the current Tokio runtime (an error outside one).
    pub fn start(config: &RedisConfig, limits: Limits) -> Result<Self, StartError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| StartError::Connect(e.to_string()))?;
        let client = redis::Client::open(config.url.0.as_str())
            .map_err(|e| StartError::Url(e.to_string()))?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| StartError::Connect(e.to_string()))?;
        let (queue, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(tokio::sync::Notify::new());
        let writer = runtime.spawn(drain(
            conn.clone(),
            rx,
            limits,
            Arc::clone(&counters),
            Arc::clone(&stop),
        ));
        Ok(Self {
            conn,
            queue,
            counters,
            stop,
            writer: std::sync::Mutex::new(Some(writer)),
        })
    }

    /// Updates dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Updates Redis did not take (errors).
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn fetch(
        &self,
        subject: SubjectKey,
    ) -> BoxFuture<'_, Result<Option<SubjectHistory>, BackendError>> {
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let json: Option<String> = redis::cmd("HGET")
                .arg(key(subject))
                .arg("h")
                .query_async(&mut conn)
                .await
                .map_err(|e| BackendError::Unavailable(e.to_string()))?;
            json.map(|j| serde_json::from_str(&j))
                .transpose()
                .map_err(|e| BackendError::Corrupt(e.to_string()))
        })
    }

    fn publish(&self, update: Update) {
        if self.queue.try_send(update).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            if self.counters.may_warn() {
                tracing::warn!(
                    dropped = self.dropped(),
                    "history updates dropped: the Redis queue is full"
                );
            }
        }
    }

    fn flush(&self, deadline: Duration) -> BoxFuture<'_, ()> {
        // A `notify_one` permit is kept if the writer is busy writing.
        self.stop.notify_one();
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        Box::pin(async move {
            let Some(writer) = writer else { return };
            if tokio::time::timeout(deadline, writer).await.is_err() {
                tracing::warn!(
                    "history updates still queued for Redis at shutdown were not all written within {deadline:?}"
                );
            }
        })
    }

    fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP stepup_history_publish_dropped_total History updates dropped because the shared-backend queue was full.\n\
             # TYPE stepup_history_publish_dropped_total counter\n\
             stepup_history_publish_dropped_total {}\n\
             # HELP stepup_history_publish_failures_total History updates the shared backend did not take (errors).\n\
             # TYPE stepup_history_publish_failures_total counter\n\
             stepup_history_publish_failures_total {}",
            self.dropped(),
            self.failed()
        );
    }
}

/// The writer: batches of queued updates, grouped by subject, applied by
/// compare-and-set until the queue closes or `stop` is notified; then what
/// is still queued is written and the writer ends.
async fn drain(
    mut conn: ConnectionManager,
    mut rx: mpsc::Receiver<Update>,
    limits: Limits,
    counters: Arc<Counters>,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // `recv_many` is cancel safe: nothing received is lost to the stop.
        let last = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                false
            }
            () = stop.notified() => {
                rx.close();
                while let Ok(u) = rx.try_recv() {
                    batch.push(u);
                }
                true
            }
        };
        apply(&mut conn, &mut batch, &limits, &counters).await;
        if last {
            return;
        }
    }
}

/// Writes one batch, counting what could not be written.
async fn apply(
    conn: &mut ConnectionManager,
    batch: &mut Vec<Update>,
    limits: &Limits,
    counters: &Counters,
) {
    let mut by_subject: HashMap<SubjectKey, Vec<Update>> = HashMap::new();
    for u in batch.drain(..) {
        by_subject.entry(u.subject()).or_default().push(u);
    }
    let written = write(conn, &mut by_subject, limits).await;
    // What is left was not written.
    let lost: u64 = by_subject
        .values()
        .map(|u| u64::try_from(u.len()).unwrap_or(u64::MAX))
        .sum();
    counters.failed.fetch_add(lost, Ordering::Relaxed);
    match written {
        Ok(()) if lost == 0 => {}
        Ok(()) => {
            if counters.may_warn() {
                tracing::warn!(
                    updates = lost,
                    "history updates not written: contention on their Redis keys"
                );
            }
        }
        Err(e) => {
            if counters.may_warn() {
                tracing::warn!(error = %e, updates = lost, "history updates not written to Redis");
            }
            // Let Redis come back rather than spin on a dead connection.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Applies `pending` (updates per subject), removing each subject once
/// written; what is left was given up after [`TRIES`] lost races or an error.
async fn write(
    conn: &mut ConnectionManager,
    pending: &mut HashMap<SubjectKey, Vec<Update>>,
    limits: &Limits,
) -> redis::RedisResult<()> {
    for _ in 0..TRIES {
        let subjects: Vec<SubjectKey> = pending.keys().copied().collect();
        let mut read = redis::pipe();
        for s in &subjects {
            read.cmd("HMGET").arg(key(*s)).arg("v").arg("h");
        }
        let current: Vec<(Option<u64>, Option<String>)> = read.query_async(conn).await?;
        let mut cas = redis::pipe();
        for (s, (v, json)) in subjects.iter().zip(current) {
            // Unreadable (or another version's) data is replaced, not kept
            // forever: history is a hint, not a record.
            let mut h: SubjectHistory = json
                .and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default();
            for u in pending.get(s).into_iter().flatten() {
                h.apply(u, limits);
            }
            let json = serde_json::to_string(&h).map_err(|e| {
                redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "cannot encode history",
                    e.to_string(),
                ))
            })?;
            cas.cmd("EVAL")
                .arg(CAS)
                .arg(1)
                .arg(key(*s))
                .arg(v.unwrap_or(0))
                .arg(json)
                .arg(limits.retention.max(1));
        }
        let written: Vec<i64> = cas.query_async(conn).await?;
        for (s, ok) in subjects.iter().zip(written) {
            if ok == 1 {
                pending.remove(s);
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Keyer;

    #[test]
    fn keys_name_only_the_keyed_hash() {
        let subject = Keyer::from_secret("k").subject("acme", "alice@example.com");
        let k = key(subject);
        assert_eq!(k, format!("stepup:history:{}", subject.to_hex()));
        assert_eq!(k.len(), "stepup:history:".len() + 32);
        assert!(!k.contains("alice"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_and_counts_without_blocking() {
        // Nothing listens there; on one thread the writer cannot run while
        // the loop publishes, so exactly the overflow is dropped.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = RedisConfig {
            url: crate::history::config::Secret(format!("redis://127.0.0.1:{port}/")),
            timeout: Duration::from_millis(100),
        };
        let backend = RedisBackend::start(&config, Limits::default()).unwrap();
        let keyer = Keyer::from_secret("k");
        let report = crate::history::StepUpReport {
            subject: keyer.subject("", "u"),
            session: None,
            device: None,
            acr: None,
            amr: Vec::new(),
            auth_time: 0,
            at: 0,
            success: false,
        };
        for _ in 0..QUEUE + 7 {
            backend.publish(Update::SteppedUp(report.clone()));
        }
        assert_eq!(backend.dropped(), 7);
        let mut metrics = String::new();
        backend.render_metrics(&mut metrics);
        assert!(metrics.contains("\nstepup_history_publish_dropped_total 7\n"));
        assert!(backend.fetch(report.subject).await.is_err());
    }

    #[test]
    fn outside_a_runtime_is_an_error_not_a_panic() {
        let config = RedisConfig {
            url: crate::history::config::Secret("redis://127.0.0.1:1/".to_owned()),
            timeout: Duration::from_millis(100),
        };
        assert!(matches!(
            RedisBackend::start(&config, Limits::default()),
            Err(StartError::Connect(_))
        ));
    }
}
