/* sys.h - the raw system calls io.c makes on descriptors (private).
 *
 * Why: libweft_hook (src/unix/hook.c) interposes the libc names read, recv,
 * send, poll, close, fcntl, ... When it is loaded, a call from libweft to
 * those names through the PLT would land in the hook, which inside a fiber
 * calls back into weft: infinite recursion, or the user's O_NONBLOCK
 * bookkeeping corrupted by weft's own fcntl. So the descriptor calls on
 * weft's fiber paths go to the kernel through syscall(2), which no hook
 * interposes. syscall() costs the same as the libc wrappers (one call and
 * the trap) and sets errno the same way. Invariant: every call here has
 * exactly the semantics of the libc function of the same name on Linux.
 */
#ifndef WEFT_SYS_H
#define WEFT_SYS_H

#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static inline ssize_t weft__sys_read(int fd, void *buf, size_t len)
{
    return (ssize_t)syscall(SYS_read, fd, buf, len);
}

static inline ssize_t weft__sys_readv(int fd, const struct iovec *iov, int cnt)
{
    return (ssize_t)syscall(SYS_readv, fd, iov, cnt);
}

static inline ssize_t weft__sys_write(int fd, const void *buf, size_t len)
{
    return (ssize_t)syscall(SYS_write, fd, buf, len);
}

static inline ssize_t weft__sys_writev(int fd, const struct iovec *iov, int cnt)
{
    return (ssize_t)syscall(SYS_writev, fd, iov, cnt);
}

static inline ssize_t weft__sys_recvfrom(int fd, void *buf, size_t len, int flags,
                                         struct sockaddr *from, socklen_t *fromlen)
{
    return (ssize_t)syscall(SYS_recvfrom, fd, buf, len, flags, from, fromlen);
}

static inline ssize_t weft__sys_recv(int fd, void *buf, size_t len, int flags)
{
    return weft__sys_recvfrom(fd, buf, len, flags, NULL, NULL);
}

static inline ssize_t weft__sys_recvmsg(int fd, struct msghdr *m, int flags)
{
    return (ssize_t)syscall(SYS_recvmsg, fd, m, flags);
}

static inline ssize_t weft__sys_sendto(int fd, const void *buf, size_t len, int flags,
                                       const struct sockaddr *to, socklen_t tolen)
{
    return (ssize_t)syscall(SYS_sendto, fd, buf, len, flags, to, tolen);
}

static inline ssize_t weft__sys_send(int fd, const void *buf, size_t len, int flags)
{
    return weft__sys_sendto(fd, buf, len, flags, NULL, 0);
}

static inline ssize_t weft__sys_sendmsg(int fd, const struct msghdr *m, int flags)
{
    return (ssize_t)syscall(SYS_sendmsg, fd, m, flags);
}

static inline int weft__sys_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    return (int)syscall(SYS_accept4, fd, addr, len, flags);
}

static inline int weft__sys_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    return (int)syscall(SYS_connect, fd, addr, len);
}

/* Only the zero timeout is needed; aarch64 has no poll(2), only ppoll. */
static inline int weft__sys_poll0(struct pollfd *p, nfds_t n)
{
#ifdef SYS_poll
    return (int)syscall(SYS_poll, p, n, 0);
#else
    struct timespec zero = { 0, 0 };
    return (int)syscall(SYS_ppoll, p, n, &zero, NULL, (size_t)8);
#endif
}

static inline int weft__sys_pipe2(int fd[2], int flags)
{
    return (int)syscall(SYS_pipe2, fd, flags);
}

static inline int weft__sys_close(int fd)
{
    return (int)syscall(SYS_close, fd);
}

/* The F_GETFL / F_SETFL forms (an int argument, or none). */
static inline int weft__sys_fcntl(int fd, int cmd, long arg)
{
    return (int)syscall(SYS_fcntl, fd, cmd, arg);
}

#endif
