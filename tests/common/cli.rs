//! The real `stepup` binary run as a command, for the tests of what it
//! prints and exits with. Included by path (`#[path = "common/cli.rs"]`)
//! rather than through `common`, whose servers, TLS and Redis helpers these
//! tests never use and would only compile again.

#![allow(dead_code)] // each test crate uses part of it

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `stepup` with `args`, with no STEPUP_* variable from the test's
/// environment, plus `env`.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(args)
        .env_remove("STEPUP_POLICIES")
        .env_remove("STEPUP_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `stepup` with `args` and no STEPUP_* variable.
pub fn stepup(args: &[&str]) -> Output {
    run(args, &[])
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The example policy set, as an argument.
pub fn examples() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .display()
        .to_string()
}

/// The example refund request (`examples/refund.json`), as an argument.
pub fn refund() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/refund.json")
        .display()
        .to_string()
}
