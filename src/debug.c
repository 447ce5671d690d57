/* debug.c - what weft shows when things go wrong or someone looks inside:
 * stack overflow reports (the OS's guard-page fault handler, in
 * src/unix/fault.c, asks weft__fault_on_guard), weft_stats_get() and
 * weft_dump(), and the invariant check that aborts.
 *
 * An overflow must never pass as silent corruption. A fiber that runs into
 * its guard page faults; the fault handler (on an alternate signal stack,
 * since the faulting stack is exhausted) checks whether the address lies in
 * the running fiber's guard page and, if so, prints one line naming the
 * fiber and aborts. Faults that are not weft's are passed on to whatever
 * handler was installed before, or to the default action. A fiber without
 * a guard page has a canary word at its stack limit that the scheduler
 * checks each time the fiber switches out (sched.c), with the same report.
 */
#include "internal.h"
#include "os.h"

#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn void weft__must_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "weft: internal error at %s:%d: %s\n", file, line, what);
    abort();
}

/* ------------------------------------------------------- overflow reports */

/* Async-signal-safe formatting: the report may be written from a SIGSEGV
 * handler, where stdio is off limits. */
struct line { char buf[256]; size_t len; };

static void put_str(struct line *l, const char *s)
{
    while (*s && l->len < sizeof l->buf - 1)
        l->buf[l->len++] = *s++;
}

static void put_u64(struct line *l, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n && l->len < sizeof l->buf - 1)
        l->buf[l->len++] = tmp[--n];
}

_Noreturn void weft__overflow_report(const struct weft__fiber *f, const char *how)
{
    struct line l = { .len = 0 };
    put_str(&l, "weft: fiber ");
    put_u64(&l, f->id);
    put_str(&l, " \"");
    put_str(&l, f->name);
    put_str(&l, "\" overflowed its ");
    put_u64(&l, f->stack ? f->stack->size / 1024 : 0);
    put_str(&l, " KiB stack (");
    put_str(&l, how);
    put_str(&l, "); aborting\n");
    weft__os_write_err(l.buf, l.len);
    signal(SIGABRT, SIG_DFL);
    abort();
}

/* Called by the OS's fault handler (src/unix/fault.c) with the faulting
 * address: if it lies in the running fiber's guard page, the fiber ran off
 * its stack, and this reports it and aborts. Otherwise it returns and the
 * handler passes the fault on. Async-signal-safe. */
void weft__fault_on_guard(const void *addr)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *f = weft__self(w);
    if (f && f->stack && f->stack->guard != WEFT__GK_CANARY) {
        const char *a = addr;
        const char *lo = f->stack->lo;
        if (a < lo && a >= lo - weft__page_size())
            weft__overflow_report(f, "it hit the guard page");
    }
}

/* ------------------------------------------------------------- statistics */

static uint64_t retired_spawned, retired_switches, retired_steals, retired_high_water;

static uint64_t rd(_Atomic uint64_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }

/* Called with the registry locked, as rt leaves it. */
void weft__stats_retire(struct weft__rt *rt)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        retired_spawned += rd(&rt->ws[i]->n_spawned);
        retired_switches += rd(&rt->ws[i]->n_switches);
        retired_steals += rd(&rt->ws[i]->n_steals);
    }
    for (struct weft__pool *p = rt->pools; p; p = p->next)
        if (p->high_water > retired_high_water)
            retired_high_water = p->high_water;
}

