/*
 * arena_peers: regal's arena API beside the closest thing each peer
 * offers, in nanoseconds per object.
 *
 *   arena_peers [--reps N] [--scale X] [--tsv]
 *       The driver: runs every (scenario, variant) in its own child
 *       process, REPS times (default 5), the variants interleaved (the
 *       first one rotates from rep to rep), and prints per variant the
 *       median ns per object, the median peak RSS of the child and the
 *       ratios to the glibc and the mimalloc variant of the scenario.
 *       --tsv prints tab-separated lines instead (bench/run reads them):
 *       scenario, variant, median ns, median peak RSS KiB, fastest,
 *       slowest.
 *   arena_peers --child SCENARIO VARIANT SCALE
 *       One measurement; prints "ns_per_object peak_rss_kib".
 *
 * Scenarios:
 *   frame  FRAMES frames (default 1000) of OBJECTS objects (10000) of
 *          log-uniform sizes in [16, 512], the same sizes every frame, all
 *          released at the end of the frame, as a game or a request
 *          handler does with its per-frame data.  Variants:
 *            regal_arena  regal_alloc, then one regal_arena_reset
 *            regal_free   regal_alloc, then regal_free of each object
 *            glibc        malloc, then free of each: glibc's own, looked
 *                         up in libc.so.6 (linking mimalloc puts its malloc
 *                         and its __libc_malloc in front of glibc's for the
 *                         whole program)
 *            mi_heap      mi_heap_new, mi_heap_malloc, then one
 *                         mi_heap_destroy: mimalloc's arena equivalent
 *            mi_free      mi_malloc, then mi_free of each
 *            jemalloc     malloc, then free of each, in a child run with
 *            tcmalloc     LD_PRELOAD of the Debian package's library (the
 *                         variant is left out when the library is absent)
 *   pool   entities of 96 bytes: 10000 live, then STEPS times (default
 *          10M) a random one is freed and a new one allocated in its place.
 *          Variants:
 *            regal_pool   regal_pool_alloc / regal_pool_free
 *            regal_free   regal_alloc / regal_free
 *            glibc        glibc's malloc / free, as in frame
 *            mi_free      mi_malloc / mi_free (mimalloc has no pools; its
 *                         size-segregated pages are the equivalent)
 *            jemalloc     malloc / free, jemalloc preloaded
 *            tcmalloc     malloc / free, tcmalloc preloaded
 * regal's arena is REGAL_ARENA_SINGLE_THREAD, as mimalloc's heaps are
 * thread-local; the mi_* variants exist when meson found mimalloc
 * (BENCH_MIMALLOC).  --scale multiplies FRAMES and STEPS.
 *
 * Every object gets a tag in its first 8 bytes, checked before it is
 * released (exit 3 on a mismatch); a regal child ends with
 * regal_arena_check().  The time covers everything after one untimed
 * warm-up frame (frame) or the first 10000 entities (pool).
 */
#include <dlfcn.h>
#include <errno.h>
#include <regal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "workload.h"

#if BENCH_MIMALLOC
#include <mimalloc.h>
#endif

#define OBJECTS     10000
#define FRAMES      1000
#define ENTITIES    10000
#define ENTITY_SIZE 96
#define STEPS       10000000
#define MAX_REPS    99

/* glibc's own allocator, whatever malloc resolves to in this program:
 * mimalloc, when linked, exports both malloc and __libc_malloc, so only a
 * lookup in libc.so.6 itself finds glibc's (glibc_resolve). */
static void *(*glibc_malloc)(size_t size);
static void (*glibc_free)(void *p);

enum variant {
    REGAL_ARENA,
    REGAL_POOL,
    REGAL_FREE,
    GLIBC,
    MI_HEAP,
    MI_FREE,
    JEMALLOC,
    TCMALLOC,
    VARIANTS
};
static const char *const variant_names[VARIANTS] = {"regal_arena", "regal_pool", "regal_free",
                                                    "glibc",       "mi_heap",    "mi_free",
                                                    "jemalloc",    "tcmalloc"};

/* The preloaded variants: plain malloc and free in a child whose
 * LD_PRELOAD names the peer's library (it comes before the mimalloc this
 * program may link), and a symbol only that library has, checked in the
 * child so that a preload that did not take is an error, not a wrong row. */
