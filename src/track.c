/*
 * Tracked blocks: the block API of debug arenas (REGAL_ARENA_DEBUG, or the
 * default arena with REGAL_OPTIONS=debug) and of every arena under
 * memcheck.  A tracked block is carved from an engine block ("internal")
 * with a header before the user's bytes and a canary after them:
 *
 *   internal [offset][... canary ...] hdr{offset, size, site, canary} p [size bytes] [canary >= 16]
 *
 * hdr sits right before p; offset = p - internal (>= TRACK_FRONT; larger
 * for alignments above 32, in which case internal's first word holds it
 * too, so a walk over engine blocks finds p).  On top of that:
 *  - the canaries (front and back) are checked on free, on realloc and by
 *    regal_arena_check: a trampled one is REGAL_ERR_OVERFLOW;
 *  - natively, fresh blocks are filled with FILL_FRESH and freed ones with
 *    FILL_FREED, which is checked when they leave the quarantine: a write
 *    after free is REGAL_ERR_CORRUPTION;
 *  - freed blocks wait in a FIFO quarantine (QUARANTINE_BLOCKS blocks,
 *    QUARANTINE_BYTES bytes) before their memory is reused;
 *  - under memcheck every block is announced (MALLOCLIKE for the requested
 *    size, by the public entry point so stacks start there), FREELIKEd on
 *    free, reset and destroy, and bad frees are handed to memcheck too;
 *  - realloc always moves (as memcheck's own does); usable size is the
 *    requested size; the allocation site is kept for leak reports.
 * Statistics count a block as freed when it enters the quarantine.
 *
 * Invariant: a block is in the quarantine <=> hdr.size has FREED set and
 * its internal block is live.  The quarantine's lock is never held while
 * an arena lock is taken.
 */
#include "track.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "error.h"
#include "pool.h"
#include "stats.h"

bool rg_vg_running;

/* memcheck (and tools that answer its requests): MAKE_MEM_DEFINED returns
 * -1 there and 0 under other tools (callgrind, massif...), which then
 * measure regal as it runs natively. */
void rg_vg_init(void)
{
#if RG_VG_COMPILED
    static char probe;
    rg_vg_running = RUNNING_ON_VALGRIND != 0 && (long)VALGRIND_MAKE_MEM_DEFINED(&probe, 1) == -1;
#endif
}

#define FREED             ((size_t)1 << 63)
#define CANARY            0xca
#define FILL_FRESH        0xaa
#define FILL_FREED        0xdd
#define QUARANTINE_BLOCKS 4096
#define QUARANTINE_BYTES  ((size_t)16 << 20)
#define EVICT_MAX         16

struct hdr {
    uint64_t offset;  /* p - internal */
    size_t size;      /* requested bytes | FREED while quarantined */
    const void *site; /* the caller of the allocation */
    uint64_t canary;  /* CANARY bytes */
};

static_assert(sizeof(struct hdr) == RG_TRACK_FRONT, "header layout");

/* Headers are copied, not dereferenced: objects of pools aligned below 8
 * put them at any address. */
static struct hdr hdr_get(const void *p)
{
    struct hdr h;
    memcpy(&h, (const uint8_t *)p - sizeof h, sizeof h);
    return h;
}

static void hdr_set(void *p, const struct hdr *h)
{
    memcpy((uint8_t *)p - sizeof *h, h, sizeof *h);
}

/* ---- the block behind a user pointer ---- */

struct tracked {
    regal_arena *arena; /* NULL unless p is a live, not quarantined block */
    enum rg_ref_status status;
    struct rg_ref ref;
    uint8_t *internal;
    size_t usable; /* of the internal block */
    size_t size;   /* requested, FREED bit removed */
};

