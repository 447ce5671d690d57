/* hello.c - ten thousand fibers, each sleeping a random while, on one
 * thread: spawn them, join them, print how long it took.
 *   ./hello [fibers]
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

static void *nap(void *arg)
{
    weft_sleep_ms((int64_t)(intptr_t)arg); /* parks this fiber only */
    return arg;
}

static void main_fiber(void *arg)
{
    long n = *(long *)arg;
    weft_fiber **f = calloc((size_t)n, sizeof *f);
    if (!f)
        return;
    int64_t t0 = weft_now();
    for (long i = 0; i < n; i++)
        if (weft_spawn(&f[i], NULL, nap, (void *)(intptr_t)(50 + i % 100)) != 0)
            return;
    int64_t total = 0;
    for (long i = 0; i < n; i++) {
        void *slept;
        weft_join(f[i], &slept, WEFT_FOREVER);
        total += (intptr_t)slept;
    }
    printf("%ld fibers slept %.1f s in all, in %.0f ms of wall time\n", n, total / 1e3,
           (double)(weft_now() - t0) / 1e6);
    free(f);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10000;
    int r = weft_run(NULL, main_fiber, &n);
    if (r)
        fprintf(stderr, "weft_run: %s\n", weft_strerror(r));
    return r ? 1 : 0;
}
