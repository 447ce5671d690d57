/* bench_mt.c - the multi-worker scheduler: scaling, cross-worker latency,
 * foreign-thread posts and a contended mutex. One RESULT line per run
 * (see bench_util.h); exit status 1 if the run's self-check fails.
 *
 * usage: bench_mt tree DEPTH WORKERS
 *          every fiber spawns two children and joins them, to DEPTH
 *          (2^(DEPTH+1)-1 fibers); checks the node count.
 *        bench_mt skynet WORKERS [SIZE, default 1000000]
 *          skynet: SIZE leaf fibers in a tree of 10 children per node, each
 *          leaf returns its id, each node the sum of its children (joined);
 *          checks sum = SIZE*(SIZE-1)/2.
 *        bench_mt pingpong WORKERS N
 *          two fibers pinned on different workers (on the same one with
 *          WORKERS=1) bounce a long over two rendezvous channels, N round
 *          trips; ns per round trip.
 *        bench_mt post THREADS N WORKERS
 *          THREADS foreign pthreads each weft_post() N functions that bump
 *          an atomic counter; posts/s from the first post until all ran.
 *        bench_mt mutex WORKERS FIBERS N
 *          FIBERS fibers lock/increment/unlock one weft_mutex N times in
 *          all; ns per lock-unlock; checks the total.
 *
 * knobs (env): STACK_KB (64, as the peers and bench_spawn) for every
 * fiber's stack. tree and skynet sample weft_stats_get() every 0.5 ms from a
 * helper thread and report the peak of stacks_in_use and
 * stack_bytes_mapped, peak RSS and page faults, so 1 and 2 workers can be
 * compared on equal memory behaviour. Every run also reports the summed
 * per-worker counters (switches, steals, sleeps) and their per-second rates.
 */
#define _GNU_SOURCE
#include "bench_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>
#include <weft.h>

static int nworkers = 1;
static size_t stack_size = 64 * 1024;
static int failed;
static double elapsed;
static weft_worker_stats wsum; /* summed over workers, taken at the end */
static char wsw[256];            /* per-worker switches, "a/b" */
static double cpu0;

static long minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e-6;
}

static void worker_stats_sum(void)
{
    memset(&wsum, 0, sizeof wsum);
    wsw[0] = 0;
    for (int i = 0; i < nworkers; i++) {
        weft_worker_stats s;
        if (weft_worker_stats_get(i, &s) == 0) {
            wsum.switches += s.switches;
            wsum.steals += s.steals;
            wsum.sleeps += s.sleeps;
            wsum.parks += s.parks;
            wsum.spawned += s.spawned;
            wsum.polls += s.polls;
            size_t l = strlen(wsw);
            snprintf(wsw + l, sizeof wsw - l, "%s%llu", i ? "/" : "", (unsigned long long)s.switches);
        }
    }
}

static void print_wstats(void)
{
    printf(" switches=%llu worker_switches=%s steals=%llu sleeps=%llu steals_per_s=%.0f "
           "sleeps_per_s=%.0f cpu_s=%.3f",
           (unsigned long long)wsum.switches, wsw, (unsigned long long)wsum.steals,
           (unsigned long long)wsum.sleeps, (double)wsum.steals / elapsed,
           (double)wsum.sleeps / elapsed, cpu_s() - cpu0);
}

static int run(void (*fn)(void *), void *arg)
{
    weft_config c;
    weft_config_init(&c);
    c.workers = nworkers;
    c.stack_size = stack_size;
    int r = weft_run(&c, fn, arg);
    if (r)
        fprintf(stderr, "weft_run: %s\n", weft_strerror(r));
    return r;
}

/* ------------------------------------------------------------ stack sampler */

static atomic_int sampling;
static uint64_t peak_stacks, peak_mapped;

static void *sampler(void *p)
{
    (void)p;
    while (atomic_load(&sampling)) {
        weft_stats s;
        weft_stats_get(&s);
        if (s.stacks_in_use > peak_stacks)
            peak_stacks = s.stacks_in_use;
        if (s.stack_bytes_mapped > peak_mapped)
            peak_mapped = s.stack_bytes_mapped;
        usleep(500);
    }
    return NULL;
}

static pthread_t sampler_tid;
static void sampler_start(void)
{
    atomic_store(&sampling, 1);
    pthread_create(&sampler_tid, NULL, sampler, NULL);
}
static void sampler_stop(void)
{
    atomic_store(&sampling, 0);
    pthread_join(sampler_tid, NULL);
}

/* ---------------------------------------------------------------- tree */

