/*
 * regal_arena_trim through the public API: it gives back every whole free
 * page, interior ones included, reports the bytes it released, and moves
 * them from resident to retained; RSS from /proc/self/statm follows.
 *
 * Run with REGAL_OPTIONS=purge_delay=off,purge_cap=off (tests/meson.build):
 * with the purge policy off, free memory stays until the trim, so what the
 * trim releases is known.  test_api_purge.c tests the policy.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "regal.h"

static void address_space_is_resident_plus_retained(regal_stats s, const char *when)
{
    cr_assert_leq(s.resident, s.mapped, "%s: resident %zu over mapped %zu", when, s.resident,
                  s.mapped);
    cr_assert_leq(s.dirty, s.free_resident, "%s: dirty %zu over free_resident %zu", when, s.dirty,
                  s.free_resident);
    cr_assert_leq(s.free_resident, s.resident, "%s", when);
    cr_assert_leq(s.fragmentation, s.free_resident, "%s", when);
}

/* The test of the issue: small (16 B .. 8 KiB) and medium (8 KiB ..
 * 256 KiB) blocks allocated in a random order and written whole, 90% of
 * them freed at random, then one trim.  The medium blocks sit in the
 * free-list heap, where every whole page inside a freed block can go back,
 * so RSS must drop by at least those pages (less 1 MiB for the rest of the
 * process).  The pages of small blocks' spans that no live block touches
 * go back too (tested below): not counted here. */
Test(trim, releases_the_whole_free_pages_of_a_fragmented_arena)
{
    enum { BLOCKS = 4000 };
    static void *p[BLOCKS];
    static size_t usable[BLOCKS];
    static int medium[BLOCKS];
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    rng r = rng_seeded(90);

    for (size_t i = 0; i < BLOCKS; i++) {
        medium[i] = rng_range(&r, 0, 15) == 0;
        size_t n = medium[i] ? rng_range(&r, 8 * KiB + 1, 256 * KiB) : rng_range(&r, 16, 8 * KiB);
        p[i] = regal_alloc(a, n);
        cr_assert_not_null(p[i], "block %zu of %zu bytes", i, n);
        usable[i] = regal_usable_size(p[i]);
        fill_pattern(p[i], usable[i], i);
    }
    size_t rss_full = process_rss();
    cr_assert_gt(rss_full, 0, "no /proc/self/statm");

    size_t expected = 0, freed = 0;
    for (size_t i = 0; i < BLOCKS; i++) {
        if (rng_range(&r, 0, 9) == 0)
            continue;
        if (medium[i])
            expected += whole_pages_inside(p[i], usable[i]);
        freed += usable[i];
        regal_free(p[i]);
        p[i] = NULL;
    }
    regal_stats before = stats_of(a);
    cr_assert_eq(before.purged, 0, "the policy is off, yet %zu bytes were purged", before.purged);
    cr_assert_geq(before.dirty, expected, "dirty %zu, but %zu bytes of whole pages were freed",
                  before.dirty, expected);
    address_space_is_resident_plus_retained(before, "before trim");

    size_t released = regal_arena_trim(a);
    size_t rss_trimmed = process_rss();
    regal_stats after = stats_of(a);

    cr_assert_geq(released, expected, "trim released %zu of the %zu bytes of whole free pages",
                  released, expected);
    cr_assert_eq(after.resident, before.resident - released,
                 "resident %zu -> %zu, but trim says it released %zu", before.resident,
                 after.resident, released);
    cr_assert_eq(after.purged, released);
    cr_assert_eq(after.dirty, 0, "%zu dirty bytes left after trim", after.dirty);
    cr_assert_lt(after.free_resident, before.free_resident);
    cr_assert_leq(after.fragmentation, before.fragmentation);
    address_space_is_resident_plus_retained(after, "after trim");
    cr_assert_geq(rss_full, rss_trimmed + expected - 1 * MiB,
                  "RSS %zu KiB with every block, %zu KiB after freeing %zu KiB and trimming: "
                  "less than the %zu KiB of whole free pages went back",
                  rss_full / KiB, rss_trimmed / KiB, freed / KiB, expected / KiB);

    cr_assert_eq(regal_arena_trim(a), 0, "a second trim found more to release");
    free_intact(p, usable, BLOCKS, "across trim");
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

static int by_address(const void *x, const void *y)
{
    uintptr_t a = *(const uintptr_t *)x, b = *(const uintptr_t *)y;
    return (a > b) - (a < b);
}

/* Bytes of the OS pages that the blocks of p[0..n) freed (freed[i]) touch
 * and no other block does. */
static size_t pages_only_freed_touch(void **p, const size_t *usable, const bool *freed, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), count[2] = {0, 0};
    uintptr_t *pages[2] = {malloc(n * 64 * sizeof(uintptr_t)), malloc(n * 64 * sizeof(uintptr_t))};
    cr_assert(pages[0] != NULL && pages[1] != NULL);
    for (size_t i = 0; i < n; i++)
        for (uintptr_t q = (uintptr_t)p[i] / page; q <= ((uintptr_t)p[i] + usable[i] - 1) / page; q++)
            pages[freed[i]][count[freed[i]]++] = q;
    qsort(pages[0], count[0], sizeof(uintptr_t), by_address);
    size_t bytes = 0;
    for (size_t i = 0; i < count[1]; i++) {
        bool repeat = false;
        for (size_t j = 0; j < i && !repeat; j++)
            repeat = pages[1][j] == pages[1][i];
        if (!repeat && !bsearch(&pages[1][i], pages[0], count[0], sizeof(uintptr_t), by_address))
            bytes += page;
    }
    free(pages[0]);
    free(pages[1]);
    return bytes;
}

