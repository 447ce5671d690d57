/* check_sync.c - weft_mutex, weft_cond, weft_sem, weft_wg (src/sync.c).
 *
 * Targeted tests pin down each documented result: bad input, calls from
 * outside a fiber, FIFO hand-off, deadlines (past, real expiry) and
 * cancellation of every blocking call, each ending with the object's
 * internal queue checked empty. The randomized model test drives a mutex
 * and a condition variable from several actor fibers through thousands of
 * random lock/trylock/unlock/wait/signal/broadcast/cancel/timeout
 * sequences and compares every result, the owner and both queues with a
 * small reference model after every step (pinned controller and actors,
 * so it also runs with two workers). The stress cases hammer one object
 * from many fibers with totals checked at the end: races for when they
 * run with two workers, heavy interleaving with one.
 *
 * Environment: WEFT_TEST_SEED fixes the seed (printed on failure);
 * WEFT_TEST_QUICK=1 runs a tenth of the sequences (valgrind).
 */
#include "actors.h"

#include <pthread.h>

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

/* ------------------------------------------------------------ bad input */

static void body_bad_input(void *unused)
{
    (void)unused;
    weft_mutex zm;
    weft_cond zc;
    weft_sem zs;
    weft_wg zg;
    memset(&zm, 0, sizeof zm);
    memset(&zc, 0, sizeof zc);
    memset(&zs, 0, sizeof zs);
    memset(&zg, 0, sizeof zg);
    weft_mutex m = WEFT_MUTEX_INIT;

    ck_assert_int_eq(weft_mutex_lock(NULL, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_mutex_lock(&zm, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_mutex_trylock(&zm), -EINVAL);
    ck_assert_int_eq(weft_mutex_unlock(&zm), -EINVAL);
    ck_assert_int_eq(weft_mutex_unlock(NULL), -EINVAL);
    ck_assert_int_eq(weft_cond_wait(&zc, &m, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_cond_wait(NULL, &m, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_cond_signal(&zc), -EINVAL);
    ck_assert_int_eq(weft_cond_broadcast(NULL), -EINVAL);
    ck_assert_int_eq(weft_sem_acquire(&zs, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_sem_release(&zs), -EINVAL);
    ck_assert_int_eq(weft_sem_tryacquire(NULL), -EINVAL);
    ck_assert_int_eq(weft_wg_add(&zg, 1), -EINVAL);
    ck_assert_int_eq(weft_wg_wait(&zg, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_wg_done(NULL), -EINVAL);

    weft_cond c = WEFT_COND_INIT;
    ck_assert_int_eq(weft_cond_wait(&c, &zm, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_cond_wait(&c, NULL, WEFT_FOREVER), -EINVAL);
    /* Waiting without owning the mutex. */
    ck_assert_int_eq(weft_cond_wait(&c, &m, WEFT_FOREVER), -EPERM);
    ck_assert_int_eq(weft_mutex_unlock(&m), -EPERM);

    /* A semaphore statically initialised with a negative count. */
    weft_sem neg = WEFT_SEM_INIT(-1);
    ck_assert_int_eq(weft_sem_acquire(&neg, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_sem_release(&neg), -EINVAL);

    /* A wait group never goes below zero; the count is then unchanged. */
    weft_wg g = WEFT_WG_INIT;
    ck_assert_int_eq(weft_wg_done(&g), -EINVAL);
    ck_assert_int_eq(weft_wg_add(&g, INT64_MAX), 0);
    ck_assert_int_eq(weft_wg_add(&g, 1), -EOVERFLOW);
    ck_assert_int_eq(weft_wg_add(&g, -INT64_MAX), 0);
    ck_assert_int_eq(weft_wg_wait(&g, WEFT_FOREVER), 0);

    weft_sem big = WEFT_SEM_INIT(INT64_MAX);
    ck_assert_int_eq(weft_sem_release(&big), -EOVERFLOW);
    ck_assert_int_eq(weft__sem_value(&big), INT64_MAX);
}

START_TEST(bad_input)
{
    run_in_runtime(NULL, body_bad_input, NULL);
    /* Initialisers reject NULL and negative counts anywhere. */
    weft_sem s;
    ck_assert_int_eq(weft_mutex_init(NULL), -EINVAL);
    ck_assert_int_eq(weft_cond_init(NULL), -EINVAL);
    ck_assert_int_eq(weft_sem_init(NULL, 0), -EINVAL);
    ck_assert_int_eq(weft_sem_init(&s, -1), -EINVAL);
    ck_assert_int_eq(weft_wg_init(NULL), -EINVAL);
}
END_TEST

START_TEST(outside_fiber_is_eperm)
{
    weft_mutex m;
    weft_cond c;
    weft_sem s;
    weft_wg g;
    ck_assert_int_eq(weft_mutex_init(&m), 0);   /* init works anywhere */
    ck_assert_int_eq(weft_cond_init(&c), 0);
    ck_assert_int_eq(weft_sem_init(&s, 1), 0);
    ck_assert_int_eq(weft_wg_init(&g), 0);
    ck_assert_int_eq(weft_mutex_lock(&m, WEFT_FOREVER), -EPERM);
    ck_assert_int_eq(weft_mutex_trylock(&m), -EPERM);
    ck_assert_int_eq(weft_mutex_unlock(&m), -EPERM);
    ck_assert_int_eq(weft_cond_wait(&c, &m, WEFT_FOREVER), -EPERM);
    ck_assert_int_eq(weft_cond_signal(&c), -EPERM);
    ck_assert_int_eq(weft_cond_broadcast(&c), -EPERM);
    ck_assert_int_eq(weft_sem_acquire(&s, WEFT_FOREVER), -EPERM);
    ck_assert_int_eq(weft_sem_tryacquire(&s), -EPERM);
    ck_assert_int_eq(weft_sem_release(&s), -EPERM);
    ck_assert_int_eq(weft_wg_add(&g, 1), -EPERM);
    ck_assert_int_eq(weft_wg_done(&g), -EPERM);
    ck_assert_int_eq(weft_wg_wait(&g, WEFT_FOREVER), -EPERM);
    ck_assert_uint_eq(weft__mutex_owner(&m), 0);
    ck_assert_int_eq(weft__sem_value(&s), 1);
}
END_TEST

/* ---------------------------------------------------------------- mutex */

static weft_mutex gm = WEFT_MUTEX_INIT;
static int order[64], norder;

static void *lock_record_unlock(void *arg)
{
    int r = weft_mutex_lock(&gm, WEFT_FOREVER);
    ck_assert_int_eq(r, 0);
    order[norder++] = (int)(intptr_t)arg;
    weft_yield();                     /* hold it across a switch */
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);
    return NULL;
}

static void body_mutex_fifo(void *unused)
{
    (void)unused;
    weft_fiber *f[8];
    norder = 0;
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), -EDEADLK);
    ck_assert_int_eq(weft_mutex_trylock(&gm), -EBUSY);
    for (intptr_t i = 0; i < 8; i++)
        ck_assert_int_eq(weft_spawn(&f[i], pinned_attr(), lock_record_unlock, (void *)i), 0);
    settle();
    ck_assert_uint_eq(weft__mutex_waiters(&gm), 8);
    /* Unlock and immediately try to take it back: the first waiter already
     * owns it (hand-off, no barging). */
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);
    ck_assert_int_eq(weft_mutex_trylock(&gm), -EBUSY);
    ck_assert_uint_eq(weft__mutex_owner(&gm), weft_fiber_id(f[0]));
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), 0);   /* queues behind all 8 */
    ck_assert_int_eq(norder, 8);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(order[i], i);
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    ck_assert_uint_eq(weft__mutex_waiters(&gm), 0);
    ck_assert_uint_eq(weft__mutex_owner(&gm), 0);
}

START_TEST(mutex_fifo_handoff)
{
    FOR_WORKERS_PINNED(body_mutex_fifo, NULL);
}
END_TEST

static void *hold_mutex_ms(void *arg)
{
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), 0);
    weft_sleep_ms((intptr_t)arg);
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);
    return NULL;
}

