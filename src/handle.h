/*
 * Relocatable blocks (src/handle.c): the handle table and the handle region
 * of an arena, and compaction.
 */
#ifndef RG_HANDLE_H
#define RG_HANDLE_H

#include "chunk.h"
#include "regal.h"

/* Table slots live in segments of one chunk each (handle.c); the index of
 * a handle has 24 bits, which RG_HANDLE_SEGS segments fill. */
#define RG_HANDLE_SEGS 64
/* Free blocks of the region are listed by floor(log2(size)), sizes from
 * 32 bytes to a chunk. */
#define RG_HANDLE_LISTS (RG_CHUNK_SHIFT - 5 + 1)

struct rg_hblk;

/* Per-arena state, in the arena header (zero in a new arena: set up at
 * the first handle).  key and next_gen survive reset, so that handles
 * from before a reset stay stale; everything else is emptied by it. */
struct rg_handles {
    uint64_t key;            /* XORed into every handle of the arena; 0 until the first */
    uint64_t next_gen;       /* generation of the next handle (arena-wide, never reused) */
    uint32_t count;          /* table slots handed out since reset, live or free */
    uint32_t free_slot;      /* first free slot + 1; 0 when none */
    size_t live;             /* live handles */
    struct rg_chunk *region; /* region chunks, oldest first */
    struct rg_chunk *huge;   /* blocks too big to move, a mapping each */
    struct rg_chunk *table[RG_HANDLE_SEGS]; /* table segments */
    uint32_t list_map;                      /* bit i: lists[i] != NULL */
    struct rg_hblk *lists[RG_HANDLE_LISTS]; /* free blocks of the region */
};

struct regal_arena;

/* Arena hooks (arena.c), called with the arena locked.  Reset forgets
 * every handle and keeps the memory; destroy gives it all back. */
void rg_handle_reset(struct regal_arena *a);
void rg_handle_destroy(struct regal_arena *a);
/* Gives back the pages inside free blocks of the region; nothing moves,
 * so it is safe in the middle of an allocation.  Bytes released. */
size_t rg_handle_decommit_free(struct regal_arena *a);
/* The same, and region chunks without a live block go back too. */
size_t rg_handle_trim(struct regal_arena *a);
/* Address space the arena's handle chunks take (regal_stats.retained). */
size_t rg_handle_space(const struct regal_arena *a);

/* regal_arena_check (check.c): every invariant of handle.c; adds the bytes
 * the handle memory commits to *committed. */
bool rg_handle_is_valid(struct regal_arena *a, size_t *committed);

/* Statistics (stats.c), with the arena locked. */
struct rg_handle_figures {
    size_t live;        /* live handles */
    size_t chunks;      /* region chunks */
    size_t free_bytes;  /* in free blocks of the region */
    size_t huge;        /* blocks with a mapping of their own */
    size_t huge_bytes;  /* bytes those mappings hold */
    size_t table_slots; /* slots of the handle table */
};
void rg_handle_figures(struct regal_arena *a, struct rg_handle_figures *f);

/* Whether p lies in a chunk of handle memory (quiet, any pointer): such a
 * pointer is never a block for regal_free, regal_realloc and friends. */
bool rg_handle_contains(const void *p);

#endif
