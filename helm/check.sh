#!/usr/bin/env bash
# Validate the Helm chart (helm/stepup), the example application chart
# (helm/examples/payments-app) and the Dockerfile with real tools: Helm v4's Go
# SDK (helm-python-sdk), kubernetes-validate, hadolint and BuildKit's Dockerfile
# parser, pinned in helm/requirements.txt. The checks themselves are in
# helm/check.py.
#
#   bash helm/check.sh                 # from the repository root (any cwd works)
#   bash helm/check.sh --no-self-test  # skip the mutation self-test (faster)
#
# Tools go into a virtualenv at target/helm-venv (override: STEPUP_HELM_VENV),
# created on first use and reused while helm/requirements.txt is unchanged.
# The checks run the stepup binary (`stepup check` on the rendered policies,
# `stepup serve` with the rendered args answering the probes): by default the
# one `cargo build --locked --bin stepup` builds from this checkout, wherever
# CARGO_TARGET_DIR puts it; STEPUP_BIN=path/to/stepup picks another
# (.ci/stepup-bin.sh). Without a binary the run fails: no check is skipped.
# Exit status: 0 when every check passes, 1 when any fails, 2 on setup errors.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${STEPUP_HELM_VENV:-target/helm-venv}"
requirements="helm/requirements.txt"

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

# The stamp records which requirements (and which interpreter) built the venv.
want="$(sha256sum "$requirements" | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
stamp="$venv/.stepup-requirements"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
  echo "setup: creating $venv with $python and helm/requirements.txt"
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

# shellcheck source=../.ci/stepup-bin.sh
source .ci/stepup-bin.sh
STEPUP_BIN="$(stepup_bin "$python")" || exit 2
export STEPUP_BIN
echo "setup: stepup binary $STEPUP_BIN"

exec "$venv/bin/python" helm/check.py "$@"
