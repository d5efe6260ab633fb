/*
 * mstress: random sizes with random lifetimes on several threads, blocks
 * moving between threads; after mimalloc-bench's mstress and rpmalloc's
 * rptest.
 *
 *   mstress [--threads N] [--ops N] [--slots N] [--transfer-every N]
 *           [--seed N] [--scale X]
 *
 * Each of THREADS threads (default 4) owns SLOTS slots (default 1000),
 * initially empty, and does OPS operations (default 1.2M): pick a random
 * slot; if it holds a block, check it and free it, or, one time in
 * TRANSFER_EVERY (default 8), swap it into a random cell of a shared
 * transfer array (1024 cells, each with a mutex) instead, and check and
 * free what was there, which another thread usually allocated; then put a
 * new block in the slot.
 * A block lives until its slot is picked again (a geometric lifetime, mean
 * SLOTS operations) or, when transferred, until another thread picks its
 * cell.
 *
 * Sizes: 60% in [16, 256], 30% in (256, 8K], 8% in (8K, 64K], 2% in
 * (64K, 1M] bytes, log-uniform inside each range; about 14 KiB on average,
 * so the live set is about 70 MiB.  Each block is checked before its free,
 * against the size and tag its slot or cell recorded.  The time covers the
 * threads; --scale multiplies OPS.
 */
#include <pthread.h>
#include <stdlib.h>

#include "workload.h"

#define TRANSFER_CELLS 1024

struct block {
    void *p; /* NULL: empty */
    size_t size;
    uint64_t tag;
};

/* A cell of the transfer array: a block and the lock that makes the swap
 * of all three fields atomic, so that the receiver knows which tag to
 * expect and an allocator that hands out one block twice is caught. */
static struct cell {
    pthread_mutex_t lock;
    struct block b;
} transfer[TRANSFER_CELLS];

struct worker {
    size_t slots, ops, transfer_every;
    uint64_t seed, id;
};

static size_t random_size(struct wl_rng *r)
{
    uint64_t pick = wl_rng_below(r, 100);
    if (pick < 60)
        return wl_rng_log_size(r, 16, 256);
    if (pick < 90)
        return wl_rng_log_size(r, 257, 8 << 10);
    if (pick < 98)
        return wl_rng_log_size(r, (8 << 10) + 1, 64 << 10);
    return wl_rng_log_size(r, (64 << 10) + 1, 1 << 20);
}

static void release(struct block *b, const char *when)
{
    if (b->p != NULL) {
        wl_check(b->p, b->size, b->tag, when);
        free(b->p);
        b->p = NULL;
    }
}

/* Puts *b into a cell and takes out what was there. */
static void swap_cell(struct cell *c, struct block *b)
{
    pthread_mutex_lock(&c->lock);
    struct block old = c->b;
    c->b = *b;
    pthread_mutex_unlock(&c->lock);
    *b = old;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    struct wl_rng rng;
    wl_rng_init(&rng, w->seed, w->id);
    struct block *slot = wl_malloc(w->slots * sizeof *slot);
    for (size_t i = 0; i < w->slots; i++)
        slot[i] = (struct block){NULL, 0, 0};
    for (size_t i = 0; i < w->ops; i++) {
        struct block *s = &slot[wl_rng_below(&rng, w->slots)];
        if (s->p != NULL && wl_rng_below(&rng, w->transfer_every) == 0) {
            swap_cell(&transfer[wl_rng_below(&rng, TRANSFER_CELLS)], s);
            release(s, "after a transfer");
        } else {
            release(s, "before free");
        }
        s->size = random_size(&rng);
        s->tag = w->id << 40 | i;
        s->p = wl_malloc(s->size);
        wl_fill(s->p, s->size, s->tag);
    }
    for (size_t i = 0; i < w->slots; i++)
        release(&slot[i], "at the thread's end");
    free(slot);
    return NULL;
}

int main(int argc, char **argv)
{
    size_t threads = 4, ops = 1200000, slots = 1000, transfer_every = 8, seed = 0x6d737472;
    double scale = 1;
    const struct wl_option opts[] = {
        {"--threads", WL_COUNT, &threads, "threads (4)"},
        {"--ops", WL_COUNT, &ops, "operations per thread (1200000)"},
        {"--slots", WL_COUNT, &slots, "slots per thread (1000)"},
        {"--transfer-every", WL_COUNT, &transfer_every, "1 in N frees goes to another thread (8)"},
        {"--seed", WL_COUNT, &seed, "random seed"},
        {"--scale", WL_SCALE, &scale, "multiplies --ops (1)"},
    };
    WL_PARSE(argc, argv, opts, "mstress/rptest: random sizes and lifetimes across threads.");
    ops = wl_scaled(ops, scale);

    struct worker *workers = wl_malloc(threads * sizeof *workers);
    for (size_t t = 0; t < threads; t++)
        workers[t] = (struct worker){.slots = slots,
                                     .ops = ops,
                                     .transfer_every = transfer_every,
                                     .seed = seed,
                                     .id = t + 1};

    for (size_t i = 0; i < TRANSFER_CELLS; i++)
        pthread_mutex_init(&transfer[i].lock, NULL);

    double t0 = wl_now();
    wl_run_threads(threads, work, workers, sizeof *workers);
    for (size_t i = 0; i < TRANSFER_CELLS; i++)
        release(&transfer[i].b, "left in the transfer array");
    double t1 = wl_now();

    free(workers);
    return wl_finish(t1 - t0, NULL);
}
