/* check_stack.c - the stack pool: each protection path, overflow reports,
 * WEFT_GUARD_ALWAYS/NEVER, the map budget, trimming, and the promise that a
 * pre-allocated runtime spawns without touching the allocator.
 *
 * This executable is linked with --wrap for mmap, munmap and the malloc
 * family, so the counters below see every call weft makes (and the test
 * makes); libc's own internal calls are not counted. */
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

/* ------------------------------------------------------ allocation counters */

static _Atomic long n_mmap, n_munmap, n_malloc, n_free;

void *__real_mmap(void *, size_t, int, int, int, off_t);
int __real_munmap(void *, size_t);
void *__real_malloc(size_t);
void *__real_calloc(size_t, size_t);
void *__real_realloc(void *, size_t);
void __real_free(void *);

void *__wrap_mmap(void *a, size_t l, int p, int f, int fd, off_t o);
void *__wrap_mmap(void *a, size_t l, int p, int f, int fd, off_t o)
{
    n_mmap++;
    return __real_mmap(a, l, p, f, fd, o);
}
int __wrap_munmap(void *a, size_t l);
int __wrap_munmap(void *a, size_t l)
{
    n_munmap++;
    return __real_munmap(a, l);
}
void *__wrap_malloc(size_t n);
void *__wrap_malloc(size_t n)
{
    n_malloc++;
    return __real_malloc(n);
}
void *__wrap_calloc(size_t a, size_t b);
void *__wrap_calloc(size_t a, size_t b)
{
    n_malloc++;
    return __real_calloc(a, b);
}
void *__wrap_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n)
{
    n_malloc++;
    return __real_realloc(p, n);
}
void __wrap_free(void *p);
void __wrap_free(void *p)
{
    if (p)
        n_free++;
    __real_free(p);
}

static long allocator_calls(void) { return n_mmap + n_munmap + n_malloc + n_free; }

/* ---------------------------------------------------------------- helpers */

static void *nothing(void *arg) { return arg; }

static void spawn_and_join(int n, const weft_attr *attr)
{
    static weft_fiber *f[1024];
    ck_assert_int_le(n, 1024);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(weft_spawn(&f[i], attr, nothing, NULL), 0);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
}

static weft_stats stats_now(void)
{
    weft_stats st;
    weft_stats_get(&st);
    return st;
}

/* --------------------------------------------------- protection paths */

struct path_case {
    int force;              /* WEFT__GK_* or 0 */
    int guard;              /* weft_config.guard */
    long budget;            /* map budget, -1: measure */
    int n;                  /* fibers to hold at once */
    /* results */
    weft_stats st;
    int spawn_err;
};

static void *hold(void *arg)
{
    (void)arg;
    weft_sleep_ms(-1);
    return NULL;
}

static void body_path(void *arg)
{
    struct path_case *pc = arg;
    static weft_fiber *f[256];
    pc->spawn_err = 0;
    int i;
    for (i = 0; i < pc->n; i++) {
        int r = weft_spawn(&f[i], NULL, hold, NULL);
        if (r) {
            pc->spawn_err = r;
            break;
        }
    }
    weft_yield();
    pc->st = stats_now();
    while (i-- > 0) {
        weft_cancel(f[i]);
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    }
}

static void run_path(struct path_case *pc)
{
    weft_config c;
    weft_config_init(&c);
    c.guard = pc->guard;
    c.stack_size = 64 * 1024;
    weft__stack_force_guard(pc->force);
    weft__stack_set_map_budget(pc->budget);
    run_in_runtime(&c, body_path, pc);
    weft__stack_force_guard(0);
    weft__stack_set_map_budget(-1);
}

/* MADV_GUARD_INSTALL needs Linux 6.13, and qemu-user accepts the advice
 * without installing anything: the madvise path is tested where it works
 * and noted where it does not (every other path still runs). */
