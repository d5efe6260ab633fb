/* Unit tests of src/page.c: size classes, slot arithmetic, spans taken again. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "page.h"
#include "regal.h"

Test(page, size_class_is_the_smallest_class_that_fits)
{
    for (size_t n = 0; n <= RG_SMALL_MAX; n++) {
        unsigned c = rg_size_class(n);
        cr_assert_lt(c, RG_CLASS_COUNT, "size %zu", n);
        cr_assert_geq(rg_class_size[c], n, "size %zu -> class %u", n, c);
        if (c > 0)
            cr_assert_lt(rg_class_size[c - 1], n, "size %zu -> class %u not smallest", n, c);
    }
}

Test(page, class_table_of_the_fast_path_agrees_for_every_size)
{
    rg_classes_init();
    for (size_t n = 0; n <= RG_SMALL_MAX; n++)
        cr_assert_eq(rg_size_class_small(n), rg_size_class(n), "size %zu", n);
}

Test(page, classes_grow_and_stay_16_aligned)
{
    for (unsigned c = 0; c < RG_CLASS_COUNT; c++) {
        cr_assert_eq(rg_class_size[c] % 16, 0);
        if (c > 0)
            cr_assert_gt(rg_class_size[c], rg_class_size[c - 1]);
    }
    cr_assert_eq(rg_class_size[RG_CLASS_COUNT - 1], RG_SMALL_MAX);
}

Test(page, waste_is_under_a_quarter_above_64_bytes)
{
    for (size_t n = 65; n <= RG_SMALL_MAX; n++) {
        size_t u = rg_class_size[rg_size_class(n)];
        cr_assert_lt((u - n) * 4, u, "size %zu wastes %zu of %zu", n, u - n, u);
    }
    for (size_t n = 1; n <= 64; n++)
        cr_assert_lt(rg_class_size[rg_size_class(n)] - n, 16u);
}

Test(page, waste_is_under_an_eighth_above_1_kib)
{
    for (size_t n = 1025; n <= RG_SMALL_MAX; n++) {
        size_t u = rg_class_size[rg_size_class(n)];
        cr_assert_lt((u - n) * 8, u, "size %zu wastes %zu of %zu", n, u - n, u);
    }
}

/* A power of two plus a length prefix of up to 16 bytes (sqlite asks for
 * 1032 and 4104 bytes) gets a slot only 16 bytes above the power of two. */
Test(page, power_of_two_plus_a_prefix_wastes_under_16_bytes)
{
    for (size_t p2 = 1024; p2 < RG_SMALL_MAX; p2 *= 2)
        for (size_t n = p2 + 1; n <= p2 + 16; n++)
            cr_assert_eq(rg_class_size[rg_size_class(n)], p2 + 16, "size %zu", n);
}

/* The multiply-shift slot index must equal the true quotient for every
 * offset a span can hold, for every slot size a class or pool can have. */
static void check_slot_index(uint32_t slot, size_t span_bytes)
{
    struct rg_page pg = {.start = (uint8_t *)(uintptr_t)RG_PAGE_SIZE, .slot_size = slot};
    pg.recip = UINT64_MAX / slot + 1;
    for (size_t off = 0; off < span_bytes; off += (off % slot == 0 ? 1 : slot - 1)) {
        uint32_t i = rg_slot_index(&pg, pg.start + off);
        cr_assert_eq(i, off / slot, "slot %u offset %zu", slot, off);
    }
}

Test(page, slot_index_is_exact_for_every_class)
{
    for (unsigned c = 0; c < RG_CLASS_COUNT; c++)
        check_slot_index(rg_class_size[c], RG_PAGE_SIZE);
}

Test(page, slot_index_is_exact_for_odd_pool_slots)
{
    uint32_t slots[] = {8, 9, 12, 24, 100, 1000, 4097, 65535, 100003, 1u << 20};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
        check_slot_index(slots[i], (size_t)63 << RG_PAGE_SHIFT);
}

/* rg_slot_at, the free paths' boundary test, must say "boundary" exactly
 * at multiples of the slot size, with the true index, at every offset
 * around each slot of a span of the largest span a class or pool has. */
