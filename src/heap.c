/*
 * The free-list heap.  Each heap chunk holds one region of blocks laid end
 * to end; the arena's struct rg_heap indexes the free ones of all its heap
 * chunks.
 *
 * Block layout: a 16-byte header {size|flags, check}; the user's bytes
 * follow.  A free block also holds two list links and its dirty and clean
 * bytes after the header, and its size in its last word (the footer), so the block
 * after it can find it: the boundary tag.  A used block needs no footer; its successor's
 * RG_HB_PREV_FREE flag says whether the footer before it is valid.
 *
 * Invariants (checked by rg_heap_check):
 *  1. Blocks tile [begin, end) of their chunk exactly; each size is a
 *     multiple of 16 and at least RG_HB_MIN_BLOCK.
 *  2. check == size ^ address ^ chunk key for every block header.
 *  3. No two free blocks are adjacent (coalescing is immediate).
 *  4. A free block's footer equals its size; the next block's PREV_FREE
 *     flag is set exactly when the block before it is free.
 *  5. Every free block is on list heads[f][s] for (f, s) = mapping(size),
 *     and only there; bit s of sl_map[f] <=> heads[f][s] != NULL; bit f of
 *     fl_map <=> sl_map[f] != 0.
 *  6. A free block's dirty field equals the committed bytes of its
 *     interior (block_dirty), its clean field the rest of the interior.
 *     All of a used block is committed, and so is every part of a free
 *     block outside its interior, so a block entering a list mostly gets
 *     its dirty bytes by arithmetic: its interior but for the clean bytes
 *     of the free blocks it merged (debug builds assert the granules
 *     agree).  Keeping clean saves recomputing the interiors of the
 *     merged blocks.
 *
 * The chunk key changes on every reset, so headers left from before a reset
 * no longer pass invariant 2: a stale pointer is an invalid free, never a
 * block.  Everything here runs under the arena's lock, but for
 * rg_heap_claim and rg_heap_unclaim: a thread cache (mcache.c) marks a
 * block cached and live again with no lock.  So the lock holder changes a
 * block it does not own (PREV_FREE of a used block) with an atomic
 * read-modify-write, and the check word leaves out the flags that change
 * that way (RG_HB_SHARED_FLAGS).  To the heap a cached block is a used
 * one; to its owner, the statistics and regal_arena_visit it is free.
 *
 * Purging (purge.c) gives back the interior of a free block: the OS pages
 * wholly inside it past its header and links and before its footer
 * (block_interior).  Its committed part is dirty memory: counted into the
 * arena's dirty bytes when the block enters a free list and out when it
 * leaves, so the granule bitmap of a block's interior never changes while
 * the block is listed, except by a purge, which counts what it releases.
 */
#include "heap.h"

#include <errno.h>
#include <string.h>

#include "arena.h"
#include "check.h"
#include "os.h"
#include "purge.h"

struct rg_heap_chunk {
    struct rg_chunk base;
    uint64_t epoch; /* resets so far; part of the key */
    uint64_t key;   /* chunk_key_of(epoch), set by rg_heap_chunk_init */
};

#define HEAP_BEGIN RG_HEAP_META /* first block, after the chunk header */
#define HEAP_END   RG_CHUNK_SIZE
#define HEAP_SPAN  (HEAP_END - HEAP_BEGIN)

static_assert(sizeof(struct rg_heap_chunk) <= HEAP_BEGIN, "heap chunk header fits");

/* ---- blocks ---- */

static struct rg_hblock *block_of(const void *p)
{
    return (struct rg_hblock *)((uint8_t *)p - RG_HB_HEADER);
}

/* The size word, read as one: a thread cache may change its shared flags
 * meanwhile. */
static size_t hword(const struct rg_hblock *b)
{
    return __atomic_load_n(&b->size, __ATOMIC_RELAXED);
}

static size_t bsize(const struct rg_hblock *b)
{
    return hword(b) & ~RG_HB_FLAGS;
}

static uint64_t chunk_key_of(uint64_t epoch)
{
    return rg_os_secret() ^ epoch * 0x9e3779b97f4a7c15ull;
}

/* Kept in the chunk header: every header write and check needs it. */
static uint64_t chunk_key(const struct rg_chunk *c)
{
    return ((const struct rg_heap_chunk *)c)->key;
}

