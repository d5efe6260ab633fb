/*
 * Unit tests of src/purge.c: the delay (with short delays set on one arena
 * through rg_purge_set, whatever REGAL_OPTIONS says), the cap, what each
 * leaves alone, and the dirty count behind them (regal_arena_check
 * recounts it after every test).
 */
#include <criterion/criterion.h>
#include <time.h>

#include "arena.h"
#include "helpers.h"
#include "options.h"
#include "purge.h"

static regal_arena *a;

static void setup(void)
{
    regal_arena_config cfg = {.name = "purge-test"};
    a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
}

static void teardown(void)
{
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

TestSuite(purge, .init = setup, .fini = teardown);

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* n blocks of size bytes, written whole. */
static void alloc_many(void **p, size_t n, size_t size)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = regal_alloc(a, size);
        cr_assert_not_null(p[i]);
        memset(p[i], (int)i, size);
    }
}

Test(purge, waits_for_the_delay_then_purges_on_the_next_slow_path)
{
    rg_purge_set(a, 250, RG_PURGE_CAP_OFF); /* long enough for two frees on a busy machine */
    void *p[8];
    alloc_many(p, 8, 200 * KiB);
    regal_arena_trim(a); /* a clean start: the wait begins at the first free */
    regal_free(p[0]);
    regal_free(p[2]);
    regal_stats s = stats_of(a);
    cr_assert_gt(s.dirty, 300 * KiB, "freed blocks are kept for a while (dirty %zu)", s.dirty);
    cr_assert_eq(s.purged, 0, "purged before the delay");

    sleep_ms(300);
    regal_free(p[4]); /* a heap free of a 200 KiB run: a slow path */
    s = stats_of(a);
    cr_assert_eq(s.dirty, 0, "%zu dirty bytes after the delay", s.dirty);
    cr_assert_gt(s.purged, 3 * 180 * KiB);
    for (size_t i = 0; i < 8; i++)
        if (i != 0 && i != 2 && i != 4)
            regal_free(p[i]);
}

Test(purge, the_wait_starts_again_once_everything_is_purged)
{
    rg_purge_set(a, 100, RG_PURGE_CAP_OFF);
    void *p[6];
    alloc_many(p, 6, 200 * KiB);
    regal_arena_trim(a);
    regal_free(p[0]);
    sleep_ms(150);
    regal_free(p[2]); /* purges p[0] and p[2]: the arena is clean */
    cr_assert_eq(stats_of(a).dirty, 0);
    regal_free(p[4]); /* new dirty memory: a new wait */
    cr_assert_gt(stats_of(a).dirty, 180 * KiB, "purged without waiting");
    regal_free(p[1]);
    regal_free(p[3]);
    regal_free(p[5]);
}

Test(purge, off_means_never)
{
    rg_purge_set(a, RG_PURGE_DELAY_OFF, RG_PURGE_CAP_OFF);
    void *p[40];
    alloc_many(p, 40, 256 * KiB);
    for (size_t i = 0; i < 40; i++)
        regal_free(p[i]);
    sleep_ms(20);
    void *q = regal_alloc(a, 5 * MiB); /* fresh memory: a slow path */
    cr_assert_not_null(q);
    regal_free(q);
    regal_stats s = stats_of(a);
    cr_assert_eq(s.purged, 0);
    cr_assert_geq(s.dirty, 40 * 240 * KiB + 5 * MiB);
}

Test(purge, zero_delay_purges_at_the_free)
{
    rg_purge_set(a, 0, RG_PURGE_CAP_OFF);
    void *p[4];
    alloc_many(p, 4, 300 * KiB);
    regal_free(p[1]);
    cr_assert_eq(stats_of(a).dirty, 0);
    cr_assert_geq(stats_of(a).purged, 290 * KiB);
    regal_free(p[0]);
    regal_free(p[2]);
    regal_free(p[3]);
}

/* Heap frees of runs under RG_PURGE_RUN do not run the policy; the next
 * slow path does. */
Test(purge, small_heap_runs_wait_for_the_next_slow_path)
{
    rg_purge_set(a, 0, RG_PURGE_CAP_OFF);
    void *p[5];
    alloc_many(p, 5, 40 * KiB);
    regal_free(p[1]);
    regal_free(p[3]);
    cr_assert_gt(stats_of(a).dirty, 0, "two 40 KiB holes keep their inner pages for now");
    regal_free(p[0]); /* merges with p[1]: an 80 KiB run */
    cr_assert_eq(stats_of(a).dirty, 0);
    regal_free(p[2]);
    regal_free(p[4]);
}

