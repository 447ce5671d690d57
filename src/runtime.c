/* runtime.c - a runtime's life: configuration, weft_run() from set-up to
 * tear-down, weft_post() from any thread, and the process-wide registry of
 * running runtimes that weft_stats_get() and weft_dump() read.
 *
 * weft_post() may be called from threads that have nothing to do with the
 * runtime, so posts go through a mutex-protected queue. Only the post that
 * finds the queue empty wakes the reactor: the worker empties the queue
 * before it next blocks, so one wake-up covers every post behind it, and a
 * busy worker notices the queue on its next pass through the scheduler.
 *
 * Handles. The weft_rt * a user holds is not the runtime's address but a
 * handle, (generation << 32) | (slot + 1), into a static table of RT_SLOTS
 * slots that is never freed. A slot's word packs the generation (bits
 * 32-63), a count of references (bits 1-31) and an open bit (bit 0).
 * Whoever acts on a runtime from outside it (weft_post, weft_rt_shutdown,
 * ...) first takes a reference with one compare-and-swap that succeeds
 * only while the generation matches and the slot is open, and drops it
 * when done. When a runtime has finished, weft_run clears the open bit and
 * then waits until the count is zero before it frees anything; only then
 * does the slot get a new generation and become free for another runtime.
 * So a handle of a runtime that has finished (or is finishing) is refused
 * with -ESHUTDOWN, from any thread, and never reaches freed memory: the
 * invariant is "a reference is held only while the slot is open or was
 * taken while it was open, and the runtime is freed only at zero
 * references". Taking and dropping a reference are single atomic
 * operations on static memory, so they are async-signal-safe
 * (weft_rt_shutdown runs in signal handlers). RT_SLOTS bounds the runtimes
 * that run at once (weft_run returns -EAGAIN beyond it); slots are handed
 * out round-robin, so a handle's generation is also unlikely to be reused
 * soon.
 *
 * Shutdown. weft_rt_shutdown() may run in a signal handler, so it only
 * does what is async-signal-safe: it takes a reference, sets
 * shutdown_asked and wakes the reactor (a raw write to an eventfd or a
 * pipe). The fibers in weft_rt_shutdown_wait() are woken by a worker, in
 * its loop, which looks at the flag on every pass (weft__shutdown_tell).
 * No waiter is left behind, by two arguments:
 *  - a waiter reads shutdown_asked and queues itself under shutdown_lock,
 *    and the worker that tells sets shutdown_told and wakes the queue
 *    under the same lock, after reading the flag with acquire. So either
 *    the teller finds the waiter queued (and PARKED: the waiter parks
 *    passing the lock), or the waiter's read comes after the teller's
 *    unlock and sees the flag, and does not wait;
 *  - a worker cannot sleep through the flag: the flag is stored before
 *    the reactor is woken, and every worker looks at it after each poll
 *    of the reactor and before it sleeps (the top of its loop, and the
 *    idle workers' last look, work_visible in sched.c). A wake-up that a
 *    non-blocking poll consumed is followed by a pass through the loop.
 * Nothing here cancels anything: a program decides what shutting down
 * means (docs/guide.md, "Shutting down").
 */
#include "internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_STACK ((size_t)256 * 1024)
#define POST_BATCH    256   /* posts started per pass of the scheduler loop */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

/* The handle table (see the top of the file). */
#define RT_OPEN     UINT64_C(1)
#define RT_REF      UINT64_C(2)
#define RT_REFS     UINT64_C(0xfffffffe)
struct rt_slot {
    _Atomic uint64_t word;          /* generation << 32 | references << 1 | open */
    struct weft__rt *_Atomic rt;    /* set while the slot belongs to a runtime */
};
static struct rt_slot rt_slots[WEFT__RT_SLOTS];
static unsigned slot_cursor;        /* under registry_lock: the next slot to try */
#ifdef WEFT__VALGRIND
int weft__on_valgrind;
#endif
/* Not static: debuggers find the running runtimes through it
 * (tools/weft-gdb.py). Changed only under registry_lock. */
struct weft__rt *weft__registry;