static void *tree_node(void *arg)
{
    intptr_t depth = (intptr_t)arg;
    if (depth == 0)
        return (void *)(intptr_t)1;
    weft_fiber *a, *b;
    void *ra, *rb;
    if (weft_spawn(&a, NULL, tree_node, (void *)(depth - 1)) ||
        weft_spawn(&b, NULL, tree_node, (void *)(depth - 1)) || weft_join(a, &ra, WEFT_FOREVER) ||
        weft_join(b, &rb, WEFT_FOREVER))
        return (void *)(intptr_t)-1000000000;
    return (void *)((intptr_t)ra + (intptr_t)rb + 1);
}

static intptr_t tree_depth, tree_count;
static int rounds = 1; /* env ROUNDS: run the tree/skynet this many times in one
                          runtime and report the last (a warm stack pool) */

static void tree_main(void *p)
{
    (void)p;
    weft_fiber *f;
    void *r = NULL;
    for (int i = 0; i < rounds; i++) {
        double t0 = now_s();
        if (weft_spawn(&f, NULL, tree_node, (void *)tree_depth) || weft_join(f, &r, WEFT_FOREVER))
            failed = 1;
        elapsed = now_s() - t0;
        if (rounds > 1)
            fprintf(stderr, "round %d: %.1f ms\n", i + 1, elapsed * 1e3);
    }
    tree_count = (intptr_t)r;
    worker_stats_sum();
}

/* -------------------------------------------------------------- skynet */

struct sky { long num, size; };

static void *skynet(void *arg)
{
    struct sky *s = arg;
    if (s->size == 1)
        return (void *)(intptr_t)s->num;
    struct sky kids[10];
    weft_fiber *f[10];
    long step = s->size / 10;
    for (int i = 0; i < 10; i++) {
        kids[i].num = s->num + i * step;
        kids[i].size = step;
        if (weft_spawn(&f[i], NULL, skynet, &kids[i]))
            abort();
    }
    intptr_t sum = 0;
    for (int i = 0; i < 10; i++) {
        void *r;
        if (weft_join(f[i], &r, WEFT_FOREVER))
            abort();
        sum += (intptr_t)r;
    }
    return (void *)sum;
}

static long sky_size;
static intptr_t sky_sum;

static void skynet_main(void *p)
{
    (void)p;
    struct sky root = { 0, sky_size };
    weft_fiber *f;
    void *r = NULL;
    for (int i = 0; i < rounds; i++) {
        double t0 = now_s();
        if (weft_spawn(&f, NULL, skynet, &root) || weft_join(f, &r, WEFT_FOREVER))
            failed = 1;
        elapsed = now_s() - t0;
        if (rounds > 1)
            fprintf(stderr, "round %d: %.1f ms\n", i + 1, elapsed * 1e3);
    }
    sky_sum = (intptr_t)r;
    worker_stats_sum();
}

/* ------------------------------------------------------------ pingpong */

static long pp_n;
static weft_chan *ping, *pong;
static atomic_int launched;
static pthread_t thread_a;
static weft_fiber *fib_b;
static double pp_sleeps_per_rt;

static void *pp_client(void *p)
{
    (void)p;
    long v = 0;
    double t0 = now_s();
    for (long i = 0; i < pp_n; i++) {
        v = i;
        if (weft_chan_send(ping, &v, WEFT_FOREVER) || weft_chan_recv(pong, &v, WEFT_FOREVER) ||
            v != i) {
            failed = 1;
            break;
        }
    }
    elapsed = now_s() - t0;
    return NULL;
}

static void *pp_server(void *p)
{
    (void)p;
    long v;
    for (long i = 0; i < pp_n; i++)
        if (weft_chan_recv(ping, &v, WEFT_FOREVER) || weft_chan_send(pong, &v, WEFT_FOREVER)) {
            failed = 1;
            break;
        }
    return NULL;
}

/* Runs wherever a worker took it; spawns the pinned server there if that
 * is not the client's thread (or if there is one worker). */
static void *launcher(void *p)
{
    (void)p;
    if (nworkers == 1 || !pthread_equal(pthread_self(), thread_a)) {
        weft_attr at;
        weft_attr_init(&at);
        at.pinned = 1;
        if (weft_spawn(&fib_b, &at, pp_server, NULL) == 0)
            atomic_store(&launched, 1);
    }
    return NULL;
}

/* Pinned on the worker it was spawned on: finds a launcher that lands on
 * another worker (spawned, then this worker is kept busy without yielding
 * so that an idle peer steals it), then spawns the pinned client here. */
