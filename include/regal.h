/*
 * regal: a region allocator for C.
 *
 * Programs create arenas that own memory, allocate from them (size classes,
 * fixed-size pools, a free-list heap, large mappings) and release everything
 * at once by resetting or destroying the arena.  The same engine backs the
 * malloc shim (libregal-malloc) through a process-wide default arena.
 *
 * Conventions of this header:
 *  - Allocation functions return NULL and set errno on failure (ENOMEM, or
 *    EINVAL for a bad alignment).  Nothing else is touched on failure.
 *  - Every pointer from the regal_alloc family is aligned to at least 16
 *    bytes (alignof(max_align_t)).
 *  - An arena without REGAL_ARENA_SINGLE_THREAD may be used from any number
 *    of threads at once: each thread gets its own pages of it (no lock on
 *    the common paths), handed back to the arena when the thread exits.
 *    regal_free and regal_usable_size find the owner from the pointer alone
 *    and may be called from any thread.
 *  - No thread may be inside an operation on an arena while it is reset or
 *    destroyed; the per-thread state other threads keep for it is dropped
 *    then, never touched again.
 *  - A double free is always reported when both frees come from one
 *    thread; across threads it is reported when the owner collects the
 *    second free (best effort, as with other thread-caching allocators).
 *  - Misuse regal can detect (double free, foreign or interior pointers) is
 *    reported through the error handler and otherwise ignored.
 */
#ifndef REGAL_H
#define REGAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header (meson.build checks it against the project). */
#define REGAL_VERSION_MAJOR 0
#define REGAL_VERSION_MINOR 1
#define REGAL_VERSION_PATCH 0

#if defined(__GNUC__)
#define REGAL_API    __attribute__((visibility("default")))
#define REGAL_MALLOC __attribute__((malloc, warn_unused_result))
#else
#define REGAL_API
#define REGAL_MALLOC
#endif

/* ---- Arenas -------------------------------------------------------------- */

typedef struct regal_arena regal_arena;
typedef struct regal_pool regal_pool;

typedef struct regal_arena_config {
    const char *name; /* shown in stats and error reports; copied; may be NULL */
    size_t limit;     /* most bytes the arena may commit from the OS; 0 = no limit */
    unsigned flags;   /* REGAL_ARENA_* below */
} regal_arena_config;

/* The caller promises one thread at a time: no locking at all. */
#define REGAL_ARENA_SINGLE_THREAD (1u << 0)
/* Canaries, fill patterns, full validation on free. */
#define REGAL_ARENA_DEBUG (1u << 1)

/* Creates an arena.  cfg NULL means defaults (no name, no limit, thread-safe).
 * Names longer than 31 bytes are truncated.  Returns NULL and sets errno
 * (ENOMEM; EINVAL for unknown flags) on failure. */
REGAL_API regal_arena *regal_arena_create(const regal_arena_config *cfg);

/* Frees every block and pool of the arena and returns its memory to the OS
 * (or to a small process-wide cache of chunks).  Cost: O(chunks), not
 * O(blocks).  NULL is a no-op; the default arena cannot be destroyed (that
 * is reported as an error and ignored). */
REGAL_API void regal_arena_destroy(regal_arena *a);

/* Frees every block and pool of the arena but keeps its memory for reuse.
 * Cost: O(chunks).  Pointers from before the reset must not be used. */
REGAL_API void regal_arena_reset(regal_arena *a);

/* The process-wide arena behind the malloc shim, created on first use.
 * Thread-safe; never destroyed. */
REGAL_API regal_arena *regal_default_arena(void);

/* ---- Blocks -------------------------------------------------------------- */

/* A block of at least size bytes, 16-aligned.  Size 0 gives a unique,
 * freeable minimal block.  NULL + ENOMEM on exhaustion or at the limit. */
REGAL_API REGAL_MALLOC void *regal_alloc(regal_arena *a, size_t size);

/* A zeroed block of count * size bytes.  Overflow of count * size fails
 * with ENOMEM; it never returns a short block. */
REGAL_API REGAL_MALLOC void *regal_calloc(regal_arena *a, size_t count, size_t size);

/* Resizes ptr to size bytes and returns a block of arena a.  ptr NULL acts
 * as regal_alloc.  Grows or shrinks in place when it can; when it moves, the
 * contents are kept up to the smaller size and ptr is freed.  A ptr of
 * another arena moves into a.  Size 0 returns a minimal block (it does not
 * free).  On failure returns NULL, sets errno and leaves ptr untouched. */
REGAL_API void *regal_realloc(regal_arena *a, void *ptr, size_t size);

/* A block of size bytes aligned to alignment, which must be a power of two
 * (any, up to the largest the address space allows); 0 or a non-power of
 * two fails with EINVAL. */
REGAL_API REGAL_MALLOC void *regal_aligned_alloc(regal_arena *a, size_t alignment, size_t size);

/* Frees a block of any arena, from any thread.  NULL is a no-op.  A double
 * free or a pointer regal never returned is reported and ignored. */
