/* sync.c - weft_mutex, weft_cond, weft_sem and weft_wg.
 *
 * Each object is a public fixed-size struct (include/weft/sync.h) whose
 * bytes are reinterpreted here as a private layout; a _Static_assert below
 * keeps each layout inside its public size. The first word is a magic
 * number so an object that was never initialised is refused with -EINVAL
 * instead of being trusted.
 *
 * Waiting uses the intrusive FIFO queue of waitq.h with the node on the
 * blocked fiber's stack. The objects hand over instead of letting waiters
 * race for the resource when they wake:
 *  - mutex unlock makes the first waiter the owner before waking it, so the
 *    unlocking fiber cannot take the mutex back ("barging") and a waiter is
 *    never woken only to find the mutex taken again;
 *  - semaphore release gives its unit to the first waiter the same way;
 *  - a wait group reaching zero wakes all its waiters at once.
 * Invariants: a mutex with waiters is owned (owner != 0); a semaphore with
 * waiters has value 0; a wait group with waiters has count > 0. A node is
 * on a queue exactly while its fiber is parked on that object; whoever takes
 * it off sets node.q = NULL (see waitq.h), which is what stops a hand-off
 * and a timeout/cancellation from both taking effect.
 *
 * Multi-worker: every state change of an object happens inside its own
 * functions here (and the unlink callback, which only touches the queue
 * the node is on). The reserved word lock_ in each layout is for the
 * per-object spinlock that will be taken around those bodies; nothing
 * outside this file touches the fields.
 */
#include "internal.h"
#include "waitq.h"

/* The private layouts alias the public structs' uint64_t arrays. */
#define ALIAS __attribute__((may_alias))

struct ALIAS mutex_impl {
    uint64_t magic;
    uint64_t owner;                 /* fiber id of the owner; 0 = unlocked */
    struct weft_rt *rt;             /* runtime of owner and waiters while locked */
    struct weft__wq waiters;
    uint64_t lock_;                 /* reserved: per-object lock (multi-worker) */
};

struct ALIAS cond_impl {
    uint64_t magic;
    struct weft__wq waiters;
    struct mutex_impl *mutex;       /* the mutex the current waiters use */
    struct weft_rt *rt;             /* runtime of the waiters while there are some */
    uint64_t lock_;
};

struct ALIAS sem_impl {
    uint64_t magic;
    int64_t value;                  /* units available; 0 while anyone waits */
    struct weft__wq waiters;
    struct weft_rt *rt;
    uint64_t lock_;
};

struct ALIAS wg_impl {
    uint64_t magic;
    int64_t count;
    struct weft__wq waiters;
    struct weft_rt *rt;
    uint64_t lock_;
};

