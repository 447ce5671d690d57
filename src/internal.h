/* internal.h - the runtime's private structures and the calls its files
 * share (private; never installed).
 *
 * Ownership in one paragraph: a runtime (struct weft__rt) owns its workers,
 * its fiber table and its stack pool. A worker owns its run queue, its
 * timer wheel and its reactor, and runs on one OS thread. A fiber control
 * block lives in the runtime's fiber table from spawn until it is joined
 * (or, detached, until it exits); its stack is borrowed from the pool while
 * it runs and given back the moment it exits. Handles given to users are
 * not pointers but (generation, index) pairs into the table, so a stale
 * handle is always recognised (-ESRCH) instead of reaching a reused block.
 */
#ifndef WEFT_INTERNAL_H
#define WEFT_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft.h"
#include "arch/fcontext.h"
#include "chaos.h"
#include "fault.h"
#include "lock.h"
#include "os.h"
#include "reactor.h"
#include "sanitizer.h"
#include "stack.h"
#include "timer.h"
#include "waitq.h"

#define weft__likely(x)   __builtin_expect(!!(x), 1)
#define weft__unlikely(x) __builtin_expect(!!(x), 0)
#define weft__container_of(p, type, member) \
    ((type *)(void *)((char *)(p) - offsetof(type, member)))

/* Broken internal invariants abort here, in every build. */
_Noreturn void weft__must_fail(const char *file, int line, const char *what);
#define weft__must(cond, what) \
    do { if (weft__unlikely(!(cond))) weft__must_fail(__FILE__, __LINE__, what); } while (0)

/* ------------------------------------------------------------------ fibers */

enum weft__fstate {
    WEFT__F_FREE = 0,  /* in the table's free list */
    WEFT__F_RUNNABLE,  /* on a run queue */
    WEFT__F_RUNNING,
    WEFT__F_PARKED,    /* waiting; wait.kind says for what */
    WEFT__F_EXITING,   /* returned; its stack is released by whoever runs next */
    WEFT__F_DONE,      /* finished, result kept until joined */
    WEFT__F_SCHED      /* a worker's own thread context, not a user fiber */
};

enum weft__fflag {
    WEFT__FL_DETACHED  = 1u << 0,
    WEFT__FL_CANCELLED = 1u << 1,
    WEFT__FL_MAIN      = 1u << 2,  /* the runtime's main_fn fiber */
    WEFT__FL_PINNED    = 1u << 3,
    WEFT__FL_VOIDFN    = 1u << 4   /* fn is void (*)(void *): main and posted fibers */
};

enum weft__wait_kind {
    WEFT__W_NONE = 0, WEFT__W_SLEEP, WEFT__W_JOIN, WEFT__W_FD, WEFT__W_CHAN,
    WEFT__W_SELECT, WEFT__W_MUTEX, WEFT__W_COND, WEFT__W_SEM, WEFT__W_WG,
    WEFT__W_OFFLOAD, WEFT__W_SIGNAL, WEFT__W_SHUTDOWN, WEFT__W_KINDS
};

struct weft__fiber;

/* What a parked fiber waits on. unlink, when set, takes the fiber off the
 * object's wait queue; the park machinery calls it when the wait ends by
 * timeout or cancellation, so no blocking call ever leaves a waiter behind.
 * It takes the object's lock itself (weft__lock) and returns true if it
 * found the fiber still queued and removed it: the caller then owns the
 * fiber's wake-up. false means a waker got there first (it removed the
 * node under the same lock) and will wake, or has woken, the fiber. */
struct weft__wait {
    int kind;                       /* enum weft__wait_kind */
    int detail;                     /* e.g. WEFT_READ/WEFT_WRITE for an fd */
    const void *obj;                /* the fd (as intptr_t), channel, mutex, ... */
    int64_t since;                  /* weft_now() when it parked (worker clock) */
    int64_t deadline;
    bool (*unlink)(struct weft__fiber *f);
    int uncancellable;              /* cancel only marks the fiber (e.g. offload) */
};

