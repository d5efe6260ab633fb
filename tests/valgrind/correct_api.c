/*
 * A correct program that calls every function of regal.h: arenas (plain,
 * named, limited, single-thread, debug, default), alloc/calloc/realloc/
 * aligned_alloc/free across the size classes, the heap and large blocks,
 * usable_size (every usable byte is written), arena_of, pools, handles and
 * compaction, reset, destroy, stats, print, check, trim, the error handler,
 * and two threads sharing an arena.  Every byte it reads is checked by a
 * branch, so memcheck sees any byte regal leaves undefined.
 *
 * Under memcheck it must report "ERROR SUMMARY: 0 errors" and no definitely
 * lost bytes.  Exits 1 (with a message) if regal misbehaves functionally.
 */
#include <pthread.h>
#include <stdint.h>

#include "vgtest.h"

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "correct_api:%d: check failed: %s\n", __LINE__, #cond);                \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static const size_t sizes[] = {
    0,    1,     8,     15,         16,         24,      48,      100,           256,    1000,
    4096, 10000, 32768, 100 * 1024, 256 * 1024, 1 << 20, 2 << 20, (2 << 20) + 1, 8 << 20};
enum { NSIZES = sizeof sizes / sizeof sizes[0] };

/* Blocks are filled with one byte value (memset) and compared against a
 * buffer of that value (memcmp); both are fast under memcheck, and memcmp
 * branches on every byte, so undefined bytes are memcheck errors. */
static unsigned char ref[64 * 1024];

static void fill(void *p, size_t n, unsigned seed)
{
    memset(p, (unsigned char)(seed * 37u + 1u), n);
}

static int same_as(const void *p, size_t n, unsigned char v)
{
    const unsigned char *b = p;
    if (ref[0] != v || ref[sizeof ref - 1] != v)
        memset(ref, v, sizeof ref);
    for (size_t off = 0; off < n; off += sizeof ref) {
        size_t len = n - off < sizeof ref ? n - off : sizeof ref;
        if (memcmp(b + off, ref, len) != 0)
            return 0;
    }
    return 1;
}

static int holds(const void *p, size_t n, unsigned seed)
{
    return same_as(p, n, (unsigned char)(seed * 37u + 1u));
}

static int all_zero(const void *p, size_t n)
{
    return same_as(p, n, 0);
}

static int errors_seen;
static void on_error(regal_error_kind kind, const void *ptr, const char *message, void *ctx)
{
    (void)kind;
    (void)ptr;
    (void)ctx;
    fprintf(stderr, "correct_api: unexpected regal error: %s\n", message);
    errors_seen++;
}

/* alloc, usable_size, arena_of, free across every size. */
static void blocks(regal_arena *a)
{
    void *p[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        p[i] = regal_alloc(a, sizes[i]);
        CHECK(p[i] != NULL);
        if (p[i] == NULL)
            continue;
        CHECK(((uintptr_t)p[i] & 15) == 0);
        CHECK(regal_arena_of(p[i]) == a);
        size_t u = regal_usable_size(p[i]);
        CHECK(u >= sizes[i]);
        fill(p[i], u, (unsigned)i);
    }
    for (size_t i = 0; i < NSIZES; i++) {
        if (p[i] == NULL)
            continue;
        CHECK(holds(p[i], regal_usable_size(p[i]), (unsigned)i));
        regal_free(p[i]);
    }
    regal_free(NULL);
}

static void callocs(regal_arena *a)
{
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *p = regal_calloc(a, 1, sizes[i]);
        CHECK(p != NULL);
        if (p == NULL)
            continue;
        CHECK(all_zero(p, sizes[i]));
        /* Dirty it so a reused block must be zeroed again. */
        fill(p, regal_usable_size(p), 7);
        regal_free(p);
        p = regal_calloc(a, sizes[i] ? sizes[i] / 4 + 1 : 0, 4);
        CHECK(p != NULL);
        if (p != NULL)
            CHECK(all_zero(p, sizes[i] ? (sizes[i] / 4 + 1) * 4 : 0));
        regal_free(p);
    }
    volatile size_t huge = SIZE_MAX / 2;
    errno = 0;
    CHECK(regal_calloc(a, huge, 4) == NULL && errno == ENOMEM);
}