Test(purge, the_cap_purges_down_to_half_of_it)
{
    rg_purge_set(a, RG_PURGE_DELAY_OFF, 2 * MiB);
    void *p[40];
    alloc_many(p, 40, 256 * KiB);
    size_t most = 0;
    for (size_t i = 0; i < 40; i += 2) {
        regal_free(p[i]);
        size_t dirty = stats_of(a).dirty;
        cr_assert_leq(dirty, 2 * MiB, "after free %zu: %zu dirty", i, dirty);
        if (dirty > most)
            most = dirty;
    }
    cr_assert_gt(most, 1 * MiB, "the cap let dirty memory grow to it");
    cr_assert_gt(stats_of(a).purged, 0);
    for (size_t i = 1; i < 40; i += 2)
        regal_free(p[i]);
}

Test(purge, the_auto_cap_grows_with_in_use)
{
    rg_purge_set(a, RG_PURGE_DELAY_OFF, RG_PURGE_CAP_AUTO);
    cr_assert_eq(rg_purge_cap(a), RG_PURGE_CAP_MIN);
    void *big[64];
    alloc_many(big, 64, 1 * MiB);
    cr_assert_geq(rg_purge_cap(a), 16 * MiB, "a quarter of 64 MiB in use");
    for (size_t i = 0; i < 64; i++)
        regal_free(big[i]);
    cr_assert_eq(rg_purge_cap(a), RG_PURGE_CAP_MIN);
}

/* The automatic cap learns from its purges (purge.c): a batch of more
 * than the cap, freed and allocated again, has its memory purged once, not
 * at every batch. */
#define BATCH 80 /* blocks of 1 MiB: more than RG_PURGE_CAP_MIN */
static_assert(BATCH * MiB > RG_PURGE_CAP_MIN + 8 * MiB, "a batch passes the floor");

static void batch(void **p, size_t n)
{
    alloc_many(p, n, 1 * MiB);
    for (size_t i = 0; i < n; i++)
        regal_free(p[i]);
}

Test(purge, a_batch_allocated_again_raises_the_auto_cap)
{
    rg_purge_set(a, RG_PURGE_DELAY_OFF, RG_PURGE_CAP_AUTO);
    void *p[BATCH];
    batch(p, BATCH);
    size_t purged = stats_of(a).purged;
    cr_assert_gt(purged, 16 * MiB, "the first batch passes the cap: purged %zu", purged);
    cr_assert_eq(rg_purge_cap(a), RG_PURGE_CAP_MIN);
    batch(p, BATCH); /* the purged memory was needed again */
    cr_assert_eq(rg_purge_cap(a), 2 * RG_PURGE_CAP_MIN);
    for (int i = 0; i < 3; i++) {
        batch(p, BATCH);
        cr_assert_eq(stats_of(a).purged, purged, "batch %d purged %zu more bytes", i + 3,
                     stats_of(a).purged - purged);
    }
    cr_assert_gt(stats_of(a).dirty, RG_PURGE_CAP_MIN);
}

/* A batch of several times the cap raises it past the batch in one step:
 * the cap doubled once per wasted purge, and a batch of 520 MiB of small
 * blocks was purged and faulted in again four batches running. */
#define BIG_BATCH 224 /* blocks of 1 MiB: 3.5 times RG_PURGE_CAP_MIN */
static_assert(BIG_BATCH * MiB > 3 * RG_PURGE_CAP_MIN, "more than two doublings of the cap");

Test(purge, a_big_batch_allocated_again_raises_the_cap_past_it_at_once)
{
    rg_purge_set(a, RG_PURGE_DELAY_OFF, RG_PURGE_CAP_AUTO);
    void **p = malloc(BIG_BATCH * sizeof *p);
    cr_assert_not_null(p);
    batch(p, BIG_BATCH);
    size_t purged = stats_of(a).purged;
    cr_assert_gt(purged, 2 * RG_PURGE_CAP_MIN, "the first batch passes the cap: purged %zu",
                 purged);
    batch(p, BIG_BATCH); /* needed again: judged wasted */
    cr_assert_geq(rg_purge_cap(a), BIG_BATCH * MiB, "cap %zu", rg_purge_cap(a));
    purged = stats_of(a).purged;
    batch(p, BIG_BATCH);
    cr_assert_eq(stats_of(a).purged, purged, "the third batch purged %zu bytes",
                 stats_of(a).purged - purged);
    free(p);
}

/* A small live set over the holes of a big one commits fresh memory too,
 * but in_use does not climb back: the cap stays. */
Test(purge, fresh_memory_under_a_small_live_set_leaves_the_cap)
{
    rg_purge_set(a, RG_PURGE_DELAY_OFF, RG_PURGE_CAP_AUTO);
    void *p[BATCH];
    alloc_many(p, BATCH, 1 * MiB);
    for (size_t i = 8; i < BATCH; i++)
        regal_free(p[i]);
    size_t released = stats_of(a).purged;
    cr_assert_gt(released, 16 * MiB);
    for (int round = 0; released > 0 && round < 8; round++) {
        regal_arena_trim(a); /* so that the next blocks commit fresh memory */
        batch(p + 8, 8);
    }
    cr_assert_eq(rg_purge_cap(a), RG_PURGE_CAP_MIN);
    cr_assert_eq(a->bound_released, 0, "fresh memory as big as the purge closes its judgment");
    for (size_t i = 0; i < 8; i++)
        regal_free(p[i]);
}

