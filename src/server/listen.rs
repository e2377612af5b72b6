//! The gRPC listener: TCP or a Unix domain socket, plaintext or TLS, and
//! the [`Peer`] of each connection, which tonic puts into the extensions of
//! every request on it (the connection's `Connected::ConnectInfo`).
//!
//! TLS handshakes run as tasks of their own, so one slow client does not
//! hold up the others, each under the handshake timeout; the same deadline
//! then covers the HTTP/2 preface ([`Handshaking`]).

use std::future::Future as _;
use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use super::ServeError;
use super::handshake::Handshaking;
use super::peer::{Peer, Transport};
use super::tls::{ServerTls, identity};
use crate::config::Listen;

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix domain socket; its file is removed when this is dropped.
    Unix(UnixListener, SocketFile),
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Self {
        Self::Tcp(listener)
    }
}

impl Listener {
    /// Where it listens, as `--listen` takes it (`unix:PATH` or the bound
    /// `IP:PORT`); `None` if the socket cannot say.
    pub fn local(&self) -> Option<Listen> {
        match self {
            Self::Tcp(l) => l.local_addr().ok().map(Listen::Tcp),
            Self::Unix(_, file) => Some(Listen::Unix(file.path.clone())),
        }
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Accepted>> {
        match self {
            Self::Tcp(l) => l.poll_accept(cx).map_ok(|(s, _)| {
                // The builder's `tcp_nodelay` applies only to listeners it
                // binds itself: without it Nagle holds small responses for a
                // delayed ACK (40 ms per call).
                if let Err(e) = s.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY: {e}");
                }
                Accepted::new(s, Transport::Tcp)
            }),
            Self::Unix(l, _) => l
                .poll_accept(cx)
                .map_ok(|(s, _)| Accepted::new(s, Transport::Unix)),
        }
    }
}

/// The socket file of a Unix listener, removed on drop if it is still the
/// one this process bound (not a file another process put there since).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), "cannot remove the socket file: {e}");
        }
    }
}

/// Binds `listen`; a Unix socket file gets permissions `mode`. A stale
/// socket file (left by a process that died) is replaced; a live one (a
/// server answers on it) or a path that is not a socket is an error.
pub async fn bind(listen: &Listen, mode: u32) -> Result<Listener, ServeError> {
    match listen {
        Listen::Tcp(addr) => super::bind(*addr).await.map(Listener::Tcp),
        Listen::Unix(path) => bind_unix(path, mode),
    }
}

fn bind_unix(path: &Path, mode: u32) -> Result<Listener, ServeError> {
    let failed = |source| ServeError::BindUnix {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
        Ok(m) if !m.file_type().is_socket() => {
            return Err(ServeError::NotASocket {
                path: path.to_owned(),
            });
        }
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::SocketInUse {
                    path: path.to_owned(),
                });
            }
            tracing::info!(path = %path.display(), "removing a stale socket file");
            std::fs::remove_file(path).map_err(failed)?;
        }
    }
    let listener = listen_unix(path, mode).map_err(failed)?;
    let meta = std::fs::symlink_metadata(path).map_err(failed)?;
    Ok(Listener::Unix(
        listener,
        SocketFile {
            path: path.to_owned(),
            id: (meta.dev(), meta.ino()),
        },
    ))
}

/// A listening socket at `path` whose file has `mode`: bound, given its
/// mode, and only then listening, so no process the mode excludes can
/// connect while the file still has the umask's permissions.
fn listen_unix(path: &Path, mode: u32) -> io::Result<UnixListener> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    UnixListener::from_std(socket.into())
}

/// A connection's byte stream, whatever it runs over.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A connection just accepted, before any TLS.
struct Accepted {
    io: Box<dyn Io>,
    transport: Transport,
}

impl Accepted {
    fn new(io: impl Io, transport: Transport) -> Self {
        Self {
            io: Box::new(io),
            transport,
        }
    }
}

