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
 *     the cap (purge_cap; by default max(RG_PURGE_CAP_MIN, in_use / 4),
 *     its floor doubled keep_shift times, below): free spans first, then
 *     free heap blocks, largest first;
 *  2. everything, when dirty memory has waited purge_delay ms (default
 *     RG_PURGE_DELAY_DEFAULT; 0: at once).  The wait starts at the first
 *     slow path that finds dirty memory after the arena had none
 *     (a->dirty_since); the coarse monotonic clock is read only there.
 * The large cache is bounded on its own (large.c: 32 mappings, 128 MiB or
 * in_use, both floors learned as below) and goes with the delay but not
 * with the cap, so that a program cycling large buffers keeps reusing
 * their pages.  An idle arena runs no slow path and purges nothing;
 * regal_arena_trim (malloc_trim) gives everything back at once.
 *
 * The bounds learn.  A program that frees a batch of more than the cap
 * and then allocates it again (a frame, a request, a pass over a file)
 * would otherwise pay glibc's trim pathology at every batch: the purge
 * gives the pages back and the next batch faults them in again
 * (bench/trim_batches with 4-8 KiB blocks, 64 MiB a batch: 51510 madvise
 * calls and 1.8M page faults in 300 batches, 3.8 s against tcmalloc's
 * 0.47).  The large cache's bounds (large.c) do the same to batches of
 * large blocks.  So what those bounds release is judged as fresh memory is
 * committed after it (rg_purge_judge): wasted if the bytes in use climb
 * back by half of it, and then keep_shift grows, doubling the floors of
 * the automatic cap and of the large cache until the cap's holds what was
 * released and what it kept (one wasted batch, however big); not wasted
 * if as much was committed fresh with no such climb.  Only the climb tells a program
 * that needs its memory again from one that keeps a small live set over
 * the holes of a big one (bench/frag): both commit fresh memory after the
 * purge.  The delay purge lowers keep_shift by one, so a program that
 * stops cycling gets its low bounds back one delay at a time.  An
 * explicit purge_cap is a bound the user asked for: it never moves.
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
    a->keep_shift = 0;
    a->bound_released = 0;
}

/* Past this, a floor would not be reached by any program. */
#define KEEP_SHIFT_MAX 16

size_t rg_purge_scaled(const regal_arena *a, size_t floor)
{
    return floor << a->keep_shift;
}

size_t rg_purge_cap(const regal_arena *a)
{
    if (a->purge_cap != RG_PURGE_CAP_AUTO)
        return a->purge_cap;
    size_t scaled = rg_arena_in_use(a) / 4, floor = rg_purge_scaled(a, RG_PURGE_CAP_MIN);
    return scaled > floor ? scaled : floor;
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

void rg_purge_bound_released(regal_arena *a, size_t bytes)
{
    if (bytes == 0)
        return;
    size_t in_use = rg_arena_in_use(a);
    if (a->bound_released == 0) {
        a->bound_mark = a->fresh_total;
        a->bound_in_use = in_use;
    } else if (in_use < a->bound_in_use) {
        a->bound_in_use = in_use;
    }
    a->bound_released += bytes;
}

void rg_purge_judge(regal_arena *a)
{
    if (rg_arena_in_use(a) >= a->bound_in_use + a->bound_released / 2) {
        /* The cap's floor doubles until it holds what the bounds released
         * and what it kept: the batch, freed whole, stays under it.  One
         * doubling per wasted purge took a batch of 8 times the cap four
         * batches to learn, and each faulted it in again.  No bound
         * releases anything once its floor passes the committed bytes, so
         * the floors stay below twice their peak. */
        size_t want = a->bound_released + rg_purge_scaled(a, RG_PURGE_CAP_MIN);
        while (a->keep_shift < KEEP_SHIFT_MAX) {
            a->keep_shift++;
            if (rg_purge_scaled(a, RG_PURGE_CAP_MIN) >= want)
                break;
        }
        a->bound_released = 0;
    } else if (a->fresh_total - a->bound_mark >= a->bound_released) {
        a->bound_released = 0;
    }
}

/* The dirty bytes of pages and heap, held, are over the cap. */
static void purge_over_cap(regal_arena *a, size_t held, size_t cap)
{
    size_t released = purge_held(a, held - cap / 2);
    if (a->purge_cap == RG_PURGE_CAP_AUTO)
        rg_purge_bound_released(a, released);
}

/* The delay purge: everything, and the floors halve. */
static void purge_delayed(regal_arena *a)
{
    rg_purge_all(a);
    if (a->keep_shift > 0)
        a->keep_shift--;
}

void rg_purge_maybe(regal_arena *a)
{
    if (a->dirty == 0)
        return;
    size_t held = a->dirty - a->large_cache_bytes;
    /* An automatic cap is at least its floor: below that, in_use (a sum
     * over the arena's theaps) is not needed. */
    if (held > rg_purge_scaled(a, RG_PURGE_CAP_MIN) || a->purge_cap != RG_PURGE_CAP_AUTO) {
        size_t cap = rg_purge_cap(a);
        if (held > cap)
            purge_over_cap(a, held, cap);
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
        purge_delayed(a);
}

size_t rg_purge_count_dirty(regal_arena *a)
{
    size_t n = a->large_cache_bytes + rg_heap_dirty(a);
    for (struct rg_chunk *c = a->pages; c != NULL; c = c->next)
        n += rg_pages_chunk_dirty(c);
    return n;
}
