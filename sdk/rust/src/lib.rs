//! A client and `tower` middleware for the stepup sidecar, the policy
//! decision point for step-up authentication (gRPC `stepup.v1`).
//!
//! | module | what |
//! |---|---|
//! | [`proto`] | the `stepup.v1` messages and the generated gRPC client |
//! | [`Client`] | the typed async client: TCP, TLS, Unix socket; deadlines, safe retries, [`FailMode`] |
//! | [`StepUpLayer`] | the `tower` layer for axum and tonic servers |
//! | [`claims`] | the [`Session`](proto::Session) from a verified token's claims |
//! | [`Observer`] | hooks for metrics |
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use stepup_client::{Client, StepUpLayer, claims::StepUpClaims, proto};
//!
//! let client = Client::builder("http://127.0.0.1:7171").build()?;
//! let layer = StepUpLayer::new(client, |req: &http::Request<axum::body::Body>| {
//!     let claims = StepUpClaims::from_request(req)?;
//!     Some(proto::DecideRequest {
//!         action: "payments.refund".into(),
//!         subject: Some(proto::Subject { id: claims.sub.clone()?, ..Default::default() }),
//!         session: Some(claims.session()),
//!         ..Default::default()
//!     })
//! });
//! let app: axum::Router = axum::Router::new().layer(layer);
//! # Ok(()) }
//! ```

pub mod claims;
mod client;
mod error;
mod layer;
mod observe;
mod transport;

/// The `stepup.v1` messages and the gRPC client, generated at build time
/// from the sidecar's `proto/`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("stepup.v1");
}

pub use client::{Client, ClientBuilder, DEFAULT_DEADLINE, Decision, DecisionSource, FailMode};
pub use error::{BuildError, CallError};
pub use layer::{StepUpBody, StepUpLayer, StepUpService, challenge_body};
pub use observe::{CallEvent, CallResult, Method, NoopObserver, Observer};
pub use transport::TlsConfig;

/// The protobuf well-known types of [`proto`] (`Timestamp`, `Duration`,
/// `Value`), re-exported so that callers build them with the same version.
pub use pbjson_types;
