//! The `tower` layer that enforces decisions in front of an axum or tonic
//! service: a user-supplied function maps each request to a `DecideRequest`
//! (or skips it); CHALLENGE is answered 401 with the sidecar's RFC 9470
//! `WWW-Authenticate` and a JSON body, DENY 403, a sidecar that cannot
//! answer 503 (or the fail mode's answer); ALLOW reaches the inner service
//! with the decision in the request extensions.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};

use crate::client::Client;
use crate::error::CallError;
use crate::proto::{DecideRequest, DecideResponse, Effect, Outcome};

/// The response body of a [`StepUpService`]: the inner service's, or the
/// layer's own JSON.
pub type StepUpBody<B> = Either<B, Full<Bytes>>;

/// Enforces step-up decisions on the services it wraps. `M` maps a request
/// to the `DecideRequest` to ask (or `None`: not a protected request, passed
/// on without a decision).
pub struct StepUpLayer<M> {
    client: Client,
    map: Arc<M>,
    pass_through: bool,
}

impl<M> Clone for StepUpLayer<M> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            map: Arc::clone(&self.map),
            pass_through: self.pass_through,
        }
    }
}

impl<M> StepUpLayer<M> {
    /// A layer asking `client` about each request `map` describes.
    pub fn new(client: Client, map: M) -> Self {
        Self {
            client,
            map: Arc::new(map),
            pass_through: false,
        }
    }

    /// Let the handler decide: CHALLENGE and DENY decisions are passed on to
    /// the inner service too (with the [`Decision`](crate::Decision) and [`DecideResponse`] in
    /// the extensions) instead of being answered here. A sidecar that cannot
    /// answer is still answered 503 under [`FailMode::Closed`](crate::FailMode::Closed).
    pub fn pass_through(mut self, pass_through: bool) -> Self {
        self.pass_through = pass_through;
        self
    }
}

impl<S, M> tower::Layer<S> for StepUpLayer<M> {
    type Service = StepUpService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        StepUpService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of a [`StepUpLayer`].
pub struct StepUpService<S, M> {
    inner: S,
    layer: StepUpLayer<M>,
}

impl<S: Clone, M> Clone for StepUpService<S, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, M, B, ResBody> tower::Service<Request<B>> for StepUpService<S, M>
where
    S: tower::Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    M: Fn(&Request<B>) -> Option<DecideRequest> + Send + Sync + 'static,
    B: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<StepUpBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was polled ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let asked = (self.layer.map)(&request);
        let client = self.layer.client.clone();
        let pass_through = self.layer.pass_through;
        let grpc = is_grpc(&request);
        Box::pin(async move {
            let Some(asked) = asked else {
                return inner.call(request).await.map(|r| r.map(Either::Left));
            };
            let decision = match client.decide_with_fail_mode(asked).await {
                Ok(decision) => decision,
                Err(err) => return Ok(error_response(grpc, &err)),
            };
            let answer = match decision.outcome() {
                Outcome::Allow => None,
                _ if pass_through => None,
                Outcome::Challenge => Some(challenge_response(grpc, &decision.response)),
                Outcome::Deny => Some(deny_response(grpc, &decision.response)),
                // Never sent by a sidecar: fail closed.
                Outcome::Unspecified => Some(json(
                    grpc,
                    StatusCode::FORBIDDEN,
                    &serde_json::json!({
                        "error": "access_denied",
                        "error_description": null,
                        "decision_id": decision.response.decision_id,
                    }),
                )),
            };
            if let Some(answer) = answer {
                return Ok(answer);
            }
            request.extensions_mut().insert(decision.response.clone());
            request.extensions_mut().insert(decision);
            inner.call(request).await.map(|r| r.map(Either::Left))
        })
    }
}

/// True for a gRPC call (a tonic server's request): answered with a gRPC
/// status rather than an HTTP error, which gRPC clients could not read.
fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The layer's own answer: `body` as JSON with `status`, or for a gRPC call
/// a trailers-only gRPC response with the matching code (401
/// UNAUTHENTICATED, 403 PERMISSION_DENIED, 503 UNAVAILABLE, else INTERNAL)
/// and the body's `error_description` (else `error`) as its message.
fn json<B>(grpc: bool, status: StatusCode, body: &serde_json::Value) -> Response<StepUpBody<B>> {
    if grpc {
        return grpc_status(status, body);
    }
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The first message of a matched rule with `effect`, for the end user.
fn message(response: &DecideResponse, effect: Effect) -> Option<&str> {
    response
        .reasons
        .iter()
        .find(|r| r.effect == i32::from(effect) && !r.message.is_empty())
        .map(|r| r.message.as_str())
}

/// The JSON body of the layer's 401 for a CHALLENGE (its
/// `WWW-Authenticate` header is the sidecar's value, byte for byte).
pub fn challenge_body(response: &DecideResponse) -> serde_json::Value {
    serde_json::json!({
        "error": "insufficient_user_authentication",
        "error_description": message(response, Effect::Challenge),
        "acr_values": response.acr_values.join(" "),
        "max_age": response.max_age.as_ref().map(|d| d.seconds),
        "decision_id": response.decision_id,
    })
}

fn challenge_response<B>(grpc: bool, response: &DecideResponse) -> Response<StepUpBody<B>> {
    let mut answer = json(grpc, StatusCode::UNAUTHORIZED, &challenge_body(response));
    match HeaderValue::from_str(&response.www_authenticate) {
        Ok(value) if !response.www_authenticate.is_empty() => {
            answer.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        // No usable challenge to send: still a 401, with the RFC 9470 error
        // alone, never a pass.
        _ => {
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"insufficient_user_authentication\""),
            );
        }
    }
    answer
}

fn deny_response<B>(grpc: bool, response: &DecideResponse) -> Response<StepUpBody<B>> {
    json(
        grpc,
        StatusCode::FORBIDDEN,
        &serde_json::json!({
            "error": "access_denied",
            "error_description": message(response, Effect::Deny),
            "decision_id": response.decision_id,
        }),
    )
}

/// A call that failed and that the fail mode did not answer: 503 when the
/// sidecar could not answer (fail closed), 500 for any other error (the
/// request the mapping built was refused: a bug to fix, logged by the
/// observer). Neither says more than that to the client.
fn error_response<B>(grpc: bool, err: &CallError) -> Response<StepUpBody<B>> {
    if err.is_unavailable() {
        let mut answer = json(
            grpc,
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({
                "error": "temporarily_unavailable",
                "error_description": "the authorization service is unavailable; the request was refused (fail closed)",
            }),
        );
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        answer
    } else {
        json(
            grpc,
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({
                "error": "server_error",
                "error_description": "the authorization check failed; the request was refused",
            }),
        )
    }
}

/// A trailers-only gRPC response (HTTP 200, `grpc-status` and
/// `grpc-message` in the headers, no body).
fn grpc_status<B>(status: StatusCode, body: &serde_json::Value) -> Response<StepUpBody<B>> {
    let code = match status {
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    };
    let message = body
        .get("error_description")
        .and_then(|v| v.as_str())
        .or_else(|| body.get("error").and_then(|v| v.as_str()))
        .unwrap_or_default();
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    if let Ok(value) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert("grpc-message", value);
    }
    response
}

/// `grpc-message` encoding: printable ASCII but `%` as is, every other byte
/// as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
