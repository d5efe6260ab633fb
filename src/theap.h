/*
 * Thread heaps: per-thread state of a shared arena.
 *
 * Every class span has an owner, the thread heap (theap) whose queue holds
 * it.  A thread that uses a shared arena gets a theap of its own for it and
 * allocates from and frees to its spans with no lock and no atomic
 * read-modify-write.  A slot freed by another thread goes onto its span's
 * xfree list (page.c), which the owner collects when it runs short.  The
 * arena's own theap (arena->own) holds the spans no thread owns: spans of
 * exited threads, and spans filled by the locked paths (aligned requests,
 * realloc); the arena lock guards it, and for a REGAL_ARENA_SINGLE_THREAD
 * arena it is the only theap, used by the one thread at a time.
 *
 * Lifetime: a theap is made on a thread's first allocation or free in the
 * arena and handed back when the thread exits: its spans go to arena->own
 * (empty ones to their chunk), where other threads adopt them, and its
 * cached heap blocks (mcache.h) go back to the heap.  Arena reset and
 * destroy orphan every theap of the arena (arena RG_ORPHAN, class queues
 * emptied, so that a fast path that does not look at the arena finds
 * nothing to serve): the owning thread drops it on its next use, without
 * touching its spans.  Theaps are never unmapped (recycled through a free
 * list), so a late write by another thread never faults.
 */
#ifndef RG_THEAP_H
#define RG_THEAP_H

#include "mcache.h"
#include "page.h"

struct regal_arena;

/* blocks_in_use is alloc_count - free_count.  A theap counts what its
 * thread allocates and frees (a free of another thread's block included),
 * so one theap's in_use may be negative (compared signed); the arena sums
 * them. */
struct rg_counters {
    size_t in_use, peak_in_use;
    size_t requested_total, free_count, alloc_count; /* not adjacent: no vector add */
};

struct rg_tl;

/* theap.arena of an orphaned theap (never NULL: no arena pointer matches). */
#define RG_ORPHAN ((struct regal_arena *)1)
/* theap.thread of the one theap of an untracked single-thread arena: any
 * thread that calls may use it. */
#define RG_ANY_THREAD ((struct rg_tl *)1)

struct rg_theap {
    struct rg_pageq classes[RG_CLASS_COUNT];
    struct rg_counters st;
    struct regal_arena *arena; /* atomic; RG_ORPHAN when orphaned */
    struct rg_theap *next;     /* the arena's theaps (arena lock) */
    struct rg_theap *prev;
    struct rg_theap *next_of_thread; /* the thread's theaps, or the free list */
    struct rg_tl *thread;            /* the owning thread's record; for arena->own NULL, or
                                        RG_ANY_THREAD in an untracked single-thread arena */
    /* Last: the 4 KiB of its bins stay untouched until the cache is on. */
    struct rg_mcache mcache; /* freed heap blocks (mcache.h); never on in arena->own */
};

/* Per-thread record: a direct-mapped cache from arena to theap (an entry
 * is valid while its theap's arena is the arena looked up: reset and
 * destroy orphan theaps, and only their own thread reuses them), and the
 * thread's theaps. */
#define RG_TL_WAYS 8
struct rg_tl {
    struct rg_theap *cache[RG_TL_WAYS];
    struct rg_theap *default_theap; /* of regal_default_arena(), for the shim */
    struct rg_theap *theaps;
    bool registered; /* the exit destructor is armed */
    bool exiting;    /* the destructor ran: no new theap */
};

extern __thread struct rg_tl rg_tl __attribute__((tls_model("initial-exec")));

RG_INLINE struct rg_theap **rg_tl_slot(const struct regal_arena *a)
{
    return &rg_tl.cache[((uintptr_t)a >> RG_CHUNK_SHIFT) % RG_TL_WAYS];
}

void rg_theap_init(struct rg_theap *h, struct regal_arena *a);
/* The calling thread's theap of shared arena a, made if needed (call with
 * no lock held); NULL when the thread is exiting or out of memory. */
struct rg_theap *rg_theap_bind(struct regal_arena *a);
/* Hands every span of h to a->own and its cached heap blocks to the heap
 * (caller holds a's lock); counters too. */
void rg_theap_abandon(struct regal_arena *a, struct rg_theap *h);
/* Trim: the caller's cached heap blocks go back to the heap at once, every
 * other thread's at its next cache operation (caller holds a's lock). */
void rg_theap_flush_caches(struct regal_arena *a);
/* Orphans every theap of a (reset, destroy; caller holds a's lock). */
void rg_theap_orphan_all(struct regal_arena *a);
/* In a fork child: abandons the theaps of threads that are gone. */
void rg_theap_fork_child(struct regal_arena *a);
/* The calling thread's theap of a, made if a is shared and untracked and
 * the thread has none yet (call with no lock held); NULL otherwise. */
struct rg_theap *rg_theap_ensure(struct regal_arena *a);
/* Figures summed over a's theaps (caller holds a's lock); peak_in_use is
 * exact for one thread, an upper bound (the sum of the threads' own peaks)
 * for several. */
size_t rg_arena_peak(struct regal_arena *a);
void rg_arena_counters(struct regal_arena *a, struct rg_counters *out);
size_t rg_arena_in_use(const struct regal_arena *a);
/* Serialises thread exit against arena destroy (arena.c's registry lock). */
void rg_registry_lock(void);
void rg_registry_unlock(void);

#endif
