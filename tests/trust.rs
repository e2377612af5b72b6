#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! Trusted issuers and step-up evidence: tokens signed with keys made in
//! the test, published in a JWKS file or by a JWKS server on loopback, and
//! `RecordStepUp` over a real socket (evidence applied or refused, nothing
//! recorded when refused) and in process (a listed mTLS reporter).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::TestServer;
use common::evidence::{AUDIENCE, ISSUER, Idp, SigningKey, jwks, now};
use jsonwebtoken::Algorithm;
use stepup::proto::v1::decision_service_server::DecisionService as _;
use stepup::proto::v1::{DecideRequest, DecideResponse, Outcome, RecordStepUpRequest};
use stepup::{CacheConfig, PolicySet, Service};
use stepup::{Expect, IssuerConfig, KeySource, TokenError, Trust, TrustConfig};
use tonic::Code;

const POLICY: &str = r#"
apiVersion: stepup/v1
kind: Levels
levels:
  - name: aal1
    acr: ["urn:stepup:aal1"]
  - name: aal2
    acr: ["urn:stepup:aal2"]
---
apiVersion: stepup/v1
kind: Policy
name: sensitive
signals:
  - id: failed-stepups
    when: "history.stepups_failed >= 1"
    score: 50
rules:
  - id: delete-account
    actions: ["account.delete"]
    effect: challenge
    require: { level: aal2, methods: [otp, hwk], max_age: 5m }
"#;

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut base = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now(), "exp": now() + 600,
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

async fn check(trust: &Trust, token: &str) -> Result<stepup::Verified, TokenError> {
    trust.verify(token, &Expect::evidence()).await
}