/* Resolves p; call between rg_vg_quiet_begin and _end. */
static struct tracked lookup(const void *p)
{
    struct tracked t = {.status = RG_REF_FOREIGN};
    struct rg_chunk *c;
    regal_arena *owner = rg_owner(p, &c);
    if (owner == NULL || !rg_arena_tracked(owner) || rg_chunk_of((const uint8_t *)p - 1) != c ||
        ((uintptr_t)p - (uintptr_t)c) < sizeof(struct hdr) + 1)
        return t;
    struct hdr h = hdr_get(p);
    if (h.offset < sizeof(struct hdr) || h.offset > (uintptr_t)p - (uintptr_t)c)
        return t;
    t.internal = (uint8_t *)p - h.offset;
    regal_arena *a = rg_block_lock(t.internal, &t.ref, &t.status);
    if (a == NULL)
        return t;
    t.usable = rg_ref_usable(&t.ref, t.internal);
    h = hdr_get(p); /* again, under the lock */
    size_t size = h.size;
    rg_arena_unlock(a);
    t.size = size & ~FREED;
    if (t.usable < h.offset + t.size + RG_TRACK_BACK) {
        t.status = RG_REF_FOREIGN;
    } else if (size & FREED) {
        t.status = RG_REF_DEAD;
    } else {
        t.arena = a;
    }
    return t;
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return false;
    return true;
}

/* Front and back canaries of a live block; reports an overrun or underrun. */
static bool canaries_ok(const void *p, const struct tracked *t)
{
    struct hdr h = hdr_get(p);
    uint64_t front;
    memset(&front, CANARY, sizeof front);
    size_t back = t->usable - h.offset - t->size;
    bool under = h.canary != front, over = !all_bytes((const uint8_t *)p + t->size, back, CANARY);
    if (under || over)
        rg_report(REGAL_ERR_OVERFLOW, p, t->arena,
                  "block %p of %zu bytes: canary %s the block was overwritten", p, t->size,
                  under ? "before" : "after");
    return !under && !over;
}

/* ---- allocation ---- */

/* Lays out a tracked block in internal block q of usable bytes. */
static void *carve(uint8_t *q, size_t usable, size_t offset, size_t size, bool zero,
                   const void *site)
{
    uint8_t *p = q + offset;
    memset(q, CANARY, offset);
    memcpy(q, &offset, sizeof offset); /* for walks over engine blocks */
    struct hdr h = {offset, size, site, 0};
    memset(&h.canary, CANARY, sizeof h.canary);
    hdr_set(p, &h);
    memset(p, zero ? 0 : rg_vg() ? 0 : FILL_FRESH, size);
    memset(p + size, CANARY, usable - offset - size);
    return p;
}

static size_t quarantine_flush(regal_arena *a);

static size_t front_for(size_t align)
{
    return align > RG_TRACK_FRONT ? align : RG_TRACK_FRONT;
}

/* Statistics count a tracked block by its requested size. */
static void count_requested(regal_arena *a, size_t usable, size_t need, size_t size)
{
    struct rg_counters *s = rg_counters_of(a);
    s->in_use -= usable - size;
    s->requested_total -= need - size;
}

/* Allocates and carves under the arena lock, so regal_arena_check never
 * sees an engine block that is not yet a tracked one. */
static void *alloc_carved(regal_arena *a, size_t need, size_t align, size_t offset, size_t size,
                          bool zero, const void *site)
{
    size_t usable;
    rg_arena_lock(a);
    uint8_t *q = rg_arena_alloc(a, need, align, &usable);
    void *p = NULL;
    if (q != NULL) {
        rg_stats_alloc(a, usable, need);
        count_requested(a, usable, need, size);
        p = carve(q, usable, offset, size, zero, site);
    }
    rg_arena_unlock(a);
    return p;
}

void *rg_track_alloc(regal_arena *a, size_t size, size_t align, bool zero, const void *site)
{
    size_t offset = front_for(align);
    if (size > PTRDIFF_MAX - offset - RG_TRACK_BACK) {
        errno = ENOMEM;
        return NULL;
    }
    size_t need = offset + size + RG_TRACK_BACK;
    rg_vg_quiet_begin();
    void *p = alloc_carved(a, need, align, offset, size, zero, site);
    /* At an arena's limit, quarantined blocks give their memory back. */
    if (p == NULL && errno == ENOMEM && quarantine_flush(a) > 0)
        p = alloc_carved(a, need, align, offset, size, zero, site);
    rg_vg_quiet_end();
    return p;
}

