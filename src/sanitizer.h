/* sanitizer.h - every hook weft gives ASan, TSan and valgrind (private).
 *
 * fcontext switches stacks behind the tools' backs, so weft tells them:
 *  - ASan: __sanitizer_start_switch_fiber() just before a jump (with a NULL
 *    fake-stack slot when the fiber being left is finished, so ASan frees
 *    it), __sanitizer_finish_switch_fiber() right after one and first thing
 *    in a new fiber, and __asan_unpoison_memory_region() on a stack before
 *    it is reused (the previous fiber's frames left poisoned red zones).
 *  - TSan: one TSan fiber per weft fiber, switched to before each jump.
 *  - valgrind: each stack registered while a fiber owns it, so the jump is
 *    not taken for a wild stack-pointer change.
 * Each hook compiles to nothing unless the tool is in the build (ASan and
 * TSan are detected from the compiler, valgrind from its header).
 */
#ifndef WEFT_SANITIZER_H
#define WEFT_SANITIZER_H

#include <stddef.h>
#ifdef __linux__
#include <pthread.h>
#endif

#if defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define WEFT__ASAN 1
#  endif
#  if __has_feature(thread_sanitizer)
#    define WEFT__TSAN 1
#  endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(WEFT__ASAN)
#  define WEFT__ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(WEFT__TSAN)
#  define WEFT__TSAN 1
#endif

#if defined(__has_include)
#  if __has_include(<valgrind/valgrind.h>) && !defined(WEFT_NO_VALGRIND)
#    include <valgrind/valgrind.h>
#    define WEFT__VALGRIND 1
#  endif
#endif

#ifdef WEFT__VALGRIND
/* Set once when a runtime starts: the client requests cost a few ns even
 * outside valgrind, too much for every spawn. */
extern int weft__on_valgrind;
#ifndef weft__unlikely
#define weft__unlikely(x) __builtin_expect(!!(x), 0)
#endif
#endif

#ifdef WEFT__ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#endif
#ifdef WEFT__TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void  __tsan_destroy_fiber(void *fiber);
void  __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

#ifdef WEFT__TSAN
#define WEFT__NO_TSAN __attribute__((no_sanitize("thread")))
#else
#define WEFT__NO_TSAN
#endif

/* Per-context state the tools need; embedded in every fiber and worker. */
struct weft__san {
#ifdef WEFT__ASAN
    void *fake_stack;
    const void *bottom;
    size_t size;
#endif
#ifdef WEFT__TSAN
    void *tsan_fiber;
#endif
#ifdef WEFT__VALGRIND
    unsigned vg_id;
#endif
    char unused_;
};

/* Called before jumping from `from` to `to`; from_dying: `from` never resumes. */
static inline void weft__san_before_jump(struct weft__san *from, struct weft__san *to,
                                         int from_dying)
{
    (void)from; (void)to; (void)from_dying;
#ifdef WEFT__ASAN
    __sanitizer_start_switch_fiber(from_dying ? NULL : &from->fake_stack, to->bottom, to->size);
#endif
}

/* The TSan half of a switch, called at the last moment by the switch
 * itself (which TSan must not instrument, see WEFT__NO_TSAN). Always
 * inlined: TSan still records entry and exit of every function it does not
 * instrument otherwise, and a frame of its own here would be entered on the
 * old fiber's shadow stack and left on the new one's, popping an entry the
 * new fiber never pushed (a fresh fiber's shadow stack then underflows). */
__attribute__((always_inline)) static inline void weft__san_tsan_switch(struct weft__san *to)
{
    (void)to;
#ifdef WEFT__TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
}

/* Called on the resumed side, right after its jump returned or its entry ran. */
static inline void weft__san_after_jump(struct weft__san *self)
{
    (void)self;
#ifdef WEFT__ASAN
    __sanitizer_finish_switch_fiber(self->fake_stack, NULL, NULL);
#endif
}

static inline void weft__san_stack_acquire(struct weft__san *s, void *lo, size_t size)
{
    (void)s; (void)lo; (void)size;
#ifdef WEFT__ASAN
    __asan_unpoison_memory_region(lo, size);
    s->fake_stack = NULL;
    s->bottom = lo;
    s->size = size;
#endif
#ifdef WEFT__TSAN
    s->tsan_fiber = __tsan_create_fiber(0);
#endif
#ifdef WEFT__VALGRIND
    if (weft__unlikely(__atomic_load_n(&weft__on_valgrind, __ATOMIC_RELAXED)))
        s->vg_id = VALGRIND_STACK_REGISTER(lo, (char *)lo + size);
#endif
}

static inline void weft__san_stack_release(struct weft__san *s, void *lo, size_t size)
{
    (void)s; (void)lo; (void)size;
#ifdef WEFT__ASAN
    __asan_unpoison_memory_region(lo, size);
#endif
#ifdef WEFT__TSAN
    if (s->tsan_fiber) {
        __tsan_destroy_fiber(s->tsan_fiber);
        s->tsan_fiber = NULL;
    }
#endif
#ifdef WEFT__VALGRIND
    if (weft__unlikely(__atomic_load_n(&weft__on_valgrind, __ATOMIC_RELAXED)))
        VALGRIND_STACK_DEREGISTER(s->vg_id);
#endif
}

/* The thread's own context (the scheduler) as the tools know it: ASan
 * needs its bounds to switch back to it. */
static inline void weft__san_thread_init(struct weft__san *s)
{
    (void)s;
#ifdef WEFT__ASAN
    pthread_attr_t attr;
    void *lo = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &lo, &size);
        pthread_attr_destroy(&attr);
    }
    s->fake_stack = NULL;
    s->bottom = lo;
    s->size = size;
#endif
#ifdef WEFT__TSAN
    s->tsan_fiber = __tsan_get_current_fiber();
#endif
}

/* Looks once, as a runtime starts, whether this process runs under
 * valgrind, and keeps the answer for the stack hooks above. */
static inline int weft__valgrind_detect(void)
{
#ifdef WEFT__VALGRIND
    int on = RUNNING_ON_VALGRIND != 0;      /* runtimes on other threads read it */
    __atomic_store_n(&weft__on_valgrind, on, __ATOMIC_RELAXED);
    return on;
#else
    return 0;
#endif
}

#endif
