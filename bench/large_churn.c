/*
 * large_churn: blocks above 256 KiB, allocated, touched and freed in
 * random order: what decides here is whether the allocator maps and unmaps
 * every block (a page fault per page, each time) or reuses memory.
 *
 *   large_churn [--ops N] [--slots N] [--min BYTES] [--max BYTES]
 *               [--seed N] [--scale X]
 *
 * OPS times (default 16000) a random one of SLOTS slots (default 32) has its
 * block checked and freed and gets a new one of a size log-uniform in
 * [MIN, MAX] (default [256K, 8M]), which is filled with wl_fill: a byte on
 * every page.  The live set averages about 75 MiB.  The time covers the
 * operations; --scale multiplies OPS.
 */
#include <stdlib.h>

#include "workload.h"

int main(int argc, char **argv)
{
    size_t ops = 16000, nslots = 32, min = 256 << 10, max = 8 << 20, seed = 0x6c61726765;
    double scale = 1;
    const struct wl_option opts[] = {
        {"--ops", WL_COUNT, &ops, "replacements (16000)"},
        {"--slots", WL_COUNT, &nslots, "live blocks (32)"},
        {"--min", WL_BYTES, &min, "smallest block (256K)"},
        {"--max", WL_BYTES, &max, "largest block (8M)"},
        {"--seed", WL_COUNT, &seed, "random seed"},
        {"--scale", WL_SCALE, &scale, "multiplies --ops (1)"},
    };
    WL_PARSE(argc, argv, opts, "Large-block churn: blocks above 256 KiB replaced at random.");
    if (min > max)
        max = min;
    ops = wl_scaled(ops, scale);

    struct wl_rng rng;
    wl_rng_init(&rng, seed, 0);
    struct wl_block *slots = wl_blocks_new(nslots);

    double t0 = wl_now();
    for (size_t i = 0; i < ops; i++) {
        struct wl_block *s = &slots[wl_rng_below(&rng, nslots)];
        wl_block_replace(s, wl_rng_log_size(&rng, min, max), i + 1);
    }
    double t1 = wl_now();

    wl_blocks_free(slots, nslots);
    return wl_finish(t1 - t0, NULL);
}
