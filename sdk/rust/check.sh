#!/usr/bin/env bash
# CI for the Rust SDK (sdk/rust, crate stepup-client), from a clean clone:
# format, clippy (-D warnings), the API docs (-D warnings), and the tests,
# which run a real `stepup serve` on the example policies. Everything
# --locked against sdk/rust/Cargo.lock (crates from crates.io through cargo).
#
# The stepup binary: STEPUP_BIN when set, else built from this checkout
# with `cargo build --locked --bin stepup` (.ci/stepup-bin.sh). Never skips:
# a missing tool or binary fails the run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

for tool in cargo python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "FAIL setup: $tool not found" >&2
    exit 2
  fi
done

# shellcheck source=../../.ci/stepup-bin.sh
source "$root/.ci/stepup-bin.sh"
STEPUP_BIN="$(cd "$root" && stepup_bin python3)"
export STEPUP_BIN
echo "stepup binary: $STEPUP_BIN ($("$STEPUP_BIN" --version))"

# The root crate's target directory: the crates both build (tokio, tonic,
# prost, rustls, ...) at the same versions and features are compiled once.
if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
  CARGO_TARGET_DIR="$(cd "$root" && cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
  export CARGO_TARGET_DIR
fi

cd "$here"
echo "== sdk/rust: cargo fmt --check"
cargo fmt -- --check

echo "== sdk/rust: cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

echo "== sdk/rust: cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps

echo "== sdk/rust: cargo test (against $STEPUP_BIN)"
cargo test --locked
