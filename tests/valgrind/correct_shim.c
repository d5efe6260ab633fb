/*
 * A correct malloc program (no regal link): malloc, calloc, realloc, free,
 * posix_memalign, aligned_alloc, memalign, valloc, malloc_usable_size (every
 * usable byte is written), strdup, strndup, asprintf, reallocarray and
 * malloc_trim, across the size classes, the heap and large blocks, and two
 * threads freeing each other's blocks.  (Not pvalloc: memcheck aborts the
 * program on it.)  Every byte read is checked by a branch.  Run under
 * memcheck plainly (glibc) and with libregal-malloc preloaded: both must
 * report "ERROR SUMMARY: 0 errors" and no definitely lost bytes.  Exits 1 on
 * a functional failure.
 */
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>

#define USE_SHIM 1
#include "vgtest.h"

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "correct_shim:%d: check failed: %s\n", __LINE__, #cond);               \
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

static void blocks(void)
{
    void *p[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        p[i] = malloc(sizes[i]);
        CHECK(p[i] != NULL);
        if (p[i] == NULL)
            continue;
        CHECK(((uintptr_t)p[i] & 15) == 0);
        size_t u = malloc_usable_size(p[i]);
        CHECK(u >= sizes[i]);
        fill(p[i], u, (unsigned)i);
    }
    for (size_t i = 0; i < NSIZES; i++) {
        if (p[i] != NULL)
            CHECK(holds(p[i], malloc_usable_size(p[i]), (unsigned)i));
        free(p[i]);
    }
    free(NULL);
}

static void callocs(void)
{
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *p = calloc(1, sizes[i]);
        CHECK(p != NULL);
        if (p == NULL)
            continue;
        CHECK(all_zero(p, sizes[i]));
        fill(p, sizes[i], 7);
        free(p);
        p = calloc(sizes[i] / 4 + 1, 4);
        CHECK(p != NULL);
        if (p != NULL)
            CHECK(all_zero(p, (sizes[i] / 4 + 1) * 4));
        free(p);
    }
    volatile size_t huge = SIZE_MAX / 2;
    /* NULL only: memcheck's own calloc does not set errno. */
    CHECK(calloc(huge, 4) == NULL);
}

static void reallocs(void)
{
    size_t n = 1;
    unsigned char *p = realloc(NULL, n);
    CHECK(p != NULL);
    if (p == NULL)
        return;
    fill(p, n, 3);
    while (n < (4u << 20)) {
        size_t m = n * 2 + n / 3;
        unsigned char *q = realloc(p, m);
        CHECK(q != NULL);
        if (q == NULL)
            break;
        CHECK(holds(q, n, 3));
        p = q;
        fill(p, m, 3);
        n = m;
    }
    while (n > 1) {
        size_t m = n / 3 ? n / 3 : 1;
        unsigned char *q = realloc(p, m);
        CHECK(q != NULL);
        if (q == NULL)
            break;
        p = q;
        n = m;
        CHECK(holds(p, n, 3));
    }
    free(p);

    unsigned char *r = reallocarray(NULL, 10, 100);
    CHECK(r != NULL);
    fill(r, 1000, 4);
    r = reallocarray(r, 100, 100);
    CHECK(r != NULL);
    if (r != NULL)
        CHECK(holds(r, 1000, 4));
    free(r);
}

static void aligned(void)
{
    static const size_t aligns[] = {16, 32, 64, 256, 4096, 65536, 2u << 20};
    static const size_t asizes[] = {1, 100, 5000, 100 * 1024, 3u << 20};
    for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) {
        for (size_t j = 0; j < sizeof asizes / sizeof asizes[0]; j++) {
            size_t al = aligns[i], n = asizes[j];
            void *p[3] = {NULL, NULL, NULL};
            CHECK(posix_memalign(&p[0], al, n) == 0);
            p[1] = aligned_alloc(al, (n + al - 1) / al * al);
            p[2] = memalign(al, n);
            for (int k = 0; k < 3; k++) {
                CHECK(p[k] != NULL);
                if (p[k] == NULL)
                    continue;
                CHECK(((uintptr_t)p[k] & (al - 1)) == 0);
                fill(p[k], n, (unsigned)k);
                CHECK(holds(p[k], n, (unsigned)k));
                free(p[k]);
            }
        }
    }
    void *v = valloc(100);
    CHECK(v != NULL && ((uintptr_t)v & 4095) == 0);
    fill(v, 100, 1);
    free(v);
    void *bad = NULL;
    CHECK(posix_memalign(&bad, 24, 10) == EINVAL);
}

static void strings(void)
{
    char *s = strdup("regal under memcheck");
    CHECK(s != NULL && strcmp(s, "regal under memcheck") == 0);
    char *t = strndup(s, 5);
    CHECK(t != NULL && strcmp(t, "regal") == 0);
    char *u = NULL;
    CHECK(asprintf(&u, "%s/%s/%d", s, t, 42) > 0);
    CHECK(u != NULL && strcmp(u, "regal under memcheck/regal/42") == 0);
    free(s);
    free(t);
    free(u);
}

static void *worker(void *arg)
{
    void **from_main = arg;
    void *mine[64];
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 64; i++) {
            size_t n = sizes[(size_t)(i + round) % (NSIZES - 2)];
            mine[i] = malloc(n);
            CHECK(mine[i] != NULL);
            fill(mine[i], n, (unsigned)i);
        }
        for (int i = 0; i < 64; i++)
            free(mine[i]);
    }
    for (int i = 0; i < 64; i++)
        free(from_main[i]);
    return NULL;
}

static void threads(void)
{
    void *a[64], *b[64];
    for (int i = 0; i < 64; i++) {
        a[i] = malloc((size_t)(i * 97 + 1));
        b[i] = calloc(1, 333);
        CHECK(a[i] != NULL && b[i] != NULL);
        fill(a[i], (size_t)(i * 97 + 1), 6);
    }
    pthread_t t[2];
    CHECK(pthread_create(&t[0], NULL, worker, a) == 0);
    CHECK(pthread_create(&t[1], NULL, worker, b) == 0);
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
}

int main(void)
{
    void *first = malloc(16);
    CHECK(first != NULL);
    t_report_allocator(first);
    free(first);

    blocks();
    callocs();
    reallocs();
    aligned();
    strings();
    threads();
    malloc_trim(0);

    if (failures) {
        fprintf(stderr, "correct_shim: %d checks failed\n", failures);
        return 1;
    }
    puts("correct_shim: all checks passed");
    return 0;
}
