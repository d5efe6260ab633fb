/*
 * Conformance of the malloc shim: the malloc family as DESIGN.md ("Shim") and
 * notes/allocator-facts.md §3 promise it, checked through the standard
 * <stdlib.h>/<malloc.h> API only.  Prints TAP; exit status 0 iff all ok.
 *
 * Two builds of this file:
 *  - conformance: run with LD_PRELOAD=libregal-malloc.so.  It never links
 *    libregal; the regal API (for the checks that need it) is looked up with
 *    dlsym(RTLD_DEFAULT), so the only regal in the process is the preload.
 *  - conformance-static (CONFORMANCE_LINKED): linked with libregal-malloc.a,
 *    calls the regal API directly.
 *
 * The first check fails unless regal really is the process's malloc, so the
 * program cannot pass on glibc's malloc alone.  The other checks verify block
 * ownership (regal_arena_of) whenever the regal API is present, and otherwise
 * test plain behaviour, so running the program without the shim shows which
 * expectations glibc shares (a check of the test itself).
 *
 * The checks that misuse free (stack, double, interior pointer) run in a
 * forked child with stderr on a pipe: a crash there is a failure, not the end
 * of the run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include("regal.h")
#include "regal.h"
#define HAVE_REGAL_H 1
#endif
#endif

#define KiB          ((size_t)1 << 10)
#define MiB          ((size_t)1 << 20)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* glibc exports these without declaring them; the shim must replace them. */
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

/* ---- TAP ------------------------------------------------------------------ */

static int diag_budget; /* diagnostics left for the current check */

static void diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("# ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
}

/* Inside a check returning bool with a local `bool ok = true`. */
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        ok = false;                                                                                \
        if (diag_budget > 0) {                                                                     \
            diag_budget--;                                                                         \
            diag(__VA_ARGS__);                                                                     \
        }                                                                                          \
    } while (0)
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            FAIL(__VA_ARGS__);                                                                     \
    } while (0)

/* ---- Keeping the compiler honest ------------------------------------------
 * GCC knows malloc: it may delete a malloc/free pair whose block is unused,
 * assume the result's alignment and warn about constant huge sizes.  Every
 * pointer goes through a volatile sink and every odd size through a volatile
 * read, so the calls happen and the checks test the library, not gcc. */

static void *volatile sink;

static void *seen(void *p)
{
    sink = p;
    return sink;
}

static uintptr_t addr(const void *p)
{
    sink = (void *)p;
    return (uintptr_t)sink;
}

static size_t opaque(size_t n)
{
    volatile size_t v = n;
    return v;
}

static bool is_aligned(const void *p, size_t alignment)
{
    return (addr(p) & (alignment - 1)) == 0;
}

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

/* Fills p[0, n) with a pattern of seed and checks it back. */
static void fill(void *p, size_t n, unsigned seed)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(seed + i * 7);
}

static bool filled(const void *p, size_t n, unsigned seed)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(seed + i * 7))
            return false;
    return true;
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* xorshift64*: fixed seeds, same sequence on every run. */
static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* ---- The regal API, found at run time ------------------------------------ */

#ifdef HAVE_REGAL_H
static struct {
    regal_arena *(*default_arena)(void);
    void (*arena_stats)(regal_arena *a, regal_stats *out);
    regal_arena *(*arena_of)(const void *ptr);
    int (*arena_check)(regal_arena *a);
    regal_arena *(*arena_create)(const regal_arena_config *cfg);
    void (*arena_destroy)(regal_arena *a);
    void *(*alloc)(regal_arena *a, size_t size);
} rg;

#ifdef CONFORMANCE_LINKED
static void regal_api_load(void)
{
    rg.default_arena = regal_default_arena;
    rg.arena_stats = regal_arena_stats;
    rg.arena_of = regal_arena_of;
    rg.arena_check = regal_arena_check;
    rg.arena_create = regal_arena_create;
    rg.arena_destroy = regal_arena_destroy;
    rg.alloc = regal_alloc;
}
#else
/* POSIX guarantees dlsym's void * converts to a function pointer; memcpy
 * says so without a pedantic warning. */
#define LOAD(field, name)                                                                          \
    do {                                                                                           \
        void *sym_ = dlsym(RTLD_DEFAULT, name);                                                    \
        memcpy(&rg.field, &sym_, sizeof rg.field);                                                 \
    } while (0)

static void regal_api_load(void)
{
    LOAD(default_arena, "regal_default_arena");
    LOAD(arena_stats, "regal_arena_stats");
    LOAD(arena_of, "regal_arena_of");
    LOAD(arena_check, "regal_arena_check");
    LOAD(arena_create, "regal_arena_create");
    LOAD(arena_destroy, "regal_arena_destroy");
    LOAD(alloc, "regal_alloc");
}
#endif

static bool regal_present(void)
{
    return rg.default_arena && rg.arena_stats && rg.arena_of && rg.arena_check;
}

/* True when p is a block of the default arena, or when regal is absent
 * (then check 1 has already failed; the others test plain behaviour). */
static bool owned(const void *p)
{
    if (!regal_present())
        return true;
    return p && rg.arena_of(p) == rg.default_arena();
}

static bool default_stats(regal_stats *out)
{
    if (!regal_present())
        return false;
    rg.arena_stats(rg.default_arena(), out);
    return true;
}
#else
static void regal_api_load(void)
{
}

static bool regal_present(void)
{
    return false;
}

static bool owned(const void *p)
{
    (void)p;
    return true;
}
#endif

/* ---- Children with stderr on a pipe ---------------------------------------- */

typedef struct child_result {
    int status;     /* from waitpid */
    char err[4096]; /* the child's stderr (truncated) */
} child_result;

/* Runs fn(arg) in a forked child whose stderr is a pipe; the child's exit
 * status is fn's return value; it dies by SIGALRM after 10 s. */
static bool run_child(int (*fn)(void *), void *arg, child_result *res)
{
    int fds[2];
    if (pipe(fds) != 0)
        return false;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        close(fds[1]);
        alarm(10);
        _exit(fn(arg));
    }
    close(fds[1]);
    size_t len = 0;
    for (;;) {
        char scratch[512];
        ssize_t r = len + 1 < sizeof res->err
                        ? read(fds[0], res->err + len, sizeof res->err - 1 - len)
                        : read(fds[0], scratch, sizeof scratch); /* drain the rest */
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (len + 1 < sizeof res->err)
            len += (size_t)r;
    }
    res->err[len] = '\0';
    close(fds[0]);
    while (waitpid(pid, &res->status, 0) < 0)
        if (errno != EINTR)
            return false;
    return true;
}

/* Lines of text that start with "regal:". */
static int regal_lines(const char *text)
{
    int n = 0;
    for (const char *s = text; s && *s; s = strchr(s, '\n'), s = s ? s + 1 : NULL)
        if (strncmp(s, "regal:", 6) == 0)
            n++;
    return n;
}

/* Whether text names p in hex (%p, %#lx or zero-padded, any case). */
static bool names_pointer(const char *text, const void *p)
{
    char hex[32], low[sizeof((child_result *)0)->err];
    snprintf(hex, sizeof hex, "%lx", (unsigned long)addr(p));
    size_t i = 0;
    for (; text[i] && i + 1 < sizeof low; i++)
        low[i] = (char)tolower((unsigned char)text[i]);
    low[i] = '\0';
    return strstr(low, hex) != NULL;
}

