/* regal_pool: the page machinery dedicated to one user-chosen object size. */
#ifndef RG_POOL_H
#define RG_POOL_H

#include "page.h"
#include "regal.h"

#define RG_POOL_MAGIC 0x706f6f6cu /* "pool" */
#define RG_POOL_FAST  0x66617374u /* "fast" */

struct rg_counters;

/* A fast pool's hot stack: the objects freed last, handed out again
 * first, warm in the cache, with no page free list or refill on the way.
 * A stacked object is free for the statistics and its live bit (so a
 * second free is a double free), but still counted in its span's used
 * (page.c invariant 2), so its span stays.  At most RG_POOL_HOT objects
 * and RG_POOL_HOT_BYTES of them; regal_pool_reset, regal_pool_destroy and
 * regal_arena_trim put them back on their spans. */
#define RG_POOL_HOT       16
#define RG_POOL_HOT_BYTES ((size_t)32 << 10)

/* The stack is three arrays, not an array of entries: each entry's
 * fields are then one indexed move away, with no multiply by an entry's
 * size (two instructions fewer in each of free and alloc). */
struct rg_pool_hot {
    void *obj[RG_POOL_HOT];
    struct rg_page *pg[RG_POOL_HOT]; /* obj's span */
    uint32_t slot[RG_POOL_HOT];      /* obj's slot in it */
};

struct regal_pool {
    uint32_t magic; /* RG_POOL_MAGIC while alive */
    uint32_t fast;  /* RG_POOL_FAST while alive in an untracked single-thread arena:
                       the fast paths (pool.c) need no lock */
    /* Above: readable under memcheck (RG_POOL_OPEN bytes), the rest NOACCESS. */
    struct regal_arena *arena; /* owner */
    struct rg_counters *st;    /* the arena's own counters (those of the fast paths) */
    size_t object_size;        /* as asked; slots are q.slot_size */
    uint32_t track_offset;     /* tracked arenas: object offset in its slot */
    struct rg_pageq q;
    struct regal_pool *next; /* the arena's live pools */
    struct regal_pool *prev;
    uint32_t hot_cap; /* 0 unless fast */
    uint32_t hot_n;
    struct rg_pool_hot hot; /* entry hot_n - 1 freed last */
};

#define RG_POOL_OPEN offsetof(struct regal_pool, arena)

/* regal_pool_alloc without the Valgrind mode (for track.c). */
void *rg_pool_alloc_checked(regal_pool *p);
/* Puts the hot stack's objects back on their spans' free lists (the
 * caller may change p's queue). */
void rg_pool_flush_hot(regal_pool *p);
/* Objects of span pg that its pool holds in its hot stack (0 for a span
 * of any other kind). */
uint32_t rg_pool_held(const struct rg_page *pg);
/* Whether every entry of p's hot stack is a freed object of p's. */
bool rg_pool_hot_is_valid(regal_pool *p);

#endif
