/*
 * grow_buffer: one buffer grown by realloc a little at a time, far past
 * the sizes of a heap: a log or a string builder appending to one big
 * buffer, a vector grown by a constant.
 *
 *   grow_buffer [--step BYTES] [--max BYTES] [--rounds N] [--scale X]
 *
 * ROUNDS times (default 2) a buffer starts empty and grows by STEP bytes
 * (default 4K) per realloc to MAX (default 64M); each step writes its new
 * bytes' first and last byte and checks the byte the previous step wrote
 * first, which realloc must have kept; then the buffer is freed.  An
 * allocator that copies the buffer whenever it cannot grow in place copies
 * about MAX * MAX / (2 * STEP) bytes a round; one that moves its pages
 * (mremap) copies nothing.  The time covers the rounds; --scale multiplies
 * ROUNDS.
 */
#include <stdlib.h>

#include "workload.h"

static unsigned char mark(size_t off)
{
    return (unsigned char)(off / 4096 * 31 + 7);
}

int main(int argc, char **argv)
{
    size_t step = 4096, max = 64 << 20, rounds = 2;
    double scale = 1;
    const struct wl_option opts[] = {
        {"--step", WL_BYTES, &step, "bytes added per realloc (4K)"},
        {"--max", WL_BYTES, &max, "size the buffer grows to (64M)"},
        {"--rounds", WL_COUNT, &rounds, "buffers grown one after the other (2)"},
        {"--scale", WL_SCALE, &scale, "multiplies --rounds (1)"},
    };
    WL_PARSE(argc, argv, opts, "One buffer grown by realloc a little at a time.");
    rounds = wl_scaled(rounds, scale);

    double t0 = wl_now();
    for (size_t r = 0; r < rounds; r++) {
        unsigned char *p = NULL;
        for (size_t have = 0; have + step <= max; have += step) {
            p = wl_realloc(p, have + step);
            if (have > 0 && p[have - step] != mark(have - step))
                wl_corrupted(p, have + step, have - step, mark(have - step), "after realloc");
            p[have] = mark(have);
            p[have + step - 1] = 1;
        }
        free(p);
    }
    double t1 = wl_now();
    return wl_finish(t1 - t0, NULL);
}
