/*
 * Fixed-size pools.  A pool is a page queue of the arena with a slot size of
 * its own; the pool object itself is a slot of the arena's meta queue, so
 * arena reset and destroy take pools away with everything else.
 */
#include "pool.h"

#include <errno.h>

#include "arena.h"
#include "check.h"
#include "error.h"
#include "fast.h"
#include "stats.h"
#include "track.h"

/* Pools live in NOACCESS metadata under Valgrind: read quietly. */
static bool pool_is_live(regal_pool *p, const char *what)
{
    rg_vg_quiet_begin();
    bool live = p != NULL && p->magic == RG_POOL_MAGIC;
    rg_vg_quiet_end();
    if (live)
        return true;
    rg_report(REGAL_ERR_INVALID_FREE, p, NULL, "%s on %p, which is not a live pool", what,
              (void *)p);
    return false;
}

/* Slots hold a free-list link when free and keep every object aligned;
 * in tracked arenas they also hold a header and canary (track.c). */
static size_t slot_size(regal_arena *a, size_t object_size, size_t alignment, uint32_t *offset)
{
    *offset = 0;
    if (rg_arena_tracked(a))
        return rg_track_pool_slot(object_size, alignment, offset);
    return rg_align_up(object_size < sizeof(void *) ? sizeof(void *) : object_size, alignment);
}

/* Whether the pool's arena tracks its blocks (read quietly: pools live in
 * NOACCESS metadata under Valgrind). */
static bool pool_tracked(regal_pool *p)
{
    rg_vg_quiet_begin();
    bool tracked = rg_arena_tracked(p->arena);
    rg_vg_quiet_end();
    return tracked;
}

regal_pool *regal_pool_create(regal_arena *a, size_t object_size, size_t alignment)
{
    if (alignment == 0)
        alignment = RG_ALIGN;
    if (a == NULL || object_size == 0 || object_size > REGAL_POOL_MAX_OBJECT ||
        !rg_is_pow2(alignment) || alignment > RG_PAGE_SIZE) {
        errno = EINVAL;
        return NULL;
    }
    rg_vg_quiet_begin();
    rg_arena_lock(a);
    regal_pool *p = rg_page_alloc(a, &a->meta);
    if (p != NULL) {
        p->magic = RG_POOL_MAGIC;
        p->fast = a->single == RG_SINGLE_MAGIC ? RG_POOL_FAST : 0;
        rg_vg_defined(p, RG_POOL_OPEN); /* read by the fast paths; no pointers */
        p->arena = a;
        p->st = &a->own.st;
        p->object_size = object_size;
        size_t slot = slot_size(a, object_size, alignment, &p->track_offset);
        rg_pageq_init(&p->q, (uint32_t)slot, RG_PAGE_POOL);
        size_t hot = p->fast ? RG_POOL_HOT_BYTES / slot : 0;
        p->hot_cap = (uint32_t)(hot < RG_POOL_HOT ? hot : RG_POOL_HOT);
        p->hot_n = 0;
        p->prev = NULL;
        p->next = a->pools;
        if (a->pools)
            a->pools->prev = p;
        a->pools = p;
    }
    rg_arena_unlock(a);
    rg_vg_quiet_end();
    return p;
}

void *rg_pool_alloc_checked(regal_pool *p)
{
    regal_arena *a = p->arena;
    rg_arena_lock(a);
    void *obj = rg_page_alloc(a, &p->q);
    if (obj != NULL)
        rg_stats_alloc(a, p->q.slot_size, p->object_size);
    rg_arena_unlock(a);
    return obj;
}

/* ---- fast paths: pools of untracked single-thread arenas ---- */

/* p's queue if p is a live pool of an untracked single-thread arena, which
 * the caller may change with no lock (p->fast says so in one compare);
 * else NULL.  Under memcheck every arena is tracked (fast is 0) and the
 * rest of a pool is NOACCESS metadata, not read here. */
RG_INLINE struct rg_pageq *fast_queue(regal_pool *p)
{
    if (RG_UNLIKELY(p == NULL || p->fast != RG_POOL_FAST))
        return NULL;
    return &p->q;
}

/* The span of queue q (a fast pool's) that holds obj at a slot boundary,
 * *slot its index; NULL if there is none.  The first span of the queue,
 * the one that serves allocations and so the likely one, is tried first,
 * with no chunk or descriptor lookup. */
