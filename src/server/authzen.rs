//! The AuthZEN Authorization API 1.0 over HTTP and JSON, with stepup's
//! step-up profile: `POST /access/v1/evaluation`, `POST
//! /access/v1/evaluations`, `POST /access/v1/search/action` and `GET
//! /.well-known/authzen-configuration`, served on the gRPC port (tonic
//! routes `/access/*` and `/.well-known/*` here, HTTP/1.1 and HTTP/2) and,
//! with `--http`, on a listener of their own ([`listener`]).
//!
//! Requests map to `DecideRequest`s ([`map`]) and are decided through the
//! same [`Service`] path as gRPC `Decide` and `DecideBatch`: the same
//! validation and time skew, history prefetch, cache, costly-decision
//! offloading, decision log (source `authzen`) and in-flight limit. A body
//! is read under a deadline and a size limit before a permit of the
//! in-flight limit is taken, so slow callers hold no decision slot.
//! Every request is counted by route and status
//! (`stepup_http_requests_total`, `stepup_http_server_request_duration_seconds`)
//! and, with traces on, gets an HTTP server span (`POST /access/v1/evaluation`).

pub mod listener;
pub mod map;
mod mount;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{ALLOW, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::{Map, Value as Json, json};
use tracing::Instrument as _;

use super::in_flight::InFlight;
use super::peer::{Peer, Transport};
use crate::engine::{Decision, Outcome};
use crate::proto::v1::DecideRequest;
use crate::request::validate_within;
use crate::service::Service;
use map::{BadRequest, Origins, Semantic};
pub use mount::Mounted;

/// `POST`: one decision.
pub const EVALUATION_PATH: &str = "/access/v1/evaluation";
/// `POST`: decisions in order (boxcarring).
pub const EVALUATIONS_PATH: &str = "/access/v1/evaluations";
/// `POST`: every action the policies name, each decided.
pub const SEARCH_ACTION_PATH: &str = "/access/v1/search/action";
/// `GET`: the PDP metadata.
pub const METADATA_PATH: &str = "/.well-known/authzen-configuration";

/// The step-up profile's identifier, in the metadata's `stepup` member.
pub const PROFILE: &str = "urn:stepup:authzen:profile:step-up:1";

/// Largest accepted request body; past it, 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Most evaluations in one request (as `DecideBatch`).
pub const MAX_EVALUATIONS: usize = super::grpc::MAX_BATCH;

/// How long a request body may take to arrive; past it, 408.
pub const BODY_DEADLINE: Duration = Duration::from_secs(5);

/// How long an early refusal waits for a body the client is already
/// sending (an HTTP/2 answer sent mid-body resets the stream, which some
/// clients report instead of the answer).
const DRAIN_DEADLINE: Duration = Duration::from_secs(1);

/// The decision log's `source` of these decisions.
const LOG_SOURCE: &str = "authzen";

/// The endpoints, each with its metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Evaluation,
    Evaluations,
    SearchAction,
    Metadata,
}

impl Route {
    fn of(path: &str) -> Option<Self> {
        match path {
            EVALUATION_PATH => Some(Self::Evaluation),
            EVALUATIONS_PATH => Some(Self::Evaluations),
            SEARCH_ACTION_PATH => Some(Self::SearchAction),
            METADATA_PATH => Some(Self::Metadata),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Self::Evaluation => EVALUATION_PATH,
            Self::Evaluations => EVALUATIONS_PATH,
            Self::SearchAction => SEARCH_ACTION_PATH,
            Self::Metadata => METADATA_PATH,
        }
    }

    fn method(self) -> Method {
        match self {
            Self::Metadata => Method::GET,
            _ => Method::POST,
        }
    }
}

/// The AuthZEN endpoints over a [`Service`].
pub struct AuthZen {
    engine: Arc<Service>,
    max_time_skew: Option<Duration>,
    /// The in-flight limit the gRPC calls share, taken once a body is in.
    in_flight: Arc<InFlight>,
}

impl std::fmt::Debug for AuthZen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthZen")
            .field("max_time_skew", &self.max_time_skew)
            .finish_non_exhaustive()
    }
}

