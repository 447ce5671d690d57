/* check_runtime.c - configuration, weft_run() life cycle, weft_post() from
 * other threads, weft_runtime(), statistics, weft_dump(),
 * weft_strerror(), and the several-worker scheduler's duties (stealing,
 * the injector's turn, one worker per CPU). */
#include "testutil.h"

#include "internal.h"   /* the workers and the scheduler behind them */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Under valgrind and TSan (WEFT_TEST_QUICK=1), which run many times
 * slower (valgrind one thread at a time), the multi-worker stress tests
 * are shortened and their foreign threads yield while they wait. */
static int quick(void)
{
    const char *q = getenv("WEFT_TEST_QUICK");
    return q && *q && *q != '0';
}

static long scaled(long n) { return quick() ? n / 10 : n; }

START_TEST(config_defaults)
{
    weft_config c;
    memset(&c, 0xff, sizeof c);
    unsetenv("WEFT_WORKERS");
    weft_config_init(&c);
    ck_assert_int_eq(c.workers, 1);
    setenv("WEFT_WORKERS", "3", 1);
    weft_config_init(&c);
    ck_assert_int_eq(c.workers, 3);
    setenv("WEFT_WORKERS", "3x", 1);      /* not a number: ignored */
    weft_config_init(&c);
    ck_assert_int_eq(c.workers, 1);
    unsetenv("WEFT_WORKERS");
    ck_assert_uint_eq(c.stack_size, 256 * 1024);
    ck_assert_uint_eq(c.prealloc_fibers, 0);
    ck_assert_int_eq(c.guard, WEFT_GUARD_AUTO);
    ck_assert_int_eq(c.reactor, WEFT_REACTOR_AUTO);
    ck_assert_int_eq(c.dump_on_sigquit, 0);
    ck_assert_int_eq(c.stack_high_water, 0);
    weft_attr a;
    memset(&a, 0xff, sizeof a);
    weft_attr_init(&a);
    ck_assert_uint_eq(a.stack_size, 0);
    ck_assert_ptr_null(a.name);
    ck_assert_int_eq(a.pinned, 0);
    weft_config_init(NULL); /* harmless */
    weft_attr_init(NULL);
}
END_TEST

static int main_ran;
static void body_ran(void *arg)
{
    main_ran = (int)(intptr_t)arg;
    ck_assert_ptr_nonnull(weft_runtime());
    ck_assert_ptr_nonnull(weft_self());
}

START_TEST(run_with_null_config)
{
    main_ran = 0;
    run_in_runtime(NULL, body_ran, (void *)7);
    ck_assert_int_eq(main_ran, 7);
    ck_assert_ptr_null(weft_runtime());
}
END_TEST

/* ------------------------------------------------------------ weft_post */

#define POSTERS 4
#define POSTS 2000
static _Atomic int posted_ran;
static weft_rt *the_rt;

static void posted(void *arg)
{
    (void)arg;
    ck_assert_ptr_eq(weft_runtime(), the_rt);
    atomic_fetch_add(&posted_ran, 1);
}

static void *poster_thread(void *arg)
{
    weft_rt *rt = arg;
    for (int i = 0; i < POSTS; i++) {
        int r = weft_post(rt, posted, NULL);
        if (r)
            return (void *)(intptr_t)r;
    }
    return NULL;
}

static void body_post(void *unused)
{
    (void)unused;
    the_rt = weft_runtime();
    pthread_t th[POSTERS];
    for (int i = 0; i < POSTERS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, poster_thread, the_rt), 0);
    /* from inside the runtime too */
    ck_assert_int_eq(weft_post(the_rt, posted, NULL), 0);
    ck_assert_int_eq(weft_post(NULL, posted, NULL), -EINVAL);
    ck_assert_int_eq(weft_post(the_rt, NULL, NULL), -EINVAL);
    int64_t deadline = weft_deadline_ms(10000);
    while (atomic_load(&posted_ran) < POSTERS * POSTS + 1 && weft_now() < deadline)
        weft_sleep_ms(1);
    for (int i = 0; i < POSTERS; i++) {
        void *r;
        pthread_join(th[i], &r);
        ck_assert_ptr_null(r);
    }
    while (atomic_load(&posted_ran) < POSTERS * POSTS + 1 && weft_now() < deadline)
        weft_sleep_ms(1);
    ck_assert_int_eq(atomic_load(&posted_ran), POSTERS * POSTS + 1);
}

START_TEST(post_from_other_threads)
{
    atomic_store(&posted_ran, 0);
    run_in_runtime(NULL, body_post, NULL);
}
END_TEST

/* A post wakes a worker that is blocked in the reactor with nothing else
 * to do: without the wake-up main would sleep its whole 5 s. */
static _Atomic int woken_by_post;
static weft_fiber *waiting_main;
static void wake_main(void *arg)
{
    (void)arg;
    atomic_store(&woken_by_post, 1);
    weft_cancel(waiting_main);
}

static void *post_once_later(void *arg)
{
    usleep(50000);
    return (void *)(intptr_t)weft_post(arg, wake_main, NULL);
}

static void body_post_wakes(void *unused)
{
    (void)unused;
    waiting_main = weft_self();
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, post_once_later, weft_runtime()), 0);
    int64_t t0 = weft_now();
    ck_assert_int_eq(weft_sleep_ms(5000), -ECANCELED);
    ck_assert_int_lt(ms_since(t0), 4000);
    ck_assert_int_eq(atomic_load(&woken_by_post), 1);
    void *r;
    pthread_join(th, &r);
    ck_assert_ptr_null(r);
}

START_TEST(post_wakes_an_idle_worker)
{
    atomic_store(&woken_by_post, 0);
    run_in_runtime(NULL, body_post_wakes, NULL);
}
END_TEST

/* Posting across the end of a run: a handle outlives its runtime. Plain
 * threads post while main returns and go on after weft_run has returned;
 * every post accepted ran, every one after the end is refused with
 * -ESHUTDOWN, and nothing reads freed memory (this test runs under ASan
 * in scripts/test.sh). Then the stale handle is refused while another
 * runtime runs, and a value that is no handle at all is -EINVAL. */
#define XE_POSTERS 3
static _Atomic int xe_returned;
static _Atomic long xe_accepted, xe_ran, xe_refused_after;
static weft_rt *xe_handle;

static void xe_fn(void *arg)
{
    (void)arg;
    atomic_fetch_add(&xe_ran, 1);
}

