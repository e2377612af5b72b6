#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    deprecated // rustls' ring provider: the only one this crate builds
)] // test code: a failed unwrap is a failed test
//! The gRPC listener's transports over real sockets: TLS, mutual TLS (and
//! the caller identity in the decision log), certificate rotation without
//! dropping connections, Unix domain sockets, the plaintext warning, and a
//! client written by others (Python's grpcio). Certificates are made here
//! with rcgen.

mod common;

use common::tls::*;

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::ExtendedKeyUsagePurpose;
use rustls::pki_types::ServerName;
use stepup::proto::v1::decision_service_client::DecisionServiceClient;
use stepup::proto::v1::{DecideRequest, Outcome, Subject};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::transport::Channel;

const SPIFFE_ID: &str = "spiffe://example.org/ns/payments/sa/checkout";

/// A request the example policies challenge.
fn password_change() -> DecideRequest {
    DecideRequest {
        action: "account.password.change".into(),
        subject: Some(Subject {
            id: "u".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Connects (`channel`) and decides: the outcome, or why either failed.
async fn decide(
    channel: impl Future<Output = Result<Channel, tonic::transport::Error>>,
) -> Result<Outcome, String> {
    let channel = channel.await.map_err(|e| format!("connect: {e:?}"))?;
    DecisionServiceClient::new(channel)
        .decide(password_change())
        .await
        .map(|r| r.into_inner().outcome())
        .map_err(|s| format!("call: {s:?}"))
}

// ---------------------------------------------------------------- servers

/// `stepup serve` over the example policies with `args`; logs (JSON) on
/// stderr, kept until [`Serve::stop`].
struct Serve {
    child: Child,
}

impl Serve {
    fn start(args: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_stepup"))
            .arg("serve")
            .arg("--policies")
            .arg(common::examples())
            .args(["--admin", "off", "--log-format", "json"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self { child }
    }

    /// Waits until `up` succeeds (the server answers), failing fast if the
    /// process exits first.
    async fn wait_for<T, F: Future<Output = Result<T, String>>>(
        &mut self,
        mut up: impl FnMut() -> F,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match up().await {
                Ok(v) => return v,
                Err(e) => {
                    if let Some(status) = self.child.try_wait().unwrap() {
                        let out = self.stop_now();
                        panic!("stepup serve exited ({status}) before serving: {e}\n{out}");
                    }
                    assert!(
                        Instant::now() < deadline,
                        "stepup serve did not come up: {e}"
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop_now(&mut self) -> String {
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read as _;
            let _ = e.read_to_string(&mut err);
        }
        let _ = self.child.wait();
        err
    }

    /// SIGTERM, then its exit code and its logs.
    fn stop(self) -> (Option<i32>, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = self.child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// An in-process server with `tls` and `options` on a loopback port.
async fn serve_tls(
    tls: stepup::TlsConfig,
    options: stepup::ServeOptions,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let (policy, _) = stepup::PolicySet::load(&common::examples()).unwrap();
    let engine = Arc::new(stepup::Service::new(policy, stepup::CacheConfig::default()));
    let listener = stepup::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = stepup::ServeOptions {
        tls: Some(Arc::new(stepup::ServerTls::load(tls).unwrap())),
        ..options
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(stepup::serve_with(engine, listener, options, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn tls_serves_decide_and_refuses_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("stepup test CA");
    let (cert, key) = ca.server().write(dir.path());
    let (addr, _stop) = serve_tls(
        stepup::TlsConfig {
            cert,
            key,
            client_ca: None,
        },
        stepup::ServeOptions::default(),
    )
    .await;

    let tls = TlsConnector::new(addr, client_config(&[&ca], None));
    assert_eq!(decide(tls.channel()).await, Ok(Outcome::Challenge));

    // A plaintext gRPC client gets no answer from a TLS listener.
    let refused = decide(plaintext(format!("http://{addr}"))).await;
    assert!(refused.is_err(), "{refused:?}");

    // A client that trusts another CA refuses the server.
    let other = Ca::new("another CA");
    let wrong_trust = TlsConnector::new(addr, client_config(&[&other], None));
    let refused = decide(wrong_trust.channel()).await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn the_handshake_timeout_covers_tls_and_the_http2_preface() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("stepup test CA");
    let (cert, key) = ca.server().write(dir.path());
    let timeout = Duration::from_millis(300);
    let (addr, _stop) = serve_tls(
        stepup::TlsConfig {
            cert,
            key,
            client_ca: None,
        },
        stepup::ServeOptions {
            handshake_timeout: timeout,
            ..Default::default()
        },
    )
    .await;

    // Connects and sends nothing: closed without a TLS handshake.
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the server closes a silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());

    // Completes TLS, then sends no HTTP/2 preface: closed by the same
    // deadline.
    let started = Instant::now();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client_config(&[&ca], None))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    // The server's SETTINGS may come first; then the connection closes.
    let closed = async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the server closes a connection without a preface");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= timeout && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let _ = tls.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_admits_only_the_client_ca_and_logs_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("stepup server CA");
    let clients = Ca::new("workload CA");
    let (cert, key) = ca.server().write(&dir.path().join("server"));
    let client_ca = write(&dir.path().join("clients.pem"), &clients.pem());
    let log = dir.path().join("decisions.jsonl");
    let port = common::free_port();
    // On all addresses: with mutual TLS there is nothing to warn about.
    let mut server = Serve::start(&[
        "--listen",
        &format!("0.0.0.0:{port}"),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-client-ca",
        client_ca.to_str().unwrap(),
        "--decision-log",
        log.to_str().unwrap(),
    ]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let good = TlsConnector::new(
        addr,
        client_config(&[&ca], Some(&clients.client(SPIFFE_ID))),
    );
    let outcome = server.wait_for(|| decide(good.channel())).await;
    assert_eq!(outcome, Outcome::Challenge);

    // No client certificate.
    let anonymous = TlsConnector::new(addr, client_config(&[&ca], None));
    let refused = decide(anonymous.channel()).await;
    assert!(refused.is_err(), "{refused:?}");
    // A certificate from another CA (with the same SPIFFE ID).
    let forged = Ca::new("workload CA").client(SPIFFE_ID);
    let other = TlsConnector::new(addr, client_config(&[&ca], Some(&forged)));
    let refused = decide(other.channel()).await;
    assert!(refused.is_err(), "{refused:?}");
    // The server's own CA does not vouch for clients either.
    let wrong_ca = ca.client(SPIFFE_ID);
    let other = TlsConnector::new(addr, client_config(&[&ca], Some(&wrong_ca)));
    let refused = decide(other.channel()).await;
    assert!(refused.is_err(), "{refused:?}");

    // Without a URI SAN the identity is the DNS SAN, without either the CN.
    let dns_only = clients.leaf(
        vec![dns("billing.internal")],
        Some("billing"),
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let via_dns = TlsConnector::new(addr, client_config(&[&ca], Some(&dns_only)));
    assert_eq!(decide(via_dns.channel()).await, Ok(Outcome::Challenge));
    let cn_only = clients.leaf(
        vec![],
        Some("reporting"),
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let via_cn = TlsConnector::new(addr, client_config(&[&ca], Some(&cn_only)));
    assert_eq!(decide(via_cn.channel()).await, Ok(Outcome::Challenge));

    let (code, logs) = server.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert!(!logs.contains("plaintext TCP"), "{logs}");
    assert!(logs.contains("mutual TLS"), "{logs}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let callers: Vec<&str> = lines.iter().filter_map(|l| l["caller"].as_str()).collect();
    assert_eq!(
        callers,
        [SPIFFE_ID, "billing.internal", "reporting"],
        "{lines:#?}"
    );
    assert_eq!(lines.len(), 3, "refused clients decided nothing");
}

/// Lays out `dir` as the kubelet mounts a Secret: `tls.crt` and `tls.key`
/// are symlinks into `..data`, itself a symlink to a versioned directory;
/// an update writes a new version and swaps `..data` atomically.
struct SecretVolume {
    dir: PathBuf,
    version: u32,
}

impl SecretVolume {
    fn new(dir: &Path, pair: &Pair) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut volume = Self {
            dir: dir.to_owned(),
            version: 0,
        };
        volume.update(pair);
        std::os::unix::fs::symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", dir.join("tls.key")).unwrap();
        volume
    }

    fn update(&mut self, pair: &Pair) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        let data = self.dir.join(&version);
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("tls.crt"), &pair.cert).unwrap();
        std::fs::write(data.join("tls.key"), &pair.key).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_certificates_serve_new_connections_and_keep_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (ca1, ca2) = (Ca::new("CA 1"), Ca::new("CA 2"));
    let first = ca1.server();
    let mut volume = SecretVolume::new(&dir.path().join("tls"), &first);
    let port = common::free_port();
    let mut server = Serve::start(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--tls-cert",
        volume.cert().to_str().unwrap(),
        "--tls-key",
        volume.key().to_str().unwrap(),
    ]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // A connection opened before the rotation, by a client that trusts
    // only the first CA: were it dropped, it could not reconnect.
    let open = TlsConnector::new(addr, client_config(&[&ca1], None));
    let channel = server
        .wait_for(|| async { open.channel().await.map_err(|e| format!("{e:?}")) })
        .await;
    let mut old = DecisionServiceClient::new(channel);
    old.decide(password_change()).await.unwrap();
    assert_eq!(open.seen(), [first.leaf_der()]);

    // New connections (trusting both CAs) see the new certificate.
    let both = || TlsConnector::new(addr, client_config(&[&ca1, &ca2], None));
    let leaf_of_a_new_connection = || async {
        let c = both();
        decide(c.channel()).await.unwrap();
        c.seen().pop().unwrap()
    };
    let second = ca2.server();
    volume.update(&second);
    let deadline = Instant::now() + Duration::from_secs(20);
    while leaf_of_a_new_connection().await != second.leaf_der() {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection opened before still answers, on the same connection.
    old.decide(password_change()).await.unwrap();
    assert_eq!(open.seen().len(), 1, "the open connection was not dropped");

    // A bad pair (the key of another certificate) is rejected: the second
    // certificate keeps serving.
    let third = ca2.server();
    volume.update(&Pair {
        cert: third.cert.clone(),
        key: first.key.clone(),
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(leaf_of_a_new_connection().await, second.leaf_der());
    // ...and a good one after it is picked up.
    volume.update(&third);
    let deadline = Instant::now() + Duration::from_secs(20);
    while leaf_of_a_new_connection().await != third.leaf_der() {
        assert!(
            Instant::now() < deadline,
            "the third certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    old.decide(password_change()).await.unwrap();

    let (code, logs) = server.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert!(
        logs.contains("TLS reload rejected; the previous certificate keeps serving"),
        "{logs}"
    );
    assert!(logs.contains("TLS certificate reloaded"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_socket_serves_with_its_mode_and_is_removed_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stepup.sock");
    // A stale socket file, as a killed server leaves it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let listen = format!("unix:{}", path.display());
    let mut server = Serve::start(&["--listen", &listen, "--listen-mode", "0600"]);
    let channel = || unix(path.clone());
    let outcome = server.wait_for(|| decide(channel())).await;
    assert_eq!(outcome, Outcome::Challenge);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // A second server on the same live socket refuses to start.
    let second = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .arg("serve")
        .arg("--policies")
        .arg(common::examples())
        .args(["--admin", "off", "--listen", &listen])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(4));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("another process is serving on this socket"),
        "{err}"
    );
    // ...and leaves the socket alone.
    assert_eq!(decide(channel()).await, Ok(Outcome::Challenge));

    // A client written by others: grpcio, which must name the authority
    // (its default, the %-encoded socket path, is no valid :authority).
    {
        let python = tokio::task::spawn_blocking(grpcio_python).await.unwrap();
        let target = format!("unix:{}", path.display());
        let request = prost::Message::encode_to_vec(&password_change());
        let answer = tokio::task::spawn_blocking(move || {
            grpcio_call(
                &python,
                &target,
                &[Path::new("-")],
                "/stepup.v1.DecisionService/Decide",
                &request,
            )
        })
        .await
        .unwrap();
        let response: stepup::proto::v1::DecideResponse =
            prost::Message::decode(answer.unwrap().as_slice()).unwrap();
        assert_eq!(response.outcome(), Outcome::Challenge);

        // The google.rpc error details, as grpcio-status decodes them.
        let target = format!("unix:{}", path.display());
        let bad = prost::Message::encode_to_vec(&stepup::proto::v1::DecideRequest {
            action: "orders.list".into(),
            ..Default::default()
        });
        let python = tokio::task::spawn_blocking(grpcio_python).await.unwrap();
        let error = tokio::task::spawn_blocking(move || {
            grpcio_call(
                &python,
                &target,
                &[Path::new("-")],
                "/stepup.v1.DecisionService/Decide",
                &bad,
            )
        })
        .await
        .unwrap()
        .unwrap_err();
        assert_eq!(
            error,
            "error INVALID_ARGUMENT `subject.id`: required\n\
             ErrorInfo INVALID_FIELD stepup\n\
             BadRequest subject.id: required"
        );
    }

    let (code, logs) = server.stop();
    assert_eq!(code, Some(0), "{logs}");
    assert!(!path.exists(), "the socket file is removed at shutdown");
    assert!(!logs.contains("plaintext TCP"), "{logs}");
    assert!(logs.contains("removing a stale socket file"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_on_a_non_loopback_address_warns_and_names_the_fixes() {
    let port = common::free_port();
    let mut server = Serve::start(&["--listen", &format!("0.0.0.0:{port}")]);
    let addr = format!("http://127.0.0.1:{port}");
    let outcome = server.wait_for(|| decide(plaintext(addr.clone()))).await;
    assert_eq!(outcome, Outcome::Challenge);
    let (code, logs) = server.stop();
    assert_eq!(code, Some(0), "{logs}");
    let warning = logs
        .lines()
        .find(|l| l.contains("plaintext TCP on a non-loopback address"))
        .unwrap_or_else(|| panic!("no warning in:\n{logs}"));
    let warning: serde_json::Value = serde_json::from_str(warning).unwrap();
    assert_eq!(warning["level"], "WARN");
    let text = warning["fields"]["message"].as_str().unwrap();
    for named in [
        "anyone who can reach this port",
        "--tls-cert/--tls-key",
        "--tls-client-ca",
        "--listen unix:",
        "service mesh",
    ] {
        assert!(text.contains(named), "`{named}` not in: {text}");
    }

    // Loopback: no warning.
    let port = common::free_port();
    let mut server = Serve::start(&["--listen", &format!("127.0.0.1:{port}")]);
    let addr = format!("http://127.0.0.1:{port}");
    server.wait_for(|| decide(plaintext(addr.clone()))).await;
    let (_, logs) = server.stop();
    assert!(!logs.contains("plaintext TCP"), "{logs}");
}

// ---------------------------------------------------------------- grpcio

/// A Python with grpcio (tests/grpcio/requirements.txt).
fn grpcio_python() -> PathBuf {
    common::python::venv("grpcio", "the grpcio client")
}

/// One call with the grpcio client: the response bytes, or its error line.
fn grpcio_call(
    python: &Path,
    target: &str,
    pem: &[&Path],
    method: &str,
    request: &[u8],
) -> Result<Vec<u8>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpcio/grpcio_client.py");
    let hex: String = request.iter().map(|b| format!("{b:02x}")).collect();
    let out = Command::new(python)
        .arg(script)
        .arg(target)
        .args(pem)
        .args([method, &hex])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match out.status.code() {
        Some(0) => Ok((0..stdout.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&stdout[i..i + 2], 16).unwrap())
            .collect()),
        Some(3) => Err(stdout),
        _ => panic!(
            "grpcio client failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_grpcio_client_decides_over_mutual_tls() {
    let python = tokio::task::spawn_blocking(grpcio_python).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("stepup server CA");
    let clients = Ca::new("workload CA");
    let (cert, key) = ca.server().write(&dir.path().join("server"));
    let client_ca = write(&dir.path().join("clients.pem"), &clients.pem());
    let root = write(&dir.path().join("root.pem"), &ca.pem());
    let (client_cert, client_key) = clients.client(SPIFFE_ID).write(&dir.path().join("client"));
    let log = dir.path().join("decisions.jsonl");
    let port = common::free_port();
    let mut server = Serve::start(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-client-ca",
        client_ca.to_str().unwrap(),
        "--decision-log",
        log.to_str().unwrap(),
    ]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let rust = TlsConnector::new(
        addr,
        client_config(&[&ca], Some(&clients.client(SPIFFE_ID))),
    );
    server.wait_for(|| decide(rust.channel())).await;

    let target = addr.to_string();
    let request = prost::Message::encode_to_vec(&password_change());
    let (py, target2) = (python.clone(), target.clone());
    let (root2, key2, cert2) = (root.clone(), client_key.clone(), client_cert.clone());
    let answered = tokio::task::spawn_blocking(move || {
        let health = grpcio_call(
            &py,
            &target2,
            &[&root2, &key2, &cert2],
            "/grpc.health.v1.Health/Check",
            &[],
        );
        let decided = grpcio_call(
            &py,
            &target2,
            &[&root2, &key2, &cert2],
            "/stepup.v1.DecisionService/Decide",
            &request,
        );
        // Without a client certificate, grpcio gets no answer.
        let anonymous = grpcio_call(
            &py,
            &target2,
            &[&root2],
            "/grpc.health.v1.Health/Check",
            &[],
        );
        (health, decided, anonymous)
    })
    .await
    .unwrap();
    let (health, decided, anonymous) = answered;
    // HealthCheckResponse { status: SERVING }.
    assert_eq!(health, Ok(vec![0x08, 0x01]));
    let response: stepup::proto::v1::DecideResponse =
        prost::Message::decode(decided.unwrap().as_slice()).unwrap();
    assert_eq!(response.outcome(), Outcome::Challenge);
    let anonymous = anonymous.unwrap_err();
    assert!(anonymous.starts_with("error UNAVAILABLE"), "{anonymous}");

    let (code, logs) = server.stop();
    assert_eq!(code, Some(0), "{logs}");
    let lines = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!(last["caller"], SPIFFE_ID);
    assert_eq!(last["decision"]["decisionId"], response.decision_id);
}
