#!/usr/bin/env bash
# Builds the fuzz targets, replays the committed regressions, then fuzzes
# each target for SECONDS (default 30) from its seeds and working corpus.
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Extra libFuzzer flags can be passed in FUZZ_FLAGS (e.g. "-jobs=2").
# CARGO_TARGET_DIR is honoured: cargo fuzz builds and runs the targets through
# cargo, which puts them under <target dir>/<host triple>/release.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(decide_wire policy_load ext_authz_map suite_replay_inputs)
fi

# All targets in one build: they share every dependency. Debug assertions
# and overflow checks are on (cargo fuzz's default), with AddressSanitizer.
cargo +nightly fuzz build
# The lockfile is committed; a build must not have changed it.
git diff --exit-code -- fuzz/Cargo.lock

for t in "${targets[@]}"; do
  # Every crash found so far must stay fixed: run the target on each
  # reproducer (libFuzzer runs files given as arguments once each).
  if compgen -G "fuzz/regressions/$t/*" >/dev/null; then
    echo "-- $t: regressions"
    cargo +nightly fuzz run "$t" fuzz/regressions/"$t"/* -- -runs=1
  fi
  echo "-- $t: ${seconds}s"
  mkdir -p "fuzz/corpus/$t"
  dict=()
  if [ -f "fuzz/dict/$t.dict" ]; then
    dict=("-dict=fuzz/dict/$t.dict")
  fi
  # A decision over the example policies takes well under a millisecond:
  # an input that takes 10 s is a hang; 2 GB is a leak or a blow-up.
  # shellcheck disable=SC2086
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "${dict[@]}" ${FUZZ_FLAGS:-}
done
