/* timer.c - the hierarchical timer wheel: filing, cancelling, cascading and
 * firing timers (the contract is in timer.h).
 *
 * The wheel has six levels of 64 slots. A slot of level L is 64^L ticks
 * wide, so level 0 resolves single milliseconds, level 1 spans 64 ms per
 * slot, level 2 about 4 s, level 3 about 4.4 min, level 4 about 4.7 h and
 * level 5 about 12.4 days, for a total of 64^6 ticks (about 2.2 years).
 *
 * Placement. A timer is filed by the tick `at` at which it will fire, which
 * is its expiry, or the tick after the current one if it is already due.
 * It goes to the lowest level L whose current 64^(L+1)-tick block (the block
 * that also holds w->now) contains `at`, in slot (at >> 6L) & 63. That is
 * the lowest level whose span covers the timer, with the block taken
 * aligned rather than sliding, and it buys a strong invariant: below the
 * top level a slot never wraps around, so every timer in it fires no
 * earlier than the tick at which w->now enters the slot, and all of a
 * level-0 slot's timers fire at exactly that tick. Only the top level is a
 * ring: a timer whose tick is 1 to 63 top-level slots ahead sits in its
 * own slot, and one further out (beyond the wheel's span) is clamped into
 * the slot 63 ahead, the furthest one that is still entered before its
 * tick. It keeps its real expiry and is simply filed again when that slot
 * comes up, so it is never lost and never fires early.
 *
 * Cascading is lazy: a higher-level slot is only broken up when w->now
 * enters it, and its timers are then filed again relative to the new
 * w->now (landing at a lower level, or firing at once if that tick is
 * theirs). Most timers in a fiber runtime are deadlines (a read with a
 * timeout, a lock wait) that are cancelled long before they expire; they
 * are filed once, unlinked once, and never pay for being moved. Insert and
 * cancel are O(1): slots are doubly linked lists with a sentinel head in
 * the wheel, and the per-level occupancy bitmaps are kept exact, so the
 * next slot worth visiting is found with count-trailing-zeros instead of
 * by scanning lists. That is also what lets weft__wheel_advance() cross
 * hours or days of empty ticks in a handful of steps.
 *
 * weft__wheel_next() reports the tick at which w->now enters the first
 * non-empty slot: exact for level 0, the slot's start (a cascade point,
 * never later than any of its timers) for the levels above. A timer that
 * was already due when added is filed for w->now + 1, so next() reports
 * w->now + 1 for it.
 *
 * Ticks are assumed to stay below UINT64_MAX (2^64 ms is half a billion
 * years); WEFT__TICK_NONE is UINT64_MAX. weft__wheel_advance() must not be
 * called from inside a timer callback.
 */
#include "timer.h"

#define SLOT_MASK ((uint64_t)WEFT__WHEEL_SLOTS - 1)
#define TOP       (WEFT__WHEEL_LEVELS - 1)
#define TOP_SHIFT (WEFT__WHEEL_BITS * TOP)

/* A timer in the top-level ring may sit at most this many slots ahead. */
#define TOP_REACH ((uint64_t)WEFT__WHEEL_SLOTS - 1)

static inline unsigned level_shift(int level)
{
    return (unsigned)(WEFT__WHEEL_BITS * level);
}

static inline uint64_t rotr64(uint64_t x, unsigned k)
{
    k &= 63;
    return (x >> k) | (x << ((64 - k) & 63));
}

static void link_tail(struct weft__timer *head, struct weft__timer *t)
{
    t->next = head;
    t->prev = head->prev;
    head->prev->next = t;
    head->prev = t;
}

/* Files t, which fires at tick `at` (at > w->now, or at == w->now while a
 * cascade for that tick is running), relative to the current w->now. */
static void file(struct weft__wheel *w, struct weft__timer *t, uint64_t at)
{
    uint64_t now = w->now;
    uint64_t diff = at ^ now;
    int level;
    unsigned s;

    if (diff < WEFT__WHEEL_SLOTS) {
        level = 0;
        s = (unsigned)(at & SLOT_MASK);
    } else {
        /* The highest bit in which `at` and now differ names the smallest
         * aligned block holding both, and so the level. */
        level = (63 - __builtin_clzll(diff)) / WEFT__WHEEL_BITS;
        if (level < TOP) {
            s = (unsigned)((at >> level_shift(level)) & SLOT_MASK);
        } else {
            uint64_t ahead = (at >> TOP_SHIFT) - (now >> TOP_SHIFT);
            level = TOP;
            if (ahead > TOP_REACH)
                ahead = TOP_REACH;      /* clamped: filed again when entered */
            s = (unsigned)(((now >> TOP_SHIFT) + ahead) & SLOT_MASK);
        }
    }
    link_tail(&w->slot[level][s], t);
    w->occupied[level] |= UINT64_C(1) << s;
}

void weft__wheel_init(struct weft__wheel *w, uint64_t now)
{
    w->now = now;
    w->count = 0;
    for (int l = 0; l < WEFT__WHEEL_LEVELS; l++) {
        w->occupied[l] = 0;
        for (unsigned s = 0; s < WEFT__WHEEL_SLOTS; s++) {
            struct weft__timer *h = &w->slot[l][s];
            h->next = h->prev = h;
            h->expires = 0;
            h->fn = NULL;
        }
    }
}

