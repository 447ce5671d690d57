/* sched.c - the worker: run queues, context switches, parking and waking,
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
 *
 * Several workers (rt->mt). Each worker has a bounded ring of runnable
 * fibers that only it pushes to and that any worker may take from (Go's
 * runq: the owner publishes the tail, takers CAS the head), a LIFO slot
 * for the fiber it just woke (it runs next, while its data is in cache),
 * and a pinned fiber is never stolen (a stealer takes only the unpinned
 * fibers at the head of a ring) and comes back to its worker through that
 * worker's inbox when another wakes it. Fibers made runnable by threads
 * that are not workers go to the runtime's injector, a locked list that
 * every worker looks at when its own queues are empty and, so nothing
 * starves, every INJECTOR_TICKS switches. An idle worker spins a little
 * stealing half of a random peer's ring, then sleeps: exactly one idle
 * worker blocks in the shared reactor (whoever holds poll_lock), the
 * others on a futex. Making work runnable calls weft__notify(), which wakes one
 * sleeper unless a worker is spinning. The lost-wake-up argument is the
 * usual Dekker pair: a sleeper counts itself idle, stores sleeping = 1
 * and then, after a full fence, looks once more at everything it could
 * take; a pusher publishes its fiber and then, after a full fence, looks
 * at the idle count. One of them sees the other. "Everything it could
 * take" must match what a steal takes, no more and no less: the head of
 * each peer's ring and each peer's LIFO slot, when not pinned (stealable).
 * Leaving out the LIFO slots let a worker sleep beside a fiber it could
 * have run; counting a pinned head, which no steal takes, kept an idle
 * worker spinning for as long as its peer stayed busy. A fiber pinned to
 * the pushing worker is no one else's work and wakes nobody.
 *
 * Rejected: keeping pinned fibers in a separate, unstealable queue per
 * worker, so that unpinned fibers behind a pinned head could still be
 * stolen. It changes the order between pinned and unpinned fibers on one
 * worker, which the pinning promise (one worker's order) relies on; a
 * steal today takes only the unpinned run at the head of a ring, and the
 * rest waits for its worker.
 *
 * A fiber woken on another worker may be taken by a third before the
 * worker it parked on has finished switching away from its stack. on_cpu
 * closes that gap: it is set while the fiber's stack is in use and cleared
 * (release) by the context that runs after it, once the saved context is
 * stored; whoever resumes a fiber first waits (acquire) for on_cpu == 0,
 * which takes a few nanoseconds at most.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BUDGET      64
#define IO_INTERVAL 1000000      /* ns: longest a busy worker goes without looking at I/O */
#define INJECTOR_TICKS 61        /* switches between looks at the injector (several workers) */
#define LIFO_MAX    16           /* LIFO-slot fibers in a row before the ring gets a turn */
#define SPIN_NS     50000        /* how long an idle worker looks for work before it sleeps */

static __thread struct weft__worker *tls_worker
#if defined(__GNUC__) && !defined(_WIN32)
    __attribute__((tls_model("initial-exec")))
#endif
    ;

__attribute__((noinline)) struct weft__worker *weft__worker(void) { return tls_worker; }

void weft__worker_set(struct weft__worker *w) { tls_worker = w; }

/* The empty asm keeps the compiler from treating the lookup as constant. */
__attribute__((noinline)) int *weft__errno_at(void)
{
    int *p = &errno;
    __asm__ volatile("" : "+r"(p));
    return p;
}

