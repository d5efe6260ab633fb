/*
 * Arenas through the public API: create, destroy, reset, the default arena
 * and regal_arena_of.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "regal.h"

static _Alignas(64) char global_buffer[256];

/* One block of each kind the engine serves: small, medium (free-list heap),
 * large (own mapping), plus an over-aligned one and a zero-size one. */
static const size_t mixed_sizes[] = {0,    16,        24,        100,     1000,   4000,
                                     9000, 100 * KiB, 300 * KiB, 1 * MiB, 4 * MiB};

Test(arena, creates_with_a_null_config)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    void *p = regal_alloc(a, 100);
    cr_assert_not_null(p);
    memset(p, 0x5a, 100);
    cr_assert_eq(regal_arena_of(p), a);
    regal_free(p);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(arena, creates_with_a_name_a_limit_and_single_thread_flag)
{
    regal_arena_config cfg = {
        .name = "level-1", .limit = 32 * MiB, .flags = REGAL_ARENA_SINGLE_THREAD};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);

    void *blocks[ARRAY_LEN(mixed_sizes)];
    for (size_t i = 0; i < ARRAY_LEN(mixed_sizes); i++) {
        blocks[i] = regal_alloc(a, mixed_sizes[i]);
        cr_assert_not_null(blocks[i], "size %zu", mixed_sizes[i]);
        fill_pattern(blocks[i], mixed_sizes[i], i);
    }
    cr_assert_leq(stats_of(a).mapped, cfg.limit);
    for (size_t i = 0; i < ARRAY_LEN(mixed_sizes); i++) {
        cr_assert(pattern_intact(blocks[i], mixed_sizes[i], i), "size %zu", mixed_sizes[i]);
        regal_free(blocks[i]);
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(arena, creates_with_the_debug_flag)
{
    regal_arena_config cfg = {.name = "debug", .flags = REGAL_ARENA_DEBUG};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);

    for (size_t i = 0; i < ARRAY_LEN(mixed_sizes); i++) {
        void *p = regal_alloc(a, mixed_sizes[i]);
        cr_assert_not_null(p, "size %zu", mixed_sizes[i]);
        memset(p, 0x11, mixed_sizes[i]);
        regal_free(p);
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(arena, accepts_a_name_longer_than_31_bytes)
{
    regal_arena_config cfg = {.name = "a-very-long-arena-name-that-goes-on-and-on-and-on"};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);

    void *p = regal_alloc(a, 32);
    cr_assert_not_null(p);
    regal_free(p);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(arena, create_rejects_unknown_flags_with_einval)
{
    static const unsigned bad_flags[] = {1u << 2, 1u << 7, 1u << 31, ~0u,
                                         REGAL_ARENA_SINGLE_THREAD | (1u << 5)};
    for (size_t i = 0; i < ARRAY_LEN(bad_flags); i++) {
        regal_arena_config cfg = {.name = "bad", .flags = bad_flags[i]};
        errno = 0;
        regal_arena *a = regal_arena_create(&cfg);
        cr_assert_null(a, "flags %#x", bad_flags[i]);
        cr_assert_eq(errno, EINVAL, "flags %#x: errno %d", bad_flags[i], errno);
    }
}

Test(arena, destroy_of_null_is_a_no_op)
{
    error_log log;
    error_log_install(&log);

    regal_arena_destroy(NULL);
    cr_assert_eq(log.count, 0);

    error_log_remove();
}

Test(arena, default_arena_is_the_same_non_null_arena_every_time)
{
    regal_arena *d = regal_default_arena();
    cr_assert_not_null(d);
    cr_assert_eq(regal_default_arena(), d);
    cr_assert_eq(regal_default_arena(), d);

    void *p = regal_alloc(d, 200);
    cr_assert_not_null(p);
    cr_assert_eq(regal_arena_of(p), d);
    regal_free(p);

    cr_assert_eq(regal_arena_check(d), 0);
}

Test(arena, destroying_the_default_arena_is_reported_and_ignored)
{
    regal_arena *d = regal_default_arena();
    cr_assert_not_null(d);
    void *p = regal_alloc(d, 300);
    cr_assert_not_null(p);
    fill_pattern(p, 300, 7);

    error_log log;
    error_log_install(&log);
    regal_arena_destroy(d);
    cr_assert_eq(log.count, 1, "reports: %u", log.count);
    cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE, "kind %d", (int)log.kind);
    error_log_remove();

    /* Still the same arena, its block untouched, and it still serves. */
    cr_assert_eq(regal_default_arena(), d);
    cr_assert_eq(regal_arena_of(p), d);
    cr_assert(pattern_intact(p, 300, 7));
    void *q = regal_alloc(d, 5000);
    cr_assert_not_null(q);
    memset(q, 0x33, 5000);
    regal_free(q);
    regal_free(p);

    cr_assert_eq(regal_arena_check(d), 0);
}

Test(arena, arena_of_finds_the_owner_of_blocks_of_every_size)
{
    static const size_t sizes[] = {16, 100 * KiB, 4 * MiB};
    regal_arena *a = regal_arena_create(NULL);
    regal_arena *b = regal_arena_create(NULL);
    cr_assert_not_null(a);
    cr_assert_not_null(b);

    void *pa[ARRAY_LEN(sizes)], *pb[ARRAY_LEN(sizes)];
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        pa[i] = regal_alloc(a, sizes[i]);
        pb[i] = regal_alloc(b, sizes[i]);
        cr_assert_not_null(pa[i]);
        cr_assert_not_null(pb[i]);
    }
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        cr_assert_eq(regal_arena_of(pa[i]), a, "size %zu", sizes[i]);
        cr_assert_eq(regal_arena_of(pb[i]), b, "size %zu", sizes[i]);
    }
    void *d = regal_alloc(regal_default_arena(), 64);
    cr_assert_not_null(d);
    cr_assert_eq(regal_arena_of(d), regal_default_arena());
    regal_free(d);

    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        regal_free(pa[i]);
        regal_free(pb[i]);
    }
    cr_assert_eq(regal_arena_check(a), 0);
    cr_assert_eq(regal_arena_check(b), 0);
    regal_arena_destroy(a);
    regal_arena_destroy(b);
}

