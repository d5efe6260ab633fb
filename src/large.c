/*
 * Large blocks.  Each is a mapping whose first chunk-aligned byte holds a
 * struct rg_large; the user pointer follows at the requested alignment (for
 * alignments above a chunk, exactly one chunk after the header, see
 * rg_chunk_of).
 *
 * Invariants:
 *  1. A live block is on the arena's large list with live == 1; a cached one
 *     on the cache list with live == 0; both count rg_large_committed() in
 *     the arena's mapped bytes: the mapping less the pages between the
 *     header and the user pointer that an over-aligned block never touches.
 *  3. Cached mappings have no such gap.
 *  2. cache_count <= CACHE_COUNT and cache_bytes <= cache_cap() when a
 *     mapping enters the cache.
 *
 * A request served from a cached mapping at least twice its size cuts the
 * rest off: it moves (mremap, pages and all) to a chunk of its own and is
 * cached in turn, so that blocks of varied sizes reuse resident pages
 * instead of faulting fresh ones (bench/large_churn: 400000 faults and
 * 0.92 s when the rest was unmapped, 236000 and 0.58 s now).
 *
 * Cached mappings are dirty memory (purge.c): the purge policy unmaps them
 * once they have waited purge_delay, as regal_arena_trim does at once.
 * Everything here runs under the arena's lock.
 */
#include "large.h"

#include <errno.h>
#include <string.h>

#include "arena.h"
#include "os.h"
#include "purge.h"
#include "vg.h"

#define CACHE_COUNT     32
#define CACHE_BYTES_MIN ((size_t)64 << 20)

/* Freed mappings kept: up to a quarter of the bytes in use, at least
 * CACHE_BYTES_MIN; the purge policy gives them back after its delay. */
static size_t cache_cap(const struct regal_arena *a)
{
    size_t quarter = rg_arena_in_use(a) / 4;
    return quarter > CACHE_BYTES_MIN ? quarter : CACHE_BYTES_MIN;
}

static struct rg_large *lg(struct rg_chunk *c)
{
    return (struct rg_large *)c;
}

static size_t user_offset(size_t align)
{
    if (align > RG_CHUNK_SIZE)
        return RG_CHUNK_SIZE;
    return rg_align_up(sizeof(struct rg_large), align < RG_ALIGN ? RG_ALIGN : align);
}

static size_t map_size_for(size_t size, size_t align)
{
    return rg_align_up(user_offset(align) + size, rg_os_page_size());
}

/* Bytes between the header's page and the user pointer's page. */
static size_t untouched(size_t offset)
{
    size_t page = rg_os_page_size(), down = offset & ~(page - 1);
    return down > page ? down - page : 0;
}

size_t rg_large_committed(const struct rg_chunk *c)
{
    return c->map_size - untouched((size_t)(lg((struct rg_chunk *)c)->ptr - (uint8_t *)c));
}

