/* check_timer.c - tests of the hierarchical timer wheel (src/timer.c).
 *
 * The heart of it is a randomized model-based test: the wheel and a naive
 * model (an array scanned for the earliest tick) are driven through the same
 * random adds, deletes, re-adds and advances, and must fire the same timers
 * at the same ticks. The targeted tests around it pin down the cases the
 * random mix reaches only rarely: exact level boundaries, timers beyond the
 * wheel's span, callbacks that re-arm or delete, and huge empty advances.
 *
 * Environment: WEFT_TEST_SEED overrides the random seed (it is printed in
 * every failure message of the randomized tests); WEFT_TEST_QUICK cuts the
 * randomized test from 1,000,000 to 100,000 operations for slow runs such
 * as valgrind.
 */
#include "timer.h"

#include <check.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define L1 UINT64_C(64)
#define L2 (L1 * 64)
#define L3 (L2 * 64)
#define L4 (L3 * 64)
#define L5 (L4 * 64)
#define L6 (L5 * 64)              /* the wheel's whole span, 64^6 ticks */

/* ck_assert marks a check point on every success, which costs a write per
 * call; the hot loops use this instead and only call into Check on failure. */
#define REQUIRE(cond, ...) \
    do { if (!(cond)) ck_abort_msg(__VA_ARGS__); } while (0)

/* ---- fixture: timers that record when they fire ---------------------- */

struct rec {
    int id;
    uint64_t tick;
};

struct ctx;

struct tt {
    struct weft__timer t;
    int id;
    struct ctx *c;
    int repeats;                    /* re-arm this many more times */
    uint64_t period;                /* ... at now + period */
    struct tt *victim;              /* deleted by the callback when set */
    struct tt *spawn;               /* added by the callback when set */
    uint64_t spawn_delta;           /* ... at now + spawn_delta (may wrap below now) */
};

struct ctx {
    struct weft__wheel w;
    struct rec *recs;
    size_t nrec, cap;
    int monotonic;                  /* 0 once a firing tick went backwards */
    int now_wrong;                  /* set if a callback saw now < expires */
};

static void ctx_init(struct ctx *c, uint64_t now)
{
    memset(c, 0, sizeof *c);
    weft__wheel_init(&c->w, now);
    c->monotonic = 1;
}

static void ctx_free(struct ctx *c)
{
    free(c->recs);
    c->recs = NULL;
}

static void on_fire(struct weft__timer *t)
{
    struct tt *x = (struct tt *)((char *)t - offsetof(struct tt, t));
    struct ctx *c = x->c;

    REQUIRE(!weft__timer_armed(t), "callback ran on an armed timer");
    if (c->nrec == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 256;
        c->recs = realloc(c->recs, c->cap * sizeof *c->recs);
        ck_assert_ptr_nonnull(c->recs);
    }
    if (c->nrec && c->recs[c->nrec - 1].tick > c->w.now)
        c->monotonic = 0;
    if (c->w.now < t->expires)
        c->now_wrong = 1;
    c->recs[c->nrec].id = x->id;
    c->recs[c->nrec].tick = c->w.now;
    c->nrec++;
    if (x->victim)
        weft__wheel_del(&c->w, &x->victim->t);
    if (x->spawn && !weft__timer_armed(&x->spawn->t))
        weft__wheel_add(&c->w, &x->spawn->t, c->w.now + x->spawn_delta);
    if (x->repeats > 0) {
        x->repeats--;
        weft__wheel_add(&c->w, t, c->w.now + x->period);
    }
}

static void tt_init(struct tt *x, struct ctx *c, int id)
{
    memset(x, 0, sizeof *x);
    weft__timer_init(&x->t, on_fire);
    x->id = id;
    x->c = c;
}

