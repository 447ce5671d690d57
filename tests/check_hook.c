/* check_hook.c - tests of libweft_hook (src/unix/hook.c): each hooked libc call
 * inside and outside fibers, on blocking and user-non-blocking descriptors,
 * with SO_RCVTIMEO/SO_SNDTIMEO deadlines, cancellation and close.
 *
 * The executable is linked with libweft_hook.so ahead of libc, so every
 * plain read(), poll(), sleep() ... below goes through the hook, exactly
 * as in a program linked with -lweft_hook. Concurrency is proven the same
 * way everywhere: two fibers on one worker, one parked in a plain libc call
 * while the other makes progress; a hook that blocked the worker would
 * deadlock (Check's timeout) or blow the time bounds.
 *
 * Runs under both reactor backends (WEFT_REACTOR=poll is a second CTest
 * entry). Time bounds are loose (>= the timeout, < 1 s over it).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL

/* The open file's real flags, past the hook's user view. */
static int raw_getfl(int fd) { return (int)syscall(SYS_fcntl, fd, F_GETFL, 0); }

static void pair(int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

static weft_fiber *go(weft_fn fn, void *arg)
{
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, NULL, fn, arg), 0);
    return f;
}

static void *join(weft_fiber *f)
{
    void *res = NULL;
    ck_assert_int_eq(weft_join(f, &res, WEFT_FOREVER), 0);
    return res;
}

/* Writes "ping" to *(int *)arg after 30 ms, sleeping with usleep(). */
static void *late_writer(void *arg)
{
    int fd = *(int *)arg;
    ck_assert_int_eq(usleep(30000), 0);
    ck_assert_int_eq(write(fd, "ping", 4), 4);
    return NULL;
}

/* The bodies below are written as code for threads is: they read errno
 * after hooked calls, and also after the weft_join() calls that drive
 * them, which may move a fiber to another worker while the compiler keeps
 * errno's old address. Hooked calls return on their own thread by
 * themselves; the harness's joins need the fiber pinned (docs/hooks.md,
 * "Threads and TLS"), so every body runs pinned. */
struct pinned_body { void (*fn)(void *); void *arg; };

static void pinned(void *p)
{
    struct pinned_body *b = p;
    ck_assert_int_eq(weft_pin(1), 0);
    b->fn(b->arg);
}

static void run_legacy(const weft_config *cfg, void (*body)(void *), void *arg)
{
    struct pinned_body b = { body, arg };
    run_in_runtime(cfg, pinned, &b);
}

/* Runs body in a runtime of the given number of workers, pinned, with the
 * checks of run_in_runtime. */
static void run_workers(int workers, void (*body)(void *), void *arg)
{
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = workers;
    run_legacy(&cfg, body, arg);
}

static const int worker_counts[] = { 1, 2 };
#define FOR_WORKERS(body, arg) \
    for (size_t wi_ = 0; wi_ < sizeof worker_counts / sizeof *worker_counts; wi_++) \
        run_workers(worker_counts[wi_], body, arg)

/* ------------------------------------------------------------ outside */

