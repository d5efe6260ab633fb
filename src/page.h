/*
 * Pages of equal slots, and the size classes that map request sizes to them.
 *
 * A RG_CHUNK_PAGES chunk is page 0 (the chunk header, the arena of a home
 * chunk, the page descriptors) followed by 63 data pages of RG_PAGE_SIZE.
 * A span is one or more consecutive data pages holding slots of one size;
 * its first page's descriptor (the head) describes it, the others are tails
 * that point back to it.
 */
#ifndef RG_PAGE_H
#define RG_PAGE_H

#include "chunk.h"

__extension__ typedef unsigned __int128 rg_u128;

/* Size classes: 16-byte steps up to 128, four classes per power of two up
 * to 1 KiB, then eight up to RG_SMALL_MAX, each power of two from 1 KiB
 * also followed by a class 16 bytes above it.  Worst internal waste: under
 * 25% above 64 bytes (a request just above a class boundary b gets b + b/4
 * or b + b/8 ...), under 12.5% above 1 KiB, and under 16 bytes below 64
 * (the alignment quantum).  The classes 2^k + 16 are there because a power
 * of two plus a small length prefix is a common request: sqlite's 1032 and
 * 4104 bytes (its 8-byte size prefix) by the ten thousand; 1032 bytes in
 * 1088-byte slots cost sqlite 5% of its peak RSS. */
#define RG_CLASS_COUNT 47
#define RG_SMALL_MAX   8192

/* Slots per span are capped so that the live-slot bitmap stays 128 bytes
 * and a page descriptor 256: the descriptors of a pages chunk fill four OS
 * pages, not ten, which every chunk with a live span keeps resident, and a
 * page's descriptor is found with a shift (no multiply).  A span of a class below 64 bytes uses
 * only the start of its page (16-byte slots: 16 KiB of 64); the rest is never touched. */
#define RG_PAGE_MAX_SLOTS 1024
#define RG_DATA_PAGE0     1 /* page 0 of a pages chunk is metadata */

enum rg_page_state { RG_PAGE_FREE = 0, RG_PAGE_HEAD, RG_PAGE_TAIL };
enum rg_page_kind { RG_PAGE_CLASS = 0, RG_PAGE_POOL, RG_PAGE_META };

struct rg_pageq;
struct rg_theap;

struct rg_page {
    void *free;           /* free slots, linked through their first word */
    uint8_t *start;       /* first slot of the span */
    uint64_t recip;       /* ceil(2^64 / slot_size): slot index by a multiply */
    uint64_t bytes;       /* capacity * slot_size (64 bits: compared with an offset as is) */
    uint32_t slot_size;   /* bytes per slot, a multiple of the pool alignment */
    uint32_t capacity;    /* slots in the span */
    uint32_t carved;      /* slots [0, carved) have been handed out or put on the free list */
    uint32_t shed;        /* free slots off the free list, their pages given back by a trim */
    uint32_t used;        /* live slots == popcount(live); not next to carved: no vector add */
    struct rg_page *next; /* in the queue's avail or full list, or a free span list */
    struct rg_page *prev;
    struct rg_pageq *queue;                /* the queue that owns the span */
    struct rg_theap *owner;                /* queue->owner (atomic: read by other threads) */
    void *xfree;                           /* slots freed by other threads (atomic list) */
    uint8_t state;                         /* enum rg_page_state */
    uint8_t kind;                          /* enum rg_page_kind */
    uint8_t span;                          /* pages in the span (heads and free spans) */
    uint8_t head;                          /* tails: index of the head page */
    uint8_t in_full;                       /* on the queue's full list */
    uint64_t live[RG_PAGE_MAX_SLOTS / 64]; /* bit i set <=> slot i is allocated */
    struct rg_page *rnext;                 /* free class spans to revive (page.c) */
    struct rg_page *rprev;
    uint8_t revivable;     /* on its class's revive list */
    uint8_t pad_to_256[7]; /* a power of two: an index is a shift */
};

#define RG_PAGE_DESC_SHIFT 8
static_assert(sizeof(struct rg_page) == (size_t)1 << RG_PAGE_DESC_SHIFT, "descriptor size");

/* The pages of one slot size: a size class of an arena, a pool, or the
 * arena's internal objects. */
