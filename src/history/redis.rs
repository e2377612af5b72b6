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
//! # Transport
//!
//! `redis://` is plaintext; `rediss://` is TLS (rustls with the ring
//! provider), checking the server's certificate against
//! [`RedisConfig::ca`] or, without one, the Mozilla roots, and presenting
//! [`RedisConfig::client_cert`] for mutual TLS when set. A password from
//! [`RedisConfig::password`] replaces the URL's.
//!
//! # Authenticated records
//!
//! Whoever can write to Redis must not be able to grant an elevation: each
//! record starts with its MAC, an HMAC-SHA256 over the Redis key and the
//! record's JSON in 64 hex digits, under a key derived from the history hash key (which every replica
//! shares, and Redis never sees). A record whose MAC does not verify
//! (edited, copied from another subject's key, or written without the key)
//! is dropped, never applied: a fetch reads it as no shared history, and the
//! next write replaces it. Each one is counted
//! (`stepup_history_records_rejected_total`) and warned about at most every
//! [`WARN_EVERY`]. The MAC proves where a record comes from, not that it is
//! the latest: someone with write access to Redis can still delete a record,
//! or put back an older one of the same subject.
//!
//! # Storage, and concurrent updates
//!
//! Key `stepup:history:<subject hex>` is a hash with `h`, the MAC then the
//! subject's [`SubjectHistory`] as JSON (one field, so that a read never
//! sees one without the other), and `v`, a version incremented on every
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

use hmac::{Hmac, Mac as _};
use redis::aio::ConnectionManager;
use sha2::Sha256;
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

/// Writes `ARGV[2]` as the (sealed) history when the version is still
/// `ARGV[1]` (`0`: no key), bumps the version and sets the expiry
/// (`ARGV[3]`, ms).
const CAS: &str = r"
local v = redis.call('HGET', KEYS[1], 'v')
if (v or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', tostring(tonumber(ARGV[1]) + 1), 'h', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// What the record MAC key is derived with from the history hash key (so
/// the MAC key differs from the identifier-hash key).
const MAC_KEY_LABEL: &[u8] = b"stepup history record MAC key v1";
/// A MAC in hex.
const TAG_LEN: usize = 64;
/// Prefixed to what a record's MAC covers (a version of the layout).
const MAC_LABEL: &[u8] = b"stepup history record v1\0";

/// Authenticates records: HMAC-SHA256 under a key derived from the history
/// hash key, over the Redis key and the record's bytes.
#[derive(Clone)]
pub struct Sealer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// An HMAC-SHA256 keyed with `key`.
#[expect(
    clippy::expect_used,
    reason = "HMAC takes keys of any length: new_from_slice never fails"
)]
fn hmac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key")
}

impl Sealer {
    /// A sealer whose key is derived from the history hash key `secret`.
    pub fn new(secret: &str) -> Self {
        let key = hmac(secret.as_bytes())
            .chain_update(MAC_KEY_LABEL)
            .finalize()
            .into_bytes();
        Self { mac: hmac(&key) }
    }

    fn keyed(&self, redis_key: &str, record: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(MAC_LABEL);
        mac.update(redis_key.as_bytes());
        mac.update(b"\0");
        mac.update(record);
        mac
    }

    /// The MAC of `record` stored under `redis_key`, in lowercase hex.
    pub fn seal(&self, redis_key: &str, record: &[u8]) -> String {
        use std::fmt::Write as _;
        let tag = self.keyed(redis_key, record).finalize().into_bytes();
        let mut hex = String::with_capacity(2 * tag.len());
        for b in tag {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }

    /// Whether `tag` is the MAC of `record` under `redis_key` (compared in
    /// constant time).
    pub fn verify(&self, redis_key: &str, record: &[u8], tag: &str) -> bool {
        let Some(tag) = unhex(tag) else {
            return false;
        };
        self.keyed(redis_key, record).verify_slice(&tag).is_ok()
    }

    /// What is stored for `record` at `redis_key`: its MAC, then the record.
    pub fn seal_record(&self, redis_key: &str, record: &str) -> String {
        let mut sealed = self.seal(redis_key, record.as_bytes());
        sealed.push_str(record);
        sealed
    }

    /// The record in `stored` at `redis_key` if its MAC verifies.
    pub fn open<'s>(&self, redis_key: &str, stored: &'s str) -> Option<&'s str> {
        let (tag, record) = stored.split_at_checked(TAG_LEN)?;
        self.verify(redis_key, record.as_bytes(), tag)
            .then_some(record)
    }
}

/// Lowercase or uppercase hex to bytes; `None` when it is not hex.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

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
    /// The TLS settings (CA, client certificate) are unusable.
    #[error("cannot set up TLS to Redis: {0}")]
    Tls(String),
}

