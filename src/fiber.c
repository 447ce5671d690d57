/* fiber.c - fiber control blocks and the fiber verbs: spawn, join, detach,
 * cancel, self, id.
 *
 * Control blocks live in the runtime's fiber table, allocated a block of
 * WEFT__FT_BLOCK at a time and never moved, and are recycled through a free
 * list, so a warm runtime spawns without calling malloc. A handle given to
 * the user encodes (generation << 32 | index + 1); the generation of a
 * block changes every time it is freed, so a handle that was joined, or
 * whose detached fiber has finished, decodes to nothing (-ESRCH) even after
 * the block has been reused, instead of silently naming another fiber.
 *
 * Several workers: each worker keeps a small cache of free control blocks
 * and of default-size stacks, refilled from and spilled to the runtime's
 * shared free list and pool under their locks, so spawning and exiting
 * rarely touch a shared cache line. Join, detach and exit agree through
 * the fiber's own lock: the exiting side marks the fiber DONE (or frees a
 * detached one) and reads its joiner under it, so exactly one of "the
 * joiner collects" and "the exit frees" happens, and a joiner is woken
 * only once the stack it waited on has been given back.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Ids are unique for the process's life; each runtime takes them from the
 * global counter in batches so spawning needs no atomic operation. */
#define ID_BATCH 1024
static _Atomic uint64_t next_id_batch = 1;

int weft__ftable_init(struct weft__ftable *ft)
{
    memset(ft, 0, sizeof *ft);
    return 0;
}

void weft__ftable_fini(struct weft__ftable *ft)
{
    struct weft__fiber **blocks = atomic_load_explicit(&ft->blocks, memory_order_relaxed);
    uint32_t n = atomic_load_explicit(&ft->nblocks, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++)
        free(blocks[i]);
    free(blocks);
    while (ft->retired) {
        void *next = *(void **)ft->retired;
        free(ft->retired);
        ft->retired = next;
    }
    memset(ft, 0, sizeof *ft);
}

/* The caller holds the table's lock (several workers). */
static int ftable_grow(struct weft__ftable *ft)
{
    uint32_t nblocks = atomic_load_explicit(&ft->nblocks, memory_order_relaxed);
    struct weft__fiber **blocks = atomic_load_explicit(&ft->blocks, memory_order_relaxed);
    if (nblocks == UINT32_MAX / WEFT__FT_BLOCK)
        return -ENOMEM;
    if (nblocks == ft->cap_blocks) {
        /* A new array, the old one retired, not freed: another worker may
         * be decoding a handle through it right now. */
        uint32_t cap = ft->cap_blocks ? ft->cap_blocks * 2 : 16;
        struct weft__fiber **b = weft__calloc(cap, sizeof *b);
        if (!b)
            return -ENOMEM;
        if (blocks) {
            memcpy(b, blocks, nblocks * sizeof *b);
            *(void **)(void *)blocks = ft->retired;
            ft->retired = blocks;
        }
        blocks = b;
        atomic_store_explicit(&ft->blocks, b, memory_order_release);
        ft->cap_blocks = cap;
    }
    struct weft__fiber *blk = weft__calloc(WEFT__FT_BLOCK, sizeof *blk);
    if (!blk)
        return -ENOMEM;
    uint32_t base = nblocks * WEFT__FT_BLOCK;
    /* Chain in reverse so the lowest index is handed out first. The timer
     * and wait fields are set up once here: every wait leaves them as it
     * found them (disarmed, kind NONE), so spawning need not touch them. */
    for (uint32_t i = WEFT__FT_BLOCK; i-- > 0;) {
        blk[i].index = base + i;
        blk[i].gen = 1;
        blk[i].state = WEFT__F_FREE;
        weft__timer_init(&blk[i].timer, weft__fiber_timeout);
        blk[i].next = ft->free;
        ft->free = &blk[i];
    }
    blocks[nblocks] = blk;
    atomic_store_explicit(&ft->nblocks, nblocks + 1, memory_order_release);
    ft->nfree += WEFT__FT_BLOCK;
    return 0;
}

/* Makes sure n control blocks are free (weft_config.prealloc_fibers). */
int weft__ftable_reserve(struct weft__ftable *ft, size_t n)
{
    while (ft->nfree < n) {
        int err = ftable_grow(ft);
        if (err)
            return err;
    }
    return 0;
}

