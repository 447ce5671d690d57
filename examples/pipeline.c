/* pipeline.c - a producer / workers / collector pipeline over channels,
 * with an overall deadline and a clean shutdown either way.
 *
 *   producer --jobs--> N workers --results--> collector
 *
 * Normal end: the producer closes `jobs` when it has sent everything; each
 * worker sees -EPIPE once the buffered jobs are drained and returns; the
 * last worker out (a wait group counts them) closes `results`; the
 * collector drains it and reports. Deadline: main waits for the whole
 * group until the deadline, then cancels it: every blocking call in every
 * stage returns -ECANCELED, the stages unwind the same way, and main
 * reports how far it got. Nothing is leaked on either path.
 *
 * usage: pipeline [ITEMS=100000] [WORKERS=4] [DEADLINE_MS=2000] [WORK_US=0]
 *   WORK_US > 0 makes each job sleep that long, to see the deadline bite:
 *   pipeline 100000 4 500 100
 * Exit status: 0 when every item came through, 2 when the deadline cut the
 * run short (after a clean shutdown), 1 on errors.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

struct job { int64_t id, x; };
struct result { int64_t id, y; };

struct pipeline {
    weft_chan *jobs, *results;
    weft_wg workers_left;
    int64_t items, work_us;
    int64_t produced, consumed, sum;
};

static void *producer(void *p)
{
    struct pipeline *pl = p;
    for (int64_t i = 0; i < pl->items; i++) {
        struct job j = { i, i };
        if (weft_chan_send(pl->jobs, &j, WEFT_FOREVER) < 0)
            break;                          /* cancelled */
        pl->produced++;
    }
    weft_chan_close(pl->jobs);              /* workers drain, then see -EPIPE */
    return NULL;
}

static void *worker(void *p)
{
    struct pipeline *pl = p;
    struct job j;
    while (weft_chan_recv(pl->jobs, &j, WEFT_FOREVER) == 0) {
        if (pl->work_us > 0 && weft_sleep_until(weft_now() + pl->work_us * 1000) < 0)
            break;                          /* cancelled */
        struct result r = { j.id, j.x * j.x };
        if (weft_chan_send(pl->results, &r, WEFT_FOREVER) < 0)
            break;
    }
    weft_wg_done(&pl->workers_left);
    /* The last worker out closes the results: nothing more will come. */
    if (weft_wg_wait(&pl->workers_left, weft_now() - 1) == 0)
        weft_chan_close(pl->results);
    return NULL;
}

static void *collector(void *p)
{
    struct pipeline *pl = p;
    struct result r;
    while (weft_chan_recv(pl->results, &r, WEFT_FOREVER) == 0) {
        pl->consumed++;
        pl->sum += r.y;
    }
    return NULL;
}

struct args { int64_t items, workers, deadline_ms, work_us; int status; };

static void run(void *p)
{
    struct args *a = p;
    struct pipeline pl = { .items = a->items, .work_us = a->work_us };
    weft_group *g = NULL;
    int r;
    if ((r = weft_chan_open(&pl.jobs, sizeof(struct job), 64)) ||
        (r = weft_chan_open(&pl.results, sizeof(struct result), 64)) ||
        (r = weft_wg_init(&pl.workers_left)) || (r = weft_wg_add(&pl.workers_left, a->workers)) ||
        (r = weft_group_open(&g))) {
        fprintf(stderr, "setup: %s\n", weft_strerror(r));
        a->status = 1;
        goto out;
    }
    int64_t t0 = weft_now(), deadline = weft_deadline_ms(a->deadline_ms);
    if ((r = weft_group_spawn(g, NULL, producer, &pl)) || (r = weft_group_spawn(g, NULL, collector, &pl))) {
        fprintf(stderr, "spawn: %s\n", weft_strerror(r));
        a->status = 1;
        weft_group_cancel(g);
    }
    for (int64_t i = 0; i < a->workers && !r; i++)
        if ((r = weft_group_spawn(g, NULL, worker, &pl))) {
            fprintf(stderr, "spawn: %s\n", weft_strerror(r));
            a->status = 1;
            weft_group_cancel(g);
        }
    r = weft_group_wait(g, deadline);
    if (r == -ETIMEDOUT) {
        printf("deadline of %" PRId64 " ms reached: cancelling the pipeline\n", a->deadline_ms);
        weft_group_cancel(g);
        r = weft_group_wait(g, WEFT_FOREVER);
        a->status = 2;
    }
    double ms = (double)(weft_now() - t0) / 1e6;
    printf("%s: produced %" PRId64 ", collected %" PRId64 " of %" PRId64 " in %.1f ms "
           "(%.0f items/s), sum of squares %" PRId64 "\n",
           a->status == 2 ? "partial" : "done", pl.produced, pl.consumed, a->items, ms,
           ms > 0 ? (double)pl.consumed / ms * 1e3 : 0.0, pl.sum);
    if (a->status == 0 && pl.consumed != a->items) {
        fprintf(stderr, "lost items: %" PRId64 " of %" PRId64 "\n", pl.consumed, a->items);
        a->status = 1;
    }
out:
    weft_group_free(g);
    weft_chan_free(pl.jobs);
    weft_chan_free(pl.results);
}

int main(int argc, char **argv)
{
    struct args a = {
        .items = argc > 1 ? atoll(argv[1]) : 100000,
        .workers = argc > 2 ? atoll(argv[2]) : 4,
        .deadline_ms = argc > 3 ? atoll(argv[3]) : 2000,
        .work_us = argc > 4 ? atoll(argv[4]) : 0,
    };
    if (a.items < 0 || a.workers < 1 || a.workers > 100000 || a.deadline_ms < 0) {
        fprintf(stderr, "usage: %s [ITEMS] [WORKERS>=1] [DEADLINE_MS] [WORK_US]\n", argv[0]);
        return 2;
    }
    int r = weft_run(NULL, run, &a);
    if (r) {
        fprintf(stderr, "weft_run: %s\n", weft_strerror(r));
        return 1;
    }
    return a.status;
}
