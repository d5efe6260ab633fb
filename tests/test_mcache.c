/*
 * Unit tests of src/mcache.c, the thread caches of freed heap blocks, on a
 * shared arena: what turns a thread's cache on, reuse with no lock, errors
 * on cached blocks, statistics, bounds, and every way cached blocks go
 * back (trim, another thread's trim, thread exit, the limit, reset).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "arena.h"
#include "helpers.h"

static regal_arena *a;

static void setup(void)
{
    regal_arena_config cfg = {.name = "mcache-test"};
    a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
}

static void teardown(void)
{
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

TestSuite(mcache, .init = setup, .fini = teardown);

#define MEDIUM (20 * KiB)

/* The calling thread's theap of a, its cache turned on as if it had found
 * the arena lock taken. */
static struct rg_mcache *cache_on(void)
{
    regal_free(regal_alloc(a, 64)); /* binds a theap */
    struct rg_theap *h = rg_theap_of(a);
    cr_assert_not_null(h);
    rg_mcache_start(&h->mcache);
    return &h->mcache;
}

/* Blocks in m's bins (none while it is off: the bins mean nothing then). */
static size_t cached_count(const struct rg_mcache *m)
{
    size_t n = 0;
    if (!m->on)
        return 0;
    for (unsigned k = 0; k < RG_MCACHE_BINS; k++)
        n += m->bins[k].count;
    return n;
}

/* A theap's cache bins (4 KiB, the bulk of it) are not written until its
 * cache starts, so a thread that never contends never faults them in;
 * a flush of a cache that is off reads none of them. */
Test(mcache, a_theap_leaves_its_bins_alone_until_its_cache_starts)
{
    static struct rg_theap h;
    memset(&h, 0xab, sizeof h);
    rg_theap_init(&h, a);
    cr_assert_not(h.mcache.on);
    cr_assert_eq(h.mcache.bytes, 0);
    const unsigned char *bins = (const unsigned char *)h.mcache.bins;
    for (size_t i = 0; i < sizeof h.mcache.bins; i++)
        cr_assert_eq(bins[i], 0xab, "byte %zu of the bins was written", i);
    rg_mcache_flush(a, &h.mcache); /* counts of 0xabababab: read, they would be freed */
    cr_assert_eq(bins[0], 0xab);
    rg_mcache_start(&h.mcache);
    cr_assert(h.mcache.on);
    for (unsigned k = 0; k < RG_MCACHE_BINS; k++)
        cr_assert_eq(h.mcache.bins[k].count, 0);
}

Test(mcache, off_until_the_thread_meets_a_taken_lock)
{
    void *p = regal_alloc(a, MEDIUM);
    const struct rg_mcache *m = &rg_theap_of(a)->mcache;
    regal_free(p);
    cr_assert_not(m->on);
    cr_assert_eq(m->bytes, 0, "with no contention a free goes to the heap");
}

struct contender {
    regal_arena *arena;
    void *block;
    struct rg_theap *theap;
    pthread_barrier_t bound, locked;
    bool cached_next; /* a second free went to its cache */
};

static void *free_behind_the_lock(void *arg)
{
    struct contender *c = arg;
    regal_free(regal_alloc(c->arena, 64)); /* binds a theap (which takes the lock) */
    c->theap = rg_theap_of(c->arena);
    pthread_barrier_wait(&c->bound);
    pthread_barrier_wait(&c->locked);
    regal_free(c->block); /* waits for the lock */
    regal_free(regal_alloc(c->arena, MEDIUM));
    c->cached_next = c->theap->mcache.bytes > 0;
    return NULL;
}

Test(mcache, a_thread_that_waited_for_the_lock_caches_from_then_on)
{
    struct contender c = {.arena = a, .block = regal_alloc(a, MEDIUM)};
    pthread_barrier_init(&c.bound, NULL, 2);
    pthread_barrier_init(&c.locked, NULL, 2);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, free_behind_the_lock, &c), 0);
    pthread_barrier_wait(&c.bound);
    cr_assert_not(c.theap->mcache.on);
    pthread_mutex_lock(&a->lock); /* as another thread inside a heap operation would */
    pthread_barrier_wait(&c.locked);
    while (!__atomic_load_n(&c.theap->mcache.on, __ATOMIC_RELAXED))
        sched_yield(); /* until its trylock failed */
    pthread_mutex_unlock(&a->lock);
    pthread_join(t, NULL);
    cr_assert(c.cached_next);
    cr_assert_eq(stats_of(a).blocks_in_use, 0, "both frees went through");
    pthread_barrier_destroy(&c.bound);
    pthread_barrier_destroy(&c.locked);
}

