#![allow(missing_docs)] // criterion_group! generates undocumented items
#![expect(
    clippy::expect_used,
    reason = "a bench with bad fixtures should stop at once"
)]
//! What Envoy's `Check` costs over `Decide` for the same decision, with the
//! example policies and the example mapping (`examples/envoy/stepup.toml`):
//! in process (mapping + decision + answer vs. validation + decision +
//! response), and over a real loopback gRPC connection (the call Envoy
//! makes). Run: `cargo bench --bench ext_authz`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use envoy_types::pb::envoy::config::core::v3::{Address, Metadata, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use envoy_types::pb::google::protobuf as epb;
use stepup::CacheConfig;
use stepup::Mapping;
use stepup::PolicySet;
use stepup::ServeOptions;
use stepup::Service;
use stepup::internal::{check as ext_authz_check, response};
use stepup::proto::v1::DecideRequest;
use stepup::proto::v1::decision_service_client::DecisionServiceClient;
use stepup::{Config, Overrides};

const NOW: i64 = 1_795_780_800; // 2026-11-27T12:00:00Z

/// The refund of 2,500 from an aal1 session: a CHALLENGE, as `Decide` gets it.
const REFUND: &str = r#"{
  "action": "payments.refund",
  "subject": { "id": "user-123", "attributes": { "usual_countries": ["DE", "FR"] } },
  "session": { "id": "s-1", "acr": "urn:stepup:aal1", "amr": ["pwd"], "authTime": "2026-11-27T09:00:00Z" },
  "device": { "id": "d-9" },
  "network": { "ip": "203.0.113.7" },
  "resource": { "type": "refund", "id": "pay-7", "attributes": { "amount": 2500, "currency": "EUR" } },
  "time": "2026-11-27T12:00:00Z"
}"#;

fn string(s: &str) -> epb::Value {
    epb::Value {
        kind: Some(epb::value::Kind::StringValue(s.to_owned())),
    }
}