static void *xe_poster(void *arg)
{
    weft_rt *rt = arg;
    long after = 0;
    for (int n = 0; after < 2000; n++) {
        int returned = atomic_load(&xe_returned);
        int r = weft_post(rt, xe_fn, NULL);
        if (r == 0) {
            if (returned)
                return (void *)1;       /* accepted by a runtime that had ended */
            atomic_fetch_add(&xe_accepted, 1);
        } else if (r != -ESHUTDOWN) {
            return (void *)2;
        } else if (returned) {
            after++;
        }
        /* At the runtime's own pace (sanitizers slow it down): never more
         * than a few posts ahead of what has run, so the queue stays short
         * and the runtime can finish while the posters go on. */
        while (!atomic_load(&xe_returned) &&
               atomic_load(&xe_accepted) - atomic_load(&xe_ran) > 64)
            sched_yield();
    }
    atomic_fetch_add(&xe_refused_after, after);
    return NULL;
}

static pthread_t xe_threads[XE_POSTERS];

static void body_post_across_end(void *unused)
{
    (void)unused;
    xe_handle = weft_runtime();
    for (int i = 0; i < XE_POSTERS; i++)
        ck_assert_int_eq(pthread_create(&xe_threads[i], NULL, xe_poster, xe_handle), 0);
    weft_sleep_ms(20);
}

static void body_stale_handle(void *unused)
{
    (void)unused;
    ck_assert_ptr_ne(weft_runtime(), xe_handle);
    ck_assert_int_eq(weft_post(xe_handle, xe_fn, NULL), -ESHUTDOWN);
    ck_assert_int_eq(weft_post((weft_rt *)(uintptr_t)0x7fff0000u, xe_fn, NULL), -EINVAL);
    ck_assert_int_eq(weft_post(weft_runtime(), xe_fn, NULL), 0);
}

START_TEST(post_across_the_end_of_a_run)
{
    atomic_store(&xe_returned, 0);
    atomic_store(&xe_accepted, 0);
    atomic_store(&xe_ran, 0);
    atomic_store(&xe_refused_after, 0);
    run_in_runtime(NULL, body_post_across_end, NULL);
    atomic_store(&xe_returned, 1);
    long accepted_by_end = atomic_load(&xe_accepted);
    for (int i = 0; i < XE_POSTERS; i++) {
        void *r;
        pthread_join(xe_threads[i], &r);
        ck_assert_ptr_null(r);
    }
    ck_assert_int_gt(accepted_by_end, 0);
    ck_assert_int_eq(atomic_load(&xe_accepted), accepted_by_end);
    ck_assert_int_eq(atomic_load(&xe_ran), accepted_by_end);
    ck_assert_int_eq(atomic_load(&xe_refused_after), XE_POSTERS * 2000);
    run_in_runtime(NULL, body_stale_handle, NULL);
}
END_TEST

/* ------------------------------------------------------------ two runtimes */

/* Each runtime waits until both have started, looks at the count, and
 * waits until both have looked before it ends: fixed sleeps were not
 * enough where starting a thread takes long (qemu-user). */
static _Atomic int rt_started, rt_looked;

static void wait_for_both(_Atomic int *n)
{
    int64_t deadline = weft_deadline_ms(20000);
    while (atomic_load(n) < 2 && weft_now() < deadline)
        weft_sleep_ms(1);
}

static void body_count_runtimes(void *arg)
{
    _Atomic int *seen = arg;
    atomic_fetch_add(&rt_started, 1);
    wait_for_both(&rt_started);
    weft_stats st;
    weft_stats_get(&st);
    if (st.runtimes == 2)
        atomic_fetch_add(seen, 1);
    atomic_fetch_add(&rt_looked, 1);
    wait_for_both(&rt_looked);
}

static void *run_thread(void *arg)
{
    return (void *)(intptr_t)weft_run(NULL, body_count_runtimes, arg);
}

START_TEST(two_runtimes_on_two_threads)
{
    _Atomic int seen = 0;
    atomic_store(&rt_started, 0);
    atomic_store(&rt_looked, 0);
    pthread_t a, b;
    ck_assert_int_eq(pthread_create(&a, NULL, run_thread, &seen), 0);
    ck_assert_int_eq(pthread_create(&b, NULL, run_thread, &seen), 0);
    void *ra, *rb;
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    ck_assert_ptr_null(ra);
    ck_assert_ptr_null(rb);
    ck_assert_int_eq(atomic_load(&seen), 2);
}
END_TEST

/* ------------------------------------------------------------ statistics */

static void *nap(void *arg)
{
    weft_sleep_ms((int64_t)(intptr_t)arg);
    return NULL;
}

static void body_stats(void *unused)
{
    (void)unused;
    weft_stats a, b;
    weft_stats_get(&a);
    ck_assert_uint_eq(a.runtimes, 1);
    ck_assert_uint_eq(a.fibers_live, 1);
    weft_fiber *f[10];
    /* They nap until cancelled: a 5 ms nap on the other worker had ended
     * before the count under qemu with migration. */
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, nap, (void *)(intptr_t)60000), 0);
    weft_stats_get(&b);
    ck_assert_uint_eq(b.fibers_live, 11);
    ck_assert_uint_eq(b.fibers_spawned, a.fibers_spawned + 10);
    ck_assert_uint_eq(b.stacks_in_use, 11);
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(weft_cancel(f[i]), 0);
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    }
    weft_stats_get(&b);
    ck_assert_uint_eq(b.fibers_live, 1);
    ck_assert_uint_eq(b.stacks_in_use, 1);
    ck_assert_uint_ge(b.stacks_pooled, 10);
    ck_assert_uint_gt(b.switches, a.switches + 20);
    ck_assert_uint_ge(b.stack_bytes_mapped, 11 * 256 * 1024);
    ck_assert_uint_eq(b.stacks_guarded + b.stacks_canary, b.stacks_pooled + b.stacks_in_use);
}

START_TEST(stats_follow_the_fibers)
{
    weft_stats before, after;
    weft_stats_get(&before);
    run_in_runtime(NULL, body_stats, NULL);
    weft_stats_get(&after);
    /* cumulative counters survive the runtime */
    ck_assert_uint_eq(after.fibers_spawned, before.fibers_spawned + 11);
    ck_assert_uint_gt(after.switches, before.switches);
    weft_stats_get(NULL); /* harmless */
}
END_TEST

