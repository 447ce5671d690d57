/* check_net.c - tests of the socket conveniences (src/unix/net.c): address
 * parsing (malformed input must be -EINVAL, never a crash or a bind
 * somewhere else), names through the offload pool, IPv6, SO_REUSEPORT,
 * Unix sockets, connect deadlines and weft_local_addr. Runs on both
 * reactor backends.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int64_t elapsed_ms(int64_t t0) { return (weft_now() - t0) / 1000000; }

/* Runs body in a runtime of the given number of workers with the checks of
 * run_in_runtime. Every count is supported, so any failure of weft_run
 * fails the test. */
static void run_workers(int workers, void (*body)(void *), void *arg)
{
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = workers;
    int r = weft_run(&cfg, body, arg);
    ck_assert_msg(r == 0, "weft_run(workers=%d): %s", workers, weft_strerror(r));
    weft_stats st;
    weft_stats_get(&st);
    ck_assert_uint_eq(st.runtimes, 0);
    ck_assert_uint_eq(st.fibers_live, 0);
    ck_assert_uint_eq(st.stacks_in_use, 0);
    ck_assert_uint_eq(st.map_entries, 0);
}

static const int worker_counts[] = { 1, 2 };
#define FOR_WORKERS(body, arg) \
    for (size_t wi_ = 0; wi_ < sizeof worker_counts / sizeof *worker_counts; wi_++) \
        run_workers(worker_counts[wi_], body, arg)

static int port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &l), 0);
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static const char *malformed[] = {
    "", "127.0.0.1", "127.0.0.1:", ":", "1.2.3.4:65536", "1.2.3.4:-1", "1.2.3.4:+80",
    "1.2.3.4:80x", "1.2.3.4:0x50", "1.2.3.4:999999", "[::1]", "[::1]80", "::1:80",
    "[1.2.3.4]:80", "[::1:80", "[]:80", "[zz::1]:80", "host name:80", "bad/name:80",
    "a:b:c", "256.1.1.1:80", "1.2.3:80", "1.2.3.4.5:80", "[::1]:", "[::1]:http",
    "0123456789012345678901234567890123456789012345678901234567890123456789"
    "0123456789012345678901234567890123456789012345678901234567890123456789"
    "0123456789012345678901234567890123456789012345678901234567890123456789"
    "0123456789012345678901234567890123456789012345678901234567890123456789:80",
};

static void body_malformed(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++) {
        ck_assert_msg(weft_tcp_listen(malformed[i], 0) == -EINVAL, "listen '%s'", malformed[i]);
        ck_assert_msg(weft_tcp_connect(malformed[i], weft_deadline_ms(100)) == -EINVAL,
                      "connect '%s'", malformed[i]);
        ck_assert_msg(weft_udp_bind(malformed[i]) == -EINVAL, "udp '%s'", malformed[i]);
    }
    ck_assert_int_eq(weft_tcp_listen(NULL, 0), -EINVAL);
    ck_assert_int_eq(weft_tcp_connect(NULL, 0), -EINVAL);
    ck_assert_int_eq(weft_udp_bind(NULL), -EINVAL);
}

START_TEST(test_malformed_addresses)
{
    FOR_WORKERS(body_malformed, NULL);
}
END_TEST

static void *accept_one(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    int fd = weft_accept(lfd, NULL, NULL, weft_deadline_ms(5000));
    ck_assert_int_ge(fd, 0);
    char buf[16];
    ssize_t n = weft_read(fd, buf, sizeof buf, weft_deadline_ms(5000));
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(weft_write_all(fd, buf, (size_t)n, WEFT_FOREVER), n);
    weft_close(fd);
    return NULL;
}

/* Listens on listen_addr, connects to "<connect_host>:<port>", echoes. */
static void roundtrip(const char *listen_addr, const char *connect_host)
{
    int lfd = weft_tcp_listen(listen_addr, 0);
    ck_assert_msg(lfd >= 0, "listen %s: %s", listen_addr, weft_strerror(lfd));
    char target[128];
    snprintf(target, sizeof target, "%s:%d", connect_host, port_of(lfd));
    weft_fiber *f;
    ck_assert_int_eq(weft_spawn(&f, NULL, accept_one, (void *)(intptr_t)lfd), 0);
    int fd = weft_tcp_connect(target, weft_deadline_ms(5000));
    ck_assert_msg(fd >= 0, "connect %s: %s", target, weft_strerror(fd));
    ck_assert_int_eq(weft_write_all(fd, "hey", 3, WEFT_FOREVER), 3);
    char buf[3];
    ck_assert_int_eq(weft_read_full(fd, buf, 3, weft_deadline_ms(5000)), 3);
    weft_close(fd);
    weft_join(f, NULL, WEFT_FOREVER);
    weft_close(lfd);
}

