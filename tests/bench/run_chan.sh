#!/usr/bin/env bash
# run_chan.sh - channel ping-pong of weft beside Go channels and Boost.Fiber
# buffered_channel from ../shared/bench, in one run, pinned to CPU 0.
# Rounds alternate weft and the peers so drifts of the machine hit all
# alike; prints a Markdown table of medians (ns per message) and ratios.
#
# usage: tests/bench/run_chan.sh [BUILD_DIR]      (default: ./build)
# knobs: REPS (5) N (10000000) PEERS (path to shared/bench, default ../shared/bench)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
REPS=${REPS:-5}
N=${N:-10000000}
PEERS=${PEERS:-$root/../shared/bench}
B=$build/tests/bench/bench_chan
[ -x "$B" ] || { echo "build bench_chan first" >&2; exit 1; }
P=$(mktemp -d)
trap 'rm -rf "$P"' EXIT
have_peers=0
if [ -d "$PEERS" ]; then
    cp -r "$PEERS/." "$P/"
    rm -rf "$P/build"
    if (cd "$P" && make -s -j2 build/bfiber_bench build/go_bench) >&2; then
        have_peers=1
    else
        echo "peer build failed (install golang-go libboost-fiber-dev); weft only" >&2
    fi
fi
pin="taskset -c 0"
out=$(mktemp)
val() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" | tail -1; }
for ((r = 1; r <= REPS; r++)); do
    echo "round $r/$REPS" >&2
    res=$($pin "$B" "$N" 1 2>/dev/null)
    for v in rendezvous buffered select; do
        printf 'weft %s\t%s\n' "$v" "$(grep "variant=$v " <<<"$res" | val ns_per_msg)" >>"$out"
    done
    if [ $have_peers = 1 ]; then
        printf 'Go unbuffered chan (GOMAXPROCS=1)\t%s\n' \
            "$(env GOMAXPROCS=1 $pin "$P/build/go_bench" channel "$N" | val ns_per_switch)" >>"$out"
        printf 'Boost.Fiber buffered_channel(2)\t%s\n' \
            "$($pin "$P/build/bfiber_bench" channel "$N" | val ns_per_switch)" >>"$out"
    fi
done
python3 - "$out" <<'PY'
import sys, statistics, collections
d = collections.OrderedDict()
for line in open(sys.argv[1]):
    k, v = line.rstrip("\n").split("\t")
    if v:
        d.setdefault(k, []).append(float(v))
med = {k: statistics.median(v) for k, v in d.items()}
ref = {"Go unbuffered chan (GOMAXPROCS=1)": "weft rendezvous",
       "Boost.Fiber buffered_channel(2)": "weft buffered"}
print("| ping-pong | ns/msg (median) | min-max | runs | peer / weft |")
print("|---|---:|---:|---:|---:|")
for k, v in d.items():
    ratio = "%.2fx" % (med[k] / med[ref[k]]) if k in ref and ref[k] in med else ""
    print("| %s | %.1f | %.1f-%.1f | %d | %s |" % (k, med[k], min(v), max(v), len(v), ratio))
PY
rm -f "$out"