void weft_config_init(weft_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->workers = 1;
    /* Like GOMAXPROCS: the default can be changed without a rebuild (the
     * test suite runs every suite again with WEFT_WORKERS=2). */
    const char *env = getenv("WEFT_WORKERS");
    if (env && *env) {
        char *end;
        long n = strtol(env, &end, 10);
        if (*end == 0 && n >= 0 && n <= WEFT__WORKERS_MAX)
            cfg->workers = (int)n;
    }
    cfg->stack_size = DEFAULT_STACK;
    cfg->prealloc_fibers = 0;
    cfg->guard = WEFT_GUARD_AUTO;
    cfg->reactor = WEFT_REACTOR_AUTO;
    cfg->dump_on_sigquit = 0;
    cfg->stack_high_water = 0;
    cfg->shutdown_on_signals = 0;
}

weft_rt *weft_runtime(void)
{
    struct weft__worker *w = weft__worker();
    return weft__self(w) ? w->rt->handle : NULL;
}

/* A reference to the runtime in slot `slot`, if it is open and (gen != 0)
 * its generation is gen. Lock-free: callable from signal handlers. */
static struct weft__rt *slot_acquire(unsigned slot, uint32_t gen)
{
    struct rt_slot *s = &rt_slots[slot];
    uint64_t word = atomic_load_explicit(&s->word, memory_order_acquire);
    do {
        if (!(word & RT_OPEN) || (gen && (uint32_t)(word >> 32) != gen))
            return NULL;
    } while (!atomic_compare_exchange_weak_explicit(&s->word, &word, word + RT_REF,
                                                    memory_order_seq_cst, memory_order_acquire));
    return atomic_load_explicit(&s->rt, memory_order_acquire);
}

struct weft__rt *weft__rt_acquire(const weft_rt *h, int *err)
{
    uint64_t v = (uint64_t)(uintptr_t)h;
    uint32_t low = (uint32_t)v, gen = (uint32_t)(v >> 32);
    if (low == 0 || low > WEFT__RT_SLOTS || gen == 0) {
        *err = -EINVAL;
        return NULL;
    }
    struct weft__rt *rt = slot_acquire(low - 1, gen);
    if (!rt)
        *err = -ESHUTDOWN;
    return rt;
}

struct weft__rt *weft__rt_acquire_slot(unsigned slot)
{
    return slot < WEFT__RT_SLOTS ? slot_acquire(slot, 0) : NULL;
}

void weft__rt_release(struct weft__rt *rt)
{
    atomic_fetch_sub_explicit(&rt_slots[rt->slot].word, RT_REF, memory_order_release);
}

/* Iterates over the open slots without a lock (signal handlers): fn gets a
 * reference it must not keep. */
void weft__rt_each_open(void (*fn)(struct weft__rt *rt, void *ctx), void *ctx)
{
    for (unsigned i = 0; i < WEFT__RT_SLOTS; i++) {
        if (!(atomic_load_explicit(&rt_slots[i].word, memory_order_relaxed) & RT_OPEN))
            continue;
        struct weft__rt *rt = slot_acquire(i, 0);
        if (rt) {
            fn(rt, ctx);
            weft__rt_release(rt);
        }
    }
}

/* No reference can be taken from now on; returns once every one taken
 * before has been dropped. Called without the registry lock: a holder may
 * need it (weft_stats_get from a thread that holds a reference). */
static void slot_close(struct weft__rt *rt)
{
    struct rt_slot *s = &rt_slots[rt->slot];
    atomic_fetch_and_explicit(&s->word, ~RT_OPEN, memory_order_seq_cst);
    WEFT__PP(WEFT__PP_RT_CLOSED, rt);
    for (unsigned spins = 0; atomic_load_explicit(&s->word, memory_order_acquire) & RT_REFS;
         spins++) {
        if (spins < 64) {
            weft__cpu_relax();
        } else {
            struct timespec ts = { 0, 20000 };
            nanosleep(&ts, NULL);
        }
    }
}

/* ------------------------------------------------------------- shutdown */

