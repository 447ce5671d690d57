/* check_fiber.c - spawn, join, detach, cancel, self, ids, yield, and the
 * way weft_run() winds leftovers down. */
#include "testutil.h"

#include <errno.h>
#include <stdint.h>

/* ------------------------------------------------------------ spawn/join */

static void *ret_arg_times_two(void *arg) { return (void *)((intptr_t)arg * 2); }

static void body_spawn_join(void *unused)
{
    (void)unused;
    weft_fiber *f[16];
    for (intptr_t i = 0; i < 16; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, ret_arg_times_two, (void *)i), 0);
    for (intptr_t i = 0; i < 16; i++) {
        void *res = NULL;
        ck_assert_int_eq(weft_join(f[i], &res, WEFT_FOREVER), 0);
        ck_assert_int_eq((intptr_t)res, i * 2);
    }
}

START_TEST(spawn_join_results)
{
    run_in_runtime(NULL, body_spawn_join, NULL);
}
END_TEST

static int order[8], norder;
static void *record_order(void *arg)
{
    order[norder++] = (int)(intptr_t)arg;
    return NULL;
}

static void *fifo_here(void *unused)
{
    (void)unused;
    norder = 0;
    /* With several workers, unpinned fibers may start elsewhere at once;
     * pinned ones keep the single-worker order on the spawner's worker. */
    weft_attr a;
    weft_attr_init(&a);
    a.pinned = test_workers() > 1;
    for (intptr_t i = 0; i < 8; i++)
        ck_assert_int_eq(weft_spawn(NULL, &a, record_order, (void *)i), 0);
    ck_assert_int_eq(norder, 0); /* spawned fibers run only once we yield */
    weft_yield();
    ck_assert_int_eq(norder, 8);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(order[i], i);
    return NULL;
}

/* The check runs in a pinned fiber: main itself may change workers. */
static void body_fifo(void *unused)
{
    (void)unused;
    weft_attr a;
    weft_attr_init(&a);
    a.pinned = 1;
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, &a, fifo_here, NULL), 0);
    ck_assert_int_eq(weft_join(f, NULL, WEFT_FOREVER), 0);
}

START_TEST(spawn_runs_in_fifo_order_after_yield)
{
    run_in_runtime(NULL, body_fifo, NULL);
}
END_TEST

/* ------------------------------------------------------------ error paths */

static void *sleeper(void *arg)
{
    int64_t ms = (int64_t)(intptr_t)arg;
    int r = weft_sleep_ms(ms);
    return (void *)(intptr_t)r;
}