static int rec_cmp(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    if (x->tick != y->tick)
        return x->tick < y->tick ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* ---- random numbers --------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: tiny, fast and good enough to drive a test. */
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static uint64_t rng_range(uint64_t *s, uint64_t lo, uint64_t hi)
{
    return lo + rng_next(s) % (hi - lo + 1);
}

static uint64_t test_seed(void)
{
    const char *e = getenv("WEFT_TEST_SEED");
    if (e && *e)
        return strtoull(e, NULL, 0);
    return UINT64_C(0x7EF7C0FFEE5EED01);
}

static int quick(void)
{
    const char *e = getenv("WEFT_TEST_QUICK");
    return e && *e && strcmp(e, "0") != 0;
}

/* An expiry tick relative to now, from a mix of scales: already due, each
 * level's range, beyond the wheel's span, and right around level edges. */
static uint64_t rand_expiry(uint64_t *s, uint64_t now)
{
    unsigned r = (unsigned)(rng_next(s) % 100);

    if (r < 4)
        return now - rng_range(s, 0, now < 1000 ? now : 1000);
    if (r < 8)
        return now;
    if (r < 38)
        return now + rng_range(s, 1, 64);
    if (r < 58)
        return now + rng_range(s, 1, L2);
    if (r < 74)
        return now + rng_range(s, 1, L3);
    if (r < 84)
        return now + rng_range(s, 1, L5);
    if (r < 89)
        return now + rng_range(s, 1, L6);
    if (r < 91)
        return now + rng_range(s, L6 - 2, L6 * 8);
    /* Near the start of the next aligned block of some level, where slots
     * change level and cascades happen. */
    {
        unsigned lvl = (unsigned)rng_range(s, 1, 6);
        uint64_t edge = ((now >> (6 * lvl)) + rng_range(s, 1, 2)) << (6 * lvl);
        return edge - 2 + rng_range(s, 0, 4);
    }
}

static uint64_t rand_period(uint64_t *s)
{
    unsigned r = (unsigned)(rng_next(s) % 10);
    if (r < 2)
        return 0;
    if (r < 6)
        return rng_range(s, 1, 64);
    if (r < 9)
        return rng_range(s, 1, L2);
    return rng_range(s, 1, L4);
}

/* ---- the model -------------------------------------------------------- */

#define NT 256

struct model {
    uint64_t now;
    uint64_t fire[NT];              /* firing tick, UINT64_MAX if unarmed */
    int repeats[NT];
    uint64_t period[NT];
    size_t armed;
    struct rec *recs;
    size_t nrec, cap;
};

static void model_push(struct model *m, int id, uint64_t tick)
{
    if (m->nrec == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 256;
        m->recs = realloc(m->recs, m->cap * sizeof *m->recs);
        ck_assert_ptr_nonnull(m->recs);
    }
    m->recs[m->nrec].id = id;
    m->recs[m->nrec].tick = tick;
    m->nrec++;
}

static void model_add(struct model *m, int id, uint64_t expires)
{
    if (m->fire[id] == UINT64_MAX)
        m->armed++;
    m->fire[id] = expires > m->now ? expires : m->now + 1;
}

static void model_del(struct model *m, int id)
{
    if (m->fire[id] != UINT64_MAX)
        m->armed--;
    m->fire[id] = UINT64_MAX;
}

static uint64_t model_min(const struct model *m)
{
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < NT; i++)
        if (m->fire[i] < best)
            best = m->fire[i];
    return best;
}

static void model_advance(struct model *m, uint64_t to)
{
    for (;;) {
        uint64_t t = model_min(m);
        if (t > to)
            break;
        m->now = t;
        for (int i = 0; i < NT; i++) {
            if (m->fire[i] != t)
                continue;
            model_push(m, i, t);
            if (m->repeats[i] > 0) {
                uint64_t e = t + m->period[i];
                m->repeats[i]--;
                m->fire[i] = e > t ? e : t + 1;
            } else {
                m->fire[i] = UINT64_MAX;
                m->armed--;
            }
        }
    }
    m->now = to;
}

/* ---- randomized model-based test -------------------------------------- */

struct rig {
    struct ctx c;
    struct tt tm[NT];
    struct model m;
    uint64_t rng, seed;
    size_t op;
};

static void rig_check_state(struct rig *g)
{
    uint64_t wn = weft__wheel_next(&g->c.w);
    uint64_t mn = model_min(&g->m);

    REQUIRE(g->c.w.count == g->m.armed, "seed=%" PRIu64 " op=%zu: count %zu, model %zu",
            g->seed, g->op, g->c.w.count, g->m.armed);
    REQUIRE(g->c.w.now == g->m.now, "seed=%" PRIu64 " op=%zu: now %" PRIu64 ", model %" PRIu64,
            g->seed, g->op, g->c.w.now, g->m.now);
    if (g->m.armed == 0) {
        REQUIRE(wn == WEFT__TICK_NONE, "seed=%" PRIu64 " op=%zu: next %" PRIu64 " on empty wheel",
                g->seed, g->op, wn);
    } else {
        REQUIRE(wn <= mn && wn > g->c.w.now,
                "seed=%" PRIu64 " op=%zu: next %" PRIu64 ", model first %" PRIu64 ", now %" PRIu64,
                g->seed, g->op, wn, mn, g->c.w.now);
    }
}

