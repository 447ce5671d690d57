/* sched.c - the worker: run queue, context switches, parking and waking,
 * and the scheduler loop that runs timers and blocks in the reactor.
 *
 * A switch goes straight from one fiber to the next: the fiber that yields
 * or parks pops the run queue itself and jumps to the head, so a yield costs
 * one fcontext jump plus a few loads and stores. The worker's own thread
 * context (w->sched) is entered only when the run queue is empty (to block
 * in the reactor), when its own turn in the run queue comes, or when it is
 * due: every BUDGET switches the switching fiber reads the clock and, if a
 * timer has fallen due (or the reactor has not been looked at for
 * IO_INTERVAL), jumps to the scheduler instead. A look at the reactor
 * while fibers are runnable waits for the scheduler's turn: it queues
 * itself behind the fibers runnable at that moment, so a batch woken by
 * one poll runs whole. That bounds how long fibers that keep yielding can
 * delay timers (about a millisecond) and I/O (one round of the run queue,
 * at least a millisecond apart) while keeping the clock read (tens of ns)
 * and the reactor syscall (about a microsecond here) off the per-switch
 * path.
 *
 * Every jump passes the context being left as the transfer's data; the
 * side that resumes stores the saved context into it, or, if that fiber has
 * just exited, gives its stack back to the pool (a stack cannot be freed
 * while it is still running). The resumed side also learns its worker from
 * the fiber that jumped to it, never from a thread-local cached before the
 * jump: after a blocking call a fiber may be running on another thread.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define BUDGET      64
#define IO_INTERVAL 1000000      /* ns: longest a busy worker goes without looking at I/O */
#define TRIM_INTERVAL 1000000000 /* ns: stack pool trim period */

static __thread struct weft__worker *tls_worker
#if defined(__GNUC__) && !defined(_WIN32)
    __attribute__((tls_model("initial-exec")))
#endif
    ;

__attribute__((noinline)) struct weft__worker *weft__worker(void) { return tls_worker; }

void weft__worker_set(struct weft__worker *w) { tls_worker = w; }

