/* weft/chan.h - channels between the fibers of one runtime, and select.
 *
 * A channel carries fixed-size elements, copied by value (elem_size bytes
 * from the sender's buffer into the receiver's). With capacity 0 it is a
 * rendezvous: a send completes only when a receiver takes the element. With
 * capacity N up to N elements wait in the channel. Blocked senders and
 * receivers are served in arrival order.
 *
 * Closing: a closed channel refuses sends with -EPIPE; receivers first
 * drain what is buffered, then get -EPIPE. Closing wakes every blocked
 * sender and receiver with -EPIPE.
 *
 * Every blocking call takes an absolute deadline (WEFT_FOREVER for none);
 * a deadline already in the past tries once without parking. A call that
 * times out (-ETIMEDOUT) or is cancelled (-ECANCELED) has transferred
 * nothing and leaves nothing queued.
 *
 * The channel handle is opaque and heap-allocated; a channel with fibers
 * blocked on it belongs to their runtime until they are gone (-EXDEV from
 * fibers of another runtime meanwhile).
 */
#ifndef WEFT_CHAN_H
#define WEFT_CHAN_H

#include <stddef.h>
#include <stdint.h>

#include "weft/export.h"

WEFT_BEGIN_DECLS

typedef struct weft_chan weft_chan;

/** The largest element weft_chan_open() accepts, in bytes. */
#define WEFT_CHAN_ELEM_MAX ((size_t)1 << 20)

/**
 * weft_chan_open - create a channel. Callable anywhere.
 * @ch:        receives the handle.
 * @elem_size: bytes per element, 0 to WEFT_CHAN_ELEM_MAX (0: a channel of
 *             events that carry no data; elem pointers may then be NULL).
 * @capacity:  elements buffered; 0 = rendezvous.
 * Returns 0, or -EINVAL (ch NULL, elem_size too large, or the buffer size
 * elem_size * capacity overflows), -ENOMEM.
 */
WEFT_API int weft_chan_open(weft_chan **ch, size_t elem_size, size_t capacity);

/**
 * weft_chan_send - copy *elem into the channel: straight to the longest
 * waiting receiver, else into the buffer, else park until either has room.
 * Returns 0, or:
 *  -EPIPE      the channel is closed (or was closed while waiting)
 *  -ETIMEDOUT  the deadline passed first
 *  -ECANCELED  the calling fiber was cancelled
 *  -EINVAL     ch NULL or not a channel, elem NULL (with elem_size > 0)
 *  -EXDEV      the channel is in use by another runtime
 *  -EPERM      not called from inside a fiber
 */
WEFT_API int weft_chan_send(weft_chan *ch, const void *elem, int64_t deadline);

/**
 * weft_chan_recv - take the oldest element into *elem, parking until there
 * is one.
 * Returns 0, or -EPIPE (closed and nothing left to drain), -ETIMEDOUT,
 * -ECANCELED, -EINVAL, -EXDEV, -EPERM as for weft_chan_send().
 */
WEFT_API int weft_chan_recv(weft_chan *ch, void *elem, int64_t deadline);

/**
 * weft_chan_close - close the channel: wake every blocked receiver and
 * sender with -EPIPE. Buffered elements can still be received.
 * Returns 0, or -EPIPE (already closed), -EINVAL, -EXDEV, -EPERM.
 */
WEFT_API int weft_chan_close(weft_chan *ch);

/**
 * weft_chan_free - close (if need be) and release the channel. Fibers still
 * blocked on it are woken with -EPIPE first, so freeing is safe while they
 * wait, from a fiber of the same runtime; freeing a channel with waiters
 * from anywhere else is refused with a message on stderr (the channel
 * stays). NULL is ignored. The handle is invalid afterwards.
 */
WEFT_API void weft_chan_free(weft_chan *ch);

/**
 * weft_chan_len - elements buffered now, or -EINVAL. Callable anywhere
 * (a snapshot).
 */
WEFT_API int64_t weft_chan_len(const weft_chan *ch);

/** weft_chan_cap - the capacity given to weft_chan_open(), or -EINVAL. */
WEFT_API int64_t weft_chan_cap(const weft_chan *ch);

/* ------------------------------------------------------------------ select */

enum { WEFT_SEND = 1, WEFT_RECV = 2 };

/** One operation of a select: send *elem to ch, or receive from ch into *elem. */
typedef struct weft_clause { weft_chan *ch; int op; void *elem; int result; } weft_clause;

/** The most clauses weft_select() takes. */
#define WEFT_SELECT_MAX 4096

/**
 * weft_select - wait until one of the clauses can proceed, perform it and
 * return its index. The clause's result is 0, or -EPIPE when it proceeded
 * because its channel is closed (a receive from a closed, drained channel
 * or a send to a closed one); the other clauses' results are not touched.
 * When several clauses can proceed, one is chosen uniformly at random, so
 * no clause can starve the others. A channel may appear in several clauses.
 * n may be 0 (then it only waits for the deadline or cancellation).
 * Returns the index, or (no clause proceeded):
 *  -ETIMEDOUT  the deadline passed (a past deadline tries once)
 *  -ECANCELED  the calling fiber was cancelled
 *  -EINVAL     clauses NULL with n > 0, n > WEFT_SELECT_MAX, or a clause
 *              with a NULL or invalid channel, an unknown op, or a NULL
 *              elem for a channel with elem_size > 0
 *  -EXDEV      a channel is in use by another runtime
 *  -ENOMEM     more than 16 clauses and no memory for their wait nodes
 *  -EPERM      not called from inside a fiber
 */
WEFT_API int weft_select(weft_clause *clauses, size_t n, int64_t deadline);

WEFT_END_DECLS

#endif
