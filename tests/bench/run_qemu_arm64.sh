#!/usr/bin/env bash
# run_qemu_arm64.sh - weft's core benchmarks on arm64 under qemu-user,
# beside raw arm64 fcontext in the same emulated run: ratios only.
#
# Emulated nanoseconds say nothing about arm64 hardware (qemu translates
# each guest block to x86 code; system calls run at host speed), but two
# programs emulated side by side in one run still compare: how many times
# a raw jump_fcontext a weft_yield costs, a spawn+join beside a pooled
# fcontext spawn, an idle fiber's memory beside a raw fcontext stack's.
# The raw figures are bench_switch's own ping-pong (same binary) and
# ../shared/bench's fctx_bench, cross-built here against the arm64
# libboost_context.a. Rounds alternate weft and raw; medians are printed.
#
# usage: tests/bench/run_qemu_arm64.sh [ARM64_BUILD_DIR]   (default: ./build/arm64,
#        as scripts/test.sh's arm64 stage leaves it; needs WEFT_BUILD_BENCH=ON)
# knobs: REPS (5) N_SWITCH (10000000) N_SPAWN (200000) BATCH (1000) IDLE (30000 fibers: the raw peer's mprotect guards stop near 32k)
#        EMU (qemu-aarch64) PEERS (path to shared/bench, default ../shared/bench)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build/arm64}" && pwd)
REPS=${REPS:-5}
N_SWITCH=${N_SWITCH:-10000000}
N_SPAWN=${N_SPAWN:-200000}
BATCH=${BATCH:-1000}
IDLE=${IDLE:-30000}
EMU=${EMU:-qemu-aarch64}
PEERS=${PEERS:-$root/../shared/bench}
B=$build/tests/bench
file "$B/bench_switch" 2>/dev/null | grep -q aarch64 ||
    { echo "no arm64 benchmarks in $build (scripts/test.sh arm64 builds them)" >&2; exit 1; }

P=$(mktemp -d)
out=$P/results
trap 'rm -rf "$P"' EXIT
fctx=
if [ -f "$PEERS/src/fctx_bench.c" ] &&
    aarch64-linux-gnu-gcc -O2 -std=gnu11 -o "$P/fctx_bench" "$PEERS/src/fctx_bench.c" \
        /usr/lib/aarch64-linux-gnu/libboost_context.a 2>"$P/cc.log"; then
    fctx=$P/fctx_bench
else
    echo "fctx_bench not built for arm64 ($PEERS): weft and bench_switch's raw ping-pong only" >&2
fi
pin="taskset -c 0"

# run LABEL KEY MATCH CMD... : append "LABEL<TAB>value of KEY" from the
# RESULT line that contains MATCH
run() {
    local label=$1 key=$2 match=$3; shift 3
    local line
    line=$("$@" 2>/dev/null | grep '^RESULT' | grep -F -- "$match" | grep "$key=" | tail -1) || true
    local v=${line#*"$key="}; v=${v%% *}
    [ -n "$line" ] && printf '%s\t%s\n' "$label" "$v" >>"$out"
    return 0
}

for ((r = 1; r <= REPS; r++)); do
    echo "round $r/$REPS" >&2
    # bench_switch prints both: one run, two figures of the same binary.
    line=$($pin $EMU "$B/bench_switch" "$N_SWITCH" 1 2>/dev/null)
    echo "$line" | awk -F'ns_per_switch=' '/peer=fcontext variant=direct/ {print "raw\t" $2}' >>"$out"
    echo "$line" | awk -F'ns_per_switch=' '/peer=weft variant=yield test=pingpong/ {print "yield\t" $2}' >>"$out"
    [ -n "$fctx" ] && run sched ns_per_switch "variant=scheduler" $pin $EMU "$fctx" schedyield "$N_SWITCH"
    run sp_pre ns_per_spawn "variant=prealloc" $pin $EMU "$B/bench_spawn" "$N_SPAWN" "$BATCH" 1
    run sp_pool ns_per_spawn "variant=pooled" $pin $EMU "$B/bench_spawn" "$N_SPAWN" "$BATCH" 0
    [ -n "$fctx" ] && run sp_raw ns_per_spawn "test=spawn" $pin $EMU "$fctx" spawn "$N_SPAWN" "$BATCH" pool
done
# Idle memory: once (deterministic to a few bytes).
run id_weft rss_per_coro_B "test=idle" $pin $EMU "$B/bench_idle" "$IDLE" 64
[ -n "$fctx" ] && run id_raw rss_per_coro_B "test=idle" $pin $EMU "$fctx" idle "$IDLE" guard 64

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print ""; else if (NR%2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'; }
med() { grep "^$1	" "$out" | cut -f2 | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2fx\n", a / b }'; }

raw=$(med raw) yield=$(med yield) sched=$(med sched)
sp_pre=$(med sp_pre) sp_pool=$(med sp_pool) sp_raw=$(med sp_raw)
id_weft=$(med id_weft) id_raw=$(med id_raw)

echo "qemu-aarch64 $($EMU --version | sed -n '1s/.*version \([^ ]*\).*/\1/p') on $(lscpu | sed -n 's/^Model name: *//p'); $REPS rounds, medians; emulated: ratios only."
echo
echo "| measure (arm64 under qemu-user) | weft / raw fcontext | emulated figures (not hardware) |"
echo "|---|---|---|"
echo "| switch ($N_SWITCH): weft_yield vs a raw jump_fcontext ping-pong in the same binary | $(ratio "$yield" "$raw") | $yield vs $raw ns |"
[ -n "$sched" ] && echo "| switch: raw fcontext through fctx_bench's 20-line scheduler loop vs the raw ping-pong | $(ratio "$sched" "$raw") (that loop) | $sched vs $raw ns |"
echo "| spawn+join ($N_SPAWN fibers, $BATCH at a time), prealloc_fibers, vs pooled raw fcontext spawns | $(ratio "$sp_pre" "$sp_raw") | $sp_pre vs $sp_raw ns |"
echo "| spawn+join, pooled, vs pooled raw fcontext spawns | $(ratio "$sp_pool" "$sp_raw") | $sp_pool vs $sp_raw ns |"
echo "| idle RSS per parked fiber ($IDLE fibers, 64 KiB stacks) vs raw fcontext stacks with mprotect guards | $(ratio "$id_weft" "$id_raw") | $id_weft vs $id_raw B |"