static void *pp_control(void *p)
{
    (void)p;
    weft_attr at;
    weft_attr_init(&at);
    at.pinned = 1;
    weft_fiber *a, *l;
    thread_a = pthread_self();
    for (int tries = 0; tries < 1000 && !atomic_load(&launched); tries++) {
        weft_spawn(&l, NULL, launcher, NULL);
        double t0 = now_s();
        while (!atomic_load(&launched) && now_s() - t0 < 0.01)
            ;
        weft_join(l, NULL, WEFT_FOREVER);
    }
    if (!atomic_load(&launched)) {
        fprintf(stderr, "pingpong: could not place a fiber on another worker\n");
        failed = 1;
        return NULL;
    }
    weft_spawn(&a, &at, pp_client, NULL);
    weft_worker_stats s0[2] = { 0 }, s1[2] = { 0 };
    for (int i = 0; i < nworkers && i < 2; i++)
        weft_worker_stats_get(i, &s0[i]);
    weft_join(a, NULL, WEFT_FOREVER);
    weft_join(fib_b, NULL, WEFT_FOREVER);
    for (int i = 0; i < nworkers && i < 2; i++)
        weft_worker_stats_get(i, &s1[i]);
    uint64_t sl = 0;
    for (int i = 0; i < nworkers && i < 2; i++)
        sl += s1[i].sleeps - s0[i].sleeps;
    pp_sleeps_per_rt = (double)sl / (double)pp_n;
    return NULL;
}

static void pp_main(void *p)
{
    (void)p;
    weft_attr at;
    weft_attr_init(&at);
    at.pinned = 1;
    weft_fiber *c;
    if (weft_chan_open(&ping, sizeof(long), 0) || weft_chan_open(&pong, sizeof(long), 0)) {
        failed = 1;
        return;
    }
    if (weft_spawn(&c, &at, pp_control, NULL) || weft_join(c, NULL, WEFT_FOREVER))
        failed = 1;
    worker_stats_sum();
    weft_chan_free(ping);
    weft_chan_free(pong);
}

/* ---------------------------------------------------------------- post */

static weft_rt *post_rt;
static long post_n, post_total;
static int post_threads;
static atomic_long post_count, post_fail;
static atomic_int post_go;
static double post_t0, post_t1;
static weft_sem post_done;

static void bump(void *arg)
{
    (void)arg;
    if (atomic_fetch_add_explicit(&post_count, 1, memory_order_relaxed) + 1 == post_total) {
        post_t1 = now_s();
        weft_sem_release(&post_done);
    }
}

static void *poster(void *p)
{
    (void)p;
    while (!atomic_load_explicit(&post_go, memory_order_acquire))
        ;
    for (long i = 0; i < post_n; i++)
        while (weft_post(post_rt, bump, NULL) != 0) {
            atomic_fetch_add(&post_fail, 1);
            sched_yield();
        }
    return NULL;
}

static void post_main(void *p)
{
    (void)p;
    post_rt = weft_runtime();
    weft_sem_init(&post_done, 0);
    pthread_t *t = malloc((size_t)post_threads * sizeof *t);
    for (int i = 0; i < post_threads; i++)
        if (pthread_create(&t[i], NULL, poster, NULL)) {
            failed = 1;
            exit(1);
        }
    post_t0 = now_s();
    atomic_store_explicit(&post_go, 1, memory_order_release);
    if (weft_sem_acquire(&post_done, WEFT_FOREVER))
        failed = 1;
    elapsed = post_t1 - post_t0;
    for (int i = 0; i < post_threads; i++)
        pthread_join(t[i], NULL); /* they have finished posting by now */
    free(t);
    worker_stats_sum();
}

/* --------------------------------------------------------------- mutex */

static weft_mutex mtx = WEFT_MUTEX_INIT;
static long mtx_counter, mtx_per_fiber;
static int mtx_fibers;

static void *locker(void *p)
{
    (void)p;
    for (long i = 0; i < mtx_per_fiber; i++) {
        if (weft_mutex_lock(&mtx, WEFT_FOREVER)) {
            failed = 1;
            return NULL;
        }
        mtx_counter++;
        weft_mutex_unlock(&mtx);
    }
    return NULL;
}

static void mutex_main(void *p)
{
    (void)p;
    weft_fiber **f = malloc((size_t)mtx_fibers * sizeof *f);
    double t0 = now_s();
    for (int i = 0; i < mtx_fibers; i++)
        if (weft_spawn(&f[i], NULL, locker, NULL))
            failed = 1;
    for (int i = 0; i < mtx_fibers; i++)
        weft_join(f[i], NULL, WEFT_FOREVER);
    elapsed = now_s() - t0;
    free(f);
    worker_stats_sum();
}

/* ---------------------------------------------------------------- main */