fn code(r: Result<stepup::Verified, TokenError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// A JWKS file of `keys` and the trust in it.
fn file_trust(keys: &[&SigningKey]) -> (Trust, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(keys)).unwrap();
    let config = TrustConfig {
        issuers: vec![IssuerConfig::new(
            ISSUER,
            vec![AUDIENCE.to_owned()],
            KeySource::File(path),
        )],
        ..TrustConfig::default()
    };
    (Trust::new(&config), dir)
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn each_accepted_algorithm_verifies() {
    let keys = [
        SigningKey::new("ec", Algorithm::ES256),
        SigningKey::new("ed", Algorithm::EdDSA),
        SigningKey::new("rsa", Algorithm::RS256),
    ];
    let mut pss = SigningKey::new("rsa", Algorithm::PS256);
    pss.jwk.common.key_algorithm = None;
    let (trust, _dir) = file_trust(&[&keys[0], &keys[1], &keys[2]]);
    for key in &keys {
        let v = check(&trust, &key.sign(&claims(serde_json::json!({}))))
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", key.alg));
        assert_eq!(&*v.issuer, ISSUER);
        assert_eq!(v.subject.as_deref(), Some("alice"));
        assert_eq!(v.algorithm, key.alg);
    }
    // The RSA key is pinned to RS256 in the set: a PS256 token under its
    // kid is refused; an unpinned set accepts PS256.
    let token = pss.sign(&claims(serde_json::json!({})));
    assert_eq!(code(check(&trust, &token).await), "key_mismatch");
    let (unpinned, _d) = file_trust(&[&pss]);
    assert_eq!(code(check(&unpinned, &token).await), "ok");
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_refused_by_name() {
    let key = SigningKey::new("k1", Algorithm::ES256);
    let (trust, _dir) = file_trust(&[&key]);
    let good = key.sign(&claims(serde_json::json!({})));
    assert_eq!(code(check(&trust, &good).await), "ok");

    // Signed by another key under the same kid.
    let other = SigningKey::new("k1", Algorithm::ES256);
    let forged = other.sign(&claims(serde_json::json!({})));
    assert_eq!(code(check(&trust, &forged).await), "bad_signature");
    // A payload swapped under a good signature.
    let parts: Vec<&str> = good.split('.').collect();
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims(serde_json::json!({"sub": "mallory"}))
            .to_string()
            .as_bytes()),
        parts[2]
    );
    assert_eq!(code(check(&trust, &swapped).await), "bad_signature");

    // `alg: none`, with and without a signature part.
    let none_header = b64(br#"{"alg":"none","kid":"k1"}"#);
    let payload = b64(claims(serde_json::json!({})).to_string().as_bytes());
    for token in [
        format!("{none_header}.{payload}."),
        format!("{none_header}.{payload}.{}", parts[2]),
    ] {
        let e = check(&trust, &token).await.unwrap_err();
        assert_eq!(e.code(), "alg_not_allowed");
        assert!(
            e.to_string()
                .starts_with("algorithm `none` is not accepted"),
            "{e}"
        );
    }

    // HS256 "signed" with the public key: its JWK JSON, and the raw x
    // coordinate, as the HMAC secret.
    let public = serde_json::to_vec(&key.jwk).unwrap();
    let hs_header = b64(br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#);
    for secret in [public.as_slice(), b"k1"] {
        let hs_key = jsonwebtoken::EncodingKey::from_secret(secret).unwrap();
        let signed = format!("{hs_header}.{payload}");
        let sig = jsonwebtoken::crypto::sign(signed.as_bytes(), &hs_key, Algorithm::HS256).unwrap();
        let e = check(&trust, &format!("{signed}.{sig}")).await.unwrap_err();
        assert_eq!(e.code(), "alg_not_allowed", "{e}");
    }

    let cases = [
        (serde_json::json!({"aud": "another-app"}), "aud_mismatch"),
        (serde_json::json!({"aud": null}), "aud_mismatch"),
        (
            serde_json::json!({"iss": "https://evil.test"}),
            "unknown_issuer",
        ),
        (serde_json::json!({"iss": null}), "missing_claim"),
        (serde_json::json!({"exp": now() - 3600}), "expired"),
        (serde_json::json!({"exp": null}), "missing_claim"),
        (serde_json::json!({"nbf": now() + 3600}), "not_yet_valid"),
        (serde_json::json!({"iat": now() + 3600}), "iat_future"),
    ];
    for (extra, want) in cases {
        let token = key.sign(&claims(extra.clone()));
        assert_eq!(code(check(&trust, &token).await), want, "{extra}");
    }
    // Within the clock skew (60 s by default): still good.
    let token = key.sign(&claims(
        serde_json::json!({"exp": now() - 30, "iat": now() + 30}),
    ));
    assert_eq!(code(check(&trust, &token).await), "ok");
    let e = check(
        &trust,
        &key.sign(&claims(serde_json::json!({"exp": now() - 3600}))),
    )
    .await;
    let message = e.unwrap_err().to_string();
    assert!(message.starts_with("expired (`exp` is 36"), "{message}");
    assert!(!message.contains(&good), "messages never quote the token");

    // A Security Event Token is no evidence, and evidence no SET.
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    header.typ = Some("secevent+jwt".into());
    let set_claims = claims(serde_json::json!({"exp": null, "jti": "e-1", "events": {}}));
    let set = jsonwebtoken::encode(&header, &set_claims, &key.key).unwrap();
    assert_eq!(code(check(&trust, &set).await), "typ_mismatch");
    let as_set = trust.verify(&set, &Expect::security_event(vec![])).await;
    assert_eq!(code(as_set), "ok");
    let e = trust
        .verify(&good, &Expect::security_event(vec![AUDIENCE.into()]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "typ_mismatch");
    let e = trust
        .verify(
            &set,
            &Expect::security_event(vec!["https://ssf.test".into()]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "aud_mismatch");
    assert_eq!(code(check(&trust, "not.a.jwt").await), "malformed");
}

/// A JWKS server on loopback serving what `body` holds, counting requests.
async fn jwks_server(body: Arc<std::sync::Mutex<String>>, hits: Arc<AtomicUsize>) -> String {
    jwks_server_over(body, hits, None).await
}

/// [`jwks_server`] over TLS with `tls` when given (an `https://` URL).
async fn jwks_server_over(
    body: Arc<std::sync::Mutex<String>>,
    hits: Arc<AtomicUsize>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> String {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (body, hits, tls) = (Arc::clone(&body), Arc::clone(&hits), tls.clone());
            tokio::spawn(async move {
                let service = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let text = body.lock().unwrap().clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(text)),
                        ))
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(tls) => {
                        let Ok(stream) = tls.accept(stream).await else {
                            return;
                        };
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = http.serve_connection(io, service).await;
                    }
                    None => {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = http.serve_connection(io, service).await;
                    }
                }
            });
        }
    });
    format!("{scheme}://{addr}/jwks.json")
}

