/* io.c - blocking-style descriptor calls on top of the reactor and timers:
 * weft_wait_fd, read/write (+v, _full, _all), send/recv, recvfrom/sendto,
 * accept, connect, shutdown and close.
 *
 * The per-descriptor table. Each worker keeps an array indexed by fd that
 * grows (doubling) to the largest fd it has seen; there is no cap. An entry
 * holds the fibers parked to read and to write (two circular lists of
 * waiter nodes that live on the parked fibers' stacks), a generation that
 * changes whenever weft learns the number now names another descriptor, and
 * a few flags: initialised (made non-blocking, type probed), socket,
 * stream, registered with an edge-triggered reactor, and the two readiness
 * hints.
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
 * before every park. On a stream socket (TCP, Unix stream) a read that
 * returns fewer bytes than asked has emptied the receive queue at that
 * instant, so E_RD is cleared then too and the next read parks without
 * trying. That is safe because:
 *  - edge-triggered epoll queues an event for every segment that arrives
 *    after the read (ep_poll_callback runs on each sk_data_ready), and one
 *    that arrived before the read but after the last report is still on
 *    epoll's ready list; either way the parked reader is woken;
 *  - level-triggered poll reports whatever is queued when the fiber parks;
 *  - it is never applied to datagram or seqpacket sockets (one message per
 *    read: a short read says nothing about the queue) nor to pipes, ttys or
 *    anything that is not a stream socket;
 *  - TCP stops a read short at the urgent mark with data still queued; the
 *    backends report pending out-of-band data (WEFT__IO_URGENT) and the
 *    descriptor then loses the optimisation for good;
 *  - a past deadline ignores the hints and tries the syscall once, as the
 *    API promises.
 *
 * Descriptors closed behind weft's back. weft_close() wakes the waiters
 * with -EBADF, deregisters and only then closes. A plain close() cannot be
 * seen, so: socket calls always pass MSG_DONTWAIT (a reused number that
 * names a blocking socket cannot block the worker), other descriptors have
 * O_NONBLOCK re-checked on every call (a cleared flag means the number was
 * reused and the entry is rebuilt), descriptors weft creates itself (accept,
 * socket in net.c) reset their entry, and with an edge-triggered backend a
 * sweep timer re-arms every descriptor that has waiters once a second:
 * EBADF wakes the waiters with -EBADF and resets the entry; a registration
 * that had vanished (the number now names a new file) is re-added and the
 * waiters are woken to retry on whatever the number names now. The poll
 * backend sees a closed descriptor directly (POLLNVAL). So a fiber parked
 * on such a descriptor returns within about a second instead of never.
 *
 * Invariants: a waiter node is linked iff its prev is non-NULL; a parked
 * fiber's nodes are unlinked by whoever ends its wait (io_ready, close, the
 * sweep, or park's unlink on timeout/cancel) or by the fiber itself when it
 * resumes; table entries may move (realloc) while fibers are parked, so
 * nodes record the fd, never an entry pointer.
 */
#include "internal.h"
#include "sys.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SWEEP_NS        1000000000  /* how often parked descriptors are re-checked (edge backends) */
#define BACKOFF_MIN_NS  1000000     /* accept under EMFILE: first pause ... */
#define BACKOFF_MAX_NS  100000000   /* ... doubling up to this */

enum {
    E_INIT   = 1u << 0,  /* non-blocking set, type probed */
    E_SOCK   = 1u << 1,  /* a socket: send/recv with MSG_DONTWAIT|MSG_NOSIGNAL */
    E_STREAM = 1u << 2,  /* a stream socket: short read means drained */
    E_REG    = 1u << 3,  /* registered with an edge-triggered reactor */
    E_RD     = 1u << 4,  /* a read may succeed: try before parking */
    E_WR     = 1u << 5,  /* a write may succeed */
    E_NOOPT  = 1u << 6   /* urgent data seen: never infer "drained" */
};

struct iowait {
    struct iowait *next, *prev;     /* circular; prev == NULL: not linked */
    struct weft__fiber *f;
    int fd;
    int dir;                        /* 0: readers, 1: writers */
};