static int have_ipv6(void)
{
    int s = socket(AF_INET6, SOCK_STREAM, 0);
    if (s < 0)
        return 0;
    struct sockaddr_in6 a;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    int ok = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

static void body_valid(void *arg)
{
    (void)arg;
    roundtrip("127.0.0.1:0", "127.0.0.1");
    roundtrip(":0", "127.0.0.1");            /* any address */
    roundtrip("*:0", "");                    /* connect to "" = loopback */
    roundtrip("127.0.0.1:0", "localhost");   /* a name: resolved off the worker */
    if (have_ipv6()) {
        roundtrip("[::1]:0", "[::1]");
        roundtrip("[::]:0", "[::1]");
    }
    /* port 0 gives a real port, and weft_local_addr reports it */
    int lfd = weft_tcp_listen("127.0.0.1:0", 0);
    char buf[64], want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port_of(lfd));
    ck_assert_int_eq(weft_local_addr(lfd, buf, sizeof buf), (int)strlen(want));
    ck_assert_str_eq(buf, want);
    ck_assert_int_eq(weft_local_addr(lfd, buf, 5), -ENOSPC);
    ck_assert_int_eq(weft_local_addr(-1, buf, sizeof buf), -EBADF);
    /* the same port again: in use */
    ck_assert_int_eq(weft_tcp_listen(want, 0), -EADDRINUSE);
    weft_close(lfd);
    /* a name that does not exist */
    int r = weft_tcp_connect("no-such-host.invalid:80", weft_deadline_ms(5000));
    ck_assert_msg(r == -ENOENT || r == -EAGAIN, "got %s", weft_strerror(r));
    r = weft_tcp_listen("no-such-host.invalid:80", 0);
    ck_assert_msg(r == -ENOENT || r == -EAGAIN, "got %s", weft_strerror(r));
}

START_TEST(test_valid_addresses)
{
    FOR_WORKERS(body_valid, NULL);
}
END_TEST

START_TEST(test_outside_fiber)
{
    /* numeric addresses need no fiber; names and connects do */
    int lfd = weft_tcp_listen("127.0.0.1:0", 0);
    ck_assert_int_ge(lfd, 0);
    ck_assert_int_eq(weft_close(lfd), 0);
    ck_assert_int_eq(weft_tcp_listen("localhost:0", 0), -EPERM);
    ck_assert_int_eq(weft_tcp_connect("127.0.0.1:1", WEFT_FOREVER), -EPERM);
    ck_assert_int_eq(weft_unix_connect("/nonexistent", WEFT_FOREVER), -EPERM);
    ck_assert_int_eq(weft_tcp_listen("1.2.3:80:", 0), -EINVAL);
}
END_TEST

static void body_reuseport(void *arg)
{
    (void)arg;
    int a = weft_tcp_listen_reuseport("127.0.0.1:0", 0);
    ck_assert_int_ge(a, 0);
    char addr[64];
    weft_local_addr(a, addr, sizeof addr);
    int b = weft_tcp_listen_reuseport(addr, 0);
    ck_assert_msg(b >= 0, "second SO_REUSEPORT listener: %s", weft_strerror(b));
    ck_assert_int_eq(weft_tcp_listen(addr, 0), -EADDRINUSE);   /* not without it */
    weft_close(a);
    weft_close(b);
}

START_TEST(test_reuseport)
{
    FOR_WORKERS(body_reuseport, NULL);
}
END_TEST