struct rg_pageq {
    struct rg_page *avail;      /* spans with free or uncarved slots; the first one serves */
    struct rg_page *full;       /* spans with every slot live */
    struct rg_page *avail_tail; /* last span of avail */
    struct rg_theap *owner;     /* class queues: the thread heap (theap.h); else NULL */
    uint32_t slot_size;
    uint8_t kind;       /* enum rg_page_kind of its spans */
    uint8_t span_pages; /* pages per span */
    uint8_t remote;     /* atomic: a full span got slots in its xfree list */
};

/* Header of a pages chunk. */
struct rg_pages_chunk {
    struct rg_chunk base;
    uint32_t top;               /* first data page never handed out since reset */
    uint32_t spans_live;        /* spans handed out and not returned */
    struct rg_page *free_spans; /* returned spans, first-fit */
};

#define RG_DESC_OFFSET ((size_t)16384) /* descriptors after the header and home arena */

RG_INLINE struct rg_page *rg_page_desc(struct rg_chunk *c, unsigned i)
{
    return (struct rg_page *)((uint8_t *)c + RG_DESC_OFFSET) + i;
}

/* The descriptor of the page of chunk c that holds p (p inside the chunk,
 * or one past its end, which gives page 0, never a span's): bits of p
 * itself, since chunks are aligned, taken as the descriptor's byte offset
 * in one shift and one mask (an index scaled back up costs the free fast
 * path two instructions more). */
RG_INLINE struct rg_page *rg_page_desc_of(struct rg_chunk *c, const void *p)
{
    uintptr_t off = ((uintptr_t)p >> (RG_PAGE_SHIFT - RG_PAGE_DESC_SHIFT)) &
                    ((RG_PAGES_PER_CHUNK - 1) << RG_PAGE_DESC_SHIFT);
    return (struct rg_page *)((uint8_t *)c + RG_DESC_OFFSET + off);
}

/* Bytes of page 0 that metadata uses. */
#define RG_PAGES_META (RG_DESC_OFFSET + RG_PAGES_PER_CHUNK * sizeof(struct rg_page))
static_assert(RG_PAGES_META <= RG_PAGE_SIZE, "page descriptors fit in page 0");
static_assert(RG_PAGE_MAX_SLOTS * 16 >= 4096, "a span of the smallest class fills an OS page");

/* ---- size classes ---- */

extern const uint32_t rg_class_size[RG_CLASS_COUNT];

/* The class of a request of size bytes (size <= RG_SMALL_MAX). */
RG_INLINE unsigned rg_size_class(size_t size)
{
    if (size <= 128)
        return size == 0 ? 0 : (unsigned)((size - 1) >> 4);
    unsigned b = rg_log2(size - 1); /* size - 1 in [2^b, 2^(b+1)) */
    if (b < 10)
        return 8 + (b - 7) * 4 + (unsigned)(((size - 1) >> (b - 2)) & 3);
    unsigned base = 20 + (b - 10) * 9;
    if (size <= ((size_t)1 << b) + 16)
        return base;
    return base + 1 + (unsigned)(((size - 1) >> (b - 3)) & 7);
}

/* The same from a table, for the fast path (filled by rg_classes_init at
 * process start). */
extern uint8_t rg_class_of[RG_SMALL_MAX / 16 + 1];
void rg_classes_init(void);

RG_INLINE unsigned rg_size_class_small(size_t size)
{
    return rg_class_of[(size + 15) >> 4];
}

/* The smallest class for size (<= RG_SMALL_MAX) whose slots are all
 * aligned to align, a power of two (spans start on a page boundary), if
 * any; else -1. */
RG_INLINE int rg_aligned_class(size_t size, size_t align)
{
    for (unsigned c = rg_size_class_small(size); c < RG_CLASS_COUNT; c++)
        if ((rg_class_size[c] & (align - 1)) == 0)
            return (int)c;
    return -1;
}

/* ---- slots ---- */

RG_INLINE uint32_t rg_slot_index(const struct rg_page *pg, const void *p)
{
    return (uint32_t)(((rg_u128)((uintptr_t)p - (uintptr_t)pg->start) * pg->recip) >> 64);
}

