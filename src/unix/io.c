/* io.c - blocking-style descriptor calls on top of the reactor and timers:
 * weft_wait_fd, read/write (+v, _full, _all), send/recv, recvfrom/sendto,
 * accept, connect, shutdown and close.
 *
 * The descriptor table. One table per runtime: with several workers every
 * worker's w->io points at worker 0's (made eagerly by weft__io_init before
 * the other workers start); a single worker makes it on first use. It is
 * two-level: a fixed top array of NCHUNKS chunk pointers and chunks of
 * CHUNK entries made on demand and published with a CAS (read with an
 * acquire load, a plain load on x86). Entries never move, so an entry
 * pointer stays valid for the runtime's life and lookups need no lock while
 * the table grows: 64M descriptor numbers, no cap in practice, 32 bytes per
 * number actually used (a chunk at a time). An entry holds the fibers
 * parked to read and to write (two circular lists of waiter nodes that live
 * on the parked fibers' stacks), a generation that changes whenever weft
 * learns the number now names another descriptor, a state word (flags:
 * initialised, socket, TCP, registered with an edge-triggered reactor,
 * the two readiness hints; and a report sequence, see below) and a lock.
 *
 * Locking (several workers). Each entry has a weft__lockword, taken with
 * weft__lock() (a no-op with one worker). Everything that reads or changes
 * an entry's queues, watched set, gen or state word does it under that
 * lock, including the watch() calls for that descriptor; the lock is never
 * held across the read/write syscall itself, and a fiber parks by queueing
 * its nodes under the lock and passing it to weft__park(). Lock-free
 * readers (the fast path) only load the state word and gen, which are
 * atomics written only under the lock (relaxed stores: no atomic
 * read-modify-write on the single-worker path). A fiber waiting for both
 * directions (weft_wait_fd) has both its nodes in the same entry: whoever
 * ends its wait (a report, close, the sweep, or wait.unlink on timeout or
 * cancellation) removes both under the entry lock before waking it, so
 * "did I remove the nodes" decides who owns the wake-up. Lock order: entry
 * lock, then the poll backend's own lock inside watch(); the sweep lock is
 * only ever tried.
 *
 * Registration. With an edge-triggered backend (epoll) a descriptor is
 * registered once, for both directions, the first time a fiber has to park
 * on it, and stays registered until weft_close(): parking costs no syscall
 * at all. With a level-triggered backend (poll) the watched set must equal
 * the directions that have waiters, or a writable socket would be reported
 * on every poll; io.c keeps it so after every enqueue, dequeue and wake.
 *
 * Readiness hints and the drained-read optimisation. E_RD/E_WR mean "worth
 * trying the syscall". They start set, are cleared on EAGAIN, and are set
 * again whenever the reactor reports the direction. A straight-line loop
 * (read, write, read, ...) would otherwise pay a read that fails with EAGAIN
 * before every park. On a TCP socket a read that returns fewer bytes than
 * asked has emptied the receive queue at that instant (but see urgent data
 * below), so E_RD is cleared then too and the next read parks without
 * trying. That is safe because:
 *  - edge-triggered epoll queues an event for every segment that arrives
 *    after the read (ep_poll_callback runs on each sk_data_ready), and one
 *    that arrived before the read but after the last report is still on
 *    epoll's ready list; either way the parked reader is woken;
 *  - level-triggered poll reports whatever is queued when the fiber parks;
 *  - it is applied to TCP only: a SOCK_STREAM socket whose protocol is
 *    IPPROTO_TCP (fd_init asks SO_PROTOCOL once; net.c's sockets and
 *    accepted ones are flagged when made, at no syscall). Never to
 *    datagram or seqpacket sockets (one message per read: a short read
 *    says nothing about the queue), nor to Unix stream sockets, whose
 *    reads also stop with data queued (after an skb that carried
 *    SCM_RIGHTS, and with SO_PASSCRED between two writers' data), nor to
 *    other stream protocols (SCTP's one-to-one sockets read one message
 *    at a time; MPTCP is not trusted blindly), pipes, ttys or files;
 *  - TCP stops a read short at the urgent mark with data still queued. The
 *    backends request EPOLLPRI/POLLPRI with every read interest and report
 *    pending urgent data as WEFT__IO_URGENT, and the descriptor then loses
 *    the optimisation for good (E_NOOPT). The report comes with the
 *    wake-up for the burst that holds the urgent byte, so it is in the
 *    state word before the woken reader's short read is judged;
 *  - a past deadline ignores the hints and tries the syscall once, as the
 *    API promises.
 * With several workers a report can be processed by another worker while a
 * fiber is between its syscall and its park (or between the short read and
 * clearing the hint). The state word therefore carries a report sequence
 * (bits 8-31), bumped under the entry lock with every report, reset or
 * re-registration. A fiber loads the state word (flags and sequence in one
 * load) before its syscall; it clears a hint, or queues itself to park,
 * only under the entry lock and only if the sequence has not moved since;
 * otherwise it tries the syscall again. So a hint is cleared only when no
 * report was processed since the syscall that justified it, and every
 * report after that finds the fiber queued (it reads the sequence under the
 * same lock the report takes) or makes it retry. One worker never sees the
 * sequence move in that window, so nothing changes for it.
 *
 * Deadlines. A call whose deadline has passed tries its syscall once,
 * whatever the hints say, and returns -ETIMEDOUT only if it would block
 * (without parking: there is nothing to wait for). A call whose park is
 * ended by its deadline timer does the same: one last attempt, provided
 * the number still names the descriptor it parked on (last_try()), and
 * -ETIMEDOUT only if that would block too. Without it, data, a connection
 * or room that arrived just before the timer fired would be reported as a
 * timeout whenever the timer is seen before the reactor's report: the
 * scheduler loop runs due timers before it looks at the reactor, and with
 * several workers the report may be handled on another thread after the
 * timer has already won the fiber. Channel and mutex hand-offs beat a
 * timeout the same way. The last attempt's result is returned as it is:
 * data, end of file, a connection, or an error such as -ECONNRESET; it is
 * one more non-blocking syscall, paid only by calls that time out.
 * Cancellation gets no last attempt: -ECANCELED leaves the data queued
 * for whoever reads next.
 *
 * Descriptors closed behind weft's back. weft_close() wakes the waiters
 * with -EBADF, deregisters and only then closes. A plain close() cannot be
 * seen, so: socket calls always pass MSG_DONTWAIT (a reused number that
 * names a blocking socket cannot block the worker), other descriptors have
 * O_NONBLOCK re-checked on every call (a cleared flag means the number was
 * reused and the entry is rebuilt), descriptors weft creates itself (accept,
 * socket in net.c) reset their entry, and with an edge-triggered backend a
 * sweep re-arms every descriptor that has waiters once a second: EBADF
 * wakes the waiters with -EBADF and resets the entry; a registration that
 * had vanished (the number now names a new file) is re-added and the
 * waiters are woken to retry on whatever the number names now. The sweep
 * runs from weft__io_tick(), which the scheduler loop calls and whose
 * answer bounds its blocking poll; one thread sweeps at a time (a trylock).
 * The poll backend sees a closed descriptor directly (POLLNVAL), but only
 * when poll(2) starts: a poll already sleeping holds its own reference to
 * the file, so a close made meanwhile is not reported. With one worker the
 * closer is a fiber, so poll is entered afresh after it runs; with several,
 * another worker may sleep in poll through the close, so the same
 * once-a-second tick wakes the poller to rebuild its set. So a fiber
 * parked on such a descriptor returns within about a second instead of
 * never.
 *
 * Migration. After a park a fiber may run on another worker thread: w is
 * re-read from self->w, and errno is read through errno_at() below (glibc
 * declares __errno_location() const, so a compiler may reuse the address
 * it computed before the park: the other thread's errno).
 *
 * Invariants: a waiter node is linked iff its prev is non-NULL; both nodes
 * of a parked fiber are linked or neither is; a parked fiber's nodes are
 * unlinked, under the entry lock, by whoever ends its wait, before the
 * fiber is woken, so when weft__park() returns they are off every queue.
 */
