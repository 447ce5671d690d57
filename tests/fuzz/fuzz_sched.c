/* fuzz_sched.c - libFuzzer target: the input is a program of weft API
 * operations run inside one weft_run.
 *
 * Each byte pair (op, arg) is one operation: spawn (the child runs the next
 * few pairs as its own program), yield, sleep 0-2 ms, cancel, join, detach,
 * channel send/recv/close with 0-2 ms deadlines, select over both channels,
 * mutex lock/unlock. Every fiber runs a finite program whose waits all have
 * deadlines, so every input terminates. Checked after each operation: its
 * result is in the set the header documents for that situation; at the
 * end: weft_run returned 0, the mutex was consistent, and weft_stats shows
 * nothing left (no runtime, fiber, stack or mapping). ASan/UBSan watch the
 * rest.
 *
 * The first byte is a fault countdown: in a WEFT_FAULT_INJECTION build
 * (the fuzz stage's), byte k > 0 makes weft's kth resource call fail once
 * (src/fault.h), so the fuzzer also explores error paths in the middle of
 * arbitrary schedules; weft_run may then fail cleanly, nothing else
 * changes. Other builds skip the byte, so one corpus serves both.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#ifdef WEFT_FAULT_INJECTION
#include "fault.h"
#endif

#define MAX_FIBERS 48
#define MAX_DEPTH  3

static weft_fiber *handles[MAX_FIBERS];  /* joinable fibers not yet joined */
/* A slot whose fiber some fiber is joining right now: kept reserved so the
 * handle can go back if the join times out, and skipped by everyone else. */
static char busy_mark;
#define BUSY ((weft_fiber *)(void *)&busy_mark)
static int n_spawned, live;
static weft_chan *chans[2];
static weft_mutex mu;

static void fail(const char *op, long r)
{
    fprintf(stderr, "fuzz_sched: %s returned %ld (%s)\n", op, r, weft_strerror((int)r));
    abort();
}

/* r must be 0 or one of the listed negatives (0-terminated). */
static void expect(const char *op, long r, const int *ok)
{
    if (r == 0)
        return;
    for (; *ok; ok++)
        if (r == -*ok)
            return;
    fail(op, r);
}
#define EXPECT(op, r, ...) expect(op, r, (const int[]){ __VA_ARGS__, 0 })

struct prog { const uint8_t *p; size_t n; int depth; };

static void run_prog(struct prog pg);

static void *child(void *arg)
{
    struct prog *pg = arg;
    run_prog(*pg);
    free(pg);
    live--;
    return NULL;
}

static int64_t dl(uint8_t a) { return weft_deadline_ms(a % 3); }

