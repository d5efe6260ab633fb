/*
 * calloc_reuse: one large block calloc'd, used and freed, again and again:
 * a decoder's frame buffer, a zeroed table rebuilt for every request.
 *
 *   calloc_reuse [--size BYTES] [--rounds N] [--sparse] [--scale X]
 *
 * ROUNDS times (default 2000) a block of SIZE bytes (default 4M) is
 * calloc'd, one byte per 4 KiB (every page) is checked to be zero and then
 * written, and the block is freed.  --sparse checks and writes only the
 * middle byte: a block that is barely used, where an allocator that clears
 * recycled memory pays for nothing.  Every allocator
 * but the first round's serves the block from memory the previous round
 * dirtied, so this measures how calloc makes it read as zero: clearing it
 * or giving its pages back to the OS (then every page used faults in again).
 * The time covers the rounds; --scale multiplies ROUNDS.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "workload.h"

/* Checks that byte off of p is zero and writes it. */
static void use(unsigned char *p, size_t size, size_t off)
{
    if (p[off] != 0)
        wl_corrupted(p, size, off, 0, "after calloc");
    p[off] = 1;
}

int main(int argc, char **argv)
{
    size_t size = 4 << 20, rounds = 2000;
    double scale = 1;
    bool sparse = false;
    const struct wl_option opts[] = {
        {"--size", WL_BYTES, &size, "block size (4M)"},
        {"--rounds", WL_COUNT, &rounds, "calloc, use, free rounds (2000)"},
        {"--sparse", WL_FLAG, &sparse, "use only the middle byte, not a byte per page"},
        {"--scale", WL_SCALE, &scale, "multiplies --rounds (1)"},
    };
    WL_PARSE(argc, argv, opts, "A large block calloc'd, used and freed, again and again.");
    rounds = wl_scaled(rounds, scale);

    double t0 = wl_now();
    for (size_t r = 0; r < rounds; r++) {
        unsigned char *p = calloc(1, size);
        if (p == NULL) {
            fprintf(stderr, "calloc_reuse: calloc(1, %zu) failed\n", size);
            return 1;
        }
        if (sparse)
            use(p, size, size / 2);
        for (size_t off = 0; !sparse && off < size; off += 4096)
            use(p, size, off);
        free(p);
    }
    double t1 = wl_now();
    return wl_finish(t1 - t0, NULL);
}
