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
    rg_arena_lock(a);
    void *p = rg_arena_alloc(a, size, align, &usable);
    if (p != NULL)
        rg_stats_alloc(a, usable, size);
    rg_arena_unlock(a);
    return p;
}

/* A block of a tracked arena, announced here: inlined into each entry point
 * so memcheck's allocation stack starts at the entry point. */
#define TRACKED_ALLOC(a, size, align, zero)                                                        \
    do {                                                                                           \
        void *tracked_ =                                                                           \
            rg_track_alloc((a), (size), (align), (zero), __builtin_return_address(0));             \
        rg_vg_block_alloc(tracked_, (size), (zero));                                               \
        return tracked_;                                                                           \
    } while (0)

static bool tracked(regal_arena *a)
{
    return rg_arena_is_live(a) && rg_arena_tracked(a);
}

/* The fast path: a small request served from the first span of its class
 * queue; anything else goes through the checked path. */
void *regal_alloc(regal_arena *a, size_t size)
{
    if (RG_LIKELY(size <= RG_SMALL_MAX && a != NULL && a->magic == RG_ARENA_MAGIC &&
                  !rg_arena_tracked(a))) {
        unsigned c = rg_size_class(size);
        bool locked = rg_arena_needs_lock(a);
        if (locked)
            pthread_mutex_lock(&a->lock);
        struct rg_page *pg = a->classes[c].avail;
        if (RG_LIKELY(pg != NULL && pg->free != NULL)) {
            void *p = rg_page_pop(pg);
            rg_stats_alloc(a, pg->slot_size, size);
            if (locked)
                pthread_mutex_unlock(&a->lock);
            return p;
        }
        if (locked)
            pthread_mutex_unlock(&a->lock);
    }
    if (tracked(a))
        TRACKED_ALLOC(a, size, RG_ALIGN, false);
    return rg_alloc_checked(a, size, RG_ALIGN);
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
    return rg_alloc_checked(a, size, alignment);
}

void *regal_calloc(regal_arena *a, size_t count, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (tracked(a))
        TRACKED_ALLOC(a, total, RG_ALIGN, true);
    void *p = regal_alloc(a, total);
    if (p != NULL)
        memset(p, 0, regal_usable_size(p));
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

void regal_free(void *p)
{
    rg_free_checked(p);
}

/* The fast path: a live slot of a class or pool span of an arena that is
 * not tracked (a tracked block never starts a slot, so it fails the slot
 * check anyway; the flag test makes that independent of the layout). */
void rg_free_checked(void *p)
{
    struct rg_chunk *c = rg_chunk_of(p);
    if (RG_LIKELY(p != NULL && rg_chunk_is_mapped(p) && c->magic == RG_CHUNK_MAGIC &&
                  c->kind == RG_CHUNK_PAGES && !rg_arena_tracked(c->arena))) {
        regal_arena *a = c->arena;
        bool locked = rg_arena_needs_lock(a);
        if (locked)
            pthread_mutex_lock(&a->lock);
        struct rg_page *pg = rg_page_free_fast(c, p);
        if (pg != NULL)
            rg_stats_free(a, pg->slot_size);
        if (locked)
            pthread_mutex_unlock(&a->lock);
        if (pg != NULL)
            return;
    }
    free_slow(p);
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

size_t regal_usable_size(const void *p)
{
    if (p == NULL)
        return 0;
    if (rg_owner_tracked(p))
        return rg_track_usable(p);
    struct rg_ref ref;
    regal_arena *a = lock_block("usable_size", p, &ref, true);
    if (a == NULL)
        return 0;
    size_t n = rg_ref_usable(&ref, p);
    rg_arena_unlock(a);
    return n;
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
        if (lock_block("realloc", p, ref, true) != from) { /* p went away meanwhile */
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

void *regal_realloc(regal_arena *a, void *p, size_t size)
{
    if (p == NULL)
        return regal_alloc(a, size);
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
    if (from == a && rg_ref_resize(&ref, p, size)) {
        rg_stats_resize(a, old, rg_ref_usable(&ref, p), size);
        rg_arena_unlock(a);
        return p;
    }
    return realloc_move(a, from, &ref, p, old, size);
}

size_t regal_arena_trim(regal_arena *a)
{
    if (!arena_is_usable(a))
        return 0;
    rg_vg_quiet_begin();
    rg_arena_lock(a);
    size_t n = rg_arena_trim_locked(a);
    rg_arena_unlock(a);
    rg_vg_quiet_end();
    return n;
}
