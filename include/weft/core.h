/* weft/core.h - the runtime, fibers, time and introspection. */
#ifndef WEFT_CORE_H
#define WEFT_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "weft/export.h"

WEFT_BEGIN_DECLS

/** A deadline that never expires. */
#define WEFT_FOREVER ((int64_t)-1)

/**
 * weft_strerror - a static, thread-safe description of a weft error.
 * @err: a negative errno value as returned by any weft call (a positive one
 *       is accepted too).
 * Returns a string that is never NULL and never changes.
 */
WEFT_API const char *weft_strerror(int err);

/* ------------------------------------------------------------------ runtime */

/** How stacks are protected against overflow (weft_config.guard). */
enum weft_guard {
    WEFT_GUARD_AUTO = 0, /* a guard page on every stack while the kernel allows,
                            then a canary checked on every switch */
    WEFT_GUARD_ALWAYS,   /* a guard page or the spawn fails with -ENOMEM */
    WEFT_GUARD_NEVER     /* no guard page; the canary check still runs */
};

/** Readiness backend (weft_config.reactor). */
enum weft_reactor {
    WEFT_REACTOR_AUTO = 0, /* epoll on Linux; $WEFT_REACTOR=poll|epoll overrides */
    WEFT_REACTOR_EPOLL,
    WEFT_REACTOR_POLL
};

typedef struct weft_config {
    int    workers;          /* worker OS threads; 1 = single-threaded (default);
                                0 = one per online CPU; at most 1024. With
                                several, fibers migrate between them (work
                                stealing) unless spawned pinned */
    size_t stack_size;       /* usable bytes of a pooled stack; default 256 KiB,
                                rounded up to whole pages */
    size_t prealloc_fibers;  /* stacks + control blocks made up front so that
                                spawning up to this many needs no allocation */
    int    guard;            /* enum weft_guard */
    /* Fields beyond API v0. Always start from weft_config_init(). */
    int    reactor;          /* enum weft_reactor */
    int    dump_on_sigquit;  /* 1: SIGQUIT prints weft_dump(stderr) and the
                                process goes on (the signal is then blocked
                                while the runtime runs, see weft_signal_wait) */
    int    stack_high_water; /* 1: measure how deep each fiber's stack went
                                (weft_dump, weft_stats.stack_high_water); costs
                                a syscall and page faults per spawn: debugging only */
    int    shutdown_on_signals; /* 1: SIGINT and SIGTERM call weft_rt_shutdown()
                                on this runtime instead of ending the process
                                (a handler is installed while it runs; the
                                previous dispositions come back afterwards) */
} weft_config;

/** Fills *cfg with the defaults (one worker, 256 KiB stacks, AUTO guard). */
WEFT_API void weft_config_init(weft_config *cfg);

/**
 * weft_run - run main_fn(arg) as the first fiber of a new runtime on the
 * calling thread, until it and every other fiber have finished.
 * @cfg: NULL for the defaults.
 *
 * Fibers still alive when main_fn returns are cancelled (their blocking
 * calls return -ECANCELED, new spawns start cancelled) and then joined.
 * With several workers the calling thread is worker 0 and the others are
 * threads weft_run() creates and joins before it returns.
 * Returns 0 once everything has finished and every resource is released, or:
 *  -EINVAL   main_fn is NULL, or a field of cfg is out of range
 *  -EDEADLK  called from inside a fiber (a runtime cannot nest on a worker)
 *  -EAGAIN   256 runtimes run already (or a worker thread could not be made)
 *  -ENOMEM, -EMFILE, ...  the runtime could not be set up
 */
WEFT_API int weft_run(const weft_config *cfg, void (*main_fn)(void *arg), void *arg);

/* A runtime's handle. Not a pointer to the runtime: a value that stays
 * safe to pass after the runtime has finished (calls then return
 * -ESHUTDOWN), from any thread. */
typedef struct weft_rt weft_rt;

/** The handle of the calling fiber's runtime, or NULL outside any fiber.
 * It is the same value for the runtime's whole life. */
WEFT_API weft_rt *weft_runtime(void);

/**
 * weft_post - start fn(arg) as a new detached fiber of rt. Thread-safe and
 * callable from any OS thread, inside the runtime or not (a signal handler
 * excepted), also after rt has finished.
 * Returns 0, or:
 *  -EINVAL     rt or fn NULL, or rt not a runtime handle
 *  -ESHUTDOWN  the runtime has finished, or is returning from weft_run
 *  -ENOMEM     no memory for the request
 * A post accepted while the runtime is shutting down (main_fn returned)
 * still runs, in a fiber that starts cancelled.
 */
WEFT_API int weft_post(weft_rt *rt, void (*fn)(void *arg), void *arg);

/* ----------------------------------------------------------------- shutdown */