Test(arena, arena_of_is_null_for_pointers_regal_never_returned)
{
    int on_stack = 0;
    void *from_malloc = malloc(64);
    cr_assert_not_null(from_malloc);

    error_log log;
    error_log_install(&log);
    cr_assert_null(regal_arena_of(NULL));
    cr_assert_null(regal_arena_of(&on_stack));
    cr_assert_null(regal_arena_of(global_buffer));
    cr_assert_null(regal_arena_of(&global_buffer[16]));
    cr_assert_null(regal_arena_of(from_malloc));
    cr_assert_null(regal_arena_of((void *)0x1000));
    cr_assert_null(regal_arena_of((void *)(UINTPTR_MAX - 15)));
    cr_assert_eq(log.count, 0, "regal_arena_of must never report");
    error_log_remove();

    free(from_malloc);
}

Test(arena, arena_of_is_null_for_interior_pointers)
{
    static const size_t sizes[] = {100, 100 * KiB, 4 * MiB};
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    error_log log;
    error_log_install(&log);
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        char *p = regal_alloc(a, sizes[i]);
        cr_assert_not_null(p);
        cr_assert_eq(regal_arena_of(p), a);
        cr_assert_null(regal_arena_of(p + 16), "size %zu", sizes[i]);
        cr_assert_null(regal_arena_of(p + 1), "size %zu", sizes[i]);
        regal_free(p);
    }
    cr_assert_eq(log.count, 0, "regal_arena_of must never report");
    error_log_remove();

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(arena, arena_of_is_null_for_a_freed_block)
{
    static const size_t sizes[] = {16, 100 * KiB, 4 * MiB};
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    /* A neighbour keeps each page, heap region and chunk alive. */
    void *keep[ARRAY_LEN(sizes)];

    error_log log;
    error_log_install(&log);
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        keep[i] = regal_alloc(a, sizes[i]);
        void *p = regal_alloc(a, sizes[i]);
        cr_assert_not_null(keep[i]);
        cr_assert_not_null(p);
        regal_free(p);
        cr_assert_null(regal_arena_of(p), "size %zu", sizes[i]);
    }
    cr_assert_eq(log.count, 0, "regal_arena_of must never report");
    error_log_remove();

    for (size_t i = 0; i < ARRAY_LEN(sizes); i++)
        regal_free(keep[i]);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(arena, arena_of_is_null_once_the_arena_is_destroyed)
{
    static const size_t sizes[] = {16, 100 * KiB, 4 * MiB};
    void *p[ARRAY_LEN(sizes)];

    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        p[i] = regal_alloc(a, sizes[i]);
        cr_assert_not_null(p[i]);
    }
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);

    /* Nothing else allocated since: the memory may sit in a cache, but it
     * holds no live block of any arena. */
    error_log log;
    error_log_install(&log);
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++)
        cr_assert_null(regal_arena_of(p[i]), "size %zu: the destroyed arena still owns it",
                       sizes[i]);
    cr_assert_eq(log.count, 0, "regal_arena_of must never report");
    error_log_remove();
}

