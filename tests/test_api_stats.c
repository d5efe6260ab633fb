/*
 * Arena statistics through the public API: exact figures after a mixed
 * sequence, peak, reset, and the two printers.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "regal.h"

/* What the test expects the arena to report. */
typedef struct expected {
    size_t in_use, peak, requested, blocks, allocs, frees;
} expected;

/* How resident, retained, dirty, free_resident and fragmentation relate,
 * whatever the purge policy did meanwhile.  A free run may be purged, so it
 * is bounded by the address space, not by what is resident. */
static void check_memory_figures(const regal_stats *s, int op)
{
    cr_assert_leq(s->resident, s->mapped, "op %d: resident %zu over mapped %zu", op, s->resident,
                  s->mapped);
    cr_assert_leq(s->free_resident, s->resident - s->in_use,
                  "op %d: free_resident %zu, resident %zu, in_use %zu", op, s->free_resident,
                  s->resident, s->in_use);
    cr_assert_leq(s->dirty, s->free_resident, "op %d: dirty %zu over free_resident %zu", op,
                  s->dirty, s->free_resident);
    cr_assert_leq(s->fragmentation, s->free_resident,
                  "op %d: fragmentation %zu over free_resident %zu", op, s->fragmentation,
                  s->free_resident);
    cr_assert_leq(s->largest_free_run, s->resident + s->retained,
                  "op %d: largest_free_run %zu beyond the address space %zu", op,
                  s->largest_free_run, s->resident + s->retained);
}

static void check_figures(regal_arena *a, const expected *e, int op)
{
    regal_stats s = stats_of(a);
    cr_assert_eq(s.in_use, e->in_use, "op %d: in_use %zu, live usable sizes sum to %zu", op,
                 s.in_use, e->in_use);
    cr_assert_eq(s.blocks_in_use, e->blocks, "op %d: blocks_in_use %zu, %zu live", op,
                 s.blocks_in_use, e->blocks);
    cr_assert_eq(s.alloc_count, e->allocs, "op %d: alloc_count %zu, expected %zu", op,
                 s.alloc_count, e->allocs);
    cr_assert_eq(s.free_count, e->frees, "op %d: free_count %zu, expected %zu", op, s.free_count,
                 e->frees);
    cr_assert_eq(s.requested_total, e->requested, "op %d: requested_total %zu, expected %zu", op,
                 s.requested_total, e->requested);
    cr_assert_geq(s.peak_in_use, s.in_use, "op %d", op);
    cr_assert_eq(s.peak_in_use, e->peak, "op %d: peak_in_use %zu, highest in_use seen %zu", op,
                 s.peak_in_use, e->peak);
    cr_assert_geq(s.mapped, s.in_use, "op %d: mapped %zu below in_use %zu", op, s.mapped, s.in_use);
    check_memory_figures(&s, op);
}

/* A seeded mix of alloc, calloc, aligned_alloc and free over small, medium
 * and large sizes, with the figures checked along the way. */
static void run_mixed_sequence(regal_arena *a, uint64_t seed)
{
    enum { SLOTS = 200 };
    void *p[SLOTS] = {0};
    size_t usable[SLOTS] = {0};
    expected e = {0};
    rng r = rng_seeded(seed);

    check_figures(a, &e, -1);
    for (int op = 0; op < 6000; op++) {
        size_t i = rng_range(&r, 0, SLOTS - 1);
        if (p[i]) {
            regal_free(p[i]);
            p[i] = NULL;
            e.in_use -= usable[i];
            e.blocks--;
            e.frees++;
        } else {
            size_t n;
            switch (rng_next(&r) % 32) {
            case 0:
                n = rng_range(&r, 256 * KiB, 3 * MiB);
                break;
            case 1:
            case 2:
            case 3:
                n = rng_range(&r, 8 * KiB, 200 * KiB);
                break;
            default:
                n = rng_range(&r, 0, 4 * KiB);
                break;
            }
            switch (rng_next(&r) % 4) {
            case 0:
                p[i] = regal_calloc(a, 1, n);
                break;
            case 1:
                p[i] = regal_aligned_alloc(a, (size_t)64 << rng_range(&r, 0, 6), n);
                break;
            default:
                p[i] = regal_alloc(a, n);
                break;
            }
            cr_assert_not_null(p[i], "op %d: size %zu", op, n);
            usable[i] = regal_usable_size(p[i]);
            e.in_use += usable[i];
            e.blocks++;
            e.allocs++;
            e.requested += n;
            if (e.in_use > e.peak)
                e.peak = e.in_use;
        }
        if (op % 250 == 0)
            check_figures(a, &e, op);
    }
    check_figures(a, &e, 6000);

    for (size_t i = 0; i < SLOTS; i++) {
        if (!p[i])
            continue;
        regal_free(p[i]);
        e.in_use -= usable[i];
        e.blocks--;
        e.frees++;
    }
    check_figures(a, &e, 6001);
    cr_assert_eq(e.in_use, 0);
}

