/* os.c - Linux's side of src/os.h for wake-ups and threads: the futex the
 * idle workers sleep on, the CPU count, worker threads started with the
 * asynchronous signals blocked, and raw writes to standard error.
 */
#include "os.h"
#include "fault.h"
#include "sys.h"

#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

void weft__os_wait(_Atomic uint32_t *word, uint32_t val, int64_t timeout_ns)
{
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tp = &ts;
    }
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, val, tp, NULL, 0);
}

void weft__os_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);
}

int weft__os_ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int weft__os_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    /* The new thread inherits the mask in force at pthread_create. SIGPIPE
     * stays open: it is thread-directed, and io.c handles it where raised. */
    sigset_t block, old;
    sigfillset(&block);
    sigdelset(&block, SIGSEGV);
    sigdelset(&block, SIGBUS);
    sigdelset(&block, SIGFPE);
    sigdelset(&block, SIGILL);
    sigdelset(&block, SIGABRT);
    sigdelset(&block, SIGTRAP);
    sigdelset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int err = weft__pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

void weft__os_write_err(const char *buf, size_t len)
{
    /* The raw system call: with libweft_hook loaded, write() would be the
     * hook, which is not async-signal-safe. */
    ssize_t ignored = weft__sys_write(STDERR_FILENO, buf, len);
    (void)ignored;
}
