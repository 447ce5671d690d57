/* hookcheck.c - what libweft knows of libweft_hook (src/unix/hook.c):
 * whether it is loaded ahead of libc, where it intercepts the program's
 * libc calls. libweft never links the hook, and the hook is easy to lose
 * without a word (the linker drops it under --as-needed, a preload is
 * forgotten), so weft_hook_active() reports it and weft_run() can insist
 * on it (WEFT_REQUIRE_HOOK=1, runtime.c).
 *
 * How: the hook exports weft__hook_probe(), which returns the address of
 * the libc read() it forwards to. The hook intercepts when its object
 * comes before that one in the link map, which is the order the dynamic
 * linker searches for symbols (the program, preloaded objects, then the
 * libraries in breadth-first order; objects opened later come after
 * libc). A sanitizer's interceptors ahead of both forward to the hook in
 * turn, so they do not change the answer. Found through the global scope
 * only: a hook opened with RTLD_LOCAL intercepts nothing and is not seen.
 */
#include "weft.h"

#include <dlfcn.h>
#include <link.h>
#include <stdint.h>

struct hook_order {
    uintptr_t hook, next;  /* an address in the hook, one in libc */
    int i, hook_at, next_at;
};

/* Finds the link-map positions of the objects holding the two addresses. */
static int visit(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct hook_order *o = arg;
    for (int k = 0; k < info->dlpi_phnum; k++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[k];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t lo = (uintptr_t)info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (o->hook_at < 0 && o->hook >= lo && o->hook < hi)
            o->hook_at = o->i;
        if (o->next_at < 0 && o->next >= lo && o->next < hi)
            o->next_at = o->i;
    }
    o->i++;
    return 0;
}

int weft_hook_active(void)
{
    void *sym = dlsym(RTLD_DEFAULT, "weft__hook_probe");
    if (!sym)
        return 0;
    void *(*probe)(void) = (void *(*)(void))sym;
    struct hook_order o = { (uintptr_t)sym, (uintptr_t)probe(), 0, -1, -1 };
    if (!o.next)
        return 0;
    dl_iterate_phdr(visit, &o);
    return o.hook_at >= 0 && o.next_at > o.hook_at;
}
