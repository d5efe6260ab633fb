/*
 * regal_alloc, regal_calloc, regal_aligned_alloc, regal_free and
 * regal_usable_size through the public API.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "regal.h"

#define BATCH 64

/* A batch of live blocks, each filled over its whole usable size with a
 * pattern of its own. */
typedef struct batch {
    size_t n;
    void *ptr[BATCH];
    size_t size[BATCH];
    size_t usable[BATCH];
} batch;

/* Checks one fresh block, fills it and adds it to the batch. */
static void batch_add(batch *b, regal_arena *a, void *p, size_t size, size_t alignment)
{
    cr_assert_not_null(p, "size %zu", size);
    cr_assert(is_aligned(p, alignment), "size %zu: %p not %zu-aligned", size, p, alignment);
    size_t u = regal_usable_size(p);
    cr_assert_geq(u, size, "size %zu: usable %zu", size, u);
    cr_assert_eq(regal_arena_of(p), a, "size %zu", size);
    fill_pattern(p, u, seed_of(p, size));
    b->ptr[b->n] = p;
    b->size[b->n] = size;
    b->usable[b->n] = u;
    b->n++;
}

/* No two live blocks overlap and none was overwritten; then frees them. */
static void batch_check_and_free(batch *b)
{
    range r[BATCH];
    for (size_t i = 0; i < b->n; i++) {
        r[i].start = (uintptr_t)b->ptr[i];
        r[i].len = b->usable[i];
    }
    size_t bad = first_overlap(r, b->n);
    cr_assert_eq(bad, b->n, "blocks at %#lx (+%zu) and %#lx overlap", (unsigned long)r[bad].start,
                 r[bad].len, (unsigned long)(bad + 1 < b->n ? r[bad + 1].start : 0));
    for (size_t i = 0; i < b->n; i++) {
        size_t at = pattern_mismatch(b->ptr[i], b->usable[i], seed_of(b->ptr[i], b->size[i]));
        cr_assert_eq(at, b->usable[i], "size %zu: byte %zu of %zu overwritten", b->size[i], at,
                     b->usable[i]);
        cr_assert_eq(regal_usable_size(b->ptr[i]), b->usable[i]);
        regal_free(b->ptr[i]);
    }
    b->n = 0;
}

