/* check_signal.c - tests of weft_signal_wait (src/signal.c): delivery,
 * deadline, cancellation, argument errors, and that the signal mask is
 * restored once nobody waits. Runs on both reactor backends.
 */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
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

static Suite *signal_suite(void)
{
    Suite *s = suite_create("signal");
    TCase *tc = tcase_create("signal");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_deliver);
    tcase_add_test(tc, test_deadline);
    tcase_add_test(tc, test_cancel);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(signal_suite());
}
