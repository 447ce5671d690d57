/* stack.c - the stack pool: mapping, guard pages, canaries, reuse, trimming.
 *
 * Stacks are carved from large anonymous mappings ("chunks"), each slot a
 * guard page followed by the usable stack, which grows down towards it:
 *
 *     chunk:  [guard|stack 0][guard|stack 1] ... [guard|stack n-1]
 *
 * Nothing is touched up front: the kernel commits a page when a fiber first
 * uses it, so an idle fiber costs the one or two pages its frames reach.
 *
 * Guard pages. A PROT_NONE page made with mprotect() splits the mapping, so
 * every guarded stack costs two kernel map entries, and vm.max_map_count
 * (65530 by default) stops a process near 32k guarded stacks. Linux 6.13
 * added madvise(MADV_GUARD_INSTALL), which marks pages inside one mapping
 * as faulting without splitting it: a million guards cost no map entry. So
 * each slot gets, in order of preference:
 *   1. an MADV_GUARD_INSTALL guard, where the kernel has it;
 *   2. an mprotect guard, while the process-wide map budget lasts (the
 *      budget leaves head room for the application's own mappings);
 *   3. no guard page, but a canary word at the stack limit that the
 *      scheduler checks each time the fiber switches out.
 * WEFT_GUARD_ALWAYS stops at 2 (the spawn fails with -ENOMEM instead);
 * WEFT_GUARD_NEVER goes straight to 3. The unused guard slot of a canary
 * stack still sits below it, so a small overflow lands in memory nobody
 * uses and is caught by the canary before it can reach a neighbour.
 *
 * Reuse and trimming. Free stacks are kept in a LIFO array so the most
 * recently used (warmest) stack is handed out first. Returning memory on
 * every release would cost a syscall per fiber, so instead the pool records
 * the fewest free stacks seen between two trims (its low-water mark): that
 * many stacks sat unused for a whole period, and the trim hands their pages
 * back with MADV_DONTNEED. Those stacks sit at the bottom of the LIFO and
 * are the last to be reused. The chunks themselves are unmapped when the
 * pool is destroyed.
 */
#include "internal.h"
#include "os.h"

#include <stdlib.h>
#include <string.h>

struct weft__chunk {
    struct weft__chunk *next;
    char *base;
    size_t len;
    size_t nslots;
    struct weft__stack slot[];
};

_Atomic long weft__map_entries_used;

static _Atomic long map_budget = -1;          /* entries left for mprotect guards */
static _Atomic int forced_kind;

#define FIRST_CHUNK 16
#define MAX_CHUNK   1024

size_t weft__stack_round(size_t size)
{
    size_t page = weft__page_size();
    if (size < WEFT__STACK_MIN || size > WEFT__STACK_MAX)
        return 0;
    return (size + page - 1) & ~(page - 1);
}

void weft__stack_force_guard(int kind) { atomic_store(&forced_kind, kind); }

void weft__stack_set_map_budget(long entries) { atomic_store(&map_budget, entries); }

/* A pool's counts are read by weft_stats_get() from any thread, without
 * the pool's lock when the runtime has one worker (it has none then):
 * stored as relaxed atomics, they are only ever written by the owner. */
static inline void set_count(size_t *c, size_t v)
{
    __atomic_store_n(c, v, __ATOMIC_RELAXED);
}

/* Takes `entries` map entries from the budget, or fails without taking any. */
static int budget_take(long entries)
{
    long cur = atomic_load(&map_budget);
    if (cur < 0) {
        long measured = weft__os_map_budget();
        if (atomic_compare_exchange_strong(&map_budget, &cur, measured))
            cur = measured;
    }
    while (cur >= entries) {
        if (atomic_compare_exchange_weak(&map_budget, &cur, cur - entries))
            return 1;
    }
    return 0;
}

static void budget_give(long entries)
{
    if (entries)
        atomic_fetch_add(&map_budget, entries);
}

int weft__stack_madvise_guards(void)
{
    return weft__os_light_guards();
}

/* Picks and installs the protection of one slot whose guard page is at g. */
static int protect_slot(struct weft__pool *p, char *g, struct weft__stack *s)
{
    size_t page = weft__page_size();
    int forced = atomic_load(&forced_kind);
    int want_madvise = forced ? forced == WEFT__GK_MADVISE : p->policy != WEFT_GUARD_NEVER;
    int want_mprotect = forced ? forced == WEFT__GK_MPROTECT : p->policy != WEFT_GUARD_NEVER;

    if (want_madvise && weft__os_light_guards() && weft__os_light_guard(g, page) == 0) {
        s->guard = WEFT__GK_MADVISE;
        p->n_madvise++;
        return 0;
    }
    if (want_mprotect && budget_take(2)) {
        if (weft__os_heavy_guard(g, page) == 0) {
            s->guard = WEFT__GK_MPROTECT;
            p->n_mprotect++;
            p->n_entries += 2;
            atomic_fetch_add(&weft__map_entries_used, 2);
            return 0;
        }
        budget_give(2);
    }
    if (p->policy == WEFT_GUARD_ALWAYS)
        return -ENOMEM;
    s->guard = WEFT__GK_CANARY;
    p->n_canary++;
    return 0;
}

static int free_reserve(struct weft__pool *p, size_t need)
{
    if (need <= p->cap_free)
        return 0;
    size_t cap = p->cap_free ? p->cap_free : 64;
    while (cap < need)
        cap *= 2;
    struct weft__stack **a = weft__realloc(p->free, cap * sizeof *a);
    if (!a)
        return -ENOMEM;
    p->free = a;
    p->cap_free = cap;
    return 0;
}

