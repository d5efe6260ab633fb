/*
 * The fast paths of allocation and free, inlined into regal_alloc and
 * rg_free_checked (alloc.c) and into the shim's malloc and free.  Each
 * either finishes the operation with no lock, no atomic read-modify-write
 * and no call, or changes nothing and says so; the caller then takes its
 * slow path, which handles every other case (and reports bad pointers).
 */
#ifndef RG_FAST_H
#define RG_FAST_H

#include "arena.h"
#include "stats.h"

/* A small block from the first span of its class queue in the caller's
 * theap, or NULL. */
RG_INLINE void *rg_alloc_fast(regal_arena *a, size_t size)
{
    if (RG_UNLIKELY(size > RG_SMALL_MAX || a == NULL || a->magic != RG_ARENA_MAGIC ||
                    rg_arena_tracked(a)))
        return NULL;
    struct rg_theap *h = rg_theap_of(a);
    if (RG_UNLIKELY(h == NULL))
        return NULL;
    struct rg_page *pg = h->classes[rg_size_class_small(size)].avail;
    void *p = pg != NULL ? pg->free : NULL;
    if (RG_UNLIKELY(p == NULL))
        return NULL;
    void *next = rg_link_get(p);
    if (RG_UNLIKELY(!rg_link_ok(pg, next))) /* the slow path reports it */
        return NULL;
    rg_counters_alloc(&h->st, pg->slot_size, size);
    return rg_page_take(pg, p, next);
}

/* Frees p if it is a live slot of a class span owned by the caller's theap
 * (its owner's thread is the caller; the arena's own theap has no thread
 * and serves only single-thread arenas here) with no remote frees waiting,
 * of an arena that is not tracked (a tracked block never starts a slot, so
 * it fails the slot check anyway; the flag test makes that independent of
 * the layout).  false if it did nothing. */
RG_INLINE bool rg_free_fast(void *p)
{
    struct rg_chunk *c = rg_chunk_of(p);
    if (RG_UNLIKELY(p == NULL || !rg_chunk_is_mapped(p) || c->magic != RG_CHUNK_MAGIC ||
                    c->kind != RG_CHUNK_PAGES))
        return false;
    regal_arena *a = c->arena;
    if (RG_UNLIKELY(rg_arena_tracked(a)))
        return false;
    uint32_t s;
    struct rg_page *pg = rg_page_class_slot(c, p, &s);
    if (RG_UNLIKELY(pg == NULL))
        return false;
    struct rg_theap *h = __atomic_load_n(&pg->owner, __ATOMIC_RELAXED);
    if (RG_UNLIKELY(h->thread != &rg_tl && !(a->flags & REGAL_ARENA_SINGLE_THREAD)))
        return false;
    if (RG_UNLIKELY(__atomic_load_n(&pg->xfree, __ATOMIC_RELAXED) != NULL))
        return false;
    rg_counters_free(&h->st, 1, pg->slot_size);
    rg_page_push(pg, p, s);
    return true;
}

/* The default arena once made (shim fast paths), or NULL. */
extern regal_arena *rg_default_arena_ptr;

RG_INLINE regal_arena *rg_default_arena_fast(void)
{
    return __atomic_load_n(&rg_default_arena_ptr, __ATOMIC_ACQUIRE);
}

#endif
