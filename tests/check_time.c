/* check_time.c - the clock, deadlines, sleeping and intervals.
 *
 * Timing assertions are one-sided or loose (a sleep is never early; it is
 * not absurdly late) so they hold on a loaded machine. */
#include "testutil.h"

#include <errno.h>
#include <stdint.h>
#include <sys/resource.h>

START_TEST(clock_and_deadlines)
{
    int64_t a = weft_now(), b = weft_now();
    ck_assert_int_gt(a, 0);
    ck_assert_int_ge(b, a);
    ck_assert_int_eq(weft_deadline_ms(-1), WEFT_FOREVER);
    ck_assert_int_eq(weft_deadline_ms(-1000), WEFT_FOREVER);
    int64_t d = weft_deadline_ms(0);
    ck_assert_int_ge(d, b);
    ck_assert_int_lt(d - b, 1000000000);
    int64_t d1 = weft_deadline_ms(1500);
    ck_assert_int_ge(d1 - weft_now(), 1400 * 1000000LL);
    /* saturates instead of wrapping */
    ck_assert_int_eq(weft_deadline_ms(INT64_MAX), INT64_MAX);
    ck_assert_int_eq(weft_deadline_ms(INT64_MAX / 1000), INT64_MAX);
}
END_TEST

static void body_sleep(void *unused)
{
    (void)unused;
    int64_t t0 = weft_now();
    ck_assert_int_eq(weft_sleep_ms(50), 0);
    int64_t took = weft_now() - t0;
    ck_assert_int_ge(took, 50 * 1000000LL);
    ck_assert_int_lt(took, 1000 * 1000000LL);

    /* a past deadline returns at once */
    t0 = weft_now();
    ck_assert_int_eq(weft_sleep_until(t0 - 1000), 0);
    ck_assert_int_eq(weft_sleep_ms(0), 0);
    ck_assert_int_lt(weft_now() - t0, 50 * 1000000LL);

    /* sleep_until an absolute deadline is never early */
    int64_t dl = weft_now() + 12 * 1000000LL;
    ck_assert_int_eq(weft_sleep_until(dl), 0);
    ck_assert_int_ge(weft_now(), dl);
}

START_TEST(sleep_is_never_early)
{
    run_in_runtime(NULL, body_sleep, NULL);
}
END_TEST

START_TEST(sleep_outside_a_fiber)
{
    ck_assert_int_eq(weft_sleep_ms(1), -EPERM);
    ck_assert_int_eq(weft_sleep_until(0), -EPERM);
    weft_interval iv;
    ck_assert_int_eq(weft_interval_init(&iv, 1000000, WEFT_MISSED_BURST), 0);
    ck_assert_int_eq(weft_interval_tick(&iv), -EPERM);
}
END_TEST

/* Sleepers wake in deadline order, whatever order they went to sleep in. */
#define NSLEEP 64
static int64_t wake_at[NSLEEP], wake_due[NSLEEP];
static int woke[NSLEEP], nwoke;

static void *timed_sleeper(void *arg)
{
    int i = (int)(intptr_t)arg;
    ck_assert_int_eq(weft_sleep_until(wake_due[i]), 0);
    wake_at[i] = weft_now();
    woke[nwoke++] = i;
    return NULL;
}

