/* chan.c - channels (rendezvous and buffered) and weft_select.
 *
 * A channel is one heap block: the header below followed by a ring buffer
 * of capacity * elem_size bytes. Blocked callers wait on two intrusive FIFO
 * queues (waitq.h), senders and receivers, through nodes that live on their
 * own stacks; a node carries the address of the caller's element, so an
 * element goes straight from the sender's buffer to the receiver's when one
 * side is already waiting (one memcpy, no trip through the ring).
 *
 * Invariants, true whenever no channel function is running:
 *  - receivers wait only while the buffer is empty and the channel open;
 *  - senders wait only while the buffer is full (always, for capacity 0)
 *    and the channel open;
 *  so a send first serves the oldest receiver, then the buffer, then
 *  waits; a receive first takes the oldest buffered element (and refills
 *  the buffer from the oldest sender), then takes from a sender directly,
 *  then waits. Close wakes every waiter with -EPIPE; buffered elements
 *  stay and drain.
 *
 * Select: a blocked select puts one node per clause on the matching queues,
 * all pointing at one struct chan_wait on its stack. Whoever completes one
 * of those nodes removes all the sibling nodes from their queues before
 * waking the fiber (complete()), so a select fires at most once and leaves
 * nothing behind; a timeout or cancellation removes them all through
 * wait.unlink. With one worker both happen atomically with respect to every
 * other fiber. For the multi-worker scheduler each channel gets a lock (the
 * reserved lock_ word) around every function body here, and chan_wait
 * gets an atomic "fired" word that complete() claims with a CAS before
 * touching the siblings (Go's selectDone); a node whose select was already
 * claimed elsewhere is then skipped and popped. Everything that changes a
 * channel is in this file.
 *
 * A plain send or receive is a select of one node, which keeps one wake-up
 * path for both.
 */
#include "internal.h"
#include "waitq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAN_MAGIC UINT64_C(0x77656674636841e5)
#define CHAN_DEAD  UINT64_C(0x77656674deadc4a9)
#define SMALL_SELECT 16

struct weft_chan {
    uint64_t magic;
    size_t esize, cap;
    size_t head, len;               /* the ring: len elements from head */
    bool closed;
    struct weft__wq sendq, recvq;
    struct weft_rt *rt;             /* runtime of the waiters while there are some */
    uint64_t lock_;                 /* reserved: per-channel lock (multi-worker) */
    unsigned char buf[];
};

struct chan_wait;

struct cnode {
    struct weft__wnode link;        /* link.f is the waiting fiber */
    struct chan_wait *cw;
    void *elem;                     /* send: source; receive: destination */
    size_t index;                   /* clause index */
};