static int madvise_guards_here(const char *test)
{
    if (weft__stack_madvise_guards())
        return 1;
    printf("note: %s: MADV_GUARD_INSTALL guards do not work here (kernel before 6.13, or "
           "an emulator); not tested\n", test);
    return 0;
}

START_TEST(madvise_guards_cost_no_map_entry)
{
    if (!madvise_guards_here("madvise_guards_cost_no_map_entry"))
        return;
    struct path_case pc = { .force = WEFT__GK_MADVISE, .guard = WEFT_GUARD_AUTO,
                            .budget = -1, .n = 100 };
    run_path(&pc);
    ck_assert_int_eq(pc.spawn_err, 0);
    ck_assert_uint_ge(pc.st.stacks_guard_madvise, 101); /* + main */
    ck_assert_uint_eq(pc.st.stacks_guard_mprotect, 0);
    ck_assert_uint_eq(pc.st.stacks_canary, 0);
    ck_assert_uint_eq(pc.st.stacks_guarded, pc.st.stacks_guard_madvise);
    ck_assert_uint_eq(pc.st.map_entries, 0);
    ck_assert_uint_ge(pc.st.stacks_in_use, 101);
}
END_TEST

START_TEST(mprotect_guards_within_budget_then_canary)
{
    /* room for 20 guards: the rest of the stacks fall back to canaries */
    struct path_case pc = { .force = WEFT__GK_MPROTECT, .guard = WEFT_GUARD_AUTO,
                            .budget = 40, .n = 100 };
    run_path(&pc);
    ck_assert_int_eq(pc.spawn_err, 0);
    ck_assert_uint_eq(pc.st.stacks_guard_mprotect, 20);
    ck_assert_uint_eq(pc.st.map_entries, 40);
    ck_assert_uint_ge(pc.st.stacks_canary, 101 - 20);
    ck_assert_uint_eq(pc.st.stacks_guard_madvise, 0);
}
END_TEST

START_TEST(mprotect_guards_with_a_measured_budget)
{
    struct path_case pc = { .force = WEFT__GK_MPROTECT, .guard = WEFT_GUARD_AUTO,
                            .budget = -1, .n = 100 };
    run_path(&pc);
    ck_assert_int_eq(pc.spawn_err, 0);
    ck_assert_uint_ge(pc.st.stacks_guard_mprotect, 101);
    ck_assert_uint_eq(pc.st.stacks_canary, 0);
    ck_assert_uint_eq(pc.st.map_entries, 2 * pc.st.stacks_guard_mprotect);
}
END_TEST

START_TEST(canary_path)
{
    struct path_case pc = { .force = WEFT__GK_CANARY, .guard = WEFT_GUARD_AUTO,
                            .budget = -1, .n = 100 };
    run_path(&pc);
    ck_assert_int_eq(pc.spawn_err, 0);
    ck_assert_uint_eq(pc.st.stacks_guarded, 0);
    ck_assert_uint_ge(pc.st.stacks_canary, 101);
}
END_TEST

START_TEST(guard_never_uses_canaries)
{
    struct path_case pc = { .force = 0, .guard = WEFT_GUARD_NEVER, .budget = -1, .n = 50 };
    run_path(&pc);
    ck_assert_int_eq(pc.spawn_err, 0);
    ck_assert_uint_eq(pc.st.stacks_guarded, 0);
    ck_assert_uint_ge(pc.st.stacks_canary, 51);
}
END_TEST

START_TEST(guard_auto_prefers_madvise)
{
    struct path_case pc = { .force = 0, .guard = WEFT_GUARD_AUTO, .budget = -1, .n = 50 };
    run_path(&pc);
    ck_assert_int_eq(pc.spawn_err, 0);
    ck_assert_uint_ge(pc.st.stacks_guarded, 51);
    ck_assert_uint_eq(pc.st.stacks_canary, 0);
    if (weft__stack_madvise_guards())
        ck_assert_uint_eq(pc.st.stacks_guard_madvise, pc.st.stacks_guarded);
    else
        ck_assert_uint_eq(pc.st.stacks_guard_madvise, 0);   /* mprotect guards instead */
}
END_TEST

