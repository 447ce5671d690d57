#!/usr/bin/env bash
# run_mt.sh - the multi-worker scheduler (bench_mt) at 1 and 2 workers, with
# skynet beside Go and Boost.Fiber (peers/skynet.go, peers/skynet_bfiber.cpp)
# in one run. 1-worker / 1-thread runs are pinned with taskset -c 0, 2-worker
# runs are unpinned. Rounds alternate weft and the peers so drifts of the
# machine hit all alike; prints Markdown tables of medians (min-max) and
# ratios on stdout, progress on stderr.
#
# usage: tests/bench/run_mt.sh [BUILD_DIR]     (default: ./build)
# knobs: REPS (5) DEPTH (20) WARM_DEPTH (16) WARM_ROUNDS (5) SKYNET (1000000)
#        PP_N (100000 cross-worker round trips; 1-worker runs do 10x)
#        POST_THREADS (10) POST_N (100000) MTX_FIBERS (64) MTX_N (1000000)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
REPS=${REPS:-5}
DEPTH=${DEPTH:-20}
WARM_DEPTH=${WARM_DEPTH:-16}
WARM_ROUNDS=${WARM_ROUNDS:-5}
SKYNET=${SKYNET:-1000000}
PP_N=${PP_N:-100000}
POST_THREADS=${POST_THREADS:-10}
POST_N=${POST_N:-100000}
MTX_FIBERS=${MTX_FIBERS:-64}
MTX_N=${MTX_N:-1000000}
B=$build/tests/bench/bench_mt
[ -x "$B" ] || { echo "build bench_mt first (cmake -DWEFT_BUILD_BENCH=ON)" >&2; exit 1; }

P=$(mktemp -d)
out=$P/results
trap 'rm -rf "$P"' EXIT
have_go=0 have_bf=0
if command -v go >/dev/null; then
    if (cd "$here/peers" && GOCACHE=${GOCACHE:-$P/gocache} go build -o "$P/skynet_go" skynet.go) >&2; then have_go=1; fi
else
    echo "note: go not found (apt install golang-go): Go peer skipped" >&2
fi
if command -v g++ >/dev/null && [ -e /usr/include/boost/fiber/all.hpp ]; then
    if g++ -O2 -DNDEBUG -std=c++14 -o "$P/skynet_bf" "$here/peers/skynet_bfiber.cpp" \
        -lboost_fiber -lboost_context -pthread >&2; then have_bf=1; fi
else
    echo "note: g++ or Boost.Fiber headers missing (apt install libboost-fiber-dev): Boost peer skipped" >&2
fi
pin="taskset -c 0"

# rec LABEL LINE KEY...: append "LABEL<TAB>key=value..." for the keys asked
rec() {
    local label=$1 line=$2; shift 2
    local s="" k v
    [ -n "$line" ] || { echo "FAILED: $label" >&2; return 0; }
    for k in "$@"; do
        v=$(tr ' ' '\n' <<<"$line" | sed -n "s/^$k=//p")
        s+="$k=$v "
    done
    printf '%s\t%s\n' "$label" "$s" >>"$out"
}
res() { "$@" 2>/dev/null | grep '^RESULT' | tail -1 || true; }