static size_t check_of(const struct rg_hblock *b, size_t size_field)
{
    return (size_field & ~RG_HB_SHARED_FLAGS) ^ (uintptr_t)b ^ chunk_key(rg_chunk_of(b));
}

static void set_header(struct rg_hblock *b, size_t size, size_t flags)
{
    __atomic_store_n(&b->size, size | flags, __ATOMIC_RELAXED);
    b->check = check_of(b, size | flags);
}

/* flag is a shared one (PREV_FREE): b may be a used block that another
 * thread is caching right now. */
static void set_flag(struct rg_hblock *b, size_t flag, bool on)
{
    if (on)
        __atomic_fetch_or(&b->size, flag, __ATOMIC_RELAXED);
    else
        __atomic_fetch_and(&b->size, ~flag, __ATOMIC_RELAXED);
}

/* The block after b, or NULL at the end of the region. */
static struct rg_hblock *block_next(const struct rg_hblock *b)
{
    uint8_t *n = (uint8_t *)b + bsize(b);
    return n == (uint8_t *)rg_chunk_of(b) + HEAP_END ? NULL : (struct rg_hblock *)n;
}

static struct rg_hblock *block_prev(const struct rg_hblock *b)
{
    size_t footer;
    memcpy(&footer, (const uint8_t *)b - sizeof footer, sizeof footer);
    return (struct rg_hblock *)((uint8_t *)b - footer);
}

/* The footer of free block b; none for the region's last block, whose
 * footer nobody reads (and whose page may be untouched). */
static void set_footer(struct rg_hblock *b)
{
    size_t s = bsize(b);
    if (block_next(b) != NULL)
        memcpy((uint8_t *)b + s - sizeof s, &s, sizeof s);
}

static size_t block_size_for(size_t size)
{
    return rg_heap_block_size(size);
}

/* Offset of block b from its chunk. */
static size_t block_offset(const struct rg_hblock *b)
{
    return (size_t)((uintptr_t)b - (uintptr_t)rg_chunk_of(b));
}

/* The pages a purge gives back from free block b, as offsets [*from, *to)
 * from its chunk: whole OS pages past the header and links and before the
 * footer (the region's last block has none). */
RG_INLINE void block_interior(const struct rg_hblock *b, size_t *from, size_t *to)
{
    size_t page = rg_os_page_size(), off = block_offset(b);
    size_t end = off + bsize(b);
    *from = rg_align_up(off + sizeof *b, page);
    *to = (end == HEAP_END ? end : end - sizeof(size_t)) & ~(page - 1); /* HEAP_END: no next */
    if (*to < *from)
        *to = *from;
}

RG_INLINE size_t interior_bytes(const struct rg_hblock *b)
{
    size_t from, to;
    block_interior(b, &from, &to);
    return to - from;
}

/* Committed bytes of free block b's interior: its dirty memory, read from
 * the chunk's granules. */
static size_t block_dirty(const struct rg_hblock *b)
{
    if (bsize(b) <= rg_os_page_size())
        return 0; /* no whole page between header and footer */
    size_t from, to;
    block_interior(b, &from, &to);
    return from < to ? rg_chunk_committed_in(rg_chunk_of(b), from, to) : 0;
}

/* ---- free lists ---- */

static void mapping(size_t size, unsigned *fl, unsigned *sl)
{
    unsigned f = rg_log2(size);
    *sl = (unsigned)(size >> (f - RG_SL_LOG2)) ^ RG_SL_COUNT;
    *fl = f - RG_FL_MIN;
}

/* Lists free block b.  whole: all of b is committed but for clean bytes
 * of its interior (those of the free blocks it merged); otherwise its
 * dirty bytes are read from the granules. */
static void list_insert(struct rg_heap *h, struct rg_hblock *b, bool whole, size_t clean)
{
    unsigned f, s;
    mapping(bsize(b), &f, &s);
    b->prev_free = NULL;
    b->next_free = h->heads[f][s];
    if (b->next_free)
        b->next_free->prev_free = b;
    h->heads[f][s] = b;
    h->sl_map[f] |= (uint16_t)(1u << s);
    h->fl_map |= 1u << f;
    size_t interior = interior_bytes(b);
    size_t dirty = whole ? interior - clean : block_dirty(b);
    RG_ASSERT(dirty == block_dirty(b));
    b->dirty = dirty;
    b->clean = interior - dirty;
    rg_arena_dirty_add(rg_chunk_of(b)->arena, dirty);
}