void weft__rt_shutdown(struct weft__rt *rt)
{
    if (atomic_exchange_explicit(&rt->shutdown_asked, true, memory_order_seq_cst))
        return;                     /* asked before: nothing more to do */
    WEFT__PP(WEFT__PP_SHUTDOWN_ASKED, rt);
    int saved = errno;              /* signal handlers must keep errno */
    rt->w0.rops->wake(rt->w0.reactor);
    errno = saved;
}

int weft_rt_shutdown(weft_rt *h)
{
    if (!h)
        return -EINVAL;
    int err;
    struct weft__rt *rt = weft__rt_acquire(h, &err);
    if (!rt)
        return err;
    weft__rt_shutdown(rt);
    weft__rt_release(rt);
    return 0;
}

int weft_rt_shutdown_requested(weft_rt *h)
{
    struct weft__rt *rt;
    if (!h) {
        struct weft__worker *w = weft__worker();
        if (!weft__self(w))
            return -EPERM;
        return atomic_load_explicit(&w->rt->shutdown_asked, memory_order_relaxed);
    }
    int err;
    if (!(rt = weft__rt_acquire(h, &err)))
        return err;
    int asked = atomic_load_explicit(&rt->shutdown_asked, memory_order_relaxed);
    weft__rt_release(rt);
    return asked;
}

void weft__shutdown_tell(struct weft__worker *w)
{
    struct weft__rt *rt = w->rt;
    weft__lock(w, &rt->shutdown_lock);
    if (!atomic_load_explicit(&rt->shutdown_told, memory_order_relaxed)) {
        atomic_store_explicit(&rt->shutdown_told, true, memory_order_relaxed);
        struct weft__wnode *n;
        while ((n = weft__wq_pop(&rt->shutdown_waiters)))
            weft__wake(n->f, 0);
    }
    weft__unlock(w, &rt->shutdown_lock);
}

/* The wait's unlink (timeout, cancellation): off the queue if still on it. */
static bool shutdown_unlink(struct weft__fiber *f)
{
    struct weft__wnode *n = f->wait_data;
    struct weft__rt *rt = f->rt;
    struct weft__worker *w = f->w;
    weft__lock(w, &rt->shutdown_lock);
    bool queued = n->q != NULL;
    if (queued)
        weft__wq_remove(n);
    weft__unlock(w, &rt->shutdown_lock);
    return queued;
}

int weft_rt_shutdown_wait(int64_t deadline)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    if (!self)
        return -EPERM;
    struct weft__rt *rt = w->rt;
    weft__lock(w, &rt->shutdown_lock);
    if (atomic_load_explicit(&rt->shutdown_asked, memory_order_seq_cst)) {
        weft__unlock(w, &rt->shutdown_lock);
        return 0;
    }
    WEFT__PP(WEFT__PP_SHUTDOWN_WAIT, self);
    struct weft__wnode node = { .f = self };
    weft__wq_push(&rt->shutdown_waiters, &node);
    self->wait.kind = WEFT__W_SHUTDOWN;
    self->wait.obj = rt;
    self->wait.unlink = shutdown_unlink;
    self->wait_data = &node;
    int r = weft__park(w, self, deadline, &rt->shutdown_lock);
    self->wait_data = NULL;
    weft__must(node.q == NULL, "a shutdown waiter was left queued");
    return r;
}

int weft__registry_add(struct weft__rt *rt)
{
    pthread_mutex_lock(&registry_lock);
    /* A free slot: closed, unreferenced and given back (rt NULL). */
    unsigned i = 0;
    for (; i < WEFT__RT_SLOTS; i++) {
        unsigned k = (slot_cursor + i) % WEFT__RT_SLOTS;
        if (atomic_load_explicit(&rt_slots[k].rt, memory_order_relaxed) == NULL) {
            i = k;
            break;
        }
    }
    if (i == WEFT__RT_SLOTS) {
        pthread_mutex_unlock(&registry_lock);
        return -EAGAIN;
    }
    slot_cursor = (i + 1) % WEFT__RT_SLOTS;
    struct rt_slot *s = &rt_slots[i];
    uint32_t gen = (uint32_t)(atomic_load_explicit(&s->word, memory_order_relaxed) >> 32);
    if (gen == 0)
        gen = 1;
    rt->slot = i;
    rt->handle = (weft_rt *)(uintptr_t)(((uint64_t)gen << 32) | (i + 1));
    atomic_store_explicit(&s->rt, rt, memory_order_release);
    atomic_store_explicit(&s->word, ((uint64_t)gen << 32) | RT_OPEN, memory_order_seq_cst);
    rt->reg_prev = NULL;
    rt->reg_next = weft__registry;
    if (weft__registry)
        weft__registry->reg_prev = rt;
    weft__registry = rt;
    pthread_mutex_unlock(&registry_lock);
    return 0;
}

