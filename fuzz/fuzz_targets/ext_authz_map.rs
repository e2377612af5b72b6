//! The Envoy ext_authz path: bytes -> prost decode of a `CheckRequest` ->
//! the mapping (the default one and those of the Envoy and Istio example
//! configs) -> a decision over the example policies -> the `CheckResponse`.
#![no_main]

#[path = "common.rs"]
mod common;

use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = CheckRequest::decode(data) else {
        return;
    };
    let service = common::service();
    for mapping in common::mappings() {
        match stepup::internal::check(service, mapping, &req, common::now()) {
            Ok(response) => {
                let _ = response.encode_to_vec();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
