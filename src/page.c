/*
 * Pages: spans of equal slots with an intrusive free list, served from
 * pages chunks; the size classes.
 *
 * Invariants (checked by rg_page_is_valid):
 *  1. A live span: head state HEAD, tails state TAIL pointing at it,
 *     1 <= index < chunk top, capacity * slot_size <= span bytes.
 *  2. used == popcount(live) and used + length(free) == carved <= capacity.
 *  3. Every slot on the free list is inside the span, at a slot boundary,
 *     with its live bit clear.
 *  4. A span is on its queue's full list <=> in_full, and then free == NULL
 *     and carved == capacity.  (The first avail span may be full too, until
 *     the next allocation moves it.)
 *  5. Free spans of a chunk have state FREE and are on its free_spans list;
 *     pages at or above top are free and never read.
 *
 * Everything here runs under the owning arena's lock (or single-threaded).
 */
#include "page.h"

#include <errno.h>
#include <string.h>

#include "arena.h"
#include "check.h"
#include "error.h"
#include "os.h"
#include "purge.h"

#define C(b, s) ((1u << (b)) + (s) * (1u << ((b)-2)))
#define QUAD(b) C(b, 1), C(b, 2), C(b, 3), C(b, 4)
const uint32_t rg_class_size[RG_CLASS_COUNT] = {
    16, 32, 48, 64, 80, 96, 112, 128, QUAD(7), QUAD(8), QUAD(9), QUAD(10), QUAD(11), QUAD(12),
};
#undef QUAD
#undef C

uintptr_t rg_link_key;

/* A free-list link pointed outside its span: a write after free.  The rest
 * of the list is dropped (those slots are lost, and regal_arena_check says
 * so from now on); the allocation in progress gets the slot it had. */
void rg_page_corrupt(struct rg_page *pg, const void *slot)
{
    pg->free = NULL;
    pg->carved = pg->capacity; /* never carve over lost slots */
    rg_report(REGAL_ERR_CORRUPTION, slot, NULL,
              "free slot %p of a %u-byte page was overwritten after free (free list dropped)", slot,
              pg->slot_size);
}

static struct rg_pages_chunk *pchunk(struct rg_chunk *c)
{
    return (struct rg_pages_chunk *)c;
}

static unsigned page_index(struct rg_chunk *c, const void *p)
{
    return (unsigned)(((uintptr_t)p - (uintptr_t)c) >> RG_PAGE_SHIFT);
}

static uint8_t *page_addr(struct rg_chunk *c, unsigned i)
{
    return (uint8_t *)c + ((size_t)i << RG_PAGE_SHIFT);
}

void rg_pages_chunk_init(struct rg_chunk *c)
{
    pchunk(c)->top = RG_DATA_PAGE0;
    pchunk(c)->spans_live = 0;
    pchunk(c)->free_spans = NULL;
}

void rg_pages_chunk_reset(struct rg_chunk *c)
{
    rg_pages_chunk_init(c);
}

/* ---- spans ---- */

static void list_push(struct rg_page **head, struct rg_page *pg)
{
    pg->prev = NULL;
    pg->next = *head;
    if (*head)
        (*head)->prev = pg;
    *head = pg;
}

static void list_remove(struct rg_page **head, struct rg_page *pg)
{
    if (pg->prev)
        pg->prev->next = pg->next;
    else
        *head = pg->next;
    if (pg->next)
        pg->next->prev = pg->prev;
    pg->next = pg->prev = NULL;
}

static void span_mark(struct rg_chunk *c, unsigned first, unsigned n, enum rg_page_state state)
{
    struct rg_page *head = rg_page_desc(c, first);
    head->state = (uint8_t)state;
    head->span = (uint8_t)n;
    for (unsigned i = 1; i < n; i++) {
        struct rg_page *t = rg_page_desc(c, first + i);
        t->state = state == RG_PAGE_HEAD ? RG_PAGE_TAIL : RG_PAGE_FREE;
        t->head = (uint8_t)first;
    }
}

