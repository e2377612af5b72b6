#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! The Shared Signals receiver end to end: a transmitter in the test signs
//! Security Event Tokens with a key made in the test (EC P-256, published
//! in a JWKS file), `curl` pushes them to `POST /ssf/events` over HTTP/1.1
//! and HTTP/2 on the gRPC port, and a tonic client decides beside it; two
//! `stepup serve` processes sharing a real `redis-server` see a revocation
//! posted to one of them.

mod common;

use common::redis::{Killed, Redis};

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::evidence::{ISSUER, Idp, SigningKey, now};
use jsonwebtoken::{Algorithm, Header};
use stepup::proto::v1::decision_service_client::DecisionServiceClient;
use stepup::proto::v1::{DecideRequest, Outcome};
use stepup::{CacheConfig, PolicySet, Receiver, Selector, Service, SsfConfig};
use tonic::Code;
use tonic::transport::Channel;

/// The receiver's audience: what transmitters put in `aud`.
const AUD: &str = "https://stepup.test/ssf";
const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const VERIFICATION: &str = "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// A SET signed with `key` (`typ` `secevent+jwt`).
fn sign(key: &SigningKey, claims: &serde_json::Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    header.typ = Some("secevent+jwt".to_owned());
    jsonwebtoken::encode(&header, claims, &key.key).unwrap()
}

/// The claims of a SET from the test transmitter: event `kind` (a CAEP
/// type, or a full URI) with `payload`, about `subject`.
fn claims(
    jti: &str,
    kind: &str,
    payload: serde_json::Value,
    subject: serde_json::Value,
) -> serde_json::Value {
    let uri = if kind.starts_with("https://") {
        kind.to_owned()
    } else {
        format!("{CAEP}{kind}")
    };
    serde_json::json!({
        "iss": ISSUER,
        "aud": AUD,
        "jti": jti,
        "iat": now(),
        "txn": format!("txn-{jti}"),
        "sub_id": subject,
        "events": { uri: payload },
    })
}

/// Alice (tenant `acme`), in session `sid`, as a complex subject.
fn alice_session(sid: &str) -> serde_json::Value {
    serde_json::json!({
        "format": "complex",
        "user": { "format": "iss_sub", "iss": ISSUER, "sub": "alice" },
        "session": { "format": "opaque", "id": sid },
        "tenant": { "format": "opaque", "id": "acme" }
    })
}

/// What `curl` got back.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// `1.1` or `2`.
    version: String,
    body: String,
}

impl Answer {
    /// The RFC 8935 `err` of a failure.
    fn err(&self) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"));
        v["err"].as_str().unwrap().to_owned()
    }
}

