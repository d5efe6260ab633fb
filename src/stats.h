/* Counters behind regal_arena_stats, updated at the public entry points. */
#ifndef RG_STATS_H
#define RG_STATS_H

#include "arena.h"

/* Only the counters' owner writes them; regal_arena_stats reads them from
 * any thread, hence relaxed atomic stores (plain moves on x86). */
#define RG_COUNTER_SET(field, value) __atomic_store_n(&(field), (value), __ATOMIC_RELAXED)

RG_INLINE void rg_counters_alloc(struct rg_counters *s, size_t usable, size_t requested)
{
    size_t in_use = s->in_use + usable;
    RG_COUNTER_SET(s->in_use, in_use);
    if ((ptrdiff_t)in_use > (ptrdiff_t)s->peak_in_use)
        RG_COUNTER_SET(s->peak_in_use, in_use);
    RG_COUNTER_SET(s->requested_total, s->requested_total + requested);
    RG_COUNTER_SET(s->alloc_count, s->alloc_count + 1);
}

RG_INLINE void rg_counters_free(struct rg_counters *s, size_t blocks, size_t usable)
{
    RG_COUNTER_SET(s->in_use, s->in_use - usable);
    RG_COUNTER_SET(s->free_count, s->free_count + blocks);
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
RG_INLINE void rg_stats_resize(regal_arena *a, size_t old_usable, size_t new_usable,
                               size_t requested)
{
    struct rg_counters *s = rg_counters_of(a);
    rg_counters_free(s, 0, old_usable);
    rg_counters_alloc(s, new_usable, requested);
    RG_COUNTER_SET(s->alloc_count, s->alloc_count - 1); /* the same block */
}

#endif
