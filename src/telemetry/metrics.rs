//! Prometheus metrics, kept as plain atomics so that recording a decision
//! costs a few uncontended atomic adds (no label allocation on the hot path:
//! per-rule counters are found by `&str` in a `DashMap`, created once per
//! rule id, hashed with foldhash: the keys are the policy's own ids, and
//! SipHash was half the cost of recording a decision; a histogram
//! observation is a bucket found by comparison and three atomic adds).
//! Rendered in the Prometheus text format 0.0.4 by [`Metrics::render`], or
//! as OpenMetrics 1.0 by [`exposition`] when the scraper asks for it, with
//! the `process_*` metrics read from `/proc` at scrape time
//! ([`super::process`]).
//!
//! Names follow `stepup_<area>_<thing>_<unit>`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use crate::engine::{Decision, Outcome};
use crate::policy::PolicySet;

mod exposition;
mod histogram;
pub use exposition::exposition;
use histogram::Histogram;

/// Upper bounds of the decision latency histogram, in seconds.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_001, 0.000_002, 0.000_005, 0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_2, 0.000_5,
    0.001, 0.002, 0.005, 0.01, 0.05,
];

/// Upper bounds of the gRPC call latency histograms, in seconds: a call
/// also waits for the shared history backend and the costly-decision pool,
/// so they reach further than [`LATENCY_BUCKETS`].
pub const CALL_BUCKETS: [f64; 15] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// The gRPC methods with a latency histogram each, by the name
/// `stepup_grpc_*{method}` gives them; `unknown` is any other path.
pub const GRPC_METHODS: [&str; 5] = ["Decide", "RecordStepUp", "Check", "DecideBatch", "unknown"];

/// The AuthZEN HTTP routes with a latency histogram each, by the name
/// `stepup_http_*{route}` gives them; `unknown` is any other path.
pub const HTTP_ROUTES: [&str; 5] = [
    "evaluation",
    "evaluations",
    "search_action",
    "metadata",
    "unknown",
];

/// The fully qualified name (`package.Service/Method`, the OpenTelemetry
/// span name and `rpc.method`) of a method of [`GRPC_METHODS`]; `_OTHER`
/// for any other.
pub fn full_method(method: &str) -> &'static str {
    match method {
        "Decide" => "stepup.v1.DecisionService/Decide",
        "RecordStepUp" => "stepup.v1.DecisionService/RecordStepUp",
        "Check" => "envoy.service.auth.v3.Authorization/Check",
        "DecideBatch" => "stepup.v1.DecisionService/DecideBatch",
        _ => "_OTHER",
    }
}

/// The gRPC status codes that are a server's failure (OpenTelemetry's gRPC
/// conventions): the others (`INVALID_ARGUMENT`, `PERMISSION_DENIED`, ...)
/// are answers about the request, and do not make a server span an error.
pub fn server_error(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    )
}

/// Every metric the sidecar exports.
#[derive(Debug, Default)]
pub struct Metrics {
    decisions: [AtomicU64; 3],
    latency: Histogram<{ LATENCY_BUCKETS.len() }>,
    rule_matches: DashMap<Arc<str>, Arc<AtomicU64>, foldhash::fast::RandomState>,
    /// `rule_matches` by rule index for one policy set (by generation): a
    /// match costs an atomic add, not a lookup by id.
    matches_by_index: arc_swap::ArcSwapOption<(u64, Vec<Arc<AtomicU64>>)>,
    rule_errors: Counters<Arc<str>>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    log_written: AtomicU64,
    log_dropped: AtomicU64,
    grpc: Counters<(&'static str, &'static str)>,
    /// Call latency by method, in [`GRPC_METHODS`]' order.
    grpc_latency: [Histogram<{ CALL_BUCKETS.len() }>; GRPC_METHODS.len()],
    /// AuthZEN HTTP requests by route and status code.
    http: Counters<(&'static str, u16)>,
    /// AuthZEN request latency by route, in [`HTTP_ROUTES`]' order.
    http_latency: [Histogram<{ CALL_BUCKETS.len() }>; HTTP_ROUTES.len()],
    /// The OTLP histograms, once OTLP metrics export starts.
    otlp: std::sync::OnceLock<super::otlp::Histograms>,
}

/// Counters by label.
type Counters<K> = DashMap<K, AtomicU64, foldhash::fast::RandomState>;

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Allow => 0,
        Outcome::Challenge => 1,
        Outcome::Deny => 2,
    }
}

