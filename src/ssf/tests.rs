//! The receiver over a real trust store (a key made here, published in a
//! JWKS file): bearer tokens per stream, the event effects and the level
//! mapping, and that nothing refused has an effect.

use std::collections::BTreeMap;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::config::{Stream, Token};
use super::*;
use crate::history::HistoryConfig;
use crate::trust::{IssuerConfig, KeySource, TrustConfig};

const ISS: &str = "https://idp.test";
const AUD: &str = "https://stepup.test/ssf";

const LEVELS: &str = r#"
apiVersion: stepup/v1
kind: Levels
levels:
  - name: aal1
    acr: ["a1"]
  - name: aal2
    acr: ["a2"]
"#;

struct Fixture {
    key: EncodingKey,
    trust: Trust,
    history: History,
    policy: PolicySet,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    fixture_for(None)
}

/// [`fixture`] with the issuer bound to `tenant`.
fn fixture_for(tenant: Option<&str>) -> Fixture {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let der = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_der();
    let key = EncodingKey::from_ec_der(&der);
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("k1".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap(),
    )
    .unwrap();
    let mut issuer = IssuerConfig::new(ISS, vec![AUD.to_owned()], KeySource::File(jwks));
    issuer.tenant = tenant.map(str::to_owned);
    let trust = Trust::new(&TrustConfig {
        issuers: vec![issuer],
        ..TrustConfig::default()
    });
    let (policy, _) = PolicySet::from_str("levels.yaml", LEVELS).unwrap();
    Fixture {
        key,
        trust,
        history: History::new(HistoryConfig::default()),
        policy,
        _dir: dir,
    }
}

impl Fixture {
    fn set(
        &self,
        jti: &str,
        kind: &str,
        payload: serde_json::Value,
        subject: serde_json::Value,
    ) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".to_owned());
        header.typ = Some("secevent+jwt".to_owned());
        let claims = serde_json::json!({
            "iss": ISS, "aud": AUD, "jti": jti, "iat": Utc::now().timestamp(),
            "sub_id": subject,
            "events": { format!("{}{kind}", event::CAEP): payload }
        });
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }

    async fn receive(
        &self,
        receiver: &Receiver,
        set: &str,
        bearer: Option<&str>,
    ) -> Result<Received, ReceiveError> {
        receiver
            .receive(
                set,
                bearer,
                &self.trust,
                &self.history,
                &self.policy,
                Utc::now(),
            )
            .await
    }

    fn subject(&self) -> crate::history::SubjectKey {
        self.history.keyer().subject("", "alice@example.com")
    }

    fn signals(&self) -> Option<crate::history::signals::Signals> {
        let now = Utc::now().timestamp_millis();
        let entry = self.history.store().get(self.subject(), now)?;
        entry.lock().signals.as_deref().cloned()
    }
}

fn alice(session: Option<&str>) -> serde_json::Value {
    let mut s = serde_json::json!({
        "format": "complex",
        "user": {"format": "email", "email": "alice@example.com"},
    });
    if let Some(sid) = session {
        s["session"] = serde_json::json!({"format": "opaque", "id": sid});
    }
    s
}

fn receiver(streams: Vec<Stream>) -> Receiver {
    let mut config = SsfConfig {
        enabled: true,
        audience: vec![AUD.to_owned()],
        streams,
        levels: BTreeMap::from([("NIST-AAL:nist-aal2".to_owned(), "aal2".to_owned())]),
        ..SsfConfig::default()
    };
    config.mapping.subject = vec![
        Selector::parse("iss_sub.sub").unwrap(),
        Selector::parse("email.email").unwrap(),
    ];
    Receiver::new(config)
}