void weft__registry_remove(struct weft__rt *rt)
{
    slot_close(rt);
    pthread_mutex_lock(&registry_lock);
    struct rt_slot *s = &rt_slots[rt->slot];
    uint32_t gen = (uint32_t)(atomic_load_explicit(&s->word, memory_order_relaxed) >> 32) + 1;
    atomic_store_explicit(&s->word, (uint64_t)(gen ? gen : 1) << 32, memory_order_relaxed);
    atomic_store_explicit(&s->rt, NULL, memory_order_release);
    if (rt->reg_prev)
        rt->reg_prev->reg_next = rt->reg_next;
    else
        weft__registry = rt->reg_next;
    if (rt->reg_next)
        rt->reg_next->reg_prev = rt->reg_prev;
    weft__stats_retire(rt);
    pthread_mutex_unlock(&registry_lock);
}

void weft__registry_each_locked(void (*fn)(struct weft__rt *rt, void *ctx), void *ctx)
{
    for (struct weft__rt *rt = weft__registry; rt; rt = rt->reg_next)
        fn(rt, ctx);
}

void weft__registry_lock(void) { pthread_mutex_lock(&registry_lock); }
void weft__registry_unlock(void) { pthread_mutex_unlock(&registry_lock); }

/* One worker blocks in its reactor; several may sleep anywhere. */
static void wake_for_post(struct weft__rt *rt)
{
    if (rt->mt)
        weft__notify(rt);
    else
        rt->w0.rops->wake(rt->w0.reactor);
}

static int post_queue(struct weft__rt *rt, void (*fn)(void *), void *arg);

int weft_post(weft_rt *h, void (*fn)(void *), void *arg)
{
    if (!h || !fn)
        return -EINVAL;
    int err;
    struct weft__rt *rt = weft__rt_acquire(h, &err);
    if (!rt)
        return err;
    WEFT__PP(WEFT__PP_POST_REF, rt);
    struct weft__worker *w = weft__worker();
    if (w && w->rt == rt && weft__self(w))
        /* From one of rt's own fibers: no queue, no wake-up. */
        err = weft__spawn(w, NULL, (void *)fn, arg, WEFT__FL_DETACHED | WEFT__FL_VOIDFN, NULL);
    else
        err = post_queue(rt, fn, arg);
    weft__rt_release(rt);
    return err;
}

/* weft_post from outside rt's fibers; the caller holds a reference. */
static int post_queue(struct weft__rt *rt, void (*fn)(void *), void *arg)
{
    struct weft__post *p = weft__malloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&rt->post_lock);
    if (rt->post_closed) {
        pthread_mutex_unlock(&rt->post_lock);
        free(p);
        return -ESHUTDOWN;
    }
    bool was_empty = rt->post_head == NULL && rt->remote_head == NULL;
    if (rt->post_tail)
        rt->post_tail->next = p;
    else
        rt->post_head = p;
    rt->post_tail = p;
    atomic_fetch_add_explicit(&rt->post_count, 1, memory_order_relaxed);
    /* Wake while still holding the lock: the runtime cannot finish and free
     * its reactor until it has taken this post off the queue. */
    if (was_empty)
        wake_for_post(rt);
    pthread_mutex_unlock(&rt->post_lock);
    return 0;
}

