/*
 * Unit tests of src/large.c: the cache of freed large mappings, whose
 * pages serve later requests of any size: a mapping taken as it is, the
 * tail of a bigger one, several joined, fresh pages only for the rest.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
#include "helpers.h"
#include "large.h"
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

static size_t pages_of(const void *p, size_t n)
{
    return (rg_align_up((uintptr_t)p + n, 4096) - ((uintptr_t)p & ~(uintptr_t)4095)) / 4096;
}

static size_t cache_largest_size(void)
{
    size_t most = 0;
    for (size_t i = 0; i < a->large_cache_count; i++)
        if (a->large_cache[i].size > most)
            most = a->large_cache[i].size;
    return most;
}

static void *alloc_filled(size_t size, int c)
{
    void *p = regal_alloc(a, size);
    cr_assert_not_null(p);
    memset(p, c, size);
    return p;
}

/* A cached mapping less than twice the request serves it as it is. */
Test(large, a_mapping_less_than_twice_the_request_is_taken_as_it_is)
{
    void *big = alloc_filled(5 * MiB, 1);
    regal_free(big);
    void *p = regal_alloc(a, 3 * MiB);
    cr_assert_eq(p, big);
    cr_assert_eq(a->large_cache_count, 0);
    cr_assert_geq(regal_usable_size(p), 5 * MiB - 4096);
    regal_free(p);
}

/* A freed 12 MiB mapping and a 3 MiB request: the request gets a mapping
 * of its own made of the cached one's last pages, resident (no fault, no
 * commit); the 9 MiB left stay cached and serve the next request. */
Test(large, a_much_bigger_mapping_gives_its_tail_pages)
{
    uint8_t *big = alloc_filled(12 * MiB, 0x5a);
    regal_free(big);
    size_t mapped = stats_of(a).mapped;

    uint8_t *small = regal_alloc(a, 3 * MiB);
    cr_assert_not_null(small);
    cr_assert_neq(small, big);
    cr_assert_eq(small[3 * MiB - 1], 0x5a, "the pages moved with their contents");
    cr_assert_eq(resident_pages(small, 3 * MiB), pages_of(small, 3 * MiB), "and are resident");
    cr_assert_eq(a->large_cache_count, 1, "the rest is cached");
    cr_assert_eq(stats_of(a).mapped, mapped, "nothing was committed");

    uint8_t *rest = regal_alloc(a, 6 * MiB);
    cr_assert_eq(rest, big, "the rest serves the next request");
    cr_assert_eq(a->large_cache_count, 0);
    cr_assert_eq(stats_of(a).mapped, mapped);
    regal_free(small);
    regal_free(rest);
}

/* No cached mapping holds the request, but two together do: the block is
 * made of their pages and faults none (this used to fault in the growth
 * of the biggest one, or the whole block). */
Test(large, mappings_too_small_alone_are_joined)
{
    void *x = alloc_filled(3 * MiB, 2), *y = alloc_filled(4 * MiB, 3);
    regal_free(x);
    regal_free(y);
    size_t mapped = stats_of(a).mapped;

    uint8_t *p = regal_alloc(a, 6 * MiB);
    cr_assert_not_null(p);
    cr_assert_eq(resident_pages(p, 6 * MiB), pages_of(p, 6 * MiB),
                 "every page came from the cache");
    cr_assert_eq(stats_of(a).mapped, mapped, "nothing was committed");
    cr_assert_eq(a->large_cache_count, 1, "what is left of the smaller one stays");
    cr_assert_lt(a->large_cache_bytes, 2 * MiB);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_free(p);
}

/* When the cache does not have enough, it gives all it has and only the
 * rest is committed (and faults) fresh. */
Test(large, only_what_the_cache_lacks_is_committed)
{
    void *x = alloc_filled(3 * MiB, 4);
    regal_free(x);
    size_t mapped = stats_of(a).mapped, cached = a->large_cache_bytes;

    uint8_t *p = regal_alloc(a, 8 * MiB);
    cr_assert_not_null(p);
    size_t need = rg_align_up((size_t)(p - (uint8_t *)rg_chunk_of(p)) + 8 * MiB, 4096);
    cr_assert_eq(a->large_cache_count, 0);
    cr_assert_eq(stats_of(a).mapped, mapped + need - cached);
    cr_assert_eq(resident_pages(rg_chunk_of(p), need), cached / 4096, "the cached pages, no other");
    regal_free(p);
}

