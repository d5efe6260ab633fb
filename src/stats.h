/* Counters behind regal_arena_stats, updated at the public entry points. */
#ifndef RG_STATS_H
#define RG_STATS_H

#include "arena.h"

RG_INLINE void rg_stats_alloc(regal_arena *a, size_t usable, size_t requested)
{
    struct rg_counters *s = &a->st;
    s->in_use += usable;
    if (s->in_use > s->peak_in_use)
        s->peak_in_use = s->in_use;
    s->requested_total += requested;
    s->alloc_count++;
}

RG_INLINE void rg_stats_free_many(regal_arena *a, size_t blocks, size_t usable)
{
    struct rg_counters *s = &a->st;
    s->in_use -= usable;
    s->free_count += blocks;
}

RG_INLINE void rg_stats_free(regal_arena *a, size_t usable)
{
    rg_stats_free_many(a, 1, usable);
}

/* A block resized in place from old to new usable bytes. */
RG_INLINE void rg_stats_resize(regal_arena *a, size_t old_usable, size_t new_usable,
                               size_t requested)
{
    rg_stats_free_many(a, 0, old_usable);
    a->st.in_use += new_usable;
    if (a->st.in_use > a->st.peak_in_use)
        a->st.peak_in_use = a->st.in_use;
    a->st.requested_total += requested;
}

#endif
