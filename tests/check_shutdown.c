/* check_shutdown.c - weft_rt_shutdown(), weft_rt_shutdown_wait(),
 * weft_rt_shutdown_requested() and weft_config.shutdown_on_signals, each
 * with one and two workers: asked from a fiber, from a plain thread and
 * from a signal handler (weft's own and the program's), every waiter
 * woken, an idle runtime woken, nothing cancelled, every error code, the
 * previous signal dispositions back after the run, and a storm of signals
 * while fibers work.
 */
#include "internal.h"
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static weft_config cfg_workers(int n)
{
    weft_config c;
    weft_config_init(&c);
    c.workers = n;
    return c;
}

static void sleep_ms_thread(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ------------------------------------------ every waiter is woken, once */

enum { WAITERS = 8 };
static _Atomic int woken;

static void *waiter(void *arg)
{
    (void)arg;
    int r = weft_rt_shutdown_wait(weft_deadline_ms(5000));
    ck_assert_int_eq(r, 0);
    atomic_fetch_add(&woken, 1);
    /* Asked before: returns at once, however often. */
    ck_assert_int_eq(weft_rt_shutdown_wait(weft_deadline_ms(-1)), 0);
    ck_assert_int_eq(weft_rt_shutdown_wait(0), 0);
    return NULL;
}

static void *asleep(void *arg)
{
    (void)arg;
    /* Shutting down cancels nothing: this sleep runs to its end. */
    return (void *)(intptr_t)weft_sleep_ms(150);
}

static void body_fiber_asks(void *arg)
{
    (void)arg;
    atomic_store(&woken, 0);
    weft_fiber *w[WAITERS], *s;
    for (int i = 0; i < WAITERS; i++)
        ck_assert_int_eq(weft_spawn(&w[i], NULL, waiter, NULL), 0);
    ck_assert_int_eq(weft_spawn(&s, NULL, asleep, NULL), 0);
    weft_sleep_ms(20);
    ck_assert_int_eq(weft_rt_shutdown_requested(NULL), 0);
    ck_assert_int_eq(weft_rt_shutdown_requested(weft_runtime()), 0);
    ck_assert_int_eq(atomic_load(&woken), 0);
    ck_assert_int_eq(weft_rt_shutdown(weft_runtime()), 0);
    ck_assert_int_eq(weft_rt_shutdown(weft_runtime()), 0);      /* harmless */
    ck_assert_int_eq(weft_rt_shutdown_requested(NULL), 1);
    ck_assert_int_eq(weft_rt_shutdown_requested(weft_runtime()), 1);
    int64_t t0 = weft_now();
    for (int i = 0; i < WAITERS; i++)
        ck_assert_int_eq(weft_join(w[i], NULL, WEFT_FOREVER), 0);
    ck_assert_int_lt(ms_since(t0), 1000);
    ck_assert_int_eq(atomic_load(&woken), WAITERS);
    void *r;
    ck_assert_int_eq(weft_join(s, &r, WEFT_FOREVER), 0);
    ck_assert_int_eq((int)(intptr_t)r, 0);                      /* not cancelled */
    ck_assert_int_eq(weft_cancelled(), 0);
    ck_assert_ptr_null(weft__worker()->rt->shutdown_waiters.head);
}

START_TEST(asked_from_a_fiber)
{
    weft_config c = cfg_workers(_i + 1);
    run_in_runtime(&c, body_fiber_asks, NULL);
}
END_TEST

/* ---------------------------- from a plain thread, into an idle runtime */

static void *ask_later(void *h)
{
    sleep_ms_thread(50);
    return (void *)(intptr_t)weft_rt_shutdown(h);
}

static void body_thread_asks(void *arg)
{
    (void)arg;
    atomic_store(&woken, 0);
    weft_fiber *w[WAITERS];
    for (int i = 0; i < WAITERS; i++)
        ck_assert_int_eq(weft_spawn(&w[i], NULL, waiter, NULL), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, ask_later, weft_runtime()), 0);
    /* Every fiber waits and every worker sleeps until the thread asks. */
    int64_t t0 = weft_now();
    ck_assert_int_eq(weft_rt_shutdown_wait(weft_deadline_ms(5000)), 0);
    ck_assert_int_lt(ms_since(t0), 2000);
    for (int i = 0; i < WAITERS; i++)
        ck_assert_int_eq(weft_join(w[i], NULL, WEFT_FOREVER), 0);
    void *r;
    pthread_join(th, &r);
    ck_assert_int_eq((int)(intptr_t)r, 0);
}