static void diag_child(const child_result *res)
{
    if (WIFSIGNALED(res->status))
        diag("child killed by signal %d", WTERMSIG(res->status));
    else
        diag("child exit status %d", WEXITSTATUS(res->status));
    const char *s = res->err;
    for (int lines = 0; *s && lines < 6; lines++) {
        const char *e = strchr(s, '\n');
        int n = e ? (int)(e - s) : (int)strlen(s);
        diag("  stderr: %.*s", n, s);
        s += n + (e != NULL);
    }
}

/* ---- The checks ------------------------------------------------------------- */

/* The process's VmData (writable private memory, what strict overcommit
 * charges) in KiB, or -1. */
static long vm_data_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long kib = -1;
    while (kib < 0 && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmData: %ld kB", &kib) != 1)
            kib = -1;
    fclose(f);
    return kib;
}

/* regal's chunk map (32 MiB of .bss on x86-64, a byte per 4 MiB of
 * address space) is charged only for its pages that hold tags; the whole
 * of it was (64 MiB then), so every process under the shim was charged
 * 74 MiB (glibc: under 1). */
static bool a_small_program_is_charged_little_memory(void)
{
    bool ok = true;
    void *p = seen(malloc(100));
    free(p);
    long kib = vm_data_kib();
    EXPECT(kib >= 0, "no VmData line in /proc/self/status");
    EXPECT(kib < 32 * 1024, "VmData is %ld KiB after a malloc, 32 MiB allowed", kib);
    return ok;
}

static bool runs_under_regal(void)
{
    bool ok = true;
#ifdef HAVE_REGAL_H
    if (!regal_present()) {
        FAIL("regal_default_arena/regal_arena_stats/regal_arena_of/regal_arena_check not found: "
             "malloc is not regal's (is LD_PRELOAD set to libregal-malloc.so?)");
        return false;
    }
    regal_arena *a = rg.default_arena();
    EXPECT(a != NULL, "regal_default_arena() returned NULL");
    if (!a)
        return false;
    regal_stats s0, s1;
    rg.arena_stats(a, &s0);
    void *small = seen(malloc(100));
    void *large = seen(malloc(4 * MiB));
    rg.arena_stats(a, &s1);
    EXPECT(s1.alloc_count >= s0.alloc_count + 2,
           "default arena alloc_count went %zu -> %zu over two mallocs", s0.alloc_count,
           s1.alloc_count);
    EXPECT(small && rg.arena_of(small) == a, "malloc(100) = %p is not a block of the default arena",
           small);
    EXPECT(large && rg.arena_of(large) == a,
           "malloc(4 MiB) = %p is not a block of the default arena", large);
    free(small);
    free(large);
#else
    FAIL("built without regal.h: cannot tell whether regal is the malloc");
#endif
    return ok;
}

static bool malloc_gives_distinct_aligned_writable_blocks(void)
{
    bool ok = true;
    enum { SMALL = 4097, BIG = 3 * 11 };
    static void *ptr[SMALL + BIG];
    static size_t size[SMALL + BIG];
    size_t n = 0;
    for (size_t s = 0; s < SMALL; s++)
        size[n++] = s;
    for (int k = 13; k <= 23; k++) { /* 8 KiB .. 8 MiB, and either side */
        size[n++] = ((size_t)1 << k) - 1;
        size[n++] = (size_t)1 << k;
        size[n++] = ((size_t)1 << k) + 1;
    }
    for (size_t i = 0; i < n; i++) {
        ptr[i] = seen(malloc(opaque(size[i])));
        EXPECT(ptr[i] != NULL, "malloc(%zu) = NULL", size[i]);
        if (!ptr[i])
            continue;
        EXPECT(is_aligned(ptr[i], 16), "malloc(%zu) = %p is not 16-aligned", size[i], ptr[i]);
        EXPECT(owned(ptr[i]), "malloc(%zu) = %p is not regal's", size[i], ptr[i]);
        fill(ptr[i], size[i], (unsigned)i);
    }
    for (size_t i = 0; i < n; i++)
        if (ptr[i])
            EXPECT(filled(ptr[i], size[i], (unsigned)i),
                   "block %zu (malloc(%zu) = %p) was overwritten by another block", i, size[i],
                   ptr[i]);
    /* Distinct and disjoint: sort by address (insertion sort on indexes of a
     * copy would be slow; a simple shell sort does). */
    static size_t order[SMALL + BIG];
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t gap = n / 2; gap > 0; gap /= 2)
        for (size_t i = gap; i < n; i++)
            for (size_t j = i; j >= gap && addr(ptr[order[j - gap]]) > addr(ptr[order[j]]);
                 j -= gap) {
                size_t t = order[j];
                order[j] = order[j - gap];
                order[j - gap] = t;
            }
    for (size_t i = 1; i < n; i++) {
        size_t a = order[i - 1], b = order[i];
        if (!ptr[a] || !ptr[b])
            continue;
        size_t extent = size[a] ? size[a] : 1;
        EXPECT(addr(ptr[a]) + extent <= addr(ptr[b]), "malloc(%zu) = %p overlaps malloc(%zu) = %p",
               size[a], ptr[a], size[b], ptr[b]);
    }
    for (size_t i = 0; i < n; i++)
        free(ptr[i]);
    return ok;
}

static bool zero_sizes_give_unique_freeable_pointers(void)
{
    bool ok = true;
    enum { N = 64 };
    void *p[4 * N];
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        p[n++] = seen(malloc(opaque(0)));
        p[n++] = seen(calloc(opaque(0), opaque(0)));
        p[n++] = seen(calloc(opaque(0), 16));
        p[n++] = seen(calloc(16, opaque(0)));
    }
    for (size_t i = 0; i < n; i++) {
        const char *what = i % 4 == 0 ? "malloc(0)" : "calloc with a zero count or size";
        EXPECT(p[i] != NULL, "%s = NULL", what);
        EXPECT(is_aligned(p[i], 16), "%s = %p is not 16-aligned", what, p[i]);
        EXPECT(owned(p[i]), "%s = %p is not regal's", what, p[i]);
        for (size_t j = 0; j < i; j++)
            EXPECT(!p[i] || p[i] != p[j], "%s returned %p twice while live", what, p[i]);
    }
    for (size_t i = 0; i < n; i++)
        free(p[i]);
    return ok;
}

static bool free_null_is_a_noop_and_free_keeps_errno(void)
{
    bool ok = true;
    errno = EDOM;
    free(NULL);
    EXPECT(errno == EDOM, "free(NULL) changed errno to %d", errno);

    static const size_t sizes[] = {1, 64, 1000, 20000, 200000, 8 * MiB, 64 * MiB};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *p = seen(malloc(opaque(sizes[i])));
        EXPECT(p != NULL, "malloc(%zu) = NULL", sizes[i]);
        if (p)
            memset(p, 0x5a, sizes[i]);
        errno = ERANGE;
        free(p);
        EXPECT(errno == ERANGE, "free of a %zu-byte block changed errno to %d", sizes[i], errno);
    }
    void *p = NULL;
    if (posix_memalign(&p, 4096, 100) == 0) {
        seen(p);
        errno = EILSEQ;
        free(p);
        EXPECT(errno == EILSEQ, "free of a 4096-aligned block changed errno to %d", errno);
    } else {
        FAIL("posix_memalign(4096, 100) failed");
    }
    /* Large blocks released in a burst (unmapping or cache eviction). */
    void *big[16];
    for (int i = 0; i < 16; i++)
        big[i] = seen(malloc(opaque(3 * MiB + (size_t)i * 4096)));
    for (int i = 0; i < 16; i++) {
        errno = EXDEV;
        free(big[i]);
        EXPECT(errno == EXDEV, "free of large block %d changed errno to %d", i, errno);
    }
    return ok;
}