weft_fiber *weft__fiber_handle(const struct weft__fiber *f)
{
    return (weft_fiber *)(uintptr_t)(((uint64_t)f->gen << 32) | ((uint64_t)f->index + 1));
}

/* The verbs below call the inlined forms: spawn+join is a hot pair, and
 * a call per step costs more than the steps (measured with callgrind). */
__attribute__((always_inline)) static inline struct weft__fiber *
fiber_decode(struct weft__rt *rt, const weft_fiber *h)
{
    uint64_t v = (uint64_t)(uintptr_t)h;
    uint32_t low = (uint32_t)v, gen = (uint32_t)(v >> 32);
    if (!rt || low == 0)
        return NULL;
    uint32_t idx = low - 1;
    if (idx / WEFT__FT_BLOCK >= atomic_load_explicit(&rt->ft.nblocks, memory_order_acquire))
        return NULL;
    struct weft__fiber **blocks = atomic_load_explicit(&rt->ft.blocks, memory_order_acquire);
    struct weft__fiber *f = &blocks[idx / WEFT__FT_BLOCK][idx % WEFT__FT_BLOCK];
    if (f->gen != gen || atomic_load_explicit(&f->state, memory_order_relaxed) == WEFT__F_FREE)
        return NULL;
    return f;
}

struct weft__fiber *weft__fiber_decode(struct weft__rt *rt, const weft_fiber *h)
{
    return fiber_decode(rt, h);
}

/* The caller holds the pool lock (several workers). */
static struct weft__pool *pool_for(struct weft__rt *rt, size_t size)
{
    for (struct weft__pool *p = rt->pools; p; p = p->next)
        if (p->stack_size == size)
            return p;
    struct weft__pool *p;
    if (weft__pool_new(&p, size, rt->cfg.guard, rt->cfg.stack_high_water) != 0)
        return NULL;
    p->next = rt->pools->next;        /* the default pool stays first */
    rt->pools->next = p;
    return p;
}

static uint64_t take_id(struct weft__worker *w)
{
    if (weft__unlikely(w->id_next == w->id_end)) {
        w->id_next = atomic_fetch_add(&next_id_batch, ID_BATCH);
        w->id_end = w->id_next + ID_BATCH;
    }
    return w->id_next++;
}

#define FCACHE_MAX 64   /* control blocks a worker keeps (several workers) */

/* Several workers: a free control block from w's cache, refilled with up
 * to half a cache from the shared list. */
static int mt_block_get(struct weft__worker *w, struct weft__fiber **out)
{
    if (!w->fcache) {
        /* prealloc_fibers: no cache, so no block sits idle in another
         * worker's cache while this one would have to grow the table. */
        size_t batch = w->rt->cfg.prealloc_fibers ? 1 : FCACHE_MAX / 2;
        struct weft__rt *rt = w->rt;
        struct weft__ftable *ft = &rt->ft;
        weft__spin_lock(&rt->ft_lock);
        if (!ft->free) {
            int err = ftable_grow(ft);
            if (err) {
                weft__spin_unlock(&rt->ft_lock);
                return err;
            }
        }
        while (ft->free && w->nfcache < batch) {
            struct weft__fiber *f = ft->free;
            ft->free = f->next;
            ft->nfree--;
            f->next = w->fcache;
            w->fcache = f;
            w->nfcache++;
        }
        weft__spin_unlock(&rt->ft_lock);
    }
    *out = w->fcache;
    w->fcache = w->fcache->next;
    w->nfcache--;
    return 0;
}

static int stack_get(struct weft__worker *w, struct weft__pool *pool, struct weft__stack **s)
{
    if (!w->mt)
        return weft__stack_get(pool, s);
    size_t n = w->nscache;
    if (n && pool == w->rt->pools) {
        *s = w->scache[n - 1];
        __atomic_store_n(&w->nscache, n - 1, __ATOMIC_RELAXED);    /* stats read it */
        return 0;
    }
    weft__spin_lock(&w->rt->pool_lock);
    int err = weft__stack_get(pool, s);
    weft__spin_unlock(&w->rt->pool_lock);
    return err;
}

