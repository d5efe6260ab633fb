/*
 * small_churn: one thread, small objects, the way interpreters, parsers and
 * containers use malloc.
 *
 *   small_churn [--ops N] [--slots N] [--burst N] [--burst-every N]
 *               [--seed N] [--scale X]
 *
 * Two patterns, interleaved:
 *  - random replacement: OPS times (default 10M) a random one of SLOTS
 *    slots (default 20000) has its block checked and freed and gets a new
 *    one, log-uniform in [8, 512] bytes: a working set whose blocks die in
 *    random order;
 *  - bursts: every BURST_EVERY operations (default 50000) BURST nodes
 *    (default 20000) of [16, 128] bytes are built into a linked list and
 *    then freed from the head, in allocation order: a temporary structure
 *    built and dropped at once, as a parse tree or a request's objects.
 *
 * Every block is filled and checked before its free.  The time covers both
 * patterns; --scale multiplies OPS.
 */
#include <stdlib.h>

#include "workload.h"

struct node {
    struct node *next;
    size_t size;
    uint64_t tag;
};

static void burst(struct wl_rng *rng, size_t n, uint64_t tag_base)
{
    struct node *head = NULL, **tail = &head;
    for (size_t i = 0; i < n; i++) {
        size_t size = wl_rng_log_size(rng, 16, 128);
        unsigned char *p = wl_malloc(sizeof(struct node) + size);
        struct node *node = (struct node *)p;
        *node = (struct node){.next = NULL, .size = size, .tag = tag_base + i};
        wl_fill(p + sizeof *node, size, node->tag);
        *tail = node;
        tail = &node->next;
    }
    while (head != NULL) {
        struct node *next = head->next;
        wl_check((unsigned char *)head + sizeof *head, head->size, head->tag, "in a burst");
        free(head);
        head = next;
    }
}

int main(int argc, char **argv)
{
    size_t ops = 10000000, nslots = 20000, burst_len = 20000, burst_every = 50000;
    size_t seed = 0x736d616c6c;
    double scale = 1;
    const struct wl_option opts[] = {
        {"--ops", WL_COUNT, &ops, "random replacements (10000000)"},
        {"--slots", WL_COUNT, &nslots, "working set of blocks (20000)"},
        {"--burst", WL_COUNT, &burst_len, "nodes of a burst (20000)"},
        {"--burst-every", WL_COUNT, &burst_every, "replacements between bursts (50000)"},
        {"--seed", WL_COUNT, &seed, "random seed"},
        {"--scale", WL_SCALE, &scale, "multiplies --ops (1)"},
    };
    WL_PARSE(argc, argv, opts, "Single-thread small-object churn: a working set and bursts.");
    ops = wl_scaled(ops, scale);

    struct wl_rng rng;
    wl_rng_init(&rng, seed, 0);
    struct wl_block *slots = wl_blocks_new(nslots);

    double t0 = wl_now();
    for (size_t i = 0; i < ops; i++) {
        struct wl_block *s = &slots[wl_rng_below(&rng, nslots)];
        wl_block_replace(s, wl_rng_log_size(&rng, 8, 512), i);
        if ((i + 1) % burst_every == 0)
            burst(&rng, burst_len, (uint64_t)1 << 48 | i << 16);
    }
    double t1 = wl_now();

    wl_blocks_free(slots, nslots);
    return wl_finish(t1 - t0, NULL);
}
