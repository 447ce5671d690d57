/* hook.c - libweft_hook: the opt-in libc interposition layer. Blocking libc
 * calls made from inside a weft fiber park only that fiber; everywhere else
 * they are the libc calls themselves. Loaded by linking -lweft_hook before
 * libc or by LD_PRELOAD; see docs/hooks.md for the user's view.
 *
 * Real functions. Every hooked name is resolved once, in a constructor, with
 * dlsym(RTLD_NEXT); a call that arrives before the constructor (from another
 * library's constructor) resolves its own name on the spot. libweft never
 * calls these names on its fiber paths (src/unix/sys.h), so nothing recurses.
 *
 * Outside a fiber every hook is a tail call to the real function with the
 * same arguments: same result, same errno. The only state a hook keeps is
 * per descriptor, and it only matters once a fiber has used the descriptor:
 * a socket the hook made non-blocking for a fiber (S_MANAGED below) while
 * the user thinks it blocking is waited for with poll(2) outside fibers,
 * so the caller still sees a blocking call.
 *
 * poll and select in a fiber ask the kernel without waiting, then park on
 * a private epoll set of the descriptors (no flag of theirs changes, so
 * this works for pipes and ttys too). Sleeps park on weft timers.
 * getaddrinfo for a name (not a numeric address) runs on an offload helper.
 *
 * The descriptor table. One byte per descriptor number in a two-level
 * table (4096-entry chunks made on demand; the top level covers every int,
 * so there is no cap). Bits:
 *   S_KNOWN   the user's O_NONBLOCK choice is recorded in S_UNB
 *   S_UNB     the user wants non-blocking: calls go through once, unparked
 *   S_SOCK    probed, and a socket           S_NOSOCK  probed, not one
 *   S_MANAGED the hook set O_NONBLOCK on the open file itself; the user's
 *             view (fcntl F_GETFL, ioctl FIONBIO) hides it, and calls made
 *             outside fibers emulate blocking with poll(2)
 *   S_RCVTMO / S_SNDTMO  SO_RCVTIMEO / SO_SNDTIMEO was set: read it as the
 *             deadline of blocking calls
 * The first time a fiber makes a blocking call on a socket, the hook reads
 * F_GETFL: a descriptor the user already made non-blocking keeps S_UNB;
 * otherwise the hook sets O_NONBLOCK and marks S_MANAGED. Later fcntl
 * F_SETFL / ioctl FIONBIO calls update S_UNB and keep the real flag on.
 * close, socket and accept reset the entry of the number they free or make.
 *
 * Only sockets are made non-blocking. Other descriptors (regular files,
 * pipes, ttys) share their open file, and its O_NONBLOCK flag, with other
 * processes (a shell's terminal), so a hook must not change it: calls on
 * them go straight through and may block the worker (documented).
 *
 * Blocking call in a fiber on a managed socket: try the call with
 * MSG_DONTWAIT (or on the non-blocking descriptor); on EAGAIN park in
 * weft_wait_fd() until ready or the SO_*TIMEO deadline; repeat. Errors from
 * weft map to libc's: -ETIMEDOUT is EAGAIN (EINPROGRESS for connect), as a
 * socket timeout is; -ECANCELED (the fiber was cancelled) is ECANCELED,
 * which no libc call reports, so loops that retry on EINTR still end.
 *
 * Feature macros: _DEFAULT_SOURCE, not _GNU_SOURCE: with __USE_GNU glibc
 * declares accept, connect, recvfrom and sendto with transparent-union
 * address parameters, which a definition cannot match; RTLD_NEXT (a GNU
 * extension) is spelled out below instead.
 *
 * Several workers: the descriptor table is process-wide and atomic. A
 * fiber parked in a hook comes back on the worker it parked on (see
 * wait_fd_here below), because its caller may hold that thread's errno
 * address; the hook itself still reads errno afresh (errno_at) and keeps
 * nothing per thread across a park.
 *
 * Invariants: a hook never changes errno on success paths that libc would
 * leave alone; S_MANAGED implies the open file is O_NONBLOCK as long as the
 * number names the same socket.
 */
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"

#ifndef RTLD_NEXT
#  define RTLD_NEXT ((void *)-1L)   /* glibc's value (dlfcn.h, __USE_GNU) */
#endif

#define HOOK __attribute__((visibility("default")))

/* errno, looked up afresh at every use. glibc declares
 * __errno_location() const, so the compiler may reuse an address computed
 * earlier in a function; the hooks' parks do not migrate (below), but the
 * hooks do not depend on that. The empty asm keeps the lookup from being
 * treated as a constant. */
