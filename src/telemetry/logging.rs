//! Logs and traces: `tracing` to standard error in text or JSON, and spans
//! exported over OTLP/gRPC when the standard `OTEL_*` environment variables
//! ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; off otherwise, and with
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`). Each gRPC call
//! gets a server span ([`call_span`]) named and attributed by OpenTelemetry's
//! RPC conventions; incoming W3C `traceparent` metadata makes it a child of
//! the caller's.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
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
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour(std::io::stderr().is_terminal()));
    let fmt = match format {
        LogFormat::Json => fmt.json().with_filter(logs).boxed(),
        LogFormat::Text => fmt.fmt_fields(escaped_fields()).with_filter(logs).boxed(),
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

/// Colour only for a person at a terminal: never into a file or a pipe, and
/// never when `NO_COLOR` is set to anything (<https://no-color.org>).
fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Text-format fields with control characters escaped (`\n`, `\u{1b}`):
/// field values carry request input (an action name, a header), and a raw
/// newline or terminal escape in one would forge a log line or repaint the
/// reader's terminal. JSON lines are escaped by the JSON writer already.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static
{
    use tracing_subscriber::field::MakeExt as _;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        if field.name() != "message" {
            write!(writer, "{}=", field.name())?;
        }
        write!(Escaped(writer), "{value:?}")
    })
    .delimited(" ")
}

/// Writes through to the log line, escaping control characters.
struct Escaped<'a, 'w>(&'a mut tracing_subscriber::fmt::format::Writer<'w>);

impl std::fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let mut rest = s;
        while let Some((i, c)) = rest.char_indices().find(|(_, c)| c.is_control()) {
            let (clean, tail) = rest.split_at(i);
            self.0.write_str(clean)?;
            write!(self.0, "{}", c.escape_default())?;
            rest = tail.get(c.len_utf8()..).unwrap_or_default();
        }
        self.0.write_str(rest)
    }
}

/// Reads W3C trace context from a request's headers (gRPC metadata).
pub struct HeaderExtractor<'a>(pub &'a hyper::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .map(hyper::header::HeaderName::as_str)
            .collect()
    }
}

/// The server span of one gRPC call to `method` (`Decide`, `Check`,
/// `RecordStepUp`; no span for a path the server does not serve), a child
/// of the caller's trace when the request carried `traceparent`; `None`
/// when traces are off, at the cost of one atomic load.
///
/// Named by OpenTelemetry's RPC conventions (`stepup.v1.DecisionService/Decide`),
/// kind server, with `rpc.system.name`, `rpc.method` (fully qualified) and,
/// at the end, `rpc.status_code` ([`record_status`]); also the older
/// conventions' `rpc.system`, `rpc.service` and `rpc.grpc.status_code`,
/// which tools still read. The decision fills the `stepup.*` attributes
/// ([`record`]).
pub fn call_span(headers: &hyper::HeaderMap, method: &'static str) -> Option<tracing::Span> {
    if !traces_enabled() {
        return None;
    }
    let full = super::metrics::full_method(method);
    let service = full.split_once('/')?.0;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let span = tracing::info_span!(
        target: "stepup::rpc",
        "rpc",
        otel.name = full,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system.name = "grpc",
        rpc.method = full,
        rpc.status_code = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.grpc.status_code = tracing::field::Empty,
        stepup.action = tracing::field::Empty,
        stepup.outcome = tracing::field::Empty,
        stepup.decision_id = tracing::field::Empty,
        stepup.policy_revision = tracing::field::Empty,
        stepup.risk = tracing::field::Empty,
        stepup.cache_hit = tracing::field::Empty,
    );
    let _ = span.set_parent(parent);
    Some(span)
}

/// The current call's span, for its handler to record the decision on:
/// `None` when traces are off (one atomic load) or outside a call.
pub fn current_call_span() -> Option<tracing::Span> {
    if !traces_enabled() {
        return None;
    }
    let span = tracing::Span::current();
    (span.metadata().map(tracing::Metadata::name) == Some("rpc")).then_some(span)
}

/// Records the decision on the call's span.
pub fn record(span: Option<&tracing::Span>, action: &str, d: &crate::engine::Decision) {
    if let Some(span) = span {
        span.record("stepup.action", action);
        span.record("stepup.outcome", outcome_name(d.outcome));
        span.record("stepup.decision_id", tracing::field::display(d.id));
        span.record("stepup.policy_revision", &*d.policy.revision);
        span.record("stepup.cache_hit", d.cache_hit);
        span.record("stepup.risk", d.assessment.risk_score);
    }
}

/// Records how the call ended: its status code, and the span's status
/// `error` for the codes that are the server's failure.
pub fn record_status(span: Option<&tracing::Span>, code: tonic::Code) {
    if let Some(span) = span {
        let name = super::metrics::code_name(code);
        span.record("rpc.status_code", name);
        span.record("rpc.grpc.status_code", code as i64);
        if super::metrics::server_error(code) {
            span.record("error.type", name);
            span.record("otel.status_code", "error");
        }
    }
}

fn outcome_name(o: crate::engine::Outcome) -> &'static str {
    match o {
        crate::engine::Outcome::Allow => "allow",
        crate::engine::Outcome::Challenge => "challenge",
        crate::engine::Outcome::Deny => "deny",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text_line(log: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(escaped_fields())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn request_input_cannot_forge_a_text_line_or_colour_it() {
        let action = "payments.refund\n2026-12-04T00:00:00Z  INFO forged\u{1b}[31m";
        let out = text_line(|| tracing::info!(action = %action, outcome = "Allow", "decided"));
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains('\u{1b}'), "{out}");
        assert!(
            out.contains(r#"decided action=payments.refund\n2026-12-04T00:00:00Z  INFO forged\u{1b}[31m outcome="Allow""#),
            "{out}"
        );
    }

    /// Collects the fields recorded on spans after their creation.
    #[derive(Clone, Default)]
    struct Recorded(Arc<Mutex<Vec<(String, String)>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorded {
        fn on_record(
            &self,
            _: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Visit<'a>(&'a mut Vec<(String, String)>);
            impl tracing::field::Visit for Visit<'_> {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    self.0.push((f.name().to_owned(), format!("{v:?}")));
                }
            }
            values.record(&mut Visit(&mut self.0.lock().unwrap()));
        }
    }

    fn status_fields(code: tonic::Code) -> Vec<(String, String)> {
        let recorded = Recorded::default();
        let subscriber = tracing_subscriber::registry().with(recorded.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                target: "stepup::rpc",
                "rpc",
                otel.status_code = tracing::field::Empty,
                rpc.status_code = tracing::field::Empty,
                rpc.grpc.status_code = tracing::field::Empty,
                "error.type" = tracing::field::Empty,
            );
            record_status(Some(&span), code);
        });
        recorded.0.lock().unwrap().clone()
    }

    #[test]
    fn only_the_servers_failures_make_the_span_an_error() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            status_fields(tonic::Code::InvalidArgument),
            pairs(&[
                ("rpc.status_code", "\"INVALID_ARGUMENT\""),
                ("rpc.grpc.status_code", "3")
            ])
        );
        assert_eq!(
            status_fields(tonic::Code::Unavailable),
            pairs(&[
                ("rpc.status_code", "\"UNAVAILABLE\""),
                ("rpc.grpc.status_code", "14"),
                ("error.type", "\"UNAVAILABLE\""),
                ("otel.status_code", "\"error\""),
            ])
        );
    }

    #[test]
    fn colour_only_at_a_terminal() {
        assert!(!colour(false));
        // `NO_COLOR` is read from the environment of the test process: only
        // assert the terminal case when the variable is unset.
        if std::env::var_os("NO_COLOR").is_none() {
            assert!(colour(true));
        }
    }
}
