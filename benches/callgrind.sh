#!/usr/bin/env bash
# Instructions per gRPC `Decide` call, counted by callgrind: `stepup serve`
# against the floor, exactly and independently of the machine's load.
#
# Each target runs under `valgrind --tool=callgrind` (its user-space
# instructions, all threads, shared libraries included; the kernel is not
# counted) and gets the `Decide` request benches/load.sh sends (a
# payments.refund that policies/ answers with CHALLENGE). The targets:
#   floor      benches/floor_server.rs: tonic answering fixed bytes without
#              decoding, the least a gRPC call can cost
#   cache-on   stepup serve --policies POLICIES                 (cache hits:
#              the same request every call)
#   cache-off  stepup serve --policies POLICIES --cache-size 0
# stepup runs with `--admin off`, `--worker-threads 1` and `--no-watch`
# where it has them: one single-threaded runtime serves, as when load.sh pins
# it to one core, and nothing runs on a clock. (With the watcher on, its
# safety-net poll re-reads and recompiles the policy set every 10 s of wall
# time, several million instructions each time; under callgrind's slowdown
# that would be charged to the calls.)
# A measurement starts the target, checks one call with curl (grpc-status 0
# and, for stepup, the outcome), sends N calls from h2load over one
# connection, one stream at a time (-c1 -m1), stops the server with SIGTERM
# and reads callgrind's total I(N). Per call: (I(N2) - I(N1)) / (N2 - N1),
# so start-up, policy compilation, the first (cache-filling) calls, the
# connection and shutdown cancel out. Each target is measured RUNS times
# (N1 then N2 each time); the table gives the median and the spread
# (max - min over the median) of the per-call figures.
#
# Usage: benches/callgrind.sh [TARGET...]   (default: floor cache-on cache-off)
# Env:   N1 (200), N2 (1200) calls, RUNS (2), PORT (7180),
#        OUT (target/callgrind), POLICIES (policies),
#        LOAD_STEPUP (a stepup executable to measure instead of building one),
#        LOAD_FLOOR (a floor_server executable instead of building one),
#        STEPUP_EXTRA (more `stepup serve` flags, e.g. '--decision-log FILE'),
#        CALLGRIND_EXTRA (more valgrind flags)
# Exit:  0 measured; 1 a server failed to start or stop, a call failed or a
#        tool failed; 2 usage.
# Output: a table on stdout, also in $OUT/summary.txt and $OUT/summary.json;
#        $OUT/<target>.<N>.<run>.* holds the callgrind output (open it with
#        callgrind_annotate or kcachegrind), valgrind's and the server's log
#        and h2load's output.
# Notes: the servers' environment is cleared of STEPUP_* and OTEL_* variables
#        (flags only). The request's session authenticated two minutes before
#        the script started; a cache entry lives 60 s by default, which N2
#        calls under callgrind stay well within.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

N1=${N1:-200}
N2=${N2:-1200}
RUNS=${RUNS:-2}
PORT=${PORT:-7180}
OUT=${OUT:-target/callgrind}
POLICIES=${POLICIES:-policies}
STEPUP_BIN=${LOAD_STEPUP:-target/release/stepup}
FLOOR_BIN=${LOAD_FLOOR:-}
DECIDE_PATH=/stepup.v1.DecisionService/Decide
ALL_TARGETS=(floor cache-on cache-off)

targets=()
for arg in "$@"; do
    case "$arg" in
        floor | cache-on | cache-off) targets+=("$arg") ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "callgrind.sh: unknown argument \`$arg\` (see --help)" >&2
            exit 2
            ;;
    esac