/* ------------------------------------------------------------------ dump */

static weft_fiber *dump_target;
static void *joins_target(void *arg)
{
    (void)arg;
    weft_join(dump_target, NULL, WEFT_FOREVER);
    return NULL;
}

static char dumped[8192];
static void body_dump(void *unused)
{
    (void)unused;
    weft_attr a;
    weft_attr_init(&a);
    /* All three pinned: the one yield then runs both until they park,
     * whatever the worker count (4 under chaos). */
    a.pinned = 1;
    weft_pin(1);
    a.name = "napper-with-a-rather-long-name-that-is-cut";
    weft_fiber *j;
    ck_assert_int_eq(weft_spawn(&dump_target, &a, nap, (void *)(intptr_t)300), 0);
    a.name = "joiner";
    ck_assert_int_eq(weft_spawn(&j, &a, joins_target, NULL), 0);
    weft_yield();
    /* With two workers the others may not have parked yet (under qemu
     * with migration they had not): dump again until both have. */
    int64_t deadline = weft_deadline_ms(10000);
    for (;;) {
        FILE *f = fmemopen(dumped, sizeof dumped - 1, "w");
        ck_assert_ptr_nonnull(f);
        weft_dump(f);
        fclose(f);
        if ((strstr(dumped, "parked on sleep") && strstr(dumped, "parked on join")) ||
            weft_now() >= deadline)
            break;
        weft_sleep_ms(1);
    }
    weft_dump(NULL); /* harmless */
    weft_cancel(dump_target);
    weft_cancel(j);
    weft_join(j, NULL, WEFT_FOREVER);
}

START_TEST(dump_shows_fibers_and_waits)
{
    run_in_runtime(NULL, body_dump, NULL);
    ck_assert_msg(strstr(dumped, "\"main\" running"), "%s", dumped);
    ck_assert_msg(strstr(dumped, "\"napper-with-a-rather-long-name-\" parked on sleep"), "%s",
                  dumped);
    ck_assert_msg(strstr(dumped, "deadline in"), "%s", dumped);
    ck_assert_msg(strstr(dumped, "\"joiner\" parked on join of fiber"), "%s", dumped);
    ck_assert_msg(strstr(dumped, "3 live fibers"), "%s", dumped);
    /* where each fiber came from and what it runs */
    ck_assert_msg(strstr(dumped, " KiB stack"), "%s", dumped);
    ck_assert_msg(strstr(dumped, ", worker "), "%s", dumped);
    ck_assert_msg(strstr(dumped, ", spawned at "), "%s", dumped);
    ck_assert_msg(strstr(dumped, ", runs "), "%s", dumped);
}
END_TEST

/* ------------------------------------------------- stack high-water mark */

static void *use_stack(void *arg)
{
    char buf[40 * 1024];
    memset(buf, 1, sizeof buf);
    /* The array escapes into an empty asm, so the compiler must really
     * place it on the stack and fill it. */
    __asm__ volatile("" : : "r"(buf) : "memory");
    if (arg)
        weft_sleep_ms(-1); /* stays parked, to be seen by the dump */
    return (void *)(intptr_t)buf[0];
}

static char hw_dump[4096];
static void body_high_water(void *unused)
{
    (void)unused;
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, NULL, use_stack, NULL), 0);
    ck_assert_int_eq(weft_join(f, NULL, WEFT_FOREVER), 0);
    weft_stats st;
    weft_stats_get(&st);
    ck_assert_uint_ge(st.stack_high_water, 40 * 1024);
    ck_assert_uint_lt(st.stack_high_water, 64 * 1024);
    weft_attr a;
    weft_attr_init(&a);
    a.name = "deep";
    /* Both pinned: the one yield then runs "deep" until it parks, on this
     * worker, whatever the worker count (WEFT_WORKERS=4 under chaos). */
    a.pinned = 1;
    weft_pin(1);
    ck_assert_int_eq(weft_spawn(&f, &a, use_stack, (void *)1), 0);
    weft_yield();
    FILE *out = fmemopen(hw_dump, sizeof hw_dump - 1, "w");
    weft_dump(out);
    fclose(out);
    weft_cancel(f);
    ck_assert_int_eq(weft_join(f, NULL, WEFT_FOREVER), 0);
}

START_TEST(stack_high_water_is_measured)
{
    weft_config c;
    weft_config_init(&c);
    c.stack_high_water = 1;
    run_in_runtime(&c, body_high_water, NULL);
    /* the parked fiber's line reports 40-odd KiB used */
    const char *line = strstr(hw_dump, "\"deep\"");
    ck_assert_msg(line != NULL, "%s", hw_dump);
    const char *used = strstr(line, " KiB used)");
    ck_assert_msg(used != NULL, "%s", hw_dump);
    while (used > line && used[-1] >= '0' && used[-1] <= '9')
        used--;
    long kib = strtol(used, NULL, 10);
    ck_assert_msg(kib >= 40 && kib < 64, "used %ld KiB: %s", kib, hw_dump);
    /* the process-wide figure survives the runtime */
    weft_stats st;
    weft_stats_get(&st);
    ck_assert_uint_ge(st.stack_high_water, 40 * 1024);
}
END_TEST

/* ------------------------------------------------------- SIGQUIT dumps */

/* The signal is sent by a fiber pinned to main's worker, so it runs only
 * once main is parked on its sleep: with two workers the dump could
 * otherwise catch main before it parked (it did under qemu). The sender
 * waits for the dump to reach stderr (a file here), then cancels main's
 * sleep. */
static void *sigquit_sender(void *arg)
{
    ck_assert_int_eq(kill(getpid(), SIGQUIT), 0);
    /* The dump's last line names the dump fiber; other text may come
     * first (under qemu the emulator writes to the same descriptor). */
    int64_t deadline = weft_deadline_ms(10000);
    static char seen[4096];
    for (;;) {
        ssize_t n = pread(2, seen, sizeof seen - 1, 0);
        seen[n > 0 ? n : 0] = 0;
        /* Both lines the test looks for: main is cancelled only once the
         * dump has printed it (the dump may list the fibers in any order,
         * and with two workers it runs beside this fiber). */
        if ((strstr(seen, "\"weft: SIGQUIT dump\" running") &&
             strstr(seen, "\"main\" parked on sleep")) || weft_now() >= deadline)
            break;
        weft_sleep_ms(10);
    }
    weft_cancel(arg);
    return NULL;
}