static void *lock_forever(void *unused)
{
    (void)unused;
    int r = weft_mutex_lock(&gm, WEFT_FOREVER);
    if (r == 0)
        weft_mutex_unlock(&gm);
    return (void *)(intptr_t)r;
}

static void body_mutex_deadline_cancel(void *unused)
{
    (void)unused;
    /* A past deadline still takes a free mutex. */
    ck_assert_int_eq(weft_mutex_lock(&gm, weft_now() - 1000), 0);
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);
    /* ... and is refused at once on a held one. */
    weft_fiber *holder;
    ck_assert_int_eq(weft_spawn(&holder, pinned_attr(), hold_mutex_ms, (void *)(intptr_t)100), 0);
    settle();
    ck_assert_int_eq(weft_mutex_lock(&gm, weft_now() - 1000), -ETIMEDOUT);
    ck_assert_uint_eq(weft__mutex_waiters(&gm), 0);
    /* Real expiry. */
    int64_t t0 = weft_now();
    ck_assert_int_eq(weft_mutex_lock(&gm, weft_deadline_ms(20)), -ETIMEDOUT);
    ck_assert_int_ge(weft_now() - t0, 20 * 1000000);
    ck_assert_uint_eq(weft__mutex_waiters(&gm), 0);
    /* Cancellation while queued. */
    weft_fiber *waiter;
    ck_assert_int_eq(weft_spawn(&waiter, pinned_attr(), lock_forever, NULL), 0);
    settle();
    ck_assert_uint_eq(weft__mutex_waiters(&gm), 1);
    ck_assert_int_eq(weft_cancel(waiter), 0);
    void *res;
    ck_assert_int_eq(weft_join(waiter, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, -ECANCELED);
    ck_assert_uint_eq(weft__mutex_waiters(&gm), 0);
    ck_assert_int_eq(weft_join(holder, NULL, WEFT_FOREVER), 0);
    ck_assert_uint_eq(weft__mutex_owner(&gm), 0);
}

START_TEST(mutex_deadline_and_cancel)
{
    FOR_WORKERS_PINNED(body_mutex_deadline_cancel, NULL);
}
END_TEST

/* The hand-off must stand even if the deadline would have passed: unlock
 * wakes the waiter, then its deadline passes before it runs. */
static void *lock_short(void *unused)
{
    (void)unused;
    int r = weft_mutex_lock(&gm, weft_deadline_ms(5));
    if (r == 0)
        ck_assert_int_eq(weft_mutex_unlock(&gm), 0);
    return (void *)(intptr_t)r;
}

static void body_handoff_beats_deadline(void *unused)
{
    (void)unused;
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), 0);
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, pinned_attr(), lock_short, NULL), 0);
    settle();
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);   /* hand-off: f now owns it */
    /* Burn past f's deadline without letting it run. */
    int64_t until = weft_now() + 10 * 1000000;
    while (weft_now() < until)
        ;
    void *res;
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, 0);
    ck_assert_uint_eq(weft__mutex_owner(&gm), 0);
}

START_TEST(mutex_handoff_beats_deadline)
{
    FOR_WORKERS_PINNED(body_handoff_beats_deadline, NULL);
}
END_TEST

/* Two runtimes on two threads: a mutex held by one is -EXDEV to the other. */
static pthread_barrier_t xbar;

static void body_x_holder(void *unused)
{
    (void)unused;
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), 0);
    pthread_barrier_wait(&xbar);      /* the other runtime tries now */
    pthread_barrier_wait(&xbar);
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);
}

static void body_x_other(void *unused)
{
    (void)unused;
    ck_assert_int_eq(weft_mutex_trylock(&gm), -EXDEV);
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), -EXDEV);
    ck_assert_int_eq(weft_mutex_unlock(&gm), -EPERM);
}

static void *x_thread(void *unused)
{
    (void)unused;
    pthread_barrier_wait(&xbar);
    int r = weft_run(NULL, body_x_other, NULL);
    pthread_barrier_wait(&xbar);
    return (void *)(intptr_t)r;
}

START_TEST(mutex_other_runtime_exdev)
{
    pthread_t t;
    pthread_barrier_init(&xbar, NULL, 2);
    ck_assert_int_eq(pthread_create(&t, NULL, x_thread, NULL), 0);
    ck_assert_int_eq(weft_run(NULL, body_x_holder, NULL), 0);
    void *r;
    pthread_join(t, &r);
    ck_assert_int_eq((intptr_t)r, 0);
    pthread_barrier_destroy(&xbar);
}
END_TEST

/* ----------------------------------------------------------------- cond */

static weft_cond gc = WEFT_COND_INIT;
static int ready_flag;

static void *cond_waiter(void *arg)
{
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), 0);
    int r = 0;
    while (!ready_flag && r == 0)
        r = weft_cond_wait(&gc, &gm, WEFT_FOREVER);
    /* Whatever happened, we own the mutex again. */
    ck_assert_uint_eq(weft__mutex_owner(&gm), weft_fiber_id(weft_self()));
    if (r == 0)
        order[norder++] = (int)(intptr_t)arg;
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);
    return (void *)(intptr_t)r;
}

