/*
 * Relocatable blocks through the public API: handles keep their contents
 * across compaction, stale handles are reported and never dereferenced,
 * compacting a compact arena moves nothing, compaction gives memory back,
 * the arena's limit holds, handle blocks are not regal_free's, and threads
 * may share an arena of handles.  Fixed seeds.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "regal.h"

static regal_arena *create(const char *name, size_t limit, unsigned flags)
{
    regal_arena_config cfg = {.name = name, .limit = limit, .flags = flags};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a, "arena '%s'", name);
    return a;
}

/* A handle and what its block must hold. */
typedef struct held {
    regal_handle h;
    size_t size;
    uint64_t seed;
} held;

static held hold(regal_arena *a, size_t size, uint64_t seed)
{
    held x = {regal_handle_alloc(a, size), size, seed};
    cr_assert_neq(x.h, 0, "handle of %zu bytes: errno %d", size, errno);
    void *p = regal_handle_ptr(a, x.h);
    cr_assert_not_null(p);
    cr_assert(is_aligned(p, 16), "%p of %zu bytes is not 16-aligned", p, size);
    fill_pattern(p, size, seed);
    return x;
}

static void check_held(regal_arena *a, const held *x, const char *when)
{
    const unsigned char *p = regal_handle_ptr(a, x->h);
    cr_assert_not_null(p, "%s: live handle %#llx has no block", when, (unsigned long long)x->h);
    size_t bad = pattern_mismatch(p, x->size, x->seed);
    cr_assert_eq(bad, x->size, "%s: block of %zu bytes differs at byte %zu", when, x->size, bad);
}

static size_t random_size(rng *r)
{
    switch (rng_next(r) % 8) {
    case 0:
        return rng_range(r, 0, 16);
    case 1:
        return rng_range(r, 4096, 64 * KiB);
    case 2:
        return rng_range(r, 64 * KiB, 300 * KiB);
    default:
        return rng_range(r, 17, 2000);
    }
}

Test(handle, blocks_are_16_aligned_and_distinct)
{
    regal_arena *a = create("aligned", 0, 0);
    enum { N = 600 };
    range r[N];
    for (size_t i = 0; i < N; i++) {
        size_t size = i % 300;
        held x = hold(a, size, i);
        r[i] = (range){(uintptr_t)regal_handle_ptr(a, x.h), size ? size : 1};
    }
    cr_assert_eq(first_overlap(r, N), N, "two handle blocks overlap");
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(handle, blocks_survive_compaction_with_their_contents)
{
    regal_arena *a = create("survive", 0, 0);
    rng r = rng_seeded(42);
    enum { N = 4000 };
    held *x = calloc(N, sizeof *x);
    void **before = calloc(N, sizeof *before);
    cr_assert(x && before);
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < N; i++)
            if (x[i].h == 0)
                x[i] = hold(a, random_size(&r), rng_next(&r));
        /* Free about two in three, at random. */
        for (size_t i = 0; i < N; i++) {
            if (rng_next(&r) % 3 != 0) {
                regal_handle_free(a, x[i].h);
                x[i].h = 0;
            }
        }
        for (size_t i = 0; i < N; i++)
            before[i] = x[i].h ? regal_handle_ptr(a, x[i].h) : NULL;
        regal_arena_compact(a);
        size_t moved = 0;
        for (size_t i = 0; i < N; i++) {
            if (x[i].h == 0)
                continue;
            check_held(a, &x[i], "after compaction");
            moved += regal_handle_ptr(a, x[i].h) != before[i];
        }
        cr_assert_gt(moved, 0, "round %d: compaction moved nothing", round);
        cr_assert_eq(regal_arena_check(a), 0, "round %d", round);
    }
    free(before);
    free(x);
    regal_arena_destroy(a);
}

