#!/usr/bin/env bash
# Checks the Python SDK from a clean clone: makes a virtualenv in
# sdk/python/.venv (git-ignored), installs the package with its dev extras
# from PyPI (the wheel build generates the protobuf modules from ../../proto
# with grpcio-tools), generates them in the source tree too, type-checks the
# package, the example app and the tests with `mypy --strict`, and runs the
# tests against a real `stepup serve`.
#
# The binary: STEPUP_BIN, else built from this checkout
# (`source .ci/stepup-bin.sh; stepup_bin python3`). PYTHON picks the
# interpreter for the virtualenv (default python3, 3.9 or newer).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
venv="$here/.venv"
start=$SECONDS

fail() {
  echo "FAIL sdk/python: $*" >&2
  exit 1
}

# shellcheck source=../../.ci/stepup-bin.sh
source "$root/.ci/stepup-bin.sh"
STEPUP_BIN="$(cd "$root" && stepup_bin "$python")" || fail "no stepup binary (see above)"
export STEPUP_BIN
echo "sdk/python: stepup binary $STEPUP_BIN"

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' \
  || fail "$python is older than 3.9"

echo "sdk/python: virtualenv $venv"
"$python" -m venv --clear "$venv" || fail "cannot make the virtualenv"
vpy="$venv/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$vpy" -m pip install -q --upgrade pip || fail "pip upgrade"

echo "sdk/python: pip install .[dev] (builds the wheel: generates the stubs)"
(cd "$here" && "$vpy" -m pip install -q ".[dev]") || fail "pip install .[dev]"

# The installed package must carry the generated modules and the protobuf
# bound of the protoc that made them.
(cd / && "$vpy" - <<'PY') || fail "the installed package is incomplete"
import importlib.metadata as md, stepup_client, stepup_client.v1 as v1
assert "/.venv/" in stepup_client.__file__, stepup_client.__file__
assert v1.DecideRequest.DESCRIPTOR.full_name == "stepup.v1.DecideRequest"
pins = [r for r in md.requires("stepup-client") or [] if r.startswith("protobuf") and "extra" not in r]
assert any(">=" in p and "<" in p for p in pins), pins
print("sdk/python: installed", md.version("stepup-client"), "requires", ", ".join(pins))
PY

echo "sdk/python: generate.py (stubs in the source tree, for mypy)"
(cd "$here" && "$vpy" generate.py) || fail "generate.py"

echo "sdk/python: mypy --strict"
(cd "$here" && MYPYPATH=src:tests "$vpy" -m mypy --strict src/stepup_client examples tests) \
  || fail "mypy --strict"

echo "sdk/python: pytest against $STEPUP_BIN"
(cd "$here" && "$vpy" -m pytest -q -p no:cacheprovider) || fail "pytest"

echo "sdk/python: ok in $((SECONDS - start))s"
