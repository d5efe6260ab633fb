/*
 * The public block API: argument rules, locking, statistics and error
 * reports around the engine (arena.c).  User errors are reported after the
 * lock is released, so an error handler may call regal again.  Under
 * Valgrind every entry point hands over to track.c, which adds redzones, a
 * quarantine and the client requests, and calls back the checked paths
 * here (rg_alloc_checked, rg_free_checked).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "error.h"
#include "fast.h"
#include "large.h"
#include "stats.h"
#include "track.h"

/* Requests above PTRDIFF_MAX can never be satisfied (pointer differences
 * inside the block would overflow). */
static bool size_is_sane(size_t size)
{
    if (RG_LIKELY(size <= PTRDIFF_MAX))
        return true;
    errno = ENOMEM;
    return false;
}

static bool arena_is_usable(regal_arena *a)
{
    if (RG_LIKELY(rg_arena_is_live(a)))
        return true;
    rg_report(REGAL_ERR_INVALID_FREE, a, NULL, "allocation from %p, which is not a live arena",
              (void *)a);
    errno = EINVAL;
    return false;
}

RG_NOINLINE void *rg_alloc_checked(regal_arena *a, size_t size, size_t align)
{
    if (!arena_is_usable(a) || !size_is_sane(size))
        return NULL;
    size_t usable;
    rg_theap_ensure(a); /* count in the caller's theap: exact figures for one thread */
    rg_arena_lock(a);
    void *p = rg_arena_alloc(a, size, align, &usable);
    if (p != NULL)
        rg_stats_alloc(a, usable, size);
    rg_arena_unlock(a);
    return p;
}

/* A block of a tracked arena, announced here: inlined into each entry point
 * so memcheck's allocation stack starts at the entry point. */
#define TRACKED_ALLOC_AT(a, size, align, zero, site)                                               \
    do {                                                                                           \
        void *tracked_ = rg_track_alloc((a), (size), (align), (zero), (site));                     \
        rg_vg_block_alloc(tracked_, (size), (zero));                                               \
        return tracked_;                                                                           \
    } while (0)
#define TRACKED_ALLOC(a, size, align, zero)                                                        \
    TRACKED_ALLOC_AT(a, size, align, zero, __builtin_return_address(0))

static bool tracked(regal_arena *a)
{
    return rg_arena_is_live(a) && rg_arena_tracked(a);
}

/* A small request of size bytes in class c (whose slots are aligned to
 * align) whose theap's first span had no free slot, or whose thread has no
 * theap for a yet. */
static RG_NOINLINE void *alloc_small_slow(regal_arena *a, struct rg_theap *h, unsigned c,
                                          size_t size, size_t align)
{
    if (h == NULL)
        h = rg_theap_bind(a);
    if (h == NULL) /* the thread is exiting */
        return rg_alloc_checked(a, size, align);
    void *p = rg_page_alloc_slow(a, &h->classes[c]);
    if (p != NULL)
        rg_counters_alloc(&h->st, rg_class_size[c], size);
    return p;
}

/* Locks a for a heap operation of the caller's theap h; if another thread
 * holds the lock, h caches freed heap blocks from now on (mcache.h). */
static void lock_heap(regal_arena *a, struct rg_theap *h)
{
    if (!rg_arena_needs_lock(a))
        return;
    if (pthread_mutex_trylock(&a->lock) == 0)
        return;
    if (h != NULL && !h->mcache.on)
        rg_mcache_start(&h->mcache);
    pthread_mutex_lock(&a->lock);
}

/* A heap request of the caller's theap h (so a is live and untracked):
 * from the thread's cache of freed blocks if it has one, else from the
 * heap; counted in h. */
static RG_NOINLINE void *alloc_heap(regal_arena *a, struct rg_theap *h, size_t size)
{
    size_t usable;
    void *p = NULL;
    if (h->mcache.on)
        p = rg_mcache_alloc(a, &h->mcache, size, &usable);
    if (p == NULL) {
        lock_heap(a, h);
        p = rg_heap_alloc(a, size, RG_ALIGN, &usable);
        if (p == NULL && h->mcache.bytes > 0) { /* at the limit: this thread's cache first */
            rg_mcache_flush(a, &h->mcache);
            p = rg_heap_alloc(a, size, RG_ALIGN, &usable);
        }
        rg_arena_unlock(a);
        if (p == NULL)
            return NULL;
    }
    rg_counters_alloc(&h->st, usable, size);
    return p;
}

