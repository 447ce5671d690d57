/* weft/sync.h - mutex, condition variable, semaphore and wait group for the
 * fibers of one runtime.
 *
 * These are public fixed-size structs so they can live inside user structs
 * and need no allocation; their fields are private. Initialise each one
 * either with its _init() call or with its static initialiser
 * (WEFT_MUTEX_INIT, WEFT_COND_INIT, WEFT_SEM_INIT(v), WEFT_WG_INIT). An
 * object that was never initialised (all zero bytes, say) is recognised by
 * a missing magic word and every call on it returns -EINVAL.
 *
 * Waiters are served first come, first served: a mutex unlock hands the
 * mutex straight to the longest waiter, and a semaphore release hands its
 * unit straight to the longest waiter, so a fiber that keeps re-locking can
 * never starve the others ("no barging").
 *
 * Every blocking call takes an absolute deadline (WEFT_FOREVER for none),
 * returns -ETIMEDOUT when it passes and -ECANCELED when the calling fiber is
 * cancelled, and in both cases leaves nothing queued on the object. A
 * deadline already in the past makes the call try once without parking.
 *
 * An object that has fibers waiting on it, or a mutex that is locked,
 * belongs to that runtime until it is idle again: using it from a fiber of
 * another runtime meanwhile returns -EXDEV. Do not copy or re-initialise
 * an object while it is in use.
 */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H

#include <stdint.h>

#include "weft/export.h"

WEFT_BEGIN_DECLS

typedef struct weft_mutex { uint64_t private_[8]; } weft_mutex;
typedef struct weft_cond  { uint64_t private_[8]; } weft_cond;
typedef struct weft_sem   { uint64_t private_[8]; } weft_sem;
typedef struct weft_wg    { uint64_t private_[8]; } weft_wg;

/* Magic words marking an initialised object (the first private word).
 * Implementation details: use the initialisers below, not these. */
#define WEFT__MUTEX_MAGIC UINT64_C(0x7765667400d7e701)
#define WEFT__COND_MAGIC  UINT64_C(0x7765667400c0d702)
#define WEFT__SEM_MAGIC   UINT64_C(0x77656674005e7703)
#define WEFT__WG_MAGIC    UINT64_C(0x7765667400a7c604)

/** Static initialisers, equivalent to the matching _init() call. */
#define WEFT_MUTEX_INIT  { { WEFT__MUTEX_MAGIC } }
#define WEFT_COND_INIT   { { WEFT__COND_MAGIC } }
/** A semaphore with v units (v >= 0; a negative v makes every call -EINVAL). */
#define WEFT_SEM_INIT(v) { { WEFT__SEM_MAGIC, (uint64_t)(int64_t)(v) } }
#define WEFT_WG_INIT     { { WEFT__WG_MAGIC } }

/* -------------------------------------------------------------------- mutex */

/**
 * weft_mutex_init - make *m an unlocked mutex. Callable anywhere.
 * Returns 0, or -EINVAL (m NULL).
 */
WEFT_API int weft_mutex_init(weft_mutex *m);

/**
 * weft_mutex_lock - lock m, parking until it is free or the deadline.
 * Waiters get the mutex in arrival order; unlock hands it over directly.
 * Returns 0 (the caller owns m), or:
 *  -ETIMEDOUT  the deadline passed first (a past deadline still locks a
 *              free mutex: it tries once)
 *  -ECANCELED  the calling fiber was cancelled while it would have waited
 *  -EDEADLK    the caller already owns m (the mutex is not recursive)
 *  -EINVAL     m NULL or not initialised
 *  -EXDEV      m is in use by another runtime
 *  -EPERM      not called from inside a fiber
 */
WEFT_API int weft_mutex_lock(weft_mutex *m, int64_t deadline);

/**
 * weft_mutex_trylock - lock m only if that needs no waiting.
 * Returns 0, or -EBUSY (m is locked, also by the caller), -EINVAL, -EXDEV,
 * -EPERM.
 */
WEFT_API int weft_mutex_trylock(weft_mutex *m);

/**
 * weft_mutex_unlock - unlock m; the longest waiter, if any, becomes its
 * owner and is made runnable.
 * Returns 0, or -EPERM (the caller does not own m, or is not a fiber),
 * -EINVAL.
 */