RG_INLINE struct rg_page *pool_span_of(struct rg_pageq *q, void *obj, uint32_t *slot)
{
    struct rg_page *pg = q->avail;
    if (RG_LIKELY(pg != NULL && (uintptr_t)obj - (uintptr_t)pg->start < pg->bytes)) {
        bool boundary = rg_slot_at(pg, (uintptr_t)obj - (uintptr_t)pg->start, slot);
        return !RG_CHECKS || boundary ? pg : NULL;
    }
    /* Any other span: the pool's arena is untracked (a fast pool), and the
     * span found must be the pool's. */
    pg = rg_slot_of(obj, RG_PAGE_POOL, slot);
    return pg != NULL && pg->queue == q ? pg : NULL;
}

/* Frees obj if it is a live object of fast pool p, with no lock; false if
 * it did nothing (NULL included).  It goes on the hot stack while that
 * has room, else back on its span. */
RG_INLINE bool pool_free_fast(regal_pool *p, void *obj)
{
    struct rg_pageq *q = fast_queue(p);
    uint32_t s;
    struct rg_page *pg = q != NULL ? pool_span_of(q, obj, &s) : NULL;
    if (RG_UNLIKELY(pg == NULL || !rg_bit_take(pg->live, s)))
        return false;
    rg_counters_free(p->st, 1, pg->slot_size);
    uint32_t n = p->hot_n; /* read once: the link store below may alias p */
    if (RG_LIKELY(n < p->hot_cap)) {
        if (RG_CHECKS)
            rg_link_set(obj, NULL); /* as on a free list: a write after free shows */
        p->hot.obj[n] = obj;
        p->hot.pg[n] = pg;
        p->hot.slot[n] = s;
        p->hot_n = n + 1;
    } else {
        rg_page_push_cleared(pg, obj);
    }
    return true;
}

/* Reports a write after the free of obj, which leaves the hot stack (obj
 * is still a free object of p's either way); returns obj. */
static RG_NOINLINE RG_COLD void *hot_corrupt(regal_pool *p, void *obj)
{
    rg_report(REGAL_ERR_CORRUPTION, obj, p->arena,
              "pool object %p of %zu bytes was overwritten after its free", obj, p->object_size);
    return obj;
}

/* Whether the link word pool_free_fast left in obj was overwritten. */
RG_INLINE bool hot_written(const void *obj)
{
    return RG_CHECKS && RG_UNLIKELY(rg_link_get(obj) != NULL);
}

/* The object freed last, from fast pool p's non-empty hot stack.  The
 * report of a write after free comes last, as a tail call: the pop needs
 * no stack frame. */
RG_INLINE void *hot_pop(regal_pool *p)
{
    uint32_t n = --p->hot_n;
    void *obj = p->hot.obj[n];
    struct rg_page *pg = p->hot.pg[n];
    bool written = hot_written(obj);
    rg_bit_set(pg->live, p->hot.slot[n]);
    rg_counters_alloc(p->st, pg->slot_size, p->object_size);
    return RG_UNLIKELY(written) ? hot_corrupt(p, obj) : obj;
}

void rg_pool_flush_hot(regal_pool *p)
{
    for (uint32_t i = 0; i < p->hot_n; i++) {
        if (hot_written(p->hot.obj[i]))
            hot_corrupt(p, p->hot.obj[i]);
        rg_page_push_cleared(p->hot.pg[i], p->hot.obj[i]);
    }
    p->hot_n = 0;
}

uint32_t rg_pool_held(const struct rg_page *pg)
{
    if (pg->kind != RG_PAGE_POOL)
        return 0;
    const regal_pool *p =
        (const regal_pool *)((const uint8_t *)pg->queue - offsetof(struct regal_pool, q));
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->hot_n; i++)
        n += p->hot.pg[i] == pg;
    return n;
}

bool rg_pool_hot_is_valid(regal_pool *p)
{
    if (p->hot_n > p->hot_cap)
        return rg_check_fail(p, "pool %p: %u objects in a hot stack of %u", (void *)p, p->hot_n,
                             p->hot_cap);
    for (uint32_t i = 0; i < p->hot_n; i++) {
        /* A freed slot of one of p's spans, in any page of it (the serving
         * span frees objects of all its pages the fast way). */
        void *obj = p->hot.obj[i];
        struct rg_page *pg = p->hot.pg[i];
        struct rg_chunk *c;
        struct rg_ref ref;
        if (rg_owner(obj, &c) != p->arena || rg_ref_resolve(c, obj, &ref) != RG_REF_DEAD ||
            ref.page != pg || pg->queue != &p->q || rg_slot_index(pg, obj) != p->hot.slot[i])
            return rg_check_fail(obj, "pool %p: bad object %p in its hot stack", (void *)p, obj);
    }
    return true;
}

