/*
 * pool_pair: nanoseconds per alloc+free pair of a fixed-size regal_pool,
 * beside regal_alloc/regal_free and glibc malloc/free of the same size.
 *
 *   pool_pair [--reps N] [--pairs N]
 *       The driver: for every (pattern, size) it runs each allocator in its
 *       own child process, N reps (default 5) interleaving the allocators, and
 *       prints the medians as one table line per (pattern, size).
 *   pool_pair --child ALLOCATOR PATTERN SIZE PAIRS
 *       One measurement (ALLOCATOR is pool, regal or glibc); prints
 *       "ns_per_pair peak_rss_kib".  The driver runs it through
 *       /proc/self/exe so that each measurement starts from a fresh address
 *       space and its peak RSS is its own.
 *
 * Allocators:
 *   pool   regal_pool_alloc/regal_pool_free on a pool of SIZE-byte objects
 *          (alignment 0, that is 16) of a REGAL_ARENA_SINGLE_THREAD arena.
 *   regal  regal_alloc/regal_free of SIZE bytes on the same kind of arena.
 *   glibc  malloc/free of SIZE bytes (the driver is not linked with the shim).
 *
 * Patterns:
 *   pair   alloc then free at once: the best case of every allocator (a
 *          free-list pop and push), measured because it is the floor.
 *   batch  alloc BATCH blocks, then free them all in a shuffled order (fixed
 *          seed), so free lists are rebuilt in an order unrelated to the
 *          allocation order, as in real programs.
 *
 * Every block gets one byte written through a volatile pointer, so neither
 * call can be dropped by the compiler.  An untimed warm-up of 1% of the pairs
 * comes first; time is CLOCK_MONOTONIC around the timed loop.  The method is
 * that of alloc_pair.c, so the two tables can be read side by side.
 */
#include <errno.h>
#include <regal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH         1000
#define PERMUTATIONS  16 /* shuffled free orders, used in turn */
#define DEFAULT_PAIRS 10000000u
#define DEFAULT_REPS  5
#define MAX_REPS      99

enum allocator { ALLOC_POOL, ALLOC_REGAL, ALLOC_GLIBC, ALLOCATORS };
enum pattern { PATTERN_PAIR, PATTERN_BATCH, PATTERNS };

static const char *const allocator_names[ALLOCATORS] = {"pool", "regal", "glibc"};
static const char *const pattern_names[PATTERNS] = {"pair", "batch"};
static const size_t sizes[] = {16, 64, 256};
#define NSIZES (sizeof sizes / sizeof sizes[0])

/* ---- Child: one measurement ------------------------------------------------ */

static regal_arena *arena;
static regal_pool *pool;
static uint16_t free_order[PERMUTATIONS][BATCH];
static void *slots[BATCH];
static volatile uintptr_t sink;

static _Noreturn void out_of_memory(size_t size)
{
    fprintf(stderr, "pool_pair: allocation of %zu bytes failed: %s\n", size, strerror(errno));
    exit(EXIT_FAILURE);
}

/* Called with a constant allocator, so the branches fold away and every
 * allocator runs the same loop with direct calls. */
static inline __attribute__((always_inline)) void *bench_alloc(enum allocator which, size_t size)
{
    unsigned char *p = which == ALLOC_POOL    ? regal_pool_alloc(pool)
                       : which == ALLOC_REGAL ? regal_alloc(arena, size)
                                              : malloc(size);
    if (__builtin_expect(p == NULL, 0))
        out_of_memory(size);
    *(volatile unsigned char *)p = (unsigned char)size;
    return p;
}

static inline __attribute__((always_inline)) void bench_free(enum allocator which, void *p)
{
    if (which == ALLOC_POOL)
        regal_pool_free(pool, p);
    else if (which == ALLOC_REGAL)
        regal_free(p);
    else
        free(p);
}

static inline __attribute__((always_inline)) void run_pair(enum allocator which, size_t size,
                                                           size_t pairs)
{
    uintptr_t acc = 0;
    for (size_t i = 0; i < pairs; i++) {
        void *p = bench_alloc(which, size);
        acc ^= (uintptr_t)p;
        bench_free(which, p);
    }
    sink = acc;
}

static inline __attribute__((always_inline)) void run_batch(enum allocator which, size_t size,
                                                            size_t rounds)
{
    uintptr_t acc = 0;
    for (size_t r = 0; r < rounds; r++) {
        const uint16_t *order = free_order[r % PERMUTATIONS];
        for (size_t i = 0; i < BATCH; i++)
            slots[i] = bench_alloc(which, size);
        for (size_t i = 0; i < BATCH; i++) {
            acc ^= (uintptr_t)slots[order[i]];
            bench_free(which, slots[order[i]]);
        }
    }
    sink = acc;
}

