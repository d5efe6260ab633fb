/*
 * Large blocks.  Each is a mapping whose first chunk-aligned byte holds a
 * struct rg_large; the user pointer follows at the requested alignment (for
 * alignments above a chunk, exactly one chunk after the header, see
 * rg_chunk_of).
 *
 * Invariants:
 *  1. A live block is on the arena's large list with live == 1; a cached
 *     mapping has an entry in the cache, live == 0 and ptr the pointer of
 *     the block freed there, so that a second free of it reads as a double
 *     free; both count rg_large_committed() in the arena's mapped bytes:
 *     the mapping less its gap, the pages between the header's and the
 *     user pointer's that a block aligned to two OS pages or more never
 *     touches.
 *  2. large_cache_bytes is the sum of the cached mappings'
 *     rg_large_committed() (their dirty bytes); a cached mapping's tail,
 *     the pages past its gap (all of it when it has none), is what can
 *     move into another mapping.
 *  3. cache_count <= cache_slots() and cache_bytes <= cache_cap() when a
 *     mapping enters the cache.
 *  4. The cache is an array of entries (struct rg_cached), one per cached
 *     mapping, whose size and gap are the mapping's; the array is the
 *     arena's metadata, mapped from the OS outside its mapped bytes (a page
 *     holds 170 entries; it doubles when the cache may keep more).
 *
 * The cache is a pool of resident pages more than a list of blocks: mremap
 * moves pages from one mapping to another without copying or faulting
 * them, so any cached page can serve any request.  A request takes the
 * smallest cached mapping that holds it, as it is, if less than twice its
 * size and with the same gap (an aligned block takes the mapping of one
 * freed with the same alignment: no system call); otherwise it gets a new
 * mapping of its exact size whose pages come from the cache (the end of
 * the smallest cached tail that holds the rest, else the largest tail
 * whole) and only the rest fresh from the OS.
 * Fresh pages are committed only once the cache is empty, so the large
 * blocks and the cache together grow only when the blocks pass their
 * high-water mark (bench/large_churn: 204000 page faults and 0.55 s of
 * CPU when a request could only take one cached mapping, cut or grown;
 * 44700 and 0.25 s now, mimalloc 41000 and 0.23 s).
 *
 * Moving costs a system call per piece and leaves the new mapping made of
 * several OS mappings, which the kernel moves one by one (before Linux
 * 6.17 it refuses, and the rest is fresh) and cannot grow in place: hence
 * the take-as-is rule, which moves nothing in 19 requests out of 20 there
 * (and the process has 260 to 510 mappings, however long it runs).
 *
 * Cached mappings are dirty memory (purge.c): the purge policy unmaps them
 * once they have waited purge_delay, as regal_arena_trim does at once.
 * Everything here runs under the arena's lock.
 */
#include "large.h"

#include <errno.h>
#include <string.h>

#include "arena.h"
#include "check.h"
#include "os.h"
#include "purge.h"
#include "vg.h"

#define CACHE_COUNT     32
#define CACHE_BYTES_MIN ((size_t)128 << 20)

/* Freed mappings kept: as many bytes as the arena has in use, at least
 * CACHE_BYTES_MIN; the purge policy gives them back after its delay.  A
 * smaller cap does not lower the peak (the cache only holds what the large
 * blocks gave back since their high-water mark) but evicts pages that
 * fault in again: bench/large_churn, whose large blocks swing between 20
 * and 130 MiB, faulted 153000 pages with a cap of a quarter of in_use or
 * 64 MiB, 164000 with in_use alone, 44700 with this.  The price there is
 * peak RSS: 175 MiB against 169 with the old cap (mimalloc 161), because
 * the pages the large blocks gave back stay while the heap holds free
 * pages of its own (32 MiB of them at the peak). */
static size_t cache_cap(const struct regal_arena *a)
{
    size_t in_use = rg_arena_in_use(a), floor = rg_purge_scaled(a, CACHE_BYTES_MIN);
    return in_use > floor ? in_use : floor;
}

/* Both floors grow when what the cache gave back was needed again
 * (purge.c): 40 blocks of 3 to 5 MiB freed and allocated again, batch
 * after batch, passed both and were unmapped and faulted in again every
 * time (bench/trim_batches --min 3M --max 5M --batch 40: 0.81 s, mimalloc
 * 0.11). */