static void add_rt(struct weft__rt *rt, void *ctx)
{
    weft_stats *s = ctx;
    s->runtimes++;
    s->fibers_live += weft__live(rt);
    for (unsigned i = 0; i < rt->nworkers; i++) {
        s->fibers_spawned += rd(&rt->ws[i]->n_spawned);
        s->switches += rd(&rt->ws[i]->n_switches);
        s->steals += rd(&rt->ws[i]->n_steals);
    }
    weft__lock(&rt->w0, &rt->pool_lock);
    /* Stacks in the workers' caches are free, though not in the pool. */
    uint64_t cached = 0;
    for (unsigned i = 0; i < rt->nworkers; i++)
        cached += __atomic_load_n(&rt->ws[i]->nscache, __ATOMIC_RELAXED);
    for (struct weft__pool *p = rt->pools; p; p = p->next) {
        uint64_t nfree = __atomic_load_n(&p->nfree, __ATOMIC_RELAXED);
        if (p == rt->pools)
            nfree += cached;
        uint64_t total = __atomic_load_n(&p->total, __ATOMIC_RELAXED);
        s->stacks_pooled += nfree;
        s->stacks_in_use += total - nfree;
        s->stacks_guard_madvise += p->n_madvise;
        s->stacks_guard_mprotect += p->n_mprotect;
        s->stacks_canary += p->n_canary;
        s->stack_bytes_mapped += total * p->slot_size;
        if (p->high_water > s->stack_high_water)
            s->stack_high_water = p->high_water;
    }
    weft__unlock(&rt->w0, &rt->pool_lock);
}

void weft_stats_get(weft_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    weft__registry_lock();
    weft__registry_each_locked(add_rt, out);
    out->fibers_spawned += retired_spawned;
    out->switches += retired_switches;
    out->steals += retired_steals;
    if (retired_high_water > out->stack_high_water)
        out->stack_high_water = retired_high_water;
    weft__registry_unlock();
    out->stacks_guarded = out->stacks_guard_madvise + out->stacks_guard_mprotect;
    out->map_entries = (uint64_t)atomic_load(&weft__map_entries_used);
}

/* ------------------------------------------------------------------- dump */

static const char *const state_names[] = {
    [WEFT__F_FREE] = "free", [WEFT__F_RUNNABLE] = "runnable", [WEFT__F_RUNNING] = "running",
    [WEFT__F_PARKED] = "parked", [WEFT__F_EXITING] = "exiting",
    [WEFT__F_DONE] = "finished, not joined", [WEFT__F_SCHED] = "scheduler",
};

static const char *const wait_names[WEFT__W_KINDS] = {
    [WEFT__W_NONE] = "nothing", [WEFT__W_SLEEP] = "sleep", [WEFT__W_JOIN] = "join",
    [WEFT__W_FD] = "fd", [WEFT__W_CHAN] = "channel", [WEFT__W_SELECT] = "select",
    [WEFT__W_MUTEX] = "mutex", [WEFT__W_COND] = "cond", [WEFT__W_SEM] = "semaphore",
    [WEFT__W_WG] = "wait group", [WEFT__W_OFFLOAD] = "offload", [WEFT__W_SIGNAL] = "signal",
    [WEFT__W_SHUTDOWN] = "shutdown",
};

/* A code address with its symbol when the dynamic linker knows one (a
 * static executable's own functions need -rdynamic to be named). */
static void put_code_address(FILE *out, const char *what, const void *addr)
{
    if (!addr)
        return;
    Dl_info info;
    if (dladdr(addr, &info) && info.dli_sname)
        fprintf(out, "%s%s+0x%tx", what, info.dli_sname,
                (const char *)addr - (const char *)info.dli_saddr);
    else
        fprintf(out, "%s%p", what, addr);
}

/* With several workers the other fibers run while this reads them: a
 * dump is a snapshot in which a running fiber's wait fields may be half
 * updated. The reads are so left to TSan's blind side (they are racy by
 * design and harmless: every pointer read is loaded once and checked),
 * rather than making every park pay atomic stores for the dump's sake. */
