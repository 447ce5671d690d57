/* weft/group.h - cancellation groups: spawn fibers into a group, cancel
 * them all, wait for them all. A server can put every fiber of a
 * connection (or the whole accept tree) in one group and shut it down with
 * one call:
 *
 *     weft_group *g;
 *     weft_group_open(&g);
 *     weft_group_spawn(g, NULL, handle_conn, conn);   ... for each conn
 *     ...
 *     weft_group_cancel(g);                  every member's blocking calls
 *     weft_group_wait(g, weft_deadline_ms(500));     now return -ECANCELED
 *     weft_group_free(g);
 *
 * Members are detached fibers: their return values are dropped, and each
 * leaves the group the moment it returns. A member may spawn further
 * members into its own group.
 */
#ifndef WEFT_GROUP_H
#define WEFT_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "weft/export.h"
#include "weft/core.h"

WEFT_BEGIN_DECLS

typedef struct weft_group weft_group;

/**
 * weft_group_open - create an empty group. Callable anywhere.
 * Returns 0, or -EINVAL (g NULL), -ENOMEM.
 */
WEFT_API int weft_group_open(weft_group **g);

/**
 * weft_group_spawn - start fn(arg) as a new member fiber of g (as
 * weft_spawn() with a NULL handle; attr may be NULL).
 * Returns 0, or -ECANCELED (g has been cancelled: it takes no new members),
 * -EINVAL (g or fn NULL, g not a group, bad attr), -EXDEV (g has members
 * in another runtime), -ENOMEM, -EPERM (not in a fiber).
 */
WEFT_API int weft_group_spawn(weft_group *g, const weft_attr *attr, weft_fn fn, void *arg);

/**
 * weft_group_cancel - cancel every member (see weft_cancel()) and refuse
 * new ones. Returns at once; use weft_group_wait() to wait for them.
 * Cancelling twice is harmless. A member may cancel its own group (it is
 * then cancelled too).
 * Returns 0, or -EINVAL, -EXDEV, -EPERM.
 */
WEFT_API int weft_group_cancel(weft_group *g);

/**
 * weft_group_wait - park until g has no members (at once if it has none).
 * Returns 0, or -ETIMEDOUT, -ECANCELED (the caller was cancelled; the
 * members were not), -EDEADLK (the caller is a member of g), -EINVAL,
 * -EXDEV, -EPERM.
 */
WEFT_API int weft_group_wait(weft_group *g, int64_t deadline);

/** weft_group_size - members not yet returned, or -EINVAL. Callable anywhere. */
WEFT_API int64_t weft_group_size(const weft_group *g);

/**
 * weft_group_free - release an empty group. NULL is accepted.
 * Returns 0, or -EBUSY (it still has members or waiters: wait first),
 * -EINVAL (not a group).
 */
WEFT_API int weft_group_free(weft_group *g);

WEFT_END_DECLS

#endif
