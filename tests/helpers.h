/*
 * Shared helpers of the API tests: a seeded PRNG, fill patterns, an error
 * recorder for regal_set_error_handler, overlap checks and the process RSS.
 *
 * Only libc and regal.h: test_api_*.c files may include it.  Everything is
 * static inline so that a file which uses part of it stays warning-free.
 */
#ifndef REGAL_TESTS_HELPERS_H
#define REGAL_TESTS_HELPERS_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "regal.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* 1 in AddressSanitizer builds (gcc defines __SANITIZE_ADDRESS__, clang
 * answers __has_feature): ASan keeps memory of its own per thread. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifndef TEST_ASAN
#define TEST_ASAN 0
#endif

/* ---- Seeded PRNG (xorshift64*) --------------------------------------------- */

typedef struct rng {
    uint64_t state;
} rng;

static inline rng rng_seeded(uint64_t seed)
{
    rng r = {seed ? seed : 0x9e3779b97f4a7c15u};
    return r;
}

static inline uint64_t rng_next(rng *r)
{
    uint64_t x = r->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->state = x;
    return x * 0x2545f4914f6cdd1du;
}

/* A uniform-enough number in [lo, hi]. */
static inline size_t rng_range(rng *r, size_t lo, size_t hi)
{
    return lo + (size_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* ---- Fill patterns ---------------------------------------------------------- */

/* Byte i of a block filled with seed s.  Depends on the position so that a
 * block copied to the wrong offset or overlapping another one shows up. */
static inline unsigned char pattern_byte(uint64_t seed, size_t i)
{
    uint64_t x = seed + (uint64_t)i * 0x9e3779b97f4a7c15u;
    x ^= x >> 29;
    return (unsigned char)(x ^ (x >> 8));
}

static inline void fill_pattern(void *p, size_t n, uint64_t seed)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = pattern_byte(seed, i);
}

/* Index of the first byte of [p, p+n) that differs from the pattern, or n. */
static inline size_t pattern_mismatch(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pattern_byte(seed, i))
            return i;
    return n;
}

static inline int pattern_intact(const void *p, size_t n, uint64_t seed)
{
    return pattern_mismatch(p, n, seed) == n;
}

/* Index of the first byte of [p, p+n) that is not c, or n. */
static inline size_t first_byte_not(const void *p, size_t n, unsigned char c)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != c)
            return i;
    return n;
}

/* A seed that depends on the block's address, for blocks checked elsewhere. */
static inline uint64_t seed_of(const void *p, uint64_t salt)
{
    return (uint64_t)(uintptr_t)p * 0xff51afd7ed558ccdu + salt;
}

static inline int is_aligned(const void *p, size_t alignment)
{
    return ((uintptr_t)p & (alignment - 1)) == 0;
}

/* ---- Live ranges: no two blocks may overlap ---------------------------------- */

typedef struct range {
    uintptr_t start;
    size_t len;
} range;

static inline int range_cmp(const void *x, const void *y)
{
    const range *a = x, *b = y;
    return (a->start > b->start) - (a->start < b->start);
}

/* Sorts r[0..n) by start and returns the index of the first range that
 * overlaps its successor, or n when they are disjoint. */
static inline size_t first_overlap(range *r, size_t n)
{
    qsort(r, n, sizeof *r, range_cmp);
    for (size_t i = 0; i + 1 < n; i++)
        if (r[i].start + r[i].len > r[i + 1].start)
            return i;
    return n;
}

/* ---- Error recorder ---------------------------------------------------------- */

typedef struct error_log {
    unsigned count;        /* reports since the last error_log_install/clear */
    regal_error_kind kind; /* of the first report */
    const void *ptr;       /* of the first report */
    char message[256];     /* of the first report */
    regal_error_kind last_kind;
    const void *last_ptr;
} error_log;

static inline void error_log_record(regal_error_kind kind, const void *ptr, const char *message,
                                    void *ctx)
{
    error_log *log = ctx;
    if (log->count == 0) {
        log->kind = kind;
        log->ptr = ptr;
        snprintf(log->message, sizeof log->message, "%s", message ? message : "(null)");
    }
    log->last_kind = kind;
    log->last_ptr = ptr;
    log->count++;
}

static inline void error_log_clear(error_log *log)
{
    memset(log, 0, sizeof *log);
}

static inline void error_log_install(error_log *log)
{
    error_log_clear(log);
    regal_set_error_handler(error_log_record, log);
}

/* Back to the default handler (a "regal:" line on stderr). */
static inline void error_log_remove(void)
{
    regal_set_error_handler(NULL, NULL);
}

static inline regal_stats stats_of(regal_arena *a)
{
    regal_stats s;
    memset(&s, 0xff, sizeof s);
    regal_arena_stats(a, &s);
    return s;
}

/* ---- Process figures --------------------------------------------------------- */

/* Resident set size of this process in bytes, from /proc/self/statm; 0 if
 * unreadable. */
static inline size_t process_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0, resident = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Pages of [p, p + n) that are resident (mincore: reads nothing, so the
 * answer is the same under sanitizers, whose shadow memory would fault). */
static inline size_t resident_pages(const void *p, size_t n)
{
    uintptr_t from = (uintptr_t)p & ~(uintptr_t)4095;
    uintptr_t to = ((uintptr_t)p + n + 4095) & ~(uintptr_t)4095;
    size_t pages = (to - from) / 4096, count = 0;
    unsigned char *vec = malloc(pages);
    cr_assert_not_null(vec);
    cr_assert_eq(mincore((void *)from, to - from, vec), 0);
    for (size_t i = 0; i < pages; i++)
        count += vec[i] & 1;
    free(vec);
    return count;
}

/* Whole OS pages inside a freed block p of usable bytes, 64 bytes at each
 * end left for the allocator's own headers and footers: what a trim or a
 * purge must give back of a block of the free-list heap whatever its
 * neighbours do. */
static inline size_t whole_pages_inside(const void *p, size_t usable)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + 64 + page - 1) / page * page;
    uintptr_t hi = ((uintptr_t)p + usable - 64) / page * page;
    return hi > lo ? (size_t)(hi - lo) : 0;
}

/* Frees the blocks of p[0..n) left (NULL: already freed), each checked
 * against the pattern fill_pattern(p[i], usable[i], i) wrote. */
static inline void free_intact(void **p, const size_t *usable, size_t n, const char *when)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == NULL)
            continue;
        cr_assert(pattern_intact(p[i], usable[i], i), "live block %zu changed %s", i, when);
        regal_free(p[i]);
    }
}

/* The whole content of a stream (rewound first), NUL-terminated, in a
 * malloc()ed buffer the caller frees. */
static inline char *slurp(FILE *f, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    rewind(f);
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (n + 1 < cap)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            return NULL;
        }
        buf = bigger;
        cap *= 2;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

#endif /* REGAL_TESTS_HELPERS_H */
