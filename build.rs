//! Compiles `proto/` with a pure-Rust protobuf compiler (protox), so a build
//! needs nothing but cargo: no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/stepup/v1/decision.proto";
    println!("cargo:rerun-if-changed=proto");

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile([proto], ["proto"])?;
    let descriptor_path = out.join("stepup_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;

    // Envoy's ext_authz v3 API: only a descriptor set, for server reflection
    // (the types and stubs come from the `envoy-types` crate, which exports
    // no descriptor set; see proto/third_party/README.md).
    let envoy = protox::compile(
        ["envoy/service/auth/v3/external_auth.proto"],
        ["proto/third_party"],
    )?;
    std::fs::write(
        out.join("envoy_descriptor.bin"),
        prost::Message::encode_to_vec(&envoy),
    )?;

    tonic_prost_build::configure()
        // Well-known types with proto3 JSON support, so `stepup eval` can read
        // the JSON form of a DecideRequest.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        // Attribute maps hold a handful of entries: a BTreeMap decodes them
        // without a per-map random hasher seed and SipHash per key, and
        // iterates in a stable order.
        .btree_map(".stepup")
        .compile_fds(descriptors.clone())?;

    pbjson_build::Builder::new()
        .register_descriptors(&prost::Message::encode_to_vec(&descriptors))?
        .extern_path(".google.protobuf", "::pbjson_types")
        .btree_map([".stepup"])
        .build(&[".stepup"])?;
    Ok(())
}