#[tokio::test]
async fn bearer_tokens_are_checked_per_stream_before_anything_is_applied() {
    let f = fixture();
    let set = f.set(
        "j1",
        "credential-change",
        serde_json::json!({"credential_type": "password", "change_type": "update"}),
        alice(None),
    );
    let r = receiver(vec![
        Stream {
            issuer: ISS.to_owned(),
            token: Some(Token("right".to_owned())),
        },
        Stream {
            issuer: "https://other.test".to_owned(),
            token: Some(Token("other".to_owned())),
        },
    ]);
    assert_eq!(f.receive(&r, &set, None).await, Err(ReceiveError::NoToken));
    assert_eq!(
        f.receive(&r, &set, Some("nope")).await,
        Err(ReceiveError::WrongToken)
    );
    // The other stream's token does not open this issuer's.
    assert_eq!(
        f.receive(&r, &set, Some("other")).await,
        Err(ReceiveError::WrongToken)
    );
    assert!(f.signals().is_none(), "nothing applied");
    assert_eq!(r.remembered(), 0, "a refused SET does not use up its jti");
    let ok = f.receive(&r, &set, Some("right")).await.unwrap();
    assert_eq!(ok.kind, "credential-change");
    assert_eq!(ok.effect, "credential change recorded");
    assert!(f.signals().unwrap().credential_changed.is_some());
    assert_eq!(
        (
            ReceiveError::NoToken.status(),
            ReceiveError::WrongToken.status()
        ),
        (401, 403)
    );

    // Without streams, any trusted issuer, no token needed; an issuer with
    // no stream is refused where streams are set.
    let open = receiver(Vec::new());
    let set = f.set(
        "j2",
        "credential-change",
        serde_json::json!({"credential_type": "pin", "change_type": "create"}),
        alice(None),
    );
    assert!(f.receive(&open, &set, None).await.is_ok());
    let elsewhere = receiver(vec![Stream {
        issuer: "https://other.test".to_owned(),
        token: None,
    }]);
    let set = f.set(
        "j3",
        "credential-change",
        serde_json::json!({"credential_type": "pin", "change_type": "create"}),
        alice(None),
    );
    assert!(matches!(
        f.receive(&elsewhere, &set, None).await,
        Err(ReceiveError::InvalidIssuer(m)) if m == "issuer `https://idp.test` has no stream here (`[[ssf.streams]]`)"
    ));
}

#[tokio::test]
async fn events_conform_to_their_definition_or_are_refused() {
    let f = fixture();
    let r = receiver(Vec::new());
    let cases = [
        (
            "credential-change",
            serde_json::json!({"change_type": "update"}),
            alice(None),
            "credential-change: `credential_type` is missing or not a string",
        ),
        (
            "device-compliance-change",
            serde_json::json!({"current_status": "fine"}),
            alice(None),
            "device-compliance-change: `current_status` must be `compliant` or `not-compliant`",
        ),
        (
            "device-compliance-change",
            serde_json::json!({"current_status": "compliant"}),
            alice(None),
            "device-compliance-change: the subject names no device the `[ssf] device` mapping finds (`opaque.id`)",
        ),
        (
            "risk-level-change",
            serde_json::json!({"current_level": "SEVERE"}),
            alice(None),
            "risk-level-change: `current_level` must be LOW, MEDIUM or HIGH",
        ),
        (
            "session-revoked",
            serde_json::json!({}),
            serde_json::json!({"format": "phone_number", "phone_number": "+1"}),
            "the subject names no user the `[ssf] subject` mapping finds (`iss_sub.sub`, `email.email`)",
        ),
        (
            "assurance-level-change",
            serde_json::json!({"namespace": "NIST-AAL", "current_level": "nist-aal2", "change_direction": "sideways"}),
            alice(Some("s")),
            "assurance-level-change: `change_direction` `sideways` must be `increase` or `decrease`",
        ),
    ];
    for (i, (kind, payload, subject, message)) in cases.into_iter().enumerate() {
        let set = f.set(&format!("bad-{i}"), kind, payload, subject);
        assert_eq!(
            f.receive(&r, &set, None).await,
            Err(ReceiveError::InvalidRequest(message.to_owned())),
            "{kind}"
        );
    }
    assert!(f.signals().is_none());
    assert_eq!(r.remembered(), 0);
}

