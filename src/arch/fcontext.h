/* arch/fcontext.h - the context-switch ABI (private).
 *
 * weft switches stacks with Boost.Context's fcontext assembly, taken from
 * Debian's libboost_context.a at build time with its three symbols renamed
 * to weft__make_fcontext, weft__jump_fcontext and weft__ontop_fcontext (see
 * cmake/fcontext.cmake), so a program may link its own Boost.Context beside
 * weft. This header is the only place that declares those symbols.
 *
 * The semantics, for every supported architecture:
 *  - weft__make_fcontext(sp, size, fn) prepares a context on a stack whose
 *    highest address is sp (stacks grow down on every target weft supports)
 *    so that the first jump to it calls fn(transfer) on that stack. fn must
 *    never return.
 *  - weft__jump_fcontext(to, data) saves the callee-saved registers on the
 *    current stack, switches to `to` and passes `data`; the resumed side's
 *    jump (or fn) receives {the context just left, data}. The context
 *    handle of a suspended side is only valid until it is resumed once.
 *
 * Each ABI has a directory of its own, src/arch/<abi>/, named as Boost
 * names its objects (x86_64_sysv, arm64_aapcs): its switch.h defines
 * weft__arch_switch(to, data), which resumes `to` passing data and returns
 * the transfer this side receives when it is resumed in turn, together
 * with any assembly of weft's own that the ABI needs (CMakeLists.txt
 * lists it; cmake/fcontext.cmake names the ABI). Every switch in weft goes through that call, from one
 * non-inlined call site in sched.c.
 */
#ifndef WEFT_ARCH_FCONTEXT_H
#define WEFT_ARCH_FCONTEXT_H

#include <stddef.h>

typedef void *weft__fctx;

typedef struct weft__transfer {
    weft__fctx fctx;
    void *data;
} weft__transfer;

weft__fctx     weft__make_fcontext(void *sp, size_t size, void (*fn)(weft__transfer));
weft__transfer weft__jump_fcontext(weft__fctx const to, void *data);
weft__transfer weft__ontop_fcontext(weft__fctx const to, void *data,
                                    weft__transfer (*fn)(weft__transfer));

#if defined(__x86_64__) && !defined(_WIN32)
/* The identity function of x86_64_sysv/resume.S. */
weft__transfer weft__resume_identity(weft__transfer t);
#endif

#if defined(__x86_64__) && !defined(_WIN32)
#include "x86_64_sysv/switch.h"
#elif defined(__aarch64__) && !defined(_WIN32)
#include "arm64_aapcs/switch.h"
#else
#error "weft: no context-switch ABI for this target (see src/arch/)"
#endif

/* fcontext keeps its own 16-byte alignment (both ABIs want 16 at a call);
 * these say how much room its initial frame takes so the stack pool can
 * tell what a fiber really used. */
#define WEFT__STACK_ALIGN 16

#endif