static void body_order(void *unused)
{
    (void)unused;
    weft_fiber *f[NSLEEP];
    uint32_t x = 12345;
    /* 100 ms ahead: every sleeper must be asleep before the first is
     * due (spawning 64 takes milliseconds under valgrind); a sleeper
     * whose deadline passed before it slept returns in spawn order. */
    int64_t base = weft_now() + 100 * 1000000LL;
    nwoke = 0;
    /* One wheel orders its timers; several workers have a wheel each, so
     * with several the sleepers are pinned to one worker: the spawner's,
     * which must itself stay put while it spawns them. */
    ck_assert_int_ge(weft_pin(1), 0);
    weft_attr a;
    weft_attr_init(&a);
    a.pinned = test_workers() > 1;
    for (int i = 0; i < NSLEEP; i++) {
        x = x * 1103515245u + 12345u;
        wake_due[i] = base + (int64_t)((x >> 8) % 150) * 1000000LL; /* 100..250 ms, 1 ms apart */
        ck_assert_int_eq(weft_spawn(&f[i], &a, timed_sleeper, (void *)(intptr_t)i), 0);
    }
    for (int i = 0; i < NSLEEP; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(nwoke, NSLEEP);
    for (int k = 0; k < NSLEEP; k++) {
        ck_assert_int_ge(wake_at[woke[k]], wake_due[woke[k]]);
        if (k)
            ck_assert_int_le(wake_due[woke[k - 1]], wake_due[woke[k]]);
    }
}

START_TEST(sleepers_wake_in_deadline_order)
{
    run_in_runtime(NULL, body_order, NULL);
}
END_TEST

static void *sleep_forever(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_sleep_ms(-1);
}

static void body_cancel_sleep(void *unused)
{
    (void)unused;
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, NULL, sleep_forever, NULL), 0);
    weft_sleep_ms(5);
    ck_assert_int_eq(weft_cancel(f), 0);
    void *r;
    ck_assert_int_eq(weft_join(f, &r, weft_deadline_ms(2000)), 0);
    ck_assert_int_eq((intptr_t)r, -ECANCELED);
}

START_TEST(sleep_is_cancellable)
{
    run_in_runtime(NULL, body_cancel_sleep, NULL);
}
END_TEST

START_TEST(interval_argument_errors)
{
    weft_interval iv;
    ck_assert_int_eq(weft_interval_init(NULL, 1000, WEFT_MISSED_BURST), -EINVAL);
    ck_assert_int_eq(weft_interval_init(&iv, 0, WEFT_MISSED_BURST), -EINVAL);
    ck_assert_int_eq(weft_interval_init(&iv, -5, WEFT_MISSED_SKIP), -EINVAL);
    ck_assert_int_eq(weft_interval_init(&iv, 1000, 17), -EINVAL);
    ck_assert_int_eq(weft_interval_init(&iv, INT64_MAX, WEFT_MISSED_DELAY), -EINVAL);
    ck_assert_int_eq(weft_interval_tick(NULL), -EINVAL);
}
END_TEST

#define PERIOD (10 * 1000000LL)

static void body_interval_on_time(void *unused)
{
    (void)unused;
    weft_interval iv;
    int64_t t0 = weft_now();
    ck_assert_int_eq(weft_interval_init(&iv, PERIOD, WEFT_MISSED_SKIP), 0);
    for (int i = 1; i <= 5; i++) {
        ck_assert_int_ge(weft_interval_tick(&iv), 1);
        ck_assert_int_ge(weft_now() - t0, i * PERIOD);
    }
}

START_TEST(interval_ticks_on_its_grid)
{
    run_in_runtime(NULL, body_interval_on_time, NULL);
}
END_TEST

static void body_interval_burst(void *unused)
{
    (void)unused;
    weft_interval iv;
    ck_assert_int_eq(weft_interval_init(&iv, PERIOD, WEFT_MISSED_BURST), 0);
    int64_t first = iv.next;
    weft_sleep_ms(55); /* ticks at +10..+50 are due: 5 of them */
    int64_t now = weft_now();
    int due = (int)((now - first) / PERIOD) + 1;
    ck_assert_int_ge(due, 5);
    for (int i = 0; i < due; i++)
        ck_assert_int_eq(weft_interval_tick(&iv), 1); /* each delivered, one per call */
    /* every missed tick was delivered and the grid is unchanged */
    ck_assert_int_eq(iv.next, first + due * PERIOD);
    ck_assert_int_eq((iv.next - first) % PERIOD, 0);
}

START_TEST(interval_burst_delivers_missed_ticks)
{
    run_in_runtime(NULL, body_interval_burst, NULL);
}
END_TEST

static void body_interval_skip(void *unused)
{
    (void)unused;
    weft_interval iv;
    ck_assert_int_eq(weft_interval_init(&iv, PERIOD, WEFT_MISSED_SKIP), 0);
    int64_t first = iv.next;
    weft_sleep_ms(55);
    int n = weft_interval_tick(&iv);
    int64_t now = weft_now();
    ck_assert_int_ge(n, 5);                          /* reports what was missed */
    ck_assert_int_eq((iv.next - first) % PERIOD, 0); /* stays on the grid */
    ck_assert_int_gt(iv.next, now);                  /* the next tick is in the future */
    ck_assert_int_le(iv.next - now, PERIOD);
}

