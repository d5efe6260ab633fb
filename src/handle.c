/*
 * Relocatable blocks: regal_handle_alloc, _ptr, _free and
 * regal_arena_compact.  A handle names a block through a slot of the
 * arena's handle table, so the block may move: compaction slides live
 * blocks together and gives the freed pages back.
 *
 * Handles.  h = ((gen << 24) | slot) ^ key, where slot indexes the table,
 * gen (40 bits, never 0) comes from the arena's counter next_gen, which
 * every allocation advances and reset does not touch, and key is 64 bits
 * per arena (the process secret, a process-wide serial and the arena's
 * address, mixed).  A table slot holds the generation of its live handle,
 * or 0.  So a freed handle finds 0 or a newer generation in its slot, a
 * handle from before a reset finds a slot past the table's count or a
 * newer generation, and a handle of another arena (or a random value)
 * decodes to random slot and generation bits: taken for a live handle with
 * a probability below 2^-40.  The one way to fool the check is to keep a
 * stale handle across 2^40 allocations of its arena, until the counter
 * comes back to its generation in the same slot.  A generation for which
 * the handle would be 0 is skipped: 0 is never a handle.
 *
 * Memory: chunks of kind RG_CHUNK_HANDLE, in three roles.
 *  - Table segments: 16-byte slots from SEG_BEGIN, committed as the table
 *    grows.  Free slots are chained through the slot itself.
 *  - Region chunks, in the order they came: blocks tile [BEGIN, END), each a
 *    16-byte header {size, prev_size, slot, request} and the user's bytes
 *    (16-aligned).  A free block (slot FREE_SLOT) holds two list links
 *    after its header and is merged with free neighbours at once.
 *    Allocation is a good fit from the free lists (lists by
 *    floor(log2(size)): the first few blocks of the request's own list,
 *    then the head of any larger list), splitting the rest off.
 *  - Huge blocks (requests above MOVE_MAX): a mapping each, the block at
 *    BEGIN.  They never move (a chunk holds few of them, moving them costs
 *    most, and freeing one unmaps it, so they never fragment the region).
 *
 * Compaction walks the region in order (its chunks in the order they came,
 * each in address order) with a cursor (dst, at), starting at the first
 * block of the first chunk: each live block moves back to the cursor
 * (memmove; the table slot follows), or, when it does not fit in the rest
 * of the cursor's chunk, the cursor goes on to the next chunk and the rest
 * of the old one becomes a free block.  A block only moves toward the
 * region's start and keeps its order, so compacting a compact region moves
 * nothing.  Afterwards the region past the cursor is one free block whose
 * pages go back to the OS, and the chunks after it go back whole.  A
 * destination must be committed; if the arena's limit refuses that, the
 * pages the moves have emptied so far go back first, and if it still
 * refuses, compaction stops moving and leaves the remaining blocks where
 * they are.
 *
 * Invariants (checked by rg_handle_is_valid):
 *  1. Blocks tile [BEGIN, END) of every region chunk; a size is a multiple
 *     of 16, at least MIN_BLOCK; prev_size is the size of the block before
 *     (0 for the first).
 *  2. No two free blocks are adjacent.
 *  3. Every free block is on lists[list_of(size)], and only there; bit i
 *     of list_map <=> lists[i] != NULL.
 *  4. A live block (region or huge) with slot s has s < count,
 *     table[s].gen != 0 and table[s].ptr == its user pointer; live equals
 *     the number of live blocks and of slots with gen != 0.
 *  5. The slots below count with gen == 0 are exactly the free slot list.
 *  6. The region's chunk list is well linked (next->prev == this).
 *  7. Every block header (and a free block's links) and the bytes of every
 *     live block lie in committed granules; handle memory counts in
 *     arena.c invariant 1 as the committed granules of region and table
 *     chunks plus the whole mapping of each huge block.
 *
 * Valgrind: the chunks are NOACCESS metadata, touched quietly; each live
 * block is a MALLOCLIKE block of its request with a 16-byte redzone (its
 * own header before it, the padding and the next header after it).  A
 * moved block is FREELIKEd at its old place and announced at the new one
 * with its V bits carried over (GET/SET_VBITS), so memcheck follows it and
 * still knows its undefined bytes; a pointer kept across the move is a use
 * after free.  Reset and destroy FREELIKE every live block.
 *
 * Everything here runs under the arena's lock (rg_arena_lock).
 */
#include "handle.h"

#include <errno.h>
#include <string.h>

#include "arena.h"
#include "check.h"
#include "error.h"
#include "os.h"
#include "stats.h"
#include "track.h"

#define SLOT_BITS 24
#define SLOT_MASK (((uint64_t)1 << SLOT_BITS) - 1)
#define GEN_MASK  (((uint64_t)1 << (64 - SLOT_BITS)) - 1)

/* Requests above 1 MiB get a mapping of their own.  The rest of a chunk
 * that compaction leaves free (the next block did not fit) stays below
 * this. */
#define MOVE_MAX ((size_t)1 << 20)