static void chunk_unmap(struct weft__pool *p, struct weft__chunk *c)
{
    long entries = 0;
    for (size_t i = 0; i < c->nslots; i++) {
        struct weft__stack *s = &c->slot[i];
        if (s->guard == WEFT__GK_MADVISE)
            p->n_madvise--;
        else if (s->guard == WEFT__GK_MPROTECT)
            p->n_mprotect--, entries += 2;
        else if (s->guard == WEFT__GK_CANARY)
            p->n_canary--;
    }
    weft__os_stack_unmap(c->base, c->len);
    p->n_entries -= (uint64_t)entries;
    atomic_fetch_sub(&weft__map_entries_used, entries);
    budget_give(entries);
    free(c);
}

/* Maps a chunk of n slots and pushes its stacks on the free list. Slots the
 * policy cannot protect (WEFT_GUARD_ALWAYS without budget) are not used:
 * the chunk then holds fewer stacks, or none and the call fails. */
static int chunk_add(struct weft__pool *p, size_t n)
{
    int err = free_reserve(p, p->total + n);
    if (err)
        return err;
    struct weft__chunk *c = weft__malloc(sizeof *c + n * sizeof c->slot[0]);
    if (!c)
        return -ENOMEM;
    c->len = n * p->slot_size;
    c->base = weft__os_stack_map(c->len, &err);
    if (!c->base) {
        free(c);
        return err;
    }
    size_t page = weft__page_size();
    c->nslots = 0;
    for (size_t i = 0; i < n; i++) {
        struct weft__stack *s = &c->slot[i];
        char *g = c->base + i * p->slot_size;
        s->lo = g + page;
        s->size = p->stack_size;
        s->pool = p;
        s->in_use = 0;
        s->guard = 0;
        if ((err = protect_slot(p, g, s)) != 0)
            break;
        c->nslots++;
    }
    if (c->nslots == 0) {
        weft__os_stack_unmap(c->base, c->len);
        free(c);
        return err ? err : -ENOMEM;
    }
    c->next = p->chunks;
    p->chunks = c;
    /* New stacks are cold: slide them under the warm ones already free. */
    memmove(p->free + c->nslots, p->free, p->nfree * sizeof *p->free);
    for (size_t i = 0; i < c->nslots; i++)
        p->free[i] = &c->slot[c->nslots - 1 - i];
    set_count(&p->nfree, p->nfree + c->nslots);
    p->ncold += c->nslots;
    set_count(&p->total, p->total + c->nslots);
    return 0;
}

int weft__pool_new(struct weft__pool **out, size_t stack_size, int policy, int measure)
{
    struct weft__pool *p = weft__calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->stack_size = stack_size;
    p->slot_size = stack_size + weft__page_size();
    p->policy = policy;
    p->measure = measure;
    p->next_chunk = FIRST_CHUNK;
    *out = p;
    return 0;
}

void weft__pool_destroy(struct weft__pool *p)
{
    if (!p)
        return;
    while (p->chunks) {
        struct weft__chunk *c = p->chunks;
        p->chunks = c->next;
        chunk_unmap(p, c);
    }
    free(p->free);
    free(p);
}

int weft__pool_reserve(struct weft__pool *p, size_t n)
{
    p->reserve = n;
    while (p->nfree < n) {
        size_t want = n - p->nfree;
        int err = chunk_add(p, want);
        if (err)
            return err;
    }
    return 0;
}

int weft__stack_get(struct weft__pool *p, struct weft__stack **out)
{
    if (weft__unlikely(p->nfree == 0)) {
        int err = chunk_add(p, p->next_chunk);
        if (err)
            return err;
        if (p->next_chunk < MAX_CHUNK)
            p->next_chunk *= 2;
    }
    set_count(&p->nfree, p->nfree - 1);
    struct weft__stack *s = p->free[p->nfree];
    if (p->nfree < p->ncold)
        p->ncold = p->nfree;
    if (p->nfree < p->low_water)
        p->low_water = p->nfree;
    s->in_use = 1;
    if (s->guard == WEFT__GK_CANARY)
        *(uint64_t *)(void *)s->lo = WEFT__CANARY;
    *out = s;
    return 0;
}

size_t weft__stack_used(const struct weft__stack *s)
{
    /* The lowest page in use bounds how deep the stack went. A canary
     * stack's lowest page holds the canary word, in use whatever the fiber
     * did; an overflow into it is the canary's to report. */
    size_t page = weft__page_size();
    size_t start = s->guard == WEFT__GK_CANARY ? page : 0;
    size_t low = weft__os_lowest_resident(s->lo + start, s->size - start);
    return low == SIZE_MAX ? 0 : s->size - start - low;
}

void weft__stack_put(struct weft__pool *p, struct weft__stack *s)
{
    if (weft__unlikely(p->measure)) {
        /* Measure, then hand the pages back so the next fiber's depth is
         * its own and not what this one left resident. */
        size_t used = weft__stack_used(s);
        if (used > p->high_water)
            p->high_water = used;
        weft__os_stack_decommit(s->lo, s->size);
    }
    s->in_use = 0;
    p->free[p->nfree] = s;
    set_count(&p->nfree, p->nfree + 1);
}

size_t weft__pool_trim(struct weft__pool *p)
{
    size_t keep = p->reserve;
    size_t idle = p->low_water < p->nfree ? p->low_water : p->nfree;
    size_t trimmed = 0;
    if (idle > keep) {
        size_t upto = idle - keep;
        for (size_t i = p->ncold; i < upto; i++) {
            struct weft__stack *s = p->free[i];
            weft__os_stack_decommit(s->lo, s->size);
            trimmed++;
        }
        if (upto > p->ncold)
            p->ncold = upto;
    }
    p->low_water = p->nfree;
    return trimmed;
}