void weft__wake_remote(struct weft__rt *rt, struct weft__rnode *n)
{
    n->next = NULL;
    pthread_mutex_lock(&rt->post_lock);
    bool was_empty = rt->post_head == NULL && rt->remote_head == NULL;
    if (rt->remote_tail)
        rt->remote_tail->next = n;
    else
        rt->remote_head = n;
    rt->remote_tail = n;
    atomic_fetch_add_explicit(&rt->post_count, 1, memory_order_relaxed);
    if (was_empty)
        wake_for_post(rt);
    pthread_mutex_unlock(&rt->post_lock);
}

/* Runs on a worker of rt, which takes the fibers posted. */
void weft__post_drain(struct weft__rt *rt)
{
    struct weft__worker *w = weft__worker();
    pthread_mutex_lock(&rt->post_lock);
    /* Posts are taken POST_BATCH at a time, so the fibers started run
     * before more are started: a flood of posts from other threads then
     * keeps a bounded number of fibers (and stacks) alive instead of one
     * per post queued. What stays queued keeps post_count non-zero, so the
     * loop comes back for it without sleeping. */
    struct weft__post *p = rt->post_head, *last = NULL;
    size_t taken = 0;
    for (struct weft__post *q = p; q && taken < POST_BATCH; q = q->next) {
        last = q;
        taken++;
    }
    if (last) {
        rt->post_head = last->next;
        if (!rt->post_head)
            rt->post_tail = NULL;
        last->next = NULL;
    }
    struct weft__rnode *r = rt->remote_head;
    size_t nremote = 0;
    for (struct weft__rnode *q = r; q; q = q->next)
        nremote++;
    rt->remote_head = rt->remote_tail = NULL;
    atomic_fetch_sub_explicit(&rt->post_count, taken + nremote, memory_order_relaxed);
    /* Off the queue but not yet counted as live fibers: until they are,
     * another worker must not conclude that the runtime is finished. */
    rt->posts_starting += taken;
    pthread_mutex_unlock(&rt->post_lock);
    WEFT__PP(WEFT__PP_POST_TAKEN, rt);
    while (r) {
        struct weft__rnode *next = r->next;
        weft__wake(r->f, r->result);
        r = next;
    }
    size_t started = 0;
    while (p) {
        struct weft__post *next = p->next;
        int err = weft__spawn(w, NULL, (void *)p->fn, p->arg,
                              WEFT__FL_DETACHED | WEFT__FL_VOIDFN, NULL);
        if (err) {
            /* Out of memory: put the rest back in front, in order. */
            pthread_mutex_lock(&rt->post_lock);
            size_t n = 1;
            struct weft__post *end = p;
            for (; end->next; end = end->next)
                n++;
            end->next = rt->post_head;
            if (!rt->post_head)
                rt->post_tail = end;
            rt->post_head = p;
            atomic_fetch_add_explicit(&rt->post_count, n, memory_order_relaxed);
            rt->posts_starting -= taken - started;
            pthread_mutex_unlock(&rt->post_lock);
            return;
        }
        free(p);
        p = next;
        started++;
    }
    if (taken) {
        /* Under the lock: a worker deciding whether the runtime is done
         * takes it too, and so sees these fibers counted (weft__live). */
        pthread_mutex_lock(&rt->post_lock);
        rt->posts_starting -= taken;
        pthread_mutex_unlock(&rt->post_lock);
    }
}

bool weft__post_close_if_done(struct weft__rt *rt)
{
    /* A cheap look first: with fibers alive the lock is not needed. */
    if (weft__live(rt) != 0)
        return false;
    pthread_mutex_lock(&rt->post_lock);
    /* Nothing queued, nothing being started, and (read again under the
     * lock) no fiber alive: then no fiber can appear any more, since a
     * spawn needs a running fiber or a post, and posts need this lock. */
    bool done = rt->post_head == NULL && rt->remote_head == NULL && rt->posts_starting == 0 &&
                weft__live(rt) == 0;
    if (done)
        rt->post_closed = true;
    pthread_mutex_unlock(&rt->post_lock);
    return done;
}

