/*
 * Thread caches of freed heap blocks (see mcache.h).  Only the owning
 * thread touches a cache, with no lock; the arena lock is taken to hand
 * blocks back to the heap.
 */
#include "mcache.h"

#include <string.h>

#include "arena.h"
#include "heap.h"

#define BLOCK_LO ((size_t)1 << RG_MCACHE_MIN_SHIFT)
#define BLOCK_HI ((size_t)1 << RG_MCACHE_MAX_SHIFT)

/* The bin of block bytes bs in [BLOCK_LO, BLOCK_HI): a bin holds the
 * blocks from its lower bound up to the next bin's. */
static unsigned bin_of(size_t bs)
{
    unsigned f = rg_log2(bs);
    unsigned step = (unsigned)(bs >> (f - RG_MCACHE_STEPS_LOG)) & ((1u << RG_MCACHE_STEPS_LOG) - 1);
    return (f - RG_MCACHE_MIN_SHIFT) << RG_MCACHE_STEPS_LOG | step;
}

static void flush_locked_out(struct regal_arena *a, struct rg_mcache *m)
{
    rg_arena_lock(a);
    rg_mcache_flush(a, m);
    rg_arena_unlock(a);
}

/* Another thread's trim asked for the blocks back. */
static void serve_flush_request(struct regal_arena *a, struct rg_mcache *m)
{
    if (RG_UNLIKELY(__atomic_load_n(&m->flush_req, __ATOMIC_RELAXED))) {
        __atomic_store_n(&m->flush_req, false, __ATOMIC_RELAXED);
        flush_locked_out(a, m);
    }
}

/* Takes entry i out of bin b. */
static void *bin_take(struct rg_mcache *m, struct rg_mcache_bin *b, uint32_t i)
{
    void *p = b->blocks[i];
    m->bytes -= b->bsize[i];
    uint32_t last = --b->count;
    b->blocks[i] = b->blocks[last];
    b->bsize[i] = b->bsize[last];
    return p;
}

void *rg_mcache_alloc(struct regal_arena *a, struct rg_mcache *m, size_t size, size_t *usable)
{
    serve_flush_request(a, m);
    size_t bs = rg_heap_block_size(size);
    if (bs < BLOCK_LO || bs >= BLOCK_HI || m->bytes == 0)
        return NULL;
    unsigned k = bin_of(bs);
    struct rg_mcache_bin *b = &m->bins[k];
    void *p = NULL;
    for (uint32_t i = b->count; i-- > 0;) { /* the block freed last first: warm */
        if (b->bsize[i] >= bs) {
            p = bin_take(m, b, i);
            break;
        }
    }
    for (unsigned j = k + 1; p == NULL && j < k + 1 + RG_MCACHE_REACH && j < RG_MCACHE_BINS; j++) {
        b = &m->bins[j]; /* every block there is big enough */
        if (b->count > 0)
            p = bin_take(m, b, b->count - 1);
    }
    if (p != NULL)
        *usable = rg_heap_unclaim(p);
    return p;
}

/* Gives the older half of every bin back to the heap, under the lock
 * taken bin by bin (mcache.h).  The bin forgets the blocks before the
 * unlock: a fork right after it would otherwise leave the child a cache
 * that still lists blocks the heap has, and its flush (theap.c, for the
 * threads the child lost) would free them twice: a free list with a cycle
 * (tests/shim/stress.c, "fork while threads shed"). */
static void shed_half(struct regal_arena *a, struct rg_mcache *m)
{
    for (unsigned k = 0; k < RG_MCACHE_BINS; k++) {
        struct rg_mcache_bin *b = &m->bins[k];
        uint32_t n = (b->count + 1) / 2;
        if (n == 0)
            continue;
        rg_arena_lock(a);
        for (uint32_t i = 0; i < n; i++) {
            m->bytes -= b->bsize[i];
            rg_heap_free(a, b->blocks[i]);
        }
        b->count -= n;
        memmove(b->blocks, b->blocks + n, b->count * sizeof b->blocks[0]);
        memmove(b->bsize, b->bsize + n, b->count * sizeof b->bsize[0]);
        rg_arena_unlock(a);
    }
}

size_t rg_mcache_free(struct regal_arena *a, struct rg_mcache *m, struct rg_chunk *c, void *p)
{
    serve_flush_request(a, m);
    size_t bs = rg_heap_claim(c, p, BLOCK_LO, BLOCK_HI);
    if (bs == 0)
        return 0;
    struct rg_mcache_bin *b = &m->bins[bin_of(bs)];
    if (b->count == RG_MCACHE_DEPTH || m->bytes + bs > RG_MCACHE_BYTES)
        shed_half(a, m);
    b->blocks[b->count] = p;
    b->bsize[b->count] = (uint32_t)bs;
    b->count++;
    m->bytes += bs;
    return bs - RG_HB_HEADER;
}

void rg_mcache_start(struct rg_mcache *m)
{
    memset(m->bins, 0, sizeof m->bins);
    m->on = true;
}

void rg_mcache_flush(struct regal_arena *a, struct rg_mcache *m)
{
    if (!m->on)
        return; /* bins untouched: m->bytes is 0 */
    for (unsigned k = 0; k < RG_MCACHE_BINS; k++) {
        struct rg_mcache_bin *b = &m->bins[k];
        for (uint32_t i = 0; i < b->count; i++)
            rg_heap_free(a, b->blocks[i]);
        b->count = 0;
    }
    m->bytes = 0;
}

void rg_mcache_request_flush(struct rg_mcache *m)
{
    __atomic_store_n(&m->flush_req, true, __ATOMIC_RELAXED);
}
