/* runtime.c - a runtime's life: configuration, weft_run() from set-up to
 * tear-down, weft_post() from any thread, and the process-wide registry of
 * running runtimes that weft_stats_get() and weft_dump() read.
 *
 * weft_post() may be called from threads that have nothing to do with the
 * runtime, so posts go through a mutex-protected queue. Only the post that
 * finds the queue empty wakes the reactor: the worker empties the queue
 * before it next blocks, so one wake-up covers every post behind it, and a
 * busy worker notices the queue on its next pass through the scheduler.
 */
#include "internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_STACK ((size_t)256 * 1024)
#define POST_BATCH    256   /* posts started per pass of the scheduler loop */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
#ifdef WEFT__VALGRIND
int weft__on_valgrind;
#endif
/* Not static: debuggers find the running runtimes through it
 * (tools/weft-gdb.py). Changed only under registry_lock. */
struct weft_rt *weft__registry;

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
}

weft_rt *weft_runtime(void)
{
    struct weft__worker *w = weft__worker();
    return weft__self(w) ? w->rt : NULL;
}

void weft__registry_add(struct weft_rt *rt)
{
    pthread_mutex_lock(&registry_lock);
    rt->reg_prev = NULL;
    rt->reg_next = weft__registry;
    if (weft__registry)
        weft__registry->reg_prev = rt;
    weft__registry = rt;
    pthread_mutex_unlock(&registry_lock);
}

void weft__registry_remove(struct weft_rt *rt)
{
    pthread_mutex_lock(&registry_lock);
    if (rt->reg_prev)
        rt->reg_prev->reg_next = rt->reg_next;
    else
        weft__registry = rt->reg_next;
    if (rt->reg_next)
        rt->reg_next->reg_prev = rt->reg_prev;
    weft__stats_retire(rt);
    pthread_mutex_unlock(&registry_lock);
}

void weft__registry_each_locked(void (*fn)(struct weft_rt *rt, void *ctx), void *ctx)
{
    for (struct weft_rt *rt = weft__registry; rt; rt = rt->reg_next)
        fn(rt, ctx);
}

void weft__registry_lock(void) { pthread_mutex_lock(&registry_lock); }
void weft__registry_unlock(void) { pthread_mutex_unlock(&registry_lock); }

/* One worker blocks in its reactor; several may sleep anywhere. */
static void wake_for_post(struct weft_rt *rt)
{
    if (rt->mt)
        weft__notify(rt);
    else
        rt->w0.rops->wake(rt->w0.reactor);
}

int weft_post(weft_rt *rt, void (*fn)(void *), void *arg)
{
    if (!rt || !fn)
        return -EINVAL;
    struct weft__worker *w = weft__worker();
    if (w && w->rt == rt && weft__self(w)) {
        /* From one of rt's own fibers: no queue, no wake-up. */
        return weft__spawn(w, NULL, (void *)fn, arg, WEFT__FL_DETACHED | WEFT__FL_VOIDFN, NULL);
    }
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

void weft__wake_remote(struct weft_rt *rt, struct weft__rnode *n)
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
void weft__post_drain(struct weft_rt *rt)
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

bool weft__post_close_if_done(struct weft_rt *rt)
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
static int workers_alloc(struct weft_rt *rt)
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

static void rt_free(struct weft_rt *rt)
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

    struct weft_rt *rt = weft__calloc(1, sizeof *rt);
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
    /* Registered first: another worker may start main at once. */
    weft__registry_add(rt);
    if ((err = weft__workers_start(rt)) != 0) {
        /* main never ran: take it back down by hand. */
        weft__registry_remove(rt);
        weft__worker_set(NULL);
        weft__fault_uninstall();
        rt_free(rt);
        if (c.dump_on_sigquit)
            pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
        return err;
    }
    weft__worker_loop(w);
    weft__workers_join(rt);
    weft__registry_remove(rt);
    weft__worker_set(NULL);
    weft__fault_uninstall();
    rt_free(rt);
    if (c.dump_on_sigquit)
        pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    return 0;
}
