//! The decision log: one JSON line per decision, for compliance ("when, why
//! and how was this user asked to step up?") and for `stepup replay`.
//!
//! The request path samples, writes the line into a fresh buffer (straight
//! from the request and decision, no serde; see `request::json` and
//! [`super::decision_json`]) and hands the bytes to a bounded queue; a
//! background thread writes them in large batches. With masks configured the
//! request path queues the request and decision instead and the writer masks
//! and writes. The queue is bounded in entries and in bytes (a line holds
//! the request, which callers choose). When the queue is full the entry is
//! dropped and counted
//! (`stepup_decision_log_dropped_total`, and a warning at most every 10 s):
//! a decision is never delayed by its log. On shutdown the queue is drained
//! and flushed.
//!
//! A line: `{"time", "source", "latency_us", "cache_hit", "caller" (the
//! client certificate's identity, under mutual TLS only), "request":
//! <DecideRequest JSON, masked>, "decision": <DecideResponse JSON without
//! what the policy revision says>}`. A masked field's value is replaced
//! wherever else it appears in the line too (another field, an error
//! message, the explain trace; see `mask`).

mod mask;
mod output;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

use self::mask::{Masks, NO_MASKS, split};
use self::output::Output;
use super::metrics::Metrics;
use crate::engine::{Decision, Outcome};
use crate::json::{Obj, key};
use crate::proto::v1::DecideRequest;

/// Where lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Standard output.
    Stdout,
    /// A file, rotated by size: `path` -> `path.1` -> ... -> `path.N`.
    File {
        /// The live file.
        path: PathBuf,
        /// Rotate when it grows past this many bytes.
        max_bytes: u64,
        /// Rotated files to keep.
        keep: u32,
    },
    /// OTLP logs (the line is the record's body), to the collector named by
    /// the `OTEL_EXPORTER_OTLP_*` variables.
    Otlp,
}

/// Fraction of decisions logged, by outcome (0.0..=1.0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// ALLOW decisions.
    pub allow: f64,
    /// CHALLENGE decisions.
    pub challenge: f64,
    /// DENY decisions.
    pub deny: f64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            allow: 1.0,
            challenge: 1.0,
            deny: 1.0,
        }
    }
}

/// Decision-log settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionLogConfig {
    /// Where lines go.
    pub sink: Sink,
    /// What fraction is logged.
    pub sample: Sampling,
    /// Request fields replaced by a keyed hash (`network.ip`).
    pub hash: Vec<String>,
    /// Request fields removed (`subject.attributes.email`).
    pub drop: Vec<String>,
    /// Key of the hash; a random one per process when `None` (hashes then
    /// cannot be joined across restarts).
    pub hash_key: Option<String>,
    /// Whether the key was written in the config file itself (warned about
    /// at start: it belongs in a Secret).
    pub hash_key_inline: bool,
    /// Entries that may wait for the writer before new ones are dropped.
    pub queue: usize,
    /// Bytes the waiting entries may hold before new ones are dropped.
    pub queue_bytes: usize,
}

impl DecisionLogConfig {
    /// Everything logged to `sink`, nothing masked.
    pub fn new(sink: Sink) -> Self {
        Self {
            sink,
            sample: Sampling::default(),
            hash: Vec::new(),
            drop: Vec::new(),
            hash_key: None,
            hash_key_inline: false,
            queue: 10_000,
            queue_bytes: 64 << 20,
        }
    }
}

/// One decision to log.
pub struct Entry {
    /// The decision's clock.
    pub time: DateTime<Utc>,
    /// `decide` or `ext_authz`.
    pub source: &'static str,
    /// The request as the engine saw it.
    pub request: DecideRequest,
    /// The decision.
    pub decision: Decision,
    /// Time to decide.
    pub elapsed: Duration,
    /// The caller's verified identity (the client certificate's, under
    /// mutual TLS); `None` when the transport established none.
    pub caller: Option<Arc<str>>,
}

