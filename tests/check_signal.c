/* check_signal.c - tests of weft_signal_wait (src/signal.c): delivery,
 * deadline, cancellation, argument errors, and that the signal mask is
 * restored once nobody waits, and a pinned waiter under one and two
 * workers. Runs on both reactor backends.
 */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static int64_t elapsed_ms(int64_t t0) { return (weft_now() - t0) / 1000000; }

static int blocked(int sig)
{
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, sig);
}

static void *raiser(void *arg)
{
    weft_sleep_ms(30);
    kill(getpid(), (int)(intptr_t)arg);
    return NULL;
}

static void body_deliver(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, NULL, raiser, (void *)(intptr_t)SIGUSR2), 0);
    ck_assert_int_eq(weft_signal_wait(&set, weft_deadline_ms(5000)), SIGUSR2);
    weft_join(f, NULL, WEFT_FOREVER);
    ck_assert(!blocked(SIGUSR1) && !blocked(SIGUSR2));   /* restored */
    /* a signal already pending when the wait starts is taken at once */
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &one, NULL);
    kill(getpid(), SIGUSR1);
    ck_assert_int_eq(weft_signal_wait(&one, 0), SIGUSR1);
    ck_assert(blocked(SIGUSR1));        /* it was blocked before: stays blocked */
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
}

START_TEST(test_deliver)
{
    run_in_runtime(NULL, body_deliver, NULL);
}
END_TEST

static void body_deadline(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    int64_t t0 = weft_now();
    ck_assert_int_eq(weft_signal_wait(&set, weft_deadline_ms(50)), -ETIMEDOUT);
    ck_assert_int_ge(elapsed_ms(t0), 50);
    ck_assert_int_lt(elapsed_ms(t0), 1000);
    ck_assert(!blocked(SIGUSR1));
}

START_TEST(test_deadline)
{
    run_in_runtime(NULL, body_deadline, NULL);
}
END_TEST

static void *waiter(void *arg)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    *(int *)arg = weft_signal_wait(&set, WEFT_FOREVER);
    return NULL;
}

static void body_cancel(void *arg)
{
    (void)arg;
    int r = 0;
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, NULL, waiter, &r), 0);
    weft_sleep_ms(20);
    ck_assert(blocked(SIGUSR1));        /* blocked while someone waits */
    weft_cancel(f);
    weft_join(f, NULL, WEFT_FOREVER);
    ck_assert_int_eq(r, -ECANCELED);
    ck_assert(!blocked(SIGUSR1));
}

START_TEST(test_cancel)
{
    run_in_runtime(NULL, body_cancel, NULL);
}
END_TEST

static void body_errors(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    ck_assert_int_eq(weft_signal_wait(&set, 0), -EINVAL);
    ck_assert_int_eq(weft_signal_wait(NULL, 0), -EINVAL);
    sigaddset(&set, SIGKILL);
    ck_assert_int_eq(weft_signal_wait(&set, 0), -EINVAL);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    ck_assert_int_eq(weft_signal_wait(&set, 0), -ETIMEDOUT);   /* try once */
}

START_TEST(test_errors)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    ck_assert_int_eq(weft_signal_wait(&set, 0), -EPERM);
    run_in_runtime(NULL, body_errors, NULL);
}
END_TEST

/* With two workers (skipped while the runtime answers -ENOTSUP): a pinned
 * waiter is sent a thread-directed signal (process-directed ones may land
 * on a worker that does not block them), gets it through its signalfd,
 * and its thread's mask is restored afterwards. */
static pthread_t waiter_thread;
static volatile int waiter_ready;

static void *pinned_waiter(void *arg)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    waiter_thread = pthread_self();
    waiter_ready = 1;
    int r = weft_signal_wait(&set, weft_deadline_ms(5000));
    int restored = !blocked(SIGUSR2);
    *(int *)arg = r == SIGUSR2 && restored && pthread_equal(waiter_thread, pthread_self());
    return NULL;
}

static void *thread_raiser(void *arg)
{
    (void)arg;
    while (!waiter_ready)
        weft_sleep_ms(1);
    weft_sleep_ms(30);
    pthread_kill(waiter_thread, SIGUSR2);
    return NULL;
}

static void body_workers(void *arg)
{
    (void)arg;
    int ok = 0;
    waiter_ready = 0;
    weft_attr attr;
    weft_attr_init(&attr);
    attr.pinned = 1;
    weft_fiber *w, *k;
    ck_assert_int_eq(weft_spawn(&w, &attr, pinned_waiter, &ok), 0);
    ck_assert_int_eq(weft_spawn(&k, NULL, thread_raiser, NULL), 0);
    ck_assert_int_eq(weft_join(w, NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_join(k, NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(ok, 1);
}

START_TEST(test_workers)
{
    static const int counts[] = { 1, 2 };
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        weft_config cfg;
        weft_config_init(&cfg);
        cfg.workers = counts[i];
        int r = weft_run(&cfg, body_workers, NULL);
        if (r == -ENOTSUP) {
            printf("skipped with %d workers: the runtime says -ENOTSUP\n", counts[i]);
            continue;
        }
        ck_assert_msg(r == 0, "weft_run(workers=%d): %s", counts[i], weft_strerror(r));
    }
}
END_TEST

static Suite *signal_suite(void)
{
    Suite *s = suite_create("signal");
    TCase *tc = tcase_create("signal");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_deliver);
    tcase_add_test(tc, test_deadline);
    tcase_add_test(tc, test_cancel);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_workers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(signal_suite());
}