/* Takes n pages from c's free spans (first fit, splitting) or its top. */
static struct rg_page *span_take(struct regal_arena *a, struct rg_chunk *c, unsigned n)
{
    struct rg_pages_chunk *pc = pchunk(c);
    unsigned first = 0;
    struct rg_page *fs = pc->free_spans;
    while (fs != NULL && fs->span < n)
        fs = fs->next;
    if (fs != NULL)
        first = (unsigned)(fs - rg_page_desc(c, 0));
    else if (pc->top + n <= RG_PAGES_PER_CHUNK)
        first = pc->top;
    else
        return NULL;
    if (!rg_arena_commit(a, c, (size_t)first << RG_PAGE_SHIFT,
                         (size_t)(first + n) << RG_PAGE_SHIFT))
        return NULL;
    if (fs != NULL) {
        unsigned rest = fs->span - n;
        list_remove(&pc->free_spans, fs);
        if (rest > 0) {
            span_mark(c, first + n, rest, RG_PAGE_FREE);
            list_push(&pc->free_spans, rg_page_desc(c, first + n));
        }
    } else {
        pc->top += n;
    }
    pc->spans_live++;
    span_mark(c, first, n, RG_PAGE_HEAD);
    return rg_page_desc(c, first);
}

/* The span's pages stay committed, dirty, until the purge policy or a trim
 * gives them back (purge.c); a span release is one of its slow paths. */
static void span_give_back(struct rg_chunk *c, struct rg_page *pg)
{
    unsigned first = (unsigned)(pg - rg_page_desc(c, 0));
    span_mark(c, first, pg->span, RG_PAGE_FREE);
    list_push(&pchunk(c)->free_spans, pg);
    pchunk(c)->spans_live--;
    rg_arena_dirty_add(c->arena,
                       rg_chunk_committed_in(c, (size_t)first << RG_PAGE_SHIFT,
                                             (size_t)(first + pg->span) << RG_PAGE_SHIFT));
    rg_purge_maybe(c->arena);
}

static struct rg_page *span_alloc(struct regal_arena *a, unsigned n)
{
    for (struct rg_chunk *c = a->pages; c != NULL; c = c->next) {
        struct rg_page *pg = span_take(a, c, n);
        if (pg != NULL)
            return pg;
    }
    struct rg_chunk *c = rg_arena_add_chunk(a, RG_CHUNK_PAGES);
    return c == NULL ? NULL : span_take(a, c, n);
}

/* ---- queues ---- */

void rg_pageq_init(struct rg_pageq *q, uint32_t slot_size, enum rg_page_kind kind)
{
    memset(q, 0, sizeof *q);
    q->slot_size = slot_size;
    q->kind = (uint8_t)kind;
    /* Enough pages for 8 slots, within a chunk's data pages. */
    size_t pages = (8 * (size_t)slot_size + RG_PAGE_SIZE - 1) / RG_PAGE_SIZE;
    if (pages > RG_PAGES_PER_CHUNK - RG_DATA_PAGE0)
        pages = RG_PAGES_PER_CHUNK - RG_DATA_PAGE0;
    q->span_pages = (uint8_t)pages;
}

static void page_init(struct rg_pageq *q, struct rg_page *pg, struct rg_chunk *c)
{
    unsigned first = (unsigned)(pg - rg_page_desc(c, 0));
    size_t bytes = (size_t)pg->span << RG_PAGE_SHIFT;
    size_t slots = bytes / q->slot_size;
    pg->free = NULL;
    pg->start = page_addr(c, first);
    pg->slot_size = q->slot_size;
    pg->recip = UINT64_MAX / q->slot_size + 1;
    pg->capacity = (uint32_t)(slots < RG_PAGE_MAX_SLOTS ? slots : RG_PAGE_MAX_SLOTS);
    pg->bytes = pg->capacity * q->slot_size;
    pg->carved = 0;
    pg->used = 0;
    pg->queue = q;
    pg->kind = q->kind;
    pg->in_full = 0;
    memset(pg->live, 0, (pg->capacity + 63) / 64 * sizeof(uint64_t));
}

/* Carves up to one OS page worth of never-used slots onto the free list, so
 * memory is touched as it is handed out. */