static void stack_put(struct weft__worker *w, struct weft__stack *s)
{
    struct weft__pool *pool = s->pool;
    if (!w->mt) {
        weft__stack_put(pool, s);
        return;
    }
    /* Stacks whose depth is measured go back to the pool, which measures;
     * so do all of them when stacks were reserved up front, which keeps
     * prealloc_fibers' promise (no allocation) whatever worker spawns. */
    if (pool == w->rt->pools && !pool->measure && !pool->reserve &&
        w->nscache < sizeof w->scache / sizeof w->scache[0]) {
        w->scache[w->nscache] = s;
        __atomic_store_n(&w->nscache, w->nscache + 1, __ATOMIC_RELAXED);
        return;
    }
    weft__spin_lock(&w->rt->pool_lock);
    weft__stack_put(pool, s);
    weft__spin_unlock(&w->rt->pool_lock);
}

/* An idle worker's cached stacks go back to the pool, where the trim can
 * return their pages: a worker may sleep for good while holding them. */
void weft__worker_stacks_spill(struct weft__worker *w)
{
    if (!w->nscache)
        return;
    struct weft__rt *rt = w->rt;
    weft__lock(w, &rt->pool_lock);
    while (w->nscache) {
        weft__stack_put(rt->pools, w->scache[w->nscache - 1]);
        __atomic_store_n(&w->nscache, w->nscache - 1, __ATOMIC_RELAXED);
    }
    weft__unlock(w, &rt->pool_lock);
}

void weft__worker_caches_flush(struct weft__worker *w)
{
    struct weft__rt *rt = w->rt;
    weft__worker_stacks_spill(w);
    weft__lock(w, &rt->ft_lock);
    while (w->fcache) {
        struct weft__fiber *f = w->fcache;
        w->fcache = f->next;
        f->next = rt->ft.free;
        rt->ft.free = f;
        rt->ft.nfree++;
    }
    w->nfcache = 0;
    weft__unlock(w, &rt->ft_lock);
}

int weft__fiber_new(struct weft__worker *w, struct weft__fiber **out, const weft_attr *attr)
{
    struct weft__rt *rt = w->rt;
    struct weft__pool *pool = rt->pools;
    if (attr && attr->stack_size && attr->stack_size != pool->stack_size) {
        size_t size = weft__stack_round(attr->stack_size);
        if (!size)
            return -EINVAL;
        weft__lock(w, &rt->pool_lock);
        pool = pool_for(rt, size);
        weft__unlock(w, &rt->pool_lock);
        if (!pool)
            return -ENOMEM;
    }
    struct weft__fiber *f;
    struct weft__ftable *ft = &rt->ft;
    if (w->mt) {
        int err = mt_block_get(w, &f);
        if (err)
            return err;
    } else {
        if (weft__unlikely(!ft->free)) {
            int err = ftable_grow(ft);
            if (err)
                return err;
        }
        f = ft->free;
    }
    struct weft__stack *s;
    int err = stack_get(w, pool, &s);
    if (err) {
        if (w->mt) {
            f->next = w->fcache;
            w->fcache = f;
            w->nfcache++;
        }
        return err;
    }
    if (!w->mt) {
        ft->free = f->next;
        ft->nfree--;
    }

    /* joiner and result were cleared when the block was freed. */
    atomic_store_explicit(&f->flags, 0, memory_order_relaxed);
    atomic_store_explicit(&f->home, NULL, memory_order_relaxed);
    f->rt = rt;
    f->stack = s;
    f->canary = s->guard == WEFT__GK_CANARY ? (const uint64_t *)(const void *)s->lo : NULL;
    f->spawn_site = NULL;
    if (attr && attr->name) {
        strncpy(f->name, attr->name, sizeof f->name - 1);
        f->name[sizeof f->name - 1] = 0;
    } else {
        f->name[0] = 0;
    }
    if (attr && attr->pinned) {
        atomic_store_explicit(&f->flags, WEFT__FL_PINNED, memory_order_relaxed);
        if (w->mt)
            atomic_store_explicit(&f->home, w, memory_order_relaxed);
    }
    f->id = take_id(w);
    weft__san_stack_acquire(&f->san, s->lo, s->size);
    f->ctx = weft__make_fcontext(s->lo + s->size, s->size, weft__fiber_entry);
    *out = f;
    return 0;
}

