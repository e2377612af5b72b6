//! `stepup serve`: the settings, the runtime, logging and telemetry around
//! [`crate::server::run`], until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::sync::Arc;

use super::{EXIT_RUNTIME, EXIT_USAGE, Failure, STACK_BYTES};
use crate::config::{LogFormat, Overrides};
use crate::service::{Service, StartError};

/// `stepup serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory of policy files (*.yaml, *.yml, searched recursively)
    /// [default: the config file's `policies`].
    #[arg(long, env = "STEPUP_POLICIES", value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// gRPC listen address: IP:PORT, or unix:PATH for a Unix domain socket
    /// (a stale socket file is replaced at start, the file is removed at
    /// shutdown) [default: 127.0.0.1:7171]. Plaintext TCP on a non-loopback
    /// address starts with a warning: anyone who reaches the port can ask
    /// for decisions; serve TLS (--tls-cert/--tls-key), require client
    /// certificates (--tls-client-ca) or use a Unix socket, unless a mesh
    /// proxy terminates mTLS in front of the port.
    #[arg(long, env = "STEPUP_LISTEN", value_name = "ADDR|unix:PATH")]
    pub listen: Option<String>,
    /// Permissions of the Unix socket file, octal: who may connect
    /// (connecting needs write permission) [default: 0660].
    #[arg(long, env = "STEPUP_LISTEN_MODE", value_name = "MODE")]
    pub listen_mode: Option<String>,
    /// Serve gRPC over TLS with this certificate chain (PEM, leaf first)
    /// and the key of --tls-key (or `[tls] cert` and `key` in the config
    /// file). The files are reloaded when they change (e.g. renewed by
    /// cert-manager), every 10s and on SIGHUP, without dropping
    /// connections; a pair that does not load is logged and the previous
    /// one kept [default: none, plaintext].
    #[arg(long, env = "STEPUP_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "STEPUP_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require a client certificate signed by a CA in FILE (PEM): mutual
    /// TLS. The caller's identity (URI SAN such as a SPIFFE ID, else DNS
    /// SAN, else subject CN) is logged with each decision as `caller`.
    /// Needs --tls-cert and --tls-key [default: none, no client
    /// certificate asked for].
    #[arg(long, env = "STEPUP_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Do not watch the policy directory (reload on SIGHUP only). By default
    /// changes are picked up within a second; an invalid new set is
    /// rejected and the last good one keeps serving.
    #[arg(long, env = "STEPUP_NO_WATCH", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_watch: bool,
    /// Admin HTTP listener for /metrics, /livez, /readyz and /policy, or
    /// `off` [default: 127.0.0.1:7172].
    #[arg(long, env = "STEPUP_ADMIN", value_name = "ADDR|off")]
    pub admin: Option<String>,
    /// Serve the AuthZEN Authorization API (`/access/v1/*`,
    /// `/.well-known/authzen-configuration`) on a listener of its own too:
    /// IP:PORT or unix:PATH, HTTP/1.1 and HTTP/2, with the gRPC listener's
    /// TLS and client-certificate settings (or `[http] listen` in the
    /// config file). The endpoints are always on the gRPC port.
    #[arg(long, env = "STEPUP_HTTP", value_name = "ADDR|unix:PATH")]
    pub http: Option<String>,
    /// Write every decision as a JSON line to `stdout` or to FILE (rotated
    /// by size), or as OTLP log records (`otlp`, to the collector the
    /// OTEL_EXPORTER_OTLP_* variables name); masking, sampling and rotation
    /// are set in the config file [default: off].
    #[arg(long, env = "STEPUP_DECISION_LOG", value_name = "stdout|otlp|FILE")]
    pub decision_log: Option<String>,
    /// Threads serving gRPC [default: the cores this process may use; with
    /// one, a single-threaded runtime].
    #[arg(long, env = "STEPUP_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,
    /// Config file (TOML); flags and STEPUP_* variables override it.
    /// `[history] backend = "redis"` with `redis_url` shares behavioural
    /// history between replicas (see `docs/src/reference/config.md`)
    /// [default: none].
    #[arg(long, env = "STEPUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Decision cache entries; 0 turns the cache off [default: 100000].
    #[arg(long, env = "STEPUP_CACHE_SIZE", value_name = "N")]
    pub cache_size: Option<u64>,
    /// Decision cache entry lifetime, e.g. 30s, 5m [default: 60s].
    #[arg(long, env = "STEPUP_CACHE_TTL", value_name = "DURATION")]
    pub cache_ttl: Option<String>,
    /// Log filter: a level (info, debug) or a RUST_LOG-style directive
    /// [default: info; RUST_LOG is used when neither flag nor file sets it].
    #[arg(long, env = "STEPUP_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Log format [default: text].
    #[arg(long, env = "STEPUP_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Calls in flight at once (gRPC Decide, DecideBatch, RecordStepUp and
    /// Check, AuthZEN and Shared Signals requests); past it a call is
    /// refused at once, not queued: RESOURCE_EXHAUSTED over gRPC, 503 over
    /// HTTP (health checks never are) [default: 1024].
    #[arg(long, env = "STEPUP_MAX_IN_FLIGHT", value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// How far a request's `time` may lie from the server clock, past or
    /// future, e.g. 5m; beyond it the call is answered INVALID_ARGUMENT.
    /// `off` accepts any time (for replaying a recorded timeline)
    /// [default: 5m].
    #[arg(long, env = "STEPUP_MAX_TIME_SKEW", value_name = "DURATION|off")]
    pub max_time_skew: Option<String>,
}