Test(mcache, a_freed_block_is_cached_and_comes_back)
{
    struct rg_mcache *m = cache_on();
    void *p = regal_alloc(a, MEDIUM);
    size_t usable = regal_usable_size(p);
    regal_free(p);
    cr_assert_eq(cached_count(m), 1);
    regal_stats s = stats_of(a);
    cr_assert_eq(s.in_use, 0, "a cached block counts as free");
    cr_assert_eq(s.blocks_in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0, "to the heap a cached block is a used one");
    void *q = regal_alloc(a, MEDIUM - 100);
    cr_assert_eq(q, p, "a request of about the size takes it back");
    cr_assert_eq(regal_usable_size(q), usable);
    cr_assert_eq(stats_of(a).in_use, usable);
    cr_assert_eq(cached_count(m), 0);
    regal_free(q);
}

/* calloc of a block the cache serves clears it with no lock: the arena
 * lock, held here as another thread inside a heap operation would, is
 * never asked for (before, the clear asked regal_usable_size, which took
 * it: this test then hangs until its timeout). */
Test(mcache, a_cached_block_is_callocd_with_no_lock, .timeout = 20)
{
    cache_on();
    void *p = regal_alloc(a, MEDIUM);
    size_t usable = regal_usable_size(p);
    memset(p, 0xab, usable);
    regal_free(p);
    pthread_mutex_lock(&a->lock);
    unsigned char *q = regal_calloc(a, 1, MEDIUM);
    pthread_mutex_unlock(&a->lock);
    cr_assert_eq(q, p, "served by the cache");
    for (size_t i = 0; i < usable; i++)
        cr_assert_eq(q[i], 0, "byte %zu of %zu", i, usable);
    regal_free(q);
}

Test(mcache, a_much_bigger_block_is_not_handed_out)
{
    struct rg_mcache *m = cache_on();
    void *big = regal_alloc(a, 4 * MEDIUM);
    regal_free(big);
    void *p = regal_alloc(a, MEDIUM);
    cr_assert_neq(p, big, "a block four times the request stays cached");
    cr_assert_eq(cached_count(m), 1);
    regal_free(p);
}

Test(mcache, a_second_free_of_a_cached_block_is_a_double_free)
{
    cache_on();
    error_log log;
    error_log_install(&log);
    size_t frees = stats_of(a).free_count;
    void *p = regal_alloc(a, MEDIUM);
    regal_free(p);
    regal_free(p);
    cr_assert_eq(log.count, 1);
    cr_assert_eq(log.kind, REGAL_ERR_DOUBLE_FREE);
    cr_assert_eq(regal_usable_size(p), 0, "a cached block is not live");
    cr_assert_eq(log.count, 2);
    error_log_remove();
    cr_assert_eq(stats_of(a).free_count, frees + 1, "counted once");
}

Test(mcache, a_pointer_inside_a_block_is_an_invalid_free)
{
    struct rg_mcache *m = cache_on();
    error_log log;
    error_log_install(&log);
    char *p = regal_alloc(a, MEDIUM);
    regal_free(p + 4096);
    cr_assert_eq(log.count, 1);
    cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE);
    error_log_remove();
    cr_assert_eq(cached_count(m), 0);
    regal_free(p);
    cr_assert_eq(cached_count(m), 1);
}

Test(mcache, stays_within_its_bytes_and_depth)
{
    struct rg_mcache *m = cache_on();
    enum { N = 200 };
    void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = regal_alloc(a, MEDIUM + (size_t)(i % 7) * 8 * KiB);
    for (int i = 0; i < N; i++) {
        regal_free(p[i]);
        cr_assert_leq(m->bytes, RG_MCACHE_BYTES);
        for (unsigned k = 0; k < RG_MCACHE_BINS; k++)
            cr_assert_leq(m->bins[k].count, RG_MCACHE_DEPTH);
    }
    cr_assert_gt(cached_count(m), 0);
    regal_stats s = stats_of(a);
    cr_assert_eq(s.blocks_in_use, 0);
    cr_assert_eq(s.in_use, 0);
}

Test(mcache, blocks_too_big_for_it_go_to_the_heap)
{
    struct rg_mcache *m = cache_on();
    void *p = regal_alloc(a, (size_t)1 << RG_MCACHE_MAX_SHIFT);
    regal_free(p);
    cr_assert_eq(cached_count(m), 0);
}

