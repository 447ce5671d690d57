/* actors.h - helpers for the synchronisation suites (check_sync, check_chan,
 * check_group): running a scenario under a given worker count, seeded
 * randomness, and "actors", fibers that each run one operation at a time on
 * command so a model-based test can drive them step by step.
 *
 * Determinism: with one worker the run queue is FIFO and nothing runs
 * except when the controller yields, so after settle() every actor is
 * either back waiting for its next command or parked inside the operation
 * it was given, and the order in which woken fibers ran is the order in
 * which they were woken. The model tests rely on that. With several
 * workers the same holds as long as the controller and every actor share
 * one worker: actors are always spawned pinned (weft_attr.pinned = 1; with
 * one worker that changes nothing), and a model test runs its controller
 * through run_pinned(), as a pinned fiber, since the main fiber may
 * migrate. Fibers pinned together are never run by another worker, and a
 * fiber they wake goes on their worker's run queue.
 *
 * Deadlines are made to expire on command: a "timed" operation is given a
 * deadline far in the future, and actor_expire() fires that fiber's
 * deadline timer exactly as the wheel would (weft__fiber_timeout), so the
 * real timeout path runs at a moment the model chooses.
 */
#ifndef WEFT_ACTORS_H
#define WEFT_ACTORS_H

#include "internal.h"
#include "waitq.h"
#include "testutil.h"

#include <inttypes.h>
#include <stdio.h>

/* ck_assert on every success is slow in hot loops; this calls into Check
 * only on failure and always names the seed. */
extern uint64_t test_seed_value;
#define REQUIRE(cond, ...) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "FAILED with WEFT_TEST_SEED=%" PRIu64 "\n", test_seed_value); \
            ck_abort_msg(__VA_ARGS__); \
        } \
    } while (0)

/* ---------------------------------------------------------- randomness */

static inline uint64_t test_seed(void)
{
    const char *s = getenv("WEFT_TEST_SEED");
    if (s && *s)
        return strtoull(s, NULL, 0);
    return (uint64_t)weft_now() ^ ((uint64_t)getpid() << 32);
}

static inline int test_quick(void)
{
    const char *s = getenv("WEFT_TEST_QUICK");
    return s && *s && *s != '0';
}

static inline uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: good enough, and one word of state */
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static inline int rng_below(uint64_t *s, int n) { return (int)(rng_next(s) % (uint64_t)n); }

/* ------------------------------------------------------- worker counts */

/* Runs body(arg) in a fresh runtime with `workers` workers and checks that
 * it finished and left no fiber or stack behind. Every count is supported,
 * so any failure of weft_run fails the test. */
static inline void run_workers(int workers, void (*body)(void *), void *arg)
{
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = workers;
    int r = weft_run(&cfg, body, arg);
    ck_assert_msg(r == 0, "weft_run(workers=%d): %s", workers, weft_strerror(r));
    weft_stats st;
    weft_stats_get(&st);
    ck_assert_uint_eq(st.runtimes, 0);
    ck_assert_uint_eq(st.fibers_live, 0);
    ck_assert_uint_eq(st.stacks_in_use, 0);
}

/* Runs body(arg) in a pinned fiber of the caller's worker and waits for
 * it: the controller of a model test stays on one worker with its actors.
 * From the main fiber of a run_workers() body. */
struct pinned_call { void (*body)(void *); void *arg; };

static inline void *pinned_main(void *p)
{
    struct pinned_call *c = p;
    c->body(c->arg);
    return NULL;
}

static inline void run_pinned(void (*body)(void *), void *arg)
{
    struct pinned_call c = { body, arg };
    weft_attr attr;
    weft_attr_init(&attr);
    attr.pinned = 1;
    attr.name = "controller";
    weft_fiber *h;
    int r = weft_spawn(&h, &attr, pinned_main, &c);
    ck_assert_msg(r == 0, "spawn controller: %s", weft_strerror(r));
    r = weft_join(h, NULL, WEFT_FOREVER);
    ck_assert_msg(r == 0, "join controller: %s", weft_strerror(r));
}

/* ---------------------------------------------------------------- actors */

struct actor;
typedef int (*actor_op)(struct actor *a);

struct actor {
    weft_fiber *h;
    struct weft__fiber *f;  /* its control block, to wake and expire it */
    actor_op op;            /* the command */
    void *ctx;
    int narg;
    int arg[8];
    int64_t lval[8];
    int cres[8];            /* per-clause results of a select */
    int64_t deadline;
    volatile int busy;      /* 1 from the command until the op returned */
    int result;             /* the op's return value */
    int quit;
};

/* Lets every runnable fiber run until none is left but the caller. */
static inline void settle(void)
{
    do
        weft_yield();
    while (!weft__rq_empty(weft__worker()));
}

/* Waits for the next command; cannot be cancelled, so a cancelled actor
 * keeps taking commands (its blocking operations then return -ECANCELED). */
static inline void actor_wait_command(void)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    self->wait.kind = WEFT__W_SLEEP;
    self->wait.obj = NULL;
    self->wait.unlink = NULL;
    self->wait.uncancellable = 1;
    weft__park(w, self, WEFT_FOREVER, NULL);
}

static inline void *actor_main(void *p)
{
    struct actor *a = p;
    a->f = weft__self(weft__worker());
    for (;;) {
        actor_wait_command();
        if (a->quit)
            return NULL;
        a->result = a->op(a);
        a->busy = 0;
    }
}

static inline void actor_start(struct actor *a, void *ctx)
{
    memset(a, 0, sizeof *a);
    a->ctx = ctx;
    weft_attr attr;
    weft_attr_init(&attr);
    attr.pinned = 1;                /* stays on the controller's worker */
    int r = weft_spawn(&a->h, &attr, actor_main, a);
    ck_assert_msg(r == 0, "spawn actor: %s", weft_strerror(r));
    settle();
    ck_assert_ptr_nonnull(a->f);
}

/* Gives an idle actor its next operation and lets everything settle. */
static inline void actor_issue(struct actor *a, actor_op op, int64_t deadline)
{
    REQUIRE(!a->busy, "actor is busy");
    a->op = op;
    a->deadline = deadline;
    a->busy = 1;
    a->result = 12345;
    weft__wake(a->f, 0);
    settle();
}

static inline void actor_stop(struct actor *a)
{
    REQUIRE(!a->busy, "stopping a busy actor");
    a->quit = 1;
    weft__wake(a->f, 0);
    int r = weft_join(a->h, NULL, WEFT_FOREVER);
    REQUIRE(r == 0, "join actor: %s", weft_strerror(r));
    a->h = NULL;
    a->f = NULL;
}

/* Makes the actor's current deadline expire now, as the wheel would. */
static inline void actor_expire(struct actor *a)
{
    struct weft__fiber *f = a->f;
    REQUIRE(f->state == WEFT__F_PARKED && weft__timer_armed(&f->timer),
            "actor has no armed deadline");
    weft__wheel_del(&f->w->wheel, &f->timer);
    f->timer.fn(&f->timer);
    settle();
}

static inline void actor_cancel(struct actor *a)
{
    int r = weft_cancel(a->h);
    REQUIRE(r == 0, "cancel actor: %s", weft_strerror(r));
    settle();
}

/* A deadline that will not pass during a test but arms a timer. */
static inline int64_t far_deadline(void) { return weft_now() + (int64_t)3600 * 1000000000; }

#endif
