//! A real `stepup serve` (the binary `STEPUP_BIN` names) on the example
//! policies, the example app on a real port, an HTTP client, test
//! certificates and a test identity provider.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// The stepup binary to test: `STEPUP_BIN`, or a failure saying how to get one.
pub fn stepup_bin() -> PathBuf {
    match std::env::var_os("STEPUP_BIN") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "set STEPUP_BIN to a stepup binary (e.g. `cargo build --bin stepup` at the repository root), \
             or run sdk/rust/check.sh, which builds one"
        ),
    }
}

/// The repository's example policies.
pub fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `stepup serve`, stopped when dropped.
pub struct Sidecar {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    /// The address for [`stepup_client::Client::builder`].
    pub target: String,
}

impl Sidecar {
    /// `stepup serve` on a free loopback port with `args` added.
    pub fn tcp(args: &[&str]) -> Self {
        let port = free_port();
        Self::start(
            format!("127.0.0.1:{port}"),
            format!("http://127.0.0.1:{port}"),
            args,
        )
    }

    /// `stepup serve` on `listen`, reached at `target`.
    pub fn start(listen: String, target: String, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("stepup.log")).unwrap();
        let child = Command::new(stepup_bin())
            .arg("serve")
            .arg("--policies")
            .arg(policies())
            .args(["--listen", &listen, "--admin", "off", "--no-watch"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start STEPUP_BIN={}: {e}", stepup_bin().display()));
        let mut sidecar = Self {
            child: Some(child),
            dir,
            target,
        };
        sidecar.wait_listening(&listen);
        sidecar
    }

    fn wait_listening(&mut self, listen: &str) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let up = match listen.strip_prefix("unix:") {
                Some(path) => std::os::unix::net::UnixStream::connect(path).is_ok(),
                None => std::net::TcpStream::connect(listen).is_ok(),
            };
            if up {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("stepup serve exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < end,
                "stepup serve did not listen on {listen}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The sidecar's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stepup.log")).unwrap_or_default()
    }

    /// Stops the sidecar (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves `app` on a free port: its base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// An HTTP response: status, headers, JSON body (`Null` when not JSON).
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub json: serde_json::Value,
}

/// `method url` with these headers, over a real connection.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        json: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn install_jwt_provider() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

/// The shared secret of the example app's demo session tokens.
pub const APP_SECRET: &[u8] = b"payments-demo-secret-for-tests-only";

/// A session token the example app accepts (HS256 with [`APP_SECRET`]).
pub fn session_token(sub: &str, sid: &str, acr: &str, amr: &[&str], auth_time: i64) -> String {
    install_jwt_provider();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({
            "sub": sub, "sid": sid, "acr": acr, "amr": amr,
            "auth_time": auth_time, "exp": now() + 3600,
        }),
        &EncodingKey::from_secret(APP_SECRET).unwrap(),
    )
    .unwrap()
}

/// The test identity provider's issuer and audience.
pub const ISSUER: &str = "https://idp.test";
pub const AUDIENCE: &str = "stepup-app";

/// A test identity provider: an ES256 key made here, its JWKS in a file,
/// and a config file for `stepup serve --config` that trusts it.
pub struct Idp {
    key: EncodingKey,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Idp {
    pub fn new() -> Self {
        install_jwt_provider();
        let der = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_der();
        let key = EncodingKey::from_ec_der(&der);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("idp-key-1".into());
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(
            &jwks,
            serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap(),
        )
        .unwrap();
        let config = dir.path().join("stepup.toml");
        std::fs::write(
            &config,
            format!(
                "[[trust.issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks_file = \"{}\"\n",
                jwks.display()
            ),
        )
        .unwrap();
        Self { key, dir, config }
    }

    /// The ID token of a completed step-up, authenticated just now.
    pub fn step_up_token(&self, sub: &str, sid: &str, acr: &str, amr: &[&str]) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("idp-key-1".into());
        let at = now();
        jsonwebtoken::encode(
            &header,
            &serde_json::json!({
                "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "sid": sid, "acr": acr,
                "amr": amr, "auth_time": at, "iat": at, "exp": at + 3600,
            }),
            &self.key,
        )
        .unwrap()
    }
}

/// A test CA and leaf certificates, PEM files in a tempdir.
pub struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "stepup test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        Self { issuer, dir }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf named `name` (`localhost` gets a DNS SAN, others a URI SAN):
    /// the paths of its certificate and key.
    pub fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![if name == "localhost" {
            SanType::DnsName(name.try_into().unwrap())
        } else {
            SanType::URI(name.try_into().unwrap())
        }];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let slug: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
        let (cert_file, key_file) = (
            self.dir.path().join(format!("{slug}.crt")),
            self.dir.path().join(format!("{slug}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }
}