static void rig_add(struct rig *g, int id, uint64_t expires)
{
    struct tt *x = &g->tm[id];

    if (rng_next(&g->rng) % 5 == 0) {
        x->repeats = (int)rng_range(&g->rng, 1, 3);
        x->period = rand_period(&g->rng);
    } else {
        x->repeats = 0;
        x->period = 0;
    }
    g->m.repeats[id] = x->repeats;
    g->m.period[id] = x->period;
    weft__wheel_add(&g->c.w, &x->t, expires);
    model_add(&g->m, id, expires);
    REQUIRE(weft__timer_armed(&x->t), "seed=%" PRIu64 " op=%zu: added timer not armed",
            g->seed, g->op);
}

static void rig_del(struct rig *g, int id)
{
    weft__wheel_del(&g->c.w, &g->tm[id].t);
    model_del(&g->m, id);
    REQUIRE(!weft__timer_armed(&g->tm[id].t), "seed=%" PRIu64 " op=%zu: deleted timer armed",
            g->seed, g->op);
}

/* A random id, preferring an armed one (up to a few tries). */
static int rig_pick_armed(struct rig *g)
{
    int id = 0;
    for (int tries = 0; tries < 4; tries++) {
        id = (int)(rng_next(&g->rng) % NT);
        if (g->m.fire[id] != UINT64_MAX)
            break;
    }
    return id;
}

static uint64_t rig_advance_target(struct rig *g)
{
    uint64_t now = g->c.w.now, *s = &g->rng;
    unsigned r = (unsigned)(rng_next(s) % 100);

    if (r < 10)
        return now;
    if (r < 45)
        return now + rng_range(s, 1, 64);
    if (r < 68)
        return now + rng_range(s, 1, L2);
    if (r < 82)
        return now + rng_range(s, 1, L3);
    if (r < 88)
        return now + rng_range(s, 1, L5);
    if (r < 93) {
        /* Exactly to the next reported event, which may be a cascade point
         * that fires nothing. */
        uint64_t n = weft__wheel_next(&g->c.w);
        return n == WEFT__TICK_NONE ? now : n;
    }
    if (r < 96) {
        uint64_t n = model_min(&g->m);
        return n == UINT64_MAX ? now : n - rng_range(s, 0, 1);
    }
    if (r < 99)
        return now + rng_range(s, 1, L6);
    return now + rng_range(s, L6, L6 * 16);
}

static void rig_advance(struct rig *g, uint64_t to)
{
    size_t n;

    g->c.nrec = 0;
    g->m.nrec = 0;
    n = weft__wheel_advance(&g->c.w, to);
    model_advance(&g->m, to);
    REQUIRE(g->c.monotonic, "seed=%" PRIu64 " op=%zu: firing ticks went backwards",
            g->seed, g->op);
    REQUIRE(n == g->c.nrec, "seed=%" PRIu64 " op=%zu: advance returned %zu, %zu callbacks ran",
            g->seed, g->op, n, g->c.nrec);
    REQUIRE(g->c.nrec == g->m.nrec,
            "seed=%" PRIu64 " op=%zu: advance to %" PRIu64 " fired %zu, model %zu",
            g->seed, g->op, to, g->c.nrec, g->m.nrec);
    if (g->m.nrec) {                /* qsort may not be given NULL */
        qsort(g->c.recs, g->c.nrec, sizeof *g->c.recs, rec_cmp);
        qsort(g->m.recs, g->m.nrec, sizeof *g->m.recs, rec_cmp);
    }
    for (size_t i = 0; i < g->m.nrec; i++) {
        const struct rec *a = &g->c.recs[i], *b = &g->m.recs[i];
        REQUIRE(a->id == b->id && a->tick == b->tick,
                "seed=%" PRIu64 " op=%zu: advance to %" PRIu64 ": fired #%d at %" PRIu64
                ", model #%d at %" PRIu64, g->seed, g->op, to, a->id, a->tick, b->id, b->tick);
    }
}

static struct rig *rig_new(uint64_t seed, uint64_t start)
{
    struct rig *g = calloc(1, sizeof *g);

    ck_assert_ptr_nonnull(g);
    ctx_init(&g->c, start);
    for (int i = 0; i < NT; i++) {
        tt_init(&g->tm[i], &g->c, i);
        g->m.fire[i] = UINT64_MAX;
    }
    g->m.now = start;
    g->seed = seed;
    g->rng = seed;
    return g;
}

static void rig_free(struct rig *g)
{
    ctx_free(&g->c);
    free(g->m.recs);
    free(g);
}

