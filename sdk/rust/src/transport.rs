//! How the sidecar is reached: `http://HOST:PORT` (TCP), `https://HOST:PORT`
//! (TLS: rustls on the ring provider, a CA file, optionally a client
//! certificate for mutual TLS) or `unix:PATH` (a Unix domain socket).
//!
//! The connector is the crate's own for every transport, so that a failed
//! connection is marked ([`NeverSent`]): such a call was never sent, and only
//! then is a retry of `Decide` safe without looking at the method.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::{Channel, Endpoint};

use crate::error::BuildError;

/// TLS settings for an `https://` sidecar address.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    ca_file: PathBuf,
    client: Option<(PathBuf, PathBuf)>,
    server_name: Option<String>,
}

impl TlsConfig {
    /// Trust the CA certificates in `ca_file` (PEM) for the sidecar's
    /// certificate, and no other.
    pub fn new(ca_file: impl Into<PathBuf>) -> Self {
        Self {
            ca_file: ca_file.into(),
            client: None,
            server_name: None,
        }
    }

    /// Present this client certificate chain and key (PEM) for mutual TLS
    /// (the sidecar's `--tls-client-ca`).
    pub fn client_identity(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.client = Some((cert_file.into(), key_file.into()));
        self
    }

    /// Check the sidecar's certificate for this name instead of the
    /// address's host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }
}

/// Where the sidecar listens, parsed.
#[derive(Debug)]
enum Target {
    Tcp(String),
    Tls {
        authority: String,
        server_name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    },
    Unix(PathBuf),
}

/// The marker of a connection that could not be made: the request was
/// never sent.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect: {0}")]
pub(crate) struct NeverSent(std::io::Error);

/// True when `status` comes from a connection that could not be made.
pub(crate) fn never_sent(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<NeverSent>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// A connected stream of any transport.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A lazily connecting channel to `target` (connections are made on the
/// first call and remade after a failure).
pub(crate) fn channel(
    target: &str,
    tls: Option<&TlsConfig>,
    connect_timeout: std::time::Duration,
) -> Result<Channel, BuildError> {
    let parsed = Arc::new(parse(target, tls)?);
    // The URI gives `:scheme` and `:authority`; a Unix socket has no host, so
    // `localhost`, as gRPC's own clients send for `unix:` targets.
    let uri = match &*parsed {
        Target::Tcp(authority) => format!("http://{authority}"),
        Target::Tls { authority, .. } => format!("https://{authority}"),
        Target::Unix(_) => "http://localhost".to_owned(),
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| invalid(target, &e.to_string()))?
        .connect_timeout(connect_timeout);
    let connector = tower::service_fn(move |_: http::Uri| {
        let parsed = Arc::clone(&parsed);
        async move { connect(&parsed).await.map(TokioIo::new).map_err(NeverSent) }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

async fn connect(target: &Target) -> std::io::Result<Pin<Box<dyn Io>>> {
    match target {
        Target::Tcp(authority) => {
            let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
            stream.set_nodelay(true)?;
            Ok(Box::pin(stream))
        }
        Target::Tls {
            authority,
            server_name,
            config,
        } => {
            let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
            stream.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(server_name.clone(), stream)
                .await?;
            Ok(Box::pin(tls))
        }
        #[cfg(unix)]
        Target::Unix(path) => Ok(Box::pin(tokio::net::UnixStream::connect(path).await?)),
        #[cfg(not(unix))]
        Target::Unix(_) => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "Unix sockets are not supported on this platform",
        )),
    }
}

fn invalid(target: &str, why: &str) -> BuildError {
    BuildError::InvalidTarget {
        target: target.to_owned(),
        why: why.to_owned(),
    }
}

fn parse(target: &str, tls: Option<&TlsConfig>) -> Result<Target, BuildError> {
    if let Some(path) = target.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(invalid(target, "no socket path after `unix:`"));
        }
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    let uri: http::Uri = target
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(target, &e.to_string()))?;
    let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
        return Err(invalid(
            target,
            "expected `http://HOST:PORT`, `https://HOST:PORT` or `unix:PATH`",
        ));
    };
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(invalid(target, "a path is not allowed"));
    }
    let authority = format!("{}:{port}", host);
    match (uri.scheme_str(), tls) {
        (Some("http"), None) => Ok(Target::Tcp(authority)),
        (Some("http"), Some(_)) => Err(invalid(
            target,
            "TLS settings given for an `http://` address; use `https://`",
        )),
        (Some("https"), Some(tls)) => {
            let name = tls
                .server_name
                .as_deref()
                .unwrap_or(host.trim_start_matches('[').trim_end_matches(']'));
            let server_name = ServerName::try_from(name.to_owned())
                .map_err(|e| invalid(target, &format!("server name `{name}`: {e}")))?;
            Ok(Target::Tls {
                authority,
                server_name,
                config: Arc::new(rustls_config(tls)?),
            })
        }
        (Some("https"), None) => Err(invalid(
            target,
            "`https://` needs TLS settings (a CA file): see `ClientBuilder::tls`",
        )),
        _ => Err(invalid(
            target,
            "the scheme must be `http` or `https` (or the address `unix:PATH`)",
        )),
    }
}

fn tls_file(what: &'static str, path: &Path, why: impl ToString) -> BuildError {
    BuildError::TlsFile {
        what,
        path: path.to_owned(),
        why: why.to_string(),
    }
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_file(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_file(what, path, e))?;
    if certs.is_empty() {
        return Err(tls_file(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The rustls client settings: the ring provider, set explicitly (never
/// the process default), HTTP/2 by ALPN.
// `ring::default_provider` is deprecated for its lack of post-quantum key
// exchange; ring is still the one provider this project builds with.
#[allow(deprecated)]
fn rustls_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs("CA certificates", &tls.ca_file)? {
        roots.add(cert)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let mut config = match &tls.client {
        Some((cert_file, key_file)) => {
            let chain = certs("client certificate", cert_file)?;
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| tls_file("client key", key_file, e))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
