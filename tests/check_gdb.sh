#!/usr/bin/env bash
# check_gdb.sh - drives gdb in batch mode with tools/weft-gdb.py over
# tests/gdb_target (see there for the fibers it parks and where):
#   1. a live process stopped at a breakpoint: the fiber list, `weft bt` of
#      every fiber, a `weft fiber` view, and the program then runs on to a
#      clean exit (the extension left nothing behind);
#   2. a core file the kernel dumped when the program aborted (when the
#      machine's core_pattern writes cores to a plain file we can find);
#   3. a core file written by gdb's gcore (stacks with mprotect guard pages:
#      gcore cannot read a mapping holding MADV_GUARD_INSTALL guards and
#      would save zeros instead, see docs/debugging.md).
# Each must list the fibers with their names and states, and each parked
# fiber's backtrace must name the function it parked in.
#
# With an EMULATOR (a cross build's qemu-user, e.g. qemu-aarch64) the
# target runs under it and gdb-multiarch does the debugging: the live case
# through qemu's gdbstub (`qemu -g SOCKET`, then `target remote`), the
# kernel case on the core qemu itself writes for the target
# (qemu_<name>_<date>_<pid>.core; the build links the target without PIE,
# since such a core does not tell gdb where a PIE was loaded). gcore is
# skipped there: qemu's gdbstub gives gdb no memory map, so the core it
# would write lacks the heap and the stacks.
#
# usage: check_gdb.sh GDB_TARGET WEFT_GDB_PY [SANITIZERS] [EMULATOR]
# Exit status 77 (a CTest skip) only when gdb (gdb-multiarch with an
# emulator) is not installed.
set -u
target=$1
script=$2
sanitize=${3:-}
emulator=${4:-}

gdb=gdb
[ -n "$emulator" ] && gdb=gdb-multiarch
if ! command -v "$gdb" >/dev/null 2>&1; then
    echo "SKIP: $gdb is not installed (scripts/deps.sh installs it)"
    exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/weft-gdb.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# LeakSanitizer cannot run under ptrace, and ASan turns core dumps off by
# default; both matter only to an ASan build of the target.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0:disable_coredump=0"

run_gdb() { # output file, gdb arguments...
    local out=$1; shift
    timeout 60 "$gdb" -nx -batch -q -iex 'set pagination off' -iex 'set width 0' \
        -iex 'set debuginfod enabled off' -x "$script" "$@" >"$out" 2>&1
}

# fiber name, state, the function its backtrace must name
expect=(
    "main running main_fiber"
    "sleeper parked parked_in_sleep_fn"
    "joiner parked parked_in_join_fn"
    "chan-reader parked parked_in_chan_fn"
    "mutex-waiter parked parked_in_mutex_fn"
    "pipe-reader parked parked_in_read_fn"
    "yielder runnable parked_in_yield_fn"
)

# The block `weft bt all` printed for one fiber: from its header line to
# the line before the next header.
bt_block() { # output file, fiber name
    awk -v hdr="\"$2\" (" '
        /^fiber [0-9]+ "/ { on = index($0, hdr) > 0 }
        on' "$1"
}

check_output() { # what, output file
    local what=$1 out=$2 line name state fn before=$failures
    if ! grep -q '^runtime 0x' "$out"; then
        fail "$what: no runtime listed"
        sed 's/^/    | /' "$out"
        return
    fi
    for line in "${expect[@]}"; do
        read -r name state fn <<<"$line"
        grep -Eq "^ +\*? +[0-9]+ +\"$name\" +$state " "$out" ||
            fail "$what: fiber \"$name\" not listed as $state"
        bt_block "$out" "$name" | grep -q " in $fn (" ||
            fail "$what: weft bt of \"$name\" does not name $fn"
    done
    grep -Eq '"sleeper" +parked .*sleep, deadline in' "$out" ||
        fail "$what: the sleeper's deadline is not shown"
    grep -Eq '"joiner" +parked +64 KiB .*join of fiber [0-9]+ "sleeper"' "$out" ||
        fail "$what: the joiner's stack size or join target is not shown"
    grep -Eq '"pipe-reader" +parked .*fd [0-9]+ \(read\)' "$out" ||
        fail "$what: the pipe reader's fd is not shown"
    grep -q '"unstarted" (runnable): not started yet (will call never_started_fn)' "$out" ||
        fail "$what: the unstarted fiber is not recognised"
    # Listings end at the fiber's entry function, above the fcontext trampoline.
    grep -q ' in weft[._][_]*make_fcontext ' "$out" &&
        fail "$what: a backtrace ran on past weft__fiber_entry"
    if grep -q 'Python Exception\|Traceback\|corrupt stack' "$out"; then
        fail "$what: gdb reported an error"
    fi
    if [ "$failures" -ne "$before" ]; then
        echo "---- $what: gdb output"
        sed 's/^/    | /' "$out"
    else
        echo "ok: $what"
    fi
}

