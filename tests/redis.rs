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
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

/// A child process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `redis-server` of its own on a free loopback port, without persistence.
struct Redis {
    port: u16,
    _child: Killed,
}

impl Redis {
    fn start() -> Self {
        Self::start_on(common::free_port())
    }

    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server (apt-get install -y redis-server): {e}")
            });
        let redis = Self {
            port,
            _child: Killed(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis.ping().as_deref() != Some("+PONG\r\n") {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Sends one inline command; the first reply line.
    fn command(&self, line: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "{line}\r\n").ok()?;
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn ping(&self) -> Option<String> {
        self.command("PING")
    }
}

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
    use stepup::history::{RedisConfig, Secret};
    use stepup::internal::RedisBackend;
    use stepup::internal::{Backend as _, Keyer, Observation, Update, Verdict};

    let redis = Redis::start();
    let config = RedisConfig {
        url: Secret(redis.url()),
        timeout: Duration::from_secs(1),
    };
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
    use stepup::history::{RedisConfig, Secret};
    use stepup::internal::RedisBackend;
    use stepup::internal::{Backend as _, Keyer, Observation, Update, Verdict};

    let redis = Redis::start();
    let config = RedisConfig {
        url: Secret(redis.url()),
        timeout: Duration::from_secs(1),
    };
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
