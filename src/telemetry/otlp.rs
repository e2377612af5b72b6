//! OTLP export of metrics and of the decision log, configured by the
//! standard OpenTelemetry environment variables (`OTEL_EXPORTER_OTLP_*`,
//! `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_METRICS_EXPORTER=none` to opt out).
//!
//! Counters are read from the same atomics `/metrics` renders, by
//! observable instruments: exporting them adds nothing to the request path.
//! The two latency histograms (`stepup.decision.duration` and
//! `rpc.server.call.duration`, in seconds) are recorded per decision and per
//! call once export starts, with explicit buckets.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;

use super::metrics::{self, CALL_BUCKETS, LATENCY_BUCKETS, Metrics};

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

fn off(var: &str) -> bool {
    std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var(var).is_ok_and(|v| v.eq_ignore_ascii_case("none"))
}

fn resource() -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name(std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "stepup".into()))
        .build()
}

/// Whether the environment asks for OTLP metrics.
pub fn metrics_requested() -> bool {
    !off("OTEL_METRICS_EXPORTER")
        && (env_set("OTEL_EXPORTER_OTLP_ENDPOINT")
            || env_set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
}

/// What the exported metrics read beyond [`Metrics`]: the policy reload
/// counters and the serving revision.
pub trait PolicyState: Send + Sync + 'static {
    /// Reloads that succeeded and failed.
    fn reloads(&self) -> (u64, u64);
    /// The serving policy set's revision.
    fn revision(&self) -> Arc<str>;
}

/// The histograms exported over OTLP, recorded as decisions and calls
/// happen (an observable instrument cannot be a histogram): the SDK's
/// recording takes no allocation for an attribute set it has seen.
pub struct Histograms {
    decision: opentelemetry::metrics::Histogram<f64>,
    call: opentelemetry::metrics::Histogram<f64>,
}

impl std::fmt::Debug for Histograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Histograms")
    }
}

impl Histograms {
    /// One decision's time.
    pub(super) fn decision(&self, elapsed: Duration) {
        self.decision.record(elapsed.as_secs_f64(), &[]);
    }

    /// One gRPC call, as `rpc.server.call.duration` with the attributes of
    /// OpenTelemetry's RPC conventions.
    pub(super) fn call(&self, method: &'static str, code: tonic::Code, elapsed: Duration) {
        let system = KeyValue::new("rpc.system.name", "grpc");
        let method = KeyValue::new("rpc.method", metrics::full_method(method));
        let status = KeyValue::new("rpc.status_code", metrics::code_name(code));
        if metrics::server_error(code) {
            let error = KeyValue::new("error.type", metrics::code_name(code));
            self.call
                .record(elapsed.as_secs_f64(), &[system, method, status, error]);
        } else {
            self.call
                .record(elapsed.as_secs_f64(), &[system, method, status]);
        }
    }
}

/// Starts periodic OTLP export of `metrics` and `policy`. Call within a
/// Tokio runtime. Keep the provider; shut it down to flush.
///
/// Instruments are named and given units by OpenTelemetry's conventions:
/// `rpc.server.call.duration` (s) for every gRPC call, the sidecar's own
/// under `stepup.` (`stepup.decision.duration` in s, counters in their
/// `{unit}`), attributes namespaced (`stepup.outcome`).
pub fn start_metrics(
    metrics: &Arc<Metrics>,
    policy: Arc<dyn PolicyState>,
) -> Result<SdkMeterProvider, String> {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| e.to_string())?;
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exporter)
        .with_resource(resource())
        .build();
    let meter = provider.meter("stepup");
    metrics.export_histograms(Histograms {
        decision: meter
            .f64_histogram("stepup.decision.duration")
            .with_unit("s")
            .with_description("Time to decide, from request to decision, server side.")
            .with_boundaries(LATENCY_BUCKETS.to_vec())
            .build(),
        call: meter
            .f64_histogram("rpc.server.call.duration")
            .with_unit("s")
            .with_description("Duration of incoming gRPC calls, from request to status.")
            .with_boundaries(CALL_BUCKETS.to_vec())
            .build(),
    });
    observe_counters(&meter, metrics);
    observe_policy(&meter, policy);
    Ok(provider)
}

/// The counters, read from [`Metrics`] at each export.
fn observe_counters(meter: &Meter, metrics: &Arc<Metrics>) {
    let m = Arc::clone(metrics);
    let _decisions = meter
        .u64_observable_counter("stepup.decisions")
        .with_unit("{decision}")
        .with_description("Decisions by outcome.")
        .with_callback(move |o| {
            let s = m.snapshot();
            for (outcome, v) in ["allow", "challenge", "deny"].iter().zip(s.decisions) {
                o.observe(v, &[KeyValue::new("stepup.outcome", *outcome)]);
            }
        })
        .build();
    let m = Arc::clone(metrics);
    let _rules = meter
        .u64_observable_counter("stepup.rule.matches")
        .with_unit("{match}")
        .with_description("Decisions in which a rule matched, by rule id.")
        .with_callback(move |o| {
            for (rule, v) in m.snapshot().rule_matches {
                o.observe(v, &[KeyValue::new("stepup.rule", rule.to_string())]);
            }
        })
        .build();
    let m = Arc::clone(metrics);
    let _errors = meter
        .u64_observable_counter("stepup.rule.errors")
        .with_unit("{error}")
        .with_description("Signal and rule conditions that failed to evaluate, by id.")
        .with_callback(move |o| {
            for (rule, v) in m.snapshot().rule_errors {
                o.observe(v, &[KeyValue::new("stepup.rule", rule.to_string())]);
            }
        })
        .build();
    let m = Arc::clone(metrics);
    let _cache = meter
        .u64_observable_counter("stepup.cache.lookups")
        .with_unit("{lookup}")
        .with_description("Decision cache lookups by result.")
        .with_callback(move |o| {
            let s = m.snapshot();
            o.observe(s.cache_hits, &[KeyValue::new("stepup.cache.result", "hit")]);
            o.observe(
                s.cache_misses,
                &[KeyValue::new("stepup.cache.result", "miss")],
            );
        })
        .build();
    let m = Arc::clone(metrics);
    let _log = meter
        .u64_observable_counter("stepup.decision_log.dropped")
        .with_unit("{entry}")
        .with_description("Decision-log entries dropped because the queue was full.")
        .with_callback(move |o| o.observe(m.snapshot().log_dropped, &[]))
        .build();
}

/// The policy reloads and the serving revision, read at each export.
fn observe_policy(meter: &Meter, policy: Arc<dyn PolicyState>) {
    let e = Arc::clone(&policy);
    let _reloads = meter
        .u64_observable_counter("stepup.policy.reloads")
        .with_unit("{reload}")
        .with_description("Policy reloads by result.")
        .with_callback(move |o| {
            let (ok, failed) = e.reloads();
            o.observe(ok, &[KeyValue::new("stepup.reload.result", "ok")]);
            o.observe(failed, &[KeyValue::new("stepup.reload.result", "failed")]);
        })
        .build();
    let e = policy;
    let _info = meter
        .u64_observable_gauge("stepup.policy.info")
        .with_unit("1")
        .with_description("The serving policy set (value 1), by revision.")
        .with_callback(move |o| {
            o.observe(
                1,
                &[KeyValue::new(
                    "stepup.policy.revision",
                    e.revision().to_string(),
                )],
            );
        })
        .build();
}

/// A logger provider exporting over OTLP, for the decision log's `otlp`
/// sink. Call within a Tokio runtime.
pub fn logger_provider() -> Result<SdkLoggerProvider, String> {
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| e.to_string())?;
    Ok(SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build())
}
