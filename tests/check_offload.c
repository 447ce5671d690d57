/* check_offload.c - tests of weft_offload and weft_getaddrinfo
 * (src/offload.c): results come back, the work runs on another thread
 * while the worker keeps running fibers, the pool respects its limit,
 * grows on demand and retires idle helpers, cancellation semantics,
 * error paths, and many fibers offloading at once (with one worker and
 * with two).
 */
#include "testutil.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static void nap_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void *double_it(void *arg) { return (void *)((intptr_t)arg * 2); }

static pthread_t worker_thread;

static void *which_thread(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)pthread_equal(pthread_self(), worker_thread);
}

static void body_basic(void *arg)
{
    (void)arg;
    void *res = NULL;
    ck_assert_int_eq(weft_offload(double_it, (void *)21, &res), 0);
    ck_assert_int_eq((intptr_t)res, 42);
    ck_assert_int_eq(weft_offload(double_it, (void *)1, NULL), 0);   /* result optional */
    worker_thread = pthread_self();
    ck_assert_int_eq(weft_offload(which_thread, NULL, &res), 0);
    ck_assert_int_eq((intptr_t)res, 0);      /* not the worker's thread */
    ck_assert_int_eq(weft_offload(NULL, NULL, &res), -EINVAL);
    ck_assert_int_ge(weft_offload_threads(), 1);
}

START_TEST(test_basic)
{
    void *res;
    ck_assert_int_eq(weft_offload(double_it, (void *)1, &res), -EPERM);
    run_in_runtime(NULL, body_basic, NULL);
}
END_TEST

/* While a helper sleeps, other fibers keep running on the worker. */
static void *sleepy(void *arg) { nap_ms((int)(intptr_t)arg); return arg; }

static int ticks;

static void *ticker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 10; i++) {
        weft_sleep_ms(5);
        ticks++;
    }
    return NULL;
}

static void body_worker_free(void *arg)
{
    (void)arg;
    weft_fiber *t;
    ck_assert_int_eq(weft_spawn(&t, NULL, ticker, NULL), 0);
    ck_assert_int_eq(weft_offload(sleepy, (void *)200, NULL), 0);
    ck_assert_int_ge(ticks, 5);     /* would be 0 if the worker had blocked */
    weft_join(t, NULL, WEFT_FOREVER);
}

START_TEST(test_worker_keeps_running)
{
    run_in_runtime(NULL, body_worker_free, NULL);
}
END_TEST

static atomic_int running, peak;

static void *counted(void *arg)
{
    int now = atomic_fetch_add(&running, 1) + 1;
    int p = atomic_load(&peak);
    while (now > p && !atomic_compare_exchange_weak(&peak, &p, now))
        ;
    nap_ms(30);
    atomic_fetch_sub(&running, 1);
    return arg;
}

static void *offloader(void *arg)
{
    void *res = NULL;
    ck_assert_int_eq(weft_offload(counted, arg, &res), 0);
    ck_assert_ptr_eq(res, arg);
    return NULL;
}

static void run_many(int n)
{
    weft_fiber *f[64];
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, offloader, (void *)(intptr_t)(i + 1)), 0);
    for (int i = 0; i < n; i++)
        weft_join(f[i], NULL, WEFT_FOREVER);
}

static void body_limit(void *arg)
{
    (void)arg;
    /* limit 4: 32 jobs of 30 ms never run more than 4 at once, all finish */
    ck_assert_int_eq(weft_offload_config(4, 10000), 0);
    int64_t t0 = weft_now();
    run_many(32);
    ck_assert_int_le(atomic_load(&peak), 4);
    ck_assert_int_ge(atomic_load(&peak), 2);     /* and it did run them in parallel */
    ck_assert_int_le(weft_offload_threads(), 4);
    ck_assert_int_ge((weft_now() - t0) / 1000000, 8 * 30 - 20);
    /* more threads: it grows on demand */
    atomic_store(&peak, 0);
    ck_assert_int_eq(weft_offload_config(16, 10000), 0);
    run_many(32);
    ck_assert_int_gt(atomic_load(&peak), 4);
    ck_assert_int_le(atomic_load(&peak), 16);
    /* idle helpers retire */
    ck_assert_int_eq(weft_offload_config(16, 30), 0);
    for (int i = 0; i < 100 && weft_offload_threads() > 0; i++)
        weft_sleep_ms(10);
    ck_assert_int_eq(weft_offload_threads(), 0);
    /* and it starts again from nothing */
    void *res;
    ck_assert_int_eq(weft_offload(double_it, (void *)5, &res), 0);
    ck_assert_int_eq((intptr_t)res, 10);
    ck_assert_int_eq(weft_offload_config(-1, 0), -EINVAL);
    ck_assert_int_eq(weft_offload_config(0, -1), 0);     /* back to defaults */
}

START_TEST(test_pool_limit_grow_retire)
{
    run_in_runtime(NULL, body_limit, NULL);
}
END_TEST

struct cancel_ctx { int r1, r2, after; void *res; };