impl ServeArgs {
    /// The flag and environment values, for [`crate::config::Config::resolve`].
    pub fn overrides(&self) -> Overrides {
        Overrides {
            policies: self.policies.clone(),
            listen: self.listen.clone(),
            listen_mode: self.listen_mode.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_ca: self.tls_client_ca.clone(),
            watch: self.no_watch.then_some(false),
            admin: self.admin.clone(),
            decision_log: self.decision_log.clone(),
            cache_size: self.cache_size,
            cache_ttl: self.cache_ttl.clone(),
            log_level: self
                .log_level
                .clone()
                .or_else(|| std::env::var("RUST_LOG").ok()),
            log_format: self.log_format,
            max_in_flight: self.max_in_flight,
            max_time_skew: self.max_time_skew.clone(),
            http: self.http.clone(),
        }
    }
}

/// The service `config` describes, with start-up failures mapped to exit
/// codes: an invalid policy set [`EXIT_INVALID_POLICY`](super::EXIT_INVALID_POLICY), a history backend
/// or decision log that cannot be set up [`EXIT_RUNTIME`].
pub fn service_for(config: &crate::config::Config) -> Result<Arc<Service>, Failure> {
    match Service::start(config) {
        Ok(service) => Ok(Arc::new(service)),
        Err(StartError::Policy(report)) => Err(Failure::policy(&report)),
        Err(e @ (StartError::HistoryBackend(_) | StartError::DecisionLog(_))) => {
            Err(Failure::runtime(format!("error: {e}")))
        }
    }
}

/// `stepup serve`: resolves the settings, starts the runtime, logging and
/// telemetry, and serves until SIGTERM or SIGINT.
pub fn serve(args: &ServeArgs) -> Result<String, Failure> {
    let config =
        crate::config::Config::resolve(args.overrides(), args.config.as_deref()).map_err(|e| {
            Failure::usage(
                e.problems
                    .iter()
                    .map(|p| format!("error: {p}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
    // One worker per core the process may use (cgroup quotas and CPU
    // affinity included); with a single core, a work-stealing scheduler
    // only adds overhead, so run everything on one thread.
    let workers = args
        .worker_threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    // Workers and the blocking pool (policy reloads) evaluate and compile
    // conditions: they get the stack the condition bounds are tested on.
    let runtime = builder
        .thread_stack_size(STACK_BYTES)
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("error: cannot start the runtime: {e}")))?;
    // The OTLP exporters need the runtime to exist when they are built.
    let (telemetry, engine, metrics) = {
        let _rt = runtime.enter();
        let telemetry = crate::telemetry::logging::init(&config.log_level, config.log_format);
        let engine = match service_for(&config) {
            Ok(e) => e,
            Err(e) => {
                telemetry.shutdown();
                return Err(e);
            }
        };
        let metrics = if crate::telemetry::otlp::metrics_requested() {
            match crate::telemetry::otlp::start_metrics(
                engine.metrics(),
                std::sync::Arc::clone(&engine) as _,
            ) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!("OTLP metrics are configured but cannot start: {e}");
                    None
                }
            }
        } else {
            None
        };
        (telemetry, engine, metrics)
    };
    let served = runtime.block_on(crate::server::run(engine, &config, shutdown_signal()));
    if let Some(m) = metrics
        && let Err(e) = m.shutdown()
    {
        tracing::warn!("OTLP metrics shutdown: {e}");
    }
    telemetry.shutdown();
    served.map_err(|e| {
        // TLS files that do not load are input named by flags or the config
        // file, like the file itself; everything else is the environment.
        let code = match e {
            crate::server::ServeError::Tls(_) => EXIT_USAGE,
            _ => EXIT_RUNTIME,
        };
        Failure::new(format!("error: {e}"), code)
    })?;
    Ok(String::new())
}

/// Completes on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
pub(super) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
