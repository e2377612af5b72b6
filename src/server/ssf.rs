//! `POST /ssf/events`: push delivery of Security Event Tokens (RFC 8935) on
//! the gRPC port, over HTTP/1.1 or HTTP/2. tonic routes a path by its first
//! segment to the service of that name, so `/ssf/...` reaches [`SsfApi`]
//! (its `NAME` is `ssf`) beside the gRPC services.
//!
//! Answers: 202 for an accepted SET; 400 with the RFC 8935 error object
//! (`{"err": ..., "description": ...}`) for a SET at fault; 401 without the
//! stream's bearer token, 403 with another; 404, 405, 413 and 415 for a
//! request that is not a SET delivery; 408 for a body not in within
//! [`BODY_DEADLINE`]; 503 past the receiver's own limit
//! ([`MAX_DELIVERIES`] at once), past the in-flight limit, or when the
//! event cannot be taken now (the transmitter retries).
//!
//! A delivery holds nothing that decisions need while its body arrives:
//! the bearer token is checked on the headers, the body is read under a
//! deadline and within the receiver's own limit, and only then is a permit
//! of the in-flight limit that `Decide` and `Check` share taken, for the
//! verification and the effect. So slow or unauthenticated deliveries
//! cannot refuse decisions. Error descriptions name what the SET did
//! wrong, never the receiver's configuration (the log line has the rest).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::server::NamedService;

use super::in_flight::InFlight;
use crate::service::Service as Engine;
use crate::ssf::{MAX_SET_BYTES, ReceiveError, Receiver};

/// The path transmitters push to.
pub const EVENTS_PATH: &str = "/ssf/events";

/// The media type of a SET delivery (RFC 8935 section 2).
pub const SECEVENT_JWT: &str = "application/secevent+jwt";

/// Deliveries handled at once, from their headers to their answer; past
/// it, 503. A transmitter pushes one SET at a time per stream, so a few
/// suffice; the bound keeps slow callers from holding more.
pub const MAX_DELIVERIES: usize = 16;

/// How long the body of a delivery may take to arrive (a SET is at most
/// [`MAX_SET_BYTES`]); past it, 408.
pub const BODY_DEADLINE: Duration = Duration::from_secs(5);

/// The receiver endpoint as a service of the gRPC server.
#[derive(Clone)]
pub struct SsfApi {
    engine: Arc<Engine>,
    receiver: Arc<Receiver>,
    /// The in-flight limit `Decide` and `Check` share, taken once the body
    /// is in.
    in_flight: Arc<InFlight>,
    /// The receiver's own limit ([`MAX_DELIVERIES`]), taken on the headers.
    deliveries: Arc<InFlight>,
}

/// How long an early refusal (wrong path, method, content type or bearer
/// token) waits for a body the client is already sending, before it
/// answers without it.
const DRAIN_DEADLINE: Duration = Duration::from_secs(1);

/// `response`, after reading and discarding what arrives of `body` within
/// [`DRAIN_DEADLINE`] (at most a SET's size). An HTTP/2 response sent while
/// the client is still sending its body ends the stream with a reset, which
/// some clients (curl) report as a stream error instead of the answer. No
/// limit is held meanwhile: a client that never sends costs one task for a
/// second.
async fn drained(body: Body, response: Response<Body>) -> Response<Body> {
    let _ = tokio::time::timeout(DRAIN_DEADLINE, Limited::new(body, MAX_SET_BYTES).collect()).await;
    response
}

impl SsfApi {
    /// Receives events with `receiver` into `engine`'s history (keys from
    /// its trusted issuers): at most [`MAX_DELIVERIES`] at once, each
    /// taking a permit of the gRPC calls' `in_flight` limit only while its
    /// SET, fully read, is verified and applied.
    pub fn new(engine: Arc<Engine>, receiver: Arc<Receiver>, in_flight: Arc<InFlight>) -> Self {
        Self {
            engine,
            receiver,
            in_flight,
            deliveries: InFlight::new(MAX_DELIVERIES),
        }
    }
}

impl NamedService for SsfApi {
    const NAME: &'static str = "ssf";
}

impl Service<Request<Body>> for SsfApi {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

/// A response with `body` as JSON.
fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::new(Full::new(Bytes::from(body.to_string()))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The RFC 8935 error object.
fn failure(status: StatusCode, err: &str, description: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "err": err, "description": description }),
    )
}

/// Whether the request is a SET delivery by its `Content-Type` (parameters
/// such as `charset` are ignored).
fn is_secevent(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(SECEVENT_JWT))
}

