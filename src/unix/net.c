/* net.c - socket conveniences: "host:port" parsing and resolution,
 * weft_tcp_listen (+ SO_REUSEPORT), weft_tcp_connect, weft_udp_bind, Unix
 * stream sockets and weft_local_addr.
 *
 * Parsing is strict so that typos fail loudly (-EINVAL) rather than bind
 * somewhere unexpected: exactly one ':' outside brackets, a decimal port
 * 0..65535, IPv6 only inside brackets. Numeric hosts are converted on the
 * spot; anything else is a name and goes to weft_getaddrinfo, which runs
 * on an offload helper so a slow resolver never stalls a worker (and
 * therefore needs a fiber). Every socket made here is non-blocking and
 * close-on-exec from birth, and is announced to io.c (weft__io_adopt) so
 * that stale state kept for an earlier descriptor with the same number is
 * dropped.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* errno, looked up afresh at every use: weft_tcp_connect and
 * weft_unix_connect park, and the fiber may resume on another worker
 * thread, while glibc declares __errno_location() const (the compiler may
 * reuse an address computed before the park). */
#undef errno
#define errno (*weft__errno_at())

#define MAX_ADDRS 8

struct addrs {
    int n;
    struct sockaddr_storage a[MAX_ADDRS];
    socklen_t len[MAX_ADDRS];
};

enum { FOR_BIND, FOR_CONNECT };

static int parse_port(const char *s, unsigned *port)
{
    if (!*s || strlen(s) > 5)
        return -EINVAL;
    unsigned v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(*s - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *port = v;
    return 0;
}

static int valid_name(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 253 || strspn(h, "0123456789.") == n)
        return 0;   /* all digits and dots but not an IPv4 address: a typo */
    for (; *h; h++) {
        char c = *h;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

static void add4(struct addrs *out, const struct in_addr *ip, unsigned port)
{
    struct sockaddr_in *s = (struct sockaddr_in *)&out->a[out->n];
    memset(s, 0, sizeof *s);
    s->sin_family = AF_INET;
    s->sin_port = htons((uint16_t)port);
    s->sin_addr = *ip;
    out->len[out->n++] = sizeof *s;
}

/* Splits and resolves hostport into up to MAX_ADDRS socket addresses. */
static int resolve(const char *hostport, int socktype, int purpose, struct addrs *out)
{
    if (!hostport)
        return -EINVAL;
    size_t total = strlen(hostport);
    if (total == 0 || total > 300)
        return -EINVAL;
    char host[302];
    const char *portstr;
    int bracketed = 0;
    if (hostport[0] == '[') {
        const char *close = strchr(hostport, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        size_t hl = (size_t)(close - hostport - 1);
        memcpy(host, hostport + 1, hl);
        host[hl] = 0;
        portstr = close + 2;
        bracketed = 1;
        if (hl == 0 || !strchr(host, ':'))
            return -EINVAL;     /* brackets are for IPv6 addresses only */
    } else {
        const char *colon = strrchr(hostport, ':');
        if (!colon)
            return -EINVAL;
        size_t hl = (size_t)(colon - hostport);
        memcpy(host, hostport, hl);
        host[hl] = 0;
        portstr = colon + 1;
        if (strchr(host, ':'))
            return -EINVAL;     /* an IPv6 address needs brackets */
    }
    unsigned port;
    int err = parse_port(portstr, &port);
    if (err)
        return err;
    out->n = 0;

    if (!bracketed && (host[0] == 0 || strcmp(host, "*") == 0)) {
        struct in_addr ip;
        ip.s_addr = htonl(purpose == FOR_BIND ? INADDR_ANY : INADDR_LOOPBACK);
        add4(out, &ip, port);
        return 0;
    }
    if (!bracketed) {
        struct in_addr ip;
        if (inet_pton(AF_INET, host, &ip) == 1) {
            add4(out, &ip, port);
            return 0;
        }
    } else if (!strchr(host, '%')) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->a[0];
        memset(s, 0, sizeof *s);
        if (inet_pton(AF_INET6, host, &s->sin6_addr) != 1)
            return -EINVAL;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons((uint16_t)port);
        out->len[0] = sizeof *s;
        out->n = 1;
        return 0;
    }

    /* A scoped IPv6 address ("fe80::1%eth0") or a name. */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = socktype;
    hints.ai_flags = AI_NUMERICSERV | (purpose == FOR_BIND ? AI_PASSIVE : AI_ADDRCONFIG);
    char portbuf[8];
    snprintf(portbuf, sizeof portbuf, "%u", port);
    if (bracketed) {
        /* Numeric only: no resolver traffic, safe on the worker. */
        hints.ai_flags |= AI_NUMERICHOST;
        hints.ai_family = AF_INET6;
        int rc = getaddrinfo(host, portbuf, &hints, &res);
        if (rc != 0)
            return -EINVAL;
    } else {
        if (!valid_name(host))
            return -EINVAL;
        err = weft_getaddrinfo(host, portbuf, &hints, &res);
        if (err)
            return err;
    }
    for (struct addrinfo *ai = res; ai && out->n < MAX_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof out->a[0])
            continue;
        memcpy(&out->a[out->n], ai->ai_addr, ai->ai_addrlen);
        out->len[out->n++] = ai->ai_addrlen;
    }
    freeaddrinfo(res);
    return out->n ? 0 : -ENOENT;
}

static int new_socket(int family, int type)
{
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* Protocol 0 makes an IP stream socket TCP. A Unix stream socket is
     * not: its reads stop short with data still queued (after a passed
     * descriptor, between writers with SO_PASSCRED), so io.c must not
     * take a short read on it for "drained". */
    int tcp = type == SOCK_STREAM && (family == AF_INET || family == AF_INET6);
    weft__io_adopt(weft__worker(), fd, WEFT__IO_SOCK | (tcp ? WEFT__IO_TCP : 0));
    return fd;
}

static int fail(int fd, int err)
{
    weft_close(fd);
    return err;
}

static int bind_to(const struct addrs *as, int type, int backlog, int reuseport)
{
    int fd = new_socket(as->a[0].ss_family, type);
    if (fd < 0)
        return fd;
    int one = 1;
    if (type == SOCK_STREAM &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        return fail(fd, -errno);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        return fail(fd, -errno);
    if (bind(fd, (const struct sockaddr *)&as->a[0], as->len[0]) != 0)
        return fail(fd, -errno);
    if (type == SOCK_STREAM && listen(fd, backlog > 0 ? backlog : SOMAXCONN) != 0)
        return fail(fd, -errno);
    return fd;
}

static int tcp_listen(const char *hostport, int backlog, int reuseport)
{
    struct addrs as;
    int err = resolve(hostport, SOCK_STREAM, FOR_BIND, &as);
    if (err)
        return err;
    return bind_to(&as, SOCK_STREAM, backlog, reuseport);
}

int weft_tcp_listen(const char *hostport, int backlog)
{
    return tcp_listen(hostport, backlog, 0);
}

int weft_tcp_listen_reuseport(const char *hostport, int backlog)
{
    return tcp_listen(hostport, backlog, 1);
}

int weft_udp_bind(const char *hostport)
{
    struct addrs as;
    int err = resolve(hostport, SOCK_DGRAM, FOR_BIND, &as);
    if (err)
        return err;
    return bind_to(&as, SOCK_DGRAM, 0, 0);
}

int weft_tcp_connect(const char *hostport, int64_t deadline)
{
    if (!weft__self(weft__worker()))
        return -EPERM;
    struct addrs as;
    int err = resolve(hostport, SOCK_STREAM, FOR_CONNECT, &as);
    if (err)
        return err;
    for (int i = 0; i < as.n; i++) {
        int fd = new_socket(as.a[i].ss_family, SOCK_STREAM);
        if (fd < 0)
            return fd;
        err = weft_connect(fd, (const struct sockaddr *)&as.a[i], as.len[i], deadline);
        if (err == 0) {
            /* Small request/response exchanges are what fibers are used
             * for; Nagle would hold each one back by an RTT. */
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        weft_close(fd);
        if (err == -ETIMEDOUT || err == -ECANCELED)
            break;
    }
    return err;
}

static int unix_addr(const char *path, struct sockaddr_un *sa, socklen_t *len)
{
    if (!path || !*path)
        return -EINVAL;
    size_t n = strlen(path);
    if (n >= sizeof sa->sun_path)
        return -ENAMETOOLONG;
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, n);
    if (path[0] == '@')
        sa->sun_path[0] = 0;    /* Linux abstract namespace */
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] != '@'));
    return 0;
}

