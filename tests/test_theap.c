/*
 * Unit tests of src/theap.c as the shim's fast path (src/fast.h) sees it:
 * the calling thread's theap of the default arena is read with no look at
 * the arena, so what a reset leaves in it must serve nothing.
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include "fast.h"
#include "helpers.h"

#define SIZE 64

typedef struct other {
    pthread_barrier_t bar;
    void *before, *after;
} other;

static void *other_thread(void *arg)
{
    other *o = arg;
    o->before = regal_alloc(regal_default_arena(), SIZE); /* binds its default theap */
    pthread_barrier_wait(&o->bar);                        /* main resets and allocates */
    pthread_barrier_wait(&o->bar);
    o->after = rg_alloc_fast_default(SIZE);
    return NULL;
}

Test(theap, a_reset_leaves_other_threads_default_theaps_nothing_to_serve)
{
    regal_arena *d = regal_default_arena();
    other o = {.before = NULL};
    cr_assert_eq(pthread_barrier_init(&o.bar, NULL, 2), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, other_thread, &o), 0);
    pthread_barrier_wait(&o.bar);
    cr_assert_not_null(o.before);
    regal_arena_reset(d);
    /* The span the other thread's queue pointed to serves this thread now. */
    void *mine[100];
    for (int i = 0; i < 100; i++)
        cr_assert_not_null(mine[i] = regal_alloc(d, SIZE));
    pthread_barrier_wait(&o.bar);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_null(o.after, "the orphaned theap served %p", o.after);
    for (int i = 0; i < 100; i++)
        regal_free(mine[i]);
    cr_assert_eq(stats_of(d).blocks_in_use, 0);
    cr_assert_eq(regal_arena_check(d), 0);
    pthread_barrier_destroy(&o.bar);
}
