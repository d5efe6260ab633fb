/*
 * The purge policy: when the free memory an arena keeps committed goes back
 * to the OS.
 *
 * Dirty memory is free memory that is still committed, so possibly
 * resident: free spans of pages chunks and their pages above top, the pages
 * wholly inside free heap blocks (past the header and links, before the
 * footer), and cached large mappings.  a->dirty counts it exactly (arena.c
 * invariant 4, checked by regal_arena_check): page.c, heap.c and large.c
 * add to it when memory becomes free and subtract when it is used again.
 *
 * A purge gives dirty memory back with madvise(MADV_DONTNEED), so RSS drops
 * at once and the pages read as zero when touched again, and uncommits it
 * (it no longer counts against the limit); the arena keeps the address
 * space ("retained").  Cached large mappings are unmapped instead.
 *
 * When: rg_purge_maybe() runs on slow paths only: a span given back to its
 * chunk, a heap free that leaves a free run of RG_PURGE_RUN bytes or more,
 * a large mapping entering the cache, memory committed fresh from the OS,
 * an arena reset.  The fast paths of alloc.c never call it.  It purges
 *  1. down to half the cap, when the dirty memory of pages and heap passes
 *     the cap (purge_cap; by default max(RG_PURGE_CAP_MIN, in_use / 4)):
 *     free spans first, then free heap blocks, largest first;
 *  2. everything, when dirty memory has waited purge_delay ms (default
 *     RG_PURGE_DELAY_DEFAULT; 0: at once).  The wait starts at the first
 *     slow path that finds dirty memory after the arena had none
 *     (a->dirty_since); the coarse monotonic clock is read only there.
 * The large cache is bounded on its own (large.c: 32 mappings, 128 MiB or
 * in_use) and goes with the delay but not with the cap, so that a program
 * cycling large buffers keeps reusing their pages.  An idle arena runs no slow path
 * and purges nothing; regal_arena_trim (malloc_trim) gives everything back
 * at once.
 *
 * Purging everything once the delay is up, rather than only what has been
 * free that long, costs a program that frees and allocates all the time
 * one refault of its free memory per delay: 1000 ms keeps that far below
 * the noise (bench/README.md, "purge policy").
 *
 * Everything here runs under the arena's lock.  A purge moves no block and
 * no chunk, so it may run in the middle of an allocation (rg_arena_commit
 * calls it).
 */
#include "purge.h"

#include "arena.h"
#include "heap.h"
#include "large.h"
#include "options.h"
#include "os.h"

void rg_purge_init(regal_arena *a)
{
    const struct rg_options *o = rg_options();
    rg_purge_set(a, o->purge_delay, o->purge_cap);
}

void rg_purge_set(regal_arena *a, uint64_t delay_ms, size_t cap)
{
    a->purge_delay = delay_ms;
    a->purge_cap = cap;
    a->dirty_since = 0;
}

size_t rg_purge_cap(const regal_arena *a)
{
    if (a->purge_cap != RG_PURGE_CAP_AUTO)
        return a->purge_cap;
    size_t scaled = rg_arena_in_use(a) / 4;
    return scaled > RG_PURGE_CAP_MIN ? scaled : RG_PURGE_CAP_MIN;
}

/* Free spans chunk by chunk, then free heap blocks from the largest, until
 * at least want bytes went back or nothing is left; bytes released. */
static size_t purge_held(regal_arena *a, size_t want)
{
    size_t released = 0;
    for (struct rg_chunk *c = a->pages; c != NULL && released < want; c = c->next)
        if (rg_pages_chunk_dirty(c) > 0) /* a few words of the bitmap: cheaper than a trim */
            released += rg_pages_chunk_trim(a, c);
    if (released < want)
        released += rg_heap_purge(a, want - released);
    return released;
}

size_t rg_purge_all(regal_arena *a)
{
    size_t released = purge_held(a, SIZE_MAX) + rg_large_flush_cache(a);
    RG_ASSERT(a->dirty == 0);
    return released;
}

void rg_purge_maybe(regal_arena *a)
{
    if (a->dirty == 0)
        return;
    size_t held = a->dirty - a->large_cache_bytes;
    /* An automatic cap is at least RG_PURGE_CAP_MIN: below that, in_use
     * (a sum over the arena's theaps) is not needed. */
    if (held > RG_PURGE_CAP_MIN || a->purge_cap != RG_PURGE_CAP_AUTO) {
        size_t cap = rg_purge_cap(a);
        if (held > cap)
            purge_held(a, held - cap / 2);
    }
    if (a->purge_delay == RG_PURGE_DELAY_OFF || a->dirty == 0)
        return;
    if (a->purge_delay == 0) {
        rg_purge_all(a);
        return;
    }
    uint64_t now = rg_os_now_ms();
    if (a->dirty_since == 0)
        a->dirty_since = now;
    else if (now - a->dirty_since >= a->purge_delay)
        rg_purge_all(a);
}

size_t rg_purge_count_dirty(regal_arena *a)
{
    size_t n = a->large_cache_bytes + rg_heap_dirty(a);
    for (struct rg_chunk *c = a->pages; c != NULL; c = c->next)
        n += rg_pages_chunk_dirty(c);
    return n;
}
