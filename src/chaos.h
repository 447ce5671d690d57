/* chaos.h - preemption points on the several-worker paths (private;
 * testing builds only).
 *
 * The races a multi-worker scheduler can have need one thread to stop at
 * one exact point while another runs past a second one. Ordinary stress
 * tests almost never produce that. So the places where such a window
 * exists are named here, and a testing build (cmake -DWEFT_CHAOS=ON)
 * calls weft__pp_hit() at each of them:
 *  - a test installs a hook (weft__pp_set) that sees every hit with its
 *    point and argument, and can make that thread wait for another
 *    thread's point: an interleaving is then driven on purpose and a test
 *    written for a defect fails every time the defect is there;
 *  - chaos mode (WEFT_CHAOS=SEED[:PERMILLE] in the environment) makes a
 *    seeded random share of hits spin, yield the CPU or sleep a few
 *    microseconds, so the stress suites shake every window at once. The
 *    seed is printed; the same seed gives each thread the same sequence
 *    of delays again.
 * In any other build WEFT__PP() is nothing at all: no call, no load.
 */
#ifndef WEFT_CHAOS_H
#define WEFT_CHAOS_H

#include <stdint.h>

enum weft__pp {
    /* runtime.c: a worker took posts off the queue and dropped the lock;
     * the fibers are not spawned yet (arg: the runtime) */
    WEFT__PP_POST_TAKEN,
    /* sched.c: an idle worker is about to decide whether the runtime is
     * finished (arg: the worker) */
    WEFT__PP_IDLE_CHECK,
    /* sched.c: the same decision made; the worker leaves or sleeps
     * (arg: the worker) */
    WEFT__PP_IDLE_DECIDED,
    /* sched.c: a worker that found no work, before it counts itself idle
     * (arg: the worker) */
    WEFT__PP_BEFORE_IDLE,
    /* sched.c: a sleeper counted itself idle, before its last look at
     * the queues (arg: the worker) */
    WEFT__PP_LAST_LOOK,
    /* sched.c: a fiber queued on a worker, before the notify decision
     * (arg: the fiber) */
    WEFT__PP_PUSHED,
    /* sched.c: a parking fiber stored PARKED; the object's lock is not yet
     * released (arg: the fiber) */
    WEFT__PP_PARKED,
    /* sched.c: the context that runs after a fiber stored its saved
     * context, before it clears on_cpu (arg: the fiber left) */
    WEFT__PP_ON_CPU,
    /* fiber.c: a handle decoded to a control block, not yet acted on
     * (arg: the control block) */
    WEFT__PP_HANDLE,
    /* fiber.c: a spawn between making the block visible and reading
     * whether the runtime shuts down (arg: the new fiber) */
    WEFT__PP_SPAWN,
    /* sched.c: shutdown began (main returned), before the cancel walk
     * (arg: the runtime) */
    WEFT__PP_SHUTDOWN_WALK,
    /* sched.c: the cancel walk finished (arg: the runtime) */
    WEFT__PP_SHUTDOWN_WALKED,
    /* sched.c: an extra worker thread was created, before the next one
     * (arg: the worker) */
    WEFT__PP_WORKER_CREATED,
    /* io.c: a short read on a stream socket, before the drained-read
     * decision (arg: the descriptor, as intptr_t) */
    WEFT__PP_DRAINED_READ,
    /* runtime.c: weft_post took a reference to the runtime, before it
     * looks at the runtime (arg: the runtime) */
    WEFT__PP_POST_REF,
    /* runtime.c: a finished runtime closed its handle slot, before it
     * waits for the references taken earlier (arg: the runtime) */
    WEFT__PP_RT_CLOSED,
    /* runtime.c: weft_rt_shutdown stored the flag, before it wakes the
     * reactor (arg: the runtime) */
    WEFT__PP_SHUTDOWN_ASKED,
    /* runtime.c: weft_rt_shutdown_wait found no shutdown asked, before it
     * queues itself (the lock is held; arg: the fiber) */
    WEFT__PP_SHUTDOWN_WAIT,
    WEFT__PP_COUNT
};

#ifdef WEFT_CHAOS
void weft__pp_hit(enum weft__pp pp, const void *arg);
#define WEFT__PP(pp, arg) weft__pp_hit(pp, (const void *)(arg))

/* Testing API. The hook sees every hit on every thread until replaced
 * (NULL removes it); it runs before any chaos delay. */
typedef void (*weft__pp_fn)(enum weft__pp pp, const void *arg);
void weft__pp_set(weft__pp_fn fn);
/* Chaos mode from a test: seed 0 turns it off; permille of the hits are
 * delayed. The environment's WEFT_CHAOS is read by weft_run(). */
void weft__chaos_set(uint64_t seed, unsigned permille);
/* Reads WEFT_CHAOS (weft_run calls it); prints the seed the first time. */
void weft__chaos_from_env(void);
/* Hits counted per point since the start (tests: "this path ran"). */
uint64_t weft__pp_count(enum weft__pp pp);
const char *weft__pp_name(enum weft__pp pp);
#else
#define WEFT__PP(pp, arg) ((void)sizeof(arg))  /* names arg, evaluates nothing */
#endif

#endif