REGAL_API void regal_free(void *ptr);

/* Bytes usable from ptr (at least what was asked).  0 for NULL or a pointer
 * that is not a live regal block (which is also reported as an invalid
 * pointer). */
REGAL_API size_t regal_usable_size(const void *ptr);

/* The arena that owns ptr, or NULL if ptr is not a live regal block.  Never
 * reports an error: safe to ask about any pointer. */
REGAL_API regal_arena *regal_arena_of(const void *ptr);

/* ---- Fixed-size pools ---------------------------------------------------- */

/* A pool of objects of object_size bytes (>= 1) aligned to alignment (a
 * power of two up to 65536; 0 means 16).  Objects up to REGAL_POOL_MAX_OBJECT
 * bytes.  Returns NULL and sets errno (EINVAL for bad arguments, ENOMEM).
 * The pool belongs to the arena and goes away with its reset or destroy. */
REGAL_API regal_pool *regal_pool_create(regal_arena *a, size_t object_size, size_t alignment);
#define REGAL_POOL_MAX_OBJECT ((size_t)1 << 20)

/* An object of the pool: O(1), no lock for a single-thread arena. */
REGAL_API REGAL_MALLOC void *regal_pool_alloc(regal_pool *p);

/* Returns obj to pool p.  An object of another pool (or not a pool object)
 * is reported as REGAL_ERR_INVALID_FREE and ignored.  regal_free(obj) works
 * as well.  In a single-thread arena the objects freed last (up to 16, and
 * 32 KiB) come back first from regal_pool_alloc, warm in the cache; until
 * then they keep their pages, which regal_pool_reset, regal_pool_destroy
 * and regal_arena_trim give back. */
REGAL_API void regal_pool_free(regal_pool *p, void *obj);

/* Frees every object of the pool at once; the pool stays usable. */
REGAL_API void regal_pool_reset(regal_pool *p);

/* Frees every object and the pool itself.  NULL is a no-op. */
REGAL_API void regal_pool_destroy(regal_pool *p);

/* ---- Relocatable blocks (handles) ----------------------------------------- */

/* A handle names a block of an arena that regal_arena_compact may move, so
 * that an arena whose blocks come and go can be packed again and give its
 * free pages back.  The program keeps the handle and asks for the block's
 * address when it needs it.  0 is never a valid handle; a handle means
 * something only to the arena that returned it.
 *
 * Staleness: a handle is stale once freed, after a reset of its arena, or
 * when given to another arena; every handle carries a generation number
 * (and the arena's key) that tells a stale one from a live one without
 * touching the block, so a stale handle is never dereferenced.  A stale
 * handle could pass for a live one only after 2^40 further handles of the
 * same arena, or by a chance below 2^-40 for a handle of another arena.
 *
 * A handle block is not a block of the regal_alloc family: regal_free,
 * regal_realloc and regal_usable_size report its address as an invalid
 * pointer, and regal_arena_of answers NULL for it.  Handle memory counts
 * against the arena's limit and in its statistics (in_use, mapped,
 * alloc_count, free_count, blocks_in_use); reset forgets every handle of
 * the arena, destroy frees them.
 *
 * Under Valgrind memcheck each handle block is a heap block of its size;
 * when compaction moves one, memcheck follows it (its undefined bytes stay
 * undefined; its allocation stack becomes the compaction's) and a pointer
 * kept from before the move is reported as a use after free.  A handle
 * still live at exit is a block nothing points to: memcheck lists it as
 * lost, as it would a malloc block known only by an encoded value. */
typedef uint64_t regal_handle;

/* A block of size bytes (16-aligned, contents undefined; size 0 gives a
 * minimal block) and the handle that names it.  Blocks up to 1 MiB live in
 * the arena's handle region and move when it is compacted; bigger ones get
 * a mapping of their own and never move.  Returns 0 and sets errno on
 * failure: EINVAL when a is not a live arena (also reported), ENOMEM when
 * memory runs out, at the arena's limit, or past 16776192 live handles in
 * the arena.  Thread-safe (the arena's lock). */
REGAL_API regal_handle regal_handle_alloc(regal_arena *a, size_t size);

/* The current address of the block of handle h.  It stays valid until the
 * next regal_arena_compact of the arena (or until h is freed or the arena
 * reset or destroyed): a program that compacts from one thread must not
 * use such an address in another thread across the compaction.  NULL for 0
 * and for a stale handle, without a report, so that it can also tell
 * whether a handle is still live (an a that is not a live arena is
 * reported). */
REGAL_API void *regal_handle_ptr(regal_arena *a, regal_handle h);

/* Frees the block of handle h; h becomes stale.  0 is a no-op (as for
 * free(NULL)); a stale handle is reported as REGAL_ERR_INVALID_FREE (with a
 * NULL pointer and the handle in the message) and ignored. */
REGAL_API void regal_handle_free(regal_arena *a, regal_handle h);