__attribute__((noinline)) static int *errno_at(void)
{
    int *p = &errno;
    __asm__ volatile("" : "+r"(p));
    return p;
}
#undef errno
#define errno (*errno_at())

/* Every park in a hook keeps the fiber on its worker (weft_pin). The
 * caller is code written for threads: it may hold errno's address from
 * before the call (the compiler may compute __errno_location() once per
 * function) or another thread-local's, so the call must return on the
 * thread it was made on. A fiber pinned already stays pinned. */
static int wait_fd_here(int fd, int events, int64_t deadline)
{
    int was = weft_pin(1);
    int r = weft_wait_fd(fd, events, deadline);
    if (was == 0)
        weft_pin(0);
    return r;
}

static int sleep_here(int64_t deadline)
{
    int was = weft_pin(1);
    int r = weft_sleep_until(deadline);
    if (was == 0)
        weft_pin(0);
    return r;
}

static int offload_here(weft_fn fn, void *arg)
{
    int was = weft_pin(1);
    int r = weft_offload(fn, arg, NULL);
    if (was == 0)
        weft_pin(0);
    return r;
}

/* ------------------------------------------------------------ real calls */

#define HOOKED(X) \
    X(read, ssize_t, (int, void *, size_t)) \
    X(write, ssize_t, (int, const void *, size_t)) \
    X(readv, ssize_t, (int, const struct iovec *, int)) \
    X(writev, ssize_t, (int, const struct iovec *, int)) \
    X(recv, ssize_t, (int, void *, size_t, int)) \
    X(recvfrom, ssize_t, (int, void *, size_t, int, struct sockaddr *, socklen_t *)) \
    X(recvmsg, ssize_t, (int, struct msghdr *, int)) \
    X(send, ssize_t, (int, const void *, size_t, int)) \
    X(sendto, ssize_t, (int, const void *, size_t, int, const struct sockaddr *, socklen_t)) \
    X(sendmsg, ssize_t, (int, const struct msghdr *, int)) \
    X(accept, int, (int, struct sockaddr *, socklen_t *)) \
    X(accept4, int, (int, struct sockaddr *, socklen_t *, int)) \
    X(connect, int, (int, const struct sockaddr *, socklen_t)) \
    X(poll, int, (struct pollfd *, nfds_t, int)) \
    X(select, int, (int, fd_set *, fd_set *, fd_set *, struct timeval *)) \
    X(sleep, unsigned, (unsigned)) \
    X(usleep, int, (useconds_t)) \
    X(nanosleep, int, (const struct timespec *, struct timespec *)) \
    X(close, int, (int)) \
    X(socket, int, (int, int, int)) \
    X(setsockopt, int, (int, int, int, const void *, socklen_t)) \
    X(fcntl, int, (int, int, ...)) \
    X(fcntl64, int, (int, int, ...)) \
    X(ioctl, int, (int, unsigned long, ...)) \
    X(getaddrinfo, int, (const char *, const char *, const struct addrinfo *, \
                         struct addrinfo **))

#define DECLARE(name, ret, args) static ret (*real_##name) args;
HOOKED(DECLARE)

static void *resolve(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (!p && strcmp(name, "fcntl64") == 0)
        p = dlsym(RTLD_NEXT, "fcntl");  /* glibc before 2.28 */
    if (!p) {
        fprintf(stderr, "libweft_hook: cannot resolve %s: %s\n", name, dlerror());
        abort();
    }
    return p;
}

/* Called before the constructor ran (or from it): resolve on the spot. */
static void *lazy(void **slot, const char *name)
{
    if (!*slot)
        *slot = resolve(name);
    return *slot;
}