Test(stats, are_all_zero_for_a_new_arena)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    regal_stats s = stats_of(a);
    cr_assert_eq(s.in_use, 0);
    cr_assert_eq(s.peak_in_use, 0);
    cr_assert_eq(s.requested_total, 0);
    cr_assert_eq(s.blocks_in_use, 0);
    cr_assert_eq(s.alloc_count, 0);
    cr_assert_eq(s.free_count, 0);
    cr_assert_eq(s.dirty, 0);
    cr_assert_eq(s.purged, 0);
    cr_assert_eq(s.resident, s.mapped, "nothing purged yet: resident is what is committed");
    cr_assert_gt(s.retained, 0, "the arena's first chunk is mostly untouched address space");
    check_memory_figures(&s, -1);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(stats, are_exact_after_a_mixed_sequence)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    run_mixed_sequence(a, 2024);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(stats, are_exact_after_a_mixed_sequence_in_a_single_thread_arena)
{
    regal_arena_config cfg = {.name = "st", .flags = REGAL_ARENA_SINGLE_THREAD};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);

    run_mixed_sequence(a, 99);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(stats, count_each_block_once)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);

    void *p = regal_alloc(a, 100);
    void *q = regal_alloc(a, 100 * KiB);
    void *r = regal_alloc(a, 2 * MiB);
    cr_assert_not_null(p);
    cr_assert_not_null(q);
    cr_assert_not_null(r);
    size_t sum = regal_usable_size(p) + regal_usable_size(q) + regal_usable_size(r);

    regal_stats s = stats_of(a);
    cr_assert_eq(s.in_use, sum);
    cr_assert_eq(s.peak_in_use, sum);
    cr_assert_eq(s.blocks_in_use, 3);
    cr_assert_eq(s.alloc_count, 3);
    cr_assert_eq(s.free_count, 0);
    cr_assert_eq(s.requested_total, 100 + 100 * KiB + 2 * MiB);

    regal_free(q);
    regal_free(r);
    s = stats_of(a);
    cr_assert_eq(s.in_use, regal_usable_size(p));
    cr_assert_eq(s.peak_in_use, sum, "the peak forgot the freed blocks");
    cr_assert_eq(s.blocks_in_use, 1);
    cr_assert_eq(s.free_count, 2);
    regal_free(p);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(stats, follow_reallocs)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    static const size_t chain[] = {10, 300, 5000, 100 * KiB, 4 * MiB, 50, 0, 2 * MiB, 64};
    void *keep = regal_alloc(a, 1000);
    cr_assert_not_null(keep);

    void *p = NULL;
    for (size_t i = 0; i < ARRAY_LEN(chain); i++) {
        p = regal_realloc(a, p, chain[i]);
        cr_assert_not_null(p, "realloc to %zu", chain[i]);
        regal_stats s = stats_of(a);
        cr_assert_eq(s.blocks_in_use, 2, "after realloc to %zu", chain[i]);
        cr_assert_eq(s.in_use, regal_usable_size(keep) + regal_usable_size(p),
                     "after realloc to %zu: in_use %zu", chain[i], s.in_use);
        cr_assert_geq(s.peak_in_use, s.in_use);
    }
    regal_free(p);
    regal_free(keep);
    regal_stats s = stats_of(a);
    cr_assert_eq(s.in_use, 0);
    cr_assert_eq(s.blocks_in_use, 0);
    cr_assert_eq(s.alloc_count, s.free_count, "allocations %zu, frees %zu", s.alloc_count,
                 s.free_count);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(stats, reset_clears_in_use_and_restarts_the_peak)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    for (int i = 0; i < 100; i++) {
        void *p = regal_alloc(a, (size_t)i * 100);
        cr_assert_not_null(p);
    }
    void *big = regal_alloc(a, 3 * MiB);
    cr_assert_not_null(big);
    cr_assert_gt(stats_of(a).peak_in_use, 3 * MiB);

    regal_arena_reset(a);
    regal_stats s = stats_of(a);
    cr_assert_eq(s.in_use, 0);
    cr_assert_eq(s.blocks_in_use, 0);
    cr_assert_eq(s.peak_in_use, 0, "peak_in_use %zu after reset", s.peak_in_use);

    void *p = regal_alloc(a, 100);
    cr_assert_not_null(p);
    s = stats_of(a);
    cr_assert_eq(s.in_use, regal_usable_size(p));
    cr_assert_eq(s.peak_in_use, regal_usable_size(p));
    cr_assert_eq(s.blocks_in_use, 1);
    regal_free(p);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

