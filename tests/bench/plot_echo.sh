#!/usr/bin/env bash
# plot_echo.sh - draws bench_echo.sh's results as an SVG bar chart: each
# server's median msg/s relative to the read-once epoll server, per
# connection count. Needs gnuplot (apt-get install gnuplot-nox).
#   tests/bench/plot_echo.sh [echo_raw.tsv] [out.svg]
set -euo pipefail
raw=${1:-/tmp/weft-bench-build/echo_raw.tsv}
out=${2:-echo.svg}
dat=$(mktemp)
trap 'rm -f "$dat"' EXIT
python3 - "$raw" >"$dat" <<'PY'
import sys, statistics as st
d, order, conns = {}, [], []
for line in open(sys.argv[1]):
    label, c, rep, rc, rest = line.rstrip("\n").split("\t")
    kv = dict(x.split("=", 1) for x in rest.split() if "=" in x)
    if rc != "0" or "msg_per_s" not in kv:
        continue
    d.setdefault((label, c), []).append(float(kv["msg_per_s"]))
    if label not in order: order.append(label)
    if c not in conns: conns.append(c)
print("server " + " ".join(f'"{c} conn{"s" if c != "1" else ""}"' for c in conns))
for s in order:
    row = []
    for c in conns:
        ref = st.median(d[("epoll ET, read once", c)])
        row.append(f"{st.median(d[(s, c)]) / ref:.3f}" if (s, c) in d else "NaN")
    print(f'"{s}" ' + " ".join(row))
PY
gnuplot <<GP
set terminal svg size 900,420 font "sans,12" background rgb "white"
set output "$out"
set title "64-byte echo, one server thread: msg/s relative to a hand-written epoll server"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set yrange [0:1.25]
set ytics 0.1
set grid ytics
set key top center horizontal
set rmargin 10
set bmargin 7
set xtics rotate by -25 scale 0
set arrow from graph 0, first 0.95 to graph 1, first 0.95 nohead dt 2 lc rgb "red"
set label "0.95x" at graph 0.005, first 0.97 tc rgb "red"
plot for [i=2:*] "$dat" using i:xtic(1) title columnheader(i)
GP
echo "wrote $out" >&2
