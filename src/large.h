/* Large blocks: one mapping each, headed by a chunk header; a per-arena
 * cache of freed mappings whose pages later blocks reuse. */
#ifndef RG_LARGE_H
#define RG_LARGE_H

#include "chunk.h"

struct rg_large {
    struct rg_chunk base; /* kind RG_CHUNK_LARGE; map_size = bytes mapped */
    uint8_t *ptr;         /* the user pointer */
    uint32_t live;        /* 0 while cached */
    size_t dirty;         /* bytes from the mapping's start that may not read as zero:
                             the pages that came from the cache */
};

/* An entry of an arena's cache of freed mappings: what the searches of
 * large.c read, so that they read no mapping's header. */
struct rg_cached {
    struct rg_chunk *c;
    size_t size; /* c->map_size */
    size_t gap;  /* bytes past the header page that its block never touched */
};

struct regal_arena;

void *rg_large_alloc(struct regal_arena *a, size_t size, size_t align);
/* What p is in large chunk c. */
enum rg_large_status { RG_LARGE_LIVE, RG_LARGE_DEAD, RG_LARGE_BOGUS };
enum rg_large_status rg_large_status(struct rg_chunk *c, const void *p);
size_t rg_large_usable(struct rg_chunk *c);
/* Makes the live block of c read as zero, for calloc: only the pages that
 * came from the cache, since fresh ones do. */
void rg_large_zero(struct rg_chunk *c);
/* Bytes of the mapping counted as committed (see large.c). */
size_t rg_large_committed(const struct rg_chunk *c);
void rg_large_free(struct regal_arena *a, struct rg_chunk *c);
/* Resizes the live block of c to size bytes without copying it: its
 * pointer, in place (shrinking gives pages back) or at a new address when
 * its pages moved to a bigger mapping; NULL if it must be copied, or if a
 * copy is cheaper (see large.c). */
void *rg_large_resize(struct regal_arena *a, struct rg_chunk *c, size_t size);
/* Bytes mapped by the cached mappings (their gaps included). */
size_t rg_large_cached_bytes(const struct regal_arena *a);
/* Whether the cache's entries match their mappings' headers (check.c);
 * adds their committed bytes to *mapped. */
bool rg_large_cache_is_valid(struct regal_arena *a, size_t *mapped);
/* Releases every cached mapping; bytes released. */
size_t rg_large_flush_cache(struct regal_arena *a);
/* Calls fn for every live large block. */
void rg_large_visit(struct regal_arena *a, rg_visit_fn fn, void *ctx);
/* Arena reset: every live block is freed. */
void rg_large_reset(struct regal_arena *a);
/* Arena destroy: everything unmapped. */
void rg_large_destroy(struct regal_arena *a);

#endif