static void body_sigquit(void *arg)
{
    int *survived = arg;
    weft_yield(); /* the dump fiber parks in weft_signal_wait */
    weft_yield();
    weft_attr a;
    weft_attr_init(&a);
    a.pinned = 1;
    weft_fiber *sender;
    ck_assert_int_eq(weft_spawn(&sender, &a, sigquit_sender, weft_self()), 0);
    ck_assert_int_eq(weft_sleep_ms(60000), -ECANCELED);
    *survived = 1; /* SIGQUIT did not stop the process */
}

START_TEST(sigquit_prints_a_dump)
{
    char path[] = "/tmp/weft-sigquit-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    weft_config c;
    weft_config_init(&c);
    c.dump_on_sigquit = 1;
    int survived = 0;
    int r = weft_run(&c, body_sigquit, &survived);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ck_assert_int_eq(r, 0);
    ck_assert_int_eq(survived, 1);
    char buf[4096];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    ck_assert_int_gt(n, 0);
    buf[n] = 0;
    ck_assert_msg(strstr(buf, "\"main\" parked on sleep"), "%s", buf);
    ck_assert_msg(strstr(buf, "\"weft: SIGQUIT dump\" running"), "%s", buf);
}
END_TEST

/* The fiber stays alive until the other thread has dumped, however long
 * that takes (a fixed 300 ms was not enough under qemu with migration). */
static _Atomic int dump_started, dump_done;

static void body_sleep_long(void *arg)
{
    (void)arg;
    atomic_store(&dump_started, 1);
    int64_t deadline = weft_deadline_ms(20000);
    while (!atomic_load(&dump_done) && weft_now() < deadline)
        weft_sleep_ms(5);
}

static void *dump_from_outside(void *arg)
{
    while (!atomic_load(&dump_started))
        usleep(1000);
    FILE *f = fmemopen(arg, 1023, "w");
    weft_dump(f);
    fclose(f);
    atomic_store(&dump_done, 1);
    return NULL;
}

START_TEST(dump_from_outside_a_fiber)
{
    static char buf[1024];
    atomic_store(&dump_started, 0);
    atomic_store(&dump_done, 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, dump_from_outside, buf), 0);
    run_in_runtime(NULL, body_sleep_long, NULL);
    pthread_join(th, NULL);
    char want[64];
    snprintf(want, sizeof want, "%d worker(s), 1 live fibers", test_workers());
    ck_assert_msg(strstr(buf, want), "%s", buf);
}
END_TEST

/* -------------------------------------------------------------- strerror */

static void body_worker_stats(void *unused)
{
    (void)unused;
    weft_worker_stats ws;
    int n = test_workers();
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(weft_worker_stats_get(i, &ws), 0);
    ck_assert_int_eq(weft_worker_stats_get(n, &ws), -EINVAL);
    ck_assert_int_eq(weft_worker_stats_get(-1, &ws), -EINVAL);
    ck_assert_int_eq(weft_worker_stats_get(0, NULL), -EINVAL);
    uint64_t before = 0, after = 0, switches = 0;
    for (int i = 0; i < n; i++) {
        weft_worker_stats_get(i, &ws);
        before += ws.spawned;
    }
    weft_fiber *f[10];
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, nap, (void *)(intptr_t)1), 0);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    for (int i = 0; i < n; i++) {
        weft_worker_stats_get(i, &ws);
        after += ws.spawned;
        switches += ws.switches;
    }
    ck_assert_uint_eq(after, before + 10);
    ck_assert_uint_ge(switches, 20);
}

/* ------------------------------------------------------ several workers */

/* Foreign threads and a runtime whose workers keep going idle: every post
 * below must wake a sleeping worker, thousands of times over. A wake-up
 * lost between "queue looked empty" and "asleep" (the fence in
 * sched.c's mt_sleep and notify) leaves a post unrun and the test hangs
 * until Check's timeout fails it. */
struct lockstep { weft_rt *_Atomic rt; _Atomic long done; weft_sem stop; };

static void step_run(void *p) { atomic_fetch_add(&((struct lockstep *)p)->done, 1); }
static void step_stop(void *p) { weft_sem_release(&((struct lockstep *)p)->stop); }

static void *step_poster(void *p)
{
    struct lockstep *ls = p;
    while (!atomic_load(&ls->rt))
        sched_yield();
    for (long i = 0; i < scaled(50000); i++) {
        long want = atomic_load(&ls->done) + 1;
        if (weft_post(atomic_load(&ls->rt), step_run, ls) != 0)
            return (void *)1;
        int yield = quick();
        while (atomic_load(&ls->done) < want)
            if (yield)  /* the runtime is idle again before the next post */
                sched_yield();
    }
    return weft_post(atomic_load(&ls->rt), step_stop, ls) == 0 ? NULL : (void *)1;
}

/* main waits without a deadline: no timer can cover for a lost wake-up. */
static void body_lockstep(void *p)
{
    struct lockstep *ls = p;
    atomic_store(&ls->rt, weft_runtime());
    ck_assert_int_eq(weft_sem_acquire(&ls->stop, WEFT_FOREVER), 0);
}

START_TEST(no_lost_wakeups_with_idle_workers)
{
    struct lockstep ls = { NULL, 0, WEFT_SEM_INIT(0) };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, step_poster, &ls), 0);
    weft_config c;
    weft_config_init(&c);
    c.workers = 2;
    run_in_runtime(&c, body_lockstep, &ls);
    void *r;
    pthread_join(th, &r);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(atomic_load(&ls.done), scaled(50000));
}
END_TEST

/* Two pinned fibers on different workers hand a token back and forth
 * through channels: each hand-off wakes the other worker from its sleep. */
struct relay { weft_chan *a, *b; int n; };

static void *relay_back(void *p)
{
    struct relay *r = p;
    for (int i = 0; i < r->n; i++) {
        int v;
        if (weft_chan_recv(r->a, &v, WEFT_FOREVER) != 0 || weft_chan_send(r->b, &v, WEFT_FOREVER) != 0)
            return (void *)1;
    }
    return NULL;
}

static void *relay_spawn_back(void *p)
{
    /* Spawned pinned from a fiber that runs on the other worker. */
    weft_attr a;
    weft_attr_init(&a);
    a.pinned = 1;
    weft_fiber *f;
    if (weft_spawn(&f, &a, relay_back, p) != 0)
        return (void *)1;
    void *res;
    weft_join(f, &res, WEFT_FOREVER);
    return res;
}

