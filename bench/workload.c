/*
 * workload: the helpers of workload.h.  Everything here runs under the
 * allocator being measured, so it allocates nothing itself except through
 * stdio at start and end.
 */
#include "workload.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STRIDE 4096u /* one written byte per page */
#define HEAD   16u   /* leading bytes written in full */

/* ---- Options --------------------------------------------------------------- */

static void usage(FILE *out, const struct wl_option *opts, size_t nopts, const char *summary)
{
    fprintf(out, "usage: %s [options]\n%s\n", program_invocation_short_name, summary);
    for (size_t i = 0; i < nopts; i++) {
        const char *arg = opts[i].kind == WL_FLAG    ? ""
                          : opts[i].kind == WL_BYTES ? " BYTES"
                          : opts[i].kind == WL_SCALE ? " X"
                                                     : " N";
        char name[40];
        snprintf(name, sizeof name, "%s%s", opts[i].name, arg);
        fprintf(out, "  %-22s %s\n", name, opts[i].help);
    }
    fprintf(out, "BYTES may end in K, M or G (KiB, MiB, GiB).\n");
}

/* A positive integer with, when suffixes, an optional K, M or G. */
static bool parse_size(const char *s, bool suffixes, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || v == 0 || s[0] == '-')
        return false;
    unsigned shift = 0;
    if (suffixes && *end != '\0' && strchr("KkMmGg", *end) != NULL) {
        shift = *end == 'K' || *end == 'k' ? 10 : *end == 'M' || *end == 'm' ? 20 : 30;
        end++;
    }
    if (*end != '\0' || v > (SIZE_MAX >> shift))
        return false;
    *out = (size_t)v << shift;
    return true;
}

static bool parse_value(const struct wl_option *o, const char *s)
{
    if (o->kind == WL_SCALE) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno != 0 || end == s || *end != '\0' || !(v > 0))
            return false;
        *(double *)o->value = v;
        return true;
    }
    return parse_size(s, o->kind == WL_BYTES, o->value);
}

void wl_parse(int argc, char **argv, const struct wl_option *opts, size_t nopts,
              const char *summary)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout, opts, nopts, summary);
            exit(EXIT_SUCCESS);
        }
        const struct wl_option *o = NULL;
        for (size_t k = 0; k < nopts && o == NULL; k++)
            if (strcmp(argv[i], opts[k].name) == 0)
                o = &opts[k];
        bool ok = o != NULL;
        if (ok && o->kind == WL_FLAG)
            *(bool *)o->value = true;
        else if (ok)
            ok = i + 1 < argc && parse_value(o, argv[++i]);
        if (!ok) {
            fprintf(stderr, "%s: bad argument '%s'\n", program_invocation_short_name, argv[i]);
            usage(stderr, opts, nopts, summary);
            exit(2);
        }
    }
}

size_t wl_scaled(size_t n, double scale)
{
    double v = (double)n * scale + 0.5;
    return v < 1 ? 1 : (size_t)v;
}

/* ---- Symbols --------------------------------------------------------------------- */

/* Whether symbol sym lives in the library whose file name is lib. */
static bool comes_from(const void *sym, const char *lib)
{
    Dl_info info;
    if (dladdr(sym, &info) == 0 || info.dli_fname == NULL)
        return false;
    const char *base = strrchr(info.dli_fname, '/');
    return strcmp(base != NULL ? base + 1 : info.dli_fname, lib) == 0;
}

/* The memcpy is POSIX's way from dlsym's void * to a function pointer. */
void (*wl_function(void *handle, const char *name, const char *lib))(void)
{
    void (*fn)(void) = NULL;
    void *sym = dlsym(handle, name);
    if (sym != NULL && (lib == NULL || comes_from(sym, lib)))
        memcpy(&fn, &sym, sizeof fn);
    return fn;
}

/* ---- Time and memory ------------------------------------------------------------ */

