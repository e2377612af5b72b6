//! stepup: a policy decision sidecar for step-up authentication.
//!
//! A service asks, over gRPC (`stepup.v1.DecisionService/Decide`), whether a
//! request may go ahead. The engine evaluates the risk signals and rules of a
//! [`PolicySet`] (CEL conditions in YAML files) against the request context
//! and answers ALLOW, CHALLENGE (with the RFC 9470 step-up requirement) or
//! DENY, with reasons, risk score, decision id and policy revision.
//!
//! # Example
//!
//! Load the bundled example policies and decide a refund from a
//! password-only session:
//!
//! ```
//! use stepup::proto::v1::DecideRequest;
//! use stepup::{CacheConfig, Outcome, PolicySet, Service};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (policies, _warnings) = PolicySet::load(std::path::Path::new("policies"))?;
//! let service = Service::new(policies, CacheConfig::default());
//!
//! let request: DecideRequest = serde_json::from_str(r#"{
//!     "action": "payments.refund",
//!     "subject": { "id": "alice" },
//!     "session": { "acr": "urn:stepup:aal1", "amr": ["pwd"],
//!                  "authTime": "2026-11-27T09:00:00Z" },
//!     "resource": { "type": "order", "attributes": { "amount": 2500 } }
//! }"#)?;
//! let now = "2026-11-27T10:00:00Z".parse()?;
//! let decision = service.decide(&request, now, false);
//!
//! assert_eq!(decision.outcome, Outcome::Challenge);
//! assert!(decision.reasons().any(|(rule, _, _)| &**rule == "refund-large"));
//! assert_eq!(decision.acr_values()[0].as_ref(), "urn:stepup:aal2");
//! let challenge = decision.www_authenticate().unwrap_or_default();
//! assert!(challenge.starts_with(r#"Bearer error="insufficient_user_authentication""#));
//! # Ok(())
//! # }
//! ```
//!
//! # Architecture: one direction of dependencies
//!
//! Modules, lowest first. A module imports only from modules above it in
//! this list, never from one below; `tests/architecture.rs` checks it.
//!
//! | module | role |
//! | --- | --- |
//! | `proto`, `duration`, `glob`, `json` | generated types; leaf helpers (durations, action globs, a JSON writer) |
//! | `request` | the request schema: field views, validation and limits, JSON form, cache key |
//! | `lists` | IP lists and GeoIP, `ip_in` |
//! | `expr` | the condition language: CEL variables, `history` as CEL reads it, the native fast path |
//! | `policy` | load, check and compile policy files into a [`PolicySet`] |
//! | `engine` | the decision, pure over (policy set, request, clock, history view) |
//! | `cache` | the decision cache in front of the engine |
//! | `history` | what is remembered per subject: store, backends, recording, elevation |
//! | `mapping` | Envoy `CheckRequest` -> `DecideRequest` (ext_authz settings, tokens) |
//! | `telemetry` | metrics, the decision log, logging and OTLP |
//! | `trust` | who is believed: trusted token issuers and their keys (JWKS), signed-token verification, step-up reporters |
//! | `ssf` | the Shared Signals receiver: Security Event Tokens (CAEP) verified, checked against replays, their subjects mapped, their effects applied to history |
//! | `config` | settings from flags, environment and file |
//! | `service` | the composition root: [`Service`] (policy swap, cache, history, metrics, log), reload |
//! | `server` | the gRPC and admin listeners over the service; [`run`] |
//! | `suite`, `replay` | policy tests (`stepup test`) and replay of recorded traffic |
//! | `playground` | the policy playground (`stepup playground`): a local web page and its JSON API over an edited set |
//! | `cli` | the commands of the `stepup` binary |
//!
//! Unit tests may import from anywhere to build their fixtures.

mod cache;
// Public for the `stepup` binary (a separate crate target), not an API.
#[doc(hidden)]
pub mod cli;
mod config;
mod duration;
mod engine;
mod expr;
mod glob;
pub mod history;
mod json;
mod lists;
mod mapping;
mod playground;
mod policy;
mod replay;
mod request;
mod server;
mod service;
mod ssf;
mod suite;
mod telemetry;
mod trust;

