/* time.c - the clock, deadlines, sleeping and periodic intervals.
 *
 * Deadlines are absolute nanoseconds of CLOCK_MONOTONIC. The timer wheel
 * counts 1 ms ticks from its worker's epoch; a deadline becomes the first
 * tick at or after it (rounded up), so a sleep may end up to a tick late
 * but never early.
 *
 * Multi-worker: a sleep is a wait that only its timer or a cancellation
 * ends, so it parks with no lock and no unlink (weft__park's lock NULL):
 * there is no object and no queue for a waker to race with; the scheduler
 * makes the timer and a canceller agree on who wakes the fiber (only one
 * weft__wake() of a parked fiber succeeds). The tick conversions read only
 * the given worker's epoch, which never changes after it starts. A
 * weft_interval belongs to the one fiber that ticks it.
 */
#include "internal.h"

#include <time.h>

int64_t weft__clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t weft_now(void) { return weft__clock(); }

int64_t weft_deadline_ms(int64_t ms)
{
    if (ms < 0)
        return WEFT_FOREVER;
    int64_t now = weft__clock();
    if (ms > (INT64_MAX - now) / 1000000)
        return INT64_MAX;
    return now + ms * 1000000;
}

uint64_t weft__tick_of_deadline(const struct weft__worker *w, int64_t deadline)
{
    if (deadline <= w->epoch)
        return 0;
    uint64_t d = (uint64_t)(deadline - w->epoch);
    return d / WEFT__TICK_NS + (d % WEFT__TICK_NS != 0);
}

uint64_t weft__tick_of_now(const struct weft__worker *w, int64_t now)
{
    return now <= w->epoch ? 0 : (uint64_t)(now - w->epoch) / WEFT__TICK_NS;
}

int weft_sleep_until(int64_t deadline)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    if (!self)
        return -EPERM;
    self->wait.kind = WEFT__W_SLEEP;
    self->wait.obj = NULL;
    self->wait.unlink = NULL;       /* nothing to take it off: timer or cancel wakes */
    self->wait.uncancellable = 0;
    int r = weft__park(w, self, deadline, NULL);
    return r == -ETIMEDOUT ? 0 : r;
}

int weft_sleep_ms(int64_t ms) { return weft_sleep_until(weft_deadline_ms(ms)); }

int weft_interval_init(weft_interval *iv, int64_t period_ns, int missed)
{
    if (!iv || period_ns <= 0 ||
        (missed != WEFT_MISSED_BURST && missed != WEFT_MISSED_DELAY && missed != WEFT_MISSED_SKIP))
        return -EINVAL;
    int64_t now = weft__clock();
    if (period_ns > INT64_MAX - now)
        return -EINVAL;
    iv->period = period_ns;
    iv->next = now + period_ns;
    iv->missed = missed;
    iv->reserved_ = 0;
    return 0;
}

int weft_interval_tick(weft_interval *iv)
{
    if (!iv || iv->period <= 0)
        return -EINVAL;
    if (!weft__self(weft__worker()))
        return -EPERM;
    int r = weft_sleep_until(iv->next);
    if (r < 0)
        return r;
    int64_t now = weft__clock();
    int64_t late = now - iv->next;      /* >= 0: sleeping never ends early */
    int64_t missed = late / iv->period; /* further ticks already due */
    int64_t overflow_guard = INT64_MAX - now;
    switch (iv->missed) {
    case WEFT_MISSED_BURST:
        iv->next += iv->period;
        return 1;
    case WEFT_MISSED_DELAY:
        iv->next = iv->period > overflow_guard ? INT64_MAX : now + iv->period;
        break;
    default: /* WEFT_MISSED_SKIP */
        iv->next += (missed + 1) * iv->period;
        break;
    }
    return missed >= INT32_MAX ? INT32_MAX : (int)(missed + 1);
}
