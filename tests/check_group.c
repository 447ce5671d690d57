/* check_group.c - cancellation groups (src/group.c) and back-off
 * (src/backoff.c).
 *
 * Groups: members run and leave as they return; cancel reaches members
 * parked in any blocking call (sleep, channel, mutex) and refuses new ones;
 * wait honours deadlines and cancellation and leaves no waiter behind; a
 * member cannot wait for its own group; free refuses a busy group; bad
 * input and calls outside fibers; stress cases (cancel racing with members
 * that exit, spawn and block; fast spawn/leave churn) for two workers. Back-off: the delays grow, stay within
 * [d/2, d] and the cap, the retry limit and deadline are honoured, the
 * sleep is real and cancellable.
 */
#include "actors.h"

uint64_t test_seed_value;

static const int worker_counts[] = { 1, 2 };
#define FOR_WORKERS(body, arg) \
    for (size_t wi_ = 0; wi_ < sizeof worker_counts / sizeof *worker_counts; wi_++) \
        run_workers(worker_counts[wi_], body, arg)

/* Tests that check one-worker orderings (settle(), order arrays, waiter
 * counts right after settle()) stay deterministic with two workers: their
 * body runs as a pinned controller (run_pinned(); the main fiber may
 * migrate) and every fiber it spawns gets pinned_attr(), so they all share
 * the controller's worker and run in one-worker FIFO order (see
 * actors.h). With one worker the body runs as the main fiber and the
 * fibers are spawned unpinned, as before. The stress tests stay unpinned:
 * they are the real concurrency tests. */
struct det_call { void (*body)(void *); void *arg; };

static void det_main(void *p)
{
    struct det_call *c = p;
    if (weft__worker()->mt)
        run_pinned(c->body, c->arg);
    else
        c->body(c->arg);
}

#define FOR_WORKERS_PINNED(body, arg) \
    do { \
        struct det_call dc_ = { body, arg }; \
        FOR_WORKERS(det_main, &dc_); \
    } while (0)

/* Spawn attributes for the fibers of a FOR_WORKERS_PINNED body: pinned
 * when the runtime has several workers. One controller at a time, so one
 * static object does. */
static const weft_attr *pinned_attr(void)
{
    static weft_attr a;
    weft_attr_init(&a);
    a.pinned = weft__worker()->mt;
    return &a;
}

/* ------------------------------------------------------------ groups */

static _Atomic int finished;

static void *short_job(void *arg)
{
    weft_sleep_ms((intptr_t)arg);
    finished++;
    return NULL;
}

static void body_group_wait(void *unused)
{
    (void)unused;
    weft_group *g;
    finished = 0;
    ck_assert_int_eq(weft_group_open(&g), 0);
    ck_assert_int_eq(weft_group_wait(g, WEFT_FOREVER), 0);       /* empty: at once */
    for (intptr_t i = 0; i < 10; i++)
        ck_assert_int_eq(weft_group_spawn(g, pinned_attr(), short_job, (void *)(i % 3)), 0);
    ck_assert_int_eq(weft_group_size(g), 10);
    ck_assert_int_eq(weft_group_free(g), -EBUSY);
    ck_assert_int_eq(weft_group_wait(g, weft_now() - 1), -ETIMEDOUT);
    ck_assert_uint_eq(weft__group_waiters(g), 0);
    ck_assert_int_eq(weft_group_wait(g, WEFT_FOREVER), 0);
    ck_assert_int_eq(finished, 10);
    ck_assert_int_eq(weft_group_size(g), 0);
    ck_assert_int_eq(weft_group_free(g), 0);
}

START_TEST(group_wait_all)
{
    FOR_WORKERS_PINNED(body_group_wait, NULL);
}
END_TEST

struct blockers {
    weft_chan *ch;
    weft_mutex m;
    _Atomic int cancelled_seen;
};

static void *block_sleep(void *p)
{
    struct blockers *b = p;
    if (weft_sleep_ms(-1) == -ECANCELED)
        b->cancelled_seen++;
    return NULL;
}