double wl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t wl_rss_kib(void)
{
    unsigned long pages_total, pages_resident;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    int n = fscanf(f, "%lu %lu", &pages_total, &pages_resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? (size_t)pages_resident * (size_t)page / 1024 : 0;
}

size_t wl_peak_rss_kib(void)
{
    char line[128];
    size_t kib = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmHWM: %zu kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* ---- Random numbers ------------------------------------------------------------- */

void wl_rng_init(struct wl_rng *r, uint64_t seed, uint64_t stream)
{
    r->state = seed ^ (stream * 0xd1342543de82ef95u);
    (void)wl_rng_next(r);
}

uint64_t wl_rng_next(struct wl_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

uint64_t wl_rng_below(struct wl_rng *r, uint64_t n)
{
    return wl_rng_next(r) % n;
}

size_t wl_rng_range(struct wl_rng *r, size_t min, size_t max)
{
    return min + (size_t)wl_rng_below(r, (uint64_t)(max - min) + 1);
}

static unsigned floor_log2(size_t n)
{
    return (unsigned)(63 - __builtin_clzll((unsigned long long)n));
}

/* Octaves [2^k, 2^(k+1)) from the one holding min to the one holding
 * max - 1, the last one stretched to include max: a power-of-two max does
 * not get an octave of its own. */
size_t wl_rng_log_size(struct wl_rng *r, size_t min, size_t max)
{
    if (min >= max)
        return min;
    unsigned lo = floor_log2(min), hi = floor_log2(max - 1);
    unsigned octave = lo + (unsigned)wl_rng_below(r, hi - lo + 1);
    size_t from = (size_t)1 << octave, to = (from << 1) - 1;
    if (from < min)
        from = min;
    if (octave == hi)
        to = max;
    return wl_rng_range(r, from, to);
}

/* ---- Blocks ------------------------------------------------------------------------ */

static _Noreturn void out_of_memory(const char *call, size_t size)
{
    fprintf(stderr, "%s: %s(%zu) failed: %s\n", program_invocation_short_name, call, size,
            strerror(errno));
    exit(EXIT_FAILURE);
}

void *wl_malloc(size_t size)
{
    void *p = malloc(size);
    if (p == NULL)
        out_of_memory("malloc", size);
    return p;
}

void *wl_realloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (q == NULL)
        out_of_memory("realloc", size);
    return q;
}

/* The byte of tag's pattern at offset off: a mix of both, so that blocks
 * with nearby tags at nearby addresses still disagree. */
static inline unsigned char pattern(uint64_t tag, size_t off)
{
    uint64_t x = (tag ^ ((uint64_t)off * 0xff51afd7ed558ccdu)) * 0x9e3779b97f4a7c15u;
    return (unsigned char)((x ^ (x >> 29)) >> 56);
}

/* Runs body with off set to each offset wl_fill writes: [0, min(size,
 * HEAD)), every multiple of STRIDE below size, and size - 1 unless the
 * first range holds it. */
#define FOR_EACH_FILLED(size, off, body)                                                           \
    do {                                                                                           \
        size_t head_ = (size) < HEAD ? (size) : HEAD;                                              \
        for (size_t off = 0; off < head_; off++)                                                   \
            body;                                                                                  \
        for (size_t off = STRIDE; off < (size); off += STRIDE)                                     \
            body;                                                                                  \
        if ((size) > head_) {                                                                      \
            size_t off = (size)-1;                                                                 \
            body;                                                                                  \
        }                                                                                          \
    } while (0)

_Noreturn void wl_corrupted(const void *p, size_t size, size_t off, unsigned char want,
                            const char *when)
{
    fprintf(stderr, "%s: block %p (%zu bytes): byte %zu is 0x%02x, expected 0x%02x %s\n",
            program_invocation_short_name, p, size, off, ((const unsigned char *)p)[off], want,
            when);
    exit(3);
}

void wl_fill(void *p, size_t size, uint64_t tag)
{
    unsigned char *b = p;
    if (size == 0)
        return;
    FOR_EACH_FILLED(size, off, b[off] = pattern(tag, off));
}

void wl_check(const void *p, size_t size, uint64_t tag, const char *when)
{
    const unsigned char *b = p;
    if (size == 0)
        return;
    FOR_EACH_FILLED(size, off, {
        if (b[off] != pattern(tag, off))
            wl_corrupted(p, size, off, pattern(tag, off), when);
    });
}

/* ---- Threads --------------------------------------------------------------------- */

void wl_run_threads(size_t n, void *(*fn)(void *), void *args, size_t arg_size)
{
    pthread_t *tids = wl_malloc(n * sizeof *tids);
    for (size_t i = 0; i < n; i++) {
        int err = pthread_create(&tids[i], NULL, fn, (char *)args + i * arg_size);
        if (err != 0) {
            fprintf(stderr, "%s: pthread_create: %s\n", program_invocation_short_name,
                    strerror(err));
            exit(EXIT_FAILURE);
        }
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(tids[i], NULL);
    free(tids);
}

/* ---- Output ---------------------------------------------------------------------- */

int wl_finish(double seconds, const char *extra)
{
    printf("%.6f%s%s\n", seconds, extra != NULL ? " " : "", extra != NULL ? extra : "");
    return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

void wl_block_replace(struct wl_block *b, size_t size, uint64_t tag)
{
    if (b->p != NULL) {
        wl_check(b->p, b->size, b->tag, "before free");
        free(b->p);
    }
    b->size = size;
    b->tag = tag;
    b->p = wl_malloc(size);
    wl_fill(b->p, size, tag);
}

struct wl_block *wl_blocks_new(size_t n)
{
    struct wl_block *b = wl_malloc(n * sizeof *b);
    memset(b, 0, n * sizeof *b);
    return b;
}

void wl_blocks_free(struct wl_block *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (b[i].p != NULL)
            wl_check(b[i].p, b[i].size, b[i].tag, "at the end");
        free(b[i].p);
    }
    free(b);
}
