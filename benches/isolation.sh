#!/usr/bin/env bash
# Isolation: the latency of cheap `Decide` calls at a fixed 1,000 req/s,
# alone and while back-to-back worst-case decisions run beside them.
#
# `stepup serve` (its default worker threads, one per core; the decision
# cache off, so that every call is evaluated) serves policies/ plus
# benches/worst.yaml, the costliest decision the default cost limit admits.
# h2load sends:
#   cheap   the load benchmarks' refund (benches/decide_request.py) at a
#           fixed 1,000 req/s (4 connections x 250 req/s, one stream each)
#           for RATE_DURATION seconds: first alone, then with
#   worst   benches/decide_request.py --worst: WORST_STREAMS connections,
#           each sending one call at a time, back to back, for the whole
#           cheap run;
# and, in both phases, gRPC health checks (grpc.health.v1.Health/Check) at
# 100 req/s on a connection of their own.
# Prints p50, p99 and max of the cheap calls and of the health checks
# (microseconds, from h2load's per-request logs) in both phases, and the
# worst calls' rate and mean time.
#
# Usage: benches/isolation.sh
# Env:   RATE_DURATION (10 s), WORST_STREAMS (1), PORT (7190),
#        OUT (target/isolation), LOAD_STEPUP (a stepup executable to measure
#        instead of building one), STEPUP_EXTRA (more `stepup serve` flags,
#        e.g. '--worker-threads 1', the sidecar on a fraction of a core)
# Exit:  0 measured; 1 a tool or a call failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

RATE_DURATION=${RATE_DURATION:-10}
WORST_STREAMS=${WORST_STREAMS:-1}
PORT=${PORT:-7190}
OUT=${OUT:-target/isolation}
STEPUP_BIN=${LOAD_STEPUP:-target/release/stepup}
URL="http://127.0.0.1:$PORT/stepup.v1.DecisionService/Decide"
HEALTH_URL="http://127.0.0.1:$PORT/grpc.health.v1.Health/Check"
HEADERS=(-H 'content-type: application/grpc' -H 'te: trailers')

die() {
    echo "isolation.sh: $*" >&2
    exit 1
}

for tool in h2load curl python3; do
    command -v "$tool" > /dev/null || die "needs $tool (h2load: apt-get install nghttp2-client)"
done
mkdir -p "$OUT"
if [[ -z "${LOAD_STEPUP:-}" ]]; then
    cargo build --release --quiet --bin stepup || die "\`cargo build --release\` failed"
fi
[[ -x "$STEPUP_BIN" ]] || die "no \`$STEPUP_BIN\` executable"

rm -rf "$OUT/policies"
mkdir -p "$OUT/policies"
cp -r policies/. "$OUT/policies/"
cp benches/worst.yaml "$OUT/policies/"
"$STEPUP_BIN" check --costs --policies "$OUT/policies" | grep 'worst-' > "$OUT/costs.txt" ||
    die "the worst-case policy does not load (see \`$STEPUP_BIN check --policies $OUT/policies\`)"
python3 benches/decide_request.py "$OUT/cheap.bin"
python3 benches/decide_request.py "$OUT/worst.bin" --worst
printf '\0\0\0\0\0' > "$OUT/health.bin" # an empty HealthCheckRequest: the server as a whole

read -r -a extra <<< "${STEPUP_EXTRA:-}"
"$STEPUP_BIN" serve --policies "$OUT/policies" --listen "127.0.0.1:$PORT" --admin off \
    --no-watch --cache-size 0 "${extra[@]}" > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2> /dev/null || true; wait "$SERVER" 2> /dev/null || true' EXIT
for ((i = 0; i < 300; i++)); do
    kill -0 "$SERVER" 2> /dev/null || die "the server exited (log: $OUT/server.log)"
    (exec 3<> "/dev/tcp/127.0.0.1/$PORT") 2> /dev/null && break
    sleep 0.1
done

# One call of each with curl: h2load sees no trailers, so a gRPC error
# would pass for a success.
for body in cheap worst; do
    curl -sS --http2-prior-knowledge --max-time 10 -D "$OUT/$body.headers" -o /dev/null \
        "${HEADERS[@]}" --data-binary "@$OUT/$body.bin" "$URL" || die "$body: curl failed"
    grep -qi '^grpc-status: *0' "$OUT/$body.headers" ||
        die "$body: the call failed: $(grep -i '^grpc-' "$OUT/$body.headers" | tr -d '\r' | tr '\n' ' ')"
done

# phase NAME: the cheap calls at 1,000 req/s and the health checks at 100
# req/s, at once; their logs in $OUT/NAME.log and $OUT/NAME.health.log.
phase() {
    rm -f "$OUT/$1.log" "$OUT/$1.health.log"
    h2load -D "$RATE_DURATION" --warm-up-time 1 -c 1 --rps 100 -m 1 -t 1 \
        --log-file "$OUT/$1.health.log" "${HEADERS[@]}" -d "$OUT/health.bin" "$HEALTH_URL" \
        > "$OUT/$1.health.txt" 2>&1 &
    local health=$!
    h2load -D "$RATE_DURATION" --warm-up-time 1 -c 4 --rps 250 -m 1 -t 1 \
        --log-file "$OUT/$1.log" "${HEADERS[@]}" -d "$OUT/cheap.bin" "$URL" > "$OUT/$1.txt" 2>&1 ||
        die "$1: h2load failed (output: $OUT/$1.txt)"
    wait "$health" || die "$1: h2load failed (output: $OUT/$1.health.txt)"
}

phase alone
h2load -D $((RATE_DURATION + 3)) -c "$WORST_STREAMS" -m 1 -t 1 "${HEADERS[@]}" \
    -d "$OUT/worst.bin" "$URL" > "$OUT/worst.txt" 2>&1 &
WORST=$!
sleep 1
phase beside-worst
wait "$WORST" || die "worst: h2load failed (output: $OUT/worst.txt)"

python3 - "$OUT" "$RATE_DURATION" << 'EOF'
import re, sys
out, duration = sys.argv[1], sys.argv[2]

def latencies(name):
    values, codes = [], set()
    for line in open(f"{out}/{name}.log"):
        cols = line.split("\t")
        if len(cols) >= 3 and cols[1] != "0":
            codes.add(cols[1])
            values.append(int(cols[2]))
    if not values or codes != {"200"}:
        sys.exit(f"{name}: {len(values)} requests logged, status codes {sorted(codes)}")
    values.sort()
    pct = lambda p: values[min(len(values) - 1, int(p / 100 * len(values)))]
    return len(values), pct(50), pct(99), values[-1]

def summary(name):
    text = open(f"{out}/{name}.txt").read()
    if not re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, 0 failed", text):
        sys.exit(f"{name}: failed requests (see {out}/{name}.txt)")
    rate = re.search(r"finished in [^,]*, ([0-9.]+) req/s", text).group(1)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", text).group(1)
    return float(rate), mean

print(f"latency over {duration} s (microseconds):")
print(f"{'':30} {'calls':>7} {'p50':>7} {'p99':>7} {'max':>7}")
for name in ("alone", "beside-worst"):
    for what, log in (("cheap Decide, 1,000/s", name), ("health, 100/s", f"{name}.health")):
        n, p50, p99, top = latencies(log)
        print(f"{what + ', ' + name:30} {n:>7} {p50:>7} {p99:>7} {top:>7}")
rate, mean = summary("worst")
print(f"worst calls: {rate:,.0f} req/s back to back, {mean} each")
print("their conditions (stepup check --costs):")
print(open(f"{out}/costs.txt").read().rstrip())
EOF
