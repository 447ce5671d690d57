/* chan.c - channels (rendezvous and buffered) and weft_select.
 *
 * A channel is one heap block: the header below followed by a ring buffer
 * of capacity * elem_size bytes. Blocked callers wait on two intrusive FIFO
 * queues (waitq.h), senders and receivers, through nodes that live on their
 * own stacks; a node carries the address of the caller's element, so an
 * element goes straight from the sender's buffer to the receiver's when one
 * side is already waiting (one memcpy, no trip through the ring).
 *
 * Invariants, true whenever no channel function is running (and ignoring
 * "claimed" nodes, below):
 *  - receivers wait only while the buffer is empty and the channel open;
 *  - senders wait only while the buffer is full (always, for capacity 0)
 *    and the channel open;
 *  so a send first serves the oldest receiver, then the buffer, then
 *  waits; a receive first takes the oldest buffered element (and refills
 *  the buffer from the oldest sender), then takes from a sender directly,
 *  then waits. Close wakes every waiter with -EPIPE; buffered elements
 *  stay and drain.
 *
 * Blocking. A blocked call (send, receive or select; a send or receive is a
 * select of one node, which keeps one wake-up path) puts one node per
 * clause on the matching queues, all pointing at one struct chan_wait on
 * its stack. The call ends exactly once, decided by a claim word,
 * chan_wait.fired (Go's selectDone): -1 while open; whoever moves it away
 * from -1 owns the outcome and the wake-up:
 *  - a completer (send, receive, close, free) holding the lock of the
 *    channel whose queue it popped the node from: fired = clause index;
 *  - wait.unlink (timeout, cancellation; no lock held): fired = -2.
 * A claim is a CAS with several workers, a plain load and store with one
 * (then everything runs on one thread). Only the completer that claimed
 * copies an element in or out of the node's buffer. A node whose call was
 * claimed by somebody else ("stale") stays on its queue until its owner
 * removes it, and everybody who meets it at a queue head pops it and goes
 * on. The owner, once park returns, takes each channel's lock in turn and
 * removes its remaining nodes (so a completer never needs a second
 * channel's lock: no lock-order problem), and only then returns: no node of
 * a returned call is on any queue, which is what weft__chan_waiters checks.
 *
 * Locks (multi-worker; with one worker weft__lock is a no-op). Each
 * channel has a spinlock (lock) held around every read or change of the
 * channel. A select takes the locks of all its distinct channels in
 * address order (duplicates taken once), so two selects cannot deadlock;
 * the only other lock ever nested inside a channel lock is a blocked
 * select's own plock (below), which is always innermost.
 *
 * The park hand-off: a claimer must not wake the fiber before it is
 * PARKED. weft__park(w, self, deadline, lock) marks self PARKED before it
 * releases lock, so it is enough that every claimer holds that lock (or
 * takes and releases it after claiming) before it calls weft__wake:
 *  - a wait on one channel (nodes all on the same channel) parks passing
 *    that channel's lock; every claimer holds it (unlink never wakes
 *    itself: its caller does, after park's own machinery);
 *  - a wait on several channels takes its chan_wait.plock while still
 *    holding all the channel locks, releases the channel locks and parks
 *    passing plock. A completer (holding a channel lock, so it can only
 *    have found the node after the fiber released that lock, i.e. while
 *    the fiber held plock) takes and releases plock after its claim and
 *    before weft__wake: the park has then marked the fiber PARKED. Order:
 *    channel locks, then plock; the fiber never takes a channel lock while
 *    holding plock. So weft__wake by a claimer always succeeds (checked).
 * After the claim the fiber cannot leave park (a timeout or cancellation
 * finds the claim taken: unlink returns false and does not wake), so the
 * claimer may still write chan_wait.result and read the node; it touches
 * nothing of the fiber's after weft__wake. This relies on park honouring
 * an unlink that returns false in its own early path (deadline past,
 * already cancelled): it must then still wait for the claimer's wake.
 *
 * Freeing. A woken owner takes the channel lock to remove its remaining
 * nodes after a close/free may already have run, so the channel counts
 * (refs) the nodes whose owner will still come back for them: pushed and
 * not yet removed by the owner, except the node a claimer popped and fired
 * (the owner knows that one is off its queue and skips it, so a served send
 * or receive never touches the channel after its park). weft_chan_free
 * closes the channel (waking every waiter with -EPIPE), marks it dead and
 * frees the block at once only when refs is 0; otherwise the owner whose
 * clean-up drops refs to 0 frees it.
 */