static inline void count(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

#define RLX memory_order_relaxed
#define ACQ memory_order_acquire
#define REL memory_order_release
#define SEQ memory_order_seq_cst

static inline uint8_t state_of(const struct weft__fiber *f)
{
    return atomic_load_explicit(&f->state, RLX);
}

static inline void set_state(struct weft__fiber *f, uint8_t s)
{
    atomic_store_explicit(&f->state, s, RLX);
}

/* ------------------------------------------------ one worker: a plain list */

static inline void list_push(struct weft__worker *w, struct weft__fiber *f)
{
    f->next = NULL;
    if (w->rq_tail)
        w->rq_tail->next = f;
    else
        w->rq_head = f;
    w->rq_tail = f;
}

static inline struct weft__fiber *list_pop(struct weft__worker *w)
{
    struct weft__fiber *f = w->rq_head;
    if (f) {
        w->rq_head = f->next;
        if (!w->rq_head)
            w->rq_tail = NULL;
    }
    return f;
}

/* --------------------------------------------- several workers: the queues */


static void inj_push_list(struct weft__rt *rt, struct weft__fiber *head, struct weft__fiber *tail,
                          size_t n)
{
    tail->next = NULL;
    weft__spin_lock(&rt->inj_lock);
    if (rt->inj_tail)
        rt->inj_tail->next = head;
    else
        rt->inj_head = head;
    rt->inj_tail = tail;
    atomic_fetch_add_explicit(&rt->inj_n, n, SEQ);
    weft__spin_unlock(&rt->inj_lock);
}

static void inbox_push(struct weft__worker *home, struct weft__fiber *f);

/* The injector's head for w; a pinned fiber found there (a ring overflow
 * put it there) is passed on to its own worker. */
static struct weft__fiber *inj_pop(struct weft__worker *w)
{
    struct weft__rt *rt = w->rt;
    for (;;) {
        if (atomic_load_explicit(&rt->inj_n, RLX) == 0)
            return NULL;
        weft__spin_lock(&rt->inj_lock);
        struct weft__fiber *f = rt->inj_head;
        if (f) {
            rt->inj_head = f->next;
            if (!rt->inj_head)
                rt->inj_tail = NULL;
            atomic_fetch_sub_explicit(&rt->inj_n, 1, RLX);
        }
        weft__spin_unlock(&rt->inj_lock);
        if (!f || !f->home || f->home == w)
            return f;
        inbox_push(f->home, f);
    }
}

void weft__inject(struct weft__rt *rt, struct weft__fiber *f)
{
    inj_push_list(rt, f, f, 1);
    weft__notify(rt);
}

/* The ring is full: half of it, and f, move to the injector (Go's
 * runqputslow). false: a taker got in the way; try the ring again. */
static bool ring_overflow(struct weft__worker *w, struct weft__fiber *f, uint32_t h, uint32_t t)
{
    uint32_t n = (t - h) / 2;
    struct weft__fiber *batch[WEFT__RQ_SIZE / 2];
    for (uint32_t i = 0; i < n; i++)
        batch[i] = atomic_load_explicit(&w->ring[(h + i) % WEFT__RQ_SIZE], RLX);
    if (!atomic_compare_exchange_strong_explicit(&w->rq_h, &h, h + n, SEQ, RLX))
        return false;
    for (uint32_t i = 0; i + 1 < n; i++)
        batch[i]->next = batch[i + 1];
    batch[n - 1]->next = f;
    inj_push_list(w->rt, batch[0], f, n + 1);
    return true;
}

static void ring_push(struct weft__worker *w, struct weft__fiber *f)
{
    for (;;) {
        uint32_t h = atomic_load_explicit(&w->rq_h, ACQ);
        uint32_t t = atomic_load_explicit(&w->rq_t, RLX);
        if (t - h < WEFT__RQ_SIZE) {
            atomic_store_explicit(&w->ring[t % WEFT__RQ_SIZE], f, RLX);
            atomic_store_explicit(&w->rq_t, t + 1, REL);
            return;
        }
        if (ring_overflow(w, f, h, t))
            return;
    }
}

static struct weft__fiber *ring_pop(struct weft__worker *w)
{
    uint32_t h = atomic_load_explicit(&w->rq_h, ACQ);
    for (;;) {
        uint32_t t = atomic_load_explicit(&w->rq_t, RLX);
        if (t == h)
            return NULL;
        struct weft__fiber *f = atomic_load_explicit(&w->ring[h % WEFT__RQ_SIZE], RLX);
        if (atomic_compare_exchange_weak_explicit(&w->rq_h, &h, h + 1, SEQ, ACQ))
            return f;
    }
}

/* Takes half of v's ring into w's (Go's runqgrab + runqsteal); returns one
 * of the taken fibers to run now, or NULL. Only w's owner calls it, and w's
 * ring is empty then. */
static struct weft__fiber *steal_from(struct weft__worker *w, struct weft__worker *v)
{
    uint32_t wt = atomic_load_explicit(&w->rq_t, RLX);
    for (;;) {
        uint32_t h = atomic_load_explicit(&v->rq_h, ACQ);
        uint32_t t = atomic_load_explicit(&v->rq_t, ACQ);
        uint32_t n = t - h;
        n -= n / 2;
        if (n == 0) {
            /* Nothing in the ring: the victim's LIFO slot, unless pinned. */
            struct weft__fiber *f = atomic_load_explicit(&v->lifo, ACQ);
            if (f && !f->home &&
                atomic_compare_exchange_strong_explicit(&v->lifo, &f, NULL, SEQ, RLX))
                return f;
            return NULL;
        }
        if (n > WEFT__RQ_SIZE / 2)
            continue;               /* h and t read at different times */
        /* Only the run of unpinned fibers at the head: a pinned fiber stays
         * where it is, in its place in its worker's order. */
        uint32_t k = 0;
        for (; k < n; k++) {
            struct weft__fiber *f = atomic_load_explicit(&v->ring[(h + k) % WEFT__RQ_SIZE], RLX);
            if (atomic_load_explicit(&f->home, RLX))
                break;      /* (f may be stale if the CAS below fails: only read) */
            atomic_store_explicit(&w->ring[(wt + k) % WEFT__RQ_SIZE], f, RLX);
        }
        if ((n = k) == 0) {
            /* A pinned fiber heads the ring: the LIFO slot may still hold
             * one we can take. */
            struct weft__fiber *f = atomic_load_explicit(&v->lifo, ACQ);
            if (f && !atomic_load_explicit(&f->home, RLX) &&
                atomic_compare_exchange_strong_explicit(&v->lifo, &f, NULL, SEQ, RLX))
                return f;
            return NULL;
        }
        if (!atomic_compare_exchange_strong_explicit(&v->rq_h, &h, h + n, SEQ, RLX))
            continue;
        struct weft__fiber *run = atomic_load_explicit(&w->ring[(wt + n - 1) % WEFT__RQ_SIZE], RLX);
        if (n > 1)
            atomic_store_explicit(&w->rq_t, wt + n - 1, REL);
        count(&w->n_steals);
        return run;
    }
}

/* A pinned fiber woken by another worker: its own worker takes it from
 * the inbox at its next pass through the scheduler. */
static bool wake_worker(struct weft__worker *v);

static void inbox_push(struct weft__worker *home, struct weft__fiber *f)
{
    f->next = NULL;
    weft__spin_lock(&home->inbox_lock);
    if (home->inbox_tail)
        home->inbox_tail->next = f;
    else
        home->inbox_head = f;
    home->inbox_tail = f;
    atomic_fetch_add_explicit(&home->inbox_n, 1, SEQ);
    weft__spin_unlock(&home->inbox_lock);
    wake_worker(home);
}

static void inbox_drain(struct weft__worker *w)
{
    if (atomic_load_explicit(&w->inbox_n, RLX) == 0)
        return;
    weft__spin_lock(&w->inbox_lock);
    struct weft__fiber *f = w->inbox_head;
    w->inbox_head = w->inbox_tail = NULL;
    atomic_store_explicit(&w->inbox_n, 0, RLX);
    weft__spin_unlock(&w->inbox_lock);
    while (f) {
        struct weft__fiber *next = f->next;
        ring_push(w, f);
        f = next;
    }
}

/* Queues f on w, the calling thread's worker. how: 0 the tail (a yield, a
 * spawn), 1 the LIFO slot (a wake-up). */
static void mt_push(struct weft__worker *w, struct weft__fiber *f, int how)
{
    if (weft__unlikely(f->home != NULL && f->home != w)) {
        inbox_push(f->home, f);
        return;
    }
    if (weft__unlikely(w->rt->migrate) && !f->home) {
        weft__inject(w->rt, f);
        return;
    }
    if (f->home) {
        /* Pinned to w: keeps the order one worker gives (no LIFO), and is
         * no work for any other worker, so nobody is woken for it. */
        ring_push(w, f);
        return;
    }
    struct weft__fiber *pushed = f;
    if (how) {
        f = atomic_exchange_explicit(&w->lifo, f, memory_order_acq_rel);
        if (f)
            ring_push(w, f);
    } else {
        ring_push(w, f);
    }
    WEFT__PP(WEFT__PP_PUSHED, pushed);
    /* The pusher's half of the Dekker pair (top of the file): the push,
     * a full fence, then the look at nidle. ring_push ends in a release
     * store, which a later load may pass without the fence. */
    atomic_thread_fence(SEQ);
    if (atomic_load_explicit(&w->rt->nidle, RLX) > 0)
        weft__notify(w->rt);
}

/* The next fiber w should run, from its own queues only. */
static struct weft__fiber *mt_pop(struct weft__worker *w)
{
    struct weft__fiber *f;
    if (w->lifo_streak < LIFO_MAX && (f = atomic_load_explicit(&w->lifo, RLX)) != NULL &&
        (f = atomic_exchange_explicit(&w->lifo, NULL, ACQ)) != NULL) {
        w->lifo_streak++;
        return f;
    }
    w->lifo_streak = 0;
    if ((f = ring_pop(w)) != NULL)
        return f;
    return atomic_exchange_explicit(&w->lifo, NULL, ACQ);
}

static bool mt_has_local(const struct weft__worker *w)
{
    return atomic_load_explicit(&w->rq_t, ACQ) != atomic_load_explicit(&w->rq_h, ACQ) ||
           atomic_load_explicit(&w->lifo, ACQ) != NULL;
}

void weft__rq_push(struct weft__worker *w, struct weft__fiber *f)
{
    if (w->mt)
        mt_push(w, f, 0);
    else
        list_push(w, f);
}

static inline struct weft__fiber *rq_pop(struct weft__worker *w)
{
    return w->mt ? mt_pop(w) : list_pop(w);
}

bool weft__rq_empty(const struct weft__worker *w)
{
    return w->mt ? !mt_has_local(w) : w->rq_head == NULL;
}

size_t weft__rq_count(const struct weft__worker *w)
{
    size_t n = 0;
    if (w->mt) {
        n = atomic_load_explicit(&w->rq_t, RLX) - atomic_load_explicit(&w->rq_h, RLX);
        return n + (atomic_load_explicit(&w->lifo, RLX) != NULL);
    }
    for (const struct weft__fiber *f = w->rq_head; f; f = f->next)
        n += f != &w->sched;
    return n;
}

/* ------------------------------------------------------------ switching */

/* mt: the runtime has several workers (the same for every worker, so a
 * value read before the switch is still good after it). */
static inline void after_switch(weft__transfer t, bool mt)
{
    struct weft__fiber *prev = t.data;
    if (weft__unlikely(state_of(prev) == WEFT__F_EXITING)) {
        atomic_store_explicit(&prev->on_cpu, 0, RLX);   /* the block will be reused */
        weft__fiber_reap(prev->w, prev);
    } else {
        prev->ctx = t.fctx;
        if (mt) {
            WEFT__PP(WEFT__PP_ON_CPU, prev);
            atomic_store_explicit(&prev->on_cpu, 0, REL);
        }
    }
}

/* The one call site of the context switch (arch/fcontext.h and the ABI's
 * arch/<abi>/switch.h). The empty asm after the call keeps the compiler
 * from turning it into a tail jump, which would make the saved return
 * address differ between callers. */
__attribute__((noinline)) WEFT__NO_TSAN static weft__transfer switch_ctx(weft__fctx to, void *data,
                                                                        struct weft__san *to_san)
{
    /* TSan must learn of the switch right before it, with no instrumented
     * frame entered after it: this function is not instrumented. */
    weft__san_tsan_switch(to_san);
    weft__transfer t = weft__arch_switch(to, data);
    __asm__ volatile("" ::: "memory");
    return t;
}

/* Several workers: wait until to's previous worker has left its stack. */
static inline void mt_claim(struct weft__fiber *from, struct weft__fiber *to)
{
    while (atomic_load_explicit(&to->on_cpu, ACQ))
        weft__cpu_relax();
    atomic_store_explicit(&to->on_cpu, 1, RLX);
    from->saved_errno = *weft__errno_at();
}

/* mt is passed in so that the one-worker paths, which pass a constant
 * false, compile without any of the several-worker steps. */
__attribute__((always_inline)) static inline void jump_mt(struct weft__worker *w,
                                                          struct weft__fiber *from,
                                                          struct weft__fiber *to, bool mt)
{
    if (weft__unlikely(from->canary != NULL) && *from->canary != WEFT__CANARY)
        weft__overflow_report(from, "its stack canary was overwritten");
    if (mt)
        mt_claim(from, to);
    atomic_store_explicit(&to->w, w, RLX);
    w->current = to;
    count(&w->n_switches);
    weft__san_before_jump(&from->san, &to->san, state_of(from) == WEFT__F_EXITING);
    weft__transfer t = switch_ctx(to->ctx, from, &to->san);
    weft__san_after_jump(&from->san);
    after_switch(t, mt);
    if (mt)
        *weft__errno_at() = from->saved_errno;     /* this thread's, maybe a new one */
}

static void jump(struct weft__worker *w, struct weft__fiber *from, struct weft__fiber *to)
{
    jump_mt(w, from, to, w->mt);
}

static int64_t next_timer_ns(struct weft__worker *w)
{
    weft__lock(w, &w->wheel_lock);  /* fibers elsewhere may be disarming */
    uint64_t tick = weft__wheel_next(&w->wheel);
    weft__unlock(w, &w->wheel_lock);
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

/* Every INJECTOR_TICKS switches: is it the injector's turn? */
static inline bool inj_turn(struct weft__worker *w)
{
    if (weft__likely(--w->inj_countdown != 0))
        return false;
    w->inj_countdown = INJECTOR_TICKS;
    return w->inj_first = atomic_load_explicit(&w->rt->inj_n, RLX) != 0;
}

static void mt_switch_away(struct weft__worker *w, struct weft__fiber *self)
{
    struct weft__fiber *next = NULL;
    if ((weft__likely(--w->budget != 0) || !sched_due(w)) && !inj_turn(w))
        next = mt_pop(w);
    if (!next) {
        next = &w->sched;
    } else if (next == self) {
        set_state(self, WEFT__F_RUNNING);
        return;
    } else {
        set_state(next, WEFT__F_RUNNING);
    }
    jump(w, self, next);
}

/* One worker: the path of every yield, kept inline in it. */
__attribute__((always_inline)) static inline void st_switch_away(struct weft__worker *w,
                                                                 struct weft__fiber *self)
{
    struct weft__fiber *next;
    if (weft__likely(w->rq_head != NULL) &&
        (weft__likely(--w->budget != 0) || !sched_due(w))) {
        next = list_pop(w);
        if (next == self) {
            set_state(self, WEFT__F_RUNNING);
            return;
        }
        set_state(next, WEFT__F_RUNNING);
    } else {
        next = &w->sched;
    }
    jump_mt(w, self, next, false);
}

void weft__switch_away(struct weft__worker *w, struct weft__fiber *self)
{
    if (w->mt)
        mt_switch_away(w, self);
    else
        st_switch_away(w, self);
}

void weft__yield(struct weft__worker *w, struct weft__fiber *self)
{
    set_state(self, WEFT__F_RUNNABLE);
    if (w->mt) {
        mt_push(w, self, 0);
        mt_switch_away(w, self);
        return;
    }
    list_push(w, self);
    st_switch_away(w, self);
}

/* The thread-local is read directly here, on entry, before any switch:
 * nothing read from it is used after weft__yield() returns. */
void weft_yield(void)
{
    struct weft__worker *w = tls_worker;
    if (w && w->current != &w->sched)
        weft__yield(w, w->current);
}

/* ------------------------------------------------------- parking, waking */

static void timer_arm(struct weft__worker *w, struct weft__fiber *self, int64_t deadline)
{
    weft__lock(w, &w->wheel_lock);
    weft__wheel_add(&w->wheel, &self->timer, weft__tick_of_deadline(w, deadline));
    weft__unlock(w, &w->wheel_lock);
    self->timer_w = w;
    if (deadline < w->next_check)
        w->next_check = deadline;
}

/* A woken fiber disarms its own deadline, on whatever worker it resumed:
 * the wheel's owner may be firing it at this moment, hence the lock (and
 * the timer callback's check that the fiber is still parked). */
static void timer_disarm(struct weft__fiber *self)
{
    struct weft__worker *tw = self->timer_w;
    self->timer_w = NULL;
    weft__lock(tw, &tw->wheel_lock);
    if (weft__timer_armed(&self->timer))
        weft__wheel_del(&tw->wheel, &self->timer);
    weft__unlock(tw, &tw->wheel_lock);
}

static inline bool cancelled(const struct weft__fiber *f)
{
    return (atomic_load_explicit(&f->flags, SEQ) & WEFT__FL_CANCELLED) != 0;
}

int weft__park(struct weft__worker *w, struct weft__fiber *self, int64_t deadline,
               weft__lockword *lock)
{
    int r;
    self->wait.deadline = deadline;
    self->wait.since = w->now;
    /* Parked before the lock goes: a waker needs the lock to find us. */
    atomic_store_explicit(&self->state, WEFT__F_PARKED, w->mt ? SEQ : RLX);
    if (w->mt)
        WEFT__PP(WEFT__PP_PARKED, self);
    if (lock)
        weft__unlock(w, lock);
    if (cancelled(self) && !self->wait.uncancellable) {
        r = -ECANCELED;
        goto own;
    }
    if (deadline != WEFT_FOREVER) {
        if (deadline <= weft__clock()) {
            r = -ETIMEDOUT;
            goto own;
        }
        timer_arm(w, self, deadline);
    }
    count(&w->n_parks);
    weft__switch_away(w, self);
    r = self->wake_result;
    goto out;
own:
    /* End the wait ourselves, unless a waker already owns it: then it has
     * made us runnable (or is about to) and we must leave the CPU for it. */
    if (self->wait.unlink && !self->wait.unlink(self)) {
        weft__switch_away(w, self);
        r = self->wake_result;
        goto out;
    }
    {
        uint8_t parked = WEFT__F_PARKED;
        if (!atomic_compare_exchange_strong_explicit(&self->state, &parked, WEFT__F_RUNNING,
                                                     SEQ, RLX)) {
            /* A cancellation without unlink won the fiber (a sleep). */
            weft__switch_away(w, self);
            r = self->wake_result;
            goto out;
        }
    }
out:
    if (self->timer_w)
        timer_disarm(self);     /* waits out a timer callback still at work */
    if (self->w->mt) {
        /* ... and a canceller still inside our unlink (see fiber_cancel). */
        weft__spin_lock(&self->wait_lock);
        weft__spin_unlock(&self->wait_lock);
    }
    self->wait.kind = WEFT__W_NONE;
    self->wait.unlink = NULL;
    self->wait.uncancellable = 0;
    return r;
}

bool weft__wake(struct weft__fiber *f, int result)
{
    struct weft__rt *rt = f->rt;
    if (!rt->mt) {
        if (state_of(f) != WEFT__F_PARKED)
            return false;
        f->wake_result = result;
        set_state(f, WEFT__F_RUNNABLE);
        list_push(&rt->w0, f);
        return true;
    }
    uint8_t parked = WEFT__F_PARKED;
    if (!atomic_compare_exchange_strong_explicit(&f->state, &parked, WEFT__F_RUNNABLE, SEQ, RLX))
        return false;
    f->wake_result = result;
    struct weft__worker *w = weft__worker();
    if (w && w->rt == rt)
        /* A fiber that wakes another hands it the LIFO slot (it runs next,
         * while what it was given is in cache); the scheduler's own wakes
         * (timers, I/O, posts) queue in order, as with one worker. */
        mt_push(w, f, w->current != &w->sched);
    else
        weft__inject(rt, f);
    return true;
}

void weft__fiber_timeout(struct weft__timer *t)
{
    struct weft__fiber *f = weft__container_of(t, struct weft__fiber, timer);
    if (state_of(f) != WEFT__F_PARKED)
        return;
    if (!f->wait.unlink || f->wait.unlink(f))
        weft__wake(f, -ETIMEDOUT);
}

/* main_fn has returned: everything still running is cancelled, and fibers
 * spawned from now on start cancelled, so the runtime can wind down. */
static void cancel_one(struct weft__fiber *f, void *ctx)
{
    (void)ctx;
    uint8_t s = state_of(f);
    if (s != WEFT__F_DONE && s != WEFT__F_EXITING && s != WEFT__F_FREE)
        weft__fiber_cancel(f);
}

static void begin_shutdown(struct weft__rt *rt)
{
    /* The other half of weft__spawn's pair: the flag, a full fence, then
     * the walk, which so sees every fiber whose spawn missed the flag. */
    atomic_store(&rt->shutting_down, true);
    atomic_thread_fence(SEQ);
    WEFT__PP(WEFT__PP_SHUTDOWN_WALK, rt);
    weft__fiber_each(rt, cancel_one, NULL);
    WEFT__PP(WEFT__PP_SHUTDOWN_WALKED, rt);
}

void weft__fiber_entry(weft__transfer t)
{
    struct weft__fiber *prev = t.data;
    struct weft__worker *w = prev->w;
    struct weft__fiber *self = w->current;
    weft__san_after_jump(&self->san);
    after_switch(t, w->mt);
    if (atomic_load_explicit(&self->flags, RLX) & WEFT__FL_VOIDFN) {
        self->vfn(self->arg);
        self->result = NULL;
    } else {
        self->result = self->fn(self->arg);
    }
    weft__fiber_exit(self->w, self);
}

_Noreturn void weft__fiber_exit(struct weft__worker *w, struct weft__fiber *self)
{
    struct weft__rt *rt = w->rt;
    /* Release: whoever counts this exit also sees the spawn (weft__live). */
    atomic_store_explicit(&w->n_exited, atomic_load_explicit(&w->n_exited, RLX) + 1, REL);
    if (atomic_load_explicit(&self->flags, RLX) & WEFT__FL_MAIN)
        begin_shutdown(rt);
    /* The joiner is woken by weft__fiber_reap(), once this stack is free. */
    set_state(self, WEFT__F_EXITING);
    struct weft__fiber *next = rq_pop(w);
    if (next)
        set_state(next, WEFT__F_RUNNING);
    else
        next = &w->sched;
    jump(w, self, next);
    weft__must_fail(__FILE__, __LINE__, "an exited fiber was resumed");
}

/* ------------------------------------------------------------ the loop */

int weft__worker_init(struct weft__worker *w, struct weft__rt *rt)
{
    memset(w, 0, sizeof *w);
    w->rt = rt;
    w->mt = rt->mt;
    w->sched.state = WEFT__F_SCHED;
    atomic_store_explicit(&w->sched.w, w, RLX);
    strcpy(w->sched.name, "(scheduler)");
    w->current = &w->sched;
    w->budget = BUDGET;
    w->inj_countdown = INJECTOR_TICKS;
    w->epoch = weft__clock();
    w->now = w->epoch;
    w->rng = (uint32_t)(uintptr_t)w * 2654435761u | 1;
    weft__wheel_init(&w->wheel, 0);
    if (rt->mt && w != &rt->w0) {
        /* One reactor and one descriptor table for the whole runtime. */
        w->rops = rt->w0.rops;
        w->reactor = rt->w0.reactor;
        w->io = rt->w0.io;
        return 0;
    }

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
    int err = ops->open(&w->reactor, w);
    if (err == 0 && rt->mt && (err = weft__io_init(w)) != 0) {
        ops->close(w->reactor);
        w->reactor = NULL;
    }
    return err;
}

void weft__worker_fini(struct weft__worker *w)
{
    if (w->rt->mt && w != &w->rt->w0)
        return;     /* the shared reactor and table are worker 0's */
    /* The descriptor table mirrors the reactor's registrations: both go. */
    weft__io_fini(w);
    if (w->reactor)
        w->rops->close(w->reactor);
    w->reactor = NULL;
}

static void run_timers(struct weft__worker *w, int64_t now)
{
    uint64_t tick = weft__tick_of_now(w, now);
    if (tick > w->wheel.now) {
        weft__lock(w, &w->wheel_lock);
        weft__wheel_advance(&w->wheel, tick);
        weft__unlock(w, &w->wheel_lock);
    }
}

static void poll_reactor(struct weft__worker *w, int timeout_ms)
{
    count(&w->n_polls);
    int r = w->rops->poll(w->reactor, timeout_ms);
    weft__must(r >= 0 || r == -EINTR, "the reactor failed");
}

/* Whether a pool has warm free stacks the next trim might return. */
static bool pools_trimmable(const struct weft__rt *rt)
{
    for (const struct weft__pool *p = rt->pools; p; p = p->next)
        if (p->nfree > p->ncold && p->nfree > p->reserve)
            return true;
    return false;
}

static void pools_trim(struct weft__rt *rt)
{
    weft__lock(&rt->w0, &rt->pool_lock);
    for (struct weft__pool *p = rt->pools; p; p = p->next)
        weft__pool_trim(p);
    weft__unlock(&rt->w0, &rt->pool_lock);
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

static void st_loop(struct weft__worker *w)
{
    struct weft__rt *rt = w->rt;
    int64_t next_trim = weft__clock() + WEFT__TRIM_INTERVAL;
    w->next_io = 0;
    for (;;) {
        int64_t now = weft__clock();
        w->now = now;
        run_timers(w, now);
        int64_t io_due = weft__io_tick(w, now);
        if (weft__shutdown_untold(rt))
            weft__shutdown_tell(w);
        if (atomic_load_explicit(&rt->post_count, memory_order_relaxed))
            weft__post_drain(rt);
        if (now >= next_trim) {
            pools_trim(rt);
            next_trim = now + WEFT__TRIM_INTERVAL;
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
                list_push(w, &w->sched);
                w->sched_queued = true;
            }
            int64_t t = next_timer_ns(w);
            if (io_due < t)
                t = io_due;
            w->next_check = !w->sched_queued && w->next_io < t ? w->next_io : t;
            if (next_trim < w->next_check)
                w->next_check = next_trim;
            w->budget = BUDGET;
            struct weft__fiber *next = list_pop(w);
            if (next != &w->sched) {
                set_state(next, WEFT__F_RUNNING);
                w->due_entry = false;
                jump(w, &w->sched, next);
                set_state(&w->sched, WEFT__F_SCHED);
                if (!w->sched_queued || w->due_entry)
                    continue;
                /* A switching fiber popped our place in the queue. */
            }
            w->sched_queued = false;
            poll_reactor(w, 0);
            w->next_io = weft__clock() + IO_INTERVAL;
            continue;
        }
        if (weft__post_close_if_done(rt))
            break;
        int64_t until = next_timer_ns(w);
        if (io_due < until)
            until = io_due;
        if (pools_trimmable(rt) && next_trim < until)
            until = next_trim;
        if (atomic_load_explicit(&rt->post_count, memory_order_relaxed))
            until = now;    /* posts left queued by the last drain: just look */
        poll_reactor(w, ms_until(until, now));
        w->next_io = weft__clock() + IO_INTERVAL;
    }
}

/* ------------------------------------------- several workers: idling */

/* Wakes v if it sleeps; false if it was awake already. */
static bool wake_worker(struct weft__worker *v)
{
    uint32_t one = 1;
    atomic_thread_fence(SEQ);
    if (atomic_load_explicit(&v->sleeping, SEQ) != 1 ||
        !atomic_compare_exchange_strong_explicit(&v->sleeping, &one, 0, SEQ, RLX))
        return false;
    if (atomic_load_explicit(&v->in_reactor, SEQ))
        v->rops->wake(v->reactor);
    else
        weft__os_wake(&v->sleeping, 1);
    return true;
}

/* Wakes one sleeping worker, unless one is spinning (it will find the
 * work). The caller has just made work visible; the fence orders that
 * before the loads of nspinning and sleeping (the other half of the pair
 * described at the top of the file). */
void weft__notify(struct weft__rt *rt)
{
    atomic_thread_fence(SEQ);
    if (atomic_load_explicit(&rt->nspinning, SEQ) > 0 || atomic_load_explicit(&rt->nidle, SEQ) == 0)
        return;
    /* Never the calling worker: the poller makes fibers runnable while it
     * is still marked asleep, and waking itself would cost a write to its
     * own eventfd and one more poll. */
    struct weft__worker *self = weft__worker();
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (rt->ws[i] != self && wake_worker(rt->ws[i]))
            return;
}

static void wake_everyone(struct weft__rt *rt)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct weft__worker *v = rt->ws[i];
        atomic_store_explicit(&v->sleeping, 0, SEQ);
        weft__os_wake(&v->sleeping, 1);
    }
    rt->w0.rops->wake(rt->w0.reactor);
}