#define REAL(name) \
    (__builtin_expect(real_##name != NULL, 1) ? real_##name \
     : (__typeof__(real_##name))lazy((void **)&real_##name, #name))

__attribute__((constructor)) static void hook_init(void)
{
#define RESOLVE(name, ret, args) (void)REAL(name);
    HOOKED(RESOLVE)
}

/* For weft_hook_active() in libweft (src/unix/hookcheck.c): the libc
 * read() the hook forwards to. The hook intercepts when it comes before
 * that function's object in the link map. Its name is also the symbol
 * libweft_hook_keep.o references so that linkers keep the hook under
 * --as-needed (src/unix/hook_keep.c). */
HOOK void *weft__hook_probe(void)
{
    return (void *)REAL(read);
}

/* ------------------------------------------------------------ descriptors */

enum {
    S_KNOWN = 1u << 0, S_UNB = 1u << 1, S_SOCK = 1u << 2, S_NOSOCK = 1u << 3,
    S_MANAGED = 1u << 4, S_RCVTMO = 1u << 5, S_SNDTMO = 1u << 6
};

#define CHUNK_BITS 12
#define CHUNK      (1u << CHUNK_BITS)
#define NCHUNKS    (((unsigned)INT_MAX >> CHUNK_BITS) + 1)

/* 4 MiB of zeroed pointers in .bss: untouched pages cost no memory. */
static _Atomic(_Atomic uint8_t *) chunks[NCHUNKS];

/* The state byte of fd, made on demand when create; NULL if fd < 0, or no
 * chunk exists and !create, or out of memory. */
static _Atomic uint8_t *slot(int fd, int create)
{
    if (fd < 0)
        return NULL;
    unsigned c = (unsigned)fd >> CHUNK_BITS;
    _Atomic uint8_t *p = atomic_load_explicit(&chunks[c], memory_order_acquire);
    if (!p) {
        if (!create)
            return NULL;
        _Atomic uint8_t *n = calloc(CHUNK, sizeof *n);
        if (!n)
            return NULL;
        _Atomic uint8_t *expect = NULL;
        if (atomic_compare_exchange_strong_explicit(&chunks[c], &expect, n,
                                                    memory_order_acq_rel,
                                                    memory_order_acquire))
            p = n;
        else {
            free(n);
            p = expect;
        }
    }
    return &p[(unsigned)fd & (CHUNK - 1)];
}

static inline unsigned st_get(int fd)
{
    _Atomic uint8_t *s = slot(fd, 0);
    return s ? atomic_load_explicit(s, memory_order_relaxed) : 0;
}

static inline void st_set(int fd, unsigned v)
{
    _Atomic uint8_t *s = slot(fd, v != 0);
    if (s)
        atomic_store_explicit(s, (uint8_t)v, memory_order_relaxed);
}

static inline int in_fiber(void)
{
    return weft_self() != NULL;
}

/* Probes fd on a fiber's first blocking call and makes a socket the user
 * left blocking non-blocking. Returns the state bits, or -errno. */
static int prepare(int fd)
{
    unsigned s = st_get(fd);
    if (s & (S_MANAGED | S_NOSOCK))
        return (int)s;
    if ((s & (S_KNOWN | S_UNB)) == (S_KNOWN | S_UNB) && (s & S_SOCK))
        return (int)s;
    int fl = REAL(fcntl)(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (!(s & (S_SOCK | S_NOSOCK))) {
        int type, err = errno;
        socklen_t len = sizeof type;
        s |= getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 ? S_SOCK : S_NOSOCK;
        errno = err;
    }
    if (!(s & S_KNOWN))
        s |= S_KNOWN | ((fl & O_NONBLOCK) ? S_UNB : 0);
    if ((s & S_SOCK) && !(s & S_UNB)) {
        if (!(fl & O_NONBLOCK) && REAL(fcntl)(fd, F_SETFL, fl | O_NONBLOCK) < 0)
            return -errno;
        s |= S_MANAGED;
    }
    _Atomic uint8_t *p = slot(fd, 1);
    if (!p)
        return -ENOMEM;
    atomic_store_explicit(p, (uint8_t)s, memory_order_relaxed);
    return (int)s;
}

/* Must the call park (or poll, outside fibers) when it would block? */
static inline int blocking(unsigned s)
{
    return (s & (S_MANAGED | S_UNB)) == S_MANAGED;
}

/* The deadline that SO_RCVTIMEO (dir 0) / SO_SNDTIMEO (dir 1) gives a call
 * starting now, as ms for poll(2) (-1: none) and as a weft deadline. */
static int64_t sock_timeout_ms(int fd, unsigned s, int dir)
{
    if (!(s & (dir ? S_SNDTMO : S_RCVTMO)))
        return -1;
    struct timeval tv;
    socklen_t len = sizeof tv;
    int err = errno;
    int r = getsockopt(fd, SOL_SOCKET, dir ? SO_SNDTIMEO : SO_RCVTIMEO, &tv, &len);
    errno = err;
    if (r < 0 || (tv.tv_sec == 0 && tv.tv_usec == 0))
        return -1;
    return (int64_t)tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
}

static int64_t deadline_of(int64_t ms)
{
    return ms < 0 ? WEFT_FOREVER : weft_deadline_ms(ms);
}

/* A negative weft result as libc's -1 and errno; timeouts become tmo_errno. */
static long fail(int r, int tmo_errno)
{
    errno = r == -ETIMEDOUT ? tmo_errno : -r;
    return -1;
}

/* Waits, outside fibers, for a managed socket the user thinks blocking:
 * what the blocking call would have done in the kernel. 0, or -1 with errno
 * (EAGAIN when SO_*TIMEO expired, EINTR when a signal came). */
static int os_wait(int fd, int dir, int64_t deadline)
{
    for (;;) {
        int ms = -1;
        if (deadline != WEFT_FOREVER) {
            int64_t left = deadline - weft_now();
            if (left <= 0) {
                errno = EAGAIN;
                return -1;
            }
            left = (left + 999999) / 1000000;
            ms = left > INT_MAX ? INT_MAX : (int)left;
        }
        struct pollfd p = { .fd = fd, .events = dir ? POLLOUT : POLLIN };
        int n = REAL(poll)(&p, 1, ms);
        if (n < 0)
            return -1;
        if (n > 0)
            return 0;
    }
}

/* ------------------------------------------------------------ I/O */

enum op {
    OP_READ, OP_READV, OP_RECV, OP_RECVFROM, OP_RECVMSG, OP_ACCEPT,
    OP_WRITE, OP_WRITEV, OP_SEND, OP_SENDTO, OP_SENDMSG
};

struct call {
    enum op op;
    int fd, cnt, flags;
    void *buf;
    const void *cbuf;
    size_t len;
    const struct iovec *iov;
    struct msghdr *msg;
    const struct msghdr *cmsg;
    struct sockaddr *addr;
    socklen_t *alen;
    const struct sockaddr *caddr;
    socklen_t clen;
};

/* One attempt; dw is MSG_DONTWAIT for a socket call that must not block. */
static long attempt(const struct call *c, int dw)
{
    switch (c->op) {
    case OP_READ:
        return dw ? REAL(recv)(c->fd, c->buf, c->len, dw) : REAL(read)(c->fd, c->buf, c->len);
    case OP_READV:
        if (dw) {
            struct msghdr m;
            memset(&m, 0, sizeof m);
            m.msg_iov = (struct iovec *)c->iov;
            m.msg_iovlen = (size_t)c->cnt;
            return REAL(recvmsg)(c->fd, &m, dw);
        }
        return REAL(readv)(c->fd, c->iov, c->cnt);
    case OP_RECV:
        return REAL(recv)(c->fd, c->buf, c->len, c->flags | dw);
    case OP_RECVFROM:
        return REAL(recvfrom)(c->fd, c->buf, c->len, c->flags | dw, c->addr, c->alen);
    case OP_RECVMSG:
        return REAL(recvmsg)(c->fd, c->msg, c->flags | dw);
    case OP_ACCEPT:
        return REAL(accept4)(c->fd, c->addr, c->alen, c->flags);
    case OP_WRITE:
        return dw ? REAL(send)(c->fd, c->cbuf, c->len, dw) : REAL(write)(c->fd, c->cbuf, c->len);
    case OP_WRITEV:
        if (dw) {
            struct msghdr m;
            memset(&m, 0, sizeof m);
            m.msg_iov = (struct iovec *)c->iov;
            m.msg_iovlen = (size_t)c->cnt;
            return REAL(sendmsg)(c->fd, &m, dw);
        }
        return REAL(writev)(c->fd, c->iov, c->cnt);
    case OP_SEND:
        return REAL(send)(c->fd, c->cbuf, c->len, c->flags | dw);
    case OP_SENDTO:
        return REAL(sendto)(c->fd, c->cbuf, c->len, c->flags | dw, c->caddr, c->clen);
    default:
        return REAL(sendmsg)(c->fd, c->cmsg, c->flags | dw);
    }
}

/* The hooked call: straight through unless the fd is a socket the user
 * left blocking and that the hook manages; then try, and park (in a fiber)
 * or poll (outside) while it would block. */
static long io_call(const struct call *c)
{
    int dir = c->op >= OP_WRITE;
    unsigned s;
    if (in_fiber()) {
        int r = prepare(c->fd);
        if (r < 0)  /* F_GETFL failed (EBADF): let libc report it its way */
            return attempt(c, 0);
        s = (unsigned)r;
    } else {
        s = st_get(c->fd);
    }
    if (!blocking(s))
        return attempt(c, 0);
    int fib = in_fiber();
    int64_t deadline = deadline_of(sock_timeout_ms(c->fd, s, dir));
    /* A user MSG_DONTWAIT asks for one try, as libc would. */
    if (c->op != OP_ACCEPT && (c->flags & MSG_DONTWAIT))
        return attempt(c, 0);
    for (;;) {
        long n = attempt(c, c->op == OP_ACCEPT ? 0 : MSG_DONTWAIT);
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            return n;
        if (fib) {
            int r = wait_fd_here(c->fd, dir ? WEFT_WRITE : WEFT_READ, deadline);
            if (r < 0)
                return fail(r, EAGAIN);
        } else if (os_wait(c->fd, dir, deadline) < 0) {
            return -1;
        }
    }
}

HOOK ssize_t read(int fd, void *buf, size_t len)
{
    if (!in_fiber() && !blocking(st_get(fd)))
        return REAL(read)(fd, buf, len);
    struct call c = { .op = OP_READ, .fd = fd, .buf = buf, .len = len };
    return io_call(&c);
}

HOOK ssize_t write(int fd, const void *buf, size_t len)
{
    if (!in_fiber() && !blocking(st_get(fd)))
        return REAL(write)(fd, buf, len);
    struct call c = { .op = OP_WRITE, .fd = fd, .cbuf = buf, .len = len };
    return io_call(&c);
}

HOOK ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
    if (!in_fiber() && !blocking(st_get(fd)))
        return REAL(readv)(fd, iov, cnt);
    struct call c = { .op = OP_READV, .fd = fd, .iov = iov, .cnt = cnt };
    return io_call(&c);
}

HOOK ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    if (!in_fiber() && !blocking(st_get(fd)))
        return REAL(writev)(fd, iov, cnt);
    struct call c = { .op = OP_WRITEV, .fd = fd, .iov = iov, .cnt = cnt };
    return io_call(&c);
}

HOOK ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    if (!in_fiber() && !blocking(st_get(fd)))
        return REAL(recv)(fd, buf, len, flags);
    struct call c = { .op = OP_RECV, .fd = fd, .buf = buf, .len = len, .flags = flags };
    return io_call(&c);
}

HOOK ssize_t recvfrom(int fd, void *buf, size_t len, int flags,
                      struct sockaddr *from, socklen_t *fromlen)
{
    if (!in_fiber() && !blocking(st_get(fd)))
        return REAL(recvfrom)(fd, buf, len, flags, from, fromlen);
    struct call c = { .op = OP_RECVFROM, .fd = fd, .buf = buf, .len = len, .flags = flags,
                      .addr = from, .alen = fromlen };
    return io_call(&c);
}

HOOK ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (!in_fiber() && !blocking(st_get(fd)))
        return REAL(recvmsg)(fd, msg, flags);
    struct call c = { .op = OP_RECVMSG, .fd = fd, .msg = msg, .flags = flags };
    return io_call(&c);
}

HOOK ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    if (!in_fiber() && !blocking(st_get(fd)))
        return REAL(send)(fd, buf, len, flags);
    struct call c = { .op = OP_SEND, .fd = fd, .cbuf = buf, .len = len, .flags = flags };
    return io_call(&c);
}

