/* regal_arena: owns chunks, routes requests to pages, heap or large. */
#ifndef RG_ARENA_H
#define RG_ARENA_H

#include <pthread.h>
#include <sys/single_threaded.h>

#include "handle.h"
#include "heap.h"
#include "page.h"
#include "regal.h"
#include "theap.h"
#include "vg.h"

#define RG_ARENA_MAGIC 0x6172656eu /* "aren" */
/* Internal flag: the arena's blocks are tracked (src/track.c). */
#define RG_ARENA_TRACKED (1u << 31)
#define RG_NAME_MAX      32
#define RG_SINGLE_MAGIC  0x73696e67u /* "sing" */

/* An arena is the header of its home chunk, a pages chunk that stays with
 * it until destroy: the arena pointer is the chunk's address (a start
 * pointer for Valgrind's leak checker, see vg.h). */
struct regal_arena {
    struct rg_pages_chunk home; /* must stay first */
    uint32_t magic;             /* RG_ARENA_MAGIC while alive */
    uint32_t single;            /* RG_SINGLE_MAGIC while alive, single-thread, untracked */
    unsigned flags;             /* REGAL_ARENA_* */
    bool is_default;            /* regal_default_arena(): never destroyed */
    char name[RG_NAME_MAX];     /* "" when unnamed */
    size_t limit;               /* 0 = none */
    /* The lock (unused with REGAL_ARENA_SINGLE_THREAD) starts a cache
     * line: the fields above are read by every thread's fast paths
     * (single, flags), those below are written under the lock, and a lock
     * taken by one thread would otherwise evict the line the others read.
     * Padded by hand, not aligned(64): the arena would then require that
     * alignment, which a pointer the API is asked to check need not have. */
    uint64_t pad_to_lock[2];
    pthread_mutex_t lock;
    size_t mapped;                 /* committed bytes, checked against limit */
    struct rg_chunk *pages;        /* pages chunks, home first */
    struct rg_chunk *heaps;        /* heap chunks */
    struct rg_chunk *large;        /* live large blocks */
    struct rg_cached *large_cache; /* freed large mappings kept for reuse (large.c) */
    size_t large_cache_cap;        /* entries the array has room for */
    size_t large_cache_count;
    size_t large_cache_bytes;
    struct rg_theap *theaps;  /* the threads' theaps of this arena (theap.h) */
    size_t peak_floor;        /* highest summed peak seen when a theap left */
    size_t peak_mapped;       /* highest mapped since create or reset: bounds the peak */
    struct rg_pageq meta;     /* the arena's own objects: pools */
    struct regal_pool *pools; /* live pools */
    struct rg_heap heap;
    struct regal_arena *next_arena; /* every live arena, for fork (arena.c) */
    struct regal_arena *prev_arena;
    /* The purge policy (purge.c). */
    size_t dirty;          /* free bytes still committed (invariant 4 of arena.c) */
    size_t purged;         /* bytes purged or trimmed since create */
    uint64_t dirty_since;  /* rg_os_now_ms() when dirty memory was first seen; 0 = not yet */
    uint64_t purge_delay;  /* ms; RG_PURGE_DELAY_OFF */
    size_t purge_cap;      /* bytes; RG_PURGE_CAP_AUTO, RG_PURGE_CAP_OFF */
    unsigned keep_shift;   /* the floors of the cap and the large cache, doubled this often */
    size_t fresh_total;    /* bytes ever committed fresh: mapped's increases */
    size_t bound_released; /* released by those bounds since the last judgment; 0: none */
    size_t bound_mark;     /* fresh_total at the first of those releases */
    size_t bound_in_use;   /* the least in_use seen at them */
    /* Per class, the free spans whose slots can be taken again as they
     * were freed (page.c, invariant 7), the last given back first. */
    struct rg_page *revive[RG_CLASS_COUNT];
    /* Every field above and own's head are written when an arena is made
     * or used; own's cache bins never (own never caches, mcache.h), the
     * handles only by programs that use them.  Those two come last, so an
     * arena faults in two OS pages of itself, not three
     * (test_api_arena.c, arena_touches_two_pages_of_itself). */
    struct rg_theap own;       /* spans no thread owns; the counters of the locked paths */
    struct rg_handles handles; /* relocatable blocks (handle.c) */
};