/* Whether v holds a fiber that another worker could take: what
 * steal_from would find (the ring's head if not pinned, else the LIFO
 * slot if not pinned). A fiber pinned to v is v's own business: counting
 * it would keep an idle worker spinning for as long as v is busy. */
static bool stealable(struct weft__worker *v)
{
    uint32_t h = atomic_load_explicit(&v->rq_h, SEQ);
    if (atomic_load_explicit(&v->rq_t, SEQ) != h) {
        /* (A block never goes away while the runtime runs, so reading a
         * slot that a taker has just moved past is safe, only stale.) */
        struct weft__fiber *f = atomic_load_explicit(&v->ring[h % WEFT__RQ_SIZE], RLX);
        if (f && !atomic_load_explicit(&f->home, RLX))
            return true;
    }
    struct weft__fiber *f = atomic_load_explicit(&v->lifo, SEQ);
    return f && !atomic_load_explicit(&f->home, RLX);
}

/* Anything runnable anywhere that w could take? (the sleeper's re-check) */
static bool work_visible(struct weft__worker *w)
{
    struct weft__rt *rt = w->rt;
    if (atomic_load_explicit(&rt->inj_n, SEQ) || atomic_load_explicit(&w->inbox_n, SEQ) ||
        atomic_load_explicit(&rt->post_count, SEQ) || mt_has_local(w) ||
        atomic_load_explicit(&rt->stop, SEQ) || weft__shutdown_untold(rt))
        return true;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct weft__worker *v = rt->ws[i];
        if (v != w && stealable(v))
            return true;
    }
    return false;
}

