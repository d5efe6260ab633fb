/*
 * trim_batches: batches of blocks of 256 B to 8 KiB allocated and freed
 * as a whole, again and again: a request handler's buffers, a frame's
 * temporaries.
 *
 *   trim_batches [--batches N] [--batch N] [--min BYTES] [--max BYTES]
 *                [--seed N] [--scale X]
 *
 * This is glibc's pathology: as the batch is freed, its chunks merge into
 * the top of the heap, and glibc gives the top back to the kernel (brk)
 * whenever it exceeds M_TRIM_THRESHOLD (128 KiB unless freed mmapped
 * chunks have raised it), so the next batch faults the same pages in
 * again, zeroed by the kernel: most of glibc's time here is system time
 * (strace -c -e brk shows about 150 brk calls per batch).  Blocks up to
 * 1032 B that glibc keeps in its tcache pin parts of the heap and soften
 * it; --min 1040 leaves them out and makes glibc trim at almost every
 * free.  Allocators that keep freed memory for a while pay nothing of the
 * sort.
 *
 * First BATCH blocks are allocated and kept to the end, untimed: the
 * program's long-lived data, below the batches in the heap.  Then BATCHES
 * times (default 300) BATCH blocks (default 10000, log-uniform in [MIN,
 * MAX], default [256, 8K], about 22 MiB together) are allocated and
 * filled, then checked and freed in allocation order.  The time covers the
 * batches; --scale multiplies BATCHES.
 */
#include <stdlib.h>

#include "workload.h"

struct block {
    void *p;
    size_t size;
    uint64_t tag;
};

static size_t min_size = 256, max_size = 8 << 10;

static void allocate(struct block *b, struct wl_rng *rng, uint64_t tag)
{
    b->size = wl_rng_log_size(rng, min_size, max_size);
    b->tag = tag;
    b->p = wl_malloc(b->size);
    wl_fill(b->p, b->size, b->tag);
}

static void release(struct block *b, const char *when)
{
    wl_check(b->p, b->size, b->tag, when);
    free(b->p);
    b->p = NULL;
}

int main(int argc, char **argv)
{
    size_t batches = 300, batch = 10000, seed = 0x7472696d;
    double scale = 1;
    const struct wl_option opts[] = {
        {"--batches", WL_COUNT, &batches, "batches (300)"},
        {"--batch", WL_COUNT, &batch, "blocks per batch (10000)"},
        {"--min", WL_BYTES, &min_size, "smallest block (256)"},
        {"--max", WL_BYTES, &max_size, "largest block (8K)"},
        {"--seed", WL_COUNT, &seed, "random seed"},
        {"--scale", WL_SCALE, &scale, "multiplies --batches (1)"},
    };
    WL_PARSE(argc, argv, opts, "Batches of 256 B - 8 KiB blocks allocated and freed together.");
    batches = wl_scaled(batches, scale);

    struct wl_rng rng;
    wl_rng_init(&rng, seed, 0);
    struct block *kept = wl_malloc(batch * sizeof *kept);
    struct block *blocks = wl_malloc(batch * sizeof *blocks);
    for (size_t i = 0; i < batch; i++)
        allocate(&kept[i], &rng, (uint64_t)1 << 63 | i);

    double t0 = wl_now();
    for (size_t k = 0; k < batches; k++) {
        for (size_t i = 0; i < batch; i++)
            allocate(&blocks[i], &rng, (uint64_t)k << 32 | i);
        for (size_t i = 0; i < batch; i++)
            release(&blocks[i], "before free");
    }
    double t1 = wl_now();

    for (size_t i = 0; i < batch; i++)
        release(&kept[i], "at the end");
    free(kept);
    free(blocks);
    return wl_finish(t1 - t0, NULL);
}