void *rg_track_pool_alloc(regal_pool *pool, size_t *size, const void *site)
{
    rg_vg_quiet_begin();
    regal_arena *a = pool->arena;
    *size = pool->object_size;
    rg_arena_lock(a);
    uint8_t *q = rg_page_alloc(a, &pool->q);
    void *p = NULL;
    if (q != NULL) {
        rg_stats_alloc(a, pool->q.slot_size, *size);
        count_requested(a, pool->q.slot_size, *size, *size);
        p = carve(q, pool->q.slot_size, pool->track_offset, *size, false, site);
    }
    rg_arena_unlock(a);
    rg_vg_quiet_end();
    return p;
}

size_t rg_track_pool_slot(size_t object_size, size_t align, uint32_t *offset)
{
    *offset = (uint32_t)front_for(align);
    return rg_align_up(*offset + object_size + RG_TRACK_BACK, align);
}

/* ---- the quarantine ---- */

struct qentry {
    void *p;
    uint8_t *internal;
    regal_arena *arena;
    const struct rg_pageq *queue; /* pages blocks: their span's queue */
    size_t size;                  /* requested bytes */
    size_t bytes;                 /* of the internal block */
};

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static struct qentry ring[QUARANTINE_BLOCKS];
static size_t qhead, qcount, qbytes;

static struct qentry *at(size_t i)
{
    return &ring[(qhead + i) % QUARANTINE_BLOCKS];
}

/* Adds e; returns how many of the oldest entries it pushed out into out
 * (at most EVICT_MAX: the bytes bound is reached again over a few frees). */
static size_t quarantine_push(struct qentry e, struct qentry *out)
{
    size_t n = 0;
    pthread_mutex_lock(&qlock);
    while (qcount > 0 && n < EVICT_MAX &&
           (qcount == QUARANTINE_BLOCKS || qbytes + e.bytes > QUARANTINE_BYTES)) {
        out[n++] = *at(0);
        qbytes -= at(0)->bytes;
        qhead = (qhead + 1) % QUARANTINE_BLOCKS;
        qcount--;
    }
    *at(qcount) = e;
    qcount++;
    qbytes += e.bytes;
    pthread_mutex_unlock(&qlock);
    return n;
}

/* Removes the entries of arena a (or of queue q) and returns how many;
 * out, if not NULL, receives them (room for QUARANTINE_BLOCKS). */
static size_t quarantine_take(regal_arena *a, const struct rg_pageq *queue, struct qentry *out)
{
    pthread_mutex_lock(&qlock);
    size_t kept = 0, taken = 0, bytes = 0;
    for (size_t i = 0; i < qcount; i++) {
        struct qentry e = *at(i);
        if (queue != NULL ? e.queue == queue : e.arena == a) {
            if (out != NULL)
                out[taken] = e;
            taken++;
            continue;
        }
        *at(kept++) = e;
        bytes += e.bytes;
    }
    qcount = kept;
    qbytes = bytes;
    pthread_mutex_unlock(&qlock);
    return taken;
}

/* A block leaves the quarantine: natively, its freed fill must be intact;
 * then its memory goes back to the engine.  Quiet. */
static void release(const struct qentry *e)
{
    if (!rg_vg() && !all_bytes(e->p, e->size, FILL_FREED))
        rg_report(REGAL_ERR_CORRUPTION, e->p, e->arena,
                  "block %p of %zu bytes was written after it was freed", e->p, e->size);
    rg_free_uncounted(e->internal);
}

/* Gives the memory of a's quarantined blocks back to a. */
static size_t quarantine_flush(regal_arena *a)
{
    static struct qentry out[QUARANTINE_BLOCKS]; /* guarded by flush_lock */
    static pthread_mutex_t flush_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&flush_lock);
    size_t n = quarantine_take(a, NULL, out);
    for (size_t i = 0; i < n; i++)
        release(&out[i]);
    pthread_mutex_unlock(&flush_lock);
    return n;
}

size_t rg_track_flush(regal_arena *a)
{
    rg_vg_quiet_begin();
    size_t n = quarantine_flush(a);
    rg_vg_quiet_end();
    return n;
}

/* ---- free ---- */