#define PEER_LIBDIR "/usr/lib/x86_64-linux-gnu/"
static const char *const preload_of[VARIANTS] = {
    [JEMALLOC] = PEER_LIBDIR "libjemalloc.so.2",
    [TCMALLOC] = PEER_LIBDIR "libtcmalloc_minimal.so.4",
};
static const char *const marker_of[VARIANTS] = {[JEMALLOC] = "mallocx", [TCMALLOC] = "tc_malloc"};

enum scenario { FRAME, POOL, SCENARIOS };
static const char *const scenario_names[SCENARIOS] = {"frame", "pool"};

/* The variants of each scenario, in table order; the first two are the
 * bases of the ratios (glibc, then mimalloc's). */
static const enum variant frame_variants[] = {GLIBC,    MI_HEAP,     MI_FREE,   JEMALLOC,
                                              TCMALLOC, REGAL_ARENA, REGAL_FREE};
static const enum variant pool_variants[] = {GLIBC,    MI_FREE,  REGAL_POOL,
                                             JEMALLOC, TCMALLOC, REGAL_FREE};

static bool variant_available(enum variant v)
{
    if (preload_of[v] != NULL)
        return access(preload_of[v], R_OK) == 0;
    return BENCH_MIMALLOC || (v != MI_HEAP && v != MI_FREE);
}

/* ---- Child: one measurement ------------------------------------------------ */

static regal_arena *arena;
static regal_pool *pool;
#if BENCH_MIMALLOC
static mi_heap_t *heap;
#endif

static _Noreturn void fail(const char *what, size_t size)
{
    fprintf(stderr, "arena_peers: %s(%zu) failed: %s\n", what, size, strerror(errno));
    exit(EXIT_FAILURE);
}

/* Called with a constant variant, so each loop below folds to direct calls. */
static inline __attribute__((always_inline)) void *obj_alloc(enum variant v, size_t size)
{
    void *p = NULL;
    switch (v) {
    case REGAL_ARENA:
    case REGAL_FREE:
        p = regal_alloc(arena, size);
        break;
    case REGAL_POOL:
        p = regal_pool_alloc(pool);
        break;
    case GLIBC:
        p = glibc_malloc(size);
        break;
    case JEMALLOC:
    case TCMALLOC:
        p = malloc(size);
        break;
#if BENCH_MIMALLOC
    case MI_HEAP:
        p = mi_heap_malloc(heap, size);
        break;
    case MI_FREE:
        p = mi_malloc(size);
        break;
#endif
    default:
        break;
    }
    if (__builtin_expect(p == NULL, 0))
        fail(variant_names[v], size);
    return p;
}

static inline __attribute__((always_inline)) void obj_free(enum variant v, void *p)
{
    switch (v) {
    case REGAL_FREE:
        regal_free(p);
        break;
    case REGAL_POOL:
        regal_pool_free(pool, p);
        break;
    case GLIBC:
        glibc_free(p);
        break;
    case JEMALLOC:
    case TCMALLOC:
        free(p);
        break;
#if BENCH_MIMALLOC
    case MI_FREE:
        mi_free(p);
        break;
#endif
    default:
        break;
    }
}

static inline void tag_set(void *p, uint64_t tag)
{
    memcpy(p, &tag, sizeof tag);
}

static inline void tag_check(const void *p, uint64_t tag)
{
    uint64_t got;
    memcpy(&got, p, sizeof got);
    if (__builtin_expect(got != tag, 0))
        wl_corrupted(p, sizeof tag, 0, (unsigned char)tag, "(its tag changed)");
}

static inline __attribute__((always_inline)) void frame_begin(enum variant v)
{
#if BENCH_MIMALLOC
    if (v == MI_HEAP && (heap = mi_heap_new()) == NULL)
        fail("mi_heap_new", 0);
#else
    (void)v;
#endif
}

static inline __attribute__((always_inline)) void frame_end(enum variant v, void **objs, size_t n)
{
    if (v == REGAL_ARENA)
        regal_arena_reset(arena);
#if BENCH_MIMALLOC
    else if (v == MI_HEAP)
        mi_heap_destroy(heap);
#endif
    else
        for (size_t i = 0; i < n; i++)
            obj_free(v, objs[i]);
}

