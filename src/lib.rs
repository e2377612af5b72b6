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
//! - [`history`]: what the sidecar remembers per subject (`history` in CEL).
//! - [`server`]: the gRPC server (Decide, health, reflection).
//! - [`config`]: settings from flags, environment and file.
//! - [`suite`]: policy tests (`stepup test`).
//! - [`replay`]: recorded traffic under a candidate policy set (`stepup replay`).

pub mod cache;
pub mod cli;
pub mod config;
pub mod duration;
pub mod engine;
pub mod history;
pub mod lists;
pub mod policy;
pub mod replay;
pub mod server;
pub mod suite;
pub mod telemetry;

pub use engine::{Decision, Engine, Outcome};

use std::future::Future;
use std::sync::Arc;

/// Serves decisions per `config` with `engine` until `shutdown` resolves:
/// binds the gRPC listener, runs the policy reload loop (directory watch and
/// SIGHUP) beside it, and drains in-flight calls on the way out.
pub async fn run(
    engine: Arc<Engine>,
    config: &config::Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), server::ServeError> {
    let listener = server::bind(config.listen).await?;
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let admin = match config.admin {
        Some(addr) => Some(
            server::admin::Admin::start(addr, Arc::clone(&engine), Arc::clone(&ready))
                .map_err(|source| server::ServeError::Bind { addr, source })?,
        ),
        None => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let reloader = Arc::new(
        policy::watch::Reloader::new(Arc::clone(&engine), config.policies.clone())
            .with_lists(config.lists.clone()),
    );
    let defaults = policy::watch::WatchOptions::default();
    let options = policy::watch::WatchOptions {
        notify: config.watch,
        poll: defaults.poll.filter(|_| config.watch),
        ..defaults
    };
    let reload = tokio::spawn(policy::watch::run(
        reloader,
        options,
        stopped(stop_rx.clone()),
    ));
    tokio::spawn(async move {
        shutdown.await;
        ready.store(false, std::sync::atomic::Ordering::Relaxed);
        let _ = stop_tx.send(true);
    });
    let options = server::ServeOptions {
        ext_authz: Arc::new(config.ext_authz.clone()),
    };
    let served = server::serve_with(Arc::clone(&engine), listener, options, stopped(stop_rx)).await;
    let _ = reload.await;
    // Calls are drained: flush the decision log and the history updates
    // queued for a shared backend, then stop the admin server.
    engine.close();
    if let Some(backend) = engine.history().backend() {
        backend.flush(std::time::Duration::from_secs(2)).await;
    }
    if let Some(admin) = admin {
        admin.stop();
    }
    served
}
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

    /// The encoded file descriptor set of Envoy's
    /// `envoy.service.auth.v3.Authorization` and its imports, for server
    /// reflection (the `envoy-types` crate exports none).
    pub const ENVOY_FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("envoy_descriptor");
}