/* The fields a switch touches come first, in one cache line. */
struct weft__fiber {
    weft__fctx ctx;                 /* saved context while not running */
    struct weft__fiber *next;       /* run queue link */
    /* worker it last ran on; other workers read it (an unlink, a dump),
     * so it is atomic (relaxed: any worker of the runtime will do) */
    struct weft__worker *_Atomic w;
    _Atomic uint8_t state;          /* enum weft__fstate */
    _Atomic uint8_t flags;          /* enum weft__fflag */
    _Atomic uint8_t on_cpu;         /* several workers: its stack is still in use */
    uint8_t reserved_;
    int wake_result;                /* what weft__park() returns */
    const uint64_t *canary;         /* non-NULL: an unguarded stack's canary word */
    struct weft__rt *rt;             /* its runtime, fixed from spawn */
    int saved_errno;                /* errno across switches (several workers) */
    struct weft__worker *_Atomic home; /* pinned fibers: the worker they stay on */
    struct weft__worker *timer_w;   /* whose wheel timer is armed on */
    union { weft_fn fn; void (*vfn)(void *); };
    void *arg;
    void *result;
    struct weft__stack *stack;
    struct weft__fiber *joiner;     /* the fiber in weft_join() on this one */
    weft__lockword lock;            /* multi-worker: guards joiner, DETACHED and exit */
    weft__lockword wait_lock;       /* multi-worker: a canceller inside wait.unlink holds it */
    struct weft__timer timer;       /* deadline of the current wait */
    struct weft__wait wait;
    void *wait_data;                /* free for the blocking call's own use */
    uint64_t id;
    uint32_t index, gen;            /* place in the fiber table; gen counts reuse */
    struct weft__san san;
    const void *spawn_site;         /* return address of the weft_spawn() call, or the entry */
    char name[32];
};

/* ----------------------------------------------------------------- workers */

#define WEFT__RQ_SIZE 256u           /* a worker's stealable ring (several workers) */
#define WEFT__WORKERS_MAX 1024       /* weft_config.workers above this: -EINVAL */

struct weft__worker {
    /* what every switch touches first */
    struct weft__rt *rt;
    bool mt;                        /* the runtime has several workers: take locks */
    unsigned budget;                /* switches left before looking at the clock */
    struct weft__fiber *current;    /* running fiber, or &sched */
    struct weft__fiber *rq_head, *rq_tail;
    _Atomic uint64_t n_switches;
    struct weft__fiber sched;       /* this thread's own context */
    int64_t next_check;             /* ns: when a fiber switch must pass the scheduler */
    int64_t next_io;                /* ns: earliest time for the next non-blocking reactor look */
    bool sched_queued;              /* &sched waits on the run queue for its turn (see sched.c) */
    bool due_entry;                 /* the scheduler was entered because it was due */
    int64_t now;                    /* ns, refreshed by the scheduler */
    int64_t epoch;                  /* ns at wheel tick 0 */
    struct weft__wheel wheel;
    const struct weft__reactor_ops *rops;
    struct weft__reactor *reactor;
    struct weft__iotab *io;         /* io.c: per-descriptor waiters, made on first use */
    /* statistics, written by this worker only (relaxed atomics so other
     * threads may read them) */
    _Atomic uint64_t n_spawned, n_exited, n_parks, n_polls;
    _Atomic uint64_t n_steals, n_sleeps;
    /* ---- several workers (see sched.c) ---- */
    unsigned index;
    pthread_t thread;
    uint64_t id_next, id_end;       /* this worker's batch of fiber ids */
    weft__lockword wheel_lock;      /* the wheel: owner and fibers deleting their timers */
    bool started;                   /* its thread was created */
    bool inj_first;                 /* the injector's turn came: look there first */
    unsigned lifo_streak;           /* fibers taken from the LIFO slot in a row */
    unsigned inj_countdown;         /* switches until the injector's turn */
    uint32_t rng;                   /* victim choice */
    struct weft__fiber *_Atomic lifo;      /* the fiber just woken runs next */
    _Atomic uint32_t rq_h, rq_t;           /* ring [h, t): owner pushes at t, anyone CASes h */
    struct weft__fiber *_Atomic ring[WEFT__RQ_SIZE];
    weft__lockword inbox_lock;             /* pinned fibers woken by other workers */
    struct weft__fiber *inbox_head, *inbox_tail;
    _Atomic uint32_t inbox_n;
    _Atomic uint32_t sleeping;      /* 1: asleep (futex word); a waker CASes it to 0 */
    _Atomic uint32_t ready;         /* its thread is set up (futex word) */
    _Atomic uint8_t in_reactor;     /* asleep in the reactor rather than on the futex */
    struct weft__fiber *fcache;     /* free control blocks kept by this worker */
    size_t nfcache;
    struct weft__stack *scache[32]; /* free stacks of the default size */
    size_t nscache;
};