static void list_push(struct rg_chunk **head, struct rg_chunk *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void list_remove(struct rg_chunk **head, struct rg_chunk *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void release(struct regal_arena *a, struct rg_chunk *c);

/* Takes c out of the cache: it stops being dirty. */
static void cache_remove(struct regal_arena *a, struct rg_chunk *c)
{
    list_remove(&a->large_cache, c);
    a->large_cache_count--;
    a->large_cache_bytes -= c->map_size;
    rg_arena_dirty_sub(a, c->map_size);
}

static struct rg_chunk *cache_smallest(struct regal_arena *a)
{
    struct rg_chunk *s = a->large_cache;
    for (struct rg_chunk *x = s; x != NULL; x = x->next)
        if (x->map_size < s->map_size)
            s = x;
    return s;
}

/* Keeps the free mapping c for reuse if the cache has room, else unmaps
 * it.  Smaller cached mappings make room for it: a big mapping serves any
 * request (cut to size), a small one only small requests, so that keeping
 * the big ones faults fewer pages (bench/large_churn: 236000 faults
 * without the eviction, 204000 with). */
static void cache_put(struct regal_arena *a, struct rg_chunk *c)
{
    while (a->large_cache != NULL && a->large_cache_bytes + c->map_size > cache_cap(a)) {
        struct rg_chunk *s = cache_smallest(a);
        if (s->map_size >= c->map_size)
            break;
        cache_remove(a, s);
        release(a, s);
    }
    bool fits = a->large_cache_count < CACHE_COUNT &&
                a->large_cache_bytes + c->map_size <= cache_cap(a) &&
                rg_large_committed(c) == c->map_size;
    if (!fits) {
        release(a, c);
        return;
    }
    list_push(&a->large_cache, c);
    a->large_cache_count++;
    a->large_cache_bytes += c->map_size;
    rg_arena_dirty_add(a, c->map_size);
}

/* Fills in the header of a mapping that holds no block. */
static void header_init(struct regal_arena *a, struct rg_chunk *c)
{
    rg_vg_noaccess(c, c->map_size);
    rg_vg_defined(c, sizeof(struct rg_chunk));
    c->magic = RG_CHUNK_MAGIC;
    c->kind = RG_CHUNK_LARGE;
    c->arena = a;
    c->next = c->prev = NULL;
    memset(c->committed, 0, sizeof c->committed);
    lg(c)->ptr = (uint8_t *)c + user_offset(RG_ALIGN);
    lg(c)->live = 0;
}

/* Cuts free mapping c down to keep bytes; the rest becomes a mapping of
 * its own, moved with its pages (no fault when it is used again), and goes
 * to the cache. */
static void cut_tail(struct regal_arena *a, struct rg_chunk *c, size_t keep)
{
    size_t tail = c->map_size - keep;
    struct rg_chunk *t = rg_chunk_split(c, keep);
    if (t == NULL) {
        rg_os_unmap((uint8_t *)c + keep, tail);
        rg_arena_uncommit(a, tail);
        c->map_size = keep;
        return;
    }
    header_init(a, t);
    cache_put(a, t);
}

/* The smallest cached mapping of at least need bytes.  Its pages stay
 * resident (no fault when the block is filled); a tail past need as big as
 * need or more is cut off and cached on its own rather than hold pages in
 * a block that does not use them. */
static struct rg_chunk *cache_take(struct regal_arena *a, size_t need)
{
    struct rg_chunk *best = NULL;
    for (struct rg_chunk *c = a->large_cache; c != NULL; c = c->next)
        if (c->map_size >= need && (best == NULL || c->map_size < best->map_size))
            best = c;
    if (best == NULL)
        return NULL;
    cache_remove(a, best);
    if (best->map_size - need >= need)
        cut_tail(a, best, need);
    return best;
}

/* When no cached mapping is big enough: the biggest one, moved to a new
 * address and grown to need (mremap), so that its pages stay resident and
 * only the growth faults in. */
static struct rg_chunk *cache_grow(struct regal_arena *a, size_t need)
{
    struct rg_chunk *c = a->large_cache;
    for (struct rg_chunk *x = c; x != NULL; x = x->next)
        if (x->map_size > c->map_size)
            c = x;
    if (c == NULL)
        return NULL;
    cache_remove(a, c); /* first: committing may purge the cache */
    size_t old = c->map_size;
    struct rg_chunk *to = NULL;
    if (rg_arena_commit_bytes(a, need - old)) {
        to = rg_chunk_move_grow(c, need);
        if (to == NULL)
            rg_arena_uncommit(a, need - old);
    }
    if (to == NULL) {
        release(a, c);
        return NULL;
    }
    rg_vg_noaccess(to, need);
    rg_vg_defined(to, sizeof(struct rg_chunk));
    return to;
}

void *rg_large_alloc(struct regal_arena *a, size_t size, size_t align)
{
    size_t need = map_size_for(size, align);
    if (need < size) {
        errno = ENOMEM;
        return NULL;
    }
    size_t gap = untouched(user_offset(align));
    struct rg_chunk *c = gap == 0 ? cache_take(a, need) : NULL;
    if (c == NULL && gap == 0)
        c = cache_grow(a, need);
    if (c == NULL) {
        if (!rg_arena_commit_bytes(a, need - gap)) {
            errno = ENOMEM;
            return NULL;
        }
        c = align <= RG_CHUNK_SIZE ? rg_chunk_map(need, RG_CHUNK_SIZE, 0)
                                   : rg_chunk_map(need, align, RG_CHUNK_SIZE);
        if (c == NULL) {
            rg_arena_uncommit(a, need - gap);
            errno = ENOMEM;
            return NULL;
        }
        header_init(a, c);
    }
    lg(c)->ptr = (uint8_t *)c + user_offset(align);
    lg(c)->live = 1;
    list_push(&a->large, c);
    return lg(c)->ptr;
}

enum rg_large_status rg_large_status(struct rg_chunk *c, const void *p)
{
    if (lg(c)->ptr != p)
        return RG_LARGE_BOGUS;
    return lg(c)->live ? RG_LARGE_LIVE : RG_LARGE_DEAD;
}

size_t rg_large_usable(struct rg_chunk *c)
{
    return (size_t)((uint8_t *)c + c->map_size - lg(c)->ptr);
}

static void release(struct regal_arena *a, struct rg_chunk *c)
{
    rg_arena_uncommit(a, rg_large_committed(c));
    rg_chunk_unmap(c);
}

void rg_large_free(struct regal_arena *a, struct rg_chunk *c)
{
    list_remove(&a->large, c);
    lg(c)->live = 0;
    cache_put(a, c);
    rg_purge_maybe(a);
}

bool rg_large_resize(struct regal_arena *a, struct rg_chunk *c, size_t size)
{
    size_t offset = (size_t)(lg(c)->ptr - (uint8_t *)c);
    size_t need = rg_align_up(offset + size, rg_os_page_size());
    if (need < size)
        return false;
    if (need <= c->map_size) {
        /* Shrinking by half or more gives the tail back. */
        if (need <= c->map_size / 2) {
            rg_os_unmap((uint8_t *)c + need, c->map_size - need);
            rg_arena_uncommit(a, c->map_size - need);
            c->map_size = need;
        }
        return true;
    }
    if (!rg_arena_commit_bytes(a, need - c->map_size))
        return false;
    if (!rg_os_grow(c, c->map_size, need)) {
        rg_arena_uncommit(a, need - c->map_size);
        return false;
    }
    c->map_size = need;
    return true;
}

size_t rg_large_flush_cache(struct regal_arena *a)
{
    size_t released = a->large_cache_bytes;
    while (a->large_cache != NULL) {
        struct rg_chunk *c = a->large_cache;
        a->large_cache = c->next;
        rg_arena_purged(a, rg_large_committed(c));
        rg_chunk_unmap(c);
    }
    a->large_cache_count = 0;
    a->large_cache_bytes = 0;
    return released;
}

void rg_large_reset(struct regal_arena *a)
{
    while (a->large != NULL)
        rg_large_free(a, a->large);
}

void rg_large_destroy(struct regal_arena *a)
{
    while (a->large != NULL) {
        struct rg_chunk *c = a->large;
        a->large = c->next;
        release(a, c);
    }
    rg_large_flush_cache(a);
}

void rg_large_visit(struct regal_arena *a, rg_visit_fn fn, void *ctx)
{
    for (struct rg_chunk *c = a->large; c != NULL; c = c->next)
        fn(lg(c)->ptr, rg_large_usable(c), ctx);
}