/// POSTs `body` to `addr` with curl (a client written by others) over
/// `http` (`--http1.1` or `--http2-prior-knowledge`), with a bearer token
/// and a content type.
fn curl(
    addr: &str,
    path: &str,
    http: &str,
    body: &str,
    bearer: Option<&str>,
    content_type: &str,
) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", http, "-X", "POST", "--max-time", "10"])
        .args(["-H", &format!("Content-Type: {content_type}")])
        .args(["-H", "Accept: application/json"])
        .args(["--data-binary", "@-"])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .arg(format!("http://{addr}{path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(t) = bearer {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run curl (apt-get install -y curl): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (status, version) = tail.split_once(' ').unwrap();
    Answer {
        status: status.parse().unwrap(),
        version: version.to_owned(),
        body: body.to_owned(),
    }
}

/// Pushes a SET over `http` (no bearer token), off the runtime's threads.
async fn push(addr: std::net::SocketAddr, http: &'static str, set: String) -> Answer {
    let addr = addr.to_string();
    tokio::task::spawn_blocking(move || {
        curl(
            &addr,
            "/ssf/events",
            http,
            &set,
            None,
            "application/secevent+jwt",
        )
    })
    .await
    .unwrap()
}

const H1: &str = "--http1.1";
const H2: &str = "--http2-prior-knowledge";

/// An in-process server over the example policies believing the test
/// transmitter `idp`, with the receiver on.
async fn server(idp: &Idp) -> common::TestServer {
    server_with(idp.trust(), stepup::ServeOptions::default().max_in_flight).await
}

/// [`server`] trusting `trust`, with `max_in_flight` calls at once.
async fn server_with(trust: stepup::Trust, max_in_flight: usize) -> common::TestServer {
    let (policy, _) = PolicySet::load(&common::examples()).unwrap_or_else(|r| panic!("{r}"));
    let engine = Service::new(policy, CacheConfig::default()).with_trust(trust);
    let mut config = SsfConfig {
        enabled: true,
        audience: vec![AUD.to_owned()],
        ..SsfConfig::default()
    };
    // The complex subject's `tenant` member is the request's tenant.
    config.mapping.tenant = vec![Selector::parse("opaque.id").unwrap()];
    let receiver = Receiver::new(config);
    let options = stepup::ServeOptions {
        max_time_skew: None,
        max_in_flight,
        ssf: Some(Arc::new(receiver)),
        ..stepup::ServeOptions::default()
    };
    common::TestServer::start_with(engine, options).await
}

/// Alice (tenant `acme`) on her laptop, in session `sid` (aal1, an hour
/// old), asking for `action`.
fn request(action: &str, sid: &str) -> DecideRequest {
    serde_json::from_value(serde_json::json!({
        "action": action,
        "subject": { "id": "alice", "tenant": "acme" },
        "session": { "id": sid, "acr": "urn:stepup:aal1", "amr": ["pwd"],
                     "authTime": (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339() },
        "device": { "id": "d-laptop", "trusted": true },
        "network": { "ip": "203.0.113.7" },
        "resource": { "attributes": { "amount": 50 } }
    }))
    .unwrap()
}

async fn decide(
    c: &mut DecisionServiceClient<Channel>,
    r: DecideRequest,
) -> stepup::proto::v1::DecideResponse {
    c.decide(r).await.unwrap().into_inner()
}

/// A revocation over HTTP/1.1 denies the session's next decision (gRPC on
/// the same port), whatever the decision cache held, and the explained
/// decision names the event; other sessions go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_is_denied_next_and_the_trace_names_the_event() {
    let idp = Idp::new();
    let server = server(&idp).await;
    let mut client = server.client().await;
    for _ in 0..2 {
        let r = decide(&mut client, request("orders.list", "s-1")).await;
        assert_eq!(r.outcome(), Outcome::Allow);
    }
    let set = sign(
        &idp.key,
        &claims(
            "rev-1",
            "session-revoked",
            serde_json::json!({"event_timestamp": now() - 5}),
            alice_session("s-1"),
        ),
    );
    let a = push(server.addr, H1, set).await;
    assert_eq!(
        (a.status, a.version.as_str(), a.body.as_str()),
        (202, "1.1", "")
    );

    let r = decide(&mut client, request("orders.list", "s-1")).await;
    assert_eq!(r.outcome(), Outcome::Deny);
    assert_eq!(r.reasons[0].rule_id, "session-revoked");
    // Without `explain`, the trace names only the event that changed the
    // decision (what the decision log records).
    assert_eq!(r.trace.len(), 1, "{:?}", r.trace);
    assert_eq!(r.trace[0].id, "session-revoked");
    assert_eq!(
        r.trace[0].detail,
        "history.session_revoked from event `rev-1`"
    );
    let mut explained = request("orders.list", "s-1");
    explained.explain = true;
    let r = decide(&mut client, explained).await;
    let entry = r.trace.iter().find(|t| t.id == "session-revoked").unwrap();
    assert!(entry.fired);
    assert!(
        entry
            .detail
            .contains("history.session_revoked from event `rev-1`"),
        "{}",
        entry.detail
    );
    let r = decide(&mut client, request("orders.list", "s-2")).await;
    assert_eq!(r.outcome(), Outcome::Allow);
    server.stop().await;
}

/// Every refusal answers 400 with the RFC 8935 error code over HTTP/2, and
/// changes nothing: wrong signature, `alg: none`, unknown key, wrong `aud`,
/// wrong `iss`, `exp` in a SET, a wrong content type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sets_get_the_rfc_8935_error_and_change_nothing() {
    let idp = Idp::new();
    let server = server(&idp).await;
    let mut client = server.client().await;
    let revoke = |jti: &str| {
        claims(
            jti,
            "session-revoked",
            serde_json::json!({}),
            alice_session("s-1"),
        )
    };

    // Another key under the published kid: the signature does not verify.
    let mut forger = SigningKey::new("other", Algorithm::ES256);
    forger.kid = idp.key.kid.clone();
    let a = push(server.addr, H2, sign(&forger, &revoke("bad-sig"))).await;
    assert_eq!((a.status, a.version.as_str()), (400, "2"));
    assert_eq!(a.err(), "authentication_failed", "{}", a.body);
    // A kid the issuer does not publish.
    let stranger = SigningKey::new("unknown-kid", Algorithm::ES256);
    let a = push(server.addr, H2, sign(&stranger, &revoke("bad-kid"))).await;
    assert_eq!(
        (a.status, a.err().as_str()),
        (400, "invalid_key"),
        "{}",
        a.body
    );
    // `alg: none`.
    use base64::Engine as _;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "secevent+jwt"})),
        b64(&revoke("alg-none"))
    );
    let a = push(server.addr, H2, none).await;
    assert_eq!(
        (a.status, a.err().as_str()),
        (400, "invalid_key"),
        "{}",
        a.body
    );
    // Addressed to another receiver.
    let mut other_aud = revoke("bad-aud");
    other_aud["aud"] = "https://someone-else.test/ssf".into();
    let a = push(server.addr, H2, sign(&idp.key, &other_aud)).await;
    assert_eq!(
        (a.status, a.err().as_str()),
        (400, "invalid_audience"),
        "{}",
        a.body
    );
    // The description does not list the accepted audiences.
    assert!(!a.body.contains(AUD), "{}", a.body);
    assert!(a.body.contains("does not name this receiver"), "{}", a.body);
    // From an issuer stepup does not trust.
    let mut other_iss = revoke("bad-iss");
    other_iss["iss"] = "https://evil.test".into();
    let a = push(server.addr, H2, sign(&idp.key, &other_iss)).await;
    assert_eq!(
        (a.status, a.err().as_str()),
        (400, "invalid_issuer"),
        "{}",
        a.body
    );
    assert!(!a.body.contains("trust.issuers"), "{}", a.body);
    // SSF SETs carry no `exp`.
    let mut expiring = revoke("with-exp");
    expiring["exp"] = (now() + 600).into();
    let a = push(server.addr, H2, sign(&idp.key, &expiring)).await;
    assert_eq!(
        (a.status, a.err().as_str()),
        (400, "invalid_request"),
        "{}",
        a.body
    );
    // Not a SET delivery.
    let addr = server.addr.to_string();
    let a = tokio::task::spawn_blocking(move || {
        curl(&addr, "/ssf/events", H2, "{}", None, "application/json")
    })
    .await
    .unwrap();
    assert_eq!(
        (a.status, a.err().as_str()),
        (415, "invalid_request"),
        "{}",
        a.body
    );
    let a = push(server.addr, H2, "not.a.jwt".to_owned()).await;
    assert_eq!(
        (a.status, a.err().as_str()),
        (400, "invalid_request"),
        "{}",
        a.body
    );

    // Nothing above had an effect.
    let r = decide(&mut client, request("orders.list", "s-1")).await;
    assert_eq!(r.outcome(), Outcome::Allow);

    server.stop().await;
}