T="ms peak_stacks_in_use peak_rss_kb faults steals sleeps cpu_s worker_switches"
for ((r = 1; r <= REPS; r++)); do
    echo "round $r/$REPS" >&2
    rec "tree|1" "$(res $pin "$B" tree "$DEPTH" 1)" $T
    rec "tree|2" "$(res "$B" tree "$DEPTH" 2)" $T
    rec "warm|1" "$(ROUNDS=$WARM_ROUNDS res $pin "$B" tree "$WARM_DEPTH" 1)" $T
    rec "warm|2" "$(ROUNDS=$WARM_ROUNDS res "$B" tree "$WARM_DEPTH" 2)" $T
    rec "sky|weft, 1 worker" "$(res $pin "$B" skynet 1 "$SKYNET")" $T
    rec "sky|weft, 2 workers" "$(res "$B" skynet 2 "$SKYNET")" $T
    rec "skywarm|weft, 1 worker" "$(ROUNDS=3 res $pin "$B" skynet 1 "$SKYNET")" $T
    rec "skywarm|weft, 2 workers" "$(ROUNDS=3 res "$B" skynet 2 "$SKYNET")" $T
    if [ $have_go = 1 ]; then
        rec "sky|Go, GOMAXPROCS=1" "$(GOMAXPROCS=1 res $pin "$P/skynet_go" "$SKYNET")" ms
        rec "sky|Go, GOMAXPROCS=2" "$(GOMAXPROCS=2 res "$P/skynet_go" "$SKYNET")" ms
    fi
    if [ $have_bf = 1 ]; then
        rec "sky|Boost.Fiber, 1 thread" "$(res $pin "$P/skynet_bf" 1 "$SKYNET")" ms
        rec "sky|Boost.Fiber, 2 threads work_stealing" "$(res "$P/skynet_bf" 2 "$SKYNET")" ms
    fi
    rec "pp|1" "$(res $pin "$B" pingpong 1 $((PP_N * 10)))" ns_per_roundtrip sleeps_per_roundtrip cpu_s
    rec "pp|2" "$(res "$B" pingpong 2 "$PP_N")" ns_per_roundtrip sleeps_per_roundtrip cpu_s
    rec "post|1" "$(res $pin "$B" post "$POST_THREADS" "$POST_N" 1)" posts_per_s ns_per_post retries cpu_s worker_switches
    rec "post|2" "$(res "$B" post "$POST_THREADS" "$POST_N" 2)" posts_per_s ns_per_post retries cpu_s worker_switches
    rec "mtx|1" "$(res $pin "$B" mutex 1 "$MTX_FIBERS" "$MTX_N")" ns_per_lock switches sleeps cpu_s
    rec "mtx|2" "$(res "$B" mutex 2 "$MTX_FIBERS" "$MTX_N")" ns_per_lock switches sleeps cpu_s worker_switches
done

python3 - "$out" "$REPS" "$DEPTH" "$WARM_DEPTH" "$WARM_ROUNDS" "$SKYNET" "$PP_N" "$POST_THREADS" "$POST_N" "$MTX_FIBERS" "$MTX_N" <<'PY'
import sys, statistics, collections, subprocess
(f, reps, depth, wdepth, wrounds, sky, ppn, pth, pn, mf, mn) = sys.argv[1:]
d = collections.OrderedDict()
for line in open(f):
    label, kv = line.rstrip("\n").split("\t")
    row = dict(x.split("=", 1) for x in kv.split())
    d.setdefault(label, []).append(row)

def vals(label, key):
    out = []
    for row in d.get(label, []):
        try:
            out.append(float(row.get(key, "")))
        except ValueError:
            pass
    return out

def med(label, key):
    v = vals(label, key)
    return statistics.median(v) if v else None

def cell(label, key, fmt="%.1f"):
    v = vals(label, key)
    if not v:
        return "n/a"
    return (fmt % statistics.median(v)) + " (" + (fmt % min(v)) + "-" + (fmt % max(v)) + ")"

def last(label, key):
    rows = d.get(label, [])
    return rows[-1].get(key, "") if rows else ""

try:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = [l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("Model name")][0]
except Exception:
    model = "?"
import os
print("Machine: %s, %d CPUs, kernel %s; %s rounds, medians (min-max). 1-worker runs pinned "
      "(taskset -c 0), 2-worker runs unpinned. Stacks 64 KiB (weft, Boost.Fiber)." % (model, os.cpu_count(), os.uname().release, reps))
print()
print("### Spawn tree (every fiber spawns 2 children and joins them)")
print()
print("| run | workers | ms | speed-up 2 vs 1 | peak stacks in use | peak RSS MB | page faults | steals | sleeps | CPU s | switches per worker (last run) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for key, name in (("tree", "depth %s, cold (fresh process)" % depth), ("warm", "depth %s, warm (last of %s rounds in one runtime)" % (wdepth, wrounds))):
    m1 = med(key + "|1", "ms")
    for w in ("1", "2"):
        lab = key + "|" + w
        m = med(lab, "ms")
        sp = "%.2fx" % (m1 / m) if (w == "2" and m and m1) else ""
        rss = med(lab, "peak_rss_kb")
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, w, cell(lab, "ms"), sp, "%.0f" % med(lab, "peak_stacks_in_use") if m else "n/a",
            "%.0f" % (rss / 1024) if rss else "n/a", "%.0f" % med(lab, "faults") if m else "n/a",
            "%.0f" % med(lab, "steals") if m else "n/a", "%.0f" % med(lab, "sleeps") if m else "n/a",
            cell(lab, "cpu_s", "%.2f"), last(lab, "worker_switches")))