/* Within the cache's room every freed mapping is kept: a program whose
 * large blocks shrink and grow again reuses its pages instead of faulting
 * them (the cap used to be 64 MiB). */
Test(large, the_cache_keeps_what_the_large_blocks_gave_back)
{
    void *big = alloc_filled(70 * MiB, 5), *small = alloc_filled(30 * MiB, 6);
    regal_free(small);
    regal_free(big);
    cr_assert_eq(a->large_cache_count, 2);
    void *again = regal_alloc(a, 99 * MiB);
    cr_assert_not_null(again);
    cr_assert_eq(resident_pages(again, 99 * MiB), pages_of(again, 99 * MiB),
                 "the 99 MiB came from the cache");
    regal_free(again);
}

/* A full cache makes room for a bigger mapping by dropping smaller ones. */
Test(large, a_bigger_mapping_evicts_smaller_ones_from_a_full_cache)
{
    void *small[32];
    for (int i = 0; i < 32; i++)
        small[i] = alloc_filled(3 * MiB, 8);
    void *big = alloc_filled(20 * MiB, 9);
    for (int i = 0; i < 32; i++)
        regal_free(small[i]);
    cr_assert_eq(a->large_cache_count, 32);
    regal_free(big);
    cr_assert_eq(a->large_cache_count, 32, "one small mapping made room");
    cr_assert_geq(cache_largest_size(), 20 * MiB);
}

/* Batches of more large blocks than the cache keeps, freed and allocated
 * again: the evicted mappings were needed again, so the cache learns to
 * keep a whole batch (purge.c), and later batches fault nothing in. */
Test(large, a_batch_allocated_again_is_kept_whole)
{
    enum { N = 40 }; /* more than the 32 mappings the cache keeps at first */
    void *p[N];
    for (int round = 1; round <= 3; round++) {
        for (int i = 0; i < N; i++)
            p[i] = alloc_filled(3 * MiB, i);
        for (int i = 0; i < N; i++)
            regal_free(p[i]);
        cr_assert_eq(a->large_cache_count, round == 1 ? 32 : N, "after batch %d", round);
    }
}

/* The cache's entries live in an array of their own, which grows past
 * its first page (170 entries) when the cache may keep more mappings:
 * every mapping is kept, found again and handed out once. */
Test(large, a_cache_of_hundreds_of_mappings_keeps_them_all)
{
    enum { N = 300 };
    a->keep_shift = 4; /* 512 mappings, 2 GiB: as after batches of them were needed again */
    static void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = regal_alloc(a, 3 * MiB + (size_t)i * 4096); /* untouched: not resident */
        cr_assert_not_null(p[i]);
    }
    for (int i = 0; i < N; i++)
        regal_free(p[i]);
    cr_assert_eq(a->large_cache_count, N);
    cr_assert_eq(regal_arena_check(a), 0);
    for (int i = N - 1; i >= 0; i--) {
        void *q = regal_alloc(a, 3 * MiB + (size_t)i * 4096);
        cr_assert_eq(q, p[i], "each request takes the mapping of its own size back");
    }
    cr_assert_eq(a->large_cache_count, 0);
    for (int i = 0; i < N; i++)
        regal_free(p[i]);
}

/* An entry of the cache that no longer says what its mapping is fails
 * regal_arena_check (it would send a request to pages that are not
 * there). */
Test(large, a_cache_entry_that_disagrees_with_its_mapping_fails_the_check)
{
    regal_free(alloc_filled(3 * MiB, 1));
    cr_assert_eq(a->large_cache_count, 1);
    a->large_cache[0].size += 4096;
    error_log log;
    error_log_install(&log);
    int rc = regal_arena_check(a);
    error_log_remove();
    cr_assert_neq(rc, 0);
    cr_assert_eq(log.kind, REGAL_ERR_CORRUPTION);
    a->large_cache[0].size -= 4096; /* mended, for the teardown's check */
}

