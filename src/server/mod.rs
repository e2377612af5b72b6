//! The gRPC server: `stepup.v1.DecisionService`, Envoy's
//! `envoy.service.auth.v3.Authorization` ([`ext_authz`]), `grpc.health.v1.Health`
//! and server reflection (v1 and v1alpha) on one port. Errors become a `Status`
//! in one place ([`call::CallError`]); calls are counted in one place
//! ([`counted::Counted`]), which also sheds those past the in-flight limit
//! ([`in_flight::InFlight`]). A connection must open HTTP/2 within the
//! handshake timeout ([`handshake::Handshaking`]). The listener is TCP or a
//! Unix socket, plaintext or TLS ([`tls`]), and tells each call who is
//! calling ([`peer::Peer`], set by [`listen::Incoming`]).

pub mod admin;
pub mod authzen;
pub mod call;
pub mod convert;
pub mod counted;
pub mod ext_authz;
pub mod grpc;
pub mod handshake;
pub mod in_flight;
pub mod listen;
pub mod peer;
pub mod record;
pub mod ssf;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use counted::Counted;

use crate::proto::v1::decision_service_server::DecisionServiceServer;
use crate::service::Service;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;

/// The health service name whose status says whether the last policy
/// reload succeeded.
pub const POLICY_HEALTH_SERVICE: &str = "stepup.policy";

/// How long in-flight calls may take to finish after the shutdown signal.
/// Kubernetes kills the pod 30 s after SIGTERM by default; a client that
/// never closes its connection must not hold the sidecar up until then.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Largest accepted gRPC message. A `DecideRequest` within the field limits
/// of the request module is far smaller.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The Unix socket could not be bound (or its permissions set).
    #[error("cannot listen on `unix:{}`: {source}", .path.display())]
    BindUnix {
        /// The socket path.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The socket path is taken by something that is not a socket.
    #[error("cannot listen on `unix:{}`: the path exists and is not a socket (not removed)", .path.display())]
    NotASocket {
        /// The socket path.
        path: std::path::PathBuf,
    },
    /// Another server answers on the socket.
    #[error("cannot listen on `unix:{}`: another process is serving on this socket", .path.display())]
    SocketInUse {
        /// The socket path.
        path: std::path::PathBuf,
    },
    /// The TLS files do not make a usable configuration.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Reflection could not be set up (a build defect).
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Binds `addr` (port 0 picks a free port; the bound address is in the
/// returned listener).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// How long a new connection may take to send its HTTP/2 preface before it
/// is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP/2 PING interval on idle connections, and how long the answer may
/// take before the connection is closed.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// See [`KEEPALIVE_INTERVAL`].
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Concurrent streams (calls) per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS).
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Largest accepted header list of a call (SETTINGS_MAX_HEADER_LIST_SIZE):
/// gRPC metadata such as `traceparent` is far smaller.
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// What the server serves besides Decide, and its limits.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How ext_authz `Check` requests map to decisions.
    pub ext_authz: Arc<crate::mapping::Mapping>,
    /// `Decide`, `RecordStepUp` and `Check` calls in flight at once; more
    /// are answered `RESOURCE_EXHAUSTED` at once. Health is never limited.
    pub max_in_flight: usize,
    /// How far a request's `time` (Envoy's request time for `Check`) may lie
    /// from the server clock; `None` accepts any time.
    pub max_time_skew: Option<Duration>,
    /// How long a connection may take to finish its TLS handshake (when
    /// TLS is on) and send its HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// TLS on the listener; `None`: plaintext.
    pub tls: Option<Arc<tls::ServerTls>>,
    /// The Shared Signals receiver at `POST /ssf/events` (HTTP/1.1 and
    /// HTTP/2 on the gRPC port); `None`: off.
    pub ssf: Option<Arc<crate::ssf::Receiver>>,
    /// Serve the AuthZEN endpoints (`/access/v1/*`,
    /// `/.well-known/authzen-configuration`) on the gRPC port too (they are
    /// on the `--http` listener whenever it is given).
    pub authzen: bool,
}