struct parkrec {                    /* self->wait_data while parked on an fd */
    struct iowait node[2];
    int n;
};

struct fdent {
    struct iowait *q[2];            /* readers, writers (heads of circular lists) */
    uint32_t gen;
    uint8_t flags;
    uint8_t watched;                /* level backends: directions passed to watch() */
};

struct weft__iotab {
    struct weft__worker *w;
    struct fdent *ents;
    size_t n;
    size_t nwait;                   /* linked waiter nodes */
    struct weft__timer sweep;
};

static void sweep_fire(struct weft__timer *t);

/* ------------------------------------------------------------ table */

static struct weft__iotab *tab_get(struct weft__worker *w)
{
    if (weft__likely(w->io != NULL))
        return w->io;
    struct weft__iotab *t = weft__calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->w = w;
    weft__timer_init(&t->sweep, sweep_fire);
    w->io = t;
    return t;
}

int weft__io_init(struct weft__worker *w)
{
    return tab_get(w) ? 0 : -ENOMEM;
}

int64_t weft__io_tick(struct weft__worker *w, int64_t now)
{
    (void)w;
    (void)now;
    return INT64_MAX;
}

/* The entry of fd, growing the table to hold it; NULL only when out of memory. */
static struct fdent *ent_get(struct weft__worker *w, int fd)
{
    struct weft__iotab *t = tab_get(w);
    if (!t)
        return NULL;
    if (weft__likely((size_t)fd < t->n))
        return &t->ents[fd];
    size_t n = t->n ? t->n : 64;
    while (n <= (size_t)fd)
        n *= 2;
    struct fdent *e = weft__realloc(t->ents, n * sizeof *e);
    if (!e)
        return NULL;
    memset(e + t->n, 0, (n - t->n) * sizeof *e);
    t->ents = e;
    t->n = n;
    return &e[fd];
}

/* The entry of fd if the table holds one (no allocation). */
static inline struct fdent *ent_find(struct weft__worker *w, int fd)
{
    struct weft__iotab *t = w->io;
    return (t && fd >= 0 && (size_t)fd < t->n) ? &t->ents[fd] : NULL;
}

void weft__io_fini(struct weft__worker *w)
{
    struct weft__iotab *t = w->io;
    if (!t)
        return;
    if (weft__timer_armed(&t->sweep))
        weft__wheel_del(&w->wheel, &t->sweep);
    free(t->ents);
    free(t);
    w->io = NULL;
}

/* Makes fd non-blocking and learns what it is. Keeps E_REG: the caller
 * decides whether an existing registration is still trusted. */
static int fd_init(struct fdent *e, int fd)
{
    int fl = weft__sys_fcntl(fd, F_GETFL, 0);
    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK) && weft__sys_fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    uint8_t f = (uint8_t)(E_INIT | E_RD | E_WR | (e->flags & E_REG));
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0) {
        f |= E_SOCK;
        if (type == SOCK_STREAM)
            f |= E_STREAM;
    }
    e->flags = f;
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

/* Level backends: make the watched set equal the directions with waiters. */
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

static void node_unlink(struct weft__worker *w, struct iowait *n)
{
    if (!linked(n))
        return;
    struct fdent *e = ent_find(w, n->fd);
    weft__must(e != NULL, "an fd waiter without a table entry");
    q_remove(&e->q[n->dir], n);
    w->io->nwait--;
    level_sync(w, e, n->fd);
}

/* wait.unlink: the wait ended by timeout or cancellation. */
static bool io_unlink(struct weft__fiber *f)
{
    struct parkrec *p = f->wait_data;
    bool removed = false;
    for (int i = 0; i < p->n; i++) {
        removed |= linked(&p->node[i]) != 0;
        node_unlink(f->w, &p->node[i]);
    }
    return removed;
}