/// A CA made in the test (its PEM) and a TLS acceptor for `127.0.0.1`
/// with a certificate it signed.
fn test_tls() -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    #[allow(deprecated)] // ring is the project's provider
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[tokio::test]
async fn keys_are_fetched_over_https_from_a_server_the_ca_vouches_for() {
    let key = SigningKey::new("tls-1", Algorithm::ES256);
    let body = Arc::new(std::sync::Mutex::new(jwks(&[&key])));
    let hits = Arc::new(AtomicUsize::new(0));
    let (ca_pem, acceptor) = test_tls();
    let url = jwks_server_over(Arc::clone(&body), Arc::clone(&hits), Some(acceptor)).await;
    assert!(url.starts_with("https://127.0.0.1:"));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let token = key.sign(&claims(serde_json::json!({})));
    let https_trust = |ca: Option<std::path::PathBuf>| {
        let mut issuer = IssuerConfig::new(
            ISSUER,
            vec![AUDIENCE.to_owned()],
            KeySource::Url(url.clone()),
        );
        issuer.jwks_ca_file = ca;
        Trust::new(&TrustConfig {
            issuers: vec![issuer],
            ..TrustConfig::default()
        })
    };
    assert_eq!(code(check(&https_trust(Some(ca_file)), &token).await), "ok");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // The system's roots do not know the test CA: no keys, fail closed.
    let e = check(&https_trust(None), &token).await.unwrap_err();
    assert_eq!(e.code(), "keys_unavailable", "{e}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the handshake failed first");
}

fn url_trust(url: &str, min_refresh: std::time::Duration) -> Trust {
    let mut issuer = IssuerConfig::new(
        ISSUER,
        vec![AUDIENCE.to_owned()],
        KeySource::Url(url.to_owned()),
    );
    issuer.jwks_min_refresh = min_refresh;
    Trust::new(&TrustConfig {
        issuers: vec![issuer],
        ..TrustConfig::default()
    })
}

#[tokio::test]
async fn an_unknown_kid_is_fetched_again_and_a_rotated_key_accepted() {
    let old = SigningKey::new("2026-01", Algorithm::ES256);
    let new = SigningKey::new("2026-02", Algorithm::EdDSA);
    let body = Arc::new(std::sync::Mutex::new(jwks(&[&old])));
    let hits = Arc::new(AtomicUsize::new(0));
    let url = jwks_server(Arc::clone(&body), Arc::clone(&hits)).await;

    let trust = url_trust(&url, std::time::Duration::ZERO);
    let token = new.sign(&claims(serde_json::json!({})));
    assert_eq!(
        code(check(&trust, &old.sign(&claims(serde_json::json!({})))).await),
        "ok"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "fetched on first use, then cached"
    );
    let e = check(&trust, &token).await.unwrap_err();
    assert_eq!(e.code(), "unknown_kid");
    assert_eq!(
        e.to_string(),
        format!("no key of issuer `{ISSUER}` has kid `2026-02`")
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2, "a miss fetches again");
    // The issuer rotates: the next token under the new kid is accepted.
    *body.lock().unwrap() = jwks(&[&old, &new]);
    assert_eq!(code(check(&trust, &token).await), "ok");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(code(check(&trust, &token).await), "ok");
    assert_eq!(hits.load(Ordering::SeqCst), 3, "a known kid needs no fetch");

    // Misses are rate limited: forged kids cannot hammer the issuer.
    let limited = url_trust(&url, std::time::Duration::from_secs(3600));
    *body.lock().unwrap() = jwks(&[&old]);
    let before = hits.load(Ordering::SeqCst);
    assert_eq!(code(check(&limited, &token).await), "unknown_kid");
    *body.lock().unwrap() = jwks(&[&old, &new]);
    for _ in 0..5 {
        assert_eq!(code(check(&limited, &token).await), "unknown_kid");
    }
    assert_eq!(hits.load(Ordering::SeqCst) - before, 1);

    // No key set at all: fail closed, and say why.
    let down = url_trust("http://127.0.0.1:9/jwks.json", std::time::Duration::ZERO);
    let e = check(&down, &token).await.unwrap_err();
    assert_eq!(e.code(), "keys_unavailable");
}