/**
 * weft_rt_shutdown - mark rt as shutting down and wake the fibers in
 * weft_rt_shutdown_wait(). It cancels nothing: what shutting down means is
 * the program's business (docs/guide.md, "Shutting down"). Callable from
 * any thread, inside the runtime or not, and from a signal handler
 * (async-signal-safe); calling it again is harmless.
 * Returns 0, or -EINVAL (rt NULL or not a runtime handle), -ESHUTDOWN (the
 * runtime has finished).
 */
WEFT_API int weft_rt_shutdown(weft_rt *rt);

/**
 * weft_rt_shutdown_wait - park until weft_rt_shutdown() has been called on
 * the caller's runtime (at once if it has been).
 * Returns 0, or -ETIMEDOUT (the deadline passed first), -ECANCELED (the
 * calling fiber was cancelled), -EPERM (not called from inside a fiber).
 */
WEFT_API int weft_rt_shutdown_wait(int64_t deadline);

/**
 * weft_rt_shutdown_requested - the cheap check for loops: 1 if
 * weft_rt_shutdown() has been called on rt, 0 if not. rt NULL means the
 * calling fiber's runtime (a load and no more). Callable anywhere.
 * Returns 1, 0, or -EPERM (rt NULL outside a fiber), -EINVAL (not a
 * runtime handle), -ESHUTDOWN (rt has finished). The errors are non-zero,
 * so `while (!weft_rt_shutdown_requested(rt))` ends on them too.
 */
WEFT_API int weft_rt_shutdown_requested(weft_rt *rt);

/* ------------------------------------------------------------------- fibers */

typedef struct weft_fiber weft_fiber; /* opaque handle; never dereference */
typedef void *(*weft_fn)(void *arg);

typedef struct weft_attr {
    size_t      stack_size;  /* 0 = the runtime's pooled size; other sizes
                                are rounded up to pages and pooled by size */
    const char *name;        /* copied (up to 31 bytes); shown in weft_dump()
                                and in crash reports */
    int         pinned;      /* 1 = never migrates to another worker */
} weft_attr;

/** Fills *attr with the defaults (pooled stack size, no name, not pinned). */
WEFT_API void weft_attr_init(weft_attr *attr);

/**
 * weft_spawn - start fn(arg) as a new fiber of the caller's runtime. It runs
 * after the caller next blocks or yields.
 * @f:    receives the handle to join; NULL makes the fiber detached.
 * @attr: NULL for the defaults.
 * Returns 0, or -EPERM (not in a fiber), -EINVAL (fn NULL, stack size too
 * small or too large), -ENOMEM (no memory, or no guard page could be had
 * with WEFT_GUARD_ALWAYS).
 */
WEFT_API int weft_spawn(weft_fiber **f, const weft_attr *attr, weft_fn fn, void *arg);

/**
 * weft_join - wait until f has returned, take its result and release it.
 * @result: NULL, or receives fn's return value.
 * Returns 0, or -ETIMEDOUT (f is still running and can be joined again),
 * -ECANCELED (the caller was cancelled; f can be joined again), -ESRCH (not
 * a live handle: already joined, finished while detached, or never valid),
 * -EINVAL (f is detached, or another fiber is already joining it),
 * -EDEADLK (f is the caller), -EPERM (not in a fiber).
 */
WEFT_API int weft_join(weft_fiber *f, void **result, int64_t deadline);

/**
 * weft_detach - let f release itself when it returns. Returns 0, -ESRCH,
 * -EINVAL (already detached or being joined), -EPERM.
 */
WEFT_API int weft_detach(weft_fiber *f);

/**
 * weft_cancel - ask f to stop: its current or next blocking call returns
 * -ECANCELED, and weft_cancelled() returns 1 in it from now on. Returns 0
 * (also when f has already finished but not been joined), -ESRCH, -EPERM.
 */
WEFT_API int weft_cancel(weft_fiber *f);

/** 1 if the calling fiber has been cancelled, 0 otherwise (also outside fibers). */
WEFT_API int weft_cancelled(void);

/** The calling fiber's handle, or NULL outside any fiber. */
WEFT_API weft_fiber *weft_self(void);

/**
 * weft_pin - pin the calling fiber to the worker it runs on now (on != 0),
 * as attr.pinned does from the start, or let it migrate again (on == 0).
 * Code that keeps a thread-local's address across a blocking call (errno
 * as compilers cache it, a thread's malloc arena, a library's per-thread
 * state) is safe between weft_pin(1) and weft_pin(0). Returns the previous
 * setting (1 pinned, 0 not), or -EPERM outside a fiber. With one worker it
 * only records the setting.
 */
WEFT_API int weft_pin(int on);

/** f's id, unique for the process's life and never 0; 0 if f is not live. */
WEFT_API uint64_t weft_fiber_id(const weft_fiber *f);

/** Let every other runnable fiber run once, then continue. No-op outside fibers. */
WEFT_API void weft_yield(void);

/* --------------------------------------------------------------------- time */