struct handoff {
    void **blocks;
    size_t n;
};

static void *free_all(void *arg)
{
    struct handoff *h = arg;
    for (size_t i = 0; i < h->n; i++)
        regal_free(h->blocks[i]);
    return NULL;
}

/* One thread allocates, another frees: the allocating thread's own count
 * only grows, and the summed peaks used to report every byte ever
 * allocated (100 MiB here, against 1 MiB live at any time). */
Test(stats, peak_stays_bounded_when_one_thread_allocates_and_another_frees)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    enum { ROUNDS = 100, BLOCKS = 1000 };
    void *blocks[BLOCKS];
    struct handoff h = {blocks, BLOCKS};
    for (int r = 0; r < ROUNDS; r++) {
        for (size_t i = 0; i < BLOCKS; i++)
            cr_assert_not_null(blocks[i] = regal_alloc(a, 1024));
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, free_all, &h), 0);
        cr_assert_eq(pthread_join(t, NULL), 0);
    }
    regal_stats st;
    regal_arena_stats(a, &st);
    cr_assert_eq(st.in_use, 0);
    cr_assert_lt(st.peak_in_use, (size_t)16 << 20, "peak_in_use %zu", st.peak_in_use);
    cr_assert_geq(st.peak_in_use, (size_t)BLOCKS * 1024);
    regal_arena_destroy(a);
}

