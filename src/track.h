/* The Valgrind mode of the block API (src/track.c): used instead of the
 * fast paths when rg_vg() says the process runs under Valgrind. */
#ifndef RG_TRACK_H
#define RG_TRACK_H

#include "regal.h"
#include "vg.h"

struct rg_pageq;

/* The allocation calls return blocks not yet announced: the public entry
 * point announces them (rg_vg_block_alloc), so memcheck's allocation stack
 * starts at regal_alloc, malloc... rather than inside regal. */
void *rg_track_alloc(regal_arena *a, size_t size, size_t align, bool zero);
void *rg_track_pool_alloc(regal_pool *p, size_t *size);
void rg_track_free(void *p);
void *rg_track_realloc(regal_arena *a, void *p, size_t size);
size_t rg_track_usable(const void *p);
/* Pool reset: memcheck forgets the pool's live objects; the quarantine
 * drops its freed ones, whose number it returns (they were counted as
 * freed already).  Called with the arena locked. */
size_t rg_track_pool_release(const struct rg_pageq *q);
/* Arena reset or destroy: memcheck forgets every live block (the free is
 * reported at the caller's reset or destroy); the quarantine drops the
 * arena's blocks. */
void rg_track_arena_release(regal_arena *a);
/* Drops quarantined blocks of an arena being reset or destroyed, or of a
 * pool being reset (queue != NULL); memcheck already saw them freed. */
size_t rg_track_forget(regal_arena *a, const struct rg_pageq *queue);

#endif
