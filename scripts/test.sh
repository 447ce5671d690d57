#!/usr/bin/env bash
# test.sh - builds weft and passes every test, from a fresh Debian 12 machine:
#   1. gcc release build with -Werror: every Check suite (both reactor
#      backends where a suite does I/O), the examples, the API contract;
#   2. clang with -Werror under ASan+UBSan: every suite;
#   3. valgrind (memcheck) over every single-worker suite;
#   4. install into a scratch prefix and build a consumer through
#      find_package(weft) and through pkg-config, linked static and shared;
#      then libweft_hook each way docs/hooks.md shows (command line,
#      pkg-config, CMake target, LD_PRELOAD) and WEFT_REQUIRE_HOOK;
#   5. fault: the fault-injection walk (WEFT_FAULT_INJECTION) under ASan+UBSan;
#   6. fuzz: each libFuzzer target for a bounded time (WEFT_FUZZ_SECONDS);
#   7. soak: the echo server under mixed abuse (WEFT_SOAK_SECONDS);
#   8. matrix: clang release and gcc debug builds with -Werror and their
#      tests, and the core suites on each stack-guard path (mprotect guards,
#      canaries) forced with WEFT_TEST_GUARD;
#   9. tsan: clang under ThreadSanitizer, the multi-worker runs of every
#      suite (ctest label "mt": two workers, and two with migration), then
#      check_race and the stress suites under chaos mode;
#  10. chaos: a build with the preemption points (WEFT_CHAOS, src/chaos.h):
#      check_race drives each known interleaving, then the suites run with
#      2 and 4 workers while a seeded share of the points is delayed. The
#      seed is printed; WEFT_CHAOS_SEED=N replays a run;
#  11. arm64: cross-built for Linux on aarch64 (release, -Werror), every
#      suite under qemu-aarch64 with one worker and with two, and the echo
#      demo (server and verifying client) under qemu.
# Every stage but valgrind runs each suite with one worker and, as
# <suite>_mt and <suite>_migrate, with two.
# Stages can be picked: scripts/test.sh release chaos asan valgrind consumer fault fuzz soak matrix tsan arm64
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
stages=${*:-release chaos asan tsan valgrind consumer fault fuzz soak matrix arm64}
scripts/deps.sh clang libclang-rt-14-dev valgrind gdb redis-server libhiredis-dev
jobs=2
say() { printf '\n== %s\n' "$*"; }

build() { # dir, cmake args...
    local dir=$1; shift
    cmake -S "$root" -B "$dir" -DWEFT_WERROR=ON -DWEFT_BUILD_TESTS=ON -DWEFT_BUILD_EXAMPLES=ON \
        -DWEFT_BUILD_BENCH=ON "$@" >/dev/null
    cmake --build "$dir" -j"$jobs"
}

# The suites chaos mode shakes: everything that runs on several workers.
chaos_suites='^(fiber|time|runtime|sync|chan|group|io|net|offload|signal|shutdown|race)$'
chaos_seed=${WEFT_CHAOS_SEED:-$(date +%s)}

for stage in $stages; do
case $stage in
chaos)
    say "chaos: check_race, then the suites with 2 and 4 workers, seed $chaos_seed (WEFT_CHAOS_SEED=$chaos_seed replays it)"
    build build/chaos -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=gcc -DWEFT_CHAOS=ON \
        -DWEFT_FAULT_INJECTION=ON -DWEFT_BUILD_EXAMPLES=OFF -DWEFT_BUILD_BENCH=OFF
    (cd build/chaos && ctest --output-on-failure -L chaos)
    for n in 2 4; do
        say "chaos: $n workers, WEFT_CHAOS=$chaos_seed:100"
        (cd build/chaos && WEFT_CHAOS=$chaos_seed:100 WEFT_WORKERS=$n WEFT_TEST_QUICK=1 \
            ctest -j"$jobs" --output-on-failure -R "$chaos_suites")
    done
    # check_race is left out here: its interleavings go through the LIFO
    # slot and the rings, which migration bypasses (everything goes
    # through the injector).
    say "chaos: 2 workers with migration, WEFT_CHAOS=$chaos_seed:30"
    (cd build/chaos && WEFT_CHAOS=$chaos_seed:30 WEFT_WORKERS=2 WEFT_TEST_MIGRATE=1 WEFT_TEST_QUICK=1 \
        ctest -j"$jobs" --output-on-failure -R "$chaos_suites" -E '^race$')
    ;;
