//! [`Counted`]: the one place gRPC calls are counted
//! (`stepup_grpc_requests_total{method,code}`), timed
//! (`stepup_grpc_server_handling_seconds{method}`) and, with tracing on,
//! given their server span (`stepup.v1.DecisionService/Decide`, ended with
//! the call's status code). It wraps a whole gRPC
//! service, so calls that fail before their handler runs (an undecodable
//! body, a message over the size limit) are counted too, and it answers an
//! undecodable body with `INVALID_ARGUMENT`, as the API promises, where
//! tonic says `INTERNAL`. With an [`InFlight`] limit it also sheds the calls
//! past it (`RESOURCE_EXHAUSTED`, counted like any other answer).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::{HeaderMap, Request, Response};
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::{Code, Status};

use super::call::{CallError, is_call_error};
use super::in_flight::{InFlight, Permit};
use crate::telemetry::metrics::Metrics;

/// The methods counted by name, with their request message types: a path
/// outside this table counts as `unknown`, so clients cannot mint label
/// values.
const METHODS: [(&str, &str, &str); 4] = [
    (
        "/stepup.v1.DecisionService/Decide",
        "Decide",
        "stepup.v1.DecideRequest",
    ),
    (
        "/stepup.v1.DecisionService/DecideBatch",
        "DecideBatch",
        "stepup.v1.DecideBatchRequest",
    ),
    (
        "/stepup.v1.DecisionService/RecordStepUp",
        "RecordStepUp",
        "stepup.v1.RecordStepUpRequest",
    ),
    (
        "/envoy.service.auth.v3.Authorization/Check",
        "Check",
        "envoy.service.auth.v3.CheckRequest",
    ),
];

/// A gRPC service whose every call is counted by method and status code.
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Arc<Metrics>,
    in_flight: Option<Arc<InFlight>>,
}

impl<S> Counted<S> {
    /// Counts the calls to `inner` in `metrics`.
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Self {
        Self {
            inner,
            metrics,
            in_flight: None,
        }
    }

    /// Admits a call only while `in_flight` has room (shared with the other
    /// services it limits); the others are answered `RESOURCE_EXHAUSTED`.
    #[must_use]
    pub fn limited(mut self, in_flight: Arc<InFlight>) -> Self {
        self.in_flight = Some(in_flight);
        self
    }
}

impl<S: NamedService> NamedService for Counted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for Counted<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<CountedBody>;
    type Error = Infallible;
    type Future = CountedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let path = req.uri().path();
        let (method, message) = METHODS
            .iter()
            .find(|(p, _, _)| *p == path)
            .map_or(("unknown", "request"), |(_, m, t)| (*m, *t));
        // The span covers the call from its request to its status; the
        // handler records its decision on it (it is current while the
        // handler runs). Made only when traces are exported.
        let span = crate::telemetry::logging::call_span(req.headers(), method);
        let call = Some(Call {
            metrics: Arc::clone(&self.metrics),
            method,
            message,
            started: Instant::now(),
            span,
        });
        let permit = match &self.in_flight {
            Some(limit) => match limit.try_enter() {
                Some(permit) => Some(permit),
                None => {
                    let shed = CallError::Overloaded { limit: limit.max() };
                    return CountedFuture {
                        state: State::Shed(Some(Status::from(shed).into_http())),
                        call,
                        permit: None,
                    };
                }
            },
            None => None,
        };
        CountedFuture {
            state: State::Called(self.inner.call(req)),
            call,
            permit,
        }
    }
}

/// One call, to be counted once its status is known.
#[derive(Debug)]
struct Call {
    metrics: Arc<Metrics>,
    method: &'static str,
    /// The request message type, for the `INVALID_ARGUMENT` message.
    message: &'static str,
    started: Instant,
    /// The call's server span, when traces are on.
    span: Option<tracing::Span>,
}

impl Call {
    /// Counts and times the call, and ends its span with `code`.
    fn count(self, code: Code) {
        self.metrics
            .grpc_call(self.method, code, self.started.elapsed());
        crate::telemetry::logging::record_status(self.span.as_ref(), code);
    }

