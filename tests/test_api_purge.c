/*
 * The purge policy through the public API: free memory goes back to the OS
 * without regal_arena_trim.  REGAL_OPTIONS is read once per process, so
 * tests/meson.build runs this file twice:
 *  - test_api_purge_now:  REGAL_OPTIONS=purge_delay=0 (purge at once);
 *  - test_api_purge_cap:  REGAL_OPTIONS=purge_delay=off,purge_cap=1M.
 * Each test says which settings it needs and is skipped under the others;
 * the first test of each suite checks the settings arrived (the JSON
 * statistics show the policy in force).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "regal.h"

#define CAP (1 * MiB)

static int options_are(const char *want)
{
    const char *o = getenv("REGAL_OPTIONS");
    return o != NULL && strcmp(o, want) == 0;
}

static void require(const char *options)
{
    if (!options_are(options))
        cr_skip_test("needs REGAL_OPTIONS=%s", options);
}

/* The arena's statistics as JSON (malloc()ed). */
static char *json_of(regal_arena *a)
{
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    regal_arena_print_stats_json(a, f);
    cr_assert_eq(fflush(f), 0);
    char *out = slurp(f, NULL);
    cr_assert_not_null(out);
    fclose(f);
    return out;
}

static void check_settings(const char *expected)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    char *json = json_of(a);
    cr_assert_not_null(strstr(json, expected), "expected %s in \"%s\"", expected, json);
    free(json);
    regal_arena_destroy(a);
}

/* ---- purge_delay=0 --------------------------------------------------------------- */

#define NOW "purge_delay=0"

Test(purge_now, settings_are_read_from_regal_options)
{
    require(NOW);
    check_settings("\"purge\":{\"delay_ms\":0,\"cap\":67108864}");
}

/* Heap blocks of 64 KiB and more: each free leaves a run big enough for
 * the policy to run, and with no delay it gives the pages back at once. */
