/* lock.h - the short spinlock that guards a synchronisation object, a
 * descriptor entry or a fiber's join state when a runtime has several
 * workers (private).
 *
 * Critical sections under these locks are a handful of loads and stores:
 * no syscall that can block, no context switch, never a call that takes
 * the same lock again. A spinlock then beats a futex-based mutex (no
 * syscall on contention, one cache line). A holder can still be preempted
 * by the kernel, so a waiter that has spun for a while yields its CPU.
 *
 * weft__lock()/weft__unlock() take the lock only when the worker belongs
 * to a multi-worker runtime: with one worker nothing runs concurrently and
 * the single-worker paths stay free of atomic read-modify-writes.
 */
#ifndef WEFT_LOCK_H
#define WEFT_LOCK_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef _Atomic uint32_t weft__lockword;

static inline void weft__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static inline bool weft__spin_trylock(weft__lockword *l)
{
    return atomic_load_explicit(l, memory_order_relaxed) == 0 &&
           atomic_exchange_explicit(l, 1, memory_order_acquire) == 0;
}

static inline void weft__spin_lock(weft__lockword *l)
{
    unsigned spins = 0;
    while (!weft__spin_trylock(l)) {
        while (atomic_load_explicit(l, memory_order_relaxed) != 0) {
            if (++spins < 128)
                weft__cpu_relax();
            else
                sched_yield();
        }
    }
}

static inline void weft__spin_unlock(weft__lockword *l)
{
    atomic_store_explicit(l, 0, memory_order_release);
}

#endif
