/* check_fault.c - the fault-injection walk (built only with
 * -DWEFT_FAULT_INJECTION=ON; see src/fault.h).
 *
 * Each scenario is a small weft program. For k = 1, 2, ... the kth
 * resource-acquiring call weft makes (mmap, madvise, malloc, calloc,
 * realloc, epoll_ctl, epoll_create1, eventfd, accept, pthread_create,
 * signalfd) fails, once; the walk ends at the first k the scenario never
 * reaches. Then the same walk in sticky mode: every call from the kth on
 * fails (a resource that stays exhausted, so cleanup paths are tried
 * under failure too). Every run must
 *   - finish (an alarm kills a hung run, which fails the test),
 *   - see only clean results: 0 or a negative errno from every public call,
 *     and no error at all when the countdown was not reached,
 *   - leave nothing behind once weft_run returns: weft_stats all zero, the
 *     same open descriptors and signal mask as before (ASan/valgrind find
 *     the leaks the counters cannot see),
 * and a run without a fault afterwards must fully succeed: a failure must
 * not poison the process-wide state (offload pool, fault handler, probes).
 * The fdwait scenario also retries a failed wait, which must then work.
 */
#include "fault.h"
#include "testutil.h"

#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <weft.h>

#define RUN_TIMEOUT_S 20
#define MAX_WALK 20000

/* ---------------------------------------------------- result bookkeeping */

/* Scenarios report each public call's result here: the run is clean when
 * every result is >= 0 or a plausible negative errno. */
static int n_errors, bad_result;

static long note(long r, long expected, const char *what)
{
    if (r < 0 && r != expected) {
        if (getenv("WEFT_FAULT_VERBOSE"))
            fprintf(stderr, "  %s: %s\n", what, weft_strerror((int)r));
        n_errors++;
        if (r < -4095) {
            bad_result = 1;
            fprintf(stderr, "%s returned %ld\n", what, r);
        }
    }
    return r;
}
#define NOTE(call) note((long)(call), 0, #call)
/* A call whose normal outcome includes one negative result. */
#define NOTE_X(call, expected) note((long)(call), (expected), #call)

/* ------------------------------------------------------------- scenarios */

static void s_empty(void *arg) { (void)arg; }

static void *yielder(void *arg)
{
    weft_yield();
    NOTE_X(weft_sleep_ms(0), -ECANCELED); /* detached ones: the runtime ends */
    return arg;
}

/* Spawns n fibers and joins those that started. */
static void spawn_join(int n)
{
    weft_fiber **fs = calloc((size_t)n, sizeof *fs);
    if (!fs)
        return;
    for (int i = 0; i < n; i++)
        if (NOTE(weft_spawn(&fs[i], NULL, yielder, (void *)(intptr_t)i)) != 0)
            fs[i] = NULL;
    for (int i = 0; i < n; i++) {
        void *res = NULL;
        if (fs[i] && NOTE(weft_join(fs[i], &res, -1)) == 0 && res != (void *)(intptr_t)i)
            bad_result = 1;
    }
    /* A detached one too: its block goes back to the table on exit. */
    NOTE(weft_spawn(NULL, NULL, yielder, NULL));
    weft_yield();
    free(fs);
}

static void s_spawn(void *arg) { spawn_join((int)(intptr_t)arg); }

static void *producer(void *arg)
{
    weft_chan *ch = arg;
    for (int i = 0; i < 10; i++)
        if (NOTE(weft_chan_send(ch, &i, weft_deadline_ms(2000))) != 0)
            break;
    NOTE(weft_chan_close(ch));
    return NULL;
}

static void s_chan(void *arg)
{
    (void)arg;
    weft_chan *ch;
    if (NOTE(weft_chan_open(&ch, sizeof(int), 4)) != 0)
        return;
    weft_fiber *p;
    if (NOTE(weft_spawn(&p, NULL, producer, ch)) != 0) {
        weft_chan_free(ch);
        return;
    }
    int v;
    while (NOTE_X(weft_chan_recv(ch, &v, weft_deadline_ms(2000)), -EPIPE) == 0)
        ;
    NOTE(weft_join(p, NULL, -1));
    weft_chan_free(ch);

    /* A select over more than 16 clauses allocates its wait nodes. */
    enum { N = 20 };
    weft_chan *cs[N];
    weft_clause cl[N];
    int got[N], n = 0;
    for (; n < N; n++) {
        if (NOTE(weft_chan_open(&cs[n], sizeof(int), 1)) != 0)
            break;
        cl[n] = (weft_clause){ cs[n], WEFT_RECV, &got[n], 0 };
    }
    if (n > 0) {
        int one = 1;
        NOTE(weft_chan_send(cs[n - 1], &one, -1));
        NOTE(weft_select(cl, (size_t)n, weft_deadline_ms(1000)));
        NOTE_X(weft_select(cl, (size_t)n, weft_deadline_ms(1)), -ETIMEDOUT);
    }
    while (n > 0)
        weft_chan_free(cs[--n]);
}