void weft__fiber_free(struct weft__worker *w, struct weft__fiber *f)
{
    /* Several workers: the block changes identity (state FREE, a new
     * generation) under both its locks, so weft_join/detach (under lock)
     * and weft_cancel (under wait_lock) that decoded a handle before this
     * see the change when they check the generation again (see
     * handle_current). */
    weft__lock(w, &f->lock);
    weft__lock(w, &f->wait_lock);
    atomic_store_explicit(&f->state, WEFT__F_FREE, memory_order_relaxed);
    f->joiner = NULL;
    f->result = NULL;
    if (++f->gen == 0)
        f->gen = 1;
    weft__unlock(w, &f->wait_lock);
    weft__unlock(w, &f->lock);
    if (w->mt) {
        f->next = w->fcache;
        w->fcache = f;
        size_t keep = w->rt->cfg.prealloc_fibers ? 0 : FCACHE_MAX;
        if (++w->nfcache > keep) {
            /* Spill half to the shared list. */
            struct weft__rt *rt = w->rt;
            weft__spin_lock(&rt->ft_lock);
            while (w->nfcache > keep / 2) {
                struct weft__fiber *g = w->fcache;
                w->fcache = g->next;
                w->nfcache--;
                g->next = rt->ft.free;
                rt->ft.free = g;
                rt->ft.nfree++;
            }
            weft__spin_unlock(&rt->ft_lock);
        }
        return;
    }
    struct weft__rt *rt = w->rt;
    f->next = rt->ft.free;
    rt->ft.free = f;
    rt->ft.nfree++;
}

/* Called in the context that runs right after f exited: f's stack is no
 * longer in use and can go back to its pool. */
void weft__fiber_reap(struct weft__worker *w, struct weft__fiber *f)
{
    struct weft__stack *s = f->stack;
    weft__san_stack_release(&f->san, s->lo, s->size);
    stack_put(w, s);
    f->stack = NULL;
    f->canary = NULL;
    weft__lock(w, &f->lock);
    if (atomic_load_explicit(&f->flags, memory_order_relaxed) & WEFT__FL_DETACHED) {
        weft__unlock(w, &f->lock);
        weft__fiber_free(w, f);
        return;
    }
    atomic_store_explicit(&f->state, WEFT__F_DONE, memory_order_release);
    struct weft__fiber *j = f->joiner;
    weft__unlock(w, &f->lock);
    /* After the unlock: the joiner may free f as soon as it runs. Its wait
     * cannot end otherwise meanwhile (join_unlink sees DONE). */
    if (j)
        weft__wake(j, 0);
}

void weft__fiber_each(struct weft__rt *rt, void (*fn)(struct weft__fiber *f, void *ctx), void *ctx)
{
    uint32_t n = atomic_load_explicit(&rt->ft.nblocks, memory_order_acquire);
    struct weft__fiber **blocks = atomic_load_explicit(&rt->ft.blocks, memory_order_acquire);
    for (uint32_t b = 0; b < n; b++)
        for (uint32_t i = 0; i < WEFT__FT_BLOCK; i++) {
            struct weft__fiber *f = &blocks[b][i];
            if (atomic_load_explicit(&f->state, memory_order_relaxed) != WEFT__F_FREE)
                fn(f, ctx);
        }
}

/* The caller holds f's wait_lock (several workers): it keeps f inside
 * weft__park() (which passes through it on the way out) while we read its
 * wait and call its unlink, and keeps f from being freed and reused. */
static void cancel_locked(struct weft__fiber *f)
{
    /* seq_cst, paired with weft__park(): it stores PARKED and then reads
     * the flag; we set the flag and then read the state. */
    if (atomic_fetch_or(&f->flags, WEFT__FL_CANCELLED) & WEFT__FL_CANCELLED)
        return;
    if (atomic_load(&f->state) == WEFT__F_PARKED && !f->wait.uncancellable) {
        if (!f->wait.unlink || f->wait.unlink(f))
            weft__wake(f, -ECANCELED);
    }
}

void weft__fiber_cancel(struct weft__fiber *f)
{
    if (atomic_load_explicit(&f->flags, memory_order_relaxed) & WEFT__FL_CANCELLED)
        return;
    struct weft__worker *w = weft__worker();
    weft__lock(w, &f->wait_lock);
    cancel_locked(f);
    weft__unlock(w, &f->wait_lock);
}

