/*
 * medium_churn: random medium-size malloc/free/realloc churn over a fixed
 * working set; prints the elapsed seconds.
 *
 *   medium_churn [--ops N] [--slots N] [--min BYTES] [--max BYTES]
 *                [--realloc-every N] [--seed N] [--verbose]
 *
 * SLOTS pointers (default 2000) start empty.  Each of OPS operations
 * (default 1M) picks a random slot; one operation in REALLOC_EVERY (default
 * 16) whose slot is taken reallocs it to a new size, every other one frees
 * the slot if taken and mallocs a new block.  Sizes are uniform in [MIN, MAX]
 * (default [1 KiB, 256 KiB]); BYTES takes a K or M suffix (KiB, MiB).  Every
 * new block gets its first and last byte and one byte per 4 KiB written, so
 * its pages are really touched and peak RSS means something.  The random
 * sequence comes from a fixed seed: every allocator sees the same requests.
 *
 * It calls only malloc, free and realloc, and links only libc, so it runs
 * under any allocator through LD_PRELOAD (bench/run-peers does that).
 *
 * Output: one line on stdout, the seconds (CLOCK_MONOTONIC) spent in the
 * operations; the final frees are not timed.  Peak RSS is left to the caller
 * (getrusage of the child, or /usr/bin/time -f %M).  Before a block is freed
 * its first and last bytes are checked, and after a realloc the bytes it
 * must have kept: a mismatch means the allocator handed out overlapping or
 * corrupted memory, and the driver says so and exits with status 3.
 *
 * --verbose adds one line on stderr: the peak of the live requested bytes
 * (the floor any allocator's RSS is compared with) and the resident bytes
 * left after the final frees (what the allocator keeps from the OS).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "workload.h"

#define DEFAULT_OPS           1000000u
#define DEFAULT_SLOTS         2000u
#define DEFAULT_MIN           ((size_t)1 << 10)
#define DEFAULT_MAX           ((size_t)256 << 10)
#define DEFAULT_REALLOC_EVERY 16u
#define DEFAULT_SEED          0x6d656469756d3031u /* "medium01" */
#define TOUCH_STRIDE          4096u

struct slot {
    unsigned char *p;
    size_t size;
    unsigned char tag; /* the byte written at each touched offset */
};

static uint64_t rng_state;
static size_t live_bytes, peak_live_bytes;

/* splitmix64: small, fast, and the same sequence on every platform. */
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Uniform in [0, n); the modulo bias is below 2^-40 for the n used here. */
static uint64_t rng_below(uint64_t n)
{
    return rng_next() % n;
}

static _Noreturn void out_of_memory(size_t size)
{
    fprintf(stderr, "medium_churn: allocation of %zu bytes failed: %s\n", size, strerror(errno));
    exit(EXIT_FAILURE);
}

static _Noreturn void corrupted(const struct slot *s, size_t offset, const char *when)
{
    fprintf(stderr, "medium_churn: block %p (%zu bytes): byte %zu is 0x%02x, expected 0x%02x %s\n",
            (void *)s->p, s->size, offset, s->p[offset], s->tag, when);
    exit(3);
}

/* Invariant of a live block: the tag is at every multiple of TOUCH_STRIDE
 * below its size and at its last byte.  touch() establishes it for the bytes
 * from `from` on (0 for a new block, the old size after a growing realloc). */
static void touch(struct slot *s, size_t from)
{
    unsigned char *p = s->p;
    for (size_t off = (from + TOUCH_STRIDE - 1) / TOUCH_STRIDE * TOUCH_STRIDE; off < s->size;
         off += TOUCH_STRIDE)
        p[off] = s->tag;
    p[s->size - 1] = s->tag;
}

static void check_byte(const struct slot *s, size_t offset, const char *when)
{
    if (s->p[offset] != s->tag)
        corrupted(s, offset, when);
}

/* The first and last byte of a live block. */
static void check(const struct slot *s, const char *when)
{
    check_byte(s, 0, when);
    check_byte(s, s->size - 1, when);
}