#include "internal.h"
#include "waitq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAN_MAGIC UINT64_C(0x77656674636841e5)
#define CHAN_DEAD  UINT64_C(0x77656674deadc4a9)
#define SMALL_SELECT 16

#define FIRED_OPEN  (-1L)           /* chan_wait.fired: not claimed yet */
#define FIRED_ABORT (-2L)           /* claimed by wait_unlink (timeout, cancel) */

struct weft_chan {
    uint64_t magic;
    size_t esize, cap;
    size_t head, len;               /* the ring: len elements from head */
    bool closed;
    struct weft__wq sendq, recvq;
    struct weft__rt *rt;             /* runtime of the waiters while there are some */
    size_t refs;                    /* nodes their owner will still remove (see Freeing) */
    weft__lockword lock;            /* multi-worker: guards everything above */
    unsigned char buf[];
};

struct chan_wait;

struct cnode {
    struct weft__wnode link;        /* link.f is the waiting fiber */
    struct chan_wait *cw;
    struct weft_chan *ch;           /* the queue's channel */
    void *elem;                     /* send: source; receive: destination */
    size_t index;                   /* clause index */
    int op;                         /* WEFT_SEND or WEFT_RECV */
};

/* One blocked call: a send, a receive or a select. */
struct chan_wait {
    struct cnode *nodes;
    size_t n;
    _Atomic long fired;             /* the claim: FIRED_OPEN, FIRED_ABORT or a clause index */
    int result;                     /* the claimed clause's result: 0 or -EPIPE */
    bool multi;                     /* parked on plock (nodes on several channels) */
    weft__lockword plock;           /* the park hand-off lock of a multi-channel wait */
};

static inline struct cnode *node_of(struct weft__wnode *l)
{
    return weft__container_of(l, struct cnode, link);
}

static inline bool chan_ok(const struct weft_chan *ch)
{
    return ch && ch->magic == CHAN_MAGIC;
}

static inline bool has_waiters(const struct weft_chan *ch)
{
    return ch->sendq.head || ch->recvq.head;
}

/* The channel lock for callers that may not be fibers (w NULL): such a
 * caller cannot know whether the runtime is multi-worker, so it takes the
 * spinlock (single-worker fibers never take it: harmless). */
static inline bool lock_needed(const struct weft__worker *w)
{
    return !w || w->mt;
}
static inline void lock_any(const struct weft__worker *w, struct weft_chan *ch)
{
    if (lock_needed(w))
        weft__spin_lock(&ch->lock);
}
static inline void unlock_any(const struct weft__worker *w, struct weft_chan *ch)
{
    if (lock_needed(w))
        weft__spin_unlock(&ch->lock);
}

static inline void copy(const struct weft_chan *ch, void *dst, const void *src)
{
    if (ch->esize)                  /* memcpy(NULL, NULL, 0) is undefined */
        memcpy(dst, src, ch->esize);
}

static inline void ring_push(struct weft_chan *ch, const void *src)
{
    size_t i = ch->head + ch->len;
    if (i >= ch->cap)
        i -= ch->cap;
    copy(ch, ch->buf + i * ch->esize, src);
    ch->len++;
}

static inline void ring_pop(struct weft_chan *ch, void *dst)
{
    copy(ch, dst, ch->buf + ch->head * ch->esize);
    if (++ch->head == ch->cap)
        ch->head = 0;
    ch->len--;
}

/* Claims n's call for n's clause. One worker: nothing runs concurrently,
 * a load and a store do. */
static inline bool claim(const struct weft__worker *w, struct cnode *n)
{
    struct chan_wait *cw = n->cw;
    long open = FIRED_OPEN;
    if (!w->mt) {
        if (atomic_load_explicit(&cw->fired, memory_order_relaxed) != FIRED_OPEN)
            return false;
        atomic_store_explicit(&cw->fired, (long)n->index, memory_order_relaxed);
        return true;
    }
    return atomic_compare_exchange_strong_explicit(&cw->fired, &open, (long)n->index,
                                                   memory_order_acq_rel, memory_order_acquire);
}