/* ---------------------------------------------------------------- runtime */

struct weft__post {
    struct weft__post *next;
    void (*fn)(void *);
    void *arg;
};

/* A wake-up handed in from another thread (weft__wake_remote); the node
 * belongs to the waker and must stay valid until the fiber has run. */
struct weft__rnode {
    struct weft__rnode *next;
    struct weft__fiber *f;
    int result;
};

struct weft__ftable {
    /* WEFT__FT_BLOCK control blocks each. Other workers decode handles
     * while the table grows, so a grown array is published with release
     * stores and the old one kept (retired) until the runtime ends. */
    struct weft__fiber **_Atomic blocks;
    _Atomic uint32_t nblocks;
    uint32_t cap_blocks;
    void *retired;                  /* older block arrays, chained through word 0 */
    struct weft__fiber *free;       /* free list through ->next */
    size_t nfree;
};
#define WEFT__FT_BLOCK 1024u

#define WEFT__TRIM_INTERVAL 1000000000 /* ns: stack pool trim period */

struct weft__rt {
    weft_config cfg;
    struct weft__worker w0;
    struct weft__worker **ws;        /* every worker, ws[0] == &w0 */
    unsigned nworkers;
    bool mt;                         /* nworkers > 1 */
    bool migrate;                    /* testing: every switch goes through the injector */
    struct weft__ftable ft;
    weft__lockword ft_lock;          /* several workers: the table's free list and growth */
    struct weft__pool *pools;        /* stack pools, one per stack size */
    weft__lockword pool_lock;        /* several workers: the pools */
    _Atomic int64_t next_trim;       /* several workers: when the pools are next trimmed */
    struct weft__fiber *main;
    _Atomic bool shutting_down;
    /* several workers: the injector, idle workers, the reactor's owner */
    weft__lockword inj_lock;
    struct weft__fiber *inj_head, *inj_tail;
    _Atomic size_t inj_n;
    _Atomic int nspinning, nidle;
    weft__lockword poll_lock;        /* held by the worker polling the shared reactor */
    _Atomic bool stop;               /* every worker leaves its loop */
    _Atomic uint32_t go;             /* futex word: every worker exists, fibers may run */
    /* weft_post from other threads */
    pthread_mutex_t post_lock;
    struct weft__post *post_head, *post_tail;
    struct weft__rnode *remote_head, *remote_tail;
    _Atomic size_t post_count;
    size_t posts_starting;           /* taken off the queue, not yet spawned (post_lock) */
    bool post_closed;
    /* process-wide registry of running runtimes (stats, dump) */
    struct weft__rt *reg_next, *reg_prev;
    /* weft_rt_shutdown (runtime.c): asked (any thread, signal handlers);
     * then told: a worker has woken the waiters (under shutdown_lock) */
    _Atomic bool shutdown_asked, shutdown_told;
    weft__lockword shutdown_lock;
    struct weft__wq shutdown_waiters;
    unsigned slot;                   /* its slot in the handle table (runtime.c) */
    weft_rt *handle;                 /* what weft_runtime() gives users */
};

/* The worker of the calling thread, or NULL. Never inlined: a fiber may
 * resume on another thread, and the compiler must not reuse an address it
 * computed before a switch. */
struct weft__worker *weft__worker(void);
void weft__worker_set(struct weft__worker *w);

/* The calling thread's errno, looked up afresh at every call. glibc
 * declares __errno_location() const, so a compiler may reuse an errno
 * address computed before a switch, which after a migration is another
 * thread's. Code that reads errno after something that may switch uses
 * this (io.c and net.c redefine errno to it). */
int *weft__errno_at(void);

/* The running fiber, or NULL when the caller is not in a fiber. */
static inline struct weft__fiber *weft__self(struct weft__worker *w)
{
    return (w && w->current != &w->sched) ? w->current : NULL;
}

/* Whether w's run queue is empty (tests: "let everything runnable run"). */
bool weft__rq_empty(const struct weft__worker *w);
/* Fibers on w's run queue (a walk: for dumps and tests, not hot paths). */
size_t weft__rq_count(const struct weft__worker *w);

/* Takes and releases an object's lock when w's runtime has several
 * workers; no-ops with one (see lock.h). */
