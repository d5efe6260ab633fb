/*
 * Fixed-size pools through the public API: alignment, reuse, reset,
 * destroy, regal_free on pool objects, wrong-pool frees, bad arguments and
 * the arena's reset taking its pools with it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "regal.h"

static const size_t object_sizes[] = {1, 3, 24, 100, 4096};
static const size_t alignments[] = {1, 4, 8, 16, 64, 4096};

/* How many objects to take from a pool of objects of size n: enough for
 * several pages, not so many that big objects take long. */
static size_t object_count(size_t n)
{
    return n >= 4096 ? 300 : 3000;
}

/* Takes count objects from p; checks each is aligned, distinct from the
 * others, writable over size bytes and owned by a; fills each with its
 * own pattern. */
static void take_objects(regal_pool *p, regal_arena *a, size_t size, size_t alignment, void **obj,
                         size_t count)
{
    for (size_t i = 0; i < count; i++) {
        obj[i] = regal_pool_alloc(p);
        cr_assert_not_null(obj[i], "size %zu, alignment %zu: object %zu", size, alignment, i);
        cr_assert(is_aligned(obj[i], alignment), "size %zu, alignment %zu: %p", size, alignment,
                  obj[i]);
        cr_assert_geq(regal_usable_size(obj[i]), size, "size %zu, alignment %zu", size, alignment);
        cr_assert_eq(regal_arena_of(obj[i]), a, "size %zu, alignment %zu", size, alignment);
        fill_pattern(obj[i], size, seed_of(obj[i], size));
    }
}

/* No two objects overlap over size bytes and every pattern is intact. */
static void check_objects(void **obj, size_t count, size_t size, size_t alignment)
{
    range *r = malloc(count * sizeof *r);
    cr_assert_not_null(r);
    for (size_t i = 0; i < count; i++) {
        cr_assert(pattern_intact(obj[i], size, seed_of(obj[i], size)),
                  "size %zu, alignment %zu: object %zu overwritten", size, alignment, i);
        r[i].start = (uintptr_t)obj[i];
        r[i].len = size;
    }
    size_t bad = first_overlap(r, count);
    cr_assert_eq(bad, count, "size %zu, alignment %zu: objects overlap at %#lx", size, alignment,
                 (unsigned long)(bad < count ? r[bad].start : 0));
    free(r);
}

