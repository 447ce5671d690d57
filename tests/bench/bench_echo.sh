#!/usr/bin/env bash
# bench_echo.sh - the weft echo server side by side with the peer servers of
# ../shared/bench (hand-written epoll, libuv, Boost.Fiber, State Threads, Go)
# under the same load generator, per the protocol of that folder's README:
# every server pinned to CPU 0 (taskset -c 0), echo_load pinned to CPU 1,
# 64-byte messages, 1, 50 and 1000 connections, a fresh server process per
# measurement, the server order rotated each round, medians over REPS rounds
# and ratios to the read-once epoll server. Then the memory of 10,000 idle
# connections held by the weft server.
#
# Usage: bash tests/bench/bench_echo.sh            (about 6 minutes)
#        REPS=1 DUR=1 bash tests/bench/bench_echo.sh  (smoke run)
# Knobs: PEERS (dir of ../shared/bench; copied to /tmp/weft-peers if not
# writable), BUILD (weft build dir, default /tmp/weft-bench-build), REPS (3),
# DUR (5 s), WARM (0.5 s), CONNS ("1 50 1000"), IDLE (10000), PORT_BASE (21000).
# Output: a Markdown table on stdout; raw RESULT lines in $BUILD/echo_raw.tsv.
set -uo pipefail
HERE=$(cd "$(dirname "$0")/../.." && pwd)
PEERS=${PEERS:-$HERE/../shared/bench}
BUILD=${BUILD:-/tmp/weft-bench-build}
REPS=${REPS:-3} DUR=${DUR:-5} WARM=${WARM:-0.5} CONNS=${CONNS:-"1 50 1000"}
IDLE=${IDLE:-10000} PORT=${PORT_BASE:-21000}

. "$HERE/tests/bench/echo_run.sh"   # log, one

# ---------------------------------------------------------------- build
if [ ! -w "$PEERS" ]; then
    rm -rf /tmp/weft-peers && cp -r "$PEERS" /tmp/weft-peers && chmod -R u+w /tmp/weft-peers
    PEERS=/tmp/weft-peers
fi
log "== building peers in $PEERS/build"
make -s -C "$PEERS" build/echo_load build/echo_epoll build/echo_uv build/echo_st \
    build/echo_bfiber build/echo_go >&2 || { log "peer build failed (see $PEERS/README.md)"; exit 1; }
log "== building weft (Release) in $BUILD"
cmake -S "$HERE" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DWEFT_BUILD_TESTS=OFF >/dev/null &&
    cmake --build "$BUILD" -j2 --target echo_server >&2 || { log "weft build failed"; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SERVERS=("weft" "weft (poll backend)" "epoll ET, read once" "epoll ET, read to EAGAIN"
         "libuv" "boost.fiber" "st (poll)" "go GOMAXPROCS=1")
server_cmd() { # LABEL PORT
    case "$1" in
    "weft") echo "env WEFT_REACTOR=epoll $BUILD/examples/echo_server -q 127.0.0.1:$2" ;;
    "weft (poll backend)") echo "env WEFT_REACTOR=poll $BUILD/examples/echo_server -q 127.0.0.1:$2" ;;
    "epoll ET, read once") echo "$PEERS/build/echo_epoll $2" ;;
    "epoll ET, read to EAGAIN") echo "$PEERS/build/echo_epoll $2 strict" ;;
    "libuv") echo "$PEERS/build/echo_uv $2" ;;
    "boost.fiber") echo "$PEERS/build/echo_bfiber $2" ;;
    "st (poll)") echo "$PEERS/build/echo_st $2 poll" ;;
    "go GOMAXPROCS=1") echo "env GOMAXPROCS=1 $PEERS/build/echo_go $2" ;;
    esac
}
RAW=$BUILD/echo_raw.tsv
: >"$RAW"
SRV_PIN="taskset -c 0" LOAD_PIN="taskset -c 1"

log "== echo: conns {$CONNS}, 64-byte messages, ${DUR}s after ${WARM}s warm-up, $REPS rounds"
all_rounds

# ---------------------------------------------------------------- report
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
print("| server | conns | msg/s (median) | vs epoll read-once | p50 us | p99 us | server CPU % | runs (failed) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for c in conns:
    ref = med(d.get(("epoll ET, read once", c), []), "msg_per_s")
    for s in servers:
        rows = d.get((s, c), [])
        if not rows: continue
        m = med(rows, "msg_per_s")
        bad = sum(1 for r in rows if r.get("bad"))
        print(f"| {s} | {c} | {m:,.0f} | {m/ref:.2f}x | {med(rows,'p50_us'):.1f} | {med(rows,'p99_us'):.1f} | {med(rows,'srv_cpu'):.0f} | {len(rows)} ({bad}) |")
PY

# ---------------------------------------------------------------- idle memory
log "== idle: $IDLE connections held open against the weft server"
PORT=$((PORT + 1))
taskset -c 0 "$BUILD/examples/echo_server" -q "127.0.0.1:$PORT" >/dev/null 2>&1 &
SP=$!
wait_port $PORT || { log "server did not come up"; exit 1; }
python3 - "$SP" "$PORT" "$IDLE" <<'PY'
import socket, sys, time, resource
pid, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
socks, rows = [], []
rows.append((0, rss()))
for target in (n // 4, n // 2, n):
    while len(socks) < target:
        s = socket.create_connection(("127.0.0.1", port)); socks.append(s)
    time.sleep(1.0)
    rows.append((len(socks), rss()))
# all still alive: one echo on a few of them
for s in socks[:: max(1, n // 10)]:
    s.sendall(b"x" * 64); assert s.recv(64) == b"x" * 64
for s in socks: s.close()
time.sleep(1.5)
rows.append(("closed", rss()))
base = rows[0][1]
print(f"\n| idle connections | server RSS (KiB) | per connection (KiB) |")
print("|---:|---:|---:|")
for k, v in rows:
    per = f"{(v - base) / k:.1f}" if isinstance(k, int) and k else "-"
    print(f"| {k} | {v:,} | {per} |")
PY
kill -INT $SP; wait $SP 2>/dev/null; SP=
