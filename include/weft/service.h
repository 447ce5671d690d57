/* weft/service.h - signals and the blocking-call offload pool. */
#ifndef WEFT_SERVICE_H
#define WEFT_SERVICE_H

#include <signal.h>
#include <stdint.h>

#include "weft/export.h"
#include "weft/core.h"

WEFT_BEGIN_DECLS

WEFT_API int weft_signal_wait(const sigset_t *set, int64_t deadline);
WEFT_API int weft_offload(weft_fn fn, void *arg, void **result);

WEFT_END_DECLS

#endif