#[derive(Debug)]
struct Counters {
    dropped: AtomicU64,
    failed: AtomicU64,
    /// Records whose MAC did not verify.
    rejected: AtomicU64,
    last_warn: AtomicI64,
    /// Rejections are warned about on their own clock: a write outage must
    /// not hide them.
    last_reject_warn: AtomicI64,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            last_warn: AtomicI64::new(i64::MIN),
            last_reject_warn: AtomicI64::new(i64::MIN),
        }
    }
}

/// Whether a warning may be logged now (at most one per [`WARN_EVERY`] on
/// the clock `last`).
fn may_warn(last: &AtomicI64) -> bool {
    let now = chrono::Utc::now().timestamp_millis();
    let every = i64::try_from(WARN_EVERY.as_millis()).unwrap_or(i64::MAX);
    let then = last.load(Ordering::Relaxed);
    now.saturating_sub(then) >= every
        && last
            .compare_exchange(then, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

impl Counters {
    /// Whether a warning may be logged now (at most one per [`WARN_EVERY`]).
    fn may_warn(&self) -> bool {
        may_warn(&self.last_warn)
    }

    /// Counts a record that failed verification at `key`, and warns (at
    /// most every [`WARN_EVERY`]).
    fn rejected(&self, key: &str) {
        let total = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        if may_warn(&self.last_reject_warn) {
            tracing::warn!(
                key,
                rejected = total,
                "a history record in Redis failed authentication (edited, moved from another key, or written without this history key): dropped, not applied"
            );
        }
    }
}

/// Subject history shared through Redis.
pub struct RedisBackend {
    conn: ConnectionManager,
    sealer: Sealer,
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
        for setting in &config.inline_secrets {
            tracing::warn!(
                "{setting} is written in the config file: anyone who can read the file (a ConfigMap) can read it; put it in a Secret, read from a `*_file` setting or a STEPUP_* environment variable"
            );
        }
        let client = client(config)?;
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
        let sealer = Sealer::new(&config.record_key.0);
        let writer = runtime.spawn(drain(
            Writer {
                conn: conn.clone(),
                limits,
                sealer: sealer.clone(),
                counters: Arc::clone(&counters),
            },
            rx,
            Arc::clone(&stop),
        ));
        Ok(Self {
            conn,
            sealer,
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

    /// Records read from Redis that failed authentication (dropped).
    pub fn rejected(&self) -> u64 {
        self.counters.rejected.load(Ordering::Relaxed)
    }
}

/// The client `config` describes: TLS for `rediss://` (ring provider, the
/// CA or the Mozilla roots, a client certificate when given), the password
/// in place of the URL's when given.
#[expect(
    deprecated,
    reason = "ring is the project's provider (no aws-lc-rs); rustls deprecates its constructor for lacking post-quantum key exchange"
)]
fn client(config: &RedisConfig) -> Result<redis::Client, StartError> {
    use redis::IntoConnectionInfo as _;
    let mut info = config
        .url
        .0
        .as_str()
        .into_connection_info()
        .map_err(|e| StartError::Url(e.to_string()))?;
    if let Some(password) = &config.password {
        let settings = info.redis_settings().clone().set_password(&password.0);
        info = info.set_redis_settings(settings);
    }
    if !matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        return redis::Client::open(info).map_err(|e| StartError::Url(e.to_string()));
    }
    // The redis crate builds its rustls config with the process default
    // provider: make it ring (a no-op when one is installed already).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certificates = redis::TlsCertificates {
        client_tls: config
            .client_cert
            .as_ref()
            .map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.0.as_bytes().to_vec(),
            }),
        root_cert: config.ca.clone(),
    };
    redis::Client::build_with_tls(info, certificates).map_err(|e| StartError::Tls(e.to_string()))
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
            let key = key(subject);
            let stored: Option<String> = redis::cmd("HGET")
                .arg(&key)
                .arg("h")
                .query_async(&mut conn)
                .await
                .map_err(|e| BackendError::Unavailable(e.to_string()))?;
            let Some(stored) = stored else {
                return Ok(None);
            };
            let Some(json) = self.sealer.open(&key, &stored) else {
                self.counters.rejected(&key);
                return Ok(None);
            };
            serde_json::from_str(json)
                .map(Some)
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
             stepup_history_publish_failures_total {}\n\
             # HELP stepup_history_records_rejected_total History records read from the shared backend that failed authentication (dropped, never applied).\n\
             # TYPE stepup_history_records_rejected_total counter\n\
             stepup_history_records_rejected_total {}",
            self.dropped(),
            self.failed(),
            self.rejected()
        );
    }
}

/// What the writer task writes with.
struct Writer {
    conn: ConnectionManager,
    limits: Limits,
    sealer: Sealer,
    counters: Arc<Counters>,
}

