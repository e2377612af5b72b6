#!/usr/bin/env bash
# Checks the TypeScript SDK (@stepup/client) from a clean clone: installs the
# locked npm packages into node_modules/ (git-ignored), generates the types
# and the grpc-js client from ../../proto, type-checks (tsc --noEmit, also
# the browser entry point without Node's types), builds, and runs the tests
# against a real `stepup serve`: the binary in STEPUP_BIN, else the one
# `.ci/stepup-bin.sh` builds from this checkout with cargo.
#
# Needs Node.js 20 or later with npm, and openssl (the TLS tests make their
# certificates with it). Fails loudly; never skips.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
started=$SECONDS

step() { printf '\n== sdk/typescript: %s\n' "$*"; }
fail() { printf 'FAIL sdk/typescript: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null || fail "node is not installed (Node.js 20 or later)"
command -v npm >/dev/null || fail "npm is not installed"
command -v openssl >/dev/null || fail "openssl is not installed (the TLS tests need it)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
(( node_major >= 20 )) || fail "Node.js $(node --version) is too old: 20 or later"

step "the stepup binary"
# shellcheck source=/dev/null
source "$root/.ci/stepup-bin.sh"
STEPUP_BIN="$(cd "$root" && stepup_bin python3)" || fail "no stepup binary"
export STEPUP_BIN
echo "$STEPUP_BIN"

cd "$here"
step "npm ci"
npm ci --no-audit --no-fund

step "generate (buf + ts-proto, from proto/)"
npm run generate

step "tsc --noEmit"
npm run typecheck

step "build"
npm run build

step "tests against stepup serve"
npm test

printf '\nsdk/typescript: ok in %ss\n' "$((SECONDS - started))"
