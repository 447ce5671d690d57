/* testutil.h - helpers shared by the Check suites. */
#ifndef WEFT_TESTUTIL_H
#define WEFT_TESTUTIL_H

#include <check.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

/* Runs body(arg) as the main fiber of a fresh runtime with cfg (NULL:
 * defaults) and checks that the runtime started, finished and left
 * nothing behind: no live fiber, no stack in use, no mapping. */
static inline void run_in_runtime(const weft_config *cfg, void (*body)(void *), void *arg)
{
    int r = weft_run(cfg, body, arg);
    ck_assert_msg(r == 0, "weft_run: %s", weft_strerror(r));
    weft_stats st;
    weft_stats_get(&st);
    ck_assert_uint_eq(st.runtimes, 0);
    ck_assert_uint_eq(st.fibers_live, 0);
    ck_assert_uint_eq(st.stacks_in_use, 0);
    ck_assert_uint_eq(st.stacks_pooled, 0);
    ck_assert_uint_eq(st.stack_bytes_mapped, 0);
    ck_assert_uint_eq(st.map_entries, 0);
}

static inline int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

static inline int64_t ms_since(int64_t t0) { return (weft_now() - t0) / 1000000; }

/* The worker count a default runtime gets (WEFT_WORKERS=2 reruns every
 * suite with two). Checks of single-worker orderings use it. */
static inline int test_workers(void)
{
    weft_config c;
    weft_config_init(&c);
    return c.workers;
}

#endif