/* Whether the block a handle decoded to still is that fiber. With several
 * workers a detached fiber can exit, be freed and its block be reused by a
 * new fiber between the decode and the act; the caller holds one of the
 * block's locks (lock or wait_lock), and weft__fiber_free changes the
 * generation under both, so the answer holds until the caller unlocks. */
static bool handle_current(const struct weft__fiber *f, const weft_fiber *h)
{
    return f->gen == (uint32_t)((uint64_t)(uintptr_t)h >> 32) &&
           atomic_load_explicit(&f->state, memory_order_relaxed) != WEFT__F_FREE;
}

__attribute__((always_inline)) static inline int
spawn_fiber(struct weft__worker *w, const weft_attr *attr, void *fn, void *arg, uint8_t flags,
            const void *site, struct weft__fiber **out)
{
    struct weft__rt *rt = w->rt;
    struct weft__fiber *f;
    int err = weft__fiber_new(w, &f, attr);
    if (err)
        return err;
    f->fn = (weft_fn)fn;
    f->arg = arg;
    f->spawn_site = site;
    atomic_store_explicit(&f->flags, atomic_load_explicit(&f->flags, memory_order_relaxed) | flags,
                          memory_order_relaxed);
    atomic_store_explicit(&w->n_spawned,
                          atomic_load_explicit(&w->n_spawned, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (!w->mt) {
        /* One worker: shutdown begins on this thread, never meanwhile. */
        if (atomic_load_explicit(&rt->shutting_down, memory_order_relaxed))
            atomic_fetch_or_explicit(&f->flags, WEFT__FL_CANCELLED, memory_order_relaxed);
        atomic_store_explicit(&f->state, WEFT__F_RUNNABLE, memory_order_relaxed);
    } else {
        /* Another worker may begin shutdown now (main returned there). A
         * Dekker pair with begin_shutdown: we make the block visible to
         * its cancel walk (RUNNABLE, not FREE) and then read the flag; it
         * sets the flag and then walks. Either the walk finds this fiber
         * or we see the flag, so no fiber escapes the shutdown's cancel.
         * Both before the push: once queued, the fiber may run, park and
         * even exit on another worker. */
        atomic_store_explicit(&f->state, WEFT__F_RUNNABLE, memory_order_seq_cst);
        WEFT__PP(WEFT__PP_SPAWN, f);
        if (atomic_load_explicit(&rt->shutting_down, memory_order_seq_cst))
            atomic_fetch_or_explicit(&f->flags, WEFT__FL_CANCELLED, memory_order_relaxed);
    }
    weft__rq_push(w, f);
    if (out)
        *out = f;
    return 0;
}

int weft__spawn(struct weft__worker *w, const weft_attr *attr, void *fn, void *arg,
                uint8_t flags, struct weft__fiber **out)
{
    return spawn_fiber(w, attr, fn, arg, flags, NULL, out);
}

/* ------------------------------------------------------------- public verbs */

void weft_attr_init(weft_attr *attr)
{
    if (!attr)
        return;
    attr->stack_size = 0;
    attr->name = NULL;
    attr->pinned = 0;
}

int weft_spawn(weft_fiber **fp, const weft_attr *attr, weft_fn fn, void *arg)
{
    struct weft__worker *w = weft__worker();
    if (!weft__self(w))
        return -EPERM;
    if (!fn)
        return -EINVAL;
    struct weft__fiber *f;
    /* The spawn site is written before the fiber is queued: a detached
     * one may run, exit and have its block reused by then. */
    int err = spawn_fiber(w, attr, (void *)fn, arg, fp ? 0 : WEFT__FL_DETACHED,
                          __builtin_return_address(0), &f);
    if (err)
        return err;
    if (fp)
        *fp = weft__fiber_handle(f);
    return 0;
}

static bool join_unlink(struct weft__fiber *self)
{
    struct weft__fiber *target = self->wait_data;
    struct weft__worker *w = self->w;
    bool removed = false;
    weft__lock(w, &target->lock);
    /* Once the target is DONE its exit owns our wake-up. */
    if (target->joiner == self &&
        atomic_load_explicit(&target->state, memory_order_relaxed) != WEFT__F_DONE) {
        target->joiner = NULL;
        removed = true;
    }
    weft__unlock(w, &target->lock);
    return removed;
}

static inline uint8_t flags_of(const struct weft__fiber *f)
{
    return atomic_load_explicit(&f->flags, memory_order_relaxed);
}

int weft_join(weft_fiber *h, void **result, int64_t deadline)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    if (!self)
        return -EPERM;
    struct weft__fiber *f = fiber_decode(w->rt, h);
    if (!f)
        return -ESRCH;
    WEFT__PP(WEFT__PP_HANDLE, f);
    if (f == self)
        return -EDEADLK;
    weft__lock(w, &f->lock);
    if (!handle_current(f, h)) {
        weft__unlock(w, &f->lock);
        return -ESRCH;
    }
    if ((flags_of(f) & WEFT__FL_DETACHED) || f->joiner) {
        weft__unlock(w, &f->lock);
        return -EINVAL;
    }
    if (atomic_load_explicit(&f->state, memory_order_acquire) != WEFT__F_DONE) {
        /* The joiner stays recorded until it has collected the result, so
         * nobody else can join or detach f in between. */
        f->joiner = self;
        self->wait.kind = WEFT__W_JOIN;
        self->wait.obj = f;
        self->wait.unlink = join_unlink;
        self->wait_data = f;
        int r = weft__park(w, self, deadline, &f->lock);
        w = self->w;
        if (r < 0)
            return r;
        weft__must(atomic_load_explicit(&f->state, memory_order_acquire) == WEFT__F_DONE,
                   "join woken before the fiber finished");
    } else {
        weft__unlock(w, &f->lock);
    }
    if (result)
        *result = f->result;
    weft__fiber_free(w, f);
    return 0;
}

int weft_detach(weft_fiber *h)
{
    struct weft__worker *w = weft__worker();
    if (!weft__self(w))
        return -EPERM;
    struct weft__fiber *f = fiber_decode(w->rt, h);
    if (!f)
        return -ESRCH;
    WEFT__PP(WEFT__PP_HANDLE, f);
    weft__lock(w, &f->lock);
    if (!handle_current(f, h)) {
        weft__unlock(w, &f->lock);
        return -ESRCH;
    }
    if ((flags_of(f) & WEFT__FL_DETACHED) || f->joiner) {
        weft__unlock(w, &f->lock);
        return -EINVAL;
    }
    if (atomic_load_explicit(&f->state, memory_order_acquire) == WEFT__F_DONE) {
        weft__unlock(w, &f->lock);
        weft__fiber_free(w, f);
        return 0;
    }
    atomic_fetch_or_explicit(&f->flags, WEFT__FL_DETACHED, memory_order_relaxed);
    weft__unlock(w, &f->lock);
    return 0;
}

int weft_cancel(weft_fiber *h)
{
    struct weft__worker *w = weft__worker();
    if (!weft__self(w))
        return -EPERM;
    struct weft__fiber *f = fiber_decode(w->rt, h);
    if (!f)
        return -ESRCH;
    WEFT__PP(WEFT__PP_HANDLE, f);
    weft__lock(w, &f->wait_lock);
    bool current = handle_current(f, h);
    if (current)
        cancel_locked(f);
    weft__unlock(w, &f->wait_lock);
    return current ? 0 : -ESRCH;
}

int weft_cancelled(void)
{
    struct weft__fiber *self = weft__self(weft__worker());
    return self && (self->flags & WEFT__FL_CANCELLED) ? 1 : 0;
}

weft_fiber *weft_self(void)
{
    struct weft__fiber *self = weft__self(weft__worker());
    return self ? weft__fiber_handle(self) : NULL;
}

int weft_pin(int on)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    if (!self)
        return -EPERM;
    /* Only the fiber itself changes its home, and only while it runs: it
     * is in no queue, so no stealer or waker is reading home now. */
    int was = atomic_load_explicit(&self->flags, memory_order_relaxed) & WEFT__FL_PINNED ? 1 : 0;
    if (on) {
        atomic_fetch_or_explicit(&self->flags, WEFT__FL_PINNED, memory_order_relaxed);
        if (w->mt)
            atomic_store_explicit(&self->home, w, memory_order_relaxed);
    } else {
        atomic_fetch_and_explicit(&self->flags, (uint8_t)~WEFT__FL_PINNED, memory_order_relaxed);
        atomic_store_explicit(&self->home, NULL, memory_order_relaxed);
    }
    return was;
}

uint64_t weft_fiber_id(const weft_fiber *h)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *f = w ? weft__fiber_decode(w->rt, h) : NULL;
    return f ? f->id : 0;
}