static inline uint32_t next_rand(struct weft__worker *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 17;
    w->rng ^= w->rng << 5;
    return w->rng;
}

static struct weft__fiber *steal_any(struct weft__worker *w)
{
    struct weft__rt *rt = w->rt;
    unsigned n = rt->nworkers;
    unsigned start = next_rand(w) % n;
    for (unsigned k = 0; k < n; k++) {
        struct weft__worker *v = rt->ws[(start + k) % n];
        if (v == w)
            continue;
        struct weft__fiber *f = steal_from(w, v);
        if (f)
            return f;
    }
    return NULL;
}

/* Sleeps until notified or the deadline `until` (ns, INT64_MAX: none). At
 * most one sleeper blocks in the reactor; it also serves I/O for all. */
static void mt_sleep(struct weft__worker *w, int64_t until)
{
    struct weft__rt *rt = w->rt;
    WEFT__PP(WEFT__PP_BEFORE_IDLE, w);
    bool poller = weft__spin_trylock(&rt->poll_lock);
    atomic_store_explicit(&w->in_reactor, poller, SEQ);
    atomic_fetch_add_explicit(&rt->nidle, 1, SEQ);
    atomic_store_explicit(&w->sleeping, 1, SEQ);
    atomic_thread_fence(SEQ);
    WEFT__PP(WEFT__PP_LAST_LOOK, w);
    if (!work_visible(w)) {
        count(&w->n_sleeps);
        int64_t now = weft__clock();
        if (poller) {
            poll_reactor(w, ms_until(until, now));
            w->next_io = weft__clock() + IO_INTERVAL;
        } else if (until == INT64_MAX) {
            weft__os_wait(&w->sleeping, 1, -1);
        } else if (until > now) {
            weft__os_wait(&w->sleeping, 1, until - now);
        }
    }
    /* Retract the sleep; if a notifier claimed it meanwhile (sleeping is
     * already 0), its wake-up is spent here, which is what it was for. */
    atomic_store_explicit(&w->sleeping, 0, SEQ);
    atomic_fetch_sub_explicit(&rt->nidle, 1, SEQ);
    atomic_store_explicit(&w->in_reactor, 0, RLX);
    if (poller)
        weft__spin_unlock(&rt->poll_lock);
}