enum Message {
    /// A line written on the request thread (no masks configured).
    Line(Vec<u8>),
    /// An entry the writer masks and writes, and the bytes it was counted
    /// as in the queue.
    Entry(Box<Entry>, usize),
    Stop,
}

/// What is in the queue: messages, and their bytes (a line's length; an
/// entry's request, encoded, plus a line's room).
#[derive(Default)]
struct Queued {
    entries: AtomicUsize,
    bytes: AtomicUsize,
}

impl Queued {
    /// A message of `bytes` left the queue (or never made it in).
    fn taken(&self, bytes: usize) {
        self.entries.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Room for a typical line (about 1.1 KB for a refund with a challenge);
/// longer ones grow the buffer.
const LINE_CAPACITY: usize = 2048;

/// The running decision log.
pub struct DecisionLog {
    tx: SyncSender<Message>,
    /// What was sent and not yet taken by the writer (shared with it): a
    /// full queue is seen before a line is written for nothing.
    queued: Arc<Queued>,
    capacity: usize,
    /// The bound of `queued.bytes`.
    max_bytes: usize,
    /// Whether masks are configured: the writer then builds the lines.
    masked: bool,
    sample: Sampling,
    metrics: Arc<Metrics>,
    writer: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl DecisionLog {
    /// Opens the sink and starts the writer thread.
    pub fn start(config: DecisionLogConfig, metrics: Arc<Metrics>) -> io::Result<Self> {
        Self::start_gated(config, metrics, None)
    }

    /// As [`DecisionLog::start`], with a writer that waits for `gate` before
    /// writing anything (tests use it to fill the queue).
    fn start_gated(
        config: DecisionLogConfig,
        metrics: Arc<Metrics>,
        gate: Option<Receiver<()>>,
    ) -> io::Result<Self> {
        let out = Output::open(&config.sink)?;
        if config.hash_key_inline {
            tracing::warn!(
                "decision_log.hash_key is written in the config file: anyone who can read the file (a ConfigMap) can read it; put it in a Secret, read from decision_log.hash_key_file or STEPUP_DECISION_LOG_HASH_KEY"
            );
        }
        let capacity = config.queue.max(1);
        let (tx, rx) = mpsc::sync_channel(capacity);
        let key = match &config.hash_key {
            Some(k) => k.as_bytes().to_vec(),
            None => uuid::Uuid::new_v4().as_bytes().to_vec(),
        };
        let masks = Masks {
            hash: config.hash.iter().map(|p| split(p)).collect(),
            drop: config.drop.iter().map(|p| split(p)).collect(),
            key,
        };
        let masked = !masks.is_empty();
        let queued = Arc::new(Queued::default());
        let writer_queued = Arc::clone(&queued);
        let writer_metrics = Arc::clone(&metrics);
        let writer = std::thread::Builder::new()
            .name("stepup-decision-log".into())
            .spawn(move || {
                if let Some(gate) = gate {
                    let _ = gate.recv();
                }
                write_loop(rx, out, masks, &writer_queued, &writer_metrics);
            })?;
        Ok(Self {
            tx,
            queued,
            capacity,
            max_bytes: config.queue_bytes.max(1),
            masked,
            sample: config.sample,
            metrics,
            writer: std::sync::Mutex::new(Some(writer)),
        })
    }

    /// Whether a decision with this outcome and id is sampled in. Sampling
    /// goes by the id's random bits, so it is uniform and reproducible.
    pub fn sampled(&self, outcome: Outcome, id: &uuid::Uuid) -> bool {
        let rate = match outcome {
            Outcome::Allow => self.sample.allow,
            Outcome::Challenge => self.sample.challenge,
            Outcome::Deny => self.sample.deny,
        };
        if rate >= 1.0 {
            return true;
        }
        let bits = u64::from_le_bytes(id.as_bytes()[8..16].try_into().unwrap_or([0; 8]));
        (bits as f64 / u64::MAX as f64) < rate
    }

    /// Enqueues `entry` if sampled; never blocks. Returns whether it was
    /// queued.
    ///
    /// Without masks the line is written here, on the request thread, and
    /// only its bytes are queued: the request and decision are then freed
    /// by the thread that allocated them, while still in its cache (on the
    /// writer, cross-thread frees and cold reads would cost more than the
    /// line). With masks the entry is queued and the writer masks it
    /// (masking builds a JSON tree, too slow for the request path).
    pub fn submit(&self, entry: Entry) -> bool {
        if !self.sampled(entry.decision.outcome, &entry.decision.id) {
            return false;
        }
        if self.queued.entries.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.queued.entries.fetch_sub(1, Ordering::Relaxed);
            self.metrics.log_dropped();
            return false;
        }
        let (message, bytes) = if self.masked {
            let bytes = prost::Message::encoded_len(&entry.request) + LINE_CAPACITY;
            (Message::Entry(Box::new(entry), bytes), bytes)
        } else {
            let mut buf = Vec::with_capacity(LINE_CAPACITY);
            if let Err(e) = line(&entry, &NO_MASKS, &mut buf) {
                self.queued.entries.fetch_sub(1, Ordering::Relaxed);
                tracing::error!("cannot write the decision log: {e}");
                return false;
            }
            drop(entry);
            let bytes = buf.len();
            (Message::Line(buf), bytes)
        };
        let before = self.queued.bytes.fetch_add(bytes, Ordering::Relaxed);
        let sent =
            before.saturating_add(bytes) <= self.max_bytes && self.tx.try_send(message).is_ok();
        if !sent {
            self.queued.taken(bytes);
            self.metrics.log_dropped();
        }
        sent
    }

    /// Drains the queue, flushes and stops the writer; later entries are
    /// dropped (and counted).
    pub fn close(&self) {
        let Some(writer) = self.writer.lock().ok().and_then(|mut w| w.take()) else {
            return;
        };
        let _ = self.tx.send(Message::Stop);
        let _ = writer.join();
    }
}

/// One line, written straight from the entry (see [`crate::json::Obj`]):
/// no intermediate JSON tree unless masks must edit the request.
fn line(entry: &Entry, masks: &Masks, buf: &mut Vec<u8>) -> Result<(), LineError> {
    let mut o = Obj::new(buf);
    write_time(o.key(key!("time")), &entry.time);
    o.str(key!("source"), entry.source);
    write_latency(o.key(key!("latency_us")), entry.elapsed);
    o.raw(
        key!("cache_hit"),
        if entry.decision.cache_hit {
            b"true"
        } else {
            b"false"
        },
    );
    if let Some(caller) = &entry.caller {
        o.text(key!("caller"), caller);
    }
    if masks.is_empty() {
        crate::request::json::write_request(o.key(key!("request")), &entry.request);
        super::decision_json::write_decision(o.key(key!("decision")), &entry.decision);
    } else {
        let mut request = serde_json::to_value(&entry.request)?;
        let scrub = masks.apply(&mut request);
        let mut decision = Vec::with_capacity(LINE_CAPACITY);
        super::decision_json::write_decision(&mut decision, &entry.decision);
        if scrub.is_empty() {
            crate::json::write(o.key(key!("request")), &request)?;
            o.raw(key!("decision"), &decision);
        } else {
            // A masked value's text may stand elsewhere too: in another
            // field, an error message, the explain trace.
            let mut decision: serde_json::Value = serde_json::from_slice(&decision)?;
            scrub.apply(&mut request);
            scrub.apply(&mut decision);
            crate::json::write(o.key(key!("request")), &request)?;
            crate::json::write(o.key(key!("decision")), &decision)?;
        }
    }
    o.end();
    Ok(())
}

/// The decision's clock as RFC 3339 in UTC with microseconds
/// (`2026-11-28T05:32:36.673915Z`).
fn write_time(out: &mut Vec<u8>, time: &DateTime<Utc>) {
    let micros = time.timestamp_subsec_micros();
    if crate::request::json::write_date_time(out, time, 6, micros) {
        out.extend_from_slice(b"Z\"");
    } else {
        crate::json::write_str(out, &time.to_rfc3339_opts(SecondsFormat::Micros, true));
    }
}

/// Microseconds with up to three decimals (nanosecond precision), always
/// with a fraction so that readers see a float: `1162.64`, `3.0`.
fn write_latency(out: &mut Vec<u8>, elapsed: Duration) {
    let nanos = elapsed.as_nanos();
    crate::json::write_int(out, nanos / 1000);
    let frac = (nanos % 1000) as u16;
    let digits = [
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ];
    let len = match frac {
        f if f % 100 == 0 => 2,
        f if f % 10 == 0 => 3,
        _ => 4,
    };
    out.extend_from_slice(digits.get(..len).unwrap_or_default());
}

/// Why a line could not be built or written.
#[derive(Debug, thiserror::Error)]
enum LineError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Write(#[from] crate::json::Error),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// While entries keep coming the writer naps between batches instead of
/// blocking on the queue: a request thread then hands an entry over without
/// waking anyone (no futex call, no context switch per decision), and the
/// writer takes everything queued in one go and writes it with one flush.
/// After `IDLE_NAPS` empty naps in a row it blocks on the queue again, so an
/// idle sidecar is not woken 500 times a second.
const NAP: Duration = Duration::from_millis(2);
const IDLE_NAPS: u32 = 50;
const IDLE_WAIT: Duration = Duration::from_millis(200);

fn write_loop(
    rx: Receiver<Message>,
    mut out: Output,
    masks: Masks,
    queued: &Queued,
    metrics: &Metrics,
) {
    let mut last_warning = Instant::now();
    let mut dropped_reported = 0;
    let mut dirty = false;
    let mut buf = Vec::with_capacity(2048);
    let flush = |out: &mut Output, dirty: &mut bool| {
        if std::mem::take(dirty)
            && let Err(e) = out.flush()
        {
            tracing::error!("cannot flush the decision log: {e}");
        }
    };
    let written = |result: Result<(), LineError>, dirty: &mut bool| match result {
        Ok(()) => {
            metrics.log_written();
            *dirty = true;
        }
        Err(e) => tracing::error!("cannot write the decision log: {e}"),
    };
    let mut naps = IDLE_NAPS;
    loop {
        let message = if naps < IDLE_NAPS {
            match rx.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Empty) => {
                    flush(&mut out, &mut dirty);
                    std::thread::sleep(NAP);
                    naps += 1;
                    None
                }
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            flush(&mut out, &mut dirty);
            match rx.recv_timeout(IDLE_WAIT) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        match message {
            Some(Message::Line(bytes)) => {
                naps = 0;
                queued.taken(bytes.len());
                written(out.write_line(&bytes).map_err(LineError::from), &mut dirty);
            }
            Some(Message::Entry(entry, bytes)) => {
                naps = 0;
                queued.taken(bytes);
                buf.clear();
                let result = line(&entry, &masks, &mut buf)
                    .and_then(|()| out.write_line(&buf).map_err(LineError::from));
                written(result, &mut dirty);
            }
            Some(Message::Stop) => break,
            None => {}
        }
        let dropped = metrics.log_dropped_total();
        if dropped > dropped_reported && last_warning.elapsed() >= Duration::from_secs(10) {
            tracing::warn!(
                dropped = dropped - dropped_reported,
                "decision log queue full: entries dropped (decisions were not delayed)"
            );
            dropped_reported = dropped;
            last_warning = Instant::now();
        }
    }
    if let Err(e) = out.close() {
        tracing::error!("cannot flush the decision log: {e}");
    }
}

#[cfg(test)]
mod tests;