#[tokio::test]
async fn a_changed_jwks_file_is_read_again() {
    let old = SigningKey::new("file-1", Algorithm::ES256);
    let new = SigningKey::new("file-2", Algorithm::ES256);
    let (trust, dir) = file_trust(&[&old]);
    let token = new.sign(&claims(serde_json::json!({})));
    assert_eq!(code(check(&trust, &token).await), "unknown_kid");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&old, &new])).unwrap();
    // A modification time that differs even on a coarse-grained file system.
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(code(check(&trust, &token).await), "ok");
    // A broken rewrite keeps the last good keys.
    std::fs::write(&path, "{not json").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later + std::time::Duration::from_secs(2))
        .unwrap();
    assert_eq!(code(check(&trust, &token).await), "ok");
}

// --- RecordStepUp ---

fn decide_request(subject: &str, sid: &str) -> DecideRequest {
    let mut r: DecideRequest = serde_json::from_value(serde_json::json!({
        "action": "account.delete",
        "subject": { "id": subject },
        "session": { "id": sid, "acr": "urn:stepup:aal1", "amr": ["pwd"] },
    }))
    .unwrap();
    r.time = Some(pbjson_types::Timestamp {
        seconds: now(),
        nanos: 0,
    });
    r
}

async fn serve(trust: Trust) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
    let (policy, _) = PolicySet::load(dir.path()).unwrap_or_else(|r| panic!("{r}"));
    let engine = Service::new(
        policy,
        CacheConfig {
            capacity: 0,
            ..CacheConfig::default()
        },
    )
    .with_trust(trust);
    (TestServer::start_engine(engine).await, dir)
}

type Client =
    stepup::proto::v1::decision_service_client::DecisionServiceClient<tonic::transport::Channel>;

async fn outcome(c: &mut Client, subject: &str, sid: &str) -> Outcome {
    let r: DecideResponse = c
        .decide(decide_request(subject, sid))
        .await
        .unwrap()
        .into_inner();
    Outcome::try_from(r.outcome).unwrap()
}

fn with_evidence(token: String) -> RecordStepUpRequest {
    RecordStepUpRequest {
        evidence: token,
        ..Default::default()
    }
}

