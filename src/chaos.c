/* chaos.c - the preemption points' hook and chaos mode (testing builds
 * only; see chaos.h).
 *
 * A delayed hit does one of three things, chosen by the same random draw:
 * spin up to a few thousand pauses (the other thread races ahead by a few
 * microseconds while this one still holds its CPU), sched_yield() (the
 * kernel may run another thread here, as on a busy machine), or sleep up
 * to 200 us (a preemption by the kernel, which is what the defects found
 * from outside needed). Each thread draws from its own xorshift stream,
 * seeded from the global seed and the order in which threads first hit a
 * point, so a seed replays the same delays per thread.
 */
#include "chaos.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lock.h"

static _Atomic(weft__pp_fn) hook;
static _Atomic uint64_t chaos_seed;
static _Atomic unsigned chaos_permille;
static _Atomic uint64_t chaos_epoch;       /* bumped by every weft__chaos_set */
static _Atomic uint32_t thread_ordinal;
static _Atomic uint64_t hits[WEFT__PP_COUNT];

static __thread uint64_t rng_state;
static __thread uint64_t rng_epoch;

static const char *const names[WEFT__PP_COUNT] = {
    "post_taken", "idle_check", "idle_decided", "before_idle", "last_look", "pushed",
    "parked", "on_cpu", "handle", "spawn", "shutdown_walk", "shutdown_walked",
    "worker_created", "drained_read", "post_ref", "rt_closed",
    "shutdown_asked", "shutdown_wait",
};

const char *weft__pp_name(enum weft__pp pp)
{
    return (unsigned)pp < WEFT__PP_COUNT ? names[pp] : "?";
}

void weft__pp_set(weft__pp_fn fn)
{
    atomic_store(&hook, fn);
}

uint64_t weft__pp_count(enum weft__pp pp)
{
    return (unsigned)pp < WEFT__PP_COUNT ? atomic_load(&hits[pp]) : 0;
}

void weft__chaos_set(uint64_t seed, unsigned permille)
{
    atomic_store(&chaos_permille, permille > 1000 ? 1000 : permille);
    atomic_store(&chaos_seed, seed);
    atomic_fetch_add(&chaos_epoch, 1);
}

void weft__chaos_from_env(void)
{
    static atomic_flag printed = ATOMIC_FLAG_INIT;
    const char *env = getenv("WEFT_CHAOS");
    if (!env || !*env)
        return;
    char *end;
    unsigned long long seed = strtoull(env, &end, 0);
    unsigned permille = 100;
    if (*end == ':')
        permille = (unsigned)strtoul(end + 1, NULL, 10);
    if (seed == 0)
        return;
    if (atomic_load(&chaos_seed) == seed && atomic_load(&chaos_permille) == permille)
        return;
    weft__chaos_set(seed, permille);
    if (!atomic_flag_test_and_set(&printed))
        fprintf(stderr, "weft: chaos mode, seed %llu, %u per mille of preemption points "
                        "delayed (WEFT_CHAOS=%llu:%u replays it)\n",
                seed, permille, seed, permille);
}

static uint64_t next_rand(void)
{
    uint64_t epoch = atomic_load_explicit(&chaos_epoch, memory_order_relaxed);
    if (rng_epoch != epoch) {
        rng_epoch = epoch;
        uint32_t ord = atomic_fetch_add(&thread_ordinal, 1);
        rng_state = atomic_load(&chaos_seed) ^ ((uint64_t)(ord + 1) * 0x9e3779b97f4a7c15ull);
        if (!rng_state)
            rng_state = 1;
    }
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

void weft__pp_hit(enum weft__pp pp, const void *arg)
{
    atomic_fetch_add_explicit(&hits[pp], 1, memory_order_relaxed);
    weft__pp_fn fn = atomic_load_explicit(&hook, memory_order_acquire);
    if (fn)
        fn(pp, arg);
    if (!atomic_load_explicit(&chaos_seed, memory_order_relaxed))
        return;
    uint64_t r = next_rand();
    if (r % 1000 >= atomic_load_explicit(&chaos_permille, memory_order_relaxed))
        return;
    r >>= 10;
    switch (r % 5) {
    case 0:
    case 1:
        for (unsigned i = (unsigned)(r >> 3) % 4000; i > 0; i--)
            weft__cpu_relax();
        break;
    case 2:
    case 3:
        sched_yield();
        break;
    default: {
        struct timespec ts = { 0, (long)((r >> 3) % 200000) };
        nanosleep(&ts, NULL);
        break;
    }
    }
}