static void list_remove(struct rg_heap *h, struct rg_hblock *b)
{
    unsigned f, s;
    mapping(bsize(b), &f, &s);
    if (b->prev_free)
        b->prev_free->next_free = b->next_free;
    else
        h->heads[f][s] = b->next_free;
    if (b->next_free)
        b->next_free->prev_free = b->prev_free;
    if (h->heads[f][s] == NULL) {
        h->sl_map[f] &= (uint16_t) ~(1u << s);
        if (h->sl_map[f] == 0)
            h->fl_map &= ~(1u << f);
    }
    rg_arena_dirty_sub(rg_chunk_of(b)->arena, b->dirty);
}

/* A free block of at least size bytes, in O(1).  The head of size's own
 * list is taken when it fits (exact and near fits for repeated sizes);
 * otherwise size is rounded up to the next list boundary so that any block
 * of the list found fits (good fit). */
static struct rg_hblock *list_find(struct rg_heap *h, size_t size)
{
    unsigned f, s;
    mapping(size, &f, &s);
    if (f >= RG_FL_COUNT)
        return NULL;
    if (h->heads[f][s] != NULL && bsize(h->heads[f][s]) >= size)
        return h->heads[f][s];
    mapping(size + ((size_t)1 << (rg_log2(size) - RG_SL_LOG2)) - 1, &f, &s);
    if (f >= RG_FL_COUNT)
        return NULL;
    uint32_t slm = h->sl_map[f] & (~0u << s);
    if (slm == 0) {
        uint32_t flm = h->fl_map & (~0u << (f + 1));
        if (flm == 0)
            return NULL;
        f = (unsigned)__builtin_ctz(flm);
        slm = h->sl_map[f];
    }
    return h->heads[f][__builtin_ctz(slm)];
}

/* ---- splitting and merging ---- */

/* Makes used block b exactly bs bytes when the rest is worth a free block
 * (merged with a free block after it); fixes the next block's PREV_FREE.
 * whole: all of b is committed (a used block always is; one just taken
 * from a free block when that block was), so the rest's interior is
 * committed but for what a free block after it brings. */
static void split_tail(struct rg_heap *h, struct rg_hblock *b, size_t bs, bool whole)
{
    size_t cur = bsize(b), prev_flag = hword(b) & RG_HB_PREV_FREE;
    struct rg_hblock *next = block_next(b);
    if (cur - bs < RG_HB_MIN_BLOCK) {
        set_header(b, cur, prev_flag);
        if (next)
            set_flag(next, RG_HB_PREV_FREE, false);
        return;
    }
    set_header(b, bs, prev_flag);
    struct rg_hblock *rest = (struct rg_hblock *)((uint8_t *)b + bs);
    size_t rsize = cur - bs, clean = 0;
    if (next && (hword(next) & RG_HB_FREE)) {
        clean = next->clean;
        list_remove(h, next);
        rsize += bsize(next);
    }
    set_header(rest, rsize, RG_HB_FREE);
    set_footer(rest);
    list_insert(h, rest, whole, clean);
    if ((next = block_next(rest)) != NULL)
        set_flag(next, RG_HB_PREV_FREE, true);
}

/* Counts [from, to) as committed; to may pass the region's end. */
static bool commit_range(struct regal_arena *a, const void *from, const void *to)
{
    struct rg_chunk *c = rg_chunk_of(from);
    return rg_arena_commit(a, c, (size_t)((uintptr_t)from - (uintptr_t)c),
                           (size_t)((uintptr_t)to - (uintptr_t)c), false);
}

/* The user pointer inside free block b for alignment align, leaving a gap
 * before it that is either empty or big enough to be a free block. */
static uint8_t *aligned_user(struct rg_hblock *b, size_t align)
{
    uint8_t *user = (uint8_t *)b + RG_HB_HEADER;
    uint8_t *u = (uint8_t *)rg_align_up((uintptr_t)user, align);
    while (u != user && (size_t)(u - user) < RG_HB_MIN_BLOCK)
        u += align;
    return u;
}