matrix)
    say "clang release and gcc debug builds (-Werror) and their tests"
    build build/clang-release -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang
    (cd build/clang-release && ctest -j"$jobs" --output-on-failure)
    build build/gcc-debug -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=gcc
    (cd build/gcc-debug && ctest -j"$jobs" --output-on-failure)
    # check_stack forces the paths itself, so it is left out here.
    for path in mprotect canary; do
        say "core and I/O suites with every stack on the $path path"
        (cd build/gcc-debug && WEFT_TEST_GUARD=$path ctest -j"$jobs" --output-on-failure \
            -R '^(fiber|time|runtime|sync|chan|group|io|net)$')
    done
    ;;
release)
    say "release build (gcc, -Werror) and tests"
    build build/release -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=gcc
    (cd build/release && ctest -j"$jobs" --output-on-failure)
    if [ -f ../shared/api_check.c ]; then
        say "API contract (../shared/api_check.c)"
        gcc -std=c11 -Wall -Werror -Iinclude -c ../shared/api_check.c -o build/release/api_check.o
        clang -std=c11 -Wall -Werror -Iinclude -c ../shared/api_check.c -o build/release/api_check.o
        echo "api_check.c compiles"
    fi
    ;;
asan)
    say "clang -Werror, ASan+UBSan, tests"
    build build/asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
        -DWEFT_SANITIZE=address,undefined
    (cd build/asan && CK_FORK=no ASAN_OPTIONS=detect_leaks=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest -j"$jobs" --output-on-failure)
    ;;
tsan)
    say "clang -Werror, TSan, the multi-worker runs of every suite"
    build build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
        -DWEFT_SANITIZE=thread -DWEFT_BUILD_EXAMPLES=OFF -DWEFT_BUILD_BENCH=OFF \
        -DWEFT_CHAOS=ON -DWEFT_FAULT_INJECTION=ON
    # The hook suite is left out: TSan's own interceptors sit where the
    # hook's do. halt_on_error turns any report into a failed test. The
    # randomized stress runs are shortened (WEFT_TEST_QUICK): under TSan
    # with migration on every switch the full mutex stress takes minutes.
    (cd build/tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 WEFT_TEST_QUICK=1 \
        ctest -j"$jobs" --output-on-failure -L mt -E '^hook')
    say "TSan under chaos: check_race, then the suites with 2 and 4 workers, WEFT_CHAOS=$chaos_seed:50"
    (cd build/tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 CK_FORK=no \
        ctest --output-on-failure -L chaos)
    # The shutdown suite is left out of this pass: its signal test waits for
    # a SIGINT handler, which TSan runs only when the receiving thread next
    # passes one of its interceptors, and an idle worker sleeps in a raw
    # futex system call that TSan does not see (it timed out here once,
    # at 5 s). The suite runs under TSan without chaos above, and under
    # chaos in the chaos stage.
    for n in 2 4; do
        (cd build/tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 WEFT_TEST_QUICK=1 \
            WEFT_CHAOS=$chaos_seed:50 WEFT_WORKERS=$n ctest -j"$jobs" --output-on-failure \
            -R "$chaos_suites" -E '^shutdown$')
    done
    ;;
valgrind)
    say "valgrind (memcheck) over every single-worker suite"
    # The emulator prefixes every test command with valgrind. The
    # multi-worker runs (label mt) are left to ASan and TSan: valgrind runs
    # one thread at a time, and workers that spin briefly before sleeping
    # make those runs take longer than their timeout.
    build build/valgrind -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc \
        "-DCMAKE_CROSSCOMPILING_EMULATOR=valgrind;-q;--error-exitcode=99;--leak-check=full;--errors-for-leak-kinds=definite;--show-leak-kinds=definite"
    (cd build/valgrind && CK_FORK=no WEFT_TEST_QUICK=1 ctest -j"$jobs" --output-on-failure --timeout 900 -LE mt)
    ;;