impl Default for ServeOptions {
    /// The default mapping and limits (as `stepup serve` without settings).
    fn default() -> Self {
        let limits = crate::config::Limits::default();
        Self {
            ext_authz: Arc::default(),
            max_in_flight: limits.max_in_flight,
            max_time_skew: limits.max_time_skew,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            tls: None,
            ssf: None,
            authzen: true,
        }
    }
}

/// Serves on `listener` (a [`TcpListener`] or a [`listen::Listener`])
/// until `shutdown` completes, then stops accepting and lets in-flight
/// calls finish, for at most `SHUTDOWN_GRACE` (10 s). `Check` uses the
/// default mapping; the limits are the defaults of [`ServeOptions`].
pub async fn serve(
    engine: Arc<Service>,
    listener: impl Into<listen::Listener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_with(engine, listener, ServeOptions::default(), shutdown).await
}

/// [`serve`] with `options`.
pub async fn serve_with(
    engine: Arc<Service>,
    listener: impl Into<listen::Listener>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_all(engine, listener, None, options, shutdown).await
}

/// [`serve_with`], and the AuthZEN endpoints on `http` as well, when given
/// (with the gRPC listener's TLS settings and in-flight limit).
pub async fn serve_all(
    engine: Arc<Service>,
    listener: impl Into<listen::Listener>,
    http: Option<listen::Listener>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<DecisionServiceServer<grpc::DecisionApi>>()
        .await;
    health
        .set_serving::<AuthorizationServer<ext_authz::AuthorizationApi>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    // `stepup.policy`: NOT_SERVING while the last policy reload failed (the
    // last good set still serves decisions; probes should not use this one).
    let mut reload_ok = engine.reload_status().subscribe();
    let policy_health = health.clone();
    tokio::spawn(async move {
        loop {
            let status = if *reload_ok.borrow_and_update() {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            policy_health
                .set_service_status(POLICY_HEALTH_SERVICE, status)
                .await;
            if reload_ok.changed().await.is_err() {
                break;
            }
        }
    });

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(crate::proto::ENVOY_FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let metrics = Arc::clone(engine.metrics());
    // One limit for both services: it bounds the work in the process.
    let in_flight = in_flight::InFlight::new(options.max_in_flight);
    let skew = options.max_time_skew;
    let authzen = authzen::Mounted::start(
        authzen::AuthZen::new(Arc::clone(&engine), skew, Arc::clone(&in_flight)),
        http,
        &options,
    );
    let (access, well_known, stop_http, http) = authzen.into_parts();
    let ssf = options
        .ssf
        .map(|r| ssf::SsfApi::new(Arc::clone(&engine), r, Arc::clone(&in_flight)));
    let checks = Counted::new(
        AuthorizationServer::new(ext_authz::AuthorizationApi::new(
            Arc::clone(&engine),
            options.ext_authz,
            skew,
        ))
        .max_decoding_message_size(MAX_MESSAGE_BYTES),
        Arc::clone(&metrics),
    )
    .limited(Arc::clone(&in_flight));
    let decisions = Counted::new(
        DecisionServiceServer::new(grpc::DecisionApi::new(engine, skew))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        metrics,
    )
    .limited(in_flight);

    let listener = listener.into();
    let security = match &options.tls {
        None => "plaintext",
        Some(tls) if tls.is_mutual() => "mutual TLS",
        Some(_) => "TLS",
    };
    match listener.local() {
        Some(addr) => tracing::info!(%addr, transport = security, "serving gRPC"),
        None => tracing::info!(transport = security, "serving gRPC (local address unknown)"),
    }
    let draining = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = std::sync::Arc::clone(&draining);
    let incoming = listen::Incoming::new(listener, options.tls, options.handshake_timeout);
    let server = transport()
        // SETs and AuthZEN requests come over HTTP/1.1 too.
        .accept_http1(ssf.is_some() || access.is_some())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(decisions)
        .add_service(checks)
        .add_optional_service(ssf)
        .add_optional_service(access)
        .add_optional_service(well_known)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight calls");
            let _ = stop_http.send(true);
            notify.notify_one();
        });
    let served = tokio::select! {
        result = server => result,
        () = async {
            draining.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the shutdown grace period: closing them");
            Ok(())
        }
    };
    // The HTTP listener drains under its own grace period, begun with the
    // gRPC one; if the gRPC server failed instead, it stops now.
    if let Some(mut task) = http
        && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
    {
        task.abort();
    }
    served.map_err(ServeError::from)
}
/// The HTTP/2 transport with its limits: keepalive, streams per
/// connection, header list size. (The handshake timeout is on the incoming
/// connections, since hyper has none.)
fn transport() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
}