static void *block_chan(void *p)
{
    struct blockers *b = p;
    int64_t v;
    if (weft_chan_recv(b->ch, &v, WEFT_FOREVER) == -ECANCELED)
        b->cancelled_seen++;
    return NULL;
}

static void *block_mutex(void *p)
{
    struct blockers *b = p;
    if (weft_mutex_lock(&b->m, WEFT_FOREVER) == -ECANCELED)
        b->cancelled_seen++;
    return NULL;
}

struct scene { struct blockers b; weft_group *g; };

static void *spawner(void *p)
{
    /* A member that spawns more members, then blocks. */
    struct scene *s = p;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(weft_group_spawn(s->g, pinned_attr(), block_sleep, &s->b), 0);
    return block_sleep(&s->b);
}

static void body_group_cancel(void *unused)
{
    (void)unused;
    struct scene s;
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(weft_chan_open(&s.b.ch, sizeof(int64_t), 0), 0);
    ck_assert_int_eq(weft_mutex_init(&s.b.m), 0);
    ck_assert_int_eq(weft_mutex_lock(&s.b.m, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_group_open(&s.g), 0);
    weft_attr attr;
    weft_attr_init(&attr);
    attr.name = "member";
    attr.pinned = pinned_attr()->pinned;
    ck_assert_int_eq(weft_group_spawn(s.g, &attr, block_sleep, &s.b), 0);
    ck_assert_int_eq(weft_group_spawn(s.g, pinned_attr(), block_chan, &s.b), 0);
    ck_assert_int_eq(weft_group_spawn(s.g, pinned_attr(), block_mutex, &s.b), 0);
    ck_assert_int_eq(weft_group_spawn(s.g, pinned_attr(), spawner, &s), 0);
    settle();
    ck_assert_int_eq(weft_group_size(s.g), 7);
    ck_assert_int_eq(weft_group_wait(s.g, weft_deadline_ms(5)), -ETIMEDOUT);
    ck_assert_uint_eq(weft__group_waiters(s.g), 0);
    ck_assert_int_eq(weft_group_cancel(s.g), 0);
    ck_assert_int_eq(weft_group_cancel(s.g), 0);                 /* twice: harmless */
    ck_assert_int_eq(weft_group_spawn(s.g, pinned_attr(), block_sleep, &s.b), -ECANCELED);
    ck_assert_int_eq(weft_group_wait(s.g, weft_deadline_ms(1000)), 0);
    ck_assert_int_eq(s.b.cancelled_seen, 7);
    ck_assert_int_eq(weft_group_size(s.g), 0);
    size_t ns, nr;
    weft__chan_waiters(s.b.ch, &ns, &nr);
    ck_assert_uint_eq(nr, 0);
    ck_assert_uint_eq(weft__mutex_waiters(&s.b.m), 0);
    ck_assert_int_eq(weft_mutex_unlock(&s.b.m), 0);
    ck_assert_int_eq(weft_group_free(s.g), 0);
    weft_chan_free(s.b.ch);
}

START_TEST(group_cancel_all)
{
    FOR_WORKERS_PINNED(body_group_cancel, NULL);
}
END_TEST

static void *wait_own_group(void *p)
{
    return (void *)(intptr_t)weft_group_wait(p, WEFT_FOREVER);
}

static void *group_waiter(void *p)
{
    return (void *)(intptr_t)weft_group_wait(p, WEFT_FOREVER);
}

static intptr_t own_result;
static void *record_own_wait(void *p)
{
    own_result = (intptr_t)wait_own_group(p);
    return NULL;
}

static void body_group_errors(void *unused)
{
    (void)unused;
    weft_group *g;
    uint64_t fake[8] = { 0 };
    weft_group *bogus = (weft_group *)(void *)fake;
    ck_assert_int_eq(weft_group_open(&g), 0);
    ck_assert_int_eq(weft_group_spawn(NULL, NULL, short_job, NULL), -EINVAL);
    ck_assert_int_eq(weft_group_spawn(bogus, NULL, short_job, NULL), -EINVAL);
    ck_assert_int_eq(weft_group_spawn(g, NULL, NULL, NULL), -EINVAL);
    ck_assert_int_eq(weft_group_cancel(NULL), -EINVAL);
    ck_assert_int_eq(weft_group_wait(bogus, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_group_size(NULL), -EINVAL);
    ck_assert_int_eq(weft_group_free(bogus), -EINVAL);
    ck_assert_int_eq(weft_group_free(NULL), 0);

    /* A member waiting for its own group would wait forever. */
    own_result = 1;
    ck_assert_int_eq(weft_group_spawn(g, pinned_attr(), record_own_wait, g), 0);
    ck_assert_int_eq(weft_group_wait(g, WEFT_FOREVER), 0);
    ck_assert_int_eq(own_result, -EDEADLK);

    /* A cancelled waiter leaves nothing behind; the members go on. */
    ck_assert_int_eq(weft_group_spawn(g, pinned_attr(), short_job, (void *)(intptr_t)20), 0);
    weft_fiber *w;
    ck_assert_int_eq(weft_spawn(&w, pinned_attr(), group_waiter, g), 0);
    settle();
    ck_assert_uint_eq(weft__group_waiters(g), 1);
    ck_assert_int_eq(weft_group_free(g), -EBUSY);
    ck_assert_int_eq(weft_cancel(w), 0);
    void *res;
    ck_assert_int_eq(weft_join(w, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, -ECANCELED);
    ck_assert_uint_eq(weft__group_waiters(g), 0);
    ck_assert_int_eq(weft_group_size(g), 1);
    ck_assert_int_eq(weft_group_wait(g, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_group_free(g), 0);
}

START_TEST(group_errors)
{
    FOR_WORKERS_PINNED(body_group_errors, NULL);
    weft_group *g;
    ck_assert_int_eq(weft_group_open(NULL), -EINVAL);
    ck_assert_int_eq(weft_group_open(&g), 0);                    /* anywhere */
    ck_assert_int_eq(weft_group_spawn(g, NULL, short_job, NULL), -EPERM);
    ck_assert_int_eq(weft_group_cancel(g), -EPERM);
    ck_assert_int_eq(weft_group_wait(g, WEFT_FOREVER), -EPERM);
    ck_assert_int_eq(weft_group_free(g), 0);
}
END_TEST

/* Members still running when main returns are cancelled by the runtime and
 * still leave their group properly. */
static weft_group *leftover;
static void body_group_leftover(void *unused)
{
    (void)unused;
    static struct blockers b;
    ck_assert_int_eq(weft_group_open(&leftover), 0);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(weft_group_spawn(leftover, NULL, block_sleep, &b), 0);
}

START_TEST(group_members_outlive_main)
{
    run_workers(1, body_group_leftover, NULL);
    ck_assert_int_eq(weft_group_size(leftover), 0);
    ck_assert_int_eq(weft_group_free(leftover), 0);
}
END_TEST

/* Cancel while members exit: every round, members of several kinds run
 * at once - some return after a few yields, some block until cancelled
 * (sleep, semaphore, mutex, cond), some spawn further members (refused
 * once the group is cancelled), one cancels its own group - while the
 * controller cancels at a random moment and other fibers wait on the
 * group with short deadlines. Every member that was spawned must have run
 * and returned, the wait must end, nothing may be left queued. With two
 * workers the cancel walk races with members leaving on the other
 * worker. */
#include <stdatomic.h>

struct gstress {
    weft_group *g;
    weft_sem sem;                   /* never released: blocks until cancelled */
    weft_mutex m;                   /* held by the controller */
    weft_mutex cm;                  /* for the cond waiters */
    weft_cond c;                    /* never signalled */
    _Atomic int spawned, started, ended, errors;
    uint64_t seed;
};

static void *gs_member(void *p);

static void gs_spawn(struct gstress *x, intptr_t kind)
{
    int r = weft_group_spawn(x->g, NULL, gs_member, (void *)kind);
    if (r == 0)
        atomic_fetch_add(&x->spawned, 1);
    else if (r != -ECANCELED)
        atomic_fetch_add(&x->errors, 1);
}

static struct gstress gsx;

static void *gs_member(void *p)
{
    struct gstress *x = &gsx;
    intptr_t kind = (intptr_t)p;
    atomic_fetch_add(&x->started, 1);
    int r = 0;
    switch (kind % 8) {
    case 0: case 1: case 2:                    /* just leave, soon */
        for (intptr_t k = kind % 5; k > 0; k--)
            weft_yield();
        break;
    case 3:
        r = weft_sleep_ms(-1);
        if (r != -ECANCELED)
            atomic_fetch_add(&x->errors, 1);
        break;
    case 4:
        r = weft_sem_acquire(&x->sem, WEFT_FOREVER);
        if (r != -ECANCELED)
            atomic_fetch_add(&x->errors, 1);
        break;
    case 5:
        r = weft_mutex_lock(&x->m, WEFT_FOREVER);
        if (r != -ECANCELED)
            atomic_fetch_add(&x->errors, 1);
        break;
    case 6:
        r = weft_mutex_lock(&x->cm, WEFT_FOREVER);
        if (r != 0) {                          /* cancelled while cm was busy */
            if (r != -ECANCELED)
                atomic_fetch_add(&x->errors, 1);
            break;
        }
        r = weft_cond_wait(&x->c, &x->cm, WEFT_FOREVER);
        if (r != -ECANCELED && r != 0)
            atomic_fetch_add(&x->errors, 1);
        weft_mutex_unlock(&x->cm);
        break;
    default:                                   /* spawn more, then leave */
        for (int i = 0; i < 3; i++)
            gs_spawn(x, kind * 8 + i);
        break;
    }
    atomic_fetch_add(&x->ended, 1);
    return NULL;
}

static void *gs_self_canceller(void *p)
{
    struct gstress *x = p;
    weft_yield();
    if (weft_group_cancel(x->g) != 0)
        atomic_fetch_add(&x->errors, 1);
    if (!weft_cancelled())                     /* a member cancelling its group is cancelled too */
        atomic_fetch_add(&x->errors, 1);
    return NULL;
}

static void *gs_waiter(void *p)
{
    struct gstress *x = p;
    for (;;) {
        int r = weft_group_wait(x->g, weft_now() + 20000);
        if (r == 0)
            return NULL;
        if (r != -ETIMEDOUT) {
            atomic_fetch_add(&x->errors, 1);
            return NULL;
        }
    }
}

static void body_group_stress(void *unused)
{
    (void)unused;
    struct gstress *x = &gsx;
    uint64_t rs = test_seed_value;
    int rounds = test_quick() ? 20 : 200;
    for (int round = 0; round < rounds; round++) {
        memset(x, 0, sizeof *x);
        ck_assert_int_eq(weft_group_open(&x->g), 0);
        ck_assert_int_eq(weft_sem_init(&x->sem, 0), 0);
        ck_assert_int_eq(weft_mutex_init(&x->m), 0);
        ck_assert_int_eq(weft_mutex_init(&x->cm), 0);
        ck_assert_int_eq(weft_cond_init(&x->c), 0);
        ck_assert_int_eq(weft_mutex_lock(&x->m, WEFT_FOREVER), 0);
        weft_fiber *wt[4];
        for (int i = 0; i < 4; i++)
            ck_assert_int_eq(weft_spawn(&wt[i], NULL, gs_waiter, x), 0);
        int n = 16 + rng_below(&rs, 48);
        for (int i = 0; i < n; i++)
            gs_spawn(x, (intptr_t)rng_below(&rs, 1000));
        if (rng_below(&rs, 4) == 0) {
            int r = weft_group_spawn(x->g, NULL, gs_self_canceller, x);
            ck_assert_int_eq(r, 0);
            atomic_fetch_add(&x->spawned, 1);
            atomic_fetch_add(&x->started, 1);  /* it does not count itself */
            atomic_fetch_add(&x->ended, 1);
        }
        for (int k = rng_below(&rs, 8); k > 0; k--)
            weft_yield();
        ck_assert_int_eq(weft_group_cancel(x->g), 0);
        ck_assert_int_eq(weft_group_spawn(x->g, NULL, gs_member, NULL), -ECANCELED);
        ck_assert_int_eq(weft_group_wait(x->g, WEFT_FOREVER), 0);
        for (int i = 0; i < 4; i++)
            ck_assert_int_eq(weft_join(wt[i], NULL, WEFT_FOREVER), 0);
        ck_assert_int_eq(atomic_load(&x->errors), 0);
        ck_assert_int_eq(atomic_load(&x->started), atomic_load(&x->spawned));
        ck_assert_int_eq(atomic_load(&x->ended), atomic_load(&x->spawned));
        ck_assert_int_eq(weft_group_size(x->g), 0);
        ck_assert_uint_eq(weft__group_waiters(x->g), 0);
        ck_assert_uint_eq(weft__sem_waiters(&x->sem), 0);
        ck_assert_uint_eq(weft__mutex_waiters(&x->m), 0);
        ck_assert_uint_eq(weft__cond_waiters(&x->c), 0);
        ck_assert_uint_eq(weft__mutex_owner(&x->cm), 0);
        ck_assert_int_eq(weft_mutex_unlock(&x->m), 0);
        ck_assert_int_eq(weft_group_free(x->g), 0);
    }
}

START_TEST(group_stress_cancel_exit)
{
    FOR_WORKERS(body_group_stress, NULL);
}
END_TEST

/* Spawning and leaving at a high rate with no cancel: live must count
 * exactly, and a waiter must see zero only at the very end. */
struct gchurn { weft_group *g; _Atomic int done, errors; };
static struct gchurn gch;

static void *churn_leaf(void *p)
{
    (void)p;
    atomic_fetch_add(&gch.done, 1);
    return NULL;
}

static void *churn_member(void *p)
{
    intptr_t depth = (intptr_t)p;
    for (int i = 0; i < 4 && depth < 3; i++)
        if (weft_group_spawn(gch.g, NULL, depth == 2 ? churn_leaf : churn_member,
                             (void *)(depth + 1)) != 0)
            atomic_fetch_add(&gch.errors, 1);
    weft_yield();
    atomic_fetch_add(&gch.done, 1);
    return NULL;
}

static void body_group_churn(void *unused)
{
    (void)unused;
    int rounds = test_quick() ? 5 : 40;
    for (int round = 0; round < rounds; round++) {
        memset(&gch, 0, sizeof gch);
        ck_assert_int_eq(weft_group_open(&gch.g), 0);
        for (int i = 0; i < 8; i++)
            ck_assert_int_eq(weft_group_spawn(gch.g, NULL, churn_member, (void *)0), 0);
        ck_assert_int_eq(weft_group_wait(gch.g, WEFT_FOREVER), 0);
        /* 8 roots, each 4 + 16 + 64 below it */
        ck_assert_int_eq(atomic_load(&gch.done), 8 * (1 + 4 + 16 + 64));
        ck_assert_int_eq(atomic_load(&gch.errors), 0);
        ck_assert_int_eq(weft_group_size(gch.g), 0);
        ck_assert_int_eq(weft_group_free(gch.g), 0);
    }
}

START_TEST(group_stress_churn)
{
    FOR_WORKERS(body_group_churn, NULL);
}
END_TEST

/* ----------------------------------------------------------- back-off */

START_TEST(backoff_schedule)
{
    weft_backoff b;
    ck_assert_int_eq(weft_backoff_init(NULL, 1, 1, 1), -EINVAL);
    ck_assert_int_eq(weft_backoff_init(&b, 0, 10, 1), -EINVAL);
    ck_assert_int_eq(weft_backoff_init(&b, 10, 5, 1), -EINVAL);
    ck_assert_int_eq(weft_backoff_init(&b, 10, 20, -2), -EINVAL);
    memset(&b, 0, sizeof b);
    ck_assert_int_eq(weft_backoff_next(&b), -EINVAL);
    ck_assert_int_eq(weft_backoff_next(NULL), -EINVAL);

    const int64_t base = 1000, cap = 100000;
    for (int rep = 0; rep < 200; rep++) {
        ck_assert_int_eq(weft_backoff_init(&b, base, cap, 12), 0);
        int64_t d = base;
        for (int i = 0; i < 12; i++) {
            int64_t got = weft_backoff_next(&b);
            ck_assert_int_ge(got, d - d / 2);
            ck_assert_int_le(got, d);
            d = d * 2 > cap ? cap : d * 2;
        }
        ck_assert_int_eq(weft_backoff_next(&b), -ERANGE);
        weft_backoff_reset(&b);
        ck_assert_int_le(weft_backoff_next(&b), base);
    }
    /* No overflow with a huge cap and unlimited retries. */
    ck_assert_int_eq(weft_backoff_init(&b, 1, INT64_MAX, WEFT_BACKOFF_UNLIMITED), 0);
    for (int i = 0; i < 200; i++) {
        int64_t got = weft_backoff_next(&b);
        ck_assert_int_gt(got, 0);
    }
    /* The jitter actually varies. */
    ck_assert_int_eq(weft_backoff_init(&b, 1000000, 1000000, WEFT_BACKOFF_UNLIMITED), 0);
    int64_t first = weft_backoff_next(&b);
    int differs = 0;
    for (int i = 0; i < 50; i++)
        differs |= weft_backoff_next(&b) != first;
    ck_assert(differs);
}
END_TEST

static void *backoff_forever(void *unused)
{
    (void)unused;
    weft_backoff b;
    weft_backoff_init(&b, (int64_t)3600 * 1000000000, (int64_t)3600 * 1000000000, 5);
    return (void *)(intptr_t)weft_backoff_wait(&b, WEFT_FOREVER);
}

static void body_backoff_wait(void *unused)
{
    (void)unused;
    weft_backoff b;
    ck_assert_int_eq(weft_backoff_wait(NULL, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_backoff_init(&b, 2000000, 8000000, 3), 0);   /* 2, 4, 8 ms */
    int64_t t0 = weft_now();
    ck_assert_int_eq(weft_backoff_wait(&b, WEFT_FOREVER), 1);
    ck_assert_int_eq(weft_backoff_wait(&b, WEFT_FOREVER), 2);
    ck_assert_int_eq(weft_backoff_wait(&b, WEFT_FOREVER), 3);
    int64_t slept = weft_now() - t0;
    ck_assert_int_ge(slept, (1 + 2 + 4) * 1000000);              /* at least the halves */
    ck_assert_int_eq(weft_backoff_wait(&b, WEFT_FOREVER), -ERANGE);
    /* a deadline too close: at once, attempt kept */
    weft_backoff_reset(&b);
    t0 = weft_now();
    ck_assert_int_eq(weft_backoff_wait(&b, weft_now() + 500000), -ETIMEDOUT);
    ck_assert_int_lt(weft_now() - t0, 1000000);
    ck_assert_int_eq(weft_backoff_wait(&b, WEFT_FOREVER), 1);
    /* cancellation during the sleep */
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, pinned_attr(), backoff_forever, NULL), 0);
    settle();
    ck_assert_int_eq(weft_cancel(f), 0);
    void *res;
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, -ECANCELED);
}

START_TEST(backoff_wait)
{
    FOR_WORKERS_PINNED(body_backoff_wait, NULL);
    weft_backoff b;
    ck_assert_int_eq(weft_backoff_init(&b, 10, 10, 1), 0);
    ck_assert_int_eq(weft_backoff_wait(&b, WEFT_FOREVER), -EPERM);
}
END_TEST

/* ------------------------------------------------------------------ main */

static Suite *group_suite(void)
{
    Suite *s = suite_create("group");
    TCase *tc = tcase_create("group");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, group_wait_all);
    tcase_add_test(tc, group_cancel_all);
    tcase_add_test(tc, group_errors);
    tcase_add_test(tc, group_members_outlive_main);
    suite_add_tcase(s, tc);
    tc = tcase_create("stress");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, group_stress_cancel_exit);
    tcase_add_test(tc, group_stress_churn);
    suite_add_tcase(s, tc);
    tc = tcase_create("backoff");
    tcase_add_test(tc, backoff_schedule);
    tcase_add_test(tc, backoff_wait);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    test_seed_value = test_seed();
    return run_suite(group_suite());
}