# Under an emulator: starts the target under it, stopped for gdb on a Unix
# socket (no port to collide with), $work/gdb.sock. The target's own
# output goes to $work/emu.out.
emu_start() { # target arguments...
    rm -f "$work/gdb.sock"
    # timeout: a target no gdb attached to would wait for one for ever.
    timeout 90 $emulator -g "$work/gdb.sock" "$target" "$@" >"$work/emu.out" 2>&1 &
    emu_pid=$!
    for _ in $(seq 100); do
        [ -S "$work/gdb.sock" ] && break
        sleep 0.1
    done
}

# ----------------------------------------------------------- live process
if [ -z "$emulator" ]; then
    run_gdb "$work/live.out" -ex 'break gdb_target_stop_here' -ex run \
        -ex 'info weft-fibers' -ex 'weft bt all' \
        -ex 'weft fiber 5' -ex 'bt' -ex 'weft fiber off' \
        -ex continue "$target"
else
    emu_start
    run_gdb "$work/live.out" -ex "target remote $work/gdb.sock" \
        -ex 'break gdb_target_stop_here' -ex continue \
        -ex 'info weft-fibers' -ex 'weft bt all' \
        -ex 'weft fiber 5' -ex 'bt' -ex 'weft fiber off' \
        -ex continue "$target"
    wait "$emu_pid"
    cat "$work/emu.out" >>"$work/live.out"
fi
check_output "live process" "$work/live.out"
# The view must show the fiber's frames to gdb's own bt, and resuming must
# find the inferior untouched.
before=$failures
grep -q '^weft: viewing fiber 5 "mutex-waiter"' "$work/live.out" ||
    fail "live process: weft fiber did not switch the view"
[ "$(grep -c ' in parked_in_mutex_fn (' "$work/live.out")" -ge 2 ] ||
    fail "live process: bt in the weft fiber view does not show the fiber's frames"
grep -q 'gdb_target: done' "$work/live.out" && grep -q 'exited normally' "$work/live.out" ||
    fail "live process: the program did not run on to a clean exit"
[ "$failures" -eq "$before" ] || sed 's/^/    | /' "$work/live.out"

# ------------------------------------------------------- kernel core file
pattern=$(cat /proc/sys/kernel/core_pattern 2>/dev/null || echo '|unknown')
mkdir "$work/kcore"
asan=
[ -n "$sanitize" ] && [ "${sanitize#*address}" != "$sanitize" ] && asan=1
if [ "${pattern#|}" != "$pattern" ] || [ "${pattern#*/}" != "$pattern" ]; then
    echo "note: kernel core skipped: core_pattern '$pattern' does not write into the working directory"
elif ! (ulimit -c unlimited) 2>/dev/null; then
    echo "note: kernel core skipped: the core size limit cannot be raised ($(ulimit -Hc))"
else
    # Not exec: the subshell reaps the aborted target and its "Aborted (core
    # dumped)" notice goes to /dev/null with the rest.
    # Under an emulator the core to read is the one qemu writes for the
    # target (the host kernel may dump qemu's own beside it).
    (cd "$work/kcore" && ulimit -c unlimited && $emulator "$target" abort; true) >/dev/null 2>&1
    if [ -n "$emulator" ]; then
        core=$(find "$work/kcore" -maxdepth 1 -type f -name 'qemu_*.core' | head -n 1)
    else
        core=$(find "$work/kcore" -maxdepth 1 -type f | head -n 1)
    fi
    if [ -z "$core" ]; then
        echo "note: kernel core skipped: no core file appeared (pattern '$pattern')"
    else
        run_gdb "$work/kcore.out" -ex 'info weft-fibers' -ex 'weft bt all' "$target" "$core"
        check_output "kernel core file" "$work/kcore.out"
        grep -q 'in gdb_target_stop_here ()' "$work/kcore.out" ||
            fail "kernel core file: the running fiber's backtrace misses gdb_target_stop_here"
    fi
fi

# ---------------------------------------------------------- gcore core file
if [ -n "$emulator" ]; then
    echo "note: gcore core skipped: under $emulator, gdb sees the target through qemu's" \
        "gdbstub, which gives it no memory map (the core would lack the heap and stacks)"
elif [ -n "$asan" ]; then
    # gcore reads every mapping through the process, ASan's terabytes of
    # shadow reservations included: minutes instead of a second. The kernel
    # skips them (MADV_DONTDUMP), so the core above covered this build.
    echo "note: gcore core skipped: ASan target (gcore would read its shadow memory)"
else
    run_gdb "$work/gcore.log" -ex 'set environment WEFT_TEST_GUARD=mprotect' \
        -ex 'break gdb_target_stop_here' -ex run \
        -ex "generate-core-file $work/gcore.core" -ex kill "$target"
    if [ -s "$work/gcore.core" ]; then
        run_gdb "$work/gcore.out" -ex 'info weft-fibers' -ex 'weft bt all' \
            "$target" "$work/gcore.core"
        check_output "gcore core file" "$work/gcore.out"
    else
        fail "gcore wrote no core file"
        sed 's/^/    | /' "$work/gcore.log"
    fi
fi

if [ "$failures" -ne 0 ]; then
    echo "check_gdb: $failures failure(s)"
    exit 1
fi
echo "check_gdb: all passed"
