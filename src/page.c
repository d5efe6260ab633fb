/*
 * Pages: spans of equal slots with an intrusive free list, served from
 * pages chunks; the size classes.
 *
 * Invariants (checked by rg_page_is_valid):
 *  1. A live span: head state HEAD, tails state TAIL pointing at it,
 *     1 <= index < chunk top, capacity * slot_size <= span bytes.
 *  2. used == popcount(live) + held and used + length(free) + shed ==
 *     carved <= capacity (shed: free slots a trim took off the list,
 *     span_shed; held: freed slots of a pool span in its pool's hot
 *     stack, pool.h).
 *  3. Every slot on the free list is inside the span, at a slot boundary,
 *     with its live bit clear.
 *  4. A span is on its queue's full list <=> in_full, and then free == NULL,
 *     shed == 0 and carved == capacity.  (The first avail span may be full too, until
 *     the next allocation moves it.)  avail_tail is the last avail span.
 *  5. Free spans of a chunk have state FREE and are on its free_spans list;
 *     pages at or above top are free, their descriptors state FREE (a
 *     fresh chunk reads as zero; a reset clears those below the old top).
 *  6. A span's owner is its queue's owner; slots on its xfree list are
 *     still live (their bits set) until the owner collects them.
 *  7. A free span is on its class's revive list (arena->revive) <=> its
 *     revivable flag is set; it was a class span when given back, none of
 *     its pages has been decommitted since, and its descriptor is as its
 *     last owner left it (no live slot, invariant 2's free list), so that
 *     the class takes it again as it is (span_revive).  Free spans never
 *     merge, so a page that headed a span of n pages heads one of n pages
 *     whenever it heads a free span again, until a reset.
 *
 * Chunks and their free spans belong to the arena and change under its
 * lock.  A queue and its spans belong to the queue's owner: a thread heap
 * changes them with no lock (theap.h), the arena's own queues, pools and
 * meta change under the lock.  Any thread may push onto a span's xfree.
 */
#include "page.h"

#include <errno.h>
#include <string.h>

#include "arena.h"
#include "check.h"
#include "error.h"
#include "os.h"
#include "purge.h"

#define C(b, s, n) ((1u << (b)) + (s) * (1u << (b)) / (n))
#define QUAD(b)    C(b, 1, 4), C(b, 2, 4), C(b, 3, 4), C(b, 4, 4)
#define OCT(b)                                                                                     \
    C(b, 1, 8), C(b, 2, 8), C(b, 3, 8), C(b, 4, 8), C(b, 5, 8), C(b, 6, 8), C(b, 7, 8), C(b, 8, 8)
const uint32_t rg_class_size[RG_CLASS_COUNT] = {
    16,      32,      48,   64,      80,   96,      112,  128,     QUAD(7),
    QUAD(8), QUAD(9), 1040, OCT(10), 2064, OCT(11), 4112, OCT(12),
};
#undef OCT
#undef QUAD
#undef C

uint8_t rg_class_of[RG_SMALL_MAX / 16 + 1];

void rg_classes_init(void)
{
    for (size_t i = 0; i <= RG_SMALL_MAX / 16; i++)
        rg_class_of[i] = (uint8_t)rg_size_class(i * 16);
}

uintptr_t rg_link_key;

/* A free-list link pointed outside its span: a write after free.  The rest
 * of the list is dropped (those slots are lost, and regal_arena_check says
 * so from now on); the allocation in progress gets the slot it had. */
void rg_page_corrupt(struct rg_page *pg, const void *slot)
{
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
    __atomic_store_n(&pchunk(c)->top, RG_DATA_PAGE0, __ATOMIC_RELAXED);
    pchunk(c)->spans_live = 0;
    pchunk(c)->free_spans = NULL;
}

/* The pages below top say FREE again: the free paths read a descriptor's
 * state without comparing its page with top (rg_page_slot_at); and none is
 * on a revive list (the arena empties them). */