/// A replayed `jti` is refused with `invalid_request` and changes nothing:
/// a high risk level, then a low one, then the high one again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_jti_is_refused_and_changes_nothing() {
    let idp = Idp::new();
    let server = server(&idp).await;
    let mut client = server.client().await;
    let risk = |jti: &str, level: &str| {
        let mut c = claims(
            jti,
            "risk-level-change",
            serde_json::json!({"current_level": level, "principal": "USER"}),
            serde_json::json!({"format": "complex",
                "user": {"format": "iss_sub", "iss": ISSUER, "sub": "alice"},
                "tenant": {"format": "opaque", "id": "acme"}}),
        );
        c["iat"] = now().into();
        sign(&idp.key, &c)
    };
    let high = risk("risk-1", "HIGH");
    assert_eq!(push(server.addr, H2, high.clone()).await.status, 202);
    // Dated after the first.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        push(server.addr, H1, risk("risk-2", "LOW")).await.status,
        202
    );
    let a = push(server.addr, H1, high).await;
    assert_eq!(
        (a.status, a.err().as_str()),
        (400, "invalid_request"),
        "{}",
        a.body
    );
    assert!(
        a.body.contains("`risk-1` was already received"),
        "{}",
        a.body
    );
    let r = decide(&mut client, request("payments.refund", "s-1")).await;
    let signals = r.risk.unwrap().signals;
    assert!(
        !signals.iter().any(|s| s.starts_with("idp-risk")),
        "the replay changed nothing: {signals:?}"
    );
    server.stop().await;
}

