/* reactor_epoll.c - the Linux readiness backend: one epoll instance per
 * runtime (shared by its workers), an eventfd for cross-thread wake-ups.
 *
 * Descriptors are registered once, edge-triggered, for both directions:
 * a descriptor then costs no further epoll_ctl() however often fibers wait
 * on it, and io.c keeps the per-direction waiters. The eventfd is
 * registered level-triggered and drained when it fires, so a wake-up that
 * lands while the worker is busy is still seen at its next poll.
 *
 * watch() answers 1 when it had to add the descriptor (EPOLL_CTL_ADD
 * succeeded) and 0 when it was registered already: io.c's sweep uses that
 * to notice a registration that vanished because the descriptor was closed
 * behind weft's back. EPOLLPRI is requested with EPOLLIN and passed on as
 * WEFT__IO_URGENT: TCP urgent data makes a read stop short at the urgent
 * mark, so io.c must stop inferring "drained" from short reads on that
 * descriptor. epoll reports only what was asked for (EPOLLERR and EPOLLHUP
 * excepted), so without EPOLLPRI in the mask an urgent byte arriving in
 * the same burst as ordinary data would be reported as plain EPOLLIN.
 *
 * Several workers: one thread polls at a time (the scheduler sees to it),
 * so the event array needs no lock; epoll_ctl (watch) and the eventfd write
 * (wake) are safe from any thread while another waits in epoll_wait, and a
 * descriptor added meanwhile is reported by the wait in progress. Reports
 * go to the polling thread's worker, so the fibers it wakes run there.
 */
#include "internal.h"
#include "sys.h"

#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS 1024

struct weft__reactor {
    struct weft__worker *w;
    int epfd;
    int evfd;
    struct epoll_event ev[MAX_EVENTS];
};

static int ep_open(struct weft__reactor **out, struct weft__worker *w)
{
    struct weft__reactor *r = weft__calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->w = w;
    r->epfd = weft__epoll_create1(EPOLL_CLOEXEC);
    if (r->epfd < 0) {
        int err = -errno;
        free(r);
        return err;
    }
    r->evfd = weft__eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->evfd < 0) {
        int err = -errno;
        close(r->epfd);
        free(r);
        return err;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = -1 };
    if (weft__epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->evfd, &ev) != 0) {
        int err = -errno;
        close(r->evfd);
        close(r->epfd);
        free(r);
        return err;
    }
    *out = r;
    return 0;
}

static void ep_close(struct weft__reactor *r)
{
    close(r->evfd);
    close(r->epfd);
    free(r);
}

static int ep_poll(struct weft__reactor *r, int timeout_ms)
{
    struct weft__worker *w = weft__worker();
    if (!w)
        w = r->w;
    int n = epoll_wait(r->epfd, r->ev, MAX_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int reported = 0;
    for (int i = 0; i < n; i++) {
        struct epoll_event *e = &r->ev[i];
        if (e->data.fd < 0) {
            uint64_t v;
            ssize_t got = read(r->evfd, &v, sizeof v);
            (void)got;
            continue;
        }
        int events = 0;
        if (e->events & (EPOLLIN | EPOLLRDHUP | EPOLLPRI))
            events |= WEFT_READ;
        if (e->events & EPOLLPRI)
            events |= WEFT__IO_URGENT;
        if (e->events & EPOLLOUT)
            events |= WEFT_WRITE;
        if (e->events & (EPOLLERR | EPOLLHUP))
            events |= WEFT_READ | WEFT_WRITE;
        weft__io_ready(w, e->data.fd, events);
        reported++;
    }
    return reported;
}

static int ep_wake(struct weft__reactor *r)
{
    uint64_t one = 1;
    /* The raw system call: wake runs in signal handlers (weft_rt_shutdown),
     * where libweft_hook's write() would not be safe. */
    ssize_t n = weft__sys_write(r->evfd, &one, sizeof one);
    /* EAGAIN means the counter is already non-zero: a wake-up is pending. */
    return n == (ssize_t)sizeof one || errno == EAGAIN ? 0 : -errno;
}

static int ep_watch(struct weft__reactor *r, int fd, int events)
{
    if (events == 0)
        return weft__epoll_ctl(r->epfd, EPOLL_CTL_DEL, fd, NULL) == 0 ? 0 : -errno;
    struct epoll_event ev = { .events = EPOLLET | EPOLLRDHUP, .data.fd = fd };
    if (events & WEFT_READ)
        ev.events |= EPOLLIN | EPOLLPRI;
    if (events & WEFT_WRITE)
        ev.events |= EPOLLOUT;
    if (weft__epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return 1;
    if (errno == EEXIST && weft__epoll_ctl(r->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
        return 0;
    return -errno;
}

const struct weft__reactor_ops weft__reactor_epoll = {
    .name = "epoll",
    .edge = 1,
    .open = ep_open,
    .close = ep_close,
    .poll = ep_poll,
    .wake = ep_wake,
    .watch = ep_watch,
};
