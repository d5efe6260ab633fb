/*
 * Debug arenas (REGAL_ARENA_DEBUG): canaries around every block, fill
 * patterns, a quarantine, and the list of live blocks at destroy.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include "helpers.h"

static struct {
    int count;
    regal_error_kind kind;
    const void *ptr;
    char message[256];
} seen;

static void record(regal_error_kind kind, const void *ptr, const char *message, void *ctx)
{
    (void)ctx;
    seen.count++;
    seen.kind = kind;
    seen.ptr = ptr;
    snprintf(seen.message, sizeof seen.message, "%s", message);
}

static regal_arena *a;

static void setup(void)
{
    memset(&seen, 0, sizeof seen);
    regal_set_error_handler(record, NULL);
    regal_arena_config cfg = {.name = "dbg", .flags = REGAL_ARENA_DEBUG};
    a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
}

static void teardown(void)
{
    regal_set_error_handler(NULL, NULL);
}

TestSuite(debug, .init = setup, .fini = teardown);

Test(debug, an_overrun_by_one_byte_is_reported_on_free_with_the_size)
{
    size_t sizes[] = {24, 100, 5000, 100000, 2000000};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        seen.count = 0;
        char *p = regal_alloc(a, sizes[i]);
        p[sizes[i]] = 'x';
        regal_free(p);
        cr_assert_eq(seen.count, 1, "size %zu", sizes[i]);
        cr_assert_eq(seen.kind, REGAL_ERR_OVERFLOW);
        cr_assert_eq(seen.ptr, p);
        char want[64];
        snprintf(want, sizeof want, "of %zu bytes", sizes[i]);
        cr_assert(strstr(seen.message, want), "message names the size: %s", seen.message);
    }
    regal_arena_destroy(a);
}

Test(debug, an_underrun_is_reported_by_the_arena_check)
{
    char *p = regal_alloc(a, 40);
    p[-1] = 'x';
    cr_assert_neq(regal_arena_check(a), 0);
    cr_assert_eq(seen.kind, REGAL_ERR_OVERFLOW);
    cr_assert_eq(seen.ptr, p);
    p[-1] = (char)0xca; /* repaired: the arena is consistent again */
    seen.count = 0;
    cr_assert_eq(regal_arena_check(a), 0);
    cr_assert_eq(seen.count, 0);
    regal_free(p);
    regal_arena_destroy(a);
}

Test(debug, fresh_blocks_are_filled_and_calloc_is_zeroed)
{
    unsigned char *p = regal_alloc(a, 64);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(p[i], 0xaa);
    unsigned char *z = regal_calloc(a, 8, 8);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(z[i], 0);
    regal_free(p);
    regal_free(z);
    cr_assert_eq(seen.count, 0);
    regal_arena_destroy(a);
}

Test(debug, a_write_after_free_is_reported)
{
    char *p = regal_alloc(a, 48);
    regal_free(p);
    cr_assert_eq(regal_arena_check(a), 0, "the freed fill is intact");
    p[10] = 'x'; /* the bug */
    cr_assert_neq(regal_arena_check(a), 0);
    cr_assert_eq(seen.kind, REGAL_ERR_CORRUPTION);
    cr_assert_eq(seen.ptr, p);
    regal_arena_destroy(a);
}

Test(debug, a_freed_block_waits_before_reuse_and_is_checked_when_reused)
{
    char *p = regal_alloc(a, 48);
    regal_free(p);
    p[0] = 'x';
    int reported = 0;
    for (int i = 0; i < 5000 && !reported; i++) { /* push it out of the quarantine */
        void *q = regal_alloc(a, 48);
        cr_assert_neq(q, (void *)p, "not reused while quarantined");
        regal_free(q);
        reported = seen.count;
    }
    cr_assert_eq(seen.kind, REGAL_ERR_CORRUPTION);
    cr_assert_eq(seen.ptr, p);
    regal_arena_destroy(a);
}

Test(debug, double_and_invalid_frees_are_reported_and_the_arena_stays_sound)
{
    char *p = regal_alloc(a, 32);
    regal_free(p);
    regal_free(p);
    cr_assert_eq(seen.kind, REGAL_ERR_DOUBLE_FREE);
    regal_free(p + 8);
    cr_assert_eq(seen.kind, REGAL_ERR_INVALID_FREE);
    int local;
    regal_free(&local);
    cr_assert_eq(seen.kind, REGAL_ERR_INVALID_FREE);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(debug, blocks_keep_their_contract)
{
    rng r = rng_seeded(7);
    for (int i = 0; i < 2000; i++) {
        size_t n = rng_range(&r, 0, 70000);
        size_t al = (size_t)1 << rng_range(&r, 0, 12);
        char *p = i % 3 ? regal_alloc(a, n) : regal_aligned_alloc(a, al, n);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % (i % 3 ? 16 : (al < 16 ? 16 : al)), 0);
        cr_assert_eq(regal_usable_size(p), n, "usable size is the requested size");
        cr_assert_eq(regal_arena_of(p), a);
        memset(p, 1, n);
        p = regal_realloc(a, p, n / 2 + 1);
        cr_assert_eq(regal_usable_size(p), n / 2 + 1);
        regal_free(p);
    }
    regal_pool *pool = regal_pool_create(a, 24, 64);
    void *o = regal_pool_alloc(pool);
    cr_assert_eq((uintptr_t)o % 64, 0);
    regal_pool_free(pool, o);
    cr_assert_eq(seen.count, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_stats s;
    regal_arena_stats(a, &s);
    cr_assert_eq(s.blocks_in_use, 0);
    regal_arena_destroy(a);
}

/* The fast paths of free tell a tracked block by its chunk alone (the
 * chunk's copy of the arena's tracking), so chunks of every kind carry it,
 * which the arena check verifies (an overrun at the free of blocks of
 * every path is the test above). */
Test(debug, chunks_of_every_kind_are_tagged_tracked)
{
    void *p[] = {regal_alloc(a, 40), regal_alloc(a, 20000), regal_alloc(a, 3 << 20)};
    regal_handle h = regal_handle_alloc(a, 100), huge = regal_handle_alloc(a, 3 << 20);
    cr_assert(p[0] && p[1] && p[2] && h && huge);
    cr_assert_eq(regal_arena_check(a), 0);
    cr_assert_eq(seen.count, 0);
    for (size_t i = 0; i < ARRAY_LEN(p); i++)
        regal_free(p[i]);
    regal_handle_free(a, h);
    regal_handle_free(a, huge);
    cr_assert_eq(seen.count, 0);
    regal_arena_destroy(a);
}

/* One call site for every block it makes, however the caller's loop is
 * compiled. */
static __attribute__((noinline)) void *make(size_t size)
{
    void *p = regal_alloc(a, size);
    __asm__ volatile("" ::: "memory"); /* no tail call: the site stays here */
    return p;
}

Test(debug, destroy_lists_the_live_blocks_by_size, .init = cr_redirect_stderr)
{
    setup();
    void *live[4];
    for (int i = 0; i < 3; i++)
        live[i] = make(24);
    live[3] = regal_alloc(a, 1000);
    cr_assert(live[0] && live[1] && live[2] && live[3]);
    regal_arena_destroy(a);
    fflush(stderr);
    char out[2048] = {0};
    FILE *f = cr_get_redirected_stderr();
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    cr_assert(strstr(out, "4 blocks (1072 bytes) still live in arena 'dbg'"), "%s", out);
    cr_assert(strstr(out, "3 x 24 bytes (72 bytes), allocated from 0x"), "%s", out);
    cr_assert(strstr(out, "1 x 1000 bytes"), "%s", out);
}
