/* fault.h - the fault-injection layer (private; testing builds only).
 *
 * Every call weft makes that can fail for lack of a resource (memory,
 * mappings, descriptors, threads) goes through one of the weft__xxx()
 * macros below. In a normal build they are the plain call, so the layer
 * costs nothing. Built with -DWEFT_FAULT_INJECTION=ON they first ask
 * weft__fault_hit() whether this call is the one to fail: a single global
 * countdown, armed by a test (weft__fault_arm) or by the environment
 * (WEFT_FAULT=N[:errno]), makes the Nth call from then on fail with the
 * chosen errno (or the call's natural one), exactly once. Tests walk N
 * through 1, 2, ... so that every call site fails in turn (tests/check_fault.c).
 * (Unrelated to debug.c's weft__fault_install, the guard-page SIGSEGV
 * handler: "fault" there is a memory fault, here an injected failure.)
 */
#ifndef WEFT_FAULT_H
#define WEFT_FAULT_H

#include <errno.h>

enum weft__fault_site {
    WEFT__FS_MMAP, WEFT__FS_MADVISE, WEFT__FS_MALLOC, WEFT__FS_CALLOC,
    WEFT__FS_REALLOC, WEFT__FS_EPOLL_CTL, WEFT__FS_EPOLL_CREATE,
    WEFT__FS_EVENTFD, WEFT__FS_ACCEPT, WEFT__FS_PTHREAD_CREATE,
    WEFT__FS_SIGNALFD, WEFT__FS_COUNT
};

#ifdef WEFT_FAULT_INJECTION

/* 0: let the call run. Otherwise the errno the call must fail with; errno
 * is already set to it. Counts every call per site (weft__fault_count). */
int weft__fault_hit(enum weft__fault_site site);

/* Testing API. arm: the nth call (1-based) counted from now at a site in
 * site_mask (bit per site; 0 = every site) fails once with err (0: the
 * site's natural errno). nth 0 disarms. fired: whether the armed failure
 * happened, and at which site (through *site, may be NULL). */
void weft__fault_arm(unsigned long nth, int err, unsigned site_mask);
/* sticky 1: once the armed failure fired, every later counted call fails
 * too (until the next arm): exercises error paths that fail again while
 * cleaning up. Reset to 0 by weft__fault_arm. */
void weft__fault_sticky(int sticky);
int  weft__fault_fired(int *site);
unsigned long weft__fault_count(enum weft__fault_site site);
const char *weft__fault_site_name(int site);

#define WEFT__FI(site, fail, call) (weft__fault_hit(site) ? (fail) : (call))
#define weft__malloc(n)         WEFT__FI(WEFT__FS_MALLOC, NULL, malloc(n))
#define weft__calloc(n, s)      WEFT__FI(WEFT__FS_CALLOC, NULL, calloc(n, s))
#define weft__realloc(p, n)     WEFT__FI(WEFT__FS_REALLOC, NULL, realloc(p, n))
#define weft__mmap(...)         WEFT__FI(WEFT__FS_MMAP, MAP_FAILED, mmap(__VA_ARGS__))
#define weft__madvise(...)      WEFT__FI(WEFT__FS_MADVISE, -1, madvise(__VA_ARGS__))
#define weft__epoll_ctl(...)    WEFT__FI(WEFT__FS_EPOLL_CTL, -1, epoll_ctl(__VA_ARGS__))
#define weft__epoll_create1(f)  WEFT__FI(WEFT__FS_EPOLL_CREATE, -1, epoll_create1(f))
#define weft__eventfd(v, f)     WEFT__FI(WEFT__FS_EVENTFD, -1, eventfd(v, f))
#define weft__accept4(...)      WEFT__FI(WEFT__FS_ACCEPT, -1, accept4(__VA_ARGS__))
#define weft__signalfd(...)     WEFT__FI(WEFT__FS_SIGNALFD, -1, signalfd(__VA_ARGS__))
/* pthread_create reports its error as the return value, not in errno. */
#define weft__pthread_create(...) \
    (weft__fault_hit(WEFT__FS_PTHREAD_CREATE) ? errno : pthread_create(__VA_ARGS__))

#else /* the plain calls: no cost */

#define WEFT__FI(site, fail, call) (call)
#define weft__malloc(n)           malloc(n)
#define weft__calloc(n, s)        calloc(n, s)
#define weft__realloc(p, n)       realloc(p, n)
#define weft__mmap(...)           mmap(__VA_ARGS__)
#define weft__madvise(...)        madvise(__VA_ARGS__)
#define weft__epoll_ctl(...)      epoll_ctl(__VA_ARGS__)
#define weft__epoll_create1(f)    epoll_create1(f)
#define weft__eventfd(v, f)       eventfd(v, f)
#define weft__accept4(...)        accept4(__VA_ARGS__)
#define weft__signalfd(...)       signalfd(__VA_ARGS__)
#define weft__pthread_create(...) pthread_create(__VA_ARGS__)

#endif
#endif