/// The verification event is acknowledged over both protocols; other
/// events reach CEL: a credential change challenges a transfer, a high risk
/// level fires `idp-risk-high`, a session established at aal2 is elevated
/// and a lowered assurance level ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_cel_and_verification_is_acknowledged() {
    let idp = Idp::new();
    let server = server(&idp).await;
    let mut client = server.client().await;
    let stream = serde_json::json!({"format": "opaque", "id": "stream-1"});
    for (http, jti) in [(H1, "verify-1"), (H2, "verify-2")] {
        let set = sign(
            &idp.key,
            &claims(
                jti,
                VERIFICATION,
                serde_json::json!({"state": "abc"}),
                stream.clone(),
            ),
        );
        let a = push(server.addr, http, set).await;
        assert_eq!(a.status, 202, "{a:?}");
    }

    // Credential change.
    let user = serde_json::json!({"format": "complex",
        "user": {"format": "iss_sub", "iss": ISSUER, "sub": "alice"},
        "tenant": {"format": "opaque", "id": "acme"}});
    assert_eq!(
        decide(&mut client, request("payments.transfer", "s-1"))
            .await
            .outcome(),
        Outcome::Allow
    );
    let set = sign(
        &idp.key,
        &claims(
            "cred-1",
            "credential-change",
            serde_json::json!({"credential_type": "password", "change_type": "update"}),
            user.clone(),
        ),
    );
    assert_eq!(push(server.addr, H2, set).await.status, 202);
    let r = decide(&mut client, request("payments.transfer", "s-1")).await;
    assert_eq!(r.outcome(), Outcome::Challenge);
    assert!(
        r.requirements
            .iter()
            .any(|q| q.rule_id == "recent-credential-change"),
        "{r:?}"
    );

    // Risk level: a signal of the example set.
    let set = sign(
        &idp.key,
        &claims(
            "risk-h",
            "risk-level-change",
            serde_json::json!({"current_level": "HIGH", "principal": "USER"}),
            user.clone(),
        ),
    );
    assert_eq!(push(server.addr, H1, set).await.status, 202);
    let r = decide(&mut client, request("orders.list", "s-1")).await;
    assert!(
        r.risk
            .unwrap()
            .signals
            .contains(&"idp-risk-high".to_owned())
    );

    // A session established at aal2 with otp satisfies a password change
    // (aal2 within 10 minutes) ...
    assert_eq!(
        decide(&mut client, request("account.password.change", "s-9"))
            .await
            .outcome(),
        Outcome::Challenge
    );
    let set = sign(
        &idp.key,
        &claims(
            "est-1",
            "session-established",
            serde_json::json!({"acr": "urn:stepup:aal2", "amr": ["pwd", "otp"], "event_timestamp": now()}),
            alice_session("s-9"),
        ),
    );
    assert_eq!(push(server.addr, H2, set).await.status, 202);
    let r = decide(&mut client, request("account.password.change", "s-9")).await;
    assert_eq!(r.outcome(), Outcome::Allow, "{r:?}");
    // ... until the assurance level drops.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let set = sign(
        &idp.key,
        &claims(
            "down-1",
            "assurance-level-change",
            serde_json::json!({"namespace": "NIST-AAL", "current_level": "aal1",
                               "previous_level": "aal2", "change_direction": "decrease",
                               "event_timestamp": now()}),
            alice_session("s-9"),
        ),
    );
    assert_eq!(push(server.addr, H1, set).await.status, 202);
    let r = decide(&mut client, request("account.password.change", "s-9")).await;
    assert_eq!(r.outcome(), Outcome::Challenge);

    // An event whose subject names no user the mapping finds is refused.
    let set = sign(
        &idp.key,
        &claims(
            "no-user",
            "session-revoked",
            serde_json::json!({}),
            serde_json::json!({"format": "opaque", "id": "s-1"}),
        ),
    );
    let a = push(server.addr, H2, set).await;
    assert_eq!(
        (a.status, a.err().as_str()),
        (400, "invalid_request"),
        "{}",
        a.body
    );
    assert!(a.body.contains("names no user"), "{}", a.body);
    server.stop().await;
}