/* The opt-in SIGQUIT dump: an ordinary fiber waiting for the signal, so
 * the dump is printed from fiber context (where it is consistent), not
 * from a signal handler. It is cancelled like any other fiber when
 * main_fn returns. */
static void dump_on_sigquit(void *unused)
{
    (void)unused;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGQUIT);
    while (weft_signal_wait(&set, WEFT_FOREVER) == SIGQUIT)
        weft_dump(stderr);
}

static int check_config(weft_config *c)
{
    if (c->workers < 0 || c->guard < WEFT_GUARD_AUTO || c->guard > WEFT_GUARD_NEVER ||
        c->reactor < WEFT_REACTOR_AUTO || c->reactor > WEFT_REACTOR_POLL)
        return -EINVAL;
    if (c->workers == 0)
        c->workers = weft__os_ncpu();
    if (c->workers > WEFT__WORKERS_MAX)
        return -EINVAL;
    if (c->stack_size == 0)
        c->stack_size = DEFAULT_STACK;
    c->stack_size = weft__stack_round(c->stack_size);
    if (c->stack_size == 0)
        return -EINVAL;
    return 0;
}

static void apply_test_env(void)
{
#ifdef WEFT_CHAOS
    weft__chaos_from_env();
#endif
    const char *g = getenv("WEFT_TEST_GUARD");
    if (!g)
        return;
    if (strcmp(g, "madvise") == 0)
        weft__stack_force_guard(WEFT__GK_MADVISE);
    else if (strcmp(g, "mprotect") == 0)
        weft__stack_force_guard(WEFT__GK_MPROTECT);
    else if (strcmp(g, "canary") == 0)
        weft__stack_force_guard(WEFT__GK_CANARY);
}

/* WEFT_REQUIRE_HOOK=1: a program written for libweft_hook stops here,
 * loudly, when the hook is not in front of libc (the linker dropped it,
 * or the preload was forgotten), instead of running every blocking call
 * on its worker one at a time (docs/hooks.md). */
static void require_hook(void)
{
    const char *v = getenv("WEFT_REQUIRE_HOOK");
    if (!v || strcmp(v, "1") != 0 || weft_hook_active())
        return;
    static const char msg[] = "weft: WEFT_REQUIRE_HOOK=1 but libweft_hook is not active "
                              "(not linked, dropped by --as-needed, or not preloaded; "
                              "see docs/hooks.md)\n";
    weft__os_write_err(msg, sizeof msg - 1);
    abort();
}

/* The worker table; workers other than w0 get their own cache lines. */
static int workers_alloc(struct weft__rt *rt)
{
    rt->ws = weft__calloc(rt->nworkers, sizeof *rt->ws);
    if (!rt->ws)
        return -ENOMEM;
    rt->ws[0] = &rt->w0;
    for (unsigned i = 1; i < rt->nworkers; i++) {
        size_t size = (sizeof(struct weft__worker) + 63) & ~(size_t)63;
        struct weft__worker *w = WEFT__FI(WEFT__FS_MALLOC, NULL, aligned_alloc(64, size));
        if (!w)
            return -ENOMEM;
        int err = weft__worker_init(w, rt);
        w->index = i;
        rt->ws[i] = w;
        if (err)
            return err;
    }
    return 0;
}

static void rt_free(struct weft__rt *rt)
{
    for (unsigned i = 1; rt->ws && i < rt->nworkers; i++)
        if (rt->ws[i]) {
            weft__worker_caches_flush(rt->ws[i]);
            weft__worker_fini(rt->ws[i]);
            free(rt->ws[i]);
        }
    if (rt->w0.rt) {    /* unset when weft_run failed before setting it up */
        weft__worker_caches_flush(&rt->w0);
        weft__worker_fini(&rt->w0);
    }
    free(rt->ws);
    while (rt->pools) {
        struct weft__pool *p = rt->pools;
        rt->pools = p->next;
        weft__pool_destroy(p);
    }
    weft__ftable_fini(&rt->ft);
    while (rt->post_head) {
        struct weft__post *p = rt->post_head;
        rt->post_head = p->next;
        free(p);
    }
    pthread_mutex_destroy(&rt->post_lock);
    free(rt);
}