static weft_mutex mu = WEFT_MUTEX_INIT;
static int shared;

static void *locker(void *arg)
{
    for (int i = 0; i < 5; i++) {
        if (NOTE(weft_mutex_lock(&mu, weft_deadline_ms(2000))) != 0)
            continue;
        int v = shared;
        weft_yield();
        shared = v + 1;
        NOTE(weft_mutex_unlock(&mu));
    }
    return arg;
}

static void s_mutex(void *arg)
{
    (void)arg;
    weft_fiber *fs[4];
    for (int i = 0; i < 4; i++)
        if (NOTE(weft_spawn(&fs[i], NULL, locker, NULL)) != 0)
            fs[i] = NULL;
    for (int i = 0; i < 4; i++)
        if (fs[i])
            NOTE(weft_join(fs[i], NULL, -1));
}

static void *echo_server(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    int c = (int)NOTE(weft_accept(lfd, NULL, NULL, weft_deadline_ms(3000)));
    if (c < 0)
        return NULL;
    char buf[64];
    ssize_t n;
    while ((n = NOTE(weft_read(c, buf, sizeof buf, weft_deadline_ms(3000)))) > 0)
        if (NOTE(weft_write_all(c, buf, (size_t)n, weft_deadline_ms(3000))) < 0)
            break;
    NOTE(weft_close(c));
    return NULL;
}

static void s_echo(void *arg)
{
    (void)arg;
    int lfd = (int)NOTE(weft_tcp_listen("127.0.0.1:0", 16));
    if (lfd < 0)
        return;
    char addr[64];
    if (NOTE(weft_local_addr(lfd, addr, sizeof addr)) < 0) {
        weft_close(lfd);
        return;
    }
    weft_fiber *srv;
    if (NOTE(weft_spawn(&srv, NULL, echo_server, (void *)(intptr_t)lfd)) != 0) {
        weft_close(lfd);
        return;
    }
    int c = (int)NOTE(weft_tcp_connect(addr, weft_deadline_ms(3000)));
    if (c >= 0) {
        const char msg[] = "hello, weft";
        char back[sizeof msg];
        if (NOTE(weft_write_all(c, msg, sizeof msg, weft_deadline_ms(3000))) == (long)sizeof msg &&
            NOTE(weft_read_full(c, back, sizeof back, weft_deadline_ms(3000))) == (long)sizeof back &&
            memcmp(msg, back, sizeof msg) != 0)
            bad_result = 1;
        NOTE(weft_close(c));
    } else {
        NOTE(weft_cancel(srv));
    }
    NOTE(weft_join(srv, NULL, -1));
    NOTE(weft_close(lfd));
}

static void *blocking_job(void *arg) { usleep(1000); return arg; }

static void s_offload(void *arg)
{
    (void)arg;
    /* Helpers retire after 1 ms idle, so each job below starts a thread
     * (pthread_create is a failure point, not a one-off of the first run). */
    NOTE(weft_offload_config(4, 1));
    for (int i = 0; i < 3; i++) {
        NOTE(weft_sleep_ms(20));
        void *res = NULL;
        if (NOTE(weft_offload(blocking_job, (void *)(intptr_t)(i + 1), &res)) == 0 &&
            res != (void *)(intptr_t)(i + 1))
            bad_result = 1;
    }
}

static void s_signal(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    NOTE_X(weft_signal_wait(&set, weft_deadline_ms(1)), -ETIMEDOUT);
}

/* Many descriptors at once: grows io.c's table and the poll backend's
 * arrays while other descriptors are registered. */
static void s_fds(void *arg)
{
    (void)arg;
    enum { N = 80 };
    int sv[N][2], n = 0;
    for (; n < N; n++)
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv[n]) != 0)
            break;
    char c = 'x';
    for (int i = 0; i < n; i++) {
        NOTE_X(weft_wait_fd(sv[i][0], POLLIN, weft_deadline_ms(0)), -ETIMEDOUT);
        NOTE(weft_write(sv[i][1], &c, 1, weft_deadline_ms(100)));
    }
    for (int i = 0; i < n; i++) {
        NOTE(weft_read(sv[i][0], &c, 1, weft_deadline_ms(100)));
        NOTE(weft_close(sv[i][0]));
        NOTE(weft_close(sv[i][1]));
    }
}