/* What regal_alloc's fast path (fast.h) does not serve, tracked blocks
 * aside. */
RG_NOINLINE void *rg_alloc_rest(regal_arena *a, size_t size)
{
    if (size <= RG_HEAP_MAX && a != NULL && a->magic == RG_ARENA_MAGIC) {
        struct rg_theap *h = rg_theap_of(a);
        if (size <= RG_SMALL_MAX)
            return alloc_small_slow(a, h, rg_size_class(size), size, RG_ALIGN);
        if (h != NULL)
            return alloc_heap(a, h, size);
    }
    return rg_alloc_checked(a, size, RG_ALIGN);
}

/* Everything regal_alloc's fast path does not serve, out of line so that
 * regal_alloc is a leaf with no frame.  A tracked block is announced here,
 * for regal_alloc's caller (site). */
static RG_NOINLINE void *alloc_slow(regal_arena *a, size_t size, const void *site)
{
    if (tracked(a))
        TRACKED_ALLOC_AT(a, size, RG_ALIGN, false, site);
    return rg_alloc_rest(a, size);
}

void *regal_alloc(regal_arena *a, size_t size)
{
    void *p = rg_alloc_fast(a, size);
    if (RG_LIKELY(p != NULL))
        return p;
    /* Called, not jumped to: memcheck's allocation stack keeps regal_alloc. */
    p = alloc_slow(a, size, __builtin_return_address(0));
    __asm__("" : "+r"(p));
    return p;
}

void *regal_aligned_alloc(regal_arena *a, size_t alignment, size_t size)
{
    if (!rg_is_pow2(alignment)) {
        errno = EINVAL;
        return NULL;
    }
    if (alignment < RG_ALIGN)
        alignment = RG_ALIGN;
    if (tracked(a))
        TRACKED_ALLOC(a, size, alignment, false);
    /* A small block whose class is aligned enough comes from the caller's
     * own pages, as regal_alloc's do: under the arena lock, from its shared
     * pages, memalign(16, 64) cost six times malloc(64), and threads
     * serialized on it. */
    void *p = rg_aligned_from(rg_theap_of(a), size, alignment);
    if (p != NULL)
        return p;
    int c = size <= RG_SMALL_MAX && rg_arena_is_live(a) ? rg_aligned_class(size, alignment) : -1;
    if (c < 0)
        return rg_alloc_checked(a, size, alignment);
    return alloc_small_slow(a, rg_theap_of(a), (unsigned)c, size, alignment);
}

/* Makes untracked block p of size bytes, just allocated by the caller,
 * read as zero; a large block's fresh pages already do (calloc(256 MiB)
 * used to make every page resident, as glibc's does not).  A heap block's
 * usable size is read from its header with no lock, as the caller's live
 * block allows: regal_usable_size took the arena lock for it, and threads
 * whose callocs their caches served queued on that lock (rptest). */
static void zero_block(void *p, size_t size)
{
    struct rg_chunk *c = rg_chunk_of(p); /* a large block's own header above RG_HEAP_MAX */
    if (size > RG_HEAP_MAX && c->kind == RG_CHUNK_LARGE)
        rg_large_zero(c);
    else if (c->kind == RG_CHUNK_HEAP)
        memset(p, 0, rg_heap_usable(p));
    else
        memset(p, 0, regal_usable_size(p));
}

RG_NOINLINE void *rg_calloc_rest(regal_arena *a, size_t total)
{
    void *p = rg_alloc_rest(a, total);
    if (p != NULL)
        zero_block(p, total);
    return p;
}

/* What regal_calloc's fast path does not serve, for the caller at site. */
static RG_NOINLINE void *calloc_slow(regal_arena *a, size_t total, const void *site)
{
    if (tracked(a))
        TRACKED_ALLOC_AT(a, total, RG_ALIGN, true, site);
    return rg_calloc_rest(a, total);
}

/* A small block of the caller's theap, its slot cleared, with no lookup of
 * the block after: calloc(1, 64) and free on a shared arena took 219
 * instructions through regal_alloc and zero_block. */
void *regal_calloc(regal_arena *a, size_t count, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = rg_calloc_from(rg_theap_of(a), total);
    if (RG_LIKELY(p != NULL))
        return p;
    /* Called, not jumped to: memcheck's allocation stack keeps regal_calloc. */
    p = calloc_slow(a, total, __builtin_return_address(0));
    __asm__("" : "+r"(p));
    return p;
}