print()
print("### Skynet (%s leaf fibers, 10 children per node, sum checked)" % sky)
print()
print("| runtime | ms | peer / weft (same thread count) | peak stacks in use | peak RSS MB |")
print("|---|---:|---:|---:|---:|")
ref = {"1": med("sky|weft, 1 worker", "ms"), "2": med("sky|weft, 2 workers", "ms")}
for lab in d:
    if not lab.startswith("sky|"):
        continue
    name = lab[4:]
    m = med(lab, "ms")
    n = "2" if ("2" in name) else "1"
    ratio = "%.2fx" % (m / ref[n]) if (ref[n] and m and not name.startswith("weft")) else ""
    st = med(lab, "peak_stacks_in_use")
    rss = med(lab, "peak_rss_kb")
    print("| %s | %s | %s | %s | %s |" % (name, cell(lab, "ms"), ratio, "%.0f" % st if st is not None else "",
                                   "%.0f" % (rss / 1024) if rss else ""))
for lab in d:
    if lab.startswith("skywarm|"):
        print("| %s, warm (last of 3 rounds in one runtime) | %s |  | %s | %s |" % (
            lab[8:], cell(lab, "ms"), "%.0f" % med(lab, "peak_stacks_in_use"), "%.0f" % (med(lab, "peak_rss_kb") / 1024)))
print()
print("### Cross-worker channel ping-pong (two pinned fibers, rendezvous channels)")
print()
print("| workers | ns per round trip | worker sleeps per round trip | CPU s |")
print("|---|---:|---:|---:|")
print("| 1 (both fibers on one worker, %d round trips) | %s | %s | %s |" % (int(ppn) * 10, cell("pp|1", "ns_per_roundtrip"), cell("pp|1", "sleeps_per_roundtrip", "%.2f"), cell("pp|1", "cpu_s", "%.2f")))
print("| 2 (one fiber pinned on each, %s round trips) | %s | %s | %s |" % (ppn, cell("pp|2", "ns_per_roundtrip"), cell("pp|2", "sleeps_per_roundtrip", "%.2f"), cell("pp|2", "cpu_s", "%.2f")))
print()
print("### weft_post from foreign threads (%s threads x %s posts, each a fiber bumping an atomic)" % (pth, pn))
print()
print("| workers | posts/s (= fibers started per s) | ns per post | CPU s | switches per worker (last run) |")
print("|---|---:|---:|---:|---|")
for w in ("1", "2"):
    lab = "post|" + w
    print("| %s%s | %s | %s | %s | %s |" % (w, " (posters pinned to CPU 0 too)" if w == "1" else "", cell(lab, "posts_per_s", "%.0f"), cell(lab, "ns_per_post"), cell(lab, "cpu_s", "%.2f"), last(lab, "worker_switches")))
m1, m2 = med("post|1", "posts_per_s"), med("post|2", "posts_per_s")
if m1 and m2:
    print()
    print("2 workers / 1 worker: %.2fx" % (m2 / m1))
print()
print("### Contended weft_mutex (%s fibers, %s lock/increment/unlock in all, total checked)" % (mf, mn))
print()
print("| workers | ns per lock+unlock | fiber switches | worker sleeps | CPU s |")
print("|---|---:|---:|---:|---:|")
for w in ("1", "2"):
    lab = "mtx|" + w
    print("| %s | %s | %s | %s | %s |" % (w, cell(lab, "ns_per_lock"), "%.0f" % med(lab, "switches"), "%.0f" % med(lab, "sleeps"), cell(lab, "cpu_s", "%.3f")))
PY