void rg_track_free(void *p)
{
    if (p == NULL)
        return;
    rg_vg_quiet_begin();
    struct tracked t = lookup(p);
    const struct rg_pageq *queue = t.ref.page ? t.ref.page->queue : NULL;
    bool intact = t.arena != NULL && canaries_ok(p, &t);
    (void)intact; /* reported; the block is freed all the same */
    if (t.arena != NULL) {
        rg_arena_lock(t.arena);
        struct hdr h = hdr_get(p);
        h.size = t.size | FREED;
        hdr_set(p, &h);
        rg_stats_free(t.arena, t.size);
        if (!rg_vg())
            memset(p, FILL_FREED, t.size);
        rg_arena_unlock(t.arena);
    }
    rg_vg_quiet_end();
    if (t.arena != NULL || !rg_handle_contains(p)) /* a handle block stays memcheck's */
        rg_vg_block_free(p); /* memcheck reports a bad one as it would with its malloc */
    if (t.arena == NULL) {
        rg_report_bad_pointer("free", p, t.status, &t.ref);
        return;
    }
    struct qentry e = {p, t.internal, t.arena, queue, t.size, t.usable};
    struct qentry out[EVICT_MAX];
    size_t n = 0;
    if (e.bytes <= QUARANTINE_BYTES / 2)
        n = quarantine_push(e, out);
    else
        out[n++] = e; /* too big to hold: reused at once */
    rg_vg_quiet_begin();
    for (size_t i = 0; i < n; i++)
        release(&out[i]);
    rg_vg_quiet_end();
}

void *rg_track_realloc(regal_arena *a, void *p, size_t size, const void *site)
{
    size_t old;
    if (p == NULL) {
        old = 0;
    } else if (rg_owner_tracked(p)) {
        rg_vg_quiet_begin();
        struct tracked t = lookup(p);
        bool ok = t.arena != NULL && canaries_ok(p, &t);
        rg_vg_quiet_end();
        if (t.arena == NULL) {
            if (!rg_handle_contains(p))
                rg_vg_block_free(p); /* memcheck's "Invalid ... realloc()" */
            rg_report_bad_pointer("realloc", p, t.status, &t.ref);
            errno = EINVAL;
            return NULL;
        }
        (void)ok;
        old = t.size;
    } else {
        if (regal_arena_of(p) == NULL) {
            regal_free(p); /* reports what p is */
            errno = EINVAL;
            return NULL;
        }
        old = regal_usable_size(p);
    }
    void *n = rg_arena_tracked(a) ? rg_track_alloc(a, size, RG_ALIGN, false, site)
                                  : rg_alloc_checked(a, size, RG_ALIGN);
    if (n == NULL)
        return NULL;
    if (rg_arena_tracked(a))
        rg_vg_block_alloc(n, size, false); /* before the copy: it carries definedness */
    if (p != NULL) {
        memcpy(n, p, old < size ? old : size);
        regal_free(p);
    }
    return n;
}

size_t rg_track_usable(const void *p)
{
    rg_vg_quiet_begin();
    struct tracked t = lookup(p);
    rg_vg_quiet_end();
    if (t.arena == NULL)
        rg_report_bad_pointer("usable_size", p, t.status, &t.ref);
    return t.arena ? t.size : 0;
}

regal_arena *rg_track_owner(const void *p)
{
    rg_vg_quiet_begin();
    struct tracked t = lookup(p);
    rg_vg_quiet_end();
    return t.arena;
}

const struct rg_pageq *rg_track_queue(const void *p)
{
    rg_vg_quiet_begin();
    struct tracked t = lookup(p);
    const struct rg_pageq *q = t.ref.page && t.status != RG_REF_FOREIGN ? t.ref.page->queue : NULL;
    rg_vg_quiet_end();
    return q;
}

/* ---- whole arenas and pools ---- */

/* The user pointer of an engine block of a tracked arena. */
static uint8_t *user_of(void *internal)
{
    uint64_t offset;
    memcpy(&offset, internal, sizeof offset);
    return (uint8_t *)internal + offset;
}

