#!/usr/bin/env bash
# soak.sh - the echo server under mixed abuse for a bounded time.
#
#   tests/soak.sh ECHO_SERVER SOAK_CLIENT   (WEFT_SOAK_SECONDS, default 60)
#
# Starts examples/echo_server with RLIMIT_NOFILE lowered to 256, warms it
# up and takes its baseline (VmRSS and open descriptors from /proc), runs
# tests/soak_client (good clients verifying every echo beside resetters,
# slowloris, half-open clients and connection storms beyond the server's
# descriptor limit), then checks that
#   - the good clients saw no verification error (soak_client's status),
#   - the server is still alive and answers,
#   - its descriptors return to the baseline and its RSS to within
#     WEFT_SOAK_RSS_SLACK_KB (default 16384) of it (pooled stacks and
#     allocator caches may keep a little);
#   - SIGTERM then stops it cleanly (status 0; in a sanitizer build that
#     includes the leak check at exit).
set -euo pipefail
server=$1 client=$2
secs=${WEFT_SOAK_SECONDS:-60}
slack_kb=${WEFT_SOAK_RSS_SLACK_KB:-16384}
nofile=${WEFT_SOAK_NOFILE:-256}
work=$(mktemp -d)
spid=
cleanup() {
    [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

(ulimit -n "$nofile"; exec "$server" -g 1000 127.0.0.1:0) >"$work/out" 2>"$work/err" &
spid=$!
for _ in $(seq 100); do
    grep -q 'listening on' "$work/out" 2>/dev/null && break
    sleep 0.1
done
addr=$(sed -n 's/.*listening on //p' "$work/out")
[ -n "$addr" ] || { echo "soak: server did not start"; cat "$work/err"; exit 1; }

rss() { awk '/^VmRSS/ {print $2}' "/proc/$spid/status"; }
fds() { ls "/proc/$spid/fd" | wc -l; }

# Warm-up: the first connections allocate the descriptor table, the
# stack pool and the allocator's arenas; the baseline is taken after.
"$client" -d 3 -S 0 "$addr" >/dev/null
sleep 1
base_rss=$(rss) base_fds=$(fds)
echo "soak: server $addr (RLIMIT_NOFILE $nofile), baseline RSS ${base_rss} kB, ${base_fds} fds"

peak_rss=$base_rss peak_fds=$base_fds
( while kill -0 "$spid" 2>/dev/null; do
      echo "$(rss) $(fds)"; sleep 1
  done ) >"$work/samples" 2>/dev/null &
sampler=$!
status=0
"$client" -d "$secs" "$addr" || status=$?
kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
read -r peak_rss peak_fds < <(awk 'BEGIN {r=0; f=0} {if ($1>r) r=$1; if ($2>f) f=$2} END {print r, f}' "$work/samples")

kill -0 "$spid" 2>/dev/null || { echo "soak: the server died"; cat "$work/err"; exit 1; }
[ "$status" -eq 0 ] || { echo "soak: good clients saw errors"; exit 1; }

# Abusers are gone: the server's fibers notice (EOF, RST) and close.
end_fds= end_rss=
for _ in $(seq 30); do
    end_fds=$(fds) end_rss=$(rss)
    [ "$end_fds" -le "$base_fds" ] && break
    sleep 1
done
"$client" -d 1 -S 0 -g 2 "$addr" >/dev/null || { echo "soak: server no longer echoes"; exit 1; }
sleep 1
end_fds=$(fds) end_rss=$(rss)
echo "soak: peak RSS ${peak_rss} kB, ${peak_fds} fds; after: RSS ${end_rss} kB, ${end_fds} fds"
grep -v 'accept: too many open files' "$work/err" | head -5 || true
[ "$end_fds" -le "$base_fds" ] || { echo "soak: descriptors leaked ($base_fds -> $end_fds)"; exit 1; }
[ "$end_rss" -le $((base_rss + slack_kb)) ] ||
    { echo "soak: RSS did not return ($base_rss -> $end_rss kB)"; exit 1; }
kill -TERM "$spid"
sstatus=0
wait "$spid" || sstatus=$?
spid=
[ "$sstatus" -eq 0 ] || { echo "soak: server exited with $sstatus after SIGTERM"; tail -20 "$work/err"; exit 1; }
echo "soak: passed"
