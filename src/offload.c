/* offload.c - the blocking-call helper pool (weft_offload) and
 * weft_getaddrinfo on top of it.
 *
 * One process-wide pool serves every runtime. It starts with no thread,
 * starts one whenever a job is queued and no helper is idle (up to
 * max_threads; beyond that jobs wait in FIFO order), and a helper that has
 * been idle for idle_ns exits. Helpers block every signal, so signals meant
 * for fibers (weft_signal_wait) never land on them.
 *
 * A job lives on the parked fiber's stack. The fiber parks uncancellably:
 * the helper writes into the job, so the fiber must not return before the
 * helper is done with it. The helper hands the fiber back with
 * weft__wake_remote(), whose node is part of the job; it touches nothing
 * of the job afterwards, because the fiber may already have returned.
 *
 * Multi-worker: the wake must not reach a worker before the fiber is
 * PARKED. The fiber takes the job's lock word (weft__lock) while the job
 * is still invisible to helpers (under P.mu), and parks passing it, which
 * releases it only once the fiber is parked; the helper takes and releases
 * the same word (weft__spin_lock: it has no worker) before it calls
 * weft__wake_remote(). With one worker the fiber takes no lock (the only
 * worker cannot process the wake before the fiber has switched away) and
 * the helper's lock/unlock finds the word free. The pool itself is
 * process-wide and entirely under P.mu; P.mu is never taken with a job
 * lock held, except that the submitting fiber takes its own job's lock
 * just before releasing P.mu (order: P.mu -> job lock).
 *
 * Exited helpers are joined by the next thread that starts one, or at
 * process exit (an atexit handler asks idle helpers to leave and joins
 * them, waiting a bounded time for busy ones), so no thread or its memory
 * outlives the process quietly. A forked child starts with an empty pool.
 */
#include "internal.h"

#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_MAX   64
#define DEFAULT_IDLE  10000000000LL   /* ns */
#define EXIT_WAIT     2               /* s: atexit waits this long for busy helpers */

struct job {
    struct job *next;
    weft_fn fn;
    void *arg;
    void *result;
    struct weft__rt *rt;
    struct weft__rnode rn;
    weft__lockword lock;            /* held by the fiber until it is parked */
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work;            /* a job was queued, or quit */
    pthread_cond_t gone;            /* a helper exited */
    struct job *head, *tail;
    int nqueued;                    /* jobs in the list */
    int nthreads, nidle, max;
    int64_t idle_ns;
    int quit;
    int hooks;                      /* atexit/atfork installed */
    pthread_t *dead;                /* exited helpers not yet joined */
    size_t ndead, capdead;
} P = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
        NULL, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, 0, 0 };

static void defaults_locked(void)
{
    if (P.max == 0) {
        const char *e = getenv("WEFT_OFFLOAD_THREADS");
        int v = e ? atoi(e) : 0;
        P.max = v > 0 ? v : DEFAULT_MAX;
    }
    if (P.idle_ns == 0)
        P.idle_ns = DEFAULT_IDLE;
}

int weft_offload_config(int max_threads, int64_t idle_ms)
{
    if (max_threads < 0)
        return -EINVAL;
    pthread_mutex_lock(&P.mu);
    P.max = max_threads;
    P.idle_ns = idle_ms < 0 ? 0 : (idle_ms == 0 ? 1 : (idle_ms > INT64_MAX / 1000000
                                                       ? INT64_MAX : idle_ms * 1000000));
    defaults_locked();
    pthread_cond_broadcast(&P.work);   /* idle helpers re-read their timeout */
    pthread_mutex_unlock(&P.mu);
    return 0;
}

int weft_offload_threads(void)
{
    pthread_mutex_lock(&P.mu);
    int n = P.nthreads;
    pthread_mutex_unlock(&P.mu);
    return n;
}

/* Takes the list of exited helpers so the caller can join them unlocked. */
static pthread_t *take_dead_locked(size_t *n)
{
    pthread_t *d = P.dead;
    *n = P.ndead;
    P.dead = NULL;
    P.ndead = P.capdead = 0;
    return d;
}

static void join_all(pthread_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pthread_join(d[i], NULL);
    free(d);
}

static void helper_exit_locked(void)
{
    if (P.ndead == P.capdead) {
        size_t cap = P.capdead ? P.capdead * 2 : 8;
        pthread_t *d = weft__realloc(P.dead, cap * sizeof *d);
        if (!d) {
            /* Cannot record it for joining: let it clean up after itself. */
            pthread_detach(pthread_self());
            goto out;
        }
        P.dead = d;
        P.capdead = cap;
    }
    P.dead[P.ndead++] = pthread_self();
out:
    P.nthreads--;
    pthread_cond_broadcast(&P.gone);
}

static void *helper(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&P.mu);
    for (;;) {
        while (!P.head && !P.quit) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ns = (int64_t)ts.tv_nsec + P.idle_ns % 1000000000;
            int64_t s = P.idle_ns / 1000000000;
            ts.tv_sec += (time_t)(s + ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            P.nidle++;
            int rc = pthread_cond_timedwait(&P.work, &P.mu, &ts);
            P.nidle--;
            if (rc == ETIMEDOUT && !P.head)
                goto retire;
        }
        if (!P.head)            /* quit */
            goto retire;
        struct job *j = P.head;
        P.nqueued--;
        P.head = j->next;
        if (!P.head)
            P.tail = NULL;
        pthread_mutex_unlock(&P.mu);
        j->result = j->fn(j->arg);
        /* Wait until the fiber is parked (it holds j->lock until then); j
         * belongs to the fiber once the wake is queued. */
        weft__spin_lock(&j->lock);
        weft__spin_unlock(&j->lock);
        weft__wake_remote(j->rt, &j->rn);
        pthread_mutex_lock(&P.mu);
    }