static inline __attribute__((always_inline)) void run_frames(enum variant v, const size_t *sizes,
                                                             void **objs, size_t frames)
{
    for (size_t f = 0; f < frames; f++) {
        frame_begin(v);
        for (size_t i = 0; i < OBJECTS; i++) {
            objs[i] = obj_alloc(v, sizes[i]);
            tag_set(objs[i], (uint64_t)f << 32 | i);
        }
        for (size_t i = 0; i < OBJECTS; i++)
            tag_check(objs[i], (uint64_t)f << 32 | i);
        frame_end(v, objs, OBJECTS);
    }
}

static inline __attribute__((always_inline)) void run_pool(enum variant v, void **objs,
                                                           uint64_t *tags, size_t steps)
{
    struct wl_rng rng;
    wl_rng_init(&rng, 0x706f6f6c, 0);
    for (size_t i = 0; i < steps; i++) {
        size_t k = (size_t)wl_rng_below(&rng, ENTITIES);
        tag_check(objs[k], tags[k]);
        obj_free(v, objs[k]);
        objs[k] = obj_alloc(v, ENTITY_SIZE);
        tags[k] = ENTITIES + i;
        tag_set(objs[k], tags[k]);
    }
}

/* One out-of-line loop per (scenario, variant), so that each runs its own
 * direct calls. */
#define FRAME_LOOP(v)                                                                              \
    static __attribute__((noinline)) void frames_##v(const size_t *s, void **o, size_t n)          \
    {                                                                                              \
        run_frames(v, s, o, n);                                                                    \
    }
#define POOL_LOOP(v)                                                                               \
    static __attribute__((noinline)) void pool_##v(void **o, uint64_t *t, size_t n)                \
    {                                                                                              \
        run_pool(v, o, t, n);                                                                      \
    }
FRAME_LOOP(REGAL_ARENA)
FRAME_LOOP(REGAL_FREE)
FRAME_LOOP(GLIBC)
FRAME_LOOP(JEMALLOC)
FRAME_LOOP(TCMALLOC)
POOL_LOOP(REGAL_POOL)
POOL_LOOP(REGAL_FREE)
POOL_LOOP(GLIBC)
POOL_LOOP(JEMALLOC)
POOL_LOOP(TCMALLOC)
#if BENCH_MIMALLOC
FRAME_LOOP(MI_HEAP)
FRAME_LOOP(MI_FREE)
POOL_LOOP(MI_FREE)
#endif

static void (*const frame_loops[VARIANTS])(const size_t *, void **, size_t) = {
    [REGAL_ARENA] = frames_REGAL_ARENA, [REGAL_FREE] = frames_REGAL_FREE, [GLIBC] = frames_GLIBC,
    [JEMALLOC] = frames_JEMALLOC,       [TCMALLOC] = frames_TCMALLOC,
#if BENCH_MIMALLOC
    [MI_HEAP] = frames_MI_HEAP,         [MI_FREE] = frames_MI_FREE,
#endif
};
static void (*const pool_loops[VARIANTS])(void **, uint64_t *, size_t) = {
    [REGAL_POOL] = pool_REGAL_POOL, [REGAL_FREE] = pool_REGAL_FREE, [GLIBC] = pool_GLIBC,
    [JEMALLOC] = pool_JEMALLOC,     [TCMALLOC] = pool_TCMALLOC,
#if BENCH_MIMALLOC
    [MI_FREE] = pool_MI_FREE,
#endif
};

static double measure_frames(enum variant v, size_t frames)
{
    static size_t sizes[OBJECTS];
    static void *objs[OBJECTS];
    struct wl_rng rng;
    wl_rng_init(&rng, 0x6672616d65, 0);
    for (size_t i = 0; i < OBJECTS; i++)
        sizes[i] = wl_rng_log_size(&rng, 16, 512);
    frame_loops[v](sizes, objs, 1);
    double t0 = wl_now();
    frame_loops[v](sizes, objs, frames);
    return (wl_now() - t0) * 1e9 / (double)(frames * OBJECTS);
}

static double measure_pool(enum variant v, size_t steps)
{
    static void *objs[ENTITIES];
    static uint64_t tags[ENTITIES];
    for (size_t k = 0; k < ENTITIES; k++) {
        objs[k] = obj_alloc(v, ENTITY_SIZE);
        tags[k] = k;
        tag_set(objs[k], k);
    }
    double t0 = wl_now();
    pool_loops[v](objs, tags, steps);
    double ns = (wl_now() - t0) * 1e9 / (double)steps;
    for (size_t k = 0; k < ENTITIES; k++) {
        tag_check(objs[k], tags[k]);
        obj_free(v, objs[k]);
    }
    return ns;
}