#include "internal.h"
#include "sys.h"

#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* The calling thread's errno, looked up afresh at each use (see Migration
 * above): the empty asm keeps the compiler from treating the lookup as a
 * constant it may hoist across a park. */
#undef errno
#define errno (*weft__errno_at())

#define SWEEP_NS        1000000000  /* how often parked descriptors are re-checked */
#define BACKOFF_MIN_NS  1000000     /* accept under EMFILE: first pause ... */
#define BACKOFF_MAX_NS  100000000   /* ... doubling up to this */

#define CHUNK_BITS 10
#define CHUNK      (1u << CHUNK_BITS)       /* entries per chunk */
#define NCHUNKS    65536u                   /* 64M descriptor numbers */

enum {
    E_INIT   = 1u << 0,  /* non-blocking set, type probed */
    E_SOCK   = 1u << 1,  /* a socket: send/recv with MSG_DONTWAIT|MSG_NOSIGNAL */
    E_TCP    = 1u << 2,  /* a TCP socket: short read means drained */
    E_REG    = 1u << 3,  /* registered with an edge-triggered reactor */
    E_RD     = 1u << 4,  /* a read may succeed: try before parking */
    E_WR     = 1u << 5,  /* a write may succeed */
    E_NOOPT  = 1u << 6   /* urgent data seen: never infer "drained" */
};
#define ST_FLAGS 0xffu    /* state word: flags ... */
#define ST_SEQ1  0x100u   /* ... and the report sequence above them */

struct parkrec;

struct iowait {
    struct iowait *next, *prev;     /* circular; prev == NULL: not linked */
    struct parkrec *p;
    int dir;                        /* 0: readers, 1: writers */
};

struct parkrec {                    /* self->wait_data while parked on an fd */
    struct iowait node[2];
    int n;
    int fd;
    struct weft__fiber *f;
    struct fdent *e;
    int64_t since;                  /* worker clock when it parked (the sweep) */
};

struct fdent {
    struct iowait *q[2];            /* readers, writers (heads of circular lists) */
    _Atomic uint32_t st;            /* flags | report sequence (ST_*) */
    _Atomic uint32_t gen;
    weft__lockword lock;
    uint8_t watched;                /* level backends: directions passed to watch() */
};

struct weft__iotab {
    /* read on every lookup, rarely written */
    struct weft__worker *owner;     /* the worker that made it and frees it */
    _Atomic(struct fdent *) *chunks;/* NCHUNKS pointers */
    _Atomic uint32_t hi;            /* chunks[hi..] are all NULL */
    char pad_[64];                  /* keeps the counters below off that cache line */
    /* written by every park and wake-up */
    _Atomic size_t nwait;           /* linked waiter nodes */
    _Atomic int64_t next_sweep;     /* ns; 0: no sweep planned */
    weft__lockword sweep_lock;      /* held by the thread sweeping */
};

/* ------------------------------------------------------------ table */

static inline uint32_t st_load(struct fdent *e)
{
    return atomic_load_explicit(&e->st, memory_order_relaxed);
}

/* Only under the entry lock (or with one worker). */
static inline void st_store(struct fdent *e, uint32_t v)
{
    atomic_store_explicit(&e->st, v, memory_order_relaxed);
}

static inline uint32_t gen_load(struct fdent *e)
{
    return atomic_load_explicit(&e->gen, memory_order_relaxed);
}

static inline bool same_seq(uint32_t a, uint32_t b)
{
    return ((a ^ b) & ~ST_FLAGS) == 0;
}

/* Counters shared by the workers: atomic read-modify-writes only when there
 * are several. */
static inline void nwait_add(const struct weft__worker *w, struct weft__iotab *t, long d)
{
    if (w->mt)
        atomic_fetch_add_explicit(&t->nwait, (size_t)d, memory_order_seq_cst);
    else
        atomic_store_explicit(&t->nwait,
                              atomic_load_explicit(&t->nwait, memory_order_relaxed) + (size_t)d,
                              memory_order_relaxed);
}

