//! TLS on the gRPC listener (rustls, ring provider): the server certificate
//! and key, and with a client CA, mutual TLS. The built
//! [`rustls::ServerConfig`] sits in an [`ArcSwap`] that every new
//! connection's handshake reads, so a reload swaps it for new connections
//! while those already open keep the session they made.
//!
//! [`watch`] reloads when the files change: cert-manager and the kubelet
//! replace a Secret's files by swapping a `..data` symlink, so the files'
//! directories are watched (not the files), with a poll as a safety net and
//! SIGHUP. A new pair that does not load (unreadable, not PEM, a key that is
//! not the certificate's) is logged and the previous one keeps serving.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::Watcher as _;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sha2::Digest as _;
use tokio::sync::mpsc;

use crate::config::TlsConfig;

/// ALPN protocols offered, in the server's order of preference: gRPC is
/// HTTP/2 (gRPC clients such as grpc-core insist on `h2`).
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// How often `stepup serve` reads the files anyway, for changes no
/// notification reported.
pub const POLL: Duration = Duration::from_secs(10);

/// Quiet time after a change before the files are read, so that a
/// certificate and key written one after the other are read as a pair.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Why the TLS files cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read the TLS {what} `{}`: {source}", .path.display())]
    Read {
        /// `certificate`, `key` or `client CA`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file that is not PEM, or holds nothing of the kind expected.
    #[error("the TLS {what} `{}` holds no usable PEM {expected}: {error}", .path.display())]
    Pem {
        /// `certificate`, `key` or `client CA`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What should be in it.
        expected: &'static str,
        /// The PEM reader's complaint.
        error: String,
    },
    /// The certificate and key do not make a usable pair (e.g. the key is
    /// not the certificate's).
    #[error("the TLS certificate `{}` and key `{}` are not a usable pair: {error}", .cert.display(), .key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        error: rustls::Error,
    },
    /// The client CA file holds no certificate rustls accepts as a root.
    #[error("the TLS client CA `{}` is not usable: {error}", .path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
}

/// The listener's TLS settings, reloadable.
pub struct ServerTls {
    files: TlsConfig,
    current: ArcSwap<ServerConfig>,
    /// Digest of the file contents last read (loaded or rejected), so that
    /// an unchanged set is neither rebuilt nor its error logged again.
    seen: Mutex<[u8; 32]>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the files of `files`; fails if they do not make a usable
    /// configuration (at start-up there is no previous one to keep).
    pub fn load(files: TlsConfig) -> Result<Self, TlsError> {
        let read = Read::files(&files)?;
        let config = read.build(&files)?;
        log_loaded(&files, &read.chain, "TLS certificate loaded");
        Ok(Self {
            seen: Mutex::new(read.digest),
            current: ArcSwap::from_pointee(config),
            files,
        })
    }

    /// Whether clients must present a certificate (a client CA is set).
    pub fn is_mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The configuration new connections use now.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Reads the files again and, if they changed and make a usable
    /// configuration, swaps it in: `Ok(true)`. Unchanged files: `Ok(false)`.
    /// On an error the previous configuration stays. Blocking (file reads).
    pub fn reload(&self) -> Result<bool, TlsError> {
        let read = Read::files(&self.files)?;
        {
            let Ok(mut seen) = self.seen.lock() else {
                return Ok(false);
            };
            if *seen == read.digest {
                return Ok(false);
            }
            *seen = read.digest;
        }
        let config = read.build(&self.files)?;
        self.current.store(Arc::new(config));
        log_loaded(&self.files, &read.chain, "TLS certificate reloaded");
        Ok(true)
    }
}

/// The files' contents, parsed.
struct Read {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<Vec<CertificateDer<'static>>>,
    digest: [u8; 32],
}