void rg_heap_chunk_init(struct regal_arena *a, struct rg_chunk *c)
{
    struct rg_heap_chunk *hc = (struct rg_heap_chunk *)c;
    hc->key = chunk_key_of(hc->epoch);
    struct rg_hblock *b = (struct rg_hblock *)((uint8_t *)c + HEAP_BEGIN);
    set_header(b, HEAP_SPAN, RG_HB_FREE);
    list_insert(&a->heap, b, false, 0); /* no footer: nothing follows it */
}

static struct rg_hblock *find_or_grow(struct regal_arena *a, size_t need)
{
    struct rg_hblock *b = list_find(&a->heap, need);
    if (b == NULL && need <= HEAP_SPAN - RG_HB_MIN_BLOCK) {
        struct rg_chunk *c = rg_arena_add_chunk(a, RG_CHUNK_HEAP);
        if (c != NULL)
            b = list_find(&a->heap, need);
    }
    return b;
}

/* Whether all of free block b is committed: its interior is when its
 * dirty bytes are all of it, and the rest of a block always is (its header
 * and footer were written inside committed ranges, and a purge takes only
 * the interior).  Then an allocation from b has nothing to commit inside
 * it, and skips the look at the chunk's granules. */
static bool block_is_committed(const struct rg_hblock *b)
{
    bool all = b->clean == 0;
    RG_ASSERT(!all || rg_chunk_uncommitted(rg_chunk_of(b), block_offset(b),
                                           block_offset(b) + bsize(b)) == 0);
    return all;
}

/* Commits what free block b needs for a block ending at end, and the
 * header after it (inside b, or the next block's, which is committed);
 * *whole says whether all of b was committed already. */
static bool commit_for(struct regal_arena *a, struct rg_hblock *b, uint8_t *end, bool *whole)
{
    *whole = block_is_committed(b);
    return *whole || commit_range(a, b, end + sizeof *b);
}

