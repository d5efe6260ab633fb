/*
 * User errors through the public API: double frees and pointers regal never
 * returned are reported through the error handler and ignored, and the heap
 * stays intact; the default handler writes one "regal:" line on stderr.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "regal.h"

static _Alignas(64) char global_buffer[4096];

/* Live blocks around the victim, filled with patterns, to prove that an
 * ignored misuse corrupted nothing. */
typedef struct neighbours {
    size_t size;
    void *ptr[6];
} neighbours;

static void neighbours_alloc(neighbours *nb, regal_arena *a, size_t size)
{
    nb->size = size;
    for (size_t i = 0; i < ARRAY_LEN(nb->ptr); i++) {
        nb->ptr[i] = regal_alloc(a, size);
        cr_assert_not_null(nb->ptr[i]);
        fill_pattern(nb->ptr[i], size, seed_of(nb->ptr[i], size));
    }
}

static void neighbours_check_and_free(neighbours *nb)
{
    for (size_t i = 0; i < ARRAY_LEN(nb->ptr); i++) {
        cr_assert(pattern_intact(nb->ptr[i], nb->size, seed_of(nb->ptr[i], nb->size)),
                  "a live block of %zu bytes was overwritten", nb->size);
        regal_free(nb->ptr[i]);
    }
}

/* Allocates a batch of fresh blocks of size n, checks they do not overlap
 * the neighbours and frees them: the allocator still works. */
static void check_still_serves(regal_arena *a, neighbours *nb, size_t n)
{
    void *fresh[8];
    for (size_t i = 0; i < ARRAY_LEN(fresh); i++) {
        fresh[i] = regal_alloc(a, n);
        cr_assert_not_null(fresh[i], "size %zu", n);
        for (size_t j = 0; j < ARRAY_LEN(nb->ptr); j++)
            cr_assert_neq(fresh[i], nb->ptr[j], "size %zu: a live block was handed out again", n);
        memset(fresh[i], 0xee, n);
    }
    for (size_t i = 0; i < ARRAY_LEN(fresh); i++)
        regal_free(fresh[i]);
}

static void check_double_free(size_t size)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    neighbours nb;
    neighbours_alloc(&nb, a, size);

    void *p = regal_alloc(a, size);
    cr_assert_not_null(p);
    memset(p, 0x99, size);
    regal_free(p);
    regal_stats before = stats_of(a);

    error_log log;
    error_log_install(&log);
    regal_free(p);
    cr_assert_eq(log.count, 1, "size %zu: %u reports", size, log.count);
    cr_assert_eq(log.kind, REGAL_ERR_DOUBLE_FREE, "size %zu: kind %d", size, (int)log.kind);
    cr_assert_eq(log.ptr, p, "size %zu: reported %p, freed %p", size, log.ptr, p);
    error_log_remove();

    regal_stats after = stats_of(a);
    cr_assert_eq(after.free_count, before.free_count, "size %zu: the double free was counted",
                 size);
    cr_assert_eq(after.blocks_in_use, before.blocks_in_use);
    cr_assert_eq(after.in_use, before.in_use);
    cr_assert_eq(regal_arena_check(a), 0);

    /* The block is not on a free list twice: two allocations never return
     * the same pointer. */
    void *x = regal_alloc(a, size);
    void *y = regal_alloc(a, size);
    cr_assert_not_null(x);
    cr_assert_not_null(y);
    cr_assert_neq(x, y, "size %zu: the double-freed block was handed out twice", size);
    regal_free(x);
    regal_free(y);

    check_still_serves(a, &nb, size);
    neighbours_check_and_free(&nb);
    cr_assert_eq(stats_of(a).blocks_in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(errors, double_free_of_a_small_block_is_reported_and_ignored)
{
    check_double_free(48);
}

Test(errors, double_free_of_a_medium_block_is_reported_and_ignored)
{
    check_double_free(100 * KiB);
}

Test(errors, double_free_of_a_large_block_is_reported_and_ignored)
{
    check_double_free(2 * MiB);
}

Test(errors, double_free_in_the_default_arena_is_reported_and_ignored)
{
    regal_arena *d = regal_default_arena();
    void *keep = regal_alloc(d, 64);
    void *p = regal_alloc(d, 64);
    cr_assert_not_null(keep);
    cr_assert_not_null(p);
    fill_pattern(keep, 64, 4);
    regal_free(p);

    error_log log;
    error_log_install(&log);
    regal_free(p);
    cr_assert_eq(log.count, 1);
    cr_assert_eq(log.kind, REGAL_ERR_DOUBLE_FREE);
    cr_assert_eq(log.ptr, p);
    error_log_remove();

    cr_assert(pattern_intact(keep, 64, 4));
    regal_free(keep);
    cr_assert_eq(regal_arena_check(d), 0);
}

/* Frees bad, which regal never returned: exactly one INVALID_FREE report
 * naming it, and no change to the arena. */
static void check_invalid_free(regal_arena *a, void *bad, const char *what)
{
    regal_stats before = stats_of(a);

    error_log log;
    error_log_install(&log);
    regal_free(bad);
    cr_assert_eq(log.count, 1, "%s (%p): %u reports", what, bad, log.count);
    cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE, "%s (%p): kind %d", what, bad, (int)log.kind);
    cr_assert_eq(log.ptr, bad, "%s: reported %p, freed %p", what, log.ptr, bad);
    error_log_remove();

    regal_stats after = stats_of(a);
    cr_assert_eq(after.free_count, before.free_count, "%s: counted as a free", what);
    cr_assert_eq(after.blocks_in_use, before.blocks_in_use, "%s", what);
    cr_assert_eq(after.in_use, before.in_use, "%s", what);
    cr_assert_eq(regal_arena_check(a), 0, "%s", what);
}