static void rig_run(struct rig *g, size_t ops)
{
    for (g->op = 0; g->op < ops; g->op++) {
        unsigned r = (unsigned)(rng_next(&g->rng) % 100);

        if (r < 45) {
            int id = (int)(rng_next(&g->rng) % NT);
            if (weft__timer_armed(&g->tm[id].t))
                rig_del(g, id);
            rig_add(g, id, rand_expiry(&g->rng, g->c.w.now));
        } else if (r < 58) {
            rig_del(g, rig_pick_armed(g));  /* may hit an unarmed one: harmless */
        } else if (r < 68) {
            int id = rig_pick_armed(g);
            if (weft__timer_armed(&g->tm[id].t)) {
                rig_del(g, id);
                rig_add(g, id, rand_expiry(&g->rng, g->c.w.now));
            }
        } else {
            rig_advance(g, rig_advance_target(g));
        }
        rig_check_state(g);
    }
    /* Drain: everything left must fire, at the model's ticks. */
    rig_advance(g, g->c.w.now + L6 * 64);
    rig_check_state(g);
    REQUIRE(g->c.w.count == 0, "seed=%" PRIu64 ": %zu timers left after drain",
            g->seed, g->c.w.count);
}

START_TEST(test_random_model)
{
    /* 1,000,000 operations by default; WEFT_TEST_QUICK (for valgrind and
     * other slow runs) scales that down to 100,000. */
    size_t ops = quick() ? 100000 : 1000000;
    uint64_t seed = test_seed();
    struct rig *g = rig_new(seed, 0);

    rig_run(g, ops);
    rig_free(g);
}
END_TEST

START_TEST(test_random_model_odd_start)
{
    /* The same from clocks that start mid-block, and just before the top
     * level's last slot, where the top level's ring wraps. */
    static const uint64_t starts[] = {
        UINT64_C(1234567891), 63 * L5 - 5, L6 - 3, 5 * L6 + 63 * L5 + 62 * L4 + 17,
    };
    uint64_t seed = test_seed() + (uint64_t)_i;
    struct rig *g = rig_new(seed, starts[_i]);

    rig_run(g, quick() ? 10000 : 50000);
    rig_free(g);
}
END_TEST

/* ---- targeted tests --------------------------------------------------- */

START_TEST(test_empty)
{
    struct ctx c;

    ctx_init(&c, 42);
    ck_assert_uint_eq(weft__wheel_next(&c.w), WEFT__TICK_NONE);
    ck_assert_uint_eq(c.w.count, 0);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, 42), 0);
    ck_assert_uint_eq(c.w.now, 42);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, 42 + L6 * 1000), 0);
    ck_assert_uint_eq(c.w.now, 42 + L6 * 1000);
    ck_assert_uint_eq(weft__wheel_next(&c.w), WEFT__TICK_NONE);
    ctx_free(&c);
}
END_TEST

START_TEST(test_order_across_levels)
{
    static const uint64_t deltas[] = {
        L5 * 3 + 7, 1, L2 + 1, 65, L4 * 2, 2, L3 - 1, 64, L1 - 1, L5 - 1, L2, L3 + 5,
        L6 - 1, 100000, 3, L4 + L3 + L2 + L1 + 1,
    };
    enum { N = sizeof deltas / sizeof deltas[0] };
    struct ctx c;
    struct tt x[N];
    uint64_t start = 1000003;

    ctx_init(&c, start);
    for (int i = 0; i < N; i++) {
        tt_init(&x[i], &c, i);
        weft__wheel_add(&c.w, &x[i].t, start + deltas[i]);
    }
    ck_assert_uint_eq(c.w.count, N);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, start + L6), N);
    ck_assert_uint_eq(c.nrec, N);
    ck_assert_int_eq(c.monotonic, 1);
    for (size_t i = 0; i < c.nrec; i++)
        ck_assert_uint_eq(c.recs[i].tick, start + deltas[c.recs[i].id]);
    ck_assert_uint_eq(c.w.count, 0);
    ctx_free(&c);
}
END_TEST