static inline bool stale(const struct cnode *n)
{
    return atomic_load_explicit(&n->cw->fired, memory_order_acquire) != FIRED_OPEN;
}

/* Pops q's oldest node whose call this caller claims, dropping stale nodes
 * on the way; NULL when none is left. The caller holds the lock of ch (q's
 * channel). The owner will not come back for the claimed node (it knows
 * the claimer popped it), so it no longer counts in ch->refs. */
static inline __attribute__((always_inline)) struct cnode *
pop_claim(const struct weft__worker *w, struct weft_chan *ch, struct weft__wq *q)
{
    struct weft__wnode *l;
    while ((l = weft__wq_pop(q))) {
        struct cnode *n = node_of(l);
        if (claim(w, n)) {
            ch->refs--;
            return n;
        }
    }
    return NULL;
}

/* Drops stale nodes from q's head; true if a live node is left. */
static inline bool live(struct weft__wq *q)
{
    while (q->head && stale(node_of(q->head)))
        weft__wq_pop(q);
    return q->head != NULL;
}

/* Drops every stale node from q (weft_chan_free: only live waiters count). */
static void purge(struct weft__wq *q)
{
    struct weft__wnode *l = q->head;
    while (l) {
        struct weft__wnode *next = l->next;
        if (stale(node_of(l)))
            weft__wq_remove(l);
        l = next;
    }
}

/* Records the outcome of n's call, which this caller claimed (holding the
 * lock of the channel it popped n from), and wakes the caller. The owner
 * removes its other nodes itself once it runs. */
static void complete(const struct weft__worker *w, struct cnode *n, int result)
{
    struct chan_wait *cw = n->cw;
    struct weft__fiber *f = n->link.f;
    cw->result = result;
    if (cw->multi) {                /* the fiber parks passing plock: wait until it has */
        weft__lock(w, &cw->plock);
        weft__unlock(w, &cw->plock);
    }
    bool woke = weft__wake(f, 0);
    weft__must(woke, "a claimed channel waiter was not parked");
}

/* 1: sent; -EPIPE: closed; 0: would block. */
static int try_send(const struct weft__worker *w, struct weft_chan *ch, const void *elem)
{
    if (ch->closed)
        return -EPIPE;
    struct cnode *r = pop_claim(w, ch, &ch->recvq);
    if (r) {
        copy(ch, r->elem, elem);
        complete(w, r, 0);
        return 1;
    }
    if (ch->len < ch->cap) {
        ring_push(ch, elem);
        return 1;
    }
    return 0;
}

/* 1: received; -EPIPE: closed and drained; 0: would block. */
static int try_recv(const struct weft__worker *w, struct weft_chan *ch, void *elem)
{
    struct cnode *s;
    if (ch->len) {
        ring_pop(ch, elem);
        /* A slot is free: the oldest blocked sender's element moves in. */
        if ((s = pop_claim(w, ch, &ch->sendq))) {
            ring_push(ch, s->elem);
            complete(w, s, 0);
        }
        return 1;
    }
    if ((s = pop_claim(w, ch, &ch->sendq))) {
        copy(ch, elem, s->elem);
        complete(w, s, 0);
        return 1;
    }
    return ch->closed ? -EPIPE : 0;
}

static inline bool send_ready(struct weft_chan *ch)
{
    return ch->closed || ch->len < ch->cap || live(&ch->recvq);
}

static inline bool recv_ready(struct weft_chan *ch)
{
    return ch->len || ch->closed || live(&ch->sendq);
}

/* Timeout or cancellation (any thread, no lock held): claims the call. The
 * nodes stay queued, stale, until the owner removes them after park. */
static bool wait_unlink(struct weft__fiber *f)
{
    struct chan_wait *cw = f->wait_data;
    if (!cw)
        return false;
    long open = FIRED_OPEN;
    return atomic_compare_exchange_strong_explicit(&cw->fired, &open, FIRED_ABORT,
                                                   memory_order_acq_rel, memory_order_acquire);
}

/* Takes every node of cw off its queue (each channel's lock in turn) and
 * frees a channel whose weft_chan_free waited for this. The node of the
 * clause that fired was popped by its claimer before the wake-up: its
 * channel is not touched again (a plain send or receive that was served
 * never looks at the channel after park). */