Test(pool, objects_are_aligned_distinct_and_writable)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void **obj = malloc(3000 * sizeof *obj);
    cr_assert_not_null(obj);

    for (size_t s = 0; s < ARRAY_LEN(object_sizes); s++) {
        for (size_t al = 0; al < ARRAY_LEN(alignments); al++) {
            size_t size = object_sizes[s], alignment = alignments[al];
            regal_pool *p = regal_pool_create(a, size, alignment);
            cr_assert_not_null(p, "size %zu, alignment %zu", size, alignment);
            size_t count = object_count(size);

            take_objects(p, a, size, alignment, obj, count);
            check_objects(obj, count, size, alignment);
            for (size_t i = 0; i < count; i += 2)
                regal_pool_free(p, obj[i]);
            regal_pool_destroy(p);
            cr_assert_eq(regal_arena_check(a), 0, "size %zu, alignment %zu", size, alignment);
        }
    }

    free(obj);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(pool, alignment_zero_means_16)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *obj[500];

    regal_pool *p = regal_pool_create(a, 8, 0);
    cr_assert_not_null(p);
    take_objects(p, a, 8, 16, obj, ARRAY_LEN(obj));
    check_objects(obj, ARRAY_LEN(obj), 8, 16);
    regal_pool_destroy(p);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(pool, serves_the_largest_alignment_and_object)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *obj[20];

    regal_pool *p = regal_pool_create(a, 100, 65536);
    cr_assert_not_null(p);
    take_objects(p, a, 100, 65536, obj, ARRAY_LEN(obj));
    check_objects(obj, ARRAY_LEN(obj), 100, 65536);
    regal_pool_destroy(p);

    regal_pool *big = regal_pool_create(a, REGAL_POOL_MAX_OBJECT, 16);
    cr_assert_not_null(big);
    take_objects(big, a, REGAL_POOL_MAX_OBJECT, 16, obj, 5);
    check_objects(obj, 5, REGAL_POOL_MAX_OBJECT, 16);
    regal_pool_destroy(big);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(pool, hands_a_freed_object_out_again)
{
    /* At the arena's limit the pool cannot grow, so the only free slot
     * after a free is the freed object itself. */
    regal_arena_config cfg = {.name = "full", .limit = 1 * MiB};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    regal_pool *p = regal_pool_create(a, 100, 16);
    cr_assert_not_null(p);

    enum { CAP = 20000 };
    void **obj = malloc(CAP * sizeof *obj);
    cr_assert_not_null(obj);
    size_t n = 0;
    for (;;) {
        cr_assert_lt(n, CAP, "no ENOMEM from a pool under a 1 MiB limit");
        errno = 0;
        void *o = regal_pool_alloc(p);
        if (!o) {
            cr_assert_eq(errno, ENOMEM, "after %zu objects: errno %d", n, errno);
            break;
        }
        obj[n++] = o;
    }
    cr_assert_geq(n * 100, 512 * KiB, "only %zu objects of 100 bytes under a 1 MiB limit", n);

    for (size_t round = 0; round < 10; round++) {
        size_t k = (n / 10) * round + 3;
        void *freed = obj[k];
        regal_pool_free(p, freed);
        void *again = regal_pool_alloc(p);
        cr_assert_eq(again, freed, "round %zu: freed %p, got %p", round, freed, again);
    }

    /* Free ten, get the same ten back, in whatever order. */
    for (size_t i = 0; i < 10; i++)
        regal_pool_free(p, obj[i * 7]);
    for (size_t i = 0; i < 10; i++) {
        void *o = regal_pool_alloc(p);
        cr_assert_not_null(o);
        int found = 0;
        for (size_t j = 0; j < 10; j++)
            found |= o == obj[j * 7];
        cr_assert(found, "object %p was not one of the freed", o);
    }
    errno = 0;
    cr_assert_null(regal_pool_alloc(p));
    cr_assert_eq(errno, ENOMEM);

    free(obj);
    regal_pool_destroy(p);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(pool, reset_frees_every_object_without_growing_the_arena)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    enum { COUNT = 5000 };
    void **obj = malloc(COUNT * sizeof *obj);
    cr_assert_not_null(obj);

    regal_pool *p = regal_pool_create(a, 40, 8);
    cr_assert_not_null(p);
    take_objects(p, a, 40, 8, obj, COUNT);
    size_t mapped = stats_of(a).mapped;

    for (int cycle = 0; cycle < 20; cycle++) {
        regal_pool_reset(p);
        take_objects(p, a, 40, 8, obj, COUNT);
        check_objects(obj, COUNT, 40, 8);
        cr_assert_leq(stats_of(a).mapped, mapped, "cycle %d: mapped grew from %zu to %zu", cycle,
                      mapped, stats_of(a).mapped);
    }
    regal_pool_destroy(p);

    free(obj);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(pool, destroy_gives_the_memory_back_to_the_arena)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *obj[1000];
    size_t mapped = 0;

    for (int cycle = 0; cycle < 300; cycle++) {
        regal_pool *p = regal_pool_create(a, 64, 64);
        cr_assert_not_null(p, "cycle %d", cycle);
        take_objects(p, a, 64, 64, obj, ARRAY_LEN(obj));
        regal_pool_destroy(p);
        if (cycle == 2)
            mapped = stats_of(a).mapped;
        else if (cycle > 2)
            cr_assert_leq(stats_of(a).mapped, mapped, "cycle %d: mapped grew from %zu to %zu",
                          cycle, mapped, stats_of(a).mapped);
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(pool, destroy_of_null_is_a_no_op)
{
    error_log log;
    error_log_install(&log);
    regal_pool_destroy(NULL);
    cr_assert_eq(log.count, 0);
    error_log_remove();
}

Test(pool, regal_free_and_usable_size_work_on_pool_objects)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    error_log log;
    error_log_install(&log);
    for (size_t s = 0; s < ARRAY_LEN(object_sizes); s++) {
        regal_pool *p = regal_pool_create(a, object_sizes[s], 8);
        cr_assert_not_null(p);
        void *obj[100];
        take_objects(p, a, object_sizes[s], 8, obj, ARRAY_LEN(obj));
        for (size_t i = 0; i < ARRAY_LEN(obj); i++)
            regal_free(obj[i]);
        cr_assert_eq(log.count, 0, "size %zu: regal_free of a pool object reported",
                     object_sizes[s]);
        /* The pool still serves, and the arena was not confused. */
        take_objects(p, a, object_sizes[s], 8, obj, ARRAY_LEN(obj));
        check_objects(obj, ARRAY_LEN(obj), object_sizes[s], 8);
        for (size_t i = 0; i < ARRAY_LEN(obj); i++)
            regal_pool_free(p, obj[i]);
        cr_assert_eq(log.count, 0);
        regal_pool_destroy(p);
    }
    error_log_remove();

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(pool, double_free_of_an_object_is_reported_and_ignored)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    regal_pool *p = regal_pool_create(a, 32, 16);
    cr_assert_not_null(p);
    void *obj[50];
    take_objects(p, a, 32, 16, obj, ARRAY_LEN(obj));

    regal_pool_free(p, obj[10]);
    error_log log;
    error_log_install(&log);
    regal_pool_free(p, obj[10]);
    cr_assert_eq(log.count, 1, "%u reports", log.count);
    cr_assert_eq(log.kind, REGAL_ERR_DOUBLE_FREE, "kind %d", (int)log.kind);
    cr_assert_eq(log.ptr, obj[10]);
    error_log_clear(&log);
    regal_free(obj[10]);
    cr_assert_eq(log.count, 1, "regal_free: %u reports", log.count);
    cr_assert_eq(log.kind, REGAL_ERR_DOUBLE_FREE, "regal_free: kind %d", (int)log.kind);
    error_log_remove();

    /* The object is free once: two allocations never share it. */
    void *x = regal_pool_alloc(p);
    void *y = regal_pool_alloc(p);
    cr_assert_not_null(x);
    cr_assert_not_null(y);
    cr_assert_neq(x, y);
    obj[10] = x;
    for (size_t i = 0; i < ARRAY_LEN(obj); i++)
        if (i != 10)
            cr_assert(pattern_intact(obj[i], 32, seed_of(obj[i], 32)), "object %zu", i);

    regal_pool_destroy(p);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(pool, freeing_into_the_wrong_pool_is_reported_and_ignored)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    /* Same object size (same slot shape) and a different one. */
    regal_pool *p1 = regal_pool_create(a, 48, 16);
    regal_pool *p2 = regal_pool_create(a, 48, 16);
    regal_pool *p3 = regal_pool_create(a, 200, 8);
    cr_assert_not_null(p1);
    cr_assert_not_null(p2);
    cr_assert_not_null(p3);
    void *o1[20], *o2[20], *o3[20];
    take_objects(p1, a, 48, 16, o1, 20);
    take_objects(p2, a, 48, 16, o2, 20);
    take_objects(p3, a, 200, 8, o3, 20);

    error_log log;
    error_log_install(&log);
    regal_pool_free(p2, o1[5]);
    cr_assert_eq(log.count, 1, "%u reports", log.count);
    cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE, "kind %d", (int)log.kind);
    cr_assert_eq(log.ptr, o1[5]);

    error_log_clear(&log);
    regal_pool_free(p3, o1[6]);
    cr_assert_eq(log.count, 1);
    cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE);

    error_log_clear(&log);
    regal_pool_free(p1, o3[0]);
    cr_assert_eq(log.count, 1);
    cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE);

    /* A regal block that is no pool object, and a stack address. */
    void *block = regal_alloc(a, 48);
    cr_assert_not_null(block);
    error_log_clear(&log);
    regal_pool_free(p1, block);
    cr_assert_eq(log.count, 1);
    cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE);
    _Alignas(16) char on_stack[64];
    error_log_clear(&log);
    regal_pool_free(p1, on_stack);
    cr_assert_eq(log.count, 1);
    cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE);
    error_log_remove();

    /* Nothing moved: the objects are still live where they were, and p2
     * never hands out p1's object. */
    check_objects(o1, 20, 48, 16);
    check_objects(o2, 20, 48, 16);
    check_objects(o3, 20, 200, 8);
    cr_assert_eq(regal_arena_of(o1[5]), a);
    cr_assert_eq(regal_arena_of(block), a);
    for (int i = 0; i < 200; i++) {
        void *o = regal_pool_alloc(p2);
        cr_assert_not_null(o);
        cr_assert_neq(o, o1[5], "p2 handed out an object of p1");
        cr_assert_neq(o, o1[6]);
        cr_assert_neq(o, block);
    }
    cr_assert_eq(regal_arena_check(a), 0);

    error_log_install(&log);
    regal_pool_free(p1, o1[5]);
    regal_pool_free(p1, o1[6]);
    regal_pool_free(p3, o3[0]);
    regal_free(block);
    cr_assert_eq(log.count, 0, "the rightful frees were reported");
    error_log_remove();

    regal_pool_destroy(p1);
    regal_pool_destroy(p2);
    regal_pool_destroy(p3);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(pool, create_rejects_bad_arguments_with_einval)
{
    static const size_t bad[][2] = {
        {0, 16},
        {16, 3},
        {16, 24},
        {16, 131072},
        {16, (size_t)1 << 40},
        {REGAL_POOL_MAX_OBJECT + 1, 16},
        {SIZE_MAX, 16},
    };
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        errno = 0;
        regal_pool *p = regal_pool_create(a, bad[i][0], bad[i][1]);
        cr_assert_null(p, "size %zu, alignment %zu gave a pool", bad[i][0], bad[i][1]);
        cr_assert_eq(errno, EINVAL, "size %zu, alignment %zu: errno %d", bad[i][0], bad[i][1],
                     errno);
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(pool, arena_reset_destroys_its_pools_and_reuses_their_memory)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    enum { COUNT = 5000 };
    void **obj = malloc(COUNT * sizeof *obj);
    cr_assert_not_null(obj);
    size_t mapped = 0;

    for (int cycle = 0; cycle < 30; cycle++) {
        regal_pool *p = regal_pool_create(a, 72, 8);
        regal_pool *q = regal_pool_create(a, 1000, 64);
        cr_assert_not_null(p);
        cr_assert_not_null(q);
        take_objects(p, a, 72, 8, obj, COUNT);
        take_objects(q, a, 1000, 64, obj, 100);
        if (cycle == 1)
            mapped = stats_of(a).mapped;
        else if (cycle > 1)
            cr_assert_leq(stats_of(a).mapped, mapped, "cycle %d: mapped grew from %zu to %zu",
                          cycle, mapped, stats_of(a).mapped);
        /* No pool_destroy: the reset takes the pools and objects along. */
        regal_arena_reset(a);
        cr_assert_eq(regal_arena_check(a), 0, "cycle %d", cycle);
    }

    free(obj);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(pool, arena_destroy_takes_its_pools_along)
{
    for (int cycle = 0; cycle < 200; cycle++) {
        regal_arena *a = regal_arena_create(NULL);
        cr_assert_not_null(a);
        regal_pool *p = regal_pool_create(a, 24, 8);
        cr_assert_not_null(p);
        for (int i = 0; i < 1000; i++) {
            void *o = regal_pool_alloc(p);
            cr_assert_not_null(o);
            memset(o, 0x24, 24);
        }
        cr_assert_eq(regal_arena_check(a), 0);
        regal_arena_destroy(a);
    }
}

Test(pool, works_in_a_single_thread_arena)
{
    regal_arena_config cfg = {.flags = REGAL_ARENA_SINGLE_THREAD};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    void *obj[2000];

    regal_pool *p = regal_pool_create(a, 12, 4);
    cr_assert_not_null(p);
    take_objects(p, a, 12, 4, obj, ARRAY_LEN(obj));
    check_objects(obj, ARRAY_LEN(obj), 12, 4);
    for (size_t i = 0; i < ARRAY_LEN(obj); i++)
        regal_pool_free(p, obj[i]);
    take_objects(p, a, 12, 4, obj, ARRAY_LEN(obj));
    check_objects(obj, ARRAY_LEN(obj), 12, 4);
    regal_pool_destroy(p);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* The lock-free paths of pools in single-thread arenas (the object in the
 * span that serves, or in another span of the pool) tell the same errors
 * as the locked ones, and change nothing on a bad pointer. */
static void bad_frees_are_reported(unsigned flags)
{
    regal_arena_config cfg = {.flags = flags};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    regal_pool *p = regal_pool_create(a, 40, 8);
    regal_pool *twin = regal_pool_create(a, 40, 8);
    cr_assert_not_null(p);
    cr_assert_not_null(twin);
    enum { N = 3000 }; /* several spans: the first objects are not in the serving one */
    static void *obj[N];
    take_objects(p, a, 40, 8, obj, N);
    void *other = regal_pool_alloc(twin);
    cr_assert_not_null(other);
    void *last = obj[N - 1], *first = obj[0];

    error_log log;
    error_log_install(&log);
    void *bad[] = {(char *)last + 8, (char *)first + 1, other, (char *)other + 40 * 2000};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        error_log_clear(&log);
        regal_pool_free(p, bad[i]);
        cr_assert_eq(log.count, 1, "flags %u, bad pointer %zu: %u reports", flags, i, log.count);
        cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE, "flags %u, bad pointer %zu", flags, i);
    }
    error_log_clear(&log);
    regal_pool_free(p, NULL);
    cr_assert_eq(log.count, 0, "freeing NULL is a no-op");

    void *twice[] = {last, first};
    for (size_t i = 0; i < ARRAY_LEN(twice); i++) {
        error_log_clear(&log);
        regal_pool_free(p, twice[i]);
        cr_assert_eq(log.count, 0, "flags %u: the first free of %zu was reported", flags, i);
        regal_pool_free(p, twice[i]);
        cr_assert_eq(log.count, 1, "flags %u, double free %zu: %u reports", flags, i, log.count);
        cr_assert_eq(log.kind, REGAL_ERR_DOUBLE_FREE, "flags %u, double free %zu", flags, i);
        cr_assert_eq(log.ptr, twice[i]);
    }
    error_log_remove();

    /* Each freed object comes back once, and no other object was touched. */
    void *x = regal_pool_alloc(p), *y = regal_pool_alloc(p), *z = regal_pool_alloc(p);
    cr_assert(x != y && y != z && x != z, "flags %u: an object handed out twice", flags);
    for (size_t i = 1; i < N - 1; i++)
        cr_assert(pattern_intact(obj[i], 40, seed_of(obj[i], 40)), "flags %u: object %zu", flags,
                  i);
    cr_assert_eq(regal_arena_check(a), 0, "flags %u", flags);
    regal_arena_destroy(a);
}

