//! The `Decide` wire path: bytes -> prost decode of a `DecideRequest` ->
//! `validate` -> a decision over the example policies -> the response, as
//! `stepup serve` answers it. Invalid input must be an error, never a panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use stepup::proto::v1::DecideRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = DecideRequest::decode(data) else {
        return;
    };
    let Ok(now) = stepup::validate(&req, common::now()) else {
        return;
    };
    let service = common::service();
    let decision = service.decide(&req, now, req.explain);
    let _ = decision.www_authenticate();
    let response = stepup::internal::response(&decision);
    let _ = response.encode_to_vec();
    // The decision log and `stepup replay` carry the request as proto3 JSON.
    if let Ok(json) = serde_json::to_string(&req) {
        let _ = serde_json::from_str::<DecideRequest>(&json);
    }
    let _ = serde_json::to_string(&response);
});