static void page_carve(struct rg_page *pg)
{
    size_t n = rg_os_page_size() / pg->slot_size;
    if (n == 0)
        n = 1;
    if (n > pg->capacity - pg->carved)
        n = pg->capacity - pg->carved;
    uint8_t *p = pg->start + (size_t)pg->carved * pg->slot_size;
    void *head = pg->free;
    for (size_t i = n; i-- > 0;) {
        void *slot = p + i * pg->slot_size;
        rg_link_set(slot, head);
        head = slot;
    }
    pg->free = head;
    pg->carved += (uint32_t)n;
}

static void to_full(struct rg_pageq *q, struct rg_page *pg)
{
    list_remove(&q->avail, pg);
    list_push(&q->full, pg);
    pg->in_full = 1;
}

void *rg_page_alloc_slow(struct regal_arena *a, struct rg_pageq *q)
{
    struct rg_page *pg;
    while ((pg = q->avail) != NULL && pg->free == NULL) {
        if (pg->carved < pg->capacity) {
            page_carve(pg);
            break;
        }
        to_full(q, pg);
    }
    if (pg == NULL) {
        pg = span_alloc(a, q->span_pages);
        if (pg == NULL) {
            errno = ENOMEM;
            return NULL;
        }
        page_init(q, pg, rg_chunk_of(pg));
        page_carve(pg);
        list_push(&q->avail, pg);
    }
    return rg_page_alloc(a, q);
}

struct rg_page *rg_page_of(struct rg_chunk *c, const void *p)
{
    unsigned i = page_index(c, p);
    if (i < RG_DATA_PAGE0 || i >= pchunk(c)->top)
        return NULL;
    struct rg_page *pg = rg_page_desc(c, i);
    if (pg->state == RG_PAGE_TAIL)
        pg = rg_page_desc(c, pg->head);
    if (pg->state != RG_PAGE_HEAD)
        return NULL;
    if ((const uint8_t *)p >= pg->start + (size_t)pg->capacity * pg->slot_size)
        return NULL;
    return pg;
}

enum rg_slot_status rg_slot_status(const struct rg_page *pg, const void *p)
{
    uint32_t i = rg_slot_index(pg, p);
    if (pg->start + (size_t)i * pg->slot_size != (const uint8_t *)p)
        return RG_SLOT_INTERIOR;
    return rg_bit_test(pg->live, i) ? RG_SLOT_LIVE : RG_SLOT_FREE;
}

void rg_page_free_slow(struct rg_page *pg)
{
    struct rg_pageq *q = pg->queue;
    if (pg->in_full) {
        list_remove(&q->full, pg);
        list_push(&q->avail, pg);
        pg->in_full = 0;
    } else if (pg->used == 0 && (q->avail != pg || pg->next != NULL)) {
        /* Empty and not the queue's last span: back to the chunk. */
        list_remove(&q->avail, pg);
        span_give_back(rg_chunk_of(pg), pg);
    }
}

void rg_page_free(struct regal_arena *a, struct rg_page *pg, void *p)
{
    (void)a;
    rg_page_push(pg, p, rg_slot_index(pg, p));
}

static void release_list(struct rg_page *pg)
{
    while (pg != NULL) {
        struct rg_page *next = pg->next;
        span_give_back(rg_chunk_of(pg), pg);
        pg = next;
    }
}

void rg_pageq_release(struct regal_arena *a, struct rg_pageq *q)
{
    (void)a;
    release_list(q->avail);
    release_list(q->full);
    q->avail = q->full = NULL;
}

void rg_pageq_trim(struct rg_pageq *q)
{
    struct rg_page *next;
    for (struct rg_page *pg = q->avail; pg != NULL; pg = next) {
        next = pg->next;
        if (pg->used == 0) {
            list_remove(&q->avail, pg);
            span_give_back(rg_chunk_of(pg), pg);
        }
    }
}

size_t rg_pages_chunk_trim(struct regal_arena *a, struct rg_chunk *c)
{
    size_t released = 0;
    for (struct rg_page *fs = pchunk(c)->free_spans; fs != NULL; fs = fs->next) {
        size_t first = (size_t)(fs - rg_page_desc(c, 0));
        released +=
            rg_chunk_decommit(c, first << RG_PAGE_SHIFT, (first + fs->span) << RG_PAGE_SHIFT);
    }
    /* Pages at or above top have not been used since the last reset. */
    released += rg_chunk_decommit(c, (size_t)pchunk(c)->top << RG_PAGE_SHIFT, RG_CHUNK_SIZE);
    rg_arena_purged(a, released);
    return released;
}

