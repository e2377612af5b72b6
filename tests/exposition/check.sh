#!/usr/bin/env bash
# Validate the admin listener's /metrics (text format 0.0.4 and OpenMetrics
# 1.0) with the Prometheus project's own Python parsers: runs
# tests/telemetry.rs with STEPUP_PROMETHEUS_PYTHON pointing at a virtualenv
# holding tests/exposition/requirements.txt, so the test hands its scrapes to
# tests/exposition/check.py.
#
#   bash tests/exposition/check.sh    # from the repository root (any cwd works)
#
# The virtualenv is target/exposition-venv (override: STEPUP_EXPOSITION_VENV),
# created on first use and reused while the requirements are unchanged.
# Exit status: 0 when the checks pass, 1 when any fails, 2 on setup errors.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
venv="${STEPUP_EXPOSITION_VENV:-target/exposition-venv}"
requirements="tests/exposition/requirements.txt"

python=""
for candidate in python3.11 python3.12 python3.13 python3.10 python3; do
  if command -v "$candidate" >/dev/null 2>&1; then
    python="$candidate"
    break
  fi
done
if [[ -z "$python" ]]; then
  echo "FAIL setup: no python3 (3.10 or newer) on PATH" >&2
  exit 2
fi

want="$(sha256sum "$requirements" | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
stamp="$venv/.stepup-requirements"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
  echo "setup: creating $venv with $python and $requirements"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
      --only-binary=:all: -r "$requirements"; then
    echo "FAIL setup: pip install -r $requirements" >&2
    rm -rf "$venv"
    exit 2
  fi
  echo "$want" >"$stamp"
else
  echo "setup: reusing $venv"
fi

# The test hands its scrapes to tests/exposition/check.py only when it gets
# that far: a passing run without the parsers' verdict in its output (a test
# renamed, filtered or ignored) is a failure, not a pass.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! STEPUP_PROMETHEUS_PYTHON="$(cd "$venv" && pwd)/bin/python" \
    cargo test --locked --test telemetry -- --nocapture 2>&1 | tee "$log"; then
  echo "FAIL /metrics exposition (see above)" >&2
  exit 1
fi
if ! grep -q "^ok: both expositions parse" "$log"; then
  echo "FAIL /metrics exposition: tests/telemetry.rs passed, but the Prometheus parsers (tests/exposition/check.py) never ran" >&2
  exit 1
fi
echo "ok: /metrics parsed by prometheus_client (text 0.0.4 and OpenMetrics 1.0)"