static void unqueue(const struct weft__worker *w, struct chan_wait *cw, long fired)
{
    for (size_t i = 0; i < cw->n; i++) {
        if ((long)i == fired)
            continue;
        struct cnode *n = &cw->nodes[i];
        struct weft_chan *ch = n->ch;
        weft__lock(w, &ch->lock);
        weft__wq_remove(&n->link);
        bool last = --ch->refs == 0 && ch->magic == CHAN_DEAD;
        weft__unlock(w, &ch->lock);
        if (weft__unlikely(last))
            free(ch);
    }
}

/* Queues cw's nodes (filled in: ch, op, elem, index), releases the channel
 * locks (locked[0..nlocked), held by the caller with several workers) and
 * parks self. Returns the index of the clause that completed, or the
 * negative result of weft__park(); either way no node is queued any more. */
static long block(struct weft__worker *w, struct weft__fiber *self, struct chan_wait *cw,
                  struct weft_chan *const *locked, size_t nlocked, int kind, const void *obj,
                  int64_t deadline)
{
    atomic_store_explicit(&cw->fired, FIRED_OPEN, memory_order_relaxed);
    cw->multi = nlocked > 1;        /* plock is zero (unlocked) from the initializer */
    for (size_t i = 0; i < cw->n; i++) {
        struct cnode *n = &cw->nodes[i];
        struct weft_chan *ch = n->ch;
        n->link.f = self;
        n->cw = cw;
        weft__wq_push(n->op == WEFT_SEND ? &ch->sendq : &ch->recvq, &n->link);
        ch->refs++;
        ch->rt = w->rt;
    }
    self->wait.kind = kind;
    self->wait.obj = obj;
    self->wait.unlink = wait_unlink;
    self->wait_data = cw;
    weft__lockword *pl = NULL;
    if (w->mt && nlocked) {
        if (nlocked == 1) {
            pl = &locked[0]->lock;
        } else {
            pl = &cw->plock;
            weft__spin_lock(pl);
            for (size_t i = 0; i < nlocked; i++)
                weft__spin_unlock(&locked[i]->lock);
        }
    }
    int r = weft__park(w, self, deadline, pl);
    w = self->w;                    /* it may resume on another worker */
    self->wait_data = NULL;
    long fired = atomic_load_explicit(&cw->fired, memory_order_acquire);
    unqueue(w, cw, fired);
    for (size_t i = 0; i < cw->n; i++)
        weft__must(cw->nodes[i].link.q == NULL, "a channel waiter was left queued");
    if (r < 0) {
        weft__must(fired == FIRED_ABORT, "a channel wait both completed and failed");
        return r;
    }
    weft__must(fired >= 0, "a channel waiter woken without an outcome");
    return fired;
}

#define ENTER(w, self) \
    struct weft__worker *w = weft__worker(); \
    struct weft__fiber *self = weft__self(w); \
    if (!self) \
        return -EPERM

/* With the channel locked: waiters of another runtime cannot be woken from
 * here. */
static inline bool foreign(const struct weft__worker *w, const struct weft_chan *ch)
{
    return has_waiters(ch) && ch->rt != w->rt;
}

/* ------------------------------------------------------------- the verbs */

int weft_chan_open(weft_chan **out, size_t elem_size, size_t capacity)
{
    if (!out || elem_size > WEFT_CHAN_ELEM_MAX)
        return -EINVAL;
    if (elem_size && capacity > (SIZE_MAX - sizeof(struct weft_chan)) / elem_size)
        return -EINVAL;
    struct weft_chan *ch = weft__malloc(sizeof *ch + elem_size * capacity);
    if (!ch)
        return -ENOMEM;
    memset(ch, 0, sizeof *ch);
    ch->magic = CHAN_MAGIC;
    ch->esize = elem_size;
    ch->cap = capacity;
    *out = ch;
    return 0;
}