retire:
    helper_exit_locked();
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

static void at_exit(void)
{
    pthread_mutex_lock(&P.mu);
    P.quit = 1;
    pthread_cond_broadcast(&P.work);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += EXIT_WAIT;
    while (P.nthreads > 0)
        if (pthread_cond_timedwait(&P.gone, &P.mu, &ts) == ETIMEDOUT)
            break;
    size_t n;
    pthread_t *d = take_dead_locked(&n);
    pthread_mutex_unlock(&P.mu);
    join_all(d, n);
}

static void at_fork_child(void)
{
    /* Only the forking thread survives: the helpers are gone. */
    pthread_mutex_init(&P.mu, NULL);
    pthread_cond_init(&P.work, NULL);
    pthread_cond_init(&P.gone, NULL);
    P.nthreads = P.nidle = 0;
    P.quit = 0;
    free(P.dead);
    P.dead = NULL;
    P.ndead = P.capdead = 0;
    /* Queued jobs belong to fibers of runtimes that did not survive either. */
    P.head = P.tail = NULL;
    P.nqueued = 0;
}

static void at_fork_prepare(void) { pthread_mutex_lock(&P.mu); }
static void at_fork_parent(void) { pthread_mutex_unlock(&P.mu); }

/* Starts a helper with every signal blocked. */
static int start_helper_locked(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = weft__pthread_create(&t, NULL, helper, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    P.nthreads++;
    return 0;
}

int weft_offload(weft_fn fn, void *arg, void **result)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    if (!self)
        return -EPERM;
    if (!fn)
        return -EINVAL;
    if (self->flags & WEFT__FL_CANCELLED)
        return -ECANCELED;
    struct job j = { .fn = fn, .arg = arg, .rt = w->rt };
    j.rn.f = self;
    j.rn.result = 0;

    pthread_mutex_lock(&P.mu);
    if (!P.hooks) {
        if (atexit(at_exit) != 0 ||
            pthread_atfork(at_fork_prepare, at_fork_parent, at_fork_child) != 0) {
            pthread_mutex_unlock(&P.mu);
            return -ENOMEM;
        }
        P.hooks = 1;
    }
    defaults_locked();
    P.quit = 0;
    j.next = NULL;
    if (P.tail)
        P.tail->next = &j;
    else
        P.head = &j;
    P.tail = &j;
    P.nqueued++;
    /* Idle helpers that have been signalled stay counted as idle until they
     * wake up, so compare the queue with them rather than trusting nidle. */
    int err = 0;
    if (P.nidle > 0)
        pthread_cond_signal(&P.work);
    if (P.nqueued > P.nidle && P.nthreads < P.max)
        err = start_helper_locked();
    if (err && P.nthreads == 0) {
        /* Nobody will ever run it: take it back. */
        struct job **pp = &P.head;
        while (*pp != &j)
            pp = &(*pp)->next;
        *pp = j.next;
        P.nqueued--;
        P.tail = NULL;
        for (struct job *q = P.head; q; q = q->next)
            P.tail = q;
        pthread_mutex_unlock(&P.mu);
        return err;
    }
    size_t ndead;
    pthread_t *dead = take_dead_locked(&ndead);
    /* No helper can take the job before P.mu is released: lock it now, and
     * keep it locked until park has marked us parked. Joining exited
     * helpers waits for the end of threads: that happens after the wait,
     * with no lock held. */
    weft__lock(w, &j.lock);
    pthread_mutex_unlock(&P.mu);

    self->wait.kind = WEFT__W_OFFLOAD;
    self->wait.obj = (const void *)fn;
    self->wait.unlink = NULL;
    self->wait.uncancellable = 1;
    int r = weft__park(w, self, WEFT_FOREVER, &j.lock);
    weft__must(r == 0, "an offloaded call's fiber was woken early");
    join_all(dead, ndead);
    if (result)
        *result = j.result;
    return 0;
}

/* ------------------------------------------------------------ getaddrinfo */

struct gai {
    const char *node, *service;
    const struct addrinfo *hints;
    struct addrinfo *res;
    int rc, err;
};

static void *gai_run(void *arg)
{
    struct gai *g = arg;
    g->rc = getaddrinfo(g->node, g->service, g->hints, &g->res);
    g->err = errno;
    return NULL;
}

int weft_getaddrinfo(const char *node, const char *service,
                     const struct addrinfo *hints, struct addrinfo **res)
{
    if (!weft__self(weft__worker()))
        return -EPERM;
    if (!res || (!node && !service))
        return -EINVAL;
    struct gai g = { .node = node, .service = service, .hints = hints };
    int err = weft_offload(gai_run, &g, NULL);
    if (err)
        return err;
    switch (g.rc) {
    case 0:
        *res = g.res;
        return 0;
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return -ENOENT;
    case EAI_AGAIN:
        return -EAGAIN;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_SYSTEM:
        return g.err ? -g.err : -EIO;
    case EAI_BADFLAGS:
    case EAI_FAMILY:
    case EAI_SOCKTYPE:
    case EAI_SERVICE:
        return -EINVAL;
    default:
        return -EIO;
    }
}