Test(stats, failed_requests_change_no_live_figure)
{
    regal_arena_config cfg = {.limit = 1 * MiB};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    void *p = regal_alloc(a, 500);
    cr_assert_not_null(p);
    regal_stats before = stats_of(a);

    cr_assert_null(regal_alloc(a, SIZE_MAX));
    cr_assert_null(regal_alloc(a, 2 * MiB));
    cr_assert_null(regal_calloc(a, SIZE_MAX / 2, 3));
    cr_assert_null(regal_aligned_alloc(a, 3, 10));
    cr_assert_null(regal_realloc(a, p, SIZE_MAX));

    regal_stats after = stats_of(a);
    cr_assert_eq(after.in_use, before.in_use);
    cr_assert_eq(after.peak_in_use, before.peak_in_use);
    cr_assert_eq(after.blocks_in_use, before.blocks_in_use);
    cr_assert_eq(after.alloc_count, before.alloc_count);
    cr_assert_eq(after.free_count, before.free_count);
    cr_assert_leq(after.mapped, cfg.limit);
    regal_free(p);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(stats, frees_of_another_arena_do_not_count_here)
{
    regal_arena *a = regal_arena_create(NULL);
    regal_arena *b = regal_arena_create(NULL);
    cr_assert_not_null(a);
    cr_assert_not_null(b);

    void *p = regal_alloc(a, 100);
    void *q = regal_alloc(b, 200);
    cr_assert_not_null(p);
    cr_assert_not_null(q);
    regal_free(q);
    regal_stats sa = stats_of(a), sb = stats_of(b);
    cr_assert_eq(sa.blocks_in_use, 1);
    cr_assert_eq(sa.free_count, 0);
    cr_assert_eq(sb.blocks_in_use, 0);
    cr_assert_eq(sb.free_count, 1);
    regal_free(p);

    cr_assert_eq(regal_arena_check(a), 0);
    cr_assert_eq(regal_arena_check(b), 0);
    regal_arena_destroy(a);
    regal_arena_destroy(b);
}

Test(stats, trim_keeps_the_arena_usable)
{
    regal_arena *a = regal_arena_create(NULL);
    cr_assert_not_null(a);
    void *keep = regal_alloc(a, 1000);
    cr_assert_not_null(keep);
    fill_pattern(keep, 1000, 6);

    void *p[64];
    for (size_t i = 0; i < ARRAY_LEN(p); i++) {
        p[i] = regal_alloc(a, i % 4 == 0 ? 200 * KiB : 3000);
        cr_assert_not_null(p[i]);
        memset(p[i], 0x61, i % 4 == 0 ? 200 * KiB : 3000);
    }
    for (size_t i = 0; i < ARRAY_LEN(p); i++)
        regal_free(p[i]);
    size_t mapped = stats_of(a).mapped;
    size_t released = regal_arena_trim(a);
    regal_stats s = stats_of(a);
    cr_assert_leq(s.mapped, mapped, "trim grew mapped from %zu to %zu", mapped, s.mapped);
    cr_assert_leq(released, mapped, "trim released %zu of %zu mapped bytes", released, mapped);
    cr_assert_eq(s.in_use, regal_usable_size(keep));
    cr_assert(pattern_intact(keep, 1000, 6));
    cr_assert_eq(regal_arena_check(a), 0);

    for (size_t i = 0; i < ARRAY_LEN(p); i++) {
        p[i] = regal_alloc(a, i % 4 == 0 ? 200 * KiB : 3000);
        cr_assert_not_null(p[i]);
        memset(p[i], 0x62, i % 4 == 0 ? 200 * KiB : 3000);
    }
    for (size_t i = 0; i < ARRAY_LEN(p); i++)
        regal_free(p[i]);
    regal_free(keep);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* ---- printing ------------------------------------------------------------------- */

/* Prints the arena's statistics with printer into a temporary file and
 * returns what was written (malloc()ed). */
static char *printed(regal_arena *a, void (*printer)(regal_arena *, FILE *), size_t *len)
{
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    printer(a, f);
    cr_assert_eq(fflush(f), 0);
    char *out = slurp(f, len);
    cr_assert_not_null(out);
    fclose(f);
    return out;
}

static regal_arena *arena_with_some_blocks(const char *name, void **keep)
{
    regal_arena_config cfg = {.name = name};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    *keep = regal_alloc(a, 5000);
    cr_assert_not_null(*keep);
    return a;
}

Test(stats, print_stats_writes_a_table)
{
    void *keep;
    regal_arena *a = arena_with_some_blocks("printer", &keep);

    size_t len = 0;
    char *out = printed(a, regal_arena_print_stats, &len);
    cr_assert_gt(len, 0, "print_stats wrote nothing");
    cr_assert_not_null(strstr(out, "memory: resident "), "table: \"%s\"", out);
    cr_assert_not_null(strstr(out, "purge: delay "), "table: \"%s\"", out);
    free(out);

    regal_free(keep);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

/* One JSON object and a newline: starts with '{', ends with "}\n", and its
 * braces and brackets balance outside strings. */
static void check_json_object(regal_arena *a)
{
    size_t len = 0;
    char *out = printed(a, regal_arena_print_stats_json, &len);
    cr_assert_geq(len, 3, "print_stats_json wrote \"%s\"", out);
    cr_assert_eq(out[0], '{', "JSON: \"%s\"", out);
    cr_assert_eq(strcmp(out + len - 2, "}\n"), 0, "JSON: \"%s\"", out);

    /* Braces and brackets balance outside strings. */
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = out[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"')
            in_string = 1;
        else if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']')
            depth--;
        cr_assert_geq(depth, 0, "JSON: \"%s\"", out);
        if (depth == 0)
            cr_assert(i + 2 == len || c == '\n', "text after the object: \"%s\"", out);
    }
    cr_assert_eq(depth, 0, "JSON: \"%s\"", out);
    cr_assert_eq(in_string, 0, "JSON: \"%s\"", out);
    free(out);
}

Test(stats, print_stats_json_writes_one_object_and_a_newline)
{
    void *keep;
    regal_arena *named = arena_with_some_blocks("json", &keep);
    regal_arena *unnamed = regal_arena_create(NULL);
    cr_assert_not_null(unnamed);

    check_json_object(named);
    check_json_object(unnamed);
    check_json_object(regal_default_arena());

    regal_free(keep);
    cr_assert_eq(regal_arena_check(named), 0);
    cr_assert_eq(regal_arena_check(unnamed), 0);
    regal_arena_destroy(named);
    regal_arena_destroy(unnamed);
}

/* The value of "key": in a JSON text, as a number; fails the test when
 * the key is missing. */
static size_t json_number(const char *json, const char *key)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = strstr(json, pattern);
    cr_assert_not_null(at, "no %s in \"%s\"", pattern, json);
    return (size_t)strtoull(at + strlen(pattern), NULL, 10);
}

Test(stats, print_stats_json_has_the_memory_figures)
{
    void *keep;
    regal_arena *a = arena_with_some_blocks("memory", &keep);
    void *medium = regal_alloc(a, 300 * KiB);
    cr_assert_not_null(medium);
    memset(medium, 1, 300 * KiB);
    regal_free(medium);

    char *json = printed(a, regal_arena_print_stats_json, NULL);
    regal_stats s = stats_of(a);
    cr_assert_eq(json_number(json, "resident"), s.resident, "JSON: \"%s\"", json);
    cr_assert_eq(json_number(json, "retained"), s.retained, "JSON: \"%s\"", json);
    cr_assert_eq(json_number(json, "dirty"), s.dirty, "JSON: \"%s\"", json);
    cr_assert_eq(json_number(json, "free_resident"), s.free_resident, "JSON: \"%s\"", json);
    cr_assert_eq(json_number(json, "fragmentation"), s.fragmentation, "JSON: \"%s\"", json);
    cr_assert_eq(json_number(json, "purged"), s.purged, "JSON: \"%s\"", json);
    cr_assert_not_null(strstr(json, "\"purge\":{\"delay_ms\":"), "JSON: \"%s\"", json);
    free(json);

    regal_free(keep);
    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(stats, printers_show_the_arena_name_copied_at_create)
{
    char name[32];
    snprintf(name, sizeof name, "%s", "frame17");
    regal_arena_config cfg = {.name = name};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);
    /* The arena keeps its own copy. */
    memset(name, 'x', sizeof name - 1);

    char *table = printed(a, regal_arena_print_stats, NULL);
    char *json = printed(a, regal_arena_print_stats_json, NULL);
    cr_assert_not_null(strstr(table, "frame17"), "table: \"%s\"", table);
    cr_assert_not_null(strstr(json, "frame17"), "JSON: \"%s\"", json);
    free(table);
    free(json);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(stats, printers_truncate_long_names_to_31_bytes)
{
    const char *name = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF";
    regal_arena_config cfg = {.name = name};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);

    char *table = printed(a, regal_arena_print_stats, NULL);
    cr_assert_not_null(strstr(table, "abcdefghijklmnopqrstuvwxyz01234"), "table: \"%s\"", table);
    cr_assert_null(strstr(table, "abcdefghijklmnopqrstuvwxyz012345"), "table: \"%s\"", table);
    free(table);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(stats, print_stats_json_escapes_the_arena_name)
{
    regal_arena_config cfg = {.name = "say \"hi\" \\ now"};
    regal_arena *a = regal_arena_create(&cfg);
    cr_assert_not_null(a);

    char *json = printed(a, regal_arena_print_stats_json, NULL);
    int escaped = strstr(json, "say \\\"hi\\\" \\\\ now") != NULL ||
                  strstr(json, "say \\u0022hi\\u0022 \\u005c now") != NULL;
    cr_assert(escaped, "the name is not escaped: \"%s\"", json);
    free(json);

    cr_assert_eq(regal_arena_check(a), 0);
    regal_arena_destroy(a);
}

Test(stats, trim_works_on_the_default_arena)
{
    regal_arena *d = regal_default_arena();
    void *p[32];
    for (size_t i = 0; i < ARRAY_LEN(p); i++) {
        p[i] = regal_alloc(d, 64 * KiB);
        cr_assert_not_null(p[i]);
        memset(p[i], 0x71, 64 * KiB);
    }
    for (size_t i = 0; i < ARRAY_LEN(p); i++)
        regal_free(p[i]);
    size_t mapped = stats_of(d).mapped;
    size_t released = regal_arena_trim(d);
    cr_assert_leq(released, mapped);
    cr_assert_leq(stats_of(d).mapped, mapped);

    void *q = regal_alloc(d, 64 * KiB);
    cr_assert_not_null(q);
    memset(q, 0x72, 64 * KiB);
    regal_free(q);
    cr_assert_eq(regal_arena_check(d), 0);
}

Test(stats, printers_accept_the_default_arena)
{
    char *table = printed(regal_default_arena(), regal_arena_print_stats, NULL);
    char *json = printed(regal_default_arena(), regal_arena_print_stats_json, NULL);
    cr_assert_gt(strlen(table), 0);
    cr_assert_eq(json[0], '{');
    free(table);
    free(json);
    cr_assert_eq(regal_arena_check(regal_default_arena()), 0);
}
