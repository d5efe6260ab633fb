/*
 * Unit tests of src/large.c: the cache of freed large mappings, how a
 * mapping much bigger than a request is cut and what becomes of the rest.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "arena.h"
#include "helpers.h"
#include "options.h"
#include "purge.h"

static regal_arena *a;

static void setup(void)
{
    regal_arena_config cfg = {.name = "large-test"};
    a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    rg_purge_set(a, RG_PURGE_DELAY_OFF, RG_PURGE_CAP_OFF);
}

static void teardown(void)
{
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

TestSuite(large, .init = setup, .fini = teardown);

/* A freed 12 MiB mapping serves a 3 MiB request; the 9 MiB past it used
 * to be unmapped, so the next big request faulted fresh pages.  Now they
 * stay cached, with their contents: nothing new is committed. */
Test(large, a_cut_tail_stays_cached_with_its_pages)
{
    uint8_t *big = regal_alloc(a, 12 * MiB);
    cr_assert_not_null(big);
    memset(big, 0x5a, 12 * MiB);
    regal_free(big);
    size_t mapped = stats_of(a).mapped;

    uint8_t *small = regal_alloc(a, 3 * MiB);
    cr_assert_eq(small, big, "the cached mapping is reused");
    cr_assert_eq(a->large_cache_count, 1, "its tail is cached");
    cr_assert_eq(stats_of(a).mapped, mapped, "nothing was unmapped");

    uint8_t *tail = regal_alloc(a, 6 * MiB);
    cr_assert_not_null(tail);
    cr_assert_eq(a->large_cache_count, 0, "the tail served the request");
    cr_assert_eq(stats_of(a).mapped, mapped, "nothing was committed");
    cr_assert_eq(tail[6 * MiB - 1], 0x5a, "the tail kept its pages");
    regal_free(small);
    regal_free(tail);
}

/* A tail smaller than the request stays with the block. */
Test(large, a_small_tail_stays_with_the_block)
{
    void *big = regal_alloc(a, 5 * MiB);
    cr_assert_not_null(big);
    regal_free(big);
    void *p = regal_alloc(a, 3 * MiB);
    cr_assert_eq(p, big);
    cr_assert_eq(a->large_cache_count, 0);
    cr_assert_geq(regal_usable_size(p), 5 * MiB - 4096);
    regal_free(p);
}

/* With the cache full, a freed mapping bigger than a cached one takes its
 * place: it used to be unmapped, while the small one stayed. */
Test(large, a_bigger_mapping_evicts_a_smaller_one_from_a_full_cache)
{
    void *big = regal_alloc(a, 40 * MiB), *small = regal_alloc(a, 30 * MiB);
    cr_assert_not_null(big);
    cr_assert_not_null(small);
    regal_free(small);
    regal_free(big); /* 70 MiB > the cache's 64 MiB */
    cr_assert_eq(a->large_cache_count, 1);
    cr_assert_geq(a->large_cache->map_size, 40 * MiB, "the big one is cached");
    void *again = regal_alloc(a, 40 * MiB);
    cr_assert_eq(again, big, "and reused");
    regal_free(again);
}
