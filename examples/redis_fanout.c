/* redis_fanout.c - unmodified blocking hiredis in a thousand fibers.
 *
 * Every fiber uses the plain synchronous hiredis API - redisConnect,
 * redisCommand, redisFree - exactly as a single-threaded program would.
 * The program is linked with -lweft_hook (or run with
 * LD_PRELOAD=libweft_hook.so.0), which turns hiredis's blocking connect,
 * poll, read and write into parking weft calls, so on ONE worker thread the
 * requests proceed side by side: each fiber sends a BLPOP on a key nobody
 * pushes to, Redis holds every one of them for the timeout, and the whole
 * fan-out takes about one timeout instead of FIBERS timeouts.
 *
 *   redis_fanout PORT [FIBERS [SECONDS [MAX_TOTAL]]]
 *
 * PORT: a redis-server on 127.0.0.1. FIBERS (1000) each BLPOP with a
 * timeout of SECONDS (0.5). The program first times one request alone,
 * then all of them at once, and prints both; with MAX_TOTAL it fails
 * (exit 1) if the fan-out took longer than that many seconds. Any error
 * reply or connection failure also exits 1.
 */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <weft.h>

struct job {
    int port, fibers;
    const char *seconds;
    double max_total;
    int failures;
    double single, total;
};

/* One client, start to finish, through the ordinary blocking API. */
static void *client(void *arg)
{
    struct job *j = ((void **)arg)[0];
    int id = (int)(intptr_t)((void **)arg)[1];
    redisContext *c = redisConnect("127.0.0.1", j->port);
    if (!c || c->err) {
        fprintf(stderr, "fiber %d: connect: %s\n", id, c ? c->errstr : "out of memory");
        j->failures++;
        redisFree(c);
        return NULL;
    }
    redisReply *r = redisCommand(c, "BLPOP weft:fanout:%d %s", id, j->seconds);
    if (!r || r->type != REDIS_REPLY_NIL) {
        fprintf(stderr, "fiber %d: BLPOP: %s\n", id,
                !r ? c->errstr : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        j->failures++;
    }
    freeReplyObject(r);
    redisFree(c);
    return NULL;
}

static void fanout(void *arg)
{
    struct job *j = arg;
    void **args = calloc((size_t)j->fibers, 2 * sizeof *args);
    weft_fiber **f = calloc((size_t)j->fibers, sizeof *f);
    if (!args || !f) {
        j->failures++;
        free(args);
        free(f);
        return;
    }
    /* One request alone: what each of the concurrent ones costs. */
    int64_t t0 = weft_now();
    args[0] = j;
    args[1] = (void *)(intptr_t)-1;
    client(args);
    j->single = (double)(weft_now() - t0) / 1e9;

    t0 = weft_now();
    for (int i = 0; i < j->fibers; i++) {
        args[2 * i] = j;
        args[2 * i + 1] = (void *)(intptr_t)i;
        if (weft_spawn(&f[i], NULL, client, &args[2 * i]) < 0) {
            f[i] = NULL;
            j->failures++;
        }
    }
    for (int i = 0; i < j->fibers; i++)
        if (f[i])
            weft_join(f[i], NULL, WEFT_FOREVER);
    j->total = (double)(weft_now() - t0) / 1e9;
    free(args);
    free(f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [FIBERS [SECONDS [MAX_TOTAL]]]\n", argv[0]);
        return 2;
    }
    struct job j = { .port = atoi(argv[1]), .fibers = 1000, .seconds = "0.5" };
    if (argc > 2)
        j.fibers = atoi(argv[2]);
    if (argc > 3)
        j.seconds = argv[3];
    if (argc > 4)
        j.max_total = atof(argv[4]);
    if (j.port <= 0 || j.fibers <= 0) {
        fprintf(stderr, "%s: bad PORT or FIBERS\n", argv[0]);
        return 2;
    }
    /* A descriptor per fiber. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int r = weft_run(NULL, fanout, &j);   /* one worker thread */
    if (r < 0) {
        fprintf(stderr, "weft_run: %s\n", weft_strerror(r));
        return 1;
    }
    double seq = atof(j.seconds) * j.fibers;
    printf("one BLPOP %ss alone: %.3f s\n", j.seconds, j.single);
    printf("%d fibers on one worker, each BLPOP %ss through plain hiredis: "
           "%.3f s in all (%.1fx one request; one after another: ~%.0f s)\n",
           j.fibers, j.seconds, j.total, j.single > 0 ? j.total / j.single : 0.0, seq);
    if (j.failures) {
        fprintf(stderr, "%d requests failed\n", j.failures);
        return 1;
    }
    if (j.max_total > 0 && j.total > j.max_total) {
        fprintf(stderr, "too slow: %.3f s > %.3f s: the requests did not overlap\n",
                j.total, j.max_total);
        return 1;
    }
    return 0;
}