static struct weft__iotab *tab_new(struct weft__worker *w)
{
    struct weft__iotab *t = weft__calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->chunks = weft__calloc(NCHUNKS, sizeof *t->chunks);
    if (!t->chunks) {
        free(t);
        return NULL;
    }
    t->owner = w;
    w->io = t;
    return t;
}

static inline struct weft__iotab *tab_get(struct weft__worker *w)
{
    if (weft__likely(w->io != NULL))
        return w->io;
    return tab_new(w);
}

int weft__io_init(struct weft__worker *w)
{
    return tab_get(w) ? 0 : -ENOMEM;
}

static struct fdent *chunk_make(struct weft__iotab *t, unsigned c)
{
    struct fdent *n = weft__calloc(CHUNK, sizeof *n);
    if (!n)
        return NULL;
    struct fdent *expect = NULL;
    if (!atomic_compare_exchange_strong_explicit(&t->chunks[c], &expect, n,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        free(n);        /* another worker made it first */
        return expect;
    }
    uint32_t hi = atomic_load_explicit(&t->hi, memory_order_relaxed);
    while (hi <= c && !atomic_compare_exchange_weak_explicit(&t->hi, &hi, c + 1,
                                                             memory_order_release,
                                                             memory_order_relaxed))
        ;
    return n;
}

/* The entry of fd (fd >= 0), making its chunk; NULL only when out of
 * memory or beyond the table. */
static inline struct fdent *ent_get(struct weft__worker *w, int fd)
{
    struct weft__iotab *t = tab_get(w);
    if (weft__unlikely(!t))
        return NULL;
    unsigned c = (unsigned)fd >> CHUNK_BITS;
    if (weft__unlikely(c >= NCHUNKS))
        return NULL;
    struct fdent *ch = atomic_load_explicit(&t->chunks[c], memory_order_acquire);
    if (weft__unlikely(!ch) && !(ch = chunk_make(t, c)))
        return NULL;
    return &ch[(unsigned)fd & (CHUNK - 1)];
}

/* The entry of fd if the table holds one (no allocation). */
static inline struct fdent *ent_find(struct weft__worker *w, int fd)
{
    struct weft__iotab *t = w->io;
    if (!t || fd < 0 || ((unsigned)fd >> CHUNK_BITS) >= NCHUNKS)
        return NULL;
    struct fdent *ch = atomic_load_explicit(&t->chunks[(unsigned)fd >> CHUNK_BITS],
                                            memory_order_acquire);
    return ch ? &ch[(unsigned)fd & (CHUNK - 1)] : NULL;
}

/* Drops w's reference; the worker that made the table frees it, so with a
 * shared table that worker must be finalised after the others. */
void weft__io_fini(struct weft__worker *w)
{
    struct weft__iotab *t = w->io;
    if (!t)
        return;
    w->io = NULL;
    if (t->owner != w)
        return;
    uint32_t hi = atomic_load_explicit(&t->hi, memory_order_acquire);
    for (uint32_t c = 0; c < hi; c++)
        free(atomic_load_explicit(&t->chunks[c], memory_order_relaxed));
    free(t->chunks);
    free(t);
}

/* Makes fd non-blocking and learns what it is. Keeps E_REG (the caller
 * decides whether an existing registration is still trusted) and the
 * report sequence. The syscalls run outside the entry lock. */
static int fd_init(struct weft__worker *w, struct fdent *e, int fd)
{
    int fl = weft__sys_fcntl(fd, F_GETFL, 0);
    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK) && weft__sys_fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    uint32_t f = E_INIT | E_RD | E_WR;
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0) {
        f |= E_SOCK;
        /* Only TCP may take a short read for "drained" (see the top of
         * the file); a stream socket costs one more getsockopt, once. */
        int proto = 0;
        len = sizeof proto;
        if (type == SOCK_STREAM &&
            getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == IPPROTO_TCP)
            f |= E_TCP;
    }
    weft__lock(w, &e->lock);
    uint32_t s = st_load(e);
    st_store(e, (s & (~ST_FLAGS | E_REG)) | f);
    weft__unlock(w, &e->lock);
    return 0;
}

/* ------------------------------------------------------------ waiters */

static inline int linked(const struct iowait *n) { return n->prev != NULL; }

static void q_push(struct iowait **head, struct iowait *n)
{
    struct iowait *h = *head;
    if (!h) {
        n->next = n->prev = n;
        *head = n;
    } else {
        n->prev = h->prev;
        n->next = h;
        h->prev->next = n;
        h->prev = n;
    }
}

static void q_remove(struct iowait **head, struct iowait *n)
{
    if (n->next == n) {
        *head = NULL;
    } else {
        n->prev->next = n->next;
        n->next->prev = n->prev;
        if (*head == n)
            *head = n->next;
    }
    n->next = n->prev = NULL;
}

/* Level backends: make the watched set equal the directions with waiters.
 * Under the entry lock. */
static int level_sync(struct weft__worker *w, struct fdent *e, int fd)
{
    if (w->rops->edge)
        return 0;
    int want = (e->q[0] ? WEFT_READ : 0) | (e->q[1] ? WEFT_WRITE : 0);
    if (want == e->watched)
        return 0;
    int r = w->rops->watch(w->reactor, fd, want);
    if (r < 0 && want != 0)
        return r;
    e->watched = (uint8_t)want;
    return 0;
}

/* Takes every node of p off its queue; how many were linked. Under the
 * entry lock. */
static inline int rec_unlink(struct weft__worker *w, struct parkrec *p)
{
    int k = 0;
    for (int i = 0; i < p->n; i++) {
        struct iowait *n = &p->node[i];
        if (linked(n)) {
            q_remove(&p->e->q[n->dir], n);
            k++;
        }
    }
    if (k)
        nwait_add(w, w->io, -k);
    return k;
}

/* wait.unlink: the wait ended by timeout or cancellation, on any worker.
 * true iff the nodes were still queued (then the caller wakes the fiber). */
static bool io_unlink(struct weft__fiber *f)
{
    struct parkrec *p = f->wait_data;
    if (!p)
        return false;
    struct weft__worker *w = f->w;      /* any worker: they share the table */
    struct fdent *e = p->e;
    weft__lock(w, &e->lock);
    bool removed = rec_unlink(w, p) > 0;
    if (removed)
        level_sync(w, e, p->fd);
    weft__unlock(w, &e->lock);
    return removed;
}

