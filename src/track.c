/*
 * The Valgrind mode of the block API, taken when rg_vg() (src/vg.h) says
 * the process runs under Valgrind.  On top of the checked paths of
 * alloc.c it
 *  - asks for RG_VG_REDZONE more bytes per block, announces only the
 *    requested bytes (MALLOCLIKE with that redzone), so a one-byte overrun
 *    lands in NOACCESS memory;
 *  - keeps the requested size in the last word of the block's usable space
 *    (inside the redzone), with FREED set while the block is quarantined;
 *  - holds freed blocks in a FIFO quarantine (QUARANTINE_BLOCKS blocks,
 *    QUARANTINE_BYTES bytes) before their memory is reused, so a use after
 *    free is reported as such, as memcheck does for its own malloc;
 *  - hands every double or invalid free to memcheck too (FREELIKE), so the
 *    user sees memcheck's "Invalid free()" beside regal's report;
 *  - always moves on realloc, as memcheck's own realloc does.
 * Statistics count a block as freed when it enters the quarantine.
 *
 * Invariant: a block is in the quarantine <=> its size word has FREED set
 * and it is live inside regal.  The quarantine's lock is never held while
 * an arena lock is taken.
 */
#include "track.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "arena.h"
#include "pool.h"
#include "stats.h"

bool rg_vg_running;

/* The Valgrind mode is for memcheck (and tools that answer its requests):
 * MAKE_MEM_DEFINED returns -1 there and 0 under other tools (callgrind,
 * massif...), which then measure regal as it runs natively. */
void rg_vg_init(void)
{
#if RG_VG_COMPILED
    static char probe;
    rg_vg_running = RUNNING_ON_VALGRIND != 0 && (long)VALGRIND_MAKE_MEM_DEFINED(&probe, 1) == -1;
#endif
}

#define FREED             ((size_t)1 << 63)
#define QUARANTINE_BLOCKS 4096
#define QUARANTINE_BYTES  ((size_t)16 << 20)
#define EVICT_MAX         16

struct qentry {
    void *p;
    regal_arena *arena;
    const struct rg_pageq *queue; /* pages blocks: their span's queue */
    size_t bytes;
};

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static struct qentry ring[QUARANTINE_BLOCKS];
static size_t qhead, qcount, qbytes;

/* ---- the size word ---- */

static size_t word_get(const void *p, size_t usable)
{
    size_t w;
    memcpy(&w, (const uint8_t *)p + usable - sizeof w, sizeof w);
    return w;
}

static void word_set(void *p, size_t usable, size_t w)
{
    memcpy((uint8_t *)p + usable - sizeof w, &w, sizeof w);
}

/* A live, not quarantined block: its requested size and arena.  Locks and
 * unlocks the arena; call between rg_vg_quiet_begin and _end. */
struct tracked {
    regal_arena *arena; /* NULL if p is not such a block */
    enum rg_ref_status status;
    struct rg_ref ref;
    size_t usable, size;
};

static struct tracked lookup(const void *p)
{
    struct tracked t = {0};
    t.arena = rg_block_lock(p, &t.ref, &t.status);
    if (t.arena == NULL)
        return t;
    t.usable = rg_ref_usable(&t.ref, p);
    t.size = word_get(p, t.usable);
    rg_arena_unlock(t.arena);
    if (t.size & FREED) {
        t.status = RG_REF_DEAD;
        t.arena = NULL;
    }
    return t;
}

/* ---- allocation ---- */

static void *announce(void *p, size_t size, bool zero)
{
    if (p == NULL)
        return NULL;
    struct tracked t = lookup(p);
    word_set(p, t.usable, size);
    if (zero)
        memset(p, 0, size);
    return p;
}

static size_t quarantine_flush(regal_arena *a);