size_t rg_pages_chunk_dirty(struct rg_chunk *c)
{
    size_t dirty = 0;
    for (struct rg_page *fs = pchunk(c)->free_spans; fs != NULL; fs = fs->next) {
        size_t first = (size_t)(fs - rg_page_desc(c, 0));
        dirty +=
            rg_chunk_committed_in(c, first << RG_PAGE_SHIFT, (first + fs->span) << RG_PAGE_SHIFT);
    }
    return dirty + rg_chunk_committed_in(c, (size_t)pchunk(c)->top << RG_PAGE_SHIFT, RG_CHUNK_SIZE);
}

bool rg_page_is_valid(struct rg_chunk *c, struct rg_page *pg)
{
    unsigned first = (unsigned)(pg - rg_page_desc(c, 0));
    if (pg->state != RG_PAGE_HEAD || first < RG_DATA_PAGE0 || first + pg->span > pchunk(c)->top)
        return rg_check_fail(pg, "page %u: bad span head (invariant 1)", first);
    for (unsigned i = 1; i < pg->span; i++) {
        struct rg_page *t = rg_page_desc(c, first + i);
        if (t->state != RG_PAGE_TAIL || t->head != first)
            return rg_check_fail(pg, "page %u: bad tail %u (invariant 1)", first, first + i);
    }
    if ((size_t)pg->capacity * pg->slot_size > ((size_t)pg->span << RG_PAGE_SHIFT))
        return rg_check_fail(pg, "page %u: capacity beyond span (invariant 1)", first);
    uint32_t live = 0;
    for (uint32_t w = 0; w < (pg->capacity + 63) / 64; w++)
        live += (uint32_t)__builtin_popcountll(pg->live[w]);
    if (live != pg->used)
        return rg_check_fail(pg, "page %u: used %u but %u live bits (invariant 2)", first, pg->used,
                             live);
    uint32_t nfree = 0;
    for (void *f = pg->free; f != NULL; f = rg_link_get(f)) {
        if ((uint8_t *)f < pg->start || rg_page_of(c, f) != pg ||
            rg_slot_status(pg, f) != RG_SLOT_FREE)
            return rg_check_fail(f, "page %u: bad free slot (invariant 3)", first);
        if (++nfree > pg->carved)
            return rg_check_fail(pg, "page %u: free list too long (invariant 2)", first);
    }
    if (nfree + pg->used != pg->carved || pg->carved > pg->capacity)
        return rg_check_fail(pg, "page %u: %u free + %u used != %u carved (invariant 2)", first,
                             nfree, pg->used, pg->carved);
    bool full = pg->free == NULL && pg->carved == pg->capacity;
    if (pg->in_full && !full)
        return rg_check_fail(pg, "page %u: full list mismatch (invariant 4)", first);
    return true;
}

static void span_visit(const struct rg_page *pg, rg_visit_fn fn, void *ctx)
{
    for (uint32_t i = 0; i < pg->capacity; i++)
        if (rg_bit_test(pg->live, i))
            fn(pg->start + (size_t)i * pg->slot_size, pg->slot_size, ctx);
}

void rg_pageq_visit(const struct rg_pageq *q, rg_visit_fn fn, void *ctx)
{
    for (const struct rg_page *pg = q->avail; pg != NULL; pg = pg->next)
        span_visit(pg, fn, ctx);
    for (const struct rg_page *pg = q->full; pg != NULL; pg = pg->next)
        span_visit(pg, fn, ctx);
}

void rg_pages_chunk_visit(struct rg_chunk *c, rg_visit_fn fn, void *ctx)
{
    for (unsigned i = RG_DATA_PAGE0; i < pchunk(c)->top; i++) {
        const struct rg_page *pg = rg_page_desc(c, i);
        if (pg->state == RG_PAGE_HEAD && pg->kind != RG_PAGE_META)
            span_visit(pg, fn, ctx);
    }
}