static_assert(sizeof(struct regal_arena) <= RG_DESC_OFFSET,
              "the arena fits before the page descriptors");
static_assert(offsetof(struct regal_arena, lock) % 64 == 0, "the lock starts a cache line");

RG_INLINE struct rg_chunk *rg_arena_home(regal_arena *a)
{
    return &a->home.base;
}

/* No lock for single-thread arenas, nor while the process has one thread
 * (glibc's __libc_single_threaded: it turns false before a second thread
 * starts and only this thread could start one, so a lock and its unlock
 * always agree).  fork handlers lock unconditionally (arena.c). */
RG_INLINE bool rg_arena_needs_lock(const regal_arena *a)
{
    return !(a->flags & REGAL_ARENA_SINGLE_THREAD) && !__libc_single_threaded;
}

RG_INLINE void rg_arena_lock(regal_arena *a)
{
    if (rg_arena_needs_lock(a))
        pthread_mutex_lock(&a->lock);
}

RG_INLINE void rg_arena_unlock(regal_arena *a)
{
    if (rg_arena_needs_lock(a))
        pthread_mutex_unlock(&a->lock);
}

/* The calling thread's theap of a, if it has one already: the arena's own
 * for an untracked single-thread arena, else the thread's cache (NULL on a
 * miss).  A hit means a is a live, untracked arena: a cached theap's arena
 * is a live arena or RG_ORPHAN, and tracked arenas have no theaps.  A may
 * be NULL. */
RG_INLINE struct rg_theap *rg_theap_of(regal_arena *a)
{
    if (a != NULL && a->single == RG_SINGLE_MAGIC)
        return &a->own;
    struct rg_theap *h = *rg_tl_slot(a);
    return RG_LIKELY(h != NULL && __atomic_load_n(&h->arena, __ATOMIC_RELAXED) == a) ? h : NULL;
}

/* Where the locked paths count: the caller's theap if it has one, so that
 * a program with one thread keeps exact figures (peak included). */
RG_INLINE struct rg_counters *rg_counters_of(regal_arena *a)
{
    struct rg_theap *h = rg_theap_of(a);
    return h != NULL ? &h->st : &a->own.st;
}

/* Whether a points to a live arena (its header is NOACCESS under
 * Valgrind, so the read is quiet). */
RG_INLINE bool rg_arena_is_live(const regal_arena *a)
{
    rg_vg_quiet_begin();
    bool live = a != NULL && a->magic == RG_ARENA_MAGIC;
    rg_vg_quiet_end();
    return live;
}

RG_INLINE bool rg_arena_tracked(const regal_arena *a)
{
    return (a->flags & RG_ARENA_TRACKED) != 0;
}

/* Counts bytes [from, to) of chunk c (offsets from c) as committed; false
 * (nothing changed) when that would pass the arena's limit even after
 * dropping its caches.  Runs the purge policy first when fresh memory is
 * needed.  was_dirty: the range is free memory counted as dirty (free
 * pages becoming a span), and what of it is still committed stops counting
 * so. */
bool rg_arena_commit(regal_arena *a, struct rg_chunk *c, size_t from, size_t to, bool was_dirty);
bool rg_arena_commit_bytes(regal_arena *a, size_t bytes);
void rg_arena_uncommit(regal_arena *a, size_t bytes);

/* Dirty memory: free memory that stays committed (free spans and the pages
 * above a pages chunk's top, the pages inside free heap blocks, cached large
 * mappings) until the purge policy (purge.c) gives it back.  page.c, heap.c
 * and large.c add to a->dirty when such memory becomes free and subtract
 * when it is used again. */
RG_INLINE void rg_arena_dirty_add(regal_arena *a, size_t bytes)
{
    a->dirty += bytes;
}

