/* regal_pool: the page machinery dedicated to one user-chosen object size. */
#ifndef RG_POOL_H
#define RG_POOL_H

#include "page.h"
#include "regal.h"

#define RG_POOL_MAGIC 0x706f6f6cu /* "pool" */
#define RG_POOL_FAST  0x66617374u /* "fast" */

struct rg_counters;

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
};

#define RG_POOL_OPEN offsetof(struct regal_pool, arena)

/* regal_pool_alloc without the Valgrind mode (for track.c). */
void *rg_pool_alloc_checked(regal_pool *p);

#endif