HOOK ssize_t sendto(int fd, const void *buf, size_t len, int flags,
                    const struct sockaddr *to, socklen_t tolen)
{
    if (!in_fiber() && !blocking(st_get(fd)))
        return REAL(sendto)(fd, buf, len, flags, to, tolen);
    struct call c = { .op = OP_SENDTO, .fd = fd, .cbuf = buf, .len = len, .flags = flags,
                      .caddr = to, .clen = tolen };
    return io_call(&c);
}

HOOK ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    if (!in_fiber() && !blocking(st_get(fd)))
        return REAL(sendmsg)(fd, msg, flags);
    struct call c = { .op = OP_SENDMSG, .fd = fd, .cmsg = msg, .flags = flags };
    return io_call(&c);
}

/* accept4 with the user's own flags: a new socket never inherits
 * O_NONBLOCK, so the result is exactly what the user asked for. */
HOOK int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags)
{
    int r;
    if (!in_fiber() && !blocking(st_get(fd))) {
        r = REAL(accept4)(fd, addr, alen, flags);
    } else {
        struct call c = { .op = OP_ACCEPT, .fd = fd, .addr = addr, .alen = alen,
                          .flags = flags };
        r = (int)io_call(&c);
    }
    if (r >= 0)
        st_set(r, 0);
    return r;
}

