/* stack_mem.c - Linux's side of src/os.h for stack memory: anonymous
 * mappings committed on first touch, MADV_DONTNEED to give pages back,
 * the two kinds of guard page (MADV_GUARD_INSTALL, which costs no map
 * entry, probed once; mprotect, which splits the mapping), and the map
 * budget read from /proc. The policy that chooses among them is portable
 * (src/stack.c).
 */
#include "os.h"
#include "fault.h"
#include "sys.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102      /* Linux 6.13; older headers lack it */
#endif

static _Atomic int light_ok = -1;     /* -1 not probed, 0 no, 1 yes */

size_t weft__page_size(void)
{
    /* Runtimes on several threads may ask first at the same time. */
    static _Atomic size_t page;
    size_t p = atomic_load_explicit(&page, memory_order_relaxed);
    if (!p) {
        p = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&page, p, memory_order_relaxed);
    }
    return p;
}

void *weft__os_stack_map(size_t len, int *err)
{
    void *p = weft__mmap(NULL, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) {
        *err = -errno;
        return NULL;
    }
    /* A transparent huge page would turn one touched stack page into 2 MiB. */
    (void)madvise(p, len, MADV_NOHUGEPAGE);
    return p;
}

void weft__os_stack_unmap(void *p, size_t len)
{
    munmap(p, len);
}

void weft__os_stack_decommit(void *p, size_t len)
{
    (void)madvise(p, len, MADV_DONTNEED);
}

int weft__os_light_guard(char *page, size_t len)
{
    return weft__madvise(page, len, MADV_GUARD_INSTALL) == 0 ? 0 : -errno;
}

int weft__os_heavy_guard(char *page, size_t len)
{
    return mprotect(page, len, PROT_NONE) == 0 ? 0 : -errno;
}

/* Whether the kernel refuses to read the page at p, as it must for a
 * guard: 1 yes, 0 no, -1 cannot tell now. The write from p into a pipe
 * faults in the kernel (EFAULT) instead of in this process. Every call is
 * the raw system call: a hooked libc (libweft_hook) must not see these
 * descriptors, nor ThreadSanitizer, which would otherwise see a pipe
 * opened and never closed and report the number's next owner as a race. */
static int page_faults(const char *p)
{
    int fd[2];
    if (weft__sys_pipe2(fd, O_CLOEXEC) != 0)
        return -1;
    ssize_t n = weft__sys_write(fd[1], p, 1);
    int err = n < 0 ? errno : 0;
    weft__sys_close(fd[0]);
    weft__sys_close(fd[1]);
    return n == 1 ? 0 : err == EFAULT ? 1 : -1;
}

/* Probed once per process on a scratch mapping so that a refusal costs
 * nothing later. A kernel without it says EINVAL. qemu-user says 0 to
 * every madvise it does not pass through and installs nothing (7.2 does
 * that to MADV_GUARD_INSTALL), so the probe also checks that the guard
 * faults: a stack guarded by a no-op would have no protection at all, not
 * even a canary. */
int weft__os_light_guards(void)
{
    int ok = atomic_load(&light_ok);
    if (ok >= 0)
        return ok;
    size_t page = weft__page_size();
    char *p = weft__mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return 0;   /* not known yet: a passing shortage must not disable them for good */
    int err = weft__os_light_guard(p, page);
    int faults = err == 0 ? page_faults(p) : 0;
    munmap(p, 2 * page);
    if ((err != 0 && err != -EINVAL) || faults < 0)
        return 0;   /* likewise (ENOMEM, EAGAIN, EMFILE); only EINVAL means "no such advice" */
    ok = err == 0 && faults == 1;
    atomic_store(&light_ok, ok);
    return ok;
}

static long read_long_file(const char *path)
{
    char buf[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    return strtol(buf, NULL, 10);
}

static long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return -1;
    long n = 0;
    int c;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* What the kernel allows, less what the process has mapped, less head
 * room for the application to keep growing (an eighth of the limit, at
 * least 4096 entries). Unknown (no /proc) counts as none: heavy guards
 * are then not used, and stacks fall back to canaries. */
long weft__os_map_budget(void)
{
    long max = read_long_file("/proc/sys/vm/max_map_count");
    long used = count_maps();
    if (max <= 0 || used < 0)
        return 0;
    long room = max / 8 > 4096 ? max / 8 : 4096;
    long left = max - used - room;
    return left > 0 ? left : 0;
}

size_t weft__os_lowest_resident(const char *p, size_t len)
{
    /* mincore() tells which pages are resident without touching them. */
    size_t page = weft__page_size(), npages = len / page;
    unsigned char vec[256];
    for (size_t first = 0; first < npages; first += sizeof vec) {
        size_t n = npages - first < sizeof vec ? npages - first : sizeof vec;
        if (mincore((void *)(p + first * page), n * page, vec) != 0)
            return SIZE_MAX;
        for (size_t i = 0; i < n; i++)
            if (vec[i] & 1)
                return (first + i) * page;
    }
    return SIZE_MAX;
}