/* WEFT_GUARD_ALWAYS refuses to run a fiber without a guard page. The main
 * fiber itself cannot be made, so weft_run() fails cleanly. */
static void body_nothing(void *arg) { (void)arg; }

START_TEST(guard_always_fails_without_guard_pages)
{
    weft_config c;
    weft_config_init(&c);
    c.guard = WEFT_GUARD_ALWAYS;
    weft__stack_force_guard(WEFT__GK_CANARY);
    ck_assert_int_eq(weft_run(&c, body_nothing, NULL), -ENOMEM);
    weft__stack_force_guard(WEFT__GK_MPROTECT);
    weft__stack_set_map_budget(0);
    ck_assert_int_eq(weft_run(&c, body_nothing, NULL), -ENOMEM);
    weft__stack_force_guard(0);
    weft__stack_set_map_budget(-1);
    weft_stats st = stats_now();
    ck_assert_uint_eq(st.stack_bytes_mapped, 0);
}
END_TEST

START_TEST(guard_always_stops_when_budget_runs_out)
{
    /* budget for 8 guards: main + 7 fibers, then -ENOMEM for the spawn */
    struct path_case pc = { .force = WEFT__GK_MPROTECT, .guard = WEFT_GUARD_ALWAYS,
                            .budget = 16, .n = 20 };
    run_path(&pc);
    ck_assert_int_eq(pc.spawn_err, -ENOMEM);
    ck_assert_uint_eq(pc.st.stacks_guard_mprotect, 8);
    ck_assert_uint_eq(pc.st.stacks_canary, 0);
}
END_TEST

/* ------------------------------------------------------ overflow reports */

static volatile char sink;
static int recurse(int depth)
{
    volatile char pad[512];
    pad[0] = (char)depth;
    sink = pad[0];
    return depth > 1000000 ? depth : recurse(depth + 1) + pad[1];
}

static void *overflow(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)recurse(0);
}

/* Canary stacks only notice at the next switch: overflow a little (into
 * the spare page below the stack), then yield. */
static void *small_overflow(void *arg)
{
    (void)arg;
    char *limit = weft__self(weft__worker())->stack->lo;
    volatile char *p = (volatile char *)limit;
    p[-8] = 1; /* what a too-deep frame would do */
    memset((char *)limit - 16, 0xAB, 32);
    weft_yield();
    return NULL;
}

static uint64_t overflow_id;
static void body_overflow(void *arg)
{
    int canary = (int)(intptr_t)arg;
    weft_attr a;
    weft_attr_init(&a);
    a.name = "deep";
    a.stack_size = 64 * 1024;
    a.pinned = 1;       /* it overflows only after its id is printed */
    weft_fiber *f;
    if (!canary) {
        ck_assert_int_eq(weft_spawn(&f, &a, overflow, NULL), 0);
    } else {
        /* find the fiber's stack limit through a probe fiber of the same pool */
        ck_assert_int_eq(weft_spawn(&f, &a, small_overflow, NULL), 0);
    }
    overflow_id = weft_fiber_id(f);
    fprintf(stdout, "%llu\n", (unsigned long long)overflow_id);
    fflush(stdout);
    weft_join(f, NULL, WEFT_FOREVER);
}

/* Runs an overflowing fiber in a child process; returns its stderr and
 * termination signal. */
