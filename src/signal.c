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
 * With one worker the worker thread is the thread that receives
 * process-directed signals once they are blocked elsewhere. With several,
 * the waiting fiber is pinned to its worker for the length of the call
 * (unless it was pinned already), so the block, the signalfd read and the
 * unblock all happen on the thread whose mask was changed; should it come
 * back on another thread all the same, that thread's counts are left alone
 * and the first thread keeps the signal blocked (safe, never unbalanced).
 * Other worker threads do not block the signal: see docs/io.md.
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

    /* Several workers: stay on this thread (see the top of the file). */
    bool pin = w->mt && !(self->flags & WEFT__FL_PINNED);
    if (pin)
        self->flags |= WEFT__FL_PINNED;
    pthread_t thread = pthread_self();
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
    if (pthread_equal(thread, pthread_self()))
        release(set);
    if (pin)
        self->flags &= (uint8_t)~WEFT__FL_PINNED;
    return r;
}
