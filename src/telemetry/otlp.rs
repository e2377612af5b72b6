//! OTLP export of metrics and of the decision log, configured by the
//! standard OpenTelemetry environment variables (`OTEL_EXPORTER_OTLP_*`,
//! `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_METRICS_EXPORTER=none` to opt out).
//!
//! Metrics are read from the same atomics `/metrics` renders, by
//! observable instruments: exporting them adds nothing to the request path.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;

use super::metrics::Metrics;

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

/// Starts periodic OTLP export of `metrics` and `policy`. Call within a
/// Tokio runtime. Keep the provider; shut it down to flush.
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
    let m = Arc::clone(metrics);
    let _decisions = meter
        .u64_observable_counter("stepup_decisions")
        .with_description("Decisions by outcome.")
        .with_callback(move |o| {
            let s = m.snapshot();
            for (outcome, v) in ["allow", "challenge", "deny"].iter().zip(s.decisions) {
                o.observe(v, &[KeyValue::new("outcome", *outcome)]);
            }
        })
        .build();
    let m = Arc::clone(metrics);
    let _latency = meter
        .f64_observable_counter("stepup_decision_duration_seconds_sum")
        .with_description("Total time spent deciding, server side (the histogram is on /metrics).")
        .with_callback(move |o| o.observe(m.snapshot().latency_sum, &[]))
        .build();
    let m = Arc::clone(metrics);
    let _rules = meter
        .u64_observable_counter("stepup_rule_matches")
        .with_description("Decisions in which a rule matched, by rule id.")
        .with_callback(move |o| {
            for (rule, v) in m.snapshot().rule_matches {
                o.observe(v, &[KeyValue::new("rule", rule.to_string())]);
            }
        })
        .build();
    let m = Arc::clone(metrics);
    let _errors = meter
        .u64_observable_counter("stepup_rule_errors")
        .with_description("Conditions that failed to evaluate, by id.")
        .with_callback(move |o| {
            for (rule, v) in m.snapshot().rule_errors {
                o.observe(v, &[KeyValue::new("rule", rule.to_string())]);
            }
        })
        .build();
    let m = Arc::clone(metrics);
    let _cache = meter
        .u64_observable_counter("stepup_cache_lookups")
        .with_description("Decision cache lookups by result.")
        .with_callback(move |o| {
            let s = m.snapshot();
            o.observe(s.cache_hits, &[KeyValue::new("result", "hit")]);
            o.observe(s.cache_misses, &[KeyValue::new("result", "miss")]);
        })
        .build();
    let m = Arc::clone(metrics);
    let _log = meter
        .u64_observable_counter("stepup_decision_log_dropped")
        .with_description("Decision-log entries dropped because the queue was full.")
        .with_callback(move |o| o.observe(m.snapshot().log_dropped, &[]))
        .build();
    let e = Arc::clone(&policy);
    let _reloads = meter
        .u64_observable_counter("stepup_policy_reloads")
        .with_description("Policy reloads by result.")
        .with_callback(move |o| {
            let (ok, failed) = e.reloads();
            o.observe(ok, &[KeyValue::new("result", "ok")]);
            o.observe(failed, &[KeyValue::new("result", "failed")]);
        })
        .build();
    let e = policy;
    let _info = meter
        .u64_observable_gauge("stepup_policy_info")
        .with_description("The serving policy set (value 1), by revision.")
        .with_callback(move |o| {
            o.observe(1, &[KeyValue::new("revision", e.revision().to_string())]);
        })
        .build();
    Ok(provider)
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
