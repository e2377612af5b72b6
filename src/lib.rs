//! stepup: a policy decision sidecar for step-up authentication.
//!
//! A service asks, over gRPC (`stepup.v1.DecisionService/Decide`), whether a
//! request may go ahead. The [`engine`] evaluates the risk signals and rules
//! of a [`policy::PolicySet`] (CEL conditions in YAML files) against the
//! request context and answers ALLOW, CHALLENGE (with the RFC 9470 step-up
//! requirement) or DENY, with reasons, risk score, decision id and policy
//! revision.
//!
//! - [`policy`]: load, validate and compile policy files.
//! - [`engine`]: the decision.
//! - [`cache`]: the decision cache.
//! - [`server`]: the gRPC server (Decide, health, reflection).
//! - [`config`]: settings from flags, environment and file.

pub mod cache;
pub mod cli;
pub mod config;
pub mod duration;
pub mod engine;
pub mod policy;
pub mod server;

pub use engine::{Decision, Engine, Outcome};
pub use policy::PolicySet;

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
}
