/* reactor.h - the readiness backend contract (private).
 *
 * A reactor is the one place a worker blocks: it waits for descriptor
 * readiness, for a wake-up from another thread, or for a timeout (the next
 * timer), whichever comes first. The contract is kept as small as Redis'
 * ae backends so a readiness backend is added by adding one file (a new
 * platform needs more than that: futexes, signalfd, stack guards and
 * fault handling are Linux code elsewhere in src/):
 *
 *   open   make the backend state and its cross-thread wake-up channel
 *   close  release it (descriptors it watched are not closed)
 *   poll   wait up to timeout_ms (-1: no limit, 0: just look) and report
 *          every ready descriptor through weft__io_ready(); a wake-up is
 *          consumed silently. Returns how many were reported or -errno.
 *   wake   make a poll in progress (or the next one) return at once;
 *          safe from any thread and async-signal-safe
 *   watch  start reporting fd for WEFT_READ|WEFT_WRITE (0: stop); with
 *          WEFT_READ the backend also asks for pending urgent data
 *          (EPOLLPRI, POLLPRI) and reports it as WEFT__IO_URGENT|WEFT_READ
 *          (io.c needs it, see below). Edge or level triggered is the
 *          backend's choice (see .edge): weft__io_ready() copes with
 *          either. Returns 0, or 1 when the backend had to add fd
 *          afresh (edge backends: io.c's sweep learns from it that a
 *          registration vanished), or -errno.
 *
 * Threads: exactly one thread at a time calls poll; open/close run with no
 * poll in progress; watch and wake may be called from any worker thread
 * while another polls (a descriptor newly watched is seen by the poll in
 * progress, or that poll returns so the next one sees it).
 *
 * Backends: reactor_epoll.c (Linux default) and reactor_poll.c (portable
 * fallback, also tested on Linux). There is no Windows backend yet: an
 * IOCP one is planned (docs/architecture.md, "Not built yet").
 */
#ifndef WEFT_REACTOR_H
#define WEFT_REACTOR_H

#include <stdint.h>

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
 * mask of WEFT_READ, WEFT_WRITE; errors and hang-ups are reported as both.
 * w is the polling worker (fibers it wakes go on its run queue); it may be
 * called while other workers watch() or wake() the same reactor. */
void weft__io_ready(struct weft__worker *w, int fd, int events);

/* io.c. Several workers share one reactor and one descriptor table (the
 * scheduler points every worker's reactor, rops and io at worker 0's).
 * weft__io_init makes w->io now (0 or -ENOMEM): the scheduler calls it for
 * worker 0 before starting the others; a single worker may leave the table
 * to be made on first use. weft__io_fini frees the table only for the
 * worker that made it (worker 0, to be finalised after the others), and
 * just drops the reference for the rest.
 * weft__io_tick runs the sweep of descriptors closed behind weft's back
 * when it is due and fibers wait on descriptors (at most one thread at a
 * time; a caller that finds another sweeping skips it), and returns the
 * absolute weft__clock() time at which it next wants to be called, or
 * INT64_MAX when no fiber waits on any descriptor. The scheduler loop
 * calls it each round and blocks in poll no longer than that. */
int  weft__io_init(struct weft__worker *w);
int64_t weft__io_tick(struct weft__worker *w, int64_t now);
/* Extra bit in events: out-of-band data is pending (EPOLLPRI/POLLPRI). A
 * TCP read stops short at the urgent mark with data still queued, so io.c
 * must stop treating short reads on fd as proof the socket is drained. */
#define WEFT__IO_URGENT 4

#endif
