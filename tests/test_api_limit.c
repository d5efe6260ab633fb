/*
 * Arena limits through the public API: the limit caps stats.mapped, reaching
 * it is ENOMEM and leaves the arena fully usable, and a budget far below
 * the chunk size is still mostly usable.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "regal.h"

#define MAX_BLOCKS 100000

static regal_arena *create_limited(size_t limit, unsigned flags)
{
    regal_arena_config cfg = {.name = "limited", .limit = limit, .flags = flags};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a, "limit %zu", limit);
    return a;
}

/* Allocates blocks of size n until the arena refuses with ENOMEM; checks
 * mapped against the limit after every success and returns the count. */
static size_t fill_to_limit(regal_arena *a, size_t limit, size_t n, void **out, size_t cap)
{
    size_t count = 0;
    for (;;) {
        cr_assert_lt(count, cap, "no ENOMEM after %zu blocks of %zu under a %zu limit", count, n,
                     limit);
        errno = 0;
        void *p = regal_alloc(a, n);
        if (!p) {
            cr_assert_eq(errno, ENOMEM, "after %zu blocks: errno %d", count, errno);
            break;
        }
        memset(p, (int)(count & 0xff), n);
        out[count++] = p;
        size_t mapped = stats_of(a).mapped;
        cr_assert_leq(mapped, limit, "after %zu blocks of %zu: mapped %zu over the limit %zu",
                      count, n, mapped, limit);
    }
    return count;
}