static void reallocs(regal_arena *a, regal_arena *other)
{
    /* Grow from 1 byte to 4 MiB, then shrink back: contents must survive. */
    size_t n = 1;
    unsigned char *p = regal_realloc(a, NULL, n);
    CHECK(p != NULL);
    fill(p, n, 3);
    while (n < (4u << 20)) {
        size_t m = n * 2 + n / 3;
        unsigned char *q = regal_realloc(a, p, m);
        CHECK(q != NULL);
        if (q == NULL)
            break;
        CHECK(holds(q, n, 3));
        p = q;
        fill(p, m, 3);
        n = m;
    }
    while (n > 1) {
        size_t m = n / 3;
        if (m == 0)
            m = 1;
        unsigned char *q = regal_realloc(a, p, m);
        CHECK(q != NULL);
        if (q == NULL)
            break;
        p = q;
        n = m;
        CHECK(holds(p, n, 3));
    }
    /* Size 0 gives a minimal block; NULL acts as alloc. */
    unsigned char *z = regal_realloc(a, p, 0);
    CHECK(z != NULL);
    regal_free(z);

    /* Across arenas: the contents move and the old block is freed. */
    for (size_t i = 1; i < NSIZES; i++) {
        unsigned char *s = regal_alloc(a, sizes[i]);
        CHECK(s != NULL);
        fill(s, sizes[i], 9);
        unsigned char *t = regal_realloc(other, s, sizes[i] + 17);
        CHECK(t != NULL);
        CHECK(regal_arena_of(t) == other);
        CHECK(holds(t, sizes[i], 9));
        fill(t, sizes[i] + 17, 11);
        regal_free(t);
    }
}

