/*
 * The fast paths of allocation and free, inlined into regal_alloc and
 * rg_free_checked (alloc.c) and into the shim's malloc and free.  Each
 * either finishes the operation with no lock, no atomic read-modify-write
 * and no call, or changes nothing and says so; the caller then takes its
 * slow path, which handles every other case (and reports bad pointers).
 */
#ifndef RG_FAST_H
#define RG_FAST_H

#include <string.h>

#include "arena.h"
#include "stats.h"

/* Whether p (any pointer) lies in a mapped chunk of kind ck of an
 * untracked arena: one byte of the chunk map says both (chunk.h), and no
 * header is read (a tracked arena's metadata is NOACCESS under memcheck).
 * NULL fails (its chunk would be the last of the address space). */
RG_INLINE bool rg_in_untracked_chunk(const void *p, enum rg_chunk_kind ck)
{
    return rg_chunk_map_tag(p) == RG_MAP_TAG(ck, false);
}

/* The span of p if p (any pointer) is a slot boundary, live or not, of a
 * span of kind in an untracked arena, *slot its index; else NULL.  Any
 * thread may ask: the span of a live slot does not change. */
RG_INLINE struct rg_page *rg_slot_of(const void *p, enum rg_page_kind kind, uint32_t *slot)
{
    if (RG_UNLIKELY(!rg_in_untracked_chunk(p, RG_CHUNK_PAGES)))
        return NULL;
    return rg_page_slot_at(rg_chunk_of(p), (void *)p, kind, slot);
}

/* The same for a live slot only. */
RG_INLINE struct rg_page *rg_live_slot(const void *p, enum rg_page_kind kind, uint32_t *slot)
{
    struct rg_page *pg = rg_slot_of(p, kind, slot);
    if (RG_CHECKS && pg != NULL && RG_UNLIKELY(!rg_bit_test(pg->live, *slot)))
        return NULL;
    return pg;
}

/* A slot from the first span of q (owned by the caller), counted in s as
 * a request of requested bytes: a freed one, or a fresh one when that span
 * is the queue's only one; NULL when that span has none ready (or a bad
 * link, which the slow path reports). */
RG_INLINE void *rg_pageq_pop_fast(struct rg_pageq *q, struct rg_counters *s, size_t requested)
{
    struct rg_page *pg = q->avail;
    void *p = pg != NULL ? pg->free : NULL;
    if (RG_UNLIKELY(p == NULL)) {
        if (!rg_page_can_bump(pg))
            return NULL;
        rg_counters_alloc(s, pg->slot_size, requested);
        return rg_page_bump(pg);
    }
    void *next = rg_link_get(p);
    if (RG_UNLIKELY(!rg_link_ok(pg, next)))
        return NULL;
    rg_page_take(pg, p, next);
    rg_counters_alloc(s, pg->slot_size, requested);
    return p;
}

/* The queue of theap h (NULL: none) for a request of size bytes, if it is
 * small; else NULL. */
RG_INLINE struct rg_pageq *rg_small_queue(struct rg_theap *h, size_t size)
{
    if (RG_UNLIKELY(h == NULL || size > RG_SMALL_MAX))
        return NULL;
    return &h->classes[rg_size_class_small(size)];
}

/* A small block from theap h (NULL: none), or NULL. */
RG_INLINE void *rg_alloc_from(struct rg_theap *h, size_t size)
{
    struct rg_pageq *q = rg_small_queue(h, size);
    return q != NULL ? rg_pageq_pop_fast(q, &h->st, size) : NULL;
}

/* The same cleared, all of its slot (regal_calloc clears a block's usable
 * size), or NULL. */
RG_INLINE void *rg_calloc_from(struct rg_theap *h, size_t size)
{
    struct rg_pageq *q = rg_small_queue(h, size);
    void *p = q != NULL ? rg_pageq_pop_fast(q, &h->st, size) : NULL;
    return p != NULL ? memset(p, 0, q->slot_size) : NULL;
}

/* A small block of arena a (any pointer: a theap is found only for a live,
 * untracked arena), or NULL. */
RG_INLINE void *rg_alloc_fast(regal_arena *a, size_t size)
{
    return rg_alloc_from(rg_theap_of(a), size);
}

/* The calling thread's theap of the default arena (the shim's), or NULL:
 * none before its first allocation or when tracked.  After a reset it is
 * orphaned, its queues emptied (rg_theap_orphan_all): nothing is served
 * from it, and the slow path binds the thread again. */
RG_INLINE struct rg_theap *rg_default_theap(void)
{
    return rg_tl.default_theap;
}

/* A small block of the default arena, or NULL. */
RG_INLINE void *rg_alloc_fast_default(size_t size)
{
    return rg_alloc_from(rg_default_theap(), size);
}

/* A small block from theap h (NULL: none) aligned to align, a power of
 * two, from the first class whose slots all are (rg_aligned_class); else
 * NULL. */
