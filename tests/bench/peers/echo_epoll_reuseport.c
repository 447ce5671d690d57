/* echo_epoll_reuseport.c - the hand-written epoll echo server as several
 * processes: the multi-core baseline for weft's echo server with several
 * workers (tests/bench/echo_mt.sh).
 *
 * usage: echo_epoll_reuseport PORT [PROCS]    (PROCS default 2)
 *
 * Each process binds 127.0.0.1:PORT with SO_REUSEPORT, so the kernel
 * spreads connections across them, and runs a single-threaded
 * edge-triggered loop: read, write back, and take a short read as
 * "drained" (on Linux every new TCP segment re-signals an EPOLLET socket),
 * the same shortcut as ../shared/bench's echo_epoll in its default mode.
 * Output the socket cannot take is kept per connection and reading pauses
 * until it drains. The parent waits for its children and takes them down
 * with it on SIGINT or SIGTERM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUFSZ 16384

struct conn {
    int fd;
    char *out;              /* bytes the socket did not take yet */
    size_t len, off, cap;
};

static char buf[BUFSZ];

static void drop(struct conn *c)
{
    close(c->fd);
    free(c->out);
    free(c);
}

/* Sends what is pending; -1 when the connection must go. */
static int flush(struct conn *c)
{
    while (c->off < c->len) {
        ssize_t w = write(c->fd, c->out + c->off, c->len - c->off);
        if (w > 0)
            c->off += (size_t)w;
        else if (w < 0 && errno == EINTR)
            continue;
        else
            return w < 0 && errno == EAGAIN ? 0 : -1;
    }
    c->off = c->len = 0;
    return 0;
}

static int keep(struct conn *c, const char *p, size_t n)
{
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : BUFSZ;
        while (cap < c->len + n)
            cap *= 2;
        char *nb = realloc(c->out, cap);
        if (!nb)
            return -1;
        c->out = nb;
        c->cap = cap;
    }
    memcpy(c->out + c->len, p, n);
    c->len += n;
    return 0;
}

/* Echoes until drained, or until output backs up; -1 to close. */
static int serve(struct conn *c)
{
    while (!c->len) {
        ssize_t n = read(c->fd, buf, BUFSZ);
        if (n == 0)
            return -1;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        ssize_t w = write(c->fd, buf, (size_t)n);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        size_t sent = w > 0 ? (size_t)w : 0;
        if (sent < (size_t)n && keep(c, buf + sent, (size_t)n - sent) != 0)
            return -1;
        if ((size_t)n < BUFSZ)
            return 0;       /* a short read: the socket is drained */
    }
    return 0;
}

static int run(int port)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4096)) {
        perror("bind/listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    struct conn *nc = calloc(1, sizeof *nc);
                    if (!nc) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    struct epoll_event ce = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                              .data.ptr = nc };
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                    if (serve(nc) < 0)
                        drop(nc);
                }
                continue;
            }
            uint32_t e = evs[i].events;
            int bad = (e & (EPOLLERR | EPOLLHUP)) != 0;
            if (!bad && (e & EPOLLOUT) && c->len)
                bad = flush(c) < 0;
            if (!bad && (e & (EPOLLIN | EPOLLRDHUP)))
                bad = serve(c) < 0;
            if (bad)
                drop(c);
        }
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int procs = argc > 2 ? atoi(argv[2]) : 2;
    if (port <= 0 || procs <= 0) {
        fprintf(stderr, "usage: %s PORT [PROCS]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Blocked before the forks: the children unblock it, the parent waits
     * for it and passes it on. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    pid_t kids[64];
    if (procs > 64)
        procs = 64;
    for (int i = 0; i < procs; i++) {
        pid_t p = fork();
        if (p == 0) {
            sigprocmask(SIG_UNBLOCK, &set, NULL);
            prctl(PR_SET_PDEATHSIG, SIGTERM);   /* no orphans if the parent dies */
            return run(port);
        }
        if (p < 0) {
            perror("fork");
            return 1;
        }
        kids[i] = p;
    }
    int sig;
    sigwait(&set, &sig);
    for (int i = 0; i < procs; i++)
        kill(kids[i], SIGTERM);
    while (wait(NULL) > 0)
        ;
    return 0;
}