/* Finds glibc's malloc and free in libc.so.6 (a handle's lookup starts at
 * that library, not at the program); false with a message if they are not
 * glibc's. */
static bool glibc_resolve(void)
{
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (libc != NULL) {
        glibc_malloc = (void *(*)(size_t))wl_function(libc, "malloc", "libc.so.6");
        glibc_free = (void (*)(void *))wl_function(libc, "free", "libc.so.6");
    }
    if (glibc_malloc != NULL && glibc_free != NULL)
        return true;
    fprintf(stderr, "arena_peers: glibc's malloc and free not found in libc.so.6\n");
    return false;
}

static int child_main(enum scenario sc, enum variant v, double scale)
{
    if (v == GLIBC && !glibc_resolve())
        return EXIT_FAILURE;
    if (marker_of[v] != NULL && dlsym(RTLD_DEFAULT, marker_of[v]) == NULL) {
        fprintf(stderr, "arena_peers: %s is not loaded (LD_PRELOAD=%s)\n", preload_of[v],
                getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "");
        return EXIT_FAILURE;
    }
    if (v == REGAL_ARENA || v == REGAL_POOL || v == REGAL_FREE) {
        regal_arena_config cfg = {.name = "arena_peers", .flags = REGAL_ARENA_SINGLE_THREAD};
        if ((arena = regal_arena_create(&cfg)) == NULL)
            fail("regal_arena_create", 0);
        if (v == REGAL_POOL && (pool = regal_pool_create(arena, ENTITY_SIZE, 0)) == NULL)
            fail("regal_pool_create", ENTITY_SIZE);
    }
    double ns = sc == FRAME ? measure_frames(v, wl_scaled(FRAMES, scale))
                            : measure_pool(v, wl_scaled(STEPS, scale));
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (arena != NULL) {
        if (regal_arena_check(arena) != 0) {
            fprintf(stderr, "arena_peers: regal_arena_check failed\n");
            return 3;
        }
        regal_arena_destroy(arena);
    }
    printf("%.3f %ld\n", ns, ru.ru_maxrss);
    return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ---- Driver ------------------------------------------------------------------ */

struct sample {
    double ns, rss_kib;
};

/* Runs one child and reads its line; false (with a message) on failure. */
static bool run_child(enum scenario sc, enum variant v, double scale, struct sample *out)
{
    char scale_arg[32];
    snprintf(scale_arg, sizeof scale_arg, "%g", scale);
    char *argv[] = {"arena_peers", "--child", (char *)scenario_names[sc], (char *)variant_names[v],
                    scale_arg,     NULL};
    int fds[2];
    if (pipe(fds) != 0) {
        perror("arena_peers: pipe");
        return false;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("arena_peers: fork");
        return false;
    }
    if (pid == 0) {
        close(fds[0]);
        if (dup2(fds[1], STDOUT_FILENO) < 0)
            _exit(127);
        if (preload_of[v] != NULL && setenv("LD_PRELOAD", preload_of[v], 1) != 0)
            _exit(127);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(fds[1]);
    char line[128] = "";
    FILE *in = fdopen(fds[0], "r");
    if (in == NULL || fgets(line, sizeof line, in) == NULL)
        line[0] = '\0';
    if (in != NULL)
        fclose(in);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            perror("arena_peers: waitpid");
            return false;
        }
    long rss;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        sscanf(line, "%lf %ld", &out->ns, &rss) != 2) {
        fprintf(stderr,
                "arena_peers: child %s %s failed (status 0x%x); reproduce: %s --child %s %s %s\n",
                scenario_names[sc], variant_names[v], (unsigned)status, "arena_peers",
                scenario_names[sc], variant_names[v], scale_arg);
        return false;
    }
    out->rss_kib = (double)rss;
    return true;
}

static int compare_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, compare_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static void scenario_variants(enum scenario sc, const enum variant **list, size_t *n)
{
    *list = sc == FRAME ? frame_variants : pool_variants;
    *n = sc == FRAME ? sizeof frame_variants / sizeof frame_variants[0]
                     : sizeof pool_variants / sizeof pool_variants[0];
}