/// A JSON response.
fn json_response(status: StatusCode, body: &Json) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An error response: `{"error": "...", "field": "..."}` (`field` when
/// one member of the request is at fault).
fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": message }))
}

impl From<BadRequest> for Response<Full<Bytes>> {
    fn from(e: BadRequest) -> Self {
        json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": e.to_string(), "field": e.field }),
        )
    }
}

/// The answer when the server stops before a decision runs.
fn shutting_down() -> Response<Full<Bytes>> {
    busy("the server is shutting down; retry on another replica")
}

/// 503 with `Retry-After: 1`.
fn busy(message: &str) -> Response<Full<Bytes>> {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Whether the request says its body is JSON (`application/json`, any
/// parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// `response`, after reading what arrives of `body` within
/// [`DRAIN_DEADLINE`] (at most [`MAX_BODY_BYTES`]).
async fn drained<B>(body: B, response: Response<Full<Bytes>>) -> Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ =
        tokio::time::timeout(DRAIN_DEADLINE, Limited::new(body, MAX_BODY_BYTES).collect()).await;
    response
}

/// How a body read ended.
enum Read {
    /// The whole body.
    Done(Vec<u8>),
    /// More than [`MAX_BODY_BYTES`].
    TooLarge,
    /// The transport failed.
    Failed,
}

/// Reads `body` to its end, or until it is over [`MAX_BODY_BYTES`].
async fn read_up_to<B>(body: &mut std::pin::Pin<&mut B>) -> Read
where
    B: hyper::body::Body<Data = Bytes>,
{
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Read::Failed;
        };
        if let Ok(data) = frame.into_data() {
            if out.len().saturating_add(data.len()) > MAX_BODY_BYTES {
                return Read::TooLarge;
            }
            out.extend_from_slice(&data);
        }
    }
    Read::Done(out)
}

/// Reads and discards what arrives of `body` within [`DRAIN_DEADLINE`], up
/// to four times [`MAX_BODY_BYTES`]: a refusal sent while an HTTP/2 client
/// is still sending ends its stream with a reset, which clients report
/// instead of the answer.
async fn discard<B>(body: &mut std::pin::Pin<&mut B>)
where
    B: hyper::body::Body<Data = Bytes>,
{
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen = seen.saturating_add(frame.data_ref().map_or(0, Bytes::len));
            if seen > MAX_BODY_BYTES.saturating_mul(4) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_DEADLINE, drain).await;
}

/// Reads a JSON object body within [`BODY_DEADLINE`] and [`MAX_BODY_BYTES`].
async fn read_object<B>(body: B) -> Result<Map<String, Json>, Response<Full<Bytes>>>
where
    B: hyper::body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let read = tokio::time::timeout(BODY_DEADLINE, read_up_to(&mut body)).await;
    let bytes = match read {
        Ok(Read::Done(b)) => b,
        Ok(Read::TooLarge) => {
            discard(&mut body).await;
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is over the limit of {MAX_BODY_BYTES} bytes"),
            ));
        }
        Ok(Read::Failed) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            ));
        }
        Err(_) => {
            return Err(error(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the request body did not arrive within {} s",
                    BODY_DEADLINE.as_secs()
                ),
            ));
        }
    };
    match serde_json::from_slice::<Json>(&bytes) {
        Ok(Json::Object(o)) => Ok(o),
        Ok(_) => Err(BadRequest {
            field: "body".to_owned(),
            problem: "must be a JSON object".to_owned(),
        }
        .into()),
        Err(e) => Err(BadRequest {
            field: "body".to_owned(),
            problem: format!("not JSON: {e}"),
        }
        .into()),
    }
}

