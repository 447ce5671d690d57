/* group.c - cancellation groups (weft_group).
 *
 * A group is a list of member records, one per member fiber still running,
 * and a wait queue of fibers in weft_group_wait(). Each member runs a
 * trampoline that calls the user's function and then, still on the member
 * fiber, takes its own record off the list (and wakes the waiters when it
 * was the last), so the list always holds exactly the members that have
 * not returned and cancelling walks only live fibers.
 *
 * Invariants: live == length of the member list; waiters exist only while
 * live > 0; once cancelled, a group accepts no new member, so "cancel, then
 * wait" cannot be outrun by a member spawning new ones.
 *
 * Multi-worker: every field is guarded by the group's spinlock (lock, taken
 * with weft__lock: a no-op with one worker), including the unlink callback
 * of a waiter (which finds the group through the waiter on its stack).
 * Three races need more than the lock:
 *  - A new member may run, and even return, on another worker before
 *    weft_group_spawn() gets back from weft__spawn(). So the record goes on
 *    the list before the fiber exists, and the member itself publishes its
 *    control block (m->f) when it starts - unless the group has been
 *    cancelled by then, in which case it cancels itself instead.
 *  - weft__fiber_cancel() takes the lock of whatever its target waits on,
 *    so it must not run under the group lock. weft_group_cancel() marks the
 *    group cancelled and raises `cancelling` under the lock, then walks the
 *    list without it: no member joins a cancelled group, no record leaves
 *    while `cancelling` is raised (a returning member yields until it
 *    drops), and m->f no longer changes once the group is cancelled, so the
 *    walk sees a frozen list of live fibers.
 *  - weft_group_free() takes the lock before freeing, so it cannot free the
 *    group under the member that is still waking the waiters.
 * With one worker none of these windows exists and `cancelling` is never
 * seen raised by a member (the canceller does not switch during its walk).
 */
#include "internal.h"
#include "waitq.h"

#include <stdlib.h>

#define GROUP_MAGIC UINT64_C(0x7765667467725570)
#define GROUP_DEAD  UINT64_C(0x77656674dead6770)

struct member {
    struct member *prev, *next;
    struct weft_group *g;
    weft_fn fn;
    void *arg;
    struct weft__fiber *f;          /* for cancel: set by the member once started
                                       (stays NULL if the group was cancelled first) */
    struct weft__fiber *self;       /* the member fiber once started (for -EDEADLK) */
};

struct weft_group {
    uint64_t magic;
    struct member *head;
    size_t live;                    /* written under lock, read by weft_group_size without */
    bool cancelled;
    unsigned cancelling;            /* weft_group_cancel walks in progress */
    struct weft__wq waiters;
    struct weft__rt *rt;             /* runtime of the members while there are some */
    weft__lockword lock;            /* guards all of the above (multi-worker) */
};

/* A fiber in weft_group_wait(): its node and the group's lock. */
struct waiter {
    struct weft__wnode node;
    weft__lockword *lock;
};

static inline bool group_ok(const struct weft_group *g)
{
    return g && g->magic == GROUP_MAGIC;
}

#define ENTER(w, self) \
    struct weft__worker *w = weft__worker(); \
    struct weft__fiber *self = weft__self(w); \
    if (!self) \
        return -EPERM

/* With g's lock held. */
static inline int group_check_locked(const struct weft__worker *w, const struct weft_group *g)
{
    if ((g->live || g->waiters.head) && g->rt != w->rt)
        return -EXDEV;
    return 0;
}

static inline void set_live(struct weft_group *g, size_t v)
{
    __atomic_store_n(&g->live, v, __ATOMIC_RELAXED);
}

int weft_group_open(weft_group **out)
{
    if (!out)
        return -EINVAL;
    struct weft_group *g = weft__calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->magic = GROUP_MAGIC;
    *out = g;
    return 0;
}

/* Takes m off its group's list and frees it; the last one out wakes the
 * waiters. Called by the member itself as it returns, or by the spawner if
 * the member's fiber could not be made. Waits (yielding) while a
 * weft_group_cancel() walk that may hold m is in progress. */
static void member_remove(struct member *m)
{
    struct weft_group *g = m->g;
    for (;;) {
        /* The worker is re-read on every pass: a yield may move us. */
        struct weft__worker *w = weft__worker();
        weft__lock(w, &g->lock);
        if (!g->cancelling) {
            if (m->prev)
                m->prev->next = m->next;
            else
                g->head = m->next;
            if (m->next)
                m->next->prev = m->prev;
            set_live(g, g->live - 1);
            if (g->live == 0) {
                struct weft__wnode *n;
                while ((n = weft__wq_pop(&g->waiters)))
                    weft__wake(n->f, 0);
            }
            /* Nothing of g is touched after this unlock: a woken waiter
             * may free it (weft_group_free takes the lock first). */
            weft__unlock(w, &g->lock);
            break;
        }
        weft__unlock(w, &g->lock);
        weft_yield();
    }
    free(m);
}

static void *member_main(void *p)
{
    struct member *m = p;
    struct weft_group *g = m->g;
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    weft__lock(w, &g->lock);
    bool late = g->cancelled;
    m->self = self;
    if (!late)
        m->f = self;
    weft__unlock(w, &g->lock);
    if (late)
        weft__fiber_cancel(self);   /* running: only marks it */
    void *r = m->fn(m->arg);
    member_remove(m);
    return r;
}

