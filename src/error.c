/* error.c - weft_strerror(): a fixed text for every error weft returns.
 *
 * The table is weft's own rather than strerror()'s so the strings are the
 * same on every platform and safe to use from any thread.
 */
#include "internal.h"

#include <string.h>

struct entry { int code; const char *text; };

static const struct entry table[] = {
    { 0, "success" },
    { EPERM, "not called from inside a fiber" },
    { ENOENT, "no such file, directory or name" },
    { ESRCH, "no such fiber (already joined, or finished while detached)" },
    { EINTR, "interrupted" },
    { EIO, "input/output error" },
    { EBADF, "bad or closed descriptor" },
    { EAGAIN, "resource temporarily unavailable" },
    { ENOMEM, "out of memory (or no guard page could be had)" },
    { EACCES, "permission denied" },
    { EFAULT, "bad address" },
    { EBUSY, "busy" },
    { EEXIST, "already exists" },
    { EINVAL, "invalid argument" },
    { ENFILE, "too many open files in the system" },
    { EMFILE, "too many open files" },
    { ENOSPC, "no space left" },
    { EPIPE, "closed (broken pipe or channel)" },
    { EDEADLK, "would deadlock (a fiber cannot wait for itself)" },
    { ENAMETOOLONG, "name too long" },
    { ENOSYS, "not implemented" },
    { ENOTSUP, "not supported" },
    { EADDRINUSE, "address already in use" },
    { EADDRNOTAVAIL, "address not available" },
    { ENETUNREACH, "network unreachable" },
    { ECONNABORTED, "connection aborted" },
    { ECONNRESET, "connection reset by peer" },
    { ENOBUFS, "no buffer space available" },
    { EISCONN, "already connected" },
    { ENOTCONN, "not connected" },
    { ESHUTDOWN, "the runtime has shut down" },
    { ETIMEDOUT, "deadline expired" },
    { ECONNREFUSED, "connection refused" },
    { EHOSTUNREACH, "host unreachable" },
    { EALREADY, "operation already in progress" },
    { EINPROGRESS, "operation in progress" },
    { ECANCELED, "cancelled" },
    { EOVERFLOW, "value too large" },
    { ENOTSOCK, "not a socket" },
    { EMSGSIZE, "message too long" },
    { EAFNOSUPPORT, "address family not supported" },
    { EPROTONOSUPPORT, "protocol not supported" },
};

const char *weft_strerror(int err)
{
    int code = err < 0 ? -err : err;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].code == code)
            return table[i].text;
#ifdef __GLIBC__
    const char *d = strerrordesc_np(code);
    if (d)
        return d;
#endif
    return "unknown error";
}