/* Wakes every fiber in queue dir of e with result, taking all its nodes
 * (both directions) off first. Under the entry lock; the caller runs
 * level_sync afterwards. */
static inline __attribute__((always_inline)) void wake_all(struct weft__worker *w, struct fdent *e,
                                                           int dir, int result)
{
    struct iowait *n;
    long k = 0;
    while ((n = e->q[dir]) != NULL) {
        struct parkrec *p = n->p;
        struct weft__fiber *f = p->f;
        if (weft__likely(p->n == 1)) {
            q_remove(&e->q[dir], n);
            k++;
        } else {
            for (int i = 0; i < p->n; i++)
                if (linked(&p->node[i])) {
                    q_remove(&e->q[p->node[i].dir], &p->node[i]);
                    k++;
                }
        }
        weft__wake(f, result);  /* p may be gone from here on */
    }
    if (k)
        nwait_add(w, w->io, -k);
}

/* Something made the number fd stop naming the descriptor its waiters
 * wanted: wake them with -EBADF and forget what the entry knew. Under the
 * entry lock. */
static void ent_reset(struct weft__worker *w, struct fdent *e, int fd, uint32_t keep)
{
    /* The new generation first: a waiter woken below may run on another
     * worker at once, and its resume() (which takes no lock) must already
     * see that the number changed. */
    atomic_store_explicit(&e->gen, gen_load(e) + 1, memory_order_relaxed);
    st_store(e, ((st_load(e) & ~ST_FLAGS) + ST_SEQ1) | keep);
    wake_all(w, e, 0, -EBADF);
    wake_all(w, e, 1, -EBADF);
    if (!w->rops->edge && e->watched) {
        w->rops->watch(w->reactor, fd, 0);
        e->watched = 0;
    }
}

void weft__io_adopt(struct weft__worker *w, int fd, int flags)
{
    if (!w || fd < 0)
        return;
    struct fdent *e = ent_get(w, fd);
    if (!e)
        return;             /* the first call on fd will build the entry */
    uint32_t keep = E_INIT | E_RD | E_WR |
                    ((flags & WEFT__IO_SOCK) ? E_SOCK : 0) |
                    ((flags & WEFT__IO_TCP) ? E_TCP : 0);
    weft__lock(w, &e->lock);
    ent_reset(w, e, fd, keep);
    weft__unlock(w, &e->lock);
}

void weft__io_ready(struct weft__worker *w, int fd, int events)
{
    struct fdent *e = ent_find(w, fd);
    if (!e)
        return;
    weft__lock(w, &e->lock);
    uint32_t s = st_load(e);
    if (events & WEFT__IO_URGENT)
        s |= E_NOOPT;
    if (events & WEFT_READ)
        s |= E_RD;
    if (events & WEFT_WRITE)
        s |= E_WR;
    st_store(e, s + ST_SEQ1);
    int ev = events & (WEFT_READ | WEFT_WRITE);
    if ((ev & WEFT_READ) && e->q[0])
        wake_all(w, e, 0, ev);
    if ((ev & WEFT_WRITE) && e->q[1])
        wake_all(w, e, 1, ev);
    level_sync(w, e, fd);
    weft__unlock(w, &e->lock);
}

/* Edge backends: re-arm every descriptor that has waiters, to notice ones
 * closed behind weft's back (see the top of the file). The poll backend
 * (several workers) only needs its sleeping poller to start poll afresh. */
static void sweep(struct weft__worker *w, struct weft__iotab *t, int64_t now)
{
    if (!w->rops->edge) {
        w->rops->wake(w->reactor);
        return;
    }
    /* Only waits that have lasted a while are suspicious; the rest are
     * left alone (fewer syscalls, and no spurious wake-ups that would hide
     * a lost edge from the tests). */
    int64_t old = now - SWEEP_NS / 2;
    uint32_t hi = atomic_load_explicit(&t->hi, memory_order_acquire);
    for (uint32_t c = 0; c < hi; c++) {
        struct fdent *ch = atomic_load_explicit(&t->chunks[c], memory_order_acquire);
        for (unsigned i = 0; ch && i < CHUNK; i++) {
            if (atomic_load_explicit(&t->nwait, memory_order_relaxed) == 0)
                return;
            struct fdent *e = &ch[i];
            int fd = (int)(c * CHUNK + i);
            weft__lock(w, &e->lock);
            if ((e->q[0] && e->q[0]->p->since <= old) ||
                (e->q[1] && e->q[1]->p->since <= old)) {
                int r = w->rops->watch(w->reactor, fd, WEFT_READ | WEFT_WRITE);
                if (r > 0) {
                    /* The number names a file that was not registered: it
                     * was closed and reused behind weft's back. Some waiters
                     * may have parked after the reuse (on the new file), so
                     * they are not failed: they are woken to retry their
                     * call, and the entry is re-probed on their next call.
                     * The new file is registered now. */
                    st_store(e, ((st_load(e) & ~ST_FLAGS) + ST_SEQ1) | E_REG);
                    wake_all(w, e, 0, WEFT_READ | WEFT_WRITE);
                    wake_all(w, e, 1, WEFT_READ | WEFT_WRITE);
                } else if (r == -EBADF || r == -ENOENT) {
                    ent_reset(w, e, fd, 0);
                }
            }
            weft__unlock(w, &e->lock);
        }
    }
}