static void body_cond_basic(void *unused)
{
    (void)unused;
    weft_fiber *f[6];
    norder = 0;
    ready_flag = 0;
    for (intptr_t i = 0; i < 6; i++)
        ck_assert_int_eq(weft_spawn(&f[i], pinned_attr(), cond_waiter, (void *)i), 0);
    settle();
    ck_assert_uint_eq(weft__cond_waiters(&gc), 6);
    ck_assert_uint_eq(weft__mutex_owner(&gm), 0);
    /* signal wakes exactly the longest waiter */
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), 0);
    ready_flag = 1;
    ck_assert_int_eq(weft_cond_signal(&gc), 0);
    ck_assert_uint_eq(weft__cond_waiters(&gc), 5);
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);
    settle();
    ck_assert_int_eq(norder, 1);
    ck_assert_int_eq(order[0], 0);
    /* broadcast wakes the rest, in order */
    ck_assert_int_eq(weft_cond_broadcast(&gc), 0);
    ck_assert_uint_eq(weft__cond_waiters(&gc), 0);
    for (int i = 0; i < 6; i++) {
        void *res;
        ck_assert_int_eq(weft_join(f[i], &res, WEFT_FOREVER), 0);
        ck_assert_int_eq((intptr_t)res, 0);
    }
    ck_assert_int_eq(norder, 6);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(order[i], i);
    ck_assert_int_eq(weft_cond_signal(&gc), 0);   /* nobody waiting: no-op */
}

START_TEST(cond_signal_broadcast)
{
    FOR_WORKERS_PINNED(body_cond_basic, NULL);
}
END_TEST

static void *cond_wait_timed(void *arg)
{
    int64_t ms = (intptr_t)arg;
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), 0);
    int r = weft_cond_wait(&gc, &gm, ms < 0 ? WEFT_FOREVER : weft_deadline_ms(ms));
    ck_assert_uint_eq(weft__mutex_owner(&gm), weft_fiber_id(weft_self()));
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);
    return (void *)(intptr_t)r;
}

static void body_cond_deadline_cancel(void *unused)
{
    (void)unused;
    weft_mutex m2 = WEFT_MUTEX_INIT;
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), 0);
    /* past deadline: at once, the mutex never released */
    ck_assert_int_eq(weft_cond_wait(&gc, &gm, weft_now() - 1), -ETIMEDOUT);
    ck_assert_uint_eq(weft__mutex_owner(&gm), weft_fiber_id(weft_self()));
    /* real expiry, mutex held again on return */
    int64_t t0 = weft_now();
    ck_assert_int_eq(weft_cond_wait(&gc, &gm, weft_deadline_ms(15)), -ETIMEDOUT);
    ck_assert_int_ge(weft_now() - t0, 15 * 1000000);
    ck_assert_uint_eq(weft__mutex_owner(&gm), weft_fiber_id(weft_self()));
    ck_assert_uint_eq(weft__cond_waiters(&gc), 0);
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);

    /* Expiry while another fiber holds the mutex: the waiter must wait for
     * the mutex after its deadline and still come back owning it. */
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, pinned_attr(), cond_wait_timed, (void *)(intptr_t)5), 0);
    settle();
    ck_assert_uint_eq(weft__cond_waiters(&gc), 1);
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), 0);
    weft_sleep_ms(20);                /* its deadline passes; it queues on gm */
    ck_assert_uint_eq(weft__cond_waiters(&gc), 0);
    ck_assert_uint_eq(weft__mutex_waiters(&gm), 1);
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);
    void *res;
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, -ETIMEDOUT);

    /* Cancellation while waiting, then re-locking. */
    ck_assert_int_eq(weft_spawn(&f, pinned_attr(), cond_wait_timed, (void *)(intptr_t)-1), 0);
    settle();
    ck_assert_uint_eq(weft__cond_waiters(&gc), 1);
    /* mixing mutexes on one cond is refused */
    ck_assert_int_eq(weft_mutex_lock(&m2, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_cond_wait(&gc, &m2, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_mutex_unlock(&m2), 0);
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_cancel(f), 0);
    settle();                         /* f re-locks: queued behind us */
    ck_assert_uint_eq(weft__cond_waiters(&gc), 0);
    ck_assert_uint_eq(weft__mutex_waiters(&gm), 1);
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, -ECANCELED);
    ck_assert_uint_eq(weft__mutex_owner(&gm), 0);
    ck_assert_uint_eq(weft__mutex_waiters(&gm), 0);
}

START_TEST(cond_deadline_and_cancel)
{
    FOR_WORKERS_PINNED(body_cond_deadline_cancel, NULL);
}
END_TEST

static void *cancelled_cond_wait(void *unused)
{
    (void)unused;
    ck_assert_int_eq(weft_mutex_lock(&gm, WEFT_FOREVER), 0);
    weft_yield();                     /* the parent cancels us here */
    int r = weft_cond_wait(&gc, &gm, WEFT_FOREVER);
    ck_assert_uint_eq(weft__mutex_owner(&gm), weft_fiber_id(weft_self()));
    ck_assert_int_eq(weft_mutex_unlock(&gm), 0);
    return (void *)(intptr_t)r;
}

static void body_cond_already_cancelled(void *unused)
{
    (void)unused;
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, pinned_attr(), cancelled_cond_wait, NULL), 0);
    weft_yield();
    ck_assert_int_eq(weft_cancel(f), 0);
    void *res;
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, -ECANCELED);
    ck_assert_uint_eq(weft__cond_waiters(&gc), 0);
}

START_TEST(cond_already_cancelled)
{
    FOR_WORKERS_PINNED(body_cond_already_cancelled, NULL);
}
END_TEST

/* ------------------------------------------------------------ semaphore */

static weft_sem gs = WEFT_SEM_INIT(2);

static void *sem_take(void *arg)
{
    int r = weft_sem_acquire(&gs, WEFT_FOREVER);
    if (r == 0)
        order[norder++] = (int)(intptr_t)arg;
    return (void *)(intptr_t)r;
}

