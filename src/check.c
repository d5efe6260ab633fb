/*
 * regal_arena_check(): walks every piece of an arena's metadata and checks
 * the invariants stated at the top of page.c, heap.c, large.c and arena.c,
 * reporting the first violation (with the invariant's number) through
 * src/error.c.  Spans other threads' theaps own are checked for structure
 * only (their slots change with no lock).  The report is made with the
 * arena locked: a handler must not call back into the arena being checked.
 */
#include "check.h"

#include <stdarg.h>
#include <stdio.h>

#include "arena.h"
#include "error.h"
#include "large.h"
#include "pool.h"
#include "purge.h"
#include "track.h"
#include "vg.h"

bool rg_check_fail(const void *where, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rg_report(REGAL_ERR_CORRUPTION, where, NULL, "arena check: %s", msg);
    return false;
}

static bool queue_is_valid(struct rg_pageq *q)
{
    struct rg_page *last = NULL;
    for (struct rg_page *pg = q->avail; pg != NULL; last = pg, pg = pg->next)
        if (pg->queue != q || pg->in_full)
            return rg_check_fail(pg, "span %p on the wrong avail list (page.c invariant 4)",
                                 (void *)pg);
    if (last != q->avail_tail)
        return rg_check_fail(q, "page queue %p: tail %p, last avail span %p (page.c invariant 4)",
                             (void *)q, (void *)q->avail_tail, (void *)last);
    for (struct rg_page *pg = q->full; pg != NULL; pg = pg->next)
        if (pg->queue != q || !pg->in_full)
            return rg_check_fail(pg, "span %p on the wrong full list (page.c invariant 4)",
                                 (void *)pg);
    return true;
}

static bool theap_is_valid(struct rg_theap *h)
{
    for (unsigned i = 0; i < RG_CLASS_COUNT; i++) {
        for (struct rg_page *pg = h->classes[i].avail; pg != NULL; pg = pg->next)
            if (pg->owner != h)
                return rg_check_fail(pg, "span %p with the wrong owner (page.c invariant 6)",
                                     (void *)pg);
        if (!queue_is_valid(&h->classes[i]))
            return false;
    }
    return true;
}

bool rg_chunk_header_is_valid(const struct rg_chunk *c, regal_arena *a, enum rg_chunk_kind kind)
{
    return c->magic == RG_CHUNK_MAGIC && c->kind == kind && c->arena == a &&
           c->tracked == rg_arena_tracked(a) && rg_chunk_map_matches(c);
}

/* The slots of a span another thread's theap owns change with no lock:
 * only its structure (guarded by the lock) is checked here, its slots when
 * that thread checks or exits. */
static bool is_checkable(const struct rg_page *pg)
{
    const struct rg_theap *h = __atomic_load_n(&pg->owner, __ATOMIC_ACQUIRE); /* fast.h */
    return h == NULL || h->thread == NULL || h->thread == &rg_tl;
}

