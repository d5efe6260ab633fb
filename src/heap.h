/*
 * The free-list heap: medium blocks with boundary tags in heap chunks,
 * segregated free lists under a two-level bitmap (TLSF-style), splitting on
 * allocation, immediate coalescing on free.
 */
#ifndef RG_HEAP_H
#define RG_HEAP_H

#include "chunk.h"

/* Free lists: first level = floor(log2(block size)) from 2^RG_FL_MIN,
 * second level = RG_SL_COUNT linear steps inside each power of two. */
#define RG_FL_MIN   6  /* smallest free block: 64 bytes */
#define RG_FL_MAX   22 /* blocks are below 4 MiB (one chunk) */
#define RG_FL_COUNT (RG_FL_MAX - RG_FL_MIN + 1)
#define RG_SL_LOG2  4
#define RG_SL_COUNT (1 << RG_SL_LOG2)

#define RG_HB_HEADER    16            /* bytes before the user pointer */
#define RG_HEAP_META    ((size_t)256) /* a heap chunk's header, before its first block */
#define RG_HB_MIN_BLOCK 64            /* header, links, dirty, clean, footer, rounded to 16 */

/* The largest request the heap serves; above it, each block gets its own
 * mapping (src/large.c).  2 MiB, the most a 4 MiB heap chunk allows,
 * because the large path is the slow one: each cache miss costs mmap,
 * munmap and a fault per fresh page (84-92% of its time in the kernel),
 * and the cache hands out mappings up to twice the request.  Measured with
 * bench/run-heap-threshold (bench/README.md, "heap threshold"; medium_churn
 * under the shim, medians of 5 interleaved runs, 2026-11-26): on sizes in
 * [64 KiB, 2 MiB], 2 MiB ran in 2.0 s against 25 s at 1 MiB, 46-47 s at
 * 64-256 KiB and 2.2 s for glibc, peak RSS 1.02x glibc's (1 MiB: 1.12x); on
 * [1 KiB, 256 KiB] every threshold from 256 KiB up is the same and 64 KiB
 * is 30x slower; on [1 MiB, 2 MiB] (3 blocks to a chunk) RSS is 1.09x
 * glibc's (1 MiB: 1.18x).  The price was that freed heap pages stayed
 * until regal_arena_trim, as with glibc; the purge policy (purge.c) now
 * gives them back.  The build may override it (-DRG_HEAP_MAX=...) to
 * measure again. */
#ifndef RG_HEAP_MAX
#define RG_HEAP_MAX ((size_t)2 << 20)
#endif
static_assert(RG_HEAP_MAX >= 8192 && RG_HEAP_MAX <= ((size_t)2 << 20), "heap threshold range");

struct rg_hblock {
    size_t size;  /* block bytes, header included | RG_HB_FREE | RG_HB_PREV_FREE */
    size_t check; /* size ^ address ^ key: tells a real header from user bytes */
    /* Free blocks only: list links, the committed and uncommitted bytes
     * of the block's interior (heap.c), and their size again in the last
     * word. */
    struct rg_hblock *next_free;
    struct rg_hblock *prev_free;
    size_t dirty;
    size_t clean;
};

#define RG_HB_FREE      ((size_t)1)
#define RG_HB_PREV_FREE ((size_t)2)
/* A block freed into a thread's cache (mcache.h): free for its owner and
 * the statistics, used for the heap. */
#define RG_HB_CACHED ((size_t)4)
#define RG_HB_FLAGS  ((size_t)15)
/* Flags changed by an atomic read-modify-write of the size word, with no
 * lock (CACHED) or by the lock holder while another thread may set CACHED
 * (PREV_FREE); the check word leaves them out, so it never changes with
 * them. */
#define RG_HB_SHARED_FLAGS (RG_HB_PREV_FREE | RG_HB_CACHED)

/* Per-arena state: the free lists of all its heap chunks. */
struct rg_heap {
    uint32_t fl_map;              /* bit f: sl_map[f] != 0 */
    uint16_t sl_map[RG_FL_COUNT]; /* bit s: heads[f][s] != NULL */
    struct rg_hblock *heads[RG_FL_COUNT][RG_SL_COUNT];
};

struct regal_arena;

/* A block of at least size bytes aligned to align (16 <= align <= 64 KiB);
 * NULL + ENOMEM on failure.  *usable receives its usable size. */
void *rg_heap_alloc(struct regal_arena *a, size_t size, size_t align, size_t *usable);

/* The bytes of the block that holds a request of size bytes. */
RG_INLINE size_t rg_heap_block_size(size_t size)
{
    size_t bs = rg_align_up(size + RG_HB_HEADER, RG_ALIGN);
    return bs < RG_HB_MIN_BLOCK ? RG_HB_MIN_BLOCK : bs;
}

enum rg_hblock_status { RG_HB_LIVE, RG_HB_DEAD, RG_HB_BOGUS };
/* What p is in heap chunk c: a live block, a freed one (cached ones too),
 * or no block at all.  Reads only memory inside the chunk. */
enum rg_hblock_status rg_heap_status(struct rg_chunk *c, const void *p);
size_t rg_heap_usable(const void *p);
void rg_heap_free(struct regal_arena *a, void *p);
/* With no lock: marks live block p of chunk c cached and returns its block
 * bytes, if they are in [lo, hi); 0 (nothing changed) otherwise, or when p
 * is not a live block or seems not to be (the locked path then decides and
 * reports). */
size_t rg_heap_claim(struct rg_chunk *c, void *p, size_t lo, size_t hi);
/* With no lock: the usable bytes of p if it is a live block of chunk c,
 * 0 if it is not or seems not to be (the locked path then decides).  Both
 * read p's header unlocked: for a freed p whose chunk another thread
 * removes from the arena at that moment (a trim of an emptied chunk), the
 * read may fault, where the locked path would have reported p. */
size_t rg_heap_live_usable(struct rg_chunk *c, const void *p);
/* With no lock: cached block p is live again; its usable bytes. */
size_t rg_heap_unclaim(void *p);
/* Resizes live block p in place to hold size bytes; false if it cannot. */
bool rg_heap_resize(struct regal_arena *a, void *p, size_t size);

void rg_heap_chunk_init(struct regal_arena *a, struct rg_chunk *c);
/* Arena reset: every chunk becomes one free block again. */
void rg_heap_reset(struct regal_arena *a);
size_t rg_heap_largest_free(const struct rg_heap *h);
/* The part of that largest free block that is committed. */
size_t rg_heap_largest_free_resident(const struct rg_heap *h);
/* Calls fn for every live block of the arena's heap chunks. */
void rg_heap_visit(struct regal_arena *a, rg_visit_fn fn, void *ctx);
/* Gives back the pages inside free blocks, largest blocks first, until at
 * least want bytes went back (SIZE_MAX: all); bytes released.  Blocks
 * stay. */
size_t rg_heap_purge(struct regal_arena *a, size_t want);
/* Committed bytes inside free blocks (dirty memory). */
size_t rg_heap_dirty(struct regal_arena *a);
/* Empty chunks but one go back to the cache (after rg_heap_purge); bytes
 * released. */
size_t rg_heap_trim(struct regal_arena *a);
int rg_heap_check(struct regal_arena *a);

#endif
