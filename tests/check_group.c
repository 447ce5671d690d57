/* check_group.c - cancellation groups (src/group.c) and back-off
 * (src/backoff.c).
 *
 * Groups: members run and leave as they return; cancel reaches members
 * parked in any blocking call (sleep, channel, mutex) and refuses new ones;
 * wait honours deadlines and cancellation and leaves no waiter behind; a
 * member cannot wait for its own group; free refuses a busy group; bad
 * input and calls outside fibers. Back-off: the delays grow, stay within
 * [d/2, d] and the cap, the retry limit and deadline are honoured, the
 * sleep is real and cancellable.
 */
#include "actors.h"

uint64_t test_seed_value;

static const int worker_counts[] = { 1, 2 };
#define FOR_WORKERS(body, arg) \
    for (size_t wi_ = 0; wi_ < sizeof worker_counts / sizeof *worker_counts; wi_++) \
        run_workers(worker_counts[wi_], body, arg)

/* ------------------------------------------------------------ groups */

static int finished;

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
        ck_assert_int_eq(weft_group_spawn(g, NULL, short_job, (void *)(i % 3)), 0);
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
    FOR_WORKERS(body_group_wait, NULL);
}
END_TEST

struct blockers {
    weft_chan *ch;
    weft_mutex m;
    int cancelled_seen;
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
        ck_assert_int_eq(weft_group_spawn(s->g, NULL, block_sleep, &s->b), 0);
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
    ck_assert_int_eq(weft_group_spawn(s.g, &attr, block_sleep, &s.b), 0);
    ck_assert_int_eq(weft_group_spawn(s.g, NULL, block_chan, &s.b), 0);
    ck_assert_int_eq(weft_group_spawn(s.g, NULL, block_mutex, &s.b), 0);
    ck_assert_int_eq(weft_group_spawn(s.g, NULL, spawner, &s), 0);
    settle();
    ck_assert_int_eq(weft_group_size(s.g), 7);
    ck_assert_int_eq(weft_group_wait(s.g, weft_deadline_ms(5)), -ETIMEDOUT);
    ck_assert_uint_eq(weft__group_waiters(s.g), 0);
    ck_assert_int_eq(weft_group_cancel(s.g), 0);
    ck_assert_int_eq(weft_group_cancel(s.g), 0);                 /* twice: harmless */
    ck_assert_int_eq(weft_group_spawn(s.g, NULL, block_sleep, &s.b), -ECANCELED);
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
    FOR_WORKERS(body_group_cancel, NULL);
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
    ck_assert_int_eq(weft_group_spawn(g, NULL, record_own_wait, g), 0);
    ck_assert_int_eq(weft_group_wait(g, WEFT_FOREVER), 0);
    ck_assert_int_eq(own_result, -EDEADLK);

    /* A cancelled waiter leaves nothing behind; the members go on. */
    ck_assert_int_eq(weft_group_spawn(g, NULL, short_job, (void *)(intptr_t)20), 0);
    weft_fiber *w;
    ck_assert_int_eq(weft_spawn(&w, NULL, group_waiter, g), 0);
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
    FOR_WORKERS(body_group_errors, NULL);
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
    if (run_workers(1, body_group_leftover, NULL)) {
        ck_assert_int_eq(weft_group_size(leftover), 0);
        ck_assert_int_eq(weft_group_free(leftover), 0);
    }
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
    ck_assert_int_eq(weft_spawn(&f, NULL, backoff_forever, NULL), 0);
    settle();
    ck_assert_int_eq(weft_cancel(f), 0);
    void *res;
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, -ECANCELED);
}

START_TEST(backoff_wait)
{
    FOR_WORKERS(body_backoff_wait, NULL);
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