/* A send (op WEFT_SEND) or receive on one channel. */
static inline __attribute__((always_inline)) int
xfer(weft_chan *ch, int op, void *elem, int64_t deadline)
{
    ENTER(w, self);
    if (!chan_ok(ch))
        return -EINVAL;
    if (!elem && ch->esize)
        return -EINVAL;
    weft__lock(w, &ch->lock);
    int r;
    if (weft__unlikely(foreign(w, ch)))
        r = -EXDEV;
    else
        r = op == WEFT_SEND ? try_send(w, ch, elem) : try_recv(w, ch, elem);
    if (r) {
        weft__unlock(w, &ch->lock);
        return r < 0 ? r : 0;
    }
    struct cnode node = { .ch = ch, .op = op, .elem = elem, .index = 0 };
    struct chan_wait cw = { .nodes = &node, .n = 1 };
    long k = block(w, self, &cw, &ch, 1, WEFT__W_CHAN, ch, deadline);
    return k < 0 ? (int)k : cw.result;
}

int weft_chan_send(weft_chan *ch, const void *elem, int64_t deadline)
{
    return xfer(ch, WEFT_SEND, (void *)(uintptr_t)elem, deadline);
}

int weft_chan_recv(weft_chan *ch, void *elem, int64_t deadline)
{
    return xfer(ch, WEFT_RECV, elem, deadline);
}

/* Wakes every waiter with -EPIPE: receivers first, then senders; stale
 * nodes are dropped on the way. The caller holds the lock. */
static void wake_all_closed(const struct weft__worker *w, struct weft_chan *ch)
{
    struct cnode *n;
    while ((n = pop_claim(w, ch, &ch->recvq)))
        complete(w, n, -EPIPE);
    while ((n = pop_claim(w, ch, &ch->sendq)))
        complete(w, n, -EPIPE);
}

int weft_chan_close(weft_chan *ch)
{
    ENTER(w, self);
    (void)self;
    if (!chan_ok(ch))
        return -EINVAL;
    int r = 0;
    weft__lock(w, &ch->lock);
    if (foreign(w, ch)) {
        r = -EXDEV;
    } else if (ch->closed) {
        r = -EPIPE;
    } else {
        ch->closed = true;
        wake_all_closed(w, ch);
    }
    weft__unlock(w, &ch->lock);
    return r;
}

void weft_chan_free(weft_chan *ch)
{
    if (!chan_ok(ch))
        return;
    struct weft__worker *w = weft__worker();
    lock_any(w, ch);
    purge(&ch->recvq);
    purge(&ch->sendq);
    if (has_waiters(ch)) {
        if (!weft__self(w) || w->rt != ch->rt) {
            unlock_any(w, ch);
            fprintf(stderr, "weft: weft_chan_free(%p): fibers of another runtime wait on "
                            "it; not freed\n", (void *)ch);
            return;
        }
        ch->closed = true;
        wake_all_closed(w, ch);
    }
    ch->magic = CHAN_DEAD;
    /* Woken (or stale) owners still take the lock to remove their nodes:
     * the last of them frees the block. */
    bool now = ch->refs == 0;
    unlock_any(w, ch);
    if (now)
        free(ch);
}

int64_t weft_chan_len(const weft_chan *ch)
{
    if (!chan_ok(ch))
        return -EINVAL;
    struct weft_chan *c = (struct weft_chan *)(uintptr_t)ch;
    struct weft__worker *w = weft__worker();
    lock_any(w, c);
    int64_t len = (int64_t)c->len;
    unlock_any(w, c);
    return len;
}

int64_t weft_chan_cap(const weft_chan *ch)
{
    return chan_ok(ch) ? (int64_t)ch->cap : -EINVAL;   /* never changes */
}

/* ---------------------------------------------------------------- select */

/* A per-thread xorshift for the fair choice. It is only read before the
 * select parks, so a fiber that migrates never uses a stale address. */
static __thread uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    if (weft__unlikely(x == 0))
        x = (uint64_t)weft__clock() ^ (uint64_t)(uintptr_t)&rng_state ^ UINT64_C(0x9e3779b97f4a7c15);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

/* Uniform in [0, n) (n >= 1); the bias of the modulo is below 2^-50 for the
 * n a select can have. */
static inline size_t rng_below(size_t n) { return n == 1 ? 0 : (size_t)(rng_next() % n); }

static int addr_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(struct weft_chan *const *)a;
    uintptr_t y = (uintptr_t)*(struct weft_chan *const *)b;
    return x < y ? -1 : x > y;
}

