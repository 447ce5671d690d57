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
 * Multi-worker: all changes to a group happen in this file; a per-group
 * lock (the reserved lock_ word) around each function body and around
 * member_leave() is what they will need. Cancelling a member goes through
 * weft__fiber_cancel(), which the scheduler owns.
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
    struct weft__fiber *f;
};

struct weft_group {
    uint64_t magic;
    struct member *head;
    size_t live;
    bool cancelled;
    struct weft__wq waiters;
    struct weft_rt *rt;             /* runtime of the members while there are some */
    uint64_t lock_;                 /* reserved: per-group lock (multi-worker) */
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

static inline int group_check(const struct weft__worker *w, const struct weft_group *g)
{
    if (!group_ok(g))
        return -EINVAL;
    if ((g->live || g->waiters.head) && g->rt != w->rt)
        return -EXDEV;
    return 0;
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

static void member_leave(struct member *m)
{
    struct weft_group *g = m->g;
    if (m->prev)
        m->prev->next = m->next;
    else
        g->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    if (--g->live == 0) {
        struct weft__wnode *n;
        while ((n = weft__wq_pop(&g->waiters)))
            weft__wake(n->f, 0);
    }
    free(m);
}

static void *member_main(void *p)
{
    struct member *m = p;
    void *r = m->fn(m->arg);
    member_leave(m);
    return r;
}

int weft_group_spawn(weft_group *g, const weft_attr *attr, weft_fn fn, void *arg)
{
    ENTER(w, self);
    (void)self;
    int err = group_check(w, g);
    if (err)
        return err;
    if (!fn)
        return -EINVAL;
    if (g->cancelled)
        return -ECANCELED;
    struct member *m = weft__malloc(sizeof *m);
    if (!m)
        return -ENOMEM;
    *m = (struct member){ .g = g, .fn = fn, .arg = arg };
    err = weft__spawn(w, attr, (void *)member_main, m, WEFT__FL_DETACHED, &m->f);
    if (err) {
        free(m);
        return err;
    }
    m->next = g->head;
    if (g->head)
        g->head->prev = m;
    g->head = m;
    g->live++;
    g->rt = w->rt;
    return 0;
}

int weft_group_cancel(weft_group *g)
{
    ENTER(w, self);
    (void)self;
    int err = group_check(w, g);
    if (err)
        return err;
    g->cancelled = true;
    /* Cancelling only marks and wakes; no member runs (or leaves the list)
     * until we yield, so the walk is safe. */
    for (struct member *m = g->head; m; m = m->next)
        weft__fiber_cancel(m->f);
    return 0;
}

static bool wait_unlink(struct weft__fiber *f)
{
    struct weft__wnode *n = f->wait_data;
    if (!n->q)
        return false;
    weft__wq_remove(n);
    return true;
}

int weft_group_wait(weft_group *g, int64_t deadline)
{
    ENTER(w, self);
    int err = group_check(w, g);
    if (err)
        return err;
    if (g->live == 0)
        return 0;
    for (struct member *m = g->head; m; m = m->next)
        if (m->f == self)
            return -EDEADLK;
    struct weft__wnode node = { .f = self };
    weft__wq_push(&g->waiters, &node);
    self->wait.kind = WEFT__W_WG;
    self->wait.obj = g;
    self->wait.unlink = wait_unlink;
    self->wait_data = &node;
    int r = weft__park(w, self, deadline, NULL);
    self->wait_data = NULL;
    weft__must(node.q == NULL, "a group waiter was left queued");
    return r;
}

int64_t weft_group_size(const weft_group *g)
{
    return group_ok(g) ? (int64_t)g->live : -EINVAL;
}

int weft_group_free(weft_group *g)
{
    if (!g)
        return 0;
    if (!group_ok(g))
        return -EINVAL;
    if (g->live || g->waiters.head)
        return -EBUSY;
    g->magic = GROUP_DEAD;
    free(g);
    return 0;
}

size_t weft__group_waiters(const weft_group *g)
{
    return group_ok(g) ? weft__wq_len(&g->waiters) : SIZE_MAX;
}
