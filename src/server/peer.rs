//! Who is calling: the transport a call came in on and, for mutual TLS, the
//! identity in the client's certificate. The listener puts a [`Peer`] in
//! each request's extensions; handlers read it with [`Peer::of`] to
//! authorise what a caller may change and to log who asked.

use std::sync::Arc;

/// The transport a call arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plaintext TCP.
    Tcp,
    /// TLS without a client certificate.
    Tls,
    /// TLS with a client certificate verified against the client CA.
    MutualTls,
    /// A Unix domain socket (access is the socket file's permissions).
    Unix,
}

/// The caller of one request, as the transport established it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// How the call arrived.
    pub transport: Transport,
    /// The verified client certificate's identity (URI SAN such as a SPIFFE
    /// ID, else DNS SAN, else subject CN); `None` unless `transport` is
    /// [`Transport::MutualTls`].
    pub identity: Option<Arc<str>>,
}

impl Peer {
    /// The peer of `request`, if the listener recorded one (calls made
    /// in-process, as in unit tests, have none).
    pub fn of<T>(request: &tonic::Request<T>) -> Option<&Self> {
        request.extensions().get::<Self>()
    }

    /// The verified client identity, if any.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }
}
