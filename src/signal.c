/* signal.c - weft_signal_wait: a signal as just another descriptor wait.
 *
 * Each call blocks the signals of its set on the worker thread, opens a
 * signalfd for them and parks in weft_read() on it, so deadlines,
 * cancellation and both reactor backends come for free. A signal blocked
 * on the thread stays pending until the signalfd read takes it, so none is
 * lost between the block and the park.
 *
 * The block is reference-counted per signal across waiters (process-wide,
 * under a mutex): the first waiter for a signal blocks it and remembers
 * whether it was blocked already, the last one restores that. A signal
 * that arrives after the last waiter has gone is then handled by its
 * disposition as if weft had never been involved (for SIGINT: the process
 * ends), which is what a program that stopped waiting for it expects.
 *
 * The mask is per thread; with one worker the worker thread is the thread
 * that receives process-directed signals once they are blocked elsewhere.
 */
#include "internal.h"

#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define NSIGS 65

static pthread_mutex_t sig_mu = PTHREAD_MUTEX_INITIALIZER;
static int waiters[NSIGS];          /* fibers waiting for each signal */
static unsigned char preblocked[NSIGS]; /* blocked before its first waiter came */

static void acquire(const sigset_t *set)
{
    sigset_t cur, add;
    sigemptyset(&add);
    pthread_mutex_lock(&sig_mu);
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    for (int s = 1; s < NSIGS; s++) {
        if (sigismember(set, s) != 1)
            continue;
        if (waiters[s]++ == 0)
            preblocked[s] = sigismember(&cur, s) == 1;
        sigaddset(&add, s);
    }
    pthread_sigmask(SIG_BLOCK, &add, NULL);
    pthread_mutex_unlock(&sig_mu);
}

static void release(const sigset_t *set)
{
    sigset_t del;
    sigemptyset(&del);
    int any = 0;
    pthread_mutex_lock(&sig_mu);
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
    pthread_mutex_unlock(&sig_mu);
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
    release(set);
    return r;
}