int64_t weft__io_tick(struct weft__worker *w, int64_t now)
{
    struct weft__iotab *t = w->io;
    if (!t)
        return INT64_MAX;
    int64_t next = atomic_load_explicit(&t->next_sweep, memory_order_relaxed);
    if (next == 0)
        return INT64_MAX;
    if (now < next)
        return next;
    if (w->mt && !weft__spin_trylock(&t->sweep_lock))
        return now + SWEEP_NS;      /* another worker is sweeping */
    sweep(w, t, now);
    /* Plan the next sweep only while fibers wait. A parker increments
     * nwait and then arms the sweep if none is planned: with the store of
     * 0 here before the load of nwait (both seq_cst) one of the two sees
     * the other, so a new waiter is never left without a sweep. */
    atomic_store_explicit(&t->next_sweep, 0, memory_order_seq_cst);
    next = INT64_MAX;
    if (atomic_load_explicit(&t->nwait, memory_order_seq_cst) > 0) {
        int64_t zero = 0, want = now + SWEEP_NS;
        if (atomic_compare_exchange_strong_explicit(&t->next_sweep, &zero, want,
                                                    memory_order_seq_cst,
                                                    memory_order_seq_cst))
            next = want;
        else
            next = zero;
    }
    if (w->mt)
        weft__spin_unlock(&t->sweep_lock);
    return next;
}

/* ------------------------------------------------------------ parking */

enum { PK_CHECK = 1 };  /* park only if no report came since the snapshot */

/* Parks self until fd is reported ready for one of events (WEFT_READ,
 * WEFT_WRITE or both). snap is the state word loaded before the syscall
 * that found fd not ready; with PK_CHECK the fiber parks only if no report
 * was processed since (else returns 0: try again), and then first clears
 * the hints in clear. gen is the generation the caller's call began with.
 * Returns the reported events (> 0), 0 (try again), or -ETIMEDOUT,
 * -ECANCELED, -EBADF (closed meanwhile), -ENOMEM. */
static int park_fd(struct weft__worker *w, struct weft__fiber *self, struct fdent *e, int fd,
                   int events, int64_t deadline, uint32_t gen, uint32_t snap, uint32_t clear,
                   int mode)
{
    weft__lock(w, &e->lock);
    uint32_t s = st_load(e);
    if (gen_load(e) != gen) {
        weft__unlock(w, &e->lock);
        return -EBADF;
    }
    if ((mode & PK_CHECK) && !same_seq(s, snap)) {
        weft__unlock(w, &e->lock);
        return 0;
    }
    if (w->rops->edge && !(s & E_REG)) {
        int r = w->rops->watch(w->reactor, fd, WEFT_READ | WEFT_WRITE);
        if (r < 0) {
            weft__unlock(w, &e->lock);
            /* -EPERM: a regular file; epoll refuses it; it is always ready */
            return r == -EPERM ? events : r;
        }
        s |= E_REG;
    }
    s &= ~clear;
    st_store(e, s);
    struct parkrec p;
    p.n = 0;
    p.fd = fd;
    p.f = self;
    p.e = e;
    p.since = w->now;
    for (int dir = 0; dir < 2; dir++) {
        if (!(events & (dir ? WEFT_WRITE : WEFT_READ)))
            continue;
        struct iowait *n = &p.node[p.n++];
        n->p = &p;
        n->dir = dir;
        q_push(&e->q[dir], n);
    }
    struct weft__iotab *t = w->io;
    nwait_add(w, t, p.n);
    int r = level_sync(w, e, fd);
    if (r < 0) {
        rec_unlink(w, &p);
        level_sync(w, e, fd);
        weft__unlock(w, &e->lock);
        return r;
    }
    if ((w->rops->edge || w->mt) &&
        atomic_load_explicit(&t->next_sweep, w->mt ? memory_order_seq_cst
                                                   : memory_order_relaxed) == 0) {
        int64_t zero = 0;
        if (w->mt)
            atomic_compare_exchange_strong_explicit(&t->next_sweep, &zero, w->now + SWEEP_NS,
                                                    memory_order_seq_cst, memory_order_seq_cst);
        else
            atomic_store_explicit(&t->next_sweep, w->now + SWEEP_NS, memory_order_relaxed);
    }
    self->wait.kind = WEFT__W_FD;
    self->wait.obj = (const void *)(intptr_t)fd;
    self->wait.detail = events;
    self->wait.unlink = io_unlink;
    self->wait_data = &p;
    r = weft__park(w, self, deadline, &e->lock);
    /* Whoever ended the wait took both nodes off under the entry lock. */
    for (int i = 0; i < p.n; i++)
        weft__must(!linked(&p.node[i]), "an fd waiter still queued after its wait ended");
    self->wait_data = NULL;
    return r;
}

/* ------------------------------------------------------------ common paths */

/* Checks the caller and fd and returns fd's entry (made on first use). */
static int prologue(struct weft__worker *w, struct weft__fiber *self, int fd, struct fdent **out)
{
    if (weft__unlikely(!self))
        return -EPERM;
    if (weft__unlikely(self->flags & WEFT__FL_CANCELLED))
        return -ECANCELED;
    if (weft__unlikely(fd < 0))
        return -EBADF;
    struct fdent *e = ent_get(w, fd);
    if (weft__unlikely(!e))
        return -ENOMEM;
    uint32_t s = st_load(e);
    if (weft__unlikely(!(s & E_INIT))) {
        int r = fd_init(w, e, fd);
        if (r < 0)
            return r;
    } else if (!(s & E_SOCK)) {
        /* Not a socket, so no MSG_DONTWAIT: the call relies on O_NONBLOCK.
         * If it is gone, the number was closed and reused behind weft's
         * back (or the flag was cleared): rebuild the entry. */
        int fl = weft__sys_fcntl(fd, F_GETFL, 0);
        if (fl < 0)
            return -errno;
        if (!(fl & O_NONBLOCK)) {
            weft__lock(w, &e->lock);
            ent_reset(w, e, fd, 0);
            weft__unlock(w, &e->lock);
            int r = fd_init(w, e, fd);
            if (r < 0)
                return r;
        }
    }
    *out = e;
    return 0;
}

static inline int past(int64_t deadline)
{
    return deadline != WEFT_FOREVER && deadline <= weft__clock();
}

/* After a park: make sure the number still names the same descriptor. */
static inline int resume(struct weft__worker *w, struct fdent *e, int fd, uint32_t gen)
{
    if (gen_load(e) != gen)
        return -EBADF;
    if (weft__unlikely(!(st_load(e) & E_INIT)))
        return fd_init(w, e, fd);   /* the sweep found the number reused */
    return 0;
}