WEFT_API int weft_mutex_unlock(weft_mutex *m);

/* --------------------------------------------------------------------- cond */

/**
 * weft_cond_init - make *c a condition variable with no waiters. Callable
 * anywhere. Returns 0, or -EINVAL (c NULL).
 */
WEFT_API int weft_cond_init(weft_cond *c);

/**
 * weft_cond_wait - atomically unlock m and wait for a signal on c, then
 * lock m again. m must be locked by the caller. Whatever the result
 * (except -EINVAL and -EPERM, which change nothing) the caller owns m again
 * when the call returns; re-locking m waits as long as it takes and cannot
 * be cancelled, like pthread_cond_wait. Wake-ups are never spurious, but
 * re-check the predicate anyway: another fiber may have got the mutex
 * first and changed the state.
 * Returns 0 (signalled), or:
 *  -ETIMEDOUT  the deadline passed before a signal (a past deadline
 *              returns at once, without unlocking m)
 *  -ECANCELED  the calling fiber was cancelled (at once, without
 *              unlocking m, if it already was)
 *  -EPERM      the caller does not own m, or is not a fiber
 *  -EINVAL     c or m NULL or not initialised, or c has waiters that
 *              use another mutex
 *  -EXDEV      c or m is in use by another runtime
 */
WEFT_API int weft_cond_wait(weft_cond *c, weft_mutex *m, int64_t deadline);

/**
 * weft_cond_signal - wake the longest waiter of c, if any. Holding the
 * mutex is not required. Returns 0, or -EINVAL, -EXDEV, -EPERM.
 */
WEFT_API int weft_cond_signal(weft_cond *c);

/**
 * weft_cond_broadcast - wake every waiter of c, in arrival order.
 * Returns 0, or -EINVAL, -EXDEV, -EPERM.
 */
WEFT_API int weft_cond_broadcast(weft_cond *c);

/* ---------------------------------------------------------------- semaphore */

/**
 * weft_sem_init - make *s a counting semaphore holding value units.
 * Callable anywhere. Returns 0, or -EINVAL (s NULL, value < 0).
 */
WEFT_API int weft_sem_init(weft_sem *s, int64_t value);

/**
 * weft_sem_acquire - take one unit, parking until one is released or the
 * deadline. Waiters are served in arrival order.
 * Returns 0, or -ETIMEDOUT, -ECANCELED, -EINVAL, -EXDEV, -EPERM.
 */
WEFT_API int weft_sem_acquire(weft_sem *s, int64_t deadline);

/**
 * weft_sem_tryacquire - take one unit only if one is available now.
 * Returns 0, or -EAGAIN (none available), -EINVAL, -EXDEV, -EPERM.
 */
WEFT_API int weft_sem_tryacquire(weft_sem *s);

/**
 * weft_sem_release - give back one unit: to the longest waiter if there is
 * one, else to the count.
 * Returns 0, or -EOVERFLOW (the count is at INT64_MAX), -EINVAL, -EXDEV,
 * -EPERM.
 */
WEFT_API int weft_sem_release(weft_sem *s);

/* --------------------------------------------------------------- wait group */

/**
 * weft_wg_init - make *wg a wait group with a count of 0. Callable anywhere.
 * Returns 0, or -EINVAL (wg NULL).
 */
WEFT_API int weft_wg_init(weft_wg *wg);

/**
 * weft_wg_add - add delta (which may be negative) to the count. When the
 * count reaches 0 every waiter is woken.
 * Returns 0, or -EINVAL (wg NULL or not initialised, or the count would
 * go below 0; the count is then unchanged), -EOVERFLOW (it would pass
 * INT64_MAX), -EXDEV, -EPERM.
 */
WEFT_API int weft_wg_add(weft_wg *wg, int64_t delta);

/** weft_wg_done - weft_wg_add(wg, -1). */
WEFT_API int weft_wg_done(weft_wg *wg);

/**
 * weft_wg_wait - park until the count is 0 (at once if it is).
 * Returns 0, or -ETIMEDOUT, -ECANCELED, -EINVAL, -EXDEV, -EPERM.
 */
WEFT_API int weft_wg_wait(weft_wg *wg, int64_t deadline);

WEFT_END_DECLS

#endif