#[tokio::test]
async fn assurance_changes_map_levels_and_elevate_or_end() {
    let f = fixture();
    let r = receiver(Vec::new());
    let session = f.history.keyer().session("s-1");
    let now = Utc::now().timestamp_millis();
    let elevated = |f: &Fixture| {
        f.history
            .store()
            .get(f.subject(), now)
            .and_then(|e| e.lock().elevation(session, now).map(|e| e.acr.clone()))
    };
    // Through `[ssf] levels` (namespace:value): aal2, whose first acr is a2.
    let up = f.set(
        "up",
        "assurance-level-change",
        serde_json::json!({"namespace": "NIST-AAL", "current_level": "nist-aal2", "previous_level": "nist-aal1", "change_direction": "increase"}),
        alice(Some("s-1")),
    );
    assert_eq!(
        f.receive(&r, &up, None).await.unwrap().effect,
        "session elevated"
    );
    assert_eq!(elevated(&f), Some(Some(Arc::from("a2"))));
    // A level that maps to nothing lifts nothing.
    let odd = f.set(
        "odd",
        "assurance-level-change",
        serde_json::json!({"namespace": "Retinal Scan", "current_level": "hi-res-scan"}),
        alice(Some("s-2")),
    );
    assert_eq!(
        f.receive(&r, &odd, None).await.unwrap().effect,
        "no effect: the level maps to no policy level"
    );
    // Down by level order, without a direction: the elevation ends.
    let down = f.set(
        "down",
        "assurance-level-change",
        serde_json::json!({"namespace": "NIST-AAL", "current_level": "aal1", "previous_level": "aal2", "event_timestamp": Utc::now().timestamp() + 1}),
        alice(Some("s-1")),
    );
    assert_eq!(
        f.receive(&r, &down, None).await.unwrap().effect,
        "assurance lowered: elevations ended"
    );
    assert_eq!(elevated(&f), None);
    // Replays are refused.
    assert!(matches!(
        f.receive(&r, &up, None).await,
        Err(ReceiveError::InvalidRequest(m)) if m == "`jti` `up` was already received (replay)"
    ));
}

#[tokio::test]
async fn an_issuer_bound_to_a_tenant_speaks_for_that_tenant_only() {
    let f = fixture_for(Some("acme"));
    let mut r = receiver(Vec::new());
    r.config.mapping.tenant = vec![Selector::parse("opaque.id").unwrap()];
    let change = serde_json::json!({"credential_type": "password", "change_type": "update"});
    let set = f.set("t1", "credential-change", change.clone(), alice(None));
    assert!(f.receive(&r, &set, None).await.is_ok());
    let now = Utc::now().timestamp_millis();
    let acme = f.history.keyer().subject("acme", "alice@example.com");
    assert!(
        f.history.store().get(acme, now).is_some(),
        "the issuer's tenant"
    );
    assert!(f.signals().is_none(), "not the empty tenant");
    let mut other = alice(None);
    other["tenant"] = serde_json::json!({"format": "opaque", "id": "globex"});
    let set = f.set("t2", "credential-change", change, other);
    assert_eq!(
        f.receive(&r, &set, None).await,
        Err(ReceiveError::InvalidRequest(
            "the subject's tenant `globex` is not the tenant of the issuer (`[[trust.issuers]] tenant`)"
                .to_owned()
        ))
    );
}

#[test]
fn errors_map_to_rfc_8935_codes() {
    let cases = [
        (TokenError::BadSignature, "authentication_failed"),
        (
            TokenError::UnknownIssuer { issuer: "x".into() },
            "invalid_issuer",
        ),
        (
            TokenError::Audience {
                accepted: "x".into(),
            },
            "invalid_audience",
        ),
        (
            TokenError::UnknownKey {
                issuer: "x".into(),
                kid: "k".into(),
            },
            "invalid_key",
        ),
        (
            TokenError::Malformed { detail: "x".into() },
            "invalid_request",
        ),
    ];
    for (e, code) in cases {
        let r = ReceiveError::from(e);
        assert_eq!((r.err(), r.status()), (code, 400));
    }
    let e = ReceiveError::from(TokenError::KeysUnavailable {
        issuer: "x".into(),
        reason: "y".into(),
    });
    assert_eq!((e.err(), e.status()), ("unavailable", 503));
}