static void *cancelled_offload(void *arg)
{
    struct cancel_ctx *c = arg;
    c->r1 = weft_offload(sleepy, (void *)100, &c->res);   /* cancelled meanwhile */
    c->after = weft_cancelled();
    c->r2 = weft_offload(double_it, (void *)1, NULL);      /* already cancelled */
    return NULL;
}

static void body_cancel(void *arg)
{
    (void)arg;
    struct cancel_ctx c = { 99, 99, 0, NULL };
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, NULL, cancelled_offload, &c), 0);
    weft_sleep_ms(20);
    ck_assert_int_eq(weft_cancel(f), 0);
    weft_join(f, NULL, WEFT_FOREVER);
    /* the running call cannot be interrupted: it completes with its result */
    ck_assert_int_eq(c.r1, 0);
    ck_assert_int_eq((intptr_t)c.res, 100);
    ck_assert_int_eq(c.after, 1);
    ck_assert_int_eq(c.r2, -ECANCELED);
}

START_TEST(test_cancel)
{
    run_in_runtime(NULL, body_cancel, NULL);
}
END_TEST

static void body_gai(void *arg)
{
    (void)arg;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    ck_assert_int_eq(weft_getaddrinfo("localhost", "80", &hints, &res), 0);
    ck_assert_ptr_nonnull(res);
    freeaddrinfo(res);
    hints.ai_flags = AI_NUMERICHOST;
    ck_assert_int_eq(weft_getaddrinfo("127.0.0.1", NULL, &hints, &res), 0);
    freeaddrinfo(res);
    ck_assert_int_eq(weft_getaddrinfo("not-numeric", NULL, &hints, &res), -ENOENT);
    ck_assert_int_eq(weft_getaddrinfo(NULL, NULL, &hints, &res), -EINVAL);
    ck_assert_int_eq(weft_getaddrinfo("localhost", NULL, &hints, NULL), -EINVAL);
    hints.ai_flags = 0;
    hints.ai_family = 12345;
    ck_assert_int_eq(weft_getaddrinfo("localhost", NULL, &hints, &res), -EINVAL);
    hints.ai_family = 0;
    hints.ai_flags = AI_NUMERICSERV;
    ck_assert_int_eq(weft_getaddrinfo("localhost", "http", &hints, &res), -ENOENT);
}

START_TEST(test_getaddrinfo)
{
    struct addrinfo *res;
    ck_assert_int_eq(weft_getaddrinfo("localhost", NULL, NULL, &res), -EPERM);
    run_in_runtime(NULL, body_gai, NULL);
}
END_TEST

/* Many fibers offload at once (with two workers: from both workers at
 * once); every result comes back to the fiber that asked. */
static const int worker_counts[] = { 1, 2 };

static void run_each_worker_count(void (*body)(void *), void *arg)
{
    for (size_t i = 0; i < sizeof worker_counts / sizeof *worker_counts; i++) {
        weft_config cfg;
        weft_config_init(&cfg);
        cfg.workers = worker_counts[i];
        int r = weft_run(&cfg, body, arg);
        ck_assert_msg(r == 0, "weft_run(workers=%d): %s", worker_counts[i], weft_strerror(r));
    }
}

#define CONC_FIBERS 32
#define CONC_CALLS  20

static _Atomic int conc_errors;
static _Atomic long conc_sum;

static void *conc_fiber(void *arg)
{
    intptr_t id = (intptr_t)arg;
    for (intptr_t i = 0; i < CONC_CALLS; i++) {
        void *res = NULL;
        intptr_t v = id * 1000 + i;
        if (weft_offload(double_it, (void *)v, &res) != 0 || (intptr_t)res != 2 * v)
            atomic_fetch_add(&conc_errors, 1);
        atomic_fetch_add(&conc_sum, (long)(intptr_t)res);
        if (i % 4 == 0)
            weft_yield();
    }
    return NULL;
}

static void body_concurrent(void *arg)
{
    (void)arg;
    atomic_store(&conc_errors, 0);
    atomic_store(&conc_sum, 0);
    weft_fiber *f[CONC_FIBERS];
    for (intptr_t i = 0; i < CONC_FIBERS; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, conc_fiber, (void *)i), 0);
    for (int i = 0; i < CONC_FIBERS; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    long want = 0;
    for (long id = 0; id < CONC_FIBERS; id++)
        for (long i = 0; i < CONC_CALLS; i++)
            want += 2 * (id * 1000 + i);
    ck_assert_int_eq(atomic_load(&conc_errors), 0);
    ck_assert_int_eq(atomic_load(&conc_sum), want);
}

START_TEST(test_concurrent_offloads)
{
    run_each_worker_count(body_concurrent, NULL);
}
END_TEST

static Suite *offload_suite(void)
{
    Suite *s = suite_create("offload");
    TCase *tc = tcase_create("offload");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_basic);
    tcase_add_test(tc, test_worker_keeps_running);
    tcase_add_test(tc, test_pool_limit_grow_retire);
    tcase_add_test(tc, test_cancel);
    tcase_add_test(tc, test_getaddrinfo);
    tcase_add_test(tc, test_concurrent_offloads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(offload_suite());
}