/* A non-blocking look at the shared reactor, if nobody else has it. */
static void mt_poll_now(struct weft__worker *w)
{
    struct weft__rt *rt = w->rt;
    if (!weft__spin_trylock(&rt->poll_lock))
        return;
    poll_reactor(w, 0);
    weft__spin_unlock(&rt->poll_lock);
    w->next_io = weft__clock() + IO_INTERVAL;
}

static struct weft__fiber *find_work(struct weft__worker *w, int64_t now)
{
    struct weft__rt *rt = w->rt;
    struct weft__fiber *f;
    if (w->inj_first) {
        w->inj_first = false;
        if ((f = inj_pop(w)) != NULL)
            return f;
    }
    if ((f = mt_pop(w)) != NULL)
        return f;
    if ((f = inj_pop(w)) != NULL)
        return f;
    /* Spin a while before sleeping: a futex sleep and wake-up cost
     * several microseconds here, and work often comes back sooner (a
     * fiber on another worker answering one of ours). */
    atomic_fetch_add_explicit(&rt->nspinning, 1, SEQ);
    /* Not under valgrind: it runs one thread at a time, so a spinner only
     * delays the thread it waits for. */
    int64_t spin_end = now + (weft__unlikely(__atomic_load_n(&weft__on_valgrind, __ATOMIC_RELAXED))
                                  ? 0 : SPIN_NS);
    for (unsigned i = 0;; i++) {
        if (atomic_load_explicit(&w->inbox_n, RLX)) {
            inbox_drain(w);
            f = mt_pop(w);
            break;
        }
        if ((f = steal_any(w)) != NULL || (f = inj_pop(w)) != NULL)
            break;
        if (atomic_load_explicit(&rt->post_count, RLX) || atomic_load_explicit(&rt->stop, RLX))
            break;
        if ((i & 15) == 15 && weft__clock() >= spin_end)
            break;
        weft__cpu_relax();
    }
    /* The last spinner to find work wakes another to look for more (Go's
     * resetspinning), so a burst of work spreads across the workers. */
    if (atomic_fetch_sub_explicit(&rt->nspinning, 1, SEQ) == 1 && f)
        weft__notify(rt);
    return f;
}