/// Serves decisions per `config` with `engine` until `shutdown` resolves:
/// binds the gRPC listener, runs the policy reload loop (directory watch and
/// SIGHUP) beside it, and drains in-flight calls on the way out.
pub async fn run(
    engine: Arc<Service>,
    config: &crate::config::Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // TLS files are checked before binding: a server that cannot serve
    // them does not start (there is no previous certificate to fall back on).
    let tls = config
        .tls
        .clone()
        .map(tls::ServerTls::load)
        .transpose()?
        .map(Arc::new);
    let listener = listen::bind(&config.listen, config.listen_mode).await?;
    if tls.is_none() {
        warn_if_plaintext_exposed(&config.listen);
    }
    let http = match &config.http {
        Some(addr) => {
            if tls.is_none() {
                authzen::listener::warn_if_plaintext_exposed(addr);
            }
            Some(listen::bind(addr, config.listen_mode).await?)
        }
        None => None,
    };
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let admin = match config.admin {
        Some(addr) => Some(
            admin::Admin::start(addr, Arc::clone(&engine), Arc::clone(&ready))
                .map_err(|source| ServeError::Bind { addr, source })?,
        ),
        None => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let reloader = Arc::new(
        crate::service::watch::Reloader::new(Arc::clone(&engine), config.policies.clone())
            .with_lists(config.lists.clone()),
    );
    let defaults = crate::service::watch::WatchOptions::default();
    let options = crate::service::watch::WatchOptions {
        notify: config.watch,
        poll: defaults.poll.filter(|_| config.watch),
        ..defaults
    };
    let reload = tokio::spawn(crate::service::watch::run(
        reloader,
        options,
        stopped(stop_rx.clone()),
    ));
    // Certificates rotate whether or not policies are watched.
    if let Some(tls) = &tls {
        tokio::spawn(tls::watch(
            Arc::clone(tls),
            tls::POLL,
            stopped(stop_rx.clone()),
        ));
    }
    tokio::spawn(async move {
        shutdown.await;
        ready.store(false, std::sync::atomic::Ordering::Relaxed);
        let _ = stop_tx.send(true);
    });
    let options = ServeOptions {
        ext_authz: Arc::new(config.ext_authz.clone()),
        max_in_flight: config.limits.max_in_flight,
        max_time_skew: config.limits.max_time_skew,
        tls,
        ssf: config
            .ssf
            .enabled
            .then(|| Arc::new(crate::ssf::Receiver::new(config.ssf.clone()))),
        ..ServeOptions::default()
    };
    let served = serve_all(
        Arc::clone(&engine),
        listener,
        http,
        options,
        stopped(stop_rx),
    )
    .await;
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

/// Warns when the gRPC listener is plaintext TCP that other hosts can
/// reach: nothing then says who is calling.
fn warn_if_plaintext_exposed(listen: &crate::config::Listen) {
    if listen.is_local() {
        return;
    }
    tracing::warn!(
        listen = %listen,
        "the gRPC listener is plaintext TCP on a non-loopback address: anyone who can reach \
         this port can ask for decisions and, where step-up reports are trusted from callers, \
         change what is remembered about subjects. Serve TLS (--tls-cert/--tls-key), require \
         client certificates (--tls-client-ca), or listen on a Unix socket \
         (--listen unix:/path/stepup.sock). Behind a service mesh whose proxy terminates mTLS \
         in front of this port, and lets nothing else reach it, plaintext from the proxy is fine"
    );
}