/* After a failed wait, the same wait must work: a failure must not leave
 * the descriptor's registration half made (the single-failure walk only;
 * sticky failures keep failing). The writer writes 5 ms after the
 * readers parked, so each wait really goes through the reactor. */
static int sticky;   /* the walk's mode: one failure, or every call from k on */

static void *fd_reader(void *arg)
{
    int fd = (int)(intptr_t)arg;
    int r = weft_wait_fd(fd, WEFT_READ, weft_deadline_ms(2000));
    if (r < 0 && r != -ECANCELED) {
        note(r, 0, "weft_wait_fd (first)");
        r = weft_wait_fd(fd, WEFT_READ, weft_deadline_ms(2000));
        if (r < 0 && !sticky) {
            fprintf(stderr, "wait_fd retry after a failure: %s\n", weft_strerror(r));
            bad_result = 1;
        }
    }
    return NULL;
}

static void s_fdwait(void *arg)
{
    (void)arg;
    enum { N = 70 };
    int sv[N][2], n = 0;
    weft_fiber *rd[N];
    for (; n < N; n++)
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv[n]) != 0)
            break;
    for (int i = 0; i < n; i++)
        if (NOTE(weft_spawn(&rd[i], NULL, fd_reader, (void *)(intptr_t)sv[i][0])) != 0)
            rd[i] = NULL;
    NOTE(weft_sleep_ms(5));
    for (int i = 0; i < n; i++)
        (void)!write(sv[i][1], "x", 1);
    for (int i = 0; i < n; i++) {
        if (rd[i])
            NOTE(weft_join(rd[i], NULL, -1));
        NOTE(weft_close(sv[i][0]));
        NOTE(weft_close(sv[i][1]));
    }
}

static void *member(void *arg)
{
    NOTE_X(weft_sleep_ms((intptr_t)arg), -ECANCELED);
    return NULL;
}

/* Groups, several stack sizes (a pool each), and a post from a thread. */
static void posted(void *arg) { (void)arg; weft_yield(); }

static void *poster(void *arg)
{
    note(weft_post(arg, posted, NULL), -ESHUTDOWN, "weft_post");
    return NULL;
}

static void s_misc(void *arg)
{
    (void)arg;
    weft_group *g;
    if (NOTE(weft_group_open(&g)) == 0) {
        for (int i = 0; i < 5; i++)
            NOTE(weft_group_spawn(g, NULL, member, (void *)(intptr_t)(i % 2 ? 1000 : 0)));
        NOTE_X(weft_group_wait(g, weft_deadline_ms(5)), -ETIMEDOUT);
        NOTE(weft_group_cancel(g));
        NOTE(weft_group_wait(g, -1));
        NOTE(weft_group_free(g));
    }
    weft_attr at;
    weft_attr_init(&at);
    size_t sizes[] = { 64 * 1024, 128 * 1024, 32 * 1024 };
    for (int i = 0; i < 3; i++) {
        at.stack_size = sizes[i];
        weft_fiber *f;
        if (NOTE(weft_spawn(&f, &at, yielder, NULL)) == 0)
            NOTE(weft_join(f, NULL, -1));
    }
    pthread_t t;
    if (pthread_create(&t, NULL, poster, weft_runtime()) == 0) {
        while (pthread_tryjoin_np(t, NULL) != 0)
            weft_sleep_ms(1);
    }
    weft_sleep_ms(1);   /* let the posted fiber run */
}

/* A name, resolved on an offload helper (weft_getaddrinfo). */
static void s_resolve(void *arg)
{
    (void)arg;
    NOTE(weft_offload_config(4, 1));
    NOTE(weft_sleep_ms(20));
    int lfd = (int)NOTE(weft_tcp_listen("localhost:0", 4));
    if (lfd >= 0)
        NOTE(weft_close(lfd));
}

/* ------------------------------------------------------------- the walk */

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "check_fault: a run hung (alarm)\n";
    (void)!write(2, m, sizeof m - 1);
    _exit(98);
}

/* One run with the kth call failing (k 0: none). Returns whether the
 * armed failure fired. */
/* Open descriptors of the process: a failed run must not leak one. */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Sites a walk fails (bit per enum weft__fault_site; 0: all). */
static unsigned walk_mask;

