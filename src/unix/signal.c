/* signal.c - weft_signal_wait: a signal as just another descriptor wait.
 *
 * Each call blocks the signals of its set on the worker thread, opens a
 * signalfd for them and parks in weft_read() on it, so deadlines,
 * cancellation and both reactor backends come for free. A signal blocked
 * on the thread stays pending until the signalfd read takes it, so none is
 * lost between the block and the park.
 *
 * The block is reference-counted per signal across the waiters of one
 * thread (a signal mask belongs to a thread, so the counts do too: they
 * are thread-local and need no lock): the first waiter on a thread blocks
 * the signal there and remembers whether it was blocked already, the last
 * one restores that. A signal that arrives after the last waiter has gone
 * is then handled by its disposition as if weft had never been involved
 * (for SIGINT: the process ends), which is what a program that stopped
 * waiting for it expects.
 *
 * Which thread. With one worker the worker thread is the thread that
 * called weft_run(), and it receives process-directed signals once they
 * are blocked elsewhere. With several workers the rule is: the block, the
 * signalfd read and the unblock always happen on worker 0, the thread that
 * called weft_run(), whatever worker the waiting fiber was on. The extra
 * workers (1..n-1) run with every asynchronous signal blocked (see
 * weft__workers_start in sched.c), so worker 0 is the only worker thread
 * whose mask is the user's, and so the only one where blocking a signal
 * changes anything: a process-directed signal (kill(getpid(), ...)) that
 * worker 0 blocks stays pending for the process and the signalfd read
 * takes it. So for the length of the call the fiber is made to live on
 * worker 0: its home becomes worker 0 (the previous one is saved), and if
 * it runs elsewhere it yields, which moves a fiber whose home is another
 * worker to that worker's inbox; it checks again after every switch. At
 * the end its previous home is restored, and a fiber that was pinned to
 * another worker yields its way back there, so pinned fibers still see
 * one thread around the call. A thread-directed signal must therefore be
 * sent to worker 0's thread (and may still be missed while another worker
 * polls the shared reactor: the signalfd's readiness is the polling
 * thread's); process-directed signals are the supported way. The
 * thread-local counts below are then only ever touched on worker 0.
 */
#include "internal.h"

#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define NSIGS 65

static __thread int waiters[NSIGS];             /* this thread's waiters per signal */
static __thread unsigned char preblocked[NSIGS]; /* blocked before its first waiter came */

static void acquire(const sigset_t *set)
{
    sigset_t cur, add;
    sigemptyset(&add);
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    for (int s = 1; s < NSIGS; s++) {
        if (sigismember(set, s) != 1)
            continue;
        if (waiters[s]++ == 0)
            preblocked[s] = sigismember(&cur, s) == 1;
        sigaddset(&add, s);
    }
    pthread_sigmask(SIG_BLOCK, &add, NULL);
}

static void release(const sigset_t *set)
{
    sigset_t del;
    sigemptyset(&del);
    int any = 0;
    for (int s = 1; s < NSIGS; s++) {
        if (sigismember(set, s) != 1)
            continue;
        if (--waiters[s] == 0 && !preblocked[s]) {
            sigaddset(&del, s);
            any = 1;
        }
    }
    if (any)
        pthread_sigmask(SIG_UNBLOCK, &del, NULL);
}

int weft_signal_wait(const sigset_t *set, int64_t deadline)
{
    struct weft__worker *w = weft__worker();
    struct weft__fiber *self = weft__self(w);
    if (!self)
        return -EPERM;
    if (!set || sigismember(set, SIGKILL) == 1 || sigismember(set, SIGSTOP) == 1)
        return -EINVAL;
    int any = 0;
    for (int s = 1; s < NSIGS && !any; s++)
        any = sigismember(set, s) == 1;
    if (!any)
        return -EINVAL;
    if (self->flags & WEFT__FL_CANCELLED)
        return -ECANCELED;

    /* Several workers: move to worker 0 for the call (see the top). */
    struct weft__rt *rt = self->rt;
    struct weft__worker *prev_home = self->home;
    if (rt->mt) {
        self->home = &rt->w0;
        while (self->w != &rt->w0)
            weft__yield(self->w, self);     /* home elsewhere: to w0's inbox */
    }
    acquire(set);
    int fd = weft__signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
    int r;
    if (fd < 0) {
        r = -errno;
    } else {
        struct signalfd_siginfo si;
        ssize_t n = weft_read(fd, &si, sizeof si, deadline);
        if (n == (ssize_t)sizeof si)
            r = (int)si.ssi_signo;
        else
            r = n < 0 ? (int)n : -EIO;
        weft_close(fd);
    }
    /* Pinned to worker 0, so the wake-up of the read brought us back to
     * it: the counts and the mask are the ones acquire() changed. */
    weft__must(self->w == &rt->w0, "signal wait left worker 0");
    release(set);
    if (rt->mt) {
        self->home = prev_home;
        while (prev_home && self->w != prev_home)
            weft__yield(self->w, self);     /* back to the worker it is pinned to */
    }
    return r;
}

/* ---------------------------------------------- shutdown_on_signals
 *
 * weft_config.shutdown_on_signals: a SIGINT or SIGTERM that reaches a
 * handler (any thread that does not block it) calls weft_rt_shutdown() on
 * every running runtime that asked for it. The handler is installed while
 * at least one such runtime runs and the previous dispositions come back
 * when the last one ends. The handler does only async-signal-safe work:
 * it walks the handle table without a lock, takes a reference to each
 * open runtime (one compare-and-swap), stores a flag and writes to the
 * reactor's wake-up descriptor (runtime.c). A signal that is blocked on
 * worker 0 because a fiber waits for it in weft_signal_wait() is taken by
 * that fiber instead, if it arrives while the block lasts.
 */

static pthread_mutex_t shut_mu = PTHREAD_MUTEX_INITIALIZER;
static int shut_users;
static struct sigaction shut_old_int, shut_old_term;

static void shut_one(struct weft__rt *rt, void *ctx)
{
    (void)ctx;
    if (rt->cfg.shutdown_on_signals)
        weft__rt_shutdown(rt);
}

static void on_shutdown_signal(int sig)
{
    (void)sig;
    int saved = errno;
    weft__rt_each_open(shut_one, NULL);
    errno = saved;
}

int weft__shutdown_signals_install(void)
{
    int err = 0;
    pthread_mutex_lock(&shut_mu);
    if (shut_users == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_shutdown_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        if (sigaction(SIGINT, &sa, &shut_old_int) != 0) {
            err = -errno;
        } else if (sigaction(SIGTERM, &sa, &shut_old_term) != 0) {
            err = -errno;
            sigaction(SIGINT, &shut_old_int, NULL);
        }
    }
    if (!err)
        shut_users++;
    pthread_mutex_unlock(&shut_mu);
    return err;
}

void weft__shutdown_signals_uninstall(void)
{
    pthread_mutex_lock(&shut_mu);
    if (--shut_users == 0) {
        sigaction(SIGINT, &shut_old_int, NULL);
        sigaction(SIGTERM, &shut_old_term, NULL);
    }
    pthread_mutex_unlock(&shut_mu);
}
