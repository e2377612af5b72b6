//! The floor for a gRPC call on this machine: an empty tonic server that
//! answers `/stepup.v1.DecisionService/Decide` with fixed, pre-encoded
//! `DecideResponse` bytes, never decoding the request.
//!
//! `benches/load.sh` runs the same load against it and against `stepup serve`.
//! It keeps everything a real tonic service pays for (HTTP/2, gRPC framing,
//! the `tonic::server::Grpc` unary path, the transport server) and drops only
//! the decode, the decision and the encode. Like `stepup serve` pinned to one
//! core, it runs on a single-threaded runtime.
//!
//! Usage: `floor_server [ADDR]` (default `127.0.0.1:7170`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _};
use stepup::proto::v1::{DecideResponse, Effect, Outcome, Reason, Requirement, Risk};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Bytes, Context, Poll, Service, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

const DEFAULT_ADDR: &str = "127.0.0.1:7170";
const DECIDE_PATH: &str = "/stepup.v1.DecisionService/Decide";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("floor_server: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let arg = std::env::args().nth(1);
    let addr_text = arg.as_deref().unwrap_or(DEFAULT_ADDR);
    let addr: SocketAddr = addr_text
        .parse()
        .map_err(|err| format!("bad listen address `{addr_text}`: {err}"))?;

    let floor = FloorService {
        response: Bytes::from(fixed_response().encode_to_vec()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        eprintln!("floor_server: listening on {addr}");
        tonic::transport::Server::builder()
            .add_service(floor)
            .serve(addr)
            .await
    })?;
    Ok(())
}

/// The CHALLENGE that `stepup serve` with `policies/` answers the load's
/// request with, field for field, so both servers write the same bytes.
fn fixed_response() -> DecideResponse {
    let acr_values: Vec<String> = [
        "urn:stepup:aal2",
        "urn:okta:loa:2fa:any",
        "http://schemas.openid.net/pape/policies/2007/06/multi-factor",
    ]
    .map(str::to_owned)
    .into();
    let five_minutes = pbjson_types::Duration {
        seconds: 300,
        nanos: 0,
    };
    let message = "Refunds above 1,000 need re-verification";
    DecideResponse {
        outcome: Outcome::Challenge.into(),
        requirements: vec![Requirement {
            rule_id: "refund-large".to_owned(),
            level: "aal2".to_owned(),
            acr_values: acr_values.clone(),
            methods: vec!["hwk".to_owned(), "otp".to_owned()],
            max_age: Some(five_minutes),
        }],
        www_authenticate: format!(
            "Bearer error=\"insufficient_user_authentication\", error_description=\"{message}\", \
             acr_values=\"{}\", max_age=\"300\"",
            acr_values.join(" ")
        ),
        acr_values,
        max_age: Some(five_minutes),
        risk: Some(Risk {
            score: 10,
            signals: vec!["odd-hours".to_owned()],
        }),
        reasons: vec![Reason {
            rule_id: "refund-large".to_owned(),
            effect: Effect::Challenge.into(),
            message: message.to_owned(),
        }],
        decision_id: "01a21f80-fc56-73b1-96dd-68285e25d6eb".to_owned(),
        policy_revision: format!("sha256:{}", "0".repeat(64)),
        // Empty in stepup's answer too; a default keeps this compiling as
        // the proto grows.
        ..DecideResponse::default()
    }
}

/// The service: routes `Decide` through tonic's unary path, 404s (gRPC
/// UNIMPLEMENTED) anything else, as tonic-build's generated server does.
#[derive(Clone)]
struct FloorService {
    response: Bytes,
}

impl NamedService for FloorService {
    const NAME: &'static str = "stepup.v1.DecisionService";
}

impl Service<http::Request<tonic::body::Body>> for FloorService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() == DECIDE_PATH {
            let method = FixedAnswer(self.response.clone());
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(RawCodec);
                Ok(grpc.unary(method, req).await)
            })
        } else {
            Box::pin(async move {
                Ok(Status::unimplemented("floor_server serves only Decide").into_http())
            })
        }
    }
}

/// The handler: hands back the pre-encoded response.
struct FixedAnswer(Bytes);

impl UnaryService<()> for FixedAnswer {
    type Response = Bytes;
    type Future = std::future::Ready<Result<Response<Bytes>, Status>>;

    fn call(&mut self, _request: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(self.0.clone())))
    }
}

/// A codec that skips the request message and copies the response bytes as
/// they are: no protobuf work on either side.
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ();
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
        let len = src.remaining();
        src.advance(len);
        Ok(Some(()))
    }
}