/* Sorts l[0..n) by address and drops duplicates; returns how many are left. */
static size_t sort_unique(struct weft_chan **l, size_t n)
{
    if (n > SMALL_SELECT) {
        qsort(l, n, sizeof *l, addr_cmp);
    } else {
        for (size_t i = 1; i < n; i++) {
            struct weft_chan *c = l[i];
            size_t j = i;
            for (; j > 0 && (uintptr_t)l[j - 1] > (uintptr_t)c; j--)
                l[j] = l[j - 1];
            l[j] = c;
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || l[k - 1] != l[i])
            l[k++] = l[i];
    return k;
}

int weft_select(weft_clause *cl, size_t n, int64_t deadline)
{
    ENTER(w, self);
    if ((n && !cl) || n > WEFT_SELECT_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!chan_ok(cl[i].ch))
            return -EINVAL;
        if (cl[i].op != WEFT_SEND && cl[i].op != WEFT_RECV)
            return -EINVAL;
        if (!cl[i].elem && cl[i].ch->esize)
            return -EINVAL;
    }

    struct cnode small[SMALL_SELECT];
    struct weft_chan *small_l[SMALL_SELECT];
    struct cnode *nodes = small;
    struct weft_chan **locks = small_l;
    if (n > SMALL_SELECT) {
        nodes = weft__malloc(n * sizeof *nodes);
        locks = weft__malloc(n * sizeof *locks);
        if (!nodes || !locks) {
            free(nodes);
            free(locks);
            return -ENOMEM;
        }
    }
    /* Several workers: every distinct channel locked, in address order. */
    size_t nl = 0;
    if (w->mt && n) {
        for (size_t i = 0; i < n; i++)
            locks[i] = cl[i].ch;
        nl = sort_unique(locks, n);
        for (size_t i = 0; i < nl; i++)
            weft__spin_lock(&locks[i]->lock);
    }
    long k = -EXDEV;
    for (size_t i = 0; i < n; i++)
        if (foreign(w, cl[i].ch))
            goto unlock;

    for (;;) {
        /* Reservoir sampling: the k-th ready clause replaces the pick with
         * probability 1/k, which makes every ready clause equally likely. */
        size_t pick = SIZE_MAX, nready = 0;
        for (size_t i = 0; i < n; i++) {
            struct weft_chan *ch = cl[i].ch;
            if (cl[i].op == WEFT_SEND ? send_ready(ch) : recv_ready(ch))
                if (rng_below(++nready) == 0)
                    pick = i;
        }
        if (pick == SIZE_MAX)
            break;
        int r = cl[pick].op == WEFT_SEND ? try_send(w, cl[pick].ch, cl[pick].elem)
                                         : try_recv(w, cl[pick].ch, cl[pick].elem);
        if (r) {
            cl[pick].result = r < 0 ? r : 0;
            k = (long)pick;
            goto unlock;
        }
        /* Only a timeout or cancellation claiming the waiter that made the
         * clause ready, between the look and the try, gets here (several
         * workers): that node is gone now, look again. */
        weft__must(w->mt, "a ready select clause would block");
    }

    for (size_t i = 0; i < n; i++)
        nodes[i] = (struct cnode){ .ch = cl[i].ch, .op = cl[i].op, .elem = cl[i].elem,
                                   .index = i };
    struct chan_wait cw = { .nodes = nodes, .n = n };
    k = block(w, self, &cw, locks, nl, WEFT__W_SELECT, cl, deadline);
    if (k >= 0)
        cl[k].result = cw.result;
    goto out;
unlock:
    for (size_t i = 0; i < nl; i++)
        weft__spin_unlock(&locks[i]->lock);
out:
    if (nodes != small) {
        free(nodes);
        free(locks);
    }
    return (int)k;
}

/* ------------------------------------------------------------ test hooks */

void weft__chan_waiters(const weft_chan *ch, size_t *senders, size_t *receivers)
{
    bool ok = chan_ok(ch);
    struct weft_chan *c = (struct weft_chan *)(uintptr_t)ch;
    struct weft__worker *w = ok ? weft__worker() : NULL;
    if (ok)
        lock_any(w, c);
    if (senders)
        *senders = ok ? weft__wq_len(&ch->sendq) : SIZE_MAX;
    if (receivers)
        *receivers = ok ? weft__wq_len(&ch->recvq) : SIZE_MAX;
    if (ok)
        unlock_any(w, c);
}