static inline void count(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

void weft__rq_push(struct weft__worker *w, struct weft__fiber *f)
{
    f->next = NULL;
    if (w->rq_tail)
        w->rq_tail->next = f;
    else
        w->rq_head = f;
    w->rq_tail = f;
}

static inline struct weft__fiber *rq_pop(struct weft__worker *w)
{
    struct weft__fiber *f = w->rq_head;
    if (f) {
        w->rq_head = f->next;
        if (!w->rq_head)
            w->rq_tail = NULL;
    }
    return f;
}

static inline void after_switch(weft__transfer t)
{
    struct weft__fiber *prev = t.data;
    if (weft__unlikely(prev->state == WEFT__F_EXITING))
        weft__fiber_reap(prev->w, prev);
    else
        prev->ctx = t.fctx;
}

/* The one call site of the context switch (see arch/fcontext.h). The empty
 * asm after the call keeps the compiler from turning it into a tail jump,
 * which would make the saved return address differ between callers. */
__attribute__((noinline)) WEFT__NO_TSAN static weft__transfer switch_ctx(weft__fctx to, void *data,
                                                                        struct weft__san *to_san)
{
    /* TSan must learn of the switch right before it, with no instrumented
     * frame entered after it: this function is not instrumented. */
    weft__san_tsan_switch(to_san);
#ifdef WEFT__HAVE_RESUME_IDENTITY
    weft__transfer t = weft__ontop_fcontext(to, data, weft__resume_identity);
#else
    weft__transfer t = weft__jump_fcontext(to, data);
#endif
    __asm__ volatile("" ::: "memory");
    return t;
}

static inline void jump(struct weft__worker *w, struct weft__fiber *from, struct weft__fiber *to)
{
    if (weft__unlikely(from->canary != NULL) && *from->canary != WEFT__CANARY)
        weft__overflow_report(from, "its stack canary was overwritten");
    to->w = w;
    w->current = to;
    count(&w->n_switches);
    weft__san_before_jump(&from->san, &to->san, from->state == WEFT__F_EXITING);
    weft__transfer t = switch_ctx(to->ctx, from, &to->san);
    weft__san_after_jump(&from->san);
    after_switch(t);
}

static int64_t next_timer_ns(const struct weft__worker *w)
{
    uint64_t tick = weft__wheel_next(&w->wheel);
    if (tick == WEFT__TICK_NONE)
        return INT64_MAX;
    return w->epoch + (int64_t)tick * WEFT__TICK_NS;
}

/* The budget ran out: is anything waiting for the scheduler? */
static bool sched_due(struct weft__worker *w)
{
    w->budget = BUDGET;
    return w->due_entry = weft__clock() >= w->next_check;
}

void weft__switch_away(struct weft__worker *w, struct weft__fiber *self)
{
    struct weft__fiber *next;
    if (weft__likely(w->rq_head != NULL) &&
        (weft__likely(--w->budget != 0) || !sched_due(w))) {
        next = rq_pop(w);
        if (next == self) {
            self->state = WEFT__F_RUNNING;
            return;
        }
        next->state = WEFT__F_RUNNING;
    } else {
        next = &w->sched;
    }
    jump(w, self, next);
}

void weft__yield(struct weft__worker *w, struct weft__fiber *self)
{
    self->state = WEFT__F_RUNNABLE;
    weft__rq_push(w, self);
    weft__switch_away(w, self);
}

/* The thread-local is read directly here, on entry, before any switch:
 * nothing read from it is used after weft__yield() returns. */
void weft_yield(void)
{
    struct weft__worker *w = tls_worker;
    if (w && w->current != &w->sched)
        weft__yield(w, w->current);
}

int weft__park(struct weft__worker *w, struct weft__fiber *self, int64_t deadline,
               weft__lockword *lock)
{
    int r;
    if (lock)
        weft__unlock(w, lock);
    if ((self->flags & WEFT__FL_CANCELLED) && !self->wait.uncancellable) {
        r = -ECANCELED;
        goto unlink;
    }
    if (deadline != WEFT_FOREVER) {
        int64_t now = weft__clock();
        if (deadline <= now) {
            r = -ETIMEDOUT;
            goto unlink;
        }
        weft__wheel_add(&w->wheel, &self->timer, weft__tick_of_deadline(w, deadline));
        if (deadline < w->next_check)
            w->next_check = deadline;
    }
    self->wait.deadline = deadline;
    self->wait.since = w->now;
    self->state = WEFT__F_PARKED;
    count(&w->n_parks);
    weft__switch_away(w, self);
    r = self->wake_result;
    goto out;
unlink:
    if (self->wait.unlink)
        self->wait.unlink(self);
out:
    self->wait.kind = WEFT__W_NONE;
    self->wait.unlink = NULL;
    self->wait.uncancellable = 0;
    return r;
}

bool weft__wake(struct weft__fiber *f, int result)
{
    if (f->state != WEFT__F_PARKED)
        return false;
    struct weft__worker *w = f->w;
    if (weft__timer_armed(&f->timer))
        weft__wheel_del(&w->wheel, &f->timer);
    f->wake_result = result;
    f->state = WEFT__F_RUNNABLE;
    weft__rq_push(w, f);
    return true;
}

void weft__fiber_timeout(struct weft__timer *t)
{
    struct weft__fiber *f = weft__container_of(t, struct weft__fiber, timer);
    if (f->state != WEFT__F_PARKED)
        return;
    if (!f->wait.unlink || f->wait.unlink(f))
        weft__wake(f, -ETIMEDOUT);
}

/* main_fn has returned: everything still running is cancelled, and fibers
 * spawned from now on start cancelled, so the runtime can wind down. */
static void cancel_one(struct weft__fiber *f, void *ctx)
{
    (void)ctx;
    if (f->state != WEFT__F_DONE && f->state != WEFT__F_EXITING)
        weft__fiber_cancel(f);
}

static void begin_shutdown(struct weft_rt *rt)
{
    rt->shutting_down = true;
    weft__fiber_each(rt, cancel_one, NULL);
}

void weft__fiber_entry(weft__transfer t)
{
    struct weft__fiber *prev = t.data;
    struct weft__worker *w = prev->w;
    struct weft__fiber *self = w->current;
    weft__san_after_jump(&self->san);
    after_switch(t);
    if (self->flags & WEFT__FL_VOIDFN) {
        self->vfn(self->arg);
        self->result = NULL;
    } else {
        self->result = self->fn(self->arg);
    }
    weft__fiber_exit(self->w, self);
}

_Noreturn void weft__fiber_exit(struct weft__worker *w, struct weft__fiber *self)
{
    struct weft_rt *rt = w->rt;
    rt->live--;
    if (self->joiner)
        weft__wake(self->joiner, 0);
    if (self->flags & WEFT__FL_MAIN)
        begin_shutdown(rt);
    self->state = WEFT__F_EXITING;
    struct weft__fiber *next = rq_pop(w);
    if (next)
        next->state = WEFT__F_RUNNING;
    else
        next = &w->sched;
    jump(w, self, next);
    weft__must_fail(__FILE__, __LINE__, "an exited fiber was resumed");
}

/* ------------------------------------------------------------ the loop */

int weft__worker_init(struct weft__worker *w, struct weft_rt *rt)
{
    memset(w, 0, sizeof *w);
    w->rt = rt;
    w->sched.state = WEFT__F_SCHED;
    w->sched.w = w;
    strcpy(w->sched.name, "(scheduler)");
    w->current = &w->sched;
    w->budget = BUDGET;
    w->epoch = weft__clock();
    w->now = w->epoch;
    weft__wheel_init(&w->wheel, 0);

    const struct weft__reactor_ops *ops = &weft__reactor_epoll;
    int which = rt->cfg.reactor;
    if (which == WEFT_REACTOR_AUTO) {
        const char *env = getenv("WEFT_REACTOR");
        if (env && strcmp(env, "poll") == 0)
            which = WEFT_REACTOR_POLL;
    }
    if (which == WEFT_REACTOR_POLL)
        ops = &weft__reactor_poll;
    w->rops = ops;
    return ops->open(&w->reactor, w);
}

void weft__worker_fini(struct weft__worker *w)
{
    /* The descriptor table mirrors the reactor's registrations: both go. */
    weft__io_fini(w);
    if (w->reactor)
        w->rops->close(w->reactor);
    w->reactor = NULL;
}

static void run_timers(struct weft__worker *w, int64_t now)
{
    uint64_t tick = weft__tick_of_now(w, now);
    if (tick > w->wheel.now)
        weft__wheel_advance(&w->wheel, tick);
}

static void poll_reactor(struct weft__worker *w, int timeout_ms)
{
    count(&w->n_polls);
    int r = w->rops->poll(w->reactor, timeout_ms);
    weft__must(r >= 0 || r == -EINTR, "the reactor failed");
}

/* Whether a pool has warm free stacks the next trim might return. */
static bool pools_trimmable(const struct weft_rt *rt)
{
    for (const struct weft__pool *p = rt->pools; p; p = p->next)
        if (p->nfree > p->ncold && p->nfree > p->reserve)
            return true;
    return false;
}

static int ms_until(int64_t when, int64_t now)
{
    if (when == INT64_MAX)
        return -1;
    if (when <= now)
        return 0;
    int64_t ms = (when - now + 999999) / 1000000;
    return ms > 86400000 ? 86400000 : (int)ms;
}

void weft__worker_loop(struct weft__worker *w)
{
    struct weft_rt *rt = w->rt;
    int64_t next_trim = weft__clock() + TRIM_INTERVAL;
    w->next_io = 0;
    for (;;) {
        int64_t now = weft__clock();
        w->now = now;
        run_timers(w, now);
        if (atomic_load_explicit(&rt->post_count, memory_order_relaxed))
            weft__post_drain(rt);
        if (now >= next_trim) {
            for (struct weft__pool *p = rt->pools; p; p = p->next)
                weft__pool_trim(p);
            next_trim = now + TRIM_INTERVAL;
        }
        if (w->rq_head) {
            /* Busy: the reactor gets its look once every fiber runnable now
             * has had its turn (the scheduler queues itself behind them),
             * and no more often than every IO_INTERVAL. A batch of fibers
             * woken by one poll so runs whole, as in an event loop, instead
             * of being sliced by further polls (which keeps a loaded server
             * and its clients in small, wake-up-bound exchanges), while
             * fibers that keep yielding still let I/O in every round. */
            if (now >= w->next_io && !w->sched_queued) {
                weft__rq_push(w, &w->sched);
                w->sched_queued = true;
            }
            int64_t t = next_timer_ns(w);
            w->next_check = !w->sched_queued && w->next_io < t ? w->next_io : t;
            if (next_trim < w->next_check)
                w->next_check = next_trim;
            w->budget = BUDGET;
            struct weft__fiber *next = rq_pop(w);
            if (next != &w->sched) {
                next->state = WEFT__F_RUNNING;
                w->due_entry = false;
                jump(w, &w->sched, next);
                w->sched.state = WEFT__F_SCHED;
                if (!w->sched_queued || w->due_entry)
                    continue;
                /* A switching fiber popped our place in the queue. */
            }
            w->sched_queued = false;
            poll_reactor(w, 0);
            w->next_io = weft__clock() + IO_INTERVAL;
            continue;
        }
        if (rt->live == 0 && weft__post_close(rt))
            break;
        int64_t until = next_timer_ns(w);
        if (pools_trimmable(rt) && next_trim < until)
            until = next_trim;
        poll_reactor(w, ms_until(until, now));
        w->next_io = weft__clock() + IO_INTERVAL;
    }
}
