//! How the AuthZEN API is served: mounted on the gRPC port ([`Mount`], one
//! tonic service per path prefix) and on the `--http` listener.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::{Request, Response};
use tonic::body::Body;
use tonic::codegen::Service as TowerService;
use tonic::server::NamedService;

use super::{AuthZen, listener};

/// The AuthZEN endpoints of one server: the services the gRPC port
/// routes to (unless [`ServeOptions::authzen`](crate::server::ServeOptions::authzen)
/// is off) and the task serving the `--http` listener, if there is one.
#[derive(Debug)]
pub struct Mounted {
    access: Option<AccessApi>,
    well_known: Option<WellKnownApi>,
    /// Tells the `--http` listener to stop.
    stop: tokio::sync::watch::Sender<bool>,
    http: Option<tokio::task::JoinHandle<()>>,
}

/// The parts of [`Mounted`]: the two services, the stop signal and the
/// `--http` listener's task.
pub type MountedParts = (
    Option<AccessApi>,
    Option<WellKnownApi>,
    tokio::sync::watch::Sender<bool>,
    Option<tokio::task::JoinHandle<()>>,
);

impl Mounted {
    /// Mounts `api` per `options`, and starts serving it on `http` (with
    /// the gRPC listener's TLS settings and handshake deadline).
    pub fn start(
        api: Arc<AuthZen>,
        http: Option<crate::server::listen::Listener>,
        options: &crate::server::ServeOptions,
    ) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let http = http.map(|l| {
            tokio::spawn(listener::serve(
                l,
                options.tls.clone(),
                options.handshake_timeout,
                Arc::clone(&api),
                stopped,
                crate::server::SHUTDOWN_GRACE,
            ))
        });
        let (access, well_known) = if options.authzen {
            (
                Some(AccessApi::new(Arc::clone(&api))),
                Some(WellKnownApi::new(api)),
            )
        } else {
            (None, None)
        };
        Self {
            access,
            well_known,
            stop,
            http,
        }
    }

    /// The services, the stop signal and the listener task.
    pub fn into_parts(self) -> MountedParts {
        (self.access, self.well_known, self.stop, self.http)
    }
}

/// Where a [`Mount`] sits on the gRPC port: its first path segment.
pub trait Prefix: Send + Sync + 'static {
    /// The segment, as tonic's router matches it.
    const NAME: &'static str;
}

/// `/access/*`: the evaluation and search endpoints.
#[derive(Debug, Clone, Copy)]
pub struct Access;

/// `/.well-known/*`: the metadata.
#[derive(Debug, Clone, Copy)]
pub struct WellKnown;

impl Prefix for Access {
    const NAME: &'static str = "access";
}

impl Prefix for WellKnown {
    const NAME: &'static str = ".well-known";
}

/// The AuthZEN API mounted at `P` on the gRPC port: tonic routes a request
/// by its first path segment, so each prefix is a service of its own.
#[derive(Debug)]
pub struct Mount<P>(pub Arc<AuthZen>, std::marker::PhantomData<P>);

impl<P> Mount<P> {
    /// `api` at `P`.
    pub fn new(api: Arc<AuthZen>) -> Self {
        Self(api, std::marker::PhantomData)
    }
}

// By hand: a derived `Clone` would ask `P: Clone`.
impl<P> Clone for Mount<P> {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.0))
    }
}

/// `/access/*` on the gRPC port.
pub type AccessApi = Mount<Access>;

/// `/.well-known/*` on the gRPC port.
pub type WellKnownApi = Mount<WellKnown>;

impl<P: Prefix> NamedService for Mount<P> {
    const NAME: &'static str = P::NAME;
}

/// The future of one request on the gRPC port.
type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<P> TowerService<Request<Body>> for Mount<P> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let api = Arc::clone(&self.0);
        Box::pin(async move { Ok(api.handle(req).await.map(Body::new)) })
    }
}
