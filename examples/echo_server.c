/* echo_server.c - a TCP echo server with one fiber per connection.
 *
 *   echo_server [-w WORKERS] [-g GRACE_MS] [-q] [HOST:PORT]
 *
 * Listens on HOST:PORT (default 127.0.0.1:7007; "[::1]:7007" for IPv6,
 * port 0 for any free port) and prints where. SIGINT or SIGTERM stops it
 * gracefully (weft_config.shutdown_on_signals turns them into
 * weft_rt_shutdown()): the listener is closed, so no new connection is
 * accepted; open connections get GRACE_MS (default 5000) to finish; then
 * the ones left are cancelled and waited for. -w is passed to
 * weft_config.workers (0: one per online CPU).
 *
 * The part worth reading is serve(): read, write back, repeat. Each call
 * parks only this connection's fiber while the socket is not ready.
 */
#define _POSIX_C_SOURCE 200809L /* getopt, getrlimit */
#include <weft.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const char *listen_on = "127.0.0.1:7007";
static int64_t grace_ms = 5000;
static int quiet;

/* The open connections' fibers, indexed by descriptor, so a late shutdown
 * can cancel them; and how many there are. A slot may keep the handle of
 * a fiber that has ended: weft_cancel() then says -ESRCH, nothing more. */
static _Atomic(weft_fiber *) *conn_fiber;
static size_t max_fds;
static weft_wg conns_wg;

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[16384];
    for (;;) {
        ssize_t n = weft_read(fd, buf, sizeof buf, WEFT_FOREVER);
        if (n <= 0)
            break;              /* end of file, an error, or cancelled */
        if (weft_write_all(fd, buf, (size_t)n, WEFT_FOREVER) < 0)
            break;
    }
    conn_fiber[fd] = NULL;
    weft_close(fd);
    weft_wg_done(&conns_wg);
    return NULL;
}

static void *accept_loop(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = weft_accept(lfd, NULL, NULL, WEFT_FOREVER);
        if (fd == -EBADF || fd == -ECANCELED)
            return NULL;        /* the listener was closed: shutting down */
        if (fd < 0) {
            fprintf(stderr, "echo_server: accept: %s\n", weft_strerror(fd));
            weft_sleep_ms(10);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        weft_fiber *f;
        weft_wg_add(&conns_wg, 1);
        int err = (size_t)fd < max_fds ? weft_spawn(&f, NULL, serve, (void *)(intptr_t)fd)
                                       : -EMFILE;
        if (err) {
            fprintf(stderr, "echo_server: spawn: %s\n", weft_strerror(err));
            weft_wg_done(&conns_wg);
            weft_close(fd);
            continue;
        }
        conn_fiber[fd] = f;     /* serve() has not run yet: it runs when we park */
        weft_detach(f);
    }
}

static void server(void *unused)
{
    (void)unused;
    weft_wg_init(&conns_wg);
    struct rlimit rl;
    max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (1u << 22)
                  ? (size_t)rl.rlim_cur : (size_t)1 << 22;
    conn_fiber = calloc(max_fds, sizeof *conn_fiber);
    if (!conn_fiber) {
        fprintf(stderr, "echo_server: out of memory\n");
        exit(1);
    }

    int lfd = weft_tcp_listen(listen_on, 1024);
    if (lfd < 0) {
        fprintf(stderr, "echo_server: listen on %s: %s\n", listen_on, weft_strerror(lfd));
        exit(1);
    }
    char where[128];
    weft_local_addr(lfd, where, sizeof where);
    printf("echo_server: listening on %s\n", where);
    fflush(stdout);

    weft_fiber *acceptor;
    weft_spawn(&acceptor, NULL, accept_loop, (void *)(intptr_t)lfd);

    /* The graceful pattern (docs/guide.md, "Shutting down"): wait until
     * shutdown is asked (SIGINT, SIGTERM, or weft_rt_shutdown() from
     * anywhere), stop accepting, give the work in flight a deadline, then
     * cancel what is left. */
    weft_rt_shutdown_wait(WEFT_FOREVER);
    if (!quiet)
        fprintf(stderr, "echo_server: shutting down\n");

    weft_close(lfd);            /* wakes the acceptor with -EBADF */
    weft_join(acceptor, NULL, WEFT_FOREVER);

    if (weft_wg_wait(&conns_wg, weft_deadline_ms(grace_ms)) == -ETIMEDOUT) {
        int n = 0;
        for (size_t fd = 0; fd < max_fds; fd++) {
            weft_fiber *f = conn_fiber[fd];
            if (f && weft_cancel(f) == 0)
                n++;
        }
        if (!quiet)
            fprintf(stderr, "echo_server: cancelled %d connection(s) after %lld ms\n", n,
                    (long long)grace_ms);
        weft_wg_wait(&conns_wg, WEFT_FOREVER);
    }
    free(conn_fiber);
    if (!quiet)
        fprintf(stderr, "echo_server: stopped\n");
}

int main(int argc, char **argv)
{
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.shutdown_on_signals = 1;    /* SIGINT, SIGTERM: weft_rt_shutdown() */
    int opt;
    while ((opt = getopt(argc, argv, "w:g:qh")) != -1) {
        switch (opt) {
        case 'w': cfg.workers = atoi(optarg); break;
        case 'g': grace_ms = atoll(optarg); break;
        case 'q': quiet = 1; break;
        default:
            fprintf(stderr, "usage: %s [-w WORKERS] [-g GRACE_MS] [-q] [HOST:PORT]\n", argv[0]);
            return 2;
        }
    }
    if (optind < argc)
        listen_on = argv[optind];
    int r = weft_run(&cfg, server, NULL);
    if (r < 0) {
        fprintf(stderr, "echo_server: weft_run: %s\n", weft_strerror(r));
        return 1;
    }
    return 0;
}