void rg_report_bad_pointer(const char *op, const void *p, enum rg_ref_status st,
                           const struct rg_ref *ref)
{
    if (st == RG_REF_DEAD)
        rg_report(REGAL_ERR_DOUBLE_FREE, p, ref->arena,
                  "%s of %p: block already freed (double free)", op, p);
    else if (rg_handle_contains(p))
        rg_report(REGAL_ERR_INVALID_FREE, p, ref->arena,
                  "%s of %p: a handle block (free its handle with regal_handle_free)", op, p);
    else
        rg_report(REGAL_ERR_INVALID_FREE, p, ref->arena, "%s of %p: not a block regal returned", op,
                  p);
}

static RG_COLD void free_slow(void *p);

regal_arena *rg_block_lock(const void *p, struct rg_ref *ref, enum rg_ref_status *status)
{
    struct rg_chunk *c;
    regal_arena *a = rg_owner(p, &c);
    *status = RG_REF_FOREIGN;
    ref->chunk = NULL;
    ref->page = NULL;
    ref->arena = NULL;
    if (a == NULL)
        return NULL;
    rg_theap_ensure(a);
    rg_arena_lock(a);
    *status = rg_ref_resolve(c, p, ref);
    if (*status == RG_REF_LIVE)
        return a;
    rg_arena_unlock(a);
    return NULL;
}

/* Resolves p and locks its arena; NULL (reported) if p is not a live block. */
static regal_arena *lock_block(const char *op, const void *p, struct rg_ref *ref, bool report)
{
    enum rg_ref_status st;
    regal_arena *a = rg_block_lock(p, ref, &st);
    if (a == NULL && report)
        rg_report_bad_pointer(op, p, st, ref);
    return a;
}

bool rg_owner_tracked(const void *p)
{
    struct rg_chunk *c;
    rg_vg_quiet_begin();
    regal_arena *a = rg_owner(p, &c);
    bool t = a != NULL && rg_arena_tracked(a);
    rg_vg_quiet_end();
    return t;
}

static void free_owned_slow(struct rg_theap *h, struct rg_page *pg, void *p, uint32_t s);

/* A live class slot whose span the caller's theap does not own (or the
 * caller has no theap for a yet): the owner's xfree list. */
static RG_NOINLINE void free_other(regal_arena *a, struct rg_theap *h, struct rg_page *pg, void *p)
{
    if (h == NULL)
        h = rg_theap_bind(a);
    if (h != NULL && __atomic_load_n(&pg->owner, __ATOMIC_RELAXED) == h) {
        free_owned_slow(h, pg, p, rg_slot_index(pg, p));
        return;
    }
    if (h != NULL) {
        rg_free_to_owner(pg, p, &h->st);
    } else { /* the thread is exiting */
        rg_arena_lock(a);
        rg_free_to_owner(pg, p, &a->own.st);
        rg_arena_unlock(a);
    }
}

/* A live slot of a span the caller's theap owns, with slots that other
 * threads freed waiting: collected first, so that p among them is caught
 * as a double free (by the slow path). */
static RG_NOINLINE void free_owned_slow(struct rg_theap *h, struct rg_page *pg, void *p, uint32_t s)
{
    rg_page_absorb(pg);
    if (!rg_bit_test(pg->live, s)) {
        free_slow(p);
        return;
    }
    rg_counters_free(&h->st, 1, pg->slot_size);
    rg_page_push(pg, p, s);
}

/* A live class slot the fast path did not free: another thread's, or with
 * remote frees waiting, or the caller has no theap for its arena yet. */
static RG_NOINLINE void free_class_slow(regal_arena *a, struct rg_page *pg, void *p, uint32_t s)
{
    struct rg_theap *h = rg_theap_of(a);
    if (h != NULL && __atomic_load_n(&pg->owner, __ATOMIC_RELAXED) == h)
        free_owned_slow(h, pg, p, s);
    else
        free_other(a, h, pg, p);
}

/* A block of heap chunk c of untracked arena a: into the caller's cache
 * if it has one (mcache.h), else back to the heap; one look at the chunk
 * for both. */
