//! Compiles the sidecar's `proto/` (two directories up) with a pure-Rust
//! protobuf compiler (protox), so a build needs nothing but cargo: no system
//! `protoc`. Only client stubs are generated.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let descriptors = protox::compile(["stepup/v1/decision.proto"], [&root])?;
    tonic_prost_build::configure()
        .build_server(false)
        // Well-known types from pbjson-types (Timestamp, Duration, Value),
        // the same types the sidecar's own crate uses.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(descriptors)?;
    Ok(())
}
