/* weft/backoff.h - exponential back-off with jitter for retry loops:
 *
 *     weft_backoff b;
 *     weft_backoff_init(&b, 10 * 1000000, 2000 * 1000000, 8); // 10 ms..2 s, 8 retries
 *     while ((fd = weft_tcp_connect(addr, dl)) < 0)
 *         if (weft_backoff_wait(&b, dl) < 0)
 *             break;                               // gave up: limit, deadline, cancel
 *
 * Delay n (counting from 0) is drawn uniformly from [d/2, d] where
 * d = min(cap, base * 2^n) ("equal jitter"): it grows exponentially, never
 * exceeds the cap, and the random half spreads out clients that failed
 * together so they do not retry in lock step.
 */
#ifndef WEFT_BACKOFF_H
#define WEFT_BACKOFF_H

#include <stdint.h>

#include "weft/export.h"

WEFT_BEGIN_DECLS

/** max_retries value for no limit. */
#define WEFT_BACKOFF_UNLIMITED (-1)

/** Public so it can live anywhere; the fields are private. */
typedef struct weft_backoff {
    int64_t  base_ns, cap_ns;
    int32_t  max_retries, attempt;
    uint64_t rng;
    uint64_t magic;
} weft_backoff;

/**
 * weft_backoff_init - set up a schedule. Callable anywhere.
 * @base_ns:     the first delay's upper bound (> 0).
 * @cap_ns:      the largest delay (>= base_ns).
 * @max_retries: how many waits are allowed, or WEFT_BACKOFF_UNLIMITED.
 * Returns 0, or -EINVAL (b NULL or the values out of range).
 */
WEFT_API int weft_backoff_init(weft_backoff *b, int64_t base_ns, int64_t cap_ns, int max_retries);

/**
 * weft_backoff_next - consume the next delay without sleeping (for callers
 * that wait some other way). Callable anywhere.
 * Returns the delay in ns (> 0), or -ERANGE (the retry limit is used up),
 * -EINVAL.
 */
WEFT_API int64_t weft_backoff_next(weft_backoff *b);

/**
 * weft_backoff_wait - sleep the calling fiber for the next delay.
 * Returns the number of waits so far (1 after the first), or:
 *  -ERANGE     the retry limit is used up (no sleep)
 *  -ETIMEDOUT  the delay would end after deadline: returns at once without
 *              sleeping, and the attempt is not used up
 *  -ECANCELED  the fiber was cancelled (before or during the sleep)
 *  -EINVAL     b NULL or not initialised
 *  -EPERM      not called from inside a fiber
 */
WEFT_API int weft_backoff_wait(weft_backoff *b, int64_t deadline);

/** weft_backoff_reset - start again from the first delay (after a success). */
WEFT_API void weft_backoff_reset(weft_backoff *b);

WEFT_END_DECLS

#endif