Test(mcache, trim_gives_the_callers_cached_blocks_back)
{
    struct rg_mcache *m = cache_on();
    void *p = regal_alloc(a, MEDIUM), *guard = regal_alloc(a, MEDIUM);
    regal_free(p);
    cr_assert_eq(cached_count(m), 1);
    regal_arena_trim(a);
    cr_assert_eq(cached_count(m), 0);
    cr_assert_eq(m->bytes, 0);
    m->on = false; /* the next request goes to the heap */
    void *q = regal_alloc(a, MEDIUM);
    cr_assert_eq(q, p, "the block is a free heap block again");
    regal_free(q);
    regal_free(guard);
}

struct worker {
    regal_arena *arena;
    void *block;
    pthread_barrier_t *cached, *trimmed;
    size_t left_after_trim;
};

static void *cache_one_then_wait(void *arg)
{
    struct worker *w = arg;
    regal_free(regal_alloc(w->arena, 64));
    struct rg_mcache *m = &rg_theap_of(w->arena)->mcache;
    rg_mcache_start(m);
    regal_free(w->block);
    pthread_barrier_wait(w->cached);
    pthread_barrier_wait(w->trimmed);
    regal_free(regal_alloc(w->arena, 300 * KiB)); /* its next cache operation */
    w->left_after_trim = cached_count(m);
    return NULL;
}

Test(mcache, another_threads_trim_is_served_at_its_next_operation)
{
    pthread_barrier_t cached, trimmed;
    pthread_barrier_init(&cached, NULL, 2);
    pthread_barrier_init(&trimmed, NULL, 2);
    struct worker w = {a, regal_alloc(a, MEDIUM), &cached, &trimmed, SIZE_MAX};
    void *guard = regal_alloc(a, MEDIUM);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, cache_one_then_wait, &w), 0);
    pthread_barrier_wait(&cached);
    regal_arena_trim(a);
    pthread_barrier_wait(&trimmed);
    pthread_join(t, NULL);
    cr_assert_eq(w.left_after_trim, 0);
    void *q = regal_alloc(a, MEDIUM);
    cr_assert_eq(q, w.block, "the worker's block went back to the heap");
    regal_free(q);
    regal_free(guard);
    pthread_barrier_destroy(&cached);
    pthread_barrier_destroy(&trimmed);
}

static void *cache_one_and_exit(void *arg)
{
    struct worker *w = arg;
    regal_free(regal_alloc(w->arena, 64));
    rg_mcache_start(&rg_theap_of(w->arena)->mcache);
    regal_free(w->block);
    w->left_after_trim = cached_count(&rg_theap_of(w->arena)->mcache);
    return NULL;
}

Test(mcache, thread_exit_hands_cached_blocks_back)
{
    struct worker w = {.arena = a, .block = regal_alloc(a, MEDIUM)};
    void *guard = regal_alloc(a, MEDIUM);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, cache_one_and_exit, &w), 0);
    pthread_join(t, NULL);
    cr_assert_eq(w.left_after_trim, 1, "the worker cached it");
    cr_assert_eq(regal_alloc(a, MEDIUM), w.block, "a free heap block again");
    regal_free(w.block);
    regal_free(guard);
}

Test(mcache, at_the_limit_the_callers_cache_goes_back_first)
{
    regal_arena_destroy(a);
    regal_arena_config cfg = {.name = "mcache-limit", .limit = 2 * MiB};
    a = regal_arena_create(&cfg);
    struct rg_mcache *m = cache_on();
    void *p[64];
    size_t n = 0;
    while (n < ARRAY_LEN(p) && (p[n] = regal_alloc(a, 100 * KiB)) != NULL)
        n++;
    cr_assert_lt(n, ARRAY_LEN(p), "the limit was reached");
    for (size_t i = 0; i < n; i++)
        regal_free(p[i]);
    cr_assert_gt(m->bytes, 0);
    void *big = regal_alloc(a, 1 * MiB);
    cr_assert_not_null(big, "the cached blocks made room");
    regal_free(big);
}

Test(mcache, reset_drops_the_cache_untouched)
{
    struct rg_mcache *m = cache_on();
    void *p = regal_alloc(a, MEDIUM);
    regal_free(p);
    cr_assert_eq(cached_count(m), 1);
    regal_arena_reset(a);
    cr_assert_eq(regal_arena_check(a), 0);
    void *q = regal_alloc(a, MEDIUM);
    cr_assert_not_null(q);
    cr_assert_eq(cached_count(&rg_theap_of(a)->mcache), 0, "a fresh theap, a fresh cache");
    regal_free(q);
    cr_assert_eq(stats_of(a).blocks_in_use, 0);
}