/* Whether off, bytes from the start of pg's span (below 2^22, the span's
 * bytes), is a slot boundary; *slot the slot's index.  With d the slot size
 * and recip = ceil(2^64 / d) = (2^64 + e) / d (0 <= e < d), off = s*d + r
 * gives off * recip = s * 2^64 + s*e + r * recip: the high word is s and the
 * low one s*e + r*recip, below recip when r == 0 (s*e < 2^22 < recip) and
 * at least recip, without wrapping, when r > 0 ((s+1)*e < 2^23 and
 * (d-1)*recip = 2^64 - recip + e), as d < 2^21 (the largest pool slot).
 * One multiply and one compare; tests/test_page.c checks it. */
RG_INLINE bool rg_slot_at(const struct rg_page *pg, size_t off, uint32_t *slot)
{
    rg_u128 m = (rg_u128)off * pg->recip;
    *slot = (uint32_t)(m >> 64);
    return (uint64_t)m < pg->recip;
}

/* Live bits are written only by the span's owner but tested by any thread
 * that frees a slot of it: relaxed atomic loads and stores (plain moves on
 * x86), never read-modify-write. */
RG_INLINE void rg_bit_set(uint64_t *bits, uint32_t i)
{
    uint64_t w = __atomic_load_n(&bits[i / 64], __ATOMIC_RELAXED);
    __atomic_store_n(&bits[i / 64], w | 1ull << (i % 64), __ATOMIC_RELAXED);
}

RG_INLINE void rg_bit_clear(uint64_t *bits, uint32_t i)
{
    uint64_t w = __atomic_load_n(&bits[i / 64], __ATOMIC_RELAXED);
    __atomic_store_n(&bits[i / 64], w & ~(1ull << (i % 64)), __ATOMIC_RELAXED);
}

RG_INLINE bool rg_bit_test(const uint64_t *bits, uint32_t i)
{
    return (__atomic_load_n(&bits[i / 64], __ATOMIC_RELAXED) >> (i % 64)) & 1;
}

/* Clears bit i if it is set (a free's live-bit test and clear in one, a
 * btr); false, and nothing changed, if it was clear. */
RG_INLINE bool rg_bit_take(uint64_t *bits, uint32_t i)
{
    uint64_t w = __atomic_load_n(&bits[i / 64], __ATOMIC_RELAXED);
    bool was;
#if defined(__x86_64__)
    /* Compilers test and clear a bit with two instructions or more. */
    __asm__("btr %2, %0" : "+r"(w), "=@ccc"(was) : "r"((uint64_t)i));
#else
    uint64_t m = 1ull << (i % 64);
    was = (w & m) != 0;
    w &= ~m;
#endif
    if (RG_CHECKS && RG_UNLIKELY(!was))
        return false;
    __atomic_store_n(&bits[i / 64], w, __ATOMIC_RELAXED);
    return true;
}

/* The free-list link in a free slot, stored as next ^ slot ^ a per-process
 * secret: a use-after-free write cannot plant an address without knowing
 * the secret, and rg_page_pop also checks that the link stays inside its
 * span, so no overwrite makes an allocation return an arbitrary address.
 * Pool slots may be as little as 4-byte aligned, so links are copied, not
 * dereferenced (one mov on x86). */
extern __attribute__((visibility("hidden"))) uintptr_t rg_link_key;

RG_INLINE void *rg_link_get(const void *slot)
{
    uintptr_t v;
    __builtin_memcpy(&v, slot, sizeof v);
    return RG_CHECKS ? (void *)(v ^ rg_link_key ^ (uintptr_t)slot) : (void *)v;
}

RG_INLINE void rg_link_set(void *slot, void *next)
{
    uintptr_t v = RG_CHECKS ? (uintptr_t)next ^ rg_link_key ^ (uintptr_t)slot : (uintptr_t)next;
    __builtin_memcpy(slot, &v, sizeof v);
}

void rg_page_corrupt(struct rg_page *pg, const void *slot);

/* Whether a free-list link read from a slot of pg stays inside its span. */
RG_INLINE bool rg_link_ok(const struct rg_page *pg, const void *next)
{
    return !RG_CHECKS || (uintptr_t)next - (uintptr_t)pg->start < pg->bytes || next == NULL;
}

/* Hands out p, the first free slot of pg, whose link is next. */
RG_INLINE void *rg_page_take(struct rg_page *pg, void *p, void *next)
{
    pg->free = next;
    pg->used++;
    rg_bit_set(pg->live, rg_slot_index(pg, p));
    return p;
}

