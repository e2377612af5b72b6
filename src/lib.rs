//! stepup: a policy decision sidecar for step-up authentication.
//!
//! A service asks, over gRPC (`stepup.v1.DecisionService/Decide`), whether a
//! request may go ahead. The engine evaluates the risk signals and rules of a
//! [`PolicySet`] (CEL conditions in YAML files) against the request context
//! and answers ALLOW, CHALLENGE (with the RFC 9470 step-up requirement) or
//! DENY, with reasons, risk score, decision id and policy revision.
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
//! | `config` | settings from flags, environment and file |
//! | `service` | the composition root: [`Service`] (policy swap, cache, history, metrics, log), reload |
//! | `server` | the gRPC and admin listeners over the service; [`run`] |
//! | `suite`, `replay` | policy tests (`stepup test`) and replay of recorded traffic |
//! | `cli` | the commands of the `stepup` binary |
//!
//! Unit tests may import from anywhere to build their fixtures.

pub mod cache;
pub mod cli;
pub mod config;
pub mod duration;
pub mod engine;
pub mod expr;
pub mod glob;
pub mod history;
pub(crate) mod json;
pub mod lists;
pub mod mapping;
pub mod policy;
pub mod replay;
pub mod request;
pub mod server;
pub mod service;
pub mod suite;
pub mod telemetry;

pub use cache::CacheConfig;
pub use engine::{Decision, Outcome};
pub use policy::PolicySet;
pub use server::run;
pub use service::Service;

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
}
