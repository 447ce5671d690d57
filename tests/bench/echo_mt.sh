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

. "$HERE/tests/bench/echo_run.sh"   # log, one

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
RAW=$BUILD/echo_mt_raw.tsv
: >"$RAW"
SRV_PIN="" LOAD_PIN=""

log "== echo, several cores: conns {$CONNS}, 64-byte messages, ${DUR}s after ${WARM}s warm-up, $REPS rounds"
all_rounds

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