/* Wakes every fiber in queue dir of e with result. */
static void wake_all(struct weft__iotab *t, struct fdent *e, int dir, int result)
{
    struct iowait *h = e->q[dir];
    if (!h)
        return;
    e->q[dir] = NULL;
    struct iowait *n = h;
    do {
        struct iowait *next = n->next;
        n->next = n->prev = NULL;
        t->nwait--;
        weft__wake(n->f, result);
        n = next;
    } while (n != h);
}

/* Something made the number fd stop naming the descriptor its waiters
 * wanted: wake them with -EBADF and forget what the entry knew. */
static void ent_reset(struct weft__worker *w, struct fdent *e, int fd, uint8_t keep)
{
    wake_all(w->io, e, 0, -EBADF);
    wake_all(w->io, e, 1, -EBADF);
    if (!w->rops->edge && e->watched) {
        w->rops->watch(w->reactor, fd, 0);
        e->watched = 0;
    }
    e->gen++;
    e->flags = keep;
}

void weft__io_adopt(struct weft__worker *w, int fd, int flags)
{
    if (!w || fd < 0)
        return;
    struct fdent *e = ent_get(w, fd);
    if (!e)
        return;             /* the first call on fd will build the entry */
    uint8_t keep = (uint8_t)(E_INIT | E_RD | E_WR |
                             ((flags & WEFT__IO_SOCK) ? E_SOCK : 0) |
                             ((flags & WEFT__IO_STREAM) ? E_STREAM : 0));
    ent_reset(w, e, fd, keep);
}

void weft__io_ready(struct weft__worker *w, int fd, int events)
{
    struct fdent *e = ent_find(w, fd);
    if (!e)
        return;
    if (events & WEFT__IO_URGENT)
        e->flags |= E_NOOPT;
    int ev = events & (WEFT_READ | WEFT_WRITE);
    if (ev & WEFT_READ) {
        e->flags |= E_RD;
        wake_all(w->io, e, 0, ev);
    }
    if (ev & WEFT_WRITE) {
        e->flags |= E_WR;
        wake_all(w->io, e, 1, ev);
    }
    level_sync(w, e, fd);
}

/* Edge backends: re-arm every descriptor that has waiters, to notice ones
 * closed behind weft's back (see the top of the file). */
static void sweep_fire(struct weft__timer *tm)
{
    struct weft__iotab *t = weft__container_of(tm, struct weft__iotab, sweep);
    struct weft__worker *w = t->w;
    /* Only waits that have lasted a while are suspicious; the rest are
     * left alone (fewer syscalls, and no spurious wake-ups that would hide
     * a lost edge from the tests). */
    int64_t old = weft__clock() - SWEEP_NS / 2;
    for (size_t fd = 0; fd < t->n && t->nwait > 0; fd++) {
        struct fdent *e = &t->ents[fd];
        if (!((e->q[0] && e->q[0]->f->wait.since <= old) ||
              (e->q[1] && e->q[1]->f->wait.since <= old)))
            continue;
        int r = w->rops->watch(w->reactor, (int)fd, WEFT_READ | WEFT_WRITE);
        if (r > 0) {
            /* The number names a file that was not registered: it was
             * closed and reused behind weft's back. Some waiters may have
             * parked after the reuse (on the new file), so they are not
             * failed: they are woken to retry their call, and the entry is
             * re-probed on their next call. The new file is registered now. */
            e->flags = E_REG;
            wake_all(t, e, 0, WEFT_READ | WEFT_WRITE);
            wake_all(t, e, 1, WEFT_READ | WEFT_WRITE);
        } else if (r == -EBADF || r == -ENOENT) {
            ent_reset(w, e, (int)fd, 0);
        }
    }
    if (t->nwait > 0)
        weft__wheel_add(&w->wheel, &t->sweep,
                        weft__tick_of_deadline(w, weft__clock() + SWEEP_NS));
}

/* ------------------------------------------------------------ parking */

/* Parks self until fd is reported ready for one of events (WEFT_READ,
 * WEFT_WRITE or both). Returns the reported events (> 0), or -ETIMEDOUT,
 * -ECANCELED, -EBADF (closed meanwhile), -ENOMEM. */