static bool pages_are_valid(regal_arena *a, size_t *committed)
{
    size_t revivable = 0;
    for (struct rg_chunk *c = a->pages; c != NULL; c = c->next) {
        if (!rg_chunk_header_is_valid(c, a, RG_CHUNK_PAGES))
            return rg_check_fail(c, "pages chunk %p: bad header (arena.c invariant 3)", (void *)c);
        struct rg_pages_chunk *pc = (struct rg_pages_chunk *)c;
        uint32_t spans = 0;
        for (unsigned i = RG_DATA_PAGE0; i < pc->top; i++) {
            struct rg_page *pg = rg_page_desc(c, i);
            if (pg->state != RG_PAGE_HEAD)
                continue;
            if (!rg_page_is_valid(c, pg, is_checkable(pg), rg_pool_held(pg)))
                return false;
            if (pg->revivable)
                return rg_check_fail(pg, "page %u: in use and revivable (page.c invariant 7)", i);
            spans++;
        }
        for (unsigned i = pc->top; i < RG_PAGES_PER_CHUNK; i++)
            if (rg_page_desc(c, i)->state != RG_PAGE_FREE)
                return rg_check_fail(
                    c, "pages chunk %p: page %u above top %u in use (page.c invariant 5)",
                    (void *)c, i, pc->top);
        if (spans != pc->spans_live)
            return rg_check_fail(c, "pages chunk %p: %u spans, %u counted (page.c invariant 1)",
                                 (void *)c, spans, pc->spans_live);
        for (struct rg_page *fs = pc->free_spans; fs != NULL; fs = fs->next)
            if (fs->state != RG_PAGE_FREE)
                return rg_check_fail(fs, "free span %p in use (page.c invariant 5)", (void *)fs);
        if (!rg_revive_is_valid(c, &revivable))
            return false;
        *committed += rg_chunk_committed(c);
    }
    if (!rg_revive_lists_are_valid(a, revivable))
        return false;
    struct rg_theap *mine = rg_theap_of(a);
    if (!theap_is_valid(&a->own) || (mine != NULL && !theap_is_valid(mine)))
        return false;
    for (struct regal_pool *p = a->pools; p != NULL; p = p->next)
        if (p->magic != RG_POOL_MAGIC || !queue_is_valid(&p->q) || !rg_pool_hot_is_valid(p))
            return rg_check_fail(p, "pool %p: bad pool", (void *)p);
    return queue_is_valid(&a->meta);
}

static bool large_is_valid(regal_arena *a, struct rg_chunk *list, size_t *mapped)
{
    for (struct rg_chunk *c = list; c != NULL; c = c->next) {
        const struct rg_large *l = (const struct rg_large *)c;
        if (!rg_chunk_header_is_valid(c, a, RG_CHUNK_LARGE) || l->live != 1)
            return rg_check_fail(c, "large block %p: bad header (large.c invariant 1)", (void *)c);
        *mapped += rg_large_committed(c);
    }
    return true;
}

int regal_arena_check(regal_arena *a)
{
    if (!rg_arena_is_live(a)) {
        rg_check_fail(a, "%p is not a live arena", (void *)a);
        return -1;
    }
    rg_vg_quiet_begin();
    rg_arena_lock(a);
    size_t mapped = 0;
    int rc = -1;
    if (pages_are_valid(a, &mapped) && rg_heap_check(a) == 0 &&
        large_is_valid(a, a->large, &mapped) && rg_large_cache_is_valid(a, &mapped) &&
        rg_handle_is_valid(a, &mapped)) {
        const struct rg_chunk *bad = NULL;
        for (struct rg_chunk *c = a->heaps; c != NULL; c = c->next) {
            mapped += rg_chunk_committed(c);
            if (!rg_chunk_header_is_valid(c, a, RG_CHUNK_HEAP))
                bad = c;
        }
        size_t dirty = rg_purge_count_dirty(a);
        if (bad != NULL)
            rg_check_fail(bad, "heap chunk %p: bad header (arena.c invariant 3)",
                          (const void *)bad);
        else if (mapped != a->mapped)
            rg_check_fail(a, "mapped %zu but chunks commit %zu (arena.c invariant 1)", a->mapped,
                          mapped);
        else if (dirty != a->dirty)
            rg_check_fail(a, "dirty %zu but free memory commits %zu (arena.c invariant 4)",
                          a->dirty, dirty);
        else if (a->limit != 0 && a->mapped > a->limit)
            rg_check_fail(a, "mapped %zu above limit %zu (arena.c invariant 2)", a->mapped,
                          a->limit);
        else if (rg_arena_tracked(a) && rg_track_check(a) > 0)
            rc = -1; /* each trampled canary was reported */
        else
            rc = 0;
    }
    rg_arena_unlock(a);
    rg_vg_quiet_end();
    return rc;
}
