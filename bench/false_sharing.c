/*
 * false_sharing: does the allocator put objects that different threads
 * write on one cache line?  After Hoard's cache-thrash and cache-scratch
 * (Berger et al., ASPLOS 2000), as in the mimalloc-bench suite.
 *
 *   false_sharing [--passive] [--threads N] [--objects N] [--size BYTES]
 *                 [--writes N] [--seed N] [--scale X]
 *
 * Active (cache-thrash, the default): each of THREADS threads (default 2)
 * allocates OBJECTS objects (default 10000) of SIZE bytes (default 8) one
 * after the other, writes every byte of each WRITES times (default 20000)
 * and frees it.  An allocator that hands concurrent threads neighbouring
 * small blocks makes their writes fight over a cache line.
 *
 * Passive (--passive, cache-scratch): the main thread allocates THREADS
 * objects in a row, which most allocators place side by side, and gives one
 * to each thread; the thread frees it first, then runs the active loop.  An
 * allocator that gives the freed neighbour back to the thread that freed it
 * makes the threads share a line although none of them asked for that.
 *
 * Writes go through a volatile pointer, one byte at a time, as in Hoard.
 * Each object starts zeroed and must end with every byte equal to WRITES
 * mod 256: another thread writing into it shows as a wrong count.  The
 * time covers the threads; --scale multiplies OBJECTS.
 */
#include <stdlib.h>
#include <string.h>

#include "workload.h"

struct worker {
    unsigned char *given; /* passive: the object from the main thread */
    size_t objects, size, writes;
    uint64_t tag;
};

static void hammer(unsigned char *obj, size_t size, size_t writes)
{
    volatile unsigned char *v = obj;
    memset(obj, 0, size);
    for (size_t w = 0; w < writes; w++)
        for (size_t k = 0; k < size; k++)
            v[k]++;
    for (size_t k = 0; k < size; k++)
        if (obj[k] != (unsigned char)writes)
            wl_corrupted(obj, size, k, (unsigned char)writes, "after its thread's writes");
}

static void *work(void *arg)
{
    struct worker *w = arg;
    if (w->given != NULL) {
        wl_check(w->given, w->size, w->tag, "in the thread it was given to");
        free(w->given);
    }
    for (size_t i = 0; i < w->objects; i++) {
        unsigned char *obj = wl_malloc(w->size);
        hammer(obj, w->size, w->writes);
        free(obj);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    size_t threads = 2, objects = 10000, size = 8, writes = 20000, seed = 1;
    double scale = 1;
    bool passive = false;
    const struct wl_option opts[] = {
        {"--passive", WL_FLAG, &passive, "cache-scratch: start from the main thread's objects"},
        {"--threads", WL_COUNT, &threads, "writing threads (2)"},
        {"--objects", WL_COUNT, &objects, "objects each thread allocates in turn (10000)"},
        {"--size", WL_BYTES, &size, "object size (8)"},
        {"--writes", WL_COUNT, &writes, "times each byte is incremented (20000)"},
        {"--seed", WL_COUNT, &seed, "tag seed (the workload is not random)"},
        {"--scale", WL_SCALE, &scale, "multiplies --objects (1)"},
    };
    WL_PARSE(argc, argv, opts, "Hoard cache-thrash (active) and cache-scratch (--passive).");
    objects = wl_scaled(objects, scale);

    struct worker *workers = wl_malloc(threads * sizeof *workers);
    for (size_t t = 0; t < threads; t++) {
        workers[t] =
            (struct worker){.objects = objects, .size = size, .writes = writes, .tag = seed + t};
        if (passive) {
            workers[t].given = wl_malloc(size);
            wl_fill(workers[t].given, size, workers[t].tag);
        }
    }

    double t0 = wl_now();
    wl_run_threads(threads, work, workers, sizeof *workers);
    double t1 = wl_now();

    free(workers);
    return wl_finish(t1 - t0, NULL);
}