static size_t cache_slots(const struct regal_arena *a)
{
    return rg_purge_scaled(a, CACHE_COUNT);
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

/* The gap of mapping c: bytes past its header page that its block never
 * touches (0 for a block aligned to less than two OS pages). */
static size_t gap_of(const struct rg_chunk *c)
{
    return untouched((size_t)(lg((struct rg_chunk *)c)->ptr - (uint8_t *)c));
}

/* What the cache keeps of mapping c: its header's figures.  The searches
 * below read the cache's entries only, never a cached mapping's header:
 * each header is on a page of its own, cold by the time it is looked at
 * (walking a list of 32 of them was 3% of bench/large_churn's time, most
 * of it on the loads of their sizes). */
static struct rg_cached entry_of(const struct rg_chunk *c)
{
    return (struct rg_cached){.c = (struct rg_chunk *)c, .size = c->map_size, .gap = gap_of(c)};
}

/* The bytes of e's mapping counted as committed: all but the gap. */
static size_t entry_committed(const struct rg_cached *e)
{
    return e->size - e->gap;
}

/* The bytes at the end of e's mapping that may move into another mapping:
 * all of it, or past the header page and the gap. */
static size_t entry_tail(const struct rg_cached *e)
{
    return e->gap > 0 ? e->size - e->gap - rg_os_page_size() : e->size;
}

size_t rg_large_committed(const struct rg_chunk *c)
{
    struct rg_cached e = entry_of(c);
    return entry_committed(&e);
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

static void release(struct regal_arena *a, struct rg_chunk *c)
{
    rg_arena_uncommit(a, rg_large_committed(c));
    rg_chunk_unmap(c);
}

/* Unmaps c, a mapping the cache has no room for. */
static void evict(struct regal_arena *a, struct rg_chunk *c)
{
    rg_purge_bound_released(a, rg_large_committed(c));
    release(a, c);
}

/* Takes entry i out of the array (the last one moves into its place). */
static void cache_drop(struct regal_arena *a, size_t i)
{
    a->large_cache[i] = a->large_cache[--a->large_cache_count];
}

/* Takes entry i out of the cache: its mapping stops being dirty. */
static void cache_remove(struct regal_arena *a, size_t i)
{
    size_t bytes = entry_committed(&a->large_cache[i]);
    a->large_cache_bytes -= bytes;
    rg_arena_dirty_sub(a, bytes);
    cache_drop(a, i);
}

/* Room for one more entry; false if the array could not grow. */
static bool cache_room(struct regal_arena *a)
{
    if (a->large_cache_count < a->large_cache_cap)
        return true;
    size_t page = rg_os_page_size();
    size_t bytes = a->large_cache_cap ? 2 * a->large_cache_cap * sizeof(struct rg_cached) : page;
    struct rg_cached *grown = rg_os_map_aligned(bytes, page, 0);
    if (grown == NULL)
        return false;
    if (a->large_cache != NULL) {
        memcpy(grown, a->large_cache, a->large_cache_count * sizeof *grown);
        rg_os_unmap(a->large_cache, a->large_cache_cap * sizeof *grown);
    }
    a->large_cache = grown;
    a->large_cache_cap = bytes / sizeof *grown;
    return true;
}

#define NONE SIZE_MAX /* no entry */

/* The entry with the smallest tail of at least need bytes (0: the
 * smallest), or NONE. */
static size_t cache_smallest(struct regal_arena *a, size_t need)
{
    size_t best = NONE;
    for (size_t i = 0; i < a->large_cache_count; i++) {
        size_t tail = entry_tail(&a->large_cache[i]);
        if (tail >= need && (best == NONE || tail < entry_tail(&a->large_cache[best])))
            best = i;
    }
    return best;
}

/* The entry with the largest tail (the cache is not empty). */
static size_t cache_largest(struct regal_arena *a)
{
    size_t best = 0;
    for (size_t i = 1; i < a->large_cache_count; i++)
        if (entry_tail(&a->large_cache[i]) > entry_tail(&a->large_cache[best]))
            best = i;
    return best;
}

/* Gives back the pages of c past keep bytes (a multiple of the OS page). */
static void shrink(struct regal_arena *a, struct rg_chunk *c, size_t keep)
{
    rg_os_unmap((uint8_t *)c + keep, c->map_size - keep);
    rg_arena_uncommit(a, c->map_size - keep);
    c->map_size = keep;
}

/* Fills in the header of a mapping that holds no block. */
static void header_init(struct regal_arena *a, struct rg_chunk *c)
{
    rg_vg_noaccess(c, c->map_size);
    rg_vg_defined(c, sizeof(struct rg_chunk));
    rg_chunk_set_kind(c, RG_CHUNK_LARGE, rg_arena_tracked(a));
    c->arena = a;
    c->next = c->prev = NULL;
    memset(c->committed, 0, sizeof c->committed);
    lg(c)->ptr = (uint8_t *)c + user_offset(RG_ALIGN);
    lg(c)->live = 0;
    lg(c)->dirty = 0;
}

/* Keeps the free mapping c, gap and all, for reuse as far as the cache
 * has room, else unmaps it.  Mappings with smaller tails make room for it
 * (one mapping fewer); what still does not fit is cut off c, or c is
 * unmapped if it has a gap. */
static void cache_put(struct regal_arena *a, struct rg_chunk *c)
{
    struct rg_cached e = entry_of(c);
    size_t cap = cache_cap(a), slots = cache_slots(a), bytes = entry_committed(&e);
    while (a->large_cache_count > 0 &&
           (a->large_cache_count >= slots || a->large_cache_bytes + bytes > cap)) {
        size_t s = cache_smallest(a, 0);
        struct rg_chunk *smallest = a->large_cache[s].c;
        if (entry_tail(&a->large_cache[s]) >= entry_tail(&e))
            break;
        cache_remove(a, s);
        evict(a, smallest);
    }
    size_t room =
        a->large_cache_bytes < cap ? (cap - a->large_cache_bytes) & ~(rg_os_page_size() - 1) : 0;
    if (a->large_cache_count >= slots || room == 0 || (room < bytes && e.gap > 0) ||
        !cache_room(a)) {
        evict(a, c);
        return;
    }
    if (room < bytes) {
        rg_purge_bound_released(a, bytes - room);
        shrink(a, c, room);
        e = entry_of(c);
    }
    a->large_cache[a->large_cache_count++] = e;
    a->large_cache_bytes += entry_committed(&e);
    rg_arena_dirty_add(a, entry_committed(&e));
}

/* Moves the last size bytes (at most its tail) of cached mapping i to
 * offset off of the new mapping to; false if they did not arrive (then,
 * unless the kernel refused before moving anything, they left the cache
 * and are gone).  A mapping with a gap whose whole tail left is unmapped:
 * the rest is its header page and the gap. */
static bool take_pages(struct regal_arena *a, size_t i, size_t size, struct rg_chunk *to,
                       size_t off)
{
    struct rg_cached *e = &a->large_cache[i];
    bool whole = size == e->size, emptied = size == entry_tail(e);
    enum rg_move moved = rg_chunk_move_tail(e->c, size, to, off);
    if (moved == RG_MOVE_NONE)
        return false;
    a->large_cache_bytes -= size;
    rg_arena_dirty_sub(a, size);
    if (moved == RG_MOVE_LOST)
        rg_arena_uncommit(a, size);
    if (whole) {
        cache_drop(a, i); /* its header went with the pages */
    } else {
        e->size -= size;
        if (emptied) {
            struct rg_chunk *from = e->c;
            cache_remove(a, i);
            release(a, from);
        }
    }
    return moved == RG_MOVED;
}

/* Fills the new mapping c of need bytes with cached pages, from offset
 * start: the tail of the smallest cached mapping that holds the rest, else
 * the largest whole.  Returns the bytes moved; the pages past them stay
 * fresh. */
static size_t fill(struct regal_arena *a, struct rg_chunk *c, size_t start, size_t need)
{
    size_t filled = start;
    while (filled < need && a->large_cache_count > 0) {
        size_t rest = need - filled, from = cache_smallest(a, rest);
        if (from == NONE)
            from = cache_largest(a);
        size_t tail = entry_tail(&a->large_cache[from]), size = tail < rest ? tail : rest;
        if (!take_pages(a, from, size, c, filled))
            break; /* a kernel before 6.17 moves one OS mapping at a time */
        filled += size;
    }
    return filled - start;
}

/* Whether cached mapping e would take a block of alignment align in need
 * bytes as it is: big enough, less than twice as big (what it has past
 * need stays with the block, resident, but moving it would cost more),
 * with the gap such a block leaves and, past a chunk's alignment, placed
 * for it. */
static bool takes(const struct rg_cached *e, size_t need, size_t align)
{
    return e->size >= need && e->size - need < need && e->gap == untouched(user_offset(align)) &&
           ((uintptr_t)e->c + user_offset(align)) % align == 0;
}

/* The smallest cached mapping that takes such a block as it is; NONE if
 * none does. */
static size_t cache_fit(struct regal_arena *a, size_t need, size_t align)
{
    size_t best = NONE;
    for (size_t i = 0; i < a->large_cache_count; i++)
        if (takes(&a->large_cache[i], need, align) &&
            (best == NONE || a->large_cache[i].size < a->large_cache[best].size))
            best = i;
    return best;
}

/* cache_fit's mapping, out of the cache; NULL if none. */
static struct rg_chunk *cache_take(struct regal_arena *a, size_t need, size_t align)
{
    size_t i = cache_fit(a, need, align);
    if (i == NONE)
        return NULL;
    struct rg_chunk *c = a->large_cache[i].c;
    cache_remove(a, i);
    return c;
}

/* The offset of the first page a block of alignment align uses past its
 * header's: its gap (untouched) ends there. */
static size_t first_used_page(size_t align)
{
    size_t gap = untouched(user_offset(align));
    return gap > 0 ? gap + rg_os_page_size() : 0;
}

/* A new mapping of need bytes for a block of alignment align, whose pages
 * from the block's first on come from the cache as far as it has them:
 * only the rest is committed fresh, and never the gap of a block aligned
 * to two OS pages or more. */
static struct rg_chunk *assemble(struct regal_arena *a, size_t need, size_t align)
{
    struct rg_chunk *c = align <= RG_CHUNK_SIZE ? rg_chunk_map(need, RG_CHUNK_SIZE, 0)
                                                : rg_chunk_map(need, align, RG_CHUNK_SIZE);
    if (c == NULL)
        return NULL;
    size_t start = first_used_page(align), moved = fill(a, c, start, need);
    size_t fresh = need - untouched(user_offset(align)) - moved;
    c->map_size = need; /* the header's bytes may have moved in from a cached mapping */
    /* After the moves: committing may purge the cache. */
    if (fresh > 0 && !rg_arena_commit_bytes(a, fresh)) {
        rg_arena_uncommit(a, moved);
        rg_chunk_unmap(c);
        return NULL;
    }
    header_init(a, c);
    lg(c)->dirty = moved > 0 ? start + moved : 0;
    return c;
}

void *rg_large_alloc(struct regal_arena *a, size_t size, size_t align)
{
    size_t need = map_size_for(size, align);
    if (need < size) {
        errno = ENOMEM;
        return NULL;
    }
    struct rg_chunk *c;
    if ((c = cache_take(a, need, align)) != NULL)
        lg(c)->dirty = c->map_size;
    else
        c = assemble(a, need, align);
    if (c == NULL) {
        errno = ENOMEM;
        return NULL;
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

/* Cached pages from this many bytes on are given back to the OS rather
 * than cleared, so a huge calloc costs neither a pass over memory the
 * program may never touch nor its residency: calloc(64 MiB), one write
 * and free, 50 times, took 3.1 s and 64 MiB of RSS when every page was
 * cleared (glibc, which maps blocks of 32 MiB and more afresh: no time,
 * 1 MiB).  Below it they are cleared, as glibc clears the blocks of its
 * heap: a page given back costs a fault (two when read first) when the
 * program uses it, about 1.3 us each here, and clearing a resident page
 * costs 0.1 us.  With 1 MiB here, calloc(4 MiB), a write per page and
 * free took 2.5 ms a round against glibc's 0.04 (memset: 30 us for 4 MiB,
 * 1.5 ms for 64 MiB). */
#define ZERO_BY_DECOMMIT ((size_t)32 << 20)

void rg_large_zero(struct rg_chunk *c)
{
    uint8_t *p = lg(c)->ptr;
    size_t off = (size_t)(p - (uint8_t *)c);
    size_t dirty = lg(c)->dirty > off ? lg(c)->dirty - off : 0; /* ends on a page boundary */
    size_t head = rg_align_up(off, rg_os_page_size()) - off;
    if (dirty <= head || dirty - head < ZERO_BY_DECOMMIT) {
        memset(p, 0, dirty);
        return;
    }
    memset(p, 0, head);
    rg_os_decommit(p + head, dirty - head);
}

void rg_large_free(struct regal_arena *a, struct rg_chunk *c)
{
    list_remove(&a->large, c);
    lg(c)->live = 0;
    cache_put(a, c);
    rg_purge_maybe(a);
}

/* A block shrunk to half its mapping or less and to at most this many
 * bytes moves (realloc copies it) and leaves its whole mapping to the
 * cache; a bigger one gives its tail back to the OS.  And a block that
 * grows moves into a cached mapping that takes it as it is (cache_take)
 * rather than grow with fresh pages.  A buffer shrunk and grown again in
 * turn, between 3 MB and 8 MB with a write per page, 2000 times, took
 * 3.45 s when the tail went back to the OS and grew fresh each time, as
 * with glibc (3.43; mimalloc, which copies: 0.24): a fault costs about
 * 1.3 us a page here, a copy 0.02 to 0.1. */
#define SHRINK_BY_COPY_MAX ((size_t)32 << 20)

/* Whether a cached mapping would take a block of size bytes as it is. */
static bool cache_serves(struct regal_arena *a, size_t size)
{
    size_t need = map_size_for(size, RG_ALIGN);
    return need >= size && cache_fit(a, need, RG_ALIGN) != NONE;
}

/* A program that grows one buffer a little at a time past the heap's
 * sizes (a log, a string builder, a vector grown by a constant) would
 * otherwise copy it at every realloc: the address space after a large
 * mapping is mostly taken (chunks are mapped below the last one), so it
 * rarely grows in place.  Growing by 4 KiB steps to 64 MiB took 668 s
 * (glibc, whose mremap moves the pages: 0.09).  So the whole mapping moves
 * to one of need bytes (committed by the caller); the block's new pointer,
 * or NULL with nothing changed. */
static void *move_grow(struct regal_arena *a, struct rg_chunk *c, size_t need)
{
    size_t offset = (size_t)(lg(c)->ptr - (uint8_t *)c);
    struct rg_chunk *to = rg_chunk_map(need, RG_CHUNK_SIZE, 0);
    if (to == NULL)
        return NULL;
    list_remove(&a->large, c); /* its links move with it */
    if (!rg_chunk_move_grow(c, to, need)) {
        list_push(&a->large, c);
        rg_chunk_unmap(to);
        return NULL;
    }
    lg(to)->ptr = (uint8_t *)to + offset;
    list_push(&a->large, to);
    return lg(to)->ptr;
}

void *rg_large_resize(struct regal_arena *a, struct rg_chunk *c, size_t size)
{
    size_t offset = (size_t)(lg(c)->ptr - (uint8_t *)c), old = c->map_size;
    size_t need = rg_align_up(offset + size, rg_os_page_size());
    if (need < size)
        return NULL;
    if (need <= old) {
        if (need > old / 2)
            return lg(c)->ptr;
        if (size <= SHRINK_BY_COPY_MAX)
            return NULL;
        shrink(a, c, need);
        return lg(c)->ptr;
    }
    if (cache_serves(a, size) || !rg_arena_commit_bytes(a, need - old))
        return NULL;
    if (rg_os_grow(c, old, need)) {
        c->map_size = need;
        return lg(c)->ptr;
    }
    void *moved = move_grow(a, c, need);
    if (moved == NULL)
        rg_arena_uncommit(a, need - old);
    return moved;
}

size_t rg_large_cached_bytes(const struct regal_arena *a)
{
    size_t bytes = 0;
    for (size_t i = 0; i < a->large_cache_count; i++)
        bytes += a->large_cache[i].size;
    return bytes;
}

bool rg_large_cache_is_valid(struct regal_arena *a, size_t *mapped)
{
    if (a->large_cache_count > a->large_cache_cap)
        return rg_check_fail(a, "%zu cached mappings in room for %zu", a->large_cache_count,
                             a->large_cache_cap);
    for (size_t i = 0; i < a->large_cache_count; i++) {
        const struct rg_cached *e = &a->large_cache[i];
        if (!rg_chunk_header_is_valid(e->c, a, RG_CHUNK_LARGE) || lg(e->c)->live != 0)
            return rg_check_fail(e->c, "cached mapping %p: bad header (large.c invariant 1)",
                                 (void *)e->c);
        struct rg_cached want = entry_of(e->c);
        if (e->size != want.size || e->gap != want.gap)
            return rg_check_fail(e->c, "cached mapping %p: its entry says %zu bytes, gap %zu",
                                 (void *)e->c, e->size, e->gap);
        *mapped += rg_large_committed(e->c);
    }
    return true;
}

size_t rg_large_flush_cache(struct regal_arena *a)
{
    size_t released = a->large_cache_bytes;
    for (size_t i = 0; i < a->large_cache_count; i++) {
        struct rg_chunk *c = a->large_cache[i].c;
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
    if (a->large_cache != NULL)
        rg_os_unmap(a->large_cache, a->large_cache_cap * sizeof *a->large_cache);
    a->large_cache = NULL;
    a->large_cache_cap = 0;
}

void rg_large_visit(struct regal_arena *a, rg_visit_fn fn, void *ctx)
{
    for (struct rg_chunk *c = a->large; c != NULL; c = c->next)
        fn(lg(c)->ptr, rg_large_usable(c), ctx);
}