static void aligned(regal_arena *a)
{
    static const size_t aligns[] = {1, 2, 8, 16, 32, 64, 256, 4096, 65536, 2u << 20};
    static const size_t asizes[] = {0, 1, 100, 5000, 100 * 1024, 3u << 20};
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        for (size_t j = 0; j < sizeof asizes / sizeof asizes[0]; j++) {
            unsigned char *p = regal_aligned_alloc(a, aligns[i], asizes[j]);
            CHECK(p != NULL);
            if (p == NULL)
                continue;
            CHECK(((uintptr_t)p & (aligns[i] - 1)) == 0);
            CHECK(regal_arena_of(p) == a);
            size_t u = regal_usable_size(p);
            CHECK(u >= asizes[j]);
            fill(p, u, 5);
            CHECK(holds(p, u, 5));
            regal_free(p);
        }
    }
    errno = 0;
    CHECK(regal_aligned_alloc(a, 0, 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(regal_aligned_alloc(a, 24, 10) == NULL && errno == EINVAL);
}

static void pools(regal_arena *a)
{
    static const size_t objs[][2] = {{1, 1}, {8, 8}, {40, 0}, {100, 4}, {1000, 64}, {4096, 4096}};
    enum { N = 300 };
    for (size_t k = 0; k < sizeof objs / sizeof objs[0]; k++) {
        size_t sz = objs[k][0], al = objs[k][1] ? objs[k][1] : 16;
        regal_pool *pool = regal_pool_create(a, objs[k][0], objs[k][1]);
        CHECK(pool != NULL);
        if (pool == NULL)
            continue;
        unsigned char *o[N];
        for (int round = 0; round < 2; round++) {
            for (int i = 0; i < N; i++) {
                o[i] = regal_pool_alloc(pool);
                CHECK(o[i] != NULL);
                CHECK(((uintptr_t)o[i] & (al - 1)) == 0);
                fill(o[i], sz, (unsigned)i);
            }
            for (int i = 0; i < N; i++)
                CHECK(holds(o[i], sz, (unsigned)i));
            /* Half back one by one (both ways), the rest by reset. */
            for (int i = 0; i < N / 2; i++) {
                if (i % 2)
                    regal_pool_free(pool, o[i]);
                else
                    regal_free(o[i]);
            }
            for (int i = 0; i < N / 4; i++) {
                o[i] = regal_pool_alloc(pool);
                CHECK(o[i] != NULL);
                fill(o[i], sz, 1);
            }
            regal_pool_reset(pool);
        }
        if (k % 2 == 0) {
            regal_pool_destroy(pool);
        } else {
            /* Left alive: the arena's reset or destroy takes it. */
            CHECK(regal_pool_alloc(pool) != NULL);
        }
    }
    regal_pool_destroy(NULL);
}

static void stats_and_maintenance(regal_arena *a)
{
    void *keep[4];
    for (int i = 0; i < 4; i++) {
        keep[i] = regal_alloc(a, (size_t)100 << (i * 5));
        CHECK(keep[i] != NULL);
        fill(keep[i], (size_t)100 << (i * 5), 2);
    }
    regal_stats st;
    memset(&st, 0xff, sizeof st);
    regal_arena_stats(a, &st);
    CHECK(st.blocks_in_use >= 4);
    CHECK(st.in_use >= 100 + 3200 + 102400 + 3276800);
    CHECK(st.peak_in_use >= st.in_use);
    CHECK(st.mapped >= st.in_use);
    CHECK(st.alloc_count >= st.free_count);
    CHECK(st.requested_total >= 100);
    CHECK(st.largest_free_run <= st.mapped);

    /* Printed bytes go through write(2): memcheck checks they are defined. */
    FILE *out = fopen("/dev/null", "w");
    CHECK(out != NULL);
    if (out != NULL) {
        regal_arena_print_stats(a, out);
        regal_arena_print_stats_json(a, out);
        fclose(out);
    }
    regal_arena_print_stats(a, stdout);
    regal_arena_print_stats_json(a, stdout);
    fflush(stdout);

    CHECK(regal_arena_check(a) == 0);
    for (int i = 0; i < 4; i++)
        regal_free(keep[i]);
    (void)regal_arena_trim(a);
    CHECK(regal_arena_check(a) == 0);
}

/* Handles: filled, half freed, compacted (the rest move), checked, freed. */
static void handles(regal_arena *a)
{
    enum { N = 64 };
    regal_handle h[N];
    size_t n[N];
    for (size_t i = 0; i < N; i++) {
        n[i] = i == N - 1 ? (2u << 20) : sizes[i % (NSIZES - 3)];
        h[i] = regal_handle_alloc(a, n[i]);
        CHECK(h[i] != 0);
        if (h[i] == 0)
            continue;
        void *p = regal_handle_ptr(a, h[i]);
        CHECK(p != NULL && ((uintptr_t)p & 15) == 0);
        CHECK(regal_arena_of(p) == NULL);
        fill(p, n[i], (unsigned)i);
    }
    for (size_t i = 0; i < N; i += 2)
        regal_handle_free(a, h[i]);
    (void)regal_arena_compact(a);
    for (size_t i = 0; i < N; i++) {
        void *p = regal_handle_ptr(a, h[i]);
        CHECK((p == NULL) == (i % 2 == 0));
        if (p != NULL)
            CHECK(holds(p, n[i], (unsigned)i));
    }
    CHECK(regal_arena_compact(a) == 0);
    CHECK(regal_arena_check(a) == 0);
    for (size_t i = 1; i < N; i += 2)
        regal_handle_free(a, h[i]);
}

/* Alloc until the limit, free, and the arena is usable again. */
static void limited(void)
{
    regal_arena_config cfg = {.name = "limited", .limit = 2u << 20, .flags = 0};
    regal_arena *a = regal_arena_create(&cfg);
    CHECK(a != NULL);
    if (a == NULL)
        return;
    void *p[256];
    int n = 0;
    while (n < 256) {
        errno = 0;
        p[n] = regal_alloc(a, 64 * 1024);
        if (p[n] == NULL) {
            CHECK(errno == ENOMEM);
            break;
        }
        fill(p[n], 64 * 1024, 4);
        n++;
    }
    CHECK(n > 0 && n < 256);
    for (int i = 0; i < n; i++)
        regal_free(p[i]);
    void *again = regal_alloc(a, 64 * 1024);
    CHECK(again != NULL);
    regal_free(again);
    CHECK(regal_arena_check(a) == 0);
    regal_arena_destroy(a);
}

struct shared {
    regal_arena *a;
    void *from_main[64];
};

static void *worker(void *arg)
{
    struct shared *sh = arg;
    void *mine[64];
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 64; i++) {
            size_t n = sizes[(size_t)(i + round) % (NSIZES - 2)];
            mine[i] = regal_alloc(sh->a, n);
            CHECK(mine[i] != NULL);
            fill(mine[i], n, (unsigned)i);
        }
        for (int i = 0; i < 64; i++)
            regal_free(mine[i]);
    }
    /* Frees from another thread than the allocating one. */
    for (int i = 0; i < 64; i++)
        regal_free(sh->from_main[i]);
    return NULL;
}

static void threads(void)
{
    struct shared sh;
    sh.a = regal_arena_create(NULL);
    CHECK(sh.a != NULL);
    if (sh.a == NULL)
        return;
    for (int i = 0; i < 64; i++) {
        sh.from_main[i] = regal_alloc(sh.a, (size_t)(i * 97 + 1));
        CHECK(sh.from_main[i] != NULL);
        fill(sh.from_main[i], (size_t)(i * 97 + 1), 6);
    }
    pthread_t t[2];
    CHECK(pthread_create(&t[0], NULL, worker, &sh) == 0);
    struct shared sh2 = {.a = sh.a};
    for (int i = 0; i < 64; i++) {
        sh2.from_main[i] = regal_alloc(sh.a, 333);
        CHECK(sh2.from_main[i] != NULL);
    }
    CHECK(pthread_create(&t[1], NULL, worker, &sh2) == 0);
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    regal_stats st;
    regal_arena_stats(sh.a, &st);
    CHECK(st.blocks_in_use == 0);
    CHECK(regal_arena_check(sh.a) == 0);
    regal_arena_destroy(sh.a);
}