START_TEST(asked_from_a_plain_thread)
{
    weft_config c = cfg_workers(_i + 1);
    run_in_runtime(&c, body_thread_asks, NULL);
}
END_TEST

/* ------------------------------------------------------------ the errors */

static weft_rt *old_handle;

static void *cancel_me(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_rt_shutdown_wait(WEFT_FOREVER);
}

static void body_errors(void *arg)
{
    (void)arg;
    old_handle = weft_runtime();
    int64_t t0 = weft_now();
    ck_assert_int_eq(weft_rt_shutdown_wait(weft_deadline_ms(30)), -ETIMEDOUT);
    ck_assert_int_ge(ms_since(t0), 29);
    ck_assert_int_eq(weft_rt_shutdown_wait(weft_now() - 1), -ETIMEDOUT);
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, NULL, cancel_me, NULL), 0);
    weft_sleep_ms(10);
    ck_assert_int_eq(weft_cancel(f), 0);
    void *r;
    ck_assert_int_eq(weft_join(f, &r, WEFT_FOREVER), 0);
    ck_assert_int_eq((int)(intptr_t)r, -ECANCELED);
    /* A cancelled fiber asked later still learns nothing new: -ECANCELED. */
    ck_assert_int_eq(weft_rt_shutdown(NULL), -EINVAL);
    ck_assert_int_eq(weft_rt_shutdown((weft_rt *)(uintptr_t)0x7fff0000u), -EINVAL);
    ck_assert_int_eq(weft_rt_shutdown_requested((weft_rt *)(uintptr_t)0x7fff0000u), -EINVAL);
    ck_assert_ptr_null(weft__worker()->rt->shutdown_waiters.head);
}

START_TEST(errors)
{
    weft_config c = cfg_workers(_i + 1);
    run_in_runtime(&c, body_errors, NULL);
    ck_assert_int_eq(weft_rt_shutdown_wait(WEFT_FOREVER), -EPERM);
    ck_assert_int_eq(weft_rt_shutdown_requested(NULL), -EPERM);
    ck_assert_int_eq(weft_rt_shutdown(old_handle), -ESHUTDOWN);
    ck_assert_int_eq(weft_rt_shutdown_requested(old_handle), -ESHUTDOWN);
}
END_TEST

/* ------------------------------------------------------ a loop's check */

static void body_loop(void *arg)
{
    (void)arg;
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, ask_later, weft_runtime()), 0);
    long rounds = 0;
    int64_t t0 = weft_now();
    while (!weft_rt_shutdown_requested(NULL) && ms_since(t0) < 5000) {
        rounds++;
        weft_yield();
    }
    ck_assert_int_lt(ms_since(t0), 2000);
    ck_assert_int_gt(rounds, 0);
    pthread_join(th, NULL);
}

START_TEST(loop_checks_the_flag)
{
    weft_config c = cfg_workers(_i + 1);
    run_in_runtime(&c, body_loop, NULL);
}
END_TEST

/* ------------------------------------------------- shutdown_on_signals */

struct sig_run {
    int sig;
    weft_rt *_Atomic h;
    int waited;
};

static void *send_signal_later(void *p)
{
    struct sig_run *s = p;
    sleep_ms_thread(50);
    kill(getpid(), s->sig);
    return NULL;
}

static void body_signal(void *p)
{
    struct sig_run *s = p;
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, send_signal_later, s), 0);
    int64_t t0 = weft_now();
    s->waited = weft_rt_shutdown_wait(weft_deadline_ms(5000));
    ck_assert_int_lt(ms_since(t0), 2000);
    pthread_join(th, NULL);
}