Test(handle, a_compact_arena_moves_nothing_and_gives_nothing_back)
{
    regal_arena *a = create("compact", 0, 0);
    rng r = rng_seeded(7);
    enum { N = 3000 };
    held x[N];
    void *p[N];
    /* Never freed: already compact. */
    for (size_t i = 0; i < N; i++)
        x[i] = hold(a, rng_range(&r, 0, 3000), i);
    for (size_t i = 0; i < N; i++)
        p[i] = regal_handle_ptr(a, x[i].h);
    size_t mapped = stats_of(a).mapped;
    cr_assert_eq(regal_arena_compact(a), 0);
    cr_assert_eq(stats_of(a).mapped, mapped);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(regal_handle_ptr(a, x[i].h), p[i], "handle %zu moved", i);

    /* Compacted once after frees: a second compaction changes nothing. */
    for (size_t i = 0; i < N; i += 2) {
        regal_handle_free(a, x[i].h);
        x[i].h = 0;
    }
    regal_arena_compact(a);
    for (size_t i = 0; i < N; i++)
        p[i] = x[i].h ? regal_handle_ptr(a, x[i].h) : NULL;
    mapped = stats_of(a).mapped;
    cr_assert_eq(regal_arena_compact(a), 0);
    cr_assert_eq(stats_of(a).mapped, mapped);
    for (size_t i = 0; i < N; i++) {
        if (x[i].h == 0)
            continue;
        cr_assert_eq(regal_handle_ptr(a, x[i].h), p[i], "handle %zu moved", i);
        check_held(a, &x[i], "after two compactions");
    }
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(handle, an_arena_without_handles_compacts_to_nothing)
{
    regal_arena *a = create("none", 0, 0);
    cr_assert_eq(regal_arena_compact(a), 0);
    void *keep = regal_alloc(a, 100);
    cr_assert_eq(regal_arena_compact(a), 0);
    regal_free(keep);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(handle, compaction_gives_memory_back)
{
    regal_arena *a = create("back", 0, 0);
    rng r = rng_seeded(99);
    enum { N = 6000 };
    held *x = calloc(N, sizeof *x);
    cr_assert_not_null(x);
    for (size_t i = 0; i < N; i++)
        x[i] = hold(a, rng_range(&r, 1000, 5000), rng_next(&r));
    size_t full = stats_of(a).mapped;
    cr_assert_gt(full, 12 * MiB, "%zu bytes mapped", full);
    for (size_t i = 0; i < N; i++) {
        if (i % 10 != 0) {
            regal_handle_free(a, x[i].h);
            x[i].h = 0;
        }
    }
    size_t holes = stats_of(a).mapped;
    size_t back = regal_arena_compact(a);
    size_t after = stats_of(a).mapped;
    cr_assert_gt(back, 0);
    cr_assert_eq(holes - after, back, "mapped %zu -> %zu, compaction said %zu", holes, after, back);
    cr_assert_lt(after, full / 4, "mapped %zu of %zu after freeing 90%%", after, full);
    for (size_t i = 0; i < N; i++)
        if (x[i].h)
            check_held(a, &x[i], "after giving memory back");
    /* The region grows again from what is left. */
    for (size_t i = 0; i < N; i++)
        if (x[i].h == 0)
            x[i] = hold(a, rng_range(&r, 1000, 5000), rng_next(&r));
    for (size_t i = 0; i < N; i++)
        check_held(a, &x[i], "after growing again");
    cr_assert_eq(regal_arena_check(a), 0);
    for (size_t i = 0; i < N; i++)
        regal_handle_free(a, x[i].h);
    regal_arena_compact(a);
    cr_assert_eq(stats_of(a).in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    free(x);
    regal_arena_destroy(a);
}

Test(handle, statistics_count_handle_blocks)
{
    regal_arena *a = create("stats", 0, 0);
    regal_stats s0 = stats_of(a);
    regal_handle h1 = regal_handle_alloc(a, 100), h2 = regal_handle_alloc(a, 5000);
    regal_handle big = regal_handle_alloc(a, 3 * MiB);
    cr_assert(h1 && h2 && big);
    regal_stats s1 = stats_of(a);
    cr_assert_eq(s1.alloc_count, s0.alloc_count + 3);
    cr_assert_eq(s1.blocks_in_use, s0.blocks_in_use + 3);
    cr_assert_geq(s1.in_use, s0.in_use + 100 + 5000 + 3 * MiB);
    cr_assert_leq(s1.in_use, s0.in_use + 112 + 5008 + 3 * MiB);
    cr_assert_geq(s1.mapped, s0.mapped + 3 * MiB);
    cr_assert_geq(s1.requested_total, s0.requested_total + 5100 + 3 * MiB);
    regal_handle_free(a, h1);
    regal_handle_free(a, big);
    regal_stats s2 = stats_of(a);
    cr_assert_eq(s2.free_count, s0.free_count + 2);
    cr_assert_eq(s2.blocks_in_use, s0.blocks_in_use + 1);
    cr_assert_lt(s2.mapped, s1.mapped - 3 * MiB + 64 * KiB, "a huge block's mapping goes at once");
    regal_handle_free(a, h2);
    cr_assert_eq(stats_of(a).in_use, s0.in_use);

    FILE *f = tmpfile();
    cr_assert_not_null(f);
    regal_arena_print_stats_json(a, f);
    char *json = slurp(f, NULL);
    cr_assert_not_null(strstr(json, "\"handles\":{\"live\":0"), "JSON: %s", json);
    free(json);
    fclose(f);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(handle, huge_blocks_keep_their_place_and_contents)
{
    regal_arena *a = create("huge", 0, 0);
    held small1 = hold(a, 5000, 1);
    held big = hold(a, 3 * MiB + 5, 2);
    held small2 = hold(a, 7000, 3);
    held huge = hold(a, 9 * MiB, 4);
    void *pb = regal_handle_ptr(a, big.h), *ph = regal_handle_ptr(a, huge.h);
    regal_handle_free(a, small1.h);
    regal_arena_compact(a);
    cr_assert_eq(regal_handle_ptr(a, big.h), pb);
    cr_assert_eq(regal_handle_ptr(a, huge.h), ph);
    check_held(a, &big, "huge after compaction");
    check_held(a, &huge, "huge after compaction");
    check_held(a, &small2, "small after compaction");
    cr_assert_eq(regal_arena_check(a), 0);
    regal_handle_free(a, big.h);
    regal_handle_free(a, huge.h);
    regal_handle_free(a, small2.h);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* ---- stale handles ---------------------------------------------------------- */

/* h must be stale in a: no block, and a free is reported once and ignored. */
static void expect_stale(regal_arena *a, regal_handle h, const char *what)
{
    error_log log;
    error_log_install(&log);
    cr_assert_null(regal_handle_ptr(a, h), "%s: regal_handle_ptr gave a block", what);
    cr_assert_eq(log.count, 0, "%s: regal_handle_ptr reported: %s", what, log.message);
    regal_handle_free(a, h);
    error_log_remove();
    cr_assert_eq(log.count, 1, "%s: %u reports", what, log.count);
    cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE, "%s: kind %d", what, log.kind);
    cr_assert_not_null(strstr(log.message, "handle"), "%s: \"%s\"", what, log.message);
}

Test(handle, a_freed_handle_is_stale_and_reported)
{
    regal_arena *a = create("freed", 0, 0);
    held keep = hold(a, 64, 5);
    regal_handle h = regal_handle_alloc(a, 64);
    regal_handle_free(a, h);
    expect_stale(a, h, "freed handle");
    /* Its slot is reused by the next handle; the old one stays stale. */
    held again = hold(a, 64, 6);
    cr_assert_neq(again.h, h);
    expect_stale(a, h, "freed handle after its slot was reused");
    check_held(a, &keep, "after stale frees");
    check_held(a, &again, "after stale frees");
    cr_assert_eq(stats_of(a).blocks_in_use, 2);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(handle, handles_from_before_a_reset_are_stale)
{
    regal_arena *a = create("reset", 0, 0);
    enum { N = 100 };
    regal_handle old[N];
    for (size_t i = 0; i < N; i++)
        old[i] = hold(a, i * 10, i).h;
    regal_handle big = hold(a, 2 * MiB, 1).h;
    regal_arena_reset(a);
    cr_assert_eq(stats_of(a).blocks_in_use, 0);
    cr_assert_eq(stats_of(a).in_use, 0);
    expect_stale(a, old[0], "handle from before a reset");
    expect_stale(a, big, "huge handle from before a reset");
    /* New handles take the same slots again; the old ones stay stale. */
    held fresh[N];
    for (size_t i = 0; i < N; i++)
        fresh[i] = hold(a, i * 10, 1000 + i);
    for (size_t i = 0; i < N; i++) {
        cr_assert_null(regal_handle_ptr(a, old[i]), "old handle %zu has a block", i);
        cr_assert_neq(old[i], fresh[i].h);
    }
    expect_stale(a, old[N - 1], "handle from before a reset, slot reused");
    for (size_t i = 0; i < N; i++)
        check_held(a, &fresh[i], "after reset");
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(handle, a_handle_of_another_arena_is_stale)
{
    regal_arena *a = create("one", 0, 0), *b = create("other", 0, 0);
    enum { N = 50 };
    held xa[N], xb[N];
    for (size_t i = 0; i < N; i++) {
        xa[i] = hold(a, 32, i);
        xb[i] = hold(b, 32, 100 + i);
    }
    for (size_t i = 0; i < N; i++) {
        cr_assert_null(regal_handle_ptr(a, xb[i].h), "b's handle %zu works in a", i);
        cr_assert_null(regal_handle_ptr(b, xa[i].h), "a's handle %zu works in b", i);
    }
    expect_stale(a, xb[0].h, "handle of another arena");
    /* A destroyed arena's handles mean nothing to a new arena either. */
    regal_handle gone = xb[1].h;
    regal_arena_destroy(b);
    regal_arena *c = create("new", 0, 0);
    held xc = hold(c, 32, 7);
    expect_stale(c, gone, "handle of a destroyed arena");
    for (size_t i = 0; i < N; i++)
        check_held(a, &xa[i], "after foreign handles");
    check_held(c, &xc, "after foreign handles");
    cr_assert_eq(regal_arena_check(a), 0);
    cr_assert_eq(regal_arena_check(c), 0);
    regal_arena_destroy(a);
    regal_arena_destroy(c);
}

Test(handle, zero_and_random_values_are_stale)
{
    regal_arena *a = create("random", 0, 0);
    enum { N = 200 };
    held x[N];
    for (size_t i = 0; i < N; i++)
        x[i] = hold(a, i, i);
    /* 0 is never a handle: NULL from regal_handle_ptr, and freeing it is a
     * no-op, as free(NULL) is. */
    error_log zero;
    error_log_install(&zero);
    cr_assert_null(regal_handle_ptr(a, 0));
    regal_handle_free(a, 0);
    error_log_remove();
    cr_assert_eq(zero.count, 0, "handle 0: %u reports", zero.count);
    rng r = rng_seeded(1234);
    error_log log;
    error_log_install(&log);
    for (int i = 0; i < 10000; i++) {
        regal_handle h = rng_next(&r);
        cr_assert_null(regal_handle_ptr(a, h), "random value %#llx has a block",
                       (unsigned long long)h);
        regal_handle_free(a, h);
    }
    /* Near misses of live handles: one bit flipped. */
    for (size_t i = 0; i < N; i++) {
        for (int bit = 0; bit < 64; bit++) {
            regal_handle h = x[i].h ^ ((uint64_t)1 << bit);
            cr_assert_null(regal_handle_ptr(a, h));
            regal_handle_free(a, h);
        }
    }
    error_log_remove();
    cr_assert_eq(log.count, 10000 + N * 64);
    cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE);
    for (size_t i = 0; i < N; i++)
        check_held(a, &x[i], "after random frees");
    cr_assert_eq(stats_of(a).blocks_in_use, N);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(handle, an_arena_that_is_not_live_is_einval)
{
    union {
        char bytes[4096];
        max_align_t align;
    } fake;
    memset(&fake, 0, sizeof fake);
    regal_arena *not_arena = (regal_arena *)&fake;
    error_log log;
    error_log_install(&log);
    errno = 0;
    cr_assert_eq(regal_handle_alloc(NULL, 10), 0);
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_eq(regal_handle_alloc(not_arena, 10), 0);
    cr_assert_eq(errno, EINVAL);
    cr_assert_null(regal_handle_ptr(not_arena, 1));
    regal_handle_free(not_arena, 1);
    cr_assert_eq(regal_arena_compact(NULL), 0);
    error_log_remove();
    cr_assert_eq(log.count, 5);
    cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE);
}

Test(handle, handle_blocks_are_not_regal_free_blocks)
{
    regal_arena *a = create("not-free", 0, 0);
    held x = hold(a, 200, 9);
    held big = hold(a, 2 * MiB, 10);
    void *ptrs[2] = {regal_handle_ptr(a, x.h), regal_handle_ptr(a, big.h)};
    for (int i = 0; i < 2; i++) {
        error_log log;
        error_log_install(&log);
        regal_free(ptrs[i]);
        cr_assert_eq(regal_usable_size(ptrs[i]), 0);
        cr_assert_null(regal_arena_of(ptrs[i]));
        errno = 0;
        cr_assert_null(regal_realloc(a, ptrs[i], 10));
        error_log_remove();
        cr_assert_eq(log.count, 3, "%u reports", log.count);
        cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE);
        cr_assert_not_null(strstr(log.message, "regal_handle_free"), "\"%s\"", log.message);
    }
    check_held(a, &x, "after regal_free of its block");
    check_held(a, &big, "after regal_free of its block");
    cr_assert_eq(regal_arena_check(a), 0);
    regal_handle_free(a, x.h);
    regal_handle_free(a, big.h);
    regal_arena_destroy(a);
}

/* ---- limits ------------------------------------------------------------------ */

Test(handle, the_limit_holds_and_compaction_makes_room)
{
    const size_t limit = 2 * MiB;
    regal_arena *a = create("limited", limit, 0);
    enum { CAP = 4096 };
    static held x[CAP];
    size_t n = 0;
    for (;;) {
        cr_assert_lt(n, CAP, "no ENOMEM under a %zu limit", limit);
        errno = 0;
        regal_handle h = regal_handle_alloc(a, 1000);
        if (h == 0) {
            cr_assert_eq(errno, ENOMEM);
            break;
        }
        x[n] = (held){h, 1000, n};
        fill_pattern(regal_handle_ptr(a, h), 1000, n);
        n++;
        cr_assert_leq(stats_of(a).mapped, limit);
    }
    cr_assert_geq(n * 1000, limit / 2, "only %zu handles of 1000 bytes in %zu", n, limit);
    errno = 0;
    cr_assert_eq(regal_handle_alloc(a, 3 * MiB), 0);
    cr_assert_eq(errno, ENOMEM);
    cr_assert_eq(regal_arena_check(a), 0);

    /* Keep one in four; compaction packs them and the room comes back. */
    for (size_t i = 0; i < n; i++) {
        if (i % 4 != 0) {
            regal_handle_free(a, x[i].h);
            x[i].h = 0;
        }
    }
    regal_arena_compact(a);
    cr_assert_leq(stats_of(a).mapped, limit);
    size_t again = 0;
    for (size_t i = 0; i < n; i++) {
        if (x[i].h != 0)
            continue;
        regal_handle h = regal_handle_alloc(a, 1000);
        if (h == 0)
            break;
        x[i] = (held){h, 1000, 5000 + i};
        fill_pattern(regal_handle_ptr(a, h), 1000, 5000 + i);
        again++;
        cr_assert_leq(stats_of(a).mapped, limit);
    }
    cr_assert_geq(again, n * 3 / 4 - n / 20, "%zu of %zu freed handles allocated again", again,
                  n * 3 / 4);
    for (size_t i = 0; i < n; i++)
        if (x[i].h)
            check_held(a, &x[i], "at the limit");
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

static uintptr_t chunk_of(const void *p)
{
    return (uintptr_t)p & ~(uintptr_t)(4 * MiB - 1);
}

/* Regular blocks of 4 KiB until the arena's limit; returns how many. */
static size_t spend_budget(regal_arena *a, void **blocks, size_t cap)
{
    size_t n = 0;
    while (n < cap && (blocks[n] = regal_alloc(a, 4096)) != NULL)
        n++;
    cr_assert_lt(n, cap);
    return n;
}

Test(handle, compaction_at_the_limit_first_gives_back_what_it_moved)
{
    const size_t limit = 3 * MiB;
    regal_arena *a = create("tight", limit, 0);
    enum { CAP = 1024 };
    static held x[CAP];
    size_t n = 0;
    while (n < CAP) {
        regal_handle h = regal_handle_alloc(a, 4000);
        if (h == 0)
            break;
        x[n] = (held){h, 4000, 77 + n};
        fill_pattern(regal_handle_ptr(a, h), 4000, 77 + n);
        n++;
    }
    cr_assert(n > 100 && n < CAP, "%zu handles", n);
    /* A hole in the middle, its pages given back, then the budget spent on
     * regular blocks: the moves into the hole need pages that only the
     * moves themselves free. */
    for (size_t i = n / 4; i < n / 2; i++) {
        regal_handle_free(a, x[i].h);
        x[i].h = 0;
    }
    cr_assert_gt(regal_arena_trim(a), 0);
    void *blocks[4096];
    size_t nb = spend_budget(a, blocks, 4096);
    regal_arena_compact(a);
    cr_assert_leq(stats_of(a).mapped, limit);
    cr_assert_eq(regal_arena_check(a), 0);
    void *ptrs[CAP];
    for (size_t i = 0; i < n; i++) {
        if (x[i].h)
            check_held(a, &x[i], "after a compaction at the limit");
        ptrs[i] = x[i].h ? regal_handle_ptr(a, x[i].h) : NULL;
    }
    cr_assert_eq(regal_arena_compact(a), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(x[i].h ? regal_handle_ptr(a, x[i].h) : NULL, ptrs[i], "%zu moved again", i);
    for (size_t i = 0; i < nb; i++)
        regal_free(blocks[i]);
    regal_arena_destroy(a);
}

Test(handle, compaction_at_the_limit_leaves_what_it_cannot_move)
{
    const size_t limit = 6 * MiB;
    regal_arena *a = create("stuck", limit, 0);
    enum { CAP = 2048 };
    static held x[CAP];
    size_t n = 0, first_in_second = 0;
    /* Chunk one full, a few blocks in chunk two. */
    while (n < CAP) {
        x[n] = hold(a, 4000, 500 + n);
        if (chunk_of(regal_handle_ptr(a, x[n].h)) != chunk_of(regal_handle_ptr(a, x[0].h))) {
            if (first_in_second == 0)
                first_in_second = n;
            else if (n - first_in_second == 20)
                break;
        }
        n++;
    }
    cr_assert_lt(n, CAP);
    n++;
    /* The end of chunk one freed and given back; the budget spent. */
    for (size_t i = first_in_second - 40; i < first_in_second; i++) {
        regal_handle_free(a, x[i].h);
        x[i].h = 0;
    }
    regal_arena_trim(a);
    static void *blocks[2048];
    size_t nb = spend_budget(a, blocks, 2048);
    /* The last granules, to the byte: tiny handles in chunk one's tail. */
    static regal_handle tiny[8192];
    size_t nt = 0;
    while (nt < 8192 && (tiny[nt] = regal_handle_alloc(a, 0)) != 0)
        nt++;
    cr_assert_lt(nt, 8192);
    void *ptrs[CAP];
    for (size_t i = 0; i < n; i++)
        ptrs[i] = x[i].h ? regal_handle_ptr(a, x[i].h) : NULL;
    regal_arena_compact(a);
    cr_assert_leq(stats_of(a).mapped, limit);
    cr_assert_eq(regal_arena_check(a), 0);
    for (size_t i = 0; i < n; i++) {
        if (x[i].h == 0)
            continue;
        check_held(a, &x[i], "after a compaction at the limit");
        cr_assert_eq(regal_handle_ptr(a, x[i].h), ptrs[i], "block %zu moved without room", i);
    }
    /* With the budget back, compaction packs chunk two into chunk one. */
    for (size_t i = 0; i < nb; i++)
        regal_free(blocks[i]);
    for (size_t i = 0; i < nt; i++)
        regal_handle_free(a, tiny[i]);
    /* A request past the limit fails, and empties the quarantine of a
     * tracked arena (memcheck, debug arenas) on the way. */
    cr_assert_eq(regal_handle_alloc(a, 2 * limit), 0);
    regal_arena_trim(a);
    size_t mapped = stats_of(a).mapped;
    /* Trimmed already: the moves commit about what chunk two gives back. */
    size_t back = regal_arena_compact(a);
    cr_assert_eq(stats_of(a).mapped, mapped - back);
    cr_assert_eq(regal_arena_check(a), 0);
    for (size_t i = 0; i < n; i++) {
        if (x[i].h == 0)
            continue;
        check_held(a, &x[i], "after the second compaction");
        cr_assert_eq(chunk_of(regal_handle_ptr(a, x[i].h)), chunk_of(ptrs[0]),
                     "block %zu is not in chunk one", i);
    }
    regal_arena_destroy(a);
}

Test(handle, random_operations_keep_the_arena_consistent)
{
    for (uint64_t seed = 1; seed <= 6; seed++) {
        regal_arena *a = create("random-ops", seed % 2 ? 0 : 6 * MiB, 0);
        rng r = rng_seeded(seed);
        enum { N = 1500 };
        static held x[N];
        memset(x, 0, sizeof x);
        for (int step = 0; step < 40; step++) {
            for (int j = 0; j < 400; j++) {
                size_t i = rng_range(&r, 0, N - 1);
                if (x[i].h) {
                    check_held(a, &x[i], "random ops");
                    regal_handle_free(a, x[i].h);
                    x[i].h = 0;
                } else {
                    size_t size = rng_next(&r) % 50 == 0 ? rng_range(&r, 900 * KiB, 1100 * KiB)
                                                         : random_size(&r);
                    held y = {regal_handle_alloc(a, size), size, rng_next(&r)};
                    if (y.h == 0) {
                        cr_assert_eq(errno, ENOMEM);
                        continue;
                    }
                    fill_pattern(regal_handle_ptr(a, y.h), size, y.seed);
                    x[i] = y;
                }
            }
            switch (rng_next(&r) % 4) {
            case 0:
                regal_arena_compact(a);
                break;
            case 1:
                regal_arena_trim(a);
                break;
            default:
                break;
            }
            cr_assert_eq(regal_arena_check(a), 0, "seed %llu step %d", (unsigned long long)seed,
                         step);
        }
        for (size_t i = 0; i < N; i++)
            if (x[i].h)
                check_held(a, &x[i], "end of random ops");
        regal_arena_destroy(a);
    }
}

/* Debug arenas keep freed blocks in a quarantine: at the limit, a handle
 * allocation empties it, as regal_alloc does. */
Test(handle, regular_blocks_and_handles_share_the_limit)
{
    const size_t limit = 1 * MiB;
    const unsigned flags[] = {0, REGAL_ARENA_DEBUG};
    for (size_t k = 0; k < ARRAY_LEN(flags); k++) {
        regal_arena *a = create("shared-limit", limit, flags[k]);
        void *blocks[2048];
        size_t nb = spend_budget(a, blocks, 2048);
        errno = 0;
        cr_assert_eq(regal_handle_alloc(a, 4096), 0, "a handle past the limit");
        cr_assert_eq(errno, ENOMEM);
        for (size_t i = 0; i < nb; i++)
            regal_free(blocks[i]);
        regal_arena_trim(a);
        held h = hold(a, 4096, 3);
        check_held(a, &h, "after the regular blocks left");
        cr_assert_leq(stats_of(a).mapped, limit);
        cr_assert_eq(regal_arena_check(a), 0);
        regal_handle_free(a, h.h);
        regal_arena_destroy(a);
    }
}

/* ---- reset, destroy, trim, other arenas ------------------------------------ */

Test(handle, reset_and_trim_keep_the_arena_usable)
{
    regal_arena *a = create("reuse", 0, REGAL_ARENA_SINGLE_THREAD);
    rng r = rng_seeded(5);
    enum { N = 2000 };
    static held x[N];
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < N; i++)
            x[i] = hold(a, random_size(&r), rng_next(&r));
        for (size_t i = 0; i < N; i += 3) {
            regal_handle_free(a, x[i].h);
            x[i].h = 0;
        }
        regal_arena_trim(a);
        for (size_t i = 0; i < N; i++)
            if (x[i].h)
                check_held(a, &x[i], "after trim");
        cr_assert_eq(regal_arena_check(a), 0);
        regal_arena_reset(a);
        cr_assert_eq(regal_arena_check(a), 0);
    }
    /* Destroyed with live handles. */
    for (size_t i = 0; i < 100; i++)
        hold(a, 3000, i);
    hold(a, 5 * MiB, 1);
    regal_arena_destroy(a);
}

Test(handle, debug_and_default_arenas_have_handles_too)
{
    regal_arena *arenas[2] = {create("debug", 0, REGAL_ARENA_DEBUG), regal_default_arena()};
    for (int k = 0; k < 2; k++) {
        regal_arena *a = arenas[k];
        held x[300];
        for (size_t i = 0; i < 300; i++)
            x[i] = hold(a, i * 7, i);
        for (size_t i = 0; i < 300; i += 2)
            regal_handle_free(a, x[i].h);
        regal_arena_compact(a);
        for (size_t i = 1; i < 300; i += 2)
            check_held(a, &x[i], "debug/default");
        cr_assert_eq(regal_arena_check(a), 0);
        for (size_t i = 1; i < 300; i += 2)
            regal_handle_free(a, x[i].h);
    }
    regal_arena_destroy(arenas[0]);
}

/* ---- threads ------------------------------------------------------------------ */

#define THREADS 4
#define PER     300

typedef struct shared {
    regal_arena *a;
    pthread_barrier_t barrier;
    atomic_size_t failed; /* allocations that failed */
    atomic_size_t bad;    /* blocks found changed or missing */
    held x[THREADS][PER];
} shared;

typedef struct worker_arg {
    shared *sh;
    unsigned id;
} worker_arg;

/* Criterion asserts only in the main thread: workers count. */
static held thread_hold(shared *sh, size_t size, uint64_t seed)
{
    held x = {regal_handle_alloc(sh->a, size), size, seed};
    void *p = x.h ? regal_handle_ptr(sh->a, x.h) : NULL;
    if (p == NULL) {
        atomic_fetch_add(&sh->failed, 1);
        x.h = 0;
        return x;
    }
    fill_pattern(p, size, seed);
    return x;
}

static void thread_check(shared *sh, const held *x)
{
    const void *p = regal_handle_ptr(sh->a, x->h);
    if (p == NULL || !pattern_intact(p, x->size, x->seed))
        atomic_fetch_add(&sh->bad, 1);
}

/* Rounds of: allocate and fill, wait while the main thread compacts,
 * check and free some, then alloc, free and compact concurrently without
 * touching any block. */
static void *worker(void *arg)
{
    worker_arg *w = arg;
    shared *sh = w->sh;
    held *mine = sh->x[w->id];
    rng r = rng_seeded(100 + w->id);
    for (int round = 0; round < 6; round++) {
        for (size_t i = 0; i < PER; i++)
            if (mine[i].h == 0)
                mine[i] = thread_hold(sh, random_size(&r) % 5000, rng_next(&r));
        pthread_barrier_wait(&sh->barrier); /* main compacts */
        pthread_barrier_wait(&sh->barrier);
        for (size_t i = 0; i < PER; i++) {
            if (mine[i].h == 0)
                continue;
            thread_check(sh, &mine[i]);
            if (rng_next(&r) % 2) {
                regal_handle_free(sh->a, mine[i].h);
                mine[i].h = 0;
            }
        }
        pthread_barrier_wait(&sh->barrier); /* every block checked */
        for (int j = 0; j < 200; j++) {
            regal_handle h = regal_handle_alloc(sh->a, rng_range(&r, 0, 3000));
            if (j % 50 == 0)
                regal_arena_compact(sh->a);
            if (h == 0 || regal_handle_ptr(sh->a, h) == NULL)
                atomic_fetch_add(&sh->failed, 1);
            regal_handle_free(sh->a, h);
        }
        pthread_barrier_wait(&sh->barrier); /* nothing moves from here */
    }
    return NULL;
}

Test(handle, threads_share_an_arena_of_handles)
{
    static shared sh;
    sh.a = create("threads", 0, 0);
    memset(sh.x, 0, sizeof sh.x);
    atomic_init(&sh.failed, 0);
    atomic_init(&sh.bad, 0);
    pthread_barrier_init(&sh.barrier, NULL, THREADS + 1);
    pthread_t t[THREADS];
    worker_arg args[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        args[i] = (worker_arg){&sh, i};
        cr_assert_eq(pthread_create(&t[i], NULL, worker, &args[i]), 0);
    }
    for (int round = 0; round < 6; round++) {
        pthread_barrier_wait(&sh.barrier);
        regal_arena_compact(sh.a);
        cr_expect_eq(regal_arena_check(sh.a), 0);
        pthread_barrier_wait(&sh.barrier);
        pthread_barrier_wait(&sh.barrier);
        pthread_barrier_wait(&sh.barrier);
    }
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&sh.failed), 0);
    cr_assert_eq(atomic_load(&sh.bad), 0);
    size_t live = 0;
    for (unsigned i = 0; i < THREADS; i++)
        for (size_t j = 0; j < PER; j++)
            if (sh.x[i][j].h) {
                check_held(sh.a, &sh.x[i][j], "after the threads");
                live++;
            }
    cr_assert_eq(stats_of(sh.a).blocks_in_use, live);
    cr_assert_eq(regal_arena_check(sh.a), 0);
    pthread_barrier_destroy(&sh.barrier);
    regal_arena_destroy(sh.a);
}