WEFT__NO_TSAN static void dump_fiber(FILE *out, const struct weft__fiber *f, int64_t now)
{
    fprintf(out, "  fiber %llu \"%s\" %s", (unsigned long long)f->id, f->name,
            state_names[atomic_load_explicit(&f->state, memory_order_relaxed)]);
    if (f->flags & WEFT__FL_CANCELLED)
        fprintf(out, " (cancelled)");
    if (f->state == WEFT__F_PARKED) {
        int k = f->wait.kind >= 0 && f->wait.kind < WEFT__W_KINDS ? f->wait.kind : 0;
        const void *obj = f->wait.obj;
        fprintf(out, " on %s", wait_names[k] ? wait_names[k] : "?");
        if (k == WEFT__W_FD)
            fprintf(out, " %d (%s)", (int)(intptr_t)f->wait.obj,
                    f->wait.detail & WEFT_WRITE ? "write" : "read");
        else if (k == WEFT__W_JOIN && obj)
            fprintf(out, " of fiber %llu", (unsigned long long)((const struct weft__fiber *)obj)->id);
        else if (obj)
            fprintf(out, " %p", obj);
        fprintf(out, " for %.1f ms", (double)(now - f->wait.since) / 1e6);
        if (f->wait.deadline != WEFT_FOREVER)
            fprintf(out, ", deadline in %.1f ms", (double)(f->wait.deadline - now) / 1e6);
    }
    const struct weft__stack *st = f->stack;     /* an exit may clear it meanwhile */
    if (st) {
        fprintf(out, ", %zu KiB stack%s", st->size / 1024,
                st->guard == WEFT__GK_CANARY ? " (canary)" : "");
        if (st->pool->measure)
            fprintf(out, " (%zu KiB used)", weft__stack_used(st) / 1024);
    }
    if (f->state != WEFT__F_SCHED) {
        fprintf(out, ", worker %u%s, ", f->w ? f->w->index : 0,
                f->home ? " (pinned)" : "");
        put_code_address(out, "spawned at ", f->spawn_site);
        put_code_address(out, ", runs ", (const void *)f->fn);
    }
    fputc('\n', out);
}

struct dump_ctx { FILE *out; int64_t now; };

static void dump_one(struct weft__fiber *f, void *ctx)
{
    struct dump_ctx *dc = ctx;
    dump_fiber(dc->out, f, dc->now);
}

static void dump_summary(struct weft__rt *rt, void *ctx)
{
    FILE *out = ctx;
    uint64_t spawned = 0, switches = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        spawned += rd(&rt->ws[i]->n_spawned);
        switches += rd(&rt->ws[i]->n_switches);
    }
    fprintf(out, "weft: runtime %p: %u worker(s), %zu live fibers, %llu spawned, %llu switches\n",
            (void *)rt, rt->nworkers, weft__live(rt),
            (unsigned long long)spawned, (unsigned long long)switches);
}

static void worker_stats(const struct weft__worker *w, weft_worker_stats *s)
{
    s->runnable = weft__rq_count(w);
    s->switches = rd((_Atomic uint64_t *)&w->n_switches);
    s->spawned = rd((_Atomic uint64_t *)&w->n_spawned);
    s->parks = rd((_Atomic uint64_t *)&w->n_parks);
    s->steals = rd((_Atomic uint64_t *)&w->n_steals);
    s->sleeps = rd((_Atomic uint64_t *)&w->n_sleeps);
    s->polls = rd((_Atomic uint64_t *)&w->n_polls);
}

int weft_worker_stats_get(int index, weft_worker_stats *out)
{
    struct weft__worker *w = weft__worker();
    if (!weft__self(w))
        return -EPERM;
    if (!out || index < 0 || (unsigned)index >= w->rt->nworkers)
        return -EINVAL;
    worker_stats(w->rt->ws[index], out);
    return 0;
}

void weft_dump(FILE *out)
{
    if (!out)
        return;
    struct weft__worker *w = weft__worker();
    if (!weft__self(w)) {
        weft__registry_lock();
        weft__registry_each_locked(dump_summary, out);
        weft__registry_unlock();
        return;
    }
    struct weft__rt *rt = w->rt;
    int64_t now = weft__clock();
    dump_summary(rt, out);
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft_worker_stats ws;
        worker_stats(rt->ws[i], &ws);
        fprintf(out, "  worker %u: %llu runnable, %llu switches, %llu parks, %llu steals, "
                     "%llu sleeps%s\n", i,
                (unsigned long long)ws.runnable, (unsigned long long)ws.switches,
                (unsigned long long)ws.parks, (unsigned long long)ws.steals,
                (unsigned long long)ws.sleeps, rt->ws[i] == w ? " (this one)" : "");
    }
    struct dump_ctx dc = { out, now };
    weft__fiber_each(rt, dump_one, &dc);
    fflush(out);
}