/** The monotonic clock in nanoseconds. Callable anywhere. */
WEFT_API int64_t weft_now(void);

/** now + ms milliseconds; WEFT_FOREVER if ms < 0 (saturates, never wraps). */
WEFT_API int64_t weft_deadline_ms(int64_t ms);

/**
 * weft_sleep_until - park until the deadline (1 ms resolution, never early).
 * Returns 0, -ECANCELED, or -EPERM outside a fiber. A past deadline returns
 * 0 at once; WEFT_FOREVER parks until cancelled.
 */
WEFT_API int weft_sleep_until(int64_t deadline);

/** weft_sleep_until(weft_deadline_ms(ms)); ms < 0 sleeps until cancelled. */
WEFT_API int weft_sleep_ms(int64_t ms);

/** What weft_interval_tick() does about ticks it was too late for. */
enum weft_missed {
    WEFT_MISSED_BURST, /* deliver every missed tick, one per call, at once */
    WEFT_MISSED_DELAY, /* restart the schedule from now: next tick = now + period */
    WEFT_MISSED_SKIP   /* drop missed ticks, stay on the original grid */
};

/** A periodic schedule. Public so it can live anywhere; fields are private. */
typedef struct weft_interval {
    int64_t period;
    int64_t next;
    int     missed;
    int     reserved_;
} weft_interval;

/**
 * weft_interval_init - a schedule whose first tick is one period from now.
 * Callable anywhere. Returns 0, or -EINVAL (iv NULL, period_ns <= 0,
 * unknown missed policy).
 */
WEFT_API int weft_interval_init(weft_interval *iv, int64_t period_ns, int missed);

/**
 * weft_interval_tick - sleep until the next tick.
 * Returns how many ticks fell due since the previous call (>= 1): always 1
 * for BURST (late ticks are delivered one per call without sleeping); for
 * SKIP and DELAY 1 plus the number of ticks missed. Or -ECANCELED, -EINVAL,
 * -EPERM.
 */
WEFT_API int weft_interval_tick(weft_interval *iv);

/* ------------------------------------------------------------ introspection */

typedef struct weft_stats {
    uint64_t fibers_live, fibers_spawned, switches, steals,
             stacks_pooled, stacks_guarded, stacks_canary;
    /* Beyond API v0: */
    uint64_t stacks_in_use;        /* stacks owned by live fibers */
    uint64_t stacks_guard_madvise; /* of stacks_guarded: MADV_GUARD_INSTALL */
    uint64_t stacks_guard_mprotect;/* of stacks_guarded: an mprotect'd page */
    uint64_t stack_bytes_mapped;   /* address space reserved for stacks */
    uint64_t map_entries;          /* kernel map entries held by the stack pool */
    uint64_t runtimes;             /* runtimes now running */
    uint64_t stack_high_water;     /* deepest stack use seen, in bytes (0 unless
                                      weft_config.stack_high_water is on) */
} weft_stats;

/**
 * weft_stats_get - process-wide counters (the sum over every runtime).
 * fibers_spawned, switches and steals count since the process started; the
 * others are current values. Callable from any thread; values read while
 * fibers run are a consistent-enough snapshot, not an atomic one.
 */
WEFT_API void weft_stats_get(weft_stats *out);

/** One worker's counters (weft_worker_stats_get). switches, spawned, parks,
 * steals (fibers taken from other workers), sleeps (times it went idle) and
 * polls (reactor calls) count since the runtime started; runnable is its
 * run queue's length now. */
typedef struct weft_worker_stats {
    uint64_t runnable, switches, spawned, parks, steals, sleeps, polls;
} weft_worker_stats;

/** Fills *out for worker `index` (0 .. workers-1) of the calling fiber's
 * runtime. -EPERM outside a fiber, -EINVAL for a bad index or NULL out. */
WEFT_API int weft_worker_stats_get(int index, weft_worker_stats *out);

/**
 * weft_dump - write every fiber of the caller's runtime to out: id, name,
 * state, what it waits on and for how long. Outside a fiber it writes one
 * summary line per running runtime instead (fiber lists are only safe to
 * read from inside their runtime).
 */
WEFT_API void weft_dump(FILE *out);

/**
 * weft_hook_active - whether libweft_hook (docs/hooks.md) is loaded ahead of
 * libc, so that plain blocking libc calls made in fibers park only the
 * fiber. Returns 1 if so, 0 if the hook is not loaded (it was never linked,
 * the linker dropped it under --as-needed, or it is not preloaded) or is
 * loaded behind libc, where it intercepts nothing. Callable anywhere,
 * with or without the hook; it looks the hook up, so call it once, not
 * per request. With the environment variable WEFT_REQUIRE_HOOK=1,
 * weft_run() makes this check itself and aborts the program with a
 * one-line message when the answer is 0.
 */
WEFT_API int weft_hook_active(void);

WEFT_END_DECLS

#endif