#[tokio::test]
async fn evidence_of_a_step_up_allows_the_retried_request() {
    let idp = Idp::new();
    let (server, _dir) = serve(idp.trust()).await;
    let mut c = server.client().await;
    assert_eq!(outcome(&mut c, "alice", "s-1").await, Outcome::Challenge);
    let at = now() - 5;
    let token = idp.step_up("alice", "s-1", "urn:stepup:aal2", &["pwd", "otp"], at);
    let first = c
        .record_step_up(RecordStepUpRequest {
            subject_id: "alice".into(),
            session_id: "s-1".into(),
            level: "aal2".into(),
            ..with_evidence(token.clone())
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.elevation_expire_time.unwrap().seconds, at + 15 * 60);
    assert_eq!(outcome(&mut c, "alice", "s-1").await, Outcome::Allow);
    // Another session of alice is not elevated.
    assert_eq!(outcome(&mut c, "alice", "s-2").await, Outcome::Challenge);
    // A replay of the same token is idempotent: the window does not move.
    let again = c
        .record_step_up(with_evidence(token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.elevation_expire_time, first.elevation_expire_time);
    assert_eq!(again.stepups_failed, 0);
    server.stop().await;
}

#[tokio::test]
async fn refused_reports_record_nothing() {
    let idp = Idp::new();
    let (server, _dir) = serve(idp.trust()).await;
    let mut c = server.client().await;
    let good =
        |sub: &str, sid: &str| idp.step_up(sub, sid, "urn:stepup:aal2", &["pwd", "otp"], now());
    let expired = idp.key.sign(&serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "bob", "sid": "s-1",
        "acr": "urn:stepup:aal2", "amr": ["otp"], "iat": now() - 7200, "exp": now() - 3600,
    }));
    let stranger = SigningKey::new("idp-key-1", Algorithm::ES256).sign(&serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "bob", "sid": "s-1",
        "acr": "urn:stepup:aal2", "amr": ["otp"], "iat": now(), "exp": now() + 600,
    }));
    let cases: Vec<(RecordStepUpRequest, Code, &str)> = vec![
        (
            RecordStepUpRequest {
                subject_id: "bob".into(),
                ..with_evidence(good("mallory", "s-1"))
            },
            Code::PermissionDenied,
            "`subject_id` does not match the evidence's `sub` claim",
        ),
        (
            RecordStepUpRequest {
                session_id: "s-1".into(),
                ..with_evidence(good("bob", "s-9"))
            },
            Code::PermissionDenied,
            "`session_id` does not match the evidence's `sid` claim",
        ),
        (
            RecordStepUpRequest {
                acr: "urn:stepup:aal2".into(),
                ..with_evidence(idp.step_up("bob", "s-1", "urn:stepup:aal1", &["pwd"], now()))
            },
            Code::PermissionDenied,
            "`acr` does not match the evidence's `acr` claim",
        ),
        (
            RecordStepUpRequest {
                level: "aal2".into(),
                ..with_evidence(idp.step_up("bob", "s-1", "urn:stepup:aal1", &["pwd"], now()))
            },
            Code::PermissionDenied,
            "`level` is not the level of the evidence's `acr` claim",
        ),
        (
            RecordStepUpRequest {
                amr: vec!["hwk".into()],
                ..with_evidence(good("bob", "s-1"))
            },
            Code::PermissionDenied,
            "`amr` does not match the evidence's `amr` claim",
        ),
        (
            with_evidence(expired),
            Code::Unauthenticated,
            "`evidence` refused (expired): expired (`exp` is 3",
        ),
        (
            with_evidence(stranger),
            Code::Unauthenticated,
            "`evidence` refused (bad_signature): the signature does not verify",
        ),
        (
            RecordStepUpRequest {
                subject_id: "bob".into(),
                session_id: "s-1".into(),
                level: "aal2".into(),
                amr: vec!["otp".into()],
                success: Some(true),
                ..Default::default()
            },
            Code::PermissionDenied,
            "step-up report refused: it carries no `evidence` (the step-up's signed token), and the caller has no verified client certificate (mTLS)",
        ),
        (
            RecordStepUpRequest {
                subject_id: "bob".into(),
                session_id: "s-1".into(),
                success: Some(false),
                ..Default::default()
            },
            Code::PermissionDenied,
            "step-up report refused",
        ),
    ];
    for (req, want, message) in cases {
        let e = c.record_step_up(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), want, "{req:?}: {e:?}");
        assert!(e.message().starts_with(message), "{}", e.message());
    }
    // Nothing was recorded: bob's session is still challenged, and the
    // refused failure did not count (a recorded one would raise the risk).
    assert_eq!(outcome(&mut c, "bob", "s-1").await, Outcome::Challenge);
    let r = c
        .decide(decide_request("bob", "s-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.risk.unwrap().signals.is_empty());
    assert_eq!(outcome(&mut c, "mallory", "s-1").await, Outcome::Challenge);
    server.stop().await;
}

#[tokio::test]
async fn without_trust_settings_reports_are_off() {
    let (server, _dir) = serve(Trust::default()).await;
    let mut c = server.client().await;
    let idp = Idp::new();
    let e = c
        .record_step_up(with_evidence(idp.step_up(
            "a",
            "s",
            "urn:stepup:aal2",
            &["otp"],
            now(),
        )))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message()
            .starts_with("step-up reports are off: no `[trust]` settings; add `[[trust.issuers]]`"),
        "{}",
        e.message()
    );
    server.stop().await;
}

