/* weft/service.h - signals, the blocking-call offload pool and name
 * resolution. */
#ifndef WEFT_SERVICE_H
#define WEFT_SERVICE_H

#include <signal.h>
#include <stdint.h>
#ifndef _WIN32
/* <signal.h> declares sigset_t only when POSIX is asked for; <sys/select.h>
 * always does, so weft.h compiles under plain -std=c11 too. */
#  include <sys/select.h>
#endif
#ifndef _WIN32
#  include <netdb.h>
#endif

#include "weft/export.h"
#include "weft/core.h"

WEFT_BEGIN_DECLS

/**
 * weft_signal_wait - park until one of the signals in set arrives.
 * Returns its number, or -EINVAL (set NULL, empty, or holding SIGKILL or
 * SIGSTOP), -ETIMEDOUT, -ECANCELED, -EPERM, -EMFILE.
 *
 * While at least one fiber waits for a signal it is blocked on the worker
 * thread (and is received through a signalfd); when the last waiter for it
 * returns it is unblocked again unless it was blocked before. Process-wide
 * signals go to any thread that does not block them: threads the program
 * creates itself should block these signals (threads created from a fiber
 * while it waits inherit the block; weft's own helper threads block all).
 * Two fibers waiting for the same signal: one delivery wakes one of them.
 */
WEFT_API int weft_signal_wait(const sigset_t *set, int64_t deadline);

/**
 * weft_offload - run fn(arg) on a helper OS thread and park until it
 * returns; *result (if result is not NULL) gets its return value.
 * For blocking libraries, file I/O, DNS. Returns 0, or -EPERM (not in a
 * fiber), -EINVAL (fn NULL), -ECANCELED (the caller was cancelled before
 * the call; fn did not run), -EAGAIN/-ENOMEM (no helper thread could be
 * started). Cancellation while fn runs cannot interrupt it: the call waits
 * for fn and returns 0; the next blocking call returns -ECANCELED.
 *
 * Helpers are a process-wide pool that starts empty, grows on demand up to
 * a limit (jobs queue beyond it) and retires threads idle for a while. fn
 * must not call weft functions that need a fiber (they return -EPERM).
 */
WEFT_API int weft_offload(weft_fn fn, void *arg, void **result);

/**
 * weft_offload_config - tune the helper pool. Callable anywhere.
 * @max_threads: most helpers alive at once; 0 for the default (64, or
 *               $WEFT_OFFLOAD_THREADS); at least 1.
 * @idle_ms:     a helper idle this long exits; < 0 for the default (10000).
 * Returns 0, or -EINVAL (max_threads < 0).
 */
WEFT_API int weft_offload_config(int max_threads, int64_t idle_ms);

/** The number of offload helper threads alive now. Callable anywhere. */
WEFT_API int weft_offload_threads(void);

#ifndef _WIN32
struct addrinfo; /* <netdb.h> defines it only when POSIX is asked for */

/**
 * weft_getaddrinfo - getaddrinfo(3) run on an offload helper, so a slow DNS
 * server parks only the calling fiber. Free *res with freeaddrinfo().
 * Returns 0, or -ENOENT (no such name, or no address of the asked family),
 * -EAGAIN (temporary failure: try again), -EINVAL (bad flags, family,
 * socket type or service; node and service both NULL), -ENOMEM, -EIO
 * (permanent resolver failure), -ECANCELED, -EPERM.
 */
WEFT_API int weft_getaddrinfo(const char *node, const char *service,
                              const struct addrinfo *hints, struct addrinfo **res);
#endif

WEFT_END_DECLS

#endif