RG_INLINE void *rg_aligned_from(struct rg_theap *h, size_t size, size_t align)
{
    int c = h != NULL && size <= RG_SMALL_MAX ? rg_aligned_class(size, align) : -1;
    if (RG_UNLIKELY(c < 0))
        return NULL;
    return rg_pageq_pop_fast(&h->classes[c], &h->st, size);
}

/* The same from the default arena. */
RG_INLINE void *rg_aligned_fast_default(size_t size, size_t align)
{
    return rg_aligned_from(rg_default_theap(), size, align);
}

/* Frees p, slot s of class span pg, which theap h owns (the caller
 * checked), if no remote frees wait there and p is live; false if it did
 * nothing.  The live bit is tested and cleared last, in one go, once
 * nothing else can send p elsewhere. */
RG_INLINE bool rg_free_owned_fast(struct rg_theap *h, struct rg_page *pg, void *p, uint32_t s)
{
    if (RG_UNLIKELY(__atomic_load_n(&pg->xfree, __ATOMIC_RELAXED) != NULL))
        return false;
    if (RG_UNLIKELY(!rg_bit_take(pg->live, s)))
        return false;
    rg_counters_free(&h->st, 1, pg->slot_size);
    rg_page_push_cleared(pg, p);
    return true;
}

/* Frees p if it is a live slot of a class span owned by the caller's theap
 * (its owner's thread is the caller, or any thread for an untracked
 * single-thread arena) with no remote frees waiting; false if it did
 * nothing.  Blocks of tracked arenas never pass. */
RG_INLINE bool rg_free_slot_fast(struct rg_page *pg, void *p, uint32_t s)
{
    /* Acquire, paired with the release where a span gets its owner
     * (page.c): the owner's theap may have been set up by another thread
     * just before it took the span (a span of arena->own that another
     * thread adopts while the caller still has a block in it), and its
     * thread field is read next.  A plain load on x86. */
    struct rg_theap *h = __atomic_load_n(&pg->owner, __ATOMIC_ACQUIRE);
    if (RG_UNLIKELY(h->thread != &rg_tl && h->thread != RG_ANY_THREAD))
        return false;
    return rg_free_owned_fast(h, pg, p, s);
}

/* The same for any pointer p.  When it does nothing, *pg is p's class span
 * (NULL if p is no class slot of an untracked arena), for rg_free_remote
 * and rg_free_rest: a free from another thread then needs no second
 * lookup. */
RG_INLINE bool rg_free_fast(void *p, struct rg_page **pg)
{
    uint32_t s;
    *pg = rg_slot_of(p, RG_PAGE_CLASS, &s);
    if (RG_UNLIKELY(*pg == NULL))
        return false;
    return rg_free_slot_fast(*pg, p, s);
}

/* rg_free_fast for the shim: only a span of the caller's theap of the
 * default arena passes, which one compare of the span's owner tells (a
 * block of any other arena takes the slow path). */
RG_INLINE bool rg_free_fast_default(void *p, struct rg_page **pg)
{
    uint32_t s;
    *pg = rg_slot_of(p, RG_PAGE_CLASS, &s);
    if (RG_UNLIKELY(*pg == NULL))
        return false;
    struct rg_theap *h = rg_default_theap();
    if (RG_UNLIKELY(__atomic_load_n(&(*pg)->owner, __ATOMIC_RELAXED) != h))
        return false;
    return rg_free_owned_fast(h, *pg, p, s);
}

/* Live slot p of pg, whose span another theap owns, onto its xfree list,
 * the free counted in st. */
RG_INLINE void rg_free_to_owner(struct rg_page *pg, void *p, struct rg_counters *st)
{
    uint32_t size = pg->slot_size; /* before the span can change hands */
    rg_page_free_remote(pg, p);
    rg_counters_free(st, 1, size);
}

/* The next case when rg_free_fast did nothing and found class span pg
 * (not NULL): p is a live slot of a span that another thread's theap owns
 * (or the arena's own), freed by a thread with a theap of its arena.  It
 * goes onto pg's xfree list, counted in the caller's theap, with no lock
 * and no system call (errno stays); false, with nothing done, in every
 * other case (rg_free_rest's). */
RG_INLINE bool rg_free_remote(void *p, struct rg_page *pg)
{
    uint32_t s = rg_slot_index(pg, p);
    if (RG_CHECKS && !rg_bit_test(pg->live, s))
        return false;
    struct rg_theap *h = rg_theap_of(rg_chunk_of(p)->arena);
    if (h == NULL || __atomic_load_n(&pg->owner, __ATOMIC_RELAXED) == h)
        return false;
    rg_free_to_owner(pg, p, &h->st);
    return true;
}

/* The span of p if p is a live class slot of an untracked arena, else
 * NULL. */
RG_INLINE struct rg_page *rg_class_block(const void *p)
{
    uint32_t s;
    return rg_live_slot(p, RG_PAGE_CLASS, &s);
}

#endif