static bool calloc_zeroes_fresh_memory(void)
{
    bool ok = true;
    static const size_t sizes[] = {1,    15,   16,    17,     100,     1000,
                                   4096, 4097, 65537, 300000, 1 * MiB, 16 * MiB};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        void *a = seen(calloc(opaque(n), 1));
        void *b = seen(calloc(1, opaque(n)));
        void *c = seen(calloc(opaque((n + 7) / 8), 8));
        EXPECT(a && all_zero(a, n), "calloc(%zu, 1) = %p is not zeroed", n, a);
        EXPECT(b && all_zero(b, n), "calloc(1, %zu) = %p is not zeroed", n, b);
        EXPECT(c && all_zero(c, (n + 7) / 8 * 8), "calloc(%zu, 8) = %p is not zeroed", (n + 7) / 8,
               c);
        EXPECT(is_aligned(a, 16) && is_aligned(b, 16) && is_aligned(c, 16),
               "calloc of %zu bytes not 16-aligned", n);
        EXPECT(owned(a) && owned(b) && owned(c), "calloc of %zu bytes is not regal's", n);
        free(a);
        free(b);
        free(c);
    }
    return ok;
}

static bool calloc_zeroes_recycled_memory(void)
{
    bool ok = true;
    enum { N = 300, ROUNDS = 20 };
    static void *p[N];
    static size_t size[N];
    rng_state = 0x1234567;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < N; i++) {
            uint64_t r = rnd();
            switch (r % 8) {
            case 0:
                size[i] = 1 + (r >> 8) % 256 * KiB;
                break; /* up to 256 KiB */
            case 1:
                size[i] = i % 50 == 0 ? 4 * MiB + (r >> 8) % MiB : 1 + (r >> 8) % 8192;
                break;
            default:
                size[i] = 1 + (r >> 8) % 512;
                break;
            }
            p[i] = seen(malloc(size[i]));
            EXPECT(p[i] != NULL, "malloc(%zu) = NULL", size[i]);
            if (p[i])
                memset(p[i], 0xa5, malloc_usable_size(p[i]));
        }
        /* Free in an order unlike allocation order, to mix the free lists. */
        for (int i = 0; i < N; i += 2)
            free(p[i]);
        for (int i = N - 1; i >= 1; i -= 2)
            free(p[i]);
        for (int i = 0; i < N; i++) {
            bool by_count = i % 3 == 0 && size[i] % 4 == 0;
            p[i] = by_count ? seen(calloc(size[i] / 4, 4)) : seen(calloc(1, size[i]));
            EXPECT(p[i] != NULL, "calloc of %zu bytes = NULL", size[i]);
            /* All of the block reads as zero, past the size asked too, as
             * with glibc: a program may use its malloc_usable_size. */
            if (p[i])
                EXPECT(all_zero(p[i], malloc_usable_size(p[i])),
                       "round %d: calloc of %zu bytes = %p is not zeroed (recycled memory)", round,
                       size[i], p[i]);
        }
        for (int i = 0; i < N; i++) {
            if (p[i])
                memset(p[i], 0x3c, size[i]);
            free(p[i]);
        }
    }
    /* A big dirty block freed and asked for again (large-block reuse cache). */
    for (int i = 0; i < 4; i++) {
        size_t n = (size_t)(8 + i) * MiB;
        void *q = seen(malloc(n));
        if (q)
            memset(q, 0xff, n);
        free(q);
        q = seen(calloc(1, n));
        EXPECT(q && all_zero(q, n), "calloc(1, %zu) after a dirty free is not zeroed", n);
        free(q);
    }
    return ok;
}

static bool calloc_overflow_fails_with_enomem(void)
{
    bool ok = true;
    static const size_t pairs[][2] = {
        {SIZE_MAX, 2},
        {2, SIZE_MAX},
        {SIZE_MAX / 2 + 1, 2},
        {(size_t)1 << 32, (size_t)1 << 32}, /* product wraps to exactly 0 */
        {((size_t)1 << 32) + 1, ((size_t)1 << 32) - 1},
        {SIZE_MAX / 16 + 1, 16},
        {(size_t)1 << 63, 2},
        {3, SIZE_MAX / 3 + 1},
    };
    for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
        errno = 0;
        void *p = seen(calloc(opaque(pairs[i][0]), opaque(pairs[i][1])));
        EXPECT(p == NULL, "calloc(%zu, %zu) = %p, expected NULL (count * size overflows)",
               pairs[i][0], pairs[i][1], p);
        EXPECT(errno == ENOMEM, "calloc(%zu, %zu) set errno %d, expected ENOMEM", pairs[i][0],
               pairs[i][1], errno);
        free(p);
    }
    return ok;
}

static const size_t huge_sizes[] = {
    (size_t)PTRDIFF_MAX + 1, SIZE_MAX,           SIZE_MAX - 1,        SIZE_MAX - 15,
    SIZE_MAX - 4095,         SIZE_MAX - 4 * MiB, (size_t)PTRDIFF_MAX,
};

static bool huge_sizes_fail_with_enomem(void)
{
    bool ok = true;
    void *keep = seen(malloc(100));
    if (keep)
        fill(keep, 100, 77);
    for (size_t i = 0; i < ARRAY_LEN(huge_sizes); i++) {
        size_t n = opaque(huge_sizes[i]);
        errno = 0;
        void *p = seen(malloc(n));
        EXPECT(p == NULL && errno == ENOMEM, "malloc(%zu) = %p, errno %d; expected NULL, ENOMEM", n,
               p, errno);
        free(p);
        errno = 0;
        p = seen(calloc(1, n));
        EXPECT(p == NULL && errno == ENOMEM, "calloc(1, %zu) = %p, errno %d; expected NULL, ENOMEM",
               n, p, errno);
        free(p);
        errno = 0;
        p = seen(realloc(NULL, n));
        EXPECT(p == NULL && errno == ENOMEM,
               "realloc(NULL, %zu) = %p, errno %d; expected NULL, ENOMEM", n, p, errno);
        free(p);
        if (keep) {
            errno = 0;
            p = seen(realloc(keep, n));
            EXPECT(p == NULL && errno == ENOMEM,
                   "realloc(p, %zu) = %p, errno %d; expected NULL, ENOMEM", n, p, errno);
            if (p)
                keep = p;
        }
    }
    if (keep) {
        EXPECT(filled(keep, 100, 77), "a failed realloc changed the old block's contents");
        EXPECT(owned(keep), "the old block is no longer regal's after a failed realloc");
    }
    free(keep);
    /* The heap still works. */
    void *p = seen(malloc(1000));
    EXPECT(p != NULL, "malloc(1000) = NULL after the failures");
    free(p);
    return ok;
}