HOOK int accept(int fd, struct sockaddr *addr, socklen_t *alen)
{
    return accept4(fd, addr, alen, 0);
}

/* A connect that would block finishes when the socket turns writable;
 * SO_ERROR then holds its outcome. */
HOOK int connect(int fd, const struct sockaddr *addr, socklen_t alen)
{
    int fib = in_fiber();
    unsigned s;
    if (fib) {
        int r = prepare(fd);
        if (r < 0)
            return REAL(connect)(fd, addr, alen);
        s = (unsigned)r;
    } else {
        s = st_get(fd);
    }
    if (!blocking(s))
        return REAL(connect)(fd, addr, alen);
    int64_t deadline = deadline_of(sock_timeout_ms(fd, s, 1));
    for (;;) {
        if (REAL(connect)(fd, addr, alen) == 0)
            return 0;
        if (errno == EAGAIN) {
            /* A Unix listener's backlog is full: a blocking connect would
             * wait for room, which poll cannot report. Retry shortly. */
            if (deadline != WEFT_FOREVER && weft_now() >= deadline)
                return -1;
            if (fib) {
                int r = sleep_here(weft_deadline_ms(1));
                if (r < 0)
                    return (int)fail(r, EAGAIN);
            } else {
                struct timespec ms = { 0, 1000000 };
                REAL(nanosleep)(&ms, NULL);
            }
            continue;
        }
        if (errno != EINPROGRESS)
            return -1;
        break;
    }
    int r = fib ? wait_fd_here(fd, WEFT_WRITE, deadline)
                : (os_wait(fd, 1, deadline) < 0 ? -errno : 1);
    if (r < 0)
        return (int)fail(r == -EAGAIN ? -ETIMEDOUT : r, EINPROGRESS);
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        return -1;
    if (soerr) {
        errno = soerr;
        return -1;
    }
    return 0;
}

