# Sourced by the check scripts that run the stepup binary (helm/check.sh,
# examples/envoy/check.sh): `stepup_bin PYTHON` prints the absolute path of
# the binary to test, or fails (status 2) saying why.
#
# STEPUP_BIN=path/to/stepup picks a binary (it must be executable). Otherwise
# the binary is built from this checkout with `cargo build --locked --bin
# stepup` (a no-op when it is up to date) and the path is the one cargo
# reports for what it built: right wherever CARGO_TARGET_DIR, a
# .cargo/config.toml or `build.target-dir` put it, and never a stale binary
# left in target/ by an earlier build.

stepup_bin() {
  local python="$1"
  if [[ -n "${STEPUP_BIN:-}" ]]; then
    if [[ ! -f "$STEPUP_BIN" || ! -x "$STEPUP_BIN" ]]; then
      echo "FAIL setup: STEPUP_BIN=$STEPUP_BIN is not an executable file" >&2
      return 2
    fi
    (cd "$(dirname "$STEPUP_BIN")" && printf '%s/%s\n' "$(pwd)" "$(basename "$STEPUP_BIN")")
    return 0
  fi
  echo "setup: cargo build --locked --bin stepup" >&2
  local messages
  if ! messages="$(cargo build --locked --bin stepup --message-format=json-render-diagnostics)"; then
    echo "FAIL setup: cargo build --locked --bin stepup (see above)" >&2
    return 2
  fi
  local path
  # The compiler-artifact message of the `stepup` bin target names the
  # executable (also when the build was fresh).
  path="$(printf '%s\n' "$messages" | "$python" -c '
import json, sys
found = ""
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    target = msg.get("target") or {}
    if msg.get("reason") == "compiler-artifact" and target.get("name") == "stepup" \
            and "bin" in target.get("kind", []) and msg.get("executable"):
        found = msg["executable"]
print(found)
')"
  if [[ -z "$path" || ! -x "$path" ]]; then
    echo "FAIL setup: cargo build reported no stepup executable (got '${path}')" >&2
    return 2
  fi
  printf '%s\n' "$path"
}