START_TEST(sigint_and_sigterm_ask_for_shutdown)
{
    struct sigaction before, before_int;
    ck_assert_int_eq(sigaction(SIGTERM, NULL, &before), 0);
    ck_assert_int_eq(sigaction(SIGINT, NULL, &before_int), 0);
    for (int k = 0; k < 2; k++) {
        struct sig_run s = { .sig = k ? SIGTERM : SIGINT, .waited = 1 };
        weft_config c = cfg_workers(_i + 1);
        c.shutdown_on_signals = 1;
        run_in_runtime(&c, body_signal, &s);
        ck_assert_int_eq(s.waited, 0);
    }
    /* The previous dispositions are back. */
    struct sigaction after;
    ck_assert_int_eq(sigaction(SIGTERM, NULL, &after), 0);
    ck_assert_ptr_eq((void *)after.sa_handler, (void *)before.sa_handler);
    ck_assert_int_eq(sigaction(SIGINT, NULL, &after), 0);
    ck_assert_ptr_eq((void *)after.sa_handler, (void *)before_int.sa_handler);
}
END_TEST

/* Without the option a SIGTERM ends the process as before (in a child). */
static void body_term_kills(void *arg)
{
    (void)arg;
    kill(getpid(), SIGTERM);
    weft_sleep_ms(2000);
    _exit(0);
}

START_TEST(without_the_option_a_signal_ends_the_process)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);   /* not Check's handler, which kills the group */
        weft_config c = cfg_workers(_i + 1);
        weft_run(&c, body_term_kills, NULL);
        _exit(3);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFSIGNALED(st));
    ck_assert_int_eq(WTERMSIG(st), SIGTERM);
}
END_TEST

/* The program's own handler may call weft_rt_shutdown (async-signal-safe). */
static weft_rt *_Atomic usr1_target;

static void on_usr1(int sig)
{
    (void)sig;
    weft_rt_shutdown(atomic_load(&usr1_target));
}

static void body_own_handler(void *p)
{
    struct sig_run *s = p;
    atomic_store(&usr1_target, weft_runtime());
    body_signal(s);
}

START_TEST(a_programs_own_handler_may_ask)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
    struct sig_run s = { .sig = SIGUSR1, .waited = 1 };
    weft_config c = cfg_workers(_i + 1);
    run_in_runtime(&c, body_own_handler, &s);
    sigaction(SIGUSR1, &old, NULL);
    ck_assert_int_eq(s.waited, 0);
}
END_TEST

/* Only the runtimes that asked for it: two runtimes, one with the option. */
struct two_rt {
    int workers, on_signals;
    _Atomic int *ready, *done;
    int requested;
};

static void body_two(void *p)
{
    struct two_rt *t = p;
    atomic_fetch_add(t->ready, 1);
    if (t->on_signals) {
        ck_assert_int_eq(weft_rt_shutdown_wait(weft_deadline_ms(5000)), 0);
    } else {
        for (int i = 0; i < 5000 && !atomic_load(t->done); i++)
            weft_sleep_ms(1);
        weft_sleep_ms(20);
    }
    t->requested = weft_rt_shutdown_requested(NULL);
    atomic_store(t->done, 1);
}

static void *run_two(void *p)
{
    struct two_rt *t = p;
    weft_config c = cfg_workers(t->workers);
    c.shutdown_on_signals = t->on_signals;
    return (void *)(intptr_t)weft_run(&c, body_two, p);
}

START_TEST(only_runtimes_that_asked)
{
    _Atomic int ready = 0, done = 0;
    struct two_rt a = { _i + 1, 1, &ready, &done, -1 }, b = { _i + 1, 0, &ready, &done, -1 };
    pthread_t ta, tb;
    ck_assert_int_eq(pthread_create(&ta, NULL, run_two, &a), 0);
    ck_assert_int_eq(pthread_create(&tb, NULL, run_two, &b), 0);
    while (atomic_load(&ready) < 2)
        sleep_ms_thread(1);
    sleep_ms_thread(10);
    kill(getpid(), SIGTERM);
    void *ra, *rb;
    pthread_join(ta, &ra);
    pthread_join(tb, &rb);
    ck_assert_ptr_null(ra);
    ck_assert_ptr_null(rb);
    ck_assert_int_eq(a.requested, 1);
    ck_assert_int_eq(b.requested, 0);
}
END_TEST