static int driver_main(size_t reps, double scale, bool tsv)
{
    static struct sample results[SCENARIOS][VARIANTS][MAX_REPS];
    for (size_t rep = 0; rep < reps; rep++) {
        for (int sc = 0; sc < SCENARIOS; sc++) {
            const enum variant *list;
            size_t n;
            scenario_variants((enum scenario)sc, &list, &n);
            for (size_t k = 0; k < n; k++) {
                enum variant v = list[(rep + k) % n];
                if (!variant_available(v))
                    continue;
                if (!run_child((enum scenario)sc, v, scale, &results[sc][v][rep]))
                    return EXIT_FAILURE;
                fprintf(stderr, "  rep %zu %-5s %-11s %8.2f ns %8.0f KiB\n", rep + 1,
                        scenario_names[sc], variant_names[v], results[sc][v][rep].ns,
                        results[sc][v][rep].rss_kib);
            }
        }
    }

    if (!tsv) {
        printf("# arena_peers: median of %zu interleaved runs, each in its own process;"
               " ns per object (frame) or per free+alloc (pool); rss = peak RSS of the child;"
               " x_glibc, x_mi = ratio to the glibc and the mimalloc variant\n",
               reps);
        printf("%-6s %-12s %8s %8s %8s %9s  %s\n", "scen", "variant", "ns", "x_glibc", "x_mi",
               "rss_KiB", "range_ns");
    }
    for (int sc = 0; sc < SCENARIOS; sc++) {
        const enum variant *list;
        size_t n;
        scenario_variants((enum scenario)sc, &list, &n);
        double med_ns[VARIANTS] = {0}, med_rss[VARIANTS] = {0};
        double lo[VARIANTS] = {0}, hi[VARIANTS] = {0};
        for (size_t k = 0; k < n; k++) {
            enum variant v = list[k];
            if (!variant_available(v))
                continue;
            double ns[MAX_REPS], rss[MAX_REPS];
            for (size_t r = 0; r < reps; r++) {
                ns[r] = results[sc][v][r].ns;
                rss[r] = results[sc][v][r].rss_kib;
            }
            med_ns[v] = median(ns, reps); /* sorts ns */
            lo[v] = ns[0];
            hi[v] = ns[reps - 1];
            med_rss[v] = median(rss, reps);
        }
        for (size_t k = 0; k < n; k++) {
            enum variant v = list[k];
            if (!variant_available(v))
                continue;
            if (tsv) {
                printf("%s\t%s\t%.3f\t%.0f\t%.3f\t%.3f\n", scenario_names[sc], variant_names[v],
                       med_ns[v], med_rss[v], lo[v], hi[v]);
                continue;
            }
            char x_mi[16] = "-";
            if (variant_available(list[1]))
                snprintf(x_mi, sizeof x_mi, "%.2f", med_ns[v] / med_ns[list[1]]);
            printf("%-6s %-12s %8.2f %8.2f %8s %9.0f  %.2f..%.2f\n", scenario_names[sc],
                   variant_names[v], med_ns[v], med_ns[v] / med_ns[list[0]], x_mi, med_rss[v],
                   lo[v], hi[v]);
        }
    }
    return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static int lookup(const char *name, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--child") == 0) {
        int sc = lookup(argv[2], scenario_names, SCENARIOS);
        int v = lookup(argv[3], variant_names, VARIANTS);
        double scale = strtod(argv[4], NULL);
        if (sc < 0 || v < 0 || !variant_available((enum variant)v) || !(scale > 0)) {
            fprintf(stderr, "arena_peers: bad child arguments\n");
            return 2;
        }
        return child_main((enum scenario)sc, (enum variant)v, scale);
    }
    size_t reps = 5;
    double scale = 1;
    bool tsv = false;
    const struct wl_option opts[] = {
        {"--reps", WL_COUNT, &reps, "interleaved runs of each variant (5)"},
        {"--scale", WL_SCALE, &scale, "multiplies the frames and the pool steps (1)"},
        {"--tsv", WL_FLAG, &tsv, "tab-separated medians for bench/run"},
    };
    WL_PARSE(argc, argv, opts, "regal arenas and pools beside glibc and mimalloc, ns per object.");
    if (reps > MAX_REPS)
        reps = MAX_REPS;
    return driver_main(reps, scale, tsv);
}
