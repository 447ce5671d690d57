/* soak_client.c - the abusive and the well-behaved clients of the soak
 * test (tests/soak.sh), all as fibers of one weft runtime.
 *
 *   soak_client [-d SECONDS] [-g GOOD] [-S STORM] HOST:PORT
 *
 * For SECONDS (default 60), against an echo server:
 *   - GOOD (default 8) well-behaved clients send messages of 1..16384
 *     random bytes and verify each echo byte for byte, reconnecting now
 *     and then; any mismatch, short echo or error on an established
 *     connection is a verification error;
 *   - resetters send half a message and close with SO_LINGER 0 (RST);
 *   - slowloris clients send ~1 MiB without ever reading, hold the stuck
 *     connection a few seconds, then drop it;
 *   - half-open clients send a few bytes, shut their write side and go
 *     silent, then close later;
 *   - a storm every few seconds opens STORM (default 400) connections at
 *     once, more than the server's descriptor limit in the soak, holds
 *     them a second and closes them.
 * Prints a summary line; exits 0 when the good clients saw no
 * verification error and made progress, 1 otherwise.
 */
#define _GNU_SOURCE
#include <weft.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *target;
static int64_t end_at;
static int n_good = 8, storm = 400;
static unsigned long verified_msgs, verified_bytes, verify_errors, connect_retries;
static unsigned long resets, slowloris, halfopen, storm_conns, storm_refused;

static int running(void) { return weft_now() < end_at && !weft_cancelled(); }

static uint32_t rnd(uint32_t *s) { *s ^= *s << 13; *s ^= *s >> 17; *s ^= *s << 5; return *s; }

/* Connects, retrying while the server is out of descriptors or its
 * backlog is full (storms make that normal, not an error). */
static int connect_retry(void)
{
    while (running()) {
        int fd = weft_tcp_connect(target, weft_deadline_ms(5000));
        if (fd >= 0)
            return fd;
        connect_retries++;
        weft_sleep_ms(50);
    }
    return -1;
}

static void *good(void *arg)
{
    uint32_t seed = (uint32_t)(uintptr_t)arg * 2654435761u + 1;
    /* Per fiber: the fibers of this thread interleave at every wait. */
    enum { MAX = 16384 };
    char *out = malloc(MAX), *in = malloc(MAX);
    if (!out || !in)
        abort();
    while (running()) {
        int fd = connect_retry();
        if (fd < 0)
            break;
        int msgs = 20 + (int)(rnd(&seed) % 200);
        for (int m = 0; m < msgs && running(); m++) {
            size_t len = 1 + rnd(&seed) % MAX;
            for (size_t i = 0; i < len; i++)
                out[i] = (char)rnd(&seed);
            if (weft_write_all(fd, out, len, weft_deadline_ms(10000)) != (ssize_t)len ||
                weft_read_full(fd, in, len, weft_deadline_ms(10000)) != (ssize_t)len ||
                memcmp(out, in, len) != 0) {
                if (!weft_cancelled()) {
                    verify_errors++;
                    fprintf(stderr, "soak_client: good client %u: echo of %zu bytes failed\n",
                            (unsigned)(uintptr_t)arg, len);
                }
                break;
            }
            verified_msgs++;
            verified_bytes += len;
        }
        weft_close(fd);
    }
    free(out);
    free(in);
    return NULL;
}