START_TEST(test_level_boundaries)
{
    static const uint64_t deltas[] = {
        1, 2, 63, 64, 65, L2 - 1, L2, L2 + 1, L3 - 1, L3, L3 + 1, L4 - 1, L4, L4 + 1,
        L5 - 1, L5, L5 + 1, L6 - 1, L6, L6 + 1,
    };
    static const uint64_t starts[] = {
        0, 1, 63, 64, L2 - 1, L3 - 1, L5 - 1, 63 * L5, 63 * L5 - 1, L6 - 1, 12345678,
    };

    for (size_t si = 0; si < sizeof starts / sizeof starts[0]; si++) {
        for (size_t di = 0; di < sizeof deltas / sizeof deltas[0]; di++) {
            struct ctx c;
            struct tt x;
            uint64_t exp = starts[si] + deltas[di];

            ctx_init(&c, starts[si]);
            tt_init(&x, &c, 0);
            weft__wheel_add(&c.w, &x.t, exp);
            ck_assert_uint_le(weft__wheel_next(&c.w), exp);
            /* One tick short fires nothing, the tick itself fires it. */
            ck_assert_uint_eq(weft__wheel_advance(&c.w, exp - 1), 0);
            ck_assert_msg(weft__timer_armed(&x.t), "start %" PRIu64 " delta %" PRIu64,
                          starts[si], deltas[di]);
            ck_assert_uint_le(weft__wheel_next(&c.w), exp);
            ck_assert_uint_eq(weft__wheel_advance(&c.w, exp), 1);
            ck_assert_uint_eq(c.nrec, 1);
            ck_assert_uint_eq(c.recs[0].tick, exp);
            ck_assert_uint_eq(c.w.count, 0);
            ctx_free(&c);

            /* And in one big step. */
            ctx_init(&c, starts[si]);
            tt_init(&x, &c, 0);
            weft__wheel_add(&c.w, &x.t, exp);
            ck_assert_uint_eq(weft__wheel_advance(&c.w, exp + L6 * 3), 1);
            ck_assert_uint_eq(c.recs[0].tick, exp);
            ctx_free(&c);
        }
    }
}
END_TEST

START_TEST(test_due_fires_on_next_advance)
{
    /* The tick after now may be in the next block of any level. */
    static const uint64_t starts[] = { 100, 63, 127, L2 - 1, L3 - 1, L6 - 1, 7 * L6 - 1 };

    for (size_t si = 0; si < sizeof starts / sizeof starts[0]; si++) {
        uint64_t now = starts[si];
        struct ctx c;
        struct tt a, b, d;

        ctx_init(&c, now);
        tt_init(&a, &c, 0);
        tt_init(&b, &c, 1);
        tt_init(&d, &c, 2);
        weft__wheel_add(&c.w, &a.t, now - 50);
        weft__wheel_add(&c.w, &b.t, now);
        weft__wheel_add(&c.w, &d.t, 0);
        /* Not fired from inside add. */
        ck_assert_uint_eq(c.nrec, 0);
        ck_assert_uint_eq(c.w.count, 3);
        ck_assert_uint_eq(weft__wheel_next(&c.w), now + 1);
        /* Advancing to now moves no time, so nothing is due yet. */
        ck_assert_uint_eq(weft__wheel_advance(&c.w, now), 0);
        ck_assert_uint_eq(weft__wheel_advance(&c.w, now + 1000), 3);
        ck_assert_uint_eq(c.nrec, 3);
        for (int i = 0; i < 3; i++)
            ck_assert_uint_eq(c.recs[i].tick, now + 1);
        ck_assert_uint_eq(c.w.now, now + 1000);
        ctx_free(&c);
    }
}
END_TEST

START_TEST(test_far_future_clamp)
{
    static const uint64_t starts[] = { 0, 5, 63 * L5, 63 * L5 + 12, L6 - 1, 3 * L6 + 40 * L5 };
    static const uint64_t deltas[] = {
        L6 + 1, L6 + L5, 2 * L6 - 1, 3 * L6 + 12345, 64 * L6 + 7, 1000 * L6 + 999,
    };
    enum { N = sizeof deltas / sizeof deltas[0] };

    for (size_t si = 0; si < sizeof starts / sizeof starts[0]; si++) {
        struct ctx c;
        struct tt x[N];
        uint64_t now = starts[si];

        ctx_init(&c, now);
        for (int i = 0; i < N; i++) {
            tt_init(&x[i], &c, i);
            weft__wheel_add(&c.w, &x[i].t, now + deltas[i]);
        }
        /* Walk in big uneven steps, never past the next expiry, then land
         * one short of it and on it. */
        for (int i = 0; i < N; i++) {
            uint64_t exp = now + deltas[i];
            while (c.w.now + L5 * 37 + 3 < exp) {
                size_t n = weft__wheel_advance(&c.w, c.w.now + L5 * 37 + 3);
                REQUIRE(n == 0, "start %" PRIu64 ": fired early", now);
                REQUIRE(weft__wheel_next(&c.w) <= exp, "start %" PRIu64 ": next overestimates", now);
            }
            ck_assert_uint_eq(weft__wheel_advance(&c.w, exp - 1), 0);
            ck_assert_int_eq(weft__timer_armed(&x[i].t), 1);
            ck_assert_uint_eq(weft__wheel_advance(&c.w, exp), 1);
            ck_assert_uint_eq(c.recs[c.nrec - 1].id, i);
            ck_assert_uint_eq(c.recs[c.nrec - 1].tick, exp);
            ck_assert_uint_eq(c.w.count, (size_t)(N - 1 - i));
        }
        ctx_free(&c);

        /* And all in a single advance. */
        ctx_init(&c, now);
        for (int i = 0; i < N; i++) {
            tt_init(&x[i], &c, i);
            weft__wheel_add(&c.w, &x[i].t, now + deltas[i]);
        }
        ck_assert_uint_eq(weft__wheel_advance(&c.w, now + 2000 * L6), N);
        for (int i = 0; i < N; i++) {
            ck_assert_uint_eq(c.recs[i].id, i);
            ck_assert_uint_eq(c.recs[i].tick, now + deltas[i]);
        }
        ctx_free(&c);
    }
}
END_TEST

