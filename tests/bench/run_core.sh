#!/usr/bin/env bash
# run_core.sh - weft's core benchmarks side by side with the peers of
# ../shared/bench (raw fcontext, State Threads, Boost.Fiber, Go) in one run.
#
# Every benchmark runs pinned to CPU 0, REPS times, alternating weft and
# the peers so drifts of the machine hit all of them alike; the table gives
# medians and ratios to weft. Prints Markdown on stdout.
#
# usage: tests/bench/run_core.sh [BUILD_DIR]     (default: ./build)
# knobs: REPS (5) N_SWITCH (10000000) N_SPAWN (1000000) BATCH (1000)
#        IDLE ("100000 1000000") PEERS (path to shared/bench, default ../shared/bench)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
REPS=${REPS:-5}
N_SWITCH=${N_SWITCH:-10000000}
N_SPAWN=${N_SPAWN:-1000000}
BATCH=${BATCH:-1000}
IDLE=${IDLE:-"100000 1000000"}
PEERS=${PEERS:-$root/../shared/bench}
B=$build/tests/bench
[ -x "$B/bench_switch" ] || { echo "build the benchmarks first (cmake -DWEFT_BUILD_BENCH=ON)" >&2; exit 1; }

# The peers build into a scratch copy (shared/bench may be read-only).
P=$(mktemp -d)
trap 'rm -rf "$P"' EXIT
have_peers=0
if [ -d "$PEERS" ]; then
    cp -r "$PEERS/." "$P/"
    if (cd "$P" && make -s -j2 build/fctx_bench build/st_bench build/bfiber_bench build/go_bench) >&2; then
        have_peers=1
    else
        echo "peer build failed (run $PEERS/run.sh once to install its packages); weft only" >&2
    fi
fi
pin="taskset -c 0"
out=$(mktemp)

