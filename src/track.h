/* Tracked blocks (src/track.c): debug arenas, and every arena under
 * memcheck. */
#ifndef RG_TRACK_H
#define RG_TRACK_H

#include "regal.h"
#include "vg.h"

#define RG_TRACK_FRONT 32 /* header before each block */
#define RG_TRACK_BACK  16 /* canary bytes after it, at least */

struct rg_pageq;

/* The allocation calls return blocks not yet announced to memcheck: the
 * public entry point announces them (rg_vg_block_alloc), so memcheck's
 * allocation stack starts at regal_alloc, malloc... rather than inside
 * regal.  site is the caller, kept for leak reports. */
void *rg_track_alloc(regal_arena *a, size_t size, size_t align, bool zero, const void *site);
void *rg_track_pool_alloc(regal_pool *p, size_t *size, const void *site);
/* Slot size of a tracked pool and the offset of objects in their slots. */
size_t rg_track_pool_slot(size_t object_size, size_t align, uint32_t *offset);

void rg_track_free(void *p);
/* a tracked, or p a tracked block (or both); announces the new block. */
void *rg_track_realloc(regal_arena *a, void *p, size_t size, const void *site);
size_t rg_track_usable(const void *p);
/* The arena of a live tracked block, or NULL. */
regal_arena *rg_track_owner(const void *p);
/* The page queue of a tracked pool object (live or quarantined), or NULL. */
const struct rg_pageq *rg_track_queue(const void *p);

/* Pool reset: memcheck forgets the pool's live objects; the quarantine
 * drops its freed ones, whose number it returns (they were counted as
 * freed already).  Called with the arena locked. */
size_t rg_track_pool_release(const struct rg_pageq *q);
/* Arena reset or destroy: memcheck forgets every live block (the free is
 * reported at the caller's reset or destroy); the quarantine drops the
 * arena's blocks. */
void rg_track_arena_release(regal_arena *a);
/* At the arena's limit: the memory of a's quarantined blocks goes back to
 * a (those blocks were counted as freed already); returns how many.  Call
 * without the arena's lock. */
size_t rg_track_flush(regal_arena *a);
/* The number of live blocks with a trampled canary (each reported); call
 * with the arena locked. */
size_t rg_track_check(regal_arena *a);
/* Lists the arena's live blocks on stderr, grouped by size (and site for
 * tracked arenas); returns how many there were. */
size_t rg_track_leak_report(regal_arena *a, const char *why);

#endif