static void body_relay(void *unused)
{
    (void)unused;
    struct relay r = { .n = (int)scaled(20000) };
    ck_assert_int_eq(weft_chan_open(&r.a, sizeof(int), 0), 0);
    ck_assert_int_eq(weft_chan_open(&r.b, sizeof(int), 0), 0);
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, NULL, relay_spawn_back, &r), 0);
    for (int i = 0; i < r.n; i++) {
        int v = i;
        ck_assert_int_eq(weft_chan_send(r.a, &v, WEFT_FOREVER), 0);
        ck_assert_int_eq(weft_chan_recv(r.b, &v, WEFT_FOREVER), 0);
        ck_assert_int_eq(v, i);
    }
    void *res;
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    ck_assert_ptr_null(res);
    weft_chan_free(r.a);
    weft_chan_free(r.b);
}

START_TEST(cross_worker_relay)
{
    weft_config c;
    weft_config_init(&c);
    c.workers = 2;
    run_in_runtime(&c, body_relay, NULL);
}
END_TEST

/* An idle multi-worker runtime sleeps: no spinning, no polling loop. */
static void body_idle(void *p)
{
    double *cpu_ms = p;
    struct timespec a, b;
    weft_sleep_ms(20);      /* let the start-up settle */
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    weft_sleep_ms(500);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    *cpu_ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
}

START_TEST(idle_workers_use_no_cpu)
{
    double cpu_ms = -1;
    weft_config c;
    weft_config_init(&c);
    c.workers = 4;
    run_in_runtime(&c, body_idle, &cpu_ms);
    /* 500 ms of wall time on 4 workers: a busy loop would show 2000 ms. */
    ck_assert_msg(cpu_ms >= 0 && cpu_ms < 25, "idle runtime used %.1f ms of CPU in 500 ms", cpu_ms);
}
END_TEST

/* weft_post from 10 threads at once, 100k each: nothing lost, nothing
 * run twice (bench_mt measures the rate). */
struct flood { weft_rt *_Atomic rt; _Atomic long ran; _Atomic int posters_done; uint64_t peak_live; };

static void flood_run(void *p) { atomic_fetch_add(&((struct flood *)p)->ran, 1); }

static void *flood_poster(void *p)
{
    struct flood *fl = p;
    while (!atomic_load(&fl->rt))
        sched_yield();
    for (long i = 0; i < scaled(100000); i++)
        while (weft_post(atomic_load(&fl->rt), flood_run, fl) == -ENOMEM)
            sched_yield();
    atomic_fetch_add(&fl->posters_done, 1);
    return NULL;
}

static void body_flood(void *p)
{
    struct flood *fl = p;
    atomic_store(&fl->rt, weft_runtime());
    while (atomic_load(&fl->posters_done) < 10 || atomic_load(&fl->ran) < 10 * scaled(100000)) {
        weft_sleep_ms(1);
        weft_stats st;
        weft_stats_get(&st);
        if (st.fibers_live > fl->peak_live)
            fl->peak_live = st.fibers_live;
    }
}

START_TEST(post_flood_from_ten_threads)
{
    struct flood fl = { NULL, 0, 0, 0 };
    pthread_t th[10];
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, flood_poster, &fl), 0);
    run_in_runtime(NULL, body_flood, &fl);
    for (int i = 0; i < 10; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&fl.ran), 10 * scaled(100000));
    /* Posts are started a batch at a time, so a flood never has more than
     * a few batches of fibers alive (starting all queued posts at once
     * reached hundreds of thousands, and gigabytes of touched stacks). */
    ck_assert_msg(fl.peak_live < 4096, "%llu fibers alive at once", (unsigned long long)fl.peak_live);
}
END_TEST

/* Busy workers still serve I/O: every worker runs fibers that only
 * yield (so no worker ever goes idle and sleeps in the reactor), while
 * the main fiber waits for a pipe that another thread writes to. */
struct busy { int fds[2]; _Atomic int stop; int64_t written, seen; };

static void *busy_yielder(void *p)
{
    struct busy *b = p;
    int64_t end = weft_now() + 3000 * 1000000LL;  /* gives up: the test fails, never hangs */
    while (!atomic_load(&b->stop) && weft_now() < end)
        weft_yield();
    return NULL;
}

static void *busy_writer(void *p)
{
    struct busy *b = p;
    struct timespec ts = { 0, 50 * 1000000L };
    nanosleep(&ts, NULL);
    b->written = weft_now();
    return write(b->fds[1], "x", 1) == 1 ? NULL : (void *)1;
}

static void body_busy_io(void *p)
{
    struct busy *b = p;
    weft_fiber *f[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, busy_yielder, b), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, busy_writer, b), 0);
    char c;
    ssize_t n = weft_read(b->fds[0], &c, 1, weft_deadline_ms(5000));
    b->seen = weft_now();
    atomic_store(&b->stop, 1);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    void *r;
    pthread_join(th, &r);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(n, 1);
}

START_TEST(busy_workers_still_see_io)
{
    struct busy b = { .stop = 0 };
    ck_assert_int_eq(pipe(b.fds), 0);
    weft_config c;
    weft_config_init(&c);
    c.workers = 2;
    run_in_runtime(&c, body_busy_io, &b);
    /* Looked at every millisecond: 200 ms leaves room for a loaded machine,
     * while a runtime that waits for an idle worker sees it only when the
     * yielders give up, 3 s in. */
    int64_t late_ms = (b.seen - b.written) / 1000000;
    ck_assert_msg(late_ms < 200, "readiness seen %lld ms late", (long long)late_ms);
    close(b.fds[0]);
    close(b.fds[1]);
}
END_TEST

/* weft_pin: a pinned fiber stays on its thread through yields; once
 * unpinned it migrates again. Run with migration forced on every switch. */
struct pin_run { _Atomic int moved_pinned, moved_free, bad, unpinned; };

static long tid(void) { return (long)syscall(SYS_gettid); }