static int run_once(const weft_config *cfg, void (*body)(void *), void *arg,
                    unsigned long k, const char *name)
{
    n_errors = bad_result = 0;
    int fds0 = count_fds();
    sigset_t mask0, mask1;
    pthread_sigmask(SIG_BLOCK, NULL, &mask0);
    weft__fault_arm(k, 0, walk_mask);
    weft__fault_sticky(k ? sticky : 0);
    signal(SIGALRM, on_alarm);
    alarm(RUN_TIMEOUT_S);
    int r = weft_run(cfg, body, arg);
    alarm(0);
    int site;
    int fired = weft__fault_fired(&site);
    weft__fault_arm(0, 0, 0);

    ck_assert_msg(r == 0 || (r < 0 && r > -4096), "%s k=%lu: weft_run returned %d", name, k, r);
    ck_assert_msg(!bad_result, "%s k=%lu (%s): a call returned a bad result", name, k,
                  weft__fault_site_name(site));
    if (!fired)
        ck_assert_msg(r == 0 && n_errors == 0, "%s k=%lu: %d errors without a fault (run %d)",
                      name, k, n_errors, r);
    int fds1 = count_fds();
    ck_assert_msg(fds1 == fds0, "%s k=%lu (fault at %s): %d descriptors before, %d after",
                  name, k, weft__fault_site_name(site), fds0, fds1);
    pthread_sigmask(SIG_BLOCK, NULL, &mask1);
    for (int sig = 1; sig < 65; sig++)
        ck_assert_msg(sigismember(&mask0, sig) == sigismember(&mask1, sig),
                      "%s k=%lu: signal %d's mask changed", name, k, sig);
    weft_stats st;
    weft_stats_get(&st);
    ck_assert_msg(st.runtimes == 0 && st.fibers_live == 0 && st.stacks_in_use == 0 &&
                  st.stack_bytes_mapped == 0 && st.map_entries == 0,
                  "%s k=%lu (fault at %s): left behind runtimes %lu fibers %lu stacks %lu "
                  "bytes %lu entries %lu", name, k, weft__fault_site_name(site),
                  (unsigned long)st.runtimes, (unsigned long)st.fibers_live,
                  (unsigned long)st.stacks_in_use, (unsigned long)st.stack_bytes_mapped,
                  (unsigned long)st.map_entries);
    return fired;
}

static void walk1(const weft_config *cfg, void (*body)(void *), void *arg, const char *name)
{
    unsigned long k = 1;
    while (run_once(cfg, body, arg, k, name)) {
        ck_assert_msg(k < MAX_WALK, "%s: walk did not end", name);
        k++;
    }
    /* The process is still sound: the same scenario runs clean. */
    run_once(cfg, body, arg, 0, name);
    if (getenv("WEFT_FAULT_VERBOSE"))
        fprintf(stderr, "%s%s: %lu failure points\n", name, sticky ? " (sticky)" : "", k - 1);
}

/* Both modes: a single failure, then a resource that stays exhausted. */
static void walk(const weft_config *cfg, void (*body)(void *), void *arg, const char *name)
{
    sticky = 0;
    walk1(cfg, body, arg, name);
    sticky = 1;
    walk1(cfg, body, arg, name);
    sticky = 0;
}

static weft_config small(int reactor, size_t prealloc)
{
    weft_config c;
    weft_config_init(&c);
    c.stack_size = 32 * 1024;
    c.reactor = reactor;
    c.prealloc_fibers = prealloc;
    return c;
}

/* Bug found by the walk: the once-per-process probe for MADV_GUARD_INSTALL
 * cached "unsupported" when its scratch mmap failed, so one passing
 * ENOMEM at the first spawn downgraded every later stack of the process
 * from a guard page without a map entry to the mprotect budget or a
 * canary. Must run before any other test in the process (the probe runs
 * once): first in the list; fork mode gives each test a fresh process. */
static uint64_t madvise_guarded_now;

static void *count_guards(void *arg)
{
    weft_stats st;
    weft_stats_get(&st);
    madvise_guarded_now = st.stacks_guard_madvise;
    return arg;
}

static void s_one_fiber(void *arg)
{
    (void)arg;
    weft_fiber *f;
    if (weft_spawn(&f, NULL, count_guards, NULL) == 0)
        weft_join(f, NULL, -1);
}