/* Whether pg (NULL: none) is the only span of its queue (no freed slot
 * elsewhere to use first) and has a never-used slot. */
RG_INLINE bool rg_page_can_bump(const struct rg_page *pg)
{
    return pg != NULL && pg->next == NULL && pg->carved < pg->capacity;
}

/* The next never-used slot of pg (rg_page_can_bump), live now.  Fresh
 * slots go out one by one, touching memory as they do, with no free-list
 * link written and read back. */
RG_INLINE void *rg_page_bump(struct rg_page *pg)
{
    uint32_t s = pg->carved++;
    pg->used++;
    rg_bit_set(pg->live, s);
    return pg->start + (size_t)s * pg->slot_size;
}

/* Takes the first free slot of pg (pg->free != NULL). */
RG_INLINE void *rg_page_pop(struct rg_page *pg)
{
    void *p = pg->free;
    void *next = rg_link_get(p);
    if (RG_UNLIKELY(!rg_link_ok(pg, next))) {
        rg_page_corrupt(pg, p); /* drops the list */
        next = NULL;
    }
    return rg_page_take(pg, p, next);
}

struct regal_arena;

void *rg_page_alloc_slow(struct regal_arena *a, struct rg_pageq *q);

/* A slot of q; NULL (errno ENOMEM) when no memory or the limit is reached. */
RG_INLINE void *rg_page_alloc(struct regal_arena *a, struct rg_pageq *q)
{
    struct rg_page *pg = q->avail;
    if (RG_LIKELY(pg != NULL && pg->free != NULL))
        return rg_page_pop(pg);
    return rg_page_alloc_slow(a, q);
}

/* The span head of a pointer into a pages chunk, or NULL if the address is
 * not inside a live span's slot area. */
struct rg_page *rg_page_of(struct rg_chunk *c, const void *p);

/* What a pointer into a live span is: a live slot, a freed one, or no
 * block (inside a slot, or a slot never handed out). */
enum rg_slot_status { RG_SLOT_LIVE, RG_SLOT_FREE, RG_SLOT_INTERIOR };
enum rg_slot_status rg_slot_status(const struct rg_page *pg, const void *p);

/* Frees live slot p of pg (checked with rg_slot_status first). */
void rg_page_free(struct regal_arena *a, struct rg_page *pg, void *p);
/* The span leaves the full list, or gives itself back when empty. */
void rg_page_free_slow(struct rg_page *pg);

/* Puts slot p of pg, whose live bit was just cleared, back on its free
 * list (owner only). */
RG_INLINE void rg_page_push_cleared(struct rg_page *pg, void *p)
{
    rg_link_set(p, pg->free);
    pg->free = p;
    uint32_t used = pg->used - 1;
    pg->used = used;
    if (RG_UNLIKELY(used == 0 || pg->in_full))
        rg_page_free_slow(pg);
}

/* Puts live slot s (at p) of pg back on its free list (owner only). */
RG_INLINE void rg_page_push(struct rg_page *pg, void *p, uint32_t s)
{
    rg_bit_clear(pg->live, s);
    rg_page_push_cleared(pg, p);
}

/* Whether pg is a span head of kind: state and kind read as one 16-bit
 * word (one compare). */
RG_INLINE bool rg_page_is_head(const struct rg_page *pg, enum rg_page_kind kind)
{
    static_assert(offsetof(struct rg_page, kind) == offsetof(struct rg_page, state) + 1,
                  "state and kind adjacent");
    const uint8_t want[2] = {RG_PAGE_HEAD, (uint8_t)kind};
    uint16_t w, got;
    __builtin_memcpy(&w, want, sizeof w);
    __builtin_memcpy(&got, &pg->state, sizeof got);
    return got == w;
}

/* The span of p if p is a slot boundary of a span of kind whose head page
 * holds it (*slot its index), live or not; otherwise NULL (the caller
 * takes the slow path, which tells what p is).  Reads only: any thread
 * may call it. */