static void *pin_fiber(void *p)
{
    struct pin_run *pr = p;
    if (weft_pin(1) != 0)
        atomic_fetch_add(&pr->bad, 1);
    long t = tid();
    for (int i = 0; i < 500; i++) {
        weft_yield();
        if (tid() != t)
            atomic_fetch_add(&pr->moved_pinned, 1);
    }
    if (weft_pin(0) != 1)
        atomic_fetch_add(&pr->bad, 1);
    /* Every fiber unpinned before counting: a worker busy with pinned
     * fibers seldom takes an unpinned one from the injector. */
    atomic_fetch_add(&pr->unpinned, 1);
    while (atomic_load(&pr->unpinned) < 4)
        weft_yield();
    /* Until some fiber has moved, for at most 5 s: on a loaded machine
     * the other worker's thread may get no CPU for a while. */
    t = tid();
    int64_t end = weft_now() + 5000 * 1000000LL;
    for (int i = 0; i < 2000 || (atomic_load(&pr->moved_free) == 0 && weft_now() < end); i++) {
        weft_yield();
        long now = tid();
        if (now != t)
            atomic_fetch_add(&pr->moved_free, 1);
        t = now;
    }
    return NULL;
}

static void body_pin(void *p)
{
    ck_assert_int_eq(weft_pin(0), 0);
    weft_fiber *f[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, pin_fiber, p), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
}

START_TEST(pin_keeps_a_fiber_on_its_thread)
{
    ck_assert_int_eq(weft_pin(1), -EPERM);      /* not in a fiber */
    struct pin_run pr = { 0, 0, 0, 0 };
    weft_config c;
    weft_config_init(&c);
    c.workers = 2;
    setenv("WEFT_TEST_MIGRATE", "1", 1);
    run_in_runtime(&c, body_pin, &pr);
    unsetenv("WEFT_TEST_MIGRATE");
    ck_assert_int_eq(atomic_load(&pr.bad), 0);
    ck_assert_int_eq(atomic_load(&pr.moved_pinned), 0);
    /* and the test can tell: unpinned, the same fibers do move */
    ck_assert_int_gt(atomic_load(&pr.moved_free), 0);
}
END_TEST

/* ------------------------------------------ the scheduler's own duties */

/* WEFT_TEST_MIGRATE=1 (the runtime_migrate entry) sends every runnable
 * fiber through the injector instead of its worker's ring: nothing would
 * be left to steal, and no worker's own queue would keep it from the
 * injector. The tests of those paths run without it. */
static void run_unmigrated(const weft_config *c, void (*body)(void *), void *arg)
{
    const char *m = getenv("WEFT_TEST_MIGRATE");
    char *saved = m ? strdup(m) : NULL;
    unsetenv("WEFT_TEST_MIGRATE");
    run_in_runtime(c, body, arg);
    if (saved) {
        setenv("WEFT_TEST_MIGRATE", saved, 1);
        free(saved);
    }
}

/* The worker the calling fiber runs on at this moment. */
static unsigned worker_index(void) { return weft__worker()->index; }

static void spin_a_little(void)
{
    for (volatile int k = 0; k < 2000; k++)
        ;
}

/* Stealing: one fiber spawns busy fibers on its own worker, fewer than a
 * ring holds (so no overflow moves any of them to the injector); only a
 * steal by the idle worker can get some of them onto it. */
#define STEAL_FIBERS 64
_Static_assert(STEAL_FIBERS < WEFT__RQ_SIZE, "the spawner's ring must not overflow");

struct steal_run { _Atomic long on[2]; _Atomic int both; uint64_t steals_before, steals_after; };

static void *steal_busy(void *p)
{
    struct steal_run *s = p;
    int64_t end = weft_now() + 5000 * 1000000LL;   /* gives up: the test fails, never hangs */
    for (int i = 0; i < 20 || (!atomic_load(&s->both) && weft_now() < end); i++) {
        atomic_fetch_add(&s->on[worker_index()], 1);
        if (atomic_load(&s->on[0]) && atomic_load(&s->on[1]))
            atomic_store(&s->both, 1);
        spin_a_little();
        weft_yield();
    }
    return NULL;
}

static uint64_t steals_so_far(void)
{
    uint64_t n = 0;
    weft_worker_stats ws;
    for (int i = 0; weft_worker_stats_get(i, &ws) == 0; i++)
        n += ws.steals;
    return n;
}

static void body_steal(void *p)
{
    struct steal_run *s = p;
    s->steals_before = steals_so_far();
    weft_fiber *f[STEAL_FIBERS];
    for (int i = 0; i < STEAL_FIBERS; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, steal_busy, s), 0);
    for (int i = 0; i < STEAL_FIBERS; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    s->steals_after = steals_so_far();
}

START_TEST(idle_worker_steals)
{
    struct steal_run s = { { 0, 0 }, 0, 0, 0 };
    weft_config c;
    weft_config_init(&c);
    c.workers = 2;
    weft_stats a, b;
    weft_stats_get(&a);
    run_unmigrated(&c, body_steal, &s);
    weft_stats_get(&b);
    ck_assert_msg(atomic_load(&s.on[0]) > 0 && atomic_load(&s.on[1]) > 0,
                  "busy fibers ran %ld times on worker 0, %ld on worker 1",
                  atomic_load(&s.on[0]), atomic_load(&s.on[1]));
    ck_assert_msg(s.steals_after > s.steals_before, "no steal counted (%llu before, %llu after)",
                  (unsigned long long)s.steals_before, (unsigned long long)s.steals_after);
    ck_assert_uint_gt(b.steals, a.steals);     /* and the process-wide counter */
}
END_TEST

/* The injector's turn: with every worker kept busy by fibers that only
 * yield (so no worker's own queue is ever empty and none goes looking for
 * work), a fiber that a plain thread wakes goes to the injector, and must
 * still run within a bounded number of switches, well before the yielders
 * give up. sched.c looks at the injector every INJECTOR_TICKS (61)
 * switches of each worker; 4 * 61 leaves room for the scheduler's own
 * entries (a jump in and out counts two) and for the worker that missed
 * its turn by a hair. */
#define INJ_SWITCH_BOUND (4 * 61)

struct inj_run {
    struct weft__rt *rt;
    struct weft__fiber *_Atomic parked;
    _Atomic int pinned[2];          /* yielders pinned to each worker (at most 2) */
    _Atomic int busy;               /* every worker has one: the thread may wake */
    _Atomic int ran;                /* the woken fiber has run */
    _Atomic int gave_up;            /* a yielder stopped at its deadline first */
    _Atomic int quit;               /* the runtime gave up: the waker too */
    _Atomic int waker_done;         /* the waker no longer reads the runtime */
    _Atomic int64_t woken_sw, ran_sw;  /* the workers' switches after the wake, when it ran */
    _Atomic int64_t woken_at, ran_at;
    int park_result;
};