static RG_NOINLINE void free_heap(regal_arena *a, struct rg_chunk *c, void *p)
{
    struct rg_theap *h = rg_theap_of(a);
    if (h != NULL && h->mcache.on) {
        size_t usable = rg_mcache_free(a, &h->mcache, c, p);
        if (usable != 0) {
            rg_counters_free(&h->st, 1, usable);
            return;
        }
    }
    if (h == NULL)
        h = rg_theap_ensure(a); /* count in the caller's theap; NULL when exiting */
    lock_heap(a, h);
    enum rg_hblock_status st = rg_heap_status(c, p);
    if (st == RG_HB_LIVE) {
        rg_counters_free(h != NULL ? &h->st : &a->own.st, 1, rg_heap_usable(p));
        rg_heap_free(a, p);
    }
    rg_arena_unlock(a);
    if (st != RG_HB_LIVE) {
        struct rg_ref ref = {.chunk = c, .page = NULL, .arena = a};
        rg_report_bad_pointer("free", p, st == RG_HB_DEAD ? RG_REF_DEAD : RG_REF_FOREIGN, &ref);
    }
}

/* The fast path is fast.h's, rg_free_remote the next; every other case
 * starts here, with the class span rg_free_fast found: p is at a slot
 * boundary of pg. */
RG_NOINLINE void rg_free_rest(void *p, struct rg_page *pg)
{
    struct rg_chunk *c = rg_chunk_of(p);
    uint32_t s = pg != NULL ? rg_slot_index(pg, p) : 0;
    if (pg != NULL && (!RG_CHECKS || rg_bit_test(pg->live, s)))
        free_class_slow(c->arena, pg, p, s);
    else if (rg_in_untracked_chunk(p, RG_CHUNK_HEAP))
        free_heap(c->arena, c, p);
    else
        free_slow(p);
}

/* Past the fast path: both steps out of line, so regal_free has no frame. */
static RG_NOINLINE void free_rest(void *p, struct rg_page *pg)
{
    if (pg == NULL || !rg_free_remote(p, pg))
        rg_free_rest(p, pg);
}

/* The fast path inlined here, the public entry point; the engine's own
 * callers (realloc, track.c) take one jump more. */
void regal_free(void *p)
{
    struct rg_page *pg;
    if (RG_LIKELY(rg_free_fast(p, &pg)))
        return;
    free_rest(p, pg);
}

void rg_free_checked(void *p)
{
    regal_free(p);
}

void rg_free_uncounted(void *p)
{
    struct rg_ref ref;
    regal_arena *a = lock_block("free", p, &ref, true);
    if (a == NULL)
        return;
    rg_ref_free(&ref, p);
    rg_arena_unlock(a);
}

static RG_COLD void free_slow(void *p)
{
    if (p == NULL)
        return;
    if (rg_owner_tracked(p)) {
        rg_track_free(p);
        return;
    }
    struct rg_ref ref;
    regal_arena *a = lock_block("free", p, &ref, true);
    if (a == NULL)
        return;
    rg_stats_free(a, rg_ref_usable(&ref, p));
    rg_ref_free(&ref, p);
    rg_arena_unlock(a);
}

RG_NOINLINE size_t rg_usable_size_slow(const void *p)
{
    if (p == NULL)
        return 0;
    /* A live heap block's header tells its size with no lock: threads that
     * ask the size of every block do not queue on the arena's lock. */
    size_t n = rg_in_untracked_chunk(p, RG_CHUNK_HEAP) ? rg_heap_live_usable(rg_chunk_of(p), p) : 0;
    if (n != 0)
        return n;
    if (rg_owner_tracked(p))
        return rg_track_usable(p);
    struct rg_ref ref;
    regal_arena *a = lock_block("usable_size", p, &ref, true);
    if (a == NULL)
        return 0;
    n = rg_ref_usable(&ref, p);
    rg_arena_unlock(a);
    return n;
}

/* A leaf for small blocks, with no frame: programs that count their memory
 * ask for the size of every block they allocate and free (redis does,
 * through malloc_usable_size: as many calls as mallocs and frees). */
size_t regal_usable_size(const void *p)
{
    struct rg_page *pg = rg_class_block(p); /* no lock for small blocks */
    if (RG_LIKELY(pg != NULL))
        return pg->slot_size;
    return rg_usable_size_slow(p);
}

regal_arena *regal_arena_of(const void *p)
{
    if (rg_owner_tracked(p))
        return rg_track_owner(p);
    struct rg_ref ref;
    rg_vg_quiet_begin();
    regal_arena *a = lock_block("arena_of", p, &ref, false);
    if (a != NULL)
        rg_arena_unlock(a);
    rg_vg_quiet_end();
    return a;
}