static void *resetter(void *arg)
{
    (void)arg;
    char buf[4096];
    memset(buf, 'r', sizeof buf);
    while (running()) {
        int fd = weft_tcp_connect(target, weft_deadline_ms(2000));
        if (fd < 0) {
            weft_sleep_ms(20);
            continue;
        }
        weft_write(fd, buf, sizeof buf, weft_deadline_ms(100));
        weft_sleep_ms(2);
        struct linger lg = { 1, 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        weft_close(fd);             /* RST, with unread echo on the server side */
        resets++;
        weft_sleep_ms(5);
    }
    return NULL;
}

static void *slow(void *arg)
{
    (void)arg;
    static char buf[65536];
    while (running()) {
        int fd = weft_tcp_connect(target, weft_deadline_ms(2000));
        if (fd < 0) {
            weft_sleep_ms(50);
            continue;
        }
        /* Write until both directions' buffers are full: the server's
         * echo fiber is then stuck in write_all on this connection. */
        for (int i = 0; i < 16 && running(); i++)
            if (weft_write(fd, buf, sizeof buf, weft_deadline_ms(200)) < 0)
                break;
        weft_sleep_ms(2000);
        weft_close(fd);
        slowloris++;
    }
    return NULL;
}

static void *half(void *arg)
{
    (void)arg;
    while (running()) {
        int fd = weft_tcp_connect(target, weft_deadline_ms(2000));
        if (fd < 0) {
            weft_sleep_ms(50);
            continue;
        }
        weft_write(fd, "half", 4, weft_deadline_ms(100));
        weft_shutdown(fd, SHUT_WR);
        weft_sleep_ms(1500);
        weft_close(fd);
        halfopen++;
    }
    return NULL;
}

static void *storm_fiber(void *arg)
{
    (void)arg;
    int *fds = calloc((size_t)storm, sizeof *fds);
    if (!fds)
        return NULL;
    weft_sleep_ms(1000);
    while (running()) {
        int n = 0;
        for (int i = 0; i < storm; i++) {
            /* Short deadline: beyond the server's limit, the backlog fills
             * and further handshakes stall. */
            int fd = weft_tcp_connect(target, weft_deadline_ms(200));
            if (fd < 0) {
                storm_refused++;
                continue;
            }
            fds[n++] = fd;
        }
        storm_conns += (unsigned long)n;
        weft_sleep_ms(1000);
        while (n > 0)
            weft_close(fds[--n]);
        weft_sleep_ms(3000);
    }
    free(fds);
    return NULL;
}

struct opts { int seconds; };

static void main_fiber(void *arg)
{
    struct opts *o = arg;
    end_at = weft_now() + (int64_t)o->seconds * 1000000000;
    weft_fiber *fs[64];
    int n = 0;
    for (int i = 0; i < n_good && n < 40; i++)
        weft_spawn(&fs[n++], NULL, good, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < 4; i++)
        weft_spawn(&fs[n++], NULL, resetter, NULL);
    for (int i = 0; i < 8; i++)
        weft_spawn(&fs[n++], NULL, slow, NULL);
    for (int i = 0; i < 8; i++)
        weft_spawn(&fs[n++], NULL, half, NULL);
    weft_spawn(&fs[n++], NULL, storm_fiber, NULL);
    /* Stragglers (a good client mid-message when time is up) get 15 s. */
    for (int i = 0; i < n; i++)
        if (weft_join(fs[i], NULL, end_at + 15000000000) == -ETIMEDOUT) {
            weft_cancel(fs[i]);
            weft_join(fs[i], NULL, WEFT_FOREVER);
        }
}

int main(int argc, char **argv)
{
    struct opts o = { 60 };
    int opt;
    while ((opt = getopt(argc, argv, "d:g:S:")) != -1) {
        switch (opt) {
        case 'd': o.seconds = atoi(optarg); break;
        case 'g': n_good = atoi(optarg); break;
        case 'S': storm = atoi(optarg); break;
        default: goto usage;
        }
    }
    if (optind != argc - 1)
        goto usage;
    target = argv[optind];
    /* The storm needs more descriptors than the server has. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int r = weft_run(NULL, main_fiber, &o);
    if (r) {
        fprintf(stderr, "soak_client: weft_run: %s\n", weft_strerror(r));
        return 1;
    }
    printf("soak_client: %ds, good clients %d: %lu messages / %lu bytes verified, "
           "%lu verification errors, %lu connect retries; resets %lu, slowloris %lu, "
           "half-open %lu, storm connections %lu (%lu refused or timed out)\n",
           o.seconds, n_good, verified_msgs, verified_bytes, verify_errors, connect_retries,
           resets, slowloris, halfopen, storm_conns, storm_refused);
    return verify_errors == 0 && verified_msgs > 0 ? 0 : 1;
usage:
    fprintf(stderr, "usage: %s [-d SECONDS] [-g GOOD] [-S STORM] HOST:PORT\n", argv[0]);
    return 2;
}
