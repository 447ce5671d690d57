/* os.h - the seam between weft's portable core and the operating system
 * (private).
 *
 * Everything the scheduler, the stack pool and the fault report need from
 * the system goes through these calls; each OS implements them in its own
 * folder (src/unix/ today: Linux). Descriptor I/O, the reactors, signals
 * and the libc hook are OS-specific as a whole and live in that folder
 * too, behind reactor.h and the public headers. What the portable files
 * (the .c files in src/ itself) still take from POSIX beyond pthreads is
 * listed in docs/architecture.md ("Platforms"); each such use is a place a
 * Windows port must give a seam call too.
 *
 * Costs matter here: weft__os_wait/wake are the idle path of the several-
 * worker scheduler (a futex on Linux), the stack calls are made per chunk
 * of stacks, not per spawn, except decommit (per stack trimmed).
 */
#ifndef WEFT_OS_H
#define WEFT_OS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ----------------------------------------------------------- wake-ups */

/* Sleeps while *word == val, until weft__os_wake() on word or timeout_ns
 * passes (-1: no time-out). May return early (spurious wake-ups, signals):
 * callers re-check. */
void weft__os_wait(_Atomic uint32_t *word, uint32_t val, int64_t timeout_ns);
/* Wakes up to n threads waiting on word (INT32_MAX: all). */
void weft__os_wake(_Atomic uint32_t *word, int n);

/* ------------------------------------------------------------ threads */

/* The number of CPUs online (at least 1). */
int weft__os_ncpu(void);
/* Starts a helper thread (a worker) with the process's asynchronous
 * signals blocked in it, so that they go to the thread that called
 * weft_run() or stay pending for weft_signal_wait(); faults stay
 * deliverable so a guard-page hit is still reported. Returns 0 or a
 * positive error number, as pthread_create. */
int weft__os_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/* Writes to standard error with no buffering, from any context (a fault
 * handler included) and never through an interposed libc. */
void weft__os_write_err(const char *buf, size_t len);

/* ------------------------------------------------------ memory for stacks */

size_t weft__page_size(void);
/* Reserves len bytes (a multiple of the page size) that are committed page
 * by page on first touch. Returns NULL and sets *err to a negative errno. */
void *weft__os_stack_map(size_t len, int *err);
void  weft__os_stack_unmap(void *p, size_t len);
/* Gives the pages back to the system; they read as zero when touched again. */
void  weft__os_stack_decommit(void *p, size_t len);
/* The offset in [p, p + len) of the lowest page that has been touched
 * (is resident), without touching any; SIZE_MAX if none is or the system
 * cannot tell. Measures how deep a stack went. */
size_t weft__os_lowest_resident(const char *p, size_t len);
/* Whether guards that cost no kernel map entry exist here (Linux 6.13+'s
 * MADV_GUARD_INSTALL); probed once per process. */
int   weft__os_light_guards(void);
/* Installs such a guard on [page, page + len): 0 or a negative errno. */
int   weft__os_light_guard(char *page, size_t len);
/* Makes [page, page + len) inaccessible the classic way (mprotect), which
 * costs map entries: 0 or a negative errno. */
int   weft__os_heavy_guard(char *page, size_t len);
/* How many kernel map entries heavy guards may still use in this process:
 * the system's limit less what the process maps less head room for the
 * application; -1 when the system has no such limit. */
long  weft__os_map_budget(void);

/* --------------------------------------------------------- stack faults */

/* Installs the guard-page fault handler for the calling thread (with an
 * alternate stack to run on) / removes it. The handler asks
 * weft__fault_on_guard() whether the address is the running fiber's guard
 * and otherwise passes the fault on to whoever handled it before. */
int  weft__fault_install(void);
void weft__fault_uninstall(void);

#endif
