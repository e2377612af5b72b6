//! An issuer's signing keys: a JWKS parsed into verification keys (only the
//! key types of the accepted algorithms; symmetric `oct` keys are never
//! loaded), and the cache that keeps them fresh: a file is re-read when it
//! changes; a URL is fetched on first use, again when the set is older than
//! `jwks_refresh`, and on an unknown `kid`, never more often than
//! `jwks_min_refresh`. A fetch is bounded in time and size; a failed one
//! keeps the last good set.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::config::{IssuerConfig, KeySource};

/// The largest key set document accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// The most keys kept from one key set.
pub const MAX_KEYS: usize = 64;
/// How long one fetch of a key set may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The kind of key, which decides the algorithms it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA: `RS256`, `PS256`.
    Rsa,
    /// EC on P-256: `ES256`.
    P256,
    /// OKP on Ed25519: `EdDSA`.
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind verifies `alg`.
    pub fn fits(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (Self::Rsa, Algorithm::RS256 | Algorithm::PS256)
                | (Self::P256, Algorithm::ES256)
                | (Self::Ed25519, Algorithm::EdDSA)
        )
    }
}

/// One verification key.
pub struct Key {
    /// The key id (`kid`), if the set gives one.
    pub kid: Option<String>,
    /// The algorithm the set pins the key to (`alg`), if any.
    pub alg: Option<Algorithm>,
    /// The kind of key.
    pub kind: KeyKind,
    /// The key itself.
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Why a key set could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    /// The file cannot be read.
    #[error("cannot read `{}`: {error}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Larger than [`MAX_JWKS_BYTES`].
    #[error("the key set is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// Not a JWKS document.
    #[error("not a JWKS document (`{{\"keys\": [...]}}`): {0}")]
    Json(String),
    /// The fetch failed.
    #[error("fetching the key set failed: {0}")]
    Fetch(String),
    /// The CA file holds no usable certificate.
    #[error("`{}`: {detail}", .path.display())]
    Roots {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// The CA certificates of the PEM file `path` (at least one).
pub fn read_roots(path: &Path) -> Result<rustls::RootCertStore, KeySetError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let roots_error = |detail: String| KeySetError::Roots {
        path: path.to_owned(),
        detail,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| roots_error(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| roots_error(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| roots_error(format!("not a CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(roots_error("no PEM certificate in the file".to_owned()));
    }
    Ok(roots)
}

/// The keys of one JWKS document: those usable for the accepted
/// algorithms, in document order, at most [`MAX_KEYS`].
pub fn parse(bytes: &[u8]) -> Result<Vec<Arc<Key>>, KeySetError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(KeySetError::TooLarge);
    }
    let set: JwkSet =
        serde_json::from_slice(bytes).map_err(|e| KeySetError::Json(e.to_string()))?;
    Ok(set
        .keys
        .iter()
        .filter_map(key)
        .take(MAX_KEYS)
        .map(Arc::new)
        .collect())
}

/// The key of `jwk`, unless it is for encryption, symmetric, or of a type
/// or curve no accepted algorithm uses.
fn key(jwk: &Jwk) -> Option<Key> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => KeyKind::P256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            KeyKind::Ed25519
        }
        // `oct` (HMAC secrets) and anything else: never a verification key.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(KeyAlgorithm::EdDSA) => Some(Algorithm::EdDSA),
        // Pinned to an algorithm we do not accept: unusable.
        Some(_) => return None,
    };
    if alg.is_some_and(|a| !kind.fits(a)) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        kind,
        key,
    })
}