/// Calls `RecordStepUp` in process as a caller with the mTLS `identity`.
async fn report_as(
    engine: &Arc<Service>,
    identity: Option<&str>,
    req: RecordStepUpRequest,
) -> Result<stepup::proto::v1::RecordStepUpResponse, tonic::Status> {
    use stepup::internal::{DecisionApi, Peer, Transport};
    let api = DecisionApi::new(Arc::clone(engine), None);
    let mut request = tonic::Request::new(req);
    request.extensions_mut().insert(Peer {
        transport: if identity.is_some() {
            Transport::MutualTls
        } else {
            Transport::Tcp
        },
        identity: identity.map(Arc::from),
    });
    api.record_step_up(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_listed_reporter_may_report_without_evidence() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), POLICY).unwrap();
    let (policy, _) = PolicySet::load(dir.path()).unwrap();
    let reporter = "spiffe://cluster.local/ns/app/sa/web";
    let trust = Trust::new(&TrustConfig {
        reporters: vec![Arc::from(reporter)],
        ..TrustConfig::default()
    });
    let engine = Arc::new(Service::new(policy, CacheConfig::default()).with_trust(trust));
    let failure = RecordStepUpRequest {
        subject_id: "carol".into(),
        session_id: "s-1".into(),
        success: Some(false),
        ..Default::default()
    };
    for identity in [None, Some("spiffe://cluster.local/ns/app/sa/other")] {
        let e = report_as(&engine, identity, failure.clone())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    let e = report_as(
        &engine,
        Some("spiffe://cluster.local/ns/app/sa/other"),
        failure.clone(),
    )
    .await
    .unwrap_err();
    assert!(
        e.message().ends_with(
            "the caller `spiffe://cluster.local/ns/app/sa/other` is not on `[trust] reporters`"
        ),
        "{}",
        e.message()
    );
    let r = report_as(&engine, Some(reporter), failure.clone())
        .await
        .unwrap();
    assert_eq!(r.stepups_failed, 1, "the first failure that counts");
    let success = RecordStepUpRequest {
        success: Some(true),
        level: "aal2".into(),
        amr: vec!["otp".into()],
        ..failure
    };
    // A listed reporter's fields are checked against the policy.
    let unknown = RecordStepUpRequest {
        level: "aal9".into(),
        ..success.clone()
    };
    let e = report_as(&engine, Some(reporter), unknown)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "`level`: unknown level `aal9` (the levels are `aal1`, `aal2`)"
    );
    let r = report_as(&engine, Some(reporter), success).await.unwrap();
    assert!(r.elevation_expire_time.is_some());
}

/// `stepup serve` with `config` (TOML) over the policy above: the child,
/// its client, and the file its stderr goes to.
async fn serve_process(
    dir: &std::path::Path,
    config: &str,
) -> (std::process::Child, Client, std::path::PathBuf) {
    std::fs::create_dir(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/p.yaml"), POLICY).unwrap();
    std::fs::write(dir.join("stepup.toml"), config).unwrap();
    let logs = dir.join("stderr.log");
    let grpc = format!("127.0.0.1:{}", common::free_port());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args([
            "serve",
            "--no-watch",
            "--admin",
            "off",
            "--log-format",
            "text",
        ])
        .arg("--policies")
        .arg(dir.join("policies"))
        .arg("--config")
        .arg(dir.join("stepup.toml"))
        .args(["--listen", &grpc])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&logs).unwrap())
        .spawn()
        .unwrap();
    let client = common::connect_when_up(&mut child, &grpc).await;
    (child, client, logs)
}

#[tokio::test]
async fn serve_reads_trust_from_the_config_file() {
    let idp = Idp::new();
    let dir = tempfile::tempdir().unwrap();
    // A relative `jwks_file` is relative to the config file.
    std::fs::copy(&idp.jwks_file, dir.path().join("idp-jwks.json")).unwrap();
    let config = format!(
        "[trust]\nclock_skew = \"30s\"\n[[trust.issuers]]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\njwks_file = \"idp-jwks.json\"\n"
    );
    let (mut child, mut c, logs) = serve_process(dir.path(), &config).await;
    assert_eq!(outcome(&mut c, "dana", "s-1").await, Outcome::Challenge);
    let token = idp.step_up("dana", "s-1", "urn:stepup:aal2", &["otp"], now());
    c.record_step_up(with_evidence(token)).await.unwrap();
    assert_eq!(outcome(&mut c, "dana", "s-1").await, Outcome::Allow);
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(logs).unwrap();
    assert!(!text.contains("step-up reports are off"), "{text}");
    assert!(
        text.contains("step-up recorded from verified evidence"),
        "{text}"
    );
}

