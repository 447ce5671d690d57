/* weft/io.h - blocking-style descriptor and socket calls. */
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
#endif

#include "weft/export.h"

WEFT_BEGIN_DECLS

enum { WEFT_READ = 1, WEFT_WRITE = 2 };

/** Parks until fd is ready for any of events; returns the ready subset. */
WEFT_API int     weft_wait_fd(int fd, int events, int64_t deadline);
WEFT_API ssize_t weft_read(int fd, void *buf, size_t len, int64_t deadline);
WEFT_API ssize_t weft_write(int fd, const void *buf, size_t len, int64_t deadline);
WEFT_API ssize_t weft_read_full(int fd, void *buf, size_t len, int64_t deadline);
WEFT_API ssize_t weft_write_all(int fd, const void *buf, size_t len, int64_t deadline);
WEFT_API int     weft_accept(int lfd, struct sockaddr *addr, socklen_t *addrlen, int64_t deadline);
WEFT_API int     weft_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, int64_t deadline);
WEFT_API ssize_t weft_recvfrom(int fd, void *buf, size_t len, int flags,
                               struct sockaddr *from, socklen_t *fromlen, int64_t deadline);
WEFT_API ssize_t weft_sendto(int fd, const void *buf, size_t len, int flags,
                             const struct sockaddr *to, socklen_t tolen, int64_t deadline);
WEFT_API int     weft_close(int fd);

WEFT_API int weft_tcp_listen(const char *hostport, int backlog);
WEFT_API int weft_tcp_connect(const char *hostport, int64_t deadline);
WEFT_API int weft_udp_bind(const char *hostport);

WEFT_END_DECLS

#endif
