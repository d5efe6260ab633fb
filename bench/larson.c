/*
 * larson: a server simulation after Larson and Krishnan ("Memory allocation
 * for long-running server applications", ISMM 1998), as in the Hoard and
 * mimalloc-bench suites.
 *
 *   larson [--threads N] [--rounds N] [--ops N] [--slots N] [--min BYTES]
 *          [--max BYTES] [--seed N] [--scale X]
 *
 * THREADS sets of SLOTS blocks (default 4 x 1000) are allocated by the main
 * thread, untimed.  Then, for ROUNDS rounds (default 100), THREADS new
 * threads start; in round r thread w takes set (w + r) mod THREADS, so every
 * set passes to another, newly created thread each round, as a server hands
 * connections' objects to the next worker.  Each thread does OPS operations
 * (default 100000): free the block of a random slot and put a new block of a
 * size uniform in [MIN, MAX] (default [8, 1000]) there.  Blocks are freed by
 * other threads than the one that allocated them, threads come and go, and
 * the allocator's per-thread state must be handed over or reclaimed.
 *
 * Every block is filled (wl_fill) and checked before it is freed.  The time
 * covers the rounds (thread creation included); --scale multiplies ROUNDS.
 */
#include <stdlib.h>

#include "workload.h"

struct slot {
    unsigned char *p;
    size_t size;
    uint64_t tag;
};

struct worker {
    struct slot *set;
    size_t slots, ops, min, max;
    uint64_t seed, id; /* id: round * threads + thread, for tags and the stream */
};

static void *work(void *arg)
{
    struct worker *w = arg;
    struct wl_rng rng;
    wl_rng_init(&rng, w->seed, w->id + 1);
    for (size_t i = 0; i < w->ops; i++) {
        struct slot *s = &w->set[wl_rng_below(&rng, w->slots)];
        wl_check(s->p, s->size, s->tag, "before free");
        free(s->p);
        s->size = wl_rng_range(&rng, w->min, w->max);
        s->tag = w->id << 32 | i;
        s->p = wl_malloc(s->size);
        wl_fill(s->p, s->size, s->tag);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    size_t threads = 4, rounds = 100, ops = 100000, slots = 1000, min = 8, max = 1000;
    size_t seed = 0x6c6172736f6e;
    double scale = 1;
    const struct wl_option opts[] = {
        {"--threads", WL_COUNT, &threads, "threads per round (4)"},
        {"--rounds", WL_COUNT, &rounds, "rounds, each with new threads (100)"},
        {"--ops", WL_COUNT, &ops, "free+malloc pairs per thread and round (100000)"},
        {"--slots", WL_COUNT, &slots, "live blocks per set (1000)"},
        {"--min", WL_BYTES, &min, "smallest block (8)"},
        {"--max", WL_BYTES, &max, "largest block (1000)"},
        {"--seed", WL_COUNT, &seed, "random seed"},
        {"--scale", WL_SCALE, &scale, "multiplies --rounds (1)"},
    };
    WL_PARSE(argc, argv, opts, "Larson server simulation: blocks pass to new threads each round.");
    if (min > max)
        max = min;
    rounds = wl_scaled(rounds, scale);

    struct slot *sets = wl_malloc(threads * slots * sizeof *sets);
    struct wl_rng rng;
    wl_rng_init(&rng, seed, 0);
    for (size_t i = 0; i < threads * slots; i++) {
        sets[i].size = wl_rng_range(&rng, min, max);
        sets[i].tag = i;
        sets[i].p = wl_malloc(sets[i].size);
        wl_fill(sets[i].p, sets[i].size, sets[i].tag);
    }
    struct worker *workers = wl_malloc(threads * sizeof *workers);

    double t0 = wl_now();
    for (size_t r = 0; r < rounds; r++) {
        for (size_t w = 0; w < threads; w++)
            workers[w] = (struct worker){
                .set = &sets[(w + r) % threads * slots],
                .slots = slots,
                .ops = ops,
                .min = min,
                .max = max,
                .seed = seed,
                .id = (uint64_t)(r * threads + w + 1),
            };
        wl_run_threads(threads, work, workers, sizeof *workers);
    }
    double t1 = wl_now();

    for (size_t i = 0; i < threads * slots; i++) {
        wl_check(sets[i].p, sets[i].size, sets[i].tag, "at the end");
        free(sets[i].p);
    }
    free(workers);
    free(sets);
    return wl_finish(t1 - t0, NULL);
}
