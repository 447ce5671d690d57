#!/usr/bin/env bash
# check_redis.sh - the libweft_hook proof with real parts: start Debian's
# redis-server on a free loopback port in a scratch directory, run
# examples/redis_fanout (1000 fibers on one worker, each using plain
# synchronous hiredis: BLPOP with a 0.5 s timeout) and require the whole
# fan-out to finish in under 2 s (one after another it would take 500 s).
#   check_redis.sh REDIS_FANOUT REPO_ROOT [REDIS_FANOUT_PLAIN LIBWEFT_HOOK]
# With the last two it also runs the hook-less build alone (the sequential
# baseline, printed) and under LD_PRELOAD (must pass the same bound).
# Installs redis-server through scripts/deps.sh when it is missing; exits
# 77 (skipped) only when it cannot be installed.
set -uo pipefail
bin=$1 root=$2 plain=${3:-} hook=${4:-}
fibers=${REDIS_FANOUT_FIBERS:-1000}

if ! command -v redis-server >/dev/null; then
    "$root/scripts/deps.sh" redis-server libhiredis-dev ||
        { echo "SKIP: redis-server cannot be installed"; exit 77; }
fi
dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for try in 1 2 3 4 5; do
    port=$(( 20000 + (RANDOM % 20000) ))
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
        --daemonize no --maxclients 4000 --logfile "$dir/redis.log" &
    pid=$!
    for _ in $(seq 50); do
        redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break 2
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=
done
[ -n "$pid" ] || { echo "FAIL: redis-server did not start"; cat "$dir/redis.log"; exit 1; }
echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on 127.0.0.1:$port"

# The bound proves the requests overlapped: one after another, $fibers
# BLPOPs of 0.5 s take $fibers/2 seconds. 10 s leaves room for a loaded
# machine under ASan (2.2 s was seen there) and is still 50x under serial.
# WEFT_REQUIRE_HOOK=1: a hook the linker dropped aborts at once, loudly.
echo "-- linked with weft::weft_hook (the program names no hooked call itself)"
WEFT_REQUIRE_HOOK=1 "$bin" "$port" "$fibers" 0.5 10.0 || { echo "FAIL: linked"; exit 1; }
if [ -n "$plain" ]; then
    echo "-- without the hook: 4 fibers take turns (the baseline)"
    "$plain" "$port" 4 0.2 || { echo "FAIL: baseline"; exit 1; }
    echo "-- the same binary with LD_PRELOAD=$(basename "$hook")"
    WEFT_REQUIRE_HOOK=1 LD_PRELOAD=$hook "$plain" "$port" "$fibers" 0.5 10.0 ||
        { echo "FAIL: LD_PRELOAD"; exit 1; }
fi
echo "PASS"