static void body_join_errors(void *unused)
{
    (void)unused;
    weft_fiber *f;
    /* join twice */
    ck_assert_int_eq(weft_spawn(&f, NULL, ret_arg_times_two, (void *)1), 0);
    ck_assert_int_eq(weft_join(f, NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_join(f, NULL, WEFT_FOREVER), -ESRCH);
    ck_assert_int_eq(weft_detach(f), -ESRCH);
    ck_assert_int_eq(weft_cancel(f), -ESRCH);
    ck_assert_uint_eq(weft_fiber_id(f), 0);

    /* a stale handle stays stale after its control block is reused */
    weft_fiber *g;
    ck_assert_int_eq(weft_spawn(&g, NULL, sleeper, (void *)(intptr_t)5), 0);
    ck_assert_int_eq(weft_join(f, NULL, WEFT_FOREVER), -ESRCH);
    ck_assert_int_eq(weft_join(g, NULL, WEFT_FOREVER), 0);

    /* join self */
    ck_assert_int_eq(weft_join(weft_self(), NULL, WEFT_FOREVER), -EDEADLK);

    /* join a detached fiber, detach twice */
    ck_assert_int_eq(weft_spawn(&f, NULL, sleeper, (void *)(intptr_t)5), 0);
    ck_assert_int_eq(weft_detach(f), 0);
    ck_assert_int_eq(weft_detach(f), -EINVAL);
    ck_assert_int_eq(weft_join(f, NULL, WEFT_FOREVER), -EINVAL);

    /* handles that were never valid */
    ck_assert_int_eq(weft_join(NULL, NULL, WEFT_FOREVER), -ESRCH);
    ck_assert_int_eq(weft_join((weft_fiber *)(uintptr_t)0xdeadbeef00000001ull, NULL, 0), -ESRCH);
    ck_assert_int_eq(weft_join((weft_fiber *)(uintptr_t)0x1000000, NULL, 0), -ESRCH);

    /* bad spawn arguments */
    ck_assert_int_eq(weft_spawn(&f, NULL, NULL, NULL), -EINVAL);
    weft_attr a;
    weft_attr_init(&a);
    a.stack_size = 1;
    ck_assert_int_eq(weft_spawn(&f, &a, ret_arg_times_two, NULL), -EINVAL);
    a.stack_size = (size_t)1 << 40;
    ck_assert_int_eq(weft_spawn(&f, &a, ret_arg_times_two, NULL), -EINVAL);
}

START_TEST(join_detach_error_paths)
{
    run_in_runtime(NULL, body_join_errors, NULL);
}
END_TEST

static void body_join_deadline(void *unused)
{
    (void)unused;
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, NULL, sleeper, (void *)(intptr_t)200), 0);
    /* A past deadline tries once: f has not finished. */
    ck_assert_int_eq(weft_join(f, NULL, 0), -ETIMEDOUT);
    int64_t t0 = weft_now();
    ck_assert_int_eq(weft_join(f, NULL, weft_deadline_ms(30)), -ETIMEDOUT);
    int64_t waited = ms_since(t0);
    ck_assert_int_ge(waited, 30);
    ck_assert_int_lt(waited, 190);
    /* still joinable after the timeouts */
    void *res = (void *)1;
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    ck_assert_ptr_null(res); /* sleep returned 0 */
}

START_TEST(join_with_deadline)
{
    run_in_runtime(NULL, body_join_deadline, NULL);
}
END_TEST

static weft_fiber *join_target;
static void *second_joiner(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_join(join_target, NULL, WEFT_FOREVER);
}

static void *first_joiner(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_join(join_target, NULL, WEFT_FOREVER);
}

static void body_two_joiners(void *unused)
{
    (void)unused;
    weft_fiber *j1, *j2;
    /* The yield below must let j1 run first: everyone pinned to one
     * worker, which then keeps a single worker's order. */
    ck_assert_int_ge(weft_pin(1), 0);
    weft_attr a;
    weft_attr_init(&a);
    a.pinned = 1;
    ck_assert_int_eq(weft_spawn(&join_target, &a, sleeper, (void *)(intptr_t)20), 0);
    ck_assert_int_eq(weft_spawn(&j1, &a, first_joiner, NULL), 0);
    weft_yield(); /* j1 parks in join */
    ck_assert_int_eq(weft_spawn(&j2, &a, second_joiner, NULL), 0);
    ck_assert_int_eq(weft_detach(join_target), -EINVAL); /* being joined */
    void *r1, *r2;
    ck_assert_int_eq(weft_join(j2, &r2, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)r2, -EINVAL);
    ck_assert_int_eq(weft_join(j1, &r1, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)r1, 0);
}

START_TEST(second_joiner_is_refused)
{
    run_in_runtime(NULL, body_two_joiners, NULL);
}
END_TEST