Test(pool, bad_frees_are_reported_by_every_path)
{
    bad_frees_are_reported(0);
    bad_frees_are_reported(REGAL_ARENA_SINGLE_THREAD);
}

/* The lock-free path of a single-thread pool takes no other arena's pool
 * object for its own, from a debug (tracked) arena or a plain one, of the
 * same object size: each is reported and left live. */
Test(pool, objects_of_other_arenas_are_refused_by_a_fast_pool)
{
    regal_arena_config single = {.flags = REGAL_ARENA_SINGLE_THREAD};
    regal_arena_config debug = {.flags = REGAL_ARENA_DEBUG};
    regal_arena *a = regal_arena_create(&single);
    regal_arena *others[] = {regal_arena_create(&debug), regal_arena_create(&single),
                             regal_arena_create(NULL)};
    cr_assert_not_null(a);
    regal_pool *p = regal_pool_create(a, 64, 16);
    cr_assert_not_null(p);
    void *mine[2000];
    take_objects(p, a, 64, 16, mine, ARRAY_LEN(mine)); /* several spans */
    error_log log;
    for (size_t i = 0; i < ARRAY_LEN(others); i++) {
        cr_assert_not_null(others[i]);
        regal_pool *q = regal_pool_create(others[i], 64, 16);
        cr_assert_not_null(q);
        void *theirs[2000];
        take_objects(q, others[i], 64, 16, theirs, ARRAY_LEN(theirs));
        error_log_install(&log);
        regal_pool_free(p, theirs[0]);
        regal_pool_free(p, theirs[ARRAY_LEN(theirs) - 1]);
        error_log_remove();
        cr_assert_eq(log.count, 2, "arena %zu: %u reports", i, log.count);
        cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE, "arena %zu: kind %d", i, (int)log.kind);
        check_objects(theirs, ARRAY_LEN(theirs), 64, 16);
        cr_assert_eq(regal_arena_check(others[i]), 0, "arena %zu", i);
        regal_arena_destroy(others[i]);
    }
    check_objects(mine, ARRAY_LEN(mine), 64, 16);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* A write over a freed object's free-list link is caught by the
 * single-thread fast path too: never the planted address, one report. */
