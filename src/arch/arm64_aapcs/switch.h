/* arm64_aapcs/switch.h - the switch on arm64 (AAPCS64, Linux) (private;
 * included by arch/fcontext.h only).
 *
 * A plain jump_fcontext(). The x86-64 trick (x86_64_sysv/resume.S) has
 * nothing to fix here, and would break things:
 *  - Boost's arm64 jump_fcontext is entered with bl, which pushes the
 *    return-address stack, and leaves with `ret x4` to the resumed side's
 *    saved lr, which pops it: the predictor stays balanced by itself, as
 *    it does not on x86-64, where the jump leaves by an indirect jmp.
 *  - ontop_fcontext leaves with `ret x2` into the given function, whose
 *    own ret pops a second time: two pops for one push, the imbalance the
 *    x86-64 identity removes.
 *  - arm64's make_fcontext builds no trampoline frame: a fresh context's
 *    saved pc is the entry function itself and its lr is the `_exit` stub,
 *    so ontop_fcontext onto a fiber that never ran would return from the
 *    identity into _exit(0).
 * So weft has no assembly of its own on arm64.
 */
#ifndef WEFT_ARCH_ARM64_AAPCS_SWITCH_H
#define WEFT_ARCH_ARM64_AAPCS_SWITCH_H

static inline __attribute__((always_inline)) weft__transfer
weft__arch_switch(weft__fctx to, void *data)
{
    return weft__jump_fcontext(to, data);
}

#endif
