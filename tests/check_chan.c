/* check_chan.c - channels and select (src/chan.c).
 *
 * Targeted tests cover each documented result: bad input, outside a fiber,
 * rendezvous and buffered transfer in FIFO order, close semantics (buffer
 * drains, then -EPIPE; waiters woken with -EPIPE), past deadlines, real
 * expiry and cancellation of send, receive and select with the queues
 * checked empty afterwards, select fairness, large selects, element sizes
 * 0 and 1 KiB, freeing a channel that has waiters, and the "stale" nodes a
 * claimed select leaves behind until it runs (skipped by everybody, a free
 * deferred until they are gone).
 *
 * Stress tests (meant for several workers, run with one too): many
 * producers and consumers on rendezvous and buffered channels, selects over
 * three channels (one listed twice) while they are closed one by one, and
 * short deadlines plus cancellations racing with transfers; every value is
 * numbered and must arrive exactly once if and only if its send succeeded.
 *
 * The randomized model test drives 1-3 channels of random capacity from
 * several actor fibers through thousands of random sequences of send,
 * receive, close, select (1-3 clauses), cancellation and deadline expiry,
 * and checks every return value, clause result, received value, buffer
 * length and queue length against a small reference model after each step.
 * A select with several ready clauses picks at random; the model checks
 * that the pick was ready and then follows it.
 *
 * Environment: WEFT_TEST_SEED fixes the seed (printed on failure);
 * WEFT_TEST_QUICK=1 runs a tenth of the sequences (valgrind).
 */
#include "actors.h"

#include <stdatomic.h>

uint64_t test_seed_value;

/* Each body runs in a pinned fiber (run_pinned), so the fibers it spawns
 * with spawn_here() share its worker and its settle() sees them; the
 * stress tests' own fibers are unpinned and spread over both workers. */
static const int worker_counts[] = { 1, 2 };
struct pinned_body { void (*body)(void *); void *arg; };
static void run_body_pinned(void *p)
{
    struct pinned_body *pb = p;
    run_pinned(pb->body, pb->arg);
}
#define FOR_WORKERS(body, arg) \
    do { \
        struct pinned_body pb_ = { body, arg }; \
        for (size_t wi_ = 0; wi_ < sizeof worker_counts / sizeof *worker_counts; wi_++) \
            run_workers(worker_counts[wi_], run_body_pinned, &pb_); \
    } while (0)

/* The targeted tests settle() and then look at the queues: their fibers
 * must run on the caller's worker (with several workers too). */
static int spawn_here(weft_fiber **f, weft_fn fn, void *arg)
{
    weft_attr a;
    weft_attr_init(&a);
    a.pinned = 1;
    return weft_spawn(f, &a, fn, arg);
}

static void no_waiters(weft_chan *ch)
{
    size_t s, r;
    weft__chan_waiters(ch, &s, &r);
    ck_assert_uint_eq(s, 0);
    ck_assert_uint_eq(r, 0);
}

/* ------------------------------------------------------------ bad input */