/* A storm of signals while fibers sleep, pass a token on a channel and
 * wait: every interrupted system call is resumed or retried, nothing is
 * lost, and the run ends normally once the fibers are told. */
static _Atomic int storm_stop;

static void *storm(void *arg)
{
    (void)arg;
    while (!atomic_load(&storm_stop)) {
        kill(getpid(), SIGTERM);
        struct timespec ts = { 0, 100000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void *relay(void *p)
{
    weft_chan **ch = p;
    int v;
    long n = 0;
    while (weft_chan_recv(ch[0], &v, weft_deadline_ms(5000)) == 0) {
        if (weft_chan_send(ch[1], &v, weft_deadline_ms(5000)) != 0)
            break;
        n++;
    }
    return (void *)n;
}

static void body_storm(void *arg)
{
    (void)arg;
    weft_chan *ch[2];
    ck_assert_int_eq(weft_chan_open(&ch[0], sizeof(int), 0), 0);
    ck_assert_int_eq(weft_chan_open(&ch[1], sizeof(int), 0), 0);
    weft_fiber *r;
    ck_assert_int_eq(weft_spawn(&r, NULL, relay, ch), 0);
    pthread_t th;
    atomic_store(&storm_stop, 0);
    ck_assert_int_eq(pthread_create(&th, NULL, storm, NULL), 0);
    int64_t end = weft_now() + 300 * 1000000LL;
    int i = 0;
    while (weft_now() < end) {
        int v = i, back = -1;
        ck_assert_int_eq(weft_chan_send(ch[0], &v, weft_deadline_ms(5000)), 0);
        ck_assert_int_eq(weft_chan_recv(ch[1], &back, weft_deadline_ms(5000)), 0);
        ck_assert_int_eq(back, i);
        if ((i++ & 63) == 0)
            ck_assert_int_eq(weft_sleep_ms(1), 0);
    }
    ck_assert_int_eq(weft_rt_shutdown_requested(NULL), 1);
    ck_assert_int_eq(weft_rt_shutdown_wait(0), 0);
    atomic_store(&storm_stop, 1);
    pthread_join(th, NULL);
    weft_chan_close(ch[0]);
    void *n;
    ck_assert_int_eq(weft_join(r, &n, WEFT_FOREVER), 0);
    ck_assert_int_eq((long)n, i);
    weft_chan_free(ch[0]);
    weft_chan_free(ch[1]);
}

START_TEST(a_storm_of_signals)
{
    /* A signal still pending when the run ends meets SIG_IGN, not Check's
     * handler (which ends the test). */
    struct sigaction ign, old;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGTERM, &ign, &old);
    weft_config c = cfg_workers(_i + 1);
    c.shutdown_on_signals = 1;
    run_in_runtime(&c, body_storm, NULL);
    sleep_ms_thread(10);
    sigaction(SIGTERM, &old, NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shutdown");
    TCase *tc = tcase_create("shutdown");
    tcase_set_timeout(tc, 60);
    /* Each test with 1 and with 2 workers (_i + 1). */
    tcase_add_loop_test(tc, asked_from_a_fiber, 0, 2);
    tcase_add_loop_test(tc, asked_from_a_plain_thread, 0, 2);
    tcase_add_loop_test(tc, errors, 0, 2);
    tcase_add_loop_test(tc, loop_checks_the_flag, 0, 2);
    tcase_add_loop_test(tc, sigint_and_sigterm_ask_for_shutdown, 0, 2);
    tcase_add_loop_test(tc, without_the_option_a_signal_ends_the_process, 0, 2);
    tcase_add_loop_test(tc, a_programs_own_handler_may_ask, 0, 2);
    tcase_add_loop_test(tc, only_runtimes_that_asked, 0, 2);
    tcase_add_loop_test(tc, a_storm_of_signals, 0, 2);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
