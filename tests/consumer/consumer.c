/* consumer.c - the smallest outside program: built against an installed
 * weft by scripts/test.sh to prove the package works. */
#include <stdio.h>
#include <weft.h>

static void *child(void *arg) { return arg; }

static void main_fn(void *arg)
{
    int *ok = arg;
    weft_fiber *f;
    void *res = NULL;
    if (weft_spawn(&f, NULL, child, ok) == 0 && weft_join(f, &res, WEFT_FOREVER) == 0 &&
        res == ok && weft_sleep_ms(1) == 0)
        *ok = 1;
}

int main(void)
{
    int ok = 0;
    int r = weft_run(NULL, main_fn, &ok);
    printf("consumer: weft %d.%d.%d, run %s\n", WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR,
           WEFT_VERSION_PATCH, r == 0 && ok ? "ok" : weft_strerror(r));
    return r == 0 && ok ? 0 : 1;
}