static void body_outside(void)
{
    weft_fiber *f = NULL;
    ck_assert_int_eq(weft_spawn(&f, NULL, ret_arg_times_two, NULL), -EPERM);
    ck_assert_int_eq(weft_join((weft_fiber *)(uintptr_t)((1ull << 32) | 1), NULL, 0), -EPERM);
    ck_assert_int_eq(weft_detach((weft_fiber *)(uintptr_t)((1ull << 32) | 1)), -EPERM);
    ck_assert_int_eq(weft_cancel((weft_fiber *)(uintptr_t)((1ull << 32) | 1)), -EPERM);
    ck_assert_ptr_null(weft_self());
    ck_assert_ptr_null(weft_runtime());
    ck_assert_int_eq(weft_cancelled(), 0);
    ck_assert_uint_eq(weft_fiber_id(NULL), 0);
    weft_yield(); /* a no-op, not a crash */
    ck_assert_int_eq(weft_sleep_ms(1), -EPERM);
}

START_TEST(calls_outside_a_fiber)
{
    body_outside();
}
END_TEST

/* ------------------------------------------------------------ cancellation */

static void *report_cancel(void *arg)
{
    (void)arg;
    int before = weft_cancelled();
    int r = weft_sleep_ms(-1); /* forever, unless cancelled */
    return (void *)(intptr_t)(r * 10 + before);
}

static void body_cancel_before_run(void *unused)
{
    (void)unused;
    weft_fiber *f;
    weft_attr a;            /* pinned: with several workers it must not start first */
    weft_attr_init(&a);
    a.pinned = 1;
    ck_assert_int_eq(weft_spawn(&f, &a, report_cancel, NULL), 0);
    ck_assert_int_eq(weft_cancel(f), 0);
    ck_assert_int_eq(weft_cancel(f), 0); /* idempotent */
    void *res;
    ck_assert_int_eq(weft_join(f, &res, weft_deadline_ms(1000)), 0);
    ck_assert_int_eq((intptr_t)res, -ECANCELED * 10 + 1);
}

START_TEST(cancel_before_first_run)
{
    run_in_runtime(NULL, body_cancel_before_run, NULL);
}
END_TEST

static void body_cancel_parked(void *unused)
{
    (void)unused;
    weft_fiber *f;
    weft_attr a;            /* both pinned: the yield lets f park first */
    weft_attr_init(&a);
    a.pinned = 1;
    weft_pin(1);
    ck_assert_int_eq(weft_spawn(&f, &a, report_cancel, NULL), 0);
    weft_yield(); /* f parks forever */
    int64_t t0 = weft_now();
    ck_assert_int_eq(weft_cancel(f), 0);
    void *res;
    ck_assert_int_eq(weft_join(f, &res, weft_deadline_ms(1000)), 0);
    ck_assert_int_eq((intptr_t)res, -ECANCELED * 10);
    ck_assert_int_lt(ms_since(t0), 500);
}

START_TEST(cancel_while_parked)
{
    run_in_runtime(NULL, body_cancel_parked, NULL);
}
END_TEST

static weft_fiber *joiner_target2;
static void *cancellable_joiner(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_join(joiner_target2, NULL, WEFT_FOREVER);
}