Test(pool, an_overwritten_link_is_caught_in_a_single_thread_arena)
{
    regal_arena_config cfg = {.flags = REGAL_ARENA_SINGLE_THREAD};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    regal_pool *p = regal_pool_create(a, 32, 16);
    cr_assert_not_null(p);
    void *o[4];
    for (int i = 0; i < 4; i++)
        o[i] = regal_pool_alloc(p);
    regal_pool_free(p, o[1]);
    static _Alignas(16) char target[64];
    void *planted = target;
    memcpy(o[1], &planted, sizeof planted); /* the write after free */

    error_log log;
    error_log_install(&log);
    void *again = regal_pool_alloc(p);
    void *next = regal_pool_alloc(p);
    error_log_remove();
    cr_assert_eq(again, o[1], "the freed object itself comes back first");
    cr_assert_not_null(next);
    cr_assert_neq(next, (void *)target);
    cr_assert_eq(log.count, 1, "%u reports", log.count);
    cr_assert_eq(log.kind, REGAL_ERR_CORRUPTION);
    regal_arena_destroy(a);
}

/* ---- The hot stack of single-thread pools (src/pool.h) ------------------------ */

/* A pool of objects of size bytes (aligned to 16) in a new single-thread
 * arena, *a. */
static regal_pool *fast_pool(regal_arena **a, size_t size)
{
    regal_arena_config cfg = {.flags = REGAL_ARENA_SINGLE_THREAD};
    *a = regal_arena_create(&cfg);
    cr_assert_not_null(*a);
    regal_pool *p = regal_pool_create(*a, size, 16);
    cr_assert_not_null(p);
    return p;
}