// The API: what a program embedding the sidecar needs. Everything else is
// private to the crate.
pub use cache::CacheConfig;
pub use config::{Config, ConfigError, Limits, LogFormat, Overrides, SettingError};
pub use config::{DEFAULT_LISTEN_MODE, Listen, TlsConfig};
pub use engine::{Assessment, Decision, EvalError, Outcome, ShadowResult, TraceEntry, TraceKind};
pub use lists::ListsConfig;
pub use mapping::{ClaimName, FileExtAuthz, KeyError, KeyErrorKind, Mapping, MappingError, Origin};
pub use policy::{
    Code, CostLimits, CostReport, Diagnostic, Effect, Location, PolicySet, Report, Severity,
};
pub use request::{
    InvalidRequest, MAX_DEPTH, MAX_ENTRIES, MAX_STRING_BYTES, validate, validate_within,
    within_skew,
};
pub use server::listen::{Listener, bind as bind_listen};
pub use server::peer::{Peer, Transport};
pub use server::serve_all;
pub use server::tls::{ServerTls, TlsError};
pub use server::{
    HANDSHAKE_TIMEOUT, MAX_MESSAGE_BYTES, ServeError, ServeOptions, bind, run, serve, serve_with,
};
pub use service::watch::{Reload, ReloadStatus, Reloader, WatchOptions, run as watch};
pub use service::{Service, StartError};
pub use ssf::{ReceiveError, Received, Receiver, Selector, SsfConfig};
pub use telemetry::decision_log::{DecisionLog, DecisionLogConfig, Sampling, Sink};
pub use trust::{
    Expect, FileIssuer, FileTrust, IssuerConfig, KeySource, TokenError, Trust, TrustConfig,
    Verified,
};

/// Not API: the internals this crate's benchmarks, fuzz targets and
/// integration tests reach into, which as separate crates see only public
/// items (`rustls::internal` is the same arrangement). No stability promise:
/// anything here may change in any release.
#[doc(hidden)]
pub mod internal {
    pub use crate::cache::{DecisionCache, decide_with};
    pub use crate::config::keys::{KEYS as CONFIG_KEYS, KeyDoc, KeyKind};
    pub use crate::history::Backend;
    pub use crate::history::keys::{Keyer, SubjectKey};
    pub use crate::history::model::{Observation, SubjectHistory, Update, Verdict};
    pub use crate::history::redis::RedisBackend;
    pub use crate::lists::{IpList, Lists, add_ip_in};
    pub use crate::policy::diag::SourceFile;
    pub use crate::replay::{Baseline, ReplayOptions, replay};
    pub use crate::server::convert::response;
    pub use crate::server::ext_authz::check;
    pub use crate::server::grpc::DecisionApi;
    pub use crate::server::peer::{Peer, Transport};
    pub use crate::suite::parse::{Names as SuiteNames, read_file as read_suite_file};
    pub use crate::suite::{junit, run as run_suites, text as suite_text};
}

/// The generated protobuf types and gRPC stubs of `proto/`.
pub mod proto {
    /// `stepup.v1`.
    #[allow(missing_docs, clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("stepup.v1");
        include!(concat!(env!("OUT_DIR"), "/stepup.v1.serde.rs"));
    }

    /// The encoded file descriptor set of `proto/` and its imports, for
    /// server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("stepup_descriptor");

    /// The encoded file descriptor set of Envoy's
    /// `envoy.service.auth.v3.Authorization` and its imports, for server
    /// reflection (the `envoy-types` crate exports none).
    pub const ENVOY_FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("envoy_descriptor");

    /// A field's proto3 JSON name, by protoc's rule: `auth_time` ->
    /// `authTime` (each `_` dropped, the letter after it upper-cased).
    pub(crate) fn json_name(field: &str) -> String {
        let mut out = String::with_capacity(field.len());
        let mut upper = false;
        for c in field.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    }
}