static void body_sem(void *unused)
{
    (void)unused;
    weft_sem s;
    ck_assert_int_eq(weft_sem_init(&s, 0), 0);
    ck_assert_int_eq(weft_sem_tryacquire(&s), -EAGAIN);
    ck_assert_int_eq(weft_sem_acquire(&s, weft_now() - 1), -ETIMEDOUT);
    int64_t t0 = weft_now();
    ck_assert_int_eq(weft_sem_acquire(&s, weft_deadline_ms(10)), -ETIMEDOUT);
    ck_assert_int_ge(weft_now() - t0, 10 * 1000000);
    ck_assert_uint_eq(weft__sem_waiters(&s), 0);
    ck_assert_int_eq(weft_sem_release(&s), 0);
    ck_assert_int_eq(weft_sem_acquire(&s, weft_now() - 1), 0);   /* past: tries once */

    /* static initialiser with a count; FIFO hand-off */
    ck_assert_int_eq(weft__sem_value(&gs), 2);
    ck_assert_int_eq(weft_sem_acquire(&gs, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_sem_tryacquire(&gs), 0);
    norder = 0;
    weft_fiber *f[5];
    for (intptr_t i = 0; i < 5; i++)
        ck_assert_int_eq(weft_spawn(&f[i], pinned_attr(), sem_take, (void *)i), 0);
    settle();
    ck_assert_uint_eq(weft__sem_waiters(&gs), 5);
    ck_assert_int_eq(weft_sem_release(&gs), 0);
    ck_assert_int_eq(weft_sem_tryacquire(&gs), -EAGAIN);   /* handed to f[0] */
    ck_assert_int_eq(weft__sem_value(&gs), 0);
    ck_assert_int_eq(weft_cancel(f[1]), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(weft_sem_release(&gs), 0);
    for (int i = 0; i < 5; i++) {
        void *res;
        ck_assert_int_eq(weft_join(f[i], &res, WEFT_FOREVER), 0);
        ck_assert_int_eq((intptr_t)res, i == 1 ? -ECANCELED : 0);
    }
    ck_assert_int_eq(norder, 4);
    ck_assert_int_eq(order[0], 0);
    ck_assert_int_eq(order[1], 2);
    ck_assert_int_eq(order[2], 3);
    ck_assert_int_eq(order[3], 4);
    ck_assert_uint_eq(weft__sem_waiters(&gs), 0);
    ck_assert_int_eq(weft__sem_value(&gs), 0);
    ck_assert_int_eq(weft_sem_release(&gs), 0);
    ck_assert_int_eq(weft_sem_release(&gs), 0);
    ck_assert_int_eq(weft__sem_value(&gs), 2);   /* back as it started */
}

START_TEST(sem_basic)
{
    FOR_WORKERS_PINNED(body_sem, NULL);
}
END_TEST

/* ----------------------------------------------------------- wait group */

static weft_wg gg = WEFT_WG_INIT;

static void *wg_worker(void *arg)
{
    weft_sleep_ms((intptr_t)arg);
    ck_assert_int_eq(weft_wg_done(&gg), 0);
    return NULL;
}

static void *wg_waiter(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_wg_wait(&gg, WEFT_FOREVER);
}

static void body_wg(void *unused)
{
    (void)unused;
    ck_assert_int_eq(weft_wg_wait(&gg, WEFT_FOREVER), 0);   /* zero: at once */
    ck_assert_int_eq(weft_wg_add(&gg, 4), 0);
    for (intptr_t i = 0; i < 4; i++)
        ck_assert_int_eq(weft_spawn(NULL, pinned_attr(), wg_worker, (void *)(i * 2)), 0);
    weft_fiber *w[3];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(weft_spawn(&w[i], pinned_attr(), wg_waiter, NULL), 0);
    ck_assert_int_eq(weft_wg_wait(&gg, weft_now() - 1), -ETIMEDOUT);
    ck_assert_int_eq(weft_wg_wait(&gg, WEFT_FOREVER), 0);
    for (int i = 0; i < 3; i++) {
        void *res;
        ck_assert_int_eq(weft_join(w[i], &res, WEFT_FOREVER), 0);
        ck_assert_int_eq((intptr_t)res, 0);
    }
    ck_assert_uint_eq(weft__wg_waiters(&gg), 0);

    /* timeout and cancellation leave no waiter behind */
    ck_assert_int_eq(weft_wg_add(&gg, 1), 0);
    ck_assert_int_eq(weft_wg_wait(&gg, weft_deadline_ms(5)), -ETIMEDOUT);
    ck_assert_uint_eq(weft__wg_waiters(&gg), 0);
    ck_assert_int_eq(weft_spawn(&w[0], pinned_attr(), wg_waiter, NULL), 0);
    settle();
    ck_assert_uint_eq(weft__wg_waiters(&gg), 1);
    ck_assert_int_eq(weft_cancel(w[0]), 0);
    void *res;
    ck_assert_int_eq(weft_join(w[0], &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, -ECANCELED);
    ck_assert_uint_eq(weft__wg_waiters(&gg), 0);
    ck_assert_int_eq(weft_wg_done(&gg), 0);
}

START_TEST(wg_basic)
{
    FOR_WORKERS_PINNED(body_wg, NULL);
}
END_TEST

/* ------------------------------------------------ model: mutex + cond */

#define MAXA 6

enum mop { OP_LOCK, OP_TRYLOCK, OP_UNLOCK, OP_WAIT, OP_SIGNAL, OP_BROADCAST, OP_KINDS };
enum dkind { D_FOREVER, D_PAST, D_TIMED };

struct mm_ctx {
    weft_mutex m;
    weft_cond c;
};

static int do_lock(struct actor *a)
{
    struct mm_ctx *x = a->ctx;
    return weft_mutex_lock(&x->m, a->deadline);
}
static int do_trylock(struct actor *a) { return weft_mutex_trylock(&((struct mm_ctx *)a->ctx)->m); }
static int do_unlock(struct actor *a) { return weft_mutex_unlock(&((struct mm_ctx *)a->ctx)->m); }
static int do_wait(struct actor *a)
{
    struct mm_ctx *x = a->ctx;
    return weft_cond_wait(&x->c, &x->m, a->deadline);
}
static int do_signal(struct actor *a) { return weft_cond_signal(&((struct mm_ctx *)a->ctx)->c); }
static int do_broadcast(struct actor *a) { return weft_cond_broadcast(&((struct mm_ctx *)a->ctx)->c); }
static const actor_op mm_ops[OP_KINDS] = { do_lock, do_trylock, do_unlock, do_wait, do_signal,
                                           do_broadcast };

/* The reference model: who owns the mutex, who waits where, and what each
 * actor's last operation returned. */
enum { ST_IDLE, ST_LOCKWAIT, ST_CONDWAIT, ST_RELOCK };
struct mm_actor { int st, timed, cancelled, pending, result; };
struct mm_model {
    int n;
    int owner;                      /* actor index or -1 */
    int mq[MAXA], nmq;              /* mutex waiters, in order */
    int cq[MAXA], ncq;              /* cond waiters, in order */
    int relock[MAXA], nrelock;      /* woken cond waiters about to re-lock, in wake order */
    struct mm_actor a[MAXA];
};

static void q_del(int *q, int *n, int v)
{
    for (int i = 0; i < *n; i++)
        if (q[i] == v) {
            memmove(q + i, q + i + 1, (size_t)(*n - i - 1) * sizeof *q);
            (*n)--;
            return;
        }
}

static int q_pop(int *q, int *n)
{
    int v = q[0];
    memmove(q, q + 1, (size_t)(*n - 1) * sizeof *q);
    (*n)--;
    return v;
}

static void mm_finish(struct mm_model *M, int i, int r)
{
    M->a[i].st = ST_IDLE;
    M->a[i].result = r;
}

static void mm_release(struct mm_model *M)
{
    if (M->nmq) {
        int b = q_pop(M->mq, &M->nmq);
        M->owner = b;
        mm_finish(M, b, M->a[b].st == ST_RELOCK ? M->a[b].pending : 0);
    } else {
        M->owner = -1;
    }
}

/* Woken cond waiters run in wake order and take the mutex or queue for it. */
static void mm_run_relocks(struct mm_model *M)
{
    for (int k = 0; k < M->nrelock; k++) {
        int i = M->relock[k];
        if (M->owner == -1) {
            M->owner = i;
            mm_finish(M, i, M->a[i].pending);
        } else {
            M->a[i].st = ST_RELOCK;
            M->mq[M->nmq++] = i;
        }
    }
    M->nrelock = 0;
}

static void mm_wake_cond(struct mm_model *M, int i, int r)
{
    M->a[i].pending = r;
    M->a[i].st = ST_RELOCK;         /* runnable, not yet queued */
    M->relock[M->nrelock++] = i;
}

static void mm_apply(struct mm_model *M, int i, int op, int dk)
{
    struct mm_actor *a = &M->a[i];
    switch (op) {
    case OP_LOCK:
        if (M->owner == i)
            mm_finish(M, i, -EDEADLK);
        else if (M->owner == -1) {
            M->owner = i;
            mm_finish(M, i, 0);
        } else if (a->cancelled)
            mm_finish(M, i, -ECANCELED);
        else if (dk == D_PAST)
            mm_finish(M, i, -ETIMEDOUT);
        else {
            a->st = ST_LOCKWAIT;
            a->timed = dk == D_TIMED;
            M->mq[M->nmq++] = i;
        }
        break;
    case OP_TRYLOCK:
        if (M->owner == -1) {
            M->owner = i;
            mm_finish(M, i, 0);
        } else
            mm_finish(M, i, -EBUSY);
        break;
    case OP_UNLOCK:
        if (M->owner != i)
            mm_finish(M, i, -EPERM);
        else {
            mm_finish(M, i, 0);
            mm_release(M);
        }
        break;
    case OP_WAIT:
        if (M->owner != i)
            mm_finish(M, i, -EPERM);
        else if (a->cancelled)
            mm_finish(M, i, -ECANCELED);
        else if (dk == D_PAST)
            mm_finish(M, i, -ETIMEDOUT);
        else {
            a->st = ST_CONDWAIT;
            a->timed = dk == D_TIMED;
            M->cq[M->ncq++] = i;
            mm_release(M);
        }
        break;
    case OP_SIGNAL:
        if (M->ncq)
            mm_wake_cond(M, q_pop(M->cq, &M->ncq), 0);
        mm_finish(M, i, 0);
        break;
    case OP_BROADCAST:
        while (M->ncq)
            mm_wake_cond(M, q_pop(M->cq, &M->ncq), 0);
        mm_finish(M, i, 0);
        break;
    }
    mm_run_relocks(M);
}

/* The wait of actor i ends by cancellation (r = -ECANCELED) or expiry. */
static void mm_abort_wait(struct mm_model *M, int i, int r)
{
    struct mm_actor *a = &M->a[i];
    if (a->st == ST_LOCKWAIT) {
        q_del(M->mq, &M->nmq, i);
        mm_finish(M, i, r);
    } else if (a->st == ST_CONDWAIT) {
        q_del(M->cq, &M->ncq, i);
        mm_wake_cond(M, i, r);
        mm_run_relocks(M);
    }
}

static void mm_check(struct mm_model *M, struct actor *act, struct mm_ctx *x, int seq, int step)
{
    for (int i = 0; i < M->n; i++) {
        int idle = M->a[i].st == ST_IDLE;
        REQUIRE(act[i].busy == !idle, "seq %d step %d: actor %d busy=%d, model says %s", seq,
                step, i, act[i].busy, idle ? "idle" : "blocked");
        if (idle)
            REQUIRE(act[i].result == M->a[i].result,
                    "seq %d step %d: actor %d returned %d, model says %d", seq, step, i,
                    act[i].result, M->a[i].result);
    }
    uint64_t want = M->owner < 0 ? 0 : weft_fiber_id(act[M->owner].h);
    REQUIRE(weft__mutex_owner(&x->m) == want, "seq %d step %d: owner %" PRIu64 " want %" PRIu64,
            seq, step, weft__mutex_owner(&x->m), want);
    REQUIRE(weft__mutex_waiters(&x->m) == (size_t)M->nmq, "seq %d step %d: mutex waiters %zu want %d",
            seq, step, weft__mutex_waiters(&x->m), M->nmq);
    REQUIRE(weft__cond_waiters(&x->c) == (size_t)M->ncq, "seq %d step %d: cond waiters %zu want %d",
            seq, step, weft__cond_waiters(&x->c), M->ncq);
}

static int pick_op(uint64_t *rs, const struct mm_model *M, int i)
{
    int r = rng_below(rs, 100);
    if (M->owner == i) {
        if (r < 35) return OP_UNLOCK;
        if (r < 65) return OP_WAIT;
        if (r < 80) return OP_SIGNAL;
        if (r < 88) return OP_BROADCAST;
        if (r < 94) return OP_LOCK;     /* -EDEADLK */
        return OP_TRYLOCK;
    }
    if (r < 50) return OP_LOCK;
    if (r < 65) return OP_TRYLOCK;
    if (r < 77) return OP_SIGNAL;
    if (r < 85) return OP_BROADCAST;
    if (r < 93) return OP_UNLOCK;       /* -EPERM */
    return OP_WAIT;                     /* -EPERM */
}

struct mm_run { int sequences; };

static void body_mutex_cond_model(void *p)
{
    struct mm_run *run = p;
    uint64_t rs = test_seed_value;
    static struct mm_ctx x;
    struct actor act[MAXA];
    for (int seq = 0; seq < run->sequences; seq++) {
        struct mm_model M;
        memset(&M, 0, sizeof M);
        M.n = 2 + rng_below(&rs, MAXA - 1);
        M.owner = -1;
        ck_assert_int_eq(weft_mutex_init(&x.m), 0);
        ck_assert_int_eq(weft_cond_init(&x.c), 0);
        for (int i = 0; i < M.n; i++)
            actor_start(&act[i], &x);
        int steps = 10 + rng_below(&rs, 50);
        for (int step = 0; step < steps; step++) {
            /* Retire cancelled, idle actors that hold nothing: a fresh
             * actor keeps the mix interesting. */
            for (int i = 0; i < M.n; i++)
                if (M.a[i].cancelled && M.a[i].st == ST_IDLE && M.owner != i) {
                    actor_stop(&act[i]);
                    actor_start(&act[i], &x);
                    memset(&M.a[i], 0, sizeof M.a[i]);
                    act[i].result = M.a[i].result = 0;
                }
            int idle[MAXA], nidle = 0, timed[MAXA], ntimed = 0, nblocked = 0;
            for (int i = 0; i < M.n; i++) {
                int st = M.a[i].st;
                if (st == ST_IDLE)
                    idle[nidle++] = i;
                else if (st == ST_LOCKWAIT || st == ST_CONDWAIT) {
                    nblocked++;
                    if (M.a[i].timed)
                        timed[ntimed++] = i;
                }
            }
            int r = rng_below(&rs, 100);
            if (nidle && (r < 80 || (!ntimed && !nblocked))) {
                int i = idle[rng_below(&rs, nidle)];
                int op = pick_op(&rs, &M, i);
                int dr = rng_below(&rs, 10), dk = dr < 6 ? D_FOREVER : dr < 8 ? D_PAST : D_TIMED;
                int64_t dl = dk == D_FOREVER ? WEFT_FOREVER
                             : dk == D_PAST  ? weft_now() - 1
                                             : far_deadline();
                actor_issue(&act[i], mm_ops[op], dl);
                mm_apply(&M, i, op, dk);
            } else if (ntimed && (r < 90 || !nblocked)) {
                int i = timed[rng_below(&rs, ntimed)];
                actor_expire(&act[i]);
                mm_abort_wait(&M, i, -ETIMEDOUT);
            } else if (nblocked || nidle) {
                /* cancel anyone; it matters only to a blocked actor */
                int i = rng_below(&rs, M.n);
                actor_cancel(&act[i]);
                M.a[i].cancelled = 1;
                mm_abort_wait(&M, i, -ECANCELED);
            } else {
                REQUIRE(0, "seq %d: everyone is re-locking", seq);
            }
            mm_check(&M, act, &x, seq, step);
        }
        /* Wind down: cancel the blocked, unlock the owner, until idle. */
        for (int guard = 0;; guard++) {
            REQUIRE(guard < 100, "seq %d: cannot wind down", seq);
            int busy = 0;
            for (int i = 0; i < M.n; i++)
                if (M.a[i].st == ST_LOCKWAIT || M.a[i].st == ST_CONDWAIT) {
                    actor_cancel(&act[i]);
                    M.a[i].cancelled = 1;
                    mm_abort_wait(&M, i, -ECANCELED);
                    mm_check(&M, act, &x, seq, 1000 + guard);
                }
            if (M.owner >= 0 && M.a[M.owner].st == ST_IDLE) {
                int o = M.owner;
                actor_issue(&act[o], do_unlock, WEFT_FOREVER);
                mm_apply(&M, o, OP_UNLOCK, D_FOREVER);
                mm_check(&M, act, &x, seq, 2000 + guard);
            }
            for (int i = 0; i < M.n; i++)
                busy |= M.a[i].st != ST_IDLE;
            if (!busy && M.owner < 0)
                break;
        }
        REQUIRE(weft__mutex_waiters(&x.m) == 0 && weft__cond_waiters(&x.c) == 0 &&
                    weft__mutex_owner(&x.m) == 0,
                "seq %d: waiters left behind", seq);
        for (int i = 0; i < M.n; i++)
            actor_stop(&act[i]);
    }
}

static void body_mutex_cond_model_pinned(void *p)
{
    /* Deterministic interleaving: controller and actors pinned on one
     * worker (see actors.h). */
    run_pinned(body_mutex_cond_model, p);
}

START_TEST(mutex_cond_model)
{
    struct mm_run run = { .sequences = test_quick() ? 300 : 3000 };
    FOR_WORKERS(body_mutex_cond_model_pinned, &run);
}
END_TEST

/* -------------------------------------------- stress (several workers)
 *
 * Many fibers hammer one object and the totals are checked at the end.
 * With one worker they check the single-worker paths under heavy
 * interleaving (yields inside critical sections); with two (the sync_mt
 * and sync_migrate runs) they catch missing locks, lost wake-ups and
 * broken hand-offs. Counters touched outside a weft lock are
 * atomics; the ones guarded by a weft mutex are plain on purpose. */

#include <stdatomic.h>

#define ST_FIBERS 64
#define ST_ITERS  (test_quick() ? 1000 : 10000)

struct mutex_stress {
    weft_mutex m;
    uint64_t total;                 /* guarded by m */
    int inside;                     /* guarded by m: never above 1 */
    _Atomic int errors;
};

static void *mutex_hammer(void *p)
{
    struct mutex_stress *x = p;
    int iters = ST_ITERS;
    uint64_t rs = (uint64_t)(uintptr_t)&rs ^ test_seed_value;
    for (int i = 0; i < iters; i++) {
        int k = rng_below(&rs, 16), r;
        if (k == 0) {
            while ((r = weft_mutex_trylock(&x->m)) == -EBUSY)
                weft_yield();
        } else if (k == 1) {
            /* A short deadline: timeouts race with hand-offs. */
            while ((r = weft_mutex_lock(&x->m, weft_now() + 20000)) == -ETIMEDOUT)
                ;
        } else {
            r = weft_mutex_lock(&x->m, WEFT_FOREVER);
        }
        if (r != 0) {
            atomic_fetch_add(&x->errors, 1);
            continue;
        }
        if (x->inside++ != 0)
            atomic_fetch_add(&x->errors, 1);
        uint64_t t = x->total;
        if (k == 2)
            weft_yield();           /* hold it across a switch */
        x->total = t + 1;
        x->inside--;
        if (weft_mutex_unlock(&x->m) != 0)
            atomic_fetch_add(&x->errors, 1);
        if (k == 3)
            weft_yield();
    }
    return NULL;
}

static void body_mutex_stress(void *unused)
{
    (void)unused;
    static struct mutex_stress x;
    memset(&x, 0, sizeof x);
    ck_assert_int_eq(weft_mutex_init(&x.m), 0);
    weft_fiber *f[ST_FIBERS];
    for (int i = 0; i < ST_FIBERS; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, mutex_hammer, &x), 0);
    for (int i = 0; i < ST_FIBERS; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(atomic_load(&x.errors), 0);
    ck_assert_uint_eq(x.total, (uint64_t)ST_FIBERS * (uint64_t)ST_ITERS);
    ck_assert_uint_eq(weft__mutex_owner(&x.m), 0);
    ck_assert_uint_eq(weft__mutex_waiters(&x.m), 0);
}

START_TEST(stress_mutex)
{
    FOR_WORKERS(body_mutex_stress, NULL);
}
END_TEST

/* Semaphores: pairs of fibers ping-pong through two semaphores, and
 * everyone also passes through a 4-slot limiter. */
#define SEM_PAIRS 16
#define SEM_SLOTS 4

struct sem_stress {
    weft_sem ping[SEM_PAIRS], pong[SEM_PAIRS];
    weft_sem limit;
    _Atomic int in_limit, max_in_limit, errors;
    _Atomic uint64_t passes;
};

struct sem_side { struct sem_stress *x; int pair, pinger; };

static void limited(struct sem_stress *x)
{
    if (weft_sem_acquire(&x->limit, WEFT_FOREVER) != 0) {
        atomic_fetch_add(&x->errors, 1);
        return;
    }
    int n = atomic_fetch_add(&x->in_limit, 1) + 1;
    int m = atomic_load(&x->max_in_limit);
    while (n > m && !atomic_compare_exchange_weak(&x->max_in_limit, &m, n))
        ;
    weft_yield();
    atomic_fetch_sub(&x->in_limit, 1);
    if (weft_sem_release(&x->limit) != 0)
        atomic_fetch_add(&x->errors, 1);
}

static void *sem_player(void *p)
{
    struct sem_side *s = p;
    struct sem_stress *x = s->x;
    int iters = ST_ITERS / 4;
    for (int i = 0; i < iters; i++) {
        int r1, r2;
        if (s->pinger) {
            r1 = weft_sem_release(&x->ping[s->pair]);
            r2 = weft_sem_acquire(&x->pong[s->pair], WEFT_FOREVER);
        } else {
            r1 = weft_sem_acquire(&x->ping[s->pair], WEFT_FOREVER);
            r2 = weft_sem_release(&x->pong[s->pair]);
            atomic_fetch_add(&x->passes, 1);
        }
        if (r1 || r2)
            atomic_fetch_add(&x->errors, 1);
        if ((i & 15) == 0)
            limited(x);
    }
    return NULL;
}

static void body_sem_stress(void *unused)
{
    (void)unused;
    static struct sem_stress x;
    static struct sem_side side[2 * SEM_PAIRS];
    memset(&x, 0, sizeof x);
    ck_assert_int_eq(weft_sem_init(&x.limit, SEM_SLOTS), 0);
    weft_fiber *f[2 * SEM_PAIRS];
    for (int i = 0; i < SEM_PAIRS; i++) {
        ck_assert_int_eq(weft_sem_init(&x.ping[i], 0), 0);
        ck_assert_int_eq(weft_sem_init(&x.pong[i], 0), 0);
    }
    for (int i = 0; i < 2 * SEM_PAIRS; i++) {
        side[i] = (struct sem_side){ &x, i / 2, i % 2 };
        ck_assert_int_eq(weft_spawn(&f[i], NULL, sem_player, &side[i]), 0);
    }
    for (int i = 0; i < 2 * SEM_PAIRS; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(atomic_load(&x.errors), 0);
    ck_assert_uint_eq(atomic_load(&x.passes), (uint64_t)SEM_PAIRS * (uint64_t)(ST_ITERS / 4));
    ck_assert_int_le(atomic_load(&x.max_in_limit), SEM_SLOTS);
    ck_assert_int_eq(weft__sem_value(&x.limit), SEM_SLOTS);
    for (int i = 0; i < SEM_PAIRS; i++) {
        ck_assert_int_eq(weft__sem_value(&x.ping[i]), 0);
        ck_assert_int_eq(weft__sem_value(&x.pong[i]), 0);
        ck_assert_uint_eq(weft__sem_waiters(&x.ping[i]), 0);
    }
}

START_TEST(stress_sem)
{
    FOR_WORKERS(body_sem_stress, NULL);
}
END_TEST

/* Condition variables: a bounded buffer with producers and consumers;
 * waits with short deadlines make timeouts race with signals and the
 * re-lock, and some wake-ups are broadcasts. */
#define PC_PRODUCERS 8
#define PC_CONSUMERS 8
#define PC_CAP 8

struct pc {
    weft_mutex m;
    weft_cond notfull, notempty;
    uint64_t buf[PC_CAP];           /* guarded by m, as are the three below */
    int head, len, producers_left;
    uint64_t taken_sum, taken_n;
    _Atomic int errors;
};

static int pc_wait(struct pc *x, weft_cond *c, int timed)
{
    int r = weft_cond_wait(c, &x->m, timed ? weft_now() + 50000 : WEFT_FOREVER);
    if (weft__mutex_owner(&x->m) != weft_fiber_id(weft_self()))
        atomic_fetch_add(&x->errors, 1);       /* must own it again, whatever r */
    if (r != 0 && r != -ETIMEDOUT)
        atomic_fetch_add(&x->errors, 1);
    return r;
}

static void *pc_producer(void *p)
{
    struct pc *x = p;
    int items = ST_ITERS / 2;
    for (int i = 1; i <= items; i++) {
        if (weft_mutex_lock(&x->m, WEFT_FOREVER) != 0) {
            atomic_fetch_add(&x->errors, 1);
            return NULL;
        }
        while (x->len == PC_CAP)
            pc_wait(x, &x->notfull, i & 1);
        x->buf[(x->head + x->len) % PC_CAP] = (uint64_t)i;
        x->len++;
        if (i % 7 == 0)
            weft_cond_broadcast(&x->notempty);
        else
            weft_cond_signal(&x->notempty);
        weft_mutex_unlock(&x->m);
    }
    weft_mutex_lock(&x->m, WEFT_FOREVER);
    if (--x->producers_left == 0)
        weft_cond_broadcast(&x->notempty);
    weft_mutex_unlock(&x->m);
    return NULL;
}

static void *pc_consumer(void *p)
{
    struct pc *x = p;
    int k = 0;
    for (;;) {
        if (weft_mutex_lock(&x->m, WEFT_FOREVER) != 0) {
            atomic_fetch_add(&x->errors, 1);
            return NULL;
        }
        while (x->len == 0 && x->producers_left > 0)
            pc_wait(x, &x->notempty, ++k & 1);
        if (x->len == 0) {
            weft_mutex_unlock(&x->m);
            return NULL;
        }
        uint64_t v = x->buf[x->head];
        x->head = (x->head + 1) % PC_CAP;
        x->len--;
        x->taken_sum += v;
        x->taken_n++;
        weft_cond_signal(&x->notfull);
        weft_mutex_unlock(&x->m);
        if ((k & 31) == 0)
            weft_yield();
    }
}

static void body_cond_stress(void *unused)
{
    (void)unused;
    static struct pc x;
    memset(&x, 0, sizeof x);
    ck_assert_int_eq(weft_mutex_init(&x.m), 0);
    ck_assert_int_eq(weft_cond_init(&x.notfull), 0);
    ck_assert_int_eq(weft_cond_init(&x.notempty), 0);
    x.producers_left = PC_PRODUCERS;
    weft_fiber *f[PC_PRODUCERS + PC_CONSUMERS];
    for (int i = 0; i < PC_CONSUMERS; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, pc_consumer, &x), 0);
    for (int i = 0; i < PC_PRODUCERS; i++)
        ck_assert_int_eq(weft_spawn(&f[PC_CONSUMERS + i], NULL, pc_producer, &x), 0);
    for (int i = 0; i < PC_PRODUCERS + PC_CONSUMERS; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    uint64_t n = (uint64_t)(ST_ITERS / 2);
    ck_assert_int_eq(atomic_load(&x.errors), 0);
    ck_assert_uint_eq(x.taken_n, PC_PRODUCERS * n);
    ck_assert_uint_eq(x.taken_sum, PC_PRODUCERS * (n * (n + 1) / 2));
    ck_assert_int_eq(x.len, 0);
    ck_assert_uint_eq(weft__cond_waiters(&x.notfull), 0);
    ck_assert_uint_eq(weft__cond_waiters(&x.notempty), 0);
    ck_assert_uint_eq(weft__mutex_owner(&x.m), 0);
    ck_assert_uint_eq(weft__mutex_waiters(&x.m), 0);
}

START_TEST(stress_cond)
{
    FOR_WORKERS(body_cond_stress, NULL);
}
END_TEST

/* Wait groups: many fibers add and finish concurrently while the count is
 * held above zero, so no waiter may return until the final done; then
 * they all must. A second group is waited on with short deadlines. */
#define WG_ADDERS 32
#define WG_WAITERS 8

struct wg_stress {
    weft_wg wg, quick;
    _Atomic int returned, errors;
};

static void *wg_adder(void *p)
{
    struct wg_stress *x = p;
    int iters = ST_ITERS / 5;
    for (int i = 0; i < iters; i++) {
        if (weft_wg_add(&x->wg, 2) != 0 || weft_wg_add(&x->quick, 1) != 0)
            atomic_fetch_add(&x->errors, 1);
        if ((i & 7) == 0)
            weft_yield();
        if (weft_wg_done(&x->wg) != 0 || weft_wg_done(&x->wg) != 0 ||
            weft_wg_done(&x->quick) != 0)
            atomic_fetch_add(&x->errors, 1);
    }
    return NULL;
}

static void *wg_stress_waiter(void *p)
{
    struct wg_stress *x = p;
    /* The quick group touches zero often: short waits race with it. */
    for (int i = 0; i < 50; i++) {
        int r = weft_wg_wait(&x->quick, weft_now() + 10000);
        if (r != 0 && r != -ETIMEDOUT)
            atomic_fetch_add(&x->errors, 1);
    }
    int r = weft_wg_wait(&x->wg, WEFT_FOREVER);
    if (r != 0)
        atomic_fetch_add(&x->errors, 1);
    atomic_fetch_add(&x->returned, 1);
    return NULL;
}

static void body_wg_stress(void *unused)
{
    (void)unused;
    static struct wg_stress x;
    memset(&x, 0, sizeof x);
    ck_assert_int_eq(weft_wg_init(&x.wg), 0);
    ck_assert_int_eq(weft_wg_init(&x.quick), 0);
    ck_assert_int_eq(weft_wg_add(&x.wg, 1), 0);       /* held until the end */
    weft_fiber *a[WG_ADDERS], *wt[WG_WAITERS];
    for (int i = 0; i < WG_WAITERS; i++)
        ck_assert_int_eq(weft_spawn(&wt[i], NULL, wg_stress_waiter, &x), 0);
    for (int i = 0; i < WG_ADDERS; i++)
        ck_assert_int_eq(weft_spawn(&a[i], NULL, wg_adder, &x), 0);
    for (int i = 0; i < WG_ADDERS; i++)
        ck_assert_int_eq(weft_join(a[i], NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(atomic_load(&x.returned), 0);
    ck_assert_int_eq(weft_wg_done(&x.wg), 0);
    for (int i = 0; i < WG_WAITERS; i++)
        ck_assert_int_eq(weft_join(wt[i], NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(atomic_load(&x.errors), 0);
    ck_assert_int_eq(atomic_load(&x.returned), WG_WAITERS);
    ck_assert_uint_eq(weft__wg_waiters(&x.wg), 0);
    ck_assert_uint_eq(weft__wg_waiters(&x.quick), 0);
    ck_assert_int_eq(weft_wg_wait(&x.quick, weft_now() - 1), 0);   /* back to zero */
}

START_TEST(stress_wg)
{
    FOR_WORKERS(body_wg_stress, NULL);
}
END_TEST

/* Cancellation racing with hand-offs: waiters on a mutex and a semaphore
 * are cancelled while the resource is being handed around; every waiter
 * either got the resource (and gives it back) or saw -ECANCELED, and
 * nothing is left queued or owned. */
struct cancel_stress {
    weft_mutex m;
    weft_sem s;
    _Atomic int got, cancelled, errors;
};

static void *cancel_victim(void *p)
{
    struct cancel_stress *x = p;
    for (int i = 0; i < 100; i++) {
        int r = (i & 1) ? weft_mutex_lock(&x->m, WEFT_FOREVER) : weft_sem_acquire(&x->s, WEFT_FOREVER);
        if (r == -ECANCELED) {
            atomic_fetch_add(&x->cancelled, 1);
            return NULL;
        }
        if (r != 0) {
            atomic_fetch_add(&x->errors, 1);
            return NULL;
        }
        atomic_fetch_add(&x->got, 1);
        weft_yield();
        r = (i & 1) ? weft_mutex_unlock(&x->m) : weft_sem_release(&x->s);
        if (r != 0)
            atomic_fetch_add(&x->errors, 1);
    }
    return NULL;
}

static void body_cancel_stress(void *unused)
{
    (void)unused;
    static struct cancel_stress x;
    uint64_t rs = test_seed_value;
    int rounds = test_quick() ? 5 : 30;
    for (int round = 0; round < rounds; round++) {
        memset(&x, 0, sizeof x);
        ck_assert_int_eq(weft_mutex_init(&x.m), 0);
        ck_assert_int_eq(weft_sem_init(&x.s, 2), 0);
        weft_fiber *f[32];
        for (int i = 0; i < 32; i++)
            ck_assert_int_eq(weft_spawn(&f[i], NULL, cancel_victim, &x), 0);
        for (int i = 0; i < 32; i++) {
            for (int k = rng_below(&rs, 4); k > 0; k--)
                weft_yield();
            weft_cancel(f[i]);
        }
        for (int i = 0; i < 32; i++)
            ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
        ck_assert_int_eq(atomic_load(&x.errors), 0);
        ck_assert_uint_eq(weft__mutex_owner(&x.m), 0);
        ck_assert_uint_eq(weft__mutex_waiters(&x.m), 0);
        ck_assert_uint_eq(weft__sem_waiters(&x.s), 0);
        ck_assert_int_eq(weft__sem_value(&x.s), 2);
    }
}

START_TEST(stress_cancel_handoff)
{
    FOR_WORKERS(body_cancel_stress, NULL);
}
END_TEST

/* ------------------------------------------------------------------ main */

static Suite *sync_suite(void)
{
    Suite *s = suite_create("sync");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, bad_input);
    tcase_add_test(tc, outside_fiber_is_eperm);
    tcase_add_test(tc, mutex_fifo_handoff);
    tcase_add_test(tc, mutex_deadline_and_cancel);
    tcase_add_test(tc, mutex_handoff_beats_deadline);
    tcase_add_test(tc, mutex_other_runtime_exdev);
    tcase_add_test(tc, cond_signal_broadcast);
    tcase_add_test(tc, cond_deadline_and_cancel);
    tcase_add_test(tc, cond_already_cancelled);
    tcase_add_test(tc, sem_basic);
    tcase_add_test(tc, wg_basic);
    tcase_add_test(tc, mutex_cond_model);
    suite_add_tcase(s, tc);
    TCase *st = tcase_create("stress");
    tcase_set_timeout(st, 120);
    tcase_add_test(st, stress_mutex);
    tcase_add_test(st, stress_sem);
    tcase_add_test(st, stress_cond);
    tcase_add_test(st, stress_wg);
    tcase_add_test(st, stress_cancel_handoff);
    suite_add_tcase(s, st);
    return s;
}

int main(void)
{
    test_seed_value = test_seed();
    return run_suite(sync_suite());
}
