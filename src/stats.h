/* Counters behind regal_arena_stats, updated at the public entry points. */
#ifndef RG_STATS_H
#define RG_STATS_H

#include "arena.h"

/* Only the counters' owner writes them, with plain stores (one
 * instruction each on the fast paths); regal_arena_stats reads them from
 * any thread with no lock (rg_arena_counters: figures, exact when no
 * thread is inside an operation; tests/tsan/suppressions.txt names it). */
RG_INLINE void rg_counters_alloc(struct rg_counters *s, size_t usable, size_t requested)
{
    s->in_use += usable;
    if ((ptrdiff_t)s->in_use > (ptrdiff_t)s->peak_in_use)
        s->peak_in_use = s->in_use;
    s->requested_total += requested;
    s->alloc_count++;
}

RG_INLINE void rg_counters_free(struct rg_counters *s, size_t blocks, size_t usable)
{
    s->in_use -= usable;
    s->free_count += blocks;
}

RG_INLINE void rg_stats_alloc(regal_arena *a, size_t usable, size_t requested)
{
    rg_counters_alloc(rg_counters_of(a), usable, requested);
}

RG_INLINE void rg_stats_free_many(regal_arena *a, size_t blocks, size_t usable)
{
    rg_counters_free(rg_counters_of(a), blocks, usable);
}

RG_INLINE void rg_stats_free(regal_arena *a, size_t usable)
{
    rg_stats_free_many(a, 1, usable);
}

/* A block resized in place from old to new usable bytes. */
RG_INLINE void rg_counters_resize(struct rg_counters *s, size_t old_usable, size_t new_usable,
                                  size_t requested)
{
    rg_counters_free(s, 0, old_usable);
    rg_counters_alloc(s, new_usable, requested);
    s->alloc_count--; /* the same block */
}

RG_INLINE void rg_stats_resize(regal_arena *a, size_t old_usable, size_t new_usable,
                               size_t requested)
{
    rg_counters_resize(rg_counters_of(a), old_usable, new_usable, requested);
}

#endif