START_TEST(guard_probe)
{
    /* Does this kernel have the advice? Asked directly, not through weft. */
    long page = sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(p != MAP_FAILED);
    int supported = madvise(p, (size_t)page, 102 /* MADV_GUARD_INSTALL */) == 0;
    munmap(p, 2 * (size_t)page);

    /* Fail the 1st, 2nd, ... mmap until a run still succeeds: that failure
     * was the probe's own scratch mapping (the others fail the run). */
    weft_config c = small(WEFT_REACTOR_AUTO, 0);
    for (unsigned long k = 1;; k++) {
        ck_assert_msg(k < 10, "no run survived a failed mmap");
        weft__fault_arm(k, ENOMEM, 1u << WEFT__FS_MMAP);
        int r = weft_run(&c, s_one_fiber, NULL);
        int fired = weft__fault_fired(NULL);
        weft__fault_arm(0, 0, 0);
        ck_assert_msg(fired, "the probe's mmap was never reached");
        if (r == 0)
            break;
        ck_assert_int_eq(r, -ENOMEM);
    }
    madvise_guarded_now = 0;
    ck_assert_int_eq(weft_run(&c, s_one_fiber, NULL), 0);
    ck_assert_msg((madvise_guarded_now > 0) == supported,
                  "MADV_GUARD_INSTALL %s, but %lu stacks use it after a failed probe",
                  supported ? "works" : "is missing", (unsigned long)madvise_guarded_now);
}
END_TEST

START_TEST(startup)
{
    weft_config c = small(WEFT_REACTOR_EPOLL, 0);
    walk(&c, s_empty, NULL, "startup/epoll");
    c = small(WEFT_REACTOR_POLL, 0);
    walk(&c, s_empty, NULL, "startup/poll");
    walk(NULL, s_empty, NULL, "startup/defaults");
}
END_TEST

START_TEST(spawn)
{
    weft_config c = small(WEFT_REACTOR_AUTO, 0);
    walk(&c, s_spawn, (void *)(intptr_t)50, "spawn50");
    c = small(WEFT_REACTOR_AUTO, 64);
    walk(&c, s_spawn, (void *)(intptr_t)50, "spawn50/prealloc");
    /* Past the first table block and stack chunk. Not madvise: a guard per
     * slot of a 1024-slot chunk is one path 1024 times (spawn50 has it). */
    c = small(WEFT_REACTOR_AUTO, 0);
    walk_mask = ~(1u << WEFT__FS_MADVISE);
    walk(&c, s_spawn, (void *)(intptr_t)1100, "spawn1100");
    walk_mask = 0;
}
END_TEST

START_TEST(chan)
{
    weft_config c = small(WEFT_REACTOR_AUTO, 0);
    walk(&c, s_chan, NULL, "chan");
}
END_TEST

START_TEST(mutex)
{
    weft_config c = small(WEFT_REACTOR_AUTO, 0);
    walk(&c, s_mutex, NULL, "mutex");
}
END_TEST

START_TEST(echo)
{
    weft_config c = small(WEFT_REACTOR_EPOLL, 0);
    walk(&c, s_echo, NULL, "echo/epoll");
    c = small(WEFT_REACTOR_POLL, 0);
    walk(&c, s_echo, NULL, "echo/poll");
}
END_TEST

START_TEST(offload)
{
    weft_config c = small(WEFT_REACTOR_AUTO, 0);
    walk(&c, s_offload, NULL, "offload");
}
END_TEST

START_TEST(fds)
{
    weft_config c = small(WEFT_REACTOR_EPOLL, 0);
    walk(&c, s_fds, NULL, "fds/epoll");
    c = small(WEFT_REACTOR_POLL, 0);
    walk(&c, s_fds, NULL, "fds/poll");
    c = small(WEFT_REACTOR_EPOLL, 0);
    walk(&c, s_fdwait, NULL, "fdwait/epoll");
    c = small(WEFT_REACTOR_POLL, 0);
    walk(&c, s_fdwait, NULL, "fdwait/poll");
}
END_TEST

START_TEST(misc)
{
    weft_config c = small(WEFT_REACTOR_AUTO, 0);
    walk(&c, s_misc, NULL, "group/pools/post");
    walk(&c, s_resolve, NULL, "resolve");
}
END_TEST

START_TEST(signals)
{
    weft_config c = small(WEFT_REACTOR_AUTO, 0);
    walk(&c, s_signal, NULL, "signal");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fault");
    TCase *tc = tcase_create("walk");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, guard_probe);
    tcase_add_test(tc, startup);
    tcase_add_test(tc, spawn);
    tcase_add_test(tc, chan);
    tcase_add_test(tc, mutex);
    tcase_add_test(tc, echo);
    tcase_add_test(tc, offload);
    tcase_add_test(tc, signals);
    tcase_add_test(tc, fds);
    tcase_add_test(tc, misc);
    suite_add_tcase(s, tc);
    int rc = run_suite(s);
    /* Which call sites the walks reached (with CK_FORK=no: all suites). */
    if (getenv("WEFT_FAULT_VERBOSE"))
        for (int i = 0; i < WEFT__FS_COUNT; i++)
            fprintf(stderr, "%-15s %lu calls\n", weft__fault_site_name(i),
                    weft__fault_count((enum weft__fault_site)i));
    return rc;
}