/* The objects freed last come back first, and while they wait the arena
 * counts them as free and passes its check. */
Test(pool, a_fast_pool_hands_out_the_objects_freed_last_first)
{
    regal_arena *a;
    regal_pool *p = fast_pool(&a, 96);
    enum { N = 3000 }; /* several spans */
    static void *obj[N];
    take_objects(p, a, 96, 16, obj, N);
    size_t in_use = stats_of(a).in_use;
    const size_t freed[] = {10, 2000, 30, N - 1};
    for (size_t i = 0; i < ARRAY_LEN(freed); i++)
        regal_pool_free(p, obj[freed[i]]);
    regal_stats s = stats_of(a);
    cr_assert_eq(s.blocks_in_use, N - ARRAY_LEN(freed));
    cr_assert_eq(s.in_use, in_use - ARRAY_LEN(freed) * regal_usable_size(obj[0]));
    cr_assert_eq(regal_arena_check(a), 0);
    for (size_t i = ARRAY_LEN(freed); i-- > 0;) {
        void *o = regal_pool_alloc(p);
        cr_assert_eq(o, obj[freed[i]], "got %p, not %p (object %zu)", o, obj[freed[i]], freed[i]);
    }
    cr_assert_eq(stats_of(a).in_use, in_use);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* Objects freed last hold their spans until they are handed out again or
 * put back: regal_arena_trim puts them back and gives the spans away. */
Test(pool, trim_gives_back_the_spans_of_a_fast_pools_last_freed_objects)
{
    regal_arena *a;
    regal_pool *p = fast_pool(&a, 96);
    enum { N = 20000 }; /* about 30 spans */
    void **obj = malloc(N * sizeof *obj);
    cr_assert_not_null(obj);
    take_objects(p, a, 96, 16, obj, N);
    for (size_t i = 0; i < N; i++)
        regal_pool_free(p, obj[(i * 7919) % N]); /* scattered over the spans */
    cr_assert_eq(stats_of(a).in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_trim(a);
    regal_stats s = stats_of(a);
    cr_assert_leq(s.resident, 256 * KiB, "resident %zu after everything was freed and trimmed",
                  s.resident);
    cr_assert_eq(regal_arena_check(a), 0);
    take_objects(p, a, 96, 16, obj, N);
    check_objects(obj, N, 96, 16);
    free(obj);
    regal_arena_destroy(a);
}

/* An object in a later page of a span of several pages (the serving span
 * frees those the fast way too) waits on the hot stack like any other: the
 * check found it "bad" when it looked for it in its span's first page. */
Test(pool, objects_freed_last_may_lie_past_their_spans_first_page)
{
    regal_arena *a;
    regal_pool *p = fast_pool(&a, 10000);
    void *obj[13]; /* one span of two 64 KiB pages */
    take_objects(p, a, 10000, 16, obj, ARRAY_LEN(obj));
    cr_assert_geq((uintptr_t)obj[12] - (uintptr_t)obj[0], 64 * KiB);
    regal_pool_free(p, obj[12]);
    cr_assert_eq(regal_arena_check(a), 0);
    cr_assert_eq(regal_pool_alloc(p), obj[12]);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* regal_pool_reset puts the objects freed last back too, and a write after
 * the free of one of them is reported there, once. */
Test(pool, reset_puts_back_a_fast_pools_last_freed_objects)
{
    regal_arena *a;
    regal_pool *p = fast_pool(&a, 64);
    void *obj[100];
    take_objects(p, a, 64, 16, obj, ARRAY_LEN(obj));
    for (size_t i = 0; i < 5; i++)
        regal_pool_free(p, obj[i * 10]);
    memset(obj[20], 0x5a, 64); /* the write after free */

    error_log log;
    error_log_install(&log);
    regal_pool_reset(p);
    error_log_remove();
    cr_assert_eq(log.count, 1, "%u reports", log.count);
    cr_assert_eq(log.kind, REGAL_ERR_CORRUPTION);
    cr_assert_eq(log.ptr, obj[20]);

    regal_stats s = stats_of(a);
    cr_assert_eq(s.in_use, 0);
    cr_assert_eq(s.blocks_in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    take_objects(p, a, 64, 16, obj, ARRAY_LEN(obj));
    check_objects(obj, ARRAY_LEN(obj), 64, 16);
    regal_arena_destroy(a);
}

/* The statistics table counts objects freed last as free. */
Test(pool, the_stats_of_a_fast_pool_count_its_last_freed_objects_as_free)
{
    regal_arena *a;
    regal_pool *p = fast_pool(&a, 48);
    void *obj[3];
    take_objects(p, a, 48, 16, obj, ARRAY_LEN(obj));
    regal_pool_free(p, obj[1]);
    char *json = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&json, &len);
    cr_assert_not_null(out);
    regal_arena_print_stats_json(a, out);
    fclose(out);
    cr_assert_not_null(strstr(json, "{\"kind\":\"pool\",\"size\":48,\"in_use\":2,"), "%s", json);
    free(json);
    regal_arena_destroy(a);
}

/* ---- Threads sharing a pool ---------------------------------------------------- */

#define POOL_THREADS    4
#define POOL_PER_THREAD 2000

typedef struct pool_worker {
    pthread_t thread;
    regal_pool *pool;
    int id;
    void *obj[POOL_PER_THREAD];
    size_t bad;
} pool_worker;

static void *pool_thread(void *arg)
{
    pool_worker *w = arg;
    for (int round = 0; round < 10; round++) {
        for (size_t i = 0; i < POOL_PER_THREAD; i++) {
            w->obj[i] = regal_pool_alloc(w->pool);
            if (!w->obj[i]) {
                w->bad++;
                continue;
            }
            fill_pattern(w->obj[i], 40, seed_of(w->obj[i], (uint64_t)w->id));
        }
        for (size_t i = 0; i < POOL_PER_THREAD; i++) {
            if (!w->obj[i])
                continue;
            if (!pattern_intact(w->obj[i], 40, seed_of(w->obj[i], (uint64_t)w->id)))
                w->bad++;
            /* Keep the last round's odd objects for main to free. */
            if (round < 9 || i % 2 == 0) {
                regal_pool_free(w->pool, w->obj[i]);
                w->obj[i] = NULL;
            }
        }
    }
    return NULL;
}

Test(pool, is_shared_safely_by_threads)
{
    static pool_worker w[POOL_THREADS];
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    regal_pool *p = regal_pool_create(a, 40, 8);
    cr_assert_not_null(p);

    for (int i = 0; i < POOL_THREADS; i++) {
        w[i].pool = p;
        w[i].id = i;
        cr_assert_eq(pthread_create(&w[i].thread, NULL, pool_thread, &w[i]), 0);
    }
    for (int i = 0; i < POOL_THREADS; i++)
        cr_assert_eq(pthread_join(w[i].thread, NULL), 0);

    /* The survivors are intact; free them from this thread. */
    for (int i = 0; i < POOL_THREADS; i++) {
        cr_assert_eq(w[i].bad, 0, "thread %d: %zu bad objects", i, w[i].bad);
        for (size_t k = 0; k < POOL_PER_THREAD; k++) {
            if (!w[i].obj[k])
                continue;
            cr_assert(pattern_intact(w[i].obj[k], 40, seed_of(w[i].obj[k], (uint64_t)i)));
            regal_pool_free(p, w[i].obj[k]);
        }
    }
    cr_assert_eq(regal_arena_check(a), 0);
    regal_pool_destroy(p);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}