void *rg_heap_alloc(struct regal_arena *a, size_t size, size_t align, size_t *usable)
{
    size_t bs = block_size_for(size);
    size_t need = align <= RG_ALIGN ? bs : bs + align + RG_HB_MIN_BLOCK;
    struct rg_hblock *b = find_or_grow(a, need);
    if (b == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    uint8_t *user = align <= RG_ALIGN ? (uint8_t *)b + RG_HB_HEADER : aligned_user(b, align);
    size_t gap = (size_t)(user - RG_HB_HEADER - (uint8_t *)b);
    list_remove(&a->heap, b); /* before its granules change (and out of a purge's way) */
    bool whole;
    if (!commit_for(a, b, user + bs, &whole)) {
        list_insert(&a->heap, b, false, 0);
        errno = ENOMEM;
        return NULL;
    }
    if (gap > 0) { /* the front gap stays free; b's predecessor is used */
        size_t total = bsize(b);
        set_header(b, gap, RG_HB_FREE);
        set_footer(b);
        list_insert(&a->heap, b, whole, 0);
        b = block_of(user);
        set_header(b, total - gap, RG_HB_PREV_FREE);
    } else {
        set_header(b, bsize(b), hword(b) & RG_HB_PREV_FREE);
    }
    split_tail(&a->heap, b, bs, whole);
    *usable = bsize(b) - RG_HB_HEADER;
    return user;
}

/* Whether p lies where a block of c's heap may start; *off its offset. */
static bool in_heap_area(const struct rg_chunk *c, const void *p, uintptr_t *off)
{
    *off = (uintptr_t)p - (uintptr_t)c;
    return ((uintptr_t)p & (RG_ALIGN - 1)) == 0 && *off >= HEAP_BEGIN + RG_HB_HEADER &&
           *off < HEAP_END;
}

enum rg_hblock_status rg_heap_status(struct rg_chunk *c, const void *p)
{
    uintptr_t off;
    if (!in_heap_area(c, p, &off))
        return RG_HB_BOGUS;
    const struct rg_hblock *b = block_of(p);
    size_t s = bsize(b);
    if (b->check != check_of(b, hword(b)) || s < RG_HB_MIN_BLOCK ||
        s > HEAP_END - (off - RG_HB_HEADER))
        return RG_HB_BOGUS;
    return (hword(b) & (RG_HB_FREE | RG_HB_CACHED)) ? RG_HB_DEAD : RG_HB_LIVE;
}

/* Whether w, the size word just read from the header before p (at offset
 * off), is that of a live block of lo bytes or more and below hi.  Reads
 * what no lock guards: the check word excludes the flags another thread
 * may change meanwhile. */
static bool live_word(const void *p, uintptr_t off, size_t w, size_t lo, size_t hi)
{
    const struct rg_hblock *b = block_of(p);
    size_t s = w & ~RG_HB_FLAGS;
    return !(w & (RG_HB_FREE | RG_HB_CACHED)) && b->check == check_of(b, w) && s >= lo && s < hi &&
           s <= HEAP_END - (off - RG_HB_HEADER);
}

size_t rg_heap_claim(struct rg_chunk *c, void *p, size_t lo, size_t hi)
{
    uintptr_t off;
    if (!in_heap_area(c, p, &off))
        return 0;
    struct rg_hblock *b = block_of(p);
    size_t w = hword(b);
    do {
        if (!live_word(p, off, w, lo, hi))
            return 0;
        /* Fails only when the lock holder changed PREV_FREE meanwhile, or
         * another thread cached the block first (a double free). */
    } while (!__atomic_compare_exchange_n(&b->size, &w, w | RG_HB_CACHED, true, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    return w & ~RG_HB_FLAGS;
}

size_t rg_heap_live_usable(struct rg_chunk *c, const void *p)
{
    uintptr_t off;
    if (!in_heap_area(c, p, &off))
        return 0;
    size_t w = hword(block_of(p));
    return live_word(p, off, w, RG_HB_MIN_BLOCK, SIZE_MAX) ? (w & ~RG_HB_FLAGS) - RG_HB_HEADER : 0;
}

size_t rg_heap_unclaim(void *p)
{
    struct rg_hblock *b = block_of(p);
    return (__atomic_fetch_and(&b->size, ~RG_HB_CACHED, __ATOMIC_RELAXED) & ~RG_HB_FLAGS) -
           RG_HB_HEADER;
}

size_t rg_heap_usable(const void *p)
{
    return bsize(block_of(p)) - RG_HB_HEADER;
}

void rg_heap_free(struct regal_arena *a, void *p)
{
    struct rg_heap *h = &a->heap;
    struct rg_hblock *b = block_of(p);
    size_t size = bsize(b);
    struct rg_hblock *next = block_next(b);
    /* Mark the header free first: if it is absorbed by a neighbour, a later
     * free of p still reads as a double free. */
    set_header(b, size, (hword(b) & RG_HB_PREV_FREE) | RG_HB_FREE);
    /* b was used, so committed: the merged block is all committed but for
     * what its free neighbours' interiors lacked. */
    size_t clean = 0;
    if (hword(b) & RG_HB_PREV_FREE) {
        struct rg_hblock *prev = block_prev(b);
        clean += prev->clean;
        list_remove(h, prev);
        size += bsize(prev);
        b = prev;
    }
    if (next && (hword(next) & RG_HB_FREE)) {
        clean += next->clean;
        list_remove(h, next);
        size += bsize(next);
    }
    set_header(b, size, RG_HB_FREE);
    set_footer(b);
    list_insert(h, b, true, clean);
    if ((next = block_next(b)) != NULL)
        set_flag(next, RG_HB_PREV_FREE, true);
    if (size >= RG_PURGE_RUN)
        rg_purge_maybe(a);
}

bool rg_heap_resize(struct regal_arena *a, void *p, size_t size)
{
    struct rg_hblock *b = block_of(p);
    size_t bs = block_size_for(size), cur = bsize(b);
    if (bs <= cur) {
        split_tail(&a->heap, b, bs, true); /* used: committed */
        return true;
    }
    struct rg_hblock *next = block_next(b);
    if (next == NULL || !(hword(next) & RG_HB_FREE) || cur + bsize(next) < bs)
        return false;
    list_remove(&a->heap, next); /* before its granules change */
    if (!commit_range(a, b, (uint8_t *)b + bs + sizeof *b)) {
        list_insert(&a->heap, next, false, 0);
        return false;
    }
    set_header(b, cur + bsize(next), hword(b) & RG_HB_PREV_FREE);
    split_tail(&a->heap, b, bs, false);
    return true;
}

void rg_heap_reset(struct regal_arena *a)
{
    memset(&a->heap, 0, sizeof a->heap);
    for (struct rg_chunk *c = a->heaps; c != NULL; c = c->next) {
        ((struct rg_heap_chunk *)c)->epoch++;
        rg_heap_chunk_init(a, c);
    }
}

size_t rg_heap_largest_free(const struct rg_heap *h)
{
    if (h->fl_map == 0)
        return 0;
    unsigned f = 31 - (unsigned)__builtin_clz(h->fl_map);
    unsigned s = 31 - (unsigned)__builtin_clz(h->sl_map[f]);
    size_t best = 0;
    for (const struct rg_hblock *b = h->heads[f][s]; b != NULL; b = b->next_free)
        if (bsize(b) > best)
            best = bsize(b);
    return best - RG_HB_HEADER;
}

size_t rg_heap_largest_free_resident(const struct rg_heap *h)
{
    size_t best = 0;
    const struct rg_hblock *big = NULL;
    if (h->fl_map != 0) {
        unsigned f = 31 - (unsigned)__builtin_clz(h->fl_map);
        unsigned s = 31 - (unsigned)__builtin_clz(h->sl_map[f]);
        for (const struct rg_hblock *b = h->heads[f][s]; b != NULL; b = b->next_free) {
            if (bsize(b) > best) {
                best = bsize(b);
                big = b;
            }
        }
    }
    if (big == NULL)
        return 0;
    return best - RG_HB_HEADER - big->clean;
}

/* Gives back the interior of free block b (its header, links and footer
 * stay); bytes released. */
static size_t trim_block(struct regal_arena *a, struct rg_hblock *b)
{
    if (b->dirty == 0)
        return 0;
    size_t from, to;
    block_interior(b, &from, &to);
    size_t released = rg_chunk_decommit(rg_chunk_of(b), from, to);
    rg_arena_purged(a, released);
    b->dirty -= released;
    b->clean += released;
    return released;
}

static bool chunk_is_empty(struct rg_chunk *c)
{
    const struct rg_hblock *b = (const struct rg_hblock *)((uint8_t *)c + HEAP_BEGIN);
    return (hword(b) & RG_HB_FREE) && bsize(b) == HEAP_SPAN;
}

size_t rg_heap_purge(struct regal_arena *a, size_t want)
{
    size_t released = 0;
    for (unsigned f = RG_FL_COUNT; f-- > 0;)
        for (unsigned s = RG_SL_COUNT; s-- > 0;)
            for (struct rg_hblock *b = a->heap.heads[f][s]; b != NULL; b = b->next_free) {
                if (released >= want)
                    return released;
                released += trim_block(a, b);
            }
    return released;
}

size_t rg_heap_dirty(struct regal_arena *a)
{
    size_t dirty = 0;
    for (unsigned f = 0; f < RG_FL_COUNT; f++)
        for (unsigned s = 0; s < RG_SL_COUNT; s++)
            for (struct rg_hblock *b = a->heap.heads[f][s]; b != NULL; b = b->next_free)
                dirty += block_dirty(b);
    return dirty;
}

size_t rg_heap_trim(struct regal_arena *a)
{
    size_t released = 0;
    /* Whole empty chunks go back, except one kept for the next request. */
    struct rg_chunk *c = a->heaps, *next;
    bool kept = false;
    for (; c != NULL; c = next) {
        next = c->next;
        if (!chunk_is_empty(c))
            continue;
        if (!kept) {
            kept = true;
            continue;
        }
        list_remove(&a->heap, (struct rg_hblock *)((uint8_t *)c + HEAP_BEGIN));
        released += rg_arena_remove_chunk(a, c);
    }
    return released;
}

void rg_heap_visit(struct regal_arena *a, rg_visit_fn fn, void *ctx)
{
    for (struct rg_chunk *c = a->heaps; c != NULL; c = c->next) {
        uint8_t *p = (uint8_t *)c + HEAP_BEGIN, *end = (uint8_t *)c + HEAP_END;
        for (struct rg_hblock *b; p < end; p += bsize(b)) {
            b = (struct rg_hblock *)p;
            if (!(hword(b) & (RG_HB_FREE | RG_HB_CACHED)))
                fn(p + RG_HB_HEADER, bsize(b) - RG_HB_HEADER, ctx);
        }
    }
}

/* ---- check ---- */

static bool block_is_valid(struct rg_heap *h, struct rg_hblock *b, bool prev_free, size_t *nfree)
{
    size_t s = bsize(b);
    if (b->check != check_of(b, hword(b)))
        return rg_check_fail(b, "heap block %p: bad header check (invariant 2)", (void *)b);
    if (s < RG_HB_MIN_BLOCK || s % RG_ALIGN != 0)
        return rg_check_fail(b, "heap block %p: bad size %zu (invariant 1)", (void *)b, s);
    if (((hword(b) & RG_HB_PREV_FREE) != 0) != prev_free)
        return rg_check_fail(b, "heap block %p: PREV_FREE disagrees (invariant 4)", (void *)b);
    if (!(hword(b) & RG_HB_FREE))
        return true;
    if (prev_free)
        return rg_check_fail(b, "heap block %p: two free blocks adjacent (invariant 3)", (void *)b);
    struct rg_hblock *next = block_next(b);
    if (next != NULL && block_prev(next) != b)
        return rg_check_fail(b, "heap block %p: footer disagrees (invariant 4)", (void *)b);
    unsigned f, sl;
    mapping(s, &f, &sl);
    /* A corrupt list may have a cycle without b: the walk reports it
     * (a second pointer at half speed meets the first) rather than spin. */
    struct rg_hblock *l = h->heads[f][sl], *half = l;
    for (bool move = false; l != NULL && l != b; move = !move) {
        l = l->next_free;
        half = move ? half->next_free : half;
        if (l == half && l != NULL)
            return rg_check_fail(b, "heap: list %u.%u has a cycle (invariant 5)", f, sl);
    }
    if (l == NULL)
        return rg_check_fail(b, "heap block %p: free but not on its list (invariant 5)", (void *)b);
    if (b->dirty != block_dirty(b))
        return rg_check_fail(b, "heap block %p: dirty %zu, interior holds %zu (invariant 6)",
                             (void *)b, b->dirty, block_dirty(b));
    if (b->dirty + b->clean != interior_bytes(b))
        return rg_check_fail(b,
                             "heap block %p: dirty %zu and clean %zu, interior %zu (invariant 6)",
                             (void *)b, b->dirty, b->clean, interior_bytes(b));
    ++*nfree;
    return true;
}

static bool lists_are_valid(struct rg_heap *h, size_t *nlisted)
{
    for (unsigned f = 0; f < RG_FL_COUNT; f++) {
        if (((h->fl_map >> f) & 1) != (h->sl_map[f] != 0))
            return rg_check_fail(h, "heap: first-level bit %u wrong (invariant 5)", f);
        for (unsigned s = 0; s < RG_SL_COUNT; s++) {
            struct rg_hblock *b = h->heads[f][s], *prev = NULL;
            if (((h->sl_map[f] >> s) & 1) != (b != NULL))
                return rg_check_fail(h, "heap: second-level bit %u.%u wrong (invariant 5)", f, s);
            for (; b != NULL; prev = b, b = b->next_free, ++*nlisted)
                if (b->prev_free != prev || !(hword(b) & RG_HB_FREE))
                    return rg_check_fail(b, "heap: list %u.%u broken at %p (invariant 5)", f, s,
                                         (void *)b);
        }
    }
    return true;
}

int rg_heap_check(struct regal_arena *a)
{
    size_t nfree = 0, nlisted = 0;
    for (struct rg_chunk *c = a->heaps; c != NULL; c = c->next) {
        uint8_t *p = (uint8_t *)c + HEAP_BEGIN, *end = (uint8_t *)c + HEAP_END;
        bool prev_free = false;
        while (p < end) {
            struct rg_hblock *b = (struct rg_hblock *)p;
            if (!block_is_valid(&a->heap, b, prev_free, &nfree))
                return -1;
            prev_free = (hword(b) & RG_HB_FREE) != 0;
            p += bsize(b);
        }
        if (p != end) {
            rg_check_fail(c, "heap chunk %p: blocks overrun the region (invariant 1)", (void *)c);
            return -1;
        }
    }
    if (!lists_are_valid(&a->heap, &nlisted))
        return -1;
    if (nlisted != nfree) {
        rg_check_fail(a, "heap: %zu listed blocks, %zu free blocks (invariant 5)", nlisted, nfree);
        return -1;
    }
    return 0;
}