START_TEST(interval_skip_stays_on_grid)
{
    run_in_runtime(NULL, body_interval_skip, NULL);
}
END_TEST

static void body_interval_delay(void *unused)
{
    (void)unused;
    weft_interval iv;
    ck_assert_int_eq(weft_interval_init(&iv, PERIOD, WEFT_MISSED_DELAY), 0);
    weft_sleep_ms(55);
    int64_t before = weft_now();
    int n = weft_interval_tick(&iv);
    int64_t after = weft_now();
    ck_assert_int_ge(n, 5);
    /* the schedule restarts one period after the late tick */
    ck_assert_int_ge(iv.next, before + PERIOD);
    ck_assert_int_le(iv.next, after + PERIOD);
    ck_assert_int_eq(weft_interval_tick(&iv), 1);
    ck_assert_int_ge(weft_now(), before + PERIOD);
}

START_TEST(interval_delay_restarts_schedule)
{
    run_in_runtime(NULL, body_interval_delay, NULL);
}
END_TEST

/* Idle means idle: with every fiber asleep the worker blocks in the
 * reactor. A scheduler that polled would burn the whole 400 ms. */
static void *idle_sleeper(void *arg)
{
    (void)arg;
    weft_sleep_ms(400);
    return NULL;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void body_idle(void *unused)
{
    (void)unused;
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(weft_spawn(NULL, NULL, idle_sleeper, NULL), 0);
    weft_yield();
    double c0 = cpu_seconds();
    int64_t t0 = weft_now();
    weft_sleep_ms(400);
    double used = cpu_seconds() - c0;
    ck_assert_int_ge(ms_since(t0), 400);
    ck_assert_msg(used < 0.1, "idle runtime used %.3f s of CPU in 0.4 s", used);
}

START_TEST(idle_runtime_uses_no_cpu)
{
    run_in_runtime(NULL, body_idle, NULL);
}
END_TEST

/* Many sleepers at once, with one worker and with two (then on both);
 * none wakes early and all finish. */
#include <stdatomic.h>
#include <stdio.h>

static _Atomic int early, slept;

static void *sleeper_loop(void *arg)
{
    intptr_t id = (intptr_t)arg;
    for (int i = 0; i < 10; i++) {
        int64_t d = weft_now() + (int64_t)((id + i) % 4) * 500000;
        if (weft_sleep_until(d) != 0 || weft_now() < d)
            atomic_fetch_add(&early, 1);
        atomic_fetch_add(&slept, 1);
    }
    return NULL;
}

static void body_many_sleepers(void *arg)
{
    (void)arg;
    atomic_store(&early, 0);
    atomic_store(&slept, 0);
    weft_fiber *f[64];
    for (intptr_t i = 0; i < 64; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, sleeper_loop, (void *)i), 0);
    for (int i = 0; i < 64; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(atomic_load(&early), 0);
    ck_assert_int_eq(atomic_load(&slept), 640);
}

START_TEST(many_sleepers_workers)
{
    static const int counts[] = { 1, 2 };
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        weft_config cfg;
        weft_config_init(&cfg);
        cfg.workers = counts[i];
        int r = weft_run(&cfg, body_many_sleepers, NULL);
        ck_assert_msg(r == 0, "weft_run(workers=%d): %s", counts[i], weft_strerror(r));
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("time");
    TCase *tc = tcase_create("time");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, clock_and_deadlines);
    tcase_add_test(tc, sleep_is_never_early);
    tcase_add_test(tc, sleep_outside_a_fiber);
    tcase_add_test(tc, sleepers_wake_in_deadline_order);
    tcase_add_test(tc, sleep_is_cancellable);
    tcase_add_test(tc, interval_argument_errors);
    tcase_add_test(tc, interval_ticks_on_its_grid);
    tcase_add_test(tc, interval_burst_delivers_missed_ticks);
    tcase_add_test(tc, interval_skip_stays_on_grid);
    tcase_add_test(tc, interval_delay_restarts_schedule);
    tcase_add_test(tc, idle_runtime_uses_no_cpu);
    tcase_add_test(tc, many_sleepers_workers);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
