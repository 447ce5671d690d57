/* fault.c - the guard-page fault handler on Linux: SIGSEGV and SIGBUS,
 * caught on an alternate signal stack per thread that runs fibers (a
 * guard-page fault leaves no room on the stack that faulted). Whether the
 * fault is a fiber's overflow is decided by the portable
 * weft__fault_on_guard() (debug.c); faults that are not weft's go on to
 * the handler installed before, or to the default action.
 */
#include "internal.h"
#include "os.h"

#include <signal.h>
#include <string.h>
#include <sys/mman.h>

static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static int fault_users;
static struct sigaction old_segv, old_bus;

static __thread stack_t saved_altstack;
static __thread void *own_altstack;
static __thread size_t own_altstack_len;

static void pass_on(int sig, siginfo_t *si, void *uc)
{
    struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;
    if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction) {
        old->sa_sigaction(sig, si, uc);
        return;
    }
    if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
        old->sa_handler(sig);
        return;
    }
    /* Default action: uninstall and return, so the faulting instruction
     * runs again and the kernel delivers the signal with its usual effect. */
    signal(sig, SIG_DFL);
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    weft__fault_on_guard(si->si_addr);     /* does not return if it was ours */
    pass_on(sig, si, uc);
}

int weft__fault_install(void)
{
    /* Each thread that runs fibers needs its own alternate signal stack:
     * a guard-page fault leaves no room on the stack that faulted. */
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) {
        own_altstack = NULL;
    } else {
        size_t len = 64 * 1024;
        if (len < (size_t)SIGSTKSZ)
            len = (size_t)SIGSTKSZ;
        void *p = weft__mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return -ENOMEM;
        stack_t ss = { .ss_sp = p, .ss_size = len, .ss_flags = 0 };
        if (sigaltstack(&ss, &saved_altstack) != 0) {
            int err = -errno;
            munmap(p, len);
            return err;
        }
        own_altstack = p;
        own_altstack_len = len;
    }
    pthread_mutex_lock(&fault_lock);
    if (fault_users++ == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &old_segv);
        sigaction(SIGBUS, &sa, &old_bus);
    }
    pthread_mutex_unlock(&fault_lock);
    return 0;
}

void weft__fault_uninstall(void)
{
    pthread_mutex_lock(&fault_lock);
    if (--fault_users == 0) {
        sigaction(SIGSEGV, &old_segv, NULL);
        sigaction(SIGBUS, &old_bus, NULL);
    }
    pthread_mutex_unlock(&fault_lock);
    if (own_altstack) {
        sigaltstack(&saved_altstack, NULL);
        munmap(own_altstack, own_altstack_len);
        own_altstack = NULL;
    }
}