Test(errors, freeing_a_stack_address_is_reported_and_ignored)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    neighbours nb;
    neighbours_alloc(&nb, a, 100);
    _Alignas(16) char on_stack[64];
    memset(on_stack, 0, sizeof on_stack);

    check_invalid_free(a, on_stack, "a stack address");
    check_invalid_free(a, on_stack + 1, "a misaligned stack address");

    check_still_serves(a, &nb, 100);
    neighbours_check_and_free(&nb);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(errors, freeing_a_global_is_reported_and_ignored)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    neighbours nb;
    neighbours_alloc(&nb, a, 100);

    check_invalid_free(a, global_buffer, "a global");
    check_invalid_free(a, &global_buffer[16], "an address inside a global");

    check_still_serves(a, &nb, 100);
    neighbours_check_and_free(&nb);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(errors, freeing_a_malloc_pointer_is_reported_and_ignored)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    neighbours nb;
    neighbours_alloc(&nb, a, 100);
    char *small = malloc(100);
    char *large = malloc(1 * MiB);
    cr_assert_not_null(small);
    cr_assert_not_null(large);
    memset(small, 0x10, 100);
    memset(large, 0x20, 1 * MiB);

    check_invalid_free(a, small, "a malloc()ed block");
    check_invalid_free(a, large, "a large malloc()ed block");
    /* libc still owns them, untouched. */
    cr_assert_eq(first_byte_not(small, 100, 0x10), 100);
    cr_assert_eq(first_byte_not(large, 1 * MiB, 0x20), 1 * MiB);
    free(small);
    free(large);

    check_still_serves(a, &nb, 100);
    neighbours_check_and_free(&nb);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(errors, freeing_a_wild_address_is_reported_and_ignored)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    neighbours nb;
    neighbours_alloc(&nb, a, 100);

    check_invalid_free(a, (void *)0x1000, "(void *)0x1000");
    check_invalid_free(a, (void *)0x10, "(void *)0x10");
    check_invalid_free(a, (void *)(UINTPTR_MAX - 15), "the top of the address space");

    check_still_serves(a, &nb, 100);
    neighbours_check_and_free(&nb);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* Addresses in the page of a span of 16-byte blocks past its last slot,
 * or at a slot never handed out, are no blocks: reported as invalid,
 * nothing freed. */
Test(errors, freeing_an_address_past_the_slots_of_a_page_is_reported_and_ignored)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    neighbours nb;
    neighbours_alloc(&nb, a, 16);
    char *p = regal_alloc(a, 16);
    cr_assert_not_null(p);
    char *page = (char *)((uintptr_t)p & ~(uintptr_t)(64 * KiB - 1));
    const size_t offsets[] = {16 * 600, 16 * KiB, 32 * KiB, 64 * KiB - 16};
    for (size_t i = 0; i < ARRAY_LEN(offsets); i++) {
        char what[64];
        snprintf(what, sizeof what, "page+%zu of a page of 16-byte blocks", offsets[i]);
        check_invalid_free(a, page + offsets[i], what);
        error_log log;
        error_log_install(&log);
        cr_assert_eq(regal_usable_size(page + offsets[i]), 0, "%s", what);
        cr_assert_eq(log.count, 1, "%s: usable_size reported %d times", what, log.count);
        error_log_remove();
    }
    regal_free(p);
    check_still_serves(a, &nb, 16);
    neighbours_check_and_free(&nb);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

