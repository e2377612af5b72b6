#!/usr/bin/env bash
# The playground's browser test: Debian's chromium (apt) driven by
# Playwright's Python client (pip, in a virtualenv under the target
# directory; it downloads no browser). Builds the binary and runs
# tests/playground/browser_test.py.
#
#   bash tests/playground/run.sh                      # the check
#   STEPUP_UPDATE_DOCS=1 bash tests/playground/run.sh # also rewrites the
#                                                     # screenshots in docs/src/playground/
set -euo pipefail
cd "$(dirname "$0")/../.."
source .ci/stepup-bin.sh

if ! command -v chromium >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "FAIL playground: no chromium and no apt-get here: install Chromium (set CHROMIUM=path)" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"

target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
venv="$target/playground-venv"
want="playwright==1.65.3 $(python3 --version)"
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.stepup-requirements" 2>/dev/null || true)" != "$want" ]]; then
  echo "setup: creating $venv with playwright"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input playwright==1.65.3
  printf '%s' "$want" > "$venv/.stepup-requirements"
fi

stepup="$(stepup_bin python3)"
if [[ "${STEPUP_UPDATE_DOCS:-}" == 1 ]]; then
  export STEPUP_SCREENSHOTS="$PWD/docs/src/playground"
fi
"$venv/bin/python" tests/playground/browser_test.py "$stepup"
