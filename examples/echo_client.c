/* echo_client.c - load and self-check for an echo server.
 *
 *   echo_client [-c CONNS] [-n MSGS] [-s MAXSIZE] [-t TIMEOUT_MS] [HOST:PORT]
 *
 * Opens CONNS connections (default 100) at once, each a fiber that sends
 * MSGS messages (default 1000) of random length 1..MAXSIZE (default 4096,
 * at most 65536) and random content, reads the echo back and compares it
 * byte for byte. Prints throughput and round-trip latency percentiles.
 * Exits 0 only if every byte of every echo matched; 1 on any mismatch,
 * error or timeout (TIMEOUT_MS per message, default 5000); 2 on bad usage.
 */
#define _POSIX_C_SOURCE 200809L /* getopt, sigset_t, getrlimit */
#include <weft.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_MSG 65536   /* one message fits the socket buffers both ways */

static const char *target = "127.0.0.1:7007";
static int nconns = 100, nmsgs = 1000, maxsize = 4096, timeout_ms = 5000;
static int64_t *lat;            /* nconns * nmsgs round trips, ns */
static long failures;
static uint64_t bytes;

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *client(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned char *out = malloc(MAX_MSG), *in = malloc(MAX_MSG);
    uint64_t rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(id + 1);
    int fd = weft_tcp_connect(target, weft_deadline_ms(timeout_ms));
    if (fd < 0) {
        fprintf(stderr, "echo_client: conn %d: connect %s: %s\n", id, target, weft_strerror(fd));
        failures++;
        goto out;
    }
    for (int i = 0; i < nmsgs; i++) {
        size_t len = 1 + (size_t)(xorshift(&rng) % (uint64_t)maxsize);
        for (size_t k = 0; k < len; k++)
            out[k] = (unsigned char)xorshift(&rng);
        int64_t t0 = weft_now(), deadline = weft_deadline_ms(timeout_ms);
        ssize_t w = weft_write_all(fd, out, len, deadline);
        ssize_t r = w < 0 ? w : weft_read_full(fd, in, len, deadline);
        if (r != (ssize_t)len) {
            fprintf(stderr, "echo_client: conn %d msg %d: %s\n", id, i,
                    r < 0 ? weft_strerror((int)r) : "connection closed early");
            failures++;
            break;
        }
        if (memcmp(out, in, len) != 0) {
            size_t k = 0;
            while (out[k] == in[k])
                k++;
            fprintf(stderr, "echo_client: conn %d msg %d: byte %zu of %zu differs\n",
                    id, i, k, len);
            failures++;
            break;
        }
        lat[(size_t)id * (size_t)nmsgs + (size_t)i] = weft_now() - t0;
        bytes += len;
    }
    weft_close(fd);
out:
    free(out);
    free(in);
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void run(void *unused)
{
    (void)unused;
    weft_fiber **f = calloc((size_t)nconns, sizeof *f);
    int64_t t0 = weft_now();
    for (int i = 0; i < nconns; i++) {
        int err = weft_spawn(&f[i], NULL, client, (void *)(intptr_t)i);
        if (err) {
            fprintf(stderr, "echo_client: spawn: %s\n", weft_strerror(err));
            failures++;
            f[i] = NULL;
        }
    }
    for (int i = 0; i < nconns; i++)
        if (f[i])
            weft_join(f[i], NULL, WEFT_FOREVER);
    double secs = (double)(weft_now() - t0) / 1e9;
    free(f);

    size_t n = 0, total = (size_t)nconns * (size_t)nmsgs;
    for (size_t i = 0; i < total; i++)
        if (lat[i] > 0)
            lat[n++] = lat[i];
    qsort(lat, n, sizeof *lat, cmp64);
#define PCT(p) (n ? (double)lat[(size_t)((double)(n - 1) * (p))] / 1000.0 : 0.0)
    printf("echo_client: %d conns, %zu/%zu messages, %.1f MB in %.2f s: %.0f msg/s, %.1f MB/s\n",
           nconns, n, total, (double)bytes / 1e6, secs, (double)n / secs,
           (double)bytes / 1e6 / secs);
    printf("echo_client: latency us: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n",
           PCT(0.50), PCT(0.90), PCT(0.99), PCT(1.0));
    printf("echo_client: %s\n", failures ? "FAILED" : "all echoes verified");
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "c:n:s:t:h")) != -1) {
        switch (opt) {
        case 'c': nconns = atoi(optarg); break;
        case 'n': nmsgs = atoi(optarg); break;
        case 's': maxsize = atoi(optarg); break;
        case 't': timeout_ms = atoi(optarg); break;
        default: goto usage;
        }
    }
    if (optind < argc)
        target = argv[optind];
    if (nconns < 1 || nmsgs < 1 || maxsize < 1 || maxsize > MAX_MSG || timeout_ms < 1 ||
        (double)nconns * nmsgs > 1e8)
        goto usage;
    lat = calloc((size_t)nconns * (size_t)nmsgs, sizeof *lat);
    if (!lat) {
        fprintf(stderr, "echo_client: out of memory\n");
        return 1;
    }
    int r = weft_run(NULL, run, NULL);
    free(lat);
    if (r < 0) {
        fprintf(stderr, "echo_client: weft_run: %s\n", weft_strerror(r));
        return 1;
    }
    return failures ? 1 : 0;
usage:
    fprintf(stderr, "usage: %s [-c CONNS] [-n MSGS] [-s MAXSIZE<=65536] [-t TIMEOUT_MS] "
                    "[HOST:PORT]\n", argv[0]);
    return 2;
}