static int usage(const char *p)
{
    fprintf(stderr,
            "usage: %s tree DEPTH WORKERS | skynet WORKERS [SIZE] | pingpong WORKERS N |\n"
            "       post THREADS N WORKERS | mutex WORKERS FIBERS N\n",
            p);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage(argv[0]);
    const char *sk = getenv("STACK_KB");
    if (sk && atol(sk) > 0)
        stack_size = (size_t)atol(sk) * 1024;
    const char *cmd = argv[1];
    long f0 = minflt();
    cpu0 = cpu_s();
    const char *ro = getenv("ROUNDS");
    if (ro && atoi(ro) > 1)
        rounds = atoi(ro);

    if (!strcmp(cmd, "tree") && argc >= 4) {
        tree_depth = atol(argv[2]);
        nworkers = atoi(argv[3]);
        if (tree_depth < 0 || tree_depth > 26)
            return usage(argv[0]);
        sampler_start();
        int r = run(tree_main, NULL);
        sampler_stop();
        intptr_t want = ((intptr_t)1 << (tree_depth + 1)) - 1;
        if (r || failed || tree_count != want) {
            fprintf(stderr, "tree: count %ld, want %ld\n", (long)tree_count, (long)want);
            return 1;
        }
        printf("RESULT peer=weft variant=workers%d test=tree depth=%ld rounds=%d fibers=%ld ms=%.1f "
               "ns_per_fiber=%.1f peak_stacks_in_use=%llu peak_stack_mb_mapped=%.0f "
               "peak_rss_kb=%ld faults=%ld",
               nworkers, (long)tree_depth, rounds, (long)want, elapsed * 1e3, elapsed * 1e9 / (double)want,
               (unsigned long long)peak_stacks, (double)peak_mapped / 1048576.0,
               proc_status_kb("VmHWM"), minflt() - f0);
        print_wstats();
        printf("\n");
        return 0;
    }
    if (!strcmp(cmd, "skynet")) {
        nworkers = atoi(argv[2]);
        sky_size = argc > 3 ? atol(argv[3]) : 1000000;
        sampler_start();
        int r = run(skynet_main, NULL);
        sampler_stop();
        intptr_t want = (intptr_t)sky_size * (sky_size - 1) / 2;
        if (r || failed || sky_sum != want) {
            fprintf(stderr, "skynet: sum %ld, want %ld\n", (long)sky_sum, (long)want);
            return 1;
        }
        printf("RESULT peer=weft variant=workers%d test=skynet rounds=%d size=%ld sum=%ld ms=%.1f "
               "peak_stacks_in_use=%llu peak_stack_mb_mapped=%.0f peak_rss_kb=%ld faults=%ld",
               nworkers, rounds, sky_size, (long)sky_sum, elapsed * 1e3, (unsigned long long)peak_stacks,
               (double)peak_mapped / 1048576.0, proc_status_kb("VmHWM"), minflt() - f0);
        print_wstats();
        printf("\n");
        return 0;
    }
    if (!strcmp(cmd, "pingpong") && argc >= 4) {
        nworkers = atoi(argv[2]);
        pp_n = atol(argv[3]);
        int r = run(pp_main, NULL);
        if (r || failed)
            return 1;
        printf("RESULT peer=weft variant=workers%d test=xw_pingpong n=%ld ns_per_roundtrip=%.1f "
               "sleeps_per_roundtrip=%.3f",
               nworkers, pp_n, elapsed * 1e9 / (double)pp_n, pp_sleeps_per_rt);
        print_wstats();
        printf("\n");
        return 0;
    }
    if (!strcmp(cmd, "post") && argc >= 5) {
        post_threads = atoi(argv[2]);
        post_n = atol(argv[3]);
        nworkers = atoi(argv[4]);
        post_total = post_threads * post_n;
        if (post_threads < 1 || post_n < 1)
            return usage(argv[0]);
        int r = run(post_main, NULL);
        if (r || failed || atomic_load(&post_count) != post_total) {
            fprintf(stderr, "post: ran %ld of %ld\n", atomic_load(&post_count), post_total);
            return 1;
        }
        printf("RESULT peer=weft variant=workers%d test=post threads=%d n=%ld total=%ld "
               "posts_per_s=%.0f ns_per_post=%.1f retries=%ld",
               nworkers, post_threads, post_n, post_total, (double)post_total / elapsed,
               elapsed * 1e9 / (double)post_total, atomic_load(&post_fail));
        print_wstats();
        printf("\n");
        return 0;
    }
    if (!strcmp(cmd, "mutex") && argc >= 5) {
        nworkers = atoi(argv[2]);
        mtx_fibers = atoi(argv[3]);
        long n = atol(argv[4]);
        if (mtx_fibers < 1 || n < mtx_fibers)
            return usage(argv[0]);
        mtx_per_fiber = n / mtx_fibers;
        long want = mtx_per_fiber * mtx_fibers;
        int r = run(mutex_main, NULL);
        if (r || failed || mtx_counter != want) {
            fprintf(stderr, "mutex: counter %ld, want %ld\n", mtx_counter, want);
            return 1;
        }
        printf("RESULT peer=weft variant=workers%d test=mutex fibers=%d n=%ld "
               "ns_per_lock=%.1f",
               nworkers, mtx_fibers, want, elapsed * 1e9 / (double)want);
        print_wstats();
        printf("\n");
        return 0;
    }
    return usage(argv[0]);
}
