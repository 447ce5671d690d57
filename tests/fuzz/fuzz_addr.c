/* fuzz_addr.c - libFuzzer target for the "host:port" parser behind
 * weft_tcp_listen, weft_tcp_connect and weft_udp_bind (resolve() in
 * src/unix/net.c).
 *
 * net.c is compiled into this file so the static parser is reachable
 * without widening the library's internal interface. Its few links to the
 * rest of weft are stubbed: name lookups (weft_getaddrinfo) answer
 * -ENOENT, so the fuzzer never sends resolver traffic and stays
 * deterministic. Checked: no memory error (ASan), and every result is in
 * the documented set with a well-formed address list.
 */
#include "unix/net.c"

#include <stdlib.h>

/* ---- stubs for what net.c needs from the rest of weft (never reached by
 * resolve() except weft_getaddrinfo). */
struct weft__worker *weft__worker(void) { return NULL; }
int *weft__errno_at(void) { return __errno_location(); }  /* errno is this, in net.c */
void weft__io_adopt(struct weft__worker *w, int fd, int flags) { (void)w, (void)fd, (void)flags; }
int weft_close(int fd) { return close(fd) == 0 ? 0 : -errno; }
int weft_connect(int fd, const struct sockaddr *a, socklen_t l, int64_t d)
{
    (void)fd, (void)a, (void)l, (void)d;
    return -ECONNREFUSED;
}
int weft_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                     struct addrinfo **res)
{
    /* Only names that passed valid_name() get here. */
    if (!valid_name(node) || !service || !hints)
        abort();
    *res = NULL;
    return -ENOENT;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 400)
        return 0;
    /* The first byte picks the purpose and socket type; the rest is the
     * string (NUL-terminated copy, so embedded NULs just cut it short). */
    int purpose = size && (data[0] & 1) ? FOR_CONNECT : FOR_BIND;
    int type = size && (data[0] & 2) ? SOCK_DGRAM : SOCK_STREAM;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    if (size)
        memcpy(s, data + 1, size - 1);
    s[size ? size - 1 : 0] = 0;

    struct addrs out;
    memset(&out, 0xa5, sizeof out);
    int r = resolve(s, type, purpose, &out);
    if (r == 0) {
        if (out.n < 1 || out.n > MAX_ADDRS)
            abort();
        for (int i = 0; i < out.n; i++) {
            int fam = out.a[i].ss_family;
            if (!(fam == AF_INET && out.len[i] == sizeof(struct sockaddr_in)) &&
                !(fam == AF_INET6 && out.len[i] == sizeof(struct sockaddr_in6)))
                abort();
        }
        /* The port is the decimal after the last ':' (strict parsing). */
        const char *colon = strrchr(s, ':');
        if (!colon)
            abort();
        unsigned long want = strtoul(colon + 1, NULL, 10);
        unsigned got = ntohs(((struct sockaddr_in *)&out.a[0])->sin_port);
        if (want != got)
            abort();
    } else if (r != -EINVAL && r != -ENOENT) {
        abort();
    }
    free(s);
    return 0;
}
