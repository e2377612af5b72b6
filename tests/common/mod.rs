//! Shared by the integration tests: a real server on `127.0.0.1:0` over the
//! example policies, and a real tonic client.

#![allow(dead_code, missing_docs)] // each test crate uses part of it

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stepup::CacheConfig;
use stepup::PolicySet;
use stepup::Service;
use stepup::proto::v1::decision_service_client::DecisionServiceClient;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// A current-thread runtime for a test that drives a child process.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A free loopback port: bound, then released for a child process to bind
/// (`serve` in a separate process cannot take a listener).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// The `google.rpc.ErrorInfo` of `status`: in the `stepup` domain, with
/// `reason`; its metadata.
pub fn error_info(
    status: &tonic::Status,
    reason: &str,
) -> std::collections::HashMap<String, String> {
    use tonic_types::StatusExt as _;
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "stepup");
    assert_eq!(info.reason, reason, "{status:?}");
    info.metadata
}

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub engine: Arc<Service>,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), stepup::ServeError>>,
}

impl TestServer {
    pub async fn start(dir: &Path, cache: CacheConfig) -> Self {
        let (policy, _) = PolicySet::load(dir).unwrap_or_else(|r| panic!("{r}"));
        Self::start_engine(Service::new(policy, cache)).await
    }

    /// Serves `engine` (e.g. one with its own history settings). The tests
    /// replay fixed timelines: no bound on the time skew.
    pub async fn start_engine(engine: Service) -> Self {
        let options = stepup::ServeOptions {
            max_time_skew: None,
            ..stepup::ServeOptions::default()
        };
        Self::start_with(engine, options).await
    }

    /// Serves `engine` with `options`.
    pub async fn start_with(engine: Service, options: stepup::ServeOptions) -> Self {
        let engine = Arc::new(engine);
        let listener = stepup::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(stepup::serve_with(
            Arc::clone(&engine),
            listener,
            options,
            async {
                let _ = rx.await;
            },
        ));
        Self {
            addr,
            engine,
            shutdown: Some(tx),
            task,
        }
    }

    /// `stepup_grpc_requests_total{method,code}` as `/metrics` shows it (0
    /// when the series is absent).
    pub fn grpc_count(&self, method: &str, code: &str) -> u64 {
        let text = self.engine.render_metrics();
        let series = format!("stepup_grpc_requests_total{{method=\"{method}\",code=\"{code}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .map_or(0, |v| v.parse().unwrap())
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn client(&self) -> DecisionServiceClient<Channel> {
        DecisionServiceClient::new(self.channel().await)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

/// Connects to a `stepup serve` child process once it listens on `addr`,
/// failing fast (with its exit status) if the process dies first.
pub async fn connect_when_up(
    child: &mut std::process::Child,
    addr: &str,
) -> DecisionServiceClient<Channel> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(c) = DecisionServiceClient::connect(format!("http://{addr}")).await {
            return c;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("stepup serve exited before listening on {addr}: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stepup serve did not come up on {addr}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// GET `path` on `addr` over HTTP/1.1: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of `series` (name and labels, as written) in a Prometheus
/// text `body`.
pub fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no `{series}` in:\n{body}"))
        .parse()
        .unwrap()
}

/// A gRPC frame: uncompressed, the length, the bytes.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut f = vec![0];
    f.extend(u32::try_from(message.len()).unwrap().to_be_bytes());
    f.extend(message);
    f
}

/// Sends `body` as it is (no framing added) as the HTTP/2 body of a gRPC
/// call to `path` on `channel` (connected to `addr`), and returns the
/// status answered.
pub async fn raw_call(
    mut channel: Channel,
    addr: &str,
    path: &str,
    body: Vec<u8>,
) -> tonic::Status {
    use http_body_util::BodyExt as _;
    use tonic::codegen::Service as _;

    let request = tonic::codegen::http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from(body),
        )))
        .unwrap();
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .unwrap();
    let response = channel.call(request).await.unwrap();
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return status;
    }
    let body = response.into_body().collect().await.unwrap();
    tonic::Status::from_header_map(body.trailers().unwrap()).unwrap()
}
pub mod evidence;
pub mod otlp;
pub mod python;
pub mod redis;
pub mod tls;