static bool huge_aligned_requests_fail_with_enomem(void)
{
    bool ok = true;
    for (size_t i = 0; i < ARRAY_LEN(huge_sizes); i++) {
        size_t n = opaque(huge_sizes[i]);
        void *p = (void *)&ok;
        int rc = posix_memalign(&p, 64, n);
        EXPECT(rc == ENOMEM, "posix_memalign(64, %zu) returned %d, expected ENOMEM", n, rc);
        if (rc == 0)
            free(p);
        p = (void *)&ok;
        rc = posix_memalign(&p, 2 * MiB, n);
        EXPECT(rc == ENOMEM, "posix_memalign(2 MiB, %zu) returned %d, expected ENOMEM", n, rc);
        if (rc == 0)
            free(p);
        errno = 0;
        p = seen(aligned_alloc(opaque(4096), n));
        EXPECT(p == NULL && errno == ENOMEM,
               "aligned_alloc(4096, %zu) = %p, errno %d; expected NULL, ENOMEM", n, p, errno);
        free(p);
        errno = 0;
        p = seen(memalign(opaque(256), n));
        EXPECT(p == NULL && errno == ENOMEM,
               "memalign(256, %zu) = %p, errno %d; expected NULL, ENOMEM", n, p, errno);
        free(p);
        errno = 0;
        p = seen(valloc(n));
        EXPECT(p == NULL && errno == ENOMEM, "valloc(%zu) = %p, errno %d; expected NULL, ENOMEM", n,
               p, errno);
        free(p);
        errno = 0;
        p = seen(pvalloc(n)); /* rounding up to a page must not wrap */
        EXPECT(p == NULL && errno == ENOMEM, "pvalloc(%zu) = %p, errno %d; expected NULL, ENOMEM",
               n, p, errno);
        free(p);
    }
    return ok;
}

static bool realloc_null_acts_as_malloc(void)
{
    bool ok = true;
    static const size_t sizes[] = {0, 1, 100, 4096, 100000, 8 * MiB};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *p = seen(realloc(NULL, opaque(sizes[i])));
        EXPECT(p != NULL, "realloc(NULL, %zu) = NULL", sizes[i]);
        EXPECT(is_aligned(p, 16), "realloc(NULL, %zu) = %p is not 16-aligned", sizes[i], p);
        EXPECT(owned(p), "realloc(NULL, %zu) = %p is not regal's", sizes[i], p);
        if (p)
            fill(p, sizes[i], 3);
        free(p);
    }
    return ok;
}

static bool realloc_keeps_contents_when_growing_and_shrinking(void)
{
    bool ok = true;
    static const size_t chain[] = {1,        17,           300,     5000,    70000, 300000,
                                   5 * MiB,  20 * MiB,     3 * MiB, 3 * MiB, 100,   8,
                                   64 * KiB, 64 * KiB + 1, 200,     200000,  16};
    void *p = NULL;
    size_t old = 0;
    for (size_t i = 0; i < ARRAY_LEN(chain); i++) {
        size_t n = chain[i];
        void *q = seen(realloc(seen(p), opaque(n)));
        EXPECT(q != NULL, "realloc(%p, %zu) = NULL", p, n);
        if (!q)
            break;
        size_t keep = old < n ? old : n;
        EXPECT(filled(q, keep, 11), "realloc from %zu to %zu bytes lost the contents", old, n);
        EXPECT(is_aligned(q, 16), "realloc to %zu bytes = %p is not 16-aligned", n, q);
        EXPECT(owned(q), "realloc to %zu bytes = %p is not regal's", n, q);
        EXPECT(malloc_usable_size(q) >= n, "realloc to %zu bytes: usable size %zu", n,
               malloc_usable_size(q));
        fill(q, n, 11);
        p = q;
        old = n;
    }
    free(p);
    /* An over-aligned block keeps its contents too. */
    void *a = seen(memalign(opaque(4096), 1000));
    EXPECT(a != NULL, "memalign(4096, 1000) = NULL");
    if (a) {
        fill(a, 1000, 5);
        void *b = seen(realloc(seen(a), 50000));
        EXPECT(b && filled(b, 1000, 5), "realloc of a memalign block lost the contents");
        EXPECT(owned(b), "realloc of a memalign block = %p is not regal's", b);
        free(b ? b : a);
    }
    return ok;
}

static bool realloc_to_zero_frees_and_returns_null(void)
{
    bool ok = true;
    static const size_t sizes[] = {100, 5000, 300000, 8 * MiB};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *p = seen(malloc(opaque(sizes[i])));
        EXPECT(p != NULL, "malloc(%zu) = NULL", sizes[i]);
        if (!p)
            continue;
        memset(p, 1, sizes[i]);
#ifdef HAVE_REGAL_H
        regal_stats s0, s1;
        bool stats = default_stats(&s0);
#endif
        void *q = seen(realloc(p, opaque(0)));
        EXPECT(q == NULL, "realloc(p, 0) of a %zu-byte block = %p, expected NULL (glibc's rule)",
               sizes[i], q);
#ifdef HAVE_REGAL_H
        if (stats) {
            default_stats(&s1);
            EXPECT(s1.free_count >= s0.free_count + 1 && s1.blocks_in_use + 1 == s0.blocks_in_use,
                   "realloc(p, 0) of a %zu-byte block did not free it (free_count %zu -> %zu, "
                   "blocks_in_use %zu -> %zu)",
                   sizes[i], s0.free_count, s1.free_count, s0.blocks_in_use, s1.blocks_in_use);
        }
#endif
        free(q);
    }
    return ok;
}

static bool posix_memalign_gives_aligned_blocks(void)
{
    bool ok = true;
    static const size_t sizes[] = {0, 1, 24, 100, 4096, 70000, MiB + 1};
    for (size_t al = sizeof(void *); al <= 2 * MiB; al *= 2) {
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            void *p = NULL;
            int rc = posix_memalign(&p, opaque(al), opaque(sizes[i]));
            EXPECT(rc == 0 && p != NULL, "posix_memalign(%zu, %zu) returned %d, %p", al, sizes[i],
                   rc, p);
            if (rc != 0)
                continue;
            seen(p);
            EXPECT(is_aligned(p, al) && is_aligned(p, 16),
                   "posix_memalign(%zu, %zu) = %p is misaligned", al, sizes[i], p);
            EXPECT(owned(p), "posix_memalign(%zu, %zu) = %p is not regal's", al, sizes[i], p);
            EXPECT(malloc_usable_size(p) >= sizes[i], "posix_memalign(%zu, %zu): usable size %zu",
                   al, sizes[i], malloc_usable_size(p));
            memset(p, 0xee, malloc_usable_size(p));
            free(p);
        }
    }
    return ok;
}

/* Many small aligned blocks live at once, freed in a mixed order and asked
 * for again: every slot of a span, fresh or recycled, not only the one a
 * block freed at once hands back, is aligned. */
static bool many_live_aligned_blocks_are_aligned(void)
{
    bool ok = true;
    enum { N = 200 };
    static void *p[N];
    static const size_t sizes[] = {1, 24, 100, 1000, 5000};
    for (size_t al = 32; al <= 8192; al *= 2) {
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            for (int round = 0; round < 2; round++) {
                for (int k = 0; k < N; k++) {
                    if (round == 1 && k % 3 != 0)
                        continue; /* the second round refills the holes */
                    p[k] = NULL;
                    int rc = posix_memalign(&p[k], opaque(al), opaque(sizes[i]));
                    EXPECT(rc == 0 && is_aligned(p[k], al),
                           "posix_memalign(%zu, %zu), block %d of round %d: %d, %p", al, sizes[i],
                           k, round, rc, p[k]);
                    seen(p[k]);
                }
                for (int k = 0; k < N; k += round == 0 ? 3 : 1)
                    free(p[k]);
            }
        }
    }
    return ok;
}

