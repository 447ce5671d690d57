/* io.c - blocking-style descriptor calls on top of the reactor and timers.
 *
 * (The descriptor API itself is being built; until then readiness reports
 * from the reactor have no waiters to wake.)
 */
#include "internal.h"

void weft__io_ready(struct weft__worker *w, int fd, int events)
{
    (void)w;
    (void)fd;
    (void)events;
}
