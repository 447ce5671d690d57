/* reactor_poll.c - the portable readiness backend on poll(2).
 *
 * Level-triggered: each poll() passes the descriptors that have waiters
 * (io.c keeps the set current through watch), plus the read end of a
 * self-pipe that other threads write to wake the worker. Because it is
 * level-triggered, io.c passes only the directions that have waiters (a
 * writable socket would otherwise be reported on every call); a read
 * direction asks for POLLPRI too, so TCP urgent data is reported (as
 * WEFT__IO_URGENT, see reactor.h). A descriptor
 * closed behind weft's back shows up as POLLNVAL and wakes its waiters,
 * who then get EBADF from their syscall.
 *
 * Several workers share one instance: watch() may come from any worker
 * while another blocks in poll(). The set (fds, slot_of) is guarded by a
 * spinlock, always taken (this is the slow portable fallback; uncontended
 * it costs a few ns against a poll() syscall per call); poll() works on a
 * private copy made under the lock, and a watch() that adds a descriptor
 * or a direction while that copy is being polled wakes the poller through
 * the self-pipe, so the new waiter is seen at once. The lock is never held
 * across poll() nor while reporting (weft__io_ready takes the entry lock
 * and calls watch(): lock order entry lock, then this one).
 */
#include "internal.h"
#include "sys.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct weft__reactor {
    struct weft__worker *w;
    int pipe_rd, pipe_wr;
    weft__lockword lock;     /* guards fds, slot_of, nfds, cap, nslot, polling */
    struct pollfd *fds;      /* [0] is the wake-up pipe */
    int *slot_of;            /* fd -> index in fds, or 0 */
    size_t nfds, cap, nslot;
    bool polling;            /* a copy of the set is being polled */
    struct pollfd *pv;       /* the poller's copy (only the polling thread touches it) */
    size_t pvcap;
    struct pollfd *spare;    /* cap entries, made when fds grew: the poller's next copy */
};

static int set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

static int pl_open(struct weft__reactor **out, struct weft__worker *w)
{
    struct weft__reactor *r = weft__calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    int p[2];
    if (pipe(p) != 0) {
        int err = -errno;
        free(r);
        return err;
    }
    int err = set_flags(p[0]);
    if (!err)
        err = set_flags(p[1]);
    r->cap = r->pvcap = 16;
    r->fds = weft__malloc(r->cap * sizeof *r->fds);
    r->pv = weft__malloc(r->pvcap * sizeof *r->pv);
    if (!err && (!r->fds || !r->pv))
        err = -ENOMEM;
    if (err) {
        close(p[0]);
        close(p[1]);
        free(r->fds);
        free(r->pv);
        free(r);
        return err;
    }
    r->w = w;
    r->pipe_rd = p[0];
    r->pipe_wr = p[1];
    r->fds[0] = (struct pollfd){ .fd = p[0], .events = POLLIN };
    r->nfds = 1;
    *out = r;
    return 0;
}

static void pl_close(struct weft__reactor *r)
{
    close(r->pipe_rd);
    close(r->pipe_wr);
    free(r->fds);
    free(r->slot_of);
    free(r->pv);
    free(r->spare);
    free(r);
}