/// Adds one to the counter under `key`: a shared-lock lookup, the entry
/// created (write lock, one key copy) only the first time.
fn bump<K, Q>(map: &Counters<K>, key: &Q)
where
    K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
    Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
{
    match map.get(key) {
        Some(c) => {
            c.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            map.entry(key.to_owned())
                .or_default()
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Metrics {
    /// Records a decision: outcome, latency, matched rules, rule errors and
    /// whether the cache answered.
    pub fn record(&self, d: &Decision, elapsed: Duration, cached: bool) {
        if let Some(c) = self.decisions.get(outcome_index(d.outcome)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.observe(&LATENCY_BUCKETS, elapsed);
        if let Some(otlp) = self.otlp.get() {
            otlp.decision(elapsed);
        }
        if !d.assessment.matched.is_empty() {
            let generation = d.policy.generation;
            let current = self.matches_by_index.load();
            let made;
            let counters = match current.as_ref().filter(|t| t.0 == generation) {
                Some(t) => &t.1,
                None => {
                    // A new policy set: its rules' counters, found or made once.
                    let t = Arc::new((
                        generation,
                        d.policy
                            .rules
                            .iter()
                            .map(|r| {
                                Arc::clone(
                                    self.rule_matches
                                        .entry(Arc::clone(&r.id))
                                        .or_default()
                                        .value(),
                                )
                            })
                            .collect(),
                    ));
                    // Generations only grow: a decision still finishing on
                    // an older set during a reload counts through its own
                    // table and leaves the newer one in place.
                    if current.as_ref().is_none_or(|c| c.0 < generation) {
                        self.matches_by_index.store(Some(Arc::clone(&t)));
                    }
                    made = t;
                    &made.1
                }
            };
            for i in &d.assessment.matched {
                if let Some(c) = counters.get(*i) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for e in &d.assessment.errors {
            bump(&self.rule_errors, &e.id);
        }
        if cached {
            let counter = if d.cache_hit {
                &self.cache_hits
            } else {
                &self.cache_misses
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Matches by rule id, sorted.
    fn match_counts(&self) -> Vec<(Arc<str>, u64)> {
        sorted(
            self.rule_matches
                .iter()
                .map(|e| (Arc::clone(e.key()), e.value().load(Ordering::Relaxed))),
        )
    }

    /// Errors by signal or rule id, sorted.
    fn error_counts(&self) -> Vec<(Arc<str>, u64)> {
        sorted(
            self.rule_errors
                .iter()
                .map(|e| (Arc::clone(e.key()), e.value().load(Ordering::Relaxed))),
        )
    }

    /// Counts a gRPC call by method (one of [`GRPC_METHODS`]) and status
    /// code, and its time from request to status.
    pub fn grpc_call(&self, method: &'static str, code: tonic::Code, elapsed: Duration) {
        bump(&self.grpc, &(method, code_name(code)));
        let i = GRPC_METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(GRPC_METHODS.len() - 1);
        if let Some(h) = self.grpc_latency.get(i) {
            h.observe(&CALL_BUCKETS, elapsed);
        }
        if let Some(otlp) = self.otlp.get() {
            otlp.call(method, code, elapsed);
        }
    }

    /// Counts an AuthZEN HTTP request by route (one of [`HTTP_ROUTES`]) and
    /// status code, and its time from request to response.
    pub fn http_call(&self, route: &'static str, status: u16, elapsed: Duration) {
        bump(&self.http, &(route, status));
        let i = HTTP_ROUTES
            .iter()
            .position(|r| *r == route)
            .unwrap_or(HTTP_ROUTES.len() - 1);
        if let Some(h) = self.http_latency.get(i) {
            h.observe(&CALL_BUCKETS, elapsed);
        }
    }

    /// Records decision and call latencies into `histograms` too, from now
    /// on (OTLP export started); only the first call has an effect.
    pub fn export_histograms(&self, histograms: super::otlp::Histograms) {
        let _ = self.otlp.set(histograms);
    }

    /// Counts a decision-log entry written.
    pub fn log_written(&self) {
        self.log_written.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a decision-log entry dropped because the queue was full.
    pub fn log_dropped(&self) {
        self.log_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Decision-log entries dropped so far.
    pub fn log_dropped_total(&self) -> u64 {
        self.log_dropped.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every metric, with the policy and
    /// cache state read at scrape time, then the build and the `process_*`
    /// metrics.
    pub fn render(&self, state: &ScrapeState<'_>) -> String {
        let mut out = String::with_capacity(8192);
        self.render_counters(&mut out, state);
        render_build_info(&mut out);
        super::process::render(&mut out);
        out
    }

    /// The sidecar's own metrics (what [`Metrics::render`] writes before
    /// the build and process ones).
    fn render_counters(&self, out: &mut String, state: &ScrapeState<'_>) {
        self.render_decisions(out);
        self.render_latency(out);
        self.render_rules(out);
        self.render_cache(out, state.cache_entries, state.cache_bytes);
        render_policy(out, state);
        self.render_decision_log(out);
        self.render_grpc(out);
        self.render_http(out);
    }

    /// `stepup_decisions_total`.
    fn render_decisions(&self, w: &mut String) {
        header(
            w,
            "stepup_decisions_total",
            "counter",
            "Decisions by outcome.",
        );
        for (i, name) in ["allow", "challenge", "deny"].iter().enumerate() {
            let v = self
                .decisions
                .get(i)
                .map_or(0, |c| c.load(Ordering::Relaxed));
            let _ = writeln!(w, "stepup_decisions_total{{outcome=\"{name}\"}} {v}");
        }
    }

    /// `stepup_decision_duration_seconds`: cumulative buckets, sum, count.
    fn render_latency(&self, w: &mut String) {
        header(
            w,
            "stepup_decision_duration_seconds",
            "histogram",
            "Time to decide, from request to decision, server side.",
        );
        self.latency
            .render(w, "stepup_decision_duration_seconds", "", &LATENCY_BUCKETS);
    }

    /// `stepup_rule_matches_total` and `stepup_rule_errors_total`, by id.
    fn render_rules(&self, w: &mut String) {
        header(
            w,
            "stepup_rule_matches_total",
            "counter",
            "Decisions in which a rule matched, by rule id.",
        );
        for (rule, v) in self.match_counts() {
            let _ = writeln!(
                w,
                "stepup_rule_matches_total{{rule=\"{}\"}} {v}",
                escape(&rule)
            );
        }
        header(
            w,
            "stepup_rule_errors_total",
            "counter",
            "Signal and rule conditions that failed to evaluate, by id.",
        );
        for (rule, v) in self.error_counts() {
            let _ = writeln!(
                w,
                "stepup_rule_errors_total{{rule=\"{}\"}} {v}",
                escape(&rule)
            );
        }
    }

    /// `stepup_cache_*`: hits and misses counted here, `entries` read from
    /// the cache at scrape time.
    fn render_cache(&self, w: &mut String, entries: u64, bytes: u64) {
        header(
            w,
            "stepup_cache_hits_total",
            "counter",
            "Decisions answered from the decision cache.",
        );
        let _ = writeln!(
            w,
            "stepup_cache_hits_total {}",
            self.cache_hits.load(Ordering::Relaxed)
        );
        header(
            w,
            "stepup_cache_misses_total",
            "counter",
            "Decisions the cache could not answer.",
        );
        let _ = writeln!(
            w,
            "stepup_cache_misses_total {}",
            self.cache_misses.load(Ordering::Relaxed)
        );
        header(
            w,
            "stepup_cache_entries",
            "gauge",
            "Entries in the decision cache (approximate).",
        );
        let _ = writeln!(w, "stepup_cache_entries {entries}");
        header(
            w,
            "stepup_cache_bytes",
            "gauge",
            "Bytes the decision cache's entries hold (approximate; bounded by [cache] max_bytes).",
        );
        let _ = writeln!(w, "stepup_cache_bytes {bytes}");
    }

    /// `stepup_decision_log_written_total` and `..._dropped_total`.
    fn render_decision_log(&self, w: &mut String) {
        header(
            w,
            "stepup_decision_log_written_total",
            "counter",
            "Decision-log entries written.",
        );
        let _ = writeln!(
            w,
            "stepup_decision_log_written_total {}",
            self.log_written.load(Ordering::Relaxed)
        );
        header(
            w,
            "stepup_decision_log_dropped_total",
            "counter",
            "Decision-log entries dropped because the log queue was full.",
        );
        let _ = writeln!(
            w,
            "stepup_decision_log_dropped_total {}",
            self.log_dropped.load(Ordering::Relaxed)
        );
    }

    /// `stepup_grpc_requests_total`, sorted by method and code.
    fn render_grpc(&self, w: &mut String) {
        header(
            w,
            "stepup_grpc_requests_total",
            "counter",
            "gRPC calls by method and status code.",
        );
        let mut grpc: Vec<((&str, &str), u64)> = self
            .grpc
            .iter()
            .map(|e| (*e.key(), e.value().load(Ordering::Relaxed)))
            .collect();
        grpc.sort_unstable();
        for ((method, code), v) in grpc {
            let _ = writeln!(
                w,
                "stepup_grpc_requests_total{{method=\"{method}\",code=\"{code}\"}} {v}"
            );
        }
        header(
            w,
            "stepup_grpc_server_handling_seconds",
            "histogram",
            "Time from a gRPC call's request to its status, server side, by method.",
        );
        for (method, h) in GRPC_METHODS.iter().zip(&self.grpc_latency) {
            // Unknown paths only once there has been one.
            if *method != "unknown" || h.count.load(Ordering::Relaxed) > 0 {
                let labels = format!("method=\"{method}\",");
                h.render(
                    w,
                    "stepup_grpc_server_handling_seconds",
                    &labels,
                    &CALL_BUCKETS,
                );
            }
        }
    }
}

impl Metrics {
    /// `stepup_http_requests_total` (sorted by route and code) and the
    /// latency histogram of the AuthZEN endpoints, once there has been an
    /// AuthZEN request: a sidecar asked only over gRPC shows none.
    fn render_http(&self, w: &mut String) {
        if self.http.is_empty() {
            return;
        }
        header(
            w,
            "stepup_http_requests_total",
            "counter",
            "AuthZEN HTTP requests by route and status code.",
        );
        let mut http: Vec<((&str, u16), u64)> = self
            .http
            .iter()
            .map(|e| (*e.key(), e.value().load(Ordering::Relaxed)))
            .collect();
        http.sort_unstable();
        for ((route, code), v) in http {
            let _ = writeln!(
                w,
                "stepup_http_requests_total{{route=\"{route}\",code=\"{code}\"}} {v}"
            );
        }
        header(
            w,
            "stepup_http_server_request_duration_seconds",
            "histogram",
            "Time from an AuthZEN HTTP request to its response, server side, by route.",
        );
        for (route, h) in HTTP_ROUTES.iter().zip(&self.http_latency) {
            if *route != "unknown" || h.count.load(Ordering::Relaxed) > 0 {
                let labels = format!("route=\"{route}\",");
                h.render(
                    w,
                    "stepup_http_server_request_duration_seconds",
                    &labels,
                    &CALL_BUCKETS,
                );
            }
        }
    }
}

/// `stepup_build_info`: the version, and the commit and compiler when the
/// build recorded them (`STEPUP_GIT_REVISION`, `STEPUP_RUSTC_VERSION` at
/// compile time).
fn render_build_info(w: &mut String) {
    header(
        w,
        "stepup_build_info",
        "gauge",
        "The running build (value 1), by version and, when known, revision and rustc version.",
    );
    let _ = write!(
        w,
        "stepup_build_info{{version=\"{}\"",
        escape(env!("CARGO_PKG_VERSION"))
    );
    if let Some(revision) = option_env!("STEPUP_GIT_REVISION").filter(|r| !r.is_empty()) {
        let _ = write!(w, ",revision=\"{}\"", escape(revision));
    }
    if let Some(rustc) = option_env!("STEPUP_RUSTC_VERSION").filter(|r| !r.is_empty()) {
        let _ = write!(w, ",rustc=\"{}\"", escape(rustc));
    }
    w.push_str("} 1\n");
}

/// `stepup_policy_*`: reload counts and the serving set, all read at scrape
/// time.
fn render_policy(w: &mut String, state: &ScrapeState<'_>) {
    header(
        w,
        "stepup_policy_reloads_total",
        "counter",
        "Policy reloads by result.",
    );
    let _ = writeln!(
        w,
        "stepup_policy_reloads_total{{result=\"ok\"}} {}",
        state.reloads_ok
    );
    let _ = writeln!(
        w,
        "stepup_policy_reloads_total{{result=\"failed\"}} {}",
        state.reloads_failed
    );
    header(
        w,
        "stepup_policy_info",
        "gauge",
        "The policy set serving decisions (value 1), by revision.",
    );
    let _ = writeln!(
        w,
        "stepup_policy_info{{revision=\"{}\",rules=\"{}\",signals=\"{}\"}} 1",
        escape(&state.policy.revision),
        state.policy.rules.len(),
        state.policy.signals.len()
    );
    header(
        w,
        "stepup_policy_last_reload_failed",
        "gauge",
        "1 while the last policy reload failed.",
    );
    let _ = writeln!(
        w,
        "stepup_policy_last_reload_failed {}",
        u8::from(state.last_reload_failed)
    );
    header(
        w,
        "stepup_policy_last_reload_success_timestamp_seconds",
        "gauge",
        "When the serving policy set was loaded (at start-up or by the last reload that swapped in a new revision), Unix time.",
    );
    let loaded = state
        .policy
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let _ = writeln!(
        w,
        "stepup_policy_last_reload_success_timestamp_seconds {loaded}"
    );
}

/// A copy of the counters, for exporters other than `/metrics`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// Decisions by outcome: allow, challenge, deny.
    pub decisions: [u64; 3],
    /// Decisions timed, and their total time in seconds.
    pub latency_count: u64,
    /// Total decision time, seconds.
    pub latency_sum: f64,
    /// Matches by rule id.
    pub rule_matches: Vec<(Arc<str>, u64)>,
    /// Evaluation errors by id.
    pub rule_errors: Vec<(Arc<str>, u64)>,
    /// Cache hits.
    pub cache_hits: u64,
    /// Cache misses.
    pub cache_misses: u64,
    /// Decision-log entries written.
    pub log_written: u64,
    /// Decision-log entries dropped.
    pub log_dropped: u64,
}

impl Metrics {
    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            decisions: [
                self.decisions.first().map_or(0, load),
                self.decisions.get(1).map_or(0, load),
                self.decisions.get(2).map_or(0, load),
            ],
            latency_count: load(&self.latency.count),
            latency_sum: load(&self.latency.sum_nanos) as f64 / 1e9,
            rule_matches: self.match_counts(),
            rule_errors: self.error_counts(),
            cache_hits: load(&self.cache_hits),
            cache_misses: load(&self.cache_misses),
            log_written: load(&self.log_written),
            log_dropped: load(&self.log_dropped),
        }
    }
}

/// What a scrape reads besides the counters.
pub struct ScrapeState<'a> {
    /// The serving policy set.
    pub policy: &'a PolicySet,
    /// Approximate cache entries.
    pub cache_entries: u64,
    /// Approximate bytes the cache's entries hold.
    pub cache_bytes: u64,
    /// Successful reloads.
    pub reloads_ok: u64,
    /// Rejected reloads.
    pub reloads_failed: u64,
    /// Whether the last reload failed.
    pub last_reload_failed: bool,
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sorted(counters: impl Iterator<Item = (Arc<str>, u64)>) -> Vec<(Arc<str>, u64)> {
    let mut v: Vec<(Arc<str>, u64)> = counters.collect();
    v.sort_unstable();
    v
}

/// Escapes a label value (backslash, quote, newline).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The status code's name, as gRPC spells it (`INVALID_ARGUMENT`).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests;