void *rg_track_alloc(regal_arena *a, size_t size, size_t align, bool zero)
{
    if (size > PTRDIFF_MAX - RG_VG_REDZONE) {
        errno = ENOMEM;
        return NULL;
    }
    rg_vg_quiet_begin();
    void *p = rg_alloc_checked(a, size + RG_VG_REDZONE, align);
    /* At an arena's limit, quarantined blocks give their memory back. */
    if (p == NULL && errno == ENOMEM && quarantine_flush(a) > 0)
        p = rg_alloc_checked(a, size + RG_VG_REDZONE, align);
    p = announce(p, size, zero);
    rg_vg_quiet_end();
    return p;
}

void *rg_track_pool_alloc(regal_pool *pool, size_t *size)
{
    rg_vg_quiet_begin();
    *size = pool->object_size;
    void *p = announce(rg_pool_alloc_checked(pool), *size, false);
    rg_vg_quiet_end();
    return p;
}

/* ---- the quarantine ---- */

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

size_t rg_track_forget(regal_arena *a, const struct rg_pageq *queue)
{
    return quarantine_take(a, queue, NULL);
}

/* Gives the memory of a's quarantined blocks back to a (they stay freed
 * for memcheck). */
static size_t quarantine_flush(regal_arena *a)
{
    static struct qentry out[QUARANTINE_BLOCKS]; /* guarded by flush_lock */
    static pthread_mutex_t flush_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&flush_lock);
    size_t n = quarantine_take(a, NULL, out);
    for (size_t i = 0; i < n; i++)
        rg_free_uncounted(out[i].p);
    pthread_mutex_unlock(&flush_lock);
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
    if (t.arena != NULL) {
        rg_arena_lock(t.arena);
        word_set(p, t.usable, t.size | FREED);
        rg_stats_free(t.arena, t.usable);
        rg_arena_unlock(t.arena);
    }
    rg_vg_quiet_end();
    rg_vg_block_free(p); /* memcheck reports a bad one as it would with its malloc */
    if (t.arena == NULL) {
        rg_report_bad_pointer("free", p, t.status, &t.ref);
        return;
    }
    struct qentry e = {p, t.arena, queue, t.usable};
    struct qentry out[EVICT_MAX];
    size_t n = 0;
    if (e.bytes <= QUARANTINE_BYTES / 2)
        n = quarantine_push(e, out);
    else
        out[n++] = e; /* too big to hold: reused at once */
    rg_vg_quiet_begin();
    for (size_t i = 0; i < n; i++)
        rg_free_uncounted(out[i].p);
    rg_vg_quiet_end();
}

void *rg_track_realloc(regal_arena *a, void *p, size_t size)
{
    if (p == NULL) {
        void *n = rg_track_alloc(a, size, RG_ALIGN, false);
        rg_vg_block_alloc(n, size, false);
        return n;
    }
    rg_vg_quiet_begin();
    struct tracked t = lookup(p);
    rg_vg_quiet_end();
    if (t.arena == NULL) {
        rg_vg_block_free(p); /* memcheck's "Invalid ... realloc()" */
        rg_report_bad_pointer("realloc", p, t.status, &t.ref);
        errno = EINVAL;
        return NULL;
    }
    void *n = rg_track_alloc(a, size, RG_ALIGN, false);
    if (n == NULL)
        return NULL;
    rg_vg_block_alloc(n, size, false); /* before the copy: it carries definedness */
    memcpy(n, p, t.size < size ? t.size : size);
    rg_track_free(p);
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

/* memcheck forgets a live block that is not already quarantined (freed). */
static void forget_block(void *p, size_t usable, void *ctx)
{
    (void)ctx;
    if (!(word_get(p, usable) & FREED))
        rg_vg_block_free(p);
}

size_t rg_track_pool_release(const struct rg_pageq *q)
{
    rg_pageq_visit(q, forget_block, NULL);
    return rg_track_forget(NULL, q);
}

void rg_track_arena_release(regal_arena *a)
{
    rg_arena_lock(a);
    rg_arena_visit(a, forget_block, NULL);
    rg_arena_unlock(a);
    rg_track_forget(a, NULL);
}