/* Clears hint bit in e's state word unless a report came since snap. */
static inline void hint_clear(struct weft__worker *w, struct fdent *e, uint32_t bit, uint32_t snap)
{
    weft__lock(w, &e->lock);
    uint32_t s = st_load(e);
    if (same_seq(s, snap))
        st_store(e, s & ~bit);
    weft__unlock(w, &e->lock);
}

/* A park ended by the deadline: the call makes one last attempt (see
 * "Deadlines" at the top of the file), provided the number still names
 * the descriptor it parked on. 0: try; -ETIMEDOUT: give up now. */
static inline int last_try(struct weft__worker *w, struct fdent *e, int fd, uint32_t gen)
{
    return resume(w, e, fd, gen) < 0 ? -ETIMEDOUT : 0;
}

/* write(2)/writev(2) on a non-socket cannot take MSG_NOSIGNAL: block SIGPIPE
 * on this thread around the call and swallow the one it raised, so a
 * closed pipe gives -EPIPE instead of killing the process. */
static ssize_t nosig_writev(int fd, const struct iovec *iov, int cnt)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t n = weft__sys_writev(fd, iov, cnt);
    int err = errno;
    if (n < 0 && err == EPIPE && !sigismember(&old, SIGPIPE)) {
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return n;
}

static inline size_t iov_total(const struct iovec *iov, int cnt)
{
    size_t s = 0;
    for (int i = 0; i < cnt; i++)
        s += iov[i].iov_len;
    return s;
}

enum op { OP_READ, OP_READV, OP_RECV, OP_RECVFROM };

struct rd {
    void *buf;
    size_t len;
    const struct iovec *iov;
    int cnt, flags;
    struct sockaddr *from;
    socklen_t *fromlen;
};

static ssize_t do_read(enum op op, int sock, int fd, const struct rd *a)
{
    switch (op) {
    case OP_READ:
        return sock ? weft__sys_recv(fd, a->buf, a->len, MSG_DONTWAIT)
                    : weft__sys_read(fd, a->buf, a->len);
    case OP_READV:
        if (sock) {
            struct msghdr m;
            memset(&m, 0, sizeof m);
            m.msg_iov = (struct iovec *)a->iov;
            m.msg_iovlen = (size_t)a->cnt;
            return weft__sys_recvmsg(fd, &m, MSG_DONTWAIT);
        }
        return weft__sys_readv(fd, a->iov, a->cnt);
    case OP_RECV:
        return weft__sys_recv(fd, a->buf, a->len, a->flags | MSG_DONTWAIT);
    default:
        return weft__sys_recvfrom(fd, a->buf, a->len, a->flags | MSG_DONTWAIT, a->from, a->fromlen);
    }
}

static ssize_t read_op(enum op op, int fd, const struct rd *a, int64_t deadline)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    struct fdent *e;
    int r = prologue(w, self, fd, &e);
    if (r < 0)
        return r;
    size_t want = op == OP_READV ? iov_total(a->iov, a->cnt) : a->len;
    /* Only plain reads of a TCP socket may conclude "drained". */
    int may_drain = (op == OP_READ || op == OP_READV ||
                     (op == OP_RECV && !(a->flags & (MSG_PEEK | MSG_OOB))));
    uint32_t gen = gen_load(e);
    bool force = false;     /* woken, or told to retry: try the syscall */
    bool last = false;      /* the deadline ended the park: this try is the last */
    for (;;) {
        uint32_t s = st_load(e);    /* flags and report sequence, before the syscall */
        if (force || (s & E_RD) || past(deadline)) {
            ssize_t n = do_read(op, s & E_SOCK, fd, a);
            if (n > 0) {
                if ((size_t)n < want && may_drain && (s & (E_TCP | E_NOOPT)) == E_TCP) {
                    WEFT__PP(WEFT__PP_DRAINED_READ, (intptr_t)fd);
                    hint_clear(w, e, E_RD, s);
                }
                return n;
            }
            if (n == 0)
                return 0;
            int err = errno;
            force = true;
            if (err == EINTR)
                continue;
            if (err != EAGAIN && err != EWOULDBLOCK)
                return -err;
            if (last || past(deadline)) {
                hint_clear(w, e, E_RD, s);
                return -ETIMEDOUT;
            }
        }
        r = park_fd(w, self, e, fd, WEFT_READ, deadline, gen, s, E_RD, PK_CHECK);
        w = self->w;
        if (r == -ETIMEDOUT) {
            if (last_try(w, e, fd, gen) < 0)
                return -ETIMEDOUT;
            last = force = true;
            continue;
        }
        if (r < 0)
            return r;
        if ((r = resume(w, e, fd, gen)) < 0)
            return r;
        force = true;
    }
}

enum wop { OP_WRITE, OP_WRITEV, OP_SEND, OP_SENDTO };

struct wr {
    const void *buf;
    size_t len;
    const struct iovec *iov;
    int cnt, flags;
    const struct sockaddr *to;
    socklen_t tolen;
};

static ssize_t do_write(enum wop op, int sock, int fd, const struct wr *a)
{
    const int fl = MSG_DONTWAIT | MSG_NOSIGNAL;
    switch (op) {
    case OP_WRITE:
        if (sock)
            return weft__sys_send(fd, a->buf, a->len, fl);
        else {
            struct iovec v = { (void *)a->buf, a->len };
            return nosig_writev(fd, &v, 1);
        }
    case OP_WRITEV:
        if (sock) {
            struct msghdr m;
            memset(&m, 0, sizeof m);
            m.msg_iov = (struct iovec *)a->iov;
            m.msg_iovlen = (size_t)a->cnt;
            return weft__sys_sendmsg(fd, &m, fl);
        }
        return nosig_writev(fd, a->iov, a->cnt);
    case OP_SEND:
        return weft__sys_send(fd, a->buf, a->len, a->flags | fl);
    default:
        return weft__sys_sendto(fd, a->buf, a->len, a->flags | fl, a->to, a->tolen);
    }
}

