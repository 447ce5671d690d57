/* weft/io.h - blocking-style descriptor and socket calls.
 *
 * Every call here parks only the calling fiber while the descriptor is not
 * ready, takes an absolute deadline (WEFT_FOREVER: none; a past deadline
 * tries once and returns -ETIMEDOUT if it would have to wait; a call whose
 * deadline passes while it is parked tries once more in the same way, so
 * what became ready at the deadline is returned, not a timeout), is a
 * cancellation point (-ECANCELED, checked on entry and while parked), and
 * reports the real errno as a negative value. Descriptors are made
 * non-blocking the first time a weft call sees them. SIGPIPE is never
 * raised: writes to a closed peer return -EPIPE. See docs/io.md.
 *
 * Errors every blocking call may return besides its own:
 *  -EPERM      not called from inside a fiber
 *  -EBADF      fd is not open, or was closed (weft_close) while parked
 *  -ETIMEDOUT  the deadline passed, and a last try would still block
 *  -ECANCELED  the calling fiber was cancelled
 *  -ENOMEM     the descriptor table could not grow
 */
#ifndef WEFT_IO_H
#define WEFT_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#ifdef _WIN32
#  include <winsock2.h>
#  include <ws2tcpip.h>
#else
#  include <sys/socket.h>
#  include <sys/uio.h>
#endif

#include "weft/export.h"

WEFT_BEGIN_DECLS

enum { WEFT_READ = 1, WEFT_WRITE = 2 };

/**
 * weft_wait_fd - park until fd is ready for any of events.
 * @events: WEFT_READ, WEFT_WRITE or both.
 * Returns the ready subset of events (> 0; an error or hang-up on fd counts
 * as ready for both), or -EINVAL (events empty or unknown bits), -EBADF,
 * -ETIMEDOUT, -ECANCELED, -EPERM. Unlike the calls below it always asks the
 * kernel first, so it is correct however the caller does its own I/O.
 */
WEFT_API int weft_wait_fd(int fd, int events, int64_t deadline);

/**
 * weft_read - read up to len bytes, parking while none are available.
 * Returns the count read (> 0), 0 at end of file (or len == 0), or -EBADF,
 * -ECONNRESET, -ETIMEDOUT, -ECANCELED, -EPERM, or any other read(2) error.
 */
WEFT_API ssize_t weft_read(int fd, void *buf, size_t len, int64_t deadline);

/**
 * weft_write - write up to len bytes, parking while none can be written.
 * Returns the count written (> 0; may be short), or -EPIPE (peer closed),
 * -ECONNRESET, -EBADF, -ETIMEDOUT, -ECANCELED, -EPERM, other write(2) errors.
 */
WEFT_API ssize_t weft_write(int fd, const void *buf, size_t len, int64_t deadline);

/**
 * weft_read_full - read exactly len bytes unless end of file comes first.
 * Returns len, the shorter count read before end of file, or a negative
 * errno as weft_read (bytes read before the error are consumed and lost;
 * -EINVAL if len > SSIZE_MAX).
 */
WEFT_API ssize_t weft_read_full(int fd, void *buf, size_t len, int64_t deadline);

/**
 * weft_write_all - write all len bytes, completing partial writes.
 * Returns len, or a negative errno as weft_write (how much was written
 * before the error is not reported; -EINVAL if len > SSIZE_MAX).
 */
WEFT_API ssize_t weft_write_all(int fd, const void *buf, size_t len, int64_t deadline);

/**
 * weft_readv, weft_writev - scatter/gather forms of weft_read/weft_write.
 * Returns as those, or -EINVAL (iovcnt < 0 or > IOV_MAX, iov NULL).
 */
WEFT_API ssize_t weft_readv(int fd, const struct iovec *iov, int iovcnt, int64_t deadline);
WEFT_API ssize_t weft_writev(int fd, const struct iovec *iov, int iovcnt, int64_t deadline);

/**
 * weft_recv, weft_send - recv(2)/send(2) with flags (MSG_PEEK, MSG_OOB,
 * MSG_MORE, ...); MSG_NOSIGNAL is always added to send. Returns as
 * weft_read/weft_write, or -ENOTSOCK.
 */
WEFT_API ssize_t weft_recv(int fd, void *buf, size_t len, int flags, int64_t deadline);
WEFT_API ssize_t weft_send(int fd, const void *buf, size_t len, int flags, int64_t deadline);

/**
 * weft_accept - accept a connection on listening socket lfd.
 * @addr, @addrlen: NULL, or receive the peer's address as accept(2).
 * Returns the new descriptor (non-blocking, close-on-exec), or -EINVAL (lfd
 * is not listening), -ENOTSOCK, -EBADF, -ETIMEDOUT, -ECANCELED, -EPERM.
 * When the process or system is out of descriptors (EMFILE, ENFILE) or
 * memory (ENOBUFS, ENOMEM) it does not return: it sleeps 1 ms, 2 ms, ... up
 * to 100 ms between retries, so other fibers keep running and the server
 * recovers once descriptors are freed; if the deadline comes first it
 * returns that error (-EMFILE, ...). Aborted connections are skipped.
 */
WEFT_API int weft_accept(int lfd, struct sockaddr *addr, socklen_t *addrlen, int64_t deadline);

