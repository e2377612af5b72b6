#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! `[history] backend = "redis"` end to end: real `redis-server` processes
//! (each test starts its own on a free loopback port) and `stepup serve`
//! processes sharing them, over gRPC and `/metrics`.

mod common;

use common::redis::{Killed, Redis};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stepup::proto::v1::decision_service_client::DecisionServiceClient;
use stepup::proto::v1::{DecideRequest, Outcome};
use tonic::transport::Channel;

/// A transfer from a device the subject has not made known (an allowed
/// decision at aal2, the known-device level) needs aal2.
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
name: devices
rules:
  - id: transfer-new-device
    actions: ["payments.transfer"]
    when: "!history.device_known"
    effect: challenge
    require: { level: aal2 }
"#;

/// A `stepup serve` process with the Redis backend at `url`.
struct Sidecar {
    grpc: String,
    admin: String,
    child: Killed,
    _config: tempfile::TempDir,
}

impl Sidecar {
    fn start(policies: &Path, url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("stepup.toml");
        std::fs::write(
            &config,
            format!(
                "[history]\nbackend = \"redis\"\nredis_url = \"{url}\"\nhash_key = \"shared-test-key\"\nfetch_timeout = \"500ms\"\n"
            ),
        )
        .unwrap();
        let grpc = format!("127.0.0.1:{}", common::free_port());
        let admin = format!("127.0.0.1:{}", common::free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_stepup"))
            .args(["serve", "--policies"])
            .arg(policies)
            .args(["--listen", &grpc, "--admin", &admin, "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            grpc,
            admin,
            child: Killed(child),
            _config: dir,
        }
    }

    async fn client(&mut self) -> DecisionServiceClient<Channel> {
        common::connect_when_up(&mut self.child.0, &self.grpc).await
    }

    fn metric(&self, series: &str) -> f64 {
        let body = get(&self.admin, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no `{series}` in:\n{body}"))
            .parse()
            .unwrap()
    }
}

/// GET `path` on `addr`: the body.
fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("devices.yaml"), POLICY).unwrap();
    dir
}

/// A transfer by `subject` from `device` with a session at `acr`.
fn transfer(subject: &str, device: &str, acr: &str) -> DecideRequest {
    serde_json::from_value(serde_json::json!({
        "action": "payments.transfer",
        "subject": { "id": subject },
        "session": { "id": format!("s-{subject}"), "acr": acr, "amr": ["pwd"] },
        "device": { "id": device },
    }))
    .unwrap()
}

async fn outcome(c: &mut DecisionServiceClient<Channel>, r: DecideRequest) -> Outcome {
    c.decide(r).await.unwrap().into_inner().outcome()
}

/// Polls `f` every 20 ms until it holds, for at most 10 s.
async fn eventually<F: FnMut() -> Fut, Fut: std::future::Future<Output = bool>>(
    what: &str,
    mut f: F,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_device_known_through_one_sidecar_is_known_to_another() {
    let redis = Redis::start();
    let policies = policy_dir();
    let mut a = Sidecar::start(policies.path(), &redis.url());
    let mut b = Sidecar::start(policies.path(), &redis.url());
    let (mut ca, mut cb) = (a.client().await, b.client().await);

    // Neither knows the device yet.
    assert_eq!(
        outcome(&mut cb, transfer("alice", "laptop", "urn:stepup:aal1")).await,
        Outcome::Challenge
    );
    // Through A, an allowed decision at aal2 makes it known.
    assert_eq!(
        outcome(&mut ca, transfer("alice", "laptop", "urn:stepup:aal2")).await,
        Outcome::Allow
    );
    // B learns it from Redis (A's write is queued, hence the polling), and
    // its own earlier observation did not overwrite A's.
    eventually("sidecar B to know the device", || {
        let mut cb = cb.clone();
        async move {
            outcome(&mut cb, transfer("alice", "laptop", "urn:stepup:aal1")).await == Outcome::Allow
        }
    })
    .await;
    // Only that device, only that subject.
    assert_eq!(
        outcome(&mut cb, transfer("alice", "phone", "urn:stepup:aal1")).await,
        Outcome::Challenge
    );
    assert_eq!(
        outcome(&mut cb, transfer("bob", "laptop", "urn:stepup:aal1")).await,
        Outcome::Challenge
    );
    // One key per subject (alice's written by both replicas, bob's once B's
    // queued write lands), expiring after the retention.
    eventually("two subjects in Redis", || {
        let keys = redis.command("KEYS stepup:history:*").unwrap();
        async move { keys.starts_with("*2\r\n") }
    })
    .await;
    let keys = redis.command("KEYS stepup:history:*").unwrap();
    let key = keys.lines().nth(2).unwrap().to_owned();
    let ttl: i64 = redis.command(&format!("PTTL {key}")).unwrap()[1..]
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 89 * 24 * 3600 * 1000, "{ttl}");
    assert_eq!(a.metric("stepup_history_fetch_failures_total"), 0.0);
    assert_eq!(b.metric("stepup_history_publish_failures_total"), 0.0);
    assert_eq!(b.metric("stepup_history_publish_dropped_total"), 0.0);

    // Redis goes away: decisions go on, on local history.
    let port = redis.port;
    drop(redis);
    assert_eq!(
        outcome(&mut ca, transfer("alice", "laptop", "urn:stepup:aal1")).await,
        Outcome::Allow
    );
    assert_eq!(
        outcome(&mut ca, transfer("carol", "laptop", "urn:stepup:aal1")).await,
        Outcome::Challenge
    );
    assert!(a.metric("stepup_history_fetch_failures_total") >= 1.0);

    // It comes back (empty): both sidecars reconnect and share again.
    let _redis = Redis::start_on(port);
    assert_eq!(
        outcome(&mut ca, transfer("alice", "phone", "urn:stepup:aal2")).await,
        Outcome::Allow
    );
    eventually("sidecar B to know the device after the outage", || {
        let (mut ca, mut cb) = (ca.clone(), cb.clone());
        async move {
            // Until A has reconnected, its update may be lost: repeat it.
            outcome(&mut ca, transfer("alice", "phone", "urn:stepup:aal2")).await;
            outcome(&mut cb, transfer("alice", "phone", "urn:stepup:aal1")).await == Outcome::Allow
        }
    })
    .await;
}

#[tokio::test]
async fn decisions_go_on_when_redis_is_unreachable() {
    let policies = policy_dir();
    // Nothing listens there.
    let url = format!("redis://127.0.0.1:{}/", common::free_port());
    let mut s = Sidecar::start(policies.path(), &url);
    let mut c = s.client().await;

    assert_eq!(
        outcome(&mut c, transfer("dave", "laptop", "urn:stepup:aal1")).await,
        Outcome::Challenge
    );
    assert_eq!(
        outcome(&mut c, transfer("dave", "laptop", "urn:stepup:aal2")).await,
        Outcome::Allow
    );
    // Known from local history.
    assert_eq!(
        outcome(&mut c, transfer("dave", "laptop", "urn:stepup:aal1")).await,
        Outcome::Allow
    );
    assert!(s.metric("stepup_history_fetch_failures_total") >= 3.0);
    eventually("a counted publish failure", || {
        let v = s.metric("stepup_history_publish_failures_total");
        async move { v >= 1.0 }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_from_replicas_are_all_kept() {
    use std::sync::Arc;
    use stepup::history::Limits;
    use stepup::history::RedisConfig;
    use stepup::internal::RedisBackend;
    use stepup::internal::{Backend as _, Keyer, Observation, Update, Verdict};

    let redis = Redis::start();
    let config = RedisConfig::new(redis.url(), "shared-test-key");
    let limits = Limits::default();
    let replicas: Vec<Arc<RedisBackend>> = (0..3)
        .map(|_| Arc::new(RedisBackend::start(&config, limits).unwrap()))
        .collect();
    let keyer = Keyer::from_secret("shared-test-key");
    let subject = keyer.subject("", "erin");
    let now = chrono::Utc::now().timestamp_millis();
    // Five devices through each replica, all at once: every write races the
    // other replicas' writes to the same key.
    let writers = replicas.iter().enumerate().map(|(r, backend)| {
        let backend = Arc::clone(backend);
        let keyer = keyer.clone();
        tokio::spawn(async move {
            for d in 0..5 {
                backend.publish(Update::Observed(Observation {
                    subject,
                    device: Some(keyer.device(&format!("r{r}-d{d}"))),
                    action: Arc::from("payments.transfer"),
                    at: now + d,
                    place: None,
                    outcome: Verdict::Allow,
                    session_level: Some(1),
                    makes_known: true,
                }));
                tokio::task::yield_now().await;
            }
        })
    });
    for w in writers.collect::<Vec<_>>() {
        w.await.unwrap();
    }
    let reader = Arc::clone(&replicas[0]);
    eventually("all 15 devices in Redis", || {
        let reader = Arc::clone(&reader);
        async move {
            let h = reader.fetch(subject).await.unwrap().unwrap_or_default();
            h.devices.len() == 15 && h.devices.iter().all(|d| d.known) && h.events.len() == 15
        }
    })
    .await;
    for r in &replicas {
        assert_eq!((r.failed(), r.dropped()), (0, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_at_shutdown_writes_what_is_still_queued() {
    use std::sync::Arc;
    use stepup::history::Limits;
    use stepup::history::RedisConfig;
    use stepup::internal::RedisBackend;
    use stepup::internal::{Backend as _, Keyer, Observation, Update, Verdict};

    let redis = Redis::start();
    let config = RedisConfig::new(redis.url(), "shared-test-key");
    let backend = RedisBackend::start(&config, Limits::default()).unwrap();
    let keyer = Keyer::from_secret("shared-test-key");
    let now = chrono::Utc::now().timestamp_millis();
    let subjects: Vec<_> = (0..300)
        .map(|i| keyer.subject("", &format!("s{i}")))
        .collect();
    // More than one batch, published at once: most are still queued when
    // the flush starts.
    for (i, subject) in subjects.iter().enumerate() {
        backend.publish(Update::Observed(Observation {
            subject: *subject,
            device: Some(keyer.device(&format!("d{i}"))),
            action: Arc::from("payments.transfer"),
            at: now,
            place: None,
            outcome: Verdict::Allow,
            session_level: Some(1),
            makes_known: true,
        }));
    }
    backend.flush(Duration::from_secs(10)).await;
    for subject in &subjects {
        let h = backend.fetch(*subject).await.unwrap();
        assert_eq!(
            h.map(|h| h.devices.len()),
            Some(1),
            "every queued update is written"
        );
    }
    assert_eq!((backend.failed(), backend.dropped()), (0, 0));
    // After the flush the writer is gone: later updates are not written,
    // and a second flush returns at once.
    backend.flush(Duration::from_secs(1)).await;
}

// ---------------------------------------------------------------------------
// TLS, authenticated records and secrets from files and the environment.

/// A `redis-server` started with `args` (besides a plaintext loopback
/// `port`, for readiness and for the test's own raw commands), or why it
/// cannot run. Any reply to `PING` (even `-NOAUTH`) means it is up.
fn redis_with(port: u16, args: &[&str]) -> Result<Killed, String> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut out = String::new();
            if let Some(mut o) = child.stdout.take() {
                let _ = o.read_to_string(&mut out);
            }
            return Err(format!("redis-server exited ({status}): {out}"));
        }
        let up = TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
                s.write_all(b"PING\r\n").ok()?;
                let mut b = [0u8; 16];
                (s.read(&mut b).ok()? > 0).then_some(())
            });
        if up.is_some() {
            return Ok(Killed(child));
        }
        assert!(Instant::now() < deadline, "redis-server did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `stepup serve` process with `config` as its config file (in a
/// directory with `files`) and `env` in its environment.
fn sidecar(
    policies: &Path,
    config: &str,
    files: &[(&str, &[u8])],
    env: &[(&str, &str)],
) -> Sidecar {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let path = dir.path().join("stepup.toml");
    std::fs::write(&path, config).unwrap();
    let grpc = format!("127.0.0.1:{}", common::free_port());
    let admin = format!("127.0.0.1:{}", common::free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(["serve", "--policies"])
        .arg(policies)
        .args(["--listen", &grpc, "--admin", &admin, "--config"])
        .arg(&path)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Sidecar {
        grpc,
        admin,
        child: Killed(child),
        _config: dir,
    }
}

/// Test PKI: a CA, a server certificate for 127.0.0.1 and a client
/// certificate, signed by it (PEM).
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn make_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "stepup test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: &[&str]| {
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca_cert.pem(),
        server: leaf(&["127.0.0.1", "localhost"]),
        client: leaf(&["stepup.test"]),
    }
}

/// A `redis-server` with TLS on `tls` (certificates from `pki`, in `dir`)
/// that asks for client certificates, and plaintext on `plain`. A
/// redis-server built without TLS fails the test (Debian's has it).
fn tls_redis(pki: &Pki, dir: &Path, plain: u16, tls: u16) -> Killed {
    for (name, text) in [
        ("ca.pem", &pki.ca),
        ("server.pem", &pki.server.0),
        ("server.key", &pki.server.1),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let file = |name: &str| dir.join(name).display().to_string();
    // Mutual TLS: Redis asks for a client certificate signed by the CA.
    match redis_with(
        plain,
        &[
            "--tls-port",
            &tls.to_string(),
            "--tls-cert-file",
            &file("server.pem"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-ca-cert-file",
            &file("ca.pem"),
            "--tls-auth-clients",
            "yes",
        ],
    ) {
        Ok(r) => r,
        Err(e) if e.contains("tls") || e.contains("TLS") => {
            panic!("this redis-server has no TLS support (install one built with TLS): {e}")
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn rediss_with_a_ca_and_a_client_certificate() {
    let pki = make_pki();
    let dir = tempfile::tempdir().unwrap();
    let (plain, tls) = (common::free_port(), common::free_port());
    let redis = tls_redis(&pki, dir.path(), plain, tls);
    let policies = policy_dir();
    let config = format!(
        "[history]\nbackend = \"redis\"\nredis_url = \"rediss://127.0.0.1:{tls}/\"\nfetch_timeout = \"2s\"\nredis_ca_file = \"ca.pem\"\nredis_cert_file = \"client.pem\"\nredis_key_file = \"client.key\"\nhash_key_file = \"history.key\"\n"
    );
    let files: &[(&str, &[u8])] = &[
        ("ca.pem", pki.ca.as_bytes()),
        ("client.pem", pki.client.0.as_bytes()),
        ("client.key", pki.client.1.as_bytes()),
        ("history.key", b"tls-test-key\n"),
    ];
    let mut a = sidecar(policies.path(), &config, files, &[]);
    let mut b = sidecar(policies.path(), &config, files, &[]);
    let (mut ca, cb) = (a.client().await, b.client().await);
    assert_eq!(
        outcome(&mut ca, transfer("tess", "laptop", "urn:stepup:aal2")).await,
        Outcome::Allow
    );
    eventually(
        "sidecar B to know the device through Redis over TLS",
        || {
            let mut cb = cb.clone();
            async move {
                outcome(&mut cb, transfer("tess", "laptop", "urn:stepup:aal1")).await
                    == Outcome::Allow
            }
        },
    )
    .await;
    assert_eq!(a.metric("stepup_history_fetch_failures_total"), 0.0);
    assert_eq!(b.metric("stepup_history_fetch_failures_total"), 0.0);
    assert_eq!(a.metric("stepup_history_publish_failures_total"), 0.0);
    // What landed in Redis starts with its MAC.
    let client = redis::Client::open(format!("redis://127.0.0.1:{plain}/")).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("stepup:history:*")
        .query_async(&mut raw)
        .await
        .unwrap();
    let stored: String = redis::cmd("HGET")
        .arg(&keys[0])
        .arg("h")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        stored[..64].bytes().all(|b| b.is_ascii_hexdigit()),
        "{stored}"
    );
    assert!(stored[64..].starts_with('{'), "{stored}");

    // Without a client certificate Redis refuses the handshake; with a CA
    // that did not sign Redis's certificate, stepup refuses it. Decisions
    // go on, on local history, and the failures are counted.
    let other = make_pki();
    for (name, files) in [
        (
            "no client certificate",
            vec![
                ("ca.pem", pki.ca.as_bytes()),
                ("history.key", b"tls-test-key".as_slice()),
            ],
        ),
        (
            "another CA",
            vec![
                ("ca.pem", other.ca.as_bytes()),
                ("client.pem", pki.client.0.as_bytes()),
                ("client.key", pki.client.1.as_bytes()),
                ("history.key", b"tls-test-key".as_slice()),
            ],
        ),
    ] {
        let config = if name == "no client certificate" {
            format!(
                "[history]\nbackend = \"redis\"\nredis_url = \"rediss://127.0.0.1:{tls}/\"\nfetch_timeout = \"2s\"\nredis_ca_file = \"ca.pem\"\nhash_key_file = \"history.key\"\n"
            )
        } else {
            config.clone()
        };
        let mut c = sidecar(policies.path(), &config, &files, &[]);
        let mut cc = c.client().await;
        assert_eq!(
            outcome(&mut cc, transfer("tess", "laptop", "urn:stepup:aal1")).await,
            Outcome::Challenge,
            "{name}"
        );
        assert!(
            c.metric("stepup_history_fetch_failures_total") >= 1.0,
            "{name}"
        );
    }
    drop(redis);
}

/// The Redis key of `subject`, as the sidecars name it with `hash_key`.
fn subject_key(hash_key: &str, subject: &str) -> String {
    let keyer = stepup::internal::Keyer::from_secret(hash_key);
    format!("stepup:history:{}", keyer.subject("", subject).to_hex())
}

/// The MAC a replica holding `hash_key` puts on `record` at `key`: the
/// documented scheme, computed independently of the code under test.
fn seal(hash_key: &str, key: &str, record: &str) -> String {
    use hmac::{Mac, digest::KeyInit};
    type H = hmac::Hmac<sha2::Sha256>;
    let mut derive = <H as KeyInit>::new_from_slice(hash_key.as_bytes()).unwrap();
    derive.update(b"stepup history record MAC key v1");
    let mac_key = derive.finalize().into_bytes();
    let mut mac = <H as KeyInit>::new_from_slice(&mac_key).unwrap();
    mac.update(b"stepup history record v1\0");
    mac.update(key.as_bytes());
    mac.update(b"\0");
    mac.update(record.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A history with one elevation of session `session` (by id) to aal3 until
/// 2100, as JSON: what a review wrote into Redis by hand.
fn forged_elevation(hash_key: &str, session: &str) -> String {
    let keyer = stepup::internal::Keyer::from_secret(hash_key);
    let now = chrono::Utc::now().timestamp_millis();
    serde_json::json!({
        "devices": [], "last_place": null, "last_seen": now, "events": [], "failures": [],
        "elevations": [{
            "session": keyer.session(session), "acr": "urn:stepup:aal3", "amr": ["hwk"],
            "auth_time": now, "from": now, "until": 4_102_444_800_000_i64,
        }],
    })
    .to_string()
}

/// A password change from an aal1 session `session` of `subject`.
fn password_change(subject: &str, session: &str) -> DecideRequest {
    serde_json::from_value(serde_json::json!({
        "action": "account.password.change",
        "subject": { "id": subject },
        "session": { "id": session, "acr": "urn:stepup:aal1", "amr": ["pwd"] },
        "device": { "id": "laptop", "trusted": true },
    }))
    .unwrap()
}

/// Whether the record at `key` is sealed under `hash_key` and holds no aal3
/// elevation (a replica wrote it).
async fn resealed(client: &redis::Client, hash_key: &str, key: &str) -> bool {
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let stored: Option<String> = redis::cmd("HGET")
        .arg(key)
        .arg("h")
        .query_async(&mut raw)
        .await
        .unwrap();
    stored.is_some_and(|s| {
        let (tag, h) = s.split_at(64.min(s.len()));
        tag == seal(hash_key, key, h) && !h.contains("urn:stepup:aal3")
    })
}

#[tokio::test]
async fn a_tampered_or_moved_record_is_not_applied() {
    const KEY: &str = "replicas-share-this-key";
    let port = common::free_port();
    let _redis = redis_with(port, &["--requirepass", "redis-pw"]).unwrap();
    let client = redis::Client::open(format!("redis://:redis-pw@127.0.0.1:{port}/")).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    // A record is stored as its MAC (64 hex digits) then its JSON.
    let mut hset = async |key: &str, record: &str, tag: &str| {
        let () = redis::cmd("HSET")
            .arg(key)
            .arg("v")
            .arg(1)
            .arg("h")
            .arg(format!("{tag}{record}"))
            .query_async(&mut raw)
            .await
            .unwrap();
    };
    // Secrets as a chart passes them: the URL and the hash key from the
    // environment, the Redis password from a file.
    let config = "[history]\nbackend = \"redis\"\nfetch_timeout = \"2s\"\nredis_password_file = \"redis-password\"\n";
    let files: &[(&str, &[u8])] = &[("redis-password", b"redis-pw\n")];
    let url = format!("redis://127.0.0.1:{port}/");
    let env = [
        ("STEPUP_REDIS_URL", url.as_str()),
        ("STEPUP_HISTORY_HASH_KEY", KEY),
    ];
    let policies = common::examples();

    // Control: a record sealed with the replicas' key is applied (the
    // elevation lifts the aal1 session), so the checks below can fail.
    let carol = subject_key(KEY, "carol");
    let record = forged_elevation(KEY, "s-shared");
    hset(&carol, &record, &seal(KEY, &carol, &record)).await;
    let mut first = sidecar(&policies, config, files, &env);
    let mut c1 = first.client().await;
    assert_eq!(
        outcome(&mut c1, password_change("carol", "s-shared")).await,
        Outcome::Allow
    );
    assert_eq!(first.metric("stepup_history_records_rejected_total"), 0.0);

    // Edited: an elevation to aal3 until 2100, written without the key
    // (no MAC, a MAC under another key, or the MAC of another record).
    let mallory = subject_key(KEY, "mallory");
    let mut fresh = sidecar(&policies, config, files, &env);
    let mut c2 = fresh.client().await;
    let cases = [
        String::new(),
        seal("a-guessed-key", &mallory, &record),
        seal(KEY, &mallory, &forged_elevation(KEY, "s-other")),
    ];
    // Each is counted when read (by the prefetch, and again by the writer
    // that replaces it).
    let mut rejected = 0.0;
    for (n, tag) in cases.iter().enumerate() {
        hset(&mallory, &record, tag).await;
        assert_eq!(
            outcome(&mut c2, password_change("mallory", "s-shared")).await,
            Outcome::Challenge,
            "case {n}"
        );
        let now = fresh.metric("stepup_history_records_rejected_total");
        assert!(now > rejected, "case {n}: {now}");
        // Written over before the next case (not during it).
        eventually("mallory's record rewritten and sealed", || {
            resealed(&client, KEY, &mallory)
        })
        .await;
        rejected = fresh.metric("stepup_history_records_rejected_total");
    }
    // Moved: carol's authentic record copied to the victim's key.
    let victim = subject_key(KEY, "victim");
    hset(&victim, &record, &seal(KEY, &carol, &record)).await;
    assert_eq!(
        outcome(&mut c2, password_change("victim", "s-shared")).await,
        Outcome::Challenge
    );
    assert!(fresh.metric("stepup_history_records_rejected_total") > rejected);
    // The replica's own write replaces the rejected record with a sealed
    // one that no longer holds the forged elevation.
    eventually("the victim's record rewritten and sealed", || {
        resealed(&client, KEY, &victim)
    })
    .await;
    drop(first);
}

#[test]
fn a_shared_backend_without_a_readable_key_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stepup.toml");
    for (text, env, expected) in [
        (
            "[history]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:1/\"\n",
            None,
            "history.backend \"redis\" needs history.hash_key, the same on every replica: set `STEPUP_HISTORY_HASH_KEY` or history.hash_key_file (e.g. a mounted Secret)".to_owned(),
        ),
        (
            "[history]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:1/\"\nhash_key_file = \"absent.key\"\n",
            None,
            format!("history.hash_key_file `{}` cannot be read", dir.path().join("absent.key").display()),
        ),
        (
            "[history]\nbackend = \"redis\"\nhash_key = \"the-secret-value\"\n",
            Some(("STEPUP_REDIS_URL", "http://the-secret-value@x/")),
            "history.redis_url is not a Redis URL".to_owned(),
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stepup"));
        cmd.args(["serve", "--policies"])
            .arg(common::examples())
            .args(["--listen", "127.0.0.1:0", "--admin", "off", "--config"])
            .arg(&config)
            .env_remove("STEPUP_HISTORY_HASH_KEY")
            .env_remove("STEPUP_REDIS_URL");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(!stderr.contains("the-secret-value"), "{stderr}");
    }
}