# run LABEL KEY CMD... : append "LABEL<TAB>value of KEY" from the RESULT line
run() {
    local label=$1 key=$2; shift 2
    local line
    line=$("$@" 2>/dev/null | grep '^RESULT' | grep "$key=" | tail -1) || true
    local v=${line#*"$key="}; v=${v%% *}
    [ -n "$line" ] && printf '%s\t%s\n' "$label" "$v" >>"$out"
}

for ((r = 1; r <= REPS; r++)); do
    echo "round $r/$REPS" >&2
    # A: switch. bench_switch measures raw fcontext itself, in the same binary.
    line=$($pin "$B/bench_switch" "$N_SWITCH" 1)
    printf 'A|raw fcontext jump (same binary)\t%s\n' "$(echo "$line" | awk -F'ns_per_switch=' '/peer=fcontext/{print $2}')" >>"$out"
    printf 'A|weft_yield\t%s\n' "$(echo "$line" | awk -F'ns_per_switch=' '/peer=weft variant=yield test=pingpong/{print $2}')" >>"$out"
    if [ $have_peers = 1 ]; then
        run "A|fcontext via scheduler loop" ns_per_switch $pin "$P/build/fctx_bench" schedyield "$N_SWITCH"
        run "A|State Threads condvar hand-off" ns_per_switch $pin "$P/build/st_bench" condvar "$N_SWITCH"
        run "A|Boost.Fiber yield" ns_per_switch $pin "$P/build/bfiber_bench" yield "$N_SWITCH"
        run "A|Go Gosched (GOMAXPROCS=1)" ns_per_switch env GOMAXPROCS=1 $pin "$P/build/go_bench" yield "$N_SWITCH"
    fi
    # B: spawn + join
    run "B|weft (pooled)" ns_per_spawn $pin "$B/bench_spawn" "$N_SPAWN" "$BATCH" 0
    run "B|weft (prealloc_fibers)" ns_per_spawn $pin "$B/bench_spawn" "$N_SPAWN" "$BATCH" 1
    if [ $have_peers = 1 ]; then
        run "B|State Threads" ns_per_spawn $pin "$P/build/st_bench" spawn "$N_SPAWN" "$BATCH"
        run "B|fcontext pooled (floor)" ns_per_spawn $pin "$P/build/fctx_bench" spawn "$N_SPAWN" "$BATCH" pool
        run "B|Go (GOMAXPROCS=1)" ns_per_spawn env GOMAXPROCS=1 $pin "$P/build/go_bench" spawn "$N_SPAWN" "$BATCH"
        run "B|Boost.Fiber pooled" ns_per_spawn $pin "$P/build/bfiber_bench" spawn "$N_SPAWN" "$BATCH" pooled
    fi
done

# Syscalls per spawn: strace counts at N and 2N fibers; the difference over N
# is what each further spawn+join costs in syscalls (set-up cancels out).
if command -v strace >/dev/null; then
    sc() { strace -f -c -o "$out.st" "$B/bench_spawn" "$1" "$BATCH" "$2" >/dev/null 2>&1; awk '/ total$/ {print $(NF-2)}' "$out.st"; }
    for pre in 0 1; do
        a=$(sc 100000 $pre); b=$(sc 200000 $pre)
        echo "S|$pre	$a	$b" >>"$out"
    done
fi

# C: idle memory, once per size (it is deterministic to a few bytes)
for n in $IDLE; do
    for kb in 64 256; do
        line=$($pin "$B/bench_idle" "$n" "$kb" 2>/dev/null | grep '^RESULT' || true)
        echo "C|$n|weft, ${kb} KiB stacks, guard page each	$line" >>"$out"
    done
    if [ $have_peers = 1 ]; then
        echo "C|$n|raw fcontext, 64 KiB + mprotect guard	$($pin "$P/build/fctx_bench" idle "$n" guard 64 2>/dev/null | grep '^RESULT' || true)" >>"$out"
        echo "C|$n|State Threads, 64 KiB, no guard	$($pin "$P/build/st_bench" idle "$n" 2>/dev/null | grep '^RESULT' || true)" >>"$out"
        echo "C|$n|Go (GOMAXPROCS=1), no guard	$(env GOMAXPROCS=1 $pin "$P/build/go_bench" idle "$n" 2>/dev/null | grep '^RESULT' || true)" >>"$out"
    fi
done

# ---------------------------------------------------------------- tables
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print ""; else if (NR%2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'; }
vals_of() { grep -F "$1	" "$out" | cut -f2 | grep -v '^$' || true; }
med_of() { vals_of "$1" | median; }
minmax() { vals_of "$1" | sort -g | sed -n '1p;$p' | paste -sd- ; }

echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, kernel $(uname -r); $REPS rounds, medians (min-max)."
echo
echo "### Switch (two fibers yielding to each other, $N_SWITCH switches)"
echo
echo "| runtime | ns per switch | vs raw jump | weft is faster by |"
echo "|---|---|---|---|"
raw=$(med_of "A|raw fcontext jump (same binary)")
wy=$(med_of "A|weft_yield")
for lab in "raw fcontext jump (same binary)" "weft_yield" "fcontext via scheduler loop" "State Threads condvar hand-off" "Boost.Fiber yield" "Go Gosched (GOMAXPROCS=1)"; do
    m=$(med_of "A|$lab"); [ -n "$m" ] || continue
    awk -v l="$lab" -v m="$m" -v r="$raw" -v w="$wy" -v mm="$(minmax "A|$lab")" \
        'BEGIN {printf "| %s | %.2f (%s) | %.2fx | %.2fx |\n", l, m, mm, m/r, m/w}'
done
echo
echo "### Spawn + join ($N_SPAWN fibers, $BATCH at a time)"
echo
echo "| runtime | ns per fiber | vs weft (prealloc) |"
echo "|---|---|---|"
wp=$(med_of "B|weft (prealloc_fibers)")
for lab in "weft (pooled)" "weft (prealloc_fibers)" "State Threads" "fcontext pooled (floor)" "Go (GOMAXPROCS=1)" "Boost.Fiber pooled"; do
    m=$(med_of "B|$lab"); [ -n "$m" ] || continue
    awk -v l="$lab" -v m="$m" -v w="$wp" -v mm="$(minmax "B|$lab")" \
        'BEGIN {printf "| %s | %.1f (%s) | %.2fx |\n", l, m, mm, m/w}'
done
if grep -q '^S|' "$out"; then
    echo
    grep '^S|' "$out" | while IFS=$'\t' read -r lab a b; do
        [ "${lab#S|}" = 1 ] && v="prealloc_fibers" || v="pooled"
        awk -v v="$v" -v a="$a" -v b="$b" 'BEGIN {printf "Syscalls per spawn+join (weft, %s): %.5f (strace: %d syscalls for 100k fibers, %d for 200k)\n", v, (b-a)/100000, a, b}'
    done
fi
echo
echo "### Idle fibers (each parked; memory per fiber)"
echo
echo "| N | runtime | created | RSS per fiber | page tables per fiber | map entries added | guarded stacks |"
echo "|---|---|---|---|---|---|---|"
grep '^C|' "$out" | while IFS=$'\t' read -r lab line; do
    n=$(echo "$lab" | cut -d'|' -f2); name=$(echo "$lab" | cut -d'|' -f3)
    g() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    maps=$(g maps_added); [ -n "$maps" ] || { a=$(g maps_before); b=$(g maps_after); [ -n "$a" ] && maps=$((b - a)); }
    guards=$(g guarded); [ -n "$guards" ] || guards=$(g guard_pages)
    err=$(g err); [ -n "$err" ] && [ "$err" != none ] && err=" ($err)" || err=""
    printf '| %s | %s | %s%s | %s B | %s B | %s | %s |\n' "$n" "$name" "$(g created)" "$err" \
        "$(g rss_per_coro_B)" "$(g pte_per_coro_B)" "$maps" "$guards"
done
rm -f "$out"