HOOK int close(int fd)
{
    st_set(fd, 0);
    if (!in_fiber())
        return REAL(close)(fd);
    /* weft_close wakes fibers parked on fd (-EBADF) and forgets it. */
    int r = weft_close(fd);
    return r < 0 ? (int)fail(r, ETIMEDOUT) : 0;
}

HOOK int socket(int domain, int type, int proto)
{
    int fd = REAL(socket)(domain, type, proto);
    if (fd >= 0)
        st_set(fd, 0);
    return fd;
}

HOOK int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    int r = REAL(setsockopt)(fd, level, name, val, len);
    if (r == 0 && level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
        _Atomic uint8_t *p = slot(fd, 1);
        if (p)
            atomic_fetch_or_explicit(p, (uint8_t)(name == SO_RCVTIMEO ? S_RCVTMO : S_SNDTMO),
                                     memory_order_relaxed);
    }
    return r;
}

/* ------------------------------------------------------------ flags */

/* Which fcntl commands take an int, which take nothing (the rest take a
 * pointer), so the variadic argument is read with its real type. */
static int fcntl_arg_kind(int cmd)
{
    switch (cmd) {
    case F_GETFD: case F_GETFL: case F_GETOWN:
#ifdef F_GETSIG
    case F_GETSIG:
#endif
#ifdef F_GETLEASE
    case F_GETLEASE:
#endif
#ifdef F_GETPIPE_SZ
    case F_GETPIPE_SZ:
#endif
#ifdef F_GET_SEALS
    case F_GET_SEALS:
#endif
        return 0;
    case F_DUPFD: case F_DUPFD_CLOEXEC: case F_SETFD: case F_SETFL: case F_SETOWN:
#ifdef F_SETSIG
    case F_SETSIG:
#endif
#ifdef F_SETLEASE
    case F_SETLEASE:
#endif
#ifdef F_NOTIFY
    case F_NOTIFY:
#endif
#ifdef F_SETPIPE_SZ
    case F_SETPIPE_SZ:
#endif
#ifdef F_ADD_SEALS
    case F_ADD_SEALS:
#endif
        return 1;
    default:
        return 2;
    }
}

static int fcntl_common(int (*realfn)(int, int, ...), int fd, int cmd, va_list ap)
{
    int kind = fcntl_arg_kind(cmd);
    if (kind == 2)
        return realfn(fd, cmd, va_arg(ap, void *));
    if (kind == 0) {
        int r = realfn(fd, cmd);
        /* The user's view of a socket the hook made non-blocking. */
        if (cmd == F_GETFL && r >= 0 && blocking(st_get(fd)))
            r &= ~O_NONBLOCK;
        return r;
    }
    int arg = va_arg(ap, int);
    if (cmd == F_SETFL) {
        unsigned s = st_get(fd);
        if (s & S_MANAGED) {
            int r = realfn(fd, cmd, arg | O_NONBLOCK);
            if (r == 0)
                st_set(fd, (s & ~S_UNB) | ((arg & O_NONBLOCK) ? S_UNB : 0));
            return r;
        }
        int r = realfn(fd, cmd, arg);
        if (r == 0)
            st_set(fd, (s & ~S_UNB) | S_KNOWN | ((arg & O_NONBLOCK) ? S_UNB : 0));
        return r;
    }
    int r = realfn(fd, cmd, arg);
    if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))
        st_set(r, st_get(fd));  /* same open file, same O_NONBLOCK */
    return r;
}