/* Writes c over [p, p+n), or only over its first and last bytes when not
 * whole (cheap enough for thousands of cycles). */
static void touch(void *p, size_t n, unsigned char c, int whole)
{
    if (n == 0)
        return;
    if (whole) {
        memset(p, c, n);
    } else {
        ((unsigned char *)p)[0] = c;
        ((unsigned char *)p)[n - 1] = c;
    }
}

/* Allocates one block of every mixed size plus a spread of small ones, an
 * over-aligned one and a calloc()ed one; returns how many pointers went into
 * out. */
static size_t allocate_mixed(regal_arena *a, void **out, size_t cap, int whole)
{
    size_t n = 0;
    for (size_t i = 0; i < ARRAY_LEN(mixed_sizes) && n < cap; i++) {
        out[n] = regal_alloc(a, mixed_sizes[i]);
        cr_assert_not_null(out[n], "size %zu", mixed_sizes[i]);
        touch(out[n], mixed_sizes[i], 0xc3, whole);
        n++;
    }
    for (size_t s = 8; s <= 2048 && n < cap; s += 40) {
        out[n] = regal_alloc(a, s);
        cr_assert_not_null(out[n], "size %zu", s);
        touch(out[n], s, 0x3c, whole);
        n++;
    }
    if (n < cap) {
        out[n] = regal_aligned_alloc(a, 4096, 5000);
        cr_assert_not_null(out[n]);
        touch(out[n], 5000, 0x4b, whole);
        n++;
    }
    if (n < cap) {
        out[n] = regal_calloc(a, 10, 1000);
        cr_assert_not_null(out[n]);
        n++;
    }
    return n;
}