START_TEST(test_outside_fibers_is_libc)
{
    int sv[2];
    pair(sv);
    char buf[16];
    ck_assert_int_eq(write(sv[0], "abc", 3), 3);
    ck_assert_int_eq(read(sv[1], buf, sizeof buf), 3);
    ck_assert_int_eq(send(sv[0], "de", 2, 0), 2);
    ck_assert_int_eq(recv(sv[1], buf, sizeof buf, 0), 2);
    struct iovec v[2] = { { "x", 1 }, { "yz", 2 } };
    ck_assert_int_eq(writev(sv[0], v, 2), 3);
    struct iovec r = { buf, sizeof buf };
    ck_assert_int_eq(readv(sv[1], &r, 1), 3);
    struct msghdr m = { .msg_iov = &r, .msg_iovlen = 1 };
    ck_assert_int_eq(sendto(sv[0], "q", 1, 0, NULL, 0), 1);
    ck_assert_int_eq(recvfrom(sv[1], buf, sizeof buf, 0, NULL, NULL), 1);
    struct msghdr wm = { .msg_iov = v, .msg_iovlen = 1 };
    ck_assert_int_eq(sendmsg(sv[0], &wm, 0), 1);
    ck_assert_int_eq(recvmsg(sv[1], &m, 0), 1);
    /* Non-blocking and errors exactly as libc. */
    ck_assert_int_eq(recv(sv[1], buf, sizeof buf, MSG_DONTWAIT), -1);
    ck_assert_int_eq(errno, EAGAIN);
    errno = 0;
    ck_assert_int_eq(read(-1, buf, 1), -1);
    ck_assert_int_eq(errno, EBADF);
    ck_assert_int_eq(close(-1), -1);
    ck_assert_int_eq(errno, EBADF);
    struct timespec bad = { 0, 1000000000 };
    ck_assert_int_eq(nanosleep(&bad, NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
    struct pollfd p = { .fd = sv[1], .events = POLLIN };
    int64_t t0 = weft_now();
    ck_assert_int_eq(poll(&p, 1, 20), 0);
    ck_assert_int_ge(weft_now() - t0, 19 * MS);
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(sv[1], &rd);
    struct timeval tv = { 0, 10000 };
    ck_assert_int_eq(select(sv[1] + 1, &rd, NULL, NULL, &tv), 0);
    ck_assert_int_eq(usleep(1000), 0);
    ck_assert_uint_eq(sleep(0), 0);
    struct addrinfo hints = { .ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    ck_assert_int_eq(getaddrinfo("127.0.0.1", "80", &hints, &res), 0);
    freeaddrinfo(res);
    ck_assert_int_eq(getaddrinfo("not a host", "80", &hints, &res), EAI_NONAME);
    /* The flags are the user's: nothing was made non-blocking. */
    ck_assert_int_eq(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
    ck_assert_int_eq(raw_getfl(sv[0]) & O_NONBLOCK, 0);
    ck_assert_int_eq(close(sv[0]), 0);
    ck_assert_int_eq(close(sv[1]), 0);
}
END_TEST

/* The hook says it is active, linked or preloaded, and WEFT_REQUIRE_HOOK=1
 * lets the program run (check_runtime shows the abort without the hook). */
static void body_nothing(void *arg) { (void)arg; }

START_TEST(test_hook_reports_itself_active)
{
    ck_assert_int_eq(weft_hook_active(), 1);
    setenv("WEFT_REQUIRE_HOOK", "1", 1);
    run_legacy(NULL, body_nothing, NULL);
    unsetenv("WEFT_REQUIRE_HOOK");
}
END_TEST

/* ------------------------------------------------------------ read/write */

struct rw { int fd; ssize_t n; int err; char buf[64]; int64_t took; };

static void *reader(void *arg)
{
    struct rw *a = arg;
    int64_t t0 = weft_now();
    errno = 0;
    a->n = read(a->fd, a->buf, sizeof a->buf);
    a->err = errno;
    a->took = weft_now() - t0;
    return NULL;
}

static void body_read_parks(void *arg)
{
    (void)arg;
    int sv[2];
    pair(sv);
    struct rw a = { .fd = sv[1] };
    weft_fiber *f = go(reader, &a);
    weft_fiber *g = go(late_writer, &sv[0]);
    join(g);
    join(f);
    ck_assert_int_eq(a.n, 4);
    ck_assert_int_ge(a.took, 25 * MS);
    /* The user still sees a blocking descriptor; the open file is not. */
    ck_assert_int_eq(fcntl(sv[1], F_GETFL) & O_NONBLOCK, 0);
    ck_assert_int_ne(raw_getfl(sv[1]) & O_NONBLOCK, 0);
    /* Blocking emulated outside fibers too: data is there, read returns. */
    ck_assert_int_eq(write(sv[0], "ok", 2), 2);
    char b[4];
    ck_assert_int_eq(read(sv[1], b, sizeof b), 2);
    ck_assert_int_eq(close(sv[0]), 0);
    ck_assert_int_eq(close(sv[1]), 0);
}

START_TEST(test_read_parks_only_its_fiber)
{
    FOR_WORKERS(body_read_parks, NULL);
}
END_TEST

/* Every read/write form, with a peer that answers late. */
struct echo { int fd; int n; };

static void *late_echo(void *arg)
{
    struct echo *e = arg;
    char buf[64];
    for (int i = 0; i < e->n; i++) {
        ck_assert_int_eq(usleep(5000), 0);
        ssize_t n = recv(e->fd, buf, sizeof buf, 0);
        ck_assert_int_gt(n, 0);
        ck_assert_int_eq(send(e->fd, buf, (size_t)n, 0), n);
    }
    return NULL;
}

static void body_all_forms(void *arg)
{
    (void)arg;
    int sv[2];
    pair(sv);
    struct echo e = { sv[1], 5 };
    weft_fiber *f = go(late_echo, &e);
    char buf[16];
    ck_assert_int_eq(write(sv[0], "a", 1), 1);
    ck_assert_int_eq(read(sv[0], buf, sizeof buf), 1);
    struct iovec v = { "bc", 2 }, r = { buf, sizeof buf };
    ck_assert_int_eq(writev(sv[0], &v, 1), 2);
    ck_assert_int_eq(readv(sv[0], &r, 1), 2);
    ck_assert_int_eq(sendto(sv[0], "def", 3, 0, NULL, 0), 3);
    ck_assert_int_eq(recvfrom(sv[0], buf, sizeof buf, 0, NULL, NULL), 3);
    struct msghdr wm = { .msg_iov = &v, .msg_iovlen = 1 };
    struct msghdr rm = { .msg_iov = &r, .msg_iovlen = 1 };
    ck_assert_int_eq(sendmsg(sv[0], &wm, 0), 2);
    ck_assert_int_eq(recvmsg(sv[0], &rm, 0), 2);
    ck_assert_int_eq(send(sv[0], "g", 1, 0), 1);
    ck_assert_int_eq(recv(sv[0], buf, sizeof buf, 0), 1);
    ck_assert_int_eq(buf[0], 'g');
    join(f);
    /* A user MSG_DONTWAIT is one try, as libc. */
    ck_assert_int_eq(recv(sv[0], buf, sizeof buf, MSG_DONTWAIT), -1);
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_eq(close(sv[0]), 0);
    ck_assert_int_eq(close(sv[1]), 0);
}

START_TEST(test_every_read_write_form)
{
    FOR_WORKERS(body_all_forms, NULL);
}
END_TEST

/* ------------------------------------------------------------ user O_NONBLOCK */

static void body_user_nonblock(void *arg)
{
    (void)arg;
    int sv[2];
    pair(sv);
    char buf[4];
    int fl = fcntl(sv[0], F_GETFL);
    ck_assert_int_eq(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK), 0);
    errno = 0;
    ck_assert_int_eq(read(sv[0], buf, sizeof buf), -1);
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_ne(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
    /* Back to blocking through fcntl: the hook parks again. */
    ck_assert_int_eq(fcntl(sv[0], F_SETFL, fl), 0);
    ck_assert_int_eq(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
    struct rw a = { .fd = sv[0] };
    weft_fiber *f = go(reader, &a);
    weft_fiber *g = go(late_writer, &sv[1]);
    join(g);
    join(f);
    ck_assert_int_eq(a.n, 4);
    /* ioctl(FIONBIO) is the other way to ask. */
    int on = 1;
    ck_assert_int_eq(ioctl(sv[0], FIONBIO, &on), 0);
    ck_assert_int_eq(recv(sv[0], buf, sizeof buf, 0), -1);
    ck_assert_int_eq(errno, EAGAIN);
    on = 0;
    ck_assert_int_eq(ioctl(sv[0], FIONBIO, &on), 0);
    ck_assert_int_eq(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
    ck_assert_int_ne(raw_getfl(sv[0]) & O_NONBLOCK, 0);
    /* A socket created non-blocking is the user's choice too. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ck_assert_int_ge(s, 0);
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int r = connect(s, (struct sockaddr *)&to, sizeof to);
    ck_assert(r == -1 && (errno == EINPROGRESS || errno == ECONNREFUSED));
    ck_assert_int_eq(close(s), 0);
    ck_assert_int_eq(close(sv[0]), 0);
    ck_assert_int_eq(close(sv[1]), 0);
}

START_TEST(test_user_nonblocking_is_honoured)
{
    run_legacy(NULL, body_user_nonblock, NULL);
}
END_TEST

/* ------------------------------------------------------------ timeouts */

static void body_timeouts(void *arg)
{
    (void)arg;
    int sv[2];
    pair(sv);
    struct timeval tv = { 0, 50000 };
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
    char buf[4096];
    int64_t t0 = weft_now();
    ck_assert_int_eq(recv(sv[0], buf, sizeof buf, 0), -1);
    ck_assert_int_eq(errno, EAGAIN);
    int64_t took = weft_now() - t0;
    ck_assert_int_ge(took, 50 * MS);
    ck_assert_int_lt(took, 1000 * MS);
    /* Fill the send buffer, then one more write times out. */
    memset(buf, 'x', sizeof buf);
    ssize_t n;
    while ((n = send(sv[0], buf, sizeof buf, MSG_DONTWAIT)) > 0)
        ;
    t0 = weft_now();
    ck_assert_int_eq(write(sv[0], buf, sizeof buf), -1);
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_ge(weft_now() - t0, 50 * MS);
    ck_assert_int_eq(close(sv[0]), 0);
    ck_assert_int_eq(close(sv[1]), 0);
}

START_TEST(test_socket_timeouts_are_deadlines)
{
    run_legacy(NULL, body_timeouts, NULL);
}
END_TEST

/* ------------------------------------------------------------ cancel, close */

static void *sleeper(void *arg)
{
    struct rw *a = arg;
    struct timespec req = { 10, 0 }, rem = { 0, 0 };
    errno = 0;
    a->n = nanosleep(&req, &rem);
    a->err = errno;
    a->took = rem.tv_sec;
    return NULL;
}

static void body_cancel(void *arg)
{
    (void)arg;
    int sv[2];
    pair(sv);
    struct rw a = { .fd = sv[0] }, s = { 0 };
    weft_fiber *f = go(reader, &a);
    weft_fiber *g = go(sleeper, &s);
    ck_assert_int_eq(weft_sleep_ms(20), 0);
    ck_assert_int_eq(weft_cancel(f), 0);
    ck_assert_int_eq(weft_cancel(g), 0);
    join(f);
    join(g);
    ck_assert_int_eq(a.n, -1);
    ck_assert_int_eq(a.err, ECANCELED);
    ck_assert_int_eq(s.n, -1);
    ck_assert_int_eq(s.err, ECANCELED);
    ck_assert_int_ge(s.took, 9);      /* rem: what was left of 10 s */
    /* close() from another fiber wakes a parked reader with EBADF. */
    struct rw b = { .fd = sv[1] };
    f = go(reader, &b);
    ck_assert_int_eq(weft_sleep_ms(20), 0);
    ck_assert_int_eq(close(sv[1]), 0);
    join(f);
    ck_assert_int_eq(b.n, -1);
    ck_assert_int_eq(b.err, EBADF);
    ck_assert_int_eq(close(sv[0]), 0);
    /* Errors as libc: a bad descriptor in a fiber. */
    char c;
    ck_assert_int_eq(read(-1, &c, 1), -1);
    ck_assert_int_eq(errno, EBADF);
    ck_assert_int_eq(close(-1), -1);
    ck_assert_int_eq(errno, EBADF);
}

START_TEST(test_cancel_and_close_while_parked)
{
    run_legacy(NULL, body_cancel, NULL);
}
END_TEST

/* ------------------------------------------------------------ accept, connect */

struct srv { int lfd; int cfd; int nonblock; int cloexec; };

static void *acceptor(void *arg)
{
    struct srv *s = arg;
    s->cfd = accept(s->lfd, NULL, NULL);
    ck_assert_int_ge(s->cfd, 0);
    s->nonblock = fcntl(s->cfd, F_GETFL) & O_NONBLOCK;
    s->cloexec = fcntl(s->cfd, F_GETFD) & FD_CLOEXEC;
    char buf[8];
    ck_assert_int_eq(read(s->cfd, buf, sizeof buf), 5);
    ck_assert_int_eq(write(s->cfd, buf, 5), 5);
    return NULL;
}

static void body_accept_connect(void *arg)
{
    (void)arg;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(lfd, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(lfd, 16), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    struct srv s = { .lfd = lfd };
    weft_fiber *f = go(acceptor, &s);
    ck_assert_int_eq(usleep(20000), 0);     /* the acceptor is parked by now */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(c, 0);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(write(c, "hello", 5), 5);
    char buf[8];
    ck_assert_int_eq(read(c, buf, sizeof buf), 5);
    join(f);
    ck_assert_int_eq(s.nonblock, 0);
    ck_assert_int_eq(s.cloexec, 0);
    ck_assert_int_eq(close(s.cfd), 0);
    ck_assert_int_eq(close(c), 0);
    /* accept4 flags are the user's. */
    c = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    int d = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ck_assert_int_ge(d, 0);
    ck_assert_int_ne(fcntl(d, F_GETFL) & O_NONBLOCK, 0);
    ck_assert_int_ne(fcntl(d, F_GETFD) & FD_CLOEXEC, 0);
    ck_assert_int_eq(read(d, buf, 1), -1);
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_eq(close(d), 0);
    ck_assert_int_eq(close(c), 0);
    ck_assert_int_eq(close(lfd), 0);
    /* Refused: errno as libc. */
    c = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&a, sizeof a), -1);
    ck_assert_int_eq(errno, ECONNREFUSED);
    ck_assert_int_eq(close(c), 0);
}

START_TEST(test_accept_and_connect)
{
    run_legacy(NULL, body_accept_connect, NULL);
}
END_TEST

/* ------------------------------------------------------------ poll, select */

static void body_poll_select(void *arg)
{
    (void)arg;
    int a[2], b[2];
    ck_assert_int_eq(pipe(a), 0);
    pair(b);
    struct pollfd p[3] = { { .fd = a[0], .events = POLLIN }, { .fd = -1 },
                           { .fd = b[0], .events = POLLIN } };
    weft_fiber *g = go(late_writer, &b[1]);
    int64_t t0 = weft_now();
    ck_assert_int_eq(poll(p, 3, 2000), 1);
    ck_assert_int_ge(weft_now() - t0, 25 * MS);
    ck_assert_int_eq(p[0].revents, 0);
    ck_assert_int_ne(p[2].revents & POLLIN, 0);
    join(g);
    char buf[8];
    ck_assert_int_eq(read(b[0], buf, sizeof buf), 4);
    /* Timeout, and a single descriptor. */
    t0 = weft_now();
    ck_assert_int_eq(poll(p, 1, 30), 0);
    ck_assert_int_ge(weft_now() - t0, 30 * MS);
    ck_assert_int_eq(poll(NULL, 0, 10), 0);
    /* select: the same through fd_sets. */
    g = go(late_writer, &a[1]);
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(a[0], &rd);
    FD_SET(b[0], &rd);
    struct timeval tv = { 2, 0 };
    int nfds = (a[0] > b[0] ? a[0] : b[0]) + 1;
    ck_assert_int_eq(select(nfds, &rd, NULL, NULL, &tv), 1);
    ck_assert(FD_ISSET(a[0], &rd));
    ck_assert(!FD_ISSET(b[0], &rd));
    ck_assert(tv.tv_sec < 2);
    join(g);
    /* A pipe is passed through (documented): data is there, read returns. */
    ck_assert_int_eq(read(a[0], buf, sizeof buf), 4);
    ck_assert_int_eq(raw_getfl(a[0]) & O_NONBLOCK, 0);
    FD_ZERO(&rd);
    FD_SET(a[0], &rd);
    tv = (struct timeval){ 0, 20000 };
    ck_assert_int_eq(select(a[0] + 1, &rd, NULL, NULL, &tv), 0);
    ck_assert_int_eq(tv.tv_usec, 0);
    int closed = a[1];
    ck_assert_int_eq(close(closed), 0);
    FD_ZERO(&rd);
    FD_SET(closed, &rd);
    tv = (struct timeval){ 1, 0 };
    ck_assert_int_eq(select(closed + 1, &rd, NULL, NULL, &tv), -1);
    ck_assert_int_eq(errno, EBADF);
    ck_assert_int_eq(close(a[0]), 0);
    ck_assert_int_eq(close(b[0]), 0);
    ck_assert_int_eq(close(b[1]), 0);
}

START_TEST(test_poll_and_select)
{
    run_legacy(NULL, body_poll_select, NULL);
}
END_TEST

/* ------------------------------------------------------------ sleep */

static void *nap(void *arg)
{
    int kind = (int)(intptr_t)arg;
    if (kind == 0) {
        ck_assert_uint_eq(sleep(1), 0);
    } else if (kind == 1) {
        ck_assert_int_eq(usleep(200000), 0);
    } else {
        struct timespec t = { 0, 200000000 };
        ck_assert_int_eq(nanosleep(&t, NULL), 0);
    }
    return NULL;
}

static void body_sleep(void *arg)
{
    (void)arg;
    weft_fiber *f[30];
    int64_t t0 = weft_now();
    for (int i = 0; i < 30; i++)
        f[i] = go(nap, (void *)(intptr_t)(i % 3));
    for (int i = 0; i < 30; i++)
        join(f[i]);
    int64_t took = weft_now() - t0;
    ck_assert_int_ge(took, 1000 * MS);
    ck_assert_int_lt(took, 1900 * MS);     /* ten 1 s sleeps at once, not 10 s */
    struct timespec bad = { -1, 0 };
    ck_assert_int_eq(nanosleep(&bad, NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
}

START_TEST(test_sleeps_park)
{
    run_legacy(NULL, body_sleep, NULL);
}
END_TEST

/* ------------------------------------------------------------ names, big fds */

static void body_names(void *arg)
{
    (void)arg;
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    ck_assert_int_eq(getaddrinfo("localhost", "6379", &hints, &res), 0);
    ck_assert_ptr_nonnull(res);
    freeaddrinfo(res);
    hints.ai_flags = AI_NUMERICHOST;
    ck_assert_int_eq(getaddrinfo("not a host", "80", &hints, &res), EAI_NONAME);
    ck_assert_int_eq(getaddrinfo(NULL, NULL, &hints, &res), EAI_NONAME);
    /* Descriptor numbers far above the usual range. */
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 20000 && rl.rlim_max >= 20000) {
        rl.rlim_cur = 20000;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur >= 20000) {
        int sv[2];
        pair(sv);
        ck_assert_int_eq(dup2(sv[1], 19000), 19000);
        ck_assert_int_eq(close(sv[1]), 0);
        int hi = 19000;
        struct rw a = { .fd = hi };
        weft_fiber *f = go(reader, &a);
        ck_assert_int_eq(usleep(10000), 0);
        ck_assert_int_eq(write(sv[0], "big", 3), 3);
        join(f);
        ck_assert_int_eq(a.n, 3);
        ck_assert_int_eq(close(hi), 0);
        ck_assert_int_eq(close(sv[0]), 0);
    }
}

START_TEST(test_getaddrinfo_and_high_fds)
{
    run_legacy(NULL, body_names, NULL);
}
END_TEST

/* A socket a fiber used (so the hook made it non-blocking underneath)
 * still blocks, with its SO_RCVTIMEO, for a caller outside any fiber. */
static void body_touch(void *arg)
{
    int *sv = arg;
    ck_assert_int_eq(write(sv[0], "x", 1), 1);
    char c;
    ck_assert_int_eq(read(sv[1], &c, 1), 1);
}

START_TEST(test_outside_after_fiber_use_still_blocks)
{
    int sv[2];
    pair(sv);
    run_legacy(NULL, body_touch, sv);
    ck_assert_int_ne(raw_getfl(sv[1]) & O_NONBLOCK, 0);
    ck_assert_int_eq(fcntl(sv[1], F_GETFL) & O_NONBLOCK, 0);
    struct timeval tv = { 0, 40000 };
    ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    char buf[4];
    int64_t t0 = weft_now();
    ck_assert_int_eq(read(sv[1], buf, sizeof buf), -1);
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_ge(weft_now() - t0, 39 * MS);
    ck_assert_int_eq(write(sv[0], "yz", 2), 2);
    ck_assert_int_eq(recv(sv[1], buf, sizeof buf, 0), 2);
    /* The user asks for non-blocking: one try, EAGAIN at once. */
    ck_assert_int_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    t0 = weft_now();
    ck_assert_int_eq(read(sv[1], buf, sizeof buf), -1);
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_lt(weft_now() - t0, 30 * MS);
    ck_assert_int_eq(close(sv[0]), 0);
    ck_assert_int_eq(close(sv[1]), 0);
}
END_TEST

/* ------------------------------------------------------ several workers */

/* Plain blocking libc calls from many fibers at once (on both workers when
 * there are two): each pair echoes messages through read()/write() on
 * sockets the user thinks blocking; the totals must match. The test reads
 * no errno after a call that may park: a fiber may resume on the other
 * thread, and errno is per thread). */
#define HK_PAIRS  32
#define HK_ROUNDS 200

struct hk { int fd; int i; _Atomic uint64_t *sent, *echoed; };

static void *hk_server(void *arg)
{
    struct hk *h = arg;
    char buf[1024];
    ssize_t n;
    while ((n = read(h->fd, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(h->fd, buf + off, (size_t)(n - off));
            ck_assert_int_gt(w, 0);
            off += w;
        }
        atomic_fetch_add(h->echoed, (uint64_t)n);
    }
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(close(h->fd), 0);
    return NULL;
}

static void *hk_client(void *arg)
{
    struct hk *h = arg;
    char out[700], in[700];
    unsigned s = 7u + (unsigned)h->i;
    for (int r = 0; r < HK_ROUNDS; r++) {
        s = s * 1103515245u + 12345u;
        size_t len = 1 + (s >> 8) % sizeof out;
        memset(out, 'a' + (r + h->i) % 26, len);
        ck_assert_int_eq(write(h->fd, out, len), (ssize_t)len);
        atomic_fetch_add(h->sent, len);
        for (size_t got = 0; got < len;) {
            ssize_t n = read(h->fd, in + got, len - got);
            ck_assert_int_gt(n, 0);
            got += (size_t)n;
        }
        ck_assert(memcmp(in, out, len) == 0);
    }
    ck_assert_int_eq(close(h->fd), 0);
    return NULL;
}

static void body_hook_mt(void *arg)
{
    (void)arg;
    _Atomic uint64_t sent = 0, echoed = 0;
    struct hk h[2 * HK_PAIRS];
    weft_fiber *f[2 * HK_PAIRS];
    for (int i = 0; i < HK_PAIRS; i++) {
        int sv[2];
        pair(sv);
        h[2 * i] = (struct hk){ sv[0], i, &sent, &echoed };
        h[2 * i + 1] = (struct hk){ sv[1], i, &sent, &echoed };
    }
    for (int i = 0; i < HK_PAIRS; i++) {
        f[2 * i] = go(hk_server, &h[2 * i]);
        f[2 * i + 1] = go(hk_client, &h[2 * i + 1]);
    }
    for (int i = 0; i < 2 * HK_PAIRS; i++)
        join(f[i]);
    ck_assert_uint_gt(atomic_load(&sent), 0);
    ck_assert_uint_eq(atomic_load(&echoed), atomic_load(&sent));
}

START_TEST(test_mt_blocking_calls_many_fibers)
{
    FOR_WORKERS(body_hook_mt, NULL);
}
END_TEST

/* A fiber parked in a hooked call comes back on the thread it made the
 * call on, even with migration forced at every switch; between calls
 * (weft_yield, unpinned) it does move, which shows the test can tell. */
struct same { int fd; _Atomic int moved_in_call, moved_between; };

static long tid(void) { return (long)syscall(SYS_gettid); }

static void *same_thread_caller(void *p)
{
    struct same *s = p;
    for (int i = 0; i < 30; i++) {
        long t = tid();
        ck_assert_int_eq(usleep(200), 0);
        if (tid() != t)
            atomic_fetch_add(&s->moved_in_call, 1);
        t = tid();
        struct pollfd pfd = { .fd = s->fd, .events = POLLIN };
        ck_assert_int_eq(poll(&pfd, 1, 1), 0);     /* nothing comes: parks, times out */
        if (tid() != t)
            atomic_fetch_add(&s->moved_in_call, 1);
        t = tid();
        weft_yield();
        if (tid() != t)
            atomic_fetch_add(&s->moved_between, 1);
    }
    /* On a loaded machine the other worker may have had no CPU so far. */
    int64_t end = weft_now() + 5000 * 1000000LL;
    while (atomic_load(&s->moved_between) == 0 && weft_now() < end) {
        long t = tid();
        weft_yield();
        if (tid() != t)
            atomic_fetch_add(&s->moved_between, 1);
    }
    return NULL;
}

static void body_same_thread(void *arg)
{
    struct same *s = arg;
    weft_fiber *f[6];
    for (int i = 0; i < 6; i++)
        f[i] = go(same_thread_caller, s);
    for (int i = 0; i < 6; i++)
        join(f[i]);
}

START_TEST(test_parked_calls_return_on_their_thread)
{
    int sv[2];
    pair(sv);
    struct same s = { .fd = sv[0] };
    setenv("WEFT_TEST_MIGRATE", "1", 1);
    run_workers(2, body_same_thread, &s);
    unsetenv("WEFT_TEST_MIGRATE");
    ck_assert_int_eq(atomic_load(&s.moved_in_call), 0);
    ck_assert_int_gt(atomic_load(&s.moved_between), 0);
    ck_assert_int_eq(close(sv[0]), 0);
    ck_assert_int_eq(close(sv[1]), 0);
}
END_TEST

static Suite *hook_suite(void)
{
    Suite *s = suite_create("hook");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_outside_fibers_is_libc);
    tcase_add_test(tc, test_hook_reports_itself_active);
    tcase_add_test(tc, test_read_parks_only_its_fiber);
    tcase_add_test(tc, test_outside_after_fiber_use_still_blocks);
    tcase_add_test(tc, test_every_read_write_form);
    tcase_add_test(tc, test_user_nonblocking_is_honoured);
    tcase_add_test(tc, test_socket_timeouts_are_deadlines);
    tcase_add_test(tc, test_cancel_and_close_while_parked);
    tcase_add_test(tc, test_accept_and_connect);
    tcase_add_test(tc, test_poll_and_select);
    tcase_add_test(tc, test_sleeps_park);
    tcase_add_test(tc, test_getaddrinfo_and_high_fds);
    tcase_add_test(tc, test_mt_blocking_calls_many_fibers);
    tcase_add_test(tc, test_parked_calls_return_on_their_thread);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return run_suite(hook_suite());
}