static int pl_poll(struct weft__reactor *r, int timeout_ms)
{
    struct weft__worker *w = weft__worker();
    if (!w)
        w = r->w;
    /* Copy the set under the lock. The copy never needs allocating here
     * (poll cannot fail for memory): watch() made a spare as large as fds
     * whenever fds grew. */
    struct pollfd *old = NULL;
    weft__spin_lock(&r->lock);
    size_t nfds = r->nfds;
    if (nfds > r->pvcap) {
        old = r->pv;
        r->pv = r->spare;
        r->pvcap = r->cap;
        r->spare = NULL;
    }
    memcpy(r->pv, r->fds, nfds * sizeof *r->pv);
    r->polling = true;
    weft__spin_unlock(&r->lock);
    free(old);

    int n = poll(r->pv, (nfds_t)nfds, timeout_ms);
    int err = errno;
    weft__spin_lock(&r->lock);
    r->polling = false;
    weft__spin_unlock(&r->lock);
    if (n < 0)
        return err == EINTR ? 0 : -err;
    int reported = 0;
    if (r->pv[0].revents) {
        char buf[64];
        while (read(r->pipe_rd, buf, sizeof buf) > 0)
            ;
        n--;
    }
    /* The copy is private: waiters woken here may change the set freely. */
    for (size_t i = 1; n > 0 && i < nfds; i++) {
        short re = r->pv[i].revents;
        if (!re)
            continue;
        n--;
        int events = 0;
        if (re & (POLLIN | POLLPRI))
            events |= WEFT_READ;
        if (re & POLLPRI)
            events |= WEFT__IO_URGENT;
        if (re & POLLOUT)
            events |= WEFT_WRITE;
        if (re & (POLLERR | POLLHUP | POLLNVAL))
            events |= WEFT_READ | WEFT_WRITE;
        weft__io_ready(w, r->pv[i].fd, events);
        reported++;
    }
    return reported;
}

static int pl_wake(struct weft__reactor *r)
{
    char c = 1;
    /* The raw system call: see ep_wake. */
    ssize_t n = weft__sys_write(r->pipe_wr, &c, 1);
    /* A full pipe already holds a wake-up. */
    return n == 1 || errno == EAGAIN ? 0 : -errno;
}

static int watch_locked(struct weft__reactor *r, int fd, int events, bool *grew)
{
    if ((size_t)fd >= r->nslot) {
        if (events == 0)
            return 0;
        size_t n = r->nslot ? r->nslot : 64;
        while (n <= (size_t)fd)
            n *= 2;
        int *s = weft__realloc(r->slot_of, n * sizeof *s);
        if (!s)
            return -ENOMEM;
        memset(s + r->nslot, 0, (n - r->nslot) * sizeof *s);
        r->slot_of = s;
        r->nslot = n;
    }
    int i = r->slot_of[fd];
    if (events == 0) {
        if (i) {
            size_t last = r->nfds - 1;
            r->fds[i] = r->fds[last];
            r->slot_of[r->fds[i].fd] = i;
            r->slot_of[fd] = 0;
            r->nfds--;
        }
        return 0;
    }
    if (!i) {
        if (r->nfds == r->cap) {
            /* The poller's next copy is made here too, so that poll()
             * never allocates. */
            struct pollfd *spare = weft__malloc(2 * r->cap * sizeof *spare);
            if (!spare)
                return -ENOMEM;
            struct pollfd *f = weft__realloc(r->fds, 2 * r->cap * sizeof *f);
            if (!f) {
                free(spare);
                return -ENOMEM;
            }
            r->fds = f;
            r->cap *= 2;
            free(r->spare);
            r->spare = spare;
        }
        i = (int)r->nfds++;
        r->slot_of[fd] = i;
        r->fds[i].fd = fd;
        r->fds[i].events = 0;
        r->fds[i].revents = 0;
    }
    /* POLLPRI with POLLIN: pending TCP urgent data must reach io.c as
     * WEFT__IO_URGENT (see reactor.h). Like POLLIN it is reported only
     * while there is something to read: a read past the urgent mark
     * clears it. */
    short ev = (short)(((events & WEFT_READ) ? POLLIN | POLLPRI : 0) |
                       ((events & WEFT_WRITE) ? POLLOUT : 0));
    *grew = (ev & ~r->fds[i].events) != 0;
    r->fds[i].events = ev;
    return 0;
}

static int pl_watch(struct weft__reactor *r, int fd, int events)
{
    if (fd < 0)
        return -EBADF;
    bool grew = false;
    weft__spin_lock(&r->lock);
    int ret = watch_locked(r, fd, events, &grew);
    bool wake = grew && r->polling;
    weft__spin_unlock(&r->lock);
    /* The poll in progress does not have this descriptor or direction. */
    if (wake)
        pl_wake(r);
    return ret;
}

const struct weft__reactor_ops weft__reactor_poll = {
    .name = "poll",
    .edge = 0,
    .open = pl_open,
    .close = pl_close,
    .poll = pl_poll,
    .wake = pl_wake,
    .watch = pl_watch,
};