static size_t random_size(size_t min, size_t max)
{
    return min + (size_t)rng_below((uint64_t)(max - min) + 1);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void account(size_t old_size, size_t new_size)
{
    live_bytes = live_bytes - old_size + new_size;
    if (live_bytes > peak_live_bytes)
        peak_live_bytes = live_bytes;
}

static void run(struct slot *slots, size_t nslots, size_t ops, size_t min, size_t max,
                size_t realloc_every)
{
    for (size_t i = 0; i < ops; i++) {
        struct slot *s = &slots[rng_below(nslots)];
        size_t size = random_size(min, max);
        unsigned char tag = (unsigned char)(i | 1); /* never 0: fresh pages read 0 */

        if (s->p != NULL && rng_below(realloc_every) == 0) {
            check(s, "before realloc");
            unsigned char *q = realloc(s->p, size);
            if (q == NULL)
                out_of_memory(size);
            size_t old = s->size;
            account(old, size);
            s->p = q;
            s->size = size;
            /* Kept bytes keep the old tag: the first byte, and the old last
             * byte (growing) or the last stride multiple (shrinking). */
            check_byte(s, 0, "after realloc");
            if (size >= old) {
                check_byte(s, old - 1, "after realloc");
                touch(s, old);
            } else {
                check_byte(s, (size - 1) / TOUCH_STRIDE * TOUCH_STRIDE, "after realloc");
                s->p[size - 1] = s->tag;
            }
            continue;
        }
        if (s->p != NULL) {
            check(s, "before free");
            free(s->p);
        }
        account(s->p != NULL ? s->size : 0, size);
        s->p = malloc(size);
        if (s->p == NULL)
            out_of_memory(size);
        s->size = size;
        s->tag = tag;
        touch(s, 0);
    }
}

/* ---- Arguments ----------------------------------------------------------------- */

/* A positive count, or a byte size with an optional K or M suffix. */
static int parse_size(const char *s, int suffixes, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || v == 0 || s[0] == '-')
        return 0;
    unsigned shift = 0;
    if (suffixes && (*end == 'K' || *end == 'k'))
        shift = 10, end++;
    else if (suffixes && (*end == 'M' || *end == 'm'))
        shift = 20, end++;
    if (*end != '\0' || v > (SIZE_MAX >> shift))
        return 0;
    *out = (size_t)v << shift;
    return 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: medium_churn [--ops N] [--slots N] [--min BYTES] [--max BYTES]\n"
                    "                    [--realloc-every N] [--seed N] [--verbose]\n"
                    "       BYTES may end in K or M (KiB, MiB)\n");
    return 2;
}

int main(int argc, char **argv)
{
    size_t ops = DEFAULT_OPS, nslots = DEFAULT_SLOTS, min = DEFAULT_MIN, max = DEFAULT_MAX;
    size_t realloc_every = DEFAULT_REALLOC_EVERY, seed = (size_t)DEFAULT_SEED;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--verbose") == 0) {
            verbose = 1;
            continue;
        }
        if (i + 1 >= argc)
            return usage();
        const char *val = argv[++i];
        int ok;
        if (strcmp(opt, "--ops") == 0)
            ok = parse_size(val, 0, &ops);
        else if (strcmp(opt, "--slots") == 0)
            ok = parse_size(val, 0, &nslots);
        else if (strcmp(opt, "--min") == 0)
            ok = parse_size(val, 1, &min);
        else if (strcmp(opt, "--max") == 0)
            ok = parse_size(val, 1, &max);
        else if (strcmp(opt, "--realloc-every") == 0)
            ok = parse_size(val, 0, &realloc_every);
        else if (strcmp(opt, "--seed") == 0)
            ok = parse_size(val, 0, &seed);
        else
            ok = 0;
        if (!ok)
            return usage();
    }
    if (min > max) {
        fprintf(stderr, "medium_churn: --min %zu is above --max %zu\n", min, max);
        return 2;
    }
    rng_state = (uint64_t)seed;

    struct slot *slots = calloc(nslots, sizeof *slots);
    if (slots == NULL)
        out_of_memory(nslots * sizeof *slots);

    double t0 = now_seconds();
    run(slots, nslots, ops, min, max, realloc_every);
    double t1 = now_seconds();

    for (size_t i = 0; i < nslots; i++) {
        if (slots[i].p != NULL)
            check(&slots[i], "before the final free");
        free(slots[i].p);
    }
    free(slots);
    if (verbose)
        fprintf(stderr,
                "medium_churn: %zu ops, %zu slots, sizes [%zu, %zu]: peak live %.1f MiB,"
                " resident after the final frees %.1f MiB\n",
                ops, nslots, min, max, (double)peak_live_bytes / 1048576.0,
                (double)wl_rss_kib() / 1024.0);
    printf("%.6f\n", t1 - t0);
    return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
