/* timer.h - the hierarchical timer wheel (private).
 *
 * One wheel per worker. Time is counted in ticks of 1 ms since the wheel's
 * epoch; the wheel has 6 levels of 64 slots, so level L slot width is 64^L
 * ticks and the whole wheel spans 64^6 ticks (about 2.2 years). Timers
 * further out are clamped to the last slot of the top level and re-filed as
 * time approaches, so they are never lost.
 *
 * A timer is an intrusive node embedded in its owner (a fiber control block,
 * a channel waiter, ...): arming one allocates nothing, and insert and cancel
 * are O(1). Most timers are deadlines that are cancelled before they expire,
 * which is why the wheel pays for cascading lazily rather than keeping a heap.
 *
 * Contract:
 *  - A timer whose expiry tick is <= the wheel's current tick when it is
 *    added fires at the next weft__wheel_advance() (it is never fired from
 *    inside weft__wheel_add()).
 *  - weft__wheel_advance(w, to) fires every timer with expires <= to, in
 *    nondecreasing order of firing tick; while a timer's callback runs,
 *    w->now equals the tick at which it fires (max(expires, the tick after
 *    the one current when it was added)). Callbacks may add and delete any
 *    timers, including the one firing; timers added during advance with
 *    expires <= to fire during the same advance.
 *  - weft__wheel_next() never reports a later tick than the first timer's
 *    firing tick; it may report an earlier one (a cascade point), in which
 *    case advancing to it fires nothing and the caller asks again.
 */
#ifndef WEFT_TIMER_H
#define WEFT_TIMER_H

#include <stddef.h>
#include <stdint.h>

#define WEFT__WHEEL_BITS   6
#define WEFT__WHEEL_SLOTS  (1u << WEFT__WHEEL_BITS)   /* 64 */
#define WEFT__WHEEL_LEVELS 6
#define WEFT__TICK_NS      1000000                     /* 1 ms */
#define WEFT__TICK_NONE    UINT64_MAX

struct weft__timer {
    struct weft__timer *next, *prev;   /* slot list; prev == NULL: not armed */
    uint64_t expires;                  /* tick at or after which it fires */
    void (*fn)(struct weft__timer *t); /* called once when it fires */
};

struct weft__wheel {
    uint64_t now;                       /* every timer with expires <= now has fired */
    size_t count;                       /* armed timers */
    uint64_t occupied[WEFT__WHEEL_LEVELS];  /* bit s set: slot s of that level non-empty */
    struct weft__timer slot[WEFT__WHEEL_LEVELS][WEFT__WHEEL_SLOTS]; /* list heads (sentinels) */
};

void     weft__wheel_init(struct weft__wheel *w, uint64_t now);
/* Arms t (which must not be armed) to fire at tick `expires`. */
void     weft__wheel_add(struct weft__wheel *w, struct weft__timer *t, uint64_t expires);
/* Disarms t; harmless if t is not armed. */
void     weft__wheel_del(struct weft__wheel *w, struct weft__timer *t);
/* Fires everything due up to and including tick `to` (>= w->now); returns how many fired. */
size_t   weft__wheel_advance(struct weft__wheel *w, uint64_t to);
/* The earliest tick at which something may fire, or WEFT__TICK_NONE if no timer is armed. */
uint64_t weft__wheel_next(const struct weft__wheel *w);

static inline void weft__timer_init(struct weft__timer *t, void (*fn)(struct weft__timer *))
{
    t->next = t->prev = NULL;
    t->expires = 0;
    t->fn = fn;
}

static inline int weft__timer_armed(const struct weft__timer *t) { return t->prev != NULL; }

#endif