static inline void weft__lock(const struct weft__worker *w, weft__lockword *l)
{
    if (w->mt)
        weft__spin_lock(l);
}
static inline void weft__unlock(const struct weft__worker *w, weft__lockword *l)
{
    if (w->mt)
        weft__spin_unlock(l);
}

/* Park the running fiber self of worker w until weft__wake(), the deadline
 * or a cancellation. The protocol, the same for every blocking object:
 *  1. take the object's lock (weft__lock), find that self must wait, put
 *     self on the object's queue and set self->wait.kind/.obj/.unlink;
 *  2. call weft__park() with that lock still held: it marks self parked and
 *     only then releases the lock, so a waker (which needs the lock to find
 *     self) always finds a parked fiber and no wake-up is lost;
 *  3. a waker, under the object's lock, removes self from the queue and
 *     calls weft__wake(); timeout and cancellation go through wait.unlink,
 *     which removes self only if it is still queued.
 * lock may be NULL for waits that only a timer or cancellation ends.
 * Returns the value given to weft__wake(), or -ETIMEDOUT / -ECANCELED after
 * wait.unlink removed self (also at once, without switching, when the
 * deadline has passed or self is already cancelled). */
int  weft__park(struct weft__worker *w, struct weft__fiber *self, int64_t deadline,
                weft__lockword *lock);
/* Make a parked fiber runnable; park() returns result. Returns false, doing
 * nothing, if f is not parked (somebody else woke it first). The fiber runs
 * next on the caller's worker unless another steals it. */
bool weft__wake(struct weft__fiber *f, int result);
/* Put the running fiber back on the run queue and run others (weft_yield). */
void weft__yield(struct weft__worker *w, struct weft__fiber *self);

/* sched.c */
/* Queues a runnable fiber on w (w is the calling thread's worker). */
void weft__rq_push(struct weft__worker *w, struct weft__fiber *f);
/* Several workers: a fiber made runnable by a thread that may not be one
 * of rt's workers goes to the injector, and an idle worker is woken. */
void weft__inject(struct weft__rt *rt, struct weft__fiber *f);
/* Several workers: work was made runnable; wake an idle worker if none is
 * looking for work already. */
void weft__notify(struct weft__rt *rt);
/* Fibers spawned and not yet exited (sums the workers' counters). */
size_t weft__live(struct weft__rt *rt);
/* Runs the runtime's extra workers (weft_run) and stops them. */
int  weft__workers_start(struct weft__rt *rt);
void weft__workers_join(struct weft__rt *rt);
int  weft__worker_init(struct weft__worker *w, struct weft__rt *rt);
void weft__worker_fini(struct weft__worker *w);
void weft__worker_loop(struct weft__worker *w);
void weft__switch_away(struct weft__worker *w, struct weft__fiber *self);
void weft__fiber_entry(weft__transfer t);
_Noreturn void weft__fiber_exit(struct weft__worker *w, struct weft__fiber *self);

/* fiber.c */
int  weft__fiber_new(struct weft__worker *w, struct weft__fiber **out, const weft_attr *attr);
void weft__fiber_reap(struct weft__worker *w, struct weft__fiber *f);
void weft__fiber_free(struct weft__worker *w, struct weft__fiber *f);
/* Gives a worker's cached control blocks and stacks back (worker exit). */
void weft__worker_caches_flush(struct weft__worker *w);
/* Gives a worker's cached stacks back to the pool (before it sleeps). */
void weft__worker_stacks_spill(struct weft__worker *w);
void weft__fiber_cancel(struct weft__fiber *f);
int  weft__ftable_init(struct weft__ftable *ft);
void weft__ftable_fini(struct weft__ftable *ft);
struct weft__fiber *weft__fiber_decode(struct weft__rt *rt, const weft_fiber *h);
weft_fiber *weft__fiber_handle(const struct weft__fiber *f);
int  weft__ftable_reserve(struct weft__ftable *ft, size_t n);
/* Calls fn for every control block of rt that is not free (a table walk,
 * for shutdown and dumps). */
void weft__fiber_each(struct weft__rt *rt, void (*fn)(struct weft__fiber *f, void *ctx), void *ctx);
void weft__fiber_timeout(struct weft__timer *t);
/* Spawns fn(arg) on w (fn is a weft_fn, or void (*)(void *) with
 * WEFT__FL_VOIDFN in flags) and queues it. */
