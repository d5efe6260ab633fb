/*
 * regal_realloc through the public API: every size transition keeps the
 * contents, in-place resizing, moves between arenas, and failure.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "regal.h"

static size_t min_size(size_t x, size_t y)
{
    return x < y ? x : y;
}

/* Resizes p (filled with seed over old bytes) to size n in arena a, checks
 * the result and refills it over n bytes with seed + 1. */
static void *resize_checked(regal_arena *a, void *p, size_t old, size_t n, uint64_t seed)
{
    void *q = regal_realloc(a, p, n);
    cr_assert_not_null(q, "realloc %zu -> %zu failed", old, n);
    cr_assert(is_aligned(q, 16), "realloc %zu -> %zu: %p", old, n, q);
    cr_assert_geq(regal_usable_size(q), n, "realloc %zu -> %zu: usable %zu", old, n,
                  regal_usable_size(q));
    cr_assert_eq(regal_arena_of(q), a, "realloc %zu -> %zu", old, n);
    size_t keep = min_size(old, n);
    size_t at = pattern_mismatch(q, keep, seed);
    cr_assert_eq(at, keep, "realloc %zu -> %zu: byte %zu of the %zu kept ones changed", old, n, at,
                 keep);
    fill_pattern(q, n, seed + 1);
    return q;
}