/* A large block that cannot grow in place moves, pages and all, to a
 * bigger mapping: nothing is copied, and no old mapping is left for the
 * cache (a copy freed it there).  Growing a buffer by 4 KiB steps to
 * 64 MiB used to copy it at every step: 668 s. */
Test(large, a_block_that_cannot_grow_in_place_moves_its_pages)
{
    const size_t n = 8 * MiB;
    uint8_t *p = regal_alloc(a, n);
    cr_assert_not_null(p);
    fill_pattern(p, n, 3);
    struct rg_chunk *c = rg_chunk_of(p);
    uint8_t *end = (uint8_t *)c + c->map_size;
    void *guard = mmap(end, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
                       0); /* the pages after the block are taken */
    cr_assert_eq(guard, (void *)end);
    uint8_t *q = regal_realloc(a, p, n + 4096);
    cr_assert_not_null(q);
    cr_assert_neq(q, p, "grown in place over the guard page");
    cr_assert(pattern_intact(q, n, 3));
    cr_assert_eq(first_byte_not(q + n, 4096, 0), 4096, "the new page reads as zero");
    cr_assert_eq(a->large_cache_count, 0, "the block was copied and its old mapping cached");
    cr_assert_eq(regal_usable_size(q), rg_large_usable(rg_chunk_of(q)));
    cr_assert_eq(regal_arena_check(a), 0);
    munmap(guard, 4096);
    regal_free(q);
}

/* A block shrunk to half or less and grown again takes resident pages
 * from the cache, not fresh ones: shrinking moves it and leaves its old
 * mapping to the cache, and growing moves it into that mapping (a buffer
 * shrunk and grown in turn faulted its tail in again every time: 3.45 s,
 * mimalloc 0.24). */
Test(large, a_block_shrunk_and_grown_again_reuses_its_pages)
{
    const size_t big = 8 * MiB, small = 3 * MiB;
    uint8_t *p = alloc_filled(big, 7);
    fill_pattern(p, small, 8);
    uint8_t *q = regal_realloc(a, p, small);
    cr_assert_not_null(q);
    cr_assert(pattern_intact(q, small, 8));
    cr_assert_geq(a->large_cache_bytes, big, "the old mapping went to the OS");
    uint8_t *r = regal_realloc(a, q, big);
    cr_assert_not_null(r);
    cr_assert(pattern_intact(r, small, 8));
    cr_assert_eq(resident_pages(r, big), pages_of(r, big), "the grown block has fresh pages");
    cr_assert_eq(regal_arena_check(a), 0);
    regal_free(r);
}

/* Growth step by step through heap and large sizes keeps every byte. */
Test(large, a_buffer_grown_step_by_step_keeps_its_bytes)
{
    uint8_t *p = NULL;
    size_t have = 0;
    for (size_t n = 64 * KiB; n <= 24 * MiB; n += 192 * KiB + 16) {
        p = regal_realloc(a, p, n);
        cr_assert_not_null(p);
        cr_assert(pattern_intact(p, have, 5), "at %zu bytes", n);
        fill_pattern(p, n, 5);
        have = n;
    }
    cr_assert_eq(regal_arena_check(a), 0);
    regal_free(p);
}

/* A cached mapping holds only the pages of a freed block: a free of that
 * block's pointer is a double free, of any other address an invalid free.
 * A tail cut off a cached mapping used to be cached with a made-up block
 * pointer, whose free was reported as a double free of a block that never
 * was. */
Test(large, only_a_freed_blocks_pointer_reads_as_a_double_free)
{
    uint8_t *big = alloc_filled(12 * MiB, 1);
    regal_free(big);
    uint8_t *small = regal_alloc(a, 3 * MiB); /* the cached mapping is cut */
    cr_assert_not_null(small);
    cr_assert_geq(a->large_cache_count, 1);
    size_t offset = rg_align_up(sizeof(struct rg_large), RG_ALIGN);
    error_log log;
    for (size_t i = 0; i < a->large_cache_count; i++) {
        uint8_t *p = (uint8_t *)a->large_cache[i].c + offset;
        error_log_install(&log);
        regal_free(p);
        error_log_remove();
        cr_assert_eq(log.count, 1);
        regal_error_kind want = p == big ? REGAL_ERR_DOUBLE_FREE : REGAL_ERR_INVALID_FREE;
        cr_assert_eq(log.kind, want, "%p (the freed block was %p): kind %d", (void *)p, (void *)big,
                     (int)log.kind);
    }
    regal_free(small);
}