/* With g's lock held: the checks of weft_group_spawn, in their documented
 * order. */
static int spawn_check_locked(const struct weft__worker *w, const struct weft_group *g, weft_fn fn)
{
    int err = group_check_locked(w, g);
    if (!err && !fn)
        err = -EINVAL;
    if (!err && g->cancelled)
        err = -ECANCELED;
    return err;
}

int weft_group_spawn(weft_group *g, const weft_attr *attr, weft_fn fn, void *arg)
{
    ENTER(w, self);
    (void)self;
    if (!group_ok(g))
        return -EINVAL;
    weft__lock(w, &g->lock);
    int err = spawn_check_locked(w, g, fn);
    weft__unlock(w, &g->lock);
    if (err)
        return err;
    struct member *m = weft__malloc(sizeof *m);
    if (!m)
        return -ENOMEM;
    *m = (struct member){ .g = g, .fn = fn, .arg = arg };
    weft__lock(w, &g->lock);
    err = spawn_check_locked(w, g, fn);   /* again: another worker may have cancelled */
    if (err) {
        weft__unlock(w, &g->lock);
        free(m);
        return err;
    }
    /* On the list before the fiber exists: it may run and leave at once. */
    m->next = g->head;
    if (g->head)
        g->head->prev = m;
    g->head = m;
    set_live(g, g->live + 1);
    g->rt = w->rt;
    weft__unlock(w, &g->lock);
    struct weft__fiber *f;
    err = weft__spawn(w, attr, (void *)member_main, m, WEFT__FL_DETACHED, &f);
    if (err)
        member_remove(m);           /* never started: nobody else removes it */
    return err;
}

int weft_group_cancel(weft_group *g)
{
    ENTER(w, self);
    (void)self;
    if (!group_ok(g))
        return -EINVAL;
    weft__lock(w, &g->lock);
    int err = group_check_locked(w, g);
    if (err) {
        weft__unlock(w, &g->lock);
        return err;
    }
    g->cancelled = true;
    g->cancelling++;
    struct member *head = g->head;
    weft__unlock(w, &g->lock);
    /* The list is frozen until cancelling drops (see the top of the file),
     * and every m->f on it is a live fiber; members that have not started
     * yet (f NULL) cancel themselves when they do. weft__fiber_cancel does
     * not switch, so w stays ours. */
    for (struct member *m = head; m; m = m->next)
        if (m->f)
            weft__fiber_cancel(m->f);
    weft__lock(w, &g->lock);
    g->cancelling--;
    weft__unlock(w, &g->lock);
    return 0;
}

static bool wait_unlink(struct weft__fiber *f)
{
    struct waiter *wt = f->wait_data;
    struct weft__worker *w = f->w;  /* any worker of the runtime: for the mt flag */
    weft__lock(w, wt->lock);
    bool queued = wt->node.q != NULL;
    if (queued)
        weft__wq_remove(&wt->node);
    weft__unlock(w, wt->lock);
    return queued;
}

int weft_group_wait(weft_group *g, int64_t deadline)
{
    ENTER(w, self);
    if (!group_ok(g))
        return -EINVAL;
    weft__lock(w, &g->lock);
    int err = group_check_locked(w, g);
    if (err || g->live == 0) {
        weft__unlock(w, &g->lock);
        return err;
    }
    for (struct member *m = g->head; m; m = m->next)
        if (m->self == self) {
            weft__unlock(w, &g->lock);
            return -EDEADLK;
        }
    /* Return at once rather than queue a node no waker should see. */
    if (self->flags & WEFT__FL_CANCELLED)
        err = -ECANCELED;
    else if (deadline != WEFT_FOREVER && deadline <= weft__clock())
        err = -ETIMEDOUT;
    if (err) {
        weft__unlock(w, &g->lock);
        return err;
    }
    struct waiter wt = { .node = { .f = self }, .lock = &g->lock };
    weft__wq_push(&g->waiters, &wt.node);
    self->wait.kind = WEFT__W_WG;
    self->wait.obj = g;
    self->wait.unlink = wait_unlink;
    self->wait_data = &wt;
    int r = weft__park(w, self, deadline, &g->lock);
    self->wait_data = NULL;
    weft__must(wt.node.q == NULL, "a group waiter was left queued");
    return r;
}

int64_t weft_group_size(const weft_group *g)
{
    return group_ok(g) ? (int64_t)__atomic_load_n(&g->live, __ATOMIC_RELAXED) : -EINVAL;
}

int weft_group_free(weft_group *g)
{
    if (!g)
        return 0;
    if (!group_ok(g))
        return -EINVAL;
    /* Take the lock (callable anywhere: without a worker, take it as a
     * spinlock outright), so the member that woke the last waiter has
     * finished with g. */
    struct weft__worker *w = weft__worker();
    if (w)
        weft__lock(w, &g->lock);
    else
        weft__spin_lock(&g->lock);
    bool busy = g->live || g->waiters.head;
    if (w)
        weft__unlock(w, &g->lock);
    else
        weft__spin_unlock(&g->lock);
    if (busy)
        return -EBUSY;
    g->magic = GROUP_DEAD;
    free(g);
    return 0;
}

size_t weft__group_waiters(const weft_group *g)
{
    return group_ok(g) ? weft__wq_len(&g->waiters) : SIZE_MAX;
}