/* Slides the live blocks of the arena's handle region toward its start,
 * keeping their order (memmove), updates their handles, and gives back to
 * the OS every page the region no longer needs.  Returns the bytes given
 * back: the drop of stats.mapped, or 0 when it did not drop (moves into
 * pages that regal_arena_trim gave back commit them again).  An arena that
 * is already compact (compacted, and no handle freed since) moves nothing
 * and returns 0.  Cost: O(blocks of the region) plus the bytes moved.
 * Every address from regal_handle_ptr is stale afterwards.  If the arena's
 * limit refuses the pages a move needs, the blocks from there on stay
 * where they are.  Thread-safe (the arena's lock). */
REGAL_API size_t regal_arena_compact(regal_arena *a);

/* ---- Statistics and maintenance ------------------------------------------ */

typedef struct regal_stats { /* all in bytes or counts */
    size_t in_use;           /* sum of the usable sizes of live blocks */
    size_t peak_in_use;      /* highest in_use since create (or reset); with several
                                threads an upper bound: the sum of each thread's own
                                peak, or the highest mapped if that is lower */
    size_t mapped;           /* bytes committed from the OS (counted against limit) */
    size_t requested_total;  /* sum of the sizes ever requested */
    size_t blocks_in_use;    /* live blocks */
    size_t alloc_count;      /* successful allocations */
    size_t free_count;       /* successful frees */
    size_t largest_free_run; /* largest free block of the free-list heap */
    /* Where the memory is (resident and retained as in jemalloc's stats). */
    size_t resident;      /* bytes committed and not purged: what the arena may have resident
                             (today equal to mapped, because purging uncommits) */
    size_t retained;      /* address space the arena keeps mapped that is not resident:
                             purged, or never used yet */
    size_t dirty;         /* free bytes kept resident that the purge policy would give back:
                             free pages, the inside of free heap blocks, cached large blocks */
    size_t free_resident; /* resident bytes holding neither a live block nor regal's metadata
                             (dirty, and free slots of pages still in use) */
    size_t fragmentation; /* free_resident that one request cannot use: free_resident minus
                             the resident part of the largest free run, 0 if negative */
    size_t purged;        /* bytes given back to the OS by purges and trims since create */
} regal_stats;

/* Fills *out.  Figures are exact whenever no thread is inside an operation
 * on the arena.  Costs a walk over the arena's chunks. */
REGAL_API void regal_arena_stats(regal_arena *a, regal_stats *out);

/* Prints the statistics as a human-readable table. */
REGAL_API void regal_arena_print_stats(regal_arena *a, FILE *out);

/* Prints the statistics as one JSON object followed by a newline. */
REGAL_API void regal_arena_print_stats_json(regal_arena *a, FILE *out);

/* Walks all metadata of the arena.  Returns 0 when consistent; otherwise
 * reports the first violation as REGAL_ERR_CORRUPTION and returns non-zero.
 * The slots of pages other live threads own are checked for structure only. */
REGAL_API int regal_arena_check(regal_arena *a);

/* Returns all free memory of the arena to the OS at once, interior pages
 * included: free pages, the pages of partly used size-class and pool pages
 * that no live block touches, the inside of every free heap block, cached
 * large blocks, and whole empty chunks (the heap keeps one).  Returns the bytes
 * released (0 when there was nothing to release).  Live blocks are
 * untouched; the arena stays fully usable.
 *
 * Without it, free memory goes back on a policy: an arena keeps what its
 * blocks release ("dirty" memory) for reuse, and gives it back with
 * madvise(MADV_DONTNEED), so that RSS drops, once it has waited
 * REGAL_OPTIONS purge_delay (default 1000 ms; 0 = at once; off = never) or
 * as soon as it passes purge_cap (default the larger of 64 MiB and 1/4 of
 * in_use; a large-block cache of up to 64 MiB comes on top).  The policy
 * runs when the arena allocates or frees through its slow paths (new
 * pages, heap blocks of 64 KiB and up, large blocks), so an arena that is
 * not used at all keeps its dirty memory until trimmed. */
REGAL_API size_t regal_arena_trim(regal_arena *a);

/* ---- Errors -------------------------------------------------------------- */

typedef enum {
    REGAL_ERR_DOUBLE_FREE = 1, /* a block freed twice */
    REGAL_ERR_INVALID_FREE,    /* a pointer regal never returned, or misuse of the API */
    REGAL_ERR_OVERFLOW,        /* a canary around a block was overwritten */
    REGAL_ERR_CORRUPTION       /* allocator metadata is inconsistent */
} regal_error_kind;

typedef void (*regal_error_fn)(regal_error_kind kind, const void *ptr, const char *message,
                               void *ctx);

/* Installs the process-wide error handler; NULL restores the default, which
 * writes one "regal: ..." line on stderr (and aborts when REGAL_OPTIONS
 * contains abort_on_error). */
REGAL_API void regal_set_error_handler(regal_error_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* REGAL_H */