/// An accepted connection and who is on the other end.
pub struct Connection {
    io: Box<dyn Io>,
    peer: Peer,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Connected for Connection {
    type ConnectInfo = Peer;

    /// tonic inserts this into the extensions of every request on the
    /// connection (a clone per request: an `Arc` count, no allocation).
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How long to stop accepting after an accept error that is not about one
/// connection (e.g. out of file descriptors), instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The stream of connections tonic serves: accepted, through TLS when it
/// is on, each under the handshake timeout. Dropping it closes the
/// listener (and removes a Unix socket file).
pub struct Incoming {
    listener: Listener,
    tls: Option<Arc<ServerTls>>,
    timeout: Duration,
    handshakes: JoinSet<Option<Handshaking<Connection>>>,
    backoff: Option<Pin<Box<Sleep>>>,
}

impl Incoming {
    /// Connections of `listener`, TLS with `tls` if given, each of which
    /// must finish its handshakes (TLS and HTTP/2 preface) within `timeout`.
    pub fn new(listener: Listener, tls: Option<Arc<ServerTls>>, timeout: Duration) -> Self {
        Self {
            listener,
            tls,
            timeout,
            handshakes: JoinSet::new(),
            backoff: None,
        }
    }

    /// Accepts what is waiting: a plaintext connection is returned, a TLS
    /// one starts its handshake task.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Handshaking<Connection>> {
        if let Some(backoff) = &mut self.backoff {
            if backoff.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.backoff = None;
        }
        loop {
            let accepted = match self.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(a)) => a,
                Poll::Ready(Err(e)) if is_per_connection(&e) => continue,
                Poll::Ready(Err(e)) => {
                    tracing::warn!("cannot accept a gRPC connection: {e}; retrying shortly");
                    let mut sleep = Box::pin(tokio::time::sleep(ACCEPT_BACKOFF));
                    // Registers the wake-up.
                    if sleep.as_mut().poll(cx).is_pending() {
                        self.backoff = Some(sleep);
                        return Poll::Pending;
                    }
                    continue;
                }
            };
            let deadline = Instant::now() + self.timeout;
            let Some(tls) = &self.tls else {
                let peer = Peer {
                    transport: accepted.transport,
                    identity: None,
                };
                let conn = Connection {
                    io: accepted.io,
                    peer,
                };
                return Poll::Ready(Handshaking::until(conn, deadline));
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
            self.handshakes
                .spawn(tls_handshake(accepted, acceptor, deadline));
        }
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<Handshaking<Connection>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Poll::Ready(conn) = this.poll_accept(cx) {
            return Poll::Ready(Some(Ok(conn)));
        }
        // Finished handshakes; failed ones were logged and are skipped.
        while let Poll::Ready(Some(done)) = this.handshakes.poll_join_next(cx) {
            if let Ok(Some(conn)) = done {
                return Poll::Ready(Some(Ok(conn)));
            }
        }
        Poll::Pending
    }
}

/// Errors of one connection that came and went before it was accepted:
/// the listener itself is fine.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// The TLS handshake of `accepted`, by `deadline`: the connection and its
/// peer (the client certificate's identity under mutual TLS), or `None`
/// when it failed (logged at debug: scanners and plaintext clients are
/// routine).
async fn tls_handshake(
    accepted: Accepted,
    acceptor: tokio_rustls::TlsAcceptor,
    deadline: Instant,
) -> Option<Handshaking<Connection>> {
    let stream = match tokio::time::timeout_at(deadline, acceptor.accept(accepted.io)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(transport = ?accepted.transport, "TLS handshake failed: {e}");
            return None;
        }
        Err(_) => {
            tracing::debug!(transport = ?accepted.transport, "TLS handshake timed out");
            return None;
        }
    };
    // A client certificate is there only if the verifier (the client CA)
    // asked for it and accepted it.
    let verified = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first());
    let peer = match verified {
        Some(cert) => Peer {
            transport: Transport::MutualTls,
            identity: identity(cert),
        },
        None => Peer {
            transport: Transport::Tls,
            identity: None,
        },
    };
    let conn = Connection {
        io: Box::new(stream),
        peer,
    };
    Some(Handshaking::until(conn, deadline))
}