static void check_interior_frees(size_t size)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    neighbours nb;
    neighbours_alloc(&nb, a, size);

    char *p = regal_alloc(a, size);
    cr_assert_not_null(p);
    fill_pattern(p, size, 77);

    const size_t offsets[] = {16, 1, 8, 32, (size / 2) & ~(size_t)15, size - 16, 4096};
    for (size_t i = 0; i < ARRAY_LEN(offsets); i++) {
        if (offsets[i] == 0 || offsets[i] >= size)
            continue;
        char what[64];
        snprintf(what, sizeof what, "p+%zu of a %zu-byte block", offsets[i], size);
        check_invalid_free(a, p + offsets[i], what);
    }
    /* The block itself is still live, whole and freeable. */
    cr_assert_eq(regal_arena_of(p), a);
    cr_assert(pattern_intact(p, size, 77), "size %zu: contents changed", size);
    cr_assert_geq(regal_usable_size(p), size);

    error_log log;
    error_log_install(&log);
    regal_free(p);
    cr_assert_eq(log.count, 0, "size %zu: freeing the block itself reported an error", size);
    error_log_remove();

    check_still_serves(a, &nb, size);
    neighbours_check_and_free(&nb);
    cr_assert_eq(stats_of(a).blocks_in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(errors, freeing_an_interior_pointer_of_a_small_block_is_reported_and_ignored)
{
    check_interior_frees(100);
}

Test(errors, freeing_an_interior_pointer_of_a_medium_block_is_reported_and_ignored)
{
    check_interior_frees(100 * KiB);
}

Test(errors, freeing_an_interior_pointer_of_a_large_block_is_reported_and_ignored)
{
    check_interior_frees(2 * MiB);
}

Test(errors, freeing_a_block_of_a_destroyed_arena_is_reported_and_ignored)
{
    static const size_t sizes[] = {100, 100 * KiB, 2 * MiB};
    void *p[ARRAY_LEN(sizes)];

    regal_arena *gone = regal_arena_create(NULL);
    cr_assert_not_null(gone);
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        p[i] = regal_alloc(gone, sizes[i]);
        cr_assert_not_null(p[i]);
    }
    cr_assert_eq(regal_arena_check(gone), 0);
    regal_arena_destroy(gone);

    error_log log;
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        error_log_install(&log);
        regal_free(p[i]);
        cr_assert_eq(log.count, 1, "size %zu: %u reports", sizes[i], log.count);
        cr_assert(log.kind == REGAL_ERR_INVALID_FREE || log.kind == REGAL_ERR_DOUBLE_FREE,
                  "size %zu: kind %d", sizes[i], (int)log.kind);
        cr_assert_eq(log.ptr, p[i]);
    }
    error_log_remove();

    /* A new arena, perhaps on the same memory, is not disturbed. */
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    neighbours nb;
    neighbours_alloc(&nb, a, 100);
    check_still_serves(a, &nb, 100);
    neighbours_check_and_free(&nb);
    cr_assert_eq(stats_of(a).blocks_in_use, 0);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(errors, usable_size_of_a_foreign_pointer_is_zero_and_reported)
{
    _Alignas(16) char on_stack[32];
    void *from_malloc = malloc(48);
    cr_assert_not_null(from_malloc);
    const void *bad[] = {on_stack, global_buffer, from_malloc};

    error_log log;
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        error_log_install(&log);
        cr_assert_eq(regal_usable_size(bad[i]), 0, "pointer %zu", i);
        cr_assert_eq(log.count, 1, "pointer %zu: %u reports", i, log.count);
        cr_assert_eq(log.kind, REGAL_ERR_INVALID_FREE, "pointer %zu: kind %d", i, (int)log.kind);
        cr_assert_eq(log.ptr, bad[i]);
    }
    error_log_remove();
    free(from_malloc);
}