static void check_slot_at(uint32_t slot, size_t span_bytes)
{
    struct rg_page pg = {.slot_size = slot};
    pg.recip = UINT64_MAX / slot + 1;
    for (size_t k = 0; k * slot < span_bytes; k++) {
        const size_t rs[] = {0, 1, 2, 8, slot / 2, slot - 2, slot - 1};
        for (size_t j = 0; j < sizeof rs / sizeof rs[0]; j++) {
            size_t off = k * slot + rs[j];
            if (rs[j] >= slot || off >= span_bytes)
                continue;
            uint32_t s = UINT32_MAX;
            bool boundary = rg_slot_at(&pg, off, &s);
            cr_assert_eq(boundary, off % slot == 0, "slot %u offset %zu", slot, off);
            cr_assert_eq(s, off / slot, "slot %u offset %zu", slot, off);
        }
    }
}

Test(page, slot_boundary_test_is_exact_for_every_class)
{
    for (unsigned c = 0; c < RG_CLASS_COUNT; c++)
        check_slot_at(rg_class_size[c], (size_t)(RG_PAGES_PER_CHUNK - 1) << RG_PAGE_SHIFT);
}

Test(page, slot_boundary_test_is_exact_for_odd_and_largest_pool_slots)
{
    uint32_t slots[] = {8, 9, 12, 24, 100, 1000, 4097, 65535, 100003, 1u << 20, (1u << 20) + 48};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
        check_slot_at(slots[i], (size_t)(RG_PAGES_PER_CHUNK - 1) << RG_PAGE_SHIFT);
}

Test(page, a_descriptor_is_found_by_shift_from_any_address_in_its_page)
{
    cr_assert_eq(sizeof(struct rg_page), (size_t)1 << RG_PAGE_DESC_SHIFT);
    struct rg_chunk *c = (struct rg_chunk *)((uintptr_t)7 << RG_CHUNK_SHIFT);
    for (unsigned i = 0; i < RG_PAGES_PER_CHUNK; i++) {
        uintptr_t page = (uintptr_t)c + ((uintptr_t)i << RG_PAGE_SHIFT);
        cr_assert_eq(rg_page_desc_of(c, (void *)(page + 1)), rg_page_desc(c, i));
        cr_assert_eq(rg_page_desc_of(c, (void *)(page + RG_PAGE_SIZE - 1)), rg_page_desc(c, i));
    }
    /* One past the chunk's end (a pointer whose chunk is found by p - 1)
     * is page 0, which never holds a span. */
    cr_assert_eq(rg_page_desc_of(c, (void *)((uintptr_t)c + RG_CHUNK_SIZE)), rg_page_desc(c, 0));
}

/* After a reset, a stale pointer into a page the reset forgot (above the
 * chunk's new top) is no block: its descriptor must not pass for a live
 * span on the lock-free free path, which does not compare with top. */
static int invalid_reports;

static void count_invalid(regal_error_kind kind, const void *ptr, const char *msg, void *ctx)
{
    (void)ptr;
    (void)msg;
    (void)ctx;
    if (kind == REGAL_ERR_INVALID_FREE)
        invalid_reports++;
}

static void stale_free_after_reset(unsigned flags)
{
    regal_arena_config cfg = {.flags = flags};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    enum { N = 4000 }; /* 64-byte blocks: a span of 1024 per page, four pages */
    static void *b[N];
    for (int i = 0; i < N; i++) {
        b[i] = regal_alloc(a, 64);
        cr_assert_not_null(b[i]);
    }
    regal_arena_reset(a);
    void *fresh = regal_alloc(a, 64);
    cr_assert_not_null(fresh);
    memset(fresh, 0x5a, 64);
    regal_set_error_handler(count_invalid, NULL);
    invalid_reports = 0;
    regal_free(b[N - 1]);
    cr_assert_eq(invalid_reports, 1, "flags %u: %d reports", flags, invalid_reports);
    regal_set_error_handler(NULL, NULL);
    cr_assert_eq(regal_arena_check(a), 0, "flags %u", flags);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(((unsigned char *)fresh)[i], 0x5a);
    regal_free(fresh);
    regal_arena_destroy(a);
}

Test(page, a_stale_pointer_above_top_after_a_reset_is_no_block)
{
    stale_free_after_reset(0);
    stale_free_after_reset(REGAL_ARENA_SINGLE_THREAD);
}