impl Read {
    fn files(files: &TlsConfig) -> Result<Self, TlsError> {
        let mut digest = sha2::Sha256::new();
        let mut read = |what: &'static str, path: &Path| {
            let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_owned(),
                source,
            })?;
            digest.update((bytes.len() as u64).to_le_bytes());
            digest.update(&bytes);
            Ok::<_, TlsError>(bytes)
        };
        let cert = read("certificate", &files.cert)?;
        let key = read("key", &files.key)?;
        let client_ca = files
            .client_ca
            .as_deref()
            .map(|path| read("client CA", path).map(|b| (path, b)))
            .transpose()?;
        let chain = certificates("certificate", &files.cert, &cert)?;
        let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| TlsError::Pem {
            what: "key",
            path: files.key.clone(),
            expected: "private key (PKCS#8, PKCS#1 or SEC1)",
            error: e.to_string(),
        })?;
        let client_ca = client_ca
            .map(|(path, bytes)| certificates("client CA", path, &bytes))
            .transpose()?;
        Ok(Self {
            chain,
            key,
            client_ca,
            digest: digest.finalize().into(),
        })
    }

    /// The rustls configuration: TLS 1.3 and 1.2 with ring's safe
    /// defaults, ALPN `h2`, and a client certificate required when there is
    /// a client CA.
    fn build(&self, files: &TlsConfig) -> Result<ServerConfig, TlsError> {
        let provider = Arc::new(provider());
        let pair = |error| TlsError::Pair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            error,
        };
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(pair)?;
        let builder = match (&self.client_ca, &files.client_ca) {
            (Some(cas), Some(path)) => {
                let ca_error = |error: String| TlsError::ClientCa {
                    path: path.clone(),
                    error,
                };
                let mut roots = rustls::RootCertStore::empty();
                for ca in cas {
                    roots.add(ca.clone()).map_err(|e| ca_error(e.to_string()))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .build()
                .map_err(|e| ca_error(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(pair)?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// ring's crypto provider, the only one this crate builds.
#[expect(
    deprecated,
    reason = "TLS is built on ring only (no aws-lc-rs); rustls 0.23.48 deprecates ring's provider for its lack of post-quantum key exchange, which clients fall back from"
)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Every certificate in the PEM `bytes` of `path`; at least one.
fn certificates(
    what: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |error: String| TlsError::Pem {
        what,
        path: path.to_owned(),
        expected: "certificate",
        error,
    };
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no `BEGIN CERTIFICATE` section".to_owned()));
    }
    Ok(certs)
}

/// Logs what was loaded: the leaf's identity and expiry (a warning when it
/// has expired: clients will refuse it).
fn log_loaded(files: &TlsConfig, chain: &[CertificateDer<'static>], message: &str) {
    let leaf = chain
        .first()
        .and_then(|c| x509_parser::parse_x509_certificate(c).ok());
    let Some((_, leaf)) = leaf else {
        tracing::info!(cert = %files.cert.display(), mutual = files.client_ca.is_some(), "{message}");
        return;
    };
    let not_after = leaf.validity().not_after;
    let name = identity_of(&leaf);
    let expires = not_after.to_datetime().to_string();
    if not_after.timestamp() < chrono::Utc::now().timestamp() {
        tracing::warn!(
            cert = %files.cert.display(),
            name = name.as_deref().unwrap_or("-"),
            %expires,
            "{message}, but it has expired: clients will refuse it"
        );
    } else {
        tracing::info!(
            cert = %files.cert.display(),
            name = name.as_deref().unwrap_or("-"),
            %expires,
            mutual = files.client_ca.is_some(),
            "{message}"
        );
    }
}

/// The identity a (verified) client certificate names: its first URI SAN
/// (such as a SPIFFE ID), else its first DNS SAN, else, for a certificate
/// without a SAN extension, its subject CN, unless that CN holds a `:`.
/// `None` when it names none or cannot be parsed.
///
/// The CN is the field a CA copies from a certificate request most readily:
/// it must never pass for a URI identity (`CN=spiffe://...` on a
/// certificate whose SANs the CA vouched for would otherwise match a
/// `[trust] reporters` entry), nor stand in when the SANs name something
/// else (an IP address, an email).
pub fn identity(cert: &CertificateDer<'_>) -> Option<Arc<str>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    identity_of(&cert)
}

fn identity_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<Arc<str>> {
    use x509_parser::extensions::GeneralName;

    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let names = &san.value.general_names;
        let uri = names.iter().find_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        });
        let dns = || {
            names.iter().find_map(|n| match n {
                GeneralName::DNSName(d) => Some(*d),
                _ => None,
            })
        };
        return uri.or_else(dns).map(Arc::from);
    }
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.contains(':'))
        .map(Arc::from)
}

/// Why something asked for a reload.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    Change,
    Signal,
}

/// Reloads `tls` when its files change (directory notifications,
/// debounced), every `poll`, and on SIGHUP, until `shutdown` resolves.
pub async fn watch(tls: Arc<ServerTls>, poll: Duration, shutdown: impl Future<Output = ()>) {
    let (tx, mut rx) = mpsc::channel::<Trigger>(16);
    let _watcher = watcher(&tls.files, poll, tx.clone());
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            let tx = tx.clone();
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if tx.send(Trigger::Signal).await.is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => tracing::warn!("cannot listen for SIGHUP to reload the TLS files: {e}"),
    }
    drop(tx);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + poll, poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    // False once no watcher nor signal handler is left to send.
    let mut open = true;
    loop {
        let trigger = tokio::select! {
            () = &mut shutdown => return,
            t = rx.recv(), if open => match t {
                Some(t) => t,
                None => {
                    open = false;
                    continue;
                }
            },
            _ = tick.tick() => Trigger::Change,
        };
        if matches!(trigger, Trigger::Change) {
            // Debounce: a certificate and key replaced one after the other.
            loop {
                tokio::select! {
                    () = tokio::time::sleep(DEBOUNCE) => break,
                    more = rx.recv(), if open => if more.is_none() { open = false },
                }
            }
        }
        let tls = Arc::clone(&tls);
        match tokio::task::spawn_blocking(move || tls.reload()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!("TLS reload rejected; the previous certificate keeps serving: {e}")
            }
            Err(e) => tracing::error!("TLS reload task failed: {e}"),
        }
    }
}