/* The delay purge halves a raised floor: a program that stopped cycling
 * gets the low cap back. */
Test(purge, the_delay_purge_lowers_a_raised_cap)
{
    rg_purge_set(a, RG_PURGE_DELAY_OFF, RG_PURGE_CAP_AUTO);
    void *p[BATCH];
    batch(p, BATCH);
    batch(p, BATCH);
    cr_assert_eq(rg_purge_cap(a), 2 * RG_PURGE_CAP_MIN);
    a->purge_delay = 50; /* not rg_purge_set, which forgets what the cap learned */
    batch(p, 1);         /* a heap free of a 1 MiB run: the wait starts */
    sleep_ms(80);
    batch(p, 1);
    cr_assert_eq(stats_of(a).dirty, 0);
    cr_assert_eq(rg_purge_cap(a), RG_PURGE_CAP_MIN);
}

/* The large cache has its own bound: the cap leaves it alone (a program
 * cycling large buffers keeps reusing them), the delay does not. */
Test(purge, the_cap_leaves_the_large_cache_the_delay_does_not)
{
    rg_purge_set(a, 100, 1 * MiB);
    void *big = regal_alloc(a, 6 * MiB);
    cr_assert_not_null(big);
    memset(big, 1, 6 * MiB);
    regal_free(big);
    regal_stats s = stats_of(a);
    cr_assert_geq(s.dirty, 6 * MiB, "the cached mapping stays (dirty %zu)", s.dirty);
    void *again = regal_alloc(a, 6 * MiB);
    cr_assert_eq(again, big, "and is reused");
    regal_free(again);

    sleep_ms(150);
    void *p = regal_alloc(a, 100 * KiB); /* fresh memory: a slow path */
    cr_assert_not_null(p);
    s = stats_of(a);
    cr_assert_lt(s.dirty, 1 * MiB, "dirty %zu after the delay", s.dirty);
    cr_assert_geq(s.purged, 6 * MiB);
    regal_free(p);
}

/* Spans given back and pages left above top by a reset are dirty too. */
Test(purge, counts_free_spans_and_pages_above_top)
{
    rg_purge_set(a, RG_PURGE_DELAY_OFF, RG_PURGE_CAP_OFF);
    static void *p[64 * 20];
    alloc_many(p, 64 * 20, 1024); /* 20 spans of 64 KiB */
    for (size_t i = 0; i < 64 * 10; i++)
        regal_free(p[i]);
    cr_assert_geq(stats_of(a).dirty, 10 * 64 * KiB);
    regal_arena_reset(a);
    cr_assert_geq(stats_of(a).dirty, 20 * 64 * KiB, "after reset every page is free");
    cr_assert_eq(regal_arena_check(a), 0);
    alloc_many(p, 64 * 5, 1024); /* reuse takes them out of the dirty count */
    cr_assert_leq(stats_of(a).dirty, 15 * 64 * KiB + 64 * KiB);
    for (size_t i = 0; i < 64 * 5; i++)
        regal_free(p[i]);
}

/* At the limit the arena first gives back its free memory, whatever the
 * policy: memory freed elsewhere in the arena serves the new request. */
Test(purge, the_limit_purges_even_with_the_policy_off)
{
    regal_arena_config cfg = {.limit = 8 * MiB, .flags = REGAL_ARENA_SINGLE_THREAD};
    regal_arena *l = regal_arena_create(&cfg);
    cr_assert_not_null(l);
    rg_purge_set(l, RG_PURGE_DELAY_OFF, RG_PURGE_CAP_OFF);
    void *p[20];
    for (size_t i = 0; i < 20; i++) {
        p[i] = regal_alloc(l, 300 * KiB);
        cr_assert_not_null(p[i]);
    }
    for (size_t i = 0; i < 20; i += 2)
        regal_free(p[i]);
    void *big = regal_alloc(l, 4 * MiB); /* needs the freed memory's commit */
    cr_assert_not_null(big, "the freed 3 MiB were not given back for the large block");
    regal_stats s = stats_of(l);
    cr_assert_leq(s.mapped, cfg.limit);
    cr_assert_gt(s.purged, 0);
    regal_free(big);
    for (size_t i = 1; i < 20; i += 2)
        regal_free(p[i]);
    cr_assert_eq(regal_arena_check(l), 0);
    regal_arena_destroy(l);
}
