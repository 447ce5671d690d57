/* check_signal.c - tests of weft_signal_wait (src/unix/signal.c): delivery,
 * deadline, cancellation, argument errors, and that the signal mask is
 * restored once nobody waits, and a pinned waiter under one and two
 * workers. Runs on both reactor backends.
 *
 * Several workers (WEFT_WORKERS=2): weft_signal_wait blocks and reads on
 * worker 0, the thread that called weft_run() (see src/unix/signal.c). The
 * masks these tests check, and the ones they change by hand, are that
 * thread's, so their bodies first move to worker 0 (on_w0(); a no-op with
 * one worker).
 */
#include "internal.h"
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

/* Several workers: keeps the calling fiber on worker 0 from now on (its
 * home becomes worker 0; a yield moves it there). One worker: nothing. */
static void on_w0(void)
{
    struct weft__fiber *self = weft__self(weft__worker());
    ck_assert_ptr_nonnull(self);
    struct weft__rt *rt = self->rt;
    if (!rt->mt)
        return;
    self->home = &rt->w0;
    while (self->w != &rt->w0)
        weft__yield(self->w, self);
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
    on_w0();
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
    on_w0();
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
    on_w0();
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

/* A pinned waiter, under one and two workers, is sent a process-directed
 * signal and gets it through its signalfd; it comes back on the thread it
 * is pinned to, and worker 0's mask is restored afterwards. With two
 * workers a second waiter is pinned to a worker other than worker 0 (a
 * "finder" fiber that was stolen by it spawns the waiter there): the wait
 * moves it to worker 0 and back. */
static pthread_t run_thread;            /* the thread that called weft_run(): worker 0 */

struct pw {
    int r;
    pthread_t before, after;
    _Atomic int waiting;                /* about to call weft_signal_wait */
    int done;
};

static void *pinned_waiter(void *arg)
{
    struct pw *p = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    p->before = pthread_self();
    atomic_store(&p->waiting, 1);
    p->r = weft_signal_wait(&set, weft_deadline_ms(5000));
    p->after = pthread_self();
    p->done = 1;
    return NULL;
}

/* Sends SIGUSR2 to the process once p waits for it: once worker 0 blocks
 * it (before that, the default action would end the process). */
static void *process_raiser(void *arg)
{
    struct pw *p = arg;
    on_w0();
    int64_t until = weft_deadline_ms(5000);
    while (!(atomic_load(&p->waiting) && blocked(SIGUSR2)) && weft_now() < until)
        weft_sleep_ms(1);
    weft_sleep_ms(10);
    if (blocked(SIGUSR2))
        kill(getpid(), SIGUSR2);
    return NULL;
}

static void run_pinned_waiter(struct pw *p)
{
    memset(p, 0, sizeof *p);
    weft_attr attr;
    weft_attr_init(&attr);
    attr.pinned = 1;
    weft_fiber *w, *k;
    ck_assert_int_eq(weft_spawn(&w, &attr, pinned_waiter, p), 0);
    ck_assert_int_eq(weft_spawn(&k, NULL, process_raiser, p), 0);
    ck_assert_int_eq(weft_join(w, NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_join(k, NULL, WEFT_FOREVER), 0);
}

static _Atomic int found;
static struct pw far_waiter;

/* Yields until a worker other than worker 0 runs it; the first to get
 * there runs a pinned waiter on that worker. */
static void *finder(void *arg)
{
    (void)arg;
    int64_t until = weft_deadline_ms(5000);
    while (!atomic_load(&found) && weft_now() < until) {
        int z = 0;
        if (!pthread_equal(pthread_self(), run_thread) &&
            atomic_compare_exchange_strong(&found, &z, 1)) {
            run_pinned_waiter(&far_waiter);
            return NULL;
        }
        weft_yield();
    }
    return NULL;
}

static void body_workers(void *arg)
{
    int workers = *(int *)arg;
    on_w0();
    struct pw near;
    run_pinned_waiter(&near);
    ck_assert_int_eq(near.r, SIGUSR2);
    ck_assert(pthread_equal(near.before, near.after));
    ck_assert(!blocked(SIGUSR2));       /* worker 0's mask: restored */
    if (workers < 2)
        return;
    atomic_store(&found, 0);
    memset(&far_waiter, 0, sizeof far_waiter);
    weft_fiber *f[8];
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, finder, NULL), 0);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    ck_assert_msg(atomic_load(&found), "no fiber ever ran on another worker");
    ck_assert_int_eq(far_waiter.done, 1);
    ck_assert_int_eq(far_waiter.r, SIGUSR2);
    ck_assert(!pthread_equal(far_waiter.before, run_thread));   /* started off worker 0 */
    ck_assert(pthread_equal(far_waiter.before, far_waiter.after)); /* and came back */
    ck_assert(!blocked(SIGUSR2));
}

START_TEST(test_pinned_workers)
{
    static const int counts[] = { 1, 2 };
    run_thread = pthread_self();
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        weft_config cfg;
        weft_config_init(&cfg);
        cfg.workers = counts[i];
        int n = counts[i];
        int r = weft_run(&cfg, body_workers, &n);
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
    tcase_add_test(tc, test_pinned_workers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(signal_suite());
}