static void body_unix(void *arg)
{
    (void)arg;
    char path[64];
    snprintf(path, sizeof path, "/tmp/weft-check-net-%d.sock", (int)getpid());
    unlink(path);
    char abstract[64];
    snprintf(abstract, sizeof abstract, "@weft-check-net-%d", (int)getpid());
    const char *paths[2] = { path, abstract };
    for (int i = 0; i < 2; i++) {
        int lfd = weft_unix_listen(paths[i], 0);
        ck_assert_msg(lfd >= 0, "unix listen %s: %s", paths[i], weft_strerror(lfd));
        char name[128];
        ck_assert_int_gt(weft_local_addr(lfd, name, sizeof name), 0);
        ck_assert_str_eq(name, paths[i]);
        weft_fiber *f;
        ck_assert_int_eq(weft_spawn(&f, NULL, accept_one, (void *)(intptr_t)lfd), 0);
        int fd = weft_unix_connect(paths[i], weft_deadline_ms(2000));
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(weft_write_all(fd, "unix", 4, WEFT_FOREVER), 4);
        char buf[4];
        ck_assert_int_eq(weft_read_full(fd, buf, 4, weft_deadline_ms(2000)), 4);
        ck_assert(memcmp(buf, "unix", 4) == 0);
        weft_close(fd);
        weft_join(f, NULL, WEFT_FOREVER);
        weft_close(lfd);
    }
    unlink(path);
    ck_assert_int_eq(weft_unix_connect(path, weft_deadline_ms(100)), -ENOENT);
    ck_assert_int_eq(weft_unix_listen("", 0), -EINVAL);
    ck_assert_int_eq(weft_unix_listen(NULL, 0), -EINVAL);
    char longp[200];
    memset(longp, 'x', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    ck_assert_int_eq(weft_unix_listen(longp, 0), -ENAMETOOLONG);
    ck_assert_int_eq(weft_unix_connect(longp, 0), -ENAMETOOLONG);
}

START_TEST(test_unix_sockets)
{
    FOR_WORKERS(body_unix, NULL);
}
END_TEST

static void body_connect_errors(void *arg)
{
    (void)arg;
    /* refused: a port nobody listens on */
    int lfd = weft_tcp_listen("127.0.0.1:0", 0);
    char addr[64];
    weft_local_addr(lfd, addr, sizeof addr);
    weft_close(lfd);
    ck_assert_int_eq(weft_tcp_connect(addr, weft_deadline_ms(2000)), -ECONNREFUSED);
    /* a deadline: a listener with a full accept queue drops our SYN */
    lfd = weft_tcp_listen("127.0.0.1:0", 1);
    weft_local_addr(lfd, addr, sizeof addr);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = weft_tcp_connect(addr, weft_deadline_ms(200));
    }
    int64_t t0 = weft_now();
    int r = weft_tcp_connect(addr, weft_deadline_ms(50));
    ck_assert_msg(r == -ETIMEDOUT, "got %s", weft_strerror(r));
    ck_assert_int_ge(elapsed_ms(t0), 50);
    ck_assert_int_lt(elapsed_ms(t0), 1000);
    for (int i = 0; i < 4; i++)
        if (fill[i] >= 0)
            weft_close(fill[i]);
    weft_close(lfd);
}

START_TEST(test_connect_errors)
{
    FOR_WORKERS(body_connect_errors, NULL);
}
END_TEST

static void body_udp(void *arg)
{
    (void)arg;
    int u = weft_udp_bind("127.0.0.1:0");
    ck_assert_int_ge(u, 0);
    char addr[64];
    ck_assert_int_gt(weft_local_addr(u, addr, sizeof addr), 0);
    ck_assert_int_eq(weft_udp_bind(addr), -EADDRINUSE);
    struct sockaddr_in to;
    socklen_t l = sizeof to;
    getsockname(u, (struct sockaddr *)&to, &l);
    ck_assert_int_eq(weft_sendto(u, "self", 4, 0, (struct sockaddr *)&to, l, 0), 4);
    char buf[8];
    ck_assert_int_eq(weft_recvfrom(u, buf, sizeof buf, 0, NULL, NULL, weft_deadline_ms(1000)), 4);
    weft_close(u);
    if (have_ipv6()) {
        u = weft_udp_bind("[::1]:0");
        ck_assert_int_ge(u, 0);
        weft_close(u);
    }
}

START_TEST(test_udp_bind)
{
    FOR_WORKERS(body_udp, NULL);
}
END_TEST

/* Several workers: one listening socket shared by several accepting fibers
 * and many clients connecting with weft_tcp_connect at once; every client
 * exchanges a few messages; the totals must match. Exercises net.c's
 * socket adoption from any worker and accept waiters on one descriptor. */
#define NT_ACCEPTORS 4
#define NT_CLIENTS   64

struct net_mt {
    int lfd;
    char addr[64];
    _Atomic int accepted, served, clients_ok;
    _Atomic uint64_t bytes, sent;
};

