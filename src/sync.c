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
 * Multi-worker: each layout has a spinlock word (lock; zero = unlocked,
 * so the static initialisers need nothing for it) taken with weft__lock()
 * around every body that reads or changes the object, and by the unlink
 * callback (the waiter on the fiber's stack records the lock of the object
 * it is queued on). A waiter parks with that lock held (weft__park releases
 * it once the fiber is PARKED), so a waker, which needs the lock to find
 * the node, never finds a fiber that is not parked yet. With one worker
 * weft__lock is a no-op and nothing here does an atomic read-modify-write.
 * Lock order: cond -> mutex (cond_wait releases the mutex while holding
 * the cond's lock); nothing takes a cond lock while holding a mutex lock,
 * and no lock is held across a park except the one park releases.
 */
#include "internal.h"
#include "waitq.h"

/* The private layouts alias the public structs' uint64_t arrays. */
#define ALIAS __attribute__((may_alias))

struct ALIAS mutex_impl {
    uint64_t magic;
    uint64_t owner;                 /* fiber id of the owner; 0 = unlocked */
    struct weft__rt *rt;             /* runtime of owner and waiters while locked */
    struct weft__wq waiters;
    weft__lockword lock;            /* guards every field but magic (multi-worker) */
    uint32_t pad_;
};

struct ALIAS cond_impl {
    uint64_t magic;
    struct weft__wq waiters;
    struct mutex_impl *mutex;       /* the mutex the current waiters use */
    struct weft__rt *rt;             /* runtime of the waiters while there are some */
    weft__lockword lock;
    uint32_t pad_;
};

struct ALIAS sem_impl {
    uint64_t magic;
    int64_t value;                  /* units available; 0 while anyone waits */
    struct weft__wq waiters;
    struct weft__rt *rt;
    weft__lockword lock;
    uint32_t pad_;
};

struct ALIAS wg_impl {
    uint64_t magic;
    int64_t count;
    struct weft__wq waiters;
    struct weft__rt *rt;
    weft__lockword lock;
    uint32_t pad_;
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

/* A waiter: the queue node on the blocked fiber's stack, and the lock of
 * the object whose queue it is on, so the unlink callback can find it
 * (f->wait_data points here while the fiber waits). */
struct waiter {
    struct weft__wnode node;
    weft__lockword *lock;
};

/* The wait.unlink of every wait here: under the object's lock, take the
 * fiber's node off the queue it is still on (nothing after a hand-off).
 * It may run on any worker of f's runtime (timer, canceller) or in park
 * itself; f->w is one of them, which is all weft__lock needs (the mt flag
 * is the same for every worker of a runtime). */
static bool node_unlink(struct weft__fiber *f)
{
    struct waiter *wt = f->wait_data;
    struct weft__worker *w = f->w;
    weft__lock(w, wt->lock);
    bool queued = wt->node.q != NULL;
    if (queued)
        weft__wq_remove(&wt->node);
    weft__unlock(w, wt->lock);
    return queued;
}

/* With lock (the object's) held: queues self on q and parks it, which
 * releases lock. Returns what weft__park() returns. A cancelled caller or
 * a past deadline returns at once without queuing, so no waker can hand
 * anything to a node whose fiber is not going to park. */
static int wait_on(struct weft__worker *w, struct weft__fiber *self, weft__lockword *lock,
                   struct weft__wq *q, int kind, const void *obj, int64_t deadline,
                   int uncancellable)
{
    if ((self->flags & WEFT__FL_CANCELLED) && !uncancellable) {
        weft__unlock(w, lock);
        return -ECANCELED;
    }
    if (deadline != WEFT_FOREVER && deadline <= weft__clock()) {
        weft__unlock(w, lock);
        return -ETIMEDOUT;
    }
    struct waiter wt = { .node = { .f = self }, .lock = lock };
    weft__wq_push(q, &wt.node);
    self->wait.kind = kind;
    self->wait.obj = obj;
    self->wait.unlink = node_unlink;
    self->wait.uncancellable = uncancellable;
    self->wait_data = &wt;
    int r = weft__park(w, self, deadline, lock);
    /* w is stale from here on: self may run on another worker now. */
    self->wait_data = NULL;
    /* Every way out of park() has taken the node off the queue: a hand-off
     * removed it (under the lock) before waking us, unlink removed it
     * otherwise. */
    weft__must(wt.node.q == NULL, "a sync waiter was left queued");
    return r;
}

/* Hands whatever the first waiter of q waits for to it and wakes it. The
 * caller holds the object's lock. */
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

static inline bool mutex_ok(const struct mutex_impl *m)
{
    return m && m->magic == WEFT__MUTEX_MAGIC;
}

/* With m's lock held. */
static inline int mutex_check_locked(struct weft__worker *w, struct mutex_impl *m)
{
    if (m->owner && m->rt != w->rt)
        return -EXDEV;
    return 0;
}

/* With m's lock held: locks m for self, waiting for it if need be.
 * Releases the lock. */
static int mutex_acquire(struct weft__worker *w, struct weft__fiber *self, struct mutex_impl *m,
                         int64_t deadline, int uncancellable)
{
    if (m->owner == 0) {
        m->owner = self->id;
        m->rt = w->rt;
        weft__unlock(w, &m->lock);
        return 0;
    }
    /* On success the unlocker has already made us the owner. */
    return wait_on(w, self, &m->lock, &m->waiters, WEFT__W_MUTEX, m, deadline, uncancellable);
}

/* With m's lock held: unlocks m, handing it to the first waiter if there
 * is one. */
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
    if (!mutex_ok(m))
        return -EINVAL;
    weft__lock(w, &m->lock);
    int err = mutex_check_locked(w, m);
    if (!err && m->owner == self->id)
        err = -EDEADLK;
    if (err) {
        weft__unlock(w, &m->lock);
        return err;
    }
    return mutex_acquire(w, self, m, deadline, 0);
}

int weft_mutex_trylock(weft_mutex *pm)
{
    ENTER(w, self);
    struct mutex_impl *m = M(pm);
    if (!mutex_ok(m))
        return -EINVAL;
    weft__lock(w, &m->lock);
    int err = mutex_check_locked(w, m);
    if (!err && m->owner)
        err = -EBUSY;
    if (!err) {
        m->owner = self->id;
        m->rt = w->rt;
    }
    weft__unlock(w, &m->lock);
    return err;
}

int weft_mutex_unlock(weft_mutex *pm)
{
    ENTER(w, self);
    struct mutex_impl *m = M(pm);
    if (!mutex_ok(m))
        return -EINVAL;
    weft__lock(w, &m->lock);
    int err = 0;
    if (m->owner != self->id)
        err = -EPERM;
    else
        mutex_release(m);
    weft__unlock(w, &m->lock);
    return err;
}

/* ----------------------------------------------------------------- cond */

int weft_cond_init(weft_cond *pc)
{
    if (!pc)
        return -EINVAL;
    *C(pc) = (struct cond_impl){ .magic = WEFT__COND_MAGIC };
    return 0;
}

static inline bool cond_ok(const struct cond_impl *c)
{
    return c && c->magic == WEFT__COND_MAGIC;
}

/* With c's lock held. */
static inline int cond_check_locked(struct weft__worker *w, struct cond_impl *c)
{
    if (c->waiters.head && c->rt != w->rt)
        return -EXDEV;
    return 0;
}

int weft_cond_wait(weft_cond *pc, weft_mutex *pm, int64_t deadline)
{
    ENTER(w, self);
    struct cond_impl *c = C(pc);
    struct mutex_impl *m = M(pm);
    if (!cond_ok(c) || !mutex_ok(m))
        return -EINVAL;
    /* Lock order cond -> mutex. Both are held while self is queued on c
     * and m is released, and c's stays held until self is parked: a
     * signal sent by whoever gets the mutex next needs c's lock, so it
     * finds self queued and parked (no lost wake-up). */
    weft__lock(w, &c->lock);
    weft__lock(w, &m->lock);
    int err = cond_check_locked(w, c);
    if (!err)
        err = mutex_check_locked(w, m);
    if (!err && m->owner != self->id)
        err = -EPERM;
    if (!err && c->waiters.head && c->mutex != m)
        err = -EINVAL;
    /* Nothing to try: a cancelled caller or a past deadline returns at once
     * and keeps the mutex, which is simpler for the caller to reason about
     * than a release and re-lock that achieved nothing. */
    if (!err && (self->flags & WEFT__FL_CANCELLED))
        err = -ECANCELED;
    if (!err && deadline != WEFT_FOREVER && deadline <= weft__clock())
        err = -ETIMEDOUT;
    if (err) {
        weft__unlock(w, &m->lock);
        weft__unlock(w, &c->lock);
        return err;
    }
    c->mutex = m;
    c->rt = w->rt;
    struct waiter wt = { .node = { .f = self }, .lock = &c->lock };
    weft__wq_push(&c->waiters, &wt.node);
    mutex_release(m);
    weft__unlock(w, &m->lock);
    self->wait.kind = WEFT__W_COND;
    self->wait.obj = c;
    self->wait.unlink = node_unlink;
    self->wait_data = &wt;
    int r = weft__park(w, self, deadline, &c->lock);
    self->wait_data = NULL;
    weft__must(wt.node.q == NULL, "a cond waiter was left queued");
    /* Re-lock whatever happened; this wait ignores cancellation (the
     * caller must get its mutex back to unwind) and has no deadline. No
     * lock is held here (park released c's), so taking m's cannot
     * deadlock. self may be on another worker now: re-read it. */
    w = self->w;
    weft__lock(w, &m->lock);
    int lr = mutex_acquire(w, self, m, WEFT_FOREVER, 1);
    weft__must(lr == 0, "re-locking the mutex after a cond wait failed");
    return r;
}

int weft_cond_signal(weft_cond *pc)
{
    ENTER(w, self);
    (void)self;
    struct cond_impl *c = C(pc);
    if (!cond_ok(c))
        return -EINVAL;
    weft__lock(w, &c->lock);
    int err = cond_check_locked(w, c);
    if (!err)
        wake_first(&c->waiters, 0);
    weft__unlock(w, &c->lock);
    return err;
}

int weft_cond_broadcast(weft_cond *pc)
{
    ENTER(w, self);
    (void)self;
    struct cond_impl *c = C(pc);
    if (!cond_ok(c))
        return -EINVAL;
    weft__lock(w, &c->lock);
    int err = cond_check_locked(w, c);
    if (!err)
        while (wake_first(&c->waiters, 0))
            ;
    weft__unlock(w, &c->lock);
    return err;
}

/* ------------------------------------------------------------ semaphore */

int weft_sem_init(weft_sem *ps, int64_t value)
{
    if (!ps || value < 0)
        return -EINVAL;
    *S(ps) = (struct sem_impl){ .magic = WEFT__SEM_MAGIC, .value = value };
    return 0;
}

/* With s's lock held (the magic is checked before taking it). */
static inline int sem_check_locked(struct weft__worker *w, struct sem_impl *s)
{
    if (s->value < 0)
        return -EINVAL;
    if (s->waiters.head && s->rt != w->rt)
        return -EXDEV;
    return 0;
}

static inline bool sem_ok(const struct sem_impl *s)
{
    return s && s->magic == WEFT__SEM_MAGIC;
}

int weft_sem_acquire(weft_sem *ps, int64_t deadline)
{
    ENTER(w, self);
    struct sem_impl *s = S(ps);
    if (!sem_ok(s))
        return -EINVAL;
    weft__lock(w, &s->lock);
    int err = sem_check_locked(w, s);
    if (!err && s->value > 0)       /* > 0 implies nobody is waiting */
        s->value--;
    else if (!err) {
        s->rt = w->rt;
        /* On success the releaser has handed its unit to us directly. */
        return wait_on(w, self, &s->lock, &s->waiters, WEFT__W_SEM, s, deadline, 0);
    }
    weft__unlock(w, &s->lock);
    return err;
}

int weft_sem_tryacquire(weft_sem *ps)
{
    ENTER(w, self);
    (void)self;
    struct sem_impl *s = S(ps);
    if (!sem_ok(s))
        return -EINVAL;
    weft__lock(w, &s->lock);
    int err = sem_check_locked(w, s);
    if (!err && s->value == 0)
        err = -EAGAIN;
    if (!err)
        s->value--;
    weft__unlock(w, &s->lock);
    return err;
}

int weft_sem_release(weft_sem *ps)
{
    ENTER(w, self);
    (void)self;
    struct sem_impl *s = S(ps);
    if (!sem_ok(s))
        return -EINVAL;
    weft__lock(w, &s->lock);
    int err = sem_check_locked(w, s);
    if (!err && !wake_first(&s->waiters, 0)) {
        if (s->value == INT64_MAX)
            err = -EOVERFLOW;
        else
            s->value++;
    }
    weft__unlock(w, &s->lock);
    return err;
}

/* ----------------------------------------------------------- wait group */

int weft_wg_init(weft_wg *pg)
{
    if (!pg)
        return -EINVAL;
    *G(pg) = (struct wg_impl){ .magic = WEFT__WG_MAGIC };
    return 0;
}

static inline bool wg_ok(const struct wg_impl *g)
{
    return g && g->magic == WEFT__WG_MAGIC;
}

/* With g's lock held. */
static inline int wg_check_locked(struct weft__worker *w, struct wg_impl *g)
{
    if (g->count < 0)
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
    if (!wg_ok(g))
        return -EINVAL;
    weft__lock(w, &g->lock);
    int err = wg_check_locked(w, g);
    if (!err && delta > 0 && g->count > INT64_MAX - delta)
        err = -EOVERFLOW;
    if (!err) {
        int64_t n = g->count + delta;   /* cannot overflow below: count >= 0 */
        if (n < 0) {
            err = -EINVAL;
        } else {
            g->count = n;
            if (n == 0)
                while (wake_first(&g->waiters, 0))
                    ;
        }
    }
    weft__unlock(w, &g->lock);
    return err;
}

int weft_wg_done(weft_wg *pg) { return weft_wg_add(pg, -1); }

int weft_wg_wait(weft_wg *pg, int64_t deadline)
{
    ENTER(w, self);
    struct wg_impl *g = G(pg);
    if (!wg_ok(g))
        return -EINVAL;
    weft__lock(w, &g->lock);
    int err = wg_check_locked(w, g);
    if (err || g->count == 0) {
        weft__unlock(w, &g->lock);
        return err;
    }
    g->rt = w->rt;
    return wait_on(w, self, &g->lock, &g->waiters, WEFT__W_WG, g, deadline, 0);
}

/* ------------------------------------------------------------ test hooks */

/* These read without the lock (see waitq.h): quiescent objects only. */

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
