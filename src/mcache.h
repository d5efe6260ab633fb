/*
 * Thread caches of freed heap blocks ("mcache"): a thread that frees a
 * medium block of a shared arena keeps it, and its next request of about
 * that size takes it back, with no arena lock.  Small blocks need none
 * (per-thread spans, page.c); heap blocks otherwise all take the arena
 * lock, and threads that churn medium blocks wait on each other there.
 *
 * A cached block stays a used block of the heap, marked RG_HB_CACHED in
 * its header (heap.h), so a second free of it is still a double free and
 * its neighbours never merge with it; it counts as free in the statistics
 * (counted out when cached, in again when handed out).  A thread starts
 * caching once it found the arena lock taken (alloc.c): until threads
 * contend, the heap's own path costs about as much, keeps every free block
 * where any size can use it, and lets the purge policy see it (a cached
 * block is neither dirty nor purged until it goes back).
 *
 * Bounds: blocks below 2^RG_MCACHE_MAX_SHIFT bytes, RG_MCACHE_DEPTH per bin
 * and RG_MCACHE_BYTES in all per thread; past them half of every bin goes
 * back to the heap, the lock taken bin by bin: held for all bins at once,
 * it was the longest hold of bench/mstress, and its waiters slept (1315
 * context switches a run, 350 to 460 now).  What goes back: everything
 * when the thread exits (theap.c), when its own trim runs or on its next cache
 * operation after another thread's trim (rg_mcache_request_flush), and on
 * its own allocation failure (the arena's limit).  Arena reset and destroy
 * orphan the theap, and with it its cache, untouched.
 */
#ifndef RG_MCACHE_H
#define RG_MCACHE_H

#include "common.h"

#define RG_MCACHE_MIN_SHIFT 13 /* bins start at 8 KiB blocks (the heap's smallest) */
#define RG_MCACHE_MAX_SHIFT 18 /* blocks below 256 KiB */
#define RG_MCACHE_STEPS_LOG 3  /* 8 bins per power of two */
#define RG_MCACHE_BINS      ((RG_MCACHE_MAX_SHIFT - RG_MCACHE_MIN_SHIFT) << RG_MCACHE_STEPS_LOG)
#define RG_MCACHE_DEPTH     8
/* A request takes a block of its own bin or of the RG_MCACHE_REACH bins
 * above: at most 3/8 more than it asked.  On bench/mstress (4 threads) a
 * reach of 1 served 67% of the requests from the cache, 2 served 76%; 4 MiB
 * a thread instead of 2 served 83%.  4 MiB it is: mstress 0.513 -> 0.466 s
 * (11 interleaved runs; mimalloc 0.374) for a peak RSS of 112.9 MiB, not
 * 100.0 (mimalloc 163.0); 8 MiB gained 2% more for 6 MiB more. */
#define RG_MCACHE_REACH 2
#define RG_MCACHE_BYTES ((size_t)4 << 20)

struct rg_mcache_bin {
    uint32_t count;
    uint32_t bsize[RG_MCACHE_DEPTH]; /* block bytes, so a search reads no block */
    void *blocks[RG_MCACHE_DEPTH];   /* user pointers; [count - 1] freed last */
};

/* Until the cache is on, its bins are neither read nor written: a thread
 * that never contends never faults in their 4 KiB (rg_theap_init clears
 * the head, rg_mcache_start the bins). */
struct rg_mcache {
    bool on;        /* the owner found the arena lock taken: it caches from now on */
    size_t bytes;   /* block bytes cached */
    bool flush_req; /* atomic: another thread's trim asks for everything back */
    struct rg_mcache_bin bins[RG_MCACHE_BINS]; /* last: see above */
};

struct regal_arena;
struct rg_chunk;

/* Turns m's cache on, its bins empty (the owner, once). */
void rg_mcache_start(struct rg_mcache *m);
/* A cached block for a request of size bytes, or NULL; *usable receives
 * its usable size.  The caller owns m and a needs its lock. */
void *rg_mcache_alloc(struct regal_arena *a, struct rg_mcache *m, size_t size, size_t *usable);
/* Caches heap block p of chunk c (arena a): its usable bytes, or 0 when p
 * is not cacheable (too big, or not a live block as far as a look with no
 * lock can tell; the caller takes the locked path, which reports). */
size_t rg_mcache_free(struct regal_arena *a, struct rg_mcache *m, struct rg_chunk *c, void *p);
/* Hands every cached block back to the heap (caller holds a's lock); none
 * while the cache is off. */
void rg_mcache_flush(struct regal_arena *a, struct rg_mcache *m);
/* Asks m's owner to flush on its next cache operation (any thread). */
void rg_mcache_request_flush(struct rg_mcache *m);

#endif