/* One out-of-line copy per allocator and pattern. */
static __attribute__((noinline)) void pair_pool(size_t size, size_t n)
{
    run_pair(ALLOC_POOL, size, n);
}
static __attribute__((noinline)) void pair_regal(size_t size, size_t n)
{
    run_pair(ALLOC_REGAL, size, n);
}
static __attribute__((noinline)) void pair_glibc(size_t size, size_t n)
{
    run_pair(ALLOC_GLIBC, size, n);
}
static __attribute__((noinline)) void batch_pool(size_t size, size_t n)
{
    run_batch(ALLOC_POOL, size, n);
}
static __attribute__((noinline)) void batch_regal(size_t size, size_t n)
{
    run_batch(ALLOC_REGAL, size, n);
}
static __attribute__((noinline)) void batch_glibc(size_t size, size_t n)
{
    run_batch(ALLOC_GLIBC, size, n);
}

static void (*const loops[ALLOCATORS][PATTERNS])(size_t, size_t) = {
    [ALLOC_POOL] = {[PATTERN_PAIR] = pair_pool, [PATTERN_BATCH] = batch_pool},
    [ALLOC_REGAL] = {[PATTERN_PAIR] = pair_regal, [PATTERN_BATCH] = batch_regal},
    [ALLOC_GLIBC] = {[PATTERN_PAIR] = pair_glibc, [PATTERN_BATCH] = batch_glibc},
};

/* Fisher-Yates with splitmix64 from a fixed seed: the same orders every run. */
static void make_free_orders(void)
{
    uint64_t state = 0x0a110c0a110c0a11u;
    for (int k = 0; k < PERMUTATIONS; k++) {
        for (int i = 0; i < BATCH; i++)
            free_order[k][i] = (uint16_t)i;
        for (int i = BATCH - 1; i > 0; i--) {
            uint64_t z = (state += 0x9e3779b97f4a7c15u);
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
            z ^= z >> 31;
            int j = (int)(z % (uint64_t)(i + 1));
            uint16_t t = free_order[k][i];
            free_order[k][i] = free_order[k][j];
            free_order[k][j] = t;
        }
    }
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int child_main(enum allocator which, enum pattern pat, size_t size, size_t pairs)
{
    if (which != ALLOC_GLIBC) {
        regal_arena_config cfg = {
            .name = "pool_pair", .limit = 0, .flags = REGAL_ARENA_SINGLE_THREAD};
        arena = regal_arena_create(&cfg);
        if (!arena) {
            fprintf(stderr, "pool_pair: regal_arena_create failed: %s\n", strerror(errno));
            return EXIT_FAILURE;
        }
    }
    if (which == ALLOC_POOL) {
        pool = regal_pool_create(arena, size, 0);
        if (!pool) {
            fprintf(stderr, "pool_pair: regal_pool_create(%zu) failed: %s\n", size,
                    strerror(errno));
            return EXIT_FAILURE;
        }
    }
    make_free_orders();

    void (*loop)(size_t, size_t) = loops[which][pat];
    size_t units = pat == PATTERN_BATCH ? pairs / BATCH : pairs; /* rounds or pairs */
    if (units == 0)
        units = 1;
    size_t warmup = units / 100 ? units / 100 : 1;

    loop(size, warmup);
    double t0 = now_ns();
    loop(size, units);
    double t1 = now_ns();

    size_t done = pat == PATTERN_BATCH ? units * BATCH : units;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (arena) {
        if (regal_arena_check(arena) != 0) {
            fprintf(stderr, "pool_pair: regal_arena_check failed after %s %s %zu\n",
                    allocator_names[which], pattern_names[pat], size);
            return EXIT_FAILURE;
        }
        regal_pool_destroy(pool);
        regal_arena_destroy(arena);
    }
    printf("%.3f %ld\n", (t1 - t0) / (double)done, ru.ru_maxrss);
    return fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ---- Driver ------------------------------------------------------------------ */

struct sample {
    double ns;
    double rss_kib;
};

/* Runs one child and reads its line; 0 (with a message) on any failure. */
static int run_child(enum allocator which, enum pattern pat, size_t size, size_t pairs,
                     struct sample *out)
{
    char size_arg[32], pairs_arg[32];
    snprintf(size_arg, sizeof size_arg, "%zu", size);
    snprintf(pairs_arg, sizeof pairs_arg, "%zu", pairs);
    char *argv[] = {"pool_pair",
                    "--child",
                    (char *)allocator_names[which],
                    (char *)pattern_names[pat],
                    size_arg,
                    pairs_arg,
                    NULL};

    int fds[2];
    if (pipe(fds) != 0) {
        perror("pool_pair: pipe");
        return 0;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("pool_pair: fork");
        return 0;
    }
    if (pid == 0) {
        close(fds[0]);
        if (dup2(fds[1], STDOUT_FILENO) < 0)
            _exit(127);
        close(fds[1]);
        execv("/proc/self/exe", argv);
        perror("pool_pair: execv /proc/self/exe");
        _exit(127);
    }
    close(fds[1]);

    char line[128] = "";
    FILE *in = fdopen(fds[0], "r");
    if (!in || !fgets(line, sizeof line, in))
        line[0] = '\0';
    if (in)
        fclose(in);
    else
        close(fds[0]);

    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("pool_pair: waitpid");
            return 0;
        }
    }
    long rss;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        sscanf(line, "%lf %ld", &out->ns, &rss) != 2) {
        fprintf(stderr, "pool_pair: child %s %s %zu failed (status 0x%x)\n", allocator_names[which],
                pattern_names[pat], size, (unsigned)status);
        return 0;
    }
    out->rss_kib = (double)rss;
    return 1;
}