    /// The response, counted now when the status is in its headers (every
    /// error of a unary call), else when its trailers go out.
    fn answer(self, response: Response<Body>) -> Response<CountedBody> {
        let Some(code) = status_code(response.headers()) else {
            return response.map(|inner| CountedBody {
                inner,
                call: Some(self),
            });
        };
        let answered_by_handler = response
            .extensions()
            .get::<Status>()
            .is_some_and(is_call_error);
        // Before the handler, tonic's INTERNAL is a body it could not
        // decode: the caller's fault, so INVALID_ARGUMENT.
        let response = if code == Code::Internal && !answered_by_handler {
            let detail = response.extensions().get::<Status>().map_or_else(
                || "cannot decode the body".to_owned(),
                |s| decoder_detail(s.message()),
            );
            Status::from(CallError::Malformed {
                message: self.message,
                detail,
            })
            .into_http()
        } else {
            response
        };
        self.count(status_code(response.headers()).unwrap_or(code));
        response.map(|inner| CountedBody { inner, call: None })
    }
}

/// The `grpc-status` of a header or trailer map.
fn status_code(headers: &HeaderMap) -> Option<Code> {
    headers
        .get(Status::GRPC_STATUS)
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// The decoder's message as one lowercase clause: `failed to decode
/// Protobuf message: invalid wire type value: 7` -> `invalid wire type
/// value: 7`, `Unexpected EOF decoding stream.` -> `unexpected EOF decoding
/// stream`.
fn decoder_detail(message: &str) -> String {
    let m = message
        .strip_prefix("failed to decode Protobuf message: ")
        .unwrap_or(message)
        .trim_end_matches('.');
    let mut chars = m.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && second.is_lowercase() => {
            first.to_lowercase().chain(m.chars().skip(1)).collect()
        }
        _ => m.to_owned(),
    }
}

/// The future of a [`Counted`] call.
#[derive(Debug)]
pub struct CountedFuture<F> {
    state: State<F>,
    call: Option<Call>,
    /// The call's place in flight, until its handler answers.
    permit: Option<Permit>,
}

/// Where a call is.
#[derive(Debug)]
enum State<F> {
    /// With its handler.
    Called(F),
    /// Shed: the answer, until it is taken.
    Shed(Option<Response<Body>>),
}

impl<F> Future for CountedFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>> + Unpin,
{
    type Output = Result<Response<CountedBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let response = match &mut this.state {
            State::Called(inner) => {
                // The handler runs within the call's span.
                let _entered = this
                    .call
                    .as_ref()
                    .and_then(|c| c.span.as_ref())
                    .map(tracing::Span::enter);
                match ready!(Pin::new(inner).poll(cx)) {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
            State::Shed(answer) => answer
                .take()
                .unwrap_or_else(|| Response::new(Body::empty())),
        };
        self.permit = None;
        Poll::Ready(Ok(match self.call.take() {
            Some(call) => call.answer(response),
            None => response.map(|inner| CountedBody { inner, call: None }),
        }))
    }
}

/// A response body that counts its call when the trailers carrying the
/// status go out, or as `CANCELLED` when it is dropped before (the client
/// went away).
#[derive(Debug)]
pub struct CountedBody {
    inner: Body,
    call: Option<Call>,
}

impl CountedBody {
    fn finish(&mut self, code: Code) {
        if let Some(call) = self.call.take() {
            call.count(code);
        }
    }
}

impl hyper::body::Body for CountedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(code) = f.trailers_ref().and_then(status_code) {
                    self.finish(code);
                }
            }
            Some(Err(status)) => self.finish(status.code()),
            // Ended without a status: not a gRPC answer.
            None => self.finish(Code::Unknown),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_messages_become_one_lowercase_clause() {
        assert_eq!(
            decoder_detail("failed to decode Protobuf message: invalid wire type value: 7"),
            "invalid wire type value: 7"
        );
        assert_eq!(
            decoder_detail("Unexpected EOF decoding stream."),
            "unexpected EOF decoding stream"
        );
        assert_eq!(
            decoder_detail("Missing request message."),
            "missing request message"
        );
        assert_eq!(decoder_detail("EOF"), "EOF");
    }
}
