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
 *
 * The time only shows false sharing when the threads run at the same time,
 * which on a loaded machine they may not.  So each thread also publishes
 * the cache lines of its live object and, after each malloc, looks at the
 * other threads' lines: the share of objects that landed on a line another
 * thread's live object was using is the allocator's doing, whatever the
 * scheduler did.  Output: "<seconds> <shared_percent>".
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

#define LINE 64 /* bytes of a cache line on x86-64 and most arm64 */

struct worker {
    unsigned char *given; /* passive: the object from the main thread */
    size_t objects, size, writes, index, threads;
    uint64_t tag;
    size_t shared; /* objects that shared a line with another thread's */
};

/* Per thread: the first and the last cache line of its live object, 0 if
 * it has none. */
static _Atomic uintptr_t (*lines)[2];

/* Publishes obj as thread t's live object (NULL: none); returns whether it
 * shares a line with another thread's live object. */
static bool publish(const struct worker *w, const unsigned char *obj)
{
    uintptr_t first = obj == NULL ? 0 : (uintptr_t)obj / LINE;
    uintptr_t last = obj == NULL ? 0 : ((uintptr_t)obj + w->size - 1) / LINE;
    atomic_store_explicit(&lines[w->index][0], first, memory_order_relaxed);
    atomic_store_explicit(&lines[w->index][1], last, memory_order_relaxed);
    if (obj == NULL)
        return false;
    for (size_t u = 0; u < w->threads; u++) {
        if (u == w->index)
            continue;
        uintptr_t a = atomic_load_explicit(&lines[u][0], memory_order_relaxed);
        uintptr_t b = atomic_load_explicit(&lines[u][1], memory_order_relaxed);
        if (a != 0 && first <= b && a <= last)
            return true;
    }
    return false;
}

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
        w->shared += publish(w, obj);
        hammer(obj, w->size, w->writes);
        publish(w, NULL);
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
    lines = wl_malloc(threads * sizeof *lines);
    for (size_t t = 0; t < threads; t++) {
        atomic_init(&lines[t][0], 0);
        atomic_init(&lines[t][1], 0);
        workers[t] = (struct worker){.objects = objects,
                                     .size = size,
                                     .writes = writes,
                                     .index = t,
                                     .threads = threads,
                                     .tag = seed + t};
        if (passive) {
            workers[t].given = wl_malloc(size);
            wl_fill(workers[t].given, size, workers[t].tag);
        }
    }

    double t0 = wl_now();
    wl_run_threads(threads, work, workers, sizeof *workers);
    double t1 = wl_now();

    size_t shared = 0;
    for (size_t t = 0; t < threads; t++)
        shared += workers[t].shared;
    char extra[32];
    snprintf(extra, sizeof extra, "%.1f", 100.0 * (double)shared / (double)(threads * objects));
    free((void *)lines);
    free(workers);
    return wl_finish(t1 - t0, extra);
}