HOOK int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int r = fcntl_common(REAL(fcntl), fd, cmd, ap);
    va_end(ap);
    return r;
}

HOOK int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int r = fcntl_common(REAL(fcntl64), fd, cmd, ap);
    va_end(ap);
    return r;
}

HOOK int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (req != FIONBIO)
        return REAL(ioctl)(fd, req, arg);
    unsigned s = st_get(fd);
    int on = *(const int *)arg;
    int r;
    if (s & S_MANAGED) {
        int one = 1;
        r = REAL(ioctl)(fd, req, &one);
    } else {
        r = REAL(ioctl)(fd, req, arg);
        s |= S_KNOWN;
    }
    if (r == 0)
        st_set(fd, (s & ~S_UNB) | (on ? S_UNB : 0));
    return r;
}

/* ------------------------------------------------------------ poll, select */

/* poll(2) in a fiber: ask the kernel without waiting; if nothing is ready,
 * wait on a private epoll set holding every descriptor (one descriptor for
 * weft to watch, however many the caller passed) and ask again. */
static int fiber_poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    int64_t deadline = timeout < 0 ? WEFT_FOREVER : weft_deadline_ms(timeout);
    int n = REAL(poll)(fds, nfds, 0);
    if (n != 0 || timeout == 0)
        return n;
    int ep = -1;
    if (nfds > 0) {
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0)  /* out of descriptors: wait as libc would, on the worker */
            return REAL(poll)(fds, nfds, timeout);
        for (nfds_t i = 0; i < nfds; i++) {
            if (fds[i].fd < 0)
                continue;
            struct epoll_event ev = { .data.u64 = i };
            ev.events = ((fds[i].events & (POLLIN | POLLRDNORM)) ? EPOLLIN : 0) |
                        ((fds[i].events & (POLLOUT | POLLWRNORM)) ? EPOLLOUT : 0) |
                        ((fds[i].events & POLLPRI) ? EPOLLPRI : 0);
            if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i].fd, &ev) < 0 && errno == EEXIST) {
                ev.events = EPOLLIN | EPOLLOUT | EPOLLPRI;  /* listed twice: any wakes */
                epoll_ctl(ep, EPOLL_CTL_MOD, fds[i].fd, &ev);
            }
            /* EPERM (a regular file) cannot happen: poll reported it ready. */
        }
    }
    int err = 0;
    for (;;) {
        int r = ep >= 0 ? wait_fd_here(ep, WEFT_READ, deadline) : sleep_here(deadline);
        if (ep < 0 && r == 0)
            r = -ETIMEDOUT;
        if (r < 0 && r != -ETIMEDOUT) {
            err = -r;
            n = -1;
            break;
        }
        n = REAL(poll)(fds, nfds, 0);
        if (n != 0 || r == -ETIMEDOUT)
            break;
    }
    if (ep >= 0) {
        int e = errno;
        weft_close(ep);
        errno = e;
    }
    if (err)
        errno = err;
    return n;
}

HOOK int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    if (timeout == 0 || !in_fiber())
        return REAL(poll)(fds, nfds, timeout);
    return fiber_poll(fds, nfds, timeout);
}

/* select(2) in a fiber through fiber_poll; the timeout is updated with the
 * time not slept, as Linux does. */
HOOK int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
    /* Invalid arguments fail at once in the real call; sets larger than
     * FD_SETSIZE (legal with user-allocated sets) are passed through. */
    if (!in_fiber() || (tv && tv->tv_sec == 0 && tv->tv_usec == 0) || nfds < 0 ||
        nfds > FD_SETSIZE ||
        (tv && (tv->tv_sec < 0 || tv->tv_usec < 0 || tv->tv_usec >= 1000000)))
        return REAL(select)(nfds, rd, wr, ex, tv);
    struct pollfd p[FD_SETSIZE];
    nfds_t n = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev = (short)((rd && FD_ISSET(fd, rd) ? POLLIN : 0) |
                           (wr && FD_ISSET(fd, wr) ? POLLOUT : 0) |
                           (ex && FD_ISSET(fd, ex) ? POLLPRI : 0));
        if (ev)
            p[n++] = (struct pollfd){ .fd = fd, .events = ev };
    }
    int64_t start = weft_now();
    int ms = -1;
    if (tv) {
        int64_t t = (int64_t)tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000;
        ms = t > INT_MAX ? INT_MAX : (int)t;
    }
    int r = fiber_poll(p, n, ms);
    if (r < 0)
        return -1;
    if (tv) {
        int64_t left = (int64_t)tv->tv_sec * 1000000000 + (int64_t)tv->tv_usec * 1000 -
                       (weft_now() - start);
        if (left < 0)
            left = 0;
        tv->tv_sec = (time_t)(left / 1000000000);
        tv->tv_usec = (suseconds_t)(left % 1000000000 / 1000);
    }
    for (nfds_t i = 0; i < n; i++)
        if (p[i].revents & POLLNVAL) {
            errno = EBADF;
            return -1;
        }
    int count = 0;
    for (nfds_t i = 0; i < n; i++) {
        int fd = p[i].fd;
        short re = p[i].revents;
        if (rd && FD_ISSET(fd, rd)) {
            if (re & (POLLIN | POLLHUP | POLLERR))
                count++;
            else
                FD_CLR(fd, rd);
        }
        if (wr && FD_ISSET(fd, wr)) {
            if (re & (POLLOUT | POLLERR))
                count++;
            else
                FD_CLR(fd, wr);
        }
        if (ex && FD_ISSET(fd, ex)) {
            if (re & POLLPRI)
                count++;
            else
                FD_CLR(fd, ex);
        }
    }
    return count;
}