static int run_overflow_child(int force, int canary, char *err, size_t errlen, char *out,
                              size_t outlen)
{
    int ep[2], op[2];
    ck_assert_int_eq(pipe(ep), 0);
    ck_assert_int_eq(pipe(op), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(ep[1], 2);
        dup2(op[1], 1);
        close(ep[0]);
        close(op[0]);
        weft__stack_force_guard(force);
        weft_config c;
        weft_config_init(&c);
        c.stack_size = 64 * 1024;
        weft_run(&c, body_overflow, (void *)(intptr_t)canary);
        _exit(0); /* not reached when the overflow is caught */
    }
    close(ep[1]);
    close(op[1]);
    ssize_t n = read(ep[0], err, errlen - 1);
    err[n > 0 ? n : 0] = 0;
    n = read(op[0], out, outlen - 1);
    out[n > 0 ? n : 0] = 0;
    close(ep[0]);
    close(op[0]);
    /* qemu-user adds a line of its own when the child dies of a signal. */
    char *note = strstr(err, "qemu: uncaught target signal");
    if (note)
        *note = 0;
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

static void check_report(int force, int canary)
{
    char err[1024], out[64], want[128];
    int sig = run_overflow_child(force, canary, err, sizeof err, out, sizeof out);
    ck_assert_msg(sig == SIGABRT, "child ended with signal %d, stderr: %s", sig, err);
    unsigned long long id = strtoull(out, NULL, 10);
    snprintf(want, sizeof want, "weft: fiber %llu \"deep\" overflowed its 64 KiB stack", id);
    ck_assert_msg(strstr(err, want) != NULL, "stderr was: %s (wanted: %s)", err, want);
    /* exactly one line */
    ck_assert_ptr_eq(strchr(err, '\n'), err + strlen(err) - 1);
}

START_TEST(overflow_hits_madvise_guard)
{
    if (!madvise_guards_here("overflow_hits_madvise_guard"))
        return;
    check_report(WEFT__GK_MADVISE, 0);
}
END_TEST

START_TEST(overflow_hits_mprotect_guard)
{
    check_report(WEFT__GK_MPROTECT, 0);
}
END_TEST

START_TEST(overflow_breaks_canary)
{
    check_report(WEFT__GK_CANARY, 1);
}
END_TEST

/* ----------------------------------------- no allocation after prealloc */

/* Check's own assertions allocate (libcheck is linked statically and so
 * wrapped too), so the measured loop counts failures instead. */
static long calls_during, failures_during;
static void spawn_join_quietly(int n)
{
    static weft_fiber *f[1024];
    for (int i = 0; i < n; i++)
        failures_during += weft_spawn(&f[i], NULL, nothing, NULL) != 0;
    for (int i = 0; i < n; i++)
        failures_during += weft_join(f[i], NULL, WEFT_FOREVER) != 0;
}

static void body_prealloc(void *unused)
{
    (void)unused;
    failures_during = 0;
    long before = allocator_calls();
    for (int round = 0; round < 20; round++)
        spawn_join_quietly(1000);
    for (int i = 0; i < 1000; i++)
        failures_during += weft_spawn(NULL, NULL, nothing, NULL) != 0;
    weft_yield();
    weft_sleep_ms(1);
    calls_during = allocator_calls() - before;
}

START_TEST(prealloc_spawns_without_allocating)
{
    weft_config c;
    weft_config_init(&c);
    c.prealloc_fibers = 1001;
    long before = allocator_calls();
    run_in_runtime(&c, body_prealloc, NULL);
    ck_assert_int_eq(failures_during, 0);
    ck_assert_msg(calls_during == 0, "%ld allocator calls while spawning", calls_during);
    /* and the runtime did allocate and free around it: the wrap is live */
    ck_assert_int_gt(allocator_calls(), before);
    ck_assert_int_eq(n_mmap, n_munmap);
}
END_TEST

/* --------------------------------------------------------------- trimming */

/* Every toucher holds its stack until all have touched theirs: with
 * several workers a child could otherwise exit before the next spawn and
 * hand its stack on, and fewer than 400 stacks would be touched. */
static weft_sem touch_gate = WEFT_SEM_INIT(0);

static void *touch_stack(void *arg)
{
    (void)arg;
    char buf[48 * 1024];
    memset(buf, 1, sizeof buf);
    /* The array escapes into an empty asm, so the compiler must really
     * place it on the stack and fill it. */
    __asm__ volatile("" : : "r"(buf) : "memory");
    ck_assert_int_eq(weft_sem_acquire(&touch_gate, WEFT_FOREVER), 0);
    return (void *)(intptr_t)buf[512];
}

static long rss_pages(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss;
}

static long rss_before_trim, rss_after_trim;
static void body_trim(void *unused)
{
    (void)unused;
    static weft_fiber *f[400];
    for (int i = 0; i < 400; i++)
        ck_assert_int_eq(weft_spawn(&f[i], NULL, touch_stack, NULL), 0);
    for (int i = 0; i < 400; i++)
        ck_assert_int_eq(weft_sem_release(&touch_gate), 0);
    for (int i = 0; i < 400; i++)
        ck_assert_int_eq(weft_join(f[i], NULL, WEFT_FOREVER), 0);
    rss_before_trim = rss_pages();
    weft_sleep_ms(2300); /* two trim periods with every stack unused */
    rss_after_trim = rss_pages();
}

START_TEST(idle_stacks_are_trimmed)
{
    /* The runtime's own stack size, so that with several workers the
     * stacks also pass through the workers' caches. */
    weft_config c;
    weft_config_init(&c);
    c.stack_size = 64 * 1024;
    run_in_runtime(&c, body_trim, NULL);
    long page_kb = (long)sysconf(_SC_PAGESIZE) / 1024;
    long freed_kb = (rss_before_trim - rss_after_trim) * page_kb;
    /* 400 stacks x 48 KiB touched = 19 MiB, and nearly all of it must
     * come back: with several workers that includes the stacks an idle
     * worker held in its cache (without the spill, 3 MiB stay). */
    ck_assert_msg(freed_kb > 400 * 46, "only %ld KiB returned", freed_kb);
}
END_TEST

static void body_sizes(void *unused)
{
    (void)unused;
    weft_attr a;
    weft_attr_init(&a);
    a.stack_size = 20000; /* rounded up to whole pages */
    spawn_and_join(10, &a);
    a.stack_size = 1 << 20;
    spawn_and_join(10, &a);
    a.stack_size = 0;
    spawn_and_join(10, &a);
    weft_stats st = stats_now();
    ck_assert_uint_ge(st.stacks_pooled, 30);
}

START_TEST(stack_sizes_are_pooled_separately)
{
    run_in_runtime(NULL, body_sizes, NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stack");
    TCase *tc = tcase_create("paths");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, madvise_guards_cost_no_map_entry);
    tcase_add_test(tc, mprotect_guards_within_budget_then_canary);
    tcase_add_test(tc, mprotect_guards_with_a_measured_budget);
    tcase_add_test(tc, canary_path);
    tcase_add_test(tc, guard_never_uses_canaries);
    tcase_add_test(tc, guard_auto_prefers_madvise);
    tcase_add_test(tc, guard_always_fails_without_guard_pages);
    tcase_add_test(tc, guard_always_stops_when_budget_runs_out);
    suite_add_tcase(s, tc);

    TCase *ov = tcase_create("overflow");
    tcase_set_timeout(ov, 60);
    tcase_add_test(ov, overflow_hits_madvise_guard);
    tcase_add_test(ov, overflow_hits_mprotect_guard);
    tcase_add_test(ov, overflow_breaks_canary);
    suite_add_tcase(s, ov);

    TCase *pool = tcase_create("pool");
    tcase_set_timeout(pool, 60);
    tcase_add_test(pool, prealloc_spawns_without_allocating);
    tcase_add_test(pool, idle_stacks_are_trimmed);
    tcase_add_test(pool, stack_sizes_are_pooled_separately);
    suite_add_tcase(s, pool);
    return run_suite(s);
}