int weft_unix_listen(const char *path, int backlog)
{
    struct sockaddr_un sa;
    socklen_t len;
    int err = unix_addr(path, &sa, &len);
    if (err)
        return err;
    int fd = new_socket(AF_UNIX, SOCK_STREAM);
    if (fd < 0)
        return fd;
    if (bind(fd, (struct sockaddr *)&sa, len) != 0 ||
        listen(fd, backlog > 0 ? backlog : SOMAXCONN) != 0)
        return fail(fd, -errno);
    return fd;
}

int weft_unix_connect(const char *path, int64_t deadline)
{
    if (!weft__self(weft__worker()))
        return -EPERM;
    struct sockaddr_un sa;
    socklen_t len;
    int err = unix_addr(path, &sa, &len);
    if (err)
        return err;
    int fd = new_socket(AF_UNIX, SOCK_STREAM);
    if (fd < 0)
        return fd;
    err = weft_connect(fd, (struct sockaddr *)&sa, len, deadline);
    return err ? fail(fd, err) : fd;
}

int weft_local_addr(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (!buf)
        return -EINVAL;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return -errno;
    char ip[INET6_ADDRSTRLEN];
    int n;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        n = snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(s->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        n = snprintf(buf, len, "[%s]:%u", ip, (unsigned)ntohs(s->sin6_port));
    } else if (ss.ss_family == AF_UNIX) {
        const struct sockaddr_un *s = (const struct sockaddr_un *)&ss;
        size_t pl = sl > offsetof(struct sockaddr_un, sun_path)
                        ? sl - offsetof(struct sockaddr_un, sun_path) : 0;
        if (pl > 0 && s->sun_path[0] == 0)
            n = snprintf(buf, len, "@%.*s", (int)(pl - 1), s->sun_path + 1);
        else
            n = snprintf(buf, len, "%.*s", (int)strnlen(s->sun_path, pl), s->sun_path);
    } else {
        return -EAFNOSUPPORT;
    }
    if (n < 0 || (size_t)n >= len)
        return -ENOSPC;
    return n;
}