Test(alloc, aligns_every_size_to_16_and_gives_at_least_the_size)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    batch b = {0};

    for (size_t size = 0; size <= 20000; size += size < 9000 ? 1 : 37) {
        batch_add(&b, a, regal_alloc(a, size), size, 16);
        if (b.n == BATCH)
            batch_check_and_free(&b);
    }
    batch_check_and_free(&b);

    regal_stats s = stats_of(a);
    cr_assert_eq(s.in_use, 0);
    cr_assert_eq(s.blocks_in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(alloc, serves_large_sizes_aligned_usable_and_disjoint)
{
    static const size_t sizes[] = {256 * KiB,     1 * MiB,     3 * MiB,        16 * MiB,
                                   256 * KiB + 1, 1 * MiB - 1, 3 * MiB + 4095, 100};
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    batch b = {0};

    /* Twice, so the second round may reuse what the first one freed. */
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++)
            batch_add(&b, a, regal_alloc(a, sizes[i]), sizes[i], 16);
        batch_check_and_free(&b);
    }

    cr_assert_eq(stats_of(a).in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(alloc, keeps_blocks_of_random_sizes_disjoint)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    rng r = rng_seeded(42);
    batch b = {0};

    for (int i = 0; i < 20000; i++) {
        size_t size;
        switch (rng_next(&r) % 16) {
        case 0:
            size = rng_range(&r, 8 * KiB, 300 * KiB);
            break;
        case 1:
            size = rng_range(&r, 1024, 8 * KiB);
            break;
        default:
            size = rng_range(&r, 0, 1024);
            break;
        }
        if (i % 1000 == 999)
            size = rng_range(&r, 1 * MiB, 5 * MiB);
        batch_add(&b, a, regal_alloc(a, size), size, 16);
        if (b.n == BATCH)
            batch_check_and_free(&b);
    }
    batch_check_and_free(&b);

    cr_assert_eq(stats_of(a).in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(alloc, default_arena_serves_aligned_blocks_of_every_small_size)
{
    regal_arena *d = regal_default_arena();
    cr_assert_not_null(d);
    batch b = {0};

    for (size_t size = 0; size <= 3000; size++) {
        batch_add(&b, d, regal_alloc(d, size), size, 16);
        if (b.n == BATCH)
            batch_check_and_free(&b);
    }
    batch_check_and_free(&b);

    cr_assert_eq(regal_arena_check(d), 0);
}

Test(alloc, size_classes_waste_under_a_quarter_and_are_fixed_points)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    for (size_t n = 64; n <= 8192; n++) {
        void *p = regal_alloc(a, n);
        cr_assert_not_null(p, "size %zu", n);
        size_t u = regal_usable_size(p);
        cr_assert_geq(u, n, "size %zu: usable %zu", n, u);
        cr_assert_lt((u - n) * 4, u, "size %zu: usable %zu wastes a quarter or more", n, u);
        cr_assert_eq(u % 16, 0, "size %zu: usable %zu is not a multiple of 16", n, u);

        void *q = regal_alloc(a, u);
        cr_assert_not_null(q, "size %zu", u);
        cr_assert_eq(regal_usable_size(q), u, "size %zu: usable %zu, but a request of %zu gets %zu",
                     n, u, u, regal_usable_size(q));
        regal_free(q);
        regal_free(p);
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(alloc, tiny_sizes_use_at_most_64_bytes)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    for (size_t n = 0; n < 64; n++) {
        void *p = regal_alloc(a, n);
        cr_assert_not_null(p, "size %zu", n);
        size_t u = regal_usable_size(p);
        cr_assert_geq(u, n, "size %zu: usable %zu", n, u);
        cr_assert_leq(u, 64, "size %zu: usable %zu", n, u);
        regal_free(p);
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(alloc, zero_size_gives_unique_freeable_blocks)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *p[100];

    for (size_t i = 0; i < ARRAY_LEN(p); i++) {
        p[i] = regal_alloc(a, 0);
        cr_assert_not_null(p[i]);
        cr_assert(is_aligned(p[i], 16));
        cr_assert_eq(regal_arena_of(p[i]), a);
        for (size_t j = 0; j < i; j++)
            cr_assert_neq(p[i], p[j], "zero-size blocks %zu and %zu are the same", j, i);
    }
    cr_assert_eq(stats_of(a).blocks_in_use, ARRAY_LEN(p));

    error_log log;
    error_log_install(&log);
    for (size_t i = 0; i < ARRAY_LEN(p); i++)
        regal_free(p[i]);
    cr_assert_eq(log.count, 0, "freeing zero-size blocks reported an error");
    error_log_remove();

    cr_assert_eq(stats_of(a).blocks_in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* ---- calloc --------------------------------------------------------------------- */

/* Dirties blocks of size n with 0xAB, frees them, then callocs the same
 * sizes and checks every usable byte is zero; several rounds so calloc
 * keeps getting recycled memory. */
static void check_calloc_zeroes_recycled(regal_arena *a, size_t n)
{
    enum { K = 8, ROUNDS = 10 };
    void *p[K];

    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < K; i++) {
            p[i] = regal_alloc(a, n);
            cr_assert_not_null(p[i], "size %zu", n);
            memset(p[i], 0xab, regal_usable_size(p[i]));
        }
        for (int i = 0; i < K; i++)
            regal_free(p[i]);

        for (int i = 0; i < K; i++) {
            /* Both argument orders, and a split of n into count * size. */
            if (i % 3 == 0)
                p[i] = regal_calloc(a, 1, n);
            else if (i % 3 == 1)
                p[i] = regal_calloc(a, n, 1);
            else
                p[i] = n % 8 == 0 ? regal_calloc(a, n / 8, 8) : regal_calloc(a, 1, n);
            cr_assert_not_null(p[i], "size %zu", n);
            cr_assert(is_aligned(p[i], 16));
            size_t u = regal_usable_size(p[i]);
            cr_assert_geq(u, n);
            size_t at = first_byte_not(p[i], u, 0);
            cr_assert_eq(at, u, "calloc(%zu), round %d: byte %zu of %zu is %#x", n, round, at, u,
                         ((unsigned char *)p[i])[at]);
            memset(p[i], 0xab, u);
        }
        for (int i = 0; i < K; i++)
            regal_free(p[i]);
    }
}

Test(calloc, zeroes_recycled_small_blocks)
{
    static const size_t sizes[] = {1, 8, 16, 24, 48, 100, 200, 1000, 4000, 8000};
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    for (size_t i = 0; i < ARRAY_LEN(sizes); i++)
        check_calloc_zeroes_recycled(a, sizes[i]);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(calloc, zeroes_recycled_medium_blocks)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    check_calloc_zeroes_recycled(a, 100 * KiB);
    check_calloc_zeroes_recycled(a, 20 * KiB);

    /* A block carved from several coalesced dirty ones. */
    void *p[10];
    for (int i = 0; i < 10; i++) {
        p[i] = regal_alloc(a, 10 * KiB);
        cr_assert_not_null(p[i]);
        memset(p[i], 0xab, regal_usable_size(p[i]));
    }
    for (int i = 0; i < 10; i++)
        regal_free(p[i]);
    void *q = regal_calloc(a, 90, KiB);
    cr_assert_not_null(q);
    size_t u = regal_usable_size(q);
    cr_assert_eq(first_byte_not(q, u, 0), u);
    regal_free(q);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(calloc, zeroes_recycled_large_blocks)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    check_calloc_zeroes_recycled(a, 2 * MiB);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* A large calloc leaves fresh pages alone (they read as zero), as glibc
 * does: calloc(64 MiB) used to make all of them resident.  Pages that come
 * back from freed blocks read as zero too, given back to the OS rather
 * than cleared. */
Test(calloc, leaves_fresh_pages_of_a_large_block_untouched)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    const size_t n = 64 * MiB;
    unsigned char *p = regal_calloc(a, 1, n);
    cr_assert_not_null(p);
    cr_assert_lt(resident_pages(p, n), 16u, "%zu of %zu pages resident", resident_pages(p, n),
                 n / 4096);
    cr_assert_eq(first_byte_not(p, n, 0), n);
    memset(p, 0xab, n);
    regal_free(p);
    p = regal_calloc(a, n / 8, 8); /* the same pages, from the cache: given back, not cleared */
    cr_assert_not_null(p);
    cr_assert_lt(resident_pages(p, n), 16u);
    cr_assert_eq(first_byte_not(p, regal_usable_size(p), 0), regal_usable_size(p));
    regal_free(p);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* Below 32 MiB, the pages of a freed block are cleared, not given back:
 * a program that uses its calloc'd block would fault every page in again
 * (2.5 ms a round for 4 MiB, glibc 0.04). */
Test(calloc, clears_the_resident_pages_of_a_recycled_large_block)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    const size_t n = 4 * MiB;
    unsigned char *p = regal_alloc(a, n);
    cr_assert_not_null(p);
    memset(p, 0xab, n);
    regal_free(p);
    p = regal_calloc(a, 1, n);
    cr_assert_not_null(p);
    cr_assert_geq(resident_pages(p, n), n / 4096, "%zu of %zu pages resident", resident_pages(p, n),
                  n / 4096);
    cr_assert_eq(first_byte_not(p, regal_usable_size(p), 0), regal_usable_size(p));
    regal_free(p);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(calloc, zeroes_blocks_of_the_default_arena)
{
    regal_arena *d = regal_default_arena();
    cr_assert_not_null(d);

    check_calloc_zeroes_recycled(d, 40);
    check_calloc_zeroes_recycled(d, 100 * KiB);
    check_calloc_zeroes_recycled(d, 2 * MiB);

    cr_assert_eq(regal_arena_check(d), 0);
}

Test(calloc, fails_with_enomem_when_count_times_size_overflows)
{
    static const size_t cases[][2] = {
        {SIZE_MAX / 2, 3},
        {3, SIZE_MAX / 2},
        {(size_t)1 << 32, (size_t)1 << 32},       /* wraps to exactly 0 */
        {((size_t)1 << 32) + 1, (size_t)1 << 32}, /* wraps to 2^32: a plausible size */
        {SIZE_MAX, SIZE_MAX},
        {SIZE_MAX, 2},
        {((size_t)1 << 60) + 1, 16}, /* wraps to 16 */
    };
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *warm = regal_alloc(a, 10);
    cr_assert_not_null(warm);
    regal_stats before = stats_of(a);

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        errno = 0;
        void *p = regal_calloc(a, cases[i][0], cases[i][1]);
        cr_assert_null(p, "calloc(%zu, %zu) returned a block", cases[i][0], cases[i][1]);
        cr_assert_eq(errno, ENOMEM, "calloc(%zu, %zu): errno %d", cases[i][0], cases[i][1], errno);
    }
    regal_stats after = stats_of(a);
    cr_assert_eq(after.in_use, before.in_use);
    cr_assert_eq(after.blocks_in_use, before.blocks_in_use);
    cr_assert_eq(after.alloc_count, before.alloc_count);

    void *p = regal_calloc(a, 10, 10);
    cr_assert_not_null(p);
    cr_assert_eq(first_byte_not(p, 100, 0), 100);
    regal_free(p);
    regal_free(warm);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(calloc, zero_count_or_size_gives_a_unique_freeable_block)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    void *p = regal_calloc(a, 0, 16);
    void *q = regal_calloc(a, 16, 0);
    void *r = regal_calloc(a, 0, 0);
    void *s = regal_calloc(a, 0, SIZE_MAX);
    cr_assert_not_null(p);
    cr_assert_not_null(q);
    cr_assert_not_null(r);
    cr_assert_not_null(s);
    cr_assert_neq(p, q);
    cr_assert_neq(p, r);
    cr_assert_neq(q, r);
    cr_assert_neq(s, p);
    cr_assert_neq(s, q);
    cr_assert_neq(s, r);
    cr_assert_eq(regal_arena_of(p), a);
    cr_assert_eq(stats_of(a).blocks_in_use, 4);

    error_log log;
    error_log_install(&log);
    regal_free(p);
    regal_free(q);
    regal_free(r);
    regal_free(s);
    cr_assert_eq(log.count, 0);
    error_log_remove();

    cr_assert_eq(stats_of(a).blocks_in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* ---- aligned_alloc -------------------------------------------------------------- */

Test(aligned_alloc, honours_every_power_of_two_up_to_64_MiB)
{
    static const size_t sizes[] = {0, 1, 100, 5000, 300000};
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    for (size_t al = 1; al <= 64 * MiB; al <<= 1) {
        void *p[ARRAY_LEN(sizes)];
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            p[i] = regal_aligned_alloc(a, al, sizes[i]);
            cr_assert_not_null(p[i], "alignment %zu, size %zu", al, sizes[i]);
            cr_assert(is_aligned(p[i], al), "alignment %zu, size %zu: %p", al, sizes[i], p[i]);
            cr_assert(is_aligned(p[i], 16), "alignment %zu, size %zu: %p", al, sizes[i], p[i]);
            cr_assert_geq(regal_usable_size(p[i]), sizes[i], "alignment %zu, size %zu", al,
                          sizes[i]);
            cr_assert_eq(regal_arena_of(p[i]), a, "alignment %zu, size %zu", al, sizes[i]);
            fill_pattern(p[i], sizes[i], al + i);
        }
        range r[ARRAY_LEN(sizes)];
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            cr_assert(pattern_intact(p[i], sizes[i], al + i), "alignment %zu, size %zu", al,
                      sizes[i]);
            r[i].start = (uintptr_t)p[i];
            r[i].len = sizes[i];
        }
        cr_assert_eq(first_overlap(r, ARRAY_LEN(sizes)), ARRAY_LEN(sizes), "alignment %zu", al);
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++)
            regal_free(p[i]);
        cr_assert_eq(stats_of(a).blocks_in_use, 0, "alignment %zu", al);
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* Small aligned requests come from the calling thread's own pages, the
 * ones its plain requests of the same class use (regal's pages are 64 KiB):
 * they used to come from the arena's shared pages, under its lock. */
Test(aligned_alloc, small_blocks_share_the_threads_pages_with_plain_ones)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    const size_t cases[][2] = {{16, 48}, {64, 64}, {64, 40}, {256, 256}, {4096, 4096}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t al = cases[i][0], size = cases[i][1];
        void *q = regal_alloc(a, size < al ? al : size);
        void *p = regal_aligned_alloc(a, al, size);
        cr_assert_not_null(p);
        cr_assert(is_aligned(p, al), "alignment %zu, size %zu: %p", al, size, p);
        cr_assert_eq((uintptr_t)p >> 16, (uintptr_t)q >> 16,
                     "alignment %zu, size %zu: %p not in the page of %p", al, size, p, q);
        regal_free(p);
        regal_free(q);
    }
    regal_arena_destroy(a);
}

Test(aligned_alloc, rejects_zero_and_non_powers_of_two_with_einval)
{
    static const size_t bad[] = {0, 3, 24, 1000, 48, 4097, SIZE_MAX, ((size_t)1 << 20) + 16};
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        errno = 0;
        void *p = regal_aligned_alloc(a, bad[i], 100);
        cr_assert_null(p, "alignment %zu gave a block", bad[i]);
        cr_assert_eq(errno, EINVAL, "alignment %zu: errno %d", bad[i], errno);
    }
    cr_assert_eq(stats_of(a).blocks_in_use, 0);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(aligned_alloc, fails_with_enomem_for_impossible_requests)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    errno = 0;
    cr_assert_null(regal_aligned_alloc(a, 64, SIZE_MAX));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(regal_aligned_alloc(a, 4096, SIZE_MAX - 4095));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(regal_aligned_alloc(a, MiB, PTRDIFF_MAX));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(regal_aligned_alloc(a, (size_t)1 << 63, 16));
    cr_assert_eq(errno, ENOMEM);

    void *p = regal_aligned_alloc(a, 256, 256);
    cr_assert_not_null(p);
    cr_assert(is_aligned(p, 256));
    regal_free(p);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* ---- failures and NULL ---------------------------------------------------------- */

Test(alloc, huge_requests_fail_with_enomem_and_the_arena_stays_usable)
{
    static const size_t huge[] = {SIZE_MAX,        PTRDIFF_MAX,      SIZE_MAX - 15,
                                  SIZE_MAX - 4095, SIZE_MAX / 2 + 1, (size_t)1 << 62};
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *keep = regal_alloc(a, 777);
    cr_assert_not_null(keep);
    fill_pattern(keep, 777, 1);
    regal_stats before = stats_of(a);

    for (size_t i = 0; i < ARRAY_LEN(huge); i++) {
        errno = 0;
        void *p = regal_alloc(a, huge[i]);
        cr_assert_null(p, "regal_alloc(%zu) returned a block", huge[i]);
        cr_assert_eq(errno, ENOMEM, "regal_alloc(%zu): errno %d", huge[i], errno);
    }
    regal_stats after = stats_of(a);
    cr_assert_eq(after.in_use, before.in_use);
    cr_assert_eq(after.blocks_in_use, before.blocks_in_use);
    cr_assert_eq(after.alloc_count, before.alloc_count);
    cr_assert_eq(after.free_count, before.free_count);
    cr_assert_eq(after.mapped, before.mapped);

    cr_assert(pattern_intact(keep, 777, 1));
    void *small = regal_alloc(a, 100);
    void *medium = regal_alloc(a, 100 * KiB);
    void *large = regal_alloc(a, 4 * MiB);
    cr_assert_not_null(small);
    cr_assert_not_null(medium);
    cr_assert_not_null(large);
    memset(small, 1, 100);
    memset(medium, 2, 100 * KiB);
    memset(large, 3, 4 * MiB);
    regal_free(small);
    regal_free(medium);
    regal_free(large);
    regal_free(keep);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(alloc, free_of_null_is_a_no_op)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *p = regal_alloc(a, 10);
    cr_assert_not_null(p);
    regal_stats before = stats_of(a);

    error_log log;
    error_log_install(&log);
    regal_free(NULL);
    cr_assert_eq(log.count, 0);
    error_log_remove();

    regal_stats after = stats_of(a);
    cr_assert_eq(after.free_count, before.free_count);
    cr_assert_eq(after.blocks_in_use, before.blocks_in_use);
    regal_free(p);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(alloc, usable_size_of_null_is_zero)
{
    error_log log;
    error_log_install(&log);
    cr_assert_eq(regal_usable_size(NULL), 0);
    cr_assert_eq(log.count, 0, "regal_usable_size(NULL) reported an error");
    error_log_remove();
}