/* ------------------------------------------------------------ sleeping */

/* Sleeps in a fiber until now + ns; 0, or -ECANCELED with *left_ns set. */
static int fiber_sleep_ns(int64_t ns, int64_t *left_ns)
{
    int64_t start = weft_now();
    int64_t deadline = ns > INT64_MAX - start ? WEFT_FOREVER : start + ns;
    int r = sleep_here(deadline);
    if (r < 0 && left_ns) {
        int64_t left = ns - (weft_now() - start);
        *left_ns = left < 0 ? 0 : left;
    }
    return r;
}

HOOK int nanosleep(const struct timespec *req, struct timespec *rem)
{
    if (!in_fiber())
        return REAL(nanosleep)(req, rem);
    if (!req) {
        errno = EFAULT;
        return -1;
    }
    if (req->tv_nsec < 0 || req->tv_nsec >= 1000000000 || req->tv_sec < 0) {
        errno = EINVAL;
        return -1;
    }
    int64_t ns = req->tv_sec > INT64_MAX / 1000000000 - 1
                     ? INT64_MAX : (int64_t)req->tv_sec * 1000000000 + req->tv_nsec;
    int64_t left = 0;
    int r = fiber_sleep_ns(ns, &left);
    if (r < 0) {
        if (rem) {
            rem->tv_sec = (time_t)(left / 1000000000);
            rem->tv_nsec = (long)(left % 1000000000);
        }
        return (int)fail(r, EINTR);
    }
    return 0;
}

HOOK int usleep(useconds_t us)
{
    if (!in_fiber())
        return REAL(usleep)(us);
    int r = fiber_sleep_ns((int64_t)us * 1000, NULL);
    return r < 0 ? (int)fail(r, EINTR) : 0;
}

HOOK unsigned sleep(unsigned s)
{
    if (!in_fiber())
        return REAL(sleep)(s);
    int64_t left = 0;
    if (fiber_sleep_ns((int64_t)s * 1000000000, &left) < 0)
        return (unsigned)((left + 999999999) / 1000000000);
    return 0;
}

/* ------------------------------------------------------------ names */

struct gai {
    const char *node, *service;
    const struct addrinfo *hints;
    struct addrinfo *res;
    int rc, err;
};

static void *gai_run(void *arg)
{
    struct gai *g = arg;
    g->rc = REAL(getaddrinfo)(g->node, g->service, g->hints, &g->res);
    g->err = errno;
    return NULL;
}

/* Resolving node needs no name service: answered on the spot. */
static int numeric(const char *node, const struct addrinfo *hints)
{
    unsigned char a[sizeof(struct in6_addr)];
    return !node || (hints && (hints->ai_flags & AI_NUMERICHOST)) ||
           inet_pton(AF_INET, node, a) == 1 || inet_pton(AF_INET6, node, a) == 1;
}

/* On an offload helper so a slow resolver parks only the calling fiber;
 * the EAI_ code, *res and (for EAI_SYSTEM) errno are the real call's. */
HOOK int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                     struct addrinfo **res)
{
    if (!in_fiber() || numeric(node, hints))
        return REAL(getaddrinfo)(node, service, hints, res);
    struct gai g = { .node = node, .service = service, .hints = hints };
    int r = offload_here(gai_run, &g);
    if (r < 0) {
        if (r == -ECANCELED) {
            errno = ECANCELED;
            return EAI_SYSTEM;
        }
        return r == -ENOMEM ? EAI_MEMORY : EAI_AGAIN;
    }
    if (g.rc == 0)
        *res = g.res;
    else if (g.rc == EAI_SYSTEM)
        errno = g.err;
    return g.rc;
}