/// Reads and parses a JWKS file.
pub fn read_file(path: &Path) -> Result<Vec<Arc<Key>>, KeySetError> {
    let bytes = std::fs::read(path).map_err(|error| KeySetError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(&bytes)
}

/// The keys in use and when they were loaded.
struct Loaded {
    keys: Vec<Arc<Key>>,
    /// When the keys were loaded (`None`: never).
    at: Option<Instant>,
    /// The file's modification time when it was read.
    modified: Option<SystemTime>,
    /// The last fetch attempt, successful or not.
    attempt: Option<Instant>,
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// The cached keys of one issuer.
pub struct KeyCache {
    source: KeySource,
    refresh: Duration,
    min_refresh: Duration,
    loaded: ArcSwap<Loaded>,
    /// One fetch at a time: callers that find the set stale wait for it.
    fetching: tokio::sync::Mutex<()>,
    client: Option<Client>,
}

/// What a lookup found.
pub enum Lookup {
    /// The key for the token.
    Found(Arc<Key>),
    /// No key has the token's `kid` (or, without a `kid`, no single key
    /// fits the algorithm).
    Missing,
    /// No keys could be loaded at all.
    Unavailable(String),
}

impl KeyCache {
    /// The cache for `issuer`'s keys; a file is read now (a failure leaves
    /// the set empty and is logged: tokens then fail closed).
    pub fn new(issuer: &IssuerConfig) -> Self {
        let mut loaded = Loaded {
            keys: Vec::new(),
            at: None,
            modified: None,
            attempt: None,
        };
        if let KeySource::File(path) = &issuer.keys {
            loaded.modified = modified(path);
            match read_file(path) {
                Ok(keys) => {
                    loaded.keys = keys;
                    loaded.at = Some(Instant::now());
                }
                Err(e) => {
                    tracing::error!(issuer = %issuer.issuer, "trusted issuer keys: {e}; its tokens are refused")
                }
            }
        }
        let client = match &issuer.keys {
            KeySource::Url(_) => client(issuer.jwks_ca_file.as_deref())
                .map_err(|e| {
                    tracing::error!(issuer = %issuer.issuer, "cannot build the TLS client: {e}; its tokens are refused");
                })
                .ok(),
            KeySource::File(_) => None,
        };
        Self {
            source: issuer.keys.clone(),
            refresh: issuer.jwks_refresh,
            min_refresh: issuer.jwks_min_refresh,
            loaded: ArcSwap::from_pointee(loaded),
            fetching: tokio::sync::Mutex::new(()),
            client,
        }
    }

    /// The key for a token signed with `alg` under `kid`.
    pub async fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        self.refresh_if_stale().await;
        let loaded = self.loaded.load();
        if let Some(k) = find(&loaded.keys, kid, alg) {
            return Lookup::Found(k);
        }
        // An unknown `kid`: the issuer may have rotated its keys.
        if let KeySource::Url(_) = self.source
            && self.may_fetch(&loaded)
        {
            drop(loaded);
            self.fetch(true).await;
            let loaded = self.loaded.load();
            if let Some(k) = find(&loaded.keys, kid, alg) {
                return Lookup::Found(k);
            }
        }
        let loaded = self.loaded.load();
        if loaded.at.is_none() {
            return Lookup::Unavailable(match &self.source {
                KeySource::File(p) => format!("the key file `{}` could not be read", p.display()),
                KeySource::Url(u) => format!("the key set at `{u}` could not be fetched"),
            });
        }
        Lookup::Missing
    }

    fn may_fetch(&self, loaded: &Loaded) -> bool {
        loaded
            .attempt
            .is_none_or(|t| t.elapsed() >= self.min_refresh)
    }

    /// Re-reads a changed file; fetches a URL's set when none is loaded or
    /// it is older than `jwks_refresh`.
    async fn refresh_if_stale(&self) {
        match &self.source {
            KeySource::File(path) => {
                let now = modified(path);
                if now != self.loaded.load().modified {
                    self.reread(path, now);
                }
            }
            KeySource::Url(_) => {
                let loaded = self.loaded.load();
                let stale = loaded.at.is_none_or(|t| t.elapsed() >= self.refresh);
                if stale && self.may_fetch(&loaded) {
                    drop(loaded);
                    self.fetch(false).await;
                }
            }
        }
    }

    fn reread(&self, path: &Path, modified: Option<SystemTime>) {
        let old = self.loaded.load();
        let next = match read_file(path) {
            Ok(keys) => {
                tracing::info!(file = %path.display(), keys = keys.len(), "trusted issuer keys reloaded");
                Loaded {
                    keys,
                    at: Some(Instant::now()),
                    modified,
                    attempt: None,
                }
            }
            Err(e) => {
                tracing::warn!("trusted issuer keys: {e}; keeping the last good key set");
                Loaded {
                    keys: old.keys.clone(),
                    at: old.at,
                    modified,
                    attempt: None,
                }
            }
        };
        self.loaded.store(Arc::new(next));
    }

    /// Fetches the URL's set (one fetch at a time; a caller that waited for
    /// another's fetch uses its result). `miss`: the fetch is for an
    /// unknown `kid`.
    async fn fetch(&self, miss: bool) {
        let (KeySource::Url(url), Some(client)) = (&self.source, &self.client) else {
            return;
        };
        let before = self.loaded.load().attempt;
        let _guard = self.fetching.lock().await;
        if self.loaded.load().attempt != before {
            return;
        }
        let result = fetch(client, url).await;
        let old = self.loaded.load();
        let now = Instant::now();
        let next = match result {
            Ok(keys) => {
                tracing::info!(
                    url,
                    keys = keys.len(),
                    unknown_kid = miss,
                    "trusted issuer keys fetched"
                );
                Loaded {
                    keys,
                    at: Some(now),
                    modified: None,
                    attempt: Some(now),
                }
            }
            Err(e) => {
                tracing::warn!(
                    url,
                    "trusted issuer keys: {e}; keeping the last good key set"
                );
                Loaded {
                    keys: old.keys.clone(),
                    at: old.at,
                    modified: None,
                    attempt: Some(now),
                }
            }
        };
        self.loaded.store(Arc::new(next));
    }
}

/// The key for `kid` that verifies `alg`; without a `kid`, the only key
/// that does.
fn find(keys: &[Arc<Key>], kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
    match kid {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)).cloned(),
        None => {
            let mut fitting = keys.iter().filter(|k| k.kind.fits(alg));
            match (fitting.next(), fitting.next()) {
                (Some(k), None) => Some(Arc::clone(k)),
                _ => None,
            }
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The HTTPS client: rustls with the ring provider and the CA certificates
/// of `ca` (a PEM file), else the system's root certificates; HTTP/1.1.
// ring is the project's one crypto provider; rustls 0.23.48 deprecates its
// constructor only for lacking post-quantum key exchange.
#[allow(deprecated)]
fn client(ca: Option<&Path>) -> Result<Client, String> {
    let roots = match ca {
        Some(path) => read_roots(path).map_err(|e| e.to_string())?,
        None => {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // A certificate the store rejects is skipped: the others
                // still work.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                tracing::warn!(
                    "no system root certificates found: https key set fetches will fail"
                );
            }
            roots
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector),
    )
}

/// GETs `url` within [`FETCH_TIMEOUT`] and at most [`MAX_JWKS_BYTES`]; any
/// status but 200 is a failure; redirects are not followed.
async fn fetch(client: &Client, url: &str) -> Result<Vec<Arc<Key>>, KeySetError> {
    let fetch = async {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| KeySetError::Fetch(format!("{e}")))?;
        let request = hyper::Request::get(uri)
            .header(
                hyper::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| KeySetError::Fetch(e.to_string()))?;
        let response = client
            .request(request)
            .await
            .map_err(|e| KeySetError::Fetch(error_chain(&e)))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(KeySetError::Fetch(format!("status {}", response.status())));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| KeySetError::Fetch(format!("reading the body: {e}")))?
            .to_bytes();
        parse(&body)
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| KeySetError::Fetch(format!("no answer within {FETCH_TIMEOUT:?}")))?
}

/// `e` and its sources, `: `-separated (hyper's own message is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
