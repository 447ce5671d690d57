/* gdb_target.c - the program tests/check_gdb.sh points gdb at.
 *
 * It starts a runtime whose fibers each park in a function of their own, so
 * that `weft bt <id>` of each one must name that function, then calls
 * gdb_target_stop_here() from the running main fiber:
 *   gdb_target          returns from it, cleans up and exits 0 (the test
 *                       sets a breakpoint there: the live-process case);
 *   gdb_target abort    calls abort() in it, for a kernel core dump.
 *
 * The fibers at the stop point:
 *   main          running, in gdb_target_stop_here()
 *   sleeper       parked on a 60 s sleep, in parked_in_sleep_fn()
 *   joiner        parked joining the sleeper, in parked_in_join_fn(),
 *                 on a 64 KiB stack
 *   chan-reader   parked on a channel receive, in parked_in_chan_fn()
 *   mutex-waiter  parked on a mutex main holds, in parked_in_mutex_fn()
 *   pipe-reader   parked reading an empty pipe, in parked_in_read_fn()
 *   yielder       runnable, suspended in weft_yield() from parked_in_yield_fn()
 *   unstarted     runnable, spawned and never run yet
 * The functions are noinline and built at -O0/-Og so each keeps a frame.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <weft.h>

#include "internal.h"

/* weft-gdb.py reads the runtime's private structures by their types. This
 * program is built with -g whatever the build type, so naming them here
 * puts them in its debug info even when libweft itself has none (Release):
 * the test then exercises the extension in every build. */
struct gdb_target_types {
    struct weft__rt *rt;
    enum weft__fstate fstate;
    enum weft__wait_kind wait_kind;
    enum weft__fflag fflag;
    enum weft__guard_kind guard_kind;
} gdb_target_types;

#define NOINLINE __attribute__((noinline))

static weft_chan *chan;
static weft_mutex mutex;
static int pipefd[2];
static volatile int stop_yielding;
static int abort_at_stop;

static void check(int r, const char *what)
{
    if (r < 0) {
        fprintf(stderr, "gdb_target: %s: %s\n", what, weft_strerror(r));
        exit(2);
    }
}

/* The volatile counters keep each fiber's wait inside its own frame (no
 * tail call), so the caller's return address names that function. */
static volatile int sink;

NOINLINE static void *parked_in_sleep_fn(void *arg)
{
    (void)arg;
    int r = weft_sleep_ms(60000);
    sink += r;
    return NULL;
}

NOINLINE static void *parked_in_join_fn(void *arg)
{
    weft_fiber *sleeper = arg;
    int r = weft_join(sleeper, NULL, WEFT_FOREVER);
    sink += r;
    return NULL;
}

NOINLINE static void *parked_in_chan_fn(void *arg)
{
    (void)arg;
    int v = 0;
    int r = weft_chan_recv(chan, &v, WEFT_FOREVER);
    sink += r + v;
    return NULL;
}

NOINLINE static void *parked_in_mutex_fn(void *arg)
{
    (void)arg;
    int r = weft_mutex_lock(&mutex, WEFT_FOREVER);
    if (r == 0)
        weft_mutex_unlock(&mutex);
    sink += r;
    return NULL;
}

NOINLINE static void *parked_in_read_fn(void *arg)
{
    (void)arg;
    char c;
    ssize_t r = weft_read(pipefd[0], &c, 1, WEFT_FOREVER);
    sink += (int)r;
    return NULL;
}

NOINLINE static void *parked_in_yield_fn(void *arg)
{
    (void)arg;
    while (!stop_yielding && !weft_cancelled())
        weft_yield();
    sink++;
    return NULL;
}

NOINLINE static void *never_started_fn(void *arg)
{
    (void)arg;
    sink++;
    return NULL;
}

/* The test's breakpoint; with "abort", where the core is dumped. */
NOINLINE void gdb_target_stop_here(void);
NOINLINE void gdb_target_stop_here(void)
{
    if (abort_at_stop)
        abort();
    sink++;
}

static weft_fiber *spawn(const char *name, size_t stack, weft_fn fn, void *arg)
{
    weft_attr a;
    weft_attr_init(&a);
    a.name = name;
    a.stack_size = stack;
    weft_fiber *f;
    check(weft_spawn(&f, &a, fn, arg), name);
    return f;
}

static void main_fiber(void *arg)
{
    (void)arg;
    check(weft_chan_open(&chan, sizeof(int), 0), "chan_open");
    check(weft_mutex_init(&mutex), "mutex_init");
    check(weft_mutex_lock(&mutex, WEFT_FOREVER), "mutex_lock");
    if (pipe(pipefd) != 0) {
        perror("gdb_target: pipe");
        exit(2);
    }

    weft_fiber *sleeper = spawn("sleeper", 0, parked_in_sleep_fn, NULL);
    weft_fiber *joiner = spawn("joiner", 64 * 1024, parked_in_join_fn, sleeper);
    weft_fiber *reader = spawn("chan-reader", 0, parked_in_chan_fn, NULL);
    weft_fiber *locker = spawn("mutex-waiter", 0, parked_in_mutex_fn, NULL);
    weft_fiber *piper = spawn("pipe-reader", 0, parked_in_read_fn, NULL);
    weft_fiber *yielder = spawn("yielder", 0, parked_in_yield_fn, NULL);
    /* Twice round the run queue: every fiber above has run to its wait. */
    weft_yield();
    weft_yield();
    weft_fiber *unstarted = spawn("unstarted", 0, never_started_fn, NULL);

    gdb_target_stop_here();

    /* Live run: wake everyone the way they wait, then join them all. */
    stop_yielding = 1;
    check(weft_cancel(sleeper), "cancel sleeper");
    check(weft_chan_close(chan), "chan_close");
    check(weft_mutex_unlock(&mutex), "mutex_unlock");
    close(pipefd[1]);
    weft_fiber *all[] = { joiner, reader, locker, piper, yielder, unstarted };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        check(weft_join(all[i], NULL, WEFT_FOREVER), "join");
    close(pipefd[0]);
    weft_chan_free(chan);
    puts("gdb_target: done");
}

int main(int argc, char **argv)
{
    abort_at_stop = argc > 1 && strcmp(argv[1], "abort") == 0;
    int r = weft_run(NULL, main_fiber, NULL);
    if (r != 0) {
        fprintf(stderr, "gdb_target: weft_run: %s\n", weft_strerror(r));
        return 1;
    }
    return 0;
}