void rg_pages_chunk_reset(struct rg_chunk *c)
{
    for (unsigned i = RG_DATA_PAGE0; i < pchunk(c)->top; i++) {
        rg_page_desc(c, i)->state = RG_PAGE_FREE;
        rg_page_desc(c, i)->revivable = 0;
    }
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

/* The avail list keeps its tail: spans that get a free slot again join at
 * the end (avail_push_back) and gather frees while the spans before them
 * serve, so that the queue's slow path runs once per many frees. */
static void avail_push_front(struct rg_pageq *q, struct rg_page *pg)
{
    list_push(&q->avail, pg);
    if (pg->next == NULL)
        q->avail_tail = pg;
}

static void avail_push_back(struct rg_pageq *q, struct rg_page *pg)
{
    if (q->avail == NULL) {
        avail_push_front(q, pg);
        return;
    }
    pg->next = NULL;
    pg->prev = q->avail_tail;
    q->avail_tail->next = pg;
    q->avail_tail = pg;
}

static void avail_remove(struct rg_pageq *q, struct rg_page *pg)
{
    if (q->avail_tail == pg)
        q->avail_tail = pg->prev;
    list_remove(&q->avail, pg);
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

/* ---- the revive lists (invariant 7) ---- */

static struct rg_page **revive_list(struct regal_arena *a, uint32_t slot_size)
{
    return &a->revive[rg_size_class(slot_size)];
}

static void revive_add(struct regal_arena *a, struct rg_page *pg)
{
    struct rg_page **head = revive_list(a, pg->slot_size);
    pg->rprev = NULL;
    pg->rnext = *head;
    if (*head != NULL)
        (*head)->rprev = pg;
    *head = pg;
    pg->revivable = 1;
}

/* Takes pg (a free span) off its revive list, if on one. */
static void revive_remove(struct regal_arena *a, struct rg_page *pg)
{
    if (!pg->revivable)
        return;
    if (pg->rprev != NULL)
        pg->rprev->rnext = pg->rnext;
    else
        *revive_list(a, pg->slot_size) = pg->rnext;
    if (pg->rnext != NULL)
        pg->rnext->rprev = pg->rprev;
    pg->revivable = 0;
}

/* ---- spans ---- */

/* Makes the n pages of c from first on a live span: free span fs, or the
 * pages at top (fs NULL). */
static bool span_claim(struct regal_arena *a, struct rg_chunk *c, struct rg_page *fs,
                       unsigned first, unsigned n)
{
    struct rg_pages_chunk *pc = pchunk(c);
    if (!rg_arena_commit(a, c, (size_t)first << RG_PAGE_SHIFT, (size_t)(first + n) << RG_PAGE_SHIFT,
                         true))
        return false;
    if (fs != NULL) {
        unsigned rest = fs->span - n;
        list_remove(&pc->free_spans, fs);
        revive_remove(a, fs);
        if (rest > 0) {
            span_mark(c, first + n, rest, RG_PAGE_FREE);
            list_push(&pc->free_spans, rg_page_desc(c, first + n));
        }
    } else {
        __atomic_store_n(&pc->top, pc->top + n, __ATOMIC_RELAXED); /* read by free */
    }
    pc->spans_live++;
    span_mark(c, first, n, RG_PAGE_HEAD);
    return true;
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
    return span_claim(a, c, fs, first, n) ? rg_page_desc(c, first) : NULL;
}

/* The span's pages stay committed, dirty, until the purge policy or a trim
 * gives them back (purge.c); a span release is one of its slow paths.  A
 * class span goes on its class's revive list. */
static void span_give_back(struct rg_chunk *c, struct rg_page *pg)
{
    unsigned first = (unsigned)(pg - rg_page_desc(c, 0));
    size_t bytes = (size_t)pg->span << RG_PAGE_SHIFT, from = (size_t)first << RG_PAGE_SHIFT;
    size_t committed = rg_chunk_committed_in(c, from, from + bytes);
    span_mark(c, first, pg->span, RG_PAGE_FREE);
    list_push(&pchunk(c)->free_spans, pg);
    pchunk(c)->spans_live--;
    /* On no queue now: a full span that other threads' frees emptied (its
     * owner's exit collected them) left the full list with the flag set. */
    __atomic_store_n(&pg->in_full, 0, __ATOMIC_RELAXED);
    if (pg->kind == RG_PAGE_CLASS && committed == bytes) /* no trim shed part of it */
        revive_add(c->arena, pg);
    rg_arena_dirty_add(c->arena, committed);
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

/* Span pg (every slot free) becomes q's. */
static void page_join(struct rg_pageq *q, struct rg_page *pg)
{
    __atomic_store_n(&pg->queue, q, __ATOMIC_RELAXED);
    __atomic_store_n(&pg->owner, q->owner, __ATOMIC_RELEASE); /* see rg_free_slot_fast */
    pg->xfree = NULL;
    __atomic_store_n(&pg->in_full, 0, __ATOMIC_RELAXED);
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
    pg->bytes = (uint64_t)pg->capacity * q->slot_size;
    pg->carved = 0;
    pg->used = 0;
    pg->shed = 0;
    pg->kind = q->kind;
    memset(pg->live, 0, (pg->capacity + 63) / 64 * sizeof(uint64_t));
    page_join(q, pg);
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

/* ---- frees from other threads ---- */

uint32_t rg_page_collect(struct rg_page *pg)
{
    if (__atomic_load_n(&pg->xfree, __ATOMIC_RELAXED) == NULL)
        return 0;
    /* The xfree list's links are free-list links (rg_link_set): its slots
     * go onto the free list as one piece, with a write to the last only. */
    void *head = __atomic_exchange_n(&pg->xfree, NULL, __ATOMIC_ACQUIRE), *tail = NULL;
    uint32_t n = 0;
    for (void *p = head; p != NULL; p = rg_link_get(p)) {
        size_t off = (size_t)((uint8_t *)p - pg->start);
        uint32_t s;
        if (off >= pg->bytes || !rg_slot_at(pg, off, &s)) {
            rg_report(REGAL_ERR_CORRUPTION, p, NULL,
                      "remote free list of a %u-byte page holds %p (list dropped)", pg->slot_size,
                      p);
            break;
        }
        if (!rg_bit_take(pg->live, s)) {
            /* Pushed twice: the list runs into itself or the free list
             * from here, so the rest of it is dropped (those slots stay
             * counted as live, never handed out again). */
            rg_report(REGAL_ERR_DOUBLE_FREE, p, NULL,
                      "free of %p: block already freed (double free from another thread)", p);
            break;
        }
        tail = p;
        n++;
    }
    if (tail != NULL) {
        rg_link_set(tail, pg->free);
        pg->free = head;
        pg->used -= n;
    }
    return n;
}

/* Whether q belongs to a thread heap: its spans come and go under the
 * arena lock, taken here. */
static bool thread_queue(struct regal_arena *a, const struct rg_pageq *q)
{
    return q->owner != NULL && q->owner != &a->own;
}

/* ---- pages of spans in use given back (trim) ---- */

/* OS pages in the largest span, at 4 KiB or more per page. */
#define SPAN_OS_PAGES (((size_t)RG_PAGES_PER_CHUNK << RG_PAGE_SHIFT) / 4096)

static void bit_on(uint64_t *bits, size_t i)
{
    bits[i / 64] |= 1ull << (i % 64);
}

static bool bit_on_at(const uint64_t *bits, size_t i)
{
    return (bits[i / 64] >> (i % 64)) & 1;
}

/* Marks the OS pages (of 1 << shift bytes) that bytes [from, to) of a span
 * touch. */
static void mark_pages(uint64_t *pages, size_t from, size_t to, unsigned shift)
{
    for (size_t i = from >> shift; i <= (to - 1) >> shift; i++)
        bit_on(pages, i);
}

/* Whether every page free slot f touches is marked in kept: a slot with
 * any page given back must not be handed out before span_regain commits
 * its pages again (and counts them). */
static bool slot_kept(const struct rg_page *pg, const void *f, const uint64_t *kept, unsigned shift)
{
    size_t off = (size_t)((const uint8_t *)f - pg->start);
    for (size_t i = off >> shift; i <= (off + pg->slot_size - 1) >> shift; i++)
        if (!bit_on_at(kept, i))
            return false;
    return true;
}

/* Keeps on pg's free list the slots that lie in kept pages only; the
 * others are shed. */
static void list_shed(struct rg_page *pg, const uint64_t *kept, unsigned shift)
{
    void *f = pg->free, *last = NULL;
    pg->free = NULL;
    while (f != NULL) {
        void *next = rg_link_get(f);
        if (!rg_link_ok(pg, next)) {
            rg_page_corrupt(pg, f); /* the rest of the list is lost */
            next = NULL;
        }
        if (slot_kept(pg, f, kept, shift)) {
            if (last == NULL)
                pg->free = f;
            else
                rg_link_set(last, f);
            last = f;
        } else {
            pg->shed++;
        }
        f = next;
    }
    if (last != NULL)
        rg_link_set(last, NULL);
}

/* Gives back the committed OS pages of span pg (in use, its queue's
 * owner's to change, the arena locked) that no live slot touches: its
 * free slots there and its slots never carved leave the free list, and
 * come back when the list runs dry (span_regain).  Slots other threads
 * freed and the owner did not collect are still live.  Bytes given back. */
static size_t span_shed(struct rg_page *pg)
{
    if (pg->free == NULL && pg->carved == pg->capacity)
        return 0; /* nothing free that a trim has not given back */
    unsigned shift = rg_log2(rg_os_page_size());
    size_t npages = ((size_t)pg->span << RG_PAGE_SHIFT) >> shift;
    uint64_t kept[SPAN_OS_PAGES / 64] = {0};
    for (uint32_t w = 0; w < (pg->capacity + 63) / 64; w++)
        for (uint64_t bits = pg->live[w]; bits != 0; bits &= bits - 1) {
            size_t s = (size_t)w * 64 + (unsigned)__builtin_ctzll(bits);
            mark_pages(kept, s * pg->slot_size, (s + 1) * pg->slot_size, shift);
        }
    list_shed(pg, kept, shift);
    pg->shed += pg->capacity - pg->carved; /* never carved into given-back pages */
    pg->carved = pg->capacity;
    struct rg_chunk *c = rg_chunk_of(pg);
    size_t base = (size_t)(pg->start - (uint8_t *)c), released = 0;
    for (size_t i = 0, j; i < npages; i = j + 1) {
        for (j = i; j < npages && !bit_on_at(kept, j); j++)
            ;
        if (j > i)
            released += rg_chunk_decommit(c, base + (i << shift), base + (j << shift));
    }
    rg_arena_uncommit(c->arena, released);
    c->arena->purged += released;
    return released;
}

/* The free list of span pg of q ran dry: its shed slots go back on it, in
 * address order, once their pages are committed again (under the arena's
 * lock for a thread's queue).  False when there were none, or the arena's
 * limit refuses the pages. */
static bool span_regain(struct rg_pageq *q, struct rg_page *pg)
{
    if (RG_LIKELY(pg->shed == 0))
        return false;
    struct rg_chunk *c = rg_chunk_of(pg);
    bool locked = thread_queue(c->arena, q), ok;
    if (locked)
        rg_arena_lock(c->arena);
    size_t from = (size_t)(pg->start - (uint8_t *)c);
    ok = rg_arena_commit(c->arena, c, from, from + ((size_t)pg->span << RG_PAGE_SHIFT), false);
    if (locked)
        rg_arena_unlock(c->arena);
    if (!ok)
        return false;
    void *head = pg->free;
    for (uint32_t s = pg->carved; s-- > 0;) {
        if (!rg_bit_test(pg->live, s)) {
            void *slot = pg->start + (size_t)s * pg->slot_size;
            rg_link_set(slot, head);
            head = slot;
        }
    }
    pg->free = head;
    pg->shed = 0;
    return true;
}

/* ---- the owner's queue ---- */

static void to_avail(struct rg_pageq *q, struct rg_page *pg);

void rg_page_absorb(struct rg_page *pg)
{
    if (rg_page_collect(pg) > 0 && pg->in_full)
        to_avail(pg->queue, pg);
}

/* pg leaves the avail list for the full list, unless another thread freed
 * a slot of it meanwhile: in_full is published before xfree is read, and
 * rg_page_free_remote reads in_full after pushing, so one of the two sees
 * the other.  Returns whether pg has free slots now. */
static bool to_full(struct rg_pageq *q, struct rg_page *pg)
{
    __atomic_store_n(&pg->in_full, 1, __ATOMIC_SEQ_CST);
    if (rg_page_collect(pg) > 0) {
        __atomic_store_n(&pg->in_full, 0, __ATOMIC_RELAXED);
        return true;
    }
    avail_remove(q, pg);
    list_push(&q->full, pg);
    return false;
}

/* A full span with a free slot again goes second in avail: the first span
 * keeps serving until it runs out, and this one gathers more frees before
 * its turn (else every free into a full span costs a slow allocation). */
static void to_avail(struct rg_pageq *q, struct rg_page *pg)
{
    list_remove(&q->full, pg);
    avail_push_back(q, pg);
    __atomic_store_n(&pg->in_full, 0, __ATOMIC_RELAXED);
}

/* Full spans that other threads freed slots of go back to avail. */
static void collect_full(struct rg_pageq *q)
{
    if (!__atomic_load_n(&q->remote, __ATOMIC_RELAXED))
        return;
    __atomic_store_n(&q->remote, 0, __ATOMIC_RELAXED);
    for (struct rg_page *pg = q->full, *next; pg != NULL; pg = next) {
        next = pg->next;
        if (rg_page_collect(pg) > 0)
            to_avail(q, pg);
    }
}

/* A span of q after the first one with a free slot, moved to the front;
 * NULL if none. */
static struct rg_page *other_with_free(struct rg_pageq *q)
{
    for (struct rg_page *pg = q->avail->next; pg != NULL; pg = pg->next) {
        if (pg->free != NULL || rg_page_collect(pg) > 0) {
            avail_remove(q, pg);
            avail_push_front(q, pg);
            return pg;
        }
    }
    return NULL;
}

/* When the first span of a queue has run dry, the next one to serve is
 * the fullest of the REFILL_SCAN spans after it that has at least
 * 1/REFILL_SPARE of its slots free, else simply the one after it if it has
 * a free slot.  The emptiest spans then get frees but no new blocks, so
 * they drain and go back to their chunk (bench/frag: final RSS 172 ->
 * 127 MiB), while a span with only a few free slots is not picked for so
 * little (frees scattered over full spans stay cheap: the pool scenario of
 * bench/arena_peers).  NULL if neither. */
#define REFILL_SCAN  8
#define REFILL_SPARE 8

static struct rg_page *next_to_serve(const struct rg_page *first)
{
    struct rg_page *best = NULL, *pg = first->next;
    for (unsigned n = 0; pg != NULL && n < REFILL_SCAN; pg = pg->next, n++)
        if (pg->free != NULL && pg->capacity - pg->used >= pg->capacity / REFILL_SPARE &&
            (best == NULL || pg->used > best->used))
            best = pg;
    if (best == NULL && first->next != NULL && first->next->free != NULL)
        best = first->next;
    return best;
}

/* The first span of q with a free slot, after carving and collecting; NULL
 * when q has none.  Touches only q's own spans. */
static struct rg_page *queue_refill(struct rg_pageq *q)
{
    collect_full(q);
    struct rg_page *pg;
    while ((pg = q->avail) != NULL) {
        if (pg->free != NULL || rg_page_collect(pg) > 0 || span_regain(q, pg))
            return pg;
        struct rg_page *next = next_to_serve(pg);
        if (next != NULL) { /* freed slots before fresh ones */
            avail_remove(q, pg);
            avail_push_back(q, pg);
            avail_remove(q, next);
            avail_push_front(q, next);
            return next;
        }
        if (pg->carved < pg->capacity) {
            page_carve(pg);
            return pg;
        }
        if (pg->shed > 0) /* the arena's limit refuses its pages */
            return other_with_free(q);
        if (to_full(q, pg))
            return pg;
    }
    return NULL;
}

/* Moves span pg (of another queue, now unlinked) to the front of q. */
static void span_adopt(struct rg_pageq *q, struct rg_page *pg)
{
    __atomic_store_n(&pg->queue, q, __ATOMIC_RELAXED);
    __atomic_store_n(&pg->owner, q->owner, __ATOMIC_RELEASE); /* see rg_free_slot_fast */
    __atomic_store_n(&pg->in_full, 0, __ATOMIC_RELAXED);
    avail_push_front(q, pg);
}

/* A span of the arena's own queue of q's class with a free slot, moved to
 * thread queue q (lock held). */
static struct rg_page *adopt(struct regal_arena *a, struct rg_pageq *q)
{
    struct rg_pageq *from = &a->own.classes[rg_size_class(q->slot_size)];
    struct rg_page *pg = queue_refill(from);
    if (pg == NULL)
        return NULL;
    avail_remove(from, pg);
    span_adopt(q, pg);
    return pg;
}

/* The span of q's class given back last, if it is still whole, with its
 * free list as its last owner left it; NULL if none.  A class that frees a
 * batch and allocates the next one gets its slots back in the order it
 * freed them, still in cache, rather than another class's span carved
 * afresh: bench/trim_batches (batches of 22 MiB in 256 B to 8 KiB blocks)
 * took 0.66 s that way, 0.40 s this way (mimalloc 0.58). */
static struct rg_page *span_revive(struct regal_arena *a, struct rg_pageq *q)
{
    struct rg_page *pg = *revive_list(a, q->slot_size);
    if (pg == NULL || pg->span != q->span_pages)
        return NULL;
    struct rg_chunk *c = rg_chunk_of(pg);
    if (!span_claim(a, c, pg, (unsigned)(pg - rg_page_desc(c, 0)), pg->span))
        return NULL;
    page_join(q, pg);
    return pg;
}

static struct rg_page *span_new(struct regal_arena *a, struct rg_pageq *q)
{
    struct rg_page *pg = q->kind == RG_PAGE_CLASS ? span_revive(a, q) : NULL;
    if (pg == NULL) {
        pg = span_alloc(a, q->span_pages);
        if (pg == NULL)
            return NULL;
        page_init(q, pg, rg_chunk_of(pg));
        page_carve(pg);
    }
    avail_push_front(q, pg);
    return pg;
}

void *rg_page_alloc_slow(struct regal_arena *a, struct rg_pageq *q)
{
    struct rg_page *pg = queue_refill(q);
    if (pg == NULL) {
        bool locked = thread_queue(a, q);
        if (locked)
            rg_arena_lock(a);
        pg = locked ? adopt(a, q) : NULL;
        if (pg == NULL)
            pg = span_new(a, q);
        if (locked)
            rg_arena_unlock(a);
        if (pg == NULL) {
            errno = ENOMEM;
            return NULL;
        }
    }
    return rg_page_pop(pg);
}

struct rg_page *rg_page_of(struct rg_chunk *c, const void *p)
{
    unsigned i = page_index(c, p);
    if (i < RG_DATA_PAGE0 || i >= __atomic_load_n(&pchunk(c)->top, __ATOMIC_RELAXED))
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
    if (pg->start + (size_t)i * pg->slot_size != (const uint8_t *)p || i >= pg->carved)
        return RG_SLOT_INTERIOR; /* inside a slot, or a slot never handed out */
    return rg_bit_test(pg->live, i) ? RG_SLOT_LIVE : RG_SLOT_FREE;
}

void rg_page_free_slow(struct rg_page *pg)
{
    struct rg_pageq *q = pg->queue;
    if (pg->in_full) {
        to_avail(q, pg);
    } else if (pg->used == 0 && (q->avail != pg || pg->next != NULL)) {
        /* Empty and not the queue's last span: back to the chunk. */
        struct rg_chunk *c = rg_chunk_of(pg);
        bool locked = thread_queue(c->arena, q);
        if (locked)
            rg_arena_lock(c->arena);
        avail_remove(q, pg);
        span_give_back(c, pg);
        if (locked)
            rg_arena_unlock(c->arena);
    }
}

/* Under the lock: a class span of a thread heap is the thread's to change,
 * so its slot goes the remote way. */
void rg_page_free(struct regal_arena *a, struct rg_page *pg, void *p)
{
    if (thread_queue(a, pg->queue))
        rg_page_free_remote(pg, p);
    else
        rg_page_push(pg, p, rg_slot_index(pg, p));
}

/* Hands every span of q to to (lock held): empty ones to their chunk. */
void rg_pageq_abandon(struct rg_pageq *q, struct rg_pageq *to)
{
    struct rg_page *lists[2] = {q->avail, q->full};
    for (int l = 0; l < 2; l++) {
        for (struct rg_page *pg = lists[l], *next; pg != NULL; pg = next) {
            next = pg->next;
            rg_page_collect(pg);
            if (pg->used == 0) {
                span_give_back(rg_chunk_of(pg), pg);
            } else {
                span_adopt(to, pg);
                if (pg->free == NULL && pg->shed == 0 && pg->carved == pg->capacity)
                    to_full(to, pg);
            }
        }
    }
    q->avail = q->full = q->avail_tail = NULL;
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
    q->avail = q->full = q->avail_tail = NULL;
}

size_t rg_pageq_trim(struct rg_pageq *q)
{
    size_t released = 0;
    struct rg_page *next;
    for (struct rg_page *pg = q->full; pg != NULL; pg = next) {
        next = pg->next;
        if (rg_page_collect(pg) > 0) /* other threads' frees count too */
            to_avail(q, pg);
    }
    for (struct rg_page *pg = q->avail; pg != NULL; pg = next) {
        next = pg->next;
        rg_page_collect(pg);
    }
    for (struct rg_page *pg = q->avail; pg != NULL; pg = next) {
        next = pg->next;
        if (pg->used == 0) {
            avail_remove(q, pg);
            span_give_back(rg_chunk_of(pg), pg);
        } else {
            released += span_shed(pg);
        }
    }
    return released;
}

size_t rg_pages_chunk_trim(struct regal_arena *a, struct rg_chunk *c)
{
    size_t released = 0;
    for (struct rg_page *fs = pchunk(c)->free_spans; fs != NULL; fs = fs->next) {
        size_t first = (size_t)(fs - rg_page_desc(c, 0));
        revive_remove(a, fs); /* its slots read as zero now */
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

/* Invariants 2 to 4 over the slots of span pg, whose head is page first:
 * held freed slots still counted in used (a pool's hot stack). */
static bool slots_are_valid(const struct rg_page *pg, unsigned first, uint32_t held)
{
    uint32_t live = 0;
    for (uint32_t w = 0; w < (pg->capacity + 63) / 64; w++)
        live += (uint32_t)__builtin_popcountll(pg->live[w]);
    if (live + held != pg->used)
        return rg_check_fail(pg, "page %u: used %u but %u live bits and %u held (invariant 2)",
                             first, pg->used, live, held);
    uint32_t nfree = 0;
    for (void *f = pg->free; f != NULL; f = rg_link_get(f)) {
        if ((size_t)((uint8_t *)f - pg->start) >= pg->bytes ||
            rg_slot_status(pg, f) != RG_SLOT_FREE)
            return rg_check_fail(f, "page %u: bad free slot (invariant 3)", first);
        if (++nfree > pg->carved)
            return rg_check_fail(pg, "page %u: free list too long (invariant 2)", first);
    }
    if (nfree + pg->shed + pg->used != pg->carved || pg->carved > pg->capacity)
        return rg_check_fail(pg, "page %u: %u free + %u shed + %u used != %u carved (invariant 2)",
                             first, nfree, pg->shed, pg->used, pg->carved);
    bool full = pg->free == NULL && pg->shed == 0 && pg->carved == pg->capacity;
    if (pg->in_full && !full)
        return rg_check_fail(pg, "page %u: full list mismatch (invariant 4)", first);
    return true;
}

bool rg_page_is_valid(struct rg_chunk *c, struct rg_page *pg, bool contents, uint32_t held)
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
    return !contents || slots_are_valid(pg, first, held);
}

/* A revivable span's slots are as a live span's with none live. */
bool rg_revive_is_valid(struct rg_chunk *c, size_t *flagged)
{
    for (struct rg_page *fs = pchunk(c)->free_spans; fs != NULL; fs = fs->next) {
        if (!fs->revivable)
            continue;
        unsigned first = (unsigned)(fs - rg_page_desc(c, 0));
        size_t from = (size_t)first << RG_PAGE_SHIFT,
               to = from + ((size_t)fs->span << RG_PAGE_SHIFT);
        if (fs->kind != RG_PAGE_CLASS || fs->used != 0 || rg_chunk_uncommitted(c, from, to) != 0)
            return rg_check_fail(fs,
                                 "page %u: revivable, but not a whole free class span "
                                 "(invariant 7)",
                                 first);
        if (!slots_are_valid(fs, first, 0))
            return false;
        (*flagged)++;
    }
    return true;
}

bool rg_revive_lists_are_valid(struct regal_arena *a, size_t flagged)
{
    size_t listed = 0;
    for (unsigned k = 0; k < RG_CLASS_COUNT; k++)
        for (struct rg_page *pg = a->revive[k]; pg != NULL; pg = pg->rnext) {
            if (!pg->revivable || pg->state != RG_PAGE_FREE || rg_size_class(pg->slot_size) != k ||
                ++listed > flagged)
                return rg_check_fail(pg, "span %p on the wrong revive list (page.c invariant 7)",
                                     (void *)pg);
        }
    if (listed != flagged)
        return rg_check_fail(a,
                             "%zu revivable free spans, %zu on revive lists (page.c "
                             "invariant 7)",
                             flagged, listed);
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
