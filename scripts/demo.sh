#!/usr/bin/env bash
# demo.sh - build weft, start the echo server, check it with the client, stop it.
#
# On a fresh Debian 12 it first installs what the build needs (cmake, gcc,
# Boost.Context, pkg-config, Check). Exits non-zero if any step fails.
#   PORT=7007 CONNS=100 MSGS=200 bash scripts/demo.sh
# BUILD=dir uses that build directory (configured here only when it is not
# yet); RUNNER=cmd runs both programs through cmd, e.g. scripts/test.sh's
# arm64 stage: BUILD=build/arm64 RUNNER=qemu-aarch64 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-7007} CONNS=${CONNS:-100} MSGS=${MSGS:-200}
BUILD=${BUILD:-build} RUNNER=${RUNNER:-}

scripts/deps.sh

echo "== building in ./$BUILD"
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target echo_server echo_client

echo "== starting the echo server on 127.0.0.1:$PORT${RUNNER:+ (through $RUNNER)}"
$RUNNER "$BUILD/examples/echo_server" "127.0.0.1:$PORT" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do                       # wait until it accepts connections
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

echo "== self-check: $CONNS connections x $MSGS random messages, every byte verified"
status=0
$RUNNER "$BUILD/examples/echo_client" -c "$CONNS" -n "$MSGS" "127.0.0.1:$PORT" || status=$?

echo "== stopping the server (SIGTERM)"
kill -TERM "$server"
wait "$server" || status=$?
trap - EXIT
[ "$status" -eq 0 ] && echo "== demo OK" || echo "== demo FAILED ($status)"
exit "$status"
