//! The `--http` listener: the AuthZEN endpoints on a port of their own,
//! HTTP/1.1 and HTTP/2 (h2c, or ALPN under TLS), with the gRPC listener's
//! TLS and client-certificate settings and the same handshake deadline
//! ([`Incoming`]). Every request carries the connection's [`Peer`], as on
//! the gRPC port.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::StreamExt as _;
use tonic::transport::server::Connected as _;

use super::AuthZen;
use crate::server::listen::{Incoming, Listener};
use crate::server::tls::ServerTls;

/// Serves `api` on `listener` until `stop` turns true, then lets open
/// requests finish (idle connections close at once) for at most
/// `grace`.
pub async fn serve(
    listener: Listener,
    tls: Option<Arc<ServerTls>>,
    handshake_timeout: Duration,
    api: Arc<AuthZen>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let security = match &tls {
        None => "plaintext",
        Some(t) if t.is_mutual() => "mutual TLS",
        Some(_) => "TLS",
    };
    match listener.local() {
        Some(addr) => tracing::info!(%addr, transport = security, "serving AuthZEN over HTTP"),
        None => tracing::info!(transport = security, "serving AuthZEN over HTTP"),
    }
    let mut incoming = Incoming::new(listener, tls, handshake_timeout);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(conn)) => {
                    connections.spawn(connection(conn, Arc::clone(&api), stop.clone()));
                }
                Some(Err(e)) => tracing::debug!("cannot accept an HTTP connection: {e}"),
                None => break,
            },
            () = stopped(&mut stop) => break,
            // Reaps finished connections as they go.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // The listener closes here; open connections finish their requests.
    drop(incoming);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            ?grace,
            "HTTP connections still open after the shutdown grace period: closing them"
        );
        connections.abort_all();
    }
}

/// Warns when the `--http` listener is plaintext TCP that other hosts can
/// reach: anyone who reaches it can ask for decisions.
pub fn warn_if_plaintext_exposed(listen: &crate::config::Listen) {
    if listen.is_local() {
        return;
    }
    tracing::warn!(
        http = %listen,
        "the AuthZEN HTTP listener (--http) is plaintext TCP on a non-loopback address: anyone \
         who can reach this port can ask for decisions, and nothing says who is calling. Serve \
         TLS (--tls-cert/--tls-key, which this listener shares with gRPC), require client \
         certificates (--tls-client-ca), or listen on a Unix socket (--http unix:/path/authzen.sock)"
    );
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: dropped here.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Serves one connection, HTTP/1.1 or HTTP/2 by what the client sends.
async fn connection(
    conn: crate::server::handshake::Handshaking<crate::server::listen::Connection>,
    api: Arc<AuthZen>,
    mut stop: watch::Receiver<bool>,
) {
    let peer = conn.connect_info();
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer.clone());
        let api = Arc::clone(&api);
        async move { Ok::<_, Infallible>(api.handle(req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(crate::server::HANDSHAKE_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(crate::server::KEEPALIVE_INTERVAL)
        .keep_alive_timeout(crate::server::KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(crate::server::MAX_CONCURRENT_STREAMS)
        .max_header_list_size(crate::server::MAX_HEADER_LIST_BYTES);
    let served = builder.serve_connection(TokioIo::new(conn), service);
    tokio::pin!(served);
    tokio::select! {
        result = served.as_mut() => {
            if let Err(e) = result {
                tracing::debug!("HTTP connection ended: {e}");
            }
        }
        () = stopped(&mut stop) => {
            served.as_mut().graceful_shutdown();
            let _ = served.await;
        }
    }
}