static int64_t switches_sum(struct weft__rt *rt)
{
    int64_t n = 0;
    for (unsigned i = 0; i < rt->nworkers; i++)
        n += (int64_t)atomic_load_explicit(&rt->ws[i]->n_switches, memory_order_relaxed);
    return n;
}

/* Parks as internal callers do, with nothing but weft__wake() (or a
 * cancellation) to end the wait: no lock, no deadline, no unlink. */
static void *inj_parked(void *p)
{
    struct inj_run *r = p;
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    self->wait.kind = WEFT__W_SLEEP;
    atomic_store(&r->parked, self);
    r->park_result = weft__park(w, self, WEFT_FOREVER, NULL);
    atomic_store(&r->ran_sw, switches_sum(r->rt));
    atomic_store(&r->ran_at, weft_now());
    atomic_store(&r->ran, 1);
    return NULL;
}

/* Pins itself to the first worker it runs on that has fewer than two
 * yielders, then yields until the woken fiber has run (or 2 s after every
 * worker got busy). A spare one keeps yielding unpinned, where an idle
 * worker can steal it, until every worker has its yielder, then leaves. */
static void *inj_yielder(void *p)
{
    struct inj_run *r = p;
    int64_t end = weft_now() + 10000 * 1000000LL;     /* never hangs */
    int64_t busy_end = 0;
    bool pinned = false;
    while (!atomic_load(&r->ran) && weft_now() < end) {
        if (!pinned) {
            unsigned i = worker_index();
            if (atomic_fetch_add(&r->pinned[i], 1) < 2) {
                weft_pin(1);        /* no switch since the index was read */
                pinned = true;
            } else {
                atomic_fetch_sub(&r->pinned[i], 1);
                if (atomic_load(&r->busy))
                    return NULL;
            }
        }
        if (pinned && atomic_load(&r->busy)) {
            if (!busy_end)
                busy_end = weft_now() + 2000 * 1000000LL;
            else if (weft_now() >= busy_end)
                break;
        }
        weft_yield();
    }
    if (pinned && !atomic_load(&r->ran))
        atomic_store(&r->gave_up, 1);
    return NULL;
}

/* Wakes the parked fiber once every worker is busy. It reads the workers'
 * counters, so the runtime waits for it to be done before it ends. */
static void *inj_wake(struct inj_run *r)
{
    struct timespec ms = { 0, 1000000L };
    int64_t end = weft_now() + 20000 * 1000000LL;
    while (!atomic_load(&r->busy) || !atomic_load(&r->parked)) {
        if (weft_now() >= end || atomic_load(&r->quit))
            return (void *)1;
        nanosleep(&ms, NULL);
    }
    /* Not a worker: weft__wake() hands the fiber to the injector. */
    while (!weft__wake(atomic_load(&r->parked), 0)) {
        if (weft_now() >= end)
            return (void *)2;
        sched_yield();
    }
    /* Read after the wake: a count that starts late can only be smaller. */
    atomic_store(&r->woken_sw, switches_sum(r->rt));
    atomic_store(&r->woken_at, weft_now());
    return NULL;
}

static void *inj_waker(void *p)
{
    struct inj_run *r = p;
    void *res = inj_wake(r);
    atomic_store(&r->waker_done, 1);
    return res;
}

#define INJ_YIELDERS 8

static void body_injector(void *p)
{
    struct inj_run *r = p;
    r->rt = weft__worker()->rt;
    ck_assert_uint_eq(r->rt->nworkers, 2);
    weft_fiber *parked, *y[INJ_YIELDERS];
    ck_assert_int_eq(weft_spawn(&parked, NULL, inj_parked, r), 0);
    for (int i = 0; i < INJ_YIELDERS; i++)
        ck_assert_int_eq(weft_spawn(&y[i], NULL, inj_yielder, r), 0);
    int64_t end = weft_now() + 5000 * 1000000LL;
    while ((atomic_load(&r->pinned[0]) == 0 || atomic_load(&r->pinned[1]) == 0) &&
           weft_now() < end)
        weft_sleep_ms(1);
    bool busy = atomic_load(&r->pinned[0]) > 0 && atomic_load(&r->pinned[1]) > 0;
    if (busy) {
        atomic_store(&r->busy, 1);
        /* main parks in a join: it wakes no one on a timer meanwhile. */
        ck_assert_int_eq(weft_join(parked, NULL, WEFT_FOREVER), 0);
    } else {
        atomic_store(&r->quit, 1);
    }
    while (!atomic_load(&r->waker_done))
        weft_sleep_ms(1);
    if (!busy) {
        weft_cancel(parked);
        ck_assert_int_eq(weft_join(parked, NULL, WEFT_FOREVER), 0);
    }
    for (int i = 0; i < INJ_YIELDERS; i++)
        ck_assert_int_eq(weft_join(y[i], NULL, WEFT_FOREVER), 0);
    ck_assert_msg(busy, "the yielders did not reach both workers in 5 s");
}

START_TEST(injector_served_while_workers_busy)
{
    struct inj_run r;
    memset(&r, 0, sizeof r);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, inj_waker, &r), 0);
    weft_config c;
    weft_config_init(&c);
    c.workers = 2;
    run_unmigrated(&c, body_injector, &r);
    void *res;
    pthread_join(th, &res);
    ck_assert_ptr_null(res);
    ck_assert_int_eq(atomic_load(&r.ran), 1);
    ck_assert_int_eq(r.park_result, 0);
    int64_t sw = atomic_load(&r.ran_sw) - atomic_load(&r.woken_sw);
    int64_t late_ms = (atomic_load(&r.ran_at) - atomic_load(&r.woken_at)) / 1000000;
    ck_assert_msg(!atomic_load(&r.gave_up),
                  "the woken fiber waited for the yielders to give up (%lld switches, %lld ms)",
                  (long long)sw, (long long)late_ms);
    ck_assert_msg(sw <= INJ_SWITCH_BOUND, "the woken fiber ran %lld switches (%lld ms) after the wake",
                  (long long)sw, (long long)late_ms);
}
END_TEST

/* workers = 0: one worker per online CPU, each a thread that runs fibers.
 * Busy fibers spawned on one worker spread by stealing until every worker
 * has run one. */
struct percpu { unsigned n; _Atomic unsigned seen; _Atomic long *tid; };

