//! What every target shares: the example policies (loaded once), a service
//! deciding with them, the example ext_authz mappings and a fixed clock, so
//! that an input decides the same way whenever it is run.

#![allow(dead_code, clippy::expect_used)] // each target uses part of it

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use stepup::{CacheConfig, FileExtAuthz, Mapping, PolicySet, Service};

/// The repository root (this crate is `fuzz/` in it).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The clock of every decision: the example suites' `now`.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_773_600, 0).expect("2026-11-27T10:00:00Z")
}

fn load() -> PolicySet {
    let dir = repo().join("policies");
    match PolicySet::load(&dir) {
        Ok((set, _warnings)) => set,
        Err(report) => panic!("the example policies do not load:\n{report}"),
    }
}

/// The example policy set, `policies/`.
pub fn policies() -> &'static Arc<PolicySet> {
    static SET: OnceLock<Arc<PolicySet>> = OnceLock::new();
    SET.get_or_init(|| Arc::new(load()))
}

/// A service over the example policies with the default cache and a local
/// history (decisions are recorded: the history grows within its limits).
pub fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| Service::new(load(), CacheConfig::default()))
}

/// The `[ext_authz]` section of an example config, compiled.
fn example_mapping(file: &str) -> Mapping {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        ext_authz: FileExtAuthz,
    }
    let text = std::fs::read_to_string(repo().join(file)).expect(file);
    let section = toml::from_str::<Wrapper>(&text).expect(file).ext_authz;
    Mapping::compile(&section).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The default mapping and those of the Envoy and Istio examples.
pub fn mappings() -> &'static [Mapping; 3] {
    static MAPPINGS: OnceLock<[Mapping; 3]> = OnceLock::new();
    MAPPINGS.get_or_init(|| {
        [
            Mapping::default(),
            example_mapping("examples/envoy/stepup.toml"),
            example_mapping("examples/istio/stepup.toml"),
        ]
    })
}
