/* fault.c - the fault-injection countdown behind fault.h (compiled only
 * with -DWEFT_FAULT_INJECTION=ON; see fault.h for the design).
 *
 * State is global and atomic: offload helper threads allocate too, and a
 * test arms the countdown from its own thread. One failure per arming, so
 * a walk over N = 1, 2, ... fails each call site in turn and every run
 * tests exactly one error path.
 */
#include "fault.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Atomic unsigned long counts[WEFT__FS_COUNT];
static _Atomic long countdown;      /* > 0: calls left before the failure */
static _Atomic int fail_err;        /* 0: the site's natural errno */
static _Atomic unsigned mask;       /* sites that count; 0: all */
static _Atomic int fired_site = -1; /* where the armed failure happened */
static _Atomic int env_read;
static _Atomic int sticky_on;

static const char *const names[WEFT__FS_COUNT] = {
    "mmap", "madvise", "malloc", "calloc", "realloc", "epoll_ctl",
    "epoll_create1", "eventfd", "accept", "pthread_create", "signalfd",
};

/* What the real call would most plausibly fail with. */
static int natural_errno(enum weft__fault_site s)
{
    switch (s) {
    case WEFT__FS_EPOLL_CREATE: case WEFT__FS_EVENTFD:
    case WEFT__FS_ACCEPT: case WEFT__FS_SIGNALFD: return EMFILE;
    case WEFT__FS_PTHREAD_CREATE: return EAGAIN;
    default: return ENOMEM;
    }
}

/* WEFT_FAULT=N[:errno] arms the countdown once, for runs outside the tests
 * (e.g. an example under a chosen failure). */
static void read_env(void)
{
    int expect = 0;
    if (!atomic_compare_exchange_strong(&env_read, &expect, 1))
        return;
    const char *e = getenv("WEFT_FAULT");
    if (!e || !*e)
        return;
    char *end;
    unsigned long n = strtoul(e, &end, 10);
    int err = *end == ':' ? atoi(end + 1) : 0;
    weft__fault_arm(n, err, 0);
}

int weft__fault_hit(enum weft__fault_site site)
{
    int saved = errno;
    read_env();
    atomic_fetch_add_explicit(&counts[site], 1, memory_order_relaxed);
    unsigned m = atomic_load(&mask);
    if (m && !(m & (1u << site))) {
        errno = saved;
        return 0;
    }
    if (atomic_load(&sticky_on) && atomic_load(&fired_site) >= 0) {
        int err = atomic_load(&fail_err);
        errno = err ? err : natural_errno(site);
        return errno;
    }
    if (atomic_load(&countdown) <= 0 || atomic_fetch_sub(&countdown, 1) != 1) {
        errno = saved;
        return 0;
    }
    atomic_store(&fired_site, (int)site);
    int err = atomic_load(&fail_err);
    errno = err ? err : natural_errno(site);
    return errno;
}

void weft__fault_arm(unsigned long nth, int err, unsigned site_mask)
{
    atomic_store(&env_read, 1);
    atomic_store(&countdown, 0);
    atomic_store(&fail_err, err);
    atomic_store(&mask, site_mask);
    atomic_store(&fired_site, -1);
    atomic_store(&sticky_on, 0);
    atomic_store(&countdown, (long)nth);
}

void weft__fault_sticky(int sticky)
{
    atomic_store(&sticky_on, sticky);
}

int weft__fault_fired(int *site)
{
    int s = atomic_load(&fired_site);
    if (site)
        *site = s;
    return s >= 0;
}

unsigned long weft__fault_count(enum weft__fault_site site)
{
    return atomic_load(&counts[site]);
}

const char *weft__fault_site_name(int site)
{
    return site >= 0 && site < WEFT__FS_COUNT ? names[site] : "?";
}
