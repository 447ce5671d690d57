/* bench_chan.c - channel ping-pong, ns per message.
 *
 * Two fibers bounce a long back and forth over two channels (ping, pong),
 * exactly like the peers' "channel handoff" in ../shared/bench: Go with two
 * unbuffered channels, Boost.Fiber with two buffered_channel<long>(2). One
 * round trip is two messages; the figure is elapsed time / messages, the
 * same as the peers' ns_per_switch. Variants:
 *   rendezvous  capacity 0 (compare with Go)
 *   buffered    capacity 2 (compare with Boost.Fiber buffered_channel)
 *   select      rendezvous, but the replying side receives through a
 *               two-clause weft_select (ping or a never-ready quit channel)
 * Each variant runs REPS times, interleaved; one RESULT line per variant
 * gives the median.
 *
 * usage: bench_chan [N messages, default 10000000] [REPS, default 5]
 */
#define _GNU_SOURCE
#include "bench_util.h"

#include <stdint.h>
#include <weft.h>

enum { V_RENDEZVOUS, V_BUFFERED, V_SELECT, V_COUNT };
static const char *const names[V_COUNT] = { "rendezvous", "buffered", "select" };

struct pp {
    weft_chan *ping, *pong, *quit;
    long rounds;
    int variant;
    int failed;
};

static void *client(void *p)
{
    struct pp *s = p;
    long v = 0;
    for (long i = 0; i < s->rounds; i++) {
        v = i;
        if (weft_chan_send(s->ping, &v, WEFT_FOREVER) || weft_chan_recv(s->pong, &v, WEFT_FOREVER)) {
            s->failed = 1;
            break;
        }
    }
    return NULL;
}

static void *server(void *p)
{
    struct pp *s = p;
    long v, dummy;
    weft_clause cl[2] = { { s->ping, WEFT_RECV, &v, 0 }, { s->quit, WEFT_RECV, &dummy, 0 } };
    for (long i = 0; i < s->rounds; i++) {
        int r;
        if (s->variant == V_SELECT)
            r = weft_select(cl, 2, WEFT_FOREVER) == 0 ? cl[0].result : -1;
        else
            r = weft_chan_recv(s->ping, &v, WEFT_FOREVER);
        if (r || weft_chan_send(s->pong, &v, WEFT_FOREVER)) {
            s->failed = 1;
            break;
        }
    }
    return NULL;
}

struct run { long n; int variant; double ns_per_msg; int err; };

static void bench_main(void *p)
{
    struct run *run = p;
    struct pp s = { .rounds = run->n / 2, .variant = run->variant };
    size_t cap = run->variant == V_BUFFERED ? 2 : 0;
    if (weft_chan_open(&s.ping, sizeof(long), cap) || weft_chan_open(&s.pong, sizeof(long), cap) ||
        weft_chan_open(&s.quit, sizeof(long), 0)) {
        run->err = 1;
        return;
    }
    weft_fiber *a, *b;
    double t0 = now_s();
    weft_spawn(&b, NULL, server, &s);
    weft_spawn(&a, NULL, client, &s);
    weft_join(a, NULL, WEFT_FOREVER);
    weft_join(b, NULL, WEFT_FOREVER);
    double t1 = now_s();
    run->ns_per_msg = (t1 - t0) * 1e9 / (double)(s.rounds * 2);
    run->err = s.failed;
    weft_chan_free(s.ping);
    weft_chan_free(s.pong);
    weft_chan_free(s.quit);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10000000;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    if (n < 2 || reps < 1 || reps > 100) {
        fprintf(stderr, "usage: %s [N messages >= 2] [REPS 1..100]\n", argv[0]);
        return 2;
    }
    double v[V_COUNT][100];
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < V_COUNT; k++) {
            struct run run = { .n = n, .variant = k };
            int e = weft_run(NULL, bench_main, &run);
            if (e || run.err) {
                fprintf(stderr, "%s: run failed: %s\n", names[k], e ? weft_strerror(e) : "channel error");
                return 1;
            }
            v[k][r] = run.ns_per_msg;
            fprintf(stderr, "rep %d %-10s %.2f ns/msg\n", r + 1, names[k], run.ns_per_msg);
        }
    for (int k = 0; k < V_COUNT; k++)
        printf("RESULT peer=weft variant=%s test=chan_pingpong n=%ld reps=%d ns_per_msg=%.2f\n",
               names[k], n, reps, median(v[k], reps));
    return 0;
}
