//! Test certificates made with rcgen (a CA, server and client leaves) and
//! tonic channels over TLS, mutual TLS and Unix sockets.

#![allow(deprecated)] // rustls' ring provider: the only one this crate builds

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpStream, UnixStream};
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

// ---------------------------------------------------------------- certificates

/// A test CA.
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate and its key (PEM) with these SANs and CN.
    pub fn leaf(
        &self,
        sans: Vec<SanType>,
        cn: Option<&str>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Pair {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for `localhost`.
    pub fn server(&self) -> Pair {
        self.leaf(
            vec![dns("localhost")],
            Some("stepup"),
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate with a SPIFFE ID.
    pub fn client(&self, uri: &str) -> Pair {
        self.leaf(
            vec![
                SanType::URI(uri.try_into().unwrap()),
                dns("checkout.payments"),
            ],
            Some("checkout"),
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

pub fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

impl Pair {
    /// Writes `cert.pem` and `key.pem` into `dir`: their paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.cert).unwrap();
        std::fs::write(&key, &self.key).unwrap();
        (cert, key)
    }

    pub fn leaf_der(&self) -> Vec<u8> {
        CertificateDer::from_pem_slice(self.cert.as_bytes())
            .unwrap()
            .to_vec()
    }
}

pub fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

// ---------------------------------------------------------------- clients

/// A rustls client trusting `roots`, presenting `identity` if given.
pub fn client_config(roots: &[&Ca], identity: Option<&Pair>) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for ca in roots {
        store.add(ca.issuer.der().clone()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store);
    let mut config = match identity {
        Some(pair) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(pair.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

pub type Connecting<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

/// A tonic connector: TCP to `addr`, then TLS for `localhost`. Records the
/// leaf certificate the server presented on each connection it makes.
#[derive(Clone)]
pub struct TlsConnector {
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl TlsConnector {
    pub fn new(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            addr,
            config,
            seen: Arc::default(),
        }
    }

    /// A channel over one TLS connection (and more, should it reconnect).
    pub async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        Endpoint::from_static("http://localhost")
            .connect_with_connector(self.clone())
            .await
    }

    pub fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }
}

impl tonic::codegen::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = TcpStream::connect(this.addr).await?;
            let name = ServerName::try_from("localhost").unwrap();
            let tls = tokio_rustls::TlsConnector::from(this.config)
                .connect(name, tcp)
                .await?;
            if let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                this.seen.lock().unwrap().push(leaf.to_vec());
            }
            Ok(TokioIo::new(tls))
        })
    }
}

/// A tonic connector to a Unix socket.
#[derive(Clone)]
pub struct UdsConnector(pub PathBuf);

impl tonic::codegen::Service<Uri> for UdsConnector {
    type Response = TokioIo<UnixStream>;
    type Error = io::Error;
    type Future = Connecting<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { UnixStream::connect(path).await.map(TokioIo::new) })
    }
}

/// A plaintext channel to `uri`.
pub async fn plaintext(uri: String) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(uri).unwrap().connect().await
}

/// A channel over the Unix socket at `path`.
pub async fn unix(path: PathBuf) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_static("http://localhost")
        .connect_with_connector(UdsConnector(path))
        .await
}