int weft_run(const weft_config *cfg, void (*main_fn)(void *), void *arg)
{
    if (!main_fn)
        return -EINVAL;
    if (weft__worker())
        return -EDEADLK;
    require_hook();
    weft_config c;
    if (cfg)
        c = *cfg;
    else
        weft_config_init(&c);
    int err = check_config(&c);
    if (err)
        return err;
    apply_test_env();
    weft__valgrind_detect();

    struct weft__rt *rt = weft__calloc(1, sizeof *rt);
    if (!rt)
        return -ENOMEM;
    rt->cfg = c;
    rt->nworkers = (unsigned)c.workers;
    rt->mt = rt->nworkers > 1;
    atomic_store_explicit(&rt->next_trim, weft__clock() + WEFT__TRIM_INTERVAL, memory_order_relaxed);
    const char *mig = getenv("WEFT_TEST_MIGRATE");
    rt->migrate = rt->mt && mig && strcmp(mig, "1") == 0;
    pthread_mutex_init(&rt->post_lock, NULL);
    weft__ftable_init(&rt->ft);
    if ((err = weft__pool_new(&rt->pools, c.stack_size, c.guard, c.stack_high_water)) != 0 ||
        (err = weft__worker_init(&rt->w0, rt)) != 0 ||
        (err = workers_alloc(rt)) != 0 ||
        (err = weft__ftable_reserve(&rt->ft, c.prealloc_fibers)) != 0 ||
        (err = weft__pool_reserve(rt->pools, c.prealloc_fibers)) != 0) {
        rt_free(rt);
        return err;
    }
    struct weft__worker *w = &rt->w0;
    weft__san_thread_init(&w->sched.san);
    if ((err = weft__fault_install()) != 0) {
        rt_free(rt);
        return err;
    }
    weft__worker_set(w);
    err = weft__spawn(w, NULL, (void *)main_fn, arg,
                      WEFT__FL_MAIN | WEFT__FL_DETACHED | WEFT__FL_VOIDFN, &rt->main);
    if (err) {
        weft__worker_set(NULL);
        weft__fault_uninstall();
        rt_free(rt);
        return err;
    }
    strcpy(rt->main->name, "main");
    rt->main->spawn_site = (const void *)main_fn;
    /* With the dump on, SIGQUIT stays blocked on this thread for the
     * runtime's life (the other workers block it anyway): one sent before
     * the dump fiber first waits, or between two dumps, stays pending for
     * it instead of killing the process. */
    sigset_t quit, old_mask;
    sigemptyset(&old_mask);
    sigemptyset(&quit);
    sigaddset(&quit, SIGQUIT);
    if (c.dump_on_sigquit)
        pthread_sigmask(SIG_BLOCK, &quit, &old_mask);
    if (c.dump_on_sigquit) {
        struct weft__fiber *d;
        if (weft__spawn(w, NULL, (void *)dump_on_sigquit, NULL,
                        WEFT__FL_DETACHED | WEFT__FL_VOIDFN, &d) == 0)
            strcpy(d->name, "weft: SIGQUIT dump");
    }
    /* Registered first: another worker may start main at once. The tear-
     * down below is one ladder for the run and every failure on the way:
     * each step undoes what was set up before it. */
    bool signals_on = false;
    if ((err = weft__registry_add(rt)) != 0)
        goto out_fault;
    if (c.shutdown_on_signals) {
        if ((err = weft__shutdown_signals_install()) != 0)
            goto out_registry;
        signals_on = true;
    }
    /* A failure here means main never ran: it is taken down by hand. */
    if ((err = weft__workers_start(rt)) != 0)
        goto out_registry;
    weft__worker_loop(w);
    weft__workers_join(rt);
out_registry:
    weft__registry_remove(rt);
    if (signals_on)
        weft__shutdown_signals_uninstall();
out_fault:
    weft__worker_set(NULL);
    weft__fault_uninstall();
    rt_free(rt);
    if (c.dump_on_sigquit)
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    return err;
}