Test(purge_now, freed_heap_pages_leave_rss_without_trim)
{
    require(NOW);
    enum { N = 200 };
    void *p[N];
    size_t usable[N];
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    rng r = rng_seeded(7);
    for (size_t i = 0; i < N; i++) {
        p[i] = regal_alloc(a, rng_range(&r, 64 * KiB, 512 * KiB));
        cr_assert_not_null(p[i]);
        usable[i] = regal_usable_size(p[i]);
        fill_pattern(p[i], usable[i], i);
    }
    size_t rss_full = process_rss(), expected = 0;
    for (size_t i = 0; i < N; i++) {
        if (i % 4 == 0)
            continue;
        expected += whole_pages_inside(p[i], usable[i]);
        regal_free(p[i]);
        p[i] = NULL;
    }
    size_t rss_freed = process_rss();
    regal_stats s = stats_of(a);
    cr_assert_eq(s.dirty, 0, "%zu dirty bytes kept with purge_delay=0", s.dirty);
    cr_assert_geq(s.purged, expected, "purged %zu of %zu bytes of whole free pages", s.purged,
                  expected);
    cr_assert_geq(rss_full, rss_freed + expected - 1 * MiB,
                  "RSS %zu KiB -> %zu KiB: less than the %zu KiB of whole free pages went back",
                  rss_full / KiB, rss_freed / KiB, expected / KiB);
    cr_assert_eq(regal_arena_trim(a), 0, "nothing is left for trim");

    free_intact(p, usable, N, "while the policy purged");
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* A span given back to its chunk (all its slots freed) is purged at once;
 * only the last span of the size class stays, for the next allocation. */
Test(purge_now, empty_spans_leave_rss_without_trim)
{
    require(NOW);
    enum { N = 64 * 40 }; /* 1 KiB slots: 40 spans of 64 KiB */
    static void *p[N];
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    for (size_t i = 0; i < N; i++) {
        p[i] = regal_alloc(a, 1024);
        cr_assert_not_null(p[i]);
        memset(p[i], 7, 1024);
    }
    size_t rss_full = process_rss();
    regal_stats full = stats_of(a);
    for (size_t i = 0; i < N; i++)
        regal_free(p[i]);
    size_t rss_freed = process_rss();
    regal_stats s = stats_of(a);
    cr_assert_eq(s.dirty, 0);
    cr_assert_geq(s.purged, (size_t)39 * 64 * KiB, "purged %zu", s.purged);
    cr_assert_leq(s.resident + 39 * 64 * KiB, full.resident);
    cr_assert_geq(rss_full, rss_freed + 39 * 64 * KiB - 1 * MiB, "RSS %zu KiB -> %zu KiB",
                  rss_full / KiB, rss_freed / KiB);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* A freed large block is not cached dirty: its mapping goes at once. */
Test(purge_now, freed_large_blocks_are_unmapped)
{
    require(NOW);
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *big = regal_alloc(a, 6 * MiB);
    cr_assert_not_null(big);
    memset(big, 9, 6 * MiB);
    size_t rss_full = process_rss();
    regal_free(big);
    size_t rss_freed = process_rss();
    regal_stats s = stats_of(a);
    cr_assert_eq(s.dirty, 0);
    cr_assert_geq(s.purged, 6 * MiB);
    cr_assert_geq(rss_full, rss_freed + 5 * MiB, "RSS %zu KiB -> %zu KiB", rss_full / KiB,
                  rss_freed / KiB);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* Reset frees every block: with no delay, the memory goes back too. */
Test(purge_now, reset_gives_the_memory_back)
{
    require(NOW);
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    for (int i = 0; i < 400; i++) {
        void *p = regal_alloc(a, (size_t)(i % 40 + 1) * 3000);
        cr_assert_not_null(p);
        memset(p, i, (size_t)(i % 40 + 1) * 3000);
    }
    regal_stats full = stats_of(a);
    regal_arena_reset(a);
    regal_stats s = stats_of(a);
    cr_assert_eq(s.dirty, 0);
    cr_assert_leq(s.resident + full.in_use / 2, full.resident, "resident %zu -> %zu", full.resident,
                  s.resident);
    void *p = regal_alloc(a, 100 * KiB); /* purged memory is usable again */
    cr_assert_not_null(p);
    memset(p, 1, 100 * KiB);
    regal_free(p);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* ---- purge_delay=off,purge_cap=1M -------------------------------------------------- */

#define CAPPED "purge_delay=off,purge_cap=1M"

Test(purge_cap, settings_are_read_from_regal_options)
{
    require(CAPPED);
    check_settings("\"purge\":{\"delay_ms\":null,\"cap\":1048576}");
}

/* Below the cap nothing is purged, however long it waits. */
Test(purge_cap, keeps_free_memory_below_the_cap)
{
    require(CAPPED);
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *p[4];
    for (size_t i = 0; i < 4; i++) {
        p[i] = regal_alloc(a, 200 * KiB);
        cr_assert_not_null(p[i]);
        memset(p[i], 1, 200 * KiB);
    }
    for (size_t i = 0; i < 4; i += 2)
        regal_free(p[i]);
    regal_stats s = stats_of(a);
    cr_assert_gt(s.dirty, 300 * KiB, "two freed 200 KiB blocks are dirty (%zu)", s.dirty);
    cr_assert_eq(s.purged, 0);
    regal_free(p[1]);
    regal_free(p[3]);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* Freeing every other of 80 blocks of 256 KiB, one by one: each free that
 * takes the dirty memory over the cap purges down to half of it, so it
 * never stays above the cap, and RSS drops by all but about a cap's worth. */
Test(purge_cap, bounds_the_free_memory_kept)
{
    require(CAPPED);
    enum { N = 80 };
    void *p[N];
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    for (size_t i = 0; i < N; i++) {
        p[i] = regal_alloc(a, 256 * KiB);
        cr_assert_not_null(p[i]);
        memset(p[i], 2, 256 * KiB);
    }
    size_t rss_full = process_rss();
    for (size_t i = 0; i < N; i += 2) {
        regal_free(p[i]);
        regal_stats s = stats_of(a);
        cr_assert_leq(s.dirty, CAP, "after %zu frees: %zu dirty bytes, cap %zu", i / 2 + 1, s.dirty,
                      CAP);
    }
    size_t rss_freed = process_rss();
    regal_stats s = stats_of(a);
    cr_assert_geq(s.purged, N / 2 * 256 * KiB - CAP - N / 2 * 8 * KiB, "purged %zu", s.purged);
    cr_assert_geq(rss_full, rss_freed + N / 2 * 240 * KiB - CAP - 1 * MiB, "RSS %zu KiB -> %zu KiB",
                  rss_full / KiB, rss_freed / KiB);
    for (size_t i = 1; i < N; i += 2)
        regal_free(p[i]);
    cr_assert_leq(stats_of(a).dirty, CAP);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* Without a delay and below the cap, trim is what gives memory back. */
Test(purge_cap, trim_still_gives_back_what_the_cap_allows)
{
    require(CAPPED);
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *keep = regal_alloc(a, 100 * KiB);
    void *p = regal_alloc(a, 600 * KiB);
    cr_assert_not_null(keep);
    cr_assert_not_null(p);
    memset(p, 3, 600 * KiB);
    regal_free(p);
    regal_stats before = stats_of(a);
    cr_assert_geq(before.dirty, 500 * KiB);
    size_t released = regal_arena_trim(a);
    cr_assert_geq(released, before.dirty);
    cr_assert_eq(stats_of(a).dirty, 0);
    regal_free(keep);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}