int  weft__spawn(struct weft__worker *w, const weft_attr *attr, void *fn, void *arg,
                 uint8_t flags, struct weft__fiber **out);

/* runtime.c */
void weft__post_drain(struct weft__rt *rt);
/* The runtime is finished when no fiber is alive and no post is queued or
 * being started; then posts are closed (weft_post returns -ESHUTDOWN) and
 * true is returned. Decided under the post lock, which every way a fiber
 * can still appear passes through. */
bool weft__post_close_if_done(struct weft__rt *rt);
/* Thread-safe weft__wake() for threads outside the runtime (offload helpers,
 * signal threads): queues n and wakes the worker, which wakes n->f. */
void weft__wake_remote(struct weft__rt *rt, struct weft__rnode *n);
/* A worker's loop calls it on every pass: once weft_rt_shutdown() was
 * asked, wakes the fibers in weft_rt_shutdown_wait(). */
void weft__shutdown_tell(struct weft__worker *w);
static inline bool weft__shutdown_untold(struct weft__rt *rt)
{
    return weft__unlikely(atomic_load_explicit(&rt->shutdown_asked, memory_order_acquire)) &&
           !atomic_load_explicit(&rt->shutdown_told, memory_order_relaxed);
}
/* signal.c: the SIGINT/SIGTERM handler of weft_config.shutdown_on_signals,
 * installed while at least one such runtime runs. */
int  weft__shutdown_signals_install(void);
void weft__shutdown_signals_uninstall(void);
/* weft_rt_shutdown on a runtime the caller holds a reference to. */
void weft__rt_shutdown(struct weft__rt *rt);
/* Head of the running runtimes, linked through reg_next; tools/weft-gdb.py
 * reads it by name, so keep the name and the links. */
extern struct weft__rt *weft__registry;
/* Also gives rt a slot in the handle table: -EAGAIN when all are taken. */
int  weft__registry_add(struct weft__rt *rt);
/* Handles (weft_rt *) and references (see the top of runtime.c). acquire
 * returns the runtime with a reference taken, or NULL with *err -EINVAL
 * (not a handle) or -ESHUTDOWN (the runtime has finished or is finishing);
 * every success is paired with weft__rt_release. Lock-free and
 * async-signal-safe. */
#define WEFT__RT_SLOTS 256u
struct weft__rt *weft__rt_acquire(const weft_rt *h, int *err);
struct weft__rt *weft__rt_acquire_slot(unsigned slot);
void weft__rt_release(struct weft__rt *rt);
void weft__rt_each_open(void (*fn)(struct weft__rt *rt, void *ctx), void *ctx);
void weft__registry_remove(struct weft__rt *rt);
void weft__registry_lock(void);
void weft__registry_unlock(void);
/* Calls fn for every running runtime; the caller holds the registry lock. */
void weft__registry_each_locked(void (*fn)(struct weft__rt *rt, void *ctx), void *ctx);

/* time.c: conversions between ns and wheel ticks */
int64_t  weft__clock(void);
uint64_t weft__tick_of_deadline(const struct weft__worker *w, int64_t deadline_ns);
uint64_t weft__tick_of_now(const struct weft__worker *w, int64_t now_ns);

/* io.c. weft__io_fini releases w->io (weft__worker_fini calls it just
 * before closing the reactor the table mirrors). weft__io_adopt records
 * that weft itself just created fd (accept, socket): whatever the table
 * remembered about an earlier descriptor with that number is dropped.
 * flags: WEFT__IO_SOCK, WEFT__IO_TCP (fd is already non-blocking; TCP:
 * a SOCK_STREAM socket of AF_INET or AF_INET6 with protocol 0 or
 * IPPROTO_TCP, the only kind on which io.c takes a short read for
 * "drained"). */
enum { WEFT__IO_SOCK = 1, WEFT__IO_TCP = 2 };
void weft__io_fini(struct weft__worker *w);
void weft__io_adopt(struct weft__worker *w, int fd, int flags);

/* debug.c */
/* The running fiber's overflow, if addr is in its guard page: reports and
 * aborts; returns otherwise (the OS's fault handler calls it). */
void weft__fault_on_guard(const void *addr);
_Noreturn void weft__overflow_report(const struct weft__fiber *f, const char *how);
void weft__stats_retire(struct weft__rt *rt);

#endif