/* memcheck forgets a live block that is not already quarantined (freed). */
static void forget_block(void *internal, size_t usable, void *ctx)
{
    (void)usable;
    (void)ctx;
    uint8_t *p = user_of(internal);
    if (!(hdr_get(p).size & FREED))
        rg_vg_block_free(p);
}

size_t rg_track_pool_release(const struct rg_pageq *q)
{
    rg_pageq_visit(q, forget_block, NULL);
    return quarantine_take(NULL, q, NULL);
}

void rg_track_arena_release(regal_arena *a)
{
    rg_arena_lock(a);
    rg_arena_visit(a, forget_block, NULL);
    rg_arena_unlock(a);
    quarantine_take(a, NULL, NULL);
}

/* regal_arena_check: the canaries of every live block, the fill of every
 * quarantined one. */
struct canary_walk {
    regal_arena *arena;
    size_t bad;
};

static void check_block(void *internal, size_t usable, void *ctx)
{
    struct canary_walk *w = ctx;
    uint8_t *p = user_of(internal);
    struct hdr h = hdr_get(p);
    bool freed = (h.size & FREED) != 0;
    struct tracked t = {.arena = w->arena, .usable = usable, .size = h.size & ~FREED};
    if (!freed && !canaries_ok(p, &t))
        w->bad++;
    if (freed && !rg_vg() && !all_bytes(p, t.size, FILL_FREED)) {
        rg_report(REGAL_ERR_CORRUPTION, p, w->arena,
                  "block %p of %zu bytes was written after it was freed", (void *)p, t.size);
        w->bad++;
    }
}

size_t rg_track_check(regal_arena *a)
{
    struct canary_walk w = {a, 0};
    rg_arena_visit(a, check_block, &w);
    return w.bad;
}

/* ---- leak reports ---- */

#define LEAK_GROUPS 16

struct leak_group {
    size_t size, count;
    const void *site;
};

struct leak_walk {
    bool tracked;
    size_t blocks, bytes, other;
    struct leak_group g[LEAK_GROUPS];
};

static void count_leak(void *block, size_t usable, void *ctx)
{
    struct leak_walk *w = ctx;
    size_t size = usable;
    const void *site = NULL;
    if (w->tracked) {
        uint8_t *p = user_of(block);
        struct hdr h = hdr_get(p);
        if (h.size & FREED)
            return; /* quarantined: freed */
        size = h.size;
        site = h.site;
    }
    w->blocks++;
    w->bytes += size;
    for (size_t i = 0; i < LEAK_GROUPS; i++) {
        struct leak_group *g = &w->g[i];
        if (g->count == 0 || (g->size == size && g->site == site)) {
            *g = (struct leak_group){size, g->count + 1, site};
            return;
        }
    }
    w->other++;
}

static void say(const char *line, int n)
{
    if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
        return;
}

size_t rg_track_leak_report(regal_arena *a, const char *why)
{
    struct leak_walk w = {.tracked = rg_arena_tracked(a)};
    rg_vg_quiet_begin();
    rg_arena_lock(a);
    rg_arena_visit(a, count_leak, &w);
    rg_arena_unlock(a);
    char name[RG_NAME_MAX];
    memcpy(name, a->name, sizeof name);
    rg_vg_quiet_end();
    if (w.blocks == 0)
        return 0;
    char line[200];
    say(line,
        snprintf(line, sizeof line, "regal: %s: %zu blocks (%zu bytes) still live in arena '%s'\n",
                 why, w.blocks, w.bytes, name));
    for (size_t i = 0; i < LEAK_GROUPS && w.g[i].count > 0; i++) {
        const struct leak_group *g = &w.g[i];
        int n = g->site ? snprintf(line, sizeof line,
                                   "regal:   %zu x %zu bytes (%zu bytes), allocated from %p\n",
                                   g->count, g->size, g->count * g->size, g->site)
                        : snprintf(line, sizeof line, "regal:   %zu x %zu bytes (%zu bytes)\n",
                                   g->count, g->size, g->count * g->size);
        say(line, n);
    }
    if (w.other > 0)
        say(line, snprintf(line, sizeof line, "regal:   and %zu blocks of other sizes\n", w.other));
    return w.blocks;
}