static void body_cancel_joiner(void *unused)
{
    (void)unused;
    weft_fiber *j;
    /* The target outlives the test's cancel however slow the machine (a
     * 30 ms sleeper had finished before the cancel under qemu with
     * migration); it is cancelled itself at the end. */
    ck_assert_int_eq(weft_spawn(&joiner_target2, NULL, sleeper, (void *)(intptr_t)60000), 0);
    ck_assert_int_eq(weft_spawn(&j, NULL, cancellable_joiner, NULL), 0);
    weft_yield();
    ck_assert_int_eq(weft_cancel(j), 0);
    void *res;
    ck_assert_int_eq(weft_join(j, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, -ECANCELED);
    /* the target is not lost: it can still be joined */
    ck_assert_int_eq(weft_cancel(joiner_target2), 0);
    ck_assert_int_eq(weft_join(joiner_target2, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, -ECANCELED);
}

START_TEST(cancel_while_joining)
{
    run_in_runtime(NULL, body_cancel_joiner, NULL);
}
END_TEST

static _Atomic int leftovers_cancelled, leftovers_started;
static void *born_cancelled(void *arg)
{
    (void)arg;
    if (weft_cancelled() && weft_sleep_ms(-1) == -ECANCELED)
        leftovers_cancelled += 100;
    return NULL;
}

static void *leftover(void *arg)
{
    (void)arg;
    leftovers_started++;
    if (weft_sleep_ms(-1) == -ECANCELED)
        leftovers_cancelled++;
    /* Cancellation sticks: every later blocking call fails too. */
    if (weft_sleep_ms(1) == -ECANCELED)
        leftovers_cancelled++;
    /* A fiber spawned while the runtime winds down starts cancelled, and
     * weft_run() still waits for it. */
    weft_spawn(NULL, NULL, born_cancelled, NULL);
    return NULL;
}

static void body_leftovers(void *unused)
{
    (void)unused;
    weft_fiber *f;
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(weft_spawn(NULL, NULL, leftover, NULL), 0);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(weft_spawn(&f, NULL, leftover, NULL), 0); /* never joined */
    weft_yield();
}

START_TEST(run_cancels_and_joins_leftovers)
{
    leftovers_cancelled = leftovers_started = 0;
    run_in_runtime(NULL, body_leftovers, NULL);
    ck_assert_int_eq(leftovers_started, 10);
    ck_assert_int_eq(leftovers_cancelled, 10 * 102);
}
END_TEST

/* ------------------------------------------------------------ edge cases */

static _Atomic int grandchild_ran;
static void *grandchild(void *arg)
{
    (void)arg;
    grandchild_ran = 1;
    return NULL;
}

static void *spawn_then_exit(void *arg)
{
    (void)arg;
    weft_spawn(NULL, NULL, grandchild, NULL); /* its very last act */
    return NULL;
}

static void body_spawn_from_finishing(void *unused)
{
    (void)unused;
    weft_fiber *f;
    grandchild_ran = 0;
    ck_assert_int_eq(weft_spawn(&f, NULL, spawn_then_exit, NULL), 0);
    ck_assert_int_eq(weft_join(f, NULL, WEFT_FOREVER), 0);
    /* With several workers it may run elsewhere, later: wait for it (a
     * grandchild that never runs fails on the test's timeout). */
    while (!grandchild_ran)
        weft_yield();
    ck_assert_int_eq(grandchild_ran, 1);
}

START_TEST(spawn_from_a_finishing_fiber)
{
    run_in_runtime(NULL, body_spawn_from_finishing, NULL);
}
END_TEST

static void *id_of_self(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)weft_fiber_id(weft_self());
}

static void body_ids(void *unused)
{
    (void)unused;
    uint64_t prev = weft_fiber_id(weft_self());
    ck_assert_uint_ne(prev, 0);
    /* Each worker takes ids in batches: they grow along one worker's
     * spawns; with several workers they are only unique. */
    static uint64_t seen[3000];
    for (int i = 0; i < 3000; i++) { /* crosses an id batch */
        weft_fiber *f;
        ck_assert_int_eq(weft_spawn(&f, NULL, id_of_self, NULL), 0);
        uint64_t id = weft_fiber_id(f);
        if (test_workers() == 1)
            ck_assert_uint_gt(id, prev);
        int dup = 0;    /* one assertion, not i: each costs a mark point */
        for (int k = 0; k < i; k++)
            dup |= seen[k] == id;
        ck_assert_msg(!dup, "id %llu handed out twice", (unsigned long long)id);
        seen[i] = id;
        void *res;
        ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
        ck_assert_uint_eq((uint64_t)(uintptr_t)res, id);
        prev = id;
    }
}

START_TEST(fiber_ids_are_unique)
{
    run_in_runtime(NULL, body_ids, NULL);
}
END_TEST

#define MANY 100000
static _Atomic int many_done;
static void *many_body(void *arg)
{
    (void)arg;
    weft_yield();
    weft_sleep_ms(1);
    many_done++;
    return NULL;
}

static void body_many(void *unused)
{
    (void)unused;
    static weft_fiber *f[MANY];
    many_done = 0;
    weft_attr a;
    weft_attr_init(&a);
    a.stack_size = 16 * 1024;
    for (int i = 0; i < MANY; i++)
        ck_assert_int_eq(weft_spawn(&f[i], &a, many_body, NULL), 0);
    weft_stats st;
    weft_stats_get(&st);
    /* With one worker none has run yet; with several some have finished. */
    if (test_workers() == 1)
        ck_assert_uint_eq(st.fibers_live, MANY + 1);
    else
        ck_assert_uint_le(st.fibers_live, MANY + 1);
    for (int i = 0; i < MANY; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(many_done, MANY);
}

START_TEST(hundred_thousand_fibers)
{
    run_in_runtime(NULL, body_many, NULL);
}
END_TEST

/* A fiber that yields in a loop must not starve timers: the sleeper below
 * only wakes if the scheduler still runs the wheel. */
static _Atomic int stop_spinning;
static void *wake_later(void *arg)
{
    (void)arg;
    weft_sleep_ms(20);
    stop_spinning = 1;
    return NULL;
}

static void body_fairness(void *unused)
{
    (void)unused;
    weft_fiber *f;
    stop_spinning = 0;
    ck_assert_int_eq(weft_spawn(&f, NULL, wake_later, NULL), 0);
    long spins = 0;
    while (!stop_spinning)
        weft_yield(), spins++;
    ck_assert_int_gt(spins, 0);
    ck_assert_int_eq(weft_join(f, NULL, WEFT_FOREVER), 0);
}

START_TEST(yield_loop_does_not_starve_timers)
{
    run_in_runtime(NULL, body_fairness, NULL);
}
END_TEST

static void body_nested_run(void *unused)
{
    (void)unused;
    ck_assert_int_eq(weft_run(NULL, body_nested_run, NULL), -EDEADLK);
}

static void body_noop(void *unused) { (void)unused; }

START_TEST(run_argument_errors)
{
    weft_config c;
    weft_config_init(&c);
    ck_assert_int_eq(weft_run(&c, NULL, NULL), -EINVAL);
    c.workers = -1;
    ck_assert_int_eq(weft_run(&c, body_noop, NULL), -EINVAL);
    weft_config_init(&c);
    c.guard = 7;
    ck_assert_int_eq(weft_run(&c, body_noop, NULL), -EINVAL);
    weft_config_init(&c);
    c.stack_size = 100;
    ck_assert_int_eq(weft_run(&c, body_noop, NULL), -EINVAL);
    weft_config_init(&c);
    c.workers = 1025;
    ck_assert_int_eq(weft_run(&c, body_noop, NULL), -EINVAL);
    weft_config_init(&c);
    c.workers = 3;
    run_in_runtime(&c, body_noop, NULL);
    run_in_runtime(NULL, body_nested_run, NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fiber");
    TCase *tc = tcase_create("fiber");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, spawn_join_results);
    tcase_add_test(tc, spawn_runs_in_fifo_order_after_yield);
    tcase_add_test(tc, join_detach_error_paths);
    tcase_add_test(tc, join_with_deadline);
    tcase_add_test(tc, second_joiner_is_refused);
    tcase_add_test(tc, calls_outside_a_fiber);
    tcase_add_test(tc, cancel_before_first_run);
    tcase_add_test(tc, cancel_while_parked);
    tcase_add_test(tc, cancel_while_joining);
    tcase_add_test(tc, run_cancels_and_joins_leftovers);
    tcase_add_test(tc, spawn_from_a_finishing_fiber);
    tcase_add_test(tc, fiber_ids_are_unique);
    tcase_add_test(tc, hundred_thousand_fibers);
    tcase_add_test(tc, yield_loop_does_not_starve_timers);
    tcase_add_test(tc, run_argument_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