void weft__wheel_add(struct weft__wheel *w, struct weft__timer *t, uint64_t expires)
{
    t->expires = expires;
    /* A timer that is already due still waits for the next advance, so a
     * callback re-arming itself in the past cannot loop inside add. */
    file(w, t, expires > w->now ? expires : w->now + 1);
    w->count++;
}

/* Unlinks an armed t from its slot, keeping the bitmaps exact. */
static void unlink_timer(struct weft__wheel *w, struct weft__timer *t)
{
    struct weft__timer *p = t->prev, *n = t->next;

    p->next = n;
    n->prev = p;
    if (p == n) {
        /* Only the sentinel is left. Timers only ever live in the wheel's
         * own slot lists, so the sentinel's offset in w->slot names the
         * slot whose bit to clear, without storing it in every timer. */
        size_t i = (size_t)((const char *)n - (const char *)w->slot) / sizeof *n;
        w->occupied[i / WEFT__WHEEL_SLOTS] &= ~(UINT64_C(1) << (i % WEFT__WHEEL_SLOTS));
    }
    t->next = t->prev = NULL;
}

void weft__wheel_del(struct weft__wheel *w, struct weft__timer *t)
{
    if (!t->prev)
        return;
    unlink_timer(w, t);
    w->count--;
}

/* The first tick after `now` at which now enters a non-empty slot. Below
 * the top level only slots after now's own one in the current block can be
 * occupied; the top level is a ring and is searched from now's slot on. */
static uint64_t next_event(const struct weft__wheel *w)
{
    uint64_t now = w->now;

    for (int l = 0; l < TOP; l++) {
        unsigned sh = level_shift(l);
        unsigned idx = (unsigned)((now >> sh) & SLOT_MASK);
        uint64_t ahead = w->occupied[l] & (~UINT64_C(1) << idx);
        /* The first level with anything ahead wins: its slots all lie in
         * now's block of the level above, which ends no later than the
         * first slot any higher level could have occupied. */
        if (ahead) {
            uint64_t block = now >> (sh + WEFT__WHEEL_BITS) << (sh + WEFT__WHEEL_BITS);
            return block + ((uint64_t)__builtin_ctzll(ahead) << sh);
        }
    }
    if (w->occupied[TOP]) {
        uint64_t base = (now >> TOP_SHIFT) + 1;
        uint64_t rot = rotr64(w->occupied[TOP], (unsigned)(base & SLOT_MASK));
        return (base + (uint64_t)__builtin_ctzll(rot)) << TOP_SHIFT;
    }
    return WEFT__TICK_NONE;
}

uint64_t weft__wheel_next(const struct weft__wheel *w)
{
    if (w->count == 0)
        return WEFT__TICK_NONE;
    return next_event(w);
}

/* Breaks up the slot of `level` that w->now has just entered, filing each
 * of its timers again relative to w->now. None of them goes back into the
 * same slot, and no callback runs meanwhile, so the list can be detached
 * whole and walked as a plain chain. */
static void cascade(struct weft__wheel *w, int level)
{
    unsigned s = (unsigned)((w->now >> level_shift(level)) & SLOT_MASK);
    struct weft__timer *h = &w->slot[level][s];
    struct weft__timer *t;

    if (!(w->occupied[level] & (UINT64_C(1) << s)))
        return;
    t = h->next;
    h->prev->next = NULL;
    h->next = h->prev = h;
    w->occupied[level] &= ~(UINT64_C(1) << s);
    while (t) {
        struct weft__timer *n = t->next;
        file(w, t, t->expires > w->now ? t->expires : w->now);
        t = n;
    }
}

size_t weft__wheel_advance(struct weft__wheel *w, uint64_t to)
{
    size_t fired = 0;

    while (w->now < to) {
        uint64_t tick = w->count ? next_event(w) : WEFT__TICK_NONE;
        struct weft__timer *h;

        if (tick > to) {
            /* Nothing is filed in a slot entered before `to`, so jumping
             * there keeps every timer's slot valid. */
            w->now = to;
            break;
        }
        w->now = tick;
        /* This tick enters a new slot at every level whose boundary it is.
         * The order of those levels does not matter: the slot entered at
         * each lower one is slot 0, and a timer moving down lands either in
         * this tick's level-0 slot or in a later slot of its new level. */
        for (int l = TOP; l > 0; l--) {
            if (tick & ((UINT64_C(1) << level_shift(l)) - 1))
                continue;
            cascade(w, l);
        }
        /* Everything in this level-0 slot fires at this tick. Callbacks
         * cannot add to it (anything they add fires later), but they may
         * delete from it, so take the head afresh each time. */
        h = &w->slot[0][tick & SLOT_MASK];
        while (h->next != h) {
            struct weft__timer *t = h->next;
            unlink_timer(w, t);
            w->count--;
            fired++;
            t->fn(t);
        }
    }
    return fired;
}
