/*
 * frag: fragmentation, then a steady state.  How much memory does the
 * allocator keep when a program has allocated a lot, freed most of it in
 * random order, and goes on working with a small live set?
 *
 *   frag [--total BYTES] [--keep N] [--steady-ops N] [--trim] [--verbose]
 *        [--seed N] [--scale X]
 *
 * Phase 1: allocate TOTAL bytes (default 1G) in blocks of mixed sizes, 70%
 * small (log-uniform in [16, 512]) and 30% medium (log-uniform in
 * (512, 64K]), about 4 KiB on average, each filled (a byte per page).
 * Phase 2: free a random (100 - KEEP)% of them (KEEP default 10), so that
 * the survivors are scattered over everything phase 1 touched.
 * Phase 3: STEADY_OPS times (default 2M) free a random survivor and
 * allocate a new block of the same mix in its place: the live set stays
 * near KEEP% of TOTAL while the allocator reuses, or fails to reuse, the
 * holes.  --trim then calls malloc_trim(0), found with dlsym so that the
 * program runs under allocators that lack it (then glibc's malloc_trim
 * answers, on glibc's empty heap, and does nothing), and finally the
 * resident set is read from /proc/self/statm with the survivors still live.
 *
 * Output: "<seconds> <final_rss_kib>": the time of the three phases and the
 * trim, and the final resident set.  Peak RSS is the caller's to read
 * (/usr/bin/time -f %M).  --verbose adds a line on stderr: the live bytes
 * at the end (the floor for the final RSS) and the peak RSS (VmHWM), then
 * the allocator's malloc_stats() if it has one.
 * Every block is checked before its free.  --scale multiplies TOTAL and
 * STEADY_OPS.
 *
 * Built a second time as frag_handles (-DFRAG_HANDLES, linked with regal):
 * the same blocks are relocatable blocks of one regal arena
 * (regal_handle_alloc), and --trim runs regal_arena_compact and
 * regal_arena_trim on it before malloc_trim.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

/* A block is reached through a ref: its address, or a regal handle. */
#ifdef FRAG_HANDLES
#include "regal.h"

typedef regal_handle ref;
static regal_arena *arena;

static ref block_new(size_t size)
{
    if (arena == NULL && (arena = regal_arena_create(NULL)) == NULL)
        abort();
    ref r = regal_handle_alloc(arena, size);
    if (r == 0)
        abort();
    return r;
}

static void *block_at(ref r)
{
    return regal_handle_ptr(arena, r);
}

static void block_drop(ref r)
{
    regal_handle_free(arena, r);
}
#else
typedef void *ref;

static ref block_new(size_t size)
{
    return wl_malloc(size);
}

static void *block_at(ref r)
{
    return r;
}

static void block_drop(ref r)
{
    free(r);
}
#endif

struct block {
    ref p;
    size_t size;
    uint64_t tag;
};

static size_t random_size(struct wl_rng *r)
{
    return wl_rng_below(r, 10) < 7 ? wl_rng_log_size(r, 16, 512)
                                   : wl_rng_log_size(r, 513, 64 << 10);
}

static void allocate(struct block *b, struct wl_rng *r, uint64_t tag)
{
    b->size = random_size(r);
    b->tag = tag;
    b->p = block_new(b->size);
    wl_fill(block_at(b->p), b->size, b->tag);
}

static void release(struct block *b, const char *when)
{
    wl_check(block_at(b->p), b->size, b->tag, when);
    block_drop(b->p);
    b->p = 0;
}

/* malloc_trim(0); 0 if no allocator has it.  For handles: compaction and
 * a trim of the handle arena first (malloc_trim then gives back what the
 * index of blocks left behind as it grew). */
static int trim(void)
{
    int released = 0;
#ifdef FRAG_HANDLES
    released = regal_arena_compact(arena) + regal_arena_trim(arena) > 0;
#endif
    int (*fn)(size_t) = (int (*)(size_t))wl_function(RTLD_DEFAULT, "malloc_trim", NULL);
    return (fn != NULL && fn(0)) || released;
}

/* The allocator's own account of its memory on stderr (malloc_stats), for
 * --verbose; the handle arena's statistics for handles. */
static void print_stats(void)
{
#ifdef FRAG_HANDLES
    regal_arena_print_stats(arena, stderr);
#else
    void (*fn)(void) = wl_function(RTLD_DEFAULT, "malloc_stats", NULL);
    if (fn != NULL)
        fn();
#endif
}

int main(int argc, char **argv)
{
    size_t total = (size_t)1 << 30, keep = 10, steady_ops = 2000000, seed = 0x66726167;
    double scale = 1;
    bool do_trim = false, verbose = false;
    const struct wl_option opts[] = {
        {"--total", WL_BYTES, &total, "bytes allocated in phase 1 (1G)"},
        {"--keep", WL_COUNT, &keep, "percent of the blocks that survive phase 2 (10)"},
        {"--steady-ops", WL_COUNT, &steady_ops, "free+malloc pairs in phase 3 (2000000)"},
        {"--trim", WL_FLAG, &do_trim, "call malloc_trim(0) before reading the final RSS"},
        {"--verbose", WL_FLAG, &verbose, "live bytes and peak RSS on stderr"},
        {"--seed", WL_COUNT, &seed, "random seed"},
        {"--scale", WL_SCALE, &scale, "multiplies --total and --steady-ops (1)"},
    };
    WL_PARSE(argc, argv, opts, "Fragmentation then steady state; prints the final RSS.");
    if (keep > 100)
        keep = 100;
    total = wl_scaled(total, scale);
    steady_ops = wl_scaled(steady_ops, scale);

    struct wl_rng rng;
    wl_rng_init(&rng, seed, 0);
    /* Phase 1 needs at most total / 16 records; grow the array as needed. */
    size_t cap = 1 << 16, n = 0;
    struct block *blocks = wl_malloc(cap * sizeof *blocks);

    double t0 = wl_now();
    for (size_t bytes = 0; bytes < total; bytes += blocks[n++].size) {
        if (n == cap)
            blocks = wl_realloc(blocks, (cap *= 2) * sizeof *blocks);
        allocate(&blocks[n], &rng, n + 1);
    }
    /* Phase 2: a random KEEP% survive, moved to the front of the array. */
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        if (wl_rng_below(&rng, 100) < keep)
            blocks[live++] = blocks[i];
        else
            release(&blocks[i], "in phase 2");
    }
    if (live == 0)
        allocate(&blocks[live++], &rng, n + 1);
    for (size_t i = 0; i < steady_ops; i++) {
        struct block *b = &blocks[wl_rng_below(&rng, live)];
        release(b, "in phase 3");
        allocate(b, &rng, n + 1 + i + 1);
    }
    if (do_trim)
        trim();
    double t1 = wl_now();
    size_t final_rss = wl_rss_kib();

    if (verbose) {
        size_t live_bytes = 0;
        for (size_t i = 0; i < live; i++)
            live_bytes += blocks[i].size;
        fprintf(stderr,
                "frag: %zu blocks (%.1f MiB) allocated, %zu live at the end (%.1f MiB); "
                "final RSS %.1f MiB, peak RSS %.1f MiB\n",
                n, (double)total / 1048576.0, live, (double)live_bytes / 1048576.0,
                (double)final_rss / 1024.0, (double)wl_peak_rss_kib() / 1024.0);
        print_stats();
    }
    for (size_t i = 0; i < live; i++)
        release(&blocks[i], "at the end");
    free(blocks);

    char extra[32];
    snprintf(extra, sizeof extra, "%zu", final_rss);
    return wl_finish(t1 - t0, extra);
}
