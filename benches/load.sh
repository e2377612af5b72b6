#!/usr/bin/env bash
# Load benchmark: `stepup serve` against the floor for a gRPC call.
#
# Servers run pinned to core 0 (taskset); h2load drives them from core 1 with
# one fixed `Decide` request (a payments.refund that policies/ answers with
# CHALLENGE). The targets, each on its own port:
#   floor      benches/floor_server.rs: tonic answering fixed bytes without
#              decoding, the most a gRPC call can do on this machine (PORT)
#   cache-on   stepup serve --policies POLICIES                 (PORT + 1)
#   cache-off  stepup serve --policies POLICIES --cache-size 0  (PORT + 2)
# and with LOG_DIR set, in the same rounds (issue 6: logging on is at least
# LOG_TARGET_RATIO of logging off, measured at the same moment):
#   cache-on+log   cache-on with --decision-log LOG_DIR/cache-on.jsonl  (PORT + 3)
#   cache-off+log  cache-off with --decision-log LOG_DIR/cache-off.jsonl (PORT + 4)
# (with `--admin off` where stepup has an admin listener).
# Peak req/s: rounds of DURATION seconds of h2load (16 connections x 32
# streams) against each target in turn, interleaved so that a noisy neighbour
# hits all targets alike; a round in which other processes used more than
# OTHER_MAX% of a core is repeated (up to 2 x RUNS rounds in all). A target's
# figure is the median of RUNS rounds, its ratio the median of its per-round
# ratios to the floor. Then p50/p99 latency at a
# fixed 1,000 req/s (4 connections x 250 req/s, RATE_DURATION seconds).
# Target: Decide reaches TARGET_RATIO (50%) of the floor's req/s, cache on and
# off. Before any load, one call per target with curl checks grpc-status 0 and
# the outcome, which h2load cannot see (it reads no trailers).
#
# Usage: benches/load.sh [--floor-only]
# Env:   RUNS (3), DURATION (5 s), RATE_DURATION (10 s), PORT (7170),
#        OUT (target/load), POLICIES (policies), TARGET_RATIO (0.5),
#        QUIET_WAIT (0 s: how long to wait for an idle machine before starting),
#        OTHER_MAX (20: % of a core other processes may use in a counted run),
#        LOAD_STEPUP (a stepup executable to measure instead of building one),
#        LOG_DIR (adds the +log targets, writing their logs there),
#        LOG_TARGET_RATIO (0.8: a +log target's req/s over its target's),
#        STEPUP_EXTRA (more `stepup serve` flags, e.g. '--decision-log FILE')
# Exit:  0 target met; 1 a server failed to start, a call failed or a tool
#        failed; 2 usage; 3 every call succeeded but Decide missed the target.
# Output: a table on stdout, also in $OUT/summary.txt and $OUT/summary.json;
#        $OUT/<target>.* holds h2load's output and logs and the server's log.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
RATE_DURATION=${RATE_DURATION:-10}
PORT=${PORT:-7170}
OUT=${OUT:-target/load}
POLICIES=${POLICIES:-policies}
TARGET_RATIO=${TARGET_RATIO:-0.5}
LOG_DIR=${LOG_DIR:-}
LOG_TARGET_RATIO=${LOG_TARGET_RATIO:-0.8}
QUIET_WAIT=${QUIET_WAIT:-0}
OTHER_MAX=${OTHER_MAX:-20}
STEPUP_BIN=${LOAD_STEPUP:-target/release/stepup}
SERVER_CPU=0
CLIENT_CPU=1
DECIDE_PATH=/stepup.v1.DecisionService/Decide

floor_only=0
for arg in "$@"; do
    case "$arg" in
        --floor-only) floor_only=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "load.sh: unknown argument \`$arg\` (see --help)" >&2
            exit 2
            ;;
    esac
done
for n in RUNS DURATION RATE_DURATION PORT QUIET_WAIT OTHER_MAX; do
    if [[ ! ${!n} =~ ^[0-9]+$ ]] || { [[ $n != QUIET_WAIT && $n != OTHER_MAX ]] && ((${!n} == 0)); }; then
        echo "load.sh: $n must be a positive whole number, not \`${!n}\`" >&2
        exit 2
    fi