/// The same refund as Envoy sends it: a typical header set and the
/// verified JWT payload in the metadata context.
fn check_request() -> CheckRequest {
    let claims: Vec<(&str, epb::Value)> = vec![
        ("iss", string("https://idp.example.com/")),
        ("aud", string("payments-api")),
        ("sub", string("user-123")),
        ("sid", string("s-1")),
        ("acr", string("urn:stepup:aal1")),
        (
            "amr",
            epb::Value {
                kind: Some(epb::value::Kind::ListValue(epb::ListValue {
                    values: vec![string("pwd")],
                })),
            },
        ),
        (
            "auth_time",
            epb::Value {
                kind: Some(epb::value::Kind::NumberValue(1_795_770_000.0)),
            },
        ),
        (
            "usual_countries",
            epb::Value {
                kind: Some(epb::value::Kind::ListValue(epb::ListValue {
                    values: vec![string("DE"), string("FR")],
                })),
            },
        ),
    ];
    let payload = epb::Struct {
        fields: claims.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    };
    let headers = [
        (":authority", "api.example.com"),
        (":method", "POST"),
        (
            ":path",
            "/v1/payments/pay-7/refunds?amount=2500&currency=EUR",
        ),
        (":scheme", "https"),
        (
            "authorization",
            "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEyMyJ9.c2ln",
        ),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("x-device-id", "d-9"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "6f1c4b1e-2f5b-4c53-9a0e-3c1f8f7d2b10"),
    ];
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "203.0.113.7".into(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(Request {
                time: Some(epb::Timestamp {
                    seconds: NOW,
                    nanos: 0,
                }),
                http: Some(HttpRequest {
                    id: "6f1c4b1e".into(),
                    method: "POST".into(),
                    path: "/v1/payments/pay-7/refunds?amount=2500&currency=EUR".into(),
                    host: "api.example.com".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/1.1".into(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    ..Default::default()
                }),
            }),
            metadata_context: Some(Metadata {
                filter_metadata: [(
                    "envoy.filters.http.jwt_authn".to_owned(),
                    epb::Struct {
                        fields: [(
                            "jwt_payload".to_owned(),
                            epb::Value {
                                kind: Some(epb::value::Kind::StructValue(payload)),
                            },
                        )]
                        .into(),
                    },
                )]
                .into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn engine(cache: u64) -> Arc<Service> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (policy, _) = PolicySet::load(&dir).expect("example policies are valid");
    Arc::new(Service::new(
        policy,
        CacheConfig {
            capacity: cache,
            ..CacheConfig::default()
        },
    ))
}

fn mapping() -> Mapping {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/envoy/stepup.toml");
    Config::resolve(Overrides::default(), Some(&file))
        .expect("the example config is valid")
        .ext_authz
}

fn bench(c: &mut Criterion) {
    let clock = Utc
        .with_ymd_and_hms(2026, 11, 27, 12, 0, 0)
        .single()
        .expect("valid time");
    let decide_req: DecideRequest = serde_json::from_str(REFUND).expect("valid JSON");
    let check_req = check_request();
    let mapping = mapping();
    // Both paths reach the same decision.
    let mapped = mapping.map(&check_req, clock).expect("the refund maps");
    assert_eq!(mapped.request.action, decide_req.action);

    for (name, cache) in [("cache_off", 0), ("cache_hit", 100_000)] {
        let engine = engine(cache);
        let mut g = c.benchmark_group(format!("in_process/{name}"));
        g.bench_function("decide", |b| {
            b.iter(|| {
                let req = black_box(&decide_req);
                let now = stepup::validate(req, clock).expect("valid");
                let d = engine.decide(req, now, false);
                black_box(response(&d))
            })
        });
        g.bench_function("check", |b| {
            b.iter(|| {
                black_box(
                    ext_authz_check(&engine, &mapping, black_box(&check_req), clock)
                        .expect("valid"),
                )
            })
        });
        g.finish();
    }

    // Over loopback gRPC, one connection, one call at a time.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (addr, stop) = rt.block_on(async {
        let listener = stepup::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // The requests are at a fixed time: no bound on its skew.
        let options = ServeOptions {
            ext_authz: Arc::new(mapping.clone()),
            max_time_skew: None,
            ..ServeOptions::default()
        };
        tokio::spawn(stepup::serve_with(
            engine(100_000),
            listener,
            options,
            async {
                let _ = rx.await;
            },
        ));
        (addr, tx)
    });
    let channel = rt.block_on(async {
        tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect")
    });
    // The typed clients, once, to show both calls answer as expected.
    let mut decisions = DecisionServiceClient::new(channel.clone());
    let mut checks = AuthorizationClient::new(channel.clone());
    rt.block_on(async {
        let d = decisions.decide(decide_req.clone()).await.expect("decided");
        assert_eq!(
            d.get_ref().outcome,
            stepup::proto::v1::Outcome::Challenge as i32
        );
        let c = checks.check(check_req.clone()).await.expect("checked");
        assert_eq!(c.get_ref().status.as_ref().map(|s| s.code), Some(16));
    });
    // The timed calls send pre-encoded requests and keep the answers as
    // bytes: what is measured is the call and the sidecar's work (decode,
    // map or validate, decide, answer, encode), not the client's protobuf
    // encoding and decoding, nor cloning the request, which for Envoy's
    // larger `CheckRequest` cost the client more than the sidecar's work.
    let decide_bytes = bytes::Bytes::from(prost::Message::encode_to_vec(&decide_req));
    let check_bytes = bytes::Bytes::from(prost::Message::encode_to_vec(&check_req));
    let mut raw = tonic::client::Grpc::new(channel);
    let mut call = |path: &'static str, body: &bytes::Bytes| {
        rt.block_on(async {
            raw.ready().await.expect("ready");
            raw.unary(
                tonic::Request::new(body.clone()),
                tonic::codegen::http::uri::PathAndQuery::from_static(path),
                Raw,
            )
            .await
            .expect("answered")
        })
    };
    let mut g = c.benchmark_group("grpc/cache_hit");
    g.bench_function("decide", |b| {
        b.iter(|| call("/stepup.v1.DecisionService/Decide", &decide_bytes))
    });
    g.bench_function("check", |b| {
        b.iter(|| call("/envoy.service.auth.v3.Authorization/Check", &check_bytes))
    });
    g.finish();
    let _ = stop.send(());
}

/// A gRPC codec passing messages through as bytes.
#[derive(Clone, Copy, Default)]
struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n)))
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
