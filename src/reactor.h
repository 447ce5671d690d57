/* reactor.h - the readiness backend contract (private).
 *
 * A reactor is the one place a worker blocks: it waits for descriptor
 * readiness, for a wake-up from another thread, or for a timeout (the next
 * timer), whichever comes first. The contract is kept as small as Redis'
 * ae backends so a platform is added by adding one file:
 *
 *   open   make the backend state and its cross-thread wake-up channel
 *   close  release it (descriptors it watched are not closed)
 *   poll   wait up to timeout_ms (-1: no limit, 0: just look) and report
 *          every ready descriptor through weft__io_ready(); a wake-up is
 *          consumed silently. Returns how many were reported or -errno.
 *   wake   make a poll in progress (or the next one) return at once;
 *          safe from any thread and async-signal-safe
 *   watch  start reporting fd for WEFT_READ|WEFT_WRITE (0: stop). Edge or
 *          level triggered is the backend's choice (see .edge):
 *          weft__io_ready() copes with either. Returns 0, or 1 when the
 *          backend had to add fd afresh (edge backends: io.c's sweep learns
 *          from it that a registration vanished), or -errno.
 *
 * Backends: reactor_epoll.c (Linux default), reactor_poll.c (portable
 * fallback, also tested on Linux), reactor_iocp.c (Windows).
 */
#ifndef WEFT_REACTOR_H
#define WEFT_REACTOR_H

struct weft__worker;
struct weft__reactor;

struct weft__reactor_ops {
    const char *name;
    /* 1: watch(fd, READ|WRITE) once and readiness is reported as edges
     * (epoll ET); 0: level-triggered, io.c keeps watch() equal to the
     * directions that have waiters (poll). */
    int edge;
    int  (*open)(struct weft__reactor **out, struct weft__worker *w);
    void (*close)(struct weft__reactor *r);
    int  (*poll)(struct weft__reactor *r, int timeout_ms);
    int  (*wake)(struct weft__reactor *r);
    int  (*watch)(struct weft__reactor *r, int fd, int events);
};

extern const struct weft__reactor_ops weft__reactor_epoll;
extern const struct weft__reactor_ops weft__reactor_poll;

/* Called by a backend's poll for each ready descriptor (io.c). events is a
 * mask of WEFT_READ, WEFT_WRITE; errors and hang-ups are reported as both. */
void weft__io_ready(struct weft__worker *w, int fd, int events);
/* Extra bit in events: out-of-band data is pending (EPOLLPRI/POLLPRI). A
 * TCP read stops short at the urgent mark with data still queued, so io.c
 * must stop treating short reads on fd as proof the socket is drained. */
#define WEFT__IO_URGENT 4

/* io.c: make w's descriptor table now (several workers share worker 0's). */
int weft__io_init(struct weft__worker *w);
/* io.c: periodic work of the descriptor table; returns the absolute ns time
 * at which it next wants to run, INT64_MAX for never. */
#include <stdint.h>
int64_t weft__io_tick(struct weft__worker *w, int64_t now);

#endif