static void *nt_serve(void *arg)
{
    struct net_mt *m = ((void **)arg)[0];
    int fd = (int)(intptr_t)((void **)arg)[1];
    free(arg);
    char buf[512];
    ssize_t n;
    while ((n = weft_read(fd, buf, sizeof buf, weft_deadline_ms(20000))) > 0) {
        ck_assert_int_eq(weft_write_all(fd, buf, (size_t)n, weft_deadline_ms(20000)), n);
        atomic_fetch_add(&m->bytes, (uint64_t)n);
    }
    ck_assert_int_eq(n, 0);
    weft_close(fd);
    atomic_fetch_add(&m->served, 1);
    return NULL;
}

static void *nt_acceptor(void *arg)
{
    struct net_mt *m = arg;
    for (;;) {
        int fd = weft_accept(m->lfd, NULL, NULL, WEFT_FOREVER);
        if (fd == -EBADF || fd == -ECANCELED)
            return NULL;            /* the listener was closed: done */
        ck_assert_msg(fd >= 0, "accept: %s", weft_strerror(fd));
        atomic_fetch_add(&m->accepted, 1);
        void **a = malloc(2 * sizeof *a);
        a[0] = m;
        a[1] = (void *)(intptr_t)fd;
        ck_assert_int_eq(weft_spawn(NULL, NULL, nt_serve, a), 0);
    }
}

static void *nt_client(void *arg)
{
    struct net_mt *m = arg;
    int fd = weft_tcp_connect(m->addr, weft_deadline_ms(10000));
    ck_assert_msg(fd >= 0, "connect: %s", weft_strerror(fd));
    char out[100], in[100];
    for (int i = 0; i < 20; i++) {
        int len = snprintf(out, sizeof out, "fd %d message %d", fd, i);
        ck_assert_int_eq(weft_write_all(fd, out, (size_t)len, weft_deadline_ms(10000)), len);
        atomic_fetch_add(&m->sent, (uint64_t)len);
        ck_assert_int_eq(weft_read_full(fd, in, (size_t)len, weft_deadline_ms(10000)), len);
        ck_assert(memcmp(in, out, (size_t)len) == 0);
    }
    weft_close(fd);
    atomic_fetch_add(&m->clients_ok, 1);
    return NULL;
}

static void body_mt_accept(void *arg)
{
    (void)arg;
    struct net_mt m;
    memset(&m, 0, sizeof m);
    m.lfd = weft_tcp_listen("127.0.0.1:0", 256);
    ck_assert_int_ge(m.lfd, 0);
    ck_assert_int_gt(weft_local_addr(m.lfd, m.addr, sizeof m.addr), 0);
    weft_fiber *acc[NT_ACCEPTORS], *cl[NT_CLIENTS];
    for (int i = 0; i < NT_ACCEPTORS; i++)
        ck_assert_int_eq(weft_spawn(&acc[i], NULL, nt_acceptor, &m), 0);
    for (int i = 0; i < NT_CLIENTS; i++)
        ck_assert_int_eq(weft_spawn(&cl[i], NULL, nt_client, &m), 0);
    for (int i = 0; i < NT_CLIENTS; i++)
        ck_assert_int_eq(weft_join(cl[i], NULL, weft_deadline_ms(20000)), 0);
    ck_assert_int_eq(atomic_load(&m.clients_ok), NT_CLIENTS);
    /* every server sees its EOF and counts itself */
    for (int i = 0; i < 2000 && atomic_load(&m.served) < NT_CLIENTS; i++)
        weft_sleep_ms(1);
    ck_assert_int_eq(atomic_load(&m.served), NT_CLIENTS);
    ck_assert_int_eq(atomic_load(&m.accepted), NT_CLIENTS);
    weft_close(m.lfd);              /* wakes the parked acceptors with -EBADF */
    for (int i = 0; i < NT_ACCEPTORS; i++)
        ck_assert_int_eq(weft_join(acc[i], NULL, weft_deadline_ms(5000)), 0);
    ck_assert_uint_gt(atomic_load(&m.sent), 0);
    ck_assert_uint_eq(atomic_load(&m.bytes), atomic_load(&m.sent));
}

START_TEST(test_mt_shared_listener)
{
    FOR_WORKERS(body_mt_accept, NULL);
}
END_TEST

static Suite *net_suite(void)
{
    Suite *s = suite_create("net");
    TCase *tc = tcase_create("net");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_malformed_addresses);
    tcase_add_test(tc, test_valid_addresses);
    tcase_add_test(tc, test_outside_fiber);
    tcase_add_test(tc, test_reuseport);
    tcase_add_test(tc, test_unix_sockets);
    tcase_add_test(tc, test_connect_errors);
    tcase_add_test(tc, test_udp_bind);
    tcase_add_test(tc, test_mt_shared_listener);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(net_suite());
}
