/* backoff.c - exponential back-off with jitter (weft_backoff).
 *
 * State is the caller's struct: the schedule (base, cap, retry limit), the
 * number of delays handed out so far and a private xorshift state, so a
 * back-off needs no allocation and no lock (it belongs to one retry loop).
 * Delay n is uniform in [d/2, d] with d = min(cap, base << n), computed
 * without overflow: once base << n would pass the cap, d is the cap.
 *
 * Multi-worker: nothing here is shared. weft_backoff_wait sleeps through
 * weft_sleep_until (see time.c) and keeps no worker across it; a fiber
 * that shares one weft_backoff with fibers of other workers must guard it
 * with its own mutex, as with any plain struct.
 */
#include "internal.h"

#define BACKOFF_MAGIC UINT64_C(0x77656674b0ff0ff5)

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

int weft_backoff_init(weft_backoff *b, int64_t base_ns, int64_t cap_ns, int max_retries)
{
    if (!b || base_ns <= 0 || cap_ns < base_ns || max_retries < WEFT_BACKOFF_UNLIMITED)
        return -EINVAL;
    b->base_ns = base_ns;
    b->cap_ns = cap_ns;
    b->max_retries = max_retries;
    b->attempt = 0;
    /* Different per object and per run, so clients that start together
     * spread out. */
    b->rng = (uint64_t)weft__clock() ^ ((uint64_t)(uintptr_t)b * UINT64_C(0x9e3779b97f4a7c15));
    if (!b->rng)
        b->rng = 1;
    b->magic = BACKOFF_MAGIC;
    return 0;
}

static inline bool backoff_ok(const weft_backoff *b)
{
    return b && b->magic == BACKOFF_MAGIC;
}

/* The delay for the current attempt, without consuming it. */
static int64_t delay_of(weft_backoff *b)
{
    int64_t d = b->base_ns;
    for (int32_t i = 0; i < b->attempt && d < b->cap_ns; i++)
        d = d > b->cap_ns / 2 ? b->cap_ns : d * 2;
    if (d > b->cap_ns)
        d = b->cap_ns;
    int64_t half = d / 2;
    return d - (int64_t)(xorshift(&b->rng) % (uint64_t)(half + 1));   /* in [d - d/2, d] */
}

static inline bool exhausted(const weft_backoff *b)
{
    return b->max_retries != WEFT_BACKOFF_UNLIMITED && b->attempt >= b->max_retries;
}

int64_t weft_backoff_next(weft_backoff *b)
{
    if (!backoff_ok(b))
        return -EINVAL;
    if (exhausted(b))
        return -ERANGE;
    int64_t d = delay_of(b);
    if (b->attempt < INT32_MAX)
        b->attempt++;
    return d;
}

int weft_backoff_wait(weft_backoff *b, int64_t deadline)
{
    if (!weft__self(weft__worker()))
        return -EPERM;
    if (!backoff_ok(b))
        return -EINVAL;
    if (weft_cancelled())
        return -ECANCELED;
    if (exhausted(b))
        return -ERANGE;
    int64_t d = delay_of(b);
    int64_t now = weft__clock();
    int64_t until = d > INT64_MAX - now ? INT64_MAX : now + d;
    if (deadline != WEFT_FOREVER && until > deadline)
        return -ETIMEDOUT;
    if (b->attempt < INT32_MAX)
        b->attempt++;
    int r = weft_sleep_until(until);
    return r < 0 ? r : (int)b->attempt;
}

void weft_backoff_reset(weft_backoff *b)
{
    if (backoff_ok(b))
        b->attempt = 0;
}