static bool posix_memalign_rejects_bad_alignments(void)
{
    bool ok = true;
    static const size_t bad[] = {0, 1, 2, 4, 12, 24, 48, 96, 1000, 4097, 3 * MiB, SIZE_MAX};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        if (bad[i] == sizeof(void *))
            continue;
        void *sentinel = (void *)&ok;
        void *p = sentinel;
        int rc = posix_memalign(&p, opaque(bad[i]), 64);
        EXPECT(rc == EINVAL, "posix_memalign(%zu, 64) returned %d, expected EINVAL", bad[i], rc);
        EXPECT(p == sentinel, "posix_memalign(%zu, 64) changed *memptr to %p on failure", bad[i],
               p);
        if (rc == 0)
            free(p);
    }
    return ok;
}

typedef void *(*aligned_fn)(size_t alignment, size_t size);

static bool aligned_calls_give_aligned_blocks(aligned_fn fn, const char *name)
{
    bool ok = true;
    static const size_t sizes[] = {1, 16, 100, 4096, 70000, 300000};
    for (size_t al = 1; al <= 2 * MiB; al *= 2) {
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            void *p = seen(fn(opaque(al), opaque(sizes[i])));
            EXPECT(p != NULL, "%s(%zu, %zu) = NULL", name, al, sizes[i]);
            if (!p)
                continue;
            EXPECT(is_aligned(p, al) && is_aligned(p, 16), "%s(%zu, %zu) = %p is misaligned", name,
                   al, sizes[i], p);
            EXPECT(owned(p), "%s(%zu, %zu) = %p is not regal's", name, al, sizes[i], p);
            EXPECT(malloc_usable_size(p) >= sizes[i], "%s(%zu, %zu): usable size %zu", name, al,
                   sizes[i], malloc_usable_size(p));
            memset(p, 0x77, malloc_usable_size(p));
            free(p);
        }
    }
    return ok;
}

static bool aligned_calls_reject_bad_alignments(aligned_fn fn, const char *name)
{
    bool ok = true;
    static const size_t bad[] = {0, 3, 5, 12, 24, 48, 100, 4097, 3 * MiB, SIZE_MAX};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        errno = 0;
        void *p = seen(fn(opaque(bad[i]), 64));
        EXPECT(p == NULL && errno == EINVAL, "%s(%zu, 64) = %p, errno %d; expected NULL, EINVAL",
               name, bad[i], p, errno);
        free(p);
    }
    return ok;
}

static void *call_aligned_alloc(size_t alignment, size_t size)
{
    return aligned_alloc(alignment, size);
}

static void *call_memalign(size_t alignment, size_t size)
{
    return memalign(alignment, size);
}

static bool aligned_alloc_gives_aligned_blocks(void)
{
    return aligned_calls_give_aligned_blocks(call_aligned_alloc, "aligned_alloc");
}

static bool aligned_alloc_rejects_bad_alignments(void)
{
    return aligned_calls_reject_bad_alignments(call_aligned_alloc, "aligned_alloc");
}

static bool memalign_gives_aligned_blocks(void)
{
    return aligned_calls_give_aligned_blocks(call_memalign, "memalign");
}

static bool memalign_rejects_bad_alignments(void)
{
    return aligned_calls_reject_bad_alignments(call_memalign, "memalign");
}

static bool valloc_gives_page_aligned_blocks(void)
{
    bool ok = true;
    size_t page = page_size();
    const size_t sizes[] = {1, 100, page - 1, page, page + 1, 3 * page + 7, MiB + 1};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *p = seen(valloc(opaque(sizes[i])));
        EXPECT(p != NULL, "valloc(%zu) = NULL", sizes[i]);
        if (!p)
            continue;
        EXPECT(is_aligned(p, page), "valloc(%zu) = %p is not page-aligned", sizes[i], p);
        EXPECT(owned(p), "valloc(%zu) = %p is not regal's", sizes[i], p);
        EXPECT(malloc_usable_size(p) >= sizes[i], "valloc(%zu): usable size %zu", sizes[i],
               malloc_usable_size(p));
        memset(p, 0x11, sizes[i]);
        free(p);
    }
    return ok;
}

static bool pvalloc_rounds_up_to_whole_pages(void)
{
    bool ok = true;
    size_t page = page_size();
    const size_t sizes[] = {1, 100, page - 1, page, page + 1, 3 * page + 7, MiB + 1};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t whole = round_up(sizes[i], page);
        void *p = seen(pvalloc(opaque(sizes[i])));
        EXPECT(p != NULL, "pvalloc(%zu) = NULL", sizes[i]);
        if (!p)
            continue;
        EXPECT(is_aligned(p, page), "pvalloc(%zu) = %p is not page-aligned", sizes[i], p);
        EXPECT(owned(p), "pvalloc(%zu) = %p is not regal's", sizes[i], p);
        EXPECT(malloc_usable_size(p) >= whole, "pvalloc(%zu): usable size %zu < %zu", sizes[i],
               malloc_usable_size(p), whole);
        memset(p, 0x22, whole); /* the whole rounded size is the caller's */
        free(p);
    }
    return ok;
}

static bool usable_size_covers_the_request_and_is_writable(void)
{
    bool ok = true;
    EXPECT(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu",
           malloc_usable_size(NULL));
    enum { SMALL = 2049, N = SMALL + 12 };
    static void *p[N];
    static size_t size[N], usable[N];
    for (size_t i = 0; i < SMALL; i++)
        size[i] = i + 1;
    static const size_t more[] = {3000,   5000,   9000,    33000,   65536,   100000,
                                  262145, 500000, MiB - 1, MiB + 1, 3 * MiB, 4 * MiB + 3};
    for (size_t i = 0; i < ARRAY_LEN(more); i++)
        size[SMALL + i] = more[i];
    for (size_t i = 0; i < N; i++) {
        p[i] = seen(malloc(opaque(size[i])));
        EXPECT(p[i] != NULL, "malloc(%zu) = NULL", size[i]);
        if (!p[i])
            continue;
        usable[i] = malloc_usable_size(p[i]);
        EXPECT(usable[i] >= size[i], "malloc_usable_size(malloc(%zu)) = %zu", size[i], usable[i]);
        EXPECT(malloc_usable_size(p[i]) == usable[i], "malloc_usable_size(%p) is not stable", p[i]);
        fill(p[i], usable[i], (unsigned)i * 13);
    }
    for (size_t i = 0; i < N; i++)
        if (p[i])
            EXPECT(filled(p[i], usable[i], (unsigned)i * 13),
                   "block %p (malloc(%zu), usable %zu) was overwritten by a neighbour written up "
                   "to its usable size",
                   p[i], size[i], usable[i]);
    for (size_t i = 0; i < N; i++)
        free(p[i]);
    return ok;
}

/* Resident set size from /proc/self/statm in bytes, 0 if unreadable.  With
 * read(2), not stdio, so that measuring allocates nothing. */
static size_t rss_bytes(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long size, resident;
    if (sscanf(buf, "%lu %lu", &size, &resident) != 2)
        return 0;
    return (size_t)resident * page_size();
}

/* glibc's malloc_trim gives back the free pages inside its heaps, not only
 * the top (2.8 and later), and servers call malloc_trim(0) for exactly that
 * (notes/allocator-facts.md, section 4, item 11).  A heap of blocks of 16 to
 * 384 KiB, 90% of them freed at random: malloc_trim(0) returns 1, and RSS
 * has dropped by every whole page inside a freed block (64 bytes at each
 * end are left for the allocator's own headers).  A second call with
 * nothing freed in between has nothing to give back: 0. */