/* Several workers: whoever first sees the trim fall due runs it. An idle
 * worker has given its cached stacks back to the pool before sleeping
 * (weft__worker_stacks_spill), so stacks freed on any worker age there. */
static void mt_trim_if_due(struct weft__rt *rt, int64_t now)
{
    int64_t due = atomic_load_explicit(&rt->next_trim, RLX);
    if (now < due ||
        !atomic_compare_exchange_strong_explicit(&rt->next_trim, &due, now + WEFT__TRIM_INTERVAL, RLX, RLX))
        return;
    pools_trim(rt);
}

/* Fibers queued to run on w or in the injector: posts are started only
 * while this is short, so a flood of posts waits in its queue instead of
 * becoming runnable fibers faster than they run (one worker gets the same
 * bound from running a whole round between two drains). */
static size_t mt_backlog(const struct weft__worker *w)
{
    return (size_t)(uint32_t)(atomic_load_explicit(&w->rq_t, RLX) -
                              atomic_load_explicit(&w->rq_h, RLX)) +
           atomic_load_explicit(&w->rt->inj_n, RLX);
}

static void mt_loop(struct weft__worker *w)
{
    struct weft__rt *rt = w->rt;
    w->next_io = 0;
    for (;;) {
        int64_t now = weft__clock();
        w->now = now;
        run_timers(w, now);
        int64_t io_due = weft__io_tick(w, now);
        if (weft__shutdown_untold(rt))
            weft__shutdown_tell(w);
        if (atomic_load_explicit(&rt->post_count, RLX) && mt_backlog(w) < WEFT__RQ_SIZE)
            weft__post_drain(rt);
        inbox_drain(w);
        mt_trim_if_due(rt, now);
        if (atomic_load_explicit(&rt->stop, ACQ))
            break;
        /* A worker whose fibers keep it busy still looks at the shared
         * reactor every IO_INTERVAL: otherwise, with every worker busy,
         * nobody would, and I/O would wait for one to go idle. */
        if (now >= w->next_io)
            mt_poll_now(w);
        struct weft__fiber *next = find_work(w, now);
        if (next) {
            int64_t t = next_timer_ns(w);
            if (io_due < t)
                t = io_due;
            w->next_check = w->next_io < t ? w->next_io : t;
            w->budget = BUDGET;
            set_state(next, WEFT__F_RUNNING);
            jump(w, &w->sched, next);
            set_state(&w->sched, WEFT__F_SCHED);
            continue;
        }
        WEFT__PP(WEFT__PP_IDLE_CHECK, w);
        if (weft__post_close_if_done(rt)) {
            WEFT__PP(WEFT__PP_IDLE_DECIDED, w);
            atomic_store_explicit(&rt->stop, true, SEQ);
            wake_everyone(rt);
            break;
        }
        WEFT__PP(WEFT__PP_IDLE_DECIDED, w);
        int64_t until = next_timer_ns(w);
        if (io_due < until)
            until = io_due;
        weft__worker_stacks_spill(w);
        int64_t trim = atomic_load_explicit(&rt->next_trim, RLX);
        if (trim < until) {
            weft__spin_lock(&rt->pool_lock);
            if (pools_trimmable(rt))
                until = trim;
            weft__spin_unlock(&rt->pool_lock);
        }
        mt_sleep(w, until);
    }
}

