//! Logs and traces: `tracing` to standard error in text or JSON, and spans
//! exported over OTLP/gRPC when the standard `OTEL_*` environment variables
//! ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; off otherwise, and with
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`). Incoming W3C
//! `traceparent` metadata makes a decision's span a child of the caller's.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

static TRACES: AtomicBool = AtomicBool::new(false);

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether spans are exported: decisions create a span only then, so that
/// tracing costs nothing when it is off.
pub fn traces_enabled() -> bool {
    TRACES.load(Ordering::Relaxed)
}

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the span exporter.
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            tracing::warn!("trace exporter shutdown: {e}");
        }
    }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

fn otlp_requested() -> bool {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let none = std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled
        && !none
        && (env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Installs the global subscriber: `filter` (a level or `RUST_LOG`-style
/// directives) for logs in `format`, plus OTLP span export when the
/// environment configures it. Call within a Tokio runtime (the gRPC exporter
/// needs one).
pub fn init(filter: &str, format: LogFormat) -> Telemetry {
    let logs = tracing_subscriber::EnvFilter::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().with_filter(logs).boxed(),
        LogFormat::Text => fmt.with_filter(logs).boxed(),
    };

    let mut error = None;
    let provider = if otlp_requested() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => {
                let resource = opentelemetry_sdk::Resource::builder()
                    .with_service_name(
                        std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "stepup".into()),
                    )
                    .build();
                Some(
                    SdkTracerProvider::builder()
                        .with_batch_exporter(exporter)
                        .with_resource(resource)
                        .build(),
                )
            }
            Err(e) => {
                error = Some(e.to_string());
                None
            }
        }
    } else {
        None
    };
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        // Only stepup's own spans are exported.
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("stepup"))
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.target().starts_with("stepup")
            }))
    });
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    if let Some(e) = error {
        tracing::error!("OTLP trace export is configured but cannot start: {e}");
    }
    if provider.is_some() {
        TRACES.store(true, Ordering::Relaxed);
        tracing::info!("exporting traces over OTLP");
    }
    Telemetry { provider }
}

/// Reads W3C trace context from gRPC metadata.
pub struct MetadataExtractor<'a>(pub &'a tonic::metadata::MetadataMap);

impl opentelemetry::propagation::Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// The span of one decision, a child of the caller's trace when the call
/// carried `traceparent`; `None` when traces are off.
pub fn decision_span(
    metadata: &tonic::metadata::MetadataMap,
    method: &'static str,
) -> Option<tracing::Span> {
    if !traces_enabled() {
        return None;
    }
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(metadata)));
    let span = tracing::info_span!(
        target: "stepup::decision",
        "decide",
        rpc.method = method,
        action = tracing::field::Empty,
        outcome = tracing::field::Empty,
        decision_id = tracing::field::Empty,
        cache_hit = tracing::field::Empty,
        risk_score = tracing::field::Empty,
    );
    let _ = span.set_parent(parent);
    Some(span)
}

/// Records the decision on its span.
pub fn record(span: Option<&tracing::Span>, action: &str, d: &crate::engine::Decision) {
    if let Some(span) = span {
        span.record("action", action);
        span.record("outcome", tracing::field::debug(d.outcome));
        span.record("decision_id", tracing::field::display(d.id));
        span.record("cache_hit", d.cache_hit);
        span.record("risk_score", d.assessment.risk_score);
    }
}