static bool malloc_trim_releases_the_pages_of_freed_blocks(void)
{
    bool ok = true;
    enum { N = 400 };
    static void *p[N];
    static size_t usable[N];
    size_t page = page_size(), expected = 0;
    rng_state = 0x7417;
    for (int i = 0; i < N; i++) {
        p[i] = seen(malloc(16 * KiB + rnd() % (368 * KiB)));
        if (p[i] == NULL) {
            FAIL("malloc failed");
            return ok;
        }
        usable[i] = malloc_usable_size(p[i]);
        fill(p[i], usable[i], (unsigned)i);
    }
    size_t rss_full = rss_bytes();
    for (int i = 0; i < N; i++) {
        if (rnd() % 10 == 0)
            continue;
        size_t lo = round_up(addr(p[i]) + 64, page),
               hi = (addr(p[i]) + usable[i] - 64) / page * page;
        expected += hi > lo ? hi - lo : 0;
        free(p[i]);
        p[i] = NULL;
    }
#ifdef HAVE_REGAL_H
    regal_stats s;
    bool dirty = !default_stats(&s) || s.dirty > 0;
#else
    bool dirty = true;
#endif
    int rc = malloc_trim(0);
    size_t rss_trimmed = rss_bytes();
    if (dirty)
        EXPECT(rc == 1, "malloc_trim(0) returned %d with free pages to give back", rc);
    EXPECT(rss_full >= rss_trimmed + expected - 1 * MiB,
           "RSS %zu KiB before the frees, %zu KiB after malloc_trim(0): dropped by less than the "
           "%zu KiB of whole pages freed",
           rss_full / KiB, rss_trimmed / KiB, expected / KiB);
#ifdef HAVE_REGAL_H
    if (default_stats(&s)) {
        EXPECT(s.dirty == 0, "%zu dirty bytes left after malloc_trim(0)", s.dirty);
        rc = malloc_trim(0);
        EXPECT(rc == 0, "a second malloc_trim(0) with nothing freed returned %d", rc);
    }
#endif
    for (int i = 0; i < N; i++) {
        if (p[i])
            EXPECT(filled(p[i], usable[i], (unsigned)i), "live block %p changed across malloc_trim",
                   p[i]);
        free(p[i]);
    }
    return ok;
}

static bool malloc_trim_returns_0_or_1_and_keeps_live_blocks(void)
{
    bool ok = true;
    enum { N = 2000 };
    static void *p[N];
    static size_t size[N];
    rng_state = 0xfeed;
    for (int i = 0; i < N; i++) {
        size[i] = i % 100 == 0 ? 2 * MiB + rnd() % MiB : 1 + rnd() % 40000;
        p[i] = seen(malloc(size[i]));
        if (p[i])
            fill(p[i], size[i], (unsigned)i);
    }
    for (int i = 0; i < N; i += 2) { /* free half: holes for trim to release */
        free(p[i]);
        p[i] = NULL;
    }
    int rc = malloc_trim(0);
    EXPECT(rc == 0 || rc == 1, "malloc_trim(0) returned %d", rc);
    rc = malloc_trim(opaque(1 * MiB));
    EXPECT(rc == 0 || rc == 1, "malloc_trim(1 MiB) returned %d", rc);
    for (int i = 1; i < N; i += 2)
        if (p[i])
            EXPECT(filled(p[i], size[i], (unsigned)i),
                   "live block %p (%zu bytes) changed across malloc_trim", p[i], size[i]);
    for (int i = 0; i < N; i += 2) { /* the trimmed memory is usable again */
        p[i] = seen(malloc(size[i]));
        EXPECT(p[i] != NULL, "malloc(%zu) = NULL after malloc_trim", size[i]);
        if (p[i])
            fill(p[i], size[i], (unsigned)i);
    }
    for (int i = 0; i < N; i++) {
        if (p[i])
            EXPECT(filled(p[i], size[i], (unsigned)i), "block %p changed after malloc_trim", p[i]);
        free(p[i]);
    }
    return ok;
}

static bool mallinfo2_reports_live_bytes(void)
{
    bool ok = true;
    enum { SMALL = 1000, MID = 10, BIG = 2 };
    static void *p[SMALL + MID + BIG];
    size_t live = 0, n = 0;
    for (int i = 0; i < SMALL; i++, n++)
        live += 1000, p[n] = seen(malloc(1000));
    for (int i = 0; i < MID; i++, n++)
        live += MiB, p[n] = seen(malloc(MiB));
    for (int i = 0; i < BIG; i++, n++)
        live += 16 * MiB, p[n] = seen(malloc(16 * MiB));
    for (size_t i = 0; i < n; i++)
        if (p[i])
            memset(p[i], 1, 1000);
    struct mallinfo2 before = mallinfo2();
    EXPECT(before.uordblks >= live, "mallinfo2().uordblks = %zu < %zu bytes live", before.uordblks,
           live);
    EXPECT(before.uordblks < ((size_t)1 << 40), "mallinfo2().uordblks = %zu is implausible",
           before.uordblks);
    EXPECT(before.arena + before.hblkhd >= live,
           "mallinfo2(): arena %zu + hblkhd %zu bytes obtained from the OS < %zu bytes live",
           before.arena, before.hblkhd, live);
    for (size_t i = 0; i < n; i++)
        free(p[i]);
    struct mallinfo2 after = mallinfo2();
    EXPECT(after.uordblks + live / 2 <= before.uordblks,
           "mallinfo2().uordblks went %zu -> %zu after freeing %zu bytes", before.uordblks,
           after.uordblks, live);
    return ok;
}

static bool mallinfo_malloc_stats_and_mallopt_are_callable(void)
{
    bool ok = true;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo old = mallinfo(); /* deprecated, still used by old programs */
#pragma GCC diagnostic pop
    (void)old; /* its int fields may saturate; only the call is checked */
    fputs("conformance: malloc_stats() output follows\n", stderr);
    malloc_stats(); /* prints to stderr; must not crash */
    static const int params[][2] = {
        {M_TRIM_THRESHOLD, 128 * 1024},
        {M_MMAP_THRESHOLD, 128 * 1024},
        {M_ARENA_MAX, 8},
        {M_TOP_PAD, 0},
        {-12345, 1},
    };
    for (size_t i = 0; i < ARRAY_LEN(params); i++) {
        int rc = mallopt(params[i][0], params[i][1]);
        EXPECT(rc == 0 || rc == 1, "mallopt(%d, %d) returned %d", params[i][0], params[i][1], rc);
    }
    void *p = seen(malloc(1000)); /* still a working heap */
    EXPECT(p != NULL, "malloc after mallopt = NULL");
    free(p);
    return ok;
}

static bool libc_aliases_allocate_from_regal(void)
{
    bool ok = true;
    size_t page = page_size();
    void *m = seen(__libc_malloc(opaque(100)));
    EXPECT(m && owned(m) && is_aligned(m, 16), "__libc_malloc(100) = %p is not a regal block", m);
    if (m)
        fill(m, 100, 9);
    void *c = seen(__libc_calloc(opaque(10), 10));
    EXPECT(c && owned(c) && all_zero(c, 100),
           "__libc_calloc(10, 10) = %p is not a zeroed regal block", c);
    void *r = m ? seen(__libc_realloc(m, opaque(50000))) : NULL;
    EXPECT(r && owned(r) && filled(r, 100, 9),
           "__libc_realloc(p, 50000) = %p did not keep a regal block's contents", r);
    void *a = seen(__libc_memalign(opaque(256), 100));
    EXPECT(a && owned(a) && is_aligned(a, 256), "__libc_memalign(256, 100) = %p", a);
    void *v = seen(__libc_valloc(opaque(100)));
    EXPECT(v && owned(v) && is_aligned(v, page), "__libc_valloc(100) = %p", v);
    void *pv = seen(__libc_pvalloc(opaque(100)));
    EXPECT(pv && owned(pv) && is_aligned(pv, page) && malloc_usable_size(pv) >= page,
           "__libc_pvalloc(100) = %p", pv);
    if (pv)
        memset(pv, 1, page);
    /* Mixed frees: either entry point takes either kind of block. */
    __libc_free(r ? r : m);
    free(c);
    __libc_free(a);
    free(v);
    __libc_free(pv);
    __libc_free(NULL);
    void *x = seen(malloc(64));
    __libc_free(x);
    return ok;
}