/* Fibers spawned and not exited, from per-worker counters (a shared one
 * was a cache line every spawn and exit of every worker fought over).
 * Exits are summed first, then spawns: a fiber's spawn happens before its
 * exit, and the exit is published with release, so every exit counted has
 * its spawn counted too. The result never falls below the true count at
 * the moment between the two sums, so 0 means no fiber was alive then,
 * and none can appear afterwards except from a post. */
size_t weft__live(struct weft__rt *rt)
{
    uint64_t exited = 0, spawned = 0;
    for (unsigned i = 0; i < rt->nworkers; i++)
        exited += atomic_load_explicit(&rt->ws[i]->n_exited, ACQ);
    for (unsigned i = 0; i < rt->nworkers; i++)
        spawned += atomic_load_explicit(&rt->ws[i]->n_spawned, ACQ);
    return (size_t)(spawned - exited);
}

void weft__worker_loop(struct weft__worker *w)
{
    if (w->mt)
        mt_loop(w);
    else
        st_loop(w);
}

static void *worker_main(void *p)
{
    struct weft__worker *w = p;
    weft__san_thread_init(&w->sched.san);
    weft__fault_install();
    weft__worker_set(w);
    /* Set up before main runs: weft_run() waits for this. */
    atomic_store_explicit(&w->ready, 1, SEQ);
    weft__os_wake(&w->ready, 1);
    /* No worker runs a fiber before every worker exists: if a later
     * thread cannot be created, weft_run() fails, and a main_fn already
     * started here would have to be abandoned mid-run. */
    struct weft__rt *rt = w->rt;
    while (atomic_load_explicit(&rt->go, ACQ) == 0)
        weft__os_wait(&rt->go, 0, -1);
    if (!atomic_load_explicit(&rt->stop, ACQ))
        weft__worker_loop(w);
    weft__worker_caches_flush(w);
    weft__worker_set(NULL);
    weft__fault_uninstall();
    return NULL;
}