/// Watches the directories of the TLS files (not the files: a symlink swap
/// or a rename replaces them); `None` (and a warning) when that fails, and
/// the poll carries on alone.
fn watcher(
    files: &TlsConfig,
    poll: Duration,
    tx: mpsc::Sender<Trigger>,
) -> Option<notify::RecommendedWatcher> {
    let mut dirs: Vec<PathBuf> = [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    })
    .collect();
    dirs.sort();
    dirs.dedup();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Our own reads are not changes.
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            let _ = tx.try_send(Trigger::Change);
        }
    })
    .and_then(|mut w| {
        for dir in &dirs {
            w.watch(dir, notify::RecursiveMode::NonRecursive)?;
        }
        Ok(w)
    });
    match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "cannot watch the TLS files' directories ({e}); relying on polling ({poll:?}) and SIGHUP"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    use super::*;

    /// A self-signed certificate with these SANs and CN, and its key (PEM).
    fn pair(sans: Vec<SanType>, cn: Option<&str>) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn identity_of_pem(pem: &str) -> Option<Arc<str>> {
        identity(&CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
    }

    #[test]
    fn the_identity_is_the_uri_san_else_the_dns_san_else_the_cn() {
        let uri = SanType::URI("spiffe://example.org/sa/a".try_into().unwrap());
        let dns = SanType::DnsName("a.internal".try_into().unwrap());
        let (cert, _) = pair(vec![dns.clone(), uri], Some("cn"));
        assert_eq!(
            identity_of_pem(&cert).as_deref(),
            Some("spiffe://example.org/sa/a")
        );
        let (cert, _) = pair(vec![dns], Some("cn"));
        assert_eq!(identity_of_pem(&cert).as_deref(), Some("a.internal"));
        let (cert, _) = pair(vec![], Some("cn"));
        assert_eq!(identity_of_pem(&cert).as_deref(), Some("cn"));
        let (cert, _) = pair(vec![], None);
        assert_eq!(identity_of_pem(&cert), None);
    }

    #[test]
    fn a_cn_never_passes_for_a_uri_nor_stands_in_beside_other_sans() {
        // No SAN extension: a CN that looks like a URI is no identity.
        let (cert, _) = pair(vec![], Some("spiffe://example.org/sa/reporter"));
        assert_eq!(identity_of_pem(&cert), None);
        // SANs that name neither a URI nor a DNS name: the CN does not
        // stand in for them.
        let ip = SanType::IpAddress(std::net::IpAddr::from([10, 0, 0, 7]));
        let (cert, _) = pair(vec![ip], Some("reporter"));
        assert_eq!(identity_of_pem(&cert), None);
    }

    #[test]
    fn a_reload_swaps_a_good_pair_and_keeps_the_last_good_one_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsConfig {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            client_ca: None,
        };
        let write = |(cert, key): &(String, String)| {
            std::fs::write(&files.cert, cert).unwrap();
            std::fs::write(&files.key, key).unwrap();
        };
        let first = pair(vec![], Some("first"));
        write(&first);
        let tls = ServerTls::load(files.clone()).unwrap();
        let before = tls.current();
        assert!(!tls.reload().unwrap(), "unchanged files: nothing to do");
        assert!(Arc::ptr_eq(&before, &tls.current()));

        // The key of another certificate.
        let second = pair(vec![], Some("second"));
        write(&(second.0.clone(), first.1.clone()));
        let err = tls.reload().unwrap_err();
        assert!(matches!(err, TlsError::Pair { .. }), "{err}");
        assert!(err.to_string().contains("are not a usable pair"), "{err}");
        assert!(
            Arc::ptr_eq(&before, &tls.current()),
            "the last good pair stays"
        );
        // The same bad files again: not rebuilt, not reported again.
        assert!(!tls.reload().unwrap());

        write(&second);
        assert!(tls.reload().unwrap());
        assert!(!Arc::ptr_eq(&before, &tls.current()));

        // Not PEM at all, and a missing file: errors that name the file.
        std::fs::write(&files.key, "not a key").unwrap();
        let err = tls.reload().unwrap_err();
        assert!(
            err.to_string().contains("holds no usable PEM private key"),
            "{err}"
        );
        std::fs::remove_file(&files.cert).unwrap();
        let err = ServerTls::load(files.clone()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read the TLS certificate `"),
            "{err}"
        );
    }

    #[test]
    fn a_client_ca_makes_it_mutual_and_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(vec![], Some("server"));
        let files = TlsConfig {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            client_ca: Some(dir.path().join("ca.crt")),
        };
        std::fs::write(&files.cert, &cert).unwrap();
        std::fs::write(&files.key, &key).unwrap();
        std::fs::write(files.client_ca.as_ref().unwrap(), "").unwrap();
        let err = ServerTls::load(files.clone()).unwrap_err();
        assert!(
            err.to_string().contains("client CA") && err.to_string().contains("BEGIN CERTIFICATE"),
            "{err}"
        );
        std::fs::write(files.client_ca.as_ref().unwrap(), &cert).unwrap();
        let tls = ServerTls::load(files).unwrap();
        assert!(tls.is_mutual());
        assert_eq!(
            tls.current().alpn_protocols.first().map(Vec::as_slice),
            Some(&b"h2"[..])
        );
    }
}
