/* weft/chan.h - typed-by-size channels between fibers, and select. */
#ifndef WEFT_CHAN_H
#define WEFT_CHAN_H

#include <stddef.h>
#include <stdint.h>

#include "weft/export.h"

WEFT_BEGIN_DECLS

typedef struct weft_chan weft_chan;

WEFT_API int  weft_chan_open(weft_chan **ch, size_t elem_size, size_t capacity);
WEFT_API int  weft_chan_send(weft_chan *ch, const void *elem, int64_t deadline);
WEFT_API int  weft_chan_recv(weft_chan *ch, void *elem, int64_t deadline);
WEFT_API int  weft_chan_close(weft_chan *ch);
WEFT_API void weft_chan_free(weft_chan *ch);

enum { WEFT_SEND = 1, WEFT_RECV = 2 };
typedef struct weft_clause { weft_chan *ch; int op; void *elem; int result; } weft_clause;
WEFT_API int  weft_select(weft_clause *clauses, size_t n, int64_t deadline);

WEFT_END_DECLS

#endif