static int compare_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static int driver_main(int reps, size_t pairs)
{
    static struct sample results[PATTERNS][NSIZES][ALLOCATORS][MAX_REPS];

    fprintf(stderr,
            "pool_pair: %d reps x %d patterns x %zu sizes x %d allocators, %zu pairs each\n", reps,
            PATTERNS, NSIZES, ALLOCATORS, pairs);
    for (int rep = 0; rep < reps; rep++) {
        for (int pat = 0; pat < PATTERNS; pat++) {
            for (size_t s = 0; s < NSIZES; s++) {
                /* Rotate which allocator goes first, so none always runs on
                 * a cooler (or warmer) machine. */
                for (int k = 0; k < ALLOCATORS; k++) {
                    enum allocator which = (enum allocator)((rep + k) % ALLOCATORS);
                    if (!run_child(which, (enum pattern)pat, sizes[s], pairs,
                                   &results[pat][s][which][rep]))
                        return EXIT_FAILURE;
                }
            }
        }
    }

    printf("# median of %d runs, %zu pairs per run; ns per alloc+free pair;"
           " x_glibc = time / glibc time; rss = peak RSS of the child, KiB\n",
           reps, pairs);
    printf("%-7s %5s %8s %8s %8s %7s %8s %9s %9s %9s\n", "pattern", "size", "pool_ns", "regal_ns",
           "glibc_ns", "pool_x", "regal_x", "pool_rss", "regal_rss", "glibc_rss");
    for (int pat = 0; pat < PATTERNS; pat++) {
        for (size_t s = 0; s < NSIZES; s++) {
            double ns[ALLOCATORS], rss[ALLOCATORS];
            for (int w = 0; w < ALLOCATORS; w++) {
                double v[MAX_REPS], r[MAX_REPS];
                for (int rep = 0; rep < reps; rep++) {
                    v[rep] = results[pat][s][w][rep].ns;
                    r[rep] = results[pat][s][w][rep].rss_kib;
                }
                ns[w] = median(v, reps);
                rss[w] = median(r, reps);
            }
            printf("%-7s %5zu %8.2f %8.2f %8.2f %7.2f %8.2f %9.0f %9.0f %9.0f\n",
                   pattern_names[pat], sizes[s], ns[ALLOC_POOL], ns[ALLOC_REGAL], ns[ALLOC_GLIBC],
                   ns[ALLOC_POOL] / ns[ALLOC_GLIBC], ns[ALLOC_REGAL] / ns[ALLOC_GLIBC],
                   rss[ALLOC_POOL], rss[ALLOC_REGAL], rss[ALLOC_GLIBC]);
        }
    }
    return EXIT_SUCCESS;
}

/* ---- Arguments ----------------------------------------------------------------- */

static int parse_count(const char *s, size_t max, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v == 0 || v > max)
        return 0;
    *out = (size_t)v;
    return 1;
}

static int lookup(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static int usage(void)
{
    fprintf(stderr, "usage: pool_pair [--reps N] [--pairs N]\n"
                    "       pool_pair --child pool|regal|glibc pair|batch SIZE PAIRS\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--child") == 0) {
        int which = lookup(argv[2], allocator_names, ALLOCATORS);
        int pat = lookup(argv[3], pattern_names, PATTERNS);
        size_t size, pairs;
        if (which < 0 || pat < 0 || !parse_count(argv[4], REGAL_POOL_MAX_OBJECT, &size) ||
            !parse_count(argv[5], SIZE_MAX, &pairs))
            return usage();
        return child_main((enum allocator)which, (enum pattern)pat, size, pairs);
    }

    size_t reps = DEFAULT_REPS, pairs = DEFAULT_PAIRS;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            if (!parse_count(argv[++i], MAX_REPS, &reps))
                return usage();
        } else if (strcmp(argv[i], "--pairs") == 0 && i + 1 < argc) {
            if (!parse_count(argv[++i], SIZE_MAX, &pairs))
                return usage();
        } else {
            return usage();
        }
    }
    return driver_main((int)reps, pairs);
}