/// What the transmitter is told never lists the configuration (accepted
/// audiences and algorithms, key URLs, settings); the log message does.
#[test]
fn descriptions_do_not_reveal_the_configuration() {
    let secret = "https://internal.example/secret";
    let cases = [
        (
            ReceiveError::from(TokenError::Audience {
                accepted: format!("`{secret}`"),
            }),
            "`aud` does not name this receiver",
        ),
        (
            ReceiveError::from(TokenError::UnknownIssuer {
                issuer: secret.into(),
            }),
            "the SET's issuer is not trusted",
        ),
        (
            ReceiveError::from(TokenError::KeysUnavailable {
                issuer: ISS.into(),
                reason: format!("cannot fetch {secret}/jwks"),
            }),
            "the issuer's keys are unavailable: retry later",
        ),
        (
            ReceiveError::from(TokenError::AlgorithmNotAllowed {
                alg: "HS256".into(),
                accepted: format!("{secret}-RS256"),
            }),
            "the SET's algorithm is not accepted",
        ),
        (
            ReceiveError::Unavailable(format!("{secret} ([history] enabled = false)")),
            "the receiver cannot take events now: retry later",
        ),
    ];
    for (e, description) in cases {
        assert_eq!(e.description(), description);
        assert!(e.to_string().contains(secret), "the log keeps it: {e}");
    }
    // What the SET itself did wrong is said as it is.
    let e = ReceiveError::from(TokenError::BadSignature);
    assert_eq!(e.description(), "the signature does not verify");
    assert_eq!(
        ReceiveError::InvalidRequest("`jti` is missing".into()).description(),
        "`jti` is missing"
    );
}

/// [`fixture`] trusting a second issuer (with the same keys): subject ids
/// are then `<iss>#<sub>`.
fn two_issuers() -> Fixture {
    let mut f = fixture();
    let jwks = f._dir.path().join("jwks.json");
    f.trust = Trust::new(&TrustConfig {
        issuers: vec![
            IssuerConfig::new(ISS, vec![AUD.to_owned()], KeySource::File(jwks.clone())),
            IssuerConfig::new(
                "https://other.test",
                vec![AUD.to_owned()],
                KeySource::File(jwks),
            ),
        ],
        ..TrustConfig::default()
    });
    f
}

#[tokio::test]
async fn with_two_issuers_the_subject_is_issuer_qualified() {
    let f = two_issuers();
    assert!(f.trust.qualifies_subjects());
    let r = receiver(Vec::new());
    let change = serde_json::json!({"credential_type": "password", "change_type": "update"});
    let user = |iss: &str| {
        serde_json::json!({
            "format": "complex",
            "user": {"format": "iss_sub", "iss": iss, "sub": "alice@example.com"},
        })
    };
    let set = f.set("q1", "credential-change", change.clone(), user(ISS));
    f.receive(&r, &set, None).await.unwrap();
    let now = Utc::now().timestamp_millis();
    let qualified = f
        .history
        .keyer()
        .subject("", &format!("{ISS}#alice@example.com"));
    assert!(
        f.history.store().get(qualified, now).is_some(),
        "the subject decisions name"
    );
    assert!(f.signals().is_none(), "not the bare `sub`");
    // An email subject is qualified with the SET's issuer too.
    let set = f.set("q2", "credential-change", change.clone(), alice(None));
    f.receive(&r, &set, None).await.unwrap();
    assert!(f.signals().is_none());
}

#[tokio::test]
async fn an_iss_sub_subject_of_another_issuer_is_refused() {
    for f in [fixture(), two_issuers()] {
        let r = receiver(Vec::new());
        let subject = serde_json::json!({
            "format": "iss_sub", "iss": "https://other.test", "sub": "alice@example.com"
        });
        let set = f.set(
            "x1",
            "credential-change",
            serde_json::json!({"credential_type": "password", "change_type": "update"}),
            subject,
        );
        let e = f.receive(&r, &set, None).await.unwrap_err();
        assert_eq!(
            e,
            ReceiveError::InvalidRequest(
                "the subject's `iss_sub` issuer `https://other.test` is not the SET's issuer `https://idp.test`"
                    .to_owned()
            )
        );
        assert_eq!(e.err(), "invalid_request");
        assert!(f.signals().is_none());
    }
}