/* A block aligned to two pages or more has an untouched gap after its
 * header page.  Freed, its mapping is cached as it is, gap and all, and
 * the next block of the same alignment takes it with no system call:
 * before, its pages moved behind a new header at the free and into a new
 * mapping at the next allocation (2000 rounds of 2 MiB aligned to 2 MiB,
 * a write per page: 0.108 s, mimalloc 0.008), and before that its mapping
 * was unmapped and every page faulted in again (1.51 s). */
Test(large, an_aligned_block_takes_the_mapping_of_one_freed_with_its_alignment)
{
    const size_t n = 2 * MiB;
    uint8_t *p = regal_aligned_alloc(a, 2 * MiB, n);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % (2 * MiB), 0);
    memset(p, 4, n);
    struct rg_chunk *c = rg_chunk_of(p);
    size_t committed = rg_large_committed(c);
    regal_free(p);
    cr_assert_eq(a->large_cache_count, 1, "the aligned block's mapping was unmapped");
    cr_assert_eq(a->large_cache_bytes, committed, "the cache counts the gap");
    cr_assert_eq(regal_arena_check(a), 0);

    /* A second free of the block's pointer is a double free. */
    error_log log;
    error_log_install(&log);
    regal_free(p);
    error_log_remove();
    cr_assert_eq(log.count, 1);
    cr_assert_eq(log.kind, REGAL_ERR_DOUBLE_FREE);

    uint8_t *q = regal_aligned_alloc(a, 2 * MiB, n);
    cr_assert_eq(q, p, "the same mapping, as it was");
    cr_assert_eq(a->large_cache_count, 0);
    cr_assert_eq(resident_pages(q, n), n / 4096);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_free(q);
}

/* A cached mapping with a gap still gives its pages to a block of another
 * alignment (or none): the tail moves, and what is left, the header page
 * and the gap, is unmapped. */
Test(large, the_pages_of_an_aligned_block_serve_other_alignments)
{
    const size_t n = 3 * MiB; /* above RG_HEAP_MAX: large even when not aligned */
    const size_t aligns[] = {1 * MiB, RG_ALIGN};
    for (size_t i = 0; i < ARRAY_LEN(aligns); i++) {
        uint8_t *p = regal_aligned_alloc(a, 2 * MiB, n);
        cr_assert_not_null(p);
        memset(p, 4, n);
        regal_free(p);
        cr_assert_eq(a->large_cache_count, 1);
        uint8_t *q = regal_aligned_alloc(a, aligns[i], n);
        cr_assert_not_null(q);
        cr_assert_eq((uintptr_t)q % aligns[i], 0);
        cr_assert_eq(a->large_cache_count, 0, "align %zu: the rest was unmapped", aligns[i]);
        cr_assert_eq(a->large_cache_bytes, 0);
        cr_assert_geq(resident_pages(q, n), n / 4096 - 1,
                      "align %zu: the pages came from the cache", aligns[i]);
        cr_assert_eq(regal_arena_check(a), 0);
        regal_free(q);
        regal_arena_trim(a);
    }
}

/* Pointers into a large block past its first chunk, whose chunk header
 * would be user data, are invalid frees found from the chunk map alone. */
Test(large, interior_pointers_past_the_first_chunk_are_invalid_frees)
{
    uint8_t *p = regal_alloc(a, 12 * MiB);
    cr_assert_not_null(p);
    fill_pattern(p, 12 * MiB, 11);
    const size_t offsets[] = {4096, 1 * MiB + 16, 4 * MiB, 5 * MiB, 9 * MiB + 64};
    error_log log;
    for (size_t i = 0; i < ARRAY_LEN(offsets); i++) {
        error_log_install(&log);
        regal_free(p + offsets[i]);
        error_log_remove();
        cr_assert_eq(log.count, 1, "p + %zu", offsets[i]);
        cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE, "p + %zu: kind %d", offsets[i],
                     (int)log.kind);
    }
    cr_assert(pattern_intact(p, 12 * MiB, 11));
    regal_free(p);
}