START_TEST(test_del_unarmed)
{
    struct ctx c;
    struct tt a, b;

    ctx_init(&c, 10);
    tt_init(&a, &c, 0);
    tt_init(&b, &c, 1);
    weft__wheel_del(&c.w, &a.t);                /* never armed */
    ck_assert_uint_eq(c.w.count, 0);
    weft__wheel_add(&c.w, &b.t, 20);
    weft__wheel_del(&c.w, &a.t);
    ck_assert_uint_eq(c.w.count, 1);
    weft__wheel_add(&c.w, &a.t, 20);
    weft__wheel_del(&c.w, &a.t);
    weft__wheel_del(&c.w, &a.t);                /* twice */
    ck_assert_uint_eq(c.w.count, 1);
    ck_assert_uint_eq(weft__wheel_next(&c.w), 20);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, 30), 1);
    ck_assert_uint_eq(c.recs[0].id, 1);
    weft__wheel_del(&c.w, &b.t);                /* after it fired */
    ck_assert_uint_eq(c.w.count, 0);
    ck_assert_uint_eq(weft__wheel_next(&c.w), WEFT__TICK_NONE);
    /* A deleted timer can be added again and fires normally. */
    weft__wheel_add(&c.w, &a.t, 35);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, 40), 1);
    ck_assert_uint_eq(c.recs[1].id, 0);
    ck_assert_uint_eq(c.recs[1].tick, 35);
    ctx_free(&c);
}
END_TEST

START_TEST(test_periodic)
{
    struct ctx c;
    struct tt p;

    ctx_init(&c, 60);
    tt_init(&p, &c, 0);
    p.repeats = 20;
    p.period = 10;
    weft__wheel_add(&c.w, &p.t, 63);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, 1000), 21);
    for (int i = 0; i < 21; i++)
        ck_assert_uint_eq(c.recs[i].tick, 63 + 10 * (uint64_t)i);
    ck_assert_uint_eq(c.w.count, 0);

    /* Re-arming in the past (period 0) fires again on the very next tick,
     * within the same advance, rather than looping inside the callback. */
    c.nrec = 0;
    p.repeats = 3;
    p.period = 0;
    weft__wheel_add(&c.w, &p.t, 1100);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, 1102), 3);
    ck_assert_uint_eq(c.recs[0].tick, 1100);
    ck_assert_uint_eq(c.recs[1].tick, 1101);
    ck_assert_uint_eq(c.recs[2].tick, 1102);
    ck_assert_int_eq(weft__timer_armed(&p.t), 1);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, 1200), 1);
    ck_assert_uint_eq(c.recs[3].tick, 1103);
    ck_assert_uint_eq(c.w.count, 0);

    /* A long period that crosses levels and the wheel's span. */
    c.nrec = 0;
    p.repeats = 4;
    p.period = L6 + 17;
    weft__wheel_add(&c.w, &p.t, 2000);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, 2000 + 10 * L6), 5);
    for (int i = 0; i < 5; i++)
        ck_assert_uint_eq(c.recs[i].tick, 2000 + (L6 + 17) * (uint64_t)i);
    ctx_free(&c);
}
END_TEST