/* A use-after-free write over a free slot's link must not make a later
 * allocation return the planted address. */
static int corruption_reports;

static void count_corruption(regal_error_kind kind, const void *ptr, const char *msg, void *ctx)
{
    (void)ptr;
    (void)msg;
    (void)ctx;
    if (kind == REGAL_ERR_CORRUPTION)
        corruption_reports++;
}

Test(page, an_overwritten_free_link_never_yields_the_planted_address)
{
    regal_arena_config cfg = {.flags = REGAL_ARENA_SINGLE_THREAD};
    regal_arena *a = regal_arena_create(&cfg);
    regal_set_error_handler(count_corruption, NULL);
    static char target[64];
    void *keep[4];
    for (int i = 0; i < 4; i++)
        keep[i] = regal_alloc(a, 48);
    regal_free(keep[1]);
    void *planted = target;
    memcpy(keep[1], &planted, sizeof planted); /* the write after free */
    void *first = regal_alloc(a, 48);
    void *second = regal_alloc(a, 48);
    cr_assert_eq(first, keep[1], "the freed slot itself comes back first");
    cr_assert_neq(second, (void *)target);
    cr_assert_eq(corruption_reports, 1);
    regal_set_error_handler(NULL, NULL);
    regal_arena_destroy(a);
}

/* ---- spans taken again (page.c invariant 7) ------------------------------------ */

#define SPAN_SLOTS 1024 /* 64-byte slots in a span of 64 KiB */
#define BLOCKS     (3 * SPAN_SLOTS - 50)

/* Fills three spans of 64-byte slots in a, frees every block of the first
 * one (blocks[0, SPAN_SLOTS), in allocation order) so that it goes back to
 * its chunk, and returns the first block then allocated in its pages. */
static void *first_block_back_in_an_emptied_span(regal_arena *a, void **blocks, bool trim)
{
    for (int i = 0; i < BLOCKS; i++)
        cr_assert_not_null(blocks[i] = regal_alloc(a, 64));
    uint8_t *lo = blocks[0], *hi = (uint8_t *)blocks[SPAN_SLOTS - 1] + 64;
    cr_assert_eq((size_t)(hi - lo), (size_t)SPAN_SLOTS * 64, "one span, in order");
    for (int i = 0; i < SPAN_SLOTS; i++) {
        memset(blocks[i], 0xab, 64);
        regal_free(blocks[i]);
    }
    cr_assert_eq(regal_arena_check(a), 0);
    if (trim)
        regal_arena_trim(a);
    for (int i = 0; i < 2 * SPAN_SLOTS; i++) {
        uint8_t *p = regal_alloc(a, 64);
        cr_assert_not_null(p);
        if (p >= lo && p < hi)
            return p;
    }
    cr_assert_fail("no block came back in the emptied span");
    return NULL;
}

static size_t stats_of_blocks(regal_arena *a)
{
    regal_stats s;
    regal_arena_stats(a, &s);
    return s.blocks_in_use;
}

static void each_flag(void (*test)(unsigned flags))
{
    test(0);
    test(REGAL_ARENA_SINGLE_THREAD);
}

/* The block that comes back first: the last one freed when the span is
 * taken again as it was, its first slot (the memory read as zero past the
 * link the carve wrote) when a trim gave its pages to the OS meanwhile. */
