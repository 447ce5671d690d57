/* bench_switch.c - the cost of weft_yield() between two fibers, measured
 * beside a raw fcontext ping-pong (the physical floor) in the same binary,
 * alternating the two REPS times and reporting medians and their ratio.
 *
 * usage: bench_switch [N switches, default 10000000] [REPS, default 5]
 */
#define _GNU_SOURCE
#include "bench_util.h"

#include <stdint.h>
#include <sys/mman.h>
#include <weft.h>

#include "arch/fcontext.h"

/* ------------------------------------------------ raw fcontext ping-pong */

struct pp {
    weft__fctx main_ctx, b_ctx;
    long remaining;
    int started;
};

static void pp_fn(weft__transfer t)
{
    struct pp *p = t.data;
    weft__fctx other;
    if (!p->started) {
        p->started = 1;
        p->main_ctx = t.fctx;
        other = p->b_ctx;
    } else {
        other = t.fctx;
    }
    while (p->remaining > 0) {
        p->remaining--;
        other = weft__jump_fcontext(other, p).fctx;
    }
    weft__jump_fcontext(p->main_ctx, NULL);
}

static double raw_pingpong(long n)
{
    size_t sz = 64 * 1024;
    char *a = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *b = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED || b == MAP_FAILED)
        exit(1);
    struct pp p = { 0 };
    weft__fctx ca = weft__make_fcontext(a + sz, sz, pp_fn);
    p.b_ctx = weft__make_fcontext(b + sz, sz, pp_fn);
    p.remaining = n;
    double t0 = now_s();
    weft__jump_fcontext(ca, &p);
    double t1 = now_s();
    munmap(a, sz);
    munmap(b, sz);
    return (t1 - t0) * 1e9 / (double)n;
}

/* ------------------------------------------------------ weft yield */

static long per_fiber;
static double weft_ns;

static void *yielder(void *arg)
{
    (void)arg;
    for (long i = 0; i < per_fiber; i++)
        weft_yield();
    return NULL;
}

static void bench_main(void *arg)
{
    long n = *(long *)arg;
    weft_fiber *a, *b;
    per_fiber = n / 2;
    weft_spawn(&a, NULL, yielder, NULL);
    weft_spawn(&b, NULL, yielder, NULL);
    /* main parks in join; from then on only a and b switch */
    double t0 = now_s();
    weft_join(a, NULL, WEFT_FOREVER);
    weft_join(b, NULL, WEFT_FOREVER);
    double t1 = now_s();
    weft_ns = (t1 - t0) * 1e9 / (double)n;
}

static double weft_pingpong(long n)
{
    int r = weft_run(NULL, bench_main, &n);
    if (r) {
        fprintf(stderr, "weft_run: %s\n", weft_strerror(r));
        exit(1);
    }
    return weft_ns;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10000000;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    double raw[64], wy[64];
    if (reps < 1 || reps > 64)
        reps = 5;
    raw_pingpong(n / 10); /* warm up */
    weft_pingpong(n / 10);
    for (int i = 0; i < reps; i++) {
        raw[i] = raw_pingpong(n);
        wy[i] = weft_pingpong(n);
    }
    double mr = median(raw, reps), mw = median(wy, reps);
    printf("RESULT peer=fcontext variant=direct test=pingpong n=%ld ns_per_switch=%.2f\n", n, mr);
    printf("RESULT peer=weft variant=yield test=pingpong n=%ld ns_per_switch=%.2f\n", n, mw);
    printf("RESULT peer=weft variant=yield/raw test=ratio value=%.2f\n", mw / mr);
    return 0;
}
