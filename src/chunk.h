/* Aligned chunks of OS memory and the chunk map (is this address regal's?). */
#ifndef RG_CHUNK_H
#define RG_CHUNK_H

#include "common.h"
#include "os.h" /* enum rg_move */

struct regal_arena;

enum rg_chunk_kind {
    RG_CHUNK_FREE = 0, /* in the process-wide cache, owned by no arena */
    RG_CHUNK_PAGES,    /* pages of size classes and pools (src/page.c) */
    RG_CHUNK_HEAP,     /* one free-list heap region (src/heap.c) */
    RG_CHUNK_LARGE,    /* one large block with its own mapping (src/large.c) */
    RG_CHUNK_HANDLE,   /* handle table, handle region or a huge handle block (src/handle.c) */
};

/* The header at the start of every chunk.  Kind-specific state follows it
 * (see page.h, heap.h, large.h). */
struct rg_chunk {
    uint32_t magic;            /* RG_CHUNK_MAGIC while owned by an arena */
    uint16_t kind;             /* enum rg_chunk_kind */
    uint16_t tracked;          /* the owner's blocks are tracked (its RG_ARENA_TRACKED, copied
                                  here and into the chunk map, where the fast paths read it
                                  with the kind and read no arena) */
    struct regal_arena *arena; /* owner; immutable while the chunk is owned */
    struct rg_chunk *next;     /* the arena's list of chunks of this kind */
    struct rg_chunk *prev;
    size_t map_size; /* bytes mapped at the chunk's address */
    /* Granules of RG_GRANULE bytes that are committed (possibly resident):
     * set when regal hands memory in them out, cleared when it gives them
     * back to the OS.  The arena's mapped figure is their sum. */
    uint64_t committed[RG_GRANULES / 64];
};

#define RG_CHUNK_MAGIC 0x7265676cu /* "regl" */

/* The chunk whose header describes ptr.  A block never starts at its chunk's
 * first byte (the header is there), so ptr - 1 lies in the right chunk even
 * for a large block aligned to a chunk boundary, whose header sits in the
 * chunk just before it. */
RG_INLINE struct rg_chunk *rg_chunk_of(const void *ptr)
{
    return (struct rg_chunk *)(((uintptr_t)ptr - 1) & ~(uintptr_t)(RG_CHUNK_SIZE - 1));
}

/* User addresses that the map covers: x86-64 with 4-level page tables
 * gives processes 47 bits (and 5-level ones addresses above them only to a
 * program that asks with a hint there, which regal never does), so the map
 * is 32 MiB there; 48 bits elsewhere (AArch64).  A mapping the kernel puts
 * beyond them is not used (rg_chunk_map). */
#if defined(__x86_64__)
#define RG_ADDRESS_BITS 47
#else
#define RG_ADDRESS_BITS 48
#endif
#define RG_MAP_CHUNKS ((size_t)1 << (RG_ADDRESS_BITS - RG_CHUNK_SHIFT))

/* The chunk map: one byte per chunk of the address space, 0 where regal
 * has no mapping, else the tag of the chunk's header.  The free fast
 * paths learn from this one byte both that a pointer is regal's and what
 * its chunk holds, and read no header. */
#define RG_MAP_MAPPED  0x80u
#define RG_MAP_TRACKED 0x40u
#define RG_MAP_TAG(kind, tracked)                                                                  \
    (RG_MAP_MAPPED | ((tracked) ? RG_MAP_TRACKED : 0u) | (unsigned)(kind))
static_assert(RG_CHUNK_HANDLE < RG_MAP_TRACKED, "a kind fits below the flags");

/* Hidden here too, not only where it is defined: the fast paths then
 * address it directly, not through the GOT. */
extern __attribute__((visibility("hidden"))) uint8_t rg_chunk_map_tags[RG_MAP_CHUNKS];

/* The map byte of the chunk whose header describes ptr (rg_chunk_of): 0
 * unless regal mapped it.  Reads only the map, never the address itself,
 * so it is safe for any pointer value. */
RG_INLINE unsigned rg_chunk_map_tag(const void *ptr)
{
    uintptr_t i = ((uintptr_t)ptr - 1) >> RG_CHUNK_SHIFT;
    if (RG_UNLIKELY(i >= RG_MAP_CHUNKS))
        return 0;
    return __atomic_load_n(&rg_chunk_map_tags[i], __ATOMIC_RELAXED);
}

/* True when ptr's chunk is mapped by regal. */
RG_INLINE bool rg_chunk_is_mapped(const void *ptr)
{
    return rg_chunk_map_tag(ptr) != 0;
}

/* Sets the header's magic, kind and tracked flag of chunk c, and its map
 * byte to match. */
void rg_chunk_set_kind(struct rg_chunk *c, enum rg_chunk_kind kind, bool tracked);
/* Whether c's map byte matches its header (regal_arena_check). */
bool rg_chunk_map_matches(const struct rg_chunk *c);

/* A zeroed chunk of RG_CHUNK_SIZE bytes of the kind for arena a, whose
 * blocks are tracked or not; NULL when the OS refuses. */
struct rg_chunk *rg_chunk_alloc(struct regal_arena *a, enum rg_chunk_kind kind, bool tracked);
/* Returns a chunk of RG_CHUNK_SIZE bytes to the cache or to the OS. */
void rg_chunk_free(struct rg_chunk *c);

/* Maps map_size bytes (a multiple of the OS page) at a chunk-aligned
 * address c such that c + offset is a multiple of align, marks c's chunk as
 * regal's and returns c with map_size set (the rest of the header is zero).
 * Used directly for large blocks.  NULL when the OS refuses. */
struct rg_chunk *rg_chunk_map(size_t map_size, size_t align, size_t offset);
/* fork(): the chunk cache's lock is taken before and released after. */
void rg_chunk_fork_prepare(void);
void rg_chunk_fork_release(void);

/* Moves the last size bytes of chunk from (a large block's, from
 * rg_chunk_map; all of it when size is its map_size) to offset to_off of
 * chunk to, pages and all (rg_os_move).  Unless nothing moved, from
 * shrinks by size, or is gone (its bit cleared) when it moved whole. */
enum rg_move rg_chunk_move_tail(struct rg_chunk *from, size_t size, struct rg_chunk *to,
                                size_t to_off);
/* Moves the whole mapping of chunk from (a live large block's: header and
 * pages) onto to, a chunk from rg_chunk_map of size bytes, more than from
 * has; the pages past from's are fresh.  to then holds from's header with
 * map_size set to size, and from is gone (its bit cleared).  False, and
 * nothing changed (to still mapped), when the kernel refuses. */
bool rg_chunk_move_grow(struct rg_chunk *from, struct rg_chunk *to, size_t size);
/* Unmaps a chunk from rg_chunk_map (or rg_chunk_alloc) for good. */
void rg_chunk_unmap(struct rg_chunk *c);

/* Committed-memory accounting of chunk c; offsets are bytes from c and are
 * rounded out to whole granules. */
size_t rg_chunk_uncommitted(const struct rg_chunk *c, size_t from, size_t to);
void rg_chunk_set_committed(struct rg_chunk *c, size_t from, size_t to);
size_t rg_chunk_committed(const struct rg_chunk *c);
/* Committed bytes among the granules that [from, to) touches. */
size_t rg_chunk_committed_in(const struct rg_chunk *c, size_t from, size_t to);
/* Gives the committed OS pages wholly inside [from, to) back to the OS and
 * clears their granules; returns the bytes given back. */
size_t rg_chunk_decommit(struct rg_chunk *c, size_t from, size_t to);

#endif
