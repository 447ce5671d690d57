#!/usr/bin/env bash
# check_echo_shutdown.sh ECHO_SERVER [RUNNER] - the graceful shutdown of
# examples/echo_server (weft_config.shutdown_on_signals and
# weft_rt_shutdown_wait), with one and two workers:
#  1. SIGTERM with an idle connection open: the listener closes at once,
#     the connection gets its grace period (-g 300), is cancelled, and the
#     server exits 0 well within a second;
#  2. SIGINT with a connection that finishes within the grace period: the
#     server waits for it and exits 0 without cancelling anything.
set -u
server=$1
runner=${2:-}       # a cross build's emulator (qemu-aarch64 ...), or nothing
work=$(mktemp -d)
spid=
trap '[ -n "$spid" ] && kill -9 "$spid" 2>/dev/null; rm -rf "$work"' EXIT

fail() { echo "check_echo_shutdown: $*"; cat "$work/err" 2>/dev/null; exit 1; }

start() {   # start WORKERS: runs the server on a free port, sets $port
    # $runner is split into words on purpose: the emulator and its options.
    $runner "$server" -w "$1" -g 300 127.0.0.1:0 >"$work/out" 2>"$work/err" &
    spid=$!
    for _ in $(seq 100); do
        grep -q 'listening on' "$work/out" 2>/dev/null && break
        sleep 0.05
    done
    port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/out")
    [ -n "$port" ] || fail "the server did not start"
}

for workers in 1 2; do
    # 1. SIGTERM, an idle connection outlives the grace period.
    start "$workers"
    exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
    printf 'ping\n' >&3
    read -r -t 5 reply <&3 || fail "no echo"
    [ "$reply" = ping ] || fail "echoed '$reply'"
    t0=$(date +%s%N)
    kill -TERM "$spid"
    wait "$spid"; status=$?; spid=
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    exec 3>&-
    [ "$status" -eq 0 ] || fail "$workers worker(s): exit status $status after SIGTERM"
    grep -q 'cancelled 1 connection' "$work/err" || fail "$workers worker(s): the connection was not cancelled"
    [ "$ms" -ge 250 ] || fail "$workers worker(s): stopped after $ms ms, before the grace period"
    [ "$ms" -lt 3000 ] || fail "$workers worker(s): took $ms ms to stop"

    # 2. SIGINT, the connection ends within the grace period.
    start "$workers"
    exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
    kill -INT "$spid"
    sleep 0.1
    exec 3>&-           # the client leaves; the server needs no cancel
    wait "$spid"; status=$?; spid=
    [ "$status" -eq 0 ] || fail "$workers worker(s): exit status $status after SIGINT"
    grep -q 'cancelled' "$work/err" && fail "$workers worker(s): cancelled a connection that ended in time"
    grep -q 'stopped' "$work/err" || fail "$workers worker(s): no clean stop"
done
echo "check_echo_shutdown: ok"