static ssize_t write_op(enum wop op, int fd, const struct wr *a, int64_t deadline)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    struct fdent *e;
    int r = prologue(w, self, fd, &e);
    if (r < 0)
        return r;
    uint32_t gen = gen_load(e);
    bool force = false;     /* woken, or told to retry: try the syscall */
    bool last = false;      /* the deadline ended the park: this try is the last */
    for (;;) {
        uint32_t s = st_load(e);    /* flags and report sequence, before the syscall */
        if (force || (s & E_WR) || past(deadline)) {
            ssize_t n = do_write(op, s & E_SOCK, fd, a);
            if (n >= 0)
                return n;
            int err = errno;
            force = true;
            if (err == EINTR)
                continue;
            if (err != EAGAIN && err != EWOULDBLOCK)
                return -err;
            if (last || past(deadline)) {
                hint_clear(w, e, E_WR, s);
                return -ETIMEDOUT;
            }
        }
        r = park_fd(w, self, e, fd, WEFT_WRITE, deadline, gen, s, E_WR, PK_CHECK);
        w = self->w;
        if (r == -ETIMEDOUT) {
            if (last_try(w, e, fd, gen) < 0)
                return -ETIMEDOUT;
            last = force = true;
            continue;
        }
        if (r < 0)
            return r;
        if ((r = resume(w, e, fd, gen)) < 0)
            return r;
        force = true;
    }
}

/* ------------------------------------------------------------ public */

int weft_wait_fd(int fd, int events, int64_t deadline)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    if (events == 0 || (events & ~(WEFT_READ | WEFT_WRITE)))
        return self ? -EINVAL : -EPERM;
    struct fdent *e;
    int r = prologue(w, self, fd, &e);
    if (r < 0)
        return r;
    uint32_t gen = gen_load(e);
    bool last = false;      /* the deadline ended the park: this look is the last */
    for (;;) {
        /* The hints cannot answer this: the caller does its own I/O, which
         * never tells io.c about EAGAIN. Ask the kernel (after loading the
         * report sequence: a report processed after the question makes the
         * park below ask again instead of waiting). */
        uint32_t s = st_load(e);
        struct pollfd p = { .fd = fd, .events = (short)(((events & WEFT_READ) ? POLLIN : 0) |
                                                        ((events & WEFT_WRITE) ? POLLOUT : 0)) };
        int n;
        while ((n = weft__sys_poll0(&p, 1)) < 0 && errno == EINTR)
            ;
        if (n < 0)
            return -errno;
        if (p.revents & POLLNVAL)
            return -EBADF;
        int ready = 0;
        if (p.revents & (POLLIN | POLLPRI))
            ready |= WEFT_READ;
        if (p.revents & POLLOUT)
            ready |= WEFT_WRITE;
        if (p.revents & (POLLERR | POLLHUP))
            ready |= WEFT_READ | WEFT_WRITE;
        ready &= events;
        if (ready)
            return ready;
        if (last || past(deadline))
            return -ETIMEDOUT;
        r = park_fd(w, self, e, fd, events, deadline, gen, s, 0, PK_CHECK);
        w = self->w;
        if (r == -ETIMEDOUT) {
            if (last_try(w, e, fd, gen) < 0)
                return -ETIMEDOUT;
            last = true;
            continue;
        }
        if (r != 0)
            return r < 0 ? r : (r & events ? r & events : events);
        /* r == 0: not parked, a report came meanwhile */
    }
}

ssize_t weft_read(int fd, void *buf, size_t len, int64_t deadline)
{
    struct rd a = { .buf = buf, .len = len };
    return read_op(OP_READ, fd, &a, deadline);
}

ssize_t weft_readv(int fd, const struct iovec *iov, int iovcnt, int64_t deadline)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt > 0 && !iov))
        return weft__self(weft__worker()) ? -EINVAL : -EPERM;
    struct rd a = { .iov = iov, .cnt = iovcnt };
    return read_op(OP_READV, fd, &a, deadline);
}

ssize_t weft_recv(int fd, void *buf, size_t len, int flags, int64_t deadline)
{
    struct rd a = { .buf = buf, .len = len, .flags = flags };
    return read_op(OP_RECV, fd, &a, deadline);
}

ssize_t weft_recvfrom(int fd, void *buf, size_t len, int flags,
                      struct sockaddr *from, socklen_t *fromlen, int64_t deadline)
{
    struct rd a = { .buf = buf, .len = len, .flags = flags, .from = from, .fromlen = fromlen };
    return read_op(OP_RECVFROM, fd, &a, deadline);
}

ssize_t weft_write(int fd, const void *buf, size_t len, int64_t deadline)
{
    struct wr a = { .buf = buf, .len = len };
    return write_op(OP_WRITE, fd, &a, deadline);
}

ssize_t weft_writev(int fd, const struct iovec *iov, int iovcnt, int64_t deadline)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt > 0 && !iov))
        return weft__self(weft__worker()) ? -EINVAL : -EPERM;
    struct wr a = { .iov = iov, .cnt = iovcnt };
    return write_op(OP_WRITEV, fd, &a, deadline);
}

ssize_t weft_send(int fd, const void *buf, size_t len, int flags, int64_t deadline)
{
    struct wr a = { .buf = buf, .len = len, .flags = flags };
    return write_op(OP_SEND, fd, &a, deadline);
}

ssize_t weft_sendto(int fd, const void *buf, size_t len, int flags,
                    const struct sockaddr *to, socklen_t tolen, int64_t deadline)
{
    struct wr a = { .buf = buf, .len = len, .flags = flags, .to = to, .tolen = tolen };
    return write_op(OP_SENDTO, fd, &a, deadline);
}

ssize_t weft_read_full(int fd, void *buf, size_t len, int64_t deadline)
{
    if (len > SSIZE_MAX)
        return weft__self(weft__worker()) ? -EINVAL : -EPERM;
    size_t got = 0;
    do {
        ssize_t n = weft_read(fd, (char *)buf + got, len - got, deadline);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        got += (size_t)n;
    } while (got < len);
    return (ssize_t)got;
}

ssize_t weft_write_all(int fd, const void *buf, size_t len, int64_t deadline)
{
    if (len > SSIZE_MAX)
        return weft__self(weft__worker()) ? -EINVAL : -EPERM;
    size_t put = 0;
    do {
        ssize_t n = weft_write(fd, (const char *)buf + put, len - put, deadline);
        if (n < 0)
            return n;
        put += (size_t)n;
    } while (put < len);
    return (ssize_t)put;
}

