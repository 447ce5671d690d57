/* reactor_poll.c - the portable readiness backend on poll(2).
 *
 * Level-triggered: each poll() passes the descriptors that have waiters
 * (io.c keeps the set current through watch), plus the read end of a
 * self-pipe that other threads write to wake the worker. Because it is
 * level-triggered, io.c passes only the directions that have waiters (a
 * writable socket would otherwise be reported on every call). A descriptor
 * closed behind weft's back shows up as POLLNVAL and wakes its waiters,
 * who then get EBADF from their syscall.
 */
#include "internal.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct weft__reactor {
    struct weft__worker *w;
    int pipe_rd, pipe_wr;
    struct pollfd *fds;      /* [0] is the wake-up pipe */
    int *slot_of;            /* fd -> index in fds, or 0 */
    size_t nfds, cap, nslot;
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
    r->cap = 16;
    r->fds = weft__malloc(r->cap * sizeof *r->fds);
    if (!err && !r->fds)
        err = -ENOMEM;
    if (err) {
        close(p[0]);
        close(p[1]);
        free(r->fds);
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
    free(r);
}

static int pl_poll(struct weft__reactor *r, int timeout_ms)
{
    int n = poll(r->fds, (nfds_t)r->nfds, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int reported = 0;
    if (r->fds[0].revents) {
        char buf[64];
        while (read(r->pipe_rd, buf, sizeof buf) > 0)
            ;
        n--;
    }
    /* Walk backwards: a waiter woken here may stop watching its fd, which
     * moves the last entry into its place. */
    for (size_t i = r->nfds; n > 0 && i-- > 1;) {
        short re = r->fds[i].revents;
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
        r->fds[i].revents = 0;
        weft__io_ready(r->w, r->fds[i].fd, events);
        reported++;
    }
    return reported;
}

static int pl_wake(struct weft__reactor *r)
{
    char c = 1;
    ssize_t n = write(r->pipe_wr, &c, 1);
    /* A full pipe already holds a wake-up. */
    return n == 1 || errno == EAGAIN ? 0 : -errno;
}

static int pl_watch(struct weft__reactor *r, int fd, int events)
{
    if (fd < 0)
        return -EBADF;
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
            struct pollfd *f = weft__realloc(r->fds, 2 * r->cap * sizeof *f);
            if (!f)
                return -ENOMEM;
            r->fds = f;
            r->cap *= 2;
        }
        i = (int)r->nfds++;
        r->slot_of[fd] = i;
        r->fds[i].fd = fd;
        r->fds[i].revents = 0;
    }
    r->fds[i].events = (short)(((events & WEFT_READ) ? POLLIN : 0) |
                               ((events & WEFT_WRITE) ? POLLOUT : 0));
    return 0;
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