static bool glibc_helpers_allocate_through_the_shim(void)
{
    bool ok = true;
    char *s = strdup("conformance");
    EXPECT(s && owned(s) && strcmp(s, "conformance") == 0, "strdup = %p is not a regal block",
           (void *)s);
    free(s);
    s = strndup("conformance", 4);
    EXPECT(s && owned(s) && strcmp(s, "conf") == 0, "strndup = %p is not a regal block", (void *)s);
    free(s);
    int *arr = seen(reallocarray(NULL, 100, sizeof(int)));
    EXPECT(arr && owned(arr), "reallocarray(NULL, 100, 4) = %p is not a regal block", (void *)arr);
    if (arr) {
        for (int i = 0; i < 100; i++)
            arr[i] = i;
        int *bigger = seen(reallocarray(seen(arr), 100000, sizeof(int)));
        EXPECT(bigger && owned(bigger) && bigger[99] == 99,
               "reallocarray growth = %p lost contents or is not regal's", (void *)bigger);
        if (bigger)
            arr = bigger;
        errno = 0;
        void *over = seen(reallocarray(arr, opaque(SIZE_MAX / 2), 4));
        EXPECT(over == NULL && errno == ENOMEM, "reallocarray overflow = %p, errno %d", over,
               errno);
        free(over);
    }
    free(arr);
    char *line = NULL;
    size_t cap = 0;
    static char text[] = "first line of text\nsecond\n";
    FILE *f = fmemopen(text, strlen(text), "r");
    if (f) {
        ssize_t len = getline(&line, &cap, f);
        EXPECT(len == 19 && line && owned(line), "getline buffer %p (%zd) is not a regal block",
               (void *)line, len);
        fclose(f);
    }
    free(line);
    char *msg = NULL;
    int n = asprintf(&msg, "%d-%s", 42, "answer");
    EXPECT(n == 9 && msg && owned(msg), "asprintf buffer %p is not a regal block", (void *)msg);
    free(msg);
    return ok;
}

#ifdef HAVE_REGAL_H
/* A pipe on stderr within this process, for short stretches. */
typedef struct capture {
    int saved, rd;
} capture;

static bool capture_begin(capture *c)
{
    int fds[2];
    fflush(stderr);
    if (pipe(fds) != 0)
        return false;
    c->saved = dup(2);
    dup2(fds[1], 2);
    close(fds[1]);
    c->rd = fds[0];
    return true;
}

static void capture_end(capture *c, char *buf, size_t cap)
{
    fflush(stderr);
    dup2(c->saved, 2); /* closes the last write end: read sees EOF */
    close(c->saved);
    size_t len = 0;
    ssize_t r;
    while (len + 1 < cap && (r = read(c->rd, buf + len, cap - 1 - len)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    close(c->rd);
}
#endif

/* Blocks of an explicit arena with the given flags, freed by free(). */
static bool explicit_arena_blocks_are_freed(unsigned flags)
{
    bool ok = true;
#ifdef HAVE_REGAL_H
    if (!regal_present() || !rg.arena_create || !rg.alloc || !rg.arena_destroy) {
        FAIL("regal API not found");
        return false;
    }
    regal_arena_config cfg = {"conformance", 0, flags};
    regal_arena *a = rg.arena_create(&cfg);
    EXPECT(a != NULL, "regal_arena_create failed");
    if (!a)
        return false;
    static const size_t sizes[] = {1, 100, 5000, 200000, 8 * MiB};
    void *p[ARRAY_LEN(sizes)];
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        p[i] = seen(rg.alloc(a, sizes[i]));
        EXPECT(p[i] && rg.arena_of(p[i]) == a, "regal_alloc(a, %zu) = %p", sizes[i], p[i]);
        if (p[i])
            memset(p[i], 0x42, sizes[i]);
    }
    regal_stats s0, s1;
    rg.arena_stats(a, &s0);
    char err[2048] = "";
    capture c;
    bool captured = capture_begin(&c);
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++)
        free(p[i]);
    if (captured)
        capture_end(&c, err, sizeof err);
    rg.arena_stats(a, &s1);
    EXPECT(regal_lines(err) == 0, "free of explicit-arena blocks reported an error: %s", err);
    EXPECT(s1.blocks_in_use + ARRAY_LEN(sizes) == s0.blocks_in_use &&
               s1.free_count == s0.free_count + ARRAY_LEN(sizes),
           "arena stats after free(): blocks_in_use %zu -> %zu, free_count %zu -> %zu",
           s0.blocks_in_use, s1.blocks_in_use, s0.free_count, s1.free_count);
    EXPECT(rg.arena_check(a) == 0, "regal_arena_check(explicit arena) failed after free()");
    rg.arena_destroy(a);
#else
    (void)flags;
    FAIL("built without regal.h");
#endif
    return ok;
}

static bool explicit_arena_blocks_are_freed_by_free(void)
{
    return explicit_arena_blocks_are_freed(0);
}

/* free's fast path takes only the default arena's blocks: a single-thread
 * arena's go through the slow path (no lock there). */
static bool single_thread_arena_blocks_are_freed_by_free(void)
{
    return explicit_arena_blocks_are_freed(REGAL_ARENA_SINGLE_THREAD);
}

/* Child bodies for the misuse checks.  Exit status bits say what went wrong:
 * 1 errno changed by free, 2 the heap stopped working, 4 regal_arena_check
 * failed, 8 a block changed. */

static int heap_still_works(void)
{
    int rc = 0;
    for (size_t n = 1; n < 4 * MiB; n = n * 3 + 1) {
        unsigned char *q = seen(malloc(n));
        if (!q)
            return 2;
        memset(q, 0x6b, n);
        if (q[n - 1] != 0x6b)
            rc |= 2;
        free(q);
    }
#ifdef HAVE_REGAL_H
    if (regal_present() && rg.arena_check(rg.default_arena()) != 0)
        rc |= 4;
#endif
    return rc;
}

static int child_free_stack(void *arg)
{
    void *volatile p = arg;
    int rc = 0;
    errno = EDOM;
    free(p);
    if (errno != EDOM)
        rc |= 1;
    return rc | heap_still_works();
}

static int child_double_free(void *arg)
{
    (void)arg;
    int rc = 0;
    static const size_t sizes[] = {48, 5000, 300000};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *volatile p = malloc(sizes[i]);
        if (!p)
            return 2;
        memset(p, 1, sizes[i]);
        free(p);
        errno = EDOM;
        free(p); /* the misuse */
        if (errno != EDOM)
            rc |= 1;
    }
    return rc | heap_still_works();
}