/* Pauses an accept or connect that the kernel refused for lack of a
 * resource; 0 to retry, or -ECANCELED, or err once the deadline is spent. */
static int back_off(int64_t *pause, int64_t deadline, int err)
{
    int64_t now = weft__clock();
    if (deadline != WEFT_FOREVER && deadline <= now)
        return err;
    int64_t until = now + *pause;
    if (deadline != WEFT_FOREVER && deadline < until)
        until = deadline;
    *pause = *pause * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : *pause * 2;
    return weft_sleep_until(until);
}

int weft_accept(int lfd, struct sockaddr *addr, socklen_t *addrlen, int64_t deadline)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    struct fdent *e;
    int r = prologue(w, self, lfd, &e);
    if (r < 0)
        return r;
    uint32_t gen = gen_load(e);
    int64_t pause = BACKOFF_MIN_NS;
    bool force = false;
    bool last = false;      /* the deadline ended the park: this try is the last */
    for (;;) {
        uint32_t s = st_load(e);
        if (force || (s & E_RD) || past(deadline)) {
            force = true;
            int fd = WEFT__FI(WEFT__FS_ACCEPT, -1, weft__sys_accept4(lfd, addr, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (fd >= 0) {
                /* The listener's protocol is the connection's. */
                int tcp = (s & E_TCP) ? WEFT__IO_TCP : 0;
                weft__io_adopt(w, fd, WEFT__IO_SOCK | tcp);
                return fd;
            }
            int err = errno;
            switch (err) {
            case EINTR:
            case ECONNABORTED:  /* that client gave up; look at the next one */
                continue;
            case EAGAIN:
#if EWOULDBLOCK != EAGAIN
            case EWOULDBLOCK:
#endif
                break;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                /* The connection stays queued and an edge-triggered reactor
                 * will not report it again: sleep and retry instead of
                 * parking, doubling the pause, so the server neither spins
                 * nor stalls and recovers once descriptors are freed. */
                r = back_off(&pause, deadline, -err);
                w = self->w;
                if (r < 0)
                    return r;
                if ((r = resume(w, e, lfd, gen)) < 0)
                    return r;
                continue;
            default:
                return -err;
            }
            /* EAGAIN */
            if (last || past(deadline)) {
                hint_clear(w, e, E_RD, s);
                return -ETIMEDOUT;
            }
        }
        r = park_fd(w, self, e, lfd, WEFT_READ, deadline, gen, s, E_RD, PK_CHECK);
        w = self->w;
        if (r == -ETIMEDOUT) {
            if (last_try(w, e, lfd, gen) < 0)
                return -ETIMEDOUT;
            last = force = true;
            continue;
        }
        if (r < 0)
            return r;
        if ((r = resume(w, e, lfd, gen)) < 0)
            return r;
        force = true;
        pause = BACKOFF_MIN_NS;
    }
}

int weft_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, int64_t deadline)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    struct fdent *e;
    int r = prologue(w, self, fd, &e);
    if (r < 0)
        return r;
    if (!(st_load(e) & E_SOCK))
        return -ENOTSOCK;
    /* connect(2) has no MSG_DONTWAIT: make sure of O_NONBLOCK (cheap next
     * to a connect, and the number may have been reused behind our back). */
    int fl = weft__sys_fcntl(fd, F_GETFL, 0);
    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK) && weft__sys_fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    uint32_t gen = gen_load(e);
    int64_t pause = BACKOFF_MIN_NS;
    uint32_t s;
    for (;;) {
        s = st_load(e);     /* report sequence before the attempt */
        if (weft__sys_connect(fd, addr, addrlen) == 0)
            return 0;
        int err = errno;
        if (err == EAGAIN) {
            /* A Unix socket whose listener's backlog is full. */
            r = back_off(&pause, deadline, -EAGAIN);
            w = self->w;
            if (r < 0)
                return r;
            if ((r = resume(w, e, fd, gen)) < 0)
                return r;
            continue;
        }
        if (err != EINPROGRESS && err != EINTR)
            return -err;
        break;
    }
    /* In progress: it is done (or failed) when the socket turns writable. */
    for (;;) {
        r = park_fd(w, self, e, fd, WEFT_WRITE, deadline, gen, s, 0, PK_CHECK);
        w = self->w;
        bool last = r == -ETIMEDOUT;    /* then the check below is the last */
        if (last)
            r = last_try(w, e, fd, gen);
        else if (r >= 0)
            r = resume(w, e, fd, gen);
        if (r < 0)
            return r;
        s = st_load(e);     /* before the check below: a later report retries the park */
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
            return -errno;
        if (soerr)
            return -soerr;
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        if (weft__sys_poll0(&p, 1) == 1 && (p.revents & (POLLOUT | POLLERR | POLLHUP)))
            return 0;
        if (last)
            return -ETIMEDOUT;
        /* A spurious wake-up: still connecting. */
    }
}

int weft_shutdown(int fd, int how)
{
    if (!weft__self(weft__worker()))
        return -EPERM;
    if (fd < 0)
        return -EBADF;
    return shutdown(fd, how) == 0 ? 0 : -errno;
}

int weft_close(int fd)
{
    if (fd < 0)
        return -EBADF;
    struct weft__worker *w = weft__worker();
    struct fdent *e = w ? ent_find(w, fd) : NULL;
    if (e) {
        /* Deregister before closing: with a dup() of fd alive elsewhere
         * epoll would keep reporting it under this number. The close
         * itself runs outside the lock (it can block: SO_LINGER); a fiber
         * that parks on fd in between finds the generation changed. */
        weft__lock(w, &e->lock);
        if (st_load(e) & E_REG)
            w->rops->watch(w->reactor, fd, 0);
        ent_reset(w, e, fd, 0);
        weft__unlock(w, &e->lock);
    }
    /* On Linux the descriptor is released even when close() says EINTR;
     * retrying could close a number another thread just got. */
    if (weft__sys_close(fd) != 0 && errno != EINTR)
        return -errno;
    return 0;
}
