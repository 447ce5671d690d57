/* weft.h - everything a program needs from weft, a stackful fiber runtime.
 *
 * Each call's reference, with every error code it returns, is the comment
 * above it in the headers under include/weft/; docs/guide.md is the
 * user's guide.
 *
 * Conventions shared by every call (docs/guide.md, "Conventions"):
 *  - Calls that can fail return 0 or a non-negative count on success and a
 *    negative errno value on failure; errno itself is never used to report.
 *  - Time is int64_t nanoseconds of the monotonic clock (weft_now());
 *    blocking calls take an absolute deadline, WEFT_FOREVER for none. A
 *    deadline already in the past tries once and returns -ETIMEDOUT rather
 *    than park.
 *  - Blocking calls park the calling fiber only, and every one of them is a
 *    cancellation point returning -ECANCELED.
 *  - Unless stated otherwise a call must be made from inside a fiber;
 *    elsewhere it returns -EPERM (or NULL) and does nothing.
 */
#ifndef WEFT_H
#define WEFT_H

#include <errno.h> /* the E* codes weft returns, negated */

#include "weft/version.h"
#include "weft/export.h"
#include "weft/core.h"
#include "weft/io.h"
#include "weft/sync.h"
#include "weft/chan.h"
#include "weft/group.h"
#include "weft/backoff.h"
#include "weft/service.h"

#endif