static int child_free_interior(void *arg)
{
    (void)arg;
    int rc = 0;
    static const size_t sizes[] = {100, 5000, 8 * MiB};
    static const size_t offset[] = {8, 16, 4096};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        unsigned char *p = seen(malloc(sizes[i]));
        if (!p)
            return 2;
        fill(p, sizes[i], 1);
        void *volatile inner = p + offset[i];
        errno = EDOM;
        free(inner); /* the misuse */
        if (errno != EDOM)
            rc |= 1;
        if (!filled(p, sizes[i], 1))
            rc |= 8;
        fill(p, sizes[i], 2); /* the block is still the caller's */
        free(p);
    }
    return rc | heap_still_works();
}

typedef struct misuse {
    const char *what;
    int (*body)(void *arg);
    int reports; /* "regal:" lines expected */
} misuse;

static bool misuse_is_reported_and_ignored(const misuse *m, void *arg, const void *named)
{
    bool ok = true;
    if (!regal_present()) {
        FAIL("regal is not the malloc; not attempting %s", m->what);
        return false;
    }
    child_result res;
    if (!run_child(m->body, arg, &res)) {
        FAIL("fork/pipe failed");
        return false;
    }
    bool exited = WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0;
    int lines = regal_lines(res.err);
    EXPECT(exited, "%s: the child did not finish cleanly (bits: 1 errno, 2 heap, 4 check, 8 block)",
           m->what);
    EXPECT(lines == m->reports, "%s: %d \"regal:\" lines on stderr, expected %d", m->what, lines,
           m->reports);
    if (named)
        EXPECT(names_pointer(res.err, named), "%s: the report does not name the pointer %p",
               m->what, named);
    if (!ok)
        diag_child(&res);
    return ok;
}

static bool free_of_a_stack_address_is_reported_and_ignored(void)
{
    /* The child runs on a copy of this frame: the same address is its stack. */
    char frame[64];
    memset(frame, 0, sizeof frame);
    static const misuse m = {"free(stack address)", child_free_stack, 1};
    return misuse_is_reported_and_ignored(&m, frame + 16, frame + 16);
}

static bool double_free_is_reported_and_ignored(void)
{
    static const misuse m = {"double free", child_double_free, 3};
    return misuse_is_reported_and_ignored(&m, NULL, NULL);
}

static bool free_of_an_interior_pointer_is_reported_and_ignored(void)
{
    static const misuse m = {"free(interior pointer)", child_free_interior, 3};
    return misuse_is_reported_and_ignored(&m, NULL, NULL);
}

static bool default_arena_is_consistent(void)
{
    bool ok = true;
#ifdef HAVE_REGAL_H
    if (!regal_present()) {
        FAIL("regal API not found");
        return false;
    }
    EXPECT(rg.arena_check(rg.default_arena()) == 0, "regal_arena_check(default arena) != 0");
#else
    FAIL("built without regal.h");
#endif
    return ok;
}

/* ---- Driver ------------------------------------------------------------------ */

static const struct {
    const char *name;
    bool (*run)(void);
} checks[] = {
    {"runs under regal (default arena counts this program's mallocs)", runs_under_regal},
    {"a small program is charged little memory (VmData under 32 MiB)",
     a_small_program_is_charged_little_memory},
    {"malloc gives distinct, 16-aligned, writable blocks (0..4096 B, 8 KiB..8 MiB)",
     malloc_gives_distinct_aligned_writable_blocks},
    {"malloc(0) and zero-size calloc give unique, freeable pointers",
     zero_sizes_give_unique_freeable_pointers},
    {"free(NULL) is a no-op and free keeps errno", free_null_is_a_noop_and_free_keeps_errno},
    {"calloc zeroes fresh memory", calloc_zeroes_fresh_memory},
    {"calloc zeroes recycled memory", calloc_zeroes_recycled_memory},
    {"calloc fails with ENOMEM when count * size overflows", calloc_overflow_fails_with_enomem},
    {"sizes above PTRDIFF_MAX fail with ENOMEM; a failed realloc keeps the block",
     huge_sizes_fail_with_enomem},
    {"huge aligned requests fail with ENOMEM (posix_memalign, aligned_alloc, memalign, valloc, "
     "pvalloc)",
     huge_aligned_requests_fail_with_enomem},
    {"realloc(NULL, n) acts as malloc(n)", realloc_null_acts_as_malloc},
    {"realloc keeps contents when growing and shrinking",
     realloc_keeps_contents_when_growing_and_shrinking},
    {"realloc(p, 0) frees p and returns NULL", realloc_to_zero_frees_and_returns_null},
    {"posix_memalign gives aligned blocks (8 B .. 2 MiB)", posix_memalign_gives_aligned_blocks},
    {"many live small aligned blocks are aligned", many_live_aligned_blocks_are_aligned},
    {"posix_memalign returns EINVAL for bad alignments and leaves *memptr alone",
     posix_memalign_rejects_bad_alignments},
    {"aligned_alloc gives aligned blocks (1 B .. 2 MiB)", aligned_alloc_gives_aligned_blocks},
    {"aligned_alloc with alignment 0 or a non-power of two fails with EINVAL",
     aligned_alloc_rejects_bad_alignments},
    {"memalign gives aligned blocks (1 B .. 2 MiB)", memalign_gives_aligned_blocks},
    {"memalign with alignment 0 or a non-power of two fails with EINVAL",
     memalign_rejects_bad_alignments},
    {"valloc gives page-aligned blocks", valloc_gives_page_aligned_blocks},
    {"pvalloc gives page-aligned blocks rounded up to whole pages",
     pvalloc_rounds_up_to_whole_pages},
    {"malloc_usable_size covers the request and is writable to the end; 0 for NULL",
     usable_size_covers_the_request_and_is_writable},
    {"malloc_trim returns 0 or 1 and keeps live blocks",
     malloc_trim_returns_0_or_1_and_keeps_live_blocks},
    {"malloc_trim(0) after freeing 90% of a fragmented heap returns 1 and RSS drops by the freed "
     "pages",
     malloc_trim_releases_the_pages_of_freed_blocks},
    {"mallinfo2 reports the live bytes in uordblks", mallinfo2_reports_live_bytes},
    {"mallinfo, malloc_stats and mallopt are callable",
     mallinfo_malloc_stats_and_mallopt_are_callable},
    {"__libc_* aliases allocate from regal and mix with free", libc_aliases_allocate_from_regal},
    {"glibc's strdup, strndup, reallocarray, getline, asprintf allocate through the shim",
     glibc_helpers_allocate_through_the_shim},
    {"explicit-arena blocks (regal_alloc) are freed by plain free",
     explicit_arena_blocks_are_freed_by_free},
    {"single-thread arena blocks are freed by plain free",
     single_thread_arena_blocks_are_freed_by_free},
    {"free of a stack address is reported (regal: line) and ignored",
     free_of_a_stack_address_is_reported_and_ignored},
    {"double free is reported and ignored", double_free_is_reported_and_ignored},
    {"free of an interior pointer is reported and ignored",
     free_of_an_interior_pointer_is_reported_and_ignored},
    {"default arena is consistent at the end (regal_arena_check)", default_arena_is_consistent},
};

int main(void)
{
    regal_api_load();
    printf("1..%zu\n", ARRAY_LEN(checks));
    fflush(stdout);
    int failed = 0;
    for (size_t i = 0; i < ARRAY_LEN(checks); i++) {
        diag_budget = 8;
        bool ok = checks[i].run();
        printf("%s %zu - %s\n", ok ? "ok" : "not ok", i + 1, checks[i].name);
        fflush(stdout);
        failed += !ok;
    }
    return failed ? 1 : 0;
}