/* Moves live block p (locked in its arena `from`, usable bytes old) into a
 * new block of arena a; unlocks `from`. */
static void *realloc_move(regal_arena *a, regal_arena *from, struct rg_ref *ref, void *p,
                          size_t old, size_t size)
{
    void *n;
    if (from == a) {
        size_t usable;
        n = rg_arena_alloc(a, size, RG_ALIGN, &usable);
        if (n == NULL) {
            rg_arena_unlock(from);
            return NULL;
        }
        rg_stats_alloc(a, usable, size);
    } else {
        rg_arena_unlock(from); /* never hold two arena locks */
        n = regal_alloc(a, size);
        if (n == NULL)
            return NULL;
        regal_arena *again = lock_block("realloc", p, ref, true);
        if (again != from) { /* p went away meanwhile */
            if (again != NULL)
                rg_arena_unlock(again);
            regal_free(n);
            return NULL;
        }
        old = rg_ref_usable(ref, p);
    }
    memcpy(n, p, old < size ? old : size);
    rg_stats_free(from, old);
    rg_ref_free(ref, p);
    rg_arena_unlock(from);
    return n;
}

/* Moves class block p of arena a (slot s of span pg) to a new block of a
 * by the paths malloc and free take: no arena lock, the new block from the
 * caller's own spans, and p's span already known.  Moving under the lock
 * (realloc_move) took it from the arena's shared spans, whose later frees
 * all went the remote way (sqlite3 reallocs about a million small blocks
 * across classes). */
static void *realloc_class_move(regal_arena *a, struct rg_page *pg, uint32_t s, void *p,
                                size_t size)
{
    if (!size_is_sane(size))
        return NULL;
    size_t old = pg->slot_size; /* p is live: its span stays */
    void *n = rg_alloc_fast(a, size);
    if (n == NULL && (n = regal_alloc(a, size)) == NULL)
        return NULL;
    memcpy(n, p, old < size ? old : size);
    if (!rg_free_slot_fast(pg, p, s))
        rg_free_checked(p);
    return n;
}

void *rg_realloc_class(struct rg_page *pg, uint32_t s, void *p, size_t size)
{
    regal_arena *a = rg_chunk_of(p)->arena;
    size_t slot = pg->slot_size;
    if (size > RG_SMALL_MAX || rg_class_size[rg_size_class_small(size)] != slot)
        return realloc_class_move(a, pg, s, p, size);
    struct rg_theap *h = rg_theap_of(a);
    if (RG_LIKELY(h != NULL)) {
        rg_counters_resize(&h->st, slot, slot, size);
        return p;
    }
    rg_arena_lock(a);
    rg_stats_resize(a, slot, slot, size);
    rg_arena_unlock(a);
    return p;
}

void *regal_realloc(regal_arena *a, void *p, size_t size)
{
    if (p == NULL)
        return regal_alloc(a, size);
    uint32_t s;
    struct rg_page *pg = rg_live_slot(p, RG_PAGE_CLASS, &s); /* untracked arenas only */
    if (pg != NULL && rg_chunk_of(p)->arena == a)
        return rg_realloc_class(pg, s, p, size);
    if (!arena_is_usable(a) || !size_is_sane(size))
        return NULL;
    if (rg_arena_tracked(a) || rg_owner_tracked(p))
        return rg_track_realloc(a, p, size, __builtin_return_address(0));
    struct rg_ref ref;
    regal_arena *from = lock_block("realloc", p, &ref, true);
    if (from == NULL) {
        errno = EINVAL;
        return NULL;
    }
    size_t old = rg_ref_usable(&ref, p);
    void *kept = from == a ? rg_ref_resize(&ref, p, size) : NULL;
    if (kept != NULL) { /* in place, or its pages moved: not a copy */
        ref.chunk = rg_chunk_of(kept);
        rg_stats_resize(a, old, rg_ref_usable(&ref, kept), size);
        rg_arena_unlock(a);
        return kept;
    }
    return realloc_move(a, from, &ref, p, old, size);
}

size_t regal_arena_trim(regal_arena *a)
{
    if (!arena_is_usable(a))
        return 0;
    rg_vg_quiet_begin();
    rg_arena_lock(a);
    rg_theap_flush_caches(a);
    size_t n = rg_arena_trim_locked(a);
    rg_arena_unlock(a);
    rg_vg_quiet_end();
    return n;
}
