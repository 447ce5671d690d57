/* weft/sync.h - mutex, condition variable, semaphore and wait group for the
 * fibers of one runtime. Fixed-size public structs: embed them, no
 * allocation; the fields are private. */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H

#include <stdint.h>

#include "weft/export.h"

WEFT_BEGIN_DECLS

typedef struct weft_mutex { uint64_t private_[8]; } weft_mutex;
typedef struct weft_cond  { uint64_t private_[8]; } weft_cond;
typedef struct weft_sem   { uint64_t private_[8]; } weft_sem;
typedef struct weft_wg    { uint64_t private_[8]; } weft_wg;

WEFT_API int weft_mutex_init(weft_mutex *m);
WEFT_API int weft_mutex_lock(weft_mutex *m, int64_t deadline);
WEFT_API int weft_mutex_trylock(weft_mutex *m);
WEFT_API int weft_mutex_unlock(weft_mutex *m);
WEFT_API int weft_cond_init(weft_cond *c);
WEFT_API int weft_cond_wait(weft_cond *c, weft_mutex *m, int64_t deadline);
WEFT_API int weft_cond_signal(weft_cond *c);
WEFT_API int weft_cond_broadcast(weft_cond *c);
WEFT_API int weft_sem_init(weft_sem *s, int64_t value);
WEFT_API int weft_sem_acquire(weft_sem *s, int64_t deadline);
WEFT_API int weft_sem_release(weft_sem *s);
WEFT_API int weft_wg_init(weft_wg *wg);
WEFT_API int weft_wg_add(weft_wg *wg, int64_t delta);
WEFT_API int weft_wg_done(weft_wg *wg);
WEFT_API int weft_wg_wait(weft_wg *wg, int64_t deadline);

WEFT_END_DECLS

#endif