static void run_prog(struct prog pg)
{
    int held = 0;   /* this fiber owns mu */
    for (size_t i = 0; i + 1 < pg.n; i += 2) {
        uint8_t op = pg.p[i] % 12, a = pg.p[i + 1];
        int slot = a % MAX_FIBERS;
        int r;
        switch (op) {
        case 0: { /* spawn: the child runs the next (a % 8) pairs */
            size_t len = 2u * (a % 8u);
            if (len > pg.n - i - 2)
                len = pg.n - i - 2;
            if (pg.depth < MAX_DEPTH && n_spawned < 4 * MAX_FIBERS) {
                struct prog *c = malloc(sizeof *c);
                if (!c)
                    abort();
                *c = (struct prog){ pg.p + i + 2, len, pg.depth + 1 };
                int free_slot = -1;
                for (int k = 0; k < MAX_FIBERS && free_slot < 0; k++)
                    if (!handles[k])
                        free_slot = k;
                weft_fiber *f = NULL;
                r = weft_spawn(free_slot >= 0 ? &f : NULL, NULL, child, c);
                EXPECT("spawn", r, ENOMEM);
                if (r == 0) {
                    n_spawned++, live++;
                    if (free_slot >= 0)
                        handles[free_slot] = f;
                } else {
                    free(c);
                }
            }
            i += len;
            break;
        }
        case 1: weft_yield(); break;
        case 2: EXPECT("sleep", weft_sleep_ms(a % 3), ECANCELED); break;
        case 3:
            if (handles[slot] && handles[slot] != BUSY)
                EXPECT("cancel", weft_cancel(handles[slot]), ESRCH);
            break;
        case 4: {
            weft_fiber *f = handles[slot];
            if (!f || f == BUSY)
                break;
            /* Reserved while joining so no one else joins or detaches it
             * meanwhile; the handle goes back if the join does not finish. */
            handles[slot] = BUSY;
            r = weft_join(f, NULL, dl(a));
            EXPECT("join", r, ETIMEDOUT, ECANCELED, EDEADLK);
            handles[slot] = r == 0 ? NULL : f;
            break;
        }
        case 5: {
            weft_fiber *f = handles[slot];
            if (!f || f == BUSY || f == weft_self())
                break;
            handles[slot] = NULL;
            EXPECT("detach", weft_detach(f), ESRCH);
            break;
        }
        case 6: {
            int v = a;
            EXPECT("send", weft_chan_send(chans[a & 1], &v, dl(a >> 1)), EPIPE, ETIMEDOUT, ECANCELED);
            break;
        }
        case 7: {
            int v;
            EXPECT("recv", weft_chan_recv(chans[a & 1], &v, dl(a >> 1)), EPIPE, ETIMEDOUT, ECANCELED);
            break;
        }
        case 8:
            if (a % 4 == 0)   /* rarely: a closed channel ends most traffic */
                EXPECT("close", weft_chan_close(chans[a & 1]), EPIPE);
            break;
        case 9: {
            int v[2] = { a, a };
            weft_clause cl[2] = {
                { chans[0], (a & 1) ? WEFT_SEND : WEFT_RECV, &v[0], 0 },
                { chans[1], (a & 2) ? WEFT_SEND : WEFT_RECV, &v[1], 0 },
            };
            r = weft_select(cl, 2, dl(a >> 2));
            if (r == 0 || r == 1) {
                if (cl[r].result != 0 && cl[r].result != -EPIPE)
                    fail("select clause", cl[r].result);
            } else {
                EXPECT("select", r, ETIMEDOUT, ECANCELED);
            }
            break;
        }
        case 10:
            r = weft_mutex_lock(&mu, dl(a));
            if (held) {
                if (r != -EDEADLK)
                    fail("relock", r);
            } else {
                EXPECT("lock", r, ETIMEDOUT, ECANCELED);
                held = r == 0;
            }
            break;
        case 11:
            r = weft_mutex_unlock(&mu);
            if (held ? r != 0 : r != -EPERM)
                fail("unlock", r);
            held = 0;
            break;
        }
    }
    if (held && weft_mutex_unlock(&mu) != 0)
        fail("final unlock", -1);
}

static void fuzz_main(void *arg)
{
    struct prog *pg = arg;
    chans[0] = chans[1] = NULL;
    int r0 = weft_chan_open(&chans[0], sizeof(int), 0);
    int r1 = weft_chan_open(&chans[1], sizeof(int), 2);
    if (r0 || r1) {
        EXPECT("chan_open", r0 ? r0 : r1, ENOMEM);
        weft_chan_free(chans[0]);
        weft_chan_free(chans[1]);
        return;
    }
    weft_mutex_init(&mu);
    run_prog(*pg);
    /* Wind down: close the channels (wakes their waiters), let every
     * fiber finish its finite program, then join what is still joinable. */
    weft_chan_close(chans[0]);
    weft_chan_close(chans[1]);
    while (live > 0)
        weft_sleep_ms(1);
    for (int k = 0; k < MAX_FIBERS; k++)
        if (handles[k]) {
            int r = weft_join(handles[k], NULL, -1);
            EXPECT("final join", r, ESRCH);
            handles[k] = NULL;
        }
    if (weft_mutex_trylock(&mu) != 0)
        fail("mutex left locked", -1);
    weft_mutex_unlock(&mu);
    weft_chan_free(chans[0]);
    weft_chan_free(chans[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 512)
        return 0;
    memset(handles, 0, sizeof handles);
    n_spawned = live = 0;
    if (size == 0)
        return 0;
    unsigned k = data[0];
    struct prog pg = { data + 1, size - 1, 0 };
#ifdef WEFT_FAULT_INJECTION
    weft__fault_arm(k, 0, 0);
#else
    (void)k;
#endif
    weft_config c;
    weft_config_init(&c);
    c.stack_size = 64 * 1024;
    int r = weft_run(&c, fuzz_main, &pg);
#ifdef WEFT_FAULT_INJECTION
    int fired = weft__fault_fired(NULL);
    weft__fault_arm(0, 0, 0);
    if (r != 0 && !(fired && r < 0 && r > -4096))
        fail("weft_run", r);
#else
    if (r != 0)
        fail("weft_run", r);
#endif
    weft_stats st;
    weft_stats_get(&st);
    if (st.runtimes || st.fibers_live || st.stacks_in_use || st.stack_bytes_mapped || st.map_entries)
        fail("leftovers", (long)st.fibers_live);
    return 0;
}