#[tokio::test]
async fn serve_without_trust_warns_that_reports_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut c, logs) = serve_process(dir.path(), "").await;
    let e = c
        .record_step_up(RecordStepUpRequest {
            subject_id: "erin".into(),
            success: Some(false),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(logs).unwrap();
    assert!(
        text.contains("step-up reports are off: no `[trust]` settings"),
        "{text}"
    );
}

#[test]
fn serve_refuses_a_bad_trust_section() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stepup.toml");
    std::fs::write(
        &config,
        "[[trust.issuers]]\nissuer = \"https://idp.test\"\naudiences = [\"app\"]\njwks_url = \"http://idp.test/jwks\"\n[[trust.issuers]]\nissuer = \"https://other.test\"\naudiences = [\"app\"]\njwks_file = \"missing.json\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(["serve", "--no-watch", "--admin", "off"])
        .arg("--policies")
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "error: trust.issuers[0].jwks_url `http://idp.test/jwks`: plain http is refused"
        ),
        "{err}"
    );
    assert!(
        err.contains("error: trust.issuers[1].jwks_file: cannot read `"),
        "{err}"
    );
}

#[tokio::test]
async fn an_issuer_bound_to_a_tenant_elevates_only_there() {
    let idp = Idp::new();
    let mut config = idp.trust_config();
    config.issuers[0].tenant = Some("acme".into());
    let (server, _dir) = serve(Trust::new(&config)).await;
    let mut c = server.client().await;
    let token = idp.step_up("frank", "s-1", "urn:stepup:aal2", &["otp"], now());
    let e = c
        .record_step_up(RecordStepUpRequest {
            tenant: "globex".into(),
            ..with_evidence(token.clone())
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        e.message(),
        "`tenant` is not the tenant of the evidence's issuer (`[[trust.issuers]] tenant`)"
    );
    c.record_step_up(with_evidence(token)).await.unwrap();
    let in_tenant = |tenant: &str| {
        let mut r = decide_request("frank", "s-1");
        r.subject.as_mut().unwrap().tenant = tenant.into();
        r
    };
    let decide = |r: DecideRequest| {
        let mut c = c.clone();
        async move { Outcome::try_from(c.decide(r).await.unwrap().into_inner().outcome).unwrap() }
    };
    assert_eq!(decide(in_tenant("acme")).await, Outcome::Allow);
    assert_eq!(decide(in_tenant("globex")).await, Outcome::Challenge);
    assert_eq!(decide(in_tenant("")).await, Outcome::Challenge);
    server.stop().await;
}

#[tokio::test]
async fn with_two_issuers_evidence_names_the_issuer_qualified_subject() {
    // The rule Envoy's mapping follows with two or more issuers: subject
    // ids are `<iss>#<sub>`, so the same `sub` of two issuers is two users.
    let idp = Idp::new();
    let mut config = idp.trust_config();
    let partner = "https://partner.example";
    config.issuers.push(IssuerConfig::new(
        partner,
        vec![AUDIENCE.to_owned()],
        KeySource::File(idp.jwks_file.clone()),
    ));
    let (server, _dir) = serve(Trust::new(&config)).await;
    let mut c = server.client().await;
    let token = idp.step_up("grace", "s-1", "urn:stepup:aal2", &["otp"], now());
    let qualified = format!("{ISSUER}#grace");
    let e = c
        .record_step_up(RecordStepUpRequest {
            subject_id: "grace".into(),
            ..with_evidence(token.clone())
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().starts_with("`subject_id` does not match"),
        "{e:?}"
    );
    c.record_step_up(RecordStepUpRequest {
        subject_id: qualified.clone(),
        ..with_evidence(token)
    })
    .await
    .unwrap();
    assert_eq!(outcome(&mut c, &qualified, "s-1").await, Outcome::Allow);
    assert_eq!(outcome(&mut c, "grace", "s-1").await, Outcome::Challenge);
    let other = format!("{partner}#grace");
    assert_eq!(outcome(&mut c, &other, "s-1").await, Outcome::Challenge);
    server.stop().await;
}

/// What evidence proves is an authentication at its `auth_time`: without
/// that claim it proves no time (`iat` is when the token was issued, e.g.
/// refreshed long after), and a refreshed token opens no later window.
#[tokio::test]
async fn evidence_proves_its_auth_time_and_nothing_later() {
    let idp = Idp::new();
    let (server, _dir) = serve(idp.trust()).await;
    let mut c = server.client().await;
    let token = |auth_time: Option<i64>| {
        let mut extra = serde_json::json!({
            "sid": "s-1", "acr": "urn:stepup:aal2", "amr": ["pwd", "otp"],
        });
        if let Some(t) = auth_time {
            extra["auth_time"] = t.into();
        }
        idp.key.sign(&claims(extra))
    };
    // An access token without `auth_time`, issued now: refused.
    let e = c
        .record_step_up(with_evidence(token(None)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(
        e.message(),
        "`evidence` refused (missing_claim): the `auth_time` claim is missing"
    );
    assert_eq!(outcome(&mut c, "alice", "s-1").await, Outcome::Challenge);
    // A token refreshed now for an authentication 10 minutes ago: recorded,
    // the window from the authentication, and `max_age: 5m` not met.
    let authenticated = now() - 600;
    let r = c
        .record_step_up(with_evidence(token(Some(authenticated))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.elevation_expire_time.unwrap().seconds,
        authenticated + 15 * 60
    );
    assert_eq!(outcome(&mut c, "alice", "s-1").await, Outcome::Challenge);
    server.stop().await;
}

/// A logout token or security event is no evidence; a refusal tells the
/// caller the failed check, not the configuration (accepted audiences); a
/// caller that may not report learns nothing of the policy's levels.
#[tokio::test]
async fn refusals_name_the_check_not_the_configuration() {
    let idp = Idp::new();
    let (server, _dir) = serve(idp.trust()).await;
    let mut c = server.client().await;
    let logout = idp.key.sign(&claims(serde_json::json!({
        "sid": "s-1", "auth_time": now(),
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    })));
    let e = c.record_step_up(with_evidence(logout)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(
        e.message()
            .starts_with("`evidence` refused (invalid_claim): the `events` claim is not absent"),
        "{}",
        e.message()
    );
    let other_app = idp.key.sign(&claims(serde_json::json!({
        "aud": "another-app", "sid": "s-1", "auth_time": now(),
    })));
    let e = c
        .record_step_up(with_evidence(other_app))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(
        e.message(),
        "`evidence` refused (aud_mismatch): `aud` names none of the accepted audiences"
    );
    assert!(!e.message().contains(AUDIENCE));
    let e = c
        .record_step_up(RecordStepUpRequest {
            subject_id: "alice".into(),
            level: "aal9".into(),
            success: Some(true),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(!e.message().contains("aal1"), "{}", e.message());
    server.stop().await;
}

/// A fresh sign-in at a lower level does not make an old strong session
/// fresh: the elevation's `acr`, `amr` and `auth_time` come as one.
#[tokio::test]
async fn a_fresh_weak_sign_in_does_not_refresh_an_old_strong_session() {
    let idp = Idp::new();
    let (server, _dir) = serve(idp.trust()).await;
    let mut c = server.client().await;
    // The caller's own token: aal2 with otp, an hour ago (`max_age: 5m` unmet).
    let mut old_strong = decide_request("dora", "s-1");
    if let Some(s) = old_strong.session.as_mut() {
        s.acr = "urn:stepup:aal2".into();
        s.amr = vec!["otp".into()];
        s.auth_time = Some(pbjson_types::Timestamp {
            seconds: now() - 3600,
            nanos: 0,
        });
    }
    let decide = |c: &mut Client, r: DecideRequest| {
        let mut c = c.clone();
        async move {
            let r = c.decide(r).await.unwrap().into_inner();
            Outcome::try_from(r.outcome).unwrap()
        }
    };
    assert_eq!(decide(&mut c, old_strong.clone()).await, Outcome::Challenge);
    let weak = idp.step_up("dora", "s-1", "urn:stepup:aal1", &["pwd"], now() - 5);
    c.record_step_up(with_evidence(weak)).await.unwrap();
    assert_eq!(decide(&mut c, old_strong.clone()).await, Outcome::Challenge);
    let strong = idp.step_up("dora", "s-1", "urn:stepup:aal2", &["pwd", "otp"], now() - 5);
    c.record_step_up(with_evidence(strong)).await.unwrap();
    assert_eq!(decide(&mut c, old_strong).await, Outcome::Allow);
    server.stop().await;
}