Test(limit, allocations_fail_with_enomem_at_the_limit_and_the_arena_stays_usable)
{
    const size_t limit = 1 * MiB;
    regal_arena *a = create_limited(limit, 0);
    void **blocks = calloc(MAX_BLOCKS, sizeof *blocks);
    cr_assert_not_null(blocks);

    size_t n = fill_to_limit(a, limit, 1 * KiB, blocks, MAX_BLOCKS);
    cr_assert_geq(n * KiB, limit / 2, "only %zu KiB of a 1 MiB budget", n);
    cr_assert_leq(stats_of(a).in_use, limit);

    /* Still failing at the limit, still ENOMEM; nothing was corrupted. */
    errno = 0;
    cr_assert_null(regal_alloc(a, 1 * KiB));
    cr_assert_eq(errno, ENOMEM);
    cr_assert_eq(regal_arena_check(a), 0);

    /* Free every other block: the same number can be allocated again. */
    size_t freed = 0;
    for (size_t i = 0; i < n; i += 2, freed++) {
        regal_free(blocks[i]);
        blocks[i] = NULL;
    }
    for (size_t i = 0; i < n; i += 2) {
        blocks[i] = regal_alloc(a, 1 * KiB);
        cr_assert_not_null(blocks[i], "re-allocation %zu of %zu failed", i / 2, freed);
        memset(blocks[i], (int)(i & 0xff), KiB);
        cr_assert_leq(stats_of(a).mapped, limit);
    }
    for (size_t i = 1; i < n; i += 2)
        cr_assert_eq(first_byte_not(blocks[i], KiB, (unsigned char)(i & 0xff)), KiB,
                     "block %zu changed", i);
    for (size_t i = 0; i < n; i++)
        regal_free(blocks[i]);
    cr_assert_eq(stats_of(a).in_use, 0);

    /* With everything freed, blocks of other sizes fit again. */
    void *medium = regal_alloc(a, 100 * KiB);
    void *small = regal_alloc(a, 100);
    cr_assert_not_null(medium);
    cr_assert_not_null(small);
    regal_free(medium);
    regal_free(small);

    free(blocks);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(limit, mapped_never_exceeds_the_limit_under_mixed_sizes)
{
    enum { SLOTS = 256 };
    const size_t limit = 1 * MiB;
    regal_arena *a = create_limited(limit, REGAL_ARENA_SINGLE_THREAD);
    rng r = rng_seeded(1234);
    void *p[SLOTS] = {0};
    size_t failures = 0, successes = 0;

    for (int op = 0; op < 20000; op++) {
        size_t i = rng_range(&r, 0, SLOTS - 1);
        if (p[i]) {
            regal_free(p[i]);
            p[i] = NULL;
        } else {
            size_t n;
            switch (rng_next(&r) % 8) {
            case 0:
                n = rng_range(&r, 16 * KiB, 200 * KiB);
                break;
            case 1:
                n = rng_range(&r, 2 * KiB, 16 * KiB);
                break;
            default:
                n = rng_range(&r, 1, 2 * KiB);
                break;
            }
            errno = 0;
            p[i] = regal_alloc(a, n);
            if (p[i]) {
                memset(p[i], 0x5c, n);
                successes++;
            } else {
                cr_assert_eq(errno, ENOMEM, "op %d: size %zu: errno %d", op, n, errno);
                failures++;
            }
        }
        size_t mapped = stats_of(a).mapped;
        cr_assert_leq(mapped, limit, "op %d: mapped %zu over the limit %zu", op, mapped, limit);
    }
    cr_assert_gt(successes, 1000);

    for (size_t i = 0; i < SLOTS; i++)
        regal_free(p[i]);
    cr_assert_eq(stats_of(a).in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* A limit too small for the arena's own metadata refuses the arena; any
 * other limit holds from the start. */
Test(limit, an_arena_is_created_only_within_its_limit)
{
    size_t refused = 0;
    for (size_t limit = 1; limit <= 128 * KiB; limit += 509) {
        regal_arena_config cfg = {.limit = limit};
        errno = 0;
        regal_arena *a = regal_arena_create(&cfg);
        if (a == NULL) {
            cr_assert_eq(errno, ENOMEM, "limit %zu: errno %d", limit, errno);
            refused++;
            continue;
        }
        regal_stats s = stats_of(a);
        cr_assert_leq(s.mapped, limit, "limit %zu: the new arena maps %zu", limit, s.mapped);
        cr_assert_eq(regal_arena_check(a), 0, "limit %zu", limit);
        regal_arena_destroy(a);
    }
    cr_assert_gt(refused, 0, "some limits are too small for any arena");
}

Test(limit, a_budget_far_below_a_chunk_is_mostly_usable)
{
    const size_t limit = 256 * KiB;
    regal_arena *a = create_limited(limit, 0);
    void **blocks = calloc(MAX_BLOCKS, sizeof *blocks);
    cr_assert_not_null(blocks);

    size_t n = fill_to_limit(a, limit, 1 * KiB, blocks, MAX_BLOCKS);
    cr_assert_geq(n, 128, "only %zu blocks of 1 KiB under a 256 KiB limit", n);

    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(first_byte_not(blocks[i], KiB, (unsigned char)(i & 0xff)), KiB);
        regal_free(blocks[i]);
    }
    free(blocks);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(limit, a_single_request_above_the_limit_fails_with_enomem)
{
    const size_t limit = 1 * MiB;
    regal_arena *a = create_limited(limit, 0);
    void *keep = regal_alloc(a, 100);
    cr_assert_not_null(keep);
    fill_pattern(keep, 100, 8);

    static const size_t too_big[] = {1 * MiB + 1, 2 * MiB, 4 * MiB, 64 * MiB};
    for (size_t i = 0; i < ARRAY_LEN(too_big); i++) {
        errno = 0;
        cr_assert_null(regal_alloc(a, too_big[i]), "size %zu", too_big[i]);
        cr_assert_eq(errno, ENOMEM, "size %zu: errno %d", too_big[i], errno);
        errno = 0;
        cr_assert_null(regal_calloc(a, 1, too_big[i]), "calloc size %zu", too_big[i]);
        cr_assert_eq(errno, ENOMEM);
        errno = 0;
        cr_assert_null(regal_aligned_alloc(a, 4096, too_big[i]), "aligned size %zu", too_big[i]);
        cr_assert_eq(errno, ENOMEM);
        errno = 0;
        cr_assert_null(regal_realloc(a, keep, too_big[i]), "realloc size %zu", too_big[i]);
        cr_assert_eq(errno, ENOMEM);
        cr_assert_leq(stats_of(a).mapped, limit);
    }
    cr_assert(pattern_intact(keep, 100, 8));
    cr_assert_eq(regal_arena_of(keep), a);

    /* Requests within the budget still work. */
    void *p = regal_alloc(a, 200 * KiB);
    cr_assert_not_null(p);
    memset(p, 1, 200 * KiB);
    regal_free(p);
    regal_free(keep);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(limit, reset_restores_the_whole_budget)
{
    const size_t limit = 1 * MiB;
    regal_arena *a = create_limited(limit, 0);
    void **blocks = calloc(MAX_BLOCKS, sizeof *blocks);
    cr_assert_not_null(blocks);

    size_t first = fill_to_limit(a, limit, 512, blocks, MAX_BLOCKS);
    for (int cycle = 0; cycle < 20; cycle++) {
        regal_arena_reset(a);
        cr_assert_eq(stats_of(a).in_use, 0);
        size_t again = fill_to_limit(a, limit, 512, blocks, MAX_BLOCKS);
        cr_assert_geq(again, first, "cycle %d: %zu blocks after reset, %zu at first", cycle, again,
                      first);
    }

    free(blocks);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(limit, freeing_large_blocks_gives_their_budget_back)
{
    const size_t limit = 4 * MiB;
    regal_arena *a = create_limited(limit, 0);
    /* Large and medium sizes that fit one at a time but never two at once,
     * so each needs what the previous one gave back (cached or not). */
    static const size_t sizes[] = {3 * MiB, 1 * MiB,   7 * MiB / 2, 600 * KiB,
                                   3 * MiB, 300 * KiB, 2 * MiB,     3 * MiB + 12345};

    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            void *p = regal_alloc(a, sizes[i]);
            cr_assert_not_null(p, "round %d, size %zu: errno %d", round, sizes[i], errno);
            memset(p, 0x21, sizes[i]);
            cr_assert_leq(stats_of(a).mapped, limit, "round %d, size %zu", round, sizes[i]);
            regal_free(p);
        }
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(limit, over_aligned_blocks_fit_a_small_budget)
{
    /* Address space reserved to find an aligned spot is not committed, so
     * it does not count against the limit. */
    const size_t limit = 1 * MiB;
    regal_arena *a = create_limited(limit, 0);

    for (size_t al = 4096; al <= 16 * MiB; al <<= 1) {
        void *p = regal_aligned_alloc(a, al, 1000);
        cr_assert_not_null(p, "alignment %zu under a 1 MiB limit", al);
        cr_assert(is_aligned(p, al));
        memset(p, 0x3e, 1000);
        cr_assert_leq(stats_of(a).mapped, limit, "alignment %zu", al);
        regal_free(p);
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(limit, pools_stop_at_the_limit_and_serve_again_after_frees)
{
    const size_t limit = 512 * KiB;
    regal_arena *a = create_limited(limit, 0);
    regal_pool *p = regal_pool_create(a, 64, 16);
    cr_assert_not_null(p);
    enum { CAP = 20000 };
    void **obj = calloc(CAP, sizeof *obj);
    cr_assert_not_null(obj);

    size_t n = 0;
    for (;;) {
        cr_assert_lt(n, CAP, "no ENOMEM from a pool under a 512 KiB limit");
        errno = 0;
        obj[n] = regal_pool_alloc(p);
        if (!obj[n]) {
            cr_assert_eq(errno, ENOMEM, "after %zu objects: errno %d", n, errno);
            break;
        }
        cr_assert_leq(stats_of(a).mapped, limit);
        n++;
    }
    cr_assert_geq(n * 64, limit / 4, "only %zu objects of 64 bytes under a 512 KiB limit", n);
    for (size_t i = 0; i < n; i += 3)
        regal_pool_free(p, obj[i]);
    for (size_t i = 0; i < n; i += 3) {
        obj[i] = regal_pool_alloc(p);
        cr_assert_not_null(obj[i], "object %zu after frees", i);
    }

    free(obj);
    regal_pool_destroy(p);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}
