/* stack.h - the stack pool (private). See stack.c for the design. */
#ifndef WEFT_STACK_H
#define WEFT_STACK_H

#include <stddef.h>
#include <stdint.h>

/* How one stack is protected. */
enum weft__guard_kind {
    WEFT__GK_MADVISE = 1,   /* MADV_GUARD_INSTALL page: no map entry */
    WEFT__GK_MPROTECT,      /* PROT_NONE page: two map entries */
    WEFT__GK_CANARY         /* no guard page: a canary word checked on every switch */
};

#define WEFT__CANARY UINT64_C(0x5745465443414e59)   /* "WEFTCANY" */

struct weft__pool;

struct weft__stack {
    char *lo;                   /* lowest usable byte; the guard page is just below */
    size_t size;                /* usable bytes */
    struct weft__pool *pool;
    uint8_t guard;              /* enum weft__guard_kind */
    uint8_t in_use;
};

struct weft__chunk;

struct weft__pool {
    struct weft__pool *next;    /* the runtime's pools of other sizes */
    size_t stack_size;          /* usable bytes of each stack */
    size_t slot_size;           /* stack + guard page */
    int policy;                 /* enum weft_guard */
    struct weft__chunk *chunks;
    struct weft__stack **free;  /* LIFO; [0, ncold) have had their pages returned */
    size_t nfree, ncold, cap_free;
    size_t total;               /* stacks carved so far */
    size_t low_water;           /* fewest free stacks since the last trim */
    size_t reserve;             /* stacks kept warm whatever the trim says */
    size_t next_chunk;          /* stacks in the next chunk */
    uint64_t n_madvise, n_mprotect, n_canary, n_entries;
    int measure;                /* weft_config.stack_high_water */
    size_t high_water;          /* deepest use seen by a finished fiber, bytes */
};

/* policy: enum weft_guard; measure: weft_config.stack_high_water. */
int  weft__pool_new(struct weft__pool **out, size_t stack_size, int policy, int measure);
void weft__pool_destroy(struct weft__pool *p);
/* Make sure n stacks are free without further mapping, and keep them warm. */
int  weft__pool_reserve(struct weft__pool *p, size_t n);
int  weft__stack_get(struct weft__pool *p, struct weft__stack **out);
void weft__stack_put(struct weft__pool *p, struct weft__stack *s);
/* Return the pages of stacks that stayed unused since the previous trim. */
size_t weft__pool_trim(struct weft__pool *p);
/* How much of s has been used, as far as the kernel knows: from its top
 * down to the lowest resident page (0 if that cannot be told). */
size_t weft__stack_used(const struct weft__stack *s);

/* The page size, and a stack size rounded up to it (0 if out of range). */
size_t weft__page_size(void);
size_t weft__stack_round(size_t size);
#define WEFT__STACK_MIN ((size_t)16 * 1024)
#define WEFT__STACK_MAX ((size_t)1 << 30)

/* Process-wide accounting shared by every pool (debug.c reads it). */
extern _Atomic long weft__map_entries_used;

/* Whether MADV_GUARD_INSTALL guards work in this process (probed once:
 * the kernel must have the advice and a guarded page must fault). Stacks
 * take the madvise path, forced or not, only when it says 1. */
int weft__stack_madvise_guards(void);

/* Testing: force one protection path for every stack made from now on
 * (0 = choose normally). Set from $WEFT_TEST_GUARD=madvise|mprotect|canary. */
void weft__stack_force_guard(int kind);
/* Testing: pretend the map budget is this many entries (-1 = measure). */
void weft__stack_set_map_budget(long entries);

#endif
