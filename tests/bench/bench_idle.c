/* bench_idle.c - N fibers parked at once in weft_sleep_ms(): the memory
 * each costs (RSS, page tables), the kernel map entries used and how many
 * stacks have a guard page (all stacks made, including the main fiber's and
 * spares of the last chunk; "canary" counts those without one). Every fiber is started and parked before the
 * reading; then all are cancelled and joined.
 *
 * usage: bench_idle [N, default 100000] [stack KiB, default 64]
 */
#define _GNU_SOURCE
#include "bench_util.h"

#include <weft.h>

static long n, weft_stack_kb;
static int failed_at = -1;

static void *parked(void *arg)
{
    (void)arg;
    weft_sleep_ms(-1);
    return NULL;
}

static void bench_main(void *arg)
{
    (void)arg;
    weft_fiber **f = malloc((size_t)n * sizeof *f);
    if (!f)
        exit(1);
    memset(f, 0, (size_t)n * sizeof *f); /* touched before the baseline */
    weft_stats s1;
    long rss0 = proc_status_kb("VmRSS"), pte0 = proc_status_kb("VmPTE");
    long maps0 = proc_map_count();
    double t0 = now_s();
    long i;
    for (i = 0; i < n; i++) {
        int r = weft_spawn(&f[i], NULL, parked, NULL);
        if (r) {
            failed_at = (int)i;
            fprintf(stderr, "spawn %ld: %s\n", i, weft_strerror(r));
            break;
        }
    }
    weft_yield(); /* every fiber runs once and parks */
    double t1 = now_s();
    weft_stats_get(&s1);
    long rss1 = proc_status_kb("VmRSS"), pte1 = proc_status_kb("VmPTE");
    long maps1 = proc_map_count();
    long made = i;
    /* the same keys as the peers' idle benchmarks (bytes per fiber) */
    printf("RESULT peer=weft variant=guard_%ldK test=idle n=%ld created=%ld ok=%d "
           "rss_per_coro_B=%.0f pte_per_coro_B=%.0f maps_added=%ld guarded=%llu canary=%llu "
           "create_ns_per=%.0f\n",
           (long)(weft_stack_kb), n, made, failed_at < 0,
           (double)(rss1 - rss0) * 1024 / (double)made, (double)(pte1 - pte0) * 1024 / (double)made,
           maps1 - maps0, (unsigned long long)s1.stacks_guarded,
           (unsigned long long)s1.stacks_canary,
           (t1 - t0) * 1e9 / (double)made);
    for (long k = 0; k < made; k++)
        weft_cancel(f[k]);
    for (long k = 0; k < made; k++)
        weft_join(f[k], NULL, WEFT_FOREVER);
    free(f);
}

int main(int argc, char **argv)
{
    n = argc > 1 ? atol(argv[1]) : 100000;
    long kb = weft_stack_kb = argc > 2 ? atol(argv[2]) : 64;
    weft_config c;
    weft_config_init(&c);
    c.stack_size = (size_t)kb * 1024;
    int r = weft_run(&c, bench_main, NULL);
    if (r) {
        fprintf(stderr, "weft_run: %s\n", weft_strerror(r));
        return 1;
    }
    return failed_at < 0 ? 0 : 1;
}