/**
 * weft_connect - connect socket fd to addr, parking while the connection is
 * being set up. Returns 0, or -ECONNREFUSED, -ENETUNREACH, -EHOSTUNREACH,
 * -EISCONN, -ENOTSOCK, -ETIMEDOUT (fd is then still connecting: close it),
 * -ECANCELED, -EPERM, or another connect(2) error.
 */
WEFT_API int weft_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, int64_t deadline);

/**
 * weft_recvfrom - receive one datagram (or stream data) with its sender.
 * Returns the count received (a datagram longer than len is truncated, as
 * recvfrom(2)), or a negative errno as weft_read.
 */
WEFT_API ssize_t weft_recvfrom(int fd, void *buf, size_t len, int flags,
                               struct sockaddr *from, socklen_t *fromlen, int64_t deadline);

/**
 * weft_sendto - send one datagram to to (NULL on a connected socket).
 * Returns the count sent, or -EMSGSIZE, -EDESTADDRREQ, -ECONNREFUSED (an
 * earlier datagram was refused), or a negative errno as weft_write.
 */
WEFT_API ssize_t weft_sendto(int fd, const void *buf, size_t len, int flags,
                             const struct sockaddr *to, socklen_t tolen, int64_t deadline);

/**
 * weft_shutdown - shutdown(2): how is SHUT_RD, SHUT_WR or SHUT_RDWR. Parked
 * readers of the peer see end of file. Not blocking.
 * Returns 0, or -EBADF, -ENOTCONN, -ENOTSOCK, -EINVAL, -EPERM.
 */
WEFT_API int weft_shutdown(int fd, int how);

/**
 * weft_close - close fd after waking every fiber parked on it with -EBADF
 * and forgetting weft's state for it. Callable from anywhere (outside a
 * fiber it is close(2)). Always use it rather than close(2) for a
 * descriptor weft has seen: a plain close is noticed only when a waiter's
 * descriptor is re-checked (within about a second with epoll).
 * Returns 0, or -EBADF (fd not open), -EIO.
 */
WEFT_API int weft_close(int fd);

/* ------------------------------------------------------------- sockets */

/*
 * Addresses are "host:port" or "[v6]:port". host may be a dotted IPv4
 * address, an IPv6 address in brackets, a name (resolved by
 * weft_getaddrinfo on a helper thread, never on a worker), or empty or "*"
 * for every local address (listen, bind) / the loopback (connect). port is
 * a decimal number 0..65535; 0 asks the kernel for a free one (see
 * weft_local_addr). Malformed input returns -EINVAL; a name that does not
 * resolve -ENOENT. Sockets are non-blocking and close-on-exec.
 */

/**
 * weft_tcp_listen - a TCP socket bound to hostport (SO_REUSEADDR set) and
 * listening. @backlog: <= 0 for SOMAXCONN.
 * Returns the descriptor, or -EINVAL, -ENOENT, -EADDRINUSE, -EACCES,
 * -EADDRNOTAVAIL, -EMFILE, -EPERM (outside a fiber: names need one; numeric
 * addresses work anywhere).
 */
WEFT_API int weft_tcp_listen(const char *hostport, int backlog);

/**
 * weft_tcp_listen_reuseport - as weft_tcp_listen, with SO_REUSEPORT as
 * well, so several sockets (threads, processes) can listen on one port and
 * the kernel spreads connections between them.
 */
WEFT_API int weft_tcp_listen_reuseport(const char *hostport, int backlog);

/**
 * weft_tcp_connect - connect to hostport, trying each resolved address in
 * turn until one accepts. TCP_NODELAY is set on the result.
 * Returns the connected descriptor, or -EINVAL, -ENOENT, -ECONNREFUSED (the
 * last address's error), -ETIMEDOUT, -ECANCELED, -EPERM.
 */
WEFT_API int weft_tcp_connect(const char *hostport, int64_t deadline);

/**
 * weft_udp_bind - a UDP socket bound to hostport, for weft_recvfrom and
 * weft_sendto. Returns the descriptor, or errors as weft_tcp_listen.
 */
WEFT_API int weft_udp_bind(const char *hostport);

/**
 * weft_unix_listen - a Unix stream socket listening at path ("@name" is
 * Linux's abstract namespace). An existing socket file at path is not
 * removed: unlink it first. Returns the descriptor, or -EINVAL (path NULL
 * or empty), -ENAMETOOLONG, -EADDRINUSE, -EACCES, -ENOENT.
 */
WEFT_API int weft_unix_listen(const char *path, int backlog);

/**
 * weft_unix_connect - connect to the Unix stream socket at path.
 * Returns the descriptor, or -EINVAL, -ENAMETOOLONG, -ENOENT,
 * -ECONNREFUSED, -ETIMEDOUT, -ECANCELED, -EPERM.
 */
WEFT_API int weft_unix_connect(const char *path, int64_t deadline);

/**
 * weft_local_addr - the local address of socket fd as text: "1.2.3.4:80",
 * "[::1]:80" or a Unix path. Callable anywhere. Returns the length written
 * (excluding the NUL), or -EBADF, -ENOTSOCK, -ENOSPC (buf too small),
 * -EAFNOSUPPORT.
 */
WEFT_API int weft_local_addr(int fd, char *buf, size_t len);

WEFT_END_DECLS

#endif