static int park_fd(struct weft__worker *w, struct weft__fiber *self, int fd, int events,
                   int64_t deadline)
{
    struct fdent *e = ent_get(w, fd);
    if (!e)
        return -ENOMEM;
    if (w->rops->edge && !(e->flags & E_REG)) {
        int r = w->rops->watch(w->reactor, fd, WEFT_READ | WEFT_WRITE);
        if (r == -EPERM)
            return events;  /* a regular file: epoll refuses it; it is always ready */
        if (r < 0)
            return r;
        e->flags |= E_REG;
    }
    struct parkrec p;
    p.n = 0;
    for (int dir = 0; dir < 2; dir++) {
        if (!(events & (dir ? WEFT_WRITE : WEFT_READ)))
            continue;
        struct iowait *n = &p.node[p.n++];
        n->f = self;
        n->fd = fd;
        n->dir = dir;
        q_push(&e->q[dir], n);
        w->io->nwait++;
    }
    int r = level_sync(w, e, fd);
    if (r < 0) {
        for (int i = 0; i < p.n; i++)
            node_unlink(w, &p.node[i]);
        return r;
    }
    if (w->rops->edge && !weft__timer_armed(&w->io->sweep))
        weft__wheel_add(&w->wheel, &w->io->sweep,
                        weft__tick_of_deadline(w, weft__clock() + SWEEP_NS));
    self->wait.kind = WEFT__W_FD;
    self->wait.obj = (const void *)(intptr_t)fd;
    self->wait.detail = events;
    self->wait.unlink = io_unlink;
    self->wait_data = &p;
    r = weft__park(w, self, deadline, NULL);
    /* Woken for one direction while queued for both (weft_wait_fd): the
     * other node is still linked. */
    w = self->w;
    for (int i = 0; i < p.n; i++)
        node_unlink(w, &p.node[i]);
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
    if (weft__unlikely(!(e->flags & E_INIT))) {
        int r = fd_init(e, fd);
        if (r < 0)
            return r;
    } else if (!(e->flags & E_SOCK)) {
        /* Not a socket, so no MSG_DONTWAIT: the call relies on O_NONBLOCK.
         * If it is gone, the number was closed and reused behind weft's
         * back (or the flag was cleared): rebuild the entry. */
        int fl = weft__sys_fcntl(fd, F_GETFL, 0);
        if (fl < 0)
            return -errno;
        if (!(fl & O_NONBLOCK)) {
            ent_reset(w, e, fd, 0);
            int r = fd_init(e, fd);
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

/* After a park: re-find the entry (the table may have moved) and make sure
 * the number still names the same descriptor. */
static inline int resume(struct weft__worker *w, int fd, uint32_t gen, struct fdent **e)
{
    *e = ent_find(w, fd);
    if (!*e || (*e)->gen != gen)
        return -EBADF;
    if (weft__unlikely(!((*e)->flags & E_INIT)))
        return fd_init(*e, fd);     /* the sweep found the number reused */
    return 0;
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

static ssize_t do_read(enum op op, struct fdent *e, int fd, const struct rd *a)
{
    int sock = e->flags & E_SOCK;
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
    /* Only plain reads of a stream socket may conclude "drained". */
    int may_drain = (op == OP_READ || op == OP_READV ||
                     (op == OP_RECV && !(a->flags & (MSG_PEEK | MSG_OOB))));
    uint32_t gen = e->gen;
    for (;;) {
        if ((e->flags & E_RD) || past(deadline)) {
            ssize_t n = do_read(op, e, fd, a);
            if (n > 0) {
                if ((size_t)n < want && may_drain &&
                    (e->flags & (E_STREAM | E_NOOPT)) == E_STREAM)
                    e->flags &= (uint8_t)~E_RD;
                return n;
            }
            if (n == 0)
                return 0;
            int err = errno;
            if (err == EINTR)
                continue;
            if (err != EAGAIN && err != EWOULDBLOCK)
                return -err;
            e->flags &= (uint8_t)~E_RD;
        }
        r = park_fd(w, self, fd, WEFT_READ, deadline);
        w = self->w;
        if (r < 0)
            return r;
        if ((r = resume(w, fd, gen, &e)) < 0)
            return r;
        e->flags |= E_RD;
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

static ssize_t do_write(enum wop op, struct fdent *e, int fd, const struct wr *a)
{
    int sock = e->flags & E_SOCK;
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
    uint32_t gen = e->gen;
    for (;;) {
        if ((e->flags & E_WR) || past(deadline)) {
            ssize_t n = do_write(op, e, fd, a);
            if (n >= 0)
                return n;
            int err = errno;
            if (err == EINTR)
                continue;
            if (err != EAGAIN && err != EWOULDBLOCK)
                return -err;
            e->flags &= (uint8_t)~E_WR;
        }
        r = park_fd(w, self, fd, WEFT_WRITE, deadline);
        w = self->w;
        if (r < 0)
            return r;
        if ((r = resume(w, fd, gen, &e)) < 0)
            return r;
        e->flags |= E_WR;
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
    /* The hints cannot answer this: the caller does its own I/O, which
     * never tells io.c about EAGAIN. Ask the kernel. */
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
    r = park_fd(w, self, fd, events, deadline);
    return r < 0 ? r : (r & events ? r & events : events);
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
    uint32_t gen = e->gen;
    int64_t pause = BACKOFF_MIN_NS;
    for (;;) {
        if ((e->flags & E_RD) || past(deadline)) {
            int fd = WEFT__FI(WEFT__FS_ACCEPT, -1, weft__sys_accept4(lfd, addr, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (fd >= 0) {
                int stream = (e->flags & E_STREAM) ? WEFT__IO_STREAM : 0;
                weft__io_adopt(w, fd, WEFT__IO_SOCK | stream);
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
                e->flags &= (uint8_t)~E_RD;
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
                if ((r = resume(w, lfd, gen, &e)) < 0)
                    return r;
                e->flags |= E_RD;
                continue;
            default:
                return -err;
            }
        }
        r = park_fd(w, self, lfd, WEFT_READ, deadline);
        w = self->w;
        if (r < 0)
            return r;
        if ((r = resume(w, lfd, gen, &e)) < 0)
            return r;
        e->flags |= E_RD;
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
    if (!(e->flags & E_SOCK))
        return -ENOTSOCK;
    /* connect(2) has no MSG_DONTWAIT: make sure of O_NONBLOCK (cheap next
     * to a connect, and the number may have been reused behind our back). */
    int fl = weft__sys_fcntl(fd, F_GETFL, 0);
    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK) && weft__sys_fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    uint32_t gen = e->gen;
    int64_t pause = BACKOFF_MIN_NS;
    for (;;) {
        if (weft__sys_connect(fd, addr, addrlen) == 0)
            return 0;
        int err = errno;
        if (err == EAGAIN) {
            /* A Unix socket whose listener's backlog is full. */
            r = back_off(&pause, deadline, -EAGAIN);
            w = self->w;
            if (r < 0)
                return r;
            if ((r = resume(w, fd, gen, &e)) < 0)
                return r;
            continue;
        }
        if (err != EINPROGRESS && err != EINTR)
            return -err;
        break;
    }
    /* In progress: it is done (or failed) when the socket turns writable. */
    for (;;) {
        r = park_fd(w, self, fd, WEFT_WRITE, deadline);
        w = self->w;
        if (r < 0)
            return r;
        if ((r = resume(w, fd, gen, &e)) < 0)
            return r;
        int soerr = 0;
        socklen_t len = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
            return -errno;
        if (soerr)
            return -soerr;
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        if (weft__sys_poll0(&p, 1) == 1 && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
            e->flags |= E_WR;
            return 0;
        }
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
         * epoll would keep reporting it under this number. */
        if (e->flags & E_REG)
            w->rops->watch(w->reactor, fd, 0);
        ent_reset(w, e, fd, 0);
    }
    /* On Linux the descriptor is released even when close() says EINTR;
     * retrying could close a number another thread just got. */
    if (weft__sys_close(fd) != 0 && errno != EINTR)
        return -errno;
    return 0;
}
