//! A test identity provider: signing keys made in the test (EC P-256 and
//! Ed25519 with rcgen; RSA from the test-only key in `tests/fixtures`), a
//! JWKS file in a tempdir, and tokens signed with them, so that tests can
//! report step-ups with evidence as an identity provider would.

use std::path::PathBuf;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use stepup::{IssuerConfig, KeySource, Trust, TrustConfig};

/// The issuer URL of the test identity provider.
pub const ISSUER: &str = "https://idp.test";
/// The audience its tokens are issued to (the application's client id).
pub const AUDIENCE: &str = "stepup-app";

/// The seconds since the epoch, now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// One signing key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub key: EncodingKey,
    pub jwk: Jwk,
}

fn install_provider() {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

impl SigningKey {
    /// A fresh key for `alg` (`ES256`, `EdDSA`; `RS256`/`PS256` use the
    /// test-only RSA key).
    pub fn new(kid: &str, alg: Algorithm) -> Self {
        install_provider();
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_der(
                &rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .unwrap()
                    .serialize_der(),
            ),
            Algorithm::EdDSA => {
                // rcgen (ring) writes PKCS#8 v2; ed25519-dalek reads v1:
                // the same 32-byte seed under the v1 prefix.
                let v2 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
                    .unwrap()
                    .serialize_der();
                let mut v1 = vec![
                    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04,
                    0x22, 0x04, 0x20,
                ];
                v1.extend_from_slice(&v2[16..48]);
                EncodingKey::from_ed_der(&v1)
            }
            Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_der(&test_rsa_der()),
            other => panic!("no test key for {other:?}"),
        };
        let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            alg,
            key,
            jwk,
        }
    }

    /// `claims` signed with this key (header `alg`, `kid`).
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// The PKCS#1 DER of `tests/fixtures/test-only-rsa-key.pem`, a key made
/// for these tests and nothing else.
pub fn test_rsa_der() -> Vec<u8> {
    use base64::Engine as _;
    let pem = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/test-only-rsa-key.pem"),
    )
    .unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// A JWKS document of `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    serde_json::to_string(&JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    })
    .unwrap()
}

/// The test identity provider: one ES256 key, published in a JWKS file.
pub struct Idp {
    pub key: SigningKey,
    pub dir: tempfile::TempDir,
    pub jwks_file: PathBuf,
}

impl Idp {
    pub fn new() -> Self {
        let key = SigningKey::new("idp-key-1", Algorithm::ES256);
        let dir = tempfile::tempdir().unwrap();
        let jwks_file = dir.path().join("jwks.json");
        std::fs::write(&jwks_file, jwks(&[&key])).unwrap();
        Self {
            key,
            dir,
            jwks_file,
        }
    }

    /// `[trust]` believing this provider.
    pub fn trust_config(&self) -> TrustConfig {
        TrustConfig {
            issuers: vec![IssuerConfig::new(
                ISSUER,
                vec![AUDIENCE.to_owned()],
                KeySource::File(self.jwks_file.clone()),
            )],
            ..TrustConfig::default()
        }
    }

    pub fn trust(&self) -> Trust {
        Trust::new(&self.trust_config())
    }

    /// The `[trust]` section of a config file believing this provider.
    pub fn toml(&self) -> String {
        format!(
            "[[trust.issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks_file = \"{}\"\n",
            self.jwks_file.display()
        )
    }

    /// The ID token of a completed step-up: `sub`, `sid`, `acr`, `amr`,
    /// authenticated and issued at `at` (seconds), valid for an hour from
    /// now.
    pub fn step_up(&self, sub: &str, sid: &str, acr: &str, amr: &[&str], at: i64) -> String {
        self.key.sign(&serde_json::json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "sid": sid,
            "acr": acr,
            "amr": amr,
            "auth_time": at,
            "iat": at,
            "exp": now() + 3600,
        }))
    }
}

/// The mTLS identity tests report failures as (on `[trust] reporters` of
/// [`Idp::trust_with_reporter`]).
pub const REPORTER: &str = "spiffe://stepup.test/ns/app/sa/reporter";

impl Idp {
    /// [`Idp::trust`] with [`REPORTER`] on `[trust] reporters`.
    pub fn trust_with_reporter(&self) -> Trust {
        Trust::new(&TrustConfig {
            reporters: vec![std::sync::Arc::from(REPORTER)],
            ..self.trust_config()
        })
    }
}

/// Calls `RecordStepUp` in process as the listed reporter [`REPORTER`]
/// (a verified mTLS identity; no time skew bound, as in `TestServer`).
pub async fn report_as_reporter(
    engine: &std::sync::Arc<stepup::Service>,
    req: stepup::proto::v1::RecordStepUpRequest,
) -> Result<stepup::proto::v1::RecordStepUpResponse, tonic::Status> {
    use stepup::internal::{DecisionApi, Peer, Transport};
    use stepup::proto::v1::decision_service_server::DecisionService as _;
    let api = DecisionApi::new(std::sync::Arc::clone(engine), None);
    let mut request = tonic::Request::new(req);
    request.extensions_mut().insert(Peer {
        transport: Transport::MutualTls,
        identity: Some(std::sync::Arc::from(REPORTER)),
    });
    api.record_step_up(request)
        .await
        .map(tonic::Response::into_inner)
}