Test(errors, a_freed_block_has_no_usable_size)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *keep = regal_alloc(a, 100);
    void *p = regal_alloc(a, 100);
    cr_assert_not_null(keep);
    cr_assert_not_null(p);
    regal_free(p);

    error_log log;
    error_log_install(&log);
    cr_assert_eq(regal_usable_size(p), 0);
    cr_assert_geq(log.count, 1, "asking the size of a freed block was not reported");
    error_log_remove();

    regal_free(keep);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(errors, reports_carry_a_message)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *p = regal_alloc(a, 32);
    cr_assert_not_null(p);
    regal_free(p);

    error_log log;
    error_log_install(&log);
    regal_free(p);
    cr_assert_eq(log.count, 1);
    cr_assert_neq(strcmp(log.message, "(null)"), 0, "the handler got a NULL message");
    cr_assert_gt(strlen(log.message), 0, "the handler got an empty message");
    error_log_remove();

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(errors, handler_gets_its_context_and_null_restores_the_default, .init = cr_redirect_stderr)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    error_log first, second;
    error_log_install(&first);
    regal_free((void *)0x2000);
    cr_assert_eq(first.count, 1);

    /* A new handler replaces the old one: only the new context sees it. */
    error_log_install(&second);
    regal_free((void *)0x3000);
    cr_assert_eq(first.count, 1);
    cr_assert_eq(second.count, 1);
    cr_assert_eq(second.ptr, (void *)0x3000);

    /* NULL: back to the default, which reaches neither recorder. */
    error_log_remove();
    regal_free((void *)0x4000);
    cr_assert_eq(first.count, 1);
    cr_assert_eq(second.count, 1);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(errors, default_handler_writes_one_regal_line_to_stderr, .init = cr_redirect_stderr)
{
    regal_arena_config cfg = {.name = "errarena"};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    void *p = regal_alloc(a, 40);
    cr_assert_not_null(p);
    regal_free(p);

    regal_set_error_handler(NULL, NULL);
    regal_free(p);
    fflush(stderr);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);

    /* Close our end so that reading the redirected stream meets its end. */
    fclose(stderr);
    size_t len = 0;
    char *out = slurp(cr_get_redirected_stderr(), &len);
    cr_assert_not_null(out);
    cr_assert_gt(len, 0, "nothing on stderr");
    cr_assert_eq(strncmp(out, "regal:", 6), 0, "stderr: \"%s\"", out);
    cr_assert_eq(out[len - 1], '\n', "stderr: \"%s\"", out);
    cr_assert_eq(strchr(out, '\n'), out + len - 1, "more than one line: \"%s\"", out);
    free(out);
}

Test(errors, default_handler_reports_an_invalid_free_on_stderr, .init = cr_redirect_stderr)
{
    regal_set_error_handler(NULL, NULL);
    regal_free((void *)0x1000);
    fflush(stderr);

    fclose(stderr);
    size_t len = 0;
    char *out = slurp(cr_get_redirected_stderr(), &len);
    cr_assert_not_null(out);
    cr_assert_eq(strncmp(out, "regal:", 6), 0, "stderr: \"%s\"", out);
    cr_assert_eq(strchr(out, '\n'), out + len - 1, "not exactly one line: \"%s\"", out);
    free(out);
}

Test(errors, default_handler_names_the_pointer_and_the_arena, .init = cr_redirect_stderr)
{
    regal_arena_config cfg = {.name = "errarena"};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    void *keep = regal_alloc(a, 40);
    void *p = regal_alloc(a, 40);
    cr_assert_not_null(keep);
    cr_assert_not_null(p);
    regal_free(p);

    regal_set_error_handler(NULL, NULL);
    regal_free(p);
    fflush(stderr);
    regal_free(keep);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);

    fclose(stderr);
    char *out = slurp(cr_get_redirected_stderr(), NULL);
    cr_assert_not_null(out);
    char hex[32];
    snprintf(hex, sizeof hex, "%lx", (unsigned long)(uintptr_t)p);
    cr_assert_not_null(strcasestr(out, hex), "the line does not name %p: \"%s\"", p, out);
    cr_assert_not_null(strstr(out, "errarena"), "the line does not name the arena: \"%s\"", out);
    free(out);
}

Test(errors, check_reports_trampled_heap_metadata)
{
    /* regal_arena_check is the oracle of every other test: make sure it
     * can fail.  Two adjacent medium blocks; whatever regal keeps between
     * the end of the first one's usable bytes and the second one is its
     * metadata.  Trample it, check, and put it back. */
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    char *p = regal_alloc(a, 100 * KiB);
    char *q = regal_alloc(a, 100 * KiB);
    cr_assert_not_null(p);
    cr_assert_not_null(q);
    char *end = p + regal_usable_size(p);
    if (!(q > end && (size_t)(q - end) <= 256))
        cr_skip_test("the two medium blocks are not neighbours with metadata between them");
    size_t gap = (size_t)(q - end);
    unsigned char saved[256];
    memcpy(saved, end, gap);

    error_log log;
    error_log_install(&log);
    memset(end, 0x5a, gap);
    int status = regal_arena_check(a);
    memcpy(end, saved, gap);
    cr_assert_neq(status, 0, "regal_arena_check missed %zu trampled bytes of metadata", gap);
    cr_assert_geq(log.count, 1, "the corruption was not reported");
    cr_assert_eq(log.kind, REGAL_ERR_CORRUPTION, "kind %d", (int)log.kind);
    error_log_remove();

    regal_free(p);
    regal_free(q);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}
