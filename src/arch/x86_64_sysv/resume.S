/* x86_64_sysv/resume.S - the function weft runs "on top" of every context
 * it resumes (x86-64 System V); switch.h beside it is the one caller.
 *
 * jump_fcontext() ends with an indirect jmp to the resumed side's return
 * address, so each switch pushes one return-stack-buffer entry (the call
 * into it) that no ret ever pops; from then on every ret in the resumed
 * fiber is predicted one entry off and mispredicts, about 5 ns a switch.
 * ontop_fcontext() instead calls the given function with the resumed
 * side's return address on the stack; this one returns the transfer
 * unchanged, and its ret pops the entry the switching side pushed. When
 * both sides suspended at the same call site (weft routes every switch
 * through one), the prediction is right and the buffer stays balanced.
 *
 * It must leave rdi and rsi as they were: for a context made by
 * make_fcontext() this ret lands in the fcontext trampoline, which hands
 * rdi/rsi to the fiber's entry function as its transfer.
 */
    .text
    .globl  weft__resume_identity
    .hidden weft__resume_identity
    .type   weft__resume_identity, @function
    .p2align 4
weft__resume_identity:
    movq    %rdi, %rax
    movq    %rsi, %rdx
    ret
    .size   weft__resume_identity, .-weft__resume_identity

    .section .note.GNU-stack, "", %progbits
