/* weft/service.h - signals and the blocking-call offload pool. */
#ifndef WEFT_SERVICE_H
#define WEFT_SERVICE_H

#include <signal.h>
#include <stdint.h>
#ifndef _WIN32
/* <signal.h> declares sigset_t only when POSIX is asked for; <sys/select.h>
 * always does, so weft.h compiles under plain -std=c11 too. */
#  include <sys/select.h>
#endif

#include "weft/export.h"
#include "weft/core.h"

WEFT_BEGIN_DECLS

WEFT_API int weft_signal_wait(const sigset_t *set, int64_t deadline);
WEFT_API int weft_offload(weft_fn fn, void *arg, void **result);

WEFT_END_DECLS

#endif