/// The bearer token of the request, if it has one (`Authorization: Bearer
/// ...`, the scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl SsfApi {
    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        if parts.uri.path() != EVENTS_PATH {
            let r = failure(
                StatusCode::NOT_FOUND,
                "invalid_request",
                "no such endpoint: SETs are delivered to POST /ssf/events",
            );
            return drained(body, r).await;
        }
        if parts.method != Method::POST {
            let mut r = failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "SETs are delivered with POST",
            );
            r.headers_mut()
                .insert(ALLOW, hyper::header::HeaderValue::from_static("POST"));
            return drained(body, r).await;
        }
        if !is_secevent(&parts.headers) {
            let r = failure(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "the Content-Type must be application/secevent+jwt",
            );
            return drained(body, r).await;
        }
        let bearer = bearer(&parts.headers);
        if let Err(e) = self.receiver.admits_bearer(bearer) {
            return drained(body, refused(&e)).await;
        }
        let Some(_delivery) = self.deliveries.try_enter() else {
            return busy("too many deliveries at once: retry later");
        };
        let read = tokio::time::timeout(BODY_DEADLINE, Limited::new(body, MAX_SET_BYTES).collect());
        let bytes = match read.await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return failure(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request",
                    &format!("a SET is at most {MAX_SET_BYTES} bytes"),
                );
            }
            Ok(Err(_)) => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the request body could not be read",
                );
            }
            Err(_) => {
                tracing::info!(
                    deadline_s = BODY_DEADLINE.as_secs(),
                    "security event refused: the body did not arrive in time"
                );
                return failure(
                    StatusCode::REQUEST_TIMEOUT,
                    "invalid_request",
                    &format!(
                        "the body did not arrive within {} s",
                        BODY_DEADLINE.as_secs()
                    ),
                );
            }
        };
        // The shared permit only now: verifying and applying is the work
        // decisions compete with, and it no longer waits on the caller.
        let Some(_permit) = self.in_flight.try_enter() else {
            return busy("too many calls in flight: retry later");
        };
        let Ok(token) = std::str::from_utf8(&bytes) else {
            return failure(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body is not a compact JWS (not UTF-8)",
            );
        };
        let policy = self.engine.policy();
        let received = self
            .receiver
            .receive(
                token.trim(),
                bearer,
                self.engine.trust(),
                self.engine.history(),
                &policy,
                chrono::Utc::now(),
            )
            .await;
        match received {
            Ok(r) => {
                tracing::info!(
                    event = %r.kind,
                    jti = %r.jti,
                    txn = r.txn.as_deref().unwrap_or("-"),
                    effect = r.effect,
                    "security event received"
                );
                let mut resp = Response::new(Body::empty());
                *resp.status_mut() = StatusCode::ACCEPTED;
                resp
            }
            Err(e) => refused(&e),
        }
    }
}

/// 503 with `Retry-After: 1`: the receiver is busy.
fn busy(description: &str) -> Response<Body> {
    let mut r = failure(StatusCode::SERVICE_UNAVAILABLE, "unavailable", description);
    r.headers_mut()
        .insert(RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
    r
}

/// The answer to a refused SET: the whole reason in the log, a description
/// that does not reveal the configuration in the body.
fn refused(e: &ReceiveError) -> Response<Body> {
    tracing::info!(err = e.err(), reason = %e, "security event refused");
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = failure(status, e.err(), &e.description());
    match e {
        ReceiveError::NoToken => {
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
        }
        ReceiveError::WrongToken => {
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        ReceiveError::Unavailable(_)
        | ReceiveError::Token(crate::trust::TokenError::KeysUnavailable { .. }) => {
            r.headers_mut()
                .insert(RETRY_AFTER, hyper::header::HeaderValue::from_static("5"));
        }
        _ => {}
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_content_type_and_bearer() {
        let mut h = HeaderMap::new();
        assert!(!is_secevent(&h));
        h.insert(
            CONTENT_TYPE,
            "Application/SecEvent+JWT; charset=utf-8".parse().unwrap(),
        );
        assert!(is_secevent(&h));
        h.insert(CONTENT_TYPE, "application/jwt".parse().unwrap());
        assert!(!is_secevent(&h));
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }

    /// A body that never arrives: a caller sending headers only.
    struct Never;

    impl hyper::body::Body for Never {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
            Poll::Pending
        }
    }

    fn api(in_flight: &Arc<InFlight>) -> SsfApi {
        use crate::ssf::config::{Stream, Token};
        let (policy, _) = crate::policy::PolicySet::from_str(
            "levels.yaml",
            "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - name: aal1\n    acr: [\"a1\"]\n",
        )
        .unwrap();
        let engine = Arc::new(Engine::new(policy, crate::cache::CacheConfig::default()));
        let receiver = Receiver::new(crate::ssf::SsfConfig {
            enabled: true,
            audience: vec!["https://stepup.test/ssf".to_owned()],
            streams: vec![Stream {
                issuer: "https://idp.test".to_owned(),
                token: Some(Token("right".to_owned())),
            }],
            ..crate::ssf::SsfConfig::default()
        });
        SsfApi::new(engine, Arc::new(receiver), Arc::clone(in_flight))
    }

    fn slow(bearer: Option<&str>) -> Request<Body> {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(EVENTS_PATH)
            .header(CONTENT_TYPE, SECEVENT_JWT);
        if let Some(t) = bearer {
            b = b.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        b.body(Body::new(Never)).unwrap()
    }

    /// Without the stream's token a delivery is answered from its headers,
    /// its body awaited at most [`DRAIN_DEADLINE`] and under no limit; with
    /// it, deliveries whose body does not
    /// come hold the receiver's own limit, not the shared one.
    #[tokio::test]
    async fn the_token_is_checked_on_the_headers_and_slow_bodies_hold_their_own_limit() {
        let in_flight = InFlight::new(2);
        let api = api(&in_flight);
        let quick = Duration::from_secs(1);
        let drained = DRAIN_DEADLINE + quick;
        let r = tokio::time::timeout(drained, api.handle(slow(None)))
            .await
            .expect("answered without the body");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = tokio::time::timeout(drained, api.handle(slow(Some("wrong"))))
            .await
            .expect("answered without the body");
        assert_eq!(r.status(), StatusCode::FORBIDDEN);

        let held: Vec<_> = (0..MAX_DELIVERIES)
            .map(|_| {
                let api = api.clone();
                tokio::spawn(async move { api.handle(slow(Some("right"))).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(held.iter().all(|h| !h.is_finished()), "waiting for bodies");
        let r = tokio::time::timeout(quick, api.handle(slow(Some("right"))))
            .await
            .expect("refused at once past the limit");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        // Decisions still have every slot.
        let permits = [in_flight.try_enter(), in_flight.try_enter()];
        assert!(permits.iter().all(Option::is_some));
        drop(permits);
        for h in held {
            h.abort();
        }
    }
}