static void emptied_span_comes_back(unsigned flags, bool trim)
{
    regal_arena_config cfg = {.flags = flags};
    regal_arena *a = regal_arena_create(&cfg);
    static void *blocks[BLOCKS];
    unsigned char *p = first_block_back_in_an_emptied_span(a, blocks, trim);
    if (!trim) {
        cr_assert_eq(p, blocks[SPAN_SLOTS - 1], "flags %u: the last block freed comes back first",
                     flags);
    } else {
        cr_assert_eq(p, blocks[0], "flags %u: pages given back to the OS are carved afresh", flags);
        for (int i = 8; i < 64; i++)
            cr_assert_eq(p[i], 0, "flags %u: byte %d", flags, i);
    }
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

static void revived(unsigned flags)
{
    emptied_span_comes_back(flags, false);
}

static void purged_not_revived(unsigned flags)
{
    emptied_span_comes_back(flags, true);
}

Test(page, a_class_span_given_back_is_taken_again_with_its_free_list)
{
    each_flag(revived);
}

Test(page, a_span_whose_pages_went_back_to_the_os_is_not_taken_as_it_was)
{
    each_flag(purged_not_revived);
}

static void *first_block_of_a_new_thread(void *arg)
{
    regal_arena *a = arg;
    void *p = regal_alloc(a, 64);
    cr_assert_not_null(p);
    return p;
}

/* Spans go back to the arena, not to the thread that emptied them: a new
 * thread's first span of the class is the one another thread gave back,
 * with that thread's free list. */
Test(page, a_span_one_thread_gave_back_serves_another_as_it_was)
{
    regal_arena *a = regal_arena_create(NULL);
    static void *blocks[BLOCKS];
    for (int i = 0; i < BLOCKS; i++)
        cr_assert_not_null(blocks[i] = regal_alloc(a, 64));
    for (int i = 0; i < SPAN_SLOTS; i++)
        regal_free(blocks[i]);
    pthread_t t;
    void *p;
    cr_assert_eq(pthread_create(&t, NULL, first_block_of_a_new_thread, a), 0);
    cr_assert_eq(pthread_join(t, &p), 0);
    cr_assert_eq(p, blocks[SPAN_SLOTS - 1]);
    regal_free(p); /* from the thread that owns none of it now */
    for (int i = SPAN_SLOTS; i < BLOCKS; i++)
        regal_free(blocks[i]);
    cr_assert_eq(regal_arena_check(a), 0);
    cr_assert_eq(stats_of_blocks(a), 0);
    regal_arena_destroy(a);
}

typedef struct handover {
    regal_arena *a;
    void **blocks;
    pthread_barrier_t bar;
} handover;

static void *fill_a_span_and_wait(void *arg)
{
    handover *h = arg;
    for (int i = 0; i <= SPAN_SLOTS; i++) /* the last one sends the full span to the full list */
        cr_assert_not_null(h->blocks[i] = regal_alloc(h->a, 64));
    regal_free(h->blocks[SPAN_SLOTS]);
    pthread_barrier_wait(&h->bar); /* the other thread frees the full span's blocks */
    pthread_barrier_wait(&h->bar);
    return NULL; /* the exit collects them: the span empties and goes back */
}

/* A full span that other threads emptied goes back when its owner exits;
 * as a free span it is on no list of full spans. */
Test(page, a_full_span_emptied_by_other_threads_goes_back_off_the_full_list)
{
    handover h = {.a = regal_arena_create(NULL)};
    static void *blocks[SPAN_SLOTS + 1];
    h.blocks = blocks;
    cr_assert_eq(pthread_barrier_init(&h.bar, NULL, 2), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, fill_a_span_and_wait, &h), 0);
    pthread_barrier_wait(&h.bar);
    for (int i = 0; i < SPAN_SLOTS; i++)
        regal_free(blocks[i]);
    pthread_barrier_wait(&h.bar);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(regal_arena_check(h.a), 0);
    cr_assert_eq(stats_of_blocks(h.a), 0);
    pthread_barrier_destroy(&h.bar);
    regal_arena_destroy(h.a);
}

static void reset_then_again(unsigned flags)
{
    regal_arena_config cfg = {.flags = flags};
    regal_arena *a = regal_arena_create(&cfg);
    static void *blocks[BLOCKS];
    first_block_back_in_an_emptied_span(a, blocks, false);
    for (int i = 0; i < SPAN_SLOTS; i++) /* a second span goes back too */
        regal_free(blocks[SPAN_SLOTS + i]);
    regal_arena_reset(a);
    for (int i = 0; i < BLOCKS; i++) /* the same pages, from the chunk's top */
        cr_assert_not_null(blocks[i] = regal_alloc(a, 64));
    cr_assert_eq(regal_arena_check(a), 0, "flags %u", flags);
    for (int i = 0; i < BLOCKS; i++)
        regal_free(blocks[i]);
    cr_assert_eq(regal_arena_check(a), 0, "flags %u", flags);
    regal_arena_destroy(a);
}

Test(page, after_a_reset_no_span_is_taken_as_it_was_before)
{
    each_flag(reset_then_again);
}