/* Blocks of size bytes (a size class), one in every keep_every kept and
 * the others freed: trim gives back every OS page of their spans that no
 * live block touches although no span is empty, and the arena uses those
 * slots again afterwards without new memory. */
static void gives_back_free_pages_of_spans_in_use(size_t size, size_t keep_every)
{
    enum { N = 2048 };
    static void *p[N];
    static size_t usable[N];
    static bool freed[N];
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    for (size_t i = 0; i < N; i++) {
        p[i] = regal_alloc(a, size);
        cr_assert_not_null(p[i]);
        usable[i] = regal_usable_size(p[i]);
        fill_pattern(p[i], usable[i], i);
        freed[i] = i % keep_every != 0;
    }
    regal_arena_trim(a); /* what the allocations left free */
    regal_stats full = stats_of(a);
    size_t rss_full = process_rss();
    cr_assert_gt(rss_full, 0, "no /proc/self/statm");
    size_t expected = pages_only_freed_touch(p, usable, freed, N);
    cr_assert_geq(expected, N * size / 2, "the test frees whole pages");
    for (size_t i = 0; i < N; i++) {
        if (freed[i]) {
            regal_free(p[i]);
            p[i] = NULL;
        }
    }

    size_t released = regal_arena_trim(a);
    size_t rss_trimmed = process_rss();
    regal_stats after = stats_of(a);
    cr_assert_geq(released, expected,
                  "trim released %zu of the %zu bytes of pages with no live block", released,
                  expected);
    cr_assert_eq(after.resident, full.resident - released);
    cr_assert_geq(rss_full, rss_trimmed + expected - 1 * MiB,
                  "RSS %zu KiB -> %zu KiB, but %zu KiB of pages went back", rss_full / KiB,
                  rss_trimmed / KiB, expected / KiB);
    cr_assert_eq(regal_arena_check(a), 0);
    cr_assert_eq(regal_arena_trim(a), 0, "a second trim found more to release");

    for (size_t i = 0; i < N; i++) {
        if (p[i] == NULL) {
            p[i] = regal_alloc(a, size);
            cr_assert_not_null(p[i]);
            usable[i] = regal_usable_size(p[i]);
            fill_pattern(p[i], usable[i], i);
        }
    }
    cr_assert_eq(stats_of(a).resident, full.resident,
                 "the slots of the trimmed spans are used again, in the same pages");
    cr_assert_eq(regal_arena_check(a), 0);
    free_intact(p, usable, N, "across trim and reuse");
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(trim, gives_back_the_free_pages_of_spans_in_use)
{
    gives_back_free_pages_of_spans_in_use(4096, 16); /* one live slot in each span */
}

Test(trim, gives_back_the_free_pages_of_small_slot_spans_in_use)
{
    gives_back_free_pages_of_spans_in_use(1024, 8); /* every other page keeps a slot */
}

/* A trim gives back the never-used slots of a span in use too; they are
 * committed again before they are handed out. */
Test(trim, never_used_slots_of_a_trimmed_span_count_as_mapped_when_used)
{
    enum { N = 16 }; /* a span of 4 KiB slots */
    void *p[N];
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    p[0] = regal_alloc(a, 4096);
    cr_assert_not_null(p[0]);
    cr_assert_geq(regal_arena_trim(a), (N - 1) * 4096, "the span's unused pages went back");
    regal_stats one = stats_of(a);
    for (size_t i = 1; i < N; i++) {
        p[i] = regal_alloc(a, 4096);
        cr_assert_not_null(p[i]);
        memset(p[i], 9, 4096);
    }
    regal_stats all = stats_of(a);
    cr_assert_geq(all.mapped, all.in_use, "mapped %zu below in_use %zu", all.mapped, all.in_use);
    cr_assert_geq(all.mapped, one.mapped + (N - 1) * 4096, "mapped %zu after trim, %zu after reuse",
                  one.mapped, all.mapped);
    cr_assert_eq(regal_arena_check(a), 0);
    for (size_t i = 0; i < N; i++)
        regal_free(p[i]);
    regal_arena_destroy(a);
}

/* A freed slot that shares a page with a live one keeps that page, but a
 * trim gives back its other pages: used again, it counts them as mapped
 * again (all of them: the same slots are live as before the trim).  Slots of size bytes from a pool (pool) or the arena's
 * classes; every other one is freed. */
static void freed_slot_across_pages_counts_as_mapped_when_used(size_t size, bool pool)
{
    enum { N = 8 };
    void *p[N];
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    regal_pool *pl = pool ? regal_pool_create(a, size, 4) : NULL;
    for (size_t i = 0; i < N; i++) {
        p[i] = pool ? regal_pool_alloc(pl) : regal_alloc(a, size);
        cr_assert_not_null(p[i]);
        memset(p[i], 1, size);
    }
    regal_arena_trim(a); /* what the allocations left free */
    size_t before = stats_of(a).mapped;
    for (size_t i = 1; i < N; i += 2)
        pool ? regal_pool_free(pl, p[i]) : regal_free(p[i]);
    cr_assert_gt(regal_arena_trim(a), 0, "the pages only freed slots touch go back");
    for (size_t i = 1; i < N; i += 2) {
        p[i] = pool ? regal_pool_alloc(pl) : regal_alloc(a, size);
        cr_assert_not_null(p[i]);
        memset(p[i], 2, size);
    }
    regal_stats s = stats_of(a);
    cr_assert_geq(s.mapped, s.in_use, "mapped %zu below in_use %zu", s.mapped, s.in_use);
    cr_assert_geq(s.mapped, before, "mapped %zu before the trim, %zu with the slots used again",
                  before, s.mapped);
    cr_assert_geq(s.peak_in_use, s.in_use);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(trim, freed_pool_slots_of_many_pages_count_as_mapped_when_used)
{
    freed_slot_across_pages_counts_as_mapped_when_used(179208, true);
}

Test(trim, freed_class_slots_across_pages_count_as_mapped_when_used)
{
    freed_slot_across_pages_counts_as_mapped_when_used(6144, false);
}

/* Small blocks allocated, 90% freed at random, then replaced one at a time
 * for a while: new blocks go to the fuller spans, so the sparse ones drain
 * and their memory goes back at the trim.  (Served in turn, every span
 * would keep about the same 10% of live slots.) */
Test(trim, steady_churn_drains_the_sparse_spans)
{
    enum { N = 40000, KEEP = N / 10, STEPS = 20 * KEEP };
    static void *p[N];
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    rng r = rng_seeded(7);
    for (size_t i = 0; i < N; i++) {
        p[i] = regal_alloc(a, 64);
        cr_assert_not_null(p[i]);
        memset(p[i], 1, 64);
    }
    size_t live = 0;
    for (size_t i = 0; i < N; i++) {
        if (rng_range(&r, 0, 9) == 0)
            p[live++] = p[i];
        else
            regal_free(p[i]);
    }
    for (size_t i = 0; i < STEPS; i++) {
        size_t k = rng_range(&r, 0, live - 1);
        regal_free(p[k]);
        p[k] = regal_alloc(a, 64);
        cr_assert_not_null(p[k]);
        memset(p[k], 2, 64);
    }
    regal_arena_trim(a);
    regal_stats s = stats_of(a);
    cr_assert_leq(s.free_resident, s.in_use / 2, "%zu bytes free resident for %zu in use",
                  s.free_resident, s.in_use);
    for (size_t i = 0; i < live; i++)
        regal_free(p[i]);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* Slots given back by a trim come back only if the arena's limit lets their
 * pages be committed again; until then allocation fails cleanly. */
Test(trim, reuse_of_trimmed_slots_respects_the_limit)
{
    enum { N = 64 };
    void *p[N];
    regal_arena_config cfg = {.limit = 1 * MiB};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    for (size_t i = 0; i < N; i++) {
        p[i] = regal_alloc(a, 4096);
        cr_assert_not_null(p[i]);
        memset(p[i], 7, 4096);
    }
    for (size_t i = 1; i < N; i++)
        regal_free(p[i]);
    cr_assert_geq(regal_arena_trim(a), (N - 4) * 4096);
    void *filler[128];
    size_t n = 0;
    while (n < 128 && (filler[n] = regal_alloc(a, 12 * KiB)) != NULL)
        n++;
    cr_assert(n > 0 && n < 128, "%zu heap blocks fit under the limit", n);
    errno = 0;
    void *q = NULL;
    for (size_t i = 0; i < N && (q = regal_alloc(a, 4096)) != NULL; i++)
        ;
    cr_assert_null(q, "the limit refuses the trimmed pages");
    cr_assert_eq(errno, ENOMEM);
    cr_assert_eq(regal_arena_check(a), 0);
    cr_assert_leq(stats_of(a).mapped, cfg.limit);

    while (n > 0)
        regal_free(filler[--n]);
    for (size_t i = 1; i < N; i++) {
        p[i] = regal_alloc(a, 4096);
        cr_assert_not_null(p[i], "block %zu once the limit has room again", i);
        memset(p[i], 8, 4096);
    }
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* Freed pages leave resident for retained, byte for byte, while every chunk
 * keeps a live block (no chunk goes back to the OS). */
Test(trim, moves_freed_pages_from_resident_to_retained)
{
    enum { N = 80 };
    void *p[N];
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    for (size_t i = 0; i < N; i++) {
        p[i] = regal_alloc(a, 100 * KiB);
        cr_assert_not_null(p[i]);
        memset(p[i], 0x5a, 100 * KiB);
    }
    for (size_t i = 0; i < N; i += 2)
        regal_free(p[i]);
    regal_stats before = stats_of(a);

    size_t released = regal_arena_trim(a);
    regal_stats after = stats_of(a);
    cr_assert_geq(released, N / 2 * 92 * KiB, "each 100 KiB hole gives back its inner pages");
    cr_assert_eq(after.resident, before.resident - released);
    cr_assert_eq(after.retained, before.retained + released, "retained %zu -> %zu, released %zu",
                 before.retained, after.retained, released);
    cr_assert_lt(after.fragmentation, before.fragmentation);

    for (size_t i = 1; i < N; i += 2)
        regal_free(p[i]);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* Chunks left with no live block go back whole: the address space the arena
 * keeps (resident + retained) shrinks, and so does RSS. */
Test(trim, gives_back_chunks_left_empty)
{
    enum { N = 3000 };
    static void *p[N];
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    for (size_t i = 0; i < N; i++) {
        p[i] = regal_alloc(a, i % 2 ? 6000 : 60 * KiB); /* pages and heap chunks */
        cr_assert_not_null(p[i]);
        memset(p[i], 1, i % 2 ? 6000 : 60 * KiB);
    }
    regal_stats full = stats_of(a);
    for (size_t i = 0; i < N; i++)
        regal_free(p[i]);
    size_t released = regal_arena_trim(a);
    regal_stats after = stats_of(a);

    cr_assert_geq(released, full.in_use, "trim released %zu of %zu freed bytes", released,
                  full.in_use);
    cr_assert_lt(after.resident + after.retained, (full.resident + full.retained) / 4,
                 "the arena keeps %zu bytes of address space of %zu",
                 after.resident + after.retained, full.resident + full.retained);
    /* Left: the arena's own metadata (page descriptors, a heap chunk
     * header), not one page of the size classes' spans. */
    cr_assert_leq(after.resident, 128 * KiB, "resident %zu after everything was freed and trimmed",
                  after.resident);

    void *q = regal_alloc(a, 60 * KiB); /* the arena is still usable */
    cr_assert_not_null(q);
    memset(q, 2, 60 * KiB);
    regal_free(q);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* Cached large mappings are free memory too: trim unmaps them. */
Test(trim, unmaps_cached_large_blocks)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *big = regal_alloc(a, 5 * MiB);
    cr_assert_not_null(big);
    memset(big, 3, 5 * MiB);
    regal_free(big);
    regal_stats before = stats_of(a);
    cr_assert_geq(before.dirty, 5 * MiB, "a freed large block is kept for reuse");

    size_t released = regal_arena_trim(a);
    regal_stats after = stats_of(a);
    cr_assert_geq(released, 5 * MiB);
    cr_assert_eq(after.dirty, 0);
    cr_assert_leq(after.resident + after.retained + 5 * MiB, before.resident + before.retained,
                  "the mapping left the address space");
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(trim, reports_zero_when_nothing_is_free)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    cr_assert_eq(regal_arena_trim(a), 0, "a new arena has nothing to give back");
    void *p = regal_alloc(a, 100);
    void *q = regal_alloc(a, 100 * KiB);
    cr_assert_not_null(p);
    cr_assert_not_null(q);
    regal_arena_trim(a); /* whatever the first allocations left free */
    cr_assert_eq(regal_arena_trim(a), 0, "a second trim found more to release");
    regal_free(p);
    regal_free(q);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* After a reset every page is free; trim gives them back and the arena
 * serves the same requests again. */
Test(trim, after_reset_gives_back_everything)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 500; i++) {
            void *p = regal_alloc(a, (size_t)(i % 50 + 1) * 1000);
            cr_assert_not_null(p);
            memset(p, round, (size_t)(i % 50 + 1) * 1000);
        }
        regal_stats used = stats_of(a);
        regal_arena_reset(a);
        size_t released = regal_arena_trim(a);
        regal_stats after = stats_of(a);
        cr_assert_geq(released, used.in_use, "round %d: released %zu of %zu", round, released,
                      used.in_use);
        cr_assert_eq(after.dirty, 0);
        cr_assert_eq(regal_arena_check(a), 0);
    }
    regal_arena_destroy(a);
}