done

die() {
    echo "load.sh: $*" >&2
    exit 1
}

# --- tools -------------------------------------------------------------------

need_apt=()
command -v h2load > /dev/null || need_apt+=(nghttp2-client)
command -v taskset > /dev/null || need_apt+=(util-linux)
command -v curl > /dev/null || need_apt+=(curl)
command -v python3 > /dev/null || need_apt+=(python3)
if ((${#need_apt[@]})); then
    echo "load.sh: installing ${need_apt[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need_apt[@]}" > /dev/null 2>&1 ||
        { apt-get update -q > /dev/null && apt-get install -y -q "${need_apt[@]}" > /dev/null; } ||
        die "cannot install ${need_apt[*]}: install them and run again"
fi
(($(nproc) >= 2)) || die "needs 2 cores (servers on core 0, h2load on core 1); this machine has $(nproc)"

# --- build -------------------------------------------------------------------

mkdir -p "$OUT"
if ((!floor_only)) && [[ -z "${LOAD_STEPUP:-}" ]]; then
    cargo build --release --quiet --bin stepup || die "\`cargo build --release\` failed"
fi
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
[[ -x "$FLOOR_BIN" ]] || die "no floor_server executable in cargo's output ($OUT/build.json)"

if ((!floor_only)); then
    [[ -x "$STEPUP_BIN" ]] || die "no \`$STEPUP_BIN\` executable"
    "$STEPUP_BIN" serve --help > /dev/null 2>&1 ||
        die "\`$STEPUP_BIN serve --help\` fails: this build has no serve subcommand (use --floor-only)"
    compgen -G "$POLICIES/*.y*ml" > /dev/null || die "no policy files (*.yaml) in \`$POLICIES\`"
    # Two instances run at once: neither may take the default admin port.
    STEPUP_FLAGS=(--policies "$POLICIES")
    if "$STEPUP_BIN" serve --help 2> /dev/null | grep -q -- '--admin'; then
        STEPUP_FLAGS+=(--admin off)
    fi
    # More flags for both stepup targets, e.g. STEPUP_EXTRA='--decision-log /tmp/d.jsonl'.
    if [[ -n ${STEPUP_EXTRA:-} ]]; then
        read -r -a extra <<< "$STEPUP_EXTRA"
        STEPUP_FLAGS+=("${extra[@]}")
    fi
fi

# --- the request -------------------------------------------------------------

# The fixed DecideRequest (a refund policies/ answers CHALLENGE), gRPC-framed:
# see benches/decide_request.py.
BODY="$OUT/decide-request.bin"
python3 benches/decide_request.py "$BODY"

# --- the machine -------------------------------------------------------------

# The two cores are shared: wait up to QUIET_WAIT seconds for the machine to
# settle, and say so when something else is using it, since the figures are
# then low and noisy.
busy_now() {
    python3 -c '
import time
def sample():
    with open("/proc/stat") as stat:
        v = list(map(int, stat.readline().split()[1:]))
    return sum(v), v[3] + v[4]
t0, i0 = sample(); time.sleep(1); t1, i1 = sample()
print(round(100 * (1 - (i1 - i0) / max(1, t1 - t0))))
'
}
busy_pct=$(busy_now)
waited=0
while ((busy_pct > 10 && waited < QUIET_WAIT)); do
    sleep 4
    waited=$((waited + 5))
    busy_pct=$(busy_now)
done
if ((busy_pct > 10)); then
    echo "load.sh: warning: the machine is ${busy_pct}% busy before the load starts; figures will be low" >&2
    ps -eo pcpu=,comm= --sort=-pcpu | head -n 3 | sed 's/^/load.sh:   /' >&2
fi

# --- servers -----------------------------------------------------------------

declare -A SERVER_PID SERVER_URL
stop_servers() {
    local name
    for name in "${!SERVER_PID[@]}"; do
        kill "${SERVER_PID[$name]}" 2> /dev/null || true
        wait "${SERVER_PID[$name]}" 2> /dev/null || true
    done
    SERVER_PID=()
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

port_open() {
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null
}

# start_server NAME PORT CMD...: starts CMD on the server core and waits up to
# 30 s for it to listen on PORT. CMD gets the listen address where `{addr}`
# stands in it.
start_server() {
    local name=$1 port=$2
    shift 2
    local addr="127.0.0.1:$port" log="$OUT/$name.server.log" cmd=() arg i pid
    port_open "$port" && die "port $port is already in use: set PORT"
    for arg in "$@"; do
        cmd+=("${arg//\{addr\}/$addr}")
    done
    taskset -c "$SERVER_CPU" "${cmd[@]}" > "$log" 2>&1 &
    pid=$!
    SERVER_PID[$name]=$pid
    SERVER_URL[$name]="http://$addr$DECIDE_PATH"
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$pid" 2> /dev/null; then
            unset "SERVER_PID[$name]"
            tail -n 20 "$log" >&2
            die "$name: server exited before listening on $addr (log: $log)"
        fi
        port_open "$port" && return 0
        sleep 0.1
    done
    die "$name: server not listening on $addr after 30 s (log: $log)"
}

# check_call NAME: one real gRPC call with curl, since h2load sees no trailers
# (a gRPC error is still HTTP 200): grpc-status must be 0 and the response a
# DecideResponse with an outcome.
check_call() {
    local name=$1
    curl -sS --http2-prior-knowledge --max-time 10 -D "$OUT/$name.check.headers" \
        -o "$OUT/$name.check.body" \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        --data-binary "@$BODY" "${SERVER_URL[$name]}" ||
        die "$name: curl could not call Decide"
    python3 - "$name" "$OUT/$name.check.headers" "$OUT/$name.check.body" << 'EOF' ||
import struct, sys, urllib.parse

name, headers_path, body_path = sys.argv[1:4]
fields = {}
for line in open(headers_path, encoding="latin-1"):
    key, sep, value = line.partition(":")
    if sep:
        fields[key.strip().lower()] = value.strip()
status = fields.get("grpc-status")
if status != "0":
    message = urllib.parse.unquote(fields.get("grpc-message", ""))
    sys.exit(f"{name}: Decide failed: grpc-status {status} {message}".rstrip())

body = open(body_path, "rb").read()
if len(body) < 5 or body[0] != 0:
    sys.exit(f"{name}: no uncompressed gRPC message in the response")
(length,) = struct.unpack(">I", body[1:5])
data = body[5:5 + length]

def varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return n, i

def fields_of(buf):
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            size, i = varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, value

outcome, reasons, errors, signals = 0, [], [], []
score, revision, decision_id = 0, "", ""
for number, value in fields_of(data):
    if number == 1:
        outcome = value
    elif number == 6:
        for n, v in fields_of(value):
            if n == 1:
                score = v
            elif n == 2:
                signals.append(v.decode())
    elif number == 7:
        reasons.append(dict(fields_of(value)).get(1, b"").decode())
    elif number == 8:
        entry = dict(fields_of(value))
        errors.append(f"{entry.get(1, b'').decode()}: {entry.get(2, b'').decode()}")
    elif number == 9:
        decision_id = value.decode()
    elif number == 10:
        revision = value.decode()
names = {1: "ALLOW", 2: "CHALLENGE", 3: "DENY"}
if outcome not in names:
    sys.exit(f"{name}: response has no outcome (outcome {outcome})")
print(f"{name}: Decide -> {names[outcome]}, risk {score} {signals}, reasons {reasons}, "
      f"decision_id {decision_id or '-'}, revision {revision[:20] or '-'}")
for error in errors:
    print(f"{name}: warning: rule error in the response: {error}", file=sys.stderr)
EOF
        die "$name: the check call failed"
}

# --- load --------------------------------------------------------------------

H2LOAD_HEADERS=(-H 'content-type: application/grpc' -H 'te: trailers')
HZ=$(getconf CLK_TCK)

# h2load_ok FILE: every request done succeeded with a 2xx.
h2load_ok() {
    python3 - "$1" << 'EOF'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
              r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
if not m or not s:
    sys.exit(f"no h2load summary in {sys.argv[1]}")
done, ok, failed, errored, timeout = map(int, m.groups()[2:])
if done == 0 or failed or errored or timeout or sum(map(int, s.groups()[1:])):
    sys.exit(f"{sys.argv[1]}: {m.group(0)}; {s.group(0)}")
EOF
}

# cpu_ticks PID: user + system CPU time of a process, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# machine_ticks: non-idle CPU time of the whole machine (user, nice, system,
# irq, softirq, steal), in clock ticks.
machine_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

# h2load_run NAME OUT ARGS...: runs h2load against NAME from the client core,
# checks that every request succeeded, and sets SERVER_PCT, CLIENT_PCT and
# OTHER_PCT: the CPU that the server, h2load and everything else used during
# the run, in percent of one core. A server well under 100% at peak means
# something else set the pace; OTHER_PCT above a few percent means a noisy
# neighbour.
h2load_run() {
    local name=$1 out=$2
    shift 2
    local pid=${SERVER_PID[$name]} server0 machine0 server1 machine1 real user sys
    server0=$(cpu_ticks "$pid")
    machine0=$(machine_ticks)
    { TIMEFORMAT='%R %U %S' && time taskset -c "$CLIENT_CPU" h2load "$@" \
        "${H2LOAD_HEADERS[@]}" -d "$BODY" "${SERVER_URL[$name]}" > "$out" 2>&1; } 2> "$out.time" ||
        die "$name: h2load failed (output: $out)"
    server1=$(cpu_ticks "$pid")
    machine1=$(machine_ticks)
    h2load_ok "$out" || die "$name: failed requests under load (output: $out)"
    read -r real user sys < "$out.time"
    read -r SERVER_PCT CLIENT_PCT OTHER_PCT < <(awk -v hz="$HZ" -v real="$real" \
        -v server=$((server1 - server0)) -v machine=$((machine1 - machine0)) -v user="$user" -v sys="$sys" \
        'BEGIN {
            s = 100 * server / hz / real; c = 100 * (user + sys) / real
            o = 100 * machine / hz / real - s - c
            printf "%.0f %.0f %.0f\n", s, c, (o < 0 ? 0 : o)
        }')
}

# peak NAME ROUND: one peak run; appends to the target's lists.
declare -A RATES SERVER_CPUS CLIENT_CPUS OTHER_CPUS
peak() {
    local name=$1 round=$2
    local out="$OUT/$name.peak.$round.txt"
    h2load_run "$name" "$out" -D "$DURATION" --warm-up-time 1 -c 16 -m 32 -t 1
    RATES[$name]+=" $(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$out")"
    SERVER_CPUS[$name]+=" $SERVER_PCT"
    CLIENT_CPUS[$name]+=" $CLIENT_PCT"
    OTHER_CPUS[$name]+=" $OTHER_PCT"
}

# latency NAME: p50 and p99 (microseconds, from h2load's per-request log) at
# a fixed 1,000 req/s: 4 connections x 250 req/s, one stream each.
declare -A P50 P99 RATE OTHER_RATE
latency() {
    local name=$1
    local out="$OUT/$name.rate.txt" log="$OUT/$name.rate.log"
    rm -f "$log"
    h2load_run "$name" "$out" -D "$RATE_DURATION" --warm-up-time 1 -c 4 --rps 250 -m 1 -t 1 \
        --log-file "$log"
    OTHER_RATE[$name]=$OTHER_PCT
    read -r "P50[$name]" "P99[$name]" "RATE[$name]" < <(python3 - "$log" "$out" << 'EOF'
import re, sys
latencies, codes, unfinished = [], set(), 0
for line in open(sys.argv[1]):
    cols = line.split("\t")
    if len(cols) < 3:
        continue
    # Status 0: a request of the warm-up that ended in the measured period
    # (at most one per connection); h2load's own counts say it succeeded.
    if cols[1] == "0":
        unfinished += 1
        continue
    codes.add(cols[1])
    latencies.append(int(cols[2]))
if not latencies or codes != {"200"} or unfinished > 4:
    sys.exit(f"{sys.argv[1]}: {len(latencies)} requests logged, status codes {sorted(codes)}, "
             f"{unfinished} without a status")
latencies.sort()
def pct(p):
    return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]
rate = re.search(r"finished in [^,]*, ([0-9.]+) req/s", open(sys.argv[2]).read())
print(pct(50), pct(99), round(float(rate.group(1))) if rate else 0)
EOF
    ) || die "$name: no latency figures"
}

targets=(floor)
start_server floor "$PORT" "$FLOOR_BIN" '{addr}'
if ((!floor_only)); then
    targets+=(cache-on cache-off)
    start_server cache-on $((PORT + 1)) "$STEPUP_BIN" serve "${STEPUP_FLAGS[@]}" --listen '{addr}'
    start_server cache-off $((PORT + 2)) "$STEPUP_BIN" serve "${STEPUP_FLAGS[@]}" --listen '{addr}' --cache-size 0
    if [[ -n $LOG_DIR ]]; then
        mkdir -p "$LOG_DIR" || die "cannot make LOG_DIR \`$LOG_DIR\`"
        rm -f "$LOG_DIR"/cache-on.jsonl* "$LOG_DIR"/cache-off.jsonl*
        targets+=(cache-on+log cache-off+log)
        start_server cache-on+log $((PORT + 3)) "$STEPUP_BIN" serve "${STEPUP_FLAGS[@]}" --listen '{addr}' \
            --decision-log "$LOG_DIR/cache-on.jsonl"
        start_server cache-off+log $((PORT + 4)) "$STEPUP_BIN" serve "${STEPUP_FLAGS[@]}" --listen '{addr}' \
            --cache-size 0 --decision-log "$LOG_DIR/cache-off.jsonl"
    fi
fi
for name in "${targets[@]}"; do
    check_call "$name"
done
# Rounds until RUNS of them ran undisturbed (other CPU at most OTHER_MAX% in
# every run), at most 2 x RUNS rounds; if none did, all of them count.
round=0
clean_rounds=""
clean=0
while ((clean < RUNS && round < 2 * RUNS)); do
    round=$((round + 1))
    worst=0
    for name in "${targets[@]}"; do
        peak "$name" "$round"
        ((OTHER_PCT > worst)) && worst=$OTHER_PCT
    done
    if ((worst <= OTHER_MAX)); then
        clean_rounds+=" $round"
        clean=$((clean + 1))
    else
        echo "load.sh: round $round disturbed (other processes used ${worst}% CPU): not counted" >&2
    fi
done
((clean > 0)) || clean_rounds=" $(seq -s ' ' 1 "$round")"
for name in "${targets[@]}"; do
    for ((try = 1; try <= 3; try++)); do
        latency "$name"
        ((OTHER_RATE[$name] <= OTHER_MAX)) && break
        echo "load.sh: $name: the 1,000 req/s run was disturbed (other processes used ${OTHER_RATE[$name]}% CPU)" >&2
    done
done
stop_servers

# --- summary -----------------------------------------------------------------

# Per target: median peak, median of the per-round ratios to the floor, mean
# CPU figures, then the fixed-rate figures; a verdict line per target.
{
    for name in "${targets[@]}"; do
        echo "$name|${RATES[$name]}|${SERVER_CPUS[$name]}|${CLIENT_CPUS[$name]}|${OTHER_CPUS[$name]}|${P50[$name]}|${P99[$name]}|${RATE[$name]}|${OTHER_RATE[$name]}"
    done
} > "$OUT/figures.txt"
set +e
python3 - "$OUT/figures.txt" "$TARGET_RATIO" "$OUT/summary.json" "$busy_pct" "$OTHER_MAX" "$clean_rounds" "$LOG_TARGET_RATIO" \
    << 'EOF' | tee "$OUT/summary.txt"
import json, statistics, sys

path, target, json_path, busy, other_max = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
log_target = float(sys.argv[7])
counted = [int(r) - 1 for r in sys.argv[6].split()]
rows = {}
for line in open(path):
    name, rates, server, client, other, p50, p99, rate, other_rate = line.rstrip("\n").split("|")
    def runs(text):
        values = [float(x) for x in text.split()]
        return [values[i] for i in counted]
    rows[name] = dict(
        rates=runs(rates), server=runs(server), client=runs(client), other=runs(other),
        p50_us=int(p50), p99_us=int(p99), fixed_rate_rps=int(rate), fixed_rate_other_cpu_pct=int(other_rate),
    )
floor = rows["floor"]["rates"]
fmt = "{:<13} {:>10} {:>6} {:>7} {:>7} {:>7}   {:>7} {:>7} {:>8} {:>7}  {}"
print(fmt.format("", "peak", "", "server", "h2load", "other", "p50", "p99", "at", "other", ""))
print(fmt.format("target", "req/s", "/floor", "CPU %", "CPU %", "CPU %", "us", "us", "req/s", "CPU %", "verdict"))
missed, noisy, summary = False, False, {}
for name, row in rows.items():
    ratio = statistics.median(r / f for r, f in zip(row["rates"], floor))
    verdict = ""
    if name.endswith("+log"):
        # Against the same server without the log, round by round.
        base = rows[name[: -len("+log")]]["rates"]
        of_base = statistics.median(r / b for r, b in zip(row["rates"], base))
        verdict = (f"{of_base:.2f} of logging off: "
                   + ("ok" if of_base >= log_target else "MISSED") + f" (target {log_target})")
        missed |= of_base < log_target
        row["of_no_log"] = of_base
    elif name != "floor":
        verdict = f"ok (>= {target})" if ratio >= target else f"MISSED (< {target})"
        missed |= ratio < target
    other = statistics.mean(row["other"])
    noisy |= other > other_max or row["fixed_rate_other_cpu_pct"] > other_max
    summary[name] = dict(
        peak_rps=round(statistics.median(row["rates"])), ratio_to_floor=round(ratio, 3),
        peak_rps_runs=row["rates"], server_cpu_pct=round(statistics.mean(row["server"])),
        h2load_cpu_pct=round(statistics.mean(row["client"])), other_cpu_pct=round(other),
        p50_us=row["p50_us"], p99_us=row["p99_us"], fixed_rate_rps=row["fixed_rate_rps"],
        fixed_rate_other_cpu_pct=row["fixed_rate_other_cpu_pct"],
    )
    if "of_no_log" in row:
        summary[name]["ratio_to_no_log"] = round(row["of_no_log"], 3)
    s = summary[name]
    print(fmt.format(name, s["peak_rps"], f"{ratio:.2f}", s["server_cpu_pct"], s["h2load_cpu_pct"],
                     s["other_cpu_pct"], s["p50_us"], s["p99_us"], s["fixed_rate_rps"],
                     s["fixed_rate_other_cpu_pct"], verdict))
with open(json_path, "w") as out:
    json.dump(dict(target_ratio=target, busy_before_pct=busy, rounds_counted=[i + 1 for i in counted],
                   targets=summary), out, indent=2)
if noisy:
    print("warning: other processes used the CPU during the runs (`other` columns): "
          "the figures are disturbed", file=sys.stderr)
sys.exit(3 if missed else 0)
EOF
status=${PIPESTATUS[0]}
set -e
echo "servers on core $SERVER_CPU, h2load on core $CLIENT_CPU; peak: median of rounds$clean_rounds (${DURATION}s each); details in $OUT/"
case $status in
    0) ;;
    3)
        echo "load.sh: Decide is below $TARGET_RATIO of the floor's req/s" >&2
        exit 3
        ;;
    *) die "could not summarise the figures ($OUT/figures.txt)" ;;
esac
