/*
 * realloc_growth: many buffers growing at once, by small increments (a
 * naive string builder) and by doubling (a vector).
 *
 *   realloc_growth [--buffers N] [--appends N] [--seed N] [--scale X]
 *
 * BUFFERS buffers (default 256) grow side by side; each of APPENDS steps
 * (default 6M) appends to a random one of them:
 *  - increment buffers (half of them) append 1 to 256 bytes and realloc to
 *    exactly the new length every time, up to a length log-uniform in
 *    [64, 64K]: the pattern in-place growth is for;
 *  - doubling buffers append 1 to 4096 bytes (log-uniform) and realloc to
 *    twice their capacity when full, up to a length log-uniform in
 *    [1K, 1M]: few reallocs, large copies unless the block can grow.
 * A buffer at its length is checked, freed, and replaced by a new empty one
 * of a random kind.  The appended bytes are written in full; byte o of a
 * buffer holds a value derived from its tag and o / 64.  After every realloc
 * the first and the last kept byte are checked, at the free one byte in 64.
 * The time covers the steps; --scale multiplies APPENDS.
 */
#include <stdlib.h>
#include <string.h>

#include "workload.h"

#define CHUNK 64 /* bytes of one value */

struct buffer {
    unsigned char *p;
    size_t len, cap, target;
    uint64_t tag;
    bool doubling;
};

static unsigned char value(uint64_t tag, size_t off)
{
    uint64_t x = ((tag * 0xff51afd7ed558ccdu) ^ (off / CHUNK)) * 0x9e3779b97f4a7c15u;
    return (unsigned char)(x >> 56);
}

static void check_byte(const struct buffer *b, size_t off, const char *when)
{
    if (b->p[off] != value(b->tag, off))
        wl_corrupted(b->p, b->len, off, value(b->tag, off), when);
}

static void start(struct buffer *b, struct wl_rng *rng, uint64_t tag)
{
    b->doubling = wl_rng_below(rng, 2) == 0;
    b->target =
        b->doubling ? wl_rng_log_size(rng, 1 << 10, 1 << 20) : wl_rng_log_size(rng, 64, 64 << 10);
    b->p = NULL;
    b->len = b->cap = 0;
    b->tag = tag;
}

static void finish(struct buffer *b)
{
    for (size_t off = 0; off < b->len; off += CHUNK)
        check_byte(b, off, "before free");
    if (b->len > 0)
        check_byte(b, b->len - 1, "before free");
    free(b->p);
}

static void append(struct buffer *b, struct wl_rng *rng)
{
    size_t n = b->doubling ? wl_rng_log_size(rng, 1, 4096) : wl_rng_range(rng, 1, 256);
    if (n > b->target - b->len)
        n = b->target - b->len;
    size_t len = b->len + n;
    if (len > b->cap) {
        size_t cap = b->doubling ? (b->cap * 2 > len ? b->cap * 2 : len) : len;
        b->p = wl_realloc(b->p, cap);
        b->cap = cap;
        if (b->len > 0) {
            check_byte(b, 0, "after realloc");
            check_byte(b, b->len - 1, "after realloc");
        }
    }
    /* Write [b->len, len) one CHUNK-aligned run at a time. */
    for (size_t off = b->len; off < len;) {
        size_t end = (off / CHUNK + 1) * CHUNK;
        if (end > len)
            end = len;
        memset(b->p + off, value(b->tag, off), end - off);
        off = end;
    }
    b->len = len;
}

int main(int argc, char **argv)
{
    size_t nbuffers = 256, appends = 6000000, seed = 0x7265616c6c6f63;
    double scale = 1;
    const struct wl_option opts[] = {
        {"--buffers", WL_COUNT, &nbuffers, "buffers growing at once (256)"},
        {"--appends", WL_COUNT, &appends, "appends in all (6000000)"},
        {"--seed", WL_COUNT, &seed, "random seed"},
        {"--scale", WL_SCALE, &scale, "multiplies --appends (1)"},
    };
    WL_PARSE(argc, argv, opts, "Buffers grown by realloc: small increments and doubling.");
    appends = wl_scaled(appends, scale);

    struct wl_rng rng;
    wl_rng_init(&rng, seed, 0);
    struct buffer *buffers = wl_malloc(nbuffers * sizeof *buffers);
    uint64_t tags = 0;
    for (size_t i = 0; i < nbuffers; i++)
        start(&buffers[i], &rng, ++tags);

    double t0 = wl_now();
    for (size_t i = 0; i < appends; i++) {
        struct buffer *b = &buffers[wl_rng_below(&rng, nbuffers)];
        append(b, &rng);
        if (b->len == b->target) {
            finish(b);
            start(b, &rng, ++tags);
        }
    }
    double t1 = wl_now();

    for (size_t i = 0; i < nbuffers; i++)
        finish(&buffers[i]);
    free(buffers);
    return wl_finish(t1 - t0, NULL);
}