/* One blocked call: a send, a receive or a select. */
struct chan_wait {
    struct cnode *nodes;
    size_t n;
    long fired;                     /* index of the clause that completed, or -1 */
    int result;                     /* its result: 0 or -EPIPE */
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

/* Takes every other node of n's call off its queue, records the outcome and
 * wakes the caller. n itself has already been popped. */
static void complete(struct cnode *n, int result)
{
    struct chan_wait *cw = n->cw;
    for (size_t i = 0; i < cw->n; i++)
        weft__wq_remove(&cw->nodes[i].link);
    cw->fired = (long)n->index;
    cw->result = result;
    weft__wake(n->link.f, 0);
}

/* 1: sent; -EPIPE: closed; 0: would block. */
static int try_send(struct weft_chan *ch, const void *elem)
{
    if (ch->closed)
        return -EPIPE;
    struct weft__wnode *l = weft__wq_pop(&ch->recvq);
    if (l) {
        struct cnode *r = node_of(l);
        copy(ch, r->elem, elem);
        complete(r, 0);
        return 1;
    }
    if (ch->len < ch->cap) {
        ring_push(ch, elem);
        return 1;
    }
    return 0;
}

/* 1: received; -EPIPE: closed and drained; 0: would block. */
static int try_recv(struct weft_chan *ch, void *elem)
{
    struct weft__wnode *l;
    if (ch->len) {
        ring_pop(ch, elem);
        /* A slot is free: the oldest blocked sender's element moves in. */
        if ((l = weft__wq_pop(&ch->sendq))) {
            struct cnode *s = node_of(l);
            ring_push(ch, s->elem);
            complete(s, 0);
        }
        return 1;
    }
    if ((l = weft__wq_pop(&ch->sendq))) {
        struct cnode *s = node_of(l);
        copy(ch, elem, s->elem);
        complete(s, 0);
        return 1;
    }
    return ch->closed ? -EPIPE : 0;
}

static inline bool send_ready(const struct weft_chan *ch)
{
    return ch->closed || ch->recvq.head || ch->len < ch->cap;
}

static inline bool recv_ready(const struct weft_chan *ch)
{
    return ch->len || ch->sendq.head || ch->closed;
}

static bool wait_unlink(struct weft__fiber *f)
{
    struct chan_wait *cw = f->wait_data;
    bool removed = false;
    for (size_t i = 0; i < cw->n; i++) {
        removed |= cw->nodes[i].link.q != NULL;
        weft__wq_remove(&cw->nodes[i].link);
    }
    return removed || cw->n == 0;   /* an empty select: nothing else can end it */
}

/* Parks self on the queues of the nodes already filled in (chans[i] is
 * node i's channel, ops[i] its op). Returns the index of the node that
 * completed, or the negative result of weft__park(). */
static long block(struct weft__worker *w, struct weft__fiber *self, struct chan_wait *cw,
                  weft_chan *const *chans, const int *ops, int kind, const void *obj,
                  int64_t deadline)
{
    for (size_t i = 0; i < cw->n; i++) {
        struct weft_chan *ch = chans[i];
        cw->nodes[i].link.f = self;
        cw->nodes[i].cw = cw;
        weft__wq_push(ops[i] == WEFT_SEND ? &ch->sendq : &ch->recvq, &cw->nodes[i].link);
        ch->rt = w->rt;
    }
    cw->fired = -1;
    self->wait.kind = kind;
    self->wait.obj = obj;
    self->wait.unlink = wait_unlink;
    self->wait_data = cw;
    int r = weft__park(w, self, deadline, NULL);
    self->wait_data = NULL;
    for (size_t i = 0; i < cw->n; i++)
        weft__must(cw->nodes[i].link.q == NULL, "a channel waiter was left queued");
    if (r < 0) {
        weft__must(cw->fired < 0, "a channel wait both completed and failed");
        return r;
    }
    weft__must(cw->fired >= 0, "a channel waiter woken without an outcome");
    return cw->fired;
}

#define ENTER(w, self) \
    struct weft__worker *w = weft__worker(); \
    struct weft__fiber *self = weft__self(w); \
    if (!self) \
        return -EPERM

static inline int chan_check(const struct weft__worker *w, const struct weft_chan *ch)
{
    if (!chan_ok(ch))
        return -EINVAL;
    if (has_waiters(ch) && ch->rt != w->rt)
        return -EXDEV;
    return 0;
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

int weft_chan_send(weft_chan *ch, const void *elem, int64_t deadline)
{
    ENTER(w, self);
    int r = chan_check(w, ch);
    if (r)
        return r;
    if (!elem && ch->esize)
        return -EINVAL;
    r = try_send(ch, elem);
    if (r)
        return r < 0 ? r : 0;
    struct cnode node = { .elem = (void *)(uintptr_t)elem, .index = 0 };
    struct chan_wait cw = { .nodes = &node, .n = 1 };
    static const int op = WEFT_SEND;
    long k = block(w, self, &cw, &ch, &op, WEFT__W_CHAN, ch, deadline);
    return k < 0 ? (int)k : cw.result;
}

int weft_chan_recv(weft_chan *ch, void *elem, int64_t deadline)
{
    ENTER(w, self);
    int r = chan_check(w, ch);
    if (r)
        return r;
    if (!elem && ch->esize)
        return -EINVAL;
    r = try_recv(ch, elem);
    if (r)
        return r < 0 ? r : 0;
    struct cnode node = { .elem = elem, .index = 0 };
    struct chan_wait cw = { .nodes = &node, .n = 1 };
    static const int op = WEFT_RECV;
    long k = block(w, self, &cw, &ch, &op, WEFT__W_CHAN, ch, deadline);
    return k < 0 ? (int)k : cw.result;
}

/* Wakes every waiter with -EPIPE: receivers first, then senders. Pops from
 * the head each time because completing a select removes its other nodes,
 * which may be further down the same queue. */
static void wake_all_closed(struct weft_chan *ch)
{
    struct weft__wnode *l;
    while ((l = weft__wq_pop(&ch->recvq)))
        complete(node_of(l), -EPIPE);
    while ((l = weft__wq_pop(&ch->sendq)))
        complete(node_of(l), -EPIPE);
}

int weft_chan_close(weft_chan *ch)
{
    ENTER(w, self);
    (void)self;
    int r = chan_check(w, ch);
    if (r)
        return r;
    if (ch->closed)
        return -EPIPE;
    ch->closed = true;
    wake_all_closed(ch);
    return 0;
}

void weft_chan_free(weft_chan *ch)
{
    if (!chan_ok(ch))
        return;
    if (has_waiters(ch)) {
        struct weft__worker *w = weft__worker();
        if (!weft__self(w) || w->rt != ch->rt) {
            fprintf(stderr, "weft: weft_chan_free(%p): fibers of another runtime wait on "
                            "it; not freed\n", (void *)ch);
            return;
        }
        ch->closed = true;
        wake_all_closed(ch);
    }
    ch->magic = CHAN_DEAD;
    free(ch);
}

int64_t weft_chan_len(const weft_chan *ch)
{
    return chan_ok(ch) ? (int64_t)ch->len : -EINVAL;
}

int64_t weft_chan_cap(const weft_chan *ch)
{
    return chan_ok(ch) ? (int64_t)ch->cap : -EINVAL;
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

int weft_select(weft_clause *cl, size_t n, int64_t deadline)
{
    ENTER(w, self);
    if ((n && !cl) || n > WEFT_SELECT_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int r = chan_check(w, cl[i].ch);
        if (r)
            return r;
        if (cl[i].op != WEFT_SEND && cl[i].op != WEFT_RECV)
            return -EINVAL;
        if (!cl[i].elem && cl[i].ch->esize)
            return -EINVAL;
    }
    /* Reservoir sampling: the k-th ready clause replaces the pick with
     * probability 1/k, which makes every ready clause equally likely. */
    size_t pick = SIZE_MAX, nready = 0;
    for (size_t i = 0; i < n; i++) {
        struct weft_chan *ch = cl[i].ch;
        if (cl[i].op == WEFT_SEND ? send_ready(ch) : recv_ready(ch))
            if (rng_below(++nready) == 0)
                pick = i;
    }
    if (pick != SIZE_MAX) {
        int r = cl[pick].op == WEFT_SEND ? try_send(cl[pick].ch, cl[pick].elem)
                                         : try_recv(cl[pick].ch, cl[pick].elem);
        weft__must(r != 0, "a ready select clause would block");
        cl[pick].result = r < 0 ? r : 0;
        return (int)pick;
    }

    struct cnode small[SMALL_SELECT];
    weft_chan *small_ch[SMALL_SELECT] = { 0 }; /* zeroed: n may be 0 */
    int small_op[SMALL_SELECT] = { 0 };
    struct cnode *nodes = small;
    weft_chan **chans = small_ch;
    int *ops = small_op;
    if (n > SMALL_SELECT) {
        nodes = weft__malloc(n * sizeof *nodes);
        chans = weft__malloc(n * sizeof *chans);
        ops = weft__malloc(n * sizeof *ops);
        if (!nodes || !chans || !ops) {
            free(nodes);
            free(chans);
            free(ops);
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        nodes[i] = (struct cnode){ .elem = cl[i].elem, .index = i };
        chans[i] = cl[i].ch;
        ops[i] = cl[i].op;
    }
    struct chan_wait cw = { .nodes = nodes, .n = n };
    long k = block(w, self, &cw, chans, ops, WEFT__W_SELECT, cl, deadline);
    if (k >= 0)
        cl[k].result = cw.result;
    if (nodes != small) {
        free(nodes);
        free(chans);
        free(ops);
    }
    return (int)k;
}

/* ------------------------------------------------------------ test hooks */

void weft__chan_waiters(const weft_chan *ch, size_t *senders, size_t *receivers)
{
    bool ok = chan_ok(ch);
    if (senders)
        *senders = ok ? weft__wq_len(&ch->sendq) : SIZE_MAX;
    if (receivers)
        *receivers = ok ? weft__wq_len(&ch->recvq) : SIZE_MAX;
}