/// The HTTP server span of a request to `route` (OpenTelemetry's HTTP
/// conventions: named `POST /access/v1/evaluation`, kind server), a child
/// of the caller's trace when it sent `traceparent`; `None` when traces
/// are off. The decision fills the same `stepup.*` attributes as gRPC
/// `Decide`'s span.
fn http_span(
    headers: &HeaderMap,
    method: &Method,
    route: Option<Route>,
    scheme: &'static str,
) -> Option<tracing::Span> {
    if !crate::telemetry::logging::traces_enabled() {
        return None;
    }
    use tracing::field::Empty;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&crate::telemetry::logging::HeaderExtractor(headers))
    });
    // Methods outside the standard set are `_OTHER` (OpenTelemetry's HTTP
    // conventions: clients cannot mint values); an unknown path is named
    // by its method only (paths are unbounded).
    let method = if is_standard(method) {
        method.as_str()
    } else {
        "_OTHER"
    };
    let name = match route {
        Some(r) => format!("{method} {}", r.path()),
        None => method.to_owned(),
    };
    let span = tracing::info_span!(
        target: "stepup::http",
        "http",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route.map(Route::path),
        url.scheme = scheme,
        http.response.status_code = Empty,
        "error.type" = Empty,
        stepup.action = Empty,
        stepup.outcome = Empty,
        stepup.decision_id = Empty,
        stepup.policy_revision = Empty,
        stepup.risk = Empty,
        stepup.cache_hit = Empty,
    );
    let _ = span.set_parent(parent);
    Some(span)
}

/// Whether `m` is one of the methods of RFC 9110 (and PATCH).
fn is_standard(m: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ]
    .contains(m)
}

/// Records the response status on the span; 5xx are the server's failure.
fn record_status(span: Option<&tracing::Span>, status: StatusCode) {
    if let Some(span) = span {
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("error.type", status.as_str());
            span.record("otel.status_code", "error");
        }
    }
}

/// `https` on a TLS connection, else `http`.
fn scheme_of(peer: Option<&Peer>) -> &'static str {
    match peer.map(|p| p.transport) {
        Some(Transport::Tls | Transport::MutualTls) => "https",
        _ => "http",
    }
}

/// Decided requests with their "now".
type Decided = (Vec<(DecideRequest, DateTime<Utc>)>, Vec<Decision>);

impl AuthZen {
    /// The endpoints over `engine`: a request's `time` only within
    /// `max_time_skew` of the clock (`None`: any), a decision only with a
    /// permit of `in_flight` (the limit gRPC calls share).
    pub fn new(
        engine: Arc<Service>,
        max_time_skew: Option<Duration>,
        in_flight: Arc<InFlight>,
    ) -> Arc<Self> {
        Arc::new(Self {
            engine,
            max_time_skew,
            in_flight,
        })
    }

