/* The purge policy: when the free memory an arena keeps committed goes back
 * to the OS (see purge.c). */
#ifndef RG_PURGE_H
#define RG_PURGE_H

#include "common.h"

/* A heap free that leaves a free run of at least this many bytes is a
 * slow path where the policy runs (smaller runs wait for the next one). */
#define RG_PURGE_RUN ((size_t)64 << 10)

struct regal_arena;

/* Takes the process's settings (REGAL_OPTIONS purge_delay, purge_cap). */
void rg_purge_init(struct regal_arena *a);
/* Other settings for one arena (unit tests); call with the lock held. */
void rg_purge_set(struct regal_arena *a, uint64_t delay_ms, size_t cap);

/* Called on slow paths after free memory appeared or before fresh memory is
 * committed: purges what the policy says is due.  Never on a fast path. */
void rg_purge_maybe(struct regal_arena *a);
/* What the arena learned about the memory it cycles (purge.c): a floor of
 * a bound on the free memory it keeps (the automatic cap, the large
 * cache), doubled for each wasted release. */
size_t rg_purge_scaled(const struct regal_arena *a, size_t floor);
/* One of those bounds gave bytes back: a release to judge. */
void rg_purge_bound_released(struct regal_arena *a, size_t bytes);
/* The arena committed fresh memory while a release waits to be judged
 * (a->bound_released > 0): was it wasted? */
void rg_purge_judge(struct regal_arena *a);
/* Purges every dirty byte (and unmaps the large cache); bytes released. */
size_t rg_purge_all(struct regal_arena *a);

/* The cap in force for a (RG_PURGE_CAP_OFF when none). */
size_t rg_purge_cap(const struct regal_arena *a);
/* Dirty bytes counted from the chunks, free lists and cache, for reset and
 * regal_arena_check (the arena keeps the sum in a->dirty). */
size_t rg_purge_count_dirty(struct regal_arena *a);

#endif