int weft__workers_start(struct weft__rt *rt)
{
    if (rt->nworkers == 1)
        return 0;
    /* The extra workers start with asynchronous signals blocked, as
     * helper threads should (weft__os_thread_start). */
    int err = 0;
    for (unsigned i = 1; i < rt->nworkers && !err; i++) {
        err = weft__os_thread_start(&rt->ws[i]->thread, worker_main, rt->ws[i]);
        if (err)
            break;
        rt->ws[i]->started = true;
        WEFT__PP(WEFT__PP_WORKER_CREATED, rt->ws[i]);
    }
    if (err) {
        /* The ones that started have run nothing yet (they wait for go):
         * they leave at once, and weft_run() fails cleanly. */
        atomic_store_explicit(&rt->stop, true, SEQ);
    } else {
        for (unsigned i = 1; i < rt->nworkers; i++)
            while (atomic_load_explicit(&rt->ws[i]->ready, SEQ) == 0)
                weft__os_wait(&rt->ws[i]->ready, 0, -1);
    }
    atomic_store_explicit(&rt->go, 1, REL);
    weft__os_wake(&rt->go, INT32_MAX);
    if (err) {
        for (unsigned i = 1; i < rt->nworkers; i++)
            if (rt->ws[i]->started)
                pthread_join(rt->ws[i]->thread, NULL);
        return -err;
    }
    return 0;
}

void weft__workers_join(struct weft__rt *rt)
{
    for (unsigned i = 1; i < rt->nworkers; i++)
        if (rt->ws[i]->started)
            pthread_join(rt->ws[i]->thread, NULL);
}