enum role { ROLE_REGION = 1, ROLE_TABLE, ROLE_HUGE };

struct hchunk {
    struct rg_chunk base; /* kind RG_CHUNK_HANDLE */
    uint32_t role;        /* enum role */
    uint32_t slot;        /* huge: the block's slot */
    size_t request;       /* huge: bytes asked for */
};

#define BEGIN ((size_t)256) /* region: first block; huge: the user pointer */
#define END   RG_CHUNK_SIZE
#define SPAN  (END - BEGIN)

static_assert(sizeof(struct hchunk) <= BEGIN, "the handle chunk header fits");

struct rg_hblk {
    uint32_t size;             /* bytes, header included */
    uint32_t prev_size;        /* of the block before, 0 for the first */
    uint32_t slot;             /* table slot; FREE_SLOT for a free block */
    uint32_t request;          /* live: bytes asked for */
    struct rg_hblk *next_free; /* free blocks only */
    struct rg_hblk *prev_free;
};

#define HDR       ((size_t)16)
#define MIN_BLOCK sizeof(struct rg_hblk)
#define FREE_SLOT UINT32_MAX

static_assert(offsetof(struct rg_hblk, next_free) == HDR, "links follow the header");
static_assert(MIN_BLOCK == 32 && BEGIN + MIN_BLOCK <= RG_GRANULE, "block geometry");
static_assert(HDR + MOVE_MAX < SPAN && SPAN < UINT32_MAX, "sizes fit the header");

struct slot {
    uint64_t gen; /* 0 while free */
    union {
        uint8_t *ptr;  /* live: the user pointer */
        uint64_t next; /* free: the next free slot + 1, 0 at the end */
    };
};

#define SEG_BEGIN ((size_t)256)
#define SEG_SLOTS ((RG_CHUNK_SIZE - SEG_BEGIN) / sizeof(struct slot))
#define MAX_SLOTS ((uint32_t)(RG_HANDLE_SEGS * SEG_SLOTS))

static_assert(RG_HANDLE_SEGS * SEG_SLOTS <= SLOT_MASK + 1, "slots fit the handle");
static_assert(RG_HANDLE_LISTS <= 32, "list_map has a bit per list");

static struct hchunk *hc(struct rg_chunk *c)
{
    return (struct hchunk *)c;
}

/* ---- keys, generations, the table ---- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void handles_start(regal_arena *a)
{
    static uint64_t serial;
    struct rg_handles *h = &a->handles;
    while (h->key == 0) {
        uint64_t n = __atomic_add_fetch(&serial, 1, __ATOMIC_RELAXED);
        h->key = mix(rg_os_secret() ^ mix(n) ^ (uintptr_t)a);
    }
    h->next_gen = 1;
}

static regal_handle encode(const struct rg_handles *h, uint32_t slot, uint64_t gen)
{
    return ((gen << SLOT_BITS) | slot) ^ h->key;
}

static uint64_t take_gen(struct rg_handles *h, uint32_t slot)
{
    for (;;) {
        uint64_t gen = h->next_gen;
        h->next_gen = (gen + 1) & GEN_MASK;
        if (h->next_gen == 0)
            h->next_gen = 1;
        if (encode(h, slot, gen) != 0)
            return gen;
    }
}

static struct slot *slot_at(const struct rg_handles *h, uint32_t i)
{
    return (struct slot *)((uint8_t *)h->table[i / SEG_SLOTS] + SEG_BEGIN) + i % SEG_SLOTS;
}

/* The slot of live handle hd, or NULL.  Reads nothing outside the table. */
static struct slot *lookup(const struct rg_handles *h, regal_handle hd, uint32_t *index)
{
    if (h->key == 0 || hd == 0)
        return NULL;
    uint64_t raw = hd ^ h->key, gen = raw >> SLOT_BITS;
    uint32_t i = (uint32_t)(raw & SLOT_MASK);
    if (gen == 0 || i >= h->count || slot_at(h, i)->gen != gen)
        return NULL;
    *index = i;
    return slot_at(h, i);
}

/* ---- chunks ---- */

/* A chunk of handle memory with its first granule committed; NULL at the
 * limit or when the OS refuses. */
static struct rg_chunk *chunk_new(regal_arena *a, enum role role)
{
    if (!rg_arena_commit_bytes(a, RG_GRANULE))
        return NULL;
    struct rg_chunk *c = rg_chunk_alloc(a, RG_CHUNK_HANDLE, rg_arena_tracked(a));
    if (c == NULL) {
        rg_arena_uncommit(a, RG_GRANULE);
        return NULL;
    }
    rg_chunk_set_committed(c, 0, RG_GRANULE);
    rg_vg_noaccess(c, RG_CHUNK_SIZE);
    rg_vg_defined(c, sizeof(struct rg_chunk)); /* read by regal_free's fast path */
    hc(c)->role = role;
    return c;
}

/* Gives back chunk c, already unlinked; bytes it had committed. */
static size_t chunk_release(regal_arena *a, struct rg_chunk *c)
{
    size_t bytes = rg_chunk_committed(c);
    rg_arena_uncommit(a, bytes);
    rg_chunk_free(c);
    return bytes;
}