consumer)
    say "install, then build a consumer through find_package and pkg-config"
    build build/release -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=gcc >/dev/null
    prefix=$root/build/prefix
    rm -rf "$prefix" build/consumer build/vendored
    cmake --install build/release --prefix "$prefix" >/dev/null
    cmake -S tests/consumer -B build/consumer -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
    cmake --build build/consumer -j"$jobs" >/dev/null
    build/consumer/consumer_shared && build/consumer/consumer_static
    PKG_CONFIG_PATH=$prefix/lib/pkgconfig:$prefix/lib/$(gcc -print-multiarch)/pkgconfig
    export PKG_CONFIG_PATH
    gcc -std=c11 -Wall -Werror tests/consumer/consumer.c -o build/consumer/pc_shared \
        $(pkg-config --cflags --libs weft) -Wl,-rpath,"$(pkg-config --variable=libdir weft)"
    gcc -std=c11 -Wall -Werror tests/consumer/consumer.c -o build/consumer/pc_static \
        $(pkg-config --cflags weft) "$(pkg-config --variable=libdir weft)/libweft.a" -pthread
    build/consumer/pc_shared && build/consumer/pc_static
    if nm -D --defined-only "$(pkg-config --variable=libdir weft)/libweft.so" | awk '{print $3}' \
        | grep -v '^weft_[a-z0-9]' | grep -q .; then
        echo "libweft.so exports symbols outside weft_*"; exit 1
    fi
    cmake -S tests/consumer/subproject -B build/vendored -DWEFT_SOURCE_DIR="$root" >/dev/null
    cmake --build build/vendored -j"$jobs" >/dev/null
    build/vendored/consumer_vendored
    echo "consumer builds and runs (find_package, pkg-config, add_subdirectory; static and shared); exports are weft_* only"

    say "libweft_hook: every way docs/hooks.md shows, each line as written"
    # hook_app names no hooked call itself (as a program around hiredis),
    # so the linker keeps the hook only if the documented line does; it
    # exits 1 when weft_hook_active() says no. gcc links with --as-needed
    # by default on Debian, which is what used to drop the hook.
    libdir=$(pkg-config --variable=libdir weft)
    hk=build/consumer/hook
    mkdir -p "$hk"
    cp tests/consumer/hook_app.c "$hk/app.c"
    # 1. The command line. CPATH and LIBRARY_PATH stand for an install in
    #    /usr/local, so the line itself is the documented one.
    (cd "$hk" && CPATH=$prefix/include LIBRARY_PATH=$libdir \
        cc app.c -lweft_hook -lweft -lhiredis && LD_LIBRARY_PATH=$libdir ./a.out)
    # 2. pkg-config.
    (cd "$hk" && cc app.c $(pkg-config --cflags --libs weft_hook) -lhiredis -o app_pc &&
        LD_LIBRARY_PATH=$libdir ./app_pc)
    # 3. The CMake target (tests/consumer/CMakeLists.txt), installed and vendored.
    build/consumer/consumer_hook
    build/vendored/consumer_vendored_hook
    # 4. LD_PRELOAD from the private prefix, into a program linked with
    #    -lweft only, and into programs not linked with libweft at all:
    #    the hook finds libweft.so beside it (RUNPATH $ORIGIN), without
    #    LD_LIBRARY_PATH. hook_app also runs system() under the preload.
    (cd "$hk" && cc app.c -I"$prefix/include" -L"$libdir" -Wl,-rpath,"$libdir" -lweft -o app_plain)
    if "$hk/app_plain"; then echo "app_plain: the hook is active without being linked"; exit 1; fi
    LD_PRELOAD=$libdir/libweft_hook.so.0 "$hk/app_plain"
    LD_PRELOAD=$libdir/libweft_hook.so.0 /bin/true
    LD_PRELOAD=$libdir/libweft_hook.so.0 sh -c true
    LD_PRELOAD=$libdir/libweft_hook.so.0 timeout 10 true
    # WEFT_REQUIRE_HOOK=1 aborts a program without the hook at weft_run,
    # with one line on stderr, and lets a hooked one run.
    if WEFT_REQUIRE_HOOK=1 build/consumer/pc_shared 2>"$hk/require.err"; then
        echo "WEFT_REQUIRE_HOOK=1 did not stop a program without the hook"; exit 1
    fi
    grep -q "WEFT_REQUIRE_HOOK=1 but libweft_hook is not active" "$hk/require.err"
    (cd "$hk" && WEFT_REQUIRE_HOOK=1 LD_LIBRARY_PATH=$libdir ./a.out)
    WEFT_REQUIRE_HOOK=1 LD_PRELOAD=$libdir/libweft_hook.so.0 build/consumer/pc_shared
    echo "libweft_hook: command line, pkg-config, CMake target (installed and vendored), LD_PRELOAD (also into /bin/true, sh, timeout) and WEFT_REQUIRE_HOOK all work"
    ;;