RG_INLINE struct rg_page *rg_page_slot_at(struct rg_chunk *c, void *p, enum rg_page_kind kind,
                                          uint32_t *slot)
{
    /* Pages at or above the chunk's top say FREE (page.c invariant 5) and
     * page 0 is never a HEAD: no comparison with top. */
    struct rg_page *pg = rg_page_desc_of(c, p);
    if (RG_UNLIKELY(!rg_page_is_head(pg, kind)))
        return NULL;
    /* p is inside the head page, maybe past the span's last slot (the
     * bitmap has bits for capacity slots only). */
    uint32_t s;
    bool boundary = rg_slot_at(pg, (uintptr_t)p - (uintptr_t)pg->start, &s);
    if (RG_CHECKS && RG_UNLIKELY(s >= pg->capacity || !boundary))
        return NULL;
    *slot = s;
    return pg;
}

/* The same for a live slot only. */
RG_INLINE struct rg_page *rg_page_slot(struct rg_chunk *c, void *p, enum rg_page_kind kind,
                                       uint32_t *slot)
{
    struct rg_page *pg = rg_page_slot_at(c, p, kind, slot);
    if (RG_CHECKS && pg != NULL && RG_UNLIKELY(!rg_bit_test(pg->live, *slot)))
        return NULL;
    return pg;
}

/* Frees live slot p of a span owned by another thread: onto the span's
 * xfree list, which the owner collects when it runs short (no lock). */
RG_INLINE void rg_page_free_remote(struct rg_page *pg, void *p)
{
    void *old = __atomic_load_n(&pg->xfree, __ATOMIC_RELAXED);
    do
        rg_link_set(p, old);
    while (!__atomic_compare_exchange_n(&pg->xfree, &old, p, true, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED));
    /* The first remote free of a full span tells its queue, which does not
     * look at full spans otherwise; to_full pairs with this. */
    if (old == NULL && __atomic_load_n(&pg->in_full, __ATOMIC_SEQ_CST)) {
        struct rg_pageq *q = __atomic_load_n(&pg->queue, __ATOMIC_RELAXED);
        __atomic_store_n(&q->remote, 1, __ATOMIC_RELAXED);
    }
}
/* Moves the slots of pg's xfree list to its free list (owner only); the
 * number of slots collected. */
uint32_t rg_page_collect(struct rg_page *pg);
/* rg_page_collect for a span of a queue the caller owns, keeping the queue
 * in order (a full span with free slots goes back to avail). */
void rg_page_absorb(struct rg_page *pg);

void rg_pageq_init(struct rg_pageq *q, uint32_t slot_size, enum rg_page_kind kind);
/* Calls fn for every live slot of q's spans, or of c's class and pool
 * spans. */
void rg_pageq_visit(const struct rg_pageq *q, rg_visit_fn fn, void *ctx);
void rg_pages_chunk_visit(struct rg_chunk *c, rg_visit_fn fn, void *ctx);
/* Hands every span of q to queue to (lock held); empty ones to their chunk. */
void rg_pageq_abandon(struct rg_pageq *q, struct rg_pageq *to);
/* Returns every span of q to its chunk. */
void rg_pageq_release(struct regal_arena *a, struct rg_pageq *q);
/* Returns q's spans that hold no live slot to their chunks, the one a queue
 * keeps for its next allocation included, after collecting other threads'
 * frees, and gives back the OS pages of its other spans that hold no live
 * slot (regal_arena_trim; the caller owns q and holds the lock); bytes
 * given back from spans in use. */
size_t rg_pageq_trim(struct rg_pageq *q);

/* Forget every span of a pages chunk (arena reset): O(1). */
void rg_pages_chunk_reset(struct rg_chunk *c);
void rg_pages_chunk_init(struct rg_chunk *c);
/* Gives the free spans of c and its pages above top back to the OS; bytes
 * released. */
size_t rg_pages_chunk_trim(struct regal_arena *a, struct rg_chunk *c);
/* Committed bytes of c's free spans and pages above top (dirty memory). */
size_t rg_pages_chunk_dirty(struct rg_chunk *c);
/* Checks the invariants of a live span, its slots too if contents; false
 * (and a report) on the first violation.  held: freed slots of the span
 * that its pool's hot stack holds (rg_pool_held), still counted in used. */
bool rg_page_is_valid(struct rg_chunk *c, struct rg_page *pg, bool contents, uint32_t held);
/* Checks invariant 7 for the free spans of c, counting in *flagged those
 * that say they are revivable; then that the arena's revive lists hold
 * them all and no other. */
bool rg_revive_is_valid(struct rg_chunk *c, size_t *flagged);
bool rg_revive_lists_are_valid(struct regal_arena *a, size_t flagged);

#endif