static void chunk_unlink(struct rg_chunk **head, struct rg_chunk *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

/* New region chunks go last: the region's order is the order its chunks
 * came in (their addresses are the OS's choice, often descending), so an
 * arena that never freed a handle is compact already. */
static void region_append(struct rg_handles *h, struct rg_chunk *c)
{
    struct rg_chunk *prev = h->region;
    while (prev != NULL && prev->next != NULL)
        prev = prev->next;
    c->prev = prev;
    c->next = NULL;
    if (prev)
        prev->next = c;
    else
        h->region = c;
}

/* A free slot, off the free list; false when the table is full or the
 * limit refuses to grow it. */
static bool slot_take(regal_arena *a, uint32_t *out)
{
    struct rg_handles *h = &a->handles;
    if (h->free_slot != 0) {
        *out = h->free_slot - 1;
        h->free_slot = (uint32_t)slot_at(h, *out)->next;
        return true;
    }
    uint32_t i = h->count, seg = i / SEG_SLOTS;
    if (i == MAX_SLOTS)
        return false;
    if (h->table[seg] == NULL && (h->table[seg] = chunk_new(a, ROLE_TABLE)) == NULL)
        return false;
    size_t off = SEG_BEGIN + (i % SEG_SLOTS) * sizeof(struct slot);
    if (!rg_arena_commit(a, h->table[seg], off, off + sizeof(struct slot), false))
        return false;
    h->count++;
    *out = i;
    return true;
}

static void slot_put(struct rg_handles *h, uint32_t i)
{
    struct slot *s = slot_at(h, i);
    s->gen = 0;
    s->next = h->free_slot;
    h->free_slot = i + 1;
}

/* ---- blocks of the region ---- */

static uint8_t *user_of(struct rg_hblk *b)
{
    return (uint8_t *)b + HDR;
}

static struct rg_hblk *blk_at(struct rg_chunk *c, size_t off)
{
    return (struct rg_hblk *)((uint8_t *)c + off);
}

static size_t off_of(const struct rg_hblk *b)
{
    return (uintptr_t)b & (RG_CHUNK_SIZE - 1);
}

static struct rg_hblk *blk_next(struct rg_hblk *b)
{
    size_t next = off_of(b) + b->size;
    return next == END ? NULL : blk_at(rg_chunk_of(b), next);
}

static struct rg_hblk *blk_prev(struct rg_hblk *b)
{
    return b->prev_size ? (struct rg_hblk *)((uint8_t *)b - b->prev_size) : NULL;
}

/* Bytes a block of request bytes needs, header included. */
static size_t need_for(size_t request)
{
    return HDR + rg_align_up(request ? request : 1, RG_ALIGN);
}

/* What a handle block counts for in the statistics (in_use). */
static size_t usable_of(size_t request)
{
    return rg_align_up(request ? request : 1, RG_ALIGN);
}

static unsigned list_of(size_t size)
{
    return rg_log2(size) - 5;
}

static void list_insert(struct rg_handles *h, struct rg_hblk *b)
{
    unsigned l = list_of(b->size);
    b->prev_free = NULL;
    b->next_free = h->lists[l];
    if (b->next_free)
        b->next_free->prev_free = b;
    h->lists[l] = b;
    h->list_map |= 1u << l;
}

static void list_remove(struct rg_handles *h, struct rg_hblk *b)
{
    unsigned l = list_of(b->size);
    if (b->prev_free)
        b->prev_free->next_free = b->next_free;
    else
        h->lists[l] = b->next_free;
    if (b->next_free)
        b->next_free->prev_free = b->prev_free;
    if (h->lists[l] == NULL)
        h->list_map &= ~(1u << l);
}

static void lists_clear(struct rg_handles *h)
{
    memset(h->lists, 0, sizeof h->lists);
    h->list_map = 0;
}

/* A free block of at least need bytes: one of the first few of need's own
 * list, else the head of a larger list (any of which fits). */
static struct rg_hblk *list_find(const struct rg_handles *h, size_t need)
{
    unsigned l = list_of(need), looked = 0;
    for (struct rg_hblk *b = h->lists[l]; b != NULL && looked < 8; b = b->next_free, looked++)
        if (b->size >= need)
            return b;
    uint32_t larger = h->list_map & ~((2u << l) - 1);
    return larger ? h->lists[__builtin_ctz(larger)] : NULL;
}

/* Makes [b, b + size) a listed free block and tells the next block. */
static void make_free(struct rg_handles *h, struct rg_hblk *b, size_t size, size_t prev_size)
{
    b->size = (uint32_t)size;
    b->prev_size = (uint32_t)prev_size;
    b->slot = FREE_SLOT;
    b->request = 0;
    list_insert(h, b);
    struct rg_hblk *next = blk_next(b);
    if (next)
        next->prev_size = b->size;
}

/* Gives back the pages wholly inside free block b (its header and links
 * stay); bytes given back, not yet uncounted from the arena. */
static size_t decommit_inside(struct rg_hblk *b)
{
    return rg_chunk_decommit(rg_chunk_of(b), off_of(b) + MIN_BLOCK, off_of(b) + b->size);
}

/* Counts [b, b + bytes) as committed (to may pass the chunk's end). */
static bool commit_blk(regal_arena *a, struct rg_hblk *b, size_t bytes)
{
    return rg_arena_commit(a, rg_chunk_of(b), off_of(b), off_of(b) + bytes, false);
}

static uint8_t *region_alloc(regal_arena *a, size_t request, uint32_t slot)
{
    struct rg_handles *h = &a->handles;
    size_t need = need_for(request);
    struct rg_hblk *b = list_find(h, need);
    if (b == NULL) {
        struct rg_chunk *c = chunk_new(a, ROLE_REGION);
        if (c == NULL)
            return NULL;
        region_append(h, c);
        b = blk_at(c, BEGIN);
        make_free(h, b, SPAN, 0);
    }
    if (!commit_blk(a, b, need + MIN_BLOCK)) /* and the header of the rest */
        return NULL;
    list_remove(h, b);
    if (b->size - need >= MIN_BLOCK) {
        make_free(h, (struct rg_hblk *)((uint8_t *)b + need), b->size - need, need);
        b->size = (uint32_t)need;
    }
    b->slot = slot;
    b->request = (uint32_t)request;
    return user_of(b);
}

static void region_free(struct rg_handles *h, struct rg_hblk *b)
{
    size_t size = b->size;
    struct rg_hblk *prev = blk_prev(b), *next = blk_next(b);
    if (next && next->slot == FREE_SLOT) {
        list_remove(h, next);
        size += next->size;
    }
    if (prev && prev->slot == FREE_SLOT) {
        list_remove(h, prev);
        size += prev->size;
        b = prev;
    }
    make_free(h, b, size, b->prev_size);
}

/* ---- huge blocks ---- */

static size_t huge_map_size(size_t request)
{
    return rg_align_up(BEGIN + request + RG_VG_REDZONE, rg_os_page_size());
}

static uint8_t *huge_alloc(regal_arena *a, size_t request, uint32_t slot)
{
    struct rg_handles *h = &a->handles;
    size_t bytes = huge_map_size(request);
    if (!rg_arena_commit_bytes(a, bytes))
        return NULL;
    struct rg_chunk *c = rg_chunk_map(bytes, RG_CHUNK_SIZE, 0);
    if (c == NULL) {
        rg_arena_uncommit(a, bytes);
        return NULL;
    }
    rg_vg_noaccess(c, bytes);
    rg_vg_defined(c, sizeof *c);
    rg_chunk_set_kind(c, RG_CHUNK_HANDLE, rg_arena_tracked(a));
    c->arena = a;
    hc(c)->role = ROLE_HUGE;
    hc(c)->slot = slot;
    hc(c)->request = request;
    c->prev = NULL;
    c->next = h->huge;
    if (h->huge)
        h->huge->prev = c;
    h->huge = c;
    return (uint8_t *)c + BEGIN;
}

static void huge_free(regal_arena *a, struct rg_chunk *c)
{
    chunk_unlink(&a->handles.huge, c);
    rg_arena_uncommit(a, c->map_size);
    rg_chunk_unmap(c);
}

/* ---- the block behind a slot ---- */

static size_t request_of(uint8_t *p)
{
    struct rg_chunk *c = rg_chunk_of(p);
    return hc(c)->role == ROLE_HUGE ? hc(c)->request : ((struct rg_hblk *)(p - HDR))->request;
}

static void block_free(regal_arena *a, uint8_t *p)
{
    struct rg_chunk *c = rg_chunk_of(p);
    if (hc(c)->role == ROLE_HUGE)
        huge_free(a, c);
    else
        region_free(&a->handles, (struct rg_hblk *)(p - HDR));
}

/* memcheck forgets every live block (reset, destroy). */
static void forget_blocks(struct rg_handles *h)
{
    if (!rg_vg())
        return;
    for (uint32_t i = 0; i < h->count; i++)
        if (slot_at(h, i)->gen != 0)
            rg_vg_block_free(slot_at(h, i)->ptr);
}

/* ---- the public calls ---- */

static bool arena_ok(regal_arena *a, const char *op)
{
    if (RG_LIKELY(rg_arena_is_live(a)))
        return true;
    rg_report(REGAL_ERR_INVALID_FREE, a, NULL, "%s on %p, which is not a live arena", op,
              (void *)a);
    return false;
}

static regal_handle handle_alloc(regal_arena *a, size_t size, uint8_t **out)
{
    struct rg_handles *h = &a->handles;
    if (h->key == 0)
        handles_start(a);
    uint32_t i;
    uint8_t *p = NULL;
    if (slot_take(a, &i)) {
        p = size <= MOVE_MAX ? region_alloc(a, size, i) : huge_alloc(a, size, i);
        if (p == NULL)
            slot_put(h, i);
    }
    if (p == NULL)
        return 0;
    struct slot *s = slot_at(h, i);
    s->gen = take_gen(h, i);
    s->ptr = p;
    h->live++;
    rg_stats_alloc(a, usable_of(size), size);
    *out = p;
    return encode(h, i, s->gen);
}

regal_handle regal_handle_alloc(regal_arena *a, size_t size)
{
    if (!arena_ok(a, "regal_handle_alloc")) {
        errno = EINVAL;
        return 0;
    }
    if (size > PTRDIFF_MAX) {
        errno = ENOMEM;
        return 0;
    }
    regal_handle hd;
    bool flushed = false;
    rg_theap_ensure(a); /* count in the caller's theap (stats.h) */
    for (;;) {
        uint8_t *p = NULL;
        rg_vg_quiet_begin();
        rg_arena_lock(a);
        hd = handle_alloc(a, size, &p);
        rg_vg_quiet_end();
        /* Announced here, so memcheck's stack starts at this call, and
         * under the lock: another thread's compaction may move the block
         * as soon as the lock is free. */
        if (hd != 0)
            rg_vg_block_alloc(p, size, false);
        rg_arena_unlock(a);
        /* At the limit, a tracked arena's quarantine gives its memory back
         * (as for regal_alloc, track.c). */
        if (hd != 0 || flushed || !rg_arena_tracked(a) || rg_track_flush(a) == 0)
            break;
        flushed = true;
    }
    if (hd == 0)
        errno = ENOMEM;
    return hd;
}

void *regal_handle_ptr(regal_arena *a, regal_handle hd)
{
    if (!arena_ok(a, "regal_handle_ptr"))
        return NULL;
    uint32_t i;
    rg_vg_quiet_begin();
    rg_arena_lock(a);
    struct slot *s = lookup(&a->handles, hd, &i);
    void *p = s ? s->ptr : NULL;
    rg_arena_unlock(a);
    rg_vg_quiet_end();
    return p;
}

void regal_handle_free(regal_arena *a, regal_handle hd)
{
    if (hd == 0 || !arena_ok(a, "regal_handle_free"))
        return;
    uint32_t i;
    rg_theap_ensure(a);
    rg_vg_quiet_begin();
    rg_arena_lock(a);
    struct slot *s = lookup(&a->handles, hd, &i);
    if (s != NULL) {
        uint8_t *p = s->ptr;
        rg_vg_block_free(p);
        rg_stats_free(a, usable_of(request_of(p)));
        block_free(a, p);
        slot_put(&a->handles, i);
        a->handles.live--;
    }
    rg_arena_unlock(a);
    rg_vg_quiet_end();
    if (s == NULL)
        rg_report(REGAL_ERR_INVALID_FREE, NULL, a,
                  "regal_handle_free of %#llx: not a live handle of this arena (freed, from "
                  "before a reset, or of another arena)",
                  (unsigned long long)hd);
}

/* ---- compaction ---- */

struct compaction {
    regal_arena *a;
    struct rg_chunk *dst; /* blocks go to dst + at */
    size_t at;
    struct rg_hblk *last; /* the last block placed in dst, NULL if none */
    bool stuck;           /* the limit refused a destination: nothing moves any more */
    uint8_t *vbits;       /* memcheck: scratch for one block's V bits (lazy) */
};

#define VBITS_BYTES rg_align_up(MOVE_MAX, rg_os_page_size())

/* Ends dst at the cursor: the rest becomes a free block, its pages go
 * back.  The rest is 0 or at least MIN_BLOCK: blocks in place end where
 * their successor started, and a moved block takes the rest of its chunk
 * when less would remain (place). */
static void close_dst(struct compaction *k)
{
    size_t rest = END - k->at;
    if (rest == 0)
        return;
    RG_ASSERT(rest >= MIN_BLOCK);
    struct rg_hblk *f = blk_at(k->dst, k->at);
    make_free(&k->a->handles, f, rest, k->last ? k->last->size : 0);
    rg_arena_uncommit(k->a, decommit_inside(f));
}

/* Moves the cursor to chunk c (not before it), leaving the chunks in
 * between (without live blocks: they were walked) as free blocks. */
static void advance_to(struct compaction *k, struct rg_chunk *c)
{
    close_dst(k);
    while (k->dst != c) {
        k->dst = k->dst->next;
        k->at = BEGIN;
        k->last = NULL;
        if (k->dst != c)
            close_dst(k);
    }
}

/* The limit refused a destination: b stays, and whatever lies between the
 * cursor and b becomes free (a gap below MIN_BLOCK joins the last block). */
static void pin(struct compaction *k, struct rg_hblk *b)
{
    k->stuck = true;
    struct rg_chunk *c = rg_chunk_of(b);
    if (k->dst != c)
        advance_to(k, c);
    size_t gap = off_of(b) - k->at;
    if (gap >= MIN_BLOCK) {
        make_free(&k->a->handles, blk_at(c, k->at), gap, k->last ? k->last->size : 0);
        rg_arena_uncommit(k->a, decommit_inside(blk_at(c, k->at)));
    } else if (gap > 0) {
        RG_ASSERT(k->last != NULL); /* at BEGIN, the gap is whole free blocks */
        k->last->size += (uint32_t)gap;
    }
    b->prev_size = gap >= MIN_BLOCK ? (uint32_t)gap : k->last ? k->last->size : 0;
    k->at = off_of(b) + b->size;
    k->last = b;
}

/* The limit refused the pages of a destination: give back those the
 * moves and holes left between the destination (keep bytes from the
 * cursor) and b, the next block to move. */
static void release_behind(struct compaction *k, struct rg_hblk *b, size_t keep)
{
    struct rg_chunk *src = rg_chunk_of(b);
    size_t n;
    if (k->dst == src) {
        n = rg_chunk_decommit(src, k->at + keep, off_of(b));
    } else {
        n = rg_chunk_decommit(k->dst, k->at + keep, END);
        for (struct rg_chunk *c = k->dst->next; c != src; c = c->next)
            n += rg_chunk_decommit(c, BEGIN, END);
        n += rg_chunk_decommit(src, BEGIN, off_of(b));
    }
    rg_arena_uncommit(k->a, n);
}

static void vbits_save(struct compaction *k, const uint8_t *p, size_t n)
{
    if (!rg_vg())
        return;
    if (k->vbits == NULL)
        k->vbits = rg_os_map_aligned(VBITS_BYTES, rg_os_page_size(), 0);
    if (k->vbits != NULL)
        rg_vg_get_vbits(p, k->vbits, n);
}

/* Without scratch memory the bytes are taken as defined: no false reports. */
static void vbits_restore(struct compaction *k, uint8_t *p, size_t n)
{
    if (k->vbits != NULL)
        rg_vg_set_vbits(p, k->vbits, n);
    else
        rg_vg_defined(p, n);
}

/* Moves live block b to `to` as a block of size bytes. */
static void move_block(struct compaction *k, struct rg_hblk *b, struct rg_hblk *to, size_t size)
{
    uint32_t slot = b->slot, request = b->request;
    uint8_t *from = user_of(b), *p = user_of(to);
    vbits_save(k, from, request);
    rg_vg_block_free(from);
    memmove(p, from, usable_of(request));
    to->size = (uint32_t)size;
    to->prev_size = k->last ? k->last->size : 0;
    to->slot = slot;
    to->request = request;
    slot_at(&k->a->handles, slot)->ptr = p;
    rg_vg_block_alloc(p, request, false);
    vbits_restore(k, p, request);
}

/* Places live block b at the cursor: in place, or moved back. */
static void place(struct compaction *k, struct rg_hblk *b)
{
    size_t need = need_for(b->request);
    if (k->stuck) {
        pin(k, b);
        return;
    }
    if (k->at + need > END) /* only when dst is an earlier chunk than b's */
        advance_to(k, k->dst->next);
    struct rg_hblk *to = blk_at(k->dst, k->at);
    if (to == b) {
        b->prev_size = k->last ? k->last->size : 0;
        k->at += b->size;
        k->last = b;
        return;
    }
    /* The rest of the chunk must be a block or nothing. */
    size_t size = END - (k->at + need) < MIN_BLOCK ? END - k->at : need;
    /* The destination and the header after it must be committed; the
     * sources moved so far are, until close_dst gives them back. */
    if (!commit_blk(k->a, to, size + MIN_BLOCK)) {
        release_behind(k, b, size + MIN_BLOCK);
        if (!commit_blk(k->a, to, size + MIN_BLOCK)) {
            pin(k, b);
            return;
        }
    }
    move_block(k, b, to, size);
    k->at += size;
    k->last = to;
}

static size_t compact(regal_arena *a)
{
    struct rg_handles *h = &a->handles;
    if (h->region == NULL)
        return 0;
    size_t before = a->mapped;
    struct compaction k = {.a = a, .dst = h->region, .at = BEGIN};
    lists_clear(h); /* every free block is made again */
    for (struct rg_chunk *c = h->region; c != NULL; c = c->next) {
        for (size_t off = BEGIN; off < END;) {
            struct rg_hblk *b = blk_at(c, off);
            off += b->size; /* before b moves */
            if (b->slot != FREE_SLOT)
                place(&k, b);
        }
    }
    close_dst(&k);
    /* The chunks after the cursor's hold nothing, nor does its own if no
     * block is left. */
    struct rg_chunk *c = k.dst->next;
    if (k.at == BEGIN) {
        list_remove(h, blk_at(k.dst, BEGIN)); /* made by close_dst */
        c = k.dst;
    }
    while (c != NULL) {
        struct rg_chunk *next = c->next;
        chunk_unlink(&h->region, c);
        chunk_release(a, c);
        c = next;
    }
    if (k.vbits != NULL)
        rg_os_unmap(k.vbits, VBITS_BYTES);
    return before > a->mapped ? before - a->mapped : 0;
}

size_t regal_arena_compact(regal_arena *a)
{
    if (!arena_ok(a, "regal_arena_compact"))
        return 0;
    rg_vg_quiet_begin();
    rg_arena_lock(a);
    size_t n = compact(a);
    rg_arena_unlock(a);
    rg_vg_quiet_end();
    return n;
}

/* ---- arena hooks ---- */

void rg_handle_reset(regal_arena *a)
{
    struct rg_handles *h = &a->handles;
    forget_blocks(h);
    while (h->huge != NULL)
        huge_free(a, h->huge);
    lists_clear(h);
    for (struct rg_chunk *c = h->region; c != NULL; c = c->next)
        make_free(h, blk_at(c, BEGIN), SPAN, 0);
    h->count = 0;
    h->free_slot = 0;
    h->live = 0;
}

void rg_handle_destroy(regal_arena *a)
{
    struct rg_handles *h = &a->handles;
    forget_blocks(h);
    while (h->huge != NULL)
        huge_free(a, h->huge);
    while (h->region != NULL) {
        struct rg_chunk *c = h->region;
        chunk_unlink(&h->region, c);
        chunk_release(a, c);
    }
    for (unsigned i = 0; i < RG_HANDLE_SEGS; i++)
        if (h->table[i] != NULL)
            chunk_release(a, h->table[i]);
    memset(h, 0, sizeof *h);
}

size_t rg_handle_decommit_free(regal_arena *a)
{
    struct rg_handles *h = &a->handles;
    size_t released = 0;
    for (unsigned l = 0; l < RG_HANDLE_LISTS; l++)
        for (struct rg_hblk *b = h->lists[l]; b != NULL; b = b->next_free)
            released += decommit_inside(b);
    rg_arena_uncommit(a, released);
    return released;
}

size_t rg_handle_trim(regal_arena *a)
{
    struct rg_handles *h = &a->handles;
    size_t released = rg_handle_decommit_free(a);
    for (struct rg_chunk *c = h->region, *next; c != NULL; c = next) {
        next = c->next;
        struct rg_hblk *b = blk_at(c, BEGIN);
        if (b->slot != FREE_SLOT || b->size != SPAN)
            continue;
        list_remove(h, b);
        chunk_unlink(&h->region, c);
        released += chunk_release(a, c);
    }
    return released;
}

void rg_handle_figures(regal_arena *a, struct rg_handle_figures *f)
{
    const struct rg_handles *h = &a->handles;
    memset(f, 0, sizeof *f);
    f->live = h->live;
    f->table_slots = h->count;
    for (const struct rg_chunk *c = h->region; c != NULL; c = c->next)
        f->chunks++;
    for (unsigned l = 0; l < RG_HANDLE_LISTS; l++)
        for (const struct rg_hblk *b = h->lists[l]; b != NULL; b = b->next_free)
            f->free_bytes += b->size;
    for (const struct rg_chunk *c = h->huge; c != NULL; c = c->next) {
        f->huge++;
        f->huge_bytes += c->map_size;
    }
}

bool rg_handle_contains(const void *p)
{
    struct rg_chunk *c;
    rg_vg_quiet_begin();
    bool in = rg_owner(p, &c) != NULL && c->kind == RG_CHUNK_HANDLE;
    rg_vg_quiet_end();
    return in;
}

/* ---- check ---- */

static bool chunk_is_valid(regal_arena *a, struct rg_chunk *c, enum role role)
{
    if (!rg_chunk_header_is_valid(c, a, RG_CHUNK_HANDLE) || hc(c)->role != role)
        return rg_check_fail(c, "handle chunk %p: bad header (arena.c invariant 3)", (void *)c);
    return true;
}

/* Whether live block p (user pointer) holds slot i (invariant 4). */
static bool owns_slot(const struct rg_handles *h, const uint8_t *p, uint32_t i)
{
    return i < h->count && slot_at(h, i)->gen != 0 && slot_at(h, i)->ptr == p;
}

static bool is_listed(const struct rg_handles *h, const struct rg_hblk *b)
{
    const struct rg_hblk *l = h->lists[list_of(b->size)];
    while (l != NULL && l != b)
        l = l->next_free;
    return l != NULL;
}

static bool block_is_valid(const struct rg_handles *h, struct rg_hblk *b, size_t prev_size,
                           bool prev_free, size_t *live, size_t *nfree)
{
    struct rg_chunk *c = rg_chunk_of(b);
    size_t off = off_of(b);
    if (b->size < MIN_BLOCK || b->size % RG_ALIGN != 0 || b->size > END - off)
        return rg_check_fail(b, "handle block %p: bad size %u (invariant 1)", (void *)b, b->size);
    if (b->prev_size != prev_size)
        return rg_check_fail(b, "handle block %p: prev_size %u, not %zu (invariant 1)", (void *)b,
                             b->prev_size, prev_size);
    if (rg_chunk_uncommitted(c, off, off + MIN_BLOCK) != 0)
        return rg_check_fail(b, "handle block %p: header not committed (invariant 7)", (void *)b);
    if (b->slot != FREE_SLOT) {
        if (!owns_slot(h, user_of(b), b->slot) || need_for(b->request) > b->size)
            return rg_check_fail(b, "handle block %p: slot %u disagrees (invariant 4)", (void *)b,
                                 b->slot);
        if (rg_chunk_uncommitted(c, off, off + need_for(b->request)) != 0)
            return rg_check_fail(b, "handle block %p: not committed (invariant 7)", (void *)b);
        ++*live;
        return true;
    }
    if (prev_free)
        return rg_check_fail(b, "handle block %p: two free blocks adjacent (invariant 2)",
                             (void *)b);
    if (!is_listed(h, b))
        return rg_check_fail(b, "handle block %p: free but not listed (invariant 3)", (void *)b);
    ++*nfree;
    return true;
}

static bool region_is_valid(regal_arena *a, size_t *live, size_t *nfree, size_t *committed)
{
    const struct rg_handles *h = &a->handles;
    for (struct rg_chunk *c = h->region; c != NULL; c = c->next) {
        if (!chunk_is_valid(a, c, ROLE_REGION))
            return false;
        if ((c->next != NULL && c->next->prev != c) || (c == h->region && c->prev != NULL))
            return rg_check_fail(c, "handle chunk %p: badly linked (invariant 6)", (void *)c);
        size_t off = BEGIN, prev_size = 0;
        bool prev_free = false;
        while (off < END) {
            struct rg_hblk *b = blk_at(c, off);
            if (!block_is_valid(h, b, prev_size, prev_free, live, nfree))
                return false;
            prev_free = b->slot == FREE_SLOT;
            prev_size = b->size;
            off += b->size;
        }
        *committed += rg_chunk_committed(c);
    }
    return true;
}

static bool lists_are_valid(const struct rg_handles *h, size_t nfree)
{
    size_t listed = 0;
    for (unsigned l = 0; l < RG_HANDLE_LISTS; l++) {
        if (((h->list_map >> l) & 1) != (h->lists[l] != NULL))
            return rg_check_fail(h, "handle lists: bit %u wrong (invariant 3)", l);
        const struct rg_hblk *prev = NULL;
        for (const struct rg_hblk *b = h->lists[l]; b != NULL; prev = b, b = b->next_free) {
            if (b->prev_free != prev || b->slot != FREE_SLOT || list_of(b->size) != l ||
                ++listed > nfree)
                return rg_check_fail(b, "handle list %u broken at %p (invariant 3)", l,
                                     (const void *)b);
        }
    }
    if (listed != nfree)
        return rg_check_fail(h, "handle lists: %zu listed, %zu free blocks (invariant 3)", listed,
                             nfree);
    return true;
}

static bool slots_are_valid(const struct rg_handles *h, size_t live)
{
    size_t used = 0, unused = 0;
    for (uint32_t i = 0; i < h->count; i++)
        used += slot_at(h, i)->gen != 0;
    for (uint64_t f = h->free_slot; f != 0; f = slot_at(h, (uint32_t)f - 1)->next) {
        if (f > h->count || slot_at(h, (uint32_t)f - 1)->gen != 0 || ++unused > h->count)
            return rg_check_fail(h, "handle table: free slot list broken (invariant 5)");
    }
    if (used != live || live != h->live || used + unused != h->count)
        return rg_check_fail(h,
                             "handle table: %zu live slots, %zu blocks, %zu counted, %zu free "
                             "of %u (invariants 4, 5)",
                             used, live, h->live, unused, h->count);
    return true;
}

bool rg_handle_is_valid(regal_arena *a, size_t *committed)
{
    const struct rg_handles *h = &a->handles;
    size_t live = 0, nfree = 0;
    for (unsigned i = 0; i < RG_HANDLE_SEGS; i++) {
        if (h->table[i] == NULL)
            continue;
        if (!chunk_is_valid(a, h->table[i], ROLE_TABLE))
            return false;
        *committed += rg_chunk_committed(h->table[i]);
    }
    if (h->count > 0 && h->table[(h->count - 1) / SEG_SLOTS] == NULL)
        return rg_check_fail(h, "handle table: %u slots without their segment", h->count);
    for (struct rg_chunk *c = h->huge; c != NULL; c = c->next) {
        if (!chunk_is_valid(a, c, ROLE_HUGE))
            return false;
        if (!owns_slot(h, (uint8_t *)c + BEGIN, hc(c)->slot))
            return rg_check_fail(c, "huge handle block %p: slot %u disagrees (invariant 4)",
                                 (void *)c, hc(c)->slot);
        live++;
        *committed += c->map_size;
    }
    return region_is_valid(a, &live, &nfree, committed) && lists_are_valid(h, nfree) &&
           slots_are_valid(h, live);
}

size_t rg_handle_space(const regal_arena *a)
{
    const struct rg_handles *hs = &a->handles;
    size_t space = 0;
    for (const struct rg_chunk *c = hs->region; c != NULL; c = c->next)
        space += c->map_size;
    for (const struct rg_chunk *c = hs->huge; c != NULL; c = c->next)
        space += c->map_size;
    for (unsigned i = 0; i < RG_HANDLE_SEGS; i++)
        if (hs->table[i] != NULL)
            space += hs->table[i]->map_size;
    return space;
}