/* ---- the API: fast paths inline, with no frame; the rest out of line ---- */

static RG_NOINLINE void *pool_alloc_slow(regal_pool *p, const void *site)
{
    if (!pool_is_live(p, "regal_pool_alloc")) {
        errno = EINVAL;
        return NULL;
    }
    if (pool_tracked(p)) {
        size_t size;
        void *obj = rg_track_pool_alloc(p, &size, site);
        rg_vg_block_alloc(obj, size, false);
        return obj;
    }
    return rg_pool_alloc_checked(p);
}

void *regal_pool_alloc(regal_pool *p)
{
    struct rg_pageq *q = fast_queue(p);
    if (RG_LIKELY(q != NULL && p->hot_n > 0))
        return hot_pop(p);
    void *obj = q != NULL ? rg_pageq_pop_fast(q, p->st, p->object_size) : NULL;
    if (RG_LIKELY(obj != NULL))
        return obj;
    /* Not a tail call: memcheck's allocation stack keeps regal_pool_alloc. */
    obj = pool_alloc_slow(p, __builtin_return_address(0));
    __asm__("" : "+r"(obj));
    return obj;
}

static RG_NOINLINE void pool_free_slow(regal_pool *p, void *obj)
{
    if (obj == NULL || !pool_is_live(p, "regal_pool_free"))
        return;
    if (pool_tracked(p)) {
        if (rg_track_queue(obj) == &p->q)
            rg_track_free(obj); /* canaries, double free, quarantine */
        else
            rg_report(REGAL_ERR_INVALID_FREE, obj, NULL,
                      "regal_pool_free of %p: not an object of pool %p", obj, (void *)p);
        return;
    }
    struct rg_ref ref;
    enum rg_ref_status st;
    rg_vg_quiet_begin();
    regal_arena *a = p->arena;
    size_t object_size = p->object_size;
    /* The arena locked is obj's, which is p's only if obj is p's. */
    regal_arena *locked = rg_block_lock(obj, &ref, &st);
    bool live = locked != NULL;
    bool ours = ref.page != NULL && ref.page->queue == &p->q;
    if (live && ours) {
        rg_page_free(a, ref.page, obj);
        rg_stats_free(a, p->q.slot_size);
    }
    if (live)
        rg_arena_unlock(locked);
    rg_vg_quiet_end();
    if (ours && st == RG_REF_DEAD)
        rg_report(REGAL_ERR_DOUBLE_FREE, obj, a, "double free of %p (pool object of %zu bytes)",
                  obj, object_size);
    else if (!(live && ours))
        rg_report(REGAL_ERR_INVALID_FREE, obj, a, "regal_pool_free of %p: not an object of pool %p",
                  obj, (void *)p);
}

void regal_pool_free(regal_pool *p, void *obj)
{
    if (RG_LIKELY(pool_free_fast(p, obj)))
        return;
    pool_free_slow(p, obj);
}

/* Drops every object of p; the caller holds the lock. */
static void pool_release(regal_pool *p)
{
    rg_pool_flush_hot(p);
    regal_arena *a = p->arena;
    size_t quarantined = rg_arena_tracked(a) ? rg_track_pool_release(&p->q) : 0; /* freed */
    size_t live = 0;
    for (struct rg_page *pg = p->q.avail; pg != NULL; pg = pg->next)
        live += pg->used;
    for (struct rg_page *pg = p->q.full; pg != NULL; pg = pg->next)
        live += pg->used;
    live -= quarantined;
    size_t each = rg_arena_tracked(a) ? p->object_size : p->q.slot_size; /* as counted */
    rg_stats_free_many(a, live, live * each);
    rg_pageq_release(a, &p->q);
}

void regal_pool_reset(regal_pool *p)
{
    if (!pool_is_live(p, "regal_pool_reset"))
        return;
    rg_vg_quiet_begin();
    regal_arena *a = p->arena;
    rg_arena_lock(a);
    pool_release(p);
    rg_arena_unlock(a);
    rg_vg_quiet_end();
}

void regal_pool_destroy(regal_pool *p)
{
    if (p == NULL || !pool_is_live(p, "regal_pool_destroy"))
        return;
    rg_vg_quiet_begin();
    regal_arena *a = p->arena;
    rg_arena_lock(a);
    pool_release(p);
    if (p->prev)
        p->prev->next = p->next;
    else
        a->pools = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->magic = 0;
    p->fast = 0;
    rg_vg_noaccess(p, RG_POOL_OPEN);
    rg_page_free(a, rg_page_of(rg_chunk_of(p), p), p);
    rg_arena_unlock(a);
    rg_vg_quiet_end();
}