START_TEST(test_callback_deletes_due)
{
    struct ctx c;
    struct tt a, b, d, e;

    /* Two timers due at the same tick delete each other: exactly one fires. */
    ctx_init(&c, 0);
    tt_init(&a, &c, 0);
    tt_init(&b, &c, 1);
    a.victim = &b;
    b.victim = &a;
    weft__wheel_add(&c.w, &a.t, 50);
    weft__wheel_add(&c.w, &b.t, 50);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, 100), 1);
    ck_assert_uint_eq(c.nrec, 1);
    ck_assert_int_eq(weft__timer_armed(&a.t) + weft__timer_armed(&b.t), 0);
    ck_assert_uint_eq(c.w.count, 0);
    ck_assert_uint_eq(weft__wheel_next(&c.w), WEFT__TICK_NONE);
    ctx_free(&c);

    /* The same for timers that reach their tick by cascading down from
     * level 3, plus a third timer due at that tick which deletes a fourth
     * one due later: the fourth must never fire. */
    ctx_init(&c, 0);
    tt_init(&a, &c, 0);
    tt_init(&b, &c, 1);
    tt_init(&d, &c, 2);
    tt_init(&e, &c, 3);
    a.victim = &b;
    b.victim = &a;
    e.victim = &d;
    weft__wheel_add(&c.w, &a.t, L3 + L2 + 7);
    weft__wheel_add(&c.w, &b.t, L3 + L2 + 7);
    weft__wheel_add(&c.w, &e.t, L3 + L2 + 7);
    weft__wheel_add(&c.w, &d.t, L3 + L2 + 8);
    ck_assert_uint_eq(c.w.count, 4);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, L4), 2);
    ck_assert_uint_eq(c.nrec, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_uint_eq(c.recs[i].tick, L3 + L2 + 7);
        ck_assert_int_ne(c.recs[i].id, 2);
    }
    ck_assert_int_ne(c.recs[0].id, c.recs[1].id);
    ck_assert_int_eq(weft__timer_armed(&d.t), 0);
    ck_assert_uint_eq(c.w.count, 0);
    ck_assert_uint_eq(weft__wheel_next(&c.w), WEFT__TICK_NONE);
    ctx_free(&c);
}
END_TEST

START_TEST(test_callback_adds)
{
    struct ctx c;
    struct tt a, b, d;

    /* Added during advance with expires <= to: fires in the same advance,
     * including one added already due (fires on the next tick). */
    ctx_init(&c, 0);
    tt_init(&a, &c, 0);
    tt_init(&b, &c, 1);
    tt_init(&d, &c, 2);
    a.spawn = &b;
    a.spawn_delta = 0;                   /* due at once: fires at now + 1 */
    b.spawn = &d;
    b.spawn_delta = L3;                  /* far: cascades within this advance */
    weft__wheel_add(&c.w, &a.t, L1 - 1);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, L1 + L3), 3);
    ck_assert_uint_eq(c.recs[0].tick, L1 - 1);
    ck_assert_uint_eq(c.recs[1].tick, L1);
    ck_assert_uint_eq(c.recs[2].tick, L1 + L3);
    ck_assert_uint_eq(c.recs[2].id, 2);
    ck_assert_uint_eq(c.w.count, 0);

    /* Added past `to`: stays armed for a later advance. */
    c.nrec = 0;
    a.spawn_delta = 500;
    b.spawn = NULL;
    weft__wheel_add(&c.w, &a.t, c.w.now + 10);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, c.w.now + 20), 1);
    ck_assert_uint_eq(c.w.count, 1);
    ck_assert_int_eq(weft__timer_armed(&b.t), 1);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, c.w.now + 1000), 1);
    ck_assert_uint_eq(c.recs[1].tick, c.recs[0].tick + 500);
    ctx_free(&c);
}
END_TEST

START_TEST(test_next_never_overestimates)
{
    uint64_t seed = test_seed() ^ UINT64_C(0xABCDEF);
    struct rig *g = rig_new(seed, 777);

    for (int round = 0; round < 200; round++) {
        int steps = 0;

        /* Random arming, then walk from event to event with next() alone:
         * every timer must fire exactly at its tick, and next() must never
         * point past the model's first one. */
        for (int k = 0; k < 40; k++) {
            int id = (int)(rng_next(&g->rng) % NT);
            if (weft__timer_armed(&g->tm[id].t))
                rig_del(g, id);
            rig_add(g, id, rand_expiry(&g->rng, g->c.w.now));
            g->tm[id].repeats = g->m.repeats[id] = 0;
            if (rng_next(&g->rng) % 4 == 0)
                rig_del(g, rig_pick_armed(g));
            rig_check_state(g);
        }
        while (g->c.w.count) {
            uint64_t n = weft__wheel_next(&g->c.w);
            REQUIRE(n <= model_min(&g->m) && n > g->c.w.now,
                    "seed=%" PRIu64 " round %d: next %" PRIu64 ", model %" PRIu64,
                    seed, round, n, model_min(&g->m));
            rig_advance(g, n);
            rig_check_state(g);
            /* Each step either fires or breaks up a slot; with at most 40
             * timers and six levels (plus re-filing of clamped ones) the
             * walk stays short. */
            REQUIRE(++steps < 40 * 8 + 2000, "seed=%" PRIu64 ": next() walk does not converge",
                    seed);
        }
    }
    rig_free(g);
}
END_TEST