Test(realloc, of_null_allocates)
{
    static const size_t sizes[] = {0, 1, 100, 100 * KiB, 4 * MiB};
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *p = regal_realloc(a, NULL, sizes[i]);
        cr_assert_not_null(p, "size %zu", sizes[i]);
        cr_assert(is_aligned(p, 16));
        cr_assert_geq(regal_usable_size(p), sizes[i]);
        cr_assert_eq(regal_arena_of(p), a);
        memset(p, 0x42, sizes[i]);
        regal_free(p);
    }
    cr_assert_eq(stats_of(a).blocks_in_use, 0);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(realloc, keeps_contents_across_every_size_transition)
{
    /* {from, to}: small, medium (free-list heap) and large (own mapping)
     * in every direction, growing and shrinking within each kind. */
    static const size_t transitions[][2] = {
        {24, 200},
        {200, 24},
        {1, 4000},
        {4000, 1},
        {1000, 100 * KiB},
        {100 * KiB, 1000},
        {100 * KiB, 200 * KiB},
        {200 * KiB, 120 * KiB},
        {100 * KiB, 4 * MiB},
        {4 * MiB, 100 * KiB},
        {4 * MiB, 100},
        {50, 3 * MiB},
        {4 * MiB, 8 * MiB},
        {8 * MiB, 5 * MiB},
        {2 * MiB, 2 * MiB + 1},
        {3 * MiB, 16 * MiB},
    };
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    /* Neighbours, so that blocks cannot always grow into free space. */
    void *fence[8];
    for (size_t i = 0; i < ARRAY_LEN(fence); i++) {
        fence[i] = regal_alloc(a, i * 1000);
        cr_assert_not_null(fence[i]);
        fill_pattern(fence[i], i * 1000, 1000 + i);
    }

    for (size_t i = 0; i < ARRAY_LEN(transitions); i++) {
        size_t from = transitions[i][0], to = transitions[i][1];
        void *before = regal_alloc(a, 64);
        void *p = regal_alloc(a, from);
        void *after = regal_alloc(a, 64);
        cr_assert_not_null(p);
        cr_assert_not_null(before);
        cr_assert_not_null(after);
        fill_pattern(before, 64, 1);
        fill_pattern(after, 64, 2);
        fill_pattern(p, from, i * 10);

        p = resize_checked(a, p, from, to, i * 10);

        cr_assert(pattern_intact(before, 64, 1), "transition %zu -> %zu", from, to);
        cr_assert(pattern_intact(after, 64, 2), "transition %zu -> %zu", from, to);
        regal_free(before);
        regal_free(after);
        regal_free(p);
    }

    for (size_t i = 0; i < ARRAY_LEN(fence); i++) {
        cr_assert(pattern_intact(fence[i], i * 1000, 1000 + i));
        regal_free(fence[i]);
    }
    regal_stats s = stats_of(a);
    cr_assert_eq(s.blocks_in_use, 0);
    cr_assert_eq(s.in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(realloc, keeps_contents_along_a_chain_of_resizes)
{
    static const size_t chain[] = {1,         17,        300,       4000,    100 * KiB, 4 * MiB,
                                   16,        2 * MiB,   6 * MiB,   3 * MiB, 8 * MiB,   5 * MiB,
                                   100 * KiB, 150 * KiB, 110 * KiB, 24,      9000,      0};
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    void *p = regal_alloc(a, chain[0]);
    cr_assert_not_null(p);
    fill_pattern(p, chain[0], 0);
    for (size_t i = 1; i < ARRAY_LEN(chain); i++)
        p = resize_checked(a, p, chain[i - 1], chain[i], i - 1);
    cr_assert_eq(stats_of(a).blocks_in_use, 1);
    regal_free(p);
    cr_assert_eq(stats_of(a).blocks_in_use, 0);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(realloc, keeps_contents_of_many_blocks_under_random_resizes)
{
    enum { SLOTS = 64 };
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    rng r = rng_seeded(7);
    void *p[SLOTS] = {0};
    size_t size[SLOTS] = {0};
    uint64_t seed[SLOTS] = {0};

    for (int op = 0; op < 20000; op++) {
        size_t i = rng_range(&r, 0, SLOTS - 1);
        size_t n;
        switch (rng_next(&r) % 32) {
        case 0:
            n = rng_range(&r, 256 * KiB, 3 * MiB);
            break;
        case 1:
        case 2:
        case 3:
            n = rng_range(&r, 8 * KiB, 200 * KiB);
            break;
        default:
            n = rng_range(&r, 0, 4 * KiB);
            break;
        }
        if (p[i] && rng_next(&r) % 8 == 0) {
            cr_assert(pattern_intact(p[i], size[i], seed[i]), "op %d", op);
            regal_free(p[i]);
            p[i] = NULL;
            size[i] = 0;
            continue;
        }
        void *q = regal_realloc(a, p[i], n);
        cr_assert_not_null(q, "op %d: realloc %zu -> %zu", op, size[i], n);
        cr_assert(is_aligned(q, 16));
        cr_assert_geq(regal_usable_size(q), n);
        size_t keep = min_size(size[i], n);
        cr_assert_eq(pattern_mismatch(q, keep, seed[i]), keep, "op %d: realloc %zu -> %zu", op,
                     size[i], n);
        p[i] = q;
        size[i] = n;
        seed[i] = (uint64_t)op * 977;
        fill_pattern(q, n, seed[i]);
    }

    size_t live = 0;
    for (size_t i = 0; i < SLOTS; i++) {
        if (!p[i])
            continue;
        live++;
        cr_assert(pattern_intact(p[i], size[i], seed[i]));
    }
    cr_assert_eq(stats_of(a).blocks_in_use, live);
    cr_assert_eq(regal_arena_check(a), 0);
    for (size_t i = 0; i < SLOTS; i++)
        regal_free(p[i]);
    cr_assert_eq(stats_of(a).in_use, 0);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(realloc, to_zero_returns_a_minimal_freeable_block)
{
    static const size_t sizes[] = {0, 100, 100 * KiB, 4 * MiB};
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *p = regal_alloc(a, sizes[i]);
        cr_assert_not_null(p);
        void *q = regal_realloc(a, p, 0);
        cr_assert_not_null(q, "realloc(%zu -> 0) returned NULL", sizes[i]);
        cr_assert(is_aligned(q, 16));
        cr_assert_eq(regal_arena_of(q), a);
        cr_assert_eq(stats_of(a).blocks_in_use, 1, "size %zu: the old block was not freed",
                     sizes[i]);

        error_log log;
        error_log_install(&log);
        regal_free(q);
        cr_assert_eq(log.count, 0);
        error_log_remove();
        cr_assert_eq(stats_of(a).blocks_in_use, 0);
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(realloc, shrinks_a_large_block_in_place)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    char *p = regal_alloc(a, 4 * MiB);
    cr_assert_not_null(p);
    fill_pattern(p, 4 * MiB, 99);
    char *q = regal_realloc(a, p, 3 * MiB);
    cr_assert_eq(q, p, "shrinking 4 MiB to 3 MiB moved the block");
    cr_assert_geq(regal_usable_size(q), 3 * MiB);
    cr_assert(pattern_intact(q, 3 * MiB, 99));
    regal_free(q);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(realloc, within_the_usable_size_keeps_the_pointer)
{
    static const size_t sizes[] = {1, 16, 100, 1000, 5000, 9000, 100 * KiB, 2 * MiB, 4 * MiB};
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        void *p = regal_alloc(a, n);
        cr_assert_not_null(p);
        size_t u = regal_usable_size(p);
        fill_pattern(p, n, n);

        cr_assert_eq(regal_realloc(a, p, n), p, "realloc to the same size %zu moved", n);
        cr_assert_eq(regal_realloc(a, p, u), p, "size %zu: realloc to the usable %zu moved", n, u);
        cr_assert_eq(regal_realloc(a, p, n), p, "size %zu: realloc from %zu back moved", n, u);
        cr_assert(pattern_intact(p, n, n));
        cr_assert_geq(regal_usable_size(p), n);
        regal_free(p);
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* A small block moved to another class comes from the caller's own spans,
 * like a malloc: freed, it is the next block of its class the thread gets.
 * (It came from the arena's shared spans, and every free of it went the
 * remote way.) */
Test(realloc, of_a_small_block_to_another_class_takes_it_from_the_callers_spans)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *warm = regal_alloc(a, 100); /* the thread now has a span of that class */
    cr_assert_not_null(warm);

    for (int i = 0; i < 8; i++) {
        void *p = regal_alloc(a, 24);
        cr_assert_not_null(p);
        fill_pattern(p, 24, 7);
        void *q = regal_realloc(a, p, 100);
        cr_assert_not_null(q);
        cr_assert_neq(q, p, "24 and 100 bytes share a class");
        cr_assert(pattern_intact(q, 24, 7));
        regal_free(q);
        void *r = regal_alloc(a, 100);
        cr_assert_eq(r, q, "round %d: the freed block %p is not reused (got %p)", i, q, r);
        regal_free(r);
    }

    regal_free(warm);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(realloc, moves_a_block_into_the_target_arena)
{
    static const size_t sizes[] = {100, 100 * KiB, 4 * MiB};
    regal_arena *a = regal_arena_create(NULL);
    regal_arena *b = regal_arena_create(NULL);
    cr_assert_not_null(a);
    cr_assert_not_null(b);

    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        /* Same size (fits where it is, must still move), larger, smaller. */
        const size_t targets[] = {sizes[i], sizes[i] * 2, sizes[i] / 2};
        for (size_t t = 0; t < ARRAY_LEN(targets); t++) {
            void *p = regal_alloc(a, sizes[i]);
            cr_assert_not_null(p);
            fill_pattern(p, sizes[i], i + t);

            void *q = regal_realloc(b, p, targets[t]);
            cr_assert_not_null(q);
            cr_assert_eq(regal_arena_of(q), b, "realloc %zu -> %zu stayed in its arena", sizes[i],
                         targets[t]);
            size_t keep = min_size(sizes[i], targets[t]);
            cr_assert(pattern_intact(q, keep, i + t), "realloc %zu -> %zu into another arena",
                      sizes[i], targets[t]);
            cr_assert_eq(stats_of(a).blocks_in_use, 0, "the old block of %zu was not freed",
                         sizes[i]);
            cr_assert_eq(stats_of(b).blocks_in_use, 1);
            regal_free(q);
        }
    }

    cr_assert_eq(regal_arena_check(a), 0);
    cr_assert_eq(regal_arena_check(b), 0);
    regal_arena_destroy(a);
    regal_arena_destroy(b);
}

Test(realloc, moves_a_block_of_the_default_arena_into_an_arena)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    void *p = regal_alloc(regal_default_arena(), 500);
    cr_assert_not_null(p);
    fill_pattern(p, 500, 5);
    void *q = regal_realloc(a, p, 700);
    cr_assert_not_null(q);
    cr_assert_eq(regal_arena_of(q), a);
    cr_assert(pattern_intact(q, 500, 5));
    regal_free(q);

    cr_assert_eq(regal_arena_check(regal_default_arena()), 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(realloc, failure_leaves_the_block_untouched)
{
    static const size_t sizes[] = {1000, 100 * KiB, 4 * MiB};
    static const size_t huge[] = {SIZE_MAX, PTRDIFF_MAX, SIZE_MAX - 15};
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    error_log log;
    error_log_install(&log);
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *p = regal_alloc(a, sizes[i]);
        cr_assert_not_null(p);
        size_t u = regal_usable_size(p);
        fill_pattern(p, sizes[i], i);
        regal_stats before = stats_of(a);

        for (size_t h = 0; h < ARRAY_LEN(huge); h++) {
            errno = 0;
            void *q = regal_realloc(a, p, huge[h]);
            cr_assert_null(q, "realloc %zu -> %zu succeeded", sizes[i], huge[h]);
            cr_assert_eq(errno, ENOMEM, "realloc %zu -> %zu: errno %d", sizes[i], huge[h], errno);
        }

        regal_stats after = stats_of(a);
        cr_assert_eq(after.blocks_in_use, before.blocks_in_use);
        cr_assert_eq(after.in_use, before.in_use);
        cr_assert_eq(regal_arena_of(p), a);
        cr_assert_eq(regal_usable_size(p), u);
        cr_assert(pattern_intact(p, sizes[i], i), "size %zu: contents changed", sizes[i]);
        regal_free(p);
    }
    cr_assert_eq(log.count, 0, "a failed realloc reported an error");
    error_log_remove();

    cr_assert_eq(stats_of(a).blocks_in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(realloc, into_a_full_arena_fails_and_keeps_the_block)
{
    regal_arena *a = regal_arena_create(NULL);
    regal_arena_config cfg = {.name = "small", .limit = 256 * KiB};
    regal_arena *b = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    cr_assert_not_null(b);

    void *p = regal_alloc(a, 1 * MiB);
    cr_assert_not_null(p);
    fill_pattern(p, 1 * MiB, 3);
    errno = 0;
    void *q = regal_realloc(b, p, 1 * MiB);
    cr_assert_null(q);
    cr_assert_eq(errno, ENOMEM);
    cr_assert_eq(regal_arena_of(p), a);
    cr_assert(pattern_intact(p, 1 * MiB, 3));
    cr_assert_eq(stats_of(a).blocks_in_use, 1);
    cr_assert_eq(stats_of(b).blocks_in_use, 0);

    /* Both arenas still serve. */
    void *r = regal_alloc(b, 1000);
    cr_assert_not_null(r);
    regal_free(r);
    regal_free(p);

    cr_assert_eq(regal_arena_check(a), 0);
    cr_assert_eq(regal_arena_check(b), 0);
    regal_arena_destroy(a);
    regal_arena_destroy(b);
}