/// The writer: batches of queued updates, grouped by subject, applied by
/// compare-and-set until the queue closes or `stop` is notified; then what
/// is still queued is written and the writer ends.
async fn drain(mut w: Writer, mut rx: mpsc::Receiver<Update>, stop: Arc<tokio::sync::Notify>) {
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
        w.apply(&mut batch).await;
        if last {
            return;
        }
    }
}

impl Writer {
    /// Writes one batch, counting what could not be written.
    async fn apply(&mut self, batch: &mut Vec<Update>) {
        let mut by_subject: HashMap<SubjectKey, Vec<Update>> = HashMap::new();
        for u in batch.drain(..) {
            by_subject.entry(u.subject()).or_default().push(u);
        }
        let written = self.write(&mut by_subject).await;
        let counters = &self.counters;
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

    /// The history stored at `key`, if it is authentic; a record that is
    /// not (or cannot be read) is counted when it fails authentication and
    /// replaced by a fresh history: history is a hint, not a record.
    fn current(&self, key: &str, stored: Option<String>) -> SubjectHistory {
        let Some(stored) = stored else {
            return SubjectHistory::default();
        };
        let Some(json) = self.sealer.open(key, &stored) else {
            self.counters.rejected(key);
            return SubjectHistory::default();
        };
        serde_json::from_str(json).unwrap_or_default()
    }

    /// Applies `pending` (updates per subject), removing each subject once
    /// written; what is left was given up after [`TRIES`] lost races or an
    /// error.
    async fn write(
        &mut self,
        pending: &mut HashMap<SubjectKey, Vec<Update>>,
    ) -> redis::RedisResult<()> {
        for _ in 0..TRIES {
            let subjects: Vec<SubjectKey> = pending.keys().copied().collect();
            let mut read = redis::pipe();
            for s in &subjects {
                read.cmd("HMGET").arg(key(*s)).arg("v").arg("h");
            }
            let current: Vec<(Option<u64>, Option<String>)> =
                read.query_async(&mut self.conn).await?;
            let mut cas = redis::pipe();
            for (s, (v, stored)) in subjects.iter().zip(current) {
                let key = key(*s);
                let mut h = self.current(&key, stored);
                for u in pending.get(s).into_iter().flatten() {
                    h.apply(u, &self.limits);
                }
                let json = serde_json::to_string(&h).map_err(|e| {
                    redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "cannot encode history",
                        e.to_string(),
                    ))
                })?;
                let sealed = self.sealer.seal_record(&key, &json);
                cas.cmd("EVAL")
                    .arg(CAS)
                    .arg(1)
                    .arg(&key)
                    .arg(v.unwrap_or(0))
                    .arg(sealed)
                    .arg(self.limits.retention.max(1));
            }
            let written: Vec<i64> = cas.query_async(&mut self.conn).await?;
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
            timeout: Duration::from_millis(100),
            ..RedisConfig::new(format!("redis://127.0.0.1:{port}/"), "k")
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
    fn a_seal_binds_the_record_to_its_key_and_the_history_key() {
        let sealer = Sealer::new("shared");
        let (a, b) = ("stepup:history:aa", "stepup:history:bb");
        let tag = sealer.seal(a, b"{}");
        assert_eq!(tag.len(), 64);
        assert!(sealer.verify(a, b"{}", &tag));
        assert!(sealer.verify(a, b"{}", &tag.to_uppercase()));
        assert!(!sealer.verify(a, b"{ }", &tag), "edited record");
        assert!(!sealer.verify(b, b"{}", &tag), "moved to another key");
        assert!(!Sealer::new("other").verify(a, b"{}", &tag), "another key");
        assert!(!sealer.verify(a, b"{}", &tag[..62]));
        assert!(!sealer.verify(a, b"{}", "zz"));
        assert!(!sealer.verify(a, b"{}", ""));
        // The MAC key is derived, not the hash key itself.
        let plain = hmac(b"shared")
            .chain_update(MAC_LABEL)
            .chain_update(a.as_bytes())
            .chain_update(b"\0{}")
            .finalize()
            .into_bytes();
        assert_ne!(unhex(&tag).unwrap(), plain.to_vec());
        let sealed = sealer.seal_record(a, "{}");
        assert_eq!(sealed, format!("{tag}{{}}"));
        assert_eq!(sealer.open(a, &sealed), Some("{}"));
        assert_eq!(sealer.open(b, &sealed), None);
        assert_eq!(sealer.open(a, "{}"), None, "no MAC (an older record)");
        assert_eq!(sealer.open(a, &sealed.replace("{}", "{ }")), None);
        assert_eq!(format!("{sealer:?}"), "Sealer(..)");
    }

    #[test]
    fn outside_a_runtime_is_an_error_not_a_panic() {
        let config = RedisConfig {
            timeout: Duration::from_millis(100),
            ..RedisConfig::new("redis://127.0.0.1:1/", "k")
        };
        assert!(matches!(
            RedisBackend::start(&config, Limits::default()),
            Err(StartError::Connect(_))
        ));
    }
}