#define FITS(impl, pub) \
    _Static_assert(sizeof(struct impl) <= sizeof(pub) && \
                   _Alignof(struct impl) <= _Alignof(pub), #impl " must fit in " #pub)
FITS(mutex_impl, weft_mutex);
FITS(cond_impl, weft_cond);
FITS(sem_impl, weft_sem);
FITS(wg_impl, weft_wg);
/* The static initialisers put the magic in word 0 and a semaphore's value
 * in word 1. */
_Static_assert(offsetof(struct mutex_impl, magic) == 0, "magic first");
_Static_assert(offsetof(struct cond_impl, magic) == 0, "magic first");
_Static_assert(offsetof(struct wg_impl, magic) == 0, "magic first");
_Static_assert(offsetof(struct sem_impl, magic) == 0 &&
               offsetof(struct sem_impl, value) == sizeof(uint64_t), "sem layout");

static inline struct mutex_impl *M(weft_mutex *m) { return (struct mutex_impl *)(void *)m; }
static inline struct cond_impl *C(weft_cond *c) { return (struct cond_impl *)(void *)c; }
static inline struct sem_impl *S(weft_sem *s) { return (struct sem_impl *)(void *)s; }
static inline struct wg_impl *G(weft_wg *g) { return (struct wg_impl *)(void *)g; }

/* The wait.unlink of every wait here: take the fiber's node off whatever
 * queue it is still on (a no-op after a hand-off). */
static bool node_unlink(struct weft__fiber *f)
{
    struct weft__wnode *n = f->wait_data;
    if (!n->q)
        return false;
    weft__wq_remove(n);
    return true;
}

/* Queues self on q and parks it. Returns what weft__park() returns. */
static int wait_on(struct weft__worker *w, struct weft__fiber *self, struct weft__wq *q,
                   int kind, const void *obj, int64_t deadline, int uncancellable)
{
    struct weft__wnode node = { .f = self };
    weft__wq_push(q, &node);
    self->wait.kind = kind;
    self->wait.obj = obj;
    self->wait.unlink = node_unlink;
    self->wait.uncancellable = uncancellable;
    self->wait_data = &node;
    int r = weft__park(w, self, deadline, NULL);
    self->wait_data = NULL;
    /* Every way out of park() has taken the node off the queue: a hand-off
     * removed it before waking us, unlink removed it otherwise. */
    weft__must(node.q == NULL, "a sync waiter was left queued");
    return r;
}

/* Hands whatever the first waiter of q waits for to it and wakes it. */
static bool wake_first(struct weft__wq *q, int result)
{
    struct weft__wnode *n = weft__wq_pop(q);
    if (!n)
        return false;
    weft__wake(n->f, result);
    return true;
}

/* Common prologue: the caller's worker and fiber, or -EPERM. */
#define ENTER(w, self) \
    struct weft__worker *w = weft__worker(); \
    struct weft__fiber *self = weft__self(w); \
    if (!self) \
        return -EPERM

/* ---------------------------------------------------------------- mutex */

int weft_mutex_init(weft_mutex *pm)
{
    if (!pm)
        return -EINVAL;
    struct mutex_impl *m = M(pm);
    *m = (struct mutex_impl){ .magic = WEFT__MUTEX_MAGIC };
    return 0;
}

static inline int mutex_check(struct weft__worker *w, struct mutex_impl *m)
{
    if (!m || m->magic != WEFT__MUTEX_MAGIC)
        return -EINVAL;
    if (m->owner && m->rt != w->rt)
        return -EXDEV;
    return 0;
}

/* Locks m for self, waiting for it if need be. */
static int mutex_acquire(struct weft__worker *w, struct weft__fiber *self, struct mutex_impl *m,
                         int64_t deadline, int uncancellable)
{
    if (m->owner == 0) {
        m->owner = self->id;
        m->rt = w->rt;
        return 0;
    }
    /* On success the unlocker has already made us the owner. */
    return wait_on(w, self, &m->waiters, WEFT__W_MUTEX, m, deadline, uncancellable);
}

/* Unlocks m, handing it to the first waiter if there is one. */
static void mutex_release(struct mutex_impl *m)
{
    struct weft__wnode *n = weft__wq_pop(&m->waiters);
    if (n) {
        m->owner = n->f->id;
        weft__wake(n->f, 0);
    } else {
        m->owner = 0;
        m->rt = NULL;
    }
}

int weft_mutex_lock(weft_mutex *pm, int64_t deadline)
{
    ENTER(w, self);
    struct mutex_impl *m = M(pm);
    int err = mutex_check(w, m);
    if (err)
        return err;
    if (m->owner == self->id)
        return -EDEADLK;
    return mutex_acquire(w, self, m, deadline, 0);
}

int weft_mutex_trylock(weft_mutex *pm)
{
    ENTER(w, self);
    struct mutex_impl *m = M(pm);
    int err = mutex_check(w, m);
    if (err)
        return err;
    if (m->owner)
        return -EBUSY;
    m->owner = self->id;
    m->rt = w->rt;
    return 0;
}

int weft_mutex_unlock(weft_mutex *pm)
{
    ENTER(w, self);
    struct mutex_impl *m = M(pm);
    if (!m || m->magic != WEFT__MUTEX_MAGIC)
        return -EINVAL;
    if (m->owner != self->id)
        return -EPERM;
    mutex_release(m);
    return 0;
}

/* ----------------------------------------------------------------- cond */

int weft_cond_init(weft_cond *pc)
{
    if (!pc)
        return -EINVAL;
    *C(pc) = (struct cond_impl){ .magic = WEFT__COND_MAGIC };
    return 0;
}

static inline int cond_check(struct weft__worker *w, struct cond_impl *c)
{
    if (!c || c->magic != WEFT__COND_MAGIC)
        return -EINVAL;
    if (c->waiters.head && c->rt != w->rt)
        return -EXDEV;
    return 0;
}

int weft_cond_wait(weft_cond *pc, weft_mutex *pm, int64_t deadline)
{
    ENTER(w, self);
    struct cond_impl *c = C(pc);
    struct mutex_impl *m = M(pm);
    int err = cond_check(w, c);
    if (err)
        return err;
    if ((err = mutex_check(w, m)))
        return err;
    if (m->owner != self->id)
        return -EPERM;
    if (c->waiters.head && c->mutex != m)
        return -EINVAL;
    /* Nothing to try: a cancelled caller or a past deadline returns at once
     * and keeps the mutex, which is simpler for the caller to reason about
     * than a release and re-lock that achieved nothing. */
    if (self->flags & WEFT__FL_CANCELLED)
        return -ECANCELED;
    if (deadline != WEFT_FOREVER && deadline <= weft__clock())
        return -ETIMEDOUT;
    c->mutex = m;
    c->rt = w->rt;
    /* Queue first, then unlock: a signal sent by whoever gets the mutex
     * next must find us (no lost wake-up). With one worker nothing runs in
     * between anyway; with several the cond's lock will cover both. */
    struct weft__wnode node = { .f = self };
    weft__wq_push(&c->waiters, &node);
    mutex_release(m);
    self->wait.kind = WEFT__W_COND;
    self->wait.obj = c;
    self->wait.unlink = node_unlink;
    self->wait_data = &node;
    int r = weft__park(w, self, deadline, NULL);
    self->wait_data = NULL;
    weft__must(node.q == NULL, "a cond waiter was left queued");
    /* Re-lock whatever happened; this wait ignores cancellation (the
     * caller must get its mutex back to unwind) and has no deadline. */
    int lr = mutex_acquire(w, self, m, WEFT_FOREVER, 1);
    weft__must(lr == 0, "re-locking the mutex after a cond wait failed");
    return r;
}

int weft_cond_signal(weft_cond *pc)
{
    ENTER(w, self);
    (void)self;
    struct cond_impl *c = C(pc);
    int err = cond_check(w, c);
    if (err)
        return err;
    wake_first(&c->waiters, 0);
    return 0;
}

int weft_cond_broadcast(weft_cond *pc)
{
    ENTER(w, self);
    (void)self;
    struct cond_impl *c = C(pc);
    int err = cond_check(w, c);
    if (err)
        return err;
    while (wake_first(&c->waiters, 0))
        ;
    return 0;
}

/* ------------------------------------------------------------ semaphore */

int weft_sem_init(weft_sem *ps, int64_t value)
{
    if (!ps || value < 0)
        return -EINVAL;
    *S(ps) = (struct sem_impl){ .magic = WEFT__SEM_MAGIC, .value = value };
    return 0;
}

static inline int sem_check(struct weft__worker *w, struct sem_impl *s)
{
    if (!s || s->magic != WEFT__SEM_MAGIC || s->value < 0)
        return -EINVAL;
    if (s->waiters.head && s->rt != w->rt)
        return -EXDEV;
    return 0;
}

int weft_sem_acquire(weft_sem *ps, int64_t deadline)
{
    ENTER(w, self);
    struct sem_impl *s = S(ps);
    int err = sem_check(w, s);
    if (err)
        return err;
    if (s->value > 0) {             /* > 0 implies nobody is waiting */
        s->value--;
        return 0;
    }
    s->rt = w->rt;
    /* On success the releaser has handed its unit to us directly. */
    return wait_on(w, self, &s->waiters, WEFT__W_SEM, s, deadline, 0);
}

int weft_sem_tryacquire(weft_sem *ps)
{
    ENTER(w, self);
    (void)self;
    struct sem_impl *s = S(ps);
    int err = sem_check(w, s);
    if (err)
        return err;
    if (s->value == 0)
        return -EAGAIN;
    s->value--;
    return 0;
}

int weft_sem_release(weft_sem *ps)
{
    ENTER(w, self);
    (void)self;
    struct sem_impl *s = S(ps);
    int err = sem_check(w, s);
    if (err)
        return err;
    if (wake_first(&s->waiters, 0))
        return 0;
    if (s->value == INT64_MAX)
        return -EOVERFLOW;
    s->value++;
    return 0;
}

/* ----------------------------------------------------------- wait group */

int weft_wg_init(weft_wg *pg)
{
    if (!pg)
        return -EINVAL;
    *G(pg) = (struct wg_impl){ .magic = WEFT__WG_MAGIC };
    return 0;
}

static inline int wg_check(struct weft__worker *w, struct wg_impl *g)
{
    if (!g || g->magic != WEFT__WG_MAGIC || g->count < 0)
        return -EINVAL;
    if (g->waiters.head && g->rt != w->rt)
        return -EXDEV;
    return 0;
}

int weft_wg_add(weft_wg *pg, int64_t delta)
{
    ENTER(w, self);
    (void)self;
    struct wg_impl *g = G(pg);
    int err = wg_check(w, g);
    if (err)
        return err;
    if (delta > 0 && g->count > INT64_MAX - delta)
        return -EOVERFLOW;
    int64_t n = g->count + delta;   /* cannot overflow below: count >= 0 */
    if (n < 0)
        return -EINVAL;
    g->count = n;
    if (n == 0)
        while (wake_first(&g->waiters, 0))
            ;
    return 0;
}

int weft_wg_done(weft_wg *pg) { return weft_wg_add(pg, -1); }

int weft_wg_wait(weft_wg *pg, int64_t deadline)
{
    ENTER(w, self);
    struct wg_impl *g = G(pg);
    int err = wg_check(w, g);
    if (err)
        return err;
    if (g->count == 0)
        return 0;
    g->rt = w->rt;
    return wait_on(w, self, &g->waiters, WEFT__W_WG, g, deadline, 0);
}

/* ------------------------------------------------------------ test hooks */

size_t weft__mutex_waiters(const weft_mutex *pm)
{
    const struct mutex_impl *m = (const struct mutex_impl *)(const void *)pm;
    return m && m->magic == WEFT__MUTEX_MAGIC ? weft__wq_len(&m->waiters) : SIZE_MAX;
}

uint64_t weft__mutex_owner(const weft_mutex *pm)
{
    const struct mutex_impl *m = (const struct mutex_impl *)(const void *)pm;
    return m && m->magic == WEFT__MUTEX_MAGIC ? m->owner : 0;
}

size_t weft__cond_waiters(const weft_cond *pc)
{
    const struct cond_impl *c = (const struct cond_impl *)(const void *)pc;
    return c && c->magic == WEFT__COND_MAGIC ? weft__wq_len(&c->waiters) : SIZE_MAX;
}

size_t weft__sem_waiters(const weft_sem *ps)
{
    const struct sem_impl *s = (const struct sem_impl *)(const void *)ps;
    return s && s->magic == WEFT__SEM_MAGIC ? weft__wq_len(&s->waiters) : SIZE_MAX;
}

int64_t weft__sem_value(const weft_sem *ps)
{
    const struct sem_impl *s = (const struct sem_impl *)(const void *)ps;
    return s && s->magic == WEFT__SEM_MAGIC ? s->value : -1;
}

size_t weft__wg_waiters(const weft_wg *pg)
{
    const struct wg_impl *g = (const struct wg_impl *)(const void *)pg;
    return g && g->magic == WEFT__WG_MAGIC ? weft__wq_len(&g->waiters) : SIZE_MAX;
}