RG_INLINE void rg_arena_dirty_sub(regal_arena *a, size_t bytes)
{
    RG_ASSERT(a->dirty >= bytes);
    a->dirty -= bytes;
    if (a->dirty == 0)
        a->dirty_since = 0;
}

/* Dirty bytes given back to the OS: no longer dirty nor committed. */
void rg_arena_purged(regal_arena *a, size_t bytes);

/* A new chunk of the kind, linked into the arena; NULL at the limit or when
 * the OS refuses. */
struct rg_chunk *rg_arena_add_chunk(regal_arena *a, enum rg_chunk_kind kind);
/* Unlinks and frees an empty chunk; bytes it had committed. */
size_t rg_arena_remove_chunk(regal_arena *a, struct rg_chunk *c);

/* Calls fn for every live block of the arena (lock held). */
void rg_arena_visit(regal_arena *a, rg_visit_fn fn, void *ctx);

/* Engine entry points, called with the lock held (see alloc.c).  A block
 * of at least size bytes aligned to align (a power of two); NULL + ENOMEM.
 * *usable receives its usable size. */
void *rg_arena_alloc(regal_arena *a, size_t size, size_t align, size_t *usable);
size_t rg_arena_trim_locked(regal_arena *a);

/* The arena owning the chunk of p, or NULL; reads only the chunk map and
 * headers of regal's own chunks, so any pointer value is safe.  No lock. */
regal_arena *rg_owner(const void *p, struct rg_chunk **chunk);

/* What p is inside chunk c of its owner (call with the owner's lock held). */
enum rg_ref_status { RG_REF_LIVE, RG_REF_DEAD, RG_REF_FOREIGN };
struct rg_ref {
    struct rg_chunk *chunk;
    struct rg_page *page; /* pages chunks */
    regal_arena *arena;
};
enum rg_ref_status rg_ref_resolve(struct rg_chunk *c, const void *p, struct rg_ref *ref);
size_t rg_ref_usable(const struct rg_ref *ref, const void *p);
void rg_ref_free(const struct rg_ref *ref, void *p);
/* Resizes p to size bytes without copying it: p, or the new address of a
 * large block whose pages moved; NULL if the block must be copied. */
void *rg_ref_resize(const struct rg_ref *ref, void *p, size_t size);

/* The block API without the Valgrind mode (alloc.c), for track.c. */
void *rg_alloc_checked(regal_arena *a, size_t size, size_t align);
void rg_free_checked(void *p);
/* regal_alloc, regal_calloc (of total bytes) and regal_free past their
 * fast paths (fast.h), for a caller that ran those already (the shim); the
 * first two take no tracked arena. */
void *rg_alloc_rest(regal_arena *a, size_t size);
void *rg_calloc_rest(regal_arena *a, size_t total);
/* A free that neither rg_free_fast nor rg_free_remote (fast.h) finished;
 * pg: the class span rg_free_fast found (NULL: none). */
void rg_free_rest(void *p, struct rg_page *pg);
/* realloc of p, live slot s of class span pg of an untracked arena, in
 * that arena (alloc.c; the shim's realloc calls it directly). */
void *rg_realloc_class(struct rg_page *pg, uint32_t s, void *p, size_t size);
/* Frees a live block without counting it in the statistics (track.c counts
 * a block when it enters the quarantine). */
void rg_free_uncounted(void *p);
/* Locks p's arena if p is a live block and returns it with the block's
 * reference; otherwise reports nothing and returns NULL with *status set. */
regal_arena *rg_block_lock(const void *p, struct rg_ref *ref, enum rg_ref_status *status);
/* regal_usable_size of anything but a live class block of an untracked
 * arena (which rg_class_block, fast.h, answers): 0 for NULL, and 0 with a
 * report for what is not a live block. */
size_t rg_usable_size_slow(const void *p);
/* Whether p lies in a chunk of a tracked arena (quiet, any pointer). */
bool rg_owner_tracked(const void *p);
/* Reports what p is (it was not a live block) for operation op. */
void rg_report_bad_pointer(const char *op, const void *p, enum rg_ref_status st,
                           const struct rg_ref *ref);

#endif