static void *percpu_busy(void *p)
{
    struct percpu *pc = p;
    int64_t end = weft_now() + 5000 * 1000000LL;
    while (atomic_load(&pc->seen) < pc->n && weft_now() < end) {
        long expect = 0;
        if (atomic_compare_exchange_strong(&pc->tid[worker_index()], &expect, tid()))
            atomic_fetch_add(&pc->seen, 1);
        spin_a_little();
        weft_yield();
    }
    return NULL;
}

static void body_percpu(void *p)
{
    struct percpu *pc = p;
    struct weft__rt *rt = weft__worker()->rt;
    ck_assert_uint_eq(rt->nworkers, pc->n);
    weft_worker_stats ws;
    ck_assert_int_eq(weft_worker_stats_get((int)pc->n - 1, &ws), 0);
    ck_assert_int_eq(weft_worker_stats_get((int)pc->n, &ws), -EINVAL);
    unsigned nf = 4 * pc->n;
    weft_fiber **f = calloc(nf, sizeof *f);
    ck_assert_ptr_nonnull(f);
    for (unsigned i = 0; i < nf; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, percpu_busy, pc), 0);
    for (unsigned i = 0; i < nf; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    free(f);
}

START_TEST(zero_workers_means_one_per_cpu)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    ck_assert_int_gt(ncpu, 0);
    if (ncpu > WEFT__WORKERS_MAX)
        return;     /* more CPUs than a runtime takes workers */
    struct percpu pc = { (unsigned)ncpu, 0, calloc((size_t)ncpu, sizeof(long)) };
    ck_assert_ptr_nonnull(pc.tid);
    weft_config c;
    weft_config_init(&c);
    c.workers = 0;
    run_unmigrated(&c, body_percpu, &pc);
    ck_assert_msg(atomic_load(&pc.seen) == pc.n, "fibers ran on %u of %u workers",
                  atomic_load(&pc.seen), pc.n);
    for (unsigned i = 0; i < pc.n; i++)
        for (unsigned k = 0; k < i; k++)
            ck_assert_msg(pc.tid[i] != pc.tid[k], "workers %u and %u share a thread", k, i);
    free(pc.tid);
}
END_TEST

START_TEST(worker_stats_per_worker)
{
    run_in_runtime(NULL, body_worker_stats, NULL);
}
END_TEST

START_TEST(strerror_covers_every_code)
{
    const int codes[] = { EPERM, ESRCH, EINVAL, ENOMEM, ETIMEDOUT, ECANCELED, EPIPE, EDEADLK,
                          EBADF, EBUSY, ENOTSUP, ESHUTDOWN, ECONNRESET, ECONNREFUSED, EMFILE };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = weft_strerror(-codes[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_str_ne(s, "unknown error");
        ck_assert_str_eq(s, weft_strerror(codes[i])); /* sign does not matter */
    }
    ck_assert_str_eq(weft_strerror(-ETIMEDOUT), "deadline expired");
    ck_assert_str_eq(weft_strerror(-ECANCELED), "cancelled");
    ck_assert_str_eq(weft_strerror(0), "success");
    ck_assert_str_eq(weft_strerror(-99999), "unknown error");
    ck_assert_ptr_nonnull(weft_strerror(-EXDEV)); /* falls back to the system's text */
}
END_TEST

/* WEFT_REQUIRE_HOOK=1 in a program without libweft_hook (this suite links
 * the static library): weft_run aborts with one line on stderr. Any other
 * value changes nothing. check_hook proves the hooked side. */
static void empty_main(void *arg) { (void)arg; }

START_TEST(require_hook_aborts_without_the_hook)
{
    ck_assert_int_eq(weft_hook_active(), 0);
    int ep[2];
    ck_assert_int_eq(pipe(ep), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(ep[1], 2);
        close(ep[0]);
        setenv("WEFT_REQUIRE_HOOK", "1", 1);
        weft_run(NULL, empty_main, NULL);
        _exit(0); /* not reached */
    }
    close(ep[1]);
    char err[1024];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof err - 1 && (n = read(ep[0], err + len, sizeof err - 1 - len)) > 0)
        len += (size_t)n;
    err[len] = 0;
    close(ep[0]);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "status %#x, stderr: %s", st, err);
    const char *line = strstr(err, "weft: WEFT_REQUIRE_HOOK=1 but libweft_hook is not active");
    ck_assert_msg(line && (line == err || line[-1] == '\n'), "stderr: %s", err);
    const char *end = strchr(line, '\n');
    ck_assert_ptr_nonnull(end);
    ck_assert_ptr_nonnull(strstr(line, "docs/hooks.md"));
    ck_assert(strstr(line, "docs/hooks.md") < end);  /* one line */
    setenv("WEFT_REQUIRE_HOOK", "0", 1);
    run_in_runtime(NULL, empty_main, NULL);
    unsetenv("WEFT_REQUIRE_HOOK");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("runtime");
    TCase *tc = tcase_create("runtime");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, config_defaults);
    tcase_add_test(tc, run_with_null_config);
    tcase_add_test(tc, post_from_other_threads);
    tcase_add_test(tc, post_wakes_an_idle_worker);
    tcase_add_test(tc, post_across_the_end_of_a_run);
    tcase_add_test(tc, two_runtimes_on_two_threads);
    tcase_add_test(tc, stats_follow_the_fibers);
    tcase_add_test(tc, dump_shows_fibers_and_waits);
    tcase_add_test(tc, dump_from_outside_a_fiber);
    tcase_add_test(tc, stack_high_water_is_measured);
    tcase_add_test(tc, sigquit_prints_a_dump);
    tcase_add_test(tc, strerror_covers_every_code);
    tcase_add_test(tc, require_hook_aborts_without_the_hook);
    tcase_add_test(tc, worker_stats_per_worker);
    tcase_add_test(tc, no_lost_wakeups_with_idle_workers);
    tcase_add_test(tc, cross_worker_relay);
    tcase_add_test(tc, idle_workers_use_no_cpu);
    tcase_add_test(tc, post_flood_from_ten_threads);
    tcase_add_test(tc, busy_workers_still_see_io);
    tcase_add_test(tc, pin_keeps_a_fiber_on_its_thread);
    tcase_add_test(tc, idle_worker_steals);
    tcase_add_test(tc, injector_served_while_workers_busy);
    tcase_add_test(tc, zero_workers_means_one_per_cpu);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