fault)
    say "fault injection: every failure point of every scenario (clang, ASan+UBSan)"
    build build/fault -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
        -DWEFT_SANITIZE=address,undefined -DWEFT_FAULT_INJECTION=ON
    (cd build/fault && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest -R '^fault$' --output-on-failure)
    ;;
fuzz)
    secs=${WEFT_FUZZ_SECONDS:-60}
    say "libFuzzer: each target for ${secs}s (clang, ASan+UBSan)"
    cmake -S "$root" -B build/fuzz -DWEFT_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_COMPILER=clang -DWEFT_SANITIZE=address,undefined -DWEFT_BUILD_FUZZERS=ON \
        -DWEFT_FAULT_INJECTION=ON \
        -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_EXAMPLES=OFF -DWEFT_BUILD_BENCH=OFF >/dev/null
    cmake --build build/fuzz -j"$jobs"
    for name in addr sched; do
        # New inputs go to a scratch corpus; the seeds in the repo stay as they are.
        mkdir -p "build/fuzz/corpus/$name"
        (cd build/fuzz && UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            "tests/fuzz/fuzz_$name" -max_total_time="$secs" -max_len=512 -timeout=20 \
            -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="crash-$name-" \
            "corpus/$name" "$root/tests/fuzz/corpus/$name" 2>&1 | tail -12)
    done
    ;;
soak)
    say "soak: the echo server under mixed abuse for ${WEFT_SOAK_SECONDS:-60}s"
    build build/release -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=gcc >/dev/null
    tests/soak.sh build/release/examples/echo_server build/release/tests/soak_client
    ;;
arm64)
    if [ "$(uname -m)" = aarch64 ]; then
        say "arm64: this machine is arm64, so the other stages ran the suites natively; nothing to emulate"
        continue
    fi
    say "arm64: cross-built (gcc-aarch64-linux-gnu, -Werror, release), every suite under qemu-aarch64"
    scripts/deps.sh gcc-aarch64-linux-gnu qemu-user libc6:arm64 check:arm64 libboost-context-dev:arm64 \
        gdb-multiarch
    t0=$SECONDS
    build build/arm64 -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchain-aarch64-linux-gnu.cmake" \
        -DCMAKE_CROSSCOMPILING_EMULATOR=qemu-aarch64
    # ctest runs each test program through the emulator (the gdb test runs
    # its target under it and debugs it with gdb-multiarch through qemu's
    # gdbstub). The randomized stress runs are shortened (WEFT_TEST_QUICK),
    # as under valgrind and TSan: emulated, the full mutex stress with
    # migration outlasts its timeout. What qemu cannot prove is in
    # docs/testing.md.
    echo "shortened: WEFT_TEST_QUICK=1 (the randomized stress runs, as under valgrind and TSan)"
    (cd build/arm64 && WEFT_TEST_QUICK=1 ctest -j"$jobs" --output-on-failure -LE mt)
    say "arm64: the same suites with two workers (label mt), under qemu-aarch64"
    (cd build/arm64 && WEFT_TEST_QUICK=1 ctest -j"$jobs" --output-on-failure -L mt)
    say "arm64: the echo demo, server and verifying client both under qemu-aarch64"
    BUILD=build/arm64 RUNNER=qemu-aarch64 PORT=7017 scripts/demo.sh
    echo "arm64 stage: $((SECONDS - t0)) s (build, tests, demo)"
    ;;
*) echo "unknown stage $stage" >&2; exit 2 ;;
esac
done
say "all stages passed: $stages"