    /// Answers one HTTP request: counted, timed, traced, and with the
    /// caller's `X-Request-ID` echoed.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let route = Route::of(req.uri().path());
        let peer = req.extensions().get::<Peer>().cloned();
        let scheme = scheme_of(peer.as_ref());
        let span = http_span(req.headers(), req.method(), route, scheme);
        let request_id = req.headers().get("x-request-id").cloned();
        let mut response = match &span {
            Some(s) => {
                self.route(req, route, peer, scheme, Some(s))
                    .instrument(s.clone())
                    .await
            }
            None => self.route(req, route, peer, scheme, None).await,
        };
        if let Some(id) = request_id {
            response.headers_mut().insert("x-request-id", id);
        }
        record_status(span.as_ref(), response.status());
        let label = route.map_or("unknown", |r| match r {
            Route::Evaluation => "evaluation",
            Route::Evaluations => "evaluations",
            Route::SearchAction => "search_action",
            Route::Metadata => "metadata",
        });
        self.engine
            .metrics()
            .http_call(label, response.status().as_u16(), started.elapsed());
        response
    }

    async fn route<B>(
        &self,
        req: Request<B>,
        route: Option<Route>,
        peer: Option<Peer>,
        scheme: &'static str,
        span: Option<&tracing::Span>,
    ) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let Some(route) = route else {
            let r = error(
                StatusCode::NOT_FOUND,
                &format!(
                    "no such endpoint: AuthZEN is served at {EVALUATION_PATH}, {EVALUATIONS_PATH}, \
                     {SEARCH_ACTION_PATH} and {METADATA_PATH}"
                ),
            );
            return drained(body, r).await;
        };
        let allowed = route.method();
        let head = route == Route::Metadata && parts.method == Method::HEAD;
        if parts.method != allowed && !head {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{} takes {allowed}", route.path()),
            );
            if let Ok(v) = HeaderValue::from_str(allowed.as_str()) {
                r.headers_mut().insert(ALLOW, v);
            }
            return drained(body, r).await;
        }
        if route == Route::Metadata {
            return self.metadata(&parts, scheme);
        }
        if !is_json(&parts.headers) {
            let r = error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the Content-Type must be application/json",
            );
            return drained(body, r).await;
        }
        let body = match read_object(body).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        // The shared permit only now: deciding is the work gRPC calls
        // compete with, and it no longer waits on the caller.
        let Some(_permit) = self.in_flight.try_enter() else {
            return busy(&format!(
                "overloaded: {} calls in flight, the most this server takes at once; retry later",
                self.in_flight.max()
            ));
        };
        let caller = peer.and_then(|p| p.identity);
        let answered = match route {
            Route::Evaluation => self.evaluation(&body, caller, span).await,
            Route::Evaluations => self.evaluations(&body, caller).await,
            _ => self.search_action(&body, caller).await,
        };
        match answered {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(r) => r,
        }
    }

    /// The PDP metadata, its URLs built from the request's scheme and host.
    fn metadata(&self, parts: &hyper::http::request::Parts, scheme: &str) -> Response<Full<Bytes>> {
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                let h = parts.headers.get(HOST)?.to_str().ok()?;
                h.parse::<hyper::http::uri::Authority>()
                    .ok()
                    .map(|a| a.as_str().to_owned())
            });
        let Some(host) = host else {
            return BadRequest {
                field: "Host".to_owned(),
                problem: "missing or not a host[:port]: the metadata's URLs are built from it"
                    .to_owned(),
            }
            .into();
        };
        let base = format!("{scheme}://{host}");
        let policy = self.engine.policy();
        json_response(
            StatusCode::OK,
            &json!({
                "policy_decision_point": base,
                "access_evaluation_endpoint": format!("{base}{EVALUATION_PATH}"),
                "access_evaluations_endpoint": format!("{base}{EVALUATIONS_PATH}"),
                "search_action_endpoint": format!("{base}{SEARCH_ACTION_PATH}"),
                "stepup": {
                    "profile": PROFILE,
                    "outcomes": ["allow", "challenge", "deny"],
                    "policy_revision": &*policy.revision,
                },
            }),
        )
    }

    /// The request of `origins`, checked: its "now", or the bad member.
    fn validated(
        &self,
        (req, origins): (DecideRequest, Origins),
        clock: DateTime<Utc>,
    ) -> Result<(DecideRequest, DateTime<Utc>), BadRequest> {
        match validate_within(&req, clock, self.max_time_skew) {
            Ok(now) => Ok((req, now)),
            Err(e) => Err(map::rename(e, &origins)),
        }
    }

    /// `POST /access/v1/evaluation`.
    async fn evaluation(
        &self,
        body: &Map<String, Json>,
        caller: Option<Arc<str>>,
        span: Option<&tracing::Span>,
    ) -> Result<Json, Response<Full<Bytes>>> {
        let top = |key: &'static str| body.get(key).filter(|v| !v.is_null()).map(|v| (v, key));
        let entities = map::Entities {
            subject: top("subject"),
            action: top("action"),
            resource: top("resource"),
            context: top("context"),
        };
        let mapped = map::decide_request(entities, &|k| k.to_owned())?;
        let (req, now) = self.validated(mapped, Utc::now())?;
        let (req, decision) = self.decide_one(req, now).await?;
        crate::telemetry::logging::record(span, &req.action, &decision);
        let answer = map::decision(&decision);
        self.engine.log_from(LOG_SOURCE, now, req, decision, caller);
        Ok(answer)
    }

    /// `POST /access/v1/evaluations`: without an `evaluations` array, one
    /// evaluation; with `execute_all`, every evaluation against one history
    /// snapshot (as `DecideBatch`); with a short-circuiting semantic, one
    /// after the other until the first deny (or permit): the rest are
    /// neither decided nor recorded.
    async fn evaluations(
        &self,
        body: &Map<String, Json>,
        caller: Option<Arc<str>>,
    ) -> Result<Json, Response<Full<Bytes>>> {
        let listed = body
            .get("evaluations")
            .and_then(Json::as_array)
            .is_some_and(|a| !a.is_empty());
        let semantic = map::semantic(body)?;
        if !listed {
            return self.evaluation(body, caller, None).await;
        }
        let clock = Utc::now();
        let items = map::evaluations(body)?
            .into_iter()
            .map(|m| self.validated(m, clock))
            .collect::<Result<Vec<_>, _>>()?;
        let (items, decisions) = match semantic {
            Semantic::ExecuteAll => self.decide_batch(items).await?,
            _ => self.decide_until(items, semantic).await?,
        };
        let answers: Vec<Json> = decisions.iter().map(map::decision).collect();
        self.log_all(items, decisions, caller);
        Ok(json!({ "evaluations": answers }))
    }

    /// `POST /access/v1/search/action`: every action the policy set names
    /// exactly, decided for the subject and resource against one clock and
    /// one history snapshot. `results` lists the allowed ones (as the
    /// specification's search semantics ask); `context.actions` every one
    /// with its decision.
    async fn search_action(
        &self,
        body: &Map<String, Json>,
        caller: Option<Arc<str>>,
    ) -> Result<Json, Response<Full<Bytes>>> {
        let policy = self.engine.policy();
        let actions = map::known_actions(&policy);
        let clock = Utc::now();
        let items = map::action_search(body, &actions)?
            .into_iter()
            .map(|m| self.validated(m, clock))
            .collect::<Result<Vec<_>, _>>()?;
        let (items, decisions) = if items.is_empty() {
            (items, Vec::new())
        } else {
            self.decide_batch(items).await?
        };
        let mut results = Vec::new();
        let mut each = Vec::with_capacity(decisions.len());
        for ((req, _), d) in items.iter().zip(&decisions) {
            if d.outcome == Outcome::Allow {
                results.push(json!({ "name": req.action }));
            }
            let mut answer = map::decision(d);
            if let Some(o) = answer.as_object_mut() {
                o.insert("name".into(), req.action.clone().into());
            }
            each.push(answer);
        }
        self.log_all(items, decisions, caller);
        Ok(json!({
            "results": results,
            "context": { "actions": each, "policy_revision": &*policy.revision },
        }))
    }

    /// Hands decided requests to the decision log.
    fn log_all(
        &self,
        items: Vec<(DecideRequest, DateTime<Utc>)>,
        decisions: Vec<Decision>,
        caller: Option<Arc<str>>,
    ) {
        for ((req, now), d) in items.into_iter().zip(decisions) {
            self.engine
                .log_from(LOG_SOURCE, now, req, d, caller.clone());
        }
    }

    /// One decision, as gRPC `Decide` makes it: the subject's history
    /// refreshed from a shared backend first, a costly one off the
    /// runtime's threads.
    async fn decide_one(
        &self,
        req: DecideRequest,
        now: DateTime<Utc>,
    ) -> Result<(DecideRequest, Decision), Response<Full<Bytes>>> {
        self.engine
            .decide_served(req, now, false)
            .await
            .ok_or_else(shutting_down)
    }

    /// Decisions of `items` against one history snapshot, as gRPC
    /// `DecideBatch` makes them.
    async fn decide_batch(
        &self,
        items: Vec<(DecideRequest, DateTime<Utc>)>,
    ) -> Result<Decided, Response<Full<Bytes>>> {
        self.engine
            .decide_batch_served(items)
            .await
            .ok_or_else(shutting_down)
    }

    /// Decisions of `items` one after the other, until `semantic` stops.
    async fn decide_until(
        &self,
        items: Vec<(DecideRequest, DateTime<Utc>)>,
        semantic: Semantic,
    ) -> Result<Decided, Response<Full<Bytes>>> {
        let mut decided = Vec::new();
        let mut decisions = Vec::new();
        for (req, now) in items {
            let (req, d) = self.decide_one(req, now).await?;
            let stop = map::stops(semantic, d.outcome == Outcome::Allow);
            decided.push((req, now));
            decisions.push(d);
            if stop {
                break;
            }
        }
        Ok((decided, decisions))
    }
}
