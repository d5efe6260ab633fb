/*
 * One alloc+free pair, repeated N times, for callgrind: bench/run-callgrind
 * runs it with N and 2N pairs and prints the difference / N, the
 * instructions of one pair (loop included).  One other block of the size
 * stays live throughout, so that no allocator sees its page empty at each
 * free (mode "bare" leaves that out, for malloc).  Modes:
 *   single  regal_alloc/regal_free, REGAL_ARENA_SINGLE_THREAD arena
 *   shared  regal_alloc/regal_free, thread-safe arena
 *   pool    regal_pool_alloc/regal_pool_free, single-thread arena
 *   malloc  malloc/free (whatever LD_PRELOAD provides)
 *   bare    malloc/free, nothing else live
 *   remote  N mallocs, then a second thread frees the N blocks (a pair is
 *           a malloc and a free from another thread)
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "regal.h"

static void **blocks;
static long count;

static void *free_all(void *arg)
{
    for (long i = 0; i < count; i++)
        free(blocks[i]);
    return arg;
}

/* n blocks of size bytes, freed by another thread. */
static int remote_pairs(size_t size, long n)
{
    pthread_t t;
    count = n;
    if ((blocks = malloc((size_t)n * sizeof *blocks)) == NULL)
        return 1;
    for (long i = 0; i < n; i++) {
        blocks[i] = malloc(size);
        *(volatile char *)blocks[i] = 1;
    }
    if (pthread_create(&t, NULL, free_all, NULL) != 0 || pthread_join(t, NULL) != 0)
        return 1;
    free(blocks);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    const char *mode = argv[1];
    size_t size = strtoul(argv[2], NULL, 10);
    long n = atol(argv[3]);
    regal_arena_config cfg = {.flags = strcmp(mode, "shared") ? REGAL_ARENA_SINGLE_THREAD : 0};
    regal_arena *a = regal_arena_create(&cfg);
    regal_pool *pool = regal_pool_create(a, size, 0);
    if (a == NULL || pool == NULL)
        return 1;
    void *keep = NULL;
    if (!strcmp(mode, "remote"))
        return remote_pairs(size, n);
    if (!strcmp(mode, "pool")) {
        keep = regal_pool_alloc(pool);
        for (long i = 0; i < n; i++) {
            void *p = regal_pool_alloc(pool);
            *(volatile char *)p = 1;
            regal_pool_free(pool, p);
        }
    } else if (!strcmp(mode, "malloc") || !strcmp(mode, "bare")) {
        keep = !strcmp(mode, "malloc") ? malloc(size) : NULL;
        for (long i = 0; i < n; i++) {
            void *p = malloc(size);
            *(volatile char *)p = 1;
            free(p);
        }
        free(keep);
    } else {
        keep = regal_alloc(a, size);
        for (long i = 0; i < n; i++) {
            void *p = regal_alloc(a, size);
            *(volatile char *)p = 1;
            regal_free(p);
        }
    }
    (void)keep;
    return 0;
}
