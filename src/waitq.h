/* waitq.h - the intrusive FIFO wait queue shared by the synchronisation
 * objects (sync.c, chan.c, group.c), plus their testing hooks (private).
 *
 * A waiter is a node that lives on the blocked fiber's own stack for the
 * length of one blocking call, so waiting allocates nothing. The node says
 * which queue it is on (q); a node taken off its queue has q == NULL. That
 * one field is what keeps the two ways a wait can end apart:
 *  - hand-off: the waker removes the node (q = NULL) and calls weft__wake();
 *  - timeout or cancellation: weft__park() or the timer calls the fiber's
 *    wait.unlink, which removes the node only if it is still queued.
 * Once a node has been removed by a hand-off its fiber is RUNNABLE, so the
 * timer (disarmed by weft__wake) and cancellation (which only touches
 * PARKED fibers) can no longer reach it: a hand-off always stands.
 *
 * Locking (several workers): every queue belongs to exactly one object and
 * is guarded by that object's spinlock (weft__lock; a no-op with one
 * worker). Every change to a queue, and every read of a node's q by
 * anyone but its own fiber after park returned, happens under it: in the object's operation functions, and in the unlink
 * callback, which finds the lock through the waiter (sync.c and group.c
 * keep the node in a small struct on the waiter's stack together with a
 * pointer to the lock; f->wait_data points to it). A waiter queues itself
 * and parks with the lock held (weft__park releases it once the fiber is
 * PARKED); a waker removes the node under the lock before weft__wake(), so
 * when park returns the node is off every queue and the stack it lives on
 * may be reused. The helpers below take no lock themselves.
 */
#ifndef WEFT_WAITQ_H
#define WEFT_WAITQ_H

#include <stddef.h>
#include <stdint.h>

struct weft__fiber;

struct weft__wnode {
    struct weft__wnode *prev, *next;
    struct weft__wq *q;             /* the queue it is on; NULL once removed */
    struct weft__fiber *f;
};

struct weft__wq {
    struct weft__wnode *head, *tail;
};

static inline void weft__wq_push(struct weft__wq *q, struct weft__wnode *n)
{
    n->q = q;
    n->next = NULL;
    n->prev = q->tail;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
}

static inline void weft__wq_remove(struct weft__wnode *n)
{
    struct weft__wq *q = n->q;
    if (!q)
        return;
    if (n->prev)
        n->prev->next = n->next;
    else
        q->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        q->tail = n->prev;
    n->prev = n->next = NULL;
    n->q = NULL;
}

static inline struct weft__wnode *weft__wq_pop(struct weft__wq *q)
{
    struct weft__wnode *n = q->head;
    if (n)
        weft__wq_remove(n);
    return n;
}

static inline size_t weft__wq_len(const struct weft__wq *q)
{
    size_t k = 0;
    for (const struct weft__wnode *n = q->head; n; n = n->next)
        k++;
    return k;
}

/* Testing hooks: how many fibers wait on an object's queues. They read the
 * object without its lock and are meant for quiescent objects only (with
 * several workers: after the fibers using it have been joined). An
 * uninitialised object reports SIZE_MAX. */
struct weft_mutex;
struct weft_cond;
struct weft_sem;
struct weft_wg;
struct weft_chan;
struct weft_group;
size_t   weft__mutex_waiters(const struct weft_mutex *m);
uint64_t weft__mutex_owner(const struct weft_mutex *m);   /* fiber id, 0 = unlocked */
size_t   weft__cond_waiters(const struct weft_cond *c);
size_t   weft__sem_waiters(const struct weft_sem *s);
int64_t  weft__sem_value(const struct weft_sem *s);
size_t   weft__wg_waiters(const struct weft_wg *wg);
void     weft__chan_waiters(const struct weft_chan *ch, size_t *senders, size_t *receivers);
size_t   weft__group_waiters(const struct weft_group *g);

#endif
