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
    for (uint32_t i = 0; i < ft->nblocks; i++)
        free(ft->blocks[i]);
    free(ft->blocks);
    memset(ft, 0, sizeof *ft);
}

static int ftable_grow(struct weft__ftable *ft)
{
    if (ft->nblocks == UINT32_MAX / WEFT__FT_BLOCK)
        return -ENOMEM;
    if (ft->nblocks == ft->cap_blocks) {
        uint32_t cap = ft->cap_blocks ? ft->cap_blocks * 2 : 16;
        struct weft__fiber **b = weft__realloc(ft->blocks, cap * sizeof *b);
        if (!b)
            return -ENOMEM;
        ft->blocks = b;
        ft->cap_blocks = cap;
    }
    struct weft__fiber *blk = weft__calloc(WEFT__FT_BLOCK, sizeof *blk);
    if (!blk)
        return -ENOMEM;
    uint32_t base = ft->nblocks * WEFT__FT_BLOCK;
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
    ft->blocks[ft->nblocks++] = blk;
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

struct weft__fiber *weft__fiber_decode(struct weft_rt *rt, const weft_fiber *h)
{
    uint64_t v = (uint64_t)(uintptr_t)h;
    uint32_t low = (uint32_t)v, gen = (uint32_t)(v >> 32);
    if (!rt || low == 0)
        return NULL;
    uint32_t idx = low - 1;
    if (idx / WEFT__FT_BLOCK >= rt->ft.nblocks)
        return NULL;
    struct weft__fiber *f = &rt->ft.blocks[idx / WEFT__FT_BLOCK][idx % WEFT__FT_BLOCK];
    if (f->gen != gen || f->state == WEFT__F_FREE)
        return NULL;
    return f;
}

static struct weft__pool *pool_for(struct weft_rt *rt, size_t size)
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

static uint64_t take_id(struct weft_rt *rt)
{
    if (weft__unlikely(rt->id_next == rt->id_end)) {
        rt->id_next = atomic_fetch_add(&next_id_batch, ID_BATCH);
        rt->id_end = rt->id_next + ID_BATCH;
    }
    return rt->id_next++;
}

int weft__fiber_new(struct weft_rt *rt, struct weft__fiber **out, const weft_attr *attr)
{
    struct weft__pool *pool = rt->pools;
    if (attr && attr->stack_size && attr->stack_size != pool->stack_size) {
        size_t size = weft__stack_round(attr->stack_size);
        if (!size)
            return -EINVAL;
        if (!(pool = pool_for(rt, size)))
            return -ENOMEM;
    }
    struct weft__ftable *ft = &rt->ft;
    if (weft__unlikely(!ft->free)) {
        int err = ftable_grow(ft);
        if (err)
            return err;
    }
    struct weft__stack *s;
    int err = weft__stack_get(pool, &s);
    if (err)
        return err;
    struct weft__fiber *f = ft->free;
    ft->free = f->next;
    ft->nfree--;

    /* joiner and result were cleared when the block was freed. */
    f->flags = 0;
    f->stack = s;
    f->canary = s->guard == WEFT__GK_CANARY ? (const uint64_t *)(const void *)s->lo : NULL;
    f->id = take_id(rt);
    f->spawn_site = NULL;
    if (attr && attr->name) {
        strncpy(f->name, attr->name, sizeof f->name - 1);
        f->name[sizeof f->name - 1] = 0;
    } else {
        f->name[0] = 0;
    }
    if (attr && attr->pinned)
        f->flags |= WEFT__FL_PINNED;
    weft__san_stack_acquire(&f->san, s->lo, s->size);
    f->ctx = weft__make_fcontext(s->lo + s->size, s->size, weft__fiber_entry);
    rt->live++;
    *out = f;
    return 0;
}

void weft__fiber_free(struct weft_rt *rt, struct weft__fiber *f)
{
    f->state = WEFT__F_FREE;
    f->joiner = NULL;
    f->result = NULL;
    if (++f->gen == 0)
        f->gen = 1;
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
    weft__stack_put(s->pool, s);
    f->stack = NULL;
    f->canary = NULL;
    if (f->flags & WEFT__FL_DETACHED)
        weft__fiber_free(w->rt, f);
    else
        f->state = WEFT__F_DONE;
}

void weft__fiber_each(struct weft_rt *rt, void (*fn)(struct weft__fiber *f, void *ctx), void *ctx)
{
    for (uint32_t b = 0; b < rt->ft.nblocks; b++)
        for (uint32_t i = 0; i < WEFT__FT_BLOCK; i++) {
            struct weft__fiber *f = &rt->ft.blocks[b][i];
            if (f->state != WEFT__F_FREE)
                fn(f, ctx);
        }
}

void weft__fiber_cancel(struct weft__fiber *f)
{
    if (f->flags & WEFT__FL_CANCELLED)
        return;
    f->flags |= WEFT__FL_CANCELLED;
    if (f->state == WEFT__F_PARKED && !f->wait.uncancellable) {
        if (!f->wait.unlink || f->wait.unlink(f))
            weft__wake(f, -ECANCELED);
    }
}

int weft__spawn(struct weft__worker *w, const weft_attr *attr, void *fn, void *arg,
                uint8_t flags, struct weft__fiber **out)
{
    struct weft_rt *rt = w->rt;
    struct weft__fiber *f;
    int err = weft__fiber_new(rt, &f, attr);
    if (err)
        return err;
    f->fn = (weft_fn)fn;
    f->arg = arg;
    f->flags |= flags;
    if (rt->shutting_down)
        f->flags |= WEFT__FL_CANCELLED;
    atomic_store_explicit(&w->n_spawned,
                          atomic_load_explicit(&w->n_spawned, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    f->state = WEFT__F_RUNNABLE;
    weft__rq_push(w, f);
    if (out)
        *out = f;
    return 0;
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
    int err = weft__spawn(w, attr, (void *)fn, arg, fp ? 0 : WEFT__FL_DETACHED, &f);
    if (err)
        return err;
    f->spawn_site = __builtin_return_address(0);
    if (fp)
        *fp = weft__fiber_handle(f);
    return 0;
}

static bool join_unlink(struct weft__fiber *self)
{
    struct weft__fiber *target = self->wait_data;
    if (target && target->joiner == self) {
        target->joiner = NULL;
        return true;
    }
    return false;
}

int weft_join(weft_fiber *h, void **result, int64_t deadline)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    if (!self)
        return -EPERM;
    struct weft__fiber *f = weft__fiber_decode(w->rt, h);
    if (!f)
        return -ESRCH;
    if (f == self)
        return -EDEADLK;
    if ((f->flags & WEFT__FL_DETACHED) || f->joiner)
        return -EINVAL;
    if (f->state != WEFT__F_DONE) {
        /* The joiner stays recorded until it has collected the result, so
         * nobody else can join or detach f in between. */
        f->joiner = self;
        self->wait.kind = WEFT__W_JOIN;
        self->wait.obj = f;
        self->wait.unlink = join_unlink;
        self->wait_data = f;
        int r = weft__park(w, self, deadline, NULL);
        if (r < 0)
            return r;
        weft__must(f->state == WEFT__F_DONE, "join woken before the fiber finished");
    }
    if (result)
        *result = f->result;
    weft__fiber_free(w->rt, f);
    return 0;
}

int weft_detach(weft_fiber *h)
{
    struct weft__worker *w = weft__worker();
    if (!weft__self(w))
        return -EPERM;
    struct weft__fiber *f = weft__fiber_decode(w->rt, h);
    if (!f)
        return -ESRCH;
    if ((f->flags & WEFT__FL_DETACHED) || f->joiner)
        return -EINVAL;
    if (f->state == WEFT__F_DONE)
        weft__fiber_free(w->rt, f);
    else
        f->flags |= WEFT__FL_DETACHED;
    return 0;
}

int weft_cancel(weft_fiber *h)
{
    struct weft__worker *w = weft__worker();
    if (!weft__self(w))
        return -EPERM;
    struct weft__fiber *f = weft__fiber_decode(w->rt, h);
    if (!f)
        return -ESRCH;
    weft__fiber_cancel(f);
    return 0;
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

uint64_t weft_fiber_id(const weft_fiber *h)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *f = w ? weft__fiber_decode(w->rt, h) : NULL;
    return f ? f->id : 0;
}
