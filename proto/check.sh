#!/usr/bin/env bash
# Checks stepup's gRPC contract (proto/stepup; proto/third_party is other
# projects' and is not checked) against Google's API conventions:
#
# 1. `buf lint` with the rules in buf.yaml (buf's STANDARD set, and COMMENTS:
#    every message, field, enum value and method is documented).
# 2. What buf has no rule for (Google's api-linter has; it is a Go tool, and
#    buf is what our registries ship): no unsigned integers (AIP-141), and a
#    google.protobuf.Timestamp is named `time` or `*_time` (AIP-142). Read
#    from the descriptors `buf build` makes, not from the text; run first on
#    a module made to break both rules, which must fail.
# 3. `buf breaking` against the newest `v*` git tag: a released contract is
#    never broken. Until the first release there is no tag, and the script
#    says so and passes: that is not a skipped check, there is no released
#    contract yet that a change could break. From the first `v*` tag on, the
#    check runs on every commit. Outside a git checkout the script fails.
#
# buf is installed from the npm registry (`@bufbuild/buf`, which ships the
# binary) into ${XDG_CACHE_HOME:-~/.cache}/stepup/buf-<version> when it is not
# there; set BUF to use another buf binary. Needs npm (or BUF) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

BUF_VERSION=1.75.0

buf=${BUF:-}
if [[ -z $buf ]]; then
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/stepup/buf-$BUF_VERSION"
  buf="$cache/node_modules/.bin/buf"
  if [[ ! -x $buf ]] || [[ "$("$buf" --version 2>/dev/null)" != "$BUF_VERSION" ]]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "proto/check.sh: buf is not installed and there is no npm to install it with (or set BUF)" >&2
      exit 1
    fi
    echo "installing buf $BUF_VERSION into $cache"
    mkdir -p "$cache"
    npm install --prefix "$cache" --no-audit --no-fund --loglevel=error "@bufbuild/buf@$BUF_VERSION" >/dev/null
  fi
fi
echo "buf $("$buf" --version)"

echo "-- buf lint (buf.yaml)"
"$buf" lint

# Prints each AIP-141/142 violation in the module at $1; fails when there is one.
aip_check() {
  "$buf" build "$1" -o "$image#format=json"
  python3 - "$image" <<'PY'
import json
import sys

UNSIGNED = {"TYPE_UINT32", "TYPE_UINT64", "TYPE_FIXED32", "TYPE_FIXED64"}
problems = []

def fields(file, messages, path, prefix):
    """Every field of `messages` and their nested messages, with its
    source path (FileDescriptorProto: message_type = 4, nested_type = 3,
    field = 2)."""
    for i, m in enumerate(messages):
        mpath = path + (i,)
        name = f"{prefix}.{m['name']}"
        for j, f in enumerate(m.get("field", [])):
            yield f, f"{name}.{f['name']}", mpath + (2, j)
        yield from fields(file, m.get("nestedType", []), mpath + (3,), name)

for file in json.load(open(sys.argv[1]))["file"]:
    if file.get("bufExtension", {}).get("isImport"):
        continue
    lines = {
        tuple(loc.get("path", [])): loc["span"][0] + 1
        for loc in file.get("sourceCodeInfo", {}).get("location", [])
    }
    for f, name, path in fields(file, file.get("messageType", []), (4,), file["package"]):
        at = f"proto/{file['name']}:{lines.get(path, 0)}"
        if f["type"] in UNSIGNED:
            kind = f["type"].removeprefix("TYPE_").lower()
            problems.append(
                f"{at}: `{name}` is a {kind}: no unsigned integers (AIP-141); "
                "use int32, or int64 where values may pass 2^31-1"
            )
        if f.get("typeName") == ".google.protobuf.Timestamp" and not (
            f["name"] == "time" or f["name"].endswith("_time")
        ):
            problems.append(
                f"{at}: Timestamp `{name}` is named neither `time` nor `*_time` (AIP-142)"
            )

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY
}

echo "-- Google API conventions buf has no rule for (AIP-141, AIP-142)"
image=$(mktemp)
selftest=$(mktemp -d)
trap 'rm -rf "$image" "$selftest"' EXIT
# The check checks itself first: a module with one violation of each kind
# must fail with both named (so that a change in buf's JSON cannot make it
# pass everything unseen).
printf 'version: v2\n' >"$selftest/buf.yaml"
cat >"$selftest/bad.proto" <<'PROTO'
syntax = "proto3";
package selftest.v1;
import "google/protobuf/timestamp.proto";
message Bad {
  uint64 count = 1;
  google.protobuf.Timestamp expires = 2;
}
PROTO
if found=$(aip_check "$selftest"); then
  echo "proto/check.sh: the AIP check passed a module with violations:" >&2
  echo "$found" >&2
  exit 1
fi
if [[ $(grep -c -e 'Bad.count. is a uint64' -e 'Bad.expires. is named' <<<"$found") != 2 ]]; then
  echo "proto/check.sh: the AIP check did not name the violations it should:" >&2
  echo "$found" >&2
  exit 1
fi
aip_check .

echo "-- buf breaking against the last release"
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "proto/check.sh: not a git checkout: cannot find the last release to compare with" >&2
  exit 1
fi
tag=$(git tag --list 'v*' --sort=-v:refname | head -n 1)
if [[ -z $tag ]]; then
  echo "no release yet (no \`v*\` git tag): there is no released contract to compare with;"
  echo "buf breaking runs from the first release on"
else
  echo "against $tag"
  "$buf" breaking --against "$(git rev-parse --show-toplevel)#format=git,tag=$tag"
fi
echo "proto: ok"
