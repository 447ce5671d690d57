/* hook_app.c - an outside program built against an installed weft by
 * scripts/test.sh (consumer stage) with each documented way of using
 * libweft_hook (docs/hooks.md): the plain command line, pkg-config, the
 * CMake target, LD_PRELOAD.
 *
 * Like a program around a blocking library (hiredis, libpq), it names no
 * hooked libc function itself: the libc calls below are looked up at run
 * time with dlsym, as a library's would be resolved, so nothing in the
 * program makes the linker keep the hook. Only the documented link lines
 * do. Exit status 0 when the hook is active and proves it: a read() that
 * waits in one fiber leaves the only worker to the fiber that writes.
 * 1 (with a message) when the hook is not active; a hook that is active
 * yet does not park would block the worker, which the alarm turns into a
 * failure. It also runs system("exec true") first: under LD_PRELOAD the
 * shell it starts must load the hook too.
 */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#include <weft.h>

static ssize_t (*lib_read)(int, void *, size_t);
static ssize_t (*lib_write)(int, const void *, size_t);
static int (*lib_socketpair)(int, int, int, int *);
static int (*lib_close)(int);

struct pair { int sv[2]; ssize_t got; char buf[8]; };

static void *reader(void *arg)
{
    struct pair *p = arg;
    p->got = lib_read(p->sv[1], p->buf, sizeof p->buf);  /* parks: nothing yet */
    return NULL;
}

static void main_fn(void *arg)
{
    struct pair *p = arg;
    weft_fiber *f;
    if (lib_socketpair(AF_UNIX, SOCK_STREAM, 0, p->sv) != 0 ||
        weft_spawn(&f, NULL, reader, p) != 0)
        return;
    weft_sleep_ms(20);          /* the reader is parked in read() by now */
    if (lib_write(p->sv[0], "hook", 4) == 4)
        weft_join(f, NULL, WEFT_FOREVER);
    lib_close(p->sv[0]);
    lib_close(p->sv[1]);
}

int main(void)
{
    lib_read = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_DEFAULT, "read");
    lib_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_DEFAULT, "write");
    lib_socketpair = (int (*)(int, int, int, int *))dlsym(RTLD_DEFAULT, "socketpair");
    lib_close = (int (*)(int))dlsym(RTLD_DEFAULT, "close");
    if (!lib_read || !lib_write || !lib_socketpair || !lib_close)
        return 1;
    int st = system("exec true");
    if (st != 0) {
        printf("hook_app: system(\"exec true\") failed (status %d)\n", st);
        return 1;
    }
    if (!weft_hook_active()) {
        printf("hook_app: libweft_hook is not active\n");
        return 1;
    }
    alarm(10);                  /* a hook that did not park would hang */
    struct pair p = { .got = -1 };
    int r = weft_run(NULL, main_fn, &p);
    int ok = r == 0 && p.got == 4;
    printf("hook_app: hook active, read in a fiber %s\n", ok ? "parked" : "failed");
    return ok ? 0 : 1;
}