static void body_bad_input(void *unused)
{
    (void)unused;
    weft_chan *ch;
    int64_t v = 1;
    ck_assert_int_eq(weft_chan_open(&ch, sizeof v, 2), 0);
    uint64_t fake[16] = { 0 };
    weft_chan *bogus = (weft_chan *)(void *)fake;

    ck_assert_int_eq(weft_chan_send(NULL, &v, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_chan_send(bogus, &v, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_chan_send(ch, NULL, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_chan_recv(NULL, &v, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_chan_recv(bogus, &v, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_chan_recv(ch, NULL, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_chan_close(NULL), -EINVAL);
    ck_assert_int_eq(weft_chan_close(bogus), -EINVAL);
    ck_assert_int_eq(weft_chan_len(NULL), -EINVAL);
    ck_assert_int_eq(weft_chan_cap(bogus), -EINVAL);
    ck_assert_int_eq(weft_chan_cap(ch), 2);

    weft_clause cl[2] = { { ch, WEFT_RECV, &v, 0 }, { ch, 0, &v, 0 } };
    ck_assert_int_eq(weft_select(NULL, 1, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_select(cl, 2, WEFT_FOREVER), -EINVAL);        /* op 0 */
    cl[1].op = 7;
    ck_assert_int_eq(weft_select(cl, 2, WEFT_FOREVER), -EINVAL);
    cl[1] = (weft_clause){ NULL, WEFT_SEND, &v, 0 };
    ck_assert_int_eq(weft_select(cl, 2, WEFT_FOREVER), -EINVAL);
    cl[1] = (weft_clause){ bogus, WEFT_SEND, &v, 0 };
    ck_assert_int_eq(weft_select(cl, 2, WEFT_FOREVER), -EINVAL);
    cl[1] = (weft_clause){ ch, WEFT_SEND, NULL, 0 };
    ck_assert_int_eq(weft_select(cl, 2, WEFT_FOREVER), -EINVAL);
    ck_assert_int_eq(weft_select(cl, WEFT_SELECT_MAX + 1, WEFT_FOREVER), -EINVAL);
    /* Nothing was done by the refused calls. */
    ck_assert_int_eq(weft_chan_len(ch), 0);
    no_waiters(ch);

    ck_assert_int_eq(weft_chan_close(ch), 0);
    ck_assert_int_eq(weft_chan_close(ch), -EPIPE);
    weft_chan_free(ch);
    weft_chan_free(NULL);
}

START_TEST(bad_input)
{
    weft_chan *ch;
    ck_assert_int_eq(weft_chan_open(NULL, 8, 1), -EINVAL);
    ck_assert_int_eq(weft_chan_open(&ch, WEFT_CHAN_ELEM_MAX + 1, 1), -EINVAL);
    ck_assert_int_eq(weft_chan_open(&ch, 1024, SIZE_MAX / 512), -EINVAL);
    ck_assert_int_eq(weft_chan_open(&ch, 8, SIZE_MAX / 2), -EINVAL);
    run_in_runtime(NULL, body_bad_input, NULL);
}
END_TEST

START_TEST(outside_fiber_is_eperm)
{
    weft_chan *ch;
    int v = 0;
    ck_assert_int_eq(weft_chan_open(&ch, sizeof v, 1), 0);   /* open works anywhere */
    ck_assert_int_eq(weft_chan_send(ch, &v, WEFT_FOREVER), -EPERM);
    ck_assert_int_eq(weft_chan_recv(ch, &v, WEFT_FOREVER), -EPERM);
    ck_assert_int_eq(weft_chan_close(ch), -EPERM);
    weft_clause c = { ch, WEFT_RECV, &v, 0 };
    ck_assert_int_eq(weft_select(&c, 1, WEFT_FOREVER), -EPERM);
    ck_assert_int_eq(weft_chan_len(ch), 0);
    weft_chan_free(ch);                                        /* and free */
}
END_TEST

/* -------------------------------------------------------- send / receive */

struct span { weft_chan *ch; int64_t from, count; int64_t deadline_ms; };

static void *sender(void *p)
{
    struct span *s = p;
    for (int64_t i = 0; i < s->count; i++) {
        int64_t v = s->from + i;
        int r = weft_chan_send(s->ch, &v, s->deadline_ms < 0 ? WEFT_FOREVER
                                                             : weft_deadline_ms(s->deadline_ms));
        if (r)
            return (void *)(intptr_t)r;
    }
    return NULL;
}

static void *receiver(void *p)
{
    struct span *s = p;
    int64_t v = -1;
    int r = weft_chan_recv(s->ch, &v, s->deadline_ms < 0 ? WEFT_FOREVER
                                                         : weft_deadline_ms(s->deadline_ms));
    s->from = v;
    return (void *)(intptr_t)r;
}

static void body_rendezvous(void *unused)
{
    (void)unused;
    weft_chan *ch;
    ck_assert_int_eq(weft_chan_open(&ch, sizeof(int64_t), 0), 0);
    int64_t v = 0;
    /* Nobody there: a past deadline fails at once either way. */
    ck_assert_int_eq(weft_chan_send(ch, &v, weft_now() - 1), -ETIMEDOUT);
    ck_assert_int_eq(weft_chan_recv(ch, &v, weft_now() - 1), -ETIMEDOUT);
    /* Three senders queue in order; a rendezvous buffers nothing. */
    struct span s[3];
    weft_fiber *f[3];
    for (int i = 0; i < 3; i++) {
        s[i] = (struct span){ ch, 100 * (i + 1), 3, -1 };
        ck_assert_int_eq(spawn_here(&f[i], sender, &s[i]), 0);
    }
    settle();
    size_t ns, nr;
    weft__chan_waiters(ch, &ns, &nr);
    ck_assert_uint_eq(ns, 3);
    ck_assert_int_eq(weft_chan_len(ch), 0);
    /* First round comes in arrival order: 100, 200, 300, then 101, ... */
    int64_t want[9] = { 100, 200, 300, 101, 201, 301, 102, 202, 302 };
    for (int i = 0; i < 9; i++) {
        ck_assert_int_eq(weft_chan_recv(ch, &v, weft_now() - 1), 0);  /* a sender waits */
        ck_assert_int_eq(v, want[i]);
        settle();
    }
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    no_waiters(ch);
    weft_chan_free(ch);
}

START_TEST(rendezvous_fifo)
{
    FOR_WORKERS(body_rendezvous, NULL);
}
END_TEST

static void body_buffered(void *unused)
{
    (void)unused;
    weft_chan *ch;
    ck_assert_int_eq(weft_chan_open(&ch, sizeof(int64_t), 3), 0);
    int64_t v;
    for (v = 0; v < 3; v++)
        ck_assert_int_eq(weft_chan_send(ch, &v, weft_now() - 1), 0);   /* room: no wait */
    ck_assert_int_eq(weft_chan_send(ch, &v, weft_now() - 1), -ETIMEDOUT);
    ck_assert_int_eq(weft_chan_len(ch), 3);
    struct span s = { ch, 3, 4, -1 };
    weft_fiber *f;
    ck_assert_int_eq(spawn_here(&f, sender, &s), 0);
    settle();                                          /* it blocks on the full buffer */
    size_t ns;
    weft__chan_waiters(ch, &ns, NULL);
    ck_assert_uint_eq(ns, 1);
    for (int64_t i = 0; i < 7; i++) {
        ck_assert_int_eq(weft_chan_recv(ch, &v, WEFT_FOREVER), 0);
        ck_assert_int_eq(v, i);
    }
    ck_assert_int_eq(weft_join(f, NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_chan_len(ch), 0);
    /* ring wrap-around over many laps */
    for (int64_t i = 0; i < 1000; i++) {
        ck_assert_int_eq(weft_chan_send(ch, &i, WEFT_FOREVER), 0);
        if (i % 3 == 2)
            for (int k = 0; k < 3; k++) {
                ck_assert_int_eq(weft_chan_recv(ch, &v, WEFT_FOREVER), 0);
                ck_assert_int_eq(v, i - 2 + k);
            }
    }
    no_waiters(ch);
    weft_chan_free(ch);
}

START_TEST(buffered_fifo)
{
    FOR_WORKERS(body_buffered, NULL);
}
END_TEST

static void body_close(void *unused)
{
    (void)unused;
    weft_chan *ch, *rv;
    ck_assert_int_eq(weft_chan_open(&ch, sizeof(int64_t), 2), 0);
    ck_assert_int_eq(weft_chan_open(&rv, sizeof(int64_t), 0), 0);
    int64_t v = 7;
    ck_assert_int_eq(weft_chan_send(ch, &v, WEFT_FOREVER), 0);
    v = 8;
    ck_assert_int_eq(weft_chan_send(ch, &v, WEFT_FOREVER), 0);
    /* a blocked sender is woken by close with -EPIPE */
    struct span s = { ch, 9, 1, -1 };
    weft_fiber *f;
    ck_assert_int_eq(spawn_here(&f, sender, &s), 0);
    settle();
    ck_assert_int_eq(weft_chan_close(ch), 0);
    void *res;
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, -EPIPE);
    ck_assert_int_eq(weft_chan_send(ch, &v, WEFT_FOREVER), -EPIPE);
    /* buffered values drain, then -EPIPE forever */
    ck_assert_int_eq(weft_chan_recv(ch, &v, WEFT_FOREVER), 0);
    ck_assert_int_eq(v, 7);
    ck_assert_int_eq(weft_chan_recv(ch, &v, WEFT_FOREVER), 0);
    ck_assert_int_eq(v, 8);
    ck_assert_int_eq(weft_chan_recv(ch, &v, WEFT_FOREVER), -EPIPE);
    ck_assert_int_eq(weft_chan_recv(ch, &v, weft_now() - 1), -EPIPE);
    ck_assert_int_eq(weft_chan_close(ch), -EPIPE);
    /* blocked receivers are all woken */
    struct span r[4];
    weft_fiber *rf[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (struct span){ rv, 0, 1, -1 };
        ck_assert_int_eq(spawn_here(&rf[i], receiver, &r[i]), 0);
    }
    settle();
    size_t nr;
    weft__chan_waiters(rv, NULL, &nr);
    ck_assert_uint_eq(nr, 4);
    ck_assert_int_eq(weft_chan_close(rv), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(weft_join(rf[i], &res, WEFT_FOREVER), 0);
        ck_assert_int_eq((intptr_t)res, -EPIPE);
    }
    no_waiters(ch);
    no_waiters(rv);
    weft_chan_free(ch);
    weft_chan_free(rv);
}

START_TEST(close_semantics)
{
    FOR_WORKERS(body_close, NULL);
}
END_TEST

/* ------------------------------------------------ deadlines and cancel */

static void *select_recv2(void *p)
{
    weft_chan **chs = p;
    int64_t a = 0, b = 0;
    weft_clause cl[2] = { { chs[0], WEFT_RECV, &a, 1 }, { chs[1], WEFT_SEND, &b, 1 } };
    return (void *)(intptr_t)weft_select(cl, 2, WEFT_FOREVER);
}

static void body_deadline_cancel(void *unused)
{
    (void)unused;
    weft_chan *ch[2];
    ck_assert_int_eq(weft_chan_open(&ch[0], sizeof(int64_t), 0), 0);
    ck_assert_int_eq(weft_chan_open(&ch[1], sizeof(int64_t), 0), 0);
    int64_t v = 0;
    /* real expiry on each blocking call */
    int64_t t0 = weft_now();
    ck_assert_int_eq(weft_chan_send(ch[0], &v, weft_deadline_ms(10)), -ETIMEDOUT);
    ck_assert_int_ge(weft_now() - t0, 10 * 1000000);
    no_waiters(ch[0]);
    ck_assert_int_eq(weft_chan_recv(ch[0], &v, weft_deadline_ms(5)), -ETIMEDOUT);
    no_waiters(ch[0]);
    weft_clause cl[2] = { { ch[0], WEFT_RECV, &v, 99 }, { ch[1], WEFT_SEND, &v, 99 } };
    ck_assert_int_eq(weft_select(cl, 2, weft_deadline_ms(5)), -ETIMEDOUT);
    ck_assert_int_eq(weft_select(cl, 2, weft_now() - 1), -ETIMEDOUT);
    ck_assert_int_eq(cl[0].result, 99);               /* untouched */
    ck_assert_int_eq(weft_select(NULL, 0, weft_deadline_ms(2)), -ETIMEDOUT);
    no_waiters(ch[0]);
    no_waiters(ch[1]);

    /* cancellation of each blocking call */
    /* (each joins the select on the same side, so none can match another) */
    struct span s = { ch[1], 1, 1, -1 };
    weft_fiber *f[3];
    ck_assert_int_eq(spawn_here(&f[0], sender, &s), 0);
    struct span r = { ch[0], 0, 1, -1 };
    ck_assert_int_eq(spawn_here(&f[1], receiver, &r), 0);
    ck_assert_int_eq(spawn_here(&f[2], select_recv2, ch), 0);
    settle();
    size_t ns, nr;
    weft__chan_waiters(ch[0], &ns, &nr);
    ck_assert_uint_eq(ns + nr, 2);
    weft__chan_waiters(ch[1], &ns, &nr);
    ck_assert_uint_eq(ns + nr, 2);
    for (int i = 0; i < 3; i++) {
        void *res;
        ck_assert_int_eq(weft_cancel(f[i]), 0);
        ck_assert_int_eq(weft_join(f[i], &res, WEFT_FOREVER), 0);
        ck_assert_int_eq((intptr_t)res, -ECANCELED);
    }
    no_waiters(ch[0]);
    no_waiters(ch[1]);
    weft_chan_free(ch[0]);
    weft_chan_free(ch[1]);
}

START_TEST(deadline_and_cancel)
{
    FOR_WORKERS(body_deadline_cancel, NULL);
}
END_TEST

/* A select woken by one channel must be gone from the others: a later
 * send on them finds no stale receiver. */
static void body_select_once(void *unused)
{
    (void)unused;
    weft_chan *ch[2];
    ck_assert_int_eq(weft_chan_open(&ch[0], sizeof(int64_t), 0), 0);
    ck_assert_int_eq(weft_chan_open(&ch[1], sizeof(int64_t), 0), 0);
    weft_fiber *f;
    ck_assert_int_eq(spawn_here(&f, select_recv2, ch), 0);
    settle();
    int64_t v = 5;
    ck_assert_int_eq(weft_chan_recv(ch[1], &v, weft_now() - 1), 0);  /* takes its send clause */
    void *res;
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, 1);
    ck_assert_int_eq(v, 0);
    no_waiters(ch[0]);
    no_waiters(ch[1]);
    ck_assert_int_eq(weft_chan_send(ch[0], &v, weft_now() - 1), -ETIMEDOUT);
    /* A select on a closed channel proceeds with -EPIPE in that clause. */
    ck_assert_int_eq(weft_chan_close(ch[1]), 0);
    weft_clause cl[2] = { { ch[0], WEFT_RECV, &v, 1 }, { ch[1], WEFT_RECV, &v, 1 } };
    ck_assert_int_eq(weft_select(cl, 2, WEFT_FOREVER), 1);
    ck_assert_int_eq(cl[1].result, -EPIPE);
    ck_assert_int_eq(cl[0].result, 1);
    /* ... also when it is closed while the select waits */
    weft_chan *same[2] = { ch[0], ch[0] };   /* outlives the fiber */
    ck_assert_int_eq(spawn_here(&f, select_recv2, same), 0);
    settle();
    size_t ns, nr;
    weft__chan_waiters(ch[0], &ns, &nr);
    ck_assert_uint_eq(ns, 1);
    ck_assert_uint_eq(nr, 1);
    ck_assert_int_eq(weft_chan_close(ch[0]), 0);
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, 0);               /* receivers are woken first */
    no_waiters(ch[0]);
    weft_chan_free(ch[0]);
    weft_chan_free(ch[1]);
}

START_TEST(select_fires_once)
{
    FOR_WORKERS(body_select_once, NULL);
}
END_TEST

static void body_select_fair(void *unused)
{
    (void)unused;
    enum { K = 3, N = 30000 };
    weft_chan *ch[K];
    int64_t v[K] = { 0 };
    weft_clause cl[K];
    for (int i = 0; i < K; i++) {
        ck_assert_int_eq(weft_chan_open(&ch[i], sizeof(int64_t), N), 0);
        cl[i] = (weft_clause){ ch[i], WEFT_SEND, &v[i], 0 };
    }
    int count[K] = { 0 };
    for (int i = 0; i < N; i++) {
        int k = weft_select(cl, K, WEFT_FOREVER);
        ck_assert(k >= 0 && k < K);
        count[k]++;
    }
    /* Expected N/K each, standard deviation about 82: allow 6 sigma. */
    for (int i = 0; i < K; i++) {
        ck_assert_msg(count[i] > N / K - 500 && count[i] < N / K + 500, "clause %d chosen %d times",
                      i, count[i]);
        ck_assert_int_eq(weft_chan_len(ch[i]), count[i]);
        weft_chan_free(ch[i]);
    }
}

START_TEST(select_is_fair)
{
    FOR_WORKERS(body_select_fair, NULL);
}
END_TEST

static void *send_one_to(void *p)
{
    int64_t v = 4242;
    return (void *)(intptr_t)weft_chan_send(p, &v, WEFT_FOREVER);
}

static void body_select_big(void *unused)
{
    (void)unused;
    enum { K = 100 };
    weft_chan *ch[K];
    int64_t v[K];
    weft_clause cl[K];
    for (int i = 0; i < K; i++) {
        ck_assert_int_eq(weft_chan_open(&ch[i], sizeof(int64_t), 0), 0);
        v[i] = -1;
        cl[i] = (weft_clause){ ch[i], WEFT_RECV, &v[i], 1 };
    }
    weft_fiber *f;
    ck_assert_int_eq(spawn_here(&f, send_one_to, ch[77]), 0);
    ck_assert_int_eq(weft_select(cl, K, WEFT_FOREVER), 77);   /* parks: more than 16 nodes */
    ck_assert_int_eq(cl[77].result, 0);
    ck_assert_int_eq(v[77], 4242);
    ck_assert_int_eq(weft_join(f, NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_select(cl, K, weft_deadline_ms(2)), -ETIMEDOUT);
    for (int i = 0; i < K; i++) {
        no_waiters(ch[i]);
        weft_chan_free(ch[i]);
    }
}

START_TEST(select_many_clauses)
{
    FOR_WORKERS(body_select_big, NULL);
}
END_TEST

/* ------------------------------------------------------ element sizes */

struct big { unsigned char bytes[1024]; };

static void *send_big(void *p)
{
    struct big b;
    for (int i = 0; i < 1024; i++)
        b.bytes[i] = (unsigned char)(i * 7);
    int r = weft_chan_send(p, &b, WEFT_FOREVER);
    memset(&b, 0, sizeof b);          /* the receiver has its own copy */
    return (void *)(intptr_t)r;
}

static void *signal_event(void *p) { return (void *)(intptr_t)weft_chan_send(p, NULL, WEFT_FOREVER); }

static void body_sizes(void *unused)
{
    (void)unused;
    weft_chan *ch;
    ck_assert_int_eq(weft_chan_open(&ch, sizeof(struct big), 0), 0);
    weft_fiber *f;
    ck_assert_int_eq(spawn_here(&f, send_big, ch), 0);
    struct big b;
    ck_assert_int_eq(weft_chan_recv(ch, &b, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_join(f, NULL, WEFT_FOREVER), 0);
    for (int i = 0; i < 1024; i++)
        ck_assert_uint_eq(b.bytes[i], (unsigned char)(i * 7));
    weft_chan_free(ch);

    /* elem_size 0: events with no data, elem may be NULL */
    ck_assert_int_eq(weft_chan_open(&ch, 0, 2), 0);
    ck_assert_int_eq(weft_chan_send(ch, NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(weft_chan_recv(ch, NULL, WEFT_FOREVER), 0);
    ck_assert_int_eq(spawn_here(&f, signal_event, ch), 0);
    weft_clause c = { ch, WEFT_RECV, NULL, 1 };
    ck_assert_int_eq(weft_chan_recv(ch, NULL, weft_now() - 1), -ETIMEDOUT);
    ck_assert_int_eq(weft_select(&c, 1, WEFT_FOREVER), 0);
    ck_assert_int_eq(c.result, 0);
    ck_assert_int_eq(weft_join(f, NULL, WEFT_FOREVER), 0);
    weft_chan_free(ch);
}

START_TEST(element_sizes)
{
    FOR_WORKERS(body_sizes, NULL);
}
END_TEST

static void body_free_with_waiters(void *unused)
{
    (void)unused;
    weft_chan *ch, *other;
    ck_assert_int_eq(weft_chan_open(&ch, sizeof(int64_t), 0), 0);
    ck_assert_int_eq(weft_chan_open(&other, sizeof(int64_t), 0), 0);
    struct span r = { ch, 0, 1, -1 };
    weft_fiber *fr, *fs;
    ck_assert_int_eq(spawn_here(&fr, receiver, &r), 0);
    weft_chan *pair[2] = { ch, other };
    ck_assert_int_eq(spawn_here(&fs, select_recv2, pair), 0);
    settle();
    weft_chan_free(ch);               /* wakes both with -EPIPE, then frees */
    void *res;
    ck_assert_int_eq(weft_join(fr, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, -EPIPE);
    ck_assert_int_eq(weft_join(fs, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, 0);   /* its receive clause, with -EPIPE */
    no_waiters(other);
    weft_chan_free(other);
}

START_TEST(free_with_waiters)
{
    FOR_WORKERS(body_free_with_waiters, NULL);
}
END_TEST

/* A select claimed through one channel leaves "stale" nodes on its other
 * channels until it runs again; nobody may match them, and a free of such a
 * channel waits for the owner to take its node off (one worker: the owner
 * stays runnable, not running, while the caller goes on). */
static void body_stale_nodes(void *unused)
{
    (void)unused;
    weft_chan *ch[2];
    ck_assert_int_eq(weft_chan_open(&ch[0], sizeof(int64_t), 0), 0);
    ck_assert_int_eq(weft_chan_open(&ch[1], sizeof(int64_t), 0), 0);
    weft_fiber *f;
    ck_assert_int_eq(spawn_here(&f, select_recv2, ch), 0);
    settle();
    int64_t v = 5;
    /* claims the select through its send clause on ch[1] ... */
    ck_assert_int_eq(weft_chan_recv(ch[1], &v, weft_now() - 1), 0);
    /* ... so its receive node on ch[0] is stale: not a receiver */
    ck_assert_int_eq(weft_chan_send(ch[0], &v, weft_now() - 1), -ETIMEDOUT);
    weft_clause cl[2] = { { ch[0], WEFT_SEND, &v, 1 }, { ch[0], WEFT_SEND, &v, 1 } };
    ck_assert_int_eq(weft_select(cl, 2, weft_now() - 1), -ETIMEDOUT);
    void *res;
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, 1);
    no_waiters(ch[0]);
    no_waiters(ch[1]);

    /* the same again, and free ch[0] while the stale node is on it */
    ck_assert_int_eq(spawn_here(&f, select_recv2, ch), 0);
    settle();
    ck_assert_int_eq(weft_chan_recv(ch[1], &v, weft_now() - 1), 0);
    size_t ns, nr;
    weft__chan_waiters(ch[0], &ns, &nr);
    ck_assert_uint_eq(nr, 1);                   /* still queued, stale */
    weft_chan_free(ch[0]);                      /* the owner frees it once it has run */
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    ck_assert_int_eq((intptr_t)res, 1);
    no_waiters(ch[1]);
    weft_chan_free(ch[1]);
}

START_TEST(stale_select_nodes)
{
    FOR_WORKERS(body_stale_nodes, NULL);
}
END_TEST

/* ---------------------------------------------------- concurrency stress
 *
 * These exist for several workers (fibers on several OS threads at once);
 * with one worker they run too, as ordinary interleaving tests. Every value
 * sent is numbered; the receivers count each number they get in seen[], and
 * the senders note each number whose send reported success in sent[]. At
 * the end every number must have been received exactly as often as its send
 * succeeded (0 or 1), and every queue must be empty. */

static int stress_scale(void) { return test_quick() ? 1 : 8; }

struct tally {
    _Atomic uint8_t *sent, *seen;
    int64_t nvals;
    _Atomic int64_t nsent, nseen;
    _Atomic uint64_t sum_sent, sum_seen;
};

static void tally_init(struct tally *t, int64_t nvals)
{
    t->nvals = nvals;
    t->sent = calloc((size_t)nvals, 1);
    t->seen = calloc((size_t)nvals, 1);
    ck_assert(t->sent && t->seen);
    atomic_init(&t->nsent, 0);
    atomic_init(&t->nseen, 0);
    atomic_init(&t->sum_sent, 0);
    atomic_init(&t->sum_seen, 0);
}

static void tally_sent(struct tally *t, int64_t v)
{
    REQUIRE(v >= 0 && v < t->nvals, "sent value %" PRId64 " out of range", v);
    REQUIRE(atomic_fetch_add(&t->sent[v], 1) == 0, "value %" PRId64 " sent twice", v);
    atomic_fetch_add(&t->nsent, 1);
    atomic_fetch_add(&t->sum_sent, (uint64_t)v * 2654435761u);
}

static void tally_seen(struct tally *t, int64_t v)
{
    REQUIRE(v >= 0 && v < t->nvals, "received value %" PRId64 " out of range", v);
    REQUIRE(atomic_fetch_add(&t->seen[v], 1) == 0, "value %" PRId64 " received twice", v);
    atomic_fetch_add(&t->nseen, 1);
    atomic_fetch_add(&t->sum_seen, (uint64_t)v * 2654435761u);
}

static void tally_check(struct tally *t)
{
    ck_assert_int_eq(atomic_load(&t->nsent), atomic_load(&t->nseen));
    ck_assert_uint_eq(atomic_load(&t->sum_sent), atomic_load(&t->sum_seen));
    for (int64_t v = 0; v < t->nvals; v++)
        REQUIRE(t->sent[v] == t->seen[v], "value %" PRId64 ": sent %d, received %d", v,
                t->sent[v], t->seen[v]);
    free((void *)t->sent);
    free((void *)t->seen);
}

/* -- many producers and consumers on one channel */

struct mpmc { weft_chan *ch; struct tally t; int64_t per; _Atomic int next_id; };

static void *mpmc_producer(void *p)
{
    struct mpmc *m = p;
    int id = atomic_fetch_add(&m->next_id, 1);
    for (int64_t i = 0; i < m->per; i++) {
        int64_t v = id * m->per + i;
        int r = weft_chan_send(m->ch, &v, WEFT_FOREVER);
        if (r)
            return (void *)(intptr_t)r;
        tally_sent(&m->t, v);
        if ((i & 63) == 0)
            weft_yield();
    }
    return NULL;
}

static void *mpmc_consumer(void *p)
{
    struct mpmc *m = p;
    int64_t v, k = 0;
    int r;
    while ((r = weft_chan_recv(m->ch, &v, WEFT_FOREVER)) == 0) {
        tally_seen(&m->t, v);
        if ((++k & 127) == 0)
            weft_yield();
    }
    return (void *)(intptr_t)(r == -EPIPE ? 0 : r);
}

static void body_mpmc(void *capp)
{
    enum { P = 6, C = 5 };
    struct mpmc m = { .per = 2000 * stress_scale() };
    atomic_init(&m.next_id, 0);
    tally_init(&m.t, P * m.per);
    ck_assert_int_eq(weft_chan_open(&m.ch, sizeof(int64_t), (size_t)(intptr_t)capp), 0);
    weft_fiber *fp[P], *fc[C];
    for (int i = 0; i < C; i++)
        ck_assert_int_eq(weft_spawn(&fc[i], NULL, mpmc_consumer, &m), 0);
    for (int i = 0; i < P; i++)
        ck_assert_int_eq(weft_spawn(&fp[i], NULL, mpmc_producer, &m), 0);
    void *res;
    for (int i = 0; i < P; i++) {
        ck_assert_int_eq(weft_join(fp[i], &res, WEFT_FOREVER), 0);
        ck_assert_ptr_null(res);
    }
    ck_assert_int_eq(weft_chan_close(m.ch), 0);
    for (int i = 0; i < C; i++) {
        ck_assert_int_eq(weft_join(fc[i], &res, WEFT_FOREVER), 0);
        ck_assert_ptr_null(res);
    }
    ck_assert_int_eq(atomic_load(&m.t.nseen), P * m.per);
    tally_check(&m.t);
    no_waiters(m.ch);
    weft_chan_free(m.ch);
}

START_TEST(stress_mpmc)
{
    static const size_t caps[] = { 0, 1, 16 };
    for (size_t i = 0; i < 3; i++)
        FOR_WORKERS(body_mpmc, (void *)(intptr_t)caps[i]);
}
END_TEST

/* -- selects over three channels (one listed twice), closed while busy */

enum { SX_CH = 3 };

struct sx {
    weft_chan *ch[SX_CH];
    struct tally t;
    int64_t per;
    _Atomic int next_id;
    _Atomic int64_t delivered;       /* successful sends so far: paces the closer */
};

/* Sends per values, each through a select over the channels still open;
 * stops early when all are closed. */
static void *sx_producer(void *p)
{
    struct sx *x = p;
    int id = atomic_fetch_add(&x->next_id, 1);
    bool open[SX_CH] = { true, true, true };
    int64_t v = 0;
    for (int64_t i = 0; i < x->per; i++) {
        v = id * x->per + i;
        weft_clause cl[SX_CH];
        int map[SX_CH], n = 0;
        for (int c = 0; c < SX_CH; c++)
            if (open[c]) {
                cl[n] = (weft_clause){ x->ch[c], WEFT_SEND, &v, 1 };
                map[n++] = c;
            }
        if (n == 0)
            break;
        int k = weft_select(cl, (size_t)n, WEFT_FOREVER);
        REQUIRE(k >= 0 && k < n, "producer select returned %d", k);
        if (cl[k].result == 0) {
            tally_sent(&x->t, v);
            atomic_fetch_add(&x->delivered, 1);
        } else {
            REQUIRE(cl[k].result == -EPIPE, "send clause result %d", cl[k].result);
            open[map[k]] = false;
            i--;                       /* the value was not sent: try it elsewhere */
        }
    }
    return NULL;
}

/* Receives through a select over the open channels (channel 0 listed twice)
 * until every channel is closed and drained. */
static void *sx_consumer(void *p)
{
    struct sx *x = p;
    bool open[SX_CH] = { true, true, true };
    int64_t v[SX_CH + 1];
    for (;;) {
        weft_clause cl[SX_CH + 1];
        int map[SX_CH + 1], n = 0;
        for (int c = 0; c < SX_CH; c++)
            if (open[c]) {
                cl[n] = (weft_clause){ x->ch[c], WEFT_RECV, &v[n], 1 };
                map[n++] = c;
            }
        if (n == 0)
            break;
        if (open[0]) {
            cl[n] = (weft_clause){ x->ch[0], WEFT_RECV, &v[n], 1 };
            map[n++] = 0;
        }
        int k = weft_select(cl, (size_t)n, WEFT_FOREVER);
        REQUIRE(k >= 0 && k < n, "consumer select returned %d", k);
        for (int i = 0; i < n; i++)
            REQUIRE(i == k || cl[i].result == 1, "clause %d touched", i);
        if (cl[k].result == 0)
            tally_seen(&x->t, v[k]);
        else {
            REQUIRE(cl[k].result == -EPIPE, "receive clause result %d", cl[k].result);
            open[map[k]] = false;
        }
    }
    return NULL;
}

static void body_select_close(void *unused)
{
    (void)unused;
    enum { P = 5, C = 4 };
    struct sx x = { .per = 1500 * stress_scale() };
    atomic_init(&x.next_id, 0);
    atomic_init(&x.delivered, 0);
    tally_init(&x.t, P * x.per);
    static const size_t caps[SX_CH] = { 0, 1, 4 };
    for (int c = 0; c < SX_CH; c++)
        ck_assert_int_eq(weft_chan_open(&x.ch[c], sizeof(int64_t), caps[c]), 0);
    weft_fiber *fp[P], *fc[C];
    for (int i = 0; i < C; i++)
        ck_assert_int_eq(weft_spawn(&fc[i], NULL, sx_consumer, &x), 0);
    for (int i = 0; i < P; i++)
        ck_assert_int_eq(weft_spawn(&fp[i], NULL, sx_producer, &x), 0);
    /* close the channels one by one while the traffic runs */
    int64_t total = P * x.per;
    for (int c = 0; c < SX_CH; c++) {
        while (atomic_load(&x.delivered) < total * (c + 1) / 4)
            weft_yield();
        ck_assert_int_eq(weft_chan_close(x.ch[(c + 1) % SX_CH]), 0);
    }
    void *res;
    for (int i = 0; i < P; i++)
        ck_assert_int_eq(weft_join(fp[i], &res, WEFT_FOREVER), 0);
    for (int i = 0; i < C; i++)
        ck_assert_int_eq(weft_join(fc[i], &res, WEFT_FOREVER), 0);
    printf("select close: %" PRId64 " of %" PRId64 " sends delivered\n",
           (int64_t)atomic_load(&x.t.nsent), total);
    ck_assert_int_ge(atomic_load(&x.t.nseen), total * 3 / 4);
    tally_check(&x.t);
    for (int c = 0; c < SX_CH; c++) {
        no_waiters(x.ch[c]);
        weft_chan_free(x.ch[c]);
    }
}

START_TEST(stress_select_close)
{
    FOR_WORKERS(body_select_close, NULL);
}
END_TEST

/* -- deadlines (and cancellations) racing with transfers: a send either
 * delivers its value exactly once or reports failure and delivers nothing */

struct dl {
    weft_chan *ch[2];
    struct tally t;
    int64_t per;
    _Atomic int next_id;
};

static int64_t short_deadline(uint64_t *rs)
{
    return weft_now() + (int64_t)(rng_next(rs) % 200000);    /* 0-200 us */
}

static void *dl_sender(void *p)
{
    struct dl *d = p;
    int id = atomic_fetch_add(&d->next_id, 1);
    uint64_t rs = test_seed_value + (uint64_t)id * 7919;
    for (int64_t i = 0; i < d->per; i++) {
        int64_t v = id * d->per + i;
        int r;
        if (rng_next(&rs) & 1) {
            r = weft_chan_send(d->ch[i & 1], &v, short_deadline(&rs));
        } else {
            weft_clause cl[2] = { { d->ch[0], WEFT_SEND, &v, 1 }, { d->ch[1], WEFT_SEND, &v, 1 } };
            int k = weft_select(cl, 2, short_deadline(&rs));
            r = k < 0 ? k : cl[k].result;
        }
        if (r == 0)
            tally_sent(&d->t, v);
        else if (r == -ECANCELED)
            break;
        else
            REQUIRE(r == -ETIMEDOUT, "send: %d", r);
    }
    return NULL;
}

static void *dl_receiver(void *p)
{
    struct dl *d = p;
    uint64_t rs = test_seed_value ^ (uint64_t)(uintptr_t)&rs;
    for (;;) {
        int64_t v[2];
        int r;
        if (rng_next(&rs) & 1) {
            int c = (int)(rng_next(&rs) & 1);
            r = weft_chan_recv(d->ch[c], &v[0], short_deadline(&rs));
        } else {
            weft_clause cl[2] = { { d->ch[0], WEFT_RECV, &v[0], 1 },
                                  { d->ch[1], WEFT_RECV, &v[1], 1 } };
            int k = weft_select(cl, 2, short_deadline(&rs));
            r = k < 0 ? k : cl[k].result;
            if (k > 0)
                v[0] = v[1];
        }
        if (r == 0)
            tally_seen(&d->t, v[0]);
        else if (r == -ECANCELED || r == -EPIPE)
            return NULL;
        else
            REQUIRE(r == -ETIMEDOUT, "receive: %d", r);
    }
}

static void body_deadline_race(void *unused)
{
    (void)unused;
    enum { S = 6, R = 6 };
    struct dl d = { .per = 1000 * stress_scale() };
    atomic_init(&d.next_id, 0);
    tally_init(&d.t, S * d.per);
    ck_assert_int_eq(weft_chan_open(&d.ch[0], sizeof(int64_t), 0), 0);
    ck_assert_int_eq(weft_chan_open(&d.ch[1], sizeof(int64_t), 2), 0);
    weft_fiber *fs[S], *fr[R];
    for (int i = 0; i < R; i++)
        ck_assert_int_eq(weft_spawn(&fr[i], NULL, dl_receiver, &d), 0);
    for (int i = 0; i < S; i++)
        ck_assert_int_eq(weft_spawn(&fs[i], NULL, dl_sender, &d), 0);
    /* cancel a sender and a receiver part-way: their current call fails */
    weft_sleep_ms(2);
    ck_assert_int_eq(weft_cancel(fs[0]), 0);
    ck_assert_int_eq(weft_cancel(fr[0]), 0);
    for (int i = 0; i < S; i++)
        ck_assert_int_eq(weft_join(fs[i], NULL, WEFT_FOREVER), 0);
    /* the senders are done: close, and the receivers drain the buffer */
    ck_assert_int_eq(weft_chan_close(d.ch[0]), 0);
    ck_assert_int_eq(weft_chan_close(d.ch[1]), 0);
    for (int i = 0; i < R; i++)
        ck_assert_int_eq(weft_join(fr[i], NULL, WEFT_FOREVER), 0);
    int64_t v;
    while (weft_chan_recv(d.ch[1], &v, WEFT_FOREVER) == 0)   /* if every receiver gave up */
        tally_seen(&d.t, v);
    printf("deadline race: %" PRId64 " of %" PRId64 " sends delivered\n",
           (int64_t)atomic_load(&d.t.nsent), d.t.nvals);
    tally_check(&d.t);
    no_waiters(d.ch[0]);
    no_waiters(d.ch[1]);
    weft_chan_free(d.ch[0]);
    weft_chan_free(d.ch[1]);
}

START_TEST(stress_deadline_race)
{
    FOR_WORKERS(body_deadline_race, NULL);
}
END_TEST

/* ---------------------------------------------------------------- model */

#define MAXA 6
#define MAXC 3
#define MAXQ (MAXA * MAXC)

enum { D_FOREVER, D_PAST, D_TIMED };
enum { K_SEND, K_RECV, K_CLOSE, K_SELECT };

struct cm_ctx { weft_chan *ch[MAXC]; };

static int do_send(struct actor *a)
{
    struct cm_ctx *x = a->ctx;
    return weft_chan_send(x->ch[a->arg[0] >> 2], &a->lval[0], a->deadline);
}
static int do_recv(struct actor *a)
{
    struct cm_ctx *x = a->ctx;
    return weft_chan_recv(x->ch[a->arg[0] >> 2], &a->lval[0], a->deadline);
}
static int do_close(struct actor *a)
{
    struct cm_ctx *x = a->ctx;
    return weft_chan_close(x->ch[a->arg[0] >> 2]);
}
static int do_select(struct actor *a)
{
    struct cm_ctx *x = a->ctx;
    weft_clause cl[8];
    for (int k = 0; k < a->narg; k++)
        cl[k] = (weft_clause){ x->ch[a->arg[k] >> 2], a->arg[k] & 3, &a->lval[k], 777 };
    int r = weft_select(cl, (size_t)a->narg, a->deadline);
    for (int k = 0; k < a->narg; k++)
        a->cres[k] = cl[k].result;
    return r;
}

struct qe { int a, k; };                        /* actor a, clause k */
struct cm_chan {
    int cap, closed;
    int64_t buf[8];
    int head, len;
    struct qe sq[MAXQ], rq[MAXQ];
    int nsq, nrq;
};
struct cm_actor {
    int busy, timed, cancelled, kind;
    int n, ch[MAXC], op[MAXC];                  /* clauses (plain ops have one) */
    int64_t val[MAXC];                          /* send: value; recv: what it got */
    int result, fired, cres;                    /* expected outcome */
};
struct cm_model {
    int na, nc;
    struct cm_chan c[MAXC];
    struct cm_actor a[MAXA];
};

static void qe_del_actor(struct qe *q, int *n, int a)
{
    int j = 0;
    for (int i = 0; i < *n; i++)
        if (q[i].a != a)
            q[j++] = q[i];
    *n = j;
}

static struct qe qe_pop(struct qe *q, int *n)
{
    struct qe e = q[0];
    memmove(q, q + 1, (size_t)(*n - 1) * sizeof *q);
    (*n)--;
    return e;
}

/* The waiting call of actor a completes through clause k with res. */
static void cm_complete(struct cm_model *M, int a, int k, int res)
{
    for (int c = 0; c < M->nc; c++) {
        qe_del_actor(M->c[c].sq, &M->c[c].nsq, a);
        qe_del_actor(M->c[c].rq, &M->c[c].nrq, a);
    }
    struct cm_actor *A = &M->a[a];
    A->busy = 0;
    A->fired = k;
    A->cres = res;
    A->result = A->kind == K_SELECT ? k : res;
}

static void buf_push(struct cm_chan *C, int64_t v)
{
    C->buf[(C->head + C->len) % C->cap] = v;
    C->len++;
}

static int64_t buf_pop(struct cm_chan *C)
{
    int64_t v = C->buf[C->head];
    C->head = (C->head + 1) % C->cap;
    C->len--;
    return v;
}

static int cm_try_send(struct cm_model *M, int c, int64_t v)
{
    struct cm_chan *C = &M->c[c];
    if (C->closed)
        return -EPIPE;
    if (C->nrq) {
        struct qe e = qe_pop(C->rq, &C->nrq);
        M->a[e.a].val[e.k] = v;
        cm_complete(M, e.a, e.k, 0);
        return 1;
    }
    if (C->len < C->cap) {
        buf_push(C, v);
        return 1;
    }
    return 0;
}

static int cm_try_recv(struct cm_model *M, int c, int64_t *v)
{
    struct cm_chan *C = &M->c[c];
    if (C->len) {
        *v = buf_pop(C);
        if (C->nsq) {
            struct qe e = qe_pop(C->sq, &C->nsq);
            buf_push(C, M->a[e.a].val[e.k]);
            cm_complete(M, e.a, e.k, 0);
        }
        return 1;
    }
    if (C->nsq) {
        struct qe e = qe_pop(C->sq, &C->nsq);
        *v = M->a[e.a].val[e.k];
        cm_complete(M, e.a, e.k, 0);
        return 1;
    }
    return C->closed ? -EPIPE : 0;
}

static int cm_ready(const struct cm_model *M, int c, int op)
{
    const struct cm_chan *C = &M->c[c];
    if (op == WEFT_SEND)
        return C->closed || C->nrq || C->len < C->cap;
    return C->len || C->nsq || C->closed;
}

/* Clause k of actor a proceeds now (it was ready). */
static void cm_do_clause(struct cm_model *M, int a, int k)
{
    struct cm_actor *A = &M->a[a];
    int r;
    if (A->op[k] == WEFT_SEND)
        r = cm_try_send(M, A->ch[k], A->val[k]);
    else
        r = cm_try_recv(M, A->ch[k], &A->val[k]);
    REQUIRE(r != 0, "model: a ready clause would block");
    A->busy = 1;                                /* cm_complete clears it */
    cm_complete(M, a, k, r < 0 ? r : 0);
}

/* The call would block: fails at once, or queues every clause. */
static void cm_block(struct cm_model *M, int a, int dk)
{
    struct cm_actor *A = &M->a[a];
    if (A->cancelled || dk == D_PAST) {
        A->busy = 0;
        A->result = A->cancelled ? -ECANCELED : -ETIMEDOUT;
        A->fired = -1;
        return;
    }
    A->busy = 1;
    A->timed = dk == D_TIMED;
    for (int k = 0; k < A->n; k++) {
        struct cm_chan *C = &M->c[A->ch[k]];
        if (A->op[k] == WEFT_SEND)
            C->sq[C->nsq++] = (struct qe){ a, k };
        else
            C->rq[C->nrq++] = (struct qe){ a, k };
    }
}

static void cm_abort(struct cm_model *M, int a, int res)
{
    if (!M->a[a].busy)
        return;
    for (int c = 0; c < M->nc; c++) {
        qe_del_actor(M->c[c].sq, &M->c[c].nsq, a);
        qe_del_actor(M->c[c].rq, &M->c[c].nrq, a);
    }
    M->a[a].busy = 0;
    M->a[a].result = res;
    M->a[a].fired = -1;
}

static void cm_close(struct cm_model *M, int a, int c)
{
    struct cm_chan *C = &M->c[c];
    if (C->closed) {
        M->a[a].result = -EPIPE;
        return;
    }
    C->closed = 1;
    M->a[a].result = 0;
    while (C->nrq) {
        struct qe e = qe_pop(C->rq, &C->nrq);
        cm_complete(M, e.a, e.k, -EPIPE);
    }
    while (C->nsq) {
        struct qe e = qe_pop(C->sq, &C->nsq);
        cm_complete(M, e.a, e.k, -EPIPE);
    }
}

static void cm_check(const struct cm_model *M, struct actor *act, struct cm_ctx *x, int seq,
                     int step)
{
    for (int i = 0; i < M->na; i++) {
        const struct cm_actor *A = &M->a[i];
        REQUIRE(act[i].busy == A->busy, "seq %d step %d: actor %d busy=%d, model %d", seq, step,
                i, act[i].busy, A->busy);
        if (A->busy)
            continue;
        REQUIRE(act[i].result == A->result, "seq %d step %d: actor %d (kind %d) returned %d, model %d",
                seq, step, i, A->kind, act[i].result, A->result);
        if (A->kind == K_CLOSE || A->fired < 0)
            continue;
        int k = A->fired;
        if (A->kind == K_SELECT)
            REQUIRE(act[i].cres[k] == A->cres, "seq %d step %d: actor %d clause %d result %d, model %d",
                    seq, step, i, k, act[i].cres[k], A->cres);
        if (A->op[k] == WEFT_RECV && A->cres == 0)
            REQUIRE(act[i].lval[k] == A->val[k],
                    "seq %d step %d: actor %d clause %d got %" PRId64 ", model %" PRId64, seq, step,
                    i, k, act[i].lval[k], A->val[k]);
    }
    for (int c = 0; c < M->nc; c++) {
        size_t ns, nr;
        weft__chan_waiters(x->ch[c], &ns, &nr);
        REQUIRE(ns == (size_t)M->c[c].nsq && nr == (size_t)M->c[c].nrq,
                "seq %d step %d: chan %d waiters s%zu r%zu, model s%d r%d", seq, step, c, ns, nr,
                M->c[c].nsq, M->c[c].nrq);
        REQUIRE(weft_chan_len(x->ch[c]) == M->c[c].len, "seq %d step %d: chan %d len %" PRId64
                ", model %d", seq, step, c, weft_chan_len(x->ch[c]), M->c[c].len);
    }
}

struct cm_run { int sequences; long ops, blocked, selects_ready, timeouts, cancels, closes; };

static void body_chan_model(void *p)
{
    struct cm_run *run = p;
    uint64_t rs = test_seed_value ^ 0x5eed;
    static struct cm_ctx x;
    struct actor act[MAXA];
    int64_t next_val = 1;
    for (int seq = 0; seq < run->sequences; seq++) {
        struct cm_model M;
        memset(&M, 0, sizeof M);
        M.na = 2 + rng_below(&rs, MAXA - 1);
        M.nc = 1 + rng_below(&rs, MAXC);
        for (int c = 0; c < M.nc; c++) {
            M.c[c].cap = rng_below(&rs, 4);
            ck_assert_int_eq(weft_chan_open(&x.ch[c], sizeof(int64_t), (size_t)M.c[c].cap), 0);
        }
        for (int i = 0; i < M.na; i++)
            actor_start(&act[i], &x);
        int steps = 10 + rng_below(&rs, 60);
        for (int step = 0; step < steps; step++) {
            for (int i = 0; i < M.na; i++)        /* fresh actors for cancelled ones */
                if (M.a[i].cancelled && !M.a[i].busy) {
                    actor_stop(&act[i]);
                    actor_start(&act[i], &x);
                    memset(&M.a[i], 0, sizeof M.a[i]);
                }
            int idle[MAXA], nidle = 0, timed[MAXA], ntimed = 0, nbusy = 0;
            for (int i = 0; i < M.na; i++) {
                if (!M.a[i].busy)
                    idle[nidle++] = i;
                else {
                    nbusy++;
                    if (M.a[i].timed)
                        timed[ntimed++] = i;
                }
            }
            int r = rng_below(&rs, 100);
            if (nidle && (r < 82 || !nbusy)) {
                int i = idle[rng_below(&rs, nidle)];
                struct cm_actor *A = &M.a[i];
                struct actor *P = &act[i];
                int kr = rng_below(&rs, 100);
                A->kind = kr < 38 ? K_SEND : kr < 76 ? K_RECV : kr < 80 ? K_CLOSE : K_SELECT;
                A->n = A->kind == K_SELECT ? rng_below(&rs, 4) : 1;   /* select: 0-3 clauses */
                for (int k = 0; k < A->n; k++) {
                    A->ch[k] = rng_below(&rs, M.nc);
                    A->op[k] = A->kind == K_SEND   ? WEFT_SEND
                               : A->kind == K_RECV ? WEFT_RECV
                               : 1 + rng_below(&rs, 2);
                    A->val[k] = A->op[k] == WEFT_SEND ? next_val++ : -1;
                    P->arg[k] = (A->ch[k] << 2) | A->op[k];
                    P->lval[k] = A->val[k];
                    P->cres[k] = 777;
                }
                P->narg = A->n;
                int dr = rng_below(&rs, 10), dk = dr < 6 ? D_FOREVER : dr < 8 ? D_PAST : D_TIMED;
                if (A->kind == K_SELECT && A->n == 0 && dk == D_FOREVER)
                    dk = D_TIMED;                 /* else only cancel could end it */
                int64_t dl = dk == D_FOREVER ? WEFT_FOREVER
                             : dk == D_PAST  ? weft_now() - 1
                                             : far_deadline();
                static const actor_op ops[] = { do_send, do_recv, do_close, do_select };
                actor_issue(P, ops[A->kind], dl);
                run->ops++;
                A->fired = -1;
                if (A->kind == K_CLOSE) {
                    run->closes++;
                    cm_close(&M, i, A->ch[0]);
                } else {
                    int ready[MAXC], nready = 0;
                    for (int k = 0; k < A->n; k++)
                        if (cm_ready(&M, A->ch[k], A->op[k]))
                            ready[nready++] = k;
                    if (nready) {
                        int k = ready[0];
                        if (A->kind == K_SELECT) {
                            run->selects_ready++;
                            k = P->busy ? -1 : P->result;
                            int ok = 0;
                            for (int j = 0; j < nready; j++)
                                ok |= ready[j] == k;
                            REQUIRE(ok, "seq %d step %d: select picked %d, not a ready clause",
                                    seq, step, k);
                        }
                        cm_do_clause(&M, i, k);
                    } else {
                        run->blocked++;
                        cm_block(&M, i, dk);
                    }
                }
            } else if (ntimed && (r < 91 || nbusy == ntimed)) {
                int i = timed[rng_below(&rs, ntimed)];
                actor_expire(&act[i]);
                run->timeouts++;
                cm_abort(&M, i, -ETIMEDOUT);
            } else {
                int i = rng_below(&rs, M.na);
                actor_cancel(&act[i]);
                run->cancels++;
                M.a[i].cancelled = 1;
                cm_abort(&M, i, -ECANCELED);
            }
            cm_check(&M, act, &x, seq, step);
        }
        /* wind down: nobody may be left on a queue */
        for (int i = 0; i < M.na; i++)
            if (M.a[i].busy) {
                actor_cancel(&act[i]);
                cm_abort(&M, i, -ECANCELED);
            }
        cm_check(&M, act, &x, seq, 9999);
        for (int i = 0; i < M.na; i++)
            actor_stop(&act[i]);
        for (int c = 0; c < M.nc; c++) {
            size_t ns, nr;
            weft__chan_waiters(x.ch[c], &ns, &nr);
            REQUIRE(ns == 0 && nr == 0, "seq %d: waiters left on channel %d", seq, c);
            weft_chan_free(x.ch[c]);
        }
    }
}

static void pinned_chan_model(void *p)
{
    run_pinned(body_chan_model, p);
}

START_TEST(chan_model)
{
    struct cm_run run = { .sequences = test_quick() ? 300 : 3000 };
    /* Deterministic interleaving needs one worker; see actors.h. */
    run_workers(1, body_chan_model, &run);
    printf("chan model: %d sequences, %ld ops (%ld blocked, %ld ready selects), "
           "%ld timeouts, %ld cancels, %ld closes\n",
           run.sequences, run.ops, run.blocked, run.selects_ready, run.timeouts, run.cancels,
           run.closes);
    /* And on one of two workers, the actors pinned beside the controller:
     * the same interleavings, with every lock and claim taken for real
     * while the other worker runs the runtime's own business. */
    struct cm_run two = { .sequences = run.sequences / 3 };
    run_workers(2, pinned_chan_model, &two);
}
END_TEST

/* ------------------------------------------------------------------ main */

static Suite *chan_suite(void)
{
    Suite *s = suite_create("chan");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, bad_input);
    tcase_add_test(tc, outside_fiber_is_eperm);
    tcase_add_test(tc, rendezvous_fifo);
    tcase_add_test(tc, buffered_fifo);
    tcase_add_test(tc, close_semantics);
    tcase_add_test(tc, deadline_and_cancel);
    tcase_add_test(tc, select_fires_once);
    tcase_add_test(tc, select_is_fair);
    tcase_add_test(tc, select_many_clauses);
    tcase_add_test(tc, element_sizes);
    tcase_add_test(tc, free_with_waiters);
    tcase_add_test(tc, stale_select_nodes);
    tcase_add_test(tc, chan_model);
    tcase_add_test(tc, stress_mpmc);
    tcase_add_test(tc, stress_select_close);
    tcase_add_test(tc, stress_deadline_race);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    test_seed_value = test_seed();
    return run_suite(chan_suite());
}