/* An arena full of live blocks and pools, reset, reused, destroyed. */
static void reset_and_destroy(unsigned flags, const char *name)
{
    regal_arena_config cfg = {.name = name, .limit = 0, .flags = flags};
    regal_arena *a = regal_arena_create(&cfg);
    CHECK(a != NULL);
    if (a == NULL)
        return;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < NSIZES; i++) {
            void *p = regal_alloc(a, sizes[i]);
            CHECK(p != NULL);
            fill(p, sizes[i], 8);
        }
        regal_pool *pool = regal_pool_create(a, 24, 8);
        CHECK(pool != NULL);
        for (int i = 0; i < 100 && pool != NULL; i++) {
            void *o = regal_pool_alloc(pool);
            CHECK(o != NULL);
            if (o != NULL)
                fill(o, 24, 8);
        }
        CHECK(regal_arena_check(a) == 0);
        if (round < 2)
            regal_arena_reset(a);
        regal_stats st;
        regal_arena_stats(a, &st);
        CHECK(round == 2 || st.blocks_in_use == 0);
    }
    /* A debug arena lists its live blocks at destroy (that is its job), so
     * here it is reset first; the others are destroyed with live blocks. */
    if (flags & REGAL_ARENA_DEBUG)
        regal_arena_reset(a);
    regal_arena_destroy(a); /* with live blocks: destroy frees them */
}

static void default_arena(void)
{
    regal_arena *d = regal_default_arena();
    CHECK(d != NULL);
    CHECK(regal_default_arena() == d);
    void *p[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        p[i] = regal_alloc(d, sizes[i]);
        CHECK(p[i] != NULL);
        fill(p[i], sizes[i], 12);
        CHECK(regal_arena_of(p[i]) == d);
    }
    for (size_t i = 0; i < NSIZES; i++)
        regal_free(p[i]);
    CHECK(regal_arena_check(d) == 0);
    (void)regal_arena_trim(d);
}

int main(void)
{
    regal_set_error_handler(on_error, NULL);

    regal_arena *plain = regal_arena_create(NULL);
    regal_arena_config named = {.name = "a name longer than thirty-one bytes, truncated",
                                .limit = 0,
                                .flags = REGAL_ARENA_SINGLE_THREAD};
    regal_arena *st = regal_arena_create(&named);
    regal_arena_config dbg = {.name = "debug", .limit = 0, .flags = REGAL_ARENA_DEBUG};
    regal_arena *debug = regal_arena_create(&dbg);
    CHECK(plain != NULL && st != NULL && debug != NULL);
    if (plain == NULL || st == NULL || debug == NULL)
        return 1;

    regal_arena *arenas[3] = {plain, st, debug};
    for (int i = 0; i < 3; i++) {
        blocks(arenas[i]);
        callocs(arenas[i]);
        reallocs(arenas[i], arenas[(i + 1) % 3]);
        aligned(arenas[i]);
        pools(arenas[i]);
        stats_and_maintenance(arenas[i]);
        handles(arenas[i]);
        CHECK(regal_arena_check(arenas[i]) == 0);
    }

    /* Pointers regal does not own: arena_of answers NULL, silently. */
    int local = 0;
    void *foreign = malloc(32);
    CHECK(regal_arena_of(&local) == NULL);
    CHECK(regal_arena_of(foreign) == NULL);
    CHECK(regal_arena_of(NULL) == NULL);
    free(foreign);

    limited();
    threads();
    reset_and_destroy(0, "reset");
    reset_and_destroy(REGAL_ARENA_SINGLE_THREAD, "reset-st");
    reset_and_destroy(REGAL_ARENA_DEBUG, "reset-debug");
    default_arena();

    regal_arena_reset(plain);
    blocks(plain);
    regal_arena_destroy(plain);
    regal_arena_destroy(st);
    regal_arena_reset(debug); /* see reset_and_destroy */
    regal_arena_destroy(debug);
    regal_arena_destroy(NULL);

    CHECK(errors_seen == 0);
    regal_set_error_handler(NULL, NULL);
    if (failures) {
        fprintf(stderr, "correct_api: %d checks failed\n", failures);
        return 1;
    }
    puts("correct_api: all checks passed");
    return 0;
}