Test(arena, reset_frees_every_block_and_the_arena_serves_again)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *blocks[128];

    size_t n = allocate_mixed(a, blocks, ARRAY_LEN(blocks), 1);
    cr_assert_gt(stats_of(a).blocks_in_use, 0);
    regal_arena_reset(a);

    regal_stats s = stats_of(a);
    cr_assert_eq(s.in_use, 0, "in_use %zu after reset", s.in_use);
    cr_assert_eq(s.blocks_in_use, 0, "blocks_in_use %zu after reset", s.blocks_in_use);
    cr_assert_eq(regal_arena_check(a), 0);

    /* It serves blocks of every size again, and they are the arena's. */
    size_t m = allocate_mixed(a, blocks, ARRAY_LEN(blocks), 1);
    cr_assert_eq(m, n);
    for (size_t i = 0; i < m; i++) {
        cr_assert_eq(regal_arena_of(blocks[i]), a);
        cr_assert_geq(regal_usable_size(blocks[i]), 1);
    }
    s = stats_of(a);
    cr_assert_eq(s.blocks_in_use, m);
    for (size_t i = 0; i < m; i++)
        regal_free(blocks[i]);
    s = stats_of(a);
    cr_assert_eq(s.in_use, 0);
    cr_assert_eq(s.blocks_in_use, 0);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(arena, reset_of_an_empty_arena_is_harmless)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    regal_arena_reset(a);
    regal_arena_reset(a);
    void *p = regal_alloc(a, 10);
    cr_assert_not_null(p);
    regal_arena_reset(a);
    cr_assert_eq(stats_of(a).blocks_in_use, 0);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(arena, reset_cycles_reuse_memory_without_growing_mapped)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *blocks[128];
    size_t warm_mapped = 0;

    for (int cycle = 0; cycle < 2000; cycle++) {
        size_t n = allocate_mixed(a, blocks, ARRAY_LEN(blocks), 0);
        cr_assert_gt(n, 0);
        size_t mapped = stats_of(a).mapped;
        if (cycle < 5) {
            if (mapped > warm_mapped)
                warm_mapped = mapped;
        } else {
            cr_assert_leq(mapped, warm_mapped, "cycle %d: mapped %zu, after warm-up %zu", cycle,
                          mapped, warm_mapped);
        }
        regal_arena_reset(a);
        regal_stats s = stats_of(a);
        cr_assert_eq(s.in_use, 0, "cycle %d", cycle);
        cr_assert_eq(s.blocks_in_use, 0, "cycle %d", cycle);
    }

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(arena, create_and_destroy_cycles_keep_rss_and_mapped_bounded)
{
    size_t rss_after_warmup = 0, warm_mapped = 0;

    for (int cycle = 0; cycle < 2000; cycle++) {
        regal_arena_config cfg = {.name = "cycle",
                                  .flags = (cycle & 1) ? REGAL_ARENA_SINGLE_THREAD : 0};
        regal_arena *a = regal_arena_create(&cfg);
        cr_assert_not_null(a, "cycle %d", cycle);

        /* Live blocks of every kind left for destroy to release. */
        for (size_t s = 16; s <= 4096; s *= 2) {
            void *p = regal_alloc(a, s);
            cr_assert_not_null(p);
            memset(p, 0x77, s);
        }
        char *medium = regal_alloc(a, 100 * KiB);
        char *large = regal_alloc(a, 1 * MiB);
        char *huge = regal_alloc(a, 4 * MiB);
        cr_assert_not_null(medium);
        cr_assert_not_null(large);
        cr_assert_not_null(huge);
        memset(medium, 0x78, 100 * KiB);
        memset(large, 0x79, 1 * MiB);
        for (size_t off = 0; off < 4 * MiB; off += 64 * KiB)
            huge[off] = 1;

        /* Both kinds of arena (thread-safe and single-thread) are in the
         * first four cycles; later ones may not map more. */
        size_t mapped = stats_of(a).mapped;
        if (cycle < 4) {
            if (mapped > warm_mapped)
                warm_mapped = mapped;
        } else {
            cr_assert_leq(mapped, warm_mapped, "cycle %d: mapped %zu, %zu in the first cycles",
                          cycle, mapped, warm_mapped);
        }

        cr_assert_eq(regal_arena_check(a), 0, "cycle %d", cycle);
        regal_arena_destroy(a);

        if (cycle == 50)
            rss_after_warmup = process_rss();
    }
    size_t rss = process_rss();
    cr_assert_gt(rss_after_warmup, 0, "cannot read /proc/self/statm");
    cr_assert_lt(rss, rss_after_warmup + 16 * MiB, "RSS grew from %zu to %zu bytes",
                 rss_after_warmup, rss);
}

/* An arena in use faults in two OS pages of itself: its fields, and its
 * own theap but for the cache bins it never uses (src/arena.h).  Those
 * bins and the handles, last in the arena, stay untouched, and with them
 * its third page.  The page descriptors start at 16 KiB. */
Test(arena, arena_touches_two_pages_of_itself)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *small = regal_alloc(a, 100);
    void *medium = regal_alloc(a, 20 * KiB);
    cr_assert_not_null(small);
    cr_assert_not_null(medium);
    regal_free(small);
    regal_free(medium);

    /* (Before any statistics: they read the handle table, which maps the
     * zero page there, and mincore counts it.) */
    size_t pages = resident_pages(a, 16 * KiB);
    cr_assert_leq(pages, 2, "%zu of the arena's first 4 OS pages resident", pages);
    regal_arena_destroy(a);
}