done
((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")
for n in N1 N2 RUNS PORT; do
    if [[ ! ${!n} =~ ^[0-9]+$ ]] || ((${!n} == 0)); then
        echo "callgrind.sh: $n must be a positive whole number, not \`${!n}\`" >&2
        exit 2
    fi
done
if ((N2 <= N1)); then
    echo "callgrind.sh: N2 ($N2) must be larger than N1 ($N1)" >&2
    exit 2
fi

die() {
    echo "callgrind.sh: $*" >&2
    exit 1
}

want() {
    local t
    for t in "${targets[@]}"; do
        [[ $t == "$1" ]] && return 0
    done
    return 1
}
want_stepup() { want cache-on || want cache-off; }

# --- tools -------------------------------------------------------------------

need_apt=()
command -v valgrind > /dev/null || need_apt+=(valgrind)
command -v h2load > /dev/null || need_apt+=(nghttp2-client)
command -v taskset > /dev/null || need_apt+=(util-linux)
command -v curl > /dev/null || need_apt+=(curl)
command -v python3 > /dev/null || need_apt+=(python3)
if ((${#need_apt[@]})); then
    echo "callgrind.sh: installing ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need_apt[@]}" > /dev/null 2>&1 ||
        { apt-get update -q > /dev/null && apt-get install -y -q "${need_apt[@]}" > /dev/null; } ||
        die "cannot install ${need_apt[*]}: install them and run again"
fi
# Server on core 0, h2load on core 1 when there are two (instruction counts
# do not depend on it; it only keeps the run short).
SERVER_TASKSET=(taskset -c 0)
CLIENT_TASKSET=()
(($(nproc) >= 2)) && CLIENT_TASKSET=(taskset -c 1)

# --- build -------------------------------------------------------------------

mkdir -p "$OUT"
if want_stepup && [[ -z "${LOAD_STEPUP:-}" ]]; then
    cargo build --release --quiet --bin stepup || die "\`cargo build --release\` failed"
fi
if want floor && [[ -z $FLOOR_BIN ]]; then
    cargo bench --no-run --quiet --bench floor_server --message-format=json > "$OUT/build.json" ||
        die "\`cargo bench --no-run --bench floor_server\` failed"
    FLOOR_BIN=$(python3 - "$OUT/build.json" << 'EOF'
import json, sys
exe = ""
for line in open(sys.argv[1]):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "floor_server":
        exe = msg.get("executable") or exe
print(exe)
EOF
    )
fi
if want floor; then
    [[ -x "$FLOOR_BIN" ]] || die "no floor_server executable (\`$FLOOR_BIN\`)"
fi

if want_stepup; then
    [[ -x "$STEPUP_BIN" ]] || die "no \`$STEPUP_BIN\` executable"
    help=$("$STEPUP_BIN" serve --help 2>&1) ||
        die "\`$STEPUP_BIN serve --help\` fails: this build has no serve subcommand"
    compgen -G "$POLICIES/*.y*ml" > /dev/null || die "no policy files (*.yaml) in \`$POLICIES\`"
    STEPUP_FLAGS=(--policies "$POLICIES")
    grep -q -- '--admin' <<< "$help" && STEPUP_FLAGS+=(--admin off)
    grep -q -- '--worker-threads' <<< "$help" && STEPUP_FLAGS+=(--worker-threads 1)
    grep -q -- '--no-watch' <<< "$help" && STEPUP_FLAGS+=(--no-watch)
    if [[ -n ${STEPUP_EXTRA:-} ]]; then
        read -r -a extra <<< "$STEPUP_EXTRA"
        STEPUP_FLAGS+=("${extra[@]}")
    fi
fi
CALLGRIND_FLAGS=(--tool=callgrind)
if [[ -n ${CALLGRIND_EXTRA:-} ]]; then
    read -r -a extra <<< "$CALLGRIND_EXTRA"
    CALLGRIND_FLAGS+=("${extra[@]}")
fi

# --- the request -------------------------------------------------------------

# The fixed DecideRequest (a refund policies/ answers CHALLENGE), gRPC-framed:
# see benches/decide_request.py.
BODY="$OUT/decide-request.bin"
python3 benches/decide_request.py "$BODY"

# --- one measurement ---------------------------------------------------------

SERVER_PID=""
stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2> /dev/null || true
        wait "$SERVER_PID" 2> /dev/null || true
        SERVER_PID=""
    fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

port_open() {
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null
}

# check_call NAME URL PREFIX: one gRPC call with curl (h2load reads no
# trailers): grpc-status 0, and for stepup an outcome in the response.
check_call() {
    local name=$1 url=$2 prefix=$3
    curl -sS --http2-prior-knowledge --max-time 60 -D "$prefix.check.headers" \
        -o "$prefix.check.body" -H 'content-type: application/grpc' -H 'te: trailers' \
        --data-binary "@$BODY" "$url" || die "$name: curl could not call Decide"
    python3 - "$name" "$prefix.check.headers" "$prefix.check.body" << 'EOF' || die "$name: the check call failed"
import struct, sys, urllib.parse

name, headers_path, body_path = sys.argv[1:4]
fields = {}
for line in open(headers_path, encoding="latin-1"):
    key, sep, value = line.partition(":")
    if sep:
        fields[key.strip().lower()] = value.strip()
if fields.get("grpc-status") != "0":
    message = urllib.parse.unquote(fields.get("grpc-message", ""))
    sys.exit(f"{name}: Decide failed: grpc-status {fields.get('grpc-status')} {message}".rstrip())
body = open(body_path, "rb").read()
if len(body) < 5 or body[0] != 0:
    sys.exit(f"{name}: no uncompressed gRPC message in the response")
(length,) = struct.unpack(">I", body[1:5])
data = body[5:5 + length]
# DecideResponse.outcome is field 1, a varint: the first bytes, when set.
names = {1: "ALLOW", 2: "CHALLENGE", 3: "DENY"}
outcome = data[1] if len(data) > 1 and data[0] == 0x08 else 0
if outcome not in names:
    sys.exit(f"{name}: response has no outcome")
print(names[outcome])
EOF
}

# h2load_ok FILE N: all N requests succeeded with a 2xx.
h2load_ok() {
    python3 - "$1" "$2" << 'EOF'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
              r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
s = re.search(r"status codes: (\d+) 2xx", text)
if not m or not s:
    sys.exit(f"no h2load summary in {sys.argv[1]}")
if int(m.group(4)) != int(sys.argv[2]) or int(s.group(1)) != int(sys.argv[2]):
    sys.exit(f"{sys.argv[1]}: {m.group(0)}; {s.group(0)}")
EOF
}

# measure NAME N RUN CMD...: runs CMD under callgrind on PORT (CMD gets the
# listen address where `{addr}` stands in it), sends N calls, stops it and
# sets INSTR to callgrind's total instruction count.
measure() {
    local name=$1 n=$2 run=$3
    shift 3
    local addr="127.0.0.1:$PORT" prefix="$OUT/$name.$n.$run" cmd=() arg i outcome
    local url="http://$addr$DECIDE_PATH"
    port_open "$PORT" && die "port $PORT is already in use: set PORT"
    for arg in "$@"; do
        cmd+=("${arg//\{addr\}/$addr}")
    done
    rm -f "$prefix".*
    env $(env | sed -n 's/^\(\(STEPUP\|OTEL\)_[A-Za-z0-9_]*\)=.*/-u \1/p') \
        "${SERVER_TASKSET[@]}" valgrind "${CALLGRIND_FLAGS[@]}" \
        --callgrind-out-file="$prefix.callgrind.out" --log-file="$prefix.valgrind.log" \
        "${cmd[@]}" > "$prefix.server.log" 2>&1 &
    SERVER_PID=$!
    for ((i = 0; ; i++)); do
        if ! kill -0 "$SERVER_PID" 2> /dev/null; then
            wait "$SERVER_PID" 2> /dev/null || true
            SERVER_PID=""
            tail -n 20 "$prefix.server.log" >&2
            die "$name: server exited before listening on $addr (logs: $prefix.*.log)"
        fi
        port_open "$PORT" && break
        ((i < 1200)) || die "$name: server not listening on $addr after 120 s (logs: $prefix.*.log)"
        sleep 0.1
    done
    outcome=$(check_call "$name" "$url" "$prefix")
    if [[ $name != floor ]]; then
        CHECKED[$name]=$outcome
    fi
    "${CLIENT_TASKSET[@]}" h2load -n "$n" -c 1 -m 1 -t 1 \
        -H 'content-type: application/grpc' -H 'te: trailers' -d "$BODY" "$url" \
        > "$prefix.h2load.txt" 2>&1 || die "$name: h2load failed (output: $prefix.h2load.txt)"
    h2load_ok "$prefix.h2load.txt" "$n" || die "$name: failed calls (output: $prefix.h2load.txt)"
    # SIGTERM: stepup shuts down gracefully; floor_server dies of it, and
    # callgrind writes its output either way.
    kill -TERM "$SERVER_PID"
    for ((i = 0; i < 600; i++)); do
        kill -0 "$SERVER_PID" 2> /dev/null || break
        sleep 0.1
    done
    kill -0 "$SERVER_PID" 2> /dev/null && die "$name: still running 60 s after SIGTERM"
    local status=0
    wait "$SERVER_PID" 2> /dev/null || status=$?
    SERVER_PID=""
    # stepup must exit 0 (a clean shutdown); floor_server has no handler and
    # ends with the signal (143), which valgrind reports in its log.
    if ((status != 0)) && ! [[ $name == floor && $status == 143 ]]; then
        die "$name: exit status $status after SIGTERM (logs: $prefix.*.log)"
    fi
    INSTR=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$prefix.callgrind.out" 2> /dev/null | head -n 1)
    [[ -n $INSTR ]] || INSTR=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$prefix.callgrind.out" 2> /dev/null | head -n 1)
    [[ $INSTR =~ ^[0-9]+$ ]] || die "$name: no instruction total in $prefix.callgrind.out (log: $prefix.valgrind.log)"
}

# --- the runs ----------------------------------------------------------------

declare -A FIGURES CHECKED
for name in "${targets[@]}"; do
    case $name in
        floor) cmd=("$FLOOR_BIN" '{addr}') ;;
        cache-on) cmd=("$STEPUP_BIN" serve "${STEPUP_FLAGS[@]}" --listen '{addr}') ;;
        cache-off) cmd=("$STEPUP_BIN" serve "${STEPUP_FLAGS[@]}" --listen '{addr}' --cache-size 0) ;;
    esac
    for ((run = 1; run <= RUNS; run++)); do
        measure "$name" "$N1" "$run" "${cmd[@]}"
        i1=$INSTR
        measure "$name" "$N2" "$run" "${cmd[@]}"
        i2=$INSTR
        FIGURES[$name]+=" $i1:$i2"
        echo "callgrind.sh: $name run $run: I($N1) = $i1, I($N2) = $i2," \
            "$(((i2 - i1) / (N2 - N1))) per call${CHECKED[$name]:+ (${CHECKED[$name]})}" >&2
    done
done

# --- summary -----------------------------------------------------------------

{
    for name in "${targets[@]}"; do
        echo "$name|${FIGURES[$name]}|${CHECKED[$name]:-}"
    done
} > "$OUT/figures.txt"
python3 - "$OUT/figures.txt" "$N1" "$N2" "$OUT/summary.json" "${STEPUP_BIN}" "${FLOOR_BIN}" << 'EOF' | tee "$OUT/summary.txt"
import json, statistics, sys

path, n1, n2, json_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows = {}
for line in open(path):
    name, figures, outcome = line.rstrip("\n").split("|")
    pairs = [tuple(map(int, f.split(":"))) for f in figures.split()]
    per_call = [(i2 - i1) / (n2 - n1) for i1, i2 in pairs]
    median = statistics.median(per_call)
    rows[name] = dict(
        instructions_per_call=round(median), runs=[round(x) for x in per_call],
        spread_pct=round(100 * (max(per_call) - min(per_call)) / median, 2) if median else None,
        fixed_instructions=round(statistics.median(i1 - n1 * (i2 - i1) / (n2 - n1) for i1, i2 in pairs)),
        outcome=outcome or None, totals=[dict(n1=i1, n2=i2) for i1, i2 in pairs],
    )
floor = rows.get("floor", {}).get("instructions_per_call")
fmt = "{:<10} {:>12} {:>7} {:>8}  {}"
print(fmt.format("target", "instr/call", "/floor", "spread", "per run"))
for name, row in rows.items():
    ratio = f"{row['instructions_per_call'] / floor:.2f}" if floor else "-"
    print(fmt.format(name, f"{row['instructions_per_call']:,}", ratio, f"{row['spread_pct']}%",
                     " ".join(f"{x:,}" for x in row["runs"])))
print(f"(I({n2}) - I({n1})) / {n2 - n1} calls, median of {len(next(iter(rows.values()))['runs'])} runs; "
      "user-space instructions of the server process (callgrind Ir)")
with open(json_path, "w") as out:
    json.dump(dict(n1=n1, n2=n2, stepup=sys.argv[5], floor=sys.argv[6], targets=rows), out, indent=2)
EOF
((PIPESTATUS[0] == 0)) || die "could not summarise the figures ($OUT/figures.txt)"
echo "details in $OUT/"
