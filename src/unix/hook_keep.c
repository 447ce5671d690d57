/* hook_keep.c - libweft_hook_keep.o: the object that keeps libweft_hook
 * linked. libweft_hook defines only libc names (and weft__hook_probe), so
 * a program that calls no hooked function itself - its libraries do -
 * references nothing in it, and a linker running with --as-needed (the
 * default of Debian's and Ubuntu's gcc) drops the library without a word.
 * This object is linked in front of the library: by the installed
 * libweft_hook.so, a linker script (INPUT(libweft_hook_keep.o
 * libweft_hook.so.0)), and by the CMake target weft::weft_hook (its
 * INTERFACE_SOURCES). Its one pointer to weft__hook_probe is a reference
 * from a regular object, which makes every linker (bfd, gold, lld, mold)
 * record the hook as needed; the section is kept (retain) so that
 * lld's --gc-sections, which decides after collecting, sees it too.
 * It costs the program 8 bytes and one dynamic relocation.
 */
#if defined(__has_attribute)
#  if __has_attribute(retain)
#    define KEEP __attribute__((used, retain))
#  endif
#endif
#ifndef KEEP
#  define KEEP __attribute__((used))
#endif

void *weft__hook_probe(void);

static void *(*const keep_hook)(void) KEEP
    __attribute__((section(".data.rel.ro.weft_hook_keep"))) = weft__hook_probe;
