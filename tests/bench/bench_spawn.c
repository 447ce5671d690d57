/* bench_spawn.c - spawn + join of short fibers: BATCH at a time are
 * spawned and then joined, until N have run (the method of the peers'
 * spawn benchmarks). Reports ns per fiber, peak RSS and page faults per
 * fiber, with and without weft_config.prealloc_fibers = BATCH.
 *
 * usage: bench_spawn [N, default 1000000] [BATCH, default 1000] [prealloc 0|1]
 */
#define _GNU_SOURCE
#include "bench_util.h"

#include <sys/resource.h>
#include <weft.h>

static long n_total, batch;
static double elapsed;
static long faults;

static void *quick(void *arg) { return arg; }

static long minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

static void bench_main(void *arg)
{
    (void)arg;
    weft_fiber **f = malloc((size_t)batch * sizeof *f);
    if (!f)
        exit(1);
    long f0 = minflt();
    double t0 = now_s();
    for (long done = 0; done < n_total; done += batch) {
        for (long i = 0; i < batch; i++)
            if (weft_spawn(&f[i], NULL, quick, NULL) != 0)
                exit(1);
        for (long i = 0; i < batch; i++)
            weft_join(f[i], NULL, WEFT_FOREVER);
    }
    elapsed = now_s() - t0;
    faults = minflt() - f0;
    free(f);
}

int main(int argc, char **argv)
{
    n_total = argc > 1 ? atol(argv[1]) : 1000000;
    batch = argc > 2 ? atol(argv[2]) : 1000;
    int prealloc = argc > 3 ? atoi(argv[3]) : 0;
    weft_config c;
    weft_config_init(&c);
    c.stack_size = 64 * 1024; /* as the peers */
    if (prealloc)
        c.prealloc_fibers = (size_t)batch + 1;
    int r = weft_run(&c, bench_main, NULL);
    if (r) {
        fprintf(stderr, "weft_run: %s\n", weft_strerror(r));
        return 1;
    }
    printf("RESULT peer=weft variant=%s test=spawn n=%ld batch=%ld ns_per_spawn=%.1f "
           "peak_rss_kb=%ld faults_per_spawn=%.4f\n",
           prealloc ? "prealloc" : "pooled", n_total, batch, elapsed * 1e9 / (double)n_total,
           proc_status_kb("VmHWM"), (double)faults / (double)n_total);
    return 0;
}