START_TEST(test_huge_empty_span)
{
    struct ctx c;
    struct tt x[4];
    uint64_t far = UINT64_C(10000000000);         /* 10^10 ticks, ~116 days */

    ctx_init(&c, 3);
    tt_init(&x[0], &c, 0);
    weft__wheel_add(&c.w, &x[0].t, 3 + far);
    ck_assert_uint_eq(weft__wheel_advance(&c.w, 3 + far), 1);
    ck_assert_uint_eq(c.recs[0].tick, 3 + far);

    /* A few timers spread over ~30 years and one advance across them all. */
    for (int i = 0; i < 4; i++) {
        tt_init(&x[i], &c, i);
        weft__wheel_add(&c.w, &x[i].t, c.w.now + far * (uint64_t)(i + 1) * 25 + (uint64_t)i);
    }
    ck_assert_uint_eq(weft__wheel_advance(&c.w, c.w.now + far * 1000), 4);
    ck_assert_uint_eq(c.nrec, 5);
    ck_assert_int_eq(c.monotonic, 1);
    ck_assert_int_eq(c.now_wrong, 0);
    ck_assert_uint_eq(c.w.count, 0);
    ctx_free(&c);
}
END_TEST

START_TEST(test_count_exact)
{
    enum { N = 300 };
    struct ctx c;
    static struct tt x[N];

    ctx_init(&c, 5);
    for (int i = 0; i < N; i++) {
        tt_init(&x[i], &c, i);
        weft__wheel_add(&c.w, &x[i].t, 5 + (uint64_t)i * 37);
        ck_assert_uint_eq(c.w.count, (size_t)i + 1);
    }
    for (int i = 0; i < N; i += 3) {
        weft__wheel_del(&c.w, &x[i].t);
        weft__wheel_del(&c.w, &x[i].t);
    }
    ck_assert_uint_eq(c.w.count, N - N / 3);
    /* Fires ids 1, 2, 4, 5, ... with expiry <= 5 + 37 * 99. */
    {
        size_t n = weft__wheel_advance(&c.w, 5 + 37 * 99);
        ck_assert_uint_eq(n, 66);
        ck_assert_uint_eq(c.w.count, N - N / 3 - 66);
    }
    for (int i = 0; i < N; i++)
        weft__wheel_del(&c.w, &x[i].t);
    ck_assert_uint_eq(c.w.count, 0);
    ck_assert_uint_eq(weft__wheel_next(&c.w), WEFT__TICK_NONE);
    for (int l = 0; l < WEFT__WHEEL_LEVELS; l++)
        ck_assert_uint_eq(c.w.occupied[l], 0);
    ctx_free(&c);
}
END_TEST

/* ---- main --------------------------------------------------------------- */

static Suite *timer_suite(void)
{
    Suite *s = suite_create("timer");
    TCase *rnd = tcase_create("random");
    TCase *tgt = tcase_create("targeted");

    /* Generous, for sanitizer and coverage builds; a release build takes
     * about a second. */
    tcase_set_timeout(rnd, 120);
    tcase_add_test(rnd, test_random_model);
    tcase_add_loop_test(rnd, test_random_model_odd_start, 0, 4);
    tcase_add_test(rnd, test_next_never_overestimates);
    suite_add_tcase(s, rnd);

    tcase_set_timeout(tgt, 30);
    tcase_add_test(tgt, test_empty);
    tcase_add_test(tgt, test_order_across_levels);
    tcase_add_test(tgt, test_level_boundaries);
    tcase_add_test(tgt, test_due_fires_on_next_advance);
    tcase_add_test(tgt, test_far_future_clamp);
    tcase_add_test(tgt, test_del_unarmed);
    tcase_add_test(tgt, test_periodic);
    tcase_add_test(tgt, test_callback_deletes_due);
    tcase_add_test(tgt, test_callback_adds);
    tcase_add_test(tgt, test_huge_empty_span);
    tcase_add_test(tgt, test_count_exact);
    suite_add_tcase(s, tgt);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(timer_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