/// Opens a delivery on a connection of its own and sends its headers (a
/// body of 100 bytes announced), never the body.
async fn slow_delivery(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /ssf/events HTTP/1.1\r\nHost: stepup\r\n\
          Content-Type: application/secevent+jwt\r\nContent-Length: 100\r\n\r\n",
    )
    .await
    .unwrap();
    s
}

/// The status and body of the HTTP/1.1 answer on `s`, or `None` if none
/// comes within 15 s.
async fn answer_on(s: &mut tokio::net::TcpStream) -> Option<(u16, String)> {
    use tokio::io::AsyncReadExt as _;
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = s.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= length || n == 0 {
                    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                    return (status, body.to_owned());
                }
            }
            assert!(n > 0, "closed without an answer: {text:?}");
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .ok()
}

/// Deliveries that send their headers and never their body hold no
/// decision slot: with an in-flight limit of 4 and 20 of them open,
/// decisions are answered; past the receiver's own limit (16) a delivery
/// is answered 503 at once, and the others 408 once the body deadline
/// (5 s) passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_deliveries_hold_no_decision_slot_and_time_out() {
    let idp = Idp::new();
    let server = server_with(idp.trust(), 4).await;
    let mut client = server.client().await;
    let started = Instant::now();
    let mut pending = Vec::new();
    for _ in 0..20 {
        let mut s = slow_delivery(server.addr).await;
        pending.push(tokio::spawn(async move {
            let a = answer_on(&mut s).await;
            (a, started.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for sid in ["s-1", "s-2", "s-3", "s-4", "s-5", "s-6"] {
        let r = decide(&mut client, request("orders.list", sid)).await;
        assert_eq!(r.outcome(), Outcome::Allow);
    }
    assert!(
        started.elapsed() < Duration::from_millis(4500),
        "decided while the deliveries were open"
    );
    let (mut busy, mut late) = (0, 0);
    for p in pending {
        let (a, after) = p.await.unwrap();
        let (status, body) = a.expect("every slow delivery is answered");
        let err: serde_json::Value = serde_json::from_str(&body).unwrap();
        match status {
            503 => {
                busy += 1;
                assert_eq!(err["err"], "unavailable", "{body}");
                assert!(after < Duration::from_millis(4500), "at once: {after:?}");
            }
            408 => {
                late += 1;
                assert_eq!(err["err"], "invalid_request", "{body}");
                assert!(after >= Duration::from_millis(4900), "{after:?}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((busy, late), (4, 16));
    // The receiver is free again.
    let set = sign(
        &idp.key,
        &claims(
            "after-slow",
            VERIFICATION,
            serde_json::json!({"state": "x"}),
            serde_json::json!({"format": "opaque", "id": "stream-1"}),
        ),
    );
    assert_eq!(push(server.addr, H1, set).await.status, 202);
    server.stop().await;
}

/// With two trusted issuers subject ids are `<iss>#<sub>` (as
/// `RecordStepUp` and Envoy's mapping name them): a revocation lands on the
/// qualified subject, whose session is denied; an `iss_sub` subject of
/// the other issuer is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_issuers_a_revocation_denies_the_issuer_qualified_subject() {
    let idp = Idp::new();
    let mut config = idp.trust_config();
    let mut second = config.issuers[0].clone();
    second.issuer = Arc::from("https://idp2.test");
    config.issuers.push(second);
    let server = server_with(stepup::Trust::new(&config), 64).await;
    let mut client = server.client().await;
    let qualified = |sid: &str| {
        let mut r = request("orders.list", sid);
        r.subject.as_mut().unwrap().id = format!("{ISSUER}#alice");
        r
    };
    let r = decide(&mut client, qualified("s-1")).await;
    assert_eq!(r.outcome(), Outcome::Allow);

    // A subject of the other issuer, in a SET of this one.
    let mut foreign = alice_session("s-1");
    foreign["user"]["iss"] = "https://idp2.test".into();
    let set = sign(
        &idp.key,
        &claims(
            "rev-foreign",
            "session-revoked",
            serde_json::json!({}),
            foreign,
        ),
    );
    let a = push(server.addr, H1, set).await;
    assert_eq!(
        (a.status, a.err().as_str()),
        (400, "invalid_request"),
        "{}",
        a.body
    );
    assert!(a.body.contains("`https://idp2.test`"), "{}", a.body);
    let r = decide(&mut client, qualified("s-1")).await;
    assert_eq!(r.outcome(), Outcome::Allow);

    let set = sign(
        &idp.key,
        &claims(
            "rev-q",
            "session-revoked",
            serde_json::json!({"event_timestamp": now() - 5}),
            alice_session("s-1"),
        ),
    );
    let a = push(server.addr, H1, set).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let r = decide(&mut client, qualified("s-1")).await;
    assert_eq!(r.outcome(), Outcome::Deny);
    assert_eq!(r.reasons[0].rule_id, "session-revoked");
    // The bare `sub` is another subject.
    let r = decide(&mut client, request("orders.list", "s-1")).await;
    assert_eq!(r.outcome(), Outcome::Allow);
    server.stop().await;
}

/// The environment variable the sidecars read the stream's bearer token
/// from (never the config file).
const TOKEN_ENV: &str = "STEPUP_TEST_SSF_TOKEN";
const TOKEN: &str = "stream-token-4f1c";

/// A `stepup serve` process over the example policies, history in Redis
/// at `redis`, believing `idp`, receiving its events with a bearer token.
struct Sidecar {
    grpc: String,
    child: Killed,
    _config: tempfile::TempDir,
}

impl Sidecar {
    fn start(policies: &Path, redis: &Redis, idp: &Idp) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("stepup.toml");
        std::fs::write(
            &config,
            format!(
                "[history]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{}/\"\n\
                 hash_key = \"shared-test-key\"\nfetch_timeout = \"500ms\"\n\n{}\n\
                 [ssf]\nenabled = true\naudience = \"{AUD}\"\ntenant = \"opaque.id\"\n\
                 [[ssf.streams]]\nissuer = \"{ISSUER}\"\nbearer_token_env = \"{TOKEN_ENV}\"\n\n\
                 [ext_authz.subject]\nsource = \"headers\"\nid = \"x-user\"\n\
                 tenant = \"x-tenant\"\nsession_id = \"x-session\"\n",
                redis.port,
                idp.toml()
            ),
        )
        .unwrap();
        let grpc = format!("127.0.0.1:{}", common::free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_stepup"))
            .args(["serve", "--policies"])
            .arg(policies)
            .args(["--listen", &grpc, "--admin", "off", "--config"])
            .arg(&config)
            .env(TOKEN_ENV, TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            grpc,
            child: Killed(child),
            _config: dir,
        }
    }

    async fn client(&mut self) -> DecisionServiceClient<Channel> {
        common::connect_when_up(&mut self.child.0, &self.grpc).await
    }
}

/// The status code Envoy gets from `Check` on `grpc` for alice's `orders.list`
/// in session `sid` (subject and session from trusted headers).
async fn check(grpc: &str, sid: &str) -> i32 {
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    let headers = [
        ("x-user", "alice"),
        ("x-tenant", "acme"),
        ("x-session", sid),
    ];
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/v1/orders".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: [("stepup_action".to_owned(), "orders.list".to_owned())].into(),
            ..Default::default()
        }),
    };
    let mut client = AuthorizationClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let response = client.check(request).await.unwrap().into_inner();
    response.status.map_or(0, |s| s.code)
}

/// Two replicas sharing Redis: the stream's bearer token is required (401
/// without, 403 with another), and a revocation posted to one replica makes
/// the next decision on the other DENY within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_through_one_replica_denies_on_the_other_within_a_second() {
    let redis = Redis::start();
    let idp = Idp::new();
    let policies = common::examples();
    let mut a = Sidecar::start(&policies, &redis, &idp);
    let mut b = Sidecar::start(&policies, &redis, &idp);
    let (_ca, mut cb) = (a.client().await, b.client().await);
    assert_eq!(
        decide(&mut cb, request("orders.list", "s-1"))
            .await
            .outcome(),
        Outcome::Allow
    );
    let set = sign(
        &idp.key,
        &claims(
            "rev-r",
            "session-revoked",
            serde_json::json!({}),
            alice_session("s-1"),
        ),
    );
    let post = |bearer: Option<&'static str>| {
        let (addr, set) = (a.grpc.clone(), set.clone());
        tokio::task::spawn_blocking(move || {
            curl(
                &addr,
                "/ssf/events",
                H1,
                &set,
                bearer,
                "application/secevent+jwt",
            )
        })
    };
    let no_token = post(None).await.unwrap();
    assert_eq!(
        (no_token.status, no_token.err().as_str()),
        (401, "authentication_failed")
    );
    let wrong = post(Some("not-the-token")).await.unwrap();
    assert_eq!((wrong.status, wrong.err().as_str()), (403, "access_denied"));
    // Neither had an effect.
    assert_eq!(
        decide(&mut cb, request("orders.list", "s-1"))
            .await
            .outcome(),
        Outcome::Allow
    );

    let ok = post(Some(TOKEN)).await.unwrap();
    assert_eq!(ok.status, 202, "{ok:?}");
    let accepted = Instant::now();
    loop {
        let r = decide(&mut cb, request("orders.list", "s-1")).await;
        if r.outcome() == Outcome::Deny {
            assert_eq!(r.reasons[0].rule_id, "session-revoked");
            break;
        }
        assert!(
            accepted.elapsed() < Duration::from_secs(1),
            "replica B still allows the revoked session 1 s after A accepted the event"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Envoy's `Check` on B refreshes from Redis too: a revocation of
    // session s-3, with no `Decide` on B to fetch it, denies B's next checks.
    assert_eq!(check(&b.grpc, "s-1").await, Code::PermissionDenied as i32);
    assert_ne!(check(&b.grpc, "s-3").await, Code::PermissionDenied as i32);
    let set = sign(
        &idp.key,
        &claims(
            "rev-r3",
            "session-revoked",
            serde_json::json!({}),
            alice_session("s-3"),
        ),
    );
    let addr = a.grpc.clone();
    let ok = tokio::task::spawn_blocking(move || {
        curl(
            &addr,
            "/ssf/events",
            H1,
            &set,
            Some(TOKEN),
            "application/secevent+jwt",
        )
    })
    .await
    .unwrap();
    assert_eq!(ok.status, 202, "{ok:?}");
    let accepted = Instant::now();
    while check(&b.grpc, "s-3").await != Code::PermissionDenied as i32 {
        assert!(
            accepted.elapsed() < Duration::from_secs(1),
            "Check on replica B still allows the revoked session 1 s after A accepted the event"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        decide(&mut cb, request("orders.list", "s-2"))
            .await
            .outcome(),
        Outcome::Allow
    );
}
