#!/usr/bin/env bash
# echo_mt.sh - the weft echo server with two workers against the multi-core
# peers, under ../shared/bench's load generator: Go with GOMAXPROCS=2 and
# the hand-written epoll server run as two SO_REUSEPORT processes
# (peers/echo_epoll_reuseport.c), with weft on one worker and the
# single-process epoll server for reference. Nothing is pinned: servers and
# the load generator share the machine's cores, as a multi-core server's
# deployment would. 64-byte messages, a fresh server per measurement, the
# order rotated each round, medians over REPS rounds; throughput, latency,
# and the server's CPU time per message (its own processes only).
#
# Usage: bash tests/bench/echo_mt.sh                (about 4 minutes)
#        REPS=1 DUR=1 bash tests/bench/echo_mt.sh   (smoke run)
# Knobs: PEERS (dir of ../shared/bench; copied to /tmp/weft-peers if not
# writable), BUILD (weft build dir, default /tmp/weft-bench-build), REPS (3),
# DUR (5 s), WARM (0.5 s), CONNS ("50 1000"), PORT_BASE (23000).
# Output: a Markdown table on stdout; raw RESULT lines in $BUILD/echo_mt_raw.tsv.
set -uo pipefail
HERE=$(cd "$(dirname "$0")/../.." && pwd)
PEERS=${PEERS:-$HERE/../shared/bench}
BUILD=${BUILD:-/tmp/weft-bench-build}
REPS=${REPS:-3} DUR=${DUR:-5} WARM=${WARM:-0.5} CONNS=${CONNS:-"50 1000"}
PORT=${PORT_BASE:-23000}
log() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- build
if [ ! -w "$PEERS" ]; then
    rm -rf /tmp/weft-peers && cp -r "$PEERS" /tmp/weft-peers && chmod -R u+w /tmp/weft-peers
    PEERS=/tmp/weft-peers
fi
log "== building peers in $PEERS/build"
make -s -C "$PEERS" build/echo_load build/echo_epoll build/echo_go >&2 ||
    { log "peer build failed (see $PEERS/README.md)"; exit 1; }
REUSE=$BUILD/echo_epoll_reuseport
log "== building weft (Release) in $BUILD"
cmake -S "$HERE" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DWEFT_BUILD_TESTS=OFF >/dev/null &&
    cmake --build "$BUILD" -j2 --target echo_server >&2 &&
    cc -O2 -o "$REUSE" "$HERE/tests/bench/peers/echo_epoll_reuseport.c" ||
    { log "build failed"; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SERVERS=("weft, 2 workers" "go GOMAXPROCS=2" "epoll x2, SO_REUSEPORT" "weft, 1 worker" "epoll, 1 process")
server_cmd() { # LABEL PORT
    case "$1" in
    "weft, 2 workers") echo "$BUILD/examples/echo_server -q -w 2 127.0.0.1:$2" ;;
    "weft, 1 worker") echo "$BUILD/examples/echo_server -q -w 1 127.0.0.1:$2" ;;
    "go GOMAXPROCS=2") echo "env GOMAXPROCS=2 $PEERS/build/echo_go $2" ;;
    "epoll x2, SO_REUSEPORT") echo "$REUSE $2 2" ;;
    "epoll, 1 process") echo "$PEERS/build/echo_epoll $2" ;;
    esac
}
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# CPU ticks of a server: the process and its children (the SO_REUSEPORT
# server forks; env execs in place).
ticks() {
    local t=0 p
    for p in "$1" $(pgrep -P "$1"); do
        t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo $t
}
TCK=$(getconf CLK_TCK)
RAW=$BUILD/echo_mt_raw.tsv
: >"$RAW"
SP=
trap '[ -n "$SP" ] && kill $SP 2>/dev/null' EXIT

one() { # LABEL CONNS REP
    PORT=$((PORT + 1))
    $(server_cmd "$1" $PORT) >/dev/null 2>&1 &
    SP=$!
    if ! wait_port $PORT; then log "  $1: server did not come up"; kill $SP; SP=; return; fi
    "$PEERS/build/echo_load" -q -p $PORT -c "$2" -d "$DUR" -w "$WARM" >"$BUILD/load.out" &
    local lp=$! a b
    sleep "$WARM"; a=$(ticks $SP); sleep "$DUR"; b=$(ticks $SP)
    wait $lp; local rc=$?
    local res; res=$(grep '^RESULT' "$BUILD/load.out" | tail -1)
    local cpu; cpu=$(awk -v a="$a" -v b="$b" -v t="$TCK" -v d="$DUR" 'BEGIN{printf "%.0f", 100*(b-a)/t/d}')
    printf '%s\t%s\t%s\t%s\tsrv_cpu=%s %s\n' "$1" "$2" "$3" "$rc" "$cpu" "$res" >>"$RAW"
    log "$(printf '  rep%s %-24s c=%-5s rc=%s srv_cpu=%3s%% %s' "$3" "$1" "$2" "$rc" "$cpu" "$(cut -c8-110 <<<"$res")")"
    kill $SP 2>/dev/null; wait $SP 2>/dev/null; SP=
}

log "== echo, several cores: conns {$CONNS}, 64-byte messages, ${DUR}s after ${WARM}s warm-up, $REPS rounds"
NS=${#SERVERS[@]}
rot=0
for rep in $(seq "$REPS"); do
    for c in $CONNS; do
        for k in $(seq 0 $((NS - 1))); do one "${SERVERS[$(((k + rot) % NS))]}" "$c" "$rep"; done
        rot=$((rot + 1))
    done
done

python3 - "$RAW" "$CONNS" "${SERVERS[@]}" <<'PY'
import sys, statistics as st
raw, conns, servers = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
d = {}
for line in open(raw):
    label, c, rep, rc, rest = line.rstrip("\n").split("\t")
    kv = dict(x.split("=", 1) for x in rest.split() if "=" in x)
    if rc != "0" or "msg_per_s" not in kv:
        kv = {"msg_per_s": "nan", "p50_us": "nan", "p99_us": "nan", "srv_cpu": "nan", "bad": "1"}
    d.setdefault((label, c), []).append(kv)
def med(rows, k):
    v = [float(r[k]) for r in rows if r.get(k) not in (None, "nan")]
    return st.median(v) if v else float("nan")
def cpu_us(rows):  # server CPU time per message, from each run's own figures
    v = [10000 * float(r["srv_cpu"]) / float(r["msg_per_s"]) for r in rows
         if r.get("srv_cpu") not in (None, "nan") and r.get("msg_per_s") not in (None, "nan", "0")]
    return st.median(v) if v else float("nan")
print("| server | conns | msg/s (median) | vs Go | vs epoll x2 | p50 us | p99 us | server CPU % | CPU us/msg | runs (failed) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in conns:
    go = med(d.get(("go GOMAXPROCS=2", c), []), "msg_per_s")
    ep = med(d.get(("epoll x2, SO_REUSEPORT", c), []), "msg_per_s")
    for s in servers:
        rows = d.get((s, c), [])
        if not rows: continue
        m = med(rows, "msg_per_s")
        bad = sum(1 for r in rows if r.get("bad"))
        print(f"| {s} | {c} | {m:,.0f} | {m/go:.2f}x | {m/ep:.2f}x | {med(rows,'p50_us'):.1f} | "
              f"{med(rows,'p99_us'):.1f} | {med(rows,'srv_cpu'):.0f} | {cpu_us(rows):.1f} | {len(rows)} ({bad}) |")
PY
